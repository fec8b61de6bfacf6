//! The command line. Every flag has a `POLYMETER_*` environment twin, and
//! every default works out of the box on one machine. The `polymeter` binary
//! is [`main`]; the integration tests build the same entry point under another
//! name so they can run services as real child processes.

use crate::{
    bind, open_credentials, open_feedback_store, open_stats, run_feedback, run_gateway, run_ingest,
    run_stats, start_stack, GatewayPeers, Shutdown, StackConfig, StoreChoice,
};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use polymeter_auth::{Credentials, KeyKind, KeyRequest};
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
    /// Manage tenants and their keys in the credentials file (the gateway
    /// picks changes up without a restart).
    Keys(KeysArgs),
    /// Look up model prices, and manage project price overrides on a running
    /// stats service (they apply to past calls too).
    Prices(PricesArgs),
    /// Set, show or remove a project's retention period, or delete its data,
    /// on the running stats and feedback services.
    Retention(RetentionArgs),
    /// Print the gateway's OpenAPI 3.1 document (the one served at
    /// /openapi.json), or write it to a file.
    Openapi(OpenapiArgs),
}

#[derive(Args)]
struct OpenapiArgs {
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// Where the services that own records listen.
#[derive(Args)]
struct OwnerUrls {
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
struct RetentionArgs {
    #[command(flatten)]
    owners: OwnerUrls,
    /// The tenant that owns the project (default: the project's entity).
    #[arg(long, global = true)]
    tenant: Option<String>,
    #[command(subcommand)]
    command: RetentionCommand,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Keep the project's calls and feedback for this long (`30d`, `12h`,
    /// `90m`, `3600s`); older ones are deleted now and from then on.
    Set { project: String, period: String },
    /// The project's retention period.
    Show { project: String },
    /// Keep the project's data forever again.
    Clear { project: String },
    /// Delete every call and feedback record of the project stored so far.
    DeleteProject {
        project: String,
        /// Required: deleting cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

async fn run_retention(args: RetentionArgs) -> Result<()> {
    use polymeter_model::duration::{format_period, parse_period};
    use polymeter_proto::v1 as pb;
    let (RetentionCommand::Set { project, .. }
    | RetentionCommand::Show { project }
    | RetentionCommand::Clear { project }
    | RetentionCommand::DeleteProject { project, .. }) = &args.command;
    let tenant = match &args.tenant {
        Some(t) => t.clone(),
        None => project.split('/').next().unwrap_or_default().to_owned(),
    };
    let channel = |url: &str| polymeter_gateway::grpc::channel(url).context("bad service URL");
    let projects = polymeter_gateway::grpc::projects(
        channel(&args.owners.stats_url)?,
        channel(&args.owners.feedback_url)?,
        polymeter_gateway::grpc::Deadlines::default(),
    );
    let failed = |e: polymeter_gateway::error::Error| anyhow::anyhow!("{}", e.message().to_owned());
    let show = |seconds: Option<u64>| match seconds {
        Some(s) => format!(
            "{project}: kept for {}",
            format_period(std::time::Duration::from_secs(s))
        ),
        None => format!("{project}: kept forever"),
    };
    match &args.command {
        RetentionCommand::Set { period, .. } => {
            let d = parse_period(period).with_context(|| {
                format!("{period:?} is not a period such as 30d, 12h, 90m or 3600s")
            })?;
            projects
                .set_retention(pb::SetRetentionRequest {
                    tenant,
                    project_id: project.clone(),
                    retention_seconds: Some(d.as_secs()),
                })
                .await
                .map_err(failed)?;
            println!("{}", show(Some(d.as_secs())));
        }
        RetentionCommand::Show { .. } => {
            let seconds = projects
                .get_retention(pb::GetRetentionRequest {
                    tenant,
                    project_id: project.clone(),
                })
                .await
                .map_err(failed)?;
            println!("{}", show(seconds));
        }
        RetentionCommand::Clear { .. } => {
            projects
                .set_retention(pb::SetRetentionRequest {
                    tenant,
                    project_id: project.clone(),
                    retention_seconds: None,
                })
                .await
                .map_err(failed)?;
            println!("{}", show(None));
        }
        RetentionCommand::DeleteProject { yes, .. } => {
            anyhow::ensure!(
                *yes,
                "deleting {project}'s data cannot be undone: add --yes"
            );
            projects
                .delete_project_data(pb::DeleteProjectDataRequest {
                    tenant,
                    project_id: project.clone(),
                })
                .await
                .map_err(failed)?;
            println!("{project}: every call and feedback record stored so far is deleted");
        }
    }
    Ok(())
}

#[derive(Args)]
struct PricesArgs {
    /// URL of the stats service, which keeps the overrides.
    #[arg(
        long,
        env = "POLYMETER_STATS_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    stats_url: String,
    #[command(subcommand)]
    command: PricesCommand,
}

/// Which project an override belongs to.
#[derive(Args)]
struct ProjectScope {
    #[arg(long)]
    tenant: String,
    /// `entity/project`.
    #[arg(long)]
    project: String,
}

#[derive(Subcommand)]
enum PricesCommand {
    /// The shipped table's price for a model name (no server needed).
    Lookup { model: String },
    /// Set a project's price for a model, in USD per token.
    Set {
        #[command(flatten)]
        scope: ProjectScope,
        #[arg(long)]
        model: String,
        #[arg(long)]
        input: f64,
        #[arg(long)]
        output: f64,
        /// Default: the input price.
        #[arg(long)]
        cache_read: Option<f64>,
        /// Default: the input price.
        #[arg(long)]
        cache_write: Option<f64>,
    },
    /// Remove a project's override; the table's price applies again.
    Unset {
        #[command(flatten)]
        scope: ProjectScope,
        #[arg(long)]
        model: String,
    },
    /// A project's overrides.
    List {
        #[command(flatten)]
        scope: ProjectScope,
    },
}

fn show_price(p: &polymeter_proto::v1::Price) -> String {
    format!(
        "input {:e}  output {:e}  cache_read {:e}  cache_write {:e}  (USD per token)",
        p.input,
        p.output,
        p.cache_read.unwrap_or(p.input),
        p.cache_write.unwrap_or(p.input)
    )
}

async fn run_prices(args: PricesArgs) -> Result<()> {
    use polymeter_proto::v1 as pb;
    let stats = || async {
        let channel = tonic::transport::Endpoint::from_shared(args.stats_url.clone())?
            .connect()
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot reach the stats service at {}: {e}", args.stats_url)
            })?;
        anyhow::Ok(pb::stats_service_client::StatsServiceClient::new(channel))
    };
    match &args.command {
        PricesCommand::Lookup { model } => {
            match polymeter_pricing::PriceTable::builtin().lookup(model) {
                Some(p) => println!(
                    "{model}: {}",
                    show_price(&pb::Price {
                        input: p.input,
                        output: p.output,
                        cache_read: Some(p.cache_read),
                        cache_write: Some(p.cache_write)
                    })
                ),
                None => anyhow::bail!(
                "{model}: not in the price table (its calls cost 0 unless a project overrides it)"
            ),
            }
        }
        PricesCommand::Set {
            scope,
            model,
            input,
            output,
            cache_read,
            cache_write,
        } => {
            let price = pb::Price {
                input: *input,
                output: *output,
                cache_read: *cache_read,
                cache_write: *cache_write,
            };
            stats()
                .await?
                .set_price_override(pb::SetPriceOverrideRequest {
                    tenant: scope.tenant.clone(),
                    project_id: scope.project.clone(),
                    price: Some(pb::PriceOverride {
                        model: model.clone(),
                        price: Some(price),
                    }),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
            println!("{} {model}: {}", scope.project, show_price(&price));
        }
        PricesCommand::Unset { scope, model } => {
            let deleted = stats()
                .await?
                .delete_price_override(pb::DeletePriceOverrideRequest {
                    tenant: scope.tenant.clone(),
                    project_id: scope.project.clone(),
                    model: model.clone(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner()
                .deleted;
            if !deleted {
                anyhow::bail!("{} has no override for {model}", scope.project);
            }
            println!("{} {model}: override removed", scope.project);
        }
        PricesCommand::List { scope } => {
            let list = stats()
                .await?
                .list_price_overrides(pb::ListPriceOverridesRequest {
                    tenant: scope.tenant.clone(),
                    project_id: scope.project.clone(),
                })
                .await
                .map_err(|s| anyhow::anyhow!("{}", s.message()))?
                .into_inner();
            for o in list.prices {
                println!("{}: {}", o.model, show_price(&o.price.unwrap_or_default()));
            }
        }
    }
    Ok(())
}

#[derive(Args)]
struct KeysArgs {
    /// The credentials file.
    #[arg(
        long,
        env = "POLYMETER_CREDENTIALS",
        default_value = "./data/credentials.toml"
    )]
    credentials: PathBuf,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a key (creating the tenant if needed) and print its secret, once.
    Add {
        /// The tenant the key acts for.
        #[arg(long)]
        tenant: String,
        #[arg(long, value_enum)]
        kind: KindArg,
        /// Give the tenant this Weave entity (`entity/…` project ids); repeatable.
        #[arg(long = "entity")]
        entities: Vec<String>,
        /// Limit the key to this project (`entity/project`); repeatable.
        #[arg(long = "project")]
        projects: Vec<String>,
        /// Alibaba actions the key may call (default: aicontent:ModelRouterQueryObservationMetrics); repeatable.
        #[arg(long = "action")]
        actions: Vec<String>,
        /// A note to recognise the key by.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List every key (never a secret).
    List,
    /// Refuse a key from now on (Weave key id or access key).
    Disable { id: String },
    /// Accept a disabled key again.
    Enable { id: String },
}

#[derive(Clone, Copy, ValueEnum)]
enum KindArg {
    Weave,
    Alibaba,
    Qianfan,
}

impl From<KindArg> for KeyKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Weave => KeyKind::Weave,
            KindArg::Alibaba => KeyKind::Alibaba,
            KindArg::Qianfan => KeyKind::Qianfan,
        }
    }
}

fn load_or_empty(path: &std::path::Path) -> Result<Credentials> {
    if path.exists() {
        Ok(Credentials::load(path)?)
    } else {
        Ok(Credentials::default())
    }
}

fn run_keys(args: KeysArgs) -> Result<()> {
    let path = &args.credentials;
    match args.command {
        KeysCommand::Add {
            tenant,
            kind,
            entities,
            projects,
            actions,
            label,
        } => {
            let mut credentials = load_or_empty(path)?;
            credentials.ensure_tenant(&tenant, &entities);
            let key = credentials.add_key(&KeyRequest {
                tenant,
                kind: kind.into(),
                label,
                projects,
                actions,
            })?;
            credentials.save(path)?;
            println!("{key}\nThe secret is shown only now; store it safely.");
        }
        KeysCommand::List => {
            let credentials = Credentials::load(path)?;
            println!(
                "{:<12} {:<8} {:<34} {:<8} {:<22} label / projects",
                "tenant", "kind", "id", "state", "created"
            );
            for k in credentials.list() {
                println!(
                    "{:<12} {:<8} {:<34} {:<8} {:<22} {} {}",
                    k.tenant,
                    k.kind,
                    k.id,
                    if k.meta.disabled {
                        "disabled"
                    } else {
                        "active"
                    },
                    k.meta.created,
                    k.meta.label,
                    k.meta.projects.join(",")
                );
            }
        }
        KeysCommand::Disable { id } | KeysCommand::Enable { id } if !path.exists() => {
            anyhow::bail!("no credentials file at {} (no key {id:?})", path.display())
        }
        KeysCommand::Disable { id } => {
            let mut credentials = Credentials::load(path)?;
            credentials.set_disabled(&id, true)?;
            credentials.save(path)?;
            println!("{id} disabled");
        }
        KeysCommand::Enable { id } => {
            let mut credentials = Credentials::load(path)?;
            credentials.set_disabled(&id, false)?;
            credentials.save(path)?;
            println!("{id} enabled");
        }
    }
    Ok(())
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
    #[command(flatten)]
    limits: LimitArgs,
    /// Where records are kept: `embedded` (files under the data directory) or
    /// `clickhouse://user:password@host:8123/database` (user and password may
    /// instead come from CLICKHOUSE_USER / CLICKHOUSE_PASSWORD).
    #[arg(long, env = "POLYMETER_STORE", default_value = "embedded", value_parser = parse_store)]
    store: StoreChoice,
    /// Directory holding every service's data (one subdirectory each).
    #[arg(long, env = "POLYMETER_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The stats write-ahead log is compacted into a Parquet segment each time it passes this many bytes.
    #[arg(long, env = "POLYMETER_WAL_ROTATE_BYTES", default_value_t = crate::DEFAULT_WAL_ROTATE_BYTES)]
    wal_rotate_bytes: u64,
    /// The credentials file (default: credentials.toml in the data directory).
    /// Created with a development tenant, whose keys are printed once, when missing.
    #[arg(long, env = "POLYMETER_CREDENTIALS")]
    credentials: Option<PathBuf>,
}

/// The gateway's deadlines and bounds (`polymeter up` and `polymeter gateway`).
#[derive(Args)]
struct LimitArgs {
    /// How long a query may wait on the services (`500ms`, `30s`, `1m`).
    #[arg(long, env = "POLYMETER_QUERY_TIMEOUT", default_value = "30s", value_parser = polymeter_model::duration::parse_flag)]
    query_timeout: std::time::Duration,
    /// How long a write may wait on the services; past it the write's outcome is unknown (re-sending is safe).
    #[arg(long, env = "POLYMETER_WRITE_TIMEOUT", default_value = "10s", value_parser = polymeter_model::duration::parse_flag)]
    write_timeout: std::time::Duration,
    /// Requests the gateway handles at once; more are refused with 503 and Retry-After.
    #[arg(long, env = "POLYMETER_MAX_INFLIGHT", default_value_t = 512)]
    max_inflight: usize,
    /// Requests one tenant may have in flight at once.
    #[arg(long, env = "POLYMETER_TENANT_INFLIGHT", default_value_t = 128)]
    tenant_inflight: usize,
    /// MiB of request bodies the gateway buffers at once, for all tenants; past it requests get 503.
    #[arg(long, env = "POLYMETER_MAX_INFLIGHT_MIB", default_value_t = 1024)]
    max_inflight_mib: usize,
    /// MiB of request bodies one tenant may have buffered at once.
    #[arg(long, env = "POLYMETER_TENANT_INFLIGHT_MIB", default_value_t = 256)]
    tenant_inflight_mib: usize,
    /// A request body must arrive within this long.
    #[arg(long, env = "POLYMETER_BODY_TIMEOUT", default_value = "30s", value_parser = polymeter_model::duration::parse_flag)]
    body_timeout: std::time::Duration,
    /// Request headers must arrive within this long; idle connections close after it.
    #[arg(long, env = "POLYMETER_HEADER_TIMEOUT", default_value = "10s", value_parser = polymeter_model::duration::parse_flag)]
    header_timeout: std::time::Duration,
}

impl From<&LimitArgs> for polymeter_gateway::Limits {
    fn from(a: &LimitArgs) -> Self {
        polymeter_gateway::Limits {
            deadlines: polymeter_gateway::grpc::Deadlines {
                query: a.query_timeout,
                write: a.write_timeout,
            },
            max_inflight: a.max_inflight,
            tenant_inflight: a.tenant_inflight,
            max_inflight_bytes: a.max_inflight_mib.saturating_mul(1 << 20),
            tenant_inflight_bytes: a.tenant_inflight_mib.saturating_mul(1 << 20),
            body_timeout: a.body_timeout,
            header_timeout: a.header_timeout,
        }
    }
}

#[derive(Args)]
struct GatewayArgs {
    /// The credentials file: tenants, their entities and keys.
    #[arg(
        long,
        env = "POLYMETER_CREDENTIALS",
        default_value = "./data/credentials.toml"
    )]
    credentials: PathBuf,
    /// When the credentials file is missing, create it with a development
    /// tenant and print its keys (instead of refusing to start).
    #[arg(long, env = "POLYMETER_CREATE_DEV_CREDENTIALS")]
    create_dev_credentials: bool,
    #[command(flatten)]
    limits: LimitArgs,
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
    #[command(flatten)]
    owners: OwnerUrls,
}

#[derive(Args)]
struct IngestArgs {
    /// Serve Prometheus `/metrics` on this address (e.g. 127.0.0.1:9100).
    #[arg(long, env = "POLYMETER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// gRPC address to listen on.
    #[arg(
        long,
        env = "POLYMETER_INGEST_LISTEN",
        default_value = "127.0.0.1:4317"
    )]
    listen: SocketAddr,
    #[command(flatten)]
    owners: OwnerUrls,
    /// The credentials file OTLP/gRPC exporters' keys are checked against
    /// (re-read when it changes; while missing, every key is refused).
    #[arg(
        long,
        env = "POLYMETER_CREDENTIALS",
        default_value = "./data/credentials.toml"
    )]
    credentials: PathBuf,
}

