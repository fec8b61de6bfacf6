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
mod console;
pub mod error;
mod exposition;
pub mod grpc;
mod health;
pub mod json;
pub mod limits;
pub mod openapi;
pub mod otel;
pub mod prices;
pub mod projects;
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
        .merge(projects::routes())
        .merge(console::routes())
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
        .layer(axum::middleware::from_fn(console::no_challenge_for_scripts))
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

/// A request body read whole, within `limit` bytes and `--body-timeout`,
/// counting what arrives against the caller's [`limits::BodyBudget`] so that
/// bodies in flight stay within the tenant's and the gateway's share; for
/// handlers that check the caller before reading.
pub(crate) async fn read_body_within(
    body: axum::body::Body,
    budget: Option<&limits::BodyBudget>,
    limit: usize,
) -> Result<axum::body::Bytes, error::Error> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut read = axum::body::Bytes::new();
    let mut parts: Vec<axum::body::Bytes> = Vec::new();
    let mut length = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| error::Error::invalid(format!("request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        length += data.len();
        if length > limit {
            return Err(error::Error::new(
                error::ErrorKind::PayloadTooLarge,
                format!("request body: longer than the limit of {limit} bytes"),
            ));
        }
        if let Some(budget) = budget {
            budget.take(data.len())?;
        }
        if read.is_empty() && parts.is_empty() {
            read = data;
        } else {
            parts.push(data);
        }
    }
    if parts.is_empty() {
        return Ok(read);
    }
    // Several frames: one copy into a buffer of the exact length.
    let mut whole = Vec::with_capacity(length);
    whole.extend_from_slice(&read);
    for part in parts {
        whole.extend_from_slice(&part);
    }
    Ok(whole.into())
}

/// [`read_body_within`] the gateway's message limit (`MESSAGE_LIMIT`).
pub(crate) async fn read_body(
    body: axum::body::Body,
    budget: Option<&limits::BodyBudget>,
) -> Result<axum::body::Bytes, error::Error> {
    read_body_within(body, budget, polymeter_proto::MESSAGE_LIMIT).await
}

/// Unknown routes answer in the Weave envelope, the gateway's default dialect.
async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> weave::WeaveError {
    error::Error::not_found(format!("no route for {method} {}", uri.path())).into()
}

/// Serves HTTP on `listener` until `shutdown` resolves, letting requests in
/// flight finish. Each connection is served by hyper directly (rather than
/// `axum::serve`) so that slow clients are bounded: request headers must
/// arrive within `limits.header_timeout`, and an idle keep-alive connection
/// is closed after the same time (HTTP/1 and HTTP/2 alike).
pub async fn serve(
    listener: TcpListener,
    services: Services,
    auth: Arc<Auth>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use tower::Service;

    let app = router(services, auth, limits);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors or a reset before accept: keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let header_timeout = limits.header_timeout;
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                app.clone().call(request.map(axum::body::Body::new))
            });
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(limits.header_timeout))
            .keep_alive_timeout(limits.header_timeout);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // Telling HTTP/1 from HTTP/2 waits for the first bytes, with no
            // timer of hyper's running yet: a client that connects and sends
            // nothing is closed here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .into_owned();
            // A client that went away or sent garbage ends only its connection.
            let _ = watcher.watch(connection).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
