//! `/healthz` (the gateway process is up) and `/readyz` (every service behind
//! it answers its gRPC health check).

use crate::api::Services;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Whether every service behind the gateway is ready.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Each service: `serving` or `unavailable`.
    pub services: BTreeMap<String, String>,
}

/// The gateway process is up.
#[utoipa::path(get, path = "/healthz", tag = "Operations",
    responses((status = 200, description = "Up", body = String, content_type = "text/plain")))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Every service behind the gateway answers its gRPC health check.
#[utoipa::path(get, path = "/readyz", tag = "Operations",
    responses((status = 200, description = "Ready", body = Readiness),
              (status = 503, description = "A service is not ready", body = Readiness)))]
pub(crate) async fn readyz(State(peers): State<Services>) -> (StatusCode, Json<Readiness>) {
    let mut ready = true;
    let mut services = BTreeMap::new();
    for (name, serving) in peers.health.readiness().await {
        ready &= serving;
        let state = if serving { "serving" } else { "unavailable" };
        services.insert(name.to_owned(), state.to_owned());
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Readiness { ready, services }))
}