#[derive(Args)]
struct StatsArgs {
    /// Serve Prometheus `/metrics` on this address (e.g. 127.0.0.1:9100).
    #[arg(long, env = "POLYMETER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// gRPC address to listen on.
    #[arg(
        long,
        env = "POLYMETER_STATS_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    listen: SocketAddr,
    /// Where records are kept: `embedded` (files under the data directory) or
    /// `clickhouse://user:password@host:8123/database` (user and password may
    /// instead come from CLICKHOUSE_USER / CLICKHOUSE_PASSWORD).
    #[arg(long, env = "POLYMETER_STORE", default_value = "embedded", value_parser = parse_store)]
    store: StoreChoice,
    /// Directory holding every service's data; the stats service uses `<data-dir>/stats`.
    #[arg(long, env = "POLYMETER_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// The stats write-ahead log is compacted into a Parquet segment each time it passes this many bytes.
    #[arg(long, env = "POLYMETER_WAL_ROTATE_BYTES", default_value_t = crate::DEFAULT_WAL_ROTATE_BYTES)]
    wal_rotate_bytes: u64,
}

#[derive(Args)]
struct FeedbackArgs {
    /// Serve Prometheus `/metrics` on this address (e.g. 127.0.0.1:9100).
    #[arg(long, env = "POLYMETER_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// gRPC address to listen on.
    #[arg(
        long,
        env = "POLYMETER_FEEDBACK_LISTEN",
        default_value = "127.0.0.1:50053"
    )]
    listen: SocketAddr,
    /// Where records are kept: `embedded` (files under the data directory) or
    /// `clickhouse://user:password@host:8123/database` (user and password may
    /// instead come from CLICKHOUSE_USER / CLICKHOUSE_PASSWORD).
    #[arg(long, env = "POLYMETER_STORE", default_value = "embedded", value_parser = parse_store)]
    store: StoreChoice,
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
            Command::Keys(_) => "polymeter-keys",
            Command::Prices(_) => "polymeter-prices",
            Command::Retention(_) => "polymeter-retention",
            Command::Openapi(_) => "polymeter-openapi",
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
async fn until_interrupted<F, Fut>(
    name: &str,
    listen: SocketAddr,
    metrics: Option<SocketAddr>,
    run: F,
) -> Result<()>
where
    F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let listener = bind(listen).await?;
    let (stop, shutdown) = Shutdown::new();
    println!("{name} listening on {}", listener.local_addr()?);
    if let Some(addr) = metrics {
        let metrics = bind(addr).await?;
        println!("{name} metrics on http://{}/metrics", metrics.local_addr()?);
        tokio::spawn(polymeter_telemetry::metrics::serve(
            metrics,
            shutdown.clone().wait(),
        ));
    }
    tokio::spawn(async move {
        interrupted().await;
        let _ = stop.send(true);
    });
    run(listener, shutdown).await
}

