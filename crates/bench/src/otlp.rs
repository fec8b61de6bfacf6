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
use std::time::Instant;

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
    let http = reqwest::Client::new();
    let batches = spans.div_ceil(batch_size);
    println!("otlp: encoding {batches} batches of {batch_size} spans");
    let bodies: Vec<Vec<u8>> = (0..batches).map(|b| batch(b, batch_size)).collect();
    let bodies = std::sync::Arc::new(bodies);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, key, bodies, next) = (
            http.clone(),
            base.clone(),
            key.clone(),
            bodies.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return anyhow::Ok(());
                };
                let r = http
                    .post(format!("{base}/otel/v1/traces"))
                    .basic_auth("api", Some(&key))
                    .header("content-type", "application/x-protobuf")
                    .header("project_id", "bench/otlp")
                    .body(body.clone())
                    .send()
                    .await?;
                if r.status() != 200 {
                    bail!(
                        "export answered {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let sent = batches * batch_size;
    println!(
        "otlp: {sent} spans in {:.2} s over {clients} clients = {:.0} spans/s (target 100,000; ratio {:.2})",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64() / 100_000.0
    );
    let stats: serde_json::Value = http
        .post(format!("{base}/calls/stats"))
        .basic_auth("api", Some(&key))
        .json(&serde_json::json!({"project_id": "bench/otlp", "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z",
            "granularity": 3600, "call_metrics": [{"metric": "call_count"}]}))
        .send()
        .await?
        .json()
        .await?;
    let stored = stats["call_buckets"][0]["sum_call_count"]
        .as_u64()
        .unwrap_or(0);
    println!("otlp: {stored} calls stored (expected {sent})");
    let _ = child.kill();
    let _ = child.wait();
    if stored != sent {
        bail!("{stored} calls stored, {sent} spans sent");
    }
    Ok(())
}
