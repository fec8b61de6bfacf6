//! `polymeter-bench`: Polymeter against ClickHouse's engine on the same data.
//!
//! 1. Generates a realistic workload (see [`workload`]) and writes the same
//!    calls as Parquet for ClickHouse.
//! 2. Starts `polymeter stats` as a child process and ingests the calls
//!    through its gRPC `AppendCalls` (durable: every batch is fsynced before
//!    it is acknowledged), printing calls/s.
//! 3. Runs the query set (the `/calls/stats` queries a dashboard makes) and
//!    prints p50/p95 ms per query; the child's resident memory per call; and
//!    the time from a `kill -9` restart to the first answer.
//! 4. Loads the same Parquet into ClickHouse MergeTree tables through chdb,
//!    runs the same queries as SQL (written out in [`queries`]), checks that
//!    both engines return the same numbers (exact percentiles on both sides:
//!    `quantilesExactInclusive` is the same linear interpolation), and prints
//!    the Polymeter/ClickHouse ratios.

mod queries;
mod workload;

use anyhow::{bail, Context, Result};
use clap::Parser;
use parquet::arrow::ArrowWriter;
use polymeter_proto::v1::{self as pb, stats_service_client::StatsServiceClient};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use workload::Workload;

#[derive(Parser)]
#[command(
    about = "Benchmark Polymeter's stats service against ClickHouse's engine (chdb) on the same data."
)]
struct Args {
    /// Calls to generate.
    #[arg(long, default_value_t = 10_000_000)]
    calls: u64,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Working directory (wiped first): Polymeter's data, the Parquet files, ClickHouse's session.
    #[arg(long, default_value = "./bench-data")]
    dir: PathBuf,
    /// The polymeter binary (default: next to this one).
    #[arg(long)]
    polymeter: Option<PathBuf>,
    /// Python with the `chdb` package (see README: Performance).
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Skip the ClickHouse comparison.
    #[arg(long)]
    skip_clickhouse: bool,
    /// Calls per AppendCalls request.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Concurrent ingest streams.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Timed runs of each query (after two warm-up runs).
    #[arg(long, default_value_t = 10)]
    iterations: usize,
}

struct Stats {
    child: Child,
    url: String,
}

