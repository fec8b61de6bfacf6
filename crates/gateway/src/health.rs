//! `/healthz` (the gateway process is up) and `/readyz` (every service behind
//! it answers its gRPC health check).

use crate::api::Services;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
}

async fn readyz(State(backends): State<Services>) -> (StatusCode, Json<Value>) {
    let mut ready = true;
    let mut services = serde_json::Map::new();
    for (name, serving) in backends.health.readiness().await {
        ready &= serving;
        services.insert(
            (*name).into(),
            json!(if serving { "serving" } else { "unavailable" }),
        );
    }
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({ "ready": ready, "services": services })))
}
