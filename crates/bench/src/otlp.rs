//! OTLP/HTTP ingest through the gateway: `polymeter up` (durable store, fsync
//! on every acknowledged batch) takes protobuf `ExportTraceServiceRequest`s of
//! GenAI spans from concurrent clients; prints spans per second, then checks
//! every span became a call.

use anyhow::{bail, Result};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use std::path::Path;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// Batch `b` of `size` spans, one trace per 4 spans, over one hour.
fn batch(b: u64, size: u64) -> Vec<u8> {
    const BASE_NS: u64 = 1_714_557_600_000_000_000;
    let models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "qwen-max"];
    let spans = (0..size)
        .map(|i| {
            let n = b * size + i;
            let start = BASE_NS + (n % 3_600_000) * 1_000_000;
            Span {
                trace_id: ((n / 4) as u128 + 1).to_be_bytes().to_vec(),
                span_id: (n + 1).to_be_bytes().to_vec(),
                parent_span_id: if n.is_multiple_of(4) {
                    vec![]
                } else {
                    ((n - n % 4) + 1).to_be_bytes().to_vec()
                },
                name: "chat".into(),
                start_time_unix_nano: start,
                end_time_unix_nano: start + 1_000_000 * (50 + n % 2000),
                attributes: vec![
                    kv("gen_ai.operation.name", Value::StringValue("chat".into())),
                    kv(
                        "gen_ai.response.model",
                        Value::StringValue(models[(n % 4) as usize].into()),
                    ),
                    kv(
                        "gen_ai.usage.input_tokens",
                        Value::IntValue((n % 4000) as i64),
                    ),
                    kv(
                        "gen_ai.usage.output_tokens",
                        Value::IntValue((n % 700) as i64),
                    ),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

pub async fn run(
    polymeter: &Path,
    dir: &Path,
    spans: u64,
    batch_size: u64,
    clients: usize,
) -> Result<()> {
    let (mut child, base, key) = crate::up::start(polymeter, &dir.join("otlp")).await?;
    let batches = spans.div_ceil(batch_size);
    println!("otlp: encoding {batches} batches of {batch_size} spans");
    let bodies: Vec<Vec<u8>> = (0..batches).map(|b| batch(b, batch_size)).collect();
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("project_id", "bench/otlp"),
    ];
    let elapsed =
        crate::up::post_all(&base, &key, "/otel/v1/traces", &headers, bodies, clients).await?;
    let sent = batches * batch_size;
    println!(
        "otlp: {sent} spans in {elapsed:.2} s over {clients} clients = {:.0} spans/s (target 100,000; ratio {:.2})",
        sent as f64 / elapsed,
        sent as f64 / elapsed / 100_000.0
    );
    let stored = crate::up::calls_stored(&base, &key, "bench/otlp").await?;
    println!("otlp: {stored} calls stored (expected {sent})");
    let _ = child.kill();
    let _ = child.wait();
    if stored != sent {
        bail!("{stored} calls stored, {sent} spans sent");
    }
    Ok(())
}