impl Stats {
    fn start(polymeter: &Path, data: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(polymeter)
            .args([
                "stats",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", polymeter.display()))?;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn client(&self) -> Result<StatsServiceClient<Channel>> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(c) = StatsServiceClient::connect(self.url.clone()).await {
                return Ok(c
                    .max_decoding_message_size(512 << 20)
                    .max_encoding_message_size(512 << 20));
            }
            if Instant::now() > deadline {
                bail!("stats did not come up");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Resident memory of the stats process, bytes.
    fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kb * 1024)
    }

    fn kill9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile_ms(times: &mut [f64], p: f64) -> f64 {
    times.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (times.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    times[lo] + (times[hi] - times[lo]) * (rank - lo as f64)
}

fn progress(label: &str, done: u64, total: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    eprint!(
        "\r{label}: {done}/{total} ({:.0}%), {:.0}/s   ",
        done as f64 * 100.0 / total.max(1) as f64,
        done as f64 / secs.max(1e-9)
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let polymeter = args.polymeter.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .unwrap()
            .with_file_name(format!("polymeter{}", std::env::consts::EXE_SUFFIX))
    });
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    let data_dir = args.dir.join("polymeter");
    let parquet_dir = args.dir.join("parquet");
    std::fs::create_dir_all(&parquet_dir)?;

    // 30 days ending at a whole hour.
    let end_us = 1_793_491_200_000_000; // 2026-11-01T00:00:00Z
    let span_us = 30 * 86_400_000_000;
    let w = Workload {
        calls: args.calls,
        seed: args.seed,
        start_us: end_us - span_us,
        span_us,
    };

    println!(
        "polymeter-bench: {} calls over 30 days, {} cores",
        args.calls,
        std::thread::available_parallelism()?
    );

    // 1. Generate (in parallel), keeping the requests and writing Parquet.
    let started = Instant::now();
    let batches: Vec<(u64, u64)> = (0..args.calls)
        .step_by(args.batch)
        .map(|s| (s, (s + args.batch as u64).min(args.calls)))
        .collect();
    let threads = std::thread::available_parallelism()?.get();
    let done = std::sync::atomic::AtomicU64::new(0);
    let mut requests: Vec<Option<pb::AppendCallsRequest>> =
        (0..batches.len()).map(|_| None).collect();
    std::thread::scope(|s| -> Result<()> {
        let chunks: Vec<_> = requests
            .chunks_mut(batches.len().div_ceil(threads).max(1))
            .collect();
        let mut handles = Vec::new();
        for (t, chunk) in chunks.into_iter().enumerate() {
            let (w, batches, done, parquet_dir) = (&w, &batches, &done, &parquet_dir);
            let per = batches.len().div_ceil(threads).max(1);
            handles.push(s.spawn(move || -> Result<()> {
                let open = |name: &str, schema| -> Result<ArrowWriter<std::fs::File>> {
                    let file =
                        std::fs::File::create(parquet_dir.join(format!("{name}-{t:03}.parquet")))?;
                    Ok(ArrowWriter::try_new(file, schema, None)?)
                };
                let mut calls_out = open("calls", workload::calls_schema())?;
                let mut usage_out = open("usage", workload::usage_schema())?;
                for (k, slot) in chunk.iter_mut().enumerate() {
                    let (from, to) = batches[t * per + k];
                    let calls: Vec<_> = (from..to).map(|i| w.call(i)).collect();
                    let (c, u) = workload::to_arrow(&calls);
                    calls_out.write(&c)?;
                    usage_out.write(&u)?;
                    *slot = Some(pb::AppendCallsRequest {
                        calls: calls.into_iter().map(|c| c.write).collect(),
                    });
                    let n = done.fetch_add(to - from, std::sync::atomic::Ordering::Relaxed)
                        + (to - from);
                    if t == 0 {
                        progress("generate", n, w.calls, started);
                    }
                }
                calls_out.close()?;
                usage_out.close()?;
                Ok(())
            }));
        }
        for h in handles {
            h.join().expect("generator panicked")?;
        }
        Ok(())
    })?;
    eprintln!();
    println!("generated in {:.1} s", started.elapsed().as_secs_f64());

    // 2. Ingest through gRPC into a fresh stats process.
    let stats = Stats::start(&polymeter, &data_dir)?;
    let client = stats.client().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_empty = stats.rss()?;
    let started = Instant::now();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(
        requests.into_iter().map(Option::unwrap).collect::<Vec<_>>(),
    ));
    queue.lock().unwrap().reverse();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let total = args.calls;
    let writers: Vec<_> = (0..args.writers)
        .map(|_| {
            let (mut client, queue, sent) = (client.clone(), queue.clone(), sent.clone());
            tokio::spawn(async move {
                loop {
                    let Some(request) = queue.lock().unwrap().pop() else {
                        return Ok::<_, anyhow::Error>(());
                    };
                    let n = request.calls.len() as u64;
                    client.append_calls(request).await?;
                    let done = sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                    if done % 500_000 < n {
                        progress("ingest", done, total, started);
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    eprintln!();
    let ingest_rate = args.calls as f64 / ingest_secs;
    println!(
        "ingest: {} calls in {:.2} s = {:.0} calls/s (durable, gRPC batches of {}, {} streams)",
        args.calls, ingest_secs, ingest_rate, args.batch, args.writers
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = stats.rss()?;
    let bytes_per_call = (rss.saturating_sub(rss_empty)) as f64 / args.calls as f64;
    println!(
        "memory: stats RSS {:.0} MiB (empty: {:.0} MiB) = {:.1} bytes per call",
        rss as f64 / 1048576.0,
        rss_empty as f64 / 1048576.0,
        bytes_per_call
    );

    // 3. Queries on Polymeter.
    let set = queries::query_set(&w);
    let mut ours = Vec::new();
    for q in &set {
        let mut times = Vec::new();
        let mut last = Vec::new();
        for i in 0..2 + args.iterations {
            let t = Instant::now();
            let mut parts = Vec::new();
            for r in &q.requests {
                parts.push(
                    client
                        .clone()
                        .aggregate_calls(r.clone())
                        .await?
                        .into_inner(),
                );
            }
            if i >= 2 {
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            last = parts;
        }
        println!(
            "polymeter  {:<44} p50 {:>8.1} ms  p95 {:>8.1} ms",
            q.name,
            percentile_ms(&mut times.clone(), 50.0),
            percentile_ms(&mut times.clone(), 95.0)
        );
        ours.push((times, last));
    }

    // Restart to first answer, after kill -9.
    stats.kill9()?;
    let started = Instant::now();
    let stats = Stats::start(&polymeter, &data_dir)?;
    let restart = loop {
        if let Ok(mut c) = stats.client().await {
            if c.aggregate_calls(set[1].requests[0].clone()).await.is_ok() {
                break started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "restart: kill -9 → first answer in {:.2} s",
        restart.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reloaded = stats.rss()?;
    println!(
        "memory after restart: stats RSS {:.0} MiB = {:.1} bytes per call",
        reloaded as f64 / 1048576.0,
        reloaded.saturating_sub(rss_empty) as f64 / args.calls as f64
    );
    drop(stats);

    if args.skip_clickhouse {
        return Ok(());
    }

    // 4. The same on ClickHouse.
    let spec =
        queries::clickhouse_spec(&set, &parquet_dir, &args.dir.join("chdb"), args.iterations)?;
    let spec_path = args.dir.join("chdb-spec.json");
    std::fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("chdb_bench.py");
    let output = Command::new(&args.python)
        .arg(&script)
        .arg(&spec_path)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (install chdb: see README, Performance)",
                args.python.display()
            )
        })?;
    if !output.status.success() {
        bail!("the ClickHouse side failed");
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    println!(
        "clickhouse {} (chdb), loaded in {:.1} s",
        report["version"].as_str().unwrap_or("?"),
        report["load_seconds"].as_f64().unwrap_or(0.0)
    );
    println!();
    println!(
        "{:<46} {:>10} {:>10} {:>10} {:>10} {:>8}  {}",
        "query (p50 / p95 ms)", "polymeter", "", "clickhouse", "", "ratio", "same numbers"
    );
    let mut all_same = true;
    for (i, q) in set.iter().enumerate() {
        let theirs = &report["queries"][i];
        let mut their_times: Vec<f64> = theirs["times_ms"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        let mut our_times = ours[i].0.clone();
        let (o50, o95) = (
            percentile_ms(&mut our_times, 50.0),
            percentile_ms(&mut our_times, 95.0),
        );
        let (c50, c95) = (
            percentile_ms(&mut their_times, 50.0),
            percentile_ms(&mut their_times, 95.0),
        );
        let same = queries::compare(q, &ours[i].1, &theirs["results"]);
        all_same &= same.is_ok();
        println!(
            "{:<46} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>8.2}  {}",
            q.name,
            o50,
            o95,
            c50,
            c95,
            o50 / c50,
            match &same {
                Ok(rows) => format!("yes ({rows} rows)"),
                Err(e) => format!("NO: {e}"),
            }
        );
    }
    println!("(ratio = Polymeter p50 / ClickHouse p50; below 0.5 is 2× faster)");
    if !all_same {
        bail!("the engines disagree");
    }
    Ok(())
}
