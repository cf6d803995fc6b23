//! Bearer-token authentication: HS256 JWTs with a required `exp`, a `sub`
//! that is the user id, and an optional `role: "admin"`.

use std::future::{Ready, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::header, web};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

const ADMIN_ROLE: &str = "admin";
/// Tolerated clock skew between the minting and the verifying host.
const LEEWAY_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: authorization header must be `Bearer <token>`")]
    NotBearer,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("invalid token: subject of a user token must be a user id")]
    SubjectNotUuid,
    #[error("cannot mint token: {0}")]
    Mint(#[from] jsonwebtoken::errors::Error),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Mint(_) => ApiError::internal(),
            other => ApiError::unauthenticated(other.to_string()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    /// Optional here only so a missing `exp` is reported as such by the
    /// validation (which requires it) rather than as a malformed token.
    exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
}

/// Who is calling. A user token always has a `user_id`; an admin token has
/// one only when its subject happens to be a user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Option<Uuid>,
    pub admin: bool,
}

impl Principal {
    /// Being an admin does not make you every user: self-only routes compare ids.
    pub fn is_user(&self, id: Uuid) -> bool {
        self.user_id == Some(id)
    }

    pub fn require_self(&self, id: Uuid) -> Result<(), ApiError> {
        if self.is_user(id) {
            Ok(())
        } else {
            Err(ApiError::forbidden("only the user themself may do this"))
        }
    }
}

/// Mints an HS256 token valid for `ttl`. A user token's subject must be a
/// user id, or the gateway would refuse the token it just minted.
pub fn mint_token(
    secret: &str,
    subject: &str,
    admin: bool,
    ttl: Duration,
) -> Result<String, AuthError> {
    if !admin && Uuid::parse_str(subject).is_err() {
        return Err(AuthError::SubjectNotUuid);
    }
    let now = unix_now();
    let claims = Claims {
        sub: subject.to_owned(),
        exp: Some(now.saturating_add(ttl.as_secs())),
        iat: Some(now),
        role: admin.then(|| ADMIN_ROLE.to_owned()),
    };
    let key = EncodingKey::from_secret(secret.as_bytes());
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Verifies tokens with the gateway's secret; held in app data so two
/// gateways with different secrets can share a process.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_with_subject(token)
            .map(|(principal, _)| principal)
    }

    /// [`JwtVerifier::verify`], with the token's subject (an admin's is
    /// any string).
    fn verify_with_subject(&self, token: &str) -> Result<(Principal, String), AuthError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::MissingRequiredClaim(_) => AuthError::Invalid("missing exp claim"),
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature"),
                ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm must be HS256"),
                _ => AuthError::Invalid("malformed token"),
            })?
            .claims;
        let admin = claims.role.as_deref() == Some(ADMIN_ROLE);
        let user_id = Uuid::parse_str(&claims.sub).ok();
        if !admin && user_id.is_none() {
            return Err(AuthError::SubjectNotUuid);
        }
        Ok((Principal { user_id, admin }, claims.sub))
    }

    /// Reads `Authorization: Bearer <token>` (scheme case-insensitive).
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Principal, AuthError> {
        self.authenticate_with_subject(req)
            .map(|(principal, _)| principal)
    }

    fn authenticate_with_subject(
        &self,
        req: &HttpRequest,
    ) -> Result<(Principal, String), AuthError> {
        let value = req
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::NotBearer)?.trim();
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.verify_with_subject(token)
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(|(principal, _)| principal))
    }
}

/// The request's principal and token subject, by the app's verifier.
fn authenticate(req: &HttpRequest) -> Result<(Principal, String), ApiError> {
    let Some(verifier) = req.app_data::<web::Data<JwtVerifier>>() else {
        tracing::error!("JwtVerifier missing from app data");
        return Err(ApiError::internal());
    };
    Ok(verifier.authenticate_with_subject(req)?)
}

