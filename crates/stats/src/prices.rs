//! Project price overrides, owned by the stats service beside the calls they
//! price. With the embedded store: a small JSON file in the data directory,
//! rewritten whole and atomically (temporary file, fsync, rename, directory
//! fsync) on each change, so an acknowledged change survives a crash. With
//! ClickHouse: a table every stats replica reads (see
//! [`crate::clickhouse::prices`]).

use crate::error::StatsError;
use polymeter_clickhouse::Shared;
use polymeter_pricing::{override_key, Overrides, Price, PriceTable};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const FILE: &str = "price_overrides.json";

/// tenant → project → overrides.
pub(crate) type AllOverrides = BTreeMap<String, HashMap<String, Overrides>>;

#[derive(Serialize, Deserialize, Default)]
struct OnDisk {
    tenants: AllOverrides,
}

pub struct PriceOverrides {
    backend: Backend,
    state: Shared<AllOverrides>,
    /// Serialises writers, so two changes never race to the backend.
    writer: Mutex<()>,
}

/// Where overrides are kept durably.
enum Backend {
    Memory,
    /// The embedded store's file.
    File(PathBuf),
    /// ClickHouse, shared by every stats replica.
    ClickHouse(Arc<crate::clickhouse::prices::PriceTable>),
}

/// One change: an override set (`Some`) or removed (`None`).
pub(crate) struct Change<'a> {
    pub tenant: &'a str,
    pub project: &'a str,
    pub key: String,
    pub price: Option<Price>,
}

impl Change<'_> {
    /// Applies it; whether anything changed.
    fn apply(&self, all: &mut AllOverrides) -> bool {
        match self.price {
            Some(price) => {
                all.entry(self.tenant.to_owned())
                    .or_default()
                    .entry(self.project.to_owned())
                    .or_default()
                    .insert(self.key.clone(), price);
                true
            }
            None => {
                let Some(projects) = all.get_mut(self.tenant) else {
                    return false;
                };
                let Some(models) = projects.get_mut(self.project) else {
                    return false;
                };
                let removed = models.remove(&self.key).is_some();
                if models.is_empty() {
                    projects.remove(self.project);
                }
                removed
            }
        }
    }
}

impl PriceOverrides {
    /// Loads `dir/price_overrides.json` (none yet: no overrides).
    pub fn open(dir: &Path) -> Result<Self, StatsError> {
        let path = dir.join(FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<OnDisk>(&bytes)
                    .map_err(|e| StatsError::Internal(format!("{}: {e}", path.display())))?
                    .tenants
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AllOverrides::new(),
            Err(e) => return Err(StatsError::Internal(format!("{}: {e}", path.display()))),
        };
        Ok(Self::with(Backend::File(path), state))
    }

    /// Overrides kept in memory only; for tests.
    pub fn in_memory() -> Self {
        Self::with(Backend::Memory, AllOverrides::new())
    }

    /// Overrides in ClickHouse, shared by every stats replica: loaded now and
    /// re-read every `refresh` so a change made through another replica is
    /// seen here within that time (a change made here is seen at once).
    pub async fn open_clickhouse(
        table: crate::clickhouse::prices::PriceTable,
        refresh: std::time::Duration,
    ) -> Result<Arc<Self>, StatsError> {
        let state = table.load().await?;
        let table = Arc::new(table);
        let this = Arc::new(Self::with(Backend::ClickHouse(table.clone()), state));
        Shared::keep_fresh(
            &this,
            |o| &o.state,
            refresh,
            "price overrides",
            move || {
                let table = table.clone();
                async move { table.load().await }
            },
        );
        Ok(this)
    }

    fn with(backend: Backend, state: AllOverrides) -> Self {
        Self {
            backend,
            state: Shared::new(state),
            writer: Mutex::new(()),
        }
    }

    /// Everything, as of now (cheap: a shared snapshot).
    pub fn snapshot(&self) -> Arc<AllOverrides> {
        self.state.get()
    }

