//! Logs, traces and metrics for every Polymeter process.
//!
//! * [`metrics`]: the process's Prometheus recorder, its endpoint, and the
//!   layer that counts every gRPC call a service serves.
//! * [`init`] installs the process's subscriber: text or JSON log lines, and
//!   OpenTelemetry spans, exported over OTLP/gRPC when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_TRACES_ENDPOINT`) is set.
//! * W3C trace context flows through every hop: [`http_span`] and
//!   [`grpc_span`] open a request's span as a child of the caller's
//!   `traceparent`, and [`traced`] puts the current span's context on an
//!   outgoing gRPC request. Spans always carry real trace ids, so the context
//!   flows even when nothing is exported.

pub mod metrics;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{global, Context};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes and stops span export when dropped.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.provider.shutdown();
    }
}

fn exporting() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|e| !e.is_empty()))
}

/// W3C `traceparent`/`tracestate` for every process-wide propagation.
pub fn install_propagator() {
    global::set_text_map_propagator(TraceContextPropagator::new());
}

/// Installs the subscriber for a process named `service` (`RUST_LOG` filters,
/// default `info`).
pub fn init(json: bool, service: &'static str) -> anyhow::Result<Telemetry> {
    install_propagator();
    let mut builder = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build());
    if exporting() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if json {
        tracing_subscriber::fmt::layer().json().boxed()
    } else {
        tracing_subscriber::fmt::layer().boxed()
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("polymeter")))
        .try_init()?;
    Ok(Telemetry { provider })
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Metadata<'a>(&'a mut MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(&value),
        ) {
            self.0.insert(key, value);
        }
    }
}

fn caller(headers: &http::HeaderMap) -> Context {
    global::get_text_map_propagator(|p| p.extract(&Headers(headers)))
}

/// The span of one HTTP request, a child of the caller's `traceparent`.
pub fn http_span<B>(request: &http::Request<B>) -> tracing::Span {
    let span = tracing::info_span!(
        "http",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = tracing::field::Empty
    );
    let _ = span.set_parent(caller(request.headers()));
    record_trace_id(&span);
    span
}

/// Puts the span's trace id among its fields, so every log line written
/// inside it carries the id (logs and traces can then be joined).
fn record_trace_id(span: &tracing::Span) {
    use opentelemetry::trace::TraceContextExt;
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// The span of one gRPC call (for tonic's `Server::trace_fn`), a child of the
/// caller's `traceparent` metadata.
pub fn grpc_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc",
        rpc = %request.uri().path(),
        trace_id = tracing::field::Empty
    );
    let _ = span.set_parent(caller(request.headers()));
    record_trace_id(&span);
    span
}

/// A gRPC request carrying the current span's trace context.
pub fn traced<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Metadata(request.metadata_mut()))
    });
    request
}

#[cfg(test)]
mod trace_id_tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// A log line written while serving a request names the caller's trace.
    #[test]
    fn log_lines_carry_the_callers_trace_id() {
        install_propagator();
        let provider = SdkTracerProvider::builder().build();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(move || Writer(sink.clone())),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("t")));
        tracing::subscriber::with_default(subscriber, || {
            let request = http::Request::builder()
                .uri("/calls/stats")
                .header(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )
                .body(())
                .unwrap();
            let span = http_span(&request);
            let _inside = span.enter();
            tracing::info!("answered");
        });
        let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
        assert!(text.contains("0af7651916cd43dd8448eb211c80319c"), "{text}");
    }

    struct Writer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
