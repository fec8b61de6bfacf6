//! Starting Polymeter's processes. Each service has a `run_*` function that
//! serves on an already-bound listener until a shutdown signal; `polymeter up`
//! and the integration tests compose all four with [`start_stack`], each still
//! on its own port and still talking gRPC. The binary is a thin clap layer over
//! this library.

pub mod cli;

use anyhow::Context;
use polymeter_auth::{Credentials, Keyring, NewKey};
use polymeter_feedback::{EmbeddedFeedbackStore, FeedbackStore};
use polymeter_gateway::grpc::{channel, services};
use polymeter_retention::Policies;
use polymeter_stats::prices::PriceOverrides;
use polymeter_stats::{CallStore, EmbeddedStore};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The tenant `polymeter up` creates when there is no credentials file.
pub const DEV_TENANT: &str = "local";

/// A shutdown signal every service of a stack listens to.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self(rx))
    }

    /// Resolves once shutdown has been asked for (or its sender is gone).
    pub fn wait(self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0;
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// Where the owning services (stats, feedback) keep their records.
#[derive(Debug, Clone, Default)]
pub enum StoreChoice {
    /// Each service in its own directory under the data directory.
    #[default]
    Embedded,
    /// Stateless services over one ClickHouse database.
    ClickHouse(polymeter_clickhouse::StoreUrl),
}

impl StoreChoice {
    /// `embedded` (or nothing) or `clickhouse://user:password@host:8123/database`;
    /// credentials may come from `CLICKHOUSE_USER` / `CLICKHOUSE_PASSWORD`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        match text.trim() {
            "" | "embedded" => Ok(StoreChoice::Embedded),
            url => Ok(StoreChoice::ClickHouse(
                polymeter_clickhouse::StoreUrl::parse(url, |k| std::env::var(k).ok())?,
            )),
        }
    }
}

/// How often a stats replica on ClickHouse re-reads the price overrides
/// (a change made through another replica shows here within this time).
const PRICE_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// What the stats service keeps.
pub struct StatsStores {
    pub calls: Arc<dyn CallStore>,
    pub prices: Arc<PriceOverrides>,
    pub retention: Arc<Policies>,
}

/// How often a service on ClickHouse re-reads its projects' retention.
const RETENTION_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens what the stats service keeps — its call store, the projects' price
/// overrides and retention periods: the embedded store and files under
/// `data_dir`, or the ClickHouse database (applying its migrations).
pub async fn open_stats(
    choice: &StoreChoice,
    data_dir: &Path,
    wal_rotate_bytes: u64,
) -> anyhow::Result<StatsStores> {
    match choice {
        StoreChoice::Embedded => Ok(StatsStores {
            calls: open_embedded_call_store(data_dir, wal_rotate_bytes)?,
            prices: open_price_overrides(data_dir)?,
            retention: Arc::new(Policies::open(data_dir)?),
        }),
        StoreChoice::ClickHouse(url) => {
            use polymeter_stats::clickhouse::{prices::PriceTable, ClickHouseStore};
            let store = ClickHouseStore::open(url)
                .await
                .with_context(|| format!("cannot open the call store at {url}"))?;
            let prices = PriceOverrides::open_clickhouse(PriceTable::new(&store), PRICE_REFRESH)
                .await
                .with_context(|| format!("cannot read the price overrides at {url}"))?;
            let retention = Policies::open_clickhouse(store.retention_table(), RETENTION_REFRESH)
                .await
                .with_context(|| format!("cannot read the retention periods at {url}"))?;
            tracing::info!(%url, "call store open on ClickHouse");
            Ok(StatsStores {
                calls: Arc::new(store),
                prices,
                retention,
            })
        }
    }
}

/// Opens the stats service's durable store under `data_dir`, loading its
/// segments and replaying its log. Fails, naming the file, on corrupt data.
fn open_embedded_call_store(
    data_dir: &Path,
    wal_rotate_bytes: u64,
) -> anyhow::Result<Arc<dyn CallStore>> {
    let started = std::time::Instant::now();
    let options = polymeter_store::Options {
        rotate_bytes: wal_rotate_bytes,
        ..Default::default()
    };
    let store = EmbeddedStore::open_with(data_dir, options)
        .with_context(|| format!("cannot open the call store in {}", data_dir.display()))?;
    release_freed_memory();
    let size = store.size();
    let per_call = |bytes: usize| bytes as f64 / size.calls.max(1) as f64;
    let by_column: Vec<String> = size
        .by_column
        .iter()
        .map(|(name, bytes)| format!("{name} {:.1}", per_call(*bytes)))
        .collect();
    tracing::info!(
        calls = size.calls,
        dir = %data_dir.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        bytes_per_call = format!("{:.1}", per_call(size.heap_bytes)),
        by_column = by_column.join(", "),
        "call store open"
    );
    Ok(Arc::new(store))
}