fn parse_store(text: &str) -> Result<StoreChoice, String> {
    StoreChoice::parse(text).map_err(|e| e.to_string())
}

/// Parses the command line and runs it to completion.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    let cli = match cli.command {
        Command::Keys(args) => return run_keys(args),
        Command::Openapi(args) => {
            let document = polymeter_gateway::openapi::document_json() + "\n";
            return match args.out {
                Some(path) => std::fs::write(&path, document)
                    .with_context(|| format!("cannot write {}", path.display())),
                None => {
                    print!("{document}");
                    Ok(())
                }
            };
        }
        _ => cli,
    };
    crate::keep_returning_freed_memory();
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
                credentials: a
                    .credentials
                    .clone()
                    .unwrap_or_else(|| a.data_dir.join(crate::CREDENTIALS_FILE)),
                data_dir: a.data_dir.clone(),
                wal_rotate_bytes: a.wal_rotate_bytes,
                store: a.store.clone(),
                limits: (&a.limits).into(),
            })
            .await?;
            print_created_keys(&stack.created_keys);
            match &a.store {
                StoreChoice::Embedded => {
                    println!("polymeter is up (data in {})", a.data_dir.display())
                }
                StoreChoice::ClickHouse(url) => println!("polymeter is up (records in {url})"),
            }
            println!(
                "  console   http://{}/  (sign in with a weave key)",
                stack.gateway
            );
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
            let (keyring, created) = open_credentials(&a.credentials, a.create_dev_credentials)?;
            print_created_keys(&created);
            until_interrupted("gateway", a.listen, None, |l, s| async move {
                let peers = GatewayPeers {
                    ingest: &a.ingest_url,
                    stats: &a.owners.stats_url,
                    feedback: &a.owners.feedback_url,
                };
                let limits = (&a.limits).into();
                run_gateway(l, peers, keyring, limits, s).await
            })
            .await
        }
        Command::Ingest(a) => {
            let keyring = polymeter_auth::Keyring::open_or_empty(&a.credentials)?;
            until_interrupted("ingest", a.listen, a.metrics_listen, |l, s| async move {
                run_ingest(l, &a.owners.stats_url, &a.owners.feedback_url, keyring, s).await
            })
            .await
        }
        Command::Stats(a) => {
            let stores =
                open_stats(&a.store, &a.data_dir.join("stats"), a.wal_rotate_bytes).await?;
            until_interrupted("stats", a.listen, a.metrics_listen, |l, s| {
                run_stats(l, stores, s)
            })
            .await
        }
        Command::Feedback(a) => {
            let store =
                open_feedback_store(&a.store, &a.data_dir.join("feedback"), a.wal_rotate_bytes)
                    .await?;
            until_interrupted("feedback", a.listen, a.metrics_listen, |l, s| {
                run_feedback(l, store, s)
            })
            .await
        }
        Command::Keys(_) | Command::Openapi(_) => {
            unreachable!("handled before the runtime starts")
        }
        Command::Prices(args) => run_prices(args).await,
        Command::Retention(args) => run_retention(args).await,
    }
}

fn print_created_keys(keys: &[polymeter_auth::NewKey]) {
    if keys.is_empty() {
        return;
    }
    println!(
        "No credentials file: created development tenant {:?} (owns every entity). Its keys, shown only now:",
        crate::DEV_TENANT
    );
    for key in keys {
        println!("  {}", key.to_string().replace('\n', "\n  "));
    }
}
