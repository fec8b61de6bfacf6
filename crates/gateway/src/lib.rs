//! The gateway owns nothing durable. Each dialect module parses its vendor's
//! REST shapes, authenticates, and renders answers and errors in that vendor's
//! envelope; everything else happens in the services behind it, reached over
//! gRPC. A reader finds the internal request a route builds one hop away, in
//! its dialect module.

pub mod alibaba;
pub mod auth;
pub mod backends;
pub mod error;
mod exposition;
mod health;
pub mod json;
pub mod otel;
pub mod prices;
pub mod qianfan;
pub mod weave;

pub use auth::{AppState, Auth};
pub use backends::Backends;
pub use error::GatewayError;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Batches of calls can be large; 64 MiB matches the gRPC message limit.
const BODY_LIMIT: usize = 64 << 20;

/// Every route the gateway serves.
pub fn router(backends: Backends, auth: Arc<Auth>) -> Router {
    exposition::init();
    Router::new()
        .merge(health::routes())
        .merge(weave::routes())
        .merge(alibaba::routes())
        .merge(qianfan::routes())
        .merge(otel::routes())
        .merge(prices::routes())
        .route("/metrics", axum::routing::get(exposition::render))
        .route_layer(axum::middleware::from_fn(exposition::track))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |r: &axum::http::Request<axum::body::Body>| polymeter_telemetry::http_span(r),
            ),
        )
        .with_state(AppState { backends, auth })
}

/// Unknown routes answer in the Weave envelope, the gateway's default dialect.
async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> weave::WeaveError {
    GatewayError::NotFound(format!("no route for {method} {}", uri.path())).into()
}

/// Serves HTTP on `listener` until `shutdown` resolves, letting requests in
/// flight finish.
pub async fn serve(
    listener: TcpListener,
    backends: Backends,
    auth: Arc<Auth>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(backends, auth))
        .with_graceful_shutdown(shutdown)
        .await
}
