//! A Postgres LISTEN connection that notices when it has gone silent.
//!
//! A LISTEN socket only ever receives: if the peer vanishes without a FIN
//! (a half-open socket, a frozen middlebox) it stays quiet, and with the
//! kernel's default keepalive (2 h idle) nothing says so for hours — the
//! replica just stops hearing others. So each listener also LISTENs on a
//! channel of its own and NOTIFYs it every [`Heartbeat::every`] through
//! the pool (another connection): an echo that has not come back within
//! [`Heartbeat::bound`] means the LISTEN connection is dead, and
//! [`listen_once`] ends with [`Silent`]. (TCP keepalive on every
//! connection is tuned in `huddle_db::tls` as well, for the sockets the
//! heartbeat does not cover.)

use std::time::Duration;

use diesel_async::RunQueryDsl;
use futures::StreamExt;
use huddle_db::{Database, DbError};
use tokio::time::Instant;

/// How often a listener checks itself, and how long an echo may take.
#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    pub every: Duration,
    pub bound: Duration,
}

/// A silent connection is found within `every + bound` (3 s).
pub const HEARTBEAT: Heartbeat = Heartbeat {
    every: Duration::from_secs(1),
    bound: Duration::from_secs(2),
};

/// Why a listening pass ended.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The connection could not be opened or failed: Postgres (as this
    /// process reaches it) may be down.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The connection is open but its own heartbeat did not come back.
    #[error("listener heard no echo of its heartbeat for {0:?}")]
    Silent(Duration),
}

/// What the listener tells its owner.
pub enum Heard<'a> {
    /// LISTEN is in force: anything sent from now on will be heard.
    Listening,
    /// A notification on one of the owner's channels.
    Notification { channel: &'a str, payload: &'a str },
}

/// One connection's life: connects (a connection taken out of `db`'s pool
/// for good), LISTENs on `channels` and its own heartbeat channel, calls
/// `on` for each event, and returns when the connection fails or falls
/// silent. The caller reconnects.
pub async fn listen_once(
    db: &Database,
    channels: &[&str],
    heartbeat: Heartbeat,
    mut on: impl FnMut(Heard<'_>),
) -> Result<(), ListenError> {
    let mut conn = huddle_db::PgConn::take(db.conn().await?);
    // Unique per connection: only this listener hears its own beats.
    let beat = format!("huddle_beat_{}", uuid::Uuid::new_v4().simple());
    for channel in channels.iter().copied().chain([beat.as_str()]) {
        diesel::sql_query(format!("LISTEN {channel}"))
            .execute(&mut conn)
            .await
            .map_err(DbError::from)?;
    }
    on(Heard::Listening);
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    let mut echoed = Instant::now();
    let mut tick = tokio::time::interval(heartbeat.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = notifications.next() => {
                let Some(notification) = next else { return Ok(()) };
                let notification = notification.map_err(DbError::from)?;
                if notification.channel == beat {
                    echoed = Instant::now();
                } else {
                    on(Heard::Notification {
                        channel: &notification.channel,
                        payload: &notification.payload,
                    });
                }
            }
            _ = tick.tick() => {
                let quiet = echoed.elapsed();
                if quiet > heartbeat.every + heartbeat.bound {
                    return Err(ListenError::Silent(quiet));
                }
                // Sent beside the loop: a hung pool connection must not
                // stop this one from noticing its own silence.
                tokio::spawn(send_beat(db.clone(), beat.clone(), heartbeat.bound));
            }
        }
    }
}

async fn send_beat(db: Database, channel: String, bound: Duration) {
    let sent = tokio::time::timeout(bound, async {
        let mut conn = db.conn().await?;
        diesel::sql_query(format!("NOTIFY {channel}"))
            .execute(&mut conn)
            .await?;
        Ok::<_, DbError>(())
    })
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        tracing::debug!(%channel, "listener heartbeat not sent");
    }
}
