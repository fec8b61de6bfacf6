//! The headline query as a user meets it: through `polymeter gateway`'s
//! HTTP, `POST /calls/stats` with a Weave key, in front of the stats process
//! the gRPC measurements used (one project: Weave asks per project).

use crate::workload::{Workload, PROJECTS};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `polymeter gateway` child process.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The 30-day hourly query (tokens by model, p50/p95/p99 latency) through
/// the gateway in front of `stats_url`; returns the timed runs' ms.
pub async fn thirty_days(
    polymeter: &Path,
    dir: &Path,
    stats_url: &str,
    w: &Workload,
    iterations: usize,
) -> Result<Vec<f64>> {
    let file = dir.join("gateway-credentials.toml");
    let key = crate::up::development_key(&file)?;
    let port = crate::up::free_port()?;
    let _gateway = Gateway(
        Command::new(polymeter)
            .arg("gateway")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--credentials")
            .arg(&file)
            // Only stats answers this query; the other peers are never asked.
            .args(["--stats-url", stats_url, "--ingest-url", stats_url])
            .args(["--feedback-url", stats_url])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start polymeter gateway")?,
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        if Instant::now() > deadline {
            bail!("polymeter gateway did not come up");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let iso = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .expect("in range")
            .to_rfc3339()
    };
    let body = serde_json::json!({
        "project_id": PROJECTS[0].0,
        "start": iso(w.start_us),
        "end": iso(w.start_us + w.span_us),
        "granularity": 3600,
        "usage_metrics": [
            {"metric": "input_tokens", "aggregations": ["sum"]},
            {"metric": "output_tokens", "aggregations": ["sum"]},
        ],
        "call_metrics": [{"metric": "latency_ms", "aggregations": [], "percentiles": [50, 95, 99]}],
    });
    let (times, buckets) = crate::timed(iterations, || async {
        let answer = http
            .post(format!("{base}/calls/stats"))
            .basic_auth("api", Some(&key))
            .json(&body)
            .send()
            .await?;
        let status = answer.status();
        let text = answer.text().await?;
        if !status.is_success() {
            bail!("/calls/stats answered {status}: {text}");
        }
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        Ok(answer["call_buckets"].as_array().map_or(0, Vec::len))
    })
    .await?;
    if buckets != 720 {
        bail!("/calls/stats answered {buckets} hourly buckets for 30 days, not 720");
    }
    Ok(times)
}