    pub fn for_project(&self, tenant: &str, project: &str) -> Option<Overrides> {
        self.snapshot()
            .get(tenant)
            .and_then(|t| t.get(project))
            .cloned()
    }

    /// Makes `change` durable, then visible. Blocks (a file write and fsync,
    /// or a ClickHouse insert): call it on the blocking pool.
    fn change(&self, change: Change<'_>) -> Result<bool, StatsError> {
        let _one_writer = self.writer.lock().expect("overrides writer");
        let changing = self.state.change();
        let mut next = (*self.snapshot()).clone();
        if !change.apply(&mut next) {
            return Ok(false);
        }
        match &self.backend {
            Backend::Memory => {}
            Backend::File(path) => write_atomically(
                path,
                &OnDisk {
                    tenants: next.clone(),
                },
            )?,
            Backend::ClickHouse(table) => {
                tokio::runtime::Handle::current().block_on(table.write(&change))?
            }
        }
        changing.publish(next);
        Ok(true)
    }

    pub fn set(
        &self,
        tenant: &str,
        project: &str,
        model: &str,
        price: Price,
    ) -> Result<(), StatsError> {
        self.change(Change {
            tenant,
            project,
            key: override_key(model),
            price: Some(price),
        })
        .map(|_| ())
    }

    /// Whether there was an override to delete.
    pub fn delete(&self, tenant: &str, project: &str, model: &str) -> Result<bool, StatsError> {
        self.change(Change {
            tenant,
            project,
            key: override_key(model),
            price: None,
        })
    }
}

fn write_atomically(path: &Path, value: &OnDisk) -> Result<(), StatsError> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| StatsError::Internal(e.to_string()))?;
    polymeter_store::replace_file(path, &bytes)
        .map_err(|e| StatsError::Internal(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_survive_reopening_and_deletes_report_what_they_did() {
        let dir = tempfile::tempdir().unwrap();
        let price = Price::new(1e-6, 2e-6, None, Some(3e-6)).unwrap();
        {
            let o = PriceOverrides::open(dir.path()).unwrap();
            o.set("acme", "acme/bot", "GPT-4o", price).unwrap();
            o.set("acme", "acme/bot", "other", price).unwrap();
            assert!(o.delete("acme", "acme/bot", "other").unwrap());
            assert!(!o.delete("acme", "acme/bot", "other").unwrap());
        }
        let o = PriceOverrides::open(dir.path()).unwrap();
        let bot = o.for_project("acme", "acme/bot").unwrap();
        assert_eq!(bot.get("gpt-4o"), Some(&price));
        assert_eq!(bot.len(), 1);
        assert!(o.for_project("globex", "acme/bot").is_none());
    }
}

/// What cost metrics are priced with: the price table and the query tenant's
/// overrides, by project. It holds the shared snapshot of the overrides (no
/// copy per query) and is owned, so a store may answer on another thread.
#[derive(Clone)]
pub struct Pricing {
    table: &'static PriceTable,
    overrides: Arc<AllOverrides>,
    tenant: String,
}

impl Pricing {
    /// The shipped table, no overrides.
    pub fn table_only() -> Self {
        Self {
            table: PriceTable::builtin(),
            overrides: Arc::default(),
            tenant: String::new(),
        }
    }

    /// The shipped table with `tenant`'s overrides as of now.
    pub fn for_tenant(overrides: &PriceOverrides, tenant: &str) -> Self {
        Self {
            table: PriceTable::builtin(),
            overrides: overrides.snapshot(),
            tenant: tenant.to_owned(),
        }
    }

    /// The price `project`'s calls of `model` are costed with.
    pub fn price(&self, project: &str, model: &str) -> Option<Price> {
        let overrides = self
            .overrides
            .get(&self.tenant)
            .and_then(|t| t.get(project));
        polymeter_pricing::price_of(self.table, overrides, model)
    }
}
