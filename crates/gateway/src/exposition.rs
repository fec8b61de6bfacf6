//! `/metrics`: Prometheus text exposition of the gateway's request counters
//! and latencies, labelled by route template (never by raw path, so ids in
//! paths cannot explode the label set).

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

const DURATION: &str = "polymeter_http_request_duration_seconds";
const REQUESTS: &str = "polymeter_http_requests_total";

/// The process's one Prometheus recorder (every stack in a process shares it).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let buckets = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(DURATION.into()), &buckets)
            .expect("bucket list is not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a host embedding the
        // gateway); then /metrics shows what this one sees, which is nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Installs the recorder; call once when building the router.
pub fn init() {
    handle();
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
        handle().render(),
    )
}

/// A request shed by a limit (`gateway`: every slot taken; `tenant`: the
/// tenant's share taken).
pub fn shed(limit: &'static str) {
    metrics::counter!("polymeter_http_shed_total", "limit" => limit).increment(1);
}

/// A call to a service whose deadline passed.
pub fn deadline_expired(service: &'static str) {
    metrics::counter!("polymeter_deadline_expired_total", "service" => service).increment(1);
}
