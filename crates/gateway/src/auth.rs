//! Who a request acts for. [`Auth`] carries the credentials keyring and the
//! nonce cache; each dialect verifies its own scheme through it
//! (`polymeter-auth` holds the algorithms) and passes the tenant on in every
//! internal request — never a tenant taken from a request body.

use polymeter_auth::{AuthError, Index, Keyring, NonceCache, SignedRequest, SigningKey};
use std::sync::Arc;

pub struct Auth {
    keyring: Keyring,
    nonces: NonceCache,
}

impl Auth {
    pub fn new(keyring: Keyring) -> Self {
        Self {
            keyring,
            nonces: NonceCache::default(),
        }
    }

    pub fn index(&self) -> Arc<Index> {
        self.keyring.current()
    }

    pub fn verify_acs3(&self, request: &SignedRequest<'_>) -> Result<SigningKey, AuthError> {
        polymeter_auth::acs3::verify(&self.index(), &self.nonces, request, chrono::Utc::now())
    }

    pub fn verify_bce(&self, request: &SignedRequest<'_>) -> Result<SigningKey, AuthError> {
        polymeter_auth::bce::verify(&self.index(), request, chrono::Utc::now())
    }
}

/// The parts of an HTTP request a signature covers.
pub fn signed_request<'a>(
    method: &'a axum::http::Method,
    uri: &'a axum::http::Uri,
    headers: &'a axum::http::HeaderMap,
    body: &'a [u8],
) -> SignedRequest<'a> {
    SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers,
        body,
    }
}

/// A fresh request id, as the vendor dialects return with every answer.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}
