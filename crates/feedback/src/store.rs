//! The feedback service's one storage seam, at the level of the question:
//! a store is told [`FeedbackStore::append`] and asked
//! [`FeedbackStore::aggregate`]; the embedded store scans its columns, a
//! ClickHouse store answers in SQL. Async for the same reason as the
//! call store: a store may wait on a network, and one that blocks (the
//! embedded one, on scans and fsync) runs its work on the blocking pool.

use crate::error::FeedbackError;
use crate::query::FeedbackQuery;
use crate::table::FeedbackTable;
use polymeter_proto::v1 as pb;
use polymeter_store::{Durable, Options};
use std::path::Path;
use std::sync::Arc;

/// A feedback store also expires and deletes a project's feedback
/// ([`polymeter_retention::ProjectData`]).
#[tonic::async_trait]
pub trait FeedbackStore: polymeter_retention::ProjectData {
    /// Stores the batch whole or not at all; durable when this returns.
    async fn append(&self, batch: Vec<pb::FeedbackWrite>) -> Result<(), FeedbackError>;

    async fn aggregate(
        &self,
        query: FeedbackQuery,
    ) -> Result<pb::AggregateFeedbackResponse, FeedbackError>;
}

/// Feedback in the embedded durable store under one directory.
#[derive(Clone)]
pub struct EmbeddedFeedbackStore {
    inner: Arc<Durable<FeedbackTable>>,
}

impl EmbeddedFeedbackStore {
    /// Opens (or creates) the store in `dir`, loading its segments and
    /// replaying its log. Fails, naming the file, when stored data is corrupt.
    pub fn open(dir: &Path, options: Options) -> Result<Self, FeedbackError> {
        Ok(Self {
            inner: Arc::new(Durable::open(dir, FeedbackTable::default(), options)?),
        })
    }

    /// Records held, for logs.
    pub fn rows(&self) -> usize {
        self.inner.read().rows()
    }
}

/// A project's feedback goes as whole segments of days (expiry) or of the
/// project (deletion); see `polymeter_store::Durable`.
#[tonic::async_trait]
impl polymeter_retention::ProjectData for EmbeddedFeedbackStore {
    async fn expire(
        &self,
        tenant: &str,
        project: &str,
        cutoff_us: i64,
        why: polymeter_retention::Expiry,
    ) -> Result<(), polymeter_error::Error> {
        polymeter_retention::on_durable(&self.inner, tenant, project, Some((cutoff_us, why))).await
    }

    async fn delete(&self, tenant: &str, project: &str) -> Result<(), polymeter_error::Error> {
        polymeter_retention::on_durable(&self.inner, tenant, project, None).await
    }
}

#[tonic::async_trait]
impl FeedbackStore for EmbeddedFeedbackStore {
    async fn append(&self, batch: Vec<pb::FeedbackWrite>) -> Result<(), FeedbackError> {
        let inner = self.inner.clone();
        // Appending fsyncs and scanning is CPU-bound: both run on the blocking pool.
        polymeter_store::blocking(move || Ok(inner.append(batch)?), FeedbackError::Internal).await
    }

    async fn aggregate(
        &self,
        query: FeedbackQuery,
    ) -> Result<pb::AggregateFeedbackResponse, FeedbackError> {
        let inner = self.inner.clone();
        let scan = move || Ok(crate::aggregate::aggregate(&inner.read(), &query));
        polymeter_store::blocking(scan, FeedbackError::Internal).await
    }
}
