//! Queries on `huddle_user`. Plain async functions over a connection, so the
//! caller owns the transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use huddle_db::DbError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schema::users;

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// A user row; also the cached shape of `user` and `userByEmail` values.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub image: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub email: &'a str,
    pub image: Option<&'a str>,
}

/// A profile change; `None` leaves the column as it is, `Some(None)` on
/// `image` clears it.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
pub struct UserChanges {
    pub name: Option<String>,
    pub image: Option<Option<String>>,
}

pub async fn find_by_id(
    conn: &mut AsyncPgConnection,
    id: Uuid,
) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

/// `email` must already be normalized (lowercase), matching the index.
pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> Result<Option<UserRow>, DbError> {
    Ok(users::table
        .filter(lower(users::email).eq(email))
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()?)
}

pub async fn find_many(
    conn: &mut AsyncPgConnection,
    ids: &[Uuid],
) -> Result<Vec<UserRow>, DbError> {
    Ok(users::table
        .filter(users::id.eq_any(ids))
        .select(UserRow::as_select())
        .load(conn)
        .await?)
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewUser<'_>) -> Result<UserRow, DbError> {
    Ok(diesel::insert_into(users::table)
        .values(new)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await?)
}

/// Inserts unless a user with that email exists; returns whether it inserted.
/// Used by the idempotent seed.
pub async fn insert_if_absent(
    conn: &mut AsyncPgConnection,
    new: &NewUser<'_>,
) -> Result<bool, DbError> {
    let inserted = diesel::insert_into(users::table)
        .values(new)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Applies `changes` and returns the row before and after (the old email is
/// needed to invalidate its key). Run it inside a transaction: it locks the
/// row between the two reads.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    changes: &UserChanges,
) -> Result<(UserRow, UserRow), DbError> {
    let before: UserRow = users::table
        .find(id)
        .select(UserRow::as_select())
        .for_update()
        .first(conn)
        .await?;
    let after: UserRow = diesel::update(users::table.find(id))
        .set((changes, users::updated_at.eq(diesel::dsl::now)))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await?;
    Ok((before, after))
}
