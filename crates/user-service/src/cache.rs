//! The user service's cached reads: which key, TTL and tags each uses.
//! Keys and invalidation rules themselves live in cache-core.

use cache_core::{Cache, CacheKey, normalize_email};
use huddle_db::{Database, DbError};
use uuid::Uuid;

use crate::db::{self, UserRow};

pub async fn user(cache: &Cache, db: &Database, id: Uuid) -> Result<Option<UserRow>, DbError> {
    let key = CacheKey::user(id);
    cache
        .get_or_load(&key, key.ttl(), &[], || async {
            db::find_by_id(&mut *db.conn().await?, id).await
        })
        .await
}

pub async fn user_by_email(
    cache: &Cache,
    db: &Database,
    email: &str,
) -> Result<Option<UserRow>, DbError> {
    let email = normalize_email(email);
    let key = CacheKey::user_by_email(&email);
    // No tag needed: a profile update invalidates its old and new email
    // keys by rule, and a create invalidates a not-found marker of its email.
    cache
        .get_or_load(&key, key.ttl(), &[], || async {
            db::find_by_email(&mut *db.conn().await?, &email).await
        })
        .await
}

/// Display data for many users: one MGET, one query for all the misses.
pub async fn users(cache: &Cache, db: &Database, ids: &[Uuid]) -> Result<Vec<UserRow>, DbError> {
    let keys: Vec<CacheKey> = ids.iter().map(|id| CacheKey::user(*id)).collect();
    let ttl = cache_core::KeyName::User.ttl();
    let found = cache
        .get_many_or_load(&keys, ttl, |missing| async move {
            let wanted: Vec<Uuid> = missing.iter().map(|i| ids[*i]).collect();
            let rows = db::find_many(&mut *db.conn().await?, &wanted).await?;
            Ok::<_, DbError>(
                wanted
                    .iter()
                    .map(|id| rows.iter().find(|r| r.id == *id).cloned())
                    .collect(),
            )
        })
        .await?;
    Ok(found.into_iter().flatten().collect())
}
