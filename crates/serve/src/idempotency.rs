//! Idempotency keys (SPEC §3), kept by the service that writes, in its own
//! database and in the write's own transaction: a retry after a Redis
//! outage, a failover or a cancelled request finds the key exactly when the
//! write committed.
//!
//! A write with a key first *claims* `(caller, key)` in its transaction
//! (`INSERT … ON CONFLICT DO NOTHING`). A concurrent duplicate's claim waits
//! on the unique index until the first transaction ends, so exactly one of
//! them writes; the other (and any later retry) reads the committed row: the
//! same request gets the first answer, another request under the same key
//! is refused. A write that fails rolls its claim back with it, so only a
//! committed success is ever replayed. The answer kept is the gRPC response
//! (the gateway shapes it into the same HTTP status and body); it must hold
//! no secret.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use huddle_common::ErrorCode;
use huddle_db::{Database, DbError};
use sha2::{Digest, Sha256};

use crate::{
    error::{ServiceError, db_code},
    relay::{self, Pass, Relay, Wake},
};

diesel::table! {
    idempotency_keys (caller, key) {
        caller -> Text,
        key -> Text,
        request_hash -> Bytea,
        answer -> Bytea,
        created_at -> Timestamptz,
    }
}

/// The `table!` text above, for schema drift checks.
pub const SCHEMA_RS: &str = "diesel::table! {\n    idempotency_keys (caller, key) {\n        caller -> Text,\n        key -> Text,\n        request_hash -> Bytea,\n        answer -> Bytea,\n        created_at -> Timestamptz,\n    }\n}\n";

pub use huddle_common::{
    IDEMPOTENCY_CALLER_METADATA as CALLER_METADATA, IDEMPOTENCY_KEY_METADATA as KEY_METADATA,
};

/// How long a key is kept (SPEC §3: a retry within 24 h).
pub const KEPT_FOR: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("{0}")]
    InvalidKey(#[from] huddle_domain::RuleError),
    #[error("Idempotency-Key: already used with another request")]
    Reused,
    #[error("kept answer cannot be decoded: {0}")]
    Corrupt(#[from] prost::DecodeError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl ServiceError for IdempotencyError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidKey(_) => ErrorCode::InvalidArgument,
            Self::Reused => ErrorCode::IdempotencyKeyReused,
            Self::Corrupt(_) => ErrorCode::Internal,
            Self::Db(e) => db_code(e),
        }
    }
}

impl From<diesel::result::Error> for IdempotencyError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Db(e.into())
    }
}

/// One request's key: who sent it, the key, and what the request was.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    caller: String,
    key: String,
    request_hash: Vec<u8>,
}

impl IdempotencyKey {
    /// The key `req` carries in its metadata, if any. The request's identity
    /// is `operation` and the encoded message, so the same key on another
    /// operation of this service is a reuse too.
    pub fn of<T: prost::Message>(
        req: &tonic::Request<T>,
        operation: &str,
        caller: &str,
    ) -> Result<Option<Self>, IdempotencyError> {
        let Some(raw) = req.metadata().get(KEY_METADATA) else {
            return Ok(None);
        };
        let field = huddle_domain::idempotency::FIELD;
        let raw = raw
            .to_str()
            .map_err(|_| huddle_domain::RuleError::IdempotencyKey { field })?;
        let key = huddle_domain::idempotency::key(raw)?.to_owned();
        let mut hash = Sha256::new();
        hash.update(operation.as_bytes());
        hash.update([0]);
        hash.update(req.get_ref().encode_to_vec());
        Ok(Some(Self {
            caller: caller.to_owned(),
            key,
            request_hash: hash.finalize().to_vec(),
        }))
    }

    /// The caller named by [`CALLER_METADATA`], or `fallback`.
    pub fn caller_of<T>(req: &tonic::Request<T>, fallback: &str) -> String {
        req.metadata()
            .get(CALLER_METADATA)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(fallback)
            .to_owned()
    }

