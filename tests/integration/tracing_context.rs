//! W3C trace context flows from an HTTP client through the gateway and over
//! gRPC to ingest and stats: every hop's span joins the caller's
//! trace, as a child of the hop before it.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use polymeter_tests::{json, TestStack};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tracing_subscriber::layer::SubscriberExt;

/// The test binary's one subscriber: spans go to memory.
fn exporter() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        polymeter_telemetry::install_propagator();
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::set_global_default(subscriber)
            .expect("one global subscriber per test binary");
        (exporter, provider)
    })
}

fn rpc(span: &SpanData) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == "rpc")
        .map(|kv| kv.value.to_string())
}

#[tokio::test]
async fn trace_context_flows_through_every_service() {
    let (exporter, provider) = exporter();
    let stack = TestStack::start().await;
    let c = &stack.client;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    c.post_traced(
        "/call/start",
        &json!({"start": {"project_id": "acme/bot", "op_name": "chat", "started_at": "2024-05-01T10:00:00Z"}}),
        &traceparent,
    )
    .await
    .ok();

    // Server spans close as their responses finish; give them a moment.
    let wanted = [
        "/polymeter.v1.IngestService/IngestWeaveCalls",
        "/polymeter.v1.StatsService/AppendCalls",
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    let spans = loop {
        let _ = provider.force_flush();
        let spans: Vec<SpanData> = exporter
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|s| s.span_context.trace_id().to_string() == trace_id)
            .collect();
        let rpcs: Vec<String> = spans.iter().filter_map(rpc).collect();
        if wanted.iter().all(|w| rpcs.iter().any(|r| r == w)) || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| rpc(s).as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no {name} span in trace {trace_id}: {spans:#?}"))
    };
    let http = spans
        .iter()
        .find(|s| s.name == "http")
        .expect("the gateway's span joins the client's trace");
    assert_eq!(http.parent_span_id.to_string(), "00f067aa0ba902b7");
    let ingest = find(wanted[0]);
    let stats = find(wanted[1]);
    assert_eq!(
        ingest.parent_span_id,
        http.span_context.span_id(),
        "ingest is a child of the gateway"
    );
    assert_eq!(
        stats.parent_span_id,
        ingest.span_context.span_id(),
        "stats is a child of ingest"
    );
    stack.stop().await;
}