/// Opens the stats service's project price overrides under `data_dir`.
fn open_price_overrides(data_dir: &Path) -> anyhow::Result<Arc<PriceOverrides>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    Ok(Arc::new(PriceOverrides::open(data_dir)?))
}

pub async fn run_stats(
    listener: TcpListener,
    stores: StatsStores,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let StatsStores {
        calls,
        prices,
        retention,
    } = stores;
    polymeter_stats::serve(listener, calls, prices, retention, shutdown.wait())
        .await
        .context("stats service failed")
}

pub async fn run_ingest(
    listener: TcpListener,
    stats: &str,
    feedback: &str,
    keyring: Keyring,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let stats = channel(stats).context("bad stats address")?;
    let feedback = channel(feedback).context("bad feedback address")?;
    polymeter_ingest::serve(
        listener,
        stats,
        feedback,
        Arc::new(keyring),
        shutdown.wait(),
    )
    .await
    .context("ingest service failed")
}

/// Loading decodes whole segments into short-lived buffers; glibc keeps such
/// freed memory in its arenas, so hand it back to the system once loaded
/// (measured: about half the resident memory after a restart).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How often a long-running process hands freed memory back to the system.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Hands freed memory back to the system every few seconds, for as long as
/// the process runs. glibc keeps memory freed by a burst of large requests
/// in its arenas; measured after 24 concurrent 30 MiB batches, the process
/// stayed at 577 MiB until it exited. Trimming costs a few milliseconds
/// of one thread each time.
pub fn keep_returning_freed_memory() {
    // glibc raises its mmap threshold each time a large block is freed, up
    // to 32 MiB; past that, growing columns of a few MiB are reallocated
    // inside the heap and leave holes there that trimming cannot return.
    // A fixed 1 MiB threshold keeps every large column in its own mapping,
    // which grows in place (`mremap`).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    std::thread::Builder::new()
        .name("memory-trim".into())
        .spawn(|| loop {
            std::thread::sleep(TRIM_EVERY);
            release_freed_memory();
        })
        .expect("cannot start the memory trimmer");
}

/// What the feedback service keeps.
pub struct FeedbackStores {
    pub feedback: Arc<dyn FeedbackStore>,
    pub retention: Arc<Policies>,
}

/// Opens the feedback service's store and its projects' retention periods:
/// embedded under `data_dir`, or ClickHouse.
pub async fn open_feedback_store(
    choice: &StoreChoice,
    data_dir: &Path,
    wal_rotate_bytes: u64,
) -> anyhow::Result<FeedbackStores> {
    if let StoreChoice::ClickHouse(url) = choice {
        let store = polymeter_feedback::ClickHouseFeedbackStore::open(url)
            .await
            .with_context(|| format!("cannot open the feedback store at {url}"))?;
        let retention = Policies::open_clickhouse(store.retention_table(), RETENTION_REFRESH)
            .await
            .with_context(|| format!("cannot read the retention periods at {url}"))?;
        tracing::info!(%url, "feedback store open on ClickHouse");
        return Ok(FeedbackStores {
            feedback: Arc::new(store),
            retention,
        });
    }
    let options = polymeter_store::Options {
        rotate_bytes: wal_rotate_bytes,
        ..Default::default()
    };
    let store = EmbeddedFeedbackStore::open(data_dir, options)
        .with_context(|| format!("cannot open the feedback store in {}", data_dir.display()))?;
    release_freed_memory();
    tracing::info!(records = store.rows(), dir = %data_dir.display(), "feedback store open");
    Ok(FeedbackStores {
        feedback: Arc::new(store),
        retention: Arc::new(Policies::open(data_dir)?),
    })
}

pub async fn run_feedback(
    listener: TcpListener,
    stores: FeedbackStores,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    polymeter_feedback::serve(listener, stores.feedback, stores.retention, shutdown.wait())
        .await
        .context("feedback service failed")
}

pub struct GatewayPeers<'a> {
    pub ingest: &'a str,
    pub stats: &'a str,
    pub feedback: &'a str,
}

/// Opens the gateway's credentials file. When it does not exist and
/// `create_dev` is set, first writes one with a development tenant that owns
/// every entity and has one key of each kind; those keys are returned so the
/// caller can print them — the only time they are shown.
pub fn open_credentials(path: &Path, create_dev: bool) -> anyhow::Result<(Keyring, Vec<NewKey>)> {
    let mut created = Vec::new();
    if create_dev && !path.exists() {
        let (credentials, keys) = Credentials::development(DEV_TENANT);
        credentials.save(path)?;
        created = keys;
    } else if !path.exists() {
        anyhow::bail!(
            "no credentials file at {}: create one with `polymeter keys add --tenant NAME --entity ENTITY --kind weave`",
            path.display()
        );
    }
    Ok((Keyring::open(path)?, created))
}

