//! The router's state: the services behind the gateway and the credentials.

use crate::api::Services;
use crate::auth::Auth;
use axum::extract::FromRef;
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub auth: Arc<Auth>,
    /// In-flight bounds; dialects take a tenant's slot through it.
    pub gate: Arc<crate::limits::Gate>,
}

impl FromRef<AppState> for Arc<crate::limits::Gate> {
    fn from_ref(state: &AppState) -> Self {
        state.gate.clone()
    }
}

impl FromRef<AppState> for Services {
    fn from_ref(state: &AppState) -> Self {
        state.services.clone()
    }
}

impl FromRef<AppState> for Arc<Auth> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}
