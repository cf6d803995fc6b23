//! The `Idempotency-Key` header of creating `POST`s (SPEC §3): checked here
//! (a 400 naming the header), carried in gRPC metadata to the service that
//! writes, which keeps it with the first answer in its own database.

use std::future::{Ready, ready};

use actix_web::{FromRequest, HttpRequest, dev::Payload};
use huddle_common::{IDEMPOTENCY_CALLER_METADATA, IDEMPOTENCY_KEY_METADATA};
use huddle_domain::{RuleError, idempotency};

use crate::error::ApiError;

/// The request's key, if it sent one.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(Option<tonic::metadata::AsciiMetadataValue>);

impl IdempotencyKey {
    fn parse(req: &HttpRequest) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::from(RuleError::IdempotencyKey {
                field: idempotency::FIELD,
            })
        };
        let mut values = req.headers().get_all(idempotency::FIELD);
        let Some(value) = values.next() else {
            return Ok(Self(None));
        };
        if values.next().is_some() {
            return Err(ApiError::invalid(idempotency::FIELD, "must be sent once"));
        }
        let key = value.to_str().map_err(|_| invalid())?;
        let key = idempotency::key(key)?;
        Ok(Self(Some(key.parse().map_err(|_| invalid())?)))
    }

    /// Copies the key (if any) into a gRPC request's metadata.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(key) = &self.0 {
            request
                .metadata_mut()
                .insert(IDEMPOTENCY_KEY_METADATA, key.clone());
        }
    }

    /// [`IdempotencyKey::attach`] for a call whose message names no caller:
    /// the key is `caller`'s.
    pub fn attach_for<T>(&self, request: &mut tonic::Request<T>, caller: &str) {
        if self.0.is_none() {
            return;
        }
        self.attach(request);
        // A token subject may hold any character; escaped, it is a valid
        // metadata value that still tells every subject apart.
        let escaped: String = caller
            .bytes()
            .map(|b| match b {
                b'%' => "%25".to_owned(),
                b if b.is_ascii_graphic() => char::from(b).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect();
        if let Ok(caller) = escaped.parse() {
            request
                .metadata_mut()
                .insert(IDEMPOTENCY_CALLER_METADATA, caller);
        }
    }
}

impl FromRequest for IdempotencyKey {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Self::parse(req))
    }
}
