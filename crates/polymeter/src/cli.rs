//! The command line. Every flag has a `POLYMETER_*` environment twin, and
//! every default works out of the box on one machine. The `polymeter` binary
//! is [`main`]; the integration tests build the same entry point under another
//! name so they can run services as real child processes.

use crate::{
    bind, open_call_store, open_feedback_store, run_feedback, run_gateway, run_ingest, run_stats,
    start_stack, GatewayPeers, Shutdown, StackConfig,
};
use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "polymeter",
    version,
    about = "LLM usage and quality metrics: one gateway, every vendor's REST dialect."
)]
struct Cli {
    /// Log line format.
    #[arg(long, env = "POLYMETER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run gateway, ingest, stats and feedback in one process, each on its own port.
    Up(UpArgs),
    /// Run the HTTP gateway alone; it reaches the other services over gRPC.
    Gateway(GatewayArgs),
    /// Run the ingest service alone.
    Ingest(IngestArgs),
    /// Run the stats service (call records) alone.
    Stats(StatsArgs),
    /// Run the feedback service (feedback records) alone.
    Feedback(FeedbackArgs),
}

#[derive(Args)]
struct UpArgs {
    /// HTTP address of the gateway (the REST dialects).
    #[arg(
        long,
        env = "POLYMETER_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    gateway_listen: SocketAddr,
    /// gRPC address of the ingest service.
    #[arg(
        long,
        env = "POLYMETER_INGEST_LISTEN",
        default_value = "127.0.0.1:4317"
    )]
    ingest_listen: SocketAddr,
    /// gRPC address of the stats service.
    #[arg(
        long,
        env = "POLYMETER_STATS_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    stats_listen: SocketAddr,
    /// gRPC address of the feedback service.
    #[arg(
        long,
        env = "POLYMETER_FEEDBACK_LISTEN",
        default_value = "127.0.0.1:50053"
    )]
    feedback_listen: SocketAddr,
    /// Directory holding every service's data (one subdirectory each).
    #[arg(long, env = "POLYMETER_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The stats write-ahead log is compacted into a Parquet segment each time it passes this many bytes.
    #[arg(long, env = "POLYMETER_WAL_ROTATE_BYTES", default_value_t = crate::DEFAULT_WAL_ROTATE_BYTES)]
    wal_rotate_bytes: u64,
}

#[derive(Args)]
struct GatewayArgs {
    /// HTTP address to listen on.
    #[arg(
        long,
        env = "POLYMETER_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// URL of the ingest service.
    #[arg(
        long,
        env = "POLYMETER_INGEST_URL",
        default_value = "http://127.0.0.1:4317"
    )]
    ingest_url: String,
    /// URL of the stats service.
    #[arg(
        long,
        env = "POLYMETER_STATS_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    stats_url: String,
    /// URL of the feedback service.
    #[arg(
        long,
        env = "POLYMETER_FEEDBACK_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    feedback_url: String,
}

#[derive(Args)]
struct IngestArgs {
    /// gRPC address to listen on.
    #[arg(
        long,
        env = "POLYMETER_INGEST_LISTEN",
        default_value = "127.0.0.1:4317"
    )]
    listen: SocketAddr,
    /// URL of the stats service, which owns call records.
    #[arg(
        long,
        env = "POLYMETER_STATS_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    stats_url: String,
    /// URL of the feedback service, which owns feedback records.
    #[arg(
        long,
        env = "POLYMETER_FEEDBACK_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    feedback_url: String,
}

#[derive(Args)]
struct StatsArgs {
    /// gRPC address to listen on.
    #[arg(
        long,
        env = "POLYMETER_STATS_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    listen: SocketAddr,
    /// Directory holding every service's data; the stats service uses `<data-dir>/stats`.
    #[arg(long, env = "POLYMETER_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The stats write-ahead log is compacted into a Parquet segment each time it passes this many bytes.
    #[arg(long, env = "POLYMETER_WAL_ROTATE_BYTES", default_value_t = crate::DEFAULT_WAL_ROTATE_BYTES)]
    wal_rotate_bytes: u64,
}

