//! Where call records live. The query code sees only [`CallStore`]: upsert a
//! batch, and scan one tenant's records in a time range.

use chrono::{DateTime, Utc};
use polymeter_model::{CallId, CallRecord, ProjectId, TenantId};
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take writes or answer now; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's data is damaged; it refuses to answer rather than answer wrong.
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

/// Which records a scan visits: one tenant, some or all of its projects, and
/// calls that started in `[start, end)`.
#[derive(Debug, Clone)]
pub struct Scope {
    pub tenant: TenantId,
    /// Empty = every project of the tenant.
    pub projects: Vec<ProjectId>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Scope {
    pub fn contains(&self, record: &CallRecord) -> bool {
        record.tenant == self.tenant
            && (self.projects.is_empty() || self.projects.contains(&record.project_id))
            && record
                .start
                .as_ref()
                .is_some_and(|s| s.started_at >= self.start && s.started_at < self.end)
    }
}

pub trait CallStore: Send + Sync + 'static {
    /// Merges each write into the record with its key (see
    /// [`CallRecord::merge`]). The batch is applied whole or not at all, and is
    /// as durable as the store promises when this returns.
    fn upsert(&self, batch: Vec<CallRecord>) -> Result<(), StoreError>;

    /// Calls `visit` for every record in `scope`. Records that have not
    /// started (only an end is known) are never visited.
    fn scan(&self, scope: &Scope, visit: &mut dyn FnMut(&CallRecord)) -> Result<(), StoreError>;
}

type Key = (TenantId, ProjectId, CallId);

/// Records in memory only: for tests and as the reference the durable
/// stores are checked against.
#[derive(Default)]
pub struct MemoryStore {
    records: RwLock<HashMap<Key, CallRecord>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl CallStore for MemoryStore {
    fn upsert(&self, batch: Vec<CallRecord>) -> Result<(), StoreError> {
        let mut records = self.records.write().unwrap_or_else(|p| p.into_inner());
        for record in batch {
            let key = (
                record.tenant.clone(),
                record.project_id.clone(),
                record.call_id.clone(),
            );
            match records.get_mut(&key) {
                Some(existing) => existing.merge(record),
                None => {
                    records.insert(key, record);
                }
            }
        }
        Ok(())
    }

    fn scan(&self, scope: &Scope, visit: &mut dyn FnMut(&CallRecord)) -> Result<(), StoreError> {
        let records = self.records.read().unwrap_or_else(|p| p.into_inner());
        records
            .values()
            .filter(|r| scope.contains(r))
            .for_each(|r| visit(r));
        Ok(())
    }
}
