//! Weave ingest through the gateway: `polymeter up` (durable store, fsync on
//! every acknowledged batch) takes `POST /call/upsert_batch` requests — each
//! call as a start and an end, as the Weave client sends them — from
//! concurrent clients; prints calls per second, then checks every call was
//! stored.

use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

const PROJECT: &str = "bench/weave";

/// Call `n`'s start and end, one hour of calls from 2024-05-01T10:00Z.
fn halves(n: u64) -> [Value; 2] {
    const BASE_MS: i64 = 1_714_557_600_000;
    let start_ms = BASE_MS + (n % 3_600_000) as i64;
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("in range")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let id = format!("{:08x}-0000-7000-8000-{n:012x}", n >> 16);
    let model = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "qwen-max"][(n % 4) as usize];
    [
        json!({"mode": "start", "req": {"start": {
            "project_id": PROJECT, "id": id, "trace_id": id, "op_name": "weave:///bench/weave/op/chat:v1",
            "started_at": at(start_ms), "attributes": {}, "inputs": {}}}}),
        json!({"mode": "end", "req": {"end": {
            "project_id": PROJECT, "id": id, "ended_at": at(start_ms + 50 + (n % 2000) as i64),
            "summary": {"usage": {model: {"input_tokens": n % 4000, "output_tokens": n % 700, "requests": 1}}}}}}),
    ]
}

/// Batch `b` of `size` calls as a request body.
fn body(b: u64, size: u64) -> Vec<u8> {
    let batch: Vec<Value> = (b * size..(b + 1) * size).flat_map(halves).collect();
    serde_json::to_vec(&json!({ "batch": batch })).expect("JSON")
}

pub async fn run(
    polymeter: &Path,
    dir: &Path,
    calls: u64,
    batch_size: u64,
    clients: usize,
) -> Result<()> {
    let (mut child, base, key) = crate::up::start(polymeter, &dir.join("weave")).await?;
    let http = reqwest::Client::new();
    let batches = calls.div_ceil(batch_size);
    println!("weave: encoding {batches} upsert_batch requests of {batch_size} calls");
    let bodies = std::sync::Arc::new(
        (0..batches)
            .map(|b| body(b, batch_size))
            .collect::<Vec<_>>(),
    );
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
                    .post(format!("{base}/call/upsert_batch"))
                    .basic_auth("api", Some(&key))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                if r.status() != 200 {
                    bail!(
                        "upsert_batch answered {}: {}",
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
    let elapsed = started.elapsed().as_secs_f64();
    let sent = batches * batch_size;
    println!(
        "weave: {sent} calls via POST /call/upsert_batch in {elapsed:.2} s over {clients} clients = {:.0} calls/s",
        sent as f64 / elapsed
    );
    let stats: Value = http
        .post(format!("{base}/calls/stats"))
        .basic_auth("api", Some(&key))
        .json(&json!({"project_id": PROJECT, "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z",
            "granularity": 3600, "call_metrics": [{"metric": "call_count"}]}))
        .send()
        .await?
        .json()
        .await?;
    let stored = stats["call_buckets"][0]["sum_call_count"]
        .as_u64()
        .unwrap_or(0);
    println!("weave: {stored} calls stored (expected {sent})");
    let _ = child.kill();
    let _ = child.wait();
    if stored != sent {
        bail!("{stored} calls stored, {sent} calls sent");
    }
    Ok(())
}
