//! Which primary the cache last talked to, and the key generation that
//! follows it.
//!
//! A promoted replica may lack deletes its old primary acknowledged (a
//! stalled link, `WAIT` off, or a replica that was not counted). Values it
//! holds cannot be told apart from good ones, so when the primary changes
//! the cache abandons them all: every key moves to a new generation, a
//! segment of the prefix derived from the new primary's replication id.
//! Every process that reaches that primary derives the same generation, so
//! they keep invalidating each other's keys.
//!
//! "Changed" is judged against a marker key on the server itself (`<prefix
//! without ':'>#epoch` = `<replid> <generation>`, outside the prefix so a
//! flush keeps it): a marker naming another replication id was written on a
//! primary this one replaced. A process started after the failover reads it
//! too, so it never trusts the old generation either.

use std::{
    sync::{
        RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::aio::ConnectionLike;

/// How often an invalidation re-reads the primary's identity and replica
/// count (besides every new connection).
pub(crate) const RECHECK: Duration = Duration::from_secs(1);

pub(crate) struct Epoch {
    base: String,
    marker: String,
    state: RwLock<State>,
    /// Bumped on every generation move, so a caller can tell whether one
    /// happened while it worked.
    version: AtomicU64,
}

struct State {
    replid: Option<String>,
    /// Current prefix (base + generation segment).
    prefix: String,
    /// The prefix before the last move: invalidations reach it too, for
    /// processes that have not seen the move yet.
    previous: Option<String>,
    replicas: u32,
    checked: Option<Instant>,
}

/// What `INFO replication` said of a server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) role: String,
    pub(crate) replid: String,
    pub(crate) replicas: u32,
}

impl Epoch {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            marker: format!("{}#epoch", base.trim_end_matches(':')),
            state: RwLock::new(State {
                replid: None,
                prefix: base.to_owned(),
                previous: None,
                replicas: 0,
                checked: None,
            }),
            version: AtomicU64::new(0),
        }
    }

    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current generation's form of a configured prefix.
    pub(crate) fn current(&self, configured: &str) -> String {
        let state = self.read();
        format!("{configured}{}", &state.prefix[self.base.len()..])
    }

    /// The previous generation's form of a configured prefix, if it moved.
    pub(crate) fn previous(&self, configured: &str) -> Option<String> {
        let state = self.read();
        let previous = state.previous.as_ref()?;
        Some(format!("{configured}{}", &previous[self.base.len()..]))
    }

    /// The current prefix itself (base + generation).
    pub(crate) fn prefix(&self) -> String {
        self.read().prefix.clone()
    }

    /// Replicas last seen connected, if seen within [`RECHECK`].
    pub(crate) fn fresh_replicas(&self) -> Option<u32> {
        let state = self.read();
        state
            .checked
            .filter(|at| at.elapsed() < RECHECK)
            .map(|_| state.replicas)
    }

    /// Records a replica count read some other way (a cluster's nodes).
    pub(crate) fn set_replicas(&self, replicas: u32) {
        let mut state = self.write();
        state.replicas = replicas;
        state.checked = Some(Instant::now());
    }

    /// Reads the server's identity on `conn` and moves the generation if its
    /// primary is not the one last seen. Refuses a server that is not a
    /// primary: a repointed endpoint answering from a replica must not be
    /// read (its data may lack deletes) nor written (it refuses).
    pub(crate) async fn observe<C: ConnectionLike + Send>(
        &self,
        conn: &mut C,
    ) -> Result<u32, redis::RedisError> {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(conn)
            .await?;
        let seen = parse_identity(&info).ok_or_else(|| refused("no replication info"))?;
        if seen.role != "master" {
            return Err(refused("the Redis endpoint is not a primary"));
        }
        if self.read().replid.as_deref() == Some(seen.replid.as_str()) {
            self.set_replicas(seen.replicas);
            return Ok(seen.replicas);
        }
        let marker: Option<String> = redis::cmd("GET")
            .arg(&self.marker)
            .query_async(conn)
            .await?;
        let generation = match marker.as_deref().and_then(|m| m.split_once(' ')) {
            Some((replid, generation)) if replid == seen.replid => Some(generation.to_owned()),
            // Written on the primary this one replaced: its values are suspect.
            Some(_) => Some(format!("g{}", &seen.replid[..seen.replid.len().min(12)])),
            // No marker: a fresh (or emptied) server; nothing in it is suspect.
            None => None,
        };
        let prefix = self.move_to(&seen, generation);
        let segment = prefix[self.base.len()..].trim_end_matches(':');
        // Best effort: a primary refusing writes (full, `min-replicas-to-
        // write`) must still serve reads; the next new connection retries.
        let marked = redis::cmd("SET")
            .arg(&self.marker)
            .arg(format!("{} {segment}", seen.replid))
            .query_async::<()>(conn)
            .await;
        if let Err(e) = marked {
            tracing::warn!(error = %e, "cannot record the cache generation on redis");
            self.write().replid = None;
        }
        Ok(seen.replicas)
    }

    fn move_to(&self, seen: &Identity, generation: Option<String>) -> String {
        let mut state = self.write();
        let prefix = match generation {
            Some(g) if g.is_empty() => self.base.clone(),
            Some(g) => format!("{}{g}:", self.base),
            None => state.prefix.clone(),
        };
        if prefix != state.prefix {
            tracing::warn!(replid = %seen.replid, from = %state.prefix, to = %prefix,
                "redis primary changed; cache keys move to a new generation");
            state.previous = Some(std::mem::replace(&mut state.prefix, prefix.clone()));
            self.version.fetch_add(1, Ordering::AcqRel);
        }
        state.replid = Some(seen.replid.clone());
        state.replicas = seen.replicas;
        state.checked = Some(Instant::now());
        prefix
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn refused(why: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Client, why))
}

