//! The gateway owns nothing durable. Each dialect module parses its vendor's
//! REST shapes, authenticates, and renders answers and errors in that vendor's
//! envelope; everything else happens in the services behind it.
//!
//! The path of every query is: dialect handler → its `translate` (vendor
//! request → `polymeter.v1` request) → a service trait of [`api`] → gRPC
//! ([`grpc`]) → the service → its store; the answer comes back through the
//! dialect's `render`. Errors are kinds of the one vocabulary ([`error`]),
//! which each dialect maps to its vendor's codes in one table.

pub mod alibaba;
pub mod api;
pub mod auth;
pub mod error;
mod exposition;
pub mod grpc;
mod health;
pub mod json;
pub mod limits;
pub mod openapi;
pub mod otel;
pub mod prices;
pub mod qianfan;
pub mod state;
pub mod weave;

#[cfg(test)]
mod testing;

pub use api::Services;
pub use auth::Auth;
pub use limits::Limits;
pub use state::AppState;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Every route the gateway serves.
pub fn router(services: Services, auth: Arc<Auth>, limits: Limits) -> Router {
    exposition::init();
    let gate = Arc::new(limits::Gate::new(&limits));
    Router::new()
        .merge(health::routes())
        .merge(weave::routes())
        .merge(alibaba::routes())
        .merge(qianfan::routes())
        .merge(otel::routes())
        .merge(prices::routes())
        .route("/metrics", axum::routing::get(exposition::render))
        .route("/openapi.json", axum::routing::get(openapi::openapi_json))
        .route_layer(axum::middleware::from_fn(exposition::track))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(polymeter_proto::MESSAGE_LIMIT))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            limits.body_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            gate.clone(),
            limits::shed,
        ))
        .layer(axum::middleware::from_fn(limits::retry_after))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(
            tower_http::trace::TraceLayer::new_for_http().make_span_with(
                |r: &axum::http::Request<axum::body::Body>| polymeter_telemetry::http_span(r),
            ),
        )
        .with_state(AppState {
            services,
            auth,
            gate,
        })
}

/// A handler that panicked (a bug) still answers: 500 in the Weave envelope,
/// the gateway's default, rather than a dropped connection.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    axum::response::IntoResponse::into_response(weave::WeaveError::new(error::Error::internal(
        "internal error: the gateway failed on this request",
    )))
}

/// Unknown routes answer in the Weave envelope, the gateway's default dialect.
async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> weave::WeaveError {
    error::Error::not_found(format!("no route for {method} {}", uri.path())).into()
}

/// Serves HTTP on `listener` until `shutdown` resolves, letting requests in
/// flight finish.
pub async fn serve(
    listener: TcpListener,
    services: Services,
    auth: Arc<Auth>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(services, auth, limits))
        .with_graceful_shutdown(shutdown)
        .await
}
