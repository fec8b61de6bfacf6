//! The web console as a user meets it: `polymeter up` holding `calls` calls
//! spread over the last 30 days (sent through `POST /call/upsert_batch`),
//! Debian's chromium signed in, and the 30-day view loaded again and again:
//! the time from navigation to every panel drawn, each route's slowest
//! request, and the page's weight (the page, its script and style, the JSON
//! answers and the SVG charts).

use anyhow::{bail, Result};
use polymeter_tests::browser::Chromium;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const PROJECT: &str = "bench/console";
const MODELS: [&str; 4] = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "qwen-max"];

/// Call `n` of `calls`, started within the 30 days before `end_ms`.
fn call(n: u64, calls: u64, end_ms: i64) -> Value {
    const SPAN_MS: i64 = 30 * 86_400_000;
    let start_ms = end_ms - SPAN_MS + (n as i128 * SPAN_MS as i128 / calls as i128) as i64;
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("in range")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let id = format!("c{n:x}");
    let model = MODELS[(n % 4) as usize];
    let mut end = json!({"project_id": PROJECT, "id": id, "ended_at": at(start_ms + 50 + (n * 7919 % 3000) as i64),
        "summary": {"usage": {model: {"input_tokens": n % 4000, "output_tokens": n % 700, "requests": 1}}}});
    if n % 37 == 0 {
        end["exception"] = json!("RateLimitError");
    }
    json!({"batch": [
        {"mode": "start", "req": {"start": {"project_id": PROJECT, "id": id, "trace_id": id,
            "op_name": "weave:///bench/console/op/chat:v1", "started_at": at(start_ms), "attributes": {}, "inputs": {}}}},
        {"mode": "end", "req": {"end": end}},
    ]})
}

pub async fn run(polymeter: &Path, dir: &Path, calls: u64, loads: usize) -> Result<()> {
    let (mut child, base, key) = crate::up::start(polymeter, &dir.join("console")).await?;
    let end_ms = chrono::Utc::now().timestamp_millis();
    const BATCH: u64 = 1000;
    let bodies = (0..calls.div_ceil(BATCH))
        .map(|b| {
            let mut batch = Vec::new();
            for n in b * BATCH..((b + 1) * BATCH).min(calls) {
                let Value::Array(halves) = call(n, calls, end_ms)["batch"].take() else {
                    unreachable!()
                };
                batch.extend(halves);
            }
            serde_json::to_vec(&json!({ "batch": batch })).expect("JSON")
        })
        .collect();
    let headers = [("content-type", "application/json")];
    let elapsed =
        crate::up::post_all(&base, &key, "/call/upsert_batch", &headers, bodies, 4).await?;
    let stored = crate::up::calls_stored(&base, &key, PROJECT).await?;
    println!("console: {stored} calls over 30 days stored in {elapsed:.1} s");
    if stored != calls {
        bail!("{stored} calls stored, {calls} sent");
    }

    let chromium = Chromium::launch().await;
    let tab = chromium.tab().await;
    tab.goto(&format!("{base}/console/")).await;
    tab.wait_ready(&["signed-out"], Duration::from_secs(60))
        .await;
    tab.type_into("#key", &key).await;
    tab.click("#sign-in-form button").await;
    tab.wait_ready(&["true"], Duration::from_secs(120)).await;
    let view = format!("{base}/console/?project=bench%2Fconsole&range=30d&tz=UTC");
    let mut firsts = Vec::new();
    let mut weight = 0.0;
    // Each route's longest request in a load (several charts share one
    // route): which answer the first paint waits on.
    let mut slowest: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for _ in 0..loads {
        tab.goto(&view).await;
        tab.wait_ready(&["true"], Duration::from_secs(120)).await;
        // From navigation start to every panel drawn (the page's own mark).
        let ms: f64 = tab.eval("window.polymeterReadyAt").await;
        weight = tab
            .eval(
                "[performance.getEntriesByType('navigation')[0], ...performance.getEntriesByType('resource')]
                   .reduce((a, e) => a + (e.transferSize || 0), 0)",
            )
            .await;
        firsts.push(ms);
        let routes: Vec<(String, f64)> = tab
            .eval(
                "Object.entries(performance.getEntriesByType('resource').reduce((m, e) => {
                   const route = new URL(e.name).pathname;
                   m[route] = Math.max(m[route] || 0, e.duration);
                   return m;
                 }, {}))",
            )
            .await;
        for (route, ms) in routes {
            slowest.entry(route).or_default().push(ms);
        }
    }
    let problems = tab.problems();
    chromium.close().await;
    let _ = child.kill();
    let _ = child.wait();
    if !problems.is_empty() {
        bail!("the page logged errors: {problems:?}");
    }
    firsts.sort_by(f64::total_cmp);
    let median = firsts[firsts.len() / 2];
    println!(
        "console: 30-day view over {calls} calls, {loads} loads: first paint of every panel median {median:.0} ms (min {:.0}, max {:.0}); page weight {:.0} KiB",
        firsts[0],
        firsts[firsts.len() - 1],
        weight / 1024.0
    );
    for (route, mut ms) in slowest {
        ms.sort_by(f64::total_cmp);
        println!(
            "console:   {route}: its slowest request in a load, median {:.0} ms",
            ms[ms.len() / 2]
        );
    }
    let mut goals = crate::Goals::default();
    goals.at_most(
        &format!("console: 30 d view over {calls} calls, navigation to every panel drawn"),
        median,
        1000.0,
        "ms",
    );
    goals.print();
    Ok(())
}
