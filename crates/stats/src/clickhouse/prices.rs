//! Project price overrides in ClickHouse, so every stats replica prices with
//! the same overrides: one row per change, `ReplacingMergeTree(version)` by
//! (tenant, project, model), read back as each key's newest row unless that
//! row removed it.

use super::schema::PRICE_OVERRIDES;
use super::write::next_version;
use crate::error::StatsError;
use crate::prices::{AllOverrides, Change};
use polymeter_pricing::Price;
use serde::{Deserialize, Serialize};

#[derive(clickhouse::Row, Serialize, Deserialize)]
struct Row {
    tenant: String,
    project_id: String,
    model: String,
    input: f64,
    output: f64,
    cache_read: f64,
    cache_write: f64,
    deleted: u8,
    version: u64,
}

pub struct PriceTable {
    client: clickhouse::Client,
}

impl PriceTable {
    /// The table of a store already opened (its migrations applied).
    pub fn new(store: &super::ClickHouseStore) -> Self {
        Self {
            client: store.client.clone(),
        }
    }

    pub(crate) async fn load(&self) -> Result<AllOverrides, StatsError> {
        let query = self.client.query(&format!(
            "SELECT tenant, project_id, model, i AS input, o AS output, r AS cache_read, \
                 w AS cache_write, d AS deleted, v AS version FROM (SELECT tenant, project_id, \
                 model, argMax(input, version) AS i, argMax(output, version) AS o, \
                 argMax(cache_read, version) AS r, argMax(cache_write, version) AS w, \
                 argMax(deleted, version) AS d, max(version) AS v FROM {PRICE_OVERRIDES} \
                 GROUP BY tenant, project_id, model) WHERE d = 0"
        ));
        let rows = polymeter_clickhouse::within(
            polymeter_clickhouse::QUERY_TIMEOUT,
            "reading the price overrides",
            query.fetch_all::<Row>(),
        )
        .await?;
        let mut all = AllOverrides::new();
        for r in rows {
            all.entry(r.tenant)
                .or_default()
                .entry(r.project_id)
                .or_default()
                .insert(
                    r.model,
                    Price {
                        input: r.input,
                        output: r.output,
                        cache_read: r.cache_read,
                        cache_write: r.cache_write,
                    },
                );
        }
        Ok(all)
    }

    pub(crate) async fn write(&self, change: &Change<'_>) -> Result<(), StatsError> {
        polymeter_clickhouse::bounded(
            polymeter_clickhouse::WRITE_TIMEOUT,
            "the price override write",
            self.insert(change),
        )
        .await
    }

    async fn insert(&self, change: &Change<'_>) -> Result<(), StatsError> {
        let price = change.price.unwrap_or(Price {
            input: 0.0,
            output: 0.0,
            cache_read: 0.0,
            cache_write: 0.0,
        });
        let mut insert = self
            .client
            .insert::<Row>(PRICE_OVERRIDES)
            .await
            .map_err(super::failed)?;
        insert
            .write(&Row {
                tenant: change.tenant.to_owned(),
                project_id: change.project.to_owned(),
                model: change.key.clone(),
                input: price.input,
                output: price.output,
                cache_read: price.cache_read,
                cache_write: price.cache_write,
                deleted: change.price.is_none() as u8,
                version: next_version(),
            })
            .await
            .map_err(super::failed)?;
        insert.end().await.map_err(super::failed)
    }
}