    /// Inside the write's transaction, before it writes: `Some(first answer)`
    /// when this key's write has committed already (write nothing then),
    /// `None` when this transaction now holds the key. Blocks while another
    /// transaction holds it.
    pub async fn claim<R: prost::Message + Default>(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> Result<Option<R>, IdempotencyError> {
        use idempotency_keys::dsl;
        let claimed = diesel::insert_into(idempotency_keys::table)
            .values((
                dsl::caller.eq(&self.caller),
                dsl::key.eq(&self.key),
                dsl::request_hash.eq(&self.request_hash),
                dsl::answer.eq(Vec::<u8>::new()),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if claimed == 1 {
            return Ok(None);
        }
        // Committed by the transaction the claim waited for (or earlier).
        // Swept in between (24 h old): nothing to replay, and this
        // transaction cannot take the key any more; the retry will.
        let (hash, answer): (Vec<u8>, Vec<u8>) = idempotency_keys::table
            .find((&self.caller, &self.key))
            .select((dsl::request_hash, dsl::answer))
            .first(conn)
            .await
            .optional()?
            .ok_or_else(|| DbError::Unavailable("idempotency key swept meanwhile".to_owned()))?;
        if hash != self.request_hash {
            return Err(IdempotencyError::Reused);
        }
        Ok(Some(R::decode(answer.as_slice())?))
    }

    /// Inside the same transaction, once the answer is known: keeps it.
    pub async fn keep<R: prost::Message>(
        &self,
        conn: &mut AsyncPgConnection,
        answer: &R,
    ) -> Result<(), IdempotencyError> {
        use idempotency_keys::dsl;
        diesel::update(idempotency_keys::table.find((&self.caller, &self.key)))
            .set(dsl::answer.eq(answer.encode_to_vec()))
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// `claim` for an optional key.
pub async fn claim<R: prost::Message + Default>(
    key: Option<&IdempotencyKey>,
    conn: &mut AsyncPgConnection,
) -> Result<Option<R>, IdempotencyError> {
    match key {
        Some(key) => key.claim(conn).await,
        None => Ok(None),
    }
}

/// `keep` for an optional key.
pub async fn keep<R: prost::Message>(
    key: Option<&IdempotencyKey>,
    conn: &mut AsyncPgConnection,
    answer: &R,
) -> Result<(), IdempotencyError> {
    match key {
        Some(key) => key.keep(conn, answer).await,
        None => Ok(()),
    }
}

/// Rows deleted per sweep statement, so one sweep never holds a long lock.
const SWEEP_BATCH: i64 = 1000;

/// Deletes keys older than [`KEPT_FOR`]; a kit relay, run by every service.
#[derive(Clone)]
pub struct Sweeper {
    db: Database,
    service: &'static str,
}

pub const SWEEP_POLICY: relay::Policy = relay::Policy {
    idle: Duration::from_secs(600),
    first_backoff: Duration::from_secs(5),
    max_backoff: Duration::from_secs(300),
};

impl Sweeper {
    pub fn new(db: Database, service: &'static str) -> Self {
        Self { db, service }
    }

    /// Deletes every expired key; returns how many.
    pub async fn sweep(&self) -> Result<usize, DbError> {
        let mut total = 0;
        loop {
            let mut conn = self.db.conn().await?;
            let deleted = diesel::sql_query(format!(
                "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys \
                 WHERE created_at < now() - interval '{} seconds' LIMIT {SWEEP_BATCH})",
                KEPT_FOR.as_secs()
            ))
            .execute(&mut conn)
            .await?;
            total += deleted;
            if deleted < SWEEP_BATCH as usize {
                return Ok(total);
            }
        }
    }
}

impl Relay for Sweeper {
    fn name(&self) -> &'static str {
        self.service
    }

    async fn drain(&self) -> Result<Pass, String> {
        match self.sweep().await {
            Ok(done) => Ok(Pass { done, failed: 0 }),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn woken(&self) -> Wake {
        std::future::pending().await
    }
}
