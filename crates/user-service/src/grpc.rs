//! The tonic implementation of `huddle.user.v1.UserService`: validate, read
//! through the cache, write then invalidate.

use cache_core::{Cache, Invalidation};
use diesel_async::AsyncConnection;
use huddle_db::{Database, DbError};
use huddle_proto::user::v1::{
    BatchGetUsersRequest, BatchGetUsersResponse, CreateUserRequest, GetUserByEmailRequest,
    GetUserRequest, UpdateUserRequest, User, user_service_server::UserService,
};
use huddle_serve::{IdempotencyKey, Outbox, idempotency};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    cache,
    db::{self, NewUser, UserChanges, UserRow},
    error::UserError,
};
use huddle_domain::{id, time, user};

/// Upper bound on ids per BatchGetUsers call (one response's worth of rows).
const MAX_BATCH: usize = 500;

#[derive(Clone)]
pub struct UserApi {
    pub(crate) db: Database,
    pub(crate) cache: Cache,
    pub(crate) outbox: Outbox,
}

impl UserApi {
    pub fn new(db: Database, cache: Cache, outbox: Outbox) -> Self {
        Self { db, cache, outbox }
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_user(&self, req: Request<CreateUserRequest>) -> Result<Response<User>, Status> {
        let this = self.clone();
        huddle_serve::to_completion(async move {
            let user = this.create(req).await?;
            Ok(Response::new(user))
        })
        .await
    }

    async fn get_user(&self, req: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        async {
            let id = id::parse("id", &req.get_ref().id)?;
            let row = cache::user(&self.cache, &self.db, id)
                .await?
                .ok_or(UserError::NotFound)?;
            Ok(Response::new(to_proto(row)))
        }
        .await
        .map_err(|e: UserError| Status::from(e))
    }

    async fn get_user_by_email(
        &self,
        req: Request<GetUserByEmailRequest>,
    ) -> Result<Response<User>, Status> {
        async {
            let email = user::email(&req.get_ref().email)?;
            let row = cache::user_by_email(&self.cache, &self.db, &email)
                .await?
                .ok_or(UserError::NotFound)?;
            Ok(Response::new(to_proto(row)))
        }
        .await
        .map_err(|e: UserError| Status::from(e))
    }

    async fn batch_get_users(
        &self,
        req: Request<BatchGetUsersRequest>,
    ) -> Result<Response<BatchGetUsersResponse>, Status> {
        async {
            let ids = &req.get_ref().ids;
            if ids.len() > MAX_BATCH {
                return Err(UserError::InvalidArgument(format!(
                    "ids: at most {MAX_BATCH} per call"
                )));
            }
            let mut parsed = ids
                .iter()
                .map(|raw| id::parse("ids", raw))
                .collect::<Result<Vec<_>, _>>()?;
            parsed.sort_unstable();
            parsed.dedup();
            let rows = cache::users(&self.cache, &self.db, &parsed).await?;
            Ok(Response::new(BatchGetUsersResponse {
                users: rows.into_iter().map(to_proto).collect(),
            }))
        }
        .await
        .map_err(|e: UserError| Status::from(e))
    }

    async fn update_user(&self, req: Request<UpdateUserRequest>) -> Result<Response<User>, Status> {
        let this = self.clone();
        huddle_serve::to_completion(async move { this.update(req.into_inner()).await }).await
    }
}

impl UserApi {
    async fn create(&self, req: Request<CreateUserRequest>) -> Result<User, UserError> {
        // Only admins create users: the key is the admin's (their subject).
        let caller = IdempotencyKey::caller_of(&req, "admin");
        let key = IdempotencyKey::of(&req, "CreateUser", &caller)?;
        let req = req.into_inner();
        let name = user::name(&req.name)?;
        let email = user::email(&req.email)?;
        let image = req.image.as_deref().map(user::image_url).transpose()?;
        let new = NewUser {
            id: Uuid::new_v4(),
            name: &name,
            email: &email,
            image: image.as_deref(),
        };
        let mut conn = self.db.conn().await?;
        let (user, recorded) = conn
            .transaction::<_, UserError, _>(async |conn| {
                if let Some(first) = idempotency::claim(key.as_ref(), conn).await? {
                    return Ok((first, None));
                }
                let row = match db::insert(conn, &new).await {
                    Err(DbError::Unique { .. }) => return Err(UserError::EmailTaken),
                    other => other?,
                };
                let recorded = Outbox::record(conn, Invalidation::user_create(&row.email)).await?;
                let user = to_proto(row);
                idempotency::keep(key.as_ref(), conn, &user).await?;
                Ok((user, Some(recorded)))
            })
            .await?;
        drop(conn);
        self.outbox.after_commit(recorded).await?;
        Ok(user)
    }

    async fn update(&self, req: UpdateUserRequest) -> Result<Response<User>, Status> {
        async {
            let id = id::parse("id", &req.id)?;
            let changes = UserChanges {
                name: req.name.as_deref().map(user::name).transpose()?,
                image: if req.clear_image {
                    Some(None)
                } else {
                    req.image
                        .as_deref()
                        .map(user::image_url)
                        .transpose()?
                        .map(Some)
                },
            };
            if changes.name.is_none() && changes.image.is_none() {
                return Err(UserError::InvalidArgument("nothing to update".to_owned()));
            }
            let mut conn = self.db.conn().await?;
            let (after, recorded) = conn
                .transaction::<_, UserError, _>(async |conn| {
                    let (before, after) = db::update(conn, id, &changes).await?;
                    let invalidation =
                        Invalidation::user_profile_update(id, &before.email, &after.email);
                    Ok((after, Outbox::record(conn, invalidation).await?))
                })
                .await?;
            drop(conn);
            self.outbox.after_commit(recorded).await?;
            Ok(Response::new(to_proto(after)))
        }
        .await
        .map_err(|e: UserError| Status::from(e))
    }
}

fn to_proto(row: UserRow) -> User {
    User {
        id: row.id.to_string(),
        name: row.name,
        email: row.email,
        image: row.image,
        created_at: Some(time::to_proto(row.created_at)),
        updated_at: Some(time::to_proto(row.updated_at)),
    }
}