pub async fn run_gateway(
    listener: TcpListener,
    peers: GatewayPeers<'_>,
    keyring: Keyring,
    limits: polymeter_gateway::Limits,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let services = services(
        channel(peers.ingest).context("bad ingest address")?,
        channel(peers.stats).context("bad stats address")?,
        channel(peers.feedback).context("bad feedback address")?,
        limits.deadlines,
    );
    let auth = Arc::new(polymeter_gateway::Auth::new(keyring));
    polymeter_gateway::serve(listener, services, auth, limits, shutdown.wait())
        .await
        .context("gateway failed")
}

/// Where each process of a stack listens. Port 0 picks a free port.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub gateway: SocketAddr,
    pub ingest: SocketAddr,
    pub stats: SocketAddr,
    pub feedback: SocketAddr,
    pub data_dir: PathBuf,
    /// The write-ahead log is compacted into a segment each time it passes this size.
    pub wal_rotate_bytes: u64,
    /// The credentials file; created with a development tenant when missing.
    pub credentials: PathBuf,
    /// Where stats and feedback keep their records.
    pub store: StoreChoice,
    /// The gateway's deadlines and in-flight bounds.
    pub limits: polymeter_gateway::Limits,
}

/// The credentials file's name inside the data directory, its default home.
pub const CREDENTIALS_FILE: &str = "credentials.toml";

/// Default size at which the write-ahead log rotates into a Parquet segment.
pub const DEFAULT_WAL_ROTATE_BYTES: u64 = 64 << 20;

impl StackConfig {
    /// Every process on a free loopback port; for tests.
    pub fn ephemeral(data_dir: PathBuf) -> Self {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Self {
            gateway: any,
            ingest: any,
            stats: any,
            feedback: any,
            credentials: data_dir.join(CREDENTIALS_FILE),
            data_dir,
            wal_rotate_bytes: DEFAULT_WAL_ROTATE_BYTES,
            store: StoreChoice::Embedded,
            limits: polymeter_gateway::Limits::default(),
        }
    }
}

/// A running stack: where each process listens, and how to stop it.
pub struct Stack {
    pub gateway: SocketAddr,
    pub ingest: SocketAddr,
    pub stats: SocketAddr,
    pub feedback: SocketAddr,
    /// Keys of the development tenant, when this start created it.
    pub created_keys: Vec<NewKey>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

/// Binds every port first (so a port clash fails before anything runs), then
/// starts the four services.
pub async fn start_stack(config: StackConfig) -> anyhow::Result<Stack> {
    let gateway = bind(config.gateway).await?;
    let ingest = bind(config.ingest).await?;
    let stats = bind(config.stats).await?;
    let feedback = bind(config.feedback).await?;
    let addrs = [
        gateway.local_addr()?,
        ingest.local_addr()?,
        stats.local_addr()?,
        feedback.local_addr()?,
    ];
    let stats_stores = open_stats(
        &config.store,
        &config.data_dir.join("stats"),
        config.wal_rotate_bytes,
    )
    .await?;
    let feedback_store = open_feedback_store(
        &config.store,
        &config.data_dir.join("feedback"),
        config.wal_rotate_bytes,
    )
    .await?;
    let (keyring, created_keys) = open_credentials(&config.credentials, true)?;
    let ingest_keyring = Keyring::open(&config.credentials)?;

    let (stop, shutdown) = Shutdown::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(run_stats(stats, stats_stores, shutdown.clone()));
    let (stats_url, feedback_url) = (url(addrs[2]), url(addrs[3]));
    let s = shutdown.clone();
    tasks.spawn(
        async move { run_ingest(ingest, &stats_url, &feedback_url, ingest_keyring, s).await },
    );
    tasks.spawn(run_feedback(feedback, feedback_store, shutdown.clone()));
    let (ingest_url, stats_url, feedback_url) = (url(addrs[1]), url(addrs[2]), url(addrs[3]));
    tasks.spawn(async move {
        let peers = GatewayPeers {
            ingest: &ingest_url,
            stats: &stats_url,
            feedback: &feedback_url,
        };
        run_gateway(gateway, peers, keyring, config.limits, shutdown).await
    });
    Ok(Stack {
        gateway: addrs[0],
        ingest: addrs[1],
        stats: addrs[2],
        feedback: addrs[3],
        created_keys,
        stop,
        tasks,
    })
}

impl Stack {
    /// Asks every service to stop and waits until all have drained.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.join().await
    }

    /// Waits for the services; returns the first failure, if any.
    pub async fn join(&mut self) -> anyhow::Result<()> {
        while let Some(done) = self.tasks.join_next().await {
            done.context("service task panicked")??;
        }
        Ok(())
    }

    /// Resolves when some service stops (which, before shutdown, is a failure).
    pub async fn first_exit(&mut self) -> Option<anyhow::Result<()>> {
        self.tasks
            .join_next()
            .await
            .map(|r| r.context("service task panicked").and_then(|r| r))
    }

    pub fn request_stop(&self) {
        let _ = self.stop.send(true);
    }
}
