//! Who a request acts for. The gateway's state carries the credentials
//! keyring and the nonce cache; each dialect verifies its own scheme through
//! them (`polymeter-auth` holds the algorithms) and passes the tenant on in
//! every internal request — never a tenant taken from a request body.

use crate::backends::Backends;
use crate::error::GatewayError;
use crate::weave::WeaveError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use polymeter_auth::{AuthError, Index, Keyring, NonceCache, Principal, SignedRequest, SigningKey};
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

/// The router's state: the gRPC clients and the credentials.
#[derive(Clone)]
pub struct AppState {
    pub backends: Backends,
    pub auth: Arc<Auth>,
}

impl FromRef<AppState> for Backends {
    fn from_ref(state: &AppState) -> Self {
        state.backends.clone()
    }
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl From<AuthError> for GatewayError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Forbidden(m) => GatewayError::Forbidden(m),
            AuthError::NonceCacheFull => GatewayError::Unavailable(err.to_string()),
            AuthError::File { .. }
            | AuthError::Invalid(_)
            | AuthError::UnknownTenant(_)
            | AuthError::UnknownKey(_) => GatewayError::Internal(err.to_string()),
            _ => GatewayError::Unauthorized(err.to_string()),
        }
    }
}

/// A Weave request's verified caller (HTTP Basic with an API key).
pub struct WeaveCaller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for WeaveCaller
where
    Arc<Auth>: FromRef<S>,
{
    type Rejection = WeaveError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WeaveError> {
        let auth = Arc::<Auth>::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal =
            polymeter_auth::verify_basic(&auth.index(), header).map_err(GatewayError::from)?;
        Ok(WeaveCaller(principal))
    }
}

impl WeaveCaller {
    pub fn tenant(&self) -> String {
        self.0.tenant.clone()
    }

    /// Refuses a project outside the caller's tenant (or outside the key's
    /// project list); `field` names where the project id came from.
    pub fn check(&self, field: &str, project_id: &str) -> Result<(), GatewayError> {
        polymeter_model::ProjectId::check(project_id)
            .map_err(|e| GatewayError::BadRequest(format!("{field}: {e}")))?;
        if self.0.may_access(project_id) {
            Ok(())
        } else {
            Err(GatewayError::Forbidden(format!(
                "{field}: this API key has no access to project {project_id:?}"
            )))
        }
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
