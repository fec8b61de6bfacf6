//! What every ClickHouse-backed store shares, whatever its records:
//!
//! * [`StoreUrl`]: `clickhouse://user:password@host:8123/database` parsed, with
//!   credentials from the environment when the URL has none;
//! * [`connect`]: a `clickhouse::Client` for it, with inserts acknowledged only
//!   once ClickHouse has written them;
//! * [`migrate`]: versioned, idempotent schema migrations recorded in a
//!   `polymeter_migrations` table, safe when replicas start together;
//! * [`Shared`]: a replica's copy of state all replicas keep in ClickHouse;
//! * [`Failure`]: a ClickHouse error or outage as one of the project's error
//!   kinds (an outage is "unavailable, retry"; a rejected statement is a bug).

mod migrate;
mod shared;
mod statement;
mod url;

pub use migrate::{migrate, Migration, Schema};
pub use shared::{Change, Shared};
pub use statement::{Param, Statement};
pub use url::{StoreUrl, UrlError};

use polymeter_error::ErrorKind;

/// A ClickHouse failure, with the kind it maps to.
#[derive(Debug, thiserror::Error)]
#[error("clickhouse: {message}")]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl polymeter_error::HasKind for Failure {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<clickhouse::error::Error> for Failure {
    fn from(e: clickhouse::error::Error) -> Self {
        use clickhouse::error::Error as E;
        let kind = match &e {
            // The server answered with an error about our statement or rows:
            // a bug here, which a retry does not fix.
            E::BadResponse(text) if is_ours(text) => ErrorKind::Internal,
            // Unreachable, a dropped connection, or an operational refusal
            // (overload, too many parts, memory, a replica down, credentials
            // not accepted): nothing was acknowledged, so retrying is safe.
            E::Network(_) | E::TimedOut | E::BadResponse(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        };
        Failure {
            kind,
            message: e.to_string(),
        }
    }
}

/// Server errors that mean the statement itself is wrong.
fn is_ours(text: &str) -> bool {
    const CODES: &[u32] = &[
        16,  // NO_SUCH_COLUMN_IN_TABLE
        27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
        36,  // BAD_ARGUMENTS
        42,  // NUMBER_OF_ARGUMENTS_DOESNT_MATCH
        43,  // ILLEGAL_TYPE_OF_ARGUMENT
        44,  // ILLEGAL_COLUMN
        46,  // UNKNOWN_FUNCTION
        47,  // UNKNOWN_IDENTIFIER
        53,  // TYPE_MISMATCH
        62,  // SYNTAX_ERROR
        184, // ILLEGAL_AGGREGATION
        215, // NOT_AN_AGGREGATE
    ];
    text.split("Code: ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .and_then(|code| code.trim().parse::<u32>().ok())
        .is_some_and(|code| CODES.contains(&code))
}

/// Versions strictly increase within a process and follow the wall clock
/// across processes; each call takes two, so a tombstone (`v`) sorts before
/// the row that replaces it (`v + 1`).
pub fn next_version() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut last = LAST.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        let next = now.max(last + 2);
        match LAST.compare_exchange_weak(
            last,
            next,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        ) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// Deletes `tenant`'s `project` rows of `table`: all of them, or with
/// `before = (column, value)` those whose `column` is below `value` — one
/// lightweight `DELETE` (rows are hidden at once and removed as parts
/// merge), bounded by `limit`.
pub async fn delete_project_rows(
    client: &clickhouse::Client,
    schema: &Schema,
    table: &str,
    (tenant, project): (&str, &str),
    before: Option<(&str, i64)>,
    limit: std::time::Duration,
) -> Result<(), Failure> {
    let mut st = Statement::default();
    let mut condition = format!(
        "tenant = {} AND project_id = {}",
        st.bind("String", Param::Str(tenant.to_owned())),
        st.bind("String", Param::Str(project.to_owned()))
    );
    if let Some((column, value)) = before {
        let value = st.bind("Int64", Param::Int(value));
        condition.push_str(&format!(" AND {column} < {value}"));
    }
    st.sql = schema.delete_from(table, &condition);
    within(
        limit,
        &format!("deleting from {table}"),
        st.into_query(client).execute(),
    )
    .await
}

/// The longest a query to ClickHouse may take, unless the store URL says
/// otherwise, before the store gives up and answers "unavailable, retry"
/// (the server is told the same limit, so it stops working on it too).
pub const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest a write may take; past it, the write's outcome is unknown.
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// [`bounded`] for a bare ClickHouse call.
pub async fn within<T>(
    limit: std::time::Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T, clickhouse::error::Error>>,
) -> Result<T, Failure> {
    bounded(limit, what, async { work.await.map_err(Failure::from) }).await
}

/// Runs `work` for at most `limit`: a ClickHouse that stalls costs a caller
/// at most that long. A write cut off this way may or may not have been
/// applied; re-sending it is safe (the stores are keyed).
pub async fn bounded<T, E: From<Failure>>(
    limit: std::time::Duration,
    what: &str,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match tokio::time::timeout(limit, work).await {
        Ok(done) => done,
        Err(_) => Err(E::from(Failure {
            kind: ErrorKind::Unavailable,
            message: format!(
                "{what} did not finish within {} ms; it may have been applied, and re-sending is safe",
                limit.as_millis()
            ),
        })),
    }
}

/// A client for `url`: uncompressed HTTP (the adapter in `tests/` and every
/// server speak it), synchronous inserts (acknowledged once written; on a
/// cluster with `insert_distributed_sync`, so a `Distributed` table does not
/// acknowledge before its shard has), the query time limit told to the
/// server, and the project's product name in the user agent.
pub fn connect(url: &StoreUrl) -> clickhouse::Client {
    let client = clickhouse::Client::default()
        .with_url(url.http_url())
        .with_user(url.user.clone())
        .with_password(url.password.clone())
        .with_database(url.database.clone())
        .with_compression(clickhouse::Compression::None)
        .with_setting(
            "max_execution_time",
            url.query_timeout.as_secs().max(1).to_string(),
        )
        .with_product_info("polymeter", env!("CARGO_PKG_VERSION"));
    match url.cluster {
        Some(_) => client.with_setting("insert_distributed_sync", "1"),
        None => client,
    }
}
