//! `/api/users` routes: validate, authorise, call user-service, shape the JSON.

use actix_web::{HttpResponse, http::StatusCode, web};
use huddle_proto::user::v1::{
    CreateUserRequest, GetUserByEmailRequest, GetUserRequest, UpdateUserRequest, User,
};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Admin, Principal};
use crate::coalesce::{Coalescer, ReadKey};
use crate::error::{ApiError, ErrorBody};
use crate::idempotency::IdempotencyKey;
use crate::request_id::RequestId;
use crate::route::resource;
use crate::{Backends, Success, success};
use huddle_domain::{id as ids, time, user as rules};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/users").route(web::post().to(create_user)))
        // Before `/api/users/{id}`, so `by-email` is never read as an id.
        .service(resource("/api/users/by-email").route(web::get().to(get_user_by_email)))
        .service(
            resource("/api/users/{id}")
                .route(web::get().to(get_user))
                .route(web::patch().to(update_user)),
        );
}

/// A user as the API shows it. `email` is present only for the user
/// themself and for admins.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    pub email: Option<String>,
    #[schema(required = true)]
    pub image: Option<String>,
    #[schema(format = DateTime, example = "2025-01-31T12:00:00.000Z")]
    pub created_at: String,
    #[schema(format = DateTime, example = "2025-01-31T12:00:00.000Z")]
    pub updated_at: String,
}

impl UserResponse {
    fn from_proto(user: User, show_email: bool) -> Result<Self, ApiError> {
        Ok(Self {
            created_at: rfc3339(user.created_at, "created_at")?,
            updated_at: rfc3339(user.updated_at, "updated_at")?,
            email: show_email.then_some(user.email),
            id: user.id,
            name: user.name,
            image: user.image,
        })
    }
}

/// A user without timestamps breaks the service contract: that is our bug
/// (500), not the caller's.
fn rfc3339(ts: Option<prost_types::Timestamp>, field: &str) -> Result<String, ApiError> {
    ts.as_ref()
        .and_then(time::from_proto)
        .map(time::to_rfc3339)
        .ok_or_else(|| {
            tracing::error!(
                field,
                "user-service returned a user without a valid timestamp"
            );
            ApiError::internal()
        })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserBody {
    #[schema(example = "Ada Lovelace", min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(example = "ada@example.com", max_length = 254)]
    pub email: String,
    #[serde(default)]
    #[schema(
        example = "https://cdn.example.com/ada.png",
        max_length = 2048,
        nullable
    )]
    pub image: Option<String>,
}

/// Fields left out are not changed; `"image": null` removes the image.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserBody {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, required = false, example = "Ada King", min_length = 1, max_length = 100)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, nullable, max_length = 2048)]
    pub image: Option<Option<String>>,
}

/// Tells `"field": null` (`Some(None)`) apart from a missing field (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ByEmailQuery {
    /// The address to look up (case-insensitive).
    #[param(example = "ada@example.com")]
    pub email: String,
}

/// Create a user.
#[utoipa::path(
    post,
    path = "/api/users",
    tag = "users",
    request_body = CreateUserBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Success<UserResponse>),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 409, description = "Email already in use", body = ErrorBody),
    )
)]
pub async fn create_user(
    admin: Admin,
    rid: RequestId,
    key: IdempotencyKey,
    backends: web::Data<Backends>,
    body: web::Json<CreateUserBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let message = CreateUserRequest {
        name: rules::name(&body.name)?,
        email: rules::email(&body.email)?,
        image: body.image.as_deref().map(rules::image_url).transpose()?,
    };
    let mut request = backends.request(message, &rid);
    key.attach_for(&mut request, &admin.subject);
    let user = backends.users().create_user(request).await?.into_inner();
    Ok(success(
        StatusCode::CREATED,
        UserResponse::from_proto(user, true)?,
    ))
}

/// Look a user up by email.
#[utoipa::path(
    get,
    path = "/api/users/by-email",
    tag = "users",
    params(ByEmailQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = Success<UserResponse>),
        (status = 400, description = "Invalid email", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn get_user_by_email(
    _admin: Admin,
    rid: RequestId,
    backends: web::Data<Backends>,
    query: web::Query<ByEmailQuery>,
) -> Result<HttpResponse, ApiError> {
    let message = GetUserByEmailRequest {
        email: rules::email(&query.email)?,
    };
    let user = backends
        .users()
        .get_user_by_email(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::OK,
        UserResponse::from_proto(user, true)?,
    ))
}

