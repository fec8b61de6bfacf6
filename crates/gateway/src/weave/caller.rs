//! A Weave request's verified caller: HTTP Basic with a Polymeter API key
//! (`Authorization: Basic base64("api:<key>")`), as W&B clients send it.

use super::WeaveError;
use crate::auth::Auth;
use crate::error::Error;
use crate::limits::{Admission, Gate};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use polymeter_auth::Principal;
use std::sync::Arc;

pub struct WeaveCaller(pub Principal, #[allow(dead_code)] Admission);

impl<S: Send + Sync> FromRequestParts<S> for WeaveCaller
where
    Arc<Auth>: FromRef<S>,
    Arc<Gate>: FromRef<S>,
{
    type Rejection = WeaveError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, WeaveError> {
        let auth = Arc::<Auth>::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = polymeter_auth::verify_basic(&auth.index(), header).map_err(Error::from)?;
        // The tenant's share of the gateway, held until the answer is out.
        let admission = Arc::<Gate>::from_ref(state).admit(&principal.tenant)?;
        // The body, read after this (by `WeaveBody`), counts against it.
        parts.extensions.insert(admission.budget());
        Ok(WeaveCaller(principal, admission))
    }
}

impl WeaveCaller {
    pub fn tenant(&self) -> String {
        self.0.tenant.clone()
    }

    /// Refuses a project outside the caller's tenant (or outside the key's
    /// project list); `field` names where the project id came from.
    pub fn check(&self, field: &str, project_id: &str) -> Result<(), Error> {
        Ok(self.0.authorize(field, project_id)?)
    }
}
