//! Where call records live. The query code sees only [`CallStore`]: upsert a
//! batch, and read the [`CallColumns`] a query scans.
//!
//! [`DurableStore`] keeps them behind the write-ahead log and Parquet segments
//! of `polymeter-store`; a ClickHouse store is to implement the same trait.

use crate::columns::CallColumns;
use polymeter_model::CallRecord;
use polymeter_store::{Durable, Options};
use std::path::Path;

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
        match e {
            polymeter_store::StoreError::Corrupt { .. } => StoreError::Corrupt(e.to_string()),
            other => StoreError::Unavailable(other.to_string()),
        }
    }
}

/// Size figures for benchmarks and logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreSize {
    pub calls: usize,
    pub heap_bytes: usize,
}

pub trait CallStore: Send + Sync + 'static {
    /// Merges each write into the record with its key (see
    /// [`CallRecord::merge`]). The batch is applied whole or not at all, and
    /// is durable when this returns (for a durable store). Blocks.
    fn upsert(&self, batch: Vec<CallRecord>) -> Result<(), StoreError>;

    /// Lends the columns to `read`, consistent for its duration.
    fn read(&self, read: &mut dyn FnMut(&CallColumns)) -> Result<(), StoreError>;

    fn size(&self) -> StoreSize {
        let mut size = StoreSize::default();
        let _ = self.read(&mut |c| {
            size = StoreSize {
                calls: c.rows(),
                heap_bytes: c.heap_bytes(),
            }
        });
        size
    }
}

/// Calls in the embedded durable store under one directory.
pub struct DurableStore {
    inner: Durable<CallColumns>,
}

impl DurableStore {
    /// Opens `dir`, loading segments and replaying the log. Fails, naming the
    /// file, when stored data is corrupt.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, Options::default())
    }

    pub fn open_with(dir: &Path, options: Options) -> Result<Self, StoreError> {
        Ok(Self {
            inner: Durable::open(dir, CallColumns::new(), options)?,
        })
    }

    /// Rotates the log and waits until everything so far is in segments.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(self.inner.checkpoint()?)
    }
}

impl CallStore for DurableStore {
    fn upsert(&self, batch: Vec<CallRecord>) -> Result<(), StoreError> {
        Ok(self
            .inner
            .append(batch.into_iter().map(Into::into).collect())?)
    }

    fn read(&self, read: &mut dyn FnMut(&CallColumns)) -> Result<(), StoreError> {
        read(&self.inner.read());
        Ok(())
    }
}