/// Get a user. The email is shown only to the user themself and to admins.
#[utoipa::path(
    get,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "User id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = Success<UserResponse>),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn get_user(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    reads: web::Data<Coalescer>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    let show_email = principal.admin || principal.is_user(id);
    let key = ReadKey::User {
        id,
        email: show_email,
    };
    reads
        .serve(key, || async {
            let message = GetUserRequest { id: id.to_string() };
            let user = backends
                .users()
                .get_user(backends.request(message, &rid))
                .await?
                .into_inner();
            UserResponse::from_proto(user, show_email)
        })
        .await
}

/// Update your own name or image.
#[utoipa::path(
    patch,
    path = "/api/users/{id}",
    tag = "users",
    params(("id" = Uuid, Path, description = "User id; must be the caller's own")),
    request_body = UpdateUserBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated user", body = Success<UserResponse>),
        (status = 400, description = "Invalid input or nothing to update", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the caller's own profile", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    )
)]
pub async fn update_user(
    principal: Principal,
    rid: RequestId,
    backends: web::Data<Backends>,
    id: web::Path<String>,
    body: web::Json<UpdateUserBody>,
) -> Result<HttpResponse, ApiError> {
    let id = ids::parse("id", &id)?;
    principal.require_self(id)?;
    let message = update_request(id, body.into_inner())?;
    let user = backends
        .users()
        .update_user(backends.request(message, &rid))
        .await?
        .into_inner();
    Ok(success(
        StatusCode::OK,
        UserResponse::from_proto(user, true)?,
    ))
}

fn update_request(id: Uuid, body: UpdateUserBody) -> Result<UpdateUserRequest, ApiError> {
    let name = match body.name {
        None => None,
        Some(None) => return Err(ApiError::invalid("name", "must not be null")),
        Some(Some(name)) => Some(rules::name(&name)?),
    };
    let (image, clear_image) = match body.image {
        None => (None, false),
        Some(None) => (None, true),
        Some(Some(url)) => (Some(rules::image_url(&url)?), false),
    };
    if name.is_none() && image.is_none() && !clear_image {
        return Err(ApiError::bad_request("nothing to update"));
    }
    Ok(UpdateUserRequest {
        id: id.to_string(),
        name,
        image,
        clear_image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> UpdateUserBody {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn update_distinguishes_null_image_from_missing_image() {
        let id = Uuid::new_v4();
        let req = update_request(id, body(r#"{"image": null}"#)).unwrap();
        assert!(req.clear_image);
        assert_eq!(req.image, None);
        assert_eq!(req.name, None);

        let req = update_request(id, body(r#"{"name": " Ada "}"#)).unwrap();
        assert!(!req.clear_image);
        assert_eq!(req.name.as_deref(), Some("Ada"));
        assert_eq!(req.id, id.to_string());

        let req = update_request(id, body(r#"{"image": "https://x.test/a.png"}"#)).unwrap();
        assert_eq!(req.image.as_deref(), Some("https://x.test/a.png"));
    }

    #[test]
    fn empty_or_null_name_updates_are_rejected() {
        let id = Uuid::new_v4();
        assert_eq!(
            update_request(id, body("{}")).unwrap_err().message,
            "nothing to update"
        );
        assert_eq!(
            update_request(id, body(r#"{"name": null}"#))
                .unwrap_err()
                .message,
            "name: must not be null"
        );
        assert!(serde_json::from_str::<UpdateUserBody>(r#"{"email": "a@b.c"}"#).is_err());
    }

    #[test]
    fn email_is_only_rendered_when_allowed() {
        let user = User {
            id: Uuid::new_v4().to_string(),
            name: "Ada".into(),
            email: "ada@example.com".into(),
            image: None,
            created_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_000_000,
            }),
            updated_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        };
        let hidden =
            serde_json::to_value(UserResponse::from_proto(user.clone(), false).unwrap()).unwrap();
        assert!(hidden.get("email").is_none());
        assert_eq!(hidden["image"], serde_json::Value::Null);
        assert_eq!(hidden["createdAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(hidden["updatedAt"], "2023-11-14T22:13:20.000Z");
        let shown = serde_json::to_value(UserResponse::from_proto(user, true).unwrap()).unwrap();
        assert_eq!(shown["email"], "ada@example.com");
    }

    #[test]
    fn a_user_without_timestamps_is_an_internal_error() {
        let user = User {
            id: Uuid::new_v4().to_string(),
            ..User::default()
        };
        let err = UserResponse::from_proto(user, true).unwrap_err();
        assert_eq!(err.status().as_u16(), 500);
    }
}
