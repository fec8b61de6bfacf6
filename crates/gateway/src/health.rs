//! `/healthz` (the gateway process is up) and `/readyz` (every service behind
//! it answers its gRPC health check).

use crate::auth::AppState;
use crate::backends::Backends;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
}

async fn readyz(State(backends): State<Backends>) -> (StatusCode, Json<Value>) {
    let mut ready = true;
    let mut services = serde_json::Map::new();
    for (name, channel) in &backends.channels {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        let serving = matches!(&status, Ok(r) if r.get_ref().status() == ServingStatus::Serving);
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
