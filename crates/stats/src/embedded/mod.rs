//! The embedded store for calls: the write-ahead log and Parquet segments of
//! `polymeter-store`, with an in-memory columnar layout ([`columns`]) that
//! [`aggregate`] scans. [`table`] says how writes travel through the log and
//! segments; [`writes`] how a write becomes a row of the columns.

pub mod aggregate;
pub mod columns;
pub mod table;
pub mod writes;

use crate::error::StatsError;
use crate::prices::Pricing;
use crate::query::CallQuery;
use crate::store::{AggregateResult, CallStore, StoreError, StoreSize};
use columns::CallColumns;
use polymeter_model::CallRecord;
use polymeter_store::{Durable, Options};
use std::path::Path;
use std::sync::Arc;

/// Calls in the embedded durable store under one directory.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Durable<CallColumns>>,
}

impl EmbeddedStore {
    /// Opens `dir`, loading segments and replaying the log. Fails, naming the
    /// file, when stored data is corrupt.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Options::default())
    }

    pub fn open_with(dir: &Path, options: Options) -> Result<Self, StoreError> {
        Ok(Self {
            inner: Arc::new(Durable::open(dir, CallColumns::new(), options)?),
        })
    }

    /// Rotates the log and waits until everything so far is in segments.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(self.inner.checkpoint()?)
    }
}

/// A project's calls go as whole segments of days (expiry) or of the
/// project (deletion); see `polymeter_store::Durable`.
#[tonic::async_trait]
impl polymeter_retention::ProjectData for EmbeddedStore {
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

impl aggregate::IdTexts for EmbeddedStore {
    fn each_id(
        &self,
        tenant: &polymeter_model::TenantId,
        project: &polymeter_model::ProjectId,
        f: &mut dyn FnMut(&str),
    ) -> Result<(), StatsError> {
        Ok(
            table::each_stored_id(&self.inner, tenant.as_str(), project.as_str(), f)
                .map_err(StoreError::from)?,
        )
    }
}

#[tonic::async_trait]
impl CallStore for EmbeddedStore {
    async fn upsert(&self, batch: Vec<CallRecord>) -> Result<(), StatsError> {
        let inner = self.inner.clone();
        // Appending fsyncs and scanning is CPU-bound: both run on the blocking pool.
        let append = move || {
            {
                let columns = inner.read();
                crate::store::check_halves(&batch, |r| {
                    columns.halves(r.tenant.as_str(), r.project_id.as_str(), r.call_id.as_str())
                })?;
            }
            Ok(inner
                .append(batch.into_iter().map(Into::into).collect())
                .map_err(StoreError::from)?)
        };
        polymeter_store::blocking(append, StatsError::Internal).await
    }

    async fn aggregate(
        &self,
        query: CallQuery,
        pricing: Pricing,
    ) -> Result<AggregateResult, StatsError> {
        let store = self.clone();
        let answer = move || aggregate::answer(&query, || store.inner.read(), &pricing, &store);
        polymeter_store::blocking(answer, StatsError::Internal).await
    }

    fn size(&self) -> StoreSize {
        let columns = self.inner.read();
        let by_column = columns.memory();
        StoreSize {
            calls: columns.rows(),
            heap_bytes: by_column.iter().map(|(_, b)| b).sum(),
            by_column,
        }
    }
}
