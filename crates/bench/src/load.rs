//! `polymeter-bench --load-seconds N`: a bounded run of mixed traffic against
//! a local `polymeter up` through the gateway's HTTP, as clients meet it —
//! complete-call batches (Weave `/v2/{entity}/{project}/calls/complete`) and
//! dashboard queries (`/calls/stats`, 24 h hourly with percentiles) at a
//! target rate — printing the achieved throughput, p50/p99 latency per kind
//! and every non-200 answer by status.

use crate::percentile_ms;
use anyhow::Result;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Tally {
    times: BTreeMap<&'static str, Vec<f64>>,
    statuses: BTreeMap<(&'static str, u16), u64>,
}

pub async fn run(
    polymeter: &Path,
    dir: &Path,
    seconds: u64,
    rate: u64,
    calls_per_write: u64,
) -> Result<()> {
    let (mut child, base, key) = crate::up::start(polymeter, &dir.join("load")).await?;
    let http = reqwest::Client::new();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    println!(
        "load: {rate} requests/s for {seconds} s against {base} (4 in 5 writes of {calls_per_write} calls, 1 in 5 queries)"
    );
    while Instant::now() < end {
        ticker.tick().await;
        let (http, base, key, tally) = (http.clone(), base.clone(), key.clone(), tally.clone());
        let n = sent;
        sent += 1;
        tasks.spawn(async move {
            let now_us = chrono::Utc::now().timestamp_micros();
            let (kind, request) = if n % 5 == 4 {
                let end = chrono::Utc::now();
                let start = end - chrono::Duration::hours(24);
                let body = json!({"project_id": "bench/load", "start": start.to_rfc3339(), "end": end.to_rfc3339(),
                    "granularity": 3600,
                    "call_metrics": [{"metric": "latency_ms", "percentiles": [50, 95, 99]}, {"metric": "call_count"}],
                    "usage_metrics": [{"metric": "total_tokens"}]});
                ("query", http.post(format!("{base}/calls/stats")).json(&body))
            } else {
                let batch: Vec<_> = (0..calls_per_write)
                    .map(|i| {
                        let started = chrono::DateTime::from_timestamp_micros(now_us - 500_000).unwrap();
                        json!({"id": format!("load-{n}-{i}"), "op_name": "weave:///bench/load/op/chat:v1",
                               "trace_id": format!("t{n}"), "started_at": started.to_rfc3339(),
                               "ended_at": chrono::Utc::now().to_rfc3339(), "inputs": {}, "output": null,
                               "summary": {"usage": {["gpt-4o", "claude-3-5-sonnet-20241022", "qwen-max"][(i % 3) as usize]:
                                   {"input_tokens": 100 + i, "output_tokens": 20, "requests": 1}}}})
                    })
                    .collect();
                ("write", http.post(format!("{base}/v2/bench/load/calls/complete")).json(&json!({"batch": batch})))
            };
            let t = Instant::now();
            let status = match request.basic_auth("api", Some(&key)).send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let _ = r.bytes().await;
                    status
                }
                Err(_) => 0,
            };
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let mut tally = tally.lock().unwrap();
            tally.times.entry(kind).or_default().push(ms);
            *tally.statuses.entry((kind, status)).or_default() += 1;
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let tally = Arc::try_unwrap(tally)
        .ok()
        .expect("every task done")
        .into_inner()
        .unwrap();
    let total: usize = tally.times.values().map(Vec::len).sum();
    println!(
        "load: {total} requests in {elapsed:.1} s = {:.0} requests/s",
        total as f64 / elapsed
    );
    for (kind, mut times) in tally.times {
        println!(
            "  {kind:<6} {:>6} requests  p50 {:>7.1} ms  p99 {:>7.1} ms",
            times.len(),
            percentile_ms(&mut times, 50.0),
            percentile_ms(&mut times, 99.0)
        );
    }
    let failures: Vec<String> = tally
        .statuses
        .iter()
        .filter(|((_, s), _)| *s != 200)
        .map(|((k, s), n)| format!("{k} {s}: {n}"))
        .collect();
    println!(
        "  errors: {}",
        if failures.is_empty() {
            "none".to_owned()
        } else {
            failures.join(", ")
        }
    );
    let calls = total as u64 * 4 / 5 * calls_per_write;
    println!(
        "  calls written: about {calls} ({:.0} calls/s)",
        calls as f64 / elapsed
    );
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