pub(crate) fn parse_identity(info: &str) -> Option<Identity> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    Some(Identity {
        role: field("role")?.to_owned(),
        replid: field("master_replid")?.to_owned(),
        replicas: field("connected_slaves")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
    })
}

/// The fewest replicas any master of a cluster has connected, from
/// `CLUSTER NODES` (a replica line names its master's id).
pub(crate) fn cluster_min_replicas(nodes: &str) -> u32 {
    let mut masters: std::collections::BTreeMap<&str, u32> = Default::default();
    let lines: Vec<Vec<&str>> = nodes
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for fields in &lines {
        if fields.len() > 3 && fields[2].contains("master") && !fields[2].contains("fail") {
            masters.entry(fields[0]).or_default();
        }
    }
    for fields in &lines {
        let healthy = fields.len() > 7 && !fields[2].contains("fail") && fields[7] == "connected";
        if healthy
            && fields[2].contains("slave")
            && let Some(count) = masters.get_mut(fields[3])
        {
            *count += 1;
        }
    }
    masters.into_values().min().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_cluster_replicas_are_parsed() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nmaster_replid:abc123\r\n";
        assert_eq!(
            parse_identity(info),
            Some(Identity {
                role: "master".into(),
                replid: "abc123".into(),
                replicas: 2
            })
        );
        let nodes = "a 127.0.0.1:1@2 myself,master - 0 0 1 connected 0-5460\n\
                     b 127.0.0.1:3@4 master - 0 0 2 connected 5461-10922\n\
                     c 127.0.0.1:5@6 slave a 0 0 1 connected\n\
                     d 127.0.0.1:7@8 slave b 0 0 2 connected\n\
                     e 127.0.0.1:9@10 slave,fail b 0 0 2 disconnected\n";
        assert_eq!(cluster_min_replicas(nodes), 1);
    }

    #[test]
    fn a_move_keeps_the_previous_prefix_for_invalidations() {
        let epoch = Epoch::new("huddle:v1:");
        let seen = |replid: &str| Identity {
            role: "master".into(),
            replid: replid.into(),
            replicas: 0,
        };
        assert_eq!(epoch.move_to(&seen("r1"), None), "huddle:v1:");
        assert_eq!(epoch.version(), 0);
        assert_eq!(
            epoch.move_to(&seen("r2"), Some("gr2".into())),
            "huddle:v1:gr2:"
        );
        assert_eq!(epoch.version(), 1);
        assert_eq!(epoch.current("huddle:v0:"), "huddle:v0:gr2:");
        assert_eq!(epoch.previous("huddle:v0:").as_deref(), Some("huddle:v0:"));
        assert_eq!(
            epoch.move_to(&seen("r2"), Some("gr2".into())),
            "huddle:v1:gr2:"
        );
        assert_eq!(epoch.version(), 1);
    }
}
