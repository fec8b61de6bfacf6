//! Where retention periods are kept: a JSON file rewritten whole and
//! atomically on each change (the embedded store), or a ClickHouse table
//! every replica reads, re-read every few seconds so a change made through
//! another replica is seen here too.

use polymeter_clickhouse::Shared;
use polymeter_error::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// (tenant, project) → retention in seconds.
type All = BTreeMap<(String, String), u64>;

#[derive(Serialize, Deserialize, Default)]
struct OnDisk {
    projects: Vec<OnDiskPolicy>,
}

#[derive(Serialize, Deserialize)]
struct OnDiskPolicy {
    tenant: String,
    project_id: String,
    retention_seconds: u64,
}

enum Backend {
    Memory,
    File(PathBuf),
    ClickHouse(Arc<RetentionTable>),
}

/// Every project's retention period.
pub struct Policies {
    backend: Backend,
    state: Shared<All>,
    /// Serialises writers, so two changes never race to the backend.
    writer: tokio::sync::Mutex<()>,
}

pub const FILE: &str = "retention.json";

impl Policies {
    /// Policies kept in memory only; for tests.
    pub fn in_memory() -> Self {
        Self::with(Backend::Memory, All::new())
    }

    /// Loads `dir/retention.json` (none yet: every project kept forever).
    pub fn open(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(FILE);
        let failed = |e: String| Error::internal(format!("{}: {e}", path.display()));
        let all = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<OnDisk>(&bytes)
                .map_err(|e| failed(e.to_string()))?
                .projects
                .into_iter()
                .map(|p| ((p.tenant, p.project_id), p.retention_seconds))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => All::new(),
            Err(e) => return Err(failed(e.to_string())),
        };
        Ok(Self::with(Backend::File(path), all))
    }

    /// Policies in ClickHouse, loaded now and re-read every `refresh`.
    pub async fn open_clickhouse(
        table: RetentionTable,
        refresh: std::time::Duration,
    ) -> Result<Arc<Self>, Error> {
        let all = table.load().await?;
        let table = Arc::new(table);
        let this = Arc::new(Self::with(Backend::ClickHouse(table.clone()), all));
        Shared::keep_fresh(
            &this,
            |p| &p.state,
            refresh,
            "retention periods",
            move || {
                let table = table.clone();
                async move { table.load().await }
            },
        );
        Ok(this)
    }

    fn with(backend: Backend, all: All) -> Self {
        Self {
            backend,
            state: Shared::new(all),
            writer: tokio::sync::Mutex::new(()),
        }
    }

    fn snapshot(&self) -> Arc<All> {
        self.state.get()
    }

    /// A project's retention in seconds; `None`: kept forever.
    pub fn get(&self, tenant: &str, project: &str) -> Option<u64> {
        self.snapshot()
            .get(&(tenant.to_owned(), project.to_owned()))
            .copied()
    }

    /// A project's cutoff now, when it has a retention period.
    pub fn cutoff(&self, tenant: &str, project: &str) -> Option<i64> {
        self.get(tenant, project)
            .map(|s| crate::cutoff_us(crate::now_us(), s))
    }

    /// Every project with a retention period.
    pub fn all(&self) -> Vec<(String, String, u64)> {
        self.snapshot()
            .iter()
            .map(|((t, p), s)| (t.clone(), p.clone(), *s))
            .collect()
    }

    /// The cutoff of each of `tenant`'s projects that has a retention
    /// period, at `now_us`: records before it are expired.
    pub fn cutoffs(&self, tenant: &str, now_us: i64) -> Vec<(String, i64)> {
        self.snapshot()
            .range((tenant.to_owned(), String::new())..)
            .take_while(|((t, _), _)| t == tenant)
            .map(|((_, p), s)| (p.clone(), crate::cutoff_us(now_us, *s)))
            .collect()
    }

    /// Sets (`Some`) or removes (`None`) a project's retention; durable when
    /// this returns.
    pub async fn set(
        &self,
        tenant: &str,
        project: &str,
        retention: Option<std::time::Duration>,
    ) -> Result<(), Error> {
        let _one_writer = self.writer.lock().await;
        let changing = self.state.change();
        let key = (tenant.to_owned(), project.to_owned());
        let mut all = (*self.snapshot()).clone();
        match retention {
            Some(d) => all.insert(key, d.as_secs()),
            None => all.remove(&key),
        };
        match &self.backend {
            Backend::Memory => {}
            Backend::File(path) => {
                let on_disk = OnDisk {
                    projects: all
                        .iter()
                        .map(|((t, p), s)| OnDiskPolicy {
                            tenant: t.clone(),
                            project_id: p.clone(),
                            retention_seconds: *s,
                        })
                        .collect(),
                };
                let bytes = serde_json::to_vec_pretty(&on_disk)
                    .map_err(|e| Error::internal(e.to_string()))?;
                let path = path.clone();
                tokio::task::spawn_blocking(move || polymeter_store::replace_file(&path, &bytes))
                    .await
                    .map_err(|e| Error::internal(e.to_string()))?
                    .map_err(|e| {
                        Error::new(
                            ErrorKind::Unavailable,
                            format!("cannot save retention: {e}"),
                        )
                    })?;
            }
            Backend::ClickHouse(table) => {
                table
                    .write(tenant, project, retention.map(|d| d.as_secs()))
                    .await?
            }
        }
        changing.publish(all);
        Ok(())
    }
}

