//! Weave ingest through the gateway: `polymeter up` (durable store, fsync on
//! every acknowledged batch) takes `POST /call/upsert_batch` requests — each
//! call as a start and an end, as the Weave client sends them — from
//! concurrent clients; prints calls per second, then checks every call was
//! stored.

use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;

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
    let batches = calls.div_ceil(batch_size);
    println!("weave: encoding {batches} upsert_batch requests of {batch_size} calls");
    let bodies = (0..batches).map(|b| body(b, batch_size)).collect();
    let headers = [("content-type", "application/json")];
    let elapsed =
        crate::up::post_all(&base, &key, "/call/upsert_batch", &headers, bodies, clients).await?;
    let sent = batches * batch_size;
    println!(
        "weave: {sent} calls via POST /call/upsert_batch in {elapsed:.2} s over {clients} clients = {:.0} calls/s",
        sent as f64 / elapsed
    );
    let stored = crate::up::calls_stored(&base, &key, PROJECT).await?;
    println!("weave: {stored} calls stored (expected {sent})");
    let _ = child.kill();
    let _ = child.wait();
    if stored != sent {
        bail!("{stored} calls stored, {sent} calls sent");
    }
    Ok(())
}
