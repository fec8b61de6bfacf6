//! The stats service's one storage seam, at the level of the question: a
//! store is asked [`CallStore::aggregate`] and answers with an
//! [`AggregateResult`]; it is told [`CallStore::upsert`]. How it answers is
//! its own business — the embedded store ([`crate::embedded`]) scans its
//! in-memory columns, a ClickHouse store answers in SQL — and nothing above
//! the trait sees rows or layouts.
//!
//! The trait is async because a store may wait on a network (ClickHouse over
//! HTTP); a store whose work is CPU-bound or blocks on fsync (the embedded
//! one) runs it on the blocking pool inside its implementation.

use crate::error::StatsError;
use crate::prices::Pricing;
use crate::query::CallQuery;
use polymeter_model::CallRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take writes or answer now; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's data is damaged; it refuses to answer rather than answer wrong.
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

impl polymeter_error::HasKind for StoreError {
    fn kind(&self) -> polymeter_error::ErrorKind {
        match self {
            StoreError::Unavailable(_) => polymeter_error::ErrorKind::Unavailable,
            StoreError::Corrupt(_) => polymeter_error::ErrorKind::DataLoss,
        }
    }
}

impl From<polymeter_store::StoreError> for StoreError {
    fn from(e: polymeter_store::StoreError) -> Self {
        use polymeter_error::{ErrorKind, HasKind};
        match e.kind() {
            ErrorKind::DataLoss => StoreError::Corrupt(e.to_string()),
            // A write the embedded store could not encode is refused whole;
            // nothing was stored, so "unavailable, retry" stays truthful.
            _ => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// One row of an answer: a bucket × group cell.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub bucket_start_us: Option<i64>,
    pub bucket_utc_offset_seconds: i32,
    pub group: Vec<Option<String>>,
    pub row_count: u64,
    /// Parallel to the query's measures.
    pub values: Vec<Option<f64>>,
}

/// The answer to one [`CallQuery`].
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateResult {
    pub bucket_width_seconds: Option<u64>,
    pub rows: Vec<ResultRow>,
    /// Rows before limit and offset.
    pub total_rows: usize,
}

/// Size figures for benchmarks and logs.
#[derive(Debug, Clone, Default)]
pub struct StoreSize {
    pub calls: usize,
    pub heap_bytes: usize,
    /// `heap_bytes` by kind of column, where the store knows.
    pub by_column: Vec<(&'static str, usize)>,
}

/// A call store also expires and deletes a project's calls
/// ([`polymeter_retention::ProjectData`]).
#[tonic::async_trait]
pub trait CallStore: polymeter_retention::ProjectData {
    /// Merges each write into the call with its key: a half it carries
    /// (start or end) replaces the stored half, so a re-sent or split call
    /// counts once. The batch is applied whole or not at all, and is durable
    /// when this returns.
    async fn upsert(&self, batch: Vec<CallRecord>) -> Result<(), StatsError>;

    /// Answers `query`, pricing cost metrics with `pricing`.
    async fn aggregate(
        &self,
        query: CallQuery,
        pricing: Pricing,
    ) -> Result<AggregateResult, StatsError>;

    fn size(&self) -> StoreSize;
}

/// One rule for every route and store: a call may not end before it
/// started, whichever half arrives last (a whole call, a start after its
/// end, an end after its start). `known` gives what is stored about a call
/// (start and end, microseconds); the batch is checked in order, as it would
/// be applied.
pub fn check_halves(
    batch: &[CallRecord],
    mut known: impl FnMut(&CallRecord) -> (Option<i64>, Option<i64>),
) -> Result<(), StatsError> {
    /// A call's start and end, microseconds, as far as known.
    type Halves = (Option<i64>, Option<i64>);
    let mut seen: std::collections::HashMap<(&str, &str, &str), Halves> =
        std::collections::HashMap::new();
    for r in batch {
        let key = (r.tenant.as_str(), r.project_id.as_str(), r.call_id.as_str());
        // A whole call replaces both stored halves: nothing stored to read.
        let whole = r.start.is_some() && r.end.is_some();
        let halves = seen
            .entry(key)
            .or_insert_with(|| if whole { (None, None) } else { known(r) });
        if let Some(s) = &r.start {
            halves.0 = Some(s.started_at.timestamp_micros());
        }
        if let Some(e) = &r.end {
            halves.1 = Some(e.ended_at.timestamp_micros());
        }
        if let (Some(started), Some(ended)) = *halves {
            if ended < started {
                return Err(StatsError::invalid(format!(
                    "call {}: ended_at ({}) is before started_at ({})",
                    r.call_id.as_str(),
                    polymeter_model::time::from_micros(ended)
                        .map_or(ended.to_string(), |t| t.to_rfc3339()),
                    polymeter_model::time::from_micros(started)
                        .map_or(started.to_string(), |t| t.to_rfc3339()),
                )));
            }
        }
    }
    Ok(())
}