#[derive(Args)]
struct FeedbackArgs {
    /// gRPC address to listen on.
    #[arg(
        long,
        env = "POLYMETER_FEEDBACK_LISTEN",
        default_value = "127.0.0.1:50053"
    )]
    listen: SocketAddr,
    /// Directory holding every service's data; the feedback service uses `<data-dir>/feedback`.
    #[arg(long, env = "POLYMETER_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The feedback write-ahead log is compacted into a Parquet segment each time it passes this many bytes.
    #[arg(long, env = "POLYMETER_WAL_ROTATE_BYTES", default_value_t = crate::DEFAULT_WAL_ROTATE_BYTES)]
    wal_rotate_bytes: u64,
}

impl Command {
    /// The OpenTelemetry `service.name` this process reports.
    fn service_name(&self) -> &'static str {
        match self {
            Command::Up(_) => "polymeter",
            Command::Gateway(_) => "polymeter-gateway",
            Command::Ingest(_) => "polymeter-ingest",
            Command::Stats(_) => "polymeter-stats",
            Command::Feedback(_) => "polymeter-feedback",
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM (what Kubernetes and compose send).
async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs one service until interrupted.
async fn until_interrupted<F, Fut>(name: &str, listen: SocketAddr, run: F) -> Result<()>
where
    F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let listener = bind(listen).await?;
    let (stop, shutdown) = Shutdown::new();
    println!("{name} listening on {}", listener.local_addr()?);
    tokio::spawn(async move {
        interrupted().await;
        let _ = stop.send(true);
    });
    run(listener, shutdown).await
}

/// Parses the command line and runs it to completion.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> Result<()> {
    // Kept alive until exit, so spans still buffered are flushed.
    let _telemetry = polymeter_telemetry::init(
        matches!(cli.log_format, LogFormat::Json),
        cli.command.service_name(),
    )?;
    match cli.command {
        Command::Up(a) => {
            let mut stack = start_stack(StackConfig {
                gateway: a.gateway_listen,
                ingest: a.ingest_listen,
                stats: a.stats_listen,
                feedback: a.feedback_listen,
                data_dir: a.data_dir.clone(),
                wal_rotate_bytes: a.wal_rotate_bytes,
            })
            .await?;
            println!("polymeter is up (data in {})", a.data_dir.display());
            println!("  gateway   http://{}  (REST dialects)", stack.gateway);
            println!("  ingest    grpc://{}", stack.ingest);
            println!("  stats     grpc://{}", stack.stats);
            println!("  feedback  grpc://{}", stack.feedback);
            println!("Ctrl-C to stop.");
            tokio::select! {
                _ = interrupted() => {
                    println!("shutting down…");
                    stack.shutdown().await
                }
                exit = stack.first_exit() => {
                    stack.request_stop();
                    let first = exit.unwrap_or(Ok(()));
                    stack.join().await.and(first)
                }
            }
        }
        Command::Gateway(a) => {
            until_interrupted("gateway", a.listen, |l, s| async move {
                let peers = GatewayPeers {
                    ingest: &a.ingest_url,
                    stats: &a.stats_url,
                    feedback: &a.feedback_url,
                };
                run_gateway(l, peers, s).await
            })
            .await
        }
        Command::Ingest(a) => {
            until_interrupted("ingest", a.listen, |l, s| async move {
                run_ingest(l, &a.stats_url, &a.feedback_url, s).await
            })
            .await
        }
        Command::Stats(a) => {
            let store = open_call_store(&a.data_dir.join("stats"), a.wal_rotate_bytes)?;
            until_interrupted("stats", a.listen, |l, s| run_stats(l, store, s)).await
        }
        Command::Feedback(a) => {
            let store = open_feedback_store(&a.data_dir.join("feedback"), a.wal_rotate_bytes)?;
            until_interrupted("feedback", a.listen, |l, s| run_feedback(l, store, s)).await
        }
    }
}