#[derive(clickhouse::Row, Serialize, Deserialize)]
struct Row {
    tenant: String,
    project_id: String,
    retention_seconds: u64,
    deleted: u8,
    version: u64,
}

/// Retention periods in a ClickHouse table of the service's own: one row
/// per change, `ReplacingMergeTree(version)` by (tenant, project), read back
/// as each project's newest row unless that row removed the period.
pub struct RetentionTable {
    client: clickhouse::Client,
    table: &'static str,
}

impl RetentionTable {
    /// The table `table` (created by the service's migrations; see
    /// [`RetentionTable::create`]).
    pub fn new(client: clickhouse::Client, table: &'static str) -> Self {
        Self { client, table }
    }

    /// The statement that creates a retention table named `table`.
    pub fn create(schema: &polymeter_clickhouse::Schema, table: &str) -> Vec<String> {
        schema.create_table(
            table,
            "tenant String, project_id String, retention_seconds UInt64, \
             deleted UInt8, version UInt64",
            "ReplacingMergeTree(version)",
            "ORDER BY (tenant, project_id)",
            "cityHash64(tenant, project_id)",
        )
    }

    async fn load(&self) -> Result<All, Error> {
        let table = self.table;
        let query = self.client.query(&format!(
            "SELECT tenant, project_id, s AS retention_seconds, d AS deleted, v AS version \
             FROM (SELECT tenant, project_id, argMax(retention_seconds, version) AS s, \
             argMax(deleted, version) AS d, max(version) AS v FROM {table} \
             GROUP BY tenant, project_id) WHERE d = 0"
        ));
        let rows = polymeter_clickhouse::within(
            polymeter_clickhouse::QUERY_TIMEOUT,
            "reading the retention periods",
            query.fetch_all::<Row>(),
        )
        .await
        .map_err(Error::from)?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.tenant, r.project_id), r.retention_seconds))
            .collect())
    }

    async fn write(&self, tenant: &str, project: &str, seconds: Option<u64>) -> Result<(), Error> {
        let row = Row {
            tenant: tenant.to_owned(),
            project_id: project.to_owned(),
            retention_seconds: seconds.unwrap_or(0),
            deleted: seconds.is_none() as u8,
            version: polymeter_clickhouse::next_version(),
        };
        polymeter_clickhouse::bounded(
            polymeter_clickhouse::WRITE_TIMEOUT,
            "the retention write",
            async {
                let mut insert = self
                    .client
                    .insert::<Row>(self.table)
                    .await
                    .map_err(polymeter_clickhouse::Failure::from)?;
                insert
                    .write(&row)
                    .await
                    .map_err(polymeter_clickhouse::Failure::from)?;
                insert
                    .end()
                    .await
                    .map_err(polymeter_clickhouse::Failure::from)
            },
        )
        .await
        .map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn periods_survive_reopening_and_cutoffs_are_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let day = std::time::Duration::from_secs(86_400);
        {
            let p = Policies::open(dir.path()).unwrap();
            p.set("acme", "acme/app", Some(day * 30)).await.unwrap();
            p.set("acme", "acme/other", Some(day)).await.unwrap();
            p.set("globex", "globex/app", Some(day)).await.unwrap();
            p.set("acme", "acme/other", None).await.unwrap();
        }
        let p = Policies::open(dir.path()).unwrap();
        assert_eq!(p.get("acme", "acme/app"), Some(30 * 86_400));
        assert_eq!(p.get("acme", "acme/other"), None);
        let now = 100 * 86_400_000_000;
        assert_eq!(
            p.cutoffs("acme", now),
            [("acme/app".to_owned(), 70 * 86_400_000_000)]
        );
        assert_eq!(p.all().len(), 2);
    }
}
