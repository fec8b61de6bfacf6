//! `/metrics`: Prometheus text exposition of the process's metrics (under
//! `polymeter up`, every service's), and the gateway's own: requests and
//! latencies labelled by route template (never by raw path, so ids in paths
//! cannot explode the label set), shed requests, expired deadlines, and
//! authentication refusals by reason.

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

const DURATION: &str = "polymeter_http_request_duration_seconds";
const REQUESTS: &str = "polymeter_http_requests_total";

/// Installs the process's recorder; call once when building the router.
pub fn init() {
    polymeter_telemetry::metrics::handle();
}

/// Middleware: counts and times every request by method, route and status.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!(REQUESTS, &labels).increment(1);
    metrics::histogram!(DURATION, &labels).record(started.elapsed().as_secs_f64());
    response
}

pub async fn render() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        polymeter_telemetry::metrics::render(),
    )
}

/// A request shed by a limit (`gateway`: every slot taken; `tenant`: the
/// tenant's share taken; `tenant_bytes`/`gateway_bytes`: request bodies in
/// flight past the tenant's or the gateway's byte budget).
pub fn shed(limit: &'static str) {
    metrics::counter!("polymeter_http_shed_total", "limit" => limit).increment(1);
}

/// A call to a service whose deadline passed.
pub fn deadline_expired(service: &'static str) {
    metrics::counter!("polymeter_deadline_expired_total", "service" => service).increment(1);
}

/// A request refused for its credentials, by the reason the dialect saw.
pub fn auth_refused(reason: &'static str) {
    metrics::counter!("polymeter_auth_refusals_total", "reason" => reason).increment(1);
}
