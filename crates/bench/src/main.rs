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

mod clickhouse;
mod console;
mod feedback;
mod gateway;
mod load;
mod otlp;
mod queries;
mod up;
mod weave_http;
mod workload;

use anyhow::{bail, Context, Result};
use clap::Parser;
use parquet::arrow::ArrowWriter;
use polymeter_proto::v1::{
    self as pb, feedback_service_client::FeedbackServiceClient,
    stats_service_client::StatsServiceClient,
};
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
    /// Feedback records to generate.
    #[arg(long, default_value_t = 5_000_000)]
    feedback: u64,
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
    /// Run only the OTLP/HTTP ingest benchmark, with this many spans.
    #[arg(long)]
    otlp_spans: Option<u64>,
    /// Spans per OTLP export request.
    #[arg(long, default_value_t = 1000)]
    otlp_batch: u64,
    /// Concurrent OTLP/HTTP clients (and Weave HTTP clients).
    #[arg(long, default_value_t = 8)]
    otlp_clients: usize,
    /// Run only the Weave HTTP ingest benchmark (`POST /call/upsert_batch`
    /// through `polymeter up`), with this many calls.
    #[arg(long)]
    weave_calls: Option<u64>,
    /// Run only the console benchmark: `polymeter up` holding this many
    /// calls over 30 days, the 30-day view loaded in Debian's chromium.
    #[arg(long)]
    console_calls: Option<u64>,
    /// How many times the console benchmark loads the view.
    #[arg(long, default_value_t = 5)]
    console_loads: usize,
    /// Calls per `upsert_batch` request.
    #[arg(long, default_value_t = 1000)]
    weave_batch: u64,
    /// Only ask query `--profile-query` of the set (by position) again and
    /// again for `--profile-seconds`, of the stats service at this URL
    /// holding a bench run's calls (`--calls` and `--seed` as that run's):
    /// for a profiler attached to that service.
    #[arg(long)]
    profile_stats: Option<String>,
    #[arg(long, default_value_t = 0)]
    profile_query: usize,
    #[arg(long, default_value_t = 20)]
    profile_seconds: u64,
    /// Generate calls as they are sent instead of ahead of time, holding
    /// none (implies --skip-clickhouse; on by itself past 20M calls).
    #[arg(long)]
    stream: bool,
    /// Run only the load test: mixed writes and queries through the gateway
    /// of a local `polymeter up` for this many seconds.
    #[arg(long)]
    load_seconds: Option<u64>,
    /// Requests per second the load test aims for.
    #[arg(long, default_value_t = 200)]
    load_rate: u64,
    /// Calls in each write of the load test.
    #[arg(long, default_value_t = 10)]
    load_batch: u64,
    /// Also run the query set on Polymeter over ClickHouse: a
    /// `clickhouse://user:password@host:8123/database` server, or `chdb` for
    /// ClickHouse's engine behind the test suite's HTTP adapter (started with
    /// `--python`). The same calls are ingested there through gRPC.
    #[arg(long)]
    store: Option<String>,
}