/// A principal with the admin role. As an extractor it is checked before the
/// body is parsed, so a non-admin learns nothing about input validation.
#[derive(Debug, Clone)]
pub struct Admin {
    pub principal: Principal,
    /// The token's subject: whose idempotency keys an admin's are.
    pub subject: String,
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let (principal, subject) = match authenticate(req) {
            Ok(found) => found,
            Err(e) => return ready(Err(e)),
        };
        if principal.admin {
            ready(Ok(Admin { principal, subject }))
        } else {
            ready(Err(ApiError::forbidden("admin token required")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    const SECRET: &str = "test-secret";

    fn raw_token(claims: serde_json::Value, secret: &str) -> String {
        let key = EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    #[test]
    fn a_minted_user_token_verifies() {
        let id = Uuid::new_v4();
        let token = mint_token(SECRET, &id.to_string(), false, Duration::from_secs(60)).unwrap();
        let principal = JwtVerifier::new(SECRET).verify(&token).unwrap();
        assert_eq!(
            principal,
            Principal {
                user_id: Some(id),
                admin: false
            }
        );
        assert!(principal.is_user(id));
        assert!(!principal.is_user(Uuid::new_v4()));
    }

    #[test]
    fn an_admin_token_may_have_any_subject() {
        let token = mint_token(SECRET, "ops", true, Duration::from_secs(60)).unwrap();
        let principal = JwtVerifier::new(SECRET).verify(&token).unwrap();
        assert!(principal.admin);
        assert_eq!(principal.user_id, None);
        assert!(principal.require_self(Uuid::new_v4()).is_err());
    }

    #[test]
    fn an_expired_token_is_reported_as_expired() {
        let claims = serde_json::json!({"sub": Uuid::new_v4().to_string(), "exp": unix_now() - 60});
        let err = JwtVerifier::new(SECRET)
            .verify(&raw_token(claims, SECRET))
            .unwrap_err();
        assert!(matches!(err, AuthError::Expired), "{err}");
        assert_eq!(err.to_string(), "token expired");
    }

    #[test]
    fn a_token_without_exp_is_invalid() {
        let claims = serde_json::json!({"sub": Uuid::new_v4().to_string()});
        let err = JwtVerifier::new(SECRET)
            .verify(&raw_token(claims, SECRET))
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid token: missing exp claim");
    }

    #[test]
    fn a_token_signed_with_another_secret_is_invalid() {
        let token = mint_token(
            "other",
            &Uuid::new_v4().to_string(),
            false,
            Duration::from_secs(60),
        )
        .unwrap();
        let err = JwtVerifier::new(SECRET).verify(&token).unwrap_err();
        assert_eq!(err.to_string(), "invalid token: bad signature");
    }

    #[test]
    fn a_user_token_needs_a_uuid_subject() {
        let claims = serde_json::json!({"sub": "alice", "exp": unix_now() + 60});
        let err = JwtVerifier::new(SECRET)
            .verify(&raw_token(claims, SECRET))
            .unwrap_err();
        assert!(matches!(err, AuthError::SubjectNotUuid));
        assert!(mint_token(SECRET, "alice", false, Duration::from_secs(60)).is_err());
        // An unknown role does not grant admin rights.
        let claims = serde_json::json!({"sub": "alice", "exp": unix_now() + 60, "role": "root"});
        assert!(
            JwtVerifier::new(SECRET)
                .verify(&raw_token(claims, SECRET))
                .is_err()
        );
    }

    #[test]
    fn garbage_is_invalid_not_a_panic() {
        let verifier = JwtVerifier::new(SECRET);
        for token in ["", "abc", "a.b.c", "..."] {
            assert!(matches!(verifier.verify(token), Err(AuthError::Invalid(_))));
        }
    }

    #[test]
    fn the_authorization_header_must_carry_a_bearer_token() {
        let verifier = JwtVerifier::new(SECRET);
        let token = mint_token(
            SECRET,
            &Uuid::new_v4().to_string(),
            false,
            Duration::from_secs(60),
        )
        .unwrap();
        let req = TestRequest::default().to_http_request();
        assert!(matches!(
            verifier.authenticate(&req),
            Err(AuthError::Missing)
        ));
        let req = TestRequest::default()
            .insert_header(("authorization", format!("Basic {token}")))
            .to_http_request();
        assert!(matches!(
            verifier.authenticate(&req),
            Err(AuthError::NotBearer)
        ));
        let req = TestRequest::default()
            .insert_header(("authorization", format!("bearer {token}")))
            .to_http_request();
        assert!(verifier.authenticate(&req).is_ok());
    }
}