/// A `polymeter stats` or `polymeter feedback` child process.
struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(polymeter: &Path, command: &str, data: &Path) -> Result<Self> {
        Self::start_with(polymeter, command, data, &[])
    }

    fn start_with(polymeter: &Path, command: &str, data: &Path, extra: &[&str]) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(polymeter)
            .args([
                command,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", polymeter.display()))?;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    async fn channel(&self) -> Result<Channel> {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            if let Ok(c) = Channel::from_shared(self.url.clone())?.connect().await {
                return Ok(c);
            }
            if Instant::now() > deadline {
                bail!("{} did not come up", self.url);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Resident memory of the process, bytes.
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

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to two minutes) until the store is at rest: every log
/// generation compacted into segments and, once writes paused, the table
/// snapshotted (the current log is empty and no snapshot is being written),
/// so memory and the restart are measured as a user would meet them.
async fn compaction_settled(data: &Path, calls: u64) {
    let stats = data.join("stats");
    let files = |dir: &str| -> Vec<(String, u64)> {
        std::fs::read_dir(stats.join(dir))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| {
                        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                        (e.file_name().to_string_lossy().into_owned(), len)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // Compacting a burst's logs and writing its snapshot take about a
    // second per million calls here; give it thrice that.
    let deadline = Instant::now() + Duration::from_secs(120 + 3 * calls / 1_000_000);
    while Instant::now() < deadline {
        let logs = files("wal");
        let snapshots = files("snapshots");
        let generation =
            |name: &str, suffix: &str| -> Option<u64> { name.strip_suffix(suffix)?.parse().ok() };
        // The current log is empty (its 8-byte header) and the snapshot
        // covers every generation before it.
        let current = logs
            .iter()
            .find_map(|(n, len)| Some((generation(n, ".wal")?, *len)));
        let snapshotted = snapshots
            .iter()
            .filter_map(|(n, _)| generation(n, ".snap"))
            .max();
        let writing = snapshots.iter().any(|(n, _)| n.ends_with(".tmp"));
        if let (1, Some((g, 8)), Some(s), false) = (logs.len(), current, snapshotted, writing) {
            if s + 1 == g {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn percentile_ms(times: &mut [f64], p: f64) -> f64 {
    times.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (times.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    times[lo] + (times[hi] - times[lo]) * (rank - lo as f64)
}

/// Progress on one line, at most a few times a second.
struct Progress {
    label: &'static str,
    total: u64,
    started: Instant,
    last: std::sync::Mutex<Instant>,
}

impl Progress {
    fn new(label: &'static str, total: u64) -> Self {
        Self {
            label,
            total,
            started: Instant::now(),
            last: std::sync::Mutex::new(Instant::now()),
        }
    }

    fn show(&self, done: u64) {
        let mut last = self.last.lock().unwrap();
        if done < self.total && last.elapsed() < Duration::from_millis(500) {
            return;
        }
        *last = Instant::now();
        let secs = self.started.elapsed().as_secs_f64();
        eprint!(
            "\r{}: {done}/{} ({:.0}%), {:.0}/s   {}",
            self.label,
            self.total,
            done as f64 * 100.0 / self.total.max(1) as f64,
            done as f64 / secs.max(1e-9),
            if done >= self.total { "\n" } else { "" }
        );
    }
}

/// Generates `total` items in batches of `batch` on every core. Each thread
/// gets its own state from `init` (its Parquet writers), builds batches with
/// `make`, and closes the state with `finish`.
fn generate<T: Send, S>(
    label: &'static str,
    total: u64,
    batch: usize,
    init: impl Fn(usize) -> Result<S> + Sync,
    make: impl Fn(&mut S, u64, u64) -> Result<T> + Sync,
    finish: impl Fn(S) -> Result<()> + Sync,
) -> Result<Vec<T>> {
    let ranges: Vec<(u64, u64)> = (0..total)
        .step_by(batch)
        .map(|s| (s, (s + batch as u64).min(total)))
        .collect();
    let threads = std::thread::available_parallelism()?.get();
    let per = ranges.len().div_ceil(threads).max(1);
    let progress = Progress::new(label, total);
    let done = std::sync::atomic::AtomicU64::new(0);
    let parts: Vec<Vec<T>> = std::thread::scope(|s| -> Result<Vec<Vec<T>>> {
        let handles: Vec<_> = ranges
            .chunks(per)
            .enumerate()
            .map(|(t, chunk)| {
                let (init, make, finish, progress, done) =
                    (&init, &make, &finish, &progress, &done);
                s.spawn(move || -> Result<Vec<T>> {
                    let mut state = init(t)?;
                    let mut out = Vec::with_capacity(chunk.len());
                    for &(from, to) in chunk {
                        out.push(make(&mut state, from, to)?);
                        let n = done.fetch_add(to - from, std::sync::atomic::Ordering::Relaxed)
                            + (to - from);
                        progress.show(n);
                    }
                    finish(state)?;
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generator panicked"))
            .collect()
    })?;
    Ok(parts.into_iter().flatten().collect())
}

fn parquet_writer(
    dir: &Path,
    name: &str,
    t: usize,
    schema: arrow::datatypes::SchemaRef,
) -> Result<ArrowWriter<std::fs::File>> {
    let file = std::fs::File::create(dir.join(format!("{name}-{t:03}.parquet")))?;
    Ok(ArrowWriter::try_new(file, schema, None)?)
}

/// Sends every `(items, request)` over `writers` concurrent streams; returns
/// the seconds taken.
async fn ingest_all<R, F, Fut>(
    label: &'static str,
    requests: Vec<(u64, R)>,
    writers: usize,
    send: F,
) -> Result<f64>
where
    R: Send + 'static,
    F: Fn(R) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let total: u64 = requests.iter().map(|(n, _)| n).sum();
    let progress = std::sync::Arc::new(Progress::new(label, total));
    let queue = std::sync::Arc::new(std::sync::Mutex::new(
        requests.into_iter().rev().collect::<Vec<_>>(),
    ));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (queue, sent, progress, send) =
                (queue.clone(), sent.clone(), progress.clone(), send.clone());
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap().pop();
                    let Some((n, request)) = next else {
                        return Ok::<_, anyhow::Error>(());
                    };
                    send(request).await?;
                    progress.show(sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Like [`ingest_all`], but each request is made (`make(from, to)`) by the
/// stream that sends it, so no more than one per stream is ever held.
async fn ingest_stream<R, M, F, Fut>(
    label: &'static str,
    total: u64,
    batch: usize,
    writers: usize,
    make: M,
    send: F,
) -> Result<f64>
where
    R: Send + 'static,
    M: Fn(u64, u64) -> R + Clone + Send + Sync + 'static,
    F: Fn(R) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let progress = std::sync::Arc::new(Progress::new(label, total));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (next, sent, progress, send, make) = (
                next.clone(),
                sent.clone(),
                progress.clone(),
                send.clone(),
                make.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let from = next.fetch_add(batch as u64, std::sync::atomic::Ordering::Relaxed);
                    if from >= total {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let to = (from + batch as u64).min(total);
                    let make = make.clone();
                    let request = tokio::task::spawn_blocking(move || make(from, to)).await?;
                    send(request).await?;
                    let n = to - from;
                    progress.show(sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The goals the embedded store is measured against, each with its
/// measured figure, printed together at the end.
#[derive(Default)]
struct Goals(Vec<(String, f64, f64, &'static str, bool)>);

impl Goals {
    fn at_most(&mut self, what: &str, measured: f64, goal: f64, unit: &'static str) {
        self.0
            .push((what.into(), measured, goal, unit, measured <= goal));
    }

    fn at_least(&mut self, what: &str, measured: f64, goal: f64, unit: &'static str) {
        self.0
            .push((what.into(), measured, goal, unit, measured >= goal));
    }

    fn print(&self) {
        println!();
        println!(
            "{:<90} {:>12} {:>14} {:>7}  verdict",
            "goal", "measured", "goal", "ratio"
        );
        for (what, measured, goal, unit, met) in &self.0 {
            println!(
                "{what:<90} {measured:>12.1} {:>14} {:>7.2}  {}",
                format!("{goal} {unit}"),
                measured / goal,
                if *met { "met" } else { "MISSED" }
            );
        }
        println!("(ratio = measured / goal)");
    }
}

/// The bench's 30 days end at a whole hour: 2026-11-01T00:00:00Z.
const BENCH_END_US: i64 = 1_793_491_200_000_000;

type Sent = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// `AppendCalls` on `client`, as [`ingest_all`] sends each request.
fn call_sender(
    client: &StatsServiceClient<Channel>,
) -> impl Fn(pb::AppendCallsRequest) -> Sent + Clone + Send + 'static {
    let client = client.clone();
    move |r| {
        let mut client = client.clone();
        Box::pin(async move { client.append_calls(r).await.map(|_| ()).map_err(Into::into) })
    }
}

/// `AppendFeedback` on `client`, as [`ingest_all`] sends each request.
fn feedback_sender(
    client: &FeedbackServiceClient<Channel>,
) -> impl Fn(pb::AppendFeedbackRequest) -> Sent + Clone + Send + 'static {
    let client = client.clone();
    move |r| {
        let mut client = client.clone();
        Box::pin(async move {
            client
                .append_feedback(r)
                .await
                .map(|_| ())
                .map_err(Into::into)
        })
    }
}

/// Every part of one query of the set, asked in turn.
async fn ask(
    client: &StatsServiceClient<Channel>,
    q: &queries::Query,
) -> Result<Vec<pb::AggregateCallsResponse>> {
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
    Ok(parts)
}

/// Runs `run` twice to warm up, then `iterations` times; returns the timed
/// runs' milliseconds and the last answer.
async fn timed<T, Fut>(iterations: usize, mut run: impl FnMut() -> Fut) -> Result<(Vec<f64>, T)>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut times = Vec::new();
    let mut last = None;
    for i in 0..2 + iterations {
        let t = Instant::now();
        let answer = run().await?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        last = Some(answer);
    }
    Ok((times, last.expect("at least one run")))
}

fn report(engine: &str, name: &str, times: &[f64]) {
    let mut t = times.to_vec();
    println!(
        "{engine:<10} {name:<56} p50 {:>8.1} ms  p95 {:>8.1} ms",
        percentile_ms(&mut t, 50.0),
        percentile_ms(&mut t, 95.0)
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
    let (end_us, span_us) = (BENCH_END_US, 30 * 86_400_000_000);
    let w = Workload {
        calls: args.calls,
        seed: args.seed,
        start_us: end_us - span_us,
        span_us,
    };
    if let Some(url) = &args.profile_stats {
        let channel = Channel::from_shared(url.clone())?.connect().await?;
        let client = StatsServiceClient::new(channel).max_decoding_message_size(512 << 20);
        let set = queries::query_set(&w);
        let q = set.get(args.profile_query).context("no such query")?;
        let until = Instant::now() + Duration::from_secs(args.profile_seconds);
        let mut times = Vec::new();
        while Instant::now() < until {
            let t = Instant::now();
            ask(&client, q).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        report("polymeter", q.name, &times);
        return Ok(());
    }
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    if let Some(seconds) = args.load_seconds {
        return load::run(
            &polymeter,
            &args.dir,
            seconds,
            args.load_rate,
            args.load_batch,
        )
        .await;
    }
    if let Some(calls) = args.console_calls {
        return console::run(&polymeter, &args.dir, calls, args.console_loads).await;
    }
    if let Some(calls) = args.weave_calls {
        return weave_http::run(
            &polymeter,
            &args.dir,
            calls,
            args.weave_batch,
            args.otlp_clients,
        )
        .await;
    }
    if let Some(spans) = args.otlp_spans {
        return otlp::run(
            &polymeter,
            &args.dir,
            spans,
            args.otlp_batch,
            args.otlp_clients,
        )
        .await;
    }
    let data_dir = args.dir.join("polymeter");
    let parquet_dir = args.dir.join("parquet");
    std::fs::create_dir_all(&parquet_dir)?;

    println!(
        "polymeter-bench: {} calls and {} feedback records over 30 days, {} cores",
        args.calls,
        args.feedback,
        std::thread::available_parallelism()?
    );

    // 1. Generate the calls, keeping the requests and writing Parquet for
    // ClickHouse — or, streaming, generate each batch as it is sent.
    let stream = args.stream || args.calls > 20_000_000;
    let skip_clickhouse = args.skip_clickhouse || stream;
    if stream {
        println!("streaming: calls generated as they are sent; no ClickHouse comparison");
    }
    let started = Instant::now();
    let requests = if stream {
        None
    } else {
        Some(generate(
            "generate calls",
            args.calls,
            args.batch,
            |t| {
                Ok((
                    parquet_writer(&parquet_dir, "calls", t, workload::calls_schema())?,
                    parquet_writer(&parquet_dir, "usage", t, workload::usage_schema())?,
                ))
            },
            |(calls_out, usage_out), from, to| {
                let calls: Vec<_> = (from..to).map(|i| w.call(i)).collect();
                let (c, u) = workload::to_arrow(&calls);
                calls_out.write(&c)?;
                usage_out.write(&u)?;
                let request = pb::AppendCallsRequest {
                    calls: calls.into_iter().map(|c| c.write).collect(),
                };
                Ok((to - from, request))
            },
            |(calls_out, usage_out)| {
                calls_out.close()?;
                usage_out.close()?;
                Ok(())
            },
        )?)
    };
    println!("generated in {:.1} s", started.elapsed().as_secs_f64());

    // 2. Ingest through gRPC into a fresh stats process.
    let stats = Service::start(&polymeter, "stats", &data_dir)?;
    let client = StatsServiceClient::new(stats.channel().await?)
        .max_decoding_message_size(512 << 20)
        .max_encoding_message_size(512 << 20);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_empty = stats.rss()?;
    let send = call_sender(&client);
    // The ClickHouse leg ingests the same requests later.
    let (secs, ch_requests) = match requests {
        Some(requests) => {
            let ch_requests = args.store.is_some().then(|| requests.clone());
            let secs = ingest_all("ingest calls", requests, args.writers, send).await?;
            (secs, ch_requests)
        }
        None => {
            let w = w.clone();
            let make = move |from: u64, to: u64| pb::AppendCallsRequest {
                calls: (from..to).map(|i| w.call(i).write).collect(),
            };
            let secs = ingest_stream(
                "ingest calls",
                args.calls,
                args.batch,
                args.writers,
                make,
                send,
            )
            .await?;
            (secs, None)
        }
    };
    let mut goals = Goals::default();
    let rate = args.calls as f64 / secs;
    println!(
        "ingest: {} calls in {:.2} s = {rate:.0} calls/s (durable, gRPC batches of {}, {} streams{})",
        args.calls,
        secs,
        args.batch,
        args.writers,
        if stream { ", generated while sending" } else { "" }
    );
    goals.at_least("ingest, durable gRPC batches", rate, 500_000.0, "calls/s");
    compaction_settled(&data_dir, args.calls).await;
    // The process hands freed memory (gRPC buffers of the burst, the
    // snapshot's buffer) back to the system every 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let rss = stats.rss()?;
    let per_call = rss.saturating_sub(rss_empty) as f64 / args.calls as f64;
    println!(
        "memory: stats RSS {:.0} MiB (empty: {:.0} MiB) = {per_call:.1} bytes per call",
        rss as f64 / 1048576.0,
        rss_empty as f64 / 1048576.0,
    );
    goals.at_most("memory after ingest", per_call, 64.0, "B/call");
    let (segments, snapshots) = (
        dir_bytes(&data_dir.join("stats").join("segments")),
        dir_bytes(&data_dir.join("stats").join("snapshots")),
    );
    println!(
        "disk: {:.1} bytes per call in Parquet segments, {:.1} in the snapshot ({:.0} MiB in all)",
        segments as f64 / args.calls as f64,
        snapshots as f64 / args.calls as f64,
        dir_bytes(&data_dir.join("stats")) as f64 / 1048576.0
    );

    // 3. Queries on Polymeter.
    let set = queries::query_set(&w);
    let mut ours = Vec::new();
    for q in &set {
        let (times, answer) = timed(args.iterations, || ask(&client, q)).await?;
        report("polymeter", q.name, &times);
        ours.push((times, answer));
    }

    // The first query as a Weave client asks it, through the gateway's HTTP.
    let http_times =
        gateway::thirty_days(&polymeter, &args.dir, &stats.url, &w, args.iterations).await?;
    report(
        "gateway",
        "30 d hourly via HTTP /calls/stats, one project (40 %)",
        &http_times,
    );

    // Restart to first answer, after kill -9 (at rest, as after a burst).
    compaction_settled(&data_dir, args.calls).await;
    stats.kill9()?;
    let started = Instant::now();
    let stats = Service::start(&polymeter, "stats", &data_dir)?;
    let restart = loop {
        if let Ok(channel) = stats.channel().await {
            let probe = StatsServiceClient::new(channel)
                .aggregate_calls(set[1].requests[0].clone())
                .await;
            if probe.is_ok() {
                break started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "restart: kill -9 → first answer in {:.2} s",
        restart.as_secs_f64()
    );
    goals.at_most(
        "restart, kill -9 to first answer",
        restart.as_secs_f64(),
        1.5,
        "s",
    );
    compaction_settled(&data_dir, args.calls).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let reloaded = stats.rss()?;
    let per_call = reloaded.saturating_sub(rss_empty) as f64 / args.calls as f64;
    println!(
        "memory after restart: stats RSS {:.0} MiB = {per_call:.1} bytes per call",
        reloaded as f64 / 1048576.0,
    );
    goals.at_most("memory after restart", per_call, 64.0, "B/call");
    {
        let mut times = ours[0].0.clone();
        let p50 = percentile_ms(&mut times, 50.0);
        goals.at_most(set[0].name, p50, 60.0, "ms p50");
    }
    drop(stats);

    // 4. Feedback: generate, ingest into a feedback process, query.
    let fb = feedback::Feedback {
        count: args.feedback,
        seed: args.seed,
        start_ms: w.start_us / 1000,
        span_ms: w.span_us / 1000,
    };
    let fb_requests = generate(
        "generate feedback",
        args.feedback,
        args.batch,
        |t| parquet_writer(&parquet_dir, "feedback", t, feedback::schema()),
        |out, from, to| {
            let records: Vec<_> = (from..to).map(|i| fb.record(i)).collect();
            out.write(&feedback::to_arrow(&records))?;
            Ok((to - from, pb::AppendFeedbackRequest { feedback: records }))
        },
        |out| {
            out.close()?;
            Ok(())
        },
    )?;
    let feedback_service = Service::start(&polymeter, "feedback", &data_dir)?;
    let fb_client = FeedbackServiceClient::new(feedback_service.channel().await?)
        .max_decoding_message_size(512 << 20)
        .max_encoding_message_size(512 << 20);
    let send = feedback_sender(&fb_client);
    let ch_fb_requests = args.store.is_some().then(|| fb_requests.clone());
    let secs = ingest_all("ingest feedback", fb_requests, args.writers, send).await?;
    println!(
        "ingest: {} feedback records in {:.2} s = {:.0} records/s",
        args.feedback,
        secs,
        args.feedback as f64 / secs
    );
    let fb_name = "feedback 30 d in 6 h buckets by scorer_id";
    let (fb_times, fb_answer) = timed(args.iterations, || async {
        Ok(fb_client
            .clone()
            .aggregate_feedback(fb.request())
            .await?
            .into_inner())
    })
    .await?;
    report("polymeter", fb_name, &fb_times);
    drop(feedback_service);

    // 4b. The same calls and feedback through Polymeter on ClickHouse.
    let on_clickhouse = match (&args.store, ch_requests, ch_fb_requests) {
        (Some(store), Some(calls), Some(feedback)) => Some(
            clickhouse::run(
                &polymeter,
                &args,
                store,
                calls,
                feedback,
                &set,
                &ours,
                (&fb, &fb_answer),
            )
            .await?,
        ),
        _ => None,
    };

    if skip_clickhouse {
        goals.print();
        return Ok(());
    }

    // 5. The same on ClickHouse.
    let mut spec =
        queries::clickhouse_spec(&set, &parquet_dir, &args.dir.join("chdb"), args.iterations)?;
    let parquet = std::fs::canonicalize(&parquet_dir)?;
    for statement in feedback::setup_sql(&parquet.display().to_string()) {
        spec["setup"].as_array_mut().unwrap().push(statement.into());
    }
    spec["queries"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": fb_name, "sql": [fb.sql()]}));
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
    let theirs: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    println!(
        "clickhouse {} (chdb), loaded in {:.1} s",
        theirs["version"].as_str().unwrap_or("?"),
        theirs["load_seconds"].as_f64().unwrap_or(0.0)
    );
    println!();
    println!(
        "{:<56} {:>9} {:>9} {:>10} {:>9} {:>7}  same numbers",
        "query", "ours p50", "p95", "ch p50", "p95", "ratio"
    );
    let mut over_ch: Vec<(String, f64, f64)> = Vec::new();
    let mut all_same = true;
    let mut row =
        |name: &str, ours: &[f64], theirs: &serde_json::Value, same: Result<usize, String>| {
            let mut their_times: Vec<f64> = theirs["times_ms"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
                .unwrap_or_default();
            let mut our_times = ours.to_vec();
            let (o50, o95) = (
                percentile_ms(&mut our_times, 50.0),
                percentile_ms(&mut our_times, 95.0),
            );
            let (c50, c95) = (
                percentile_ms(&mut their_times, 50.0),
                percentile_ms(&mut their_times, 95.0),
            );
            all_same &= same.is_ok();
            let verdict = match &same {
                Ok(rows) => format!("yes ({rows} rows)"),
                Err(e) => format!("NO: {e}"),
            };
            println!(
                "{name:<56} {o50:>9.1} {o95:>9.1} {c50:>10.1} {c95:>9.1} {:>7.2}  {verdict}",
                o50 / c50
            );
            over_ch.push((name.to_owned(), c50, o50));
        };
    for (i, q) in set.iter().enumerate() {
        let t = &theirs["queries"][i];
        row(
            q.name,
            &ours[i].0,
            t,
            queries::compare(q, &ours[i].1, &t["results"]),
        );
    }
    let t = &theirs["queries"][set.len()];
    row(
        fb_name,
        &fb_times,
        t,
        feedback::compare(&fb_answer, &t["results"][0]),
    );
    println!("(ratio = Polymeter p50 / ClickHouse p50; below 0.5 is 2× faster)");
    if let Some(ch) = &on_clickhouse {
        clickhouse::print_overhead(ch, &over_ch);
    }
    for (name, ch, ours) in &over_ch {
        goals.at_least(
            &format!("{name}: times faster than chDB"),
            ch / ours,
            4.0,
            "×",
        );
    }
    goals.print();
    if !all_same {
        bail!("the engines disagree");
    }
    Ok(())
}
