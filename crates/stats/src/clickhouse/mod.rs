//! The call store on ClickHouse: the stats service becomes stateless and any
//! number of replicas share one database. Tables and their rules are in
//! [`schema`], writes in [`write`], the query in [`sql`].
//!
//! A write is acknowledged once ClickHouse has accepted its `INSERT` (a
//! synchronous insert: the rows are in a part on disk, not in a buffer).
//! When ClickHouse cannot be reached or refuses, the write answers
//! "unavailable, retry"; re-sending is safe because a call is keyed by its
//! id and its rows collapse to the newest.

pub mod prices;
pub mod schema;
pub mod sql;
mod write;

use crate::answer::{self, finish_measure, finish_percentile, Fold};
use crate::error::StatsError;
use crate::prices::Pricing;
use crate::query::CallQuery;
use crate::store::{AggregateResult, CallStore, ResultRow, StoreSize};
use polymeter_clickhouse::{bounded, connect, migrate, Failure, StoreUrl};
use polymeter_clickhouse::{Param, Statement};
use polymeter_model::{BucketGrid, CallRecord};
use schema::{CallRow, ModelRow, CALLS, CALL_MODELS};
use sql::{Cell, Plan, PriceList};
use std::collections::HashMap;
use write::Known;

/// Call ids per point lookup on writes.
const LOOKUP_CHUNK: usize = 2_000;

pub struct ClickHouseStore {
    pub(crate) client: clickhouse::Client,
    schema: polymeter_clickhouse::Schema,
    /// How long a query and a write may wait on ClickHouse.
    limits: (std::time::Duration, std::time::Duration),
}

impl From<Failure> for StatsError {
    fn from(f: Failure) -> Self {
        match f.kind {
            polymeter_error::ErrorKind::Unavailable => {
                StatsError::Store(crate::store::StoreError::Unavailable(f.to_string()))
            }
            _ => StatsError::Internal(f.to_string()),
        }
    }
}

pub(crate) fn failed(e: clickhouse::error::Error) -> StatsError {
    Failure::from(e).into()
}

impl ClickHouseStore {
    /// Connects and applies the calls' migrations.
    pub async fn open(url: &StoreUrl) -> Result<Self, StatsError> {
        let client = connect(url);
        migrate(&client, url, "stats", schema::MIGRATIONS).await?;
        Ok(Self {
            client,
            schema: polymeter_clickhouse::Schema::new(url),
            limits: (url.query_timeout, url.write_timeout),
        })
    }

    /// The projects' retention periods for calls, in this database.
    pub fn retention_table(&self) -> polymeter_retention::RetentionTable {
        polymeter_retention::RetentionTable::new(self.client.clone(), schema::CALL_RETENTION)
    }

    /// Every stored row of these calls of one project.
    async fn stored(
        &self,
        tenant: &str,
        project: &str,
        ids: &[String],
    ) -> Result<Vec<CallRow>, StatsError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(LOOKUP_CHUNK) {
            let rows = self
                .client
                .query(&format!(
                    "SELECT ?fields FROM {CALLS} WHERE tenant = {{t:String}} \
                     AND project_id = {{p:String}} AND call_id IN {{ids:Array(String)}}"
                ))
                .param("t", tenant)
                .param("p", project)
                .param("ids", chunk)
                .fetch_all::<CallRow>()
                .await
                .map_err(failed)?;
            out.extend(rows);
        }
        Ok(out)
    }

    async fn prices(&self, query: &CallQuery, pricing: &Pricing) -> Result<PriceList, StatsError> {
        let mut st = Statement::default();
        let tenant = st.bind("String", Param::Str(query.tenant.as_str().to_owned()));
        st.sql = format!("SELECT ?fields FROM {CALL_MODELS} WHERE tenant = {tenant}");
        if !query.projects.is_empty() {
            let projects: Vec<String> = query
                .projects
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect();
            let projects = st.bind("Array(String)", Param::Strs(projects));
            st.sql
                .push_str(&format!(" AND has({projects}, project_id)"));
        }
        let mut models = st
            .into_query(&self.client)
            .fetch_all::<ModelRow>()
            .await
            .map_err(failed)?;
        models.sort_by(|a, b| (&a.project_id, &a.model).cmp(&(&b.project_id, &b.model)));
        models.dedup();
        let mut list = PriceList::default();
        for m in models {
            if let Some(price) = pricing.price(&m.project_id, &m.model) {
                list.keys.push(format!("{}/{}", m.project_id, m.model));
                list.prices.push(price.fixed());
            }
        }
        Ok(list)
    }
}

/// A project's calls are deleted with lightweight `DELETE`s: one period per
/// project cannot be a table `TTL` (there is one per table), and a month's
/// partition holds every project's calls. Until the deleted rows are merged
/// away, queries leave expired calls out by the same cutoff.
#[tonic::async_trait]
impl polymeter_retention::ProjectData for ClickHouseStore {
    async fn expire(
        &self,
        tenant: &str,
        project: &str,
        cutoff_us: i64,
        _: polymeter_retention::Expiry,
    ) -> Result<(), polymeter_error::Error> {
        polymeter_clickhouse::delete_project_rows(
            &self.client,
            &self.schema,
            CALLS,
            (tenant, project),
            Some(("sort_us", cutoff_us)),
            self.limits.0,
        )
        .await
        .map_err(polymeter_error::Error::from)
    }

    async fn delete(&self, tenant: &str, project: &str) -> Result<(), polymeter_error::Error> {
        for table in [CALLS, CALL_MODELS] {
            polymeter_clickhouse::delete_project_rows(
                &self.client,
                &self.schema,
                table,
                (tenant, project),
                None,
                self.limits.0,
            )
            .await
            .map_err(polymeter_error::Error::from)?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl CallStore for ClickHouseStore {
    async fn upsert(&self, batch: Vec<CallRecord>) -> Result<(), StatsError> {
        if batch.is_empty() {
            return Ok(());
        }
        bounded(self.limits.1, "the write to ClickHouse", self.write(batch)).await
    }

    async fn aggregate(
        &self,
        query: CallQuery,
        pricing: Pricing,
    ) -> Result<AggregateResult, StatsError> {
        bounded(
            self.limits.0,
            "the ClickHouse query",
            self.answer(query, pricing),
        )
        .await
    }

    fn size(&self) -> StoreSize {
        StoreSize::default()
    }
}

impl ClickHouseStore {
    async fn write(&self, batch: Vec<CallRecord>) -> Result<(), StatsError> {
        // Calls by project, in the order they first appear.
        let mut order: Vec<(String, String, String)> = Vec::new();
        let mut known: HashMap<(String, String, String), Known> = HashMap::new();
        let mut by_project: HashMap<(String, String), Vec<String>> = HashMap::new();
        for r in &batch {
            let key = (
                r.tenant.as_str().to_owned(),
                r.project_id.as_str().to_owned(),
                r.call_id.as_str().to_owned(),
            );
            if !known.contains_key(&key) {
                by_project
                    .entry((key.0.clone(), key.1.clone()))
                    .or_default()
                    .push(key.2.clone());
                known.insert(key.clone(), Known::default());
                order.push(key);
            }
        }
        for ((tenant, project), ids) in &by_project {
            for row in self.stored(tenant, project, ids).await? {
                let key = (tenant.clone(), project.clone(), row.call_id.clone());
                if let Some(k) = known.get_mut(&key) {
                    k.absorb(row);
                }
            }
        }
        // Calls written in halves, checked again once written (`repair`).
        let partial: Vec<(String, String, String)> = batch
            .iter()
            .filter(|r| r.start.is_none() || r.end.is_none())
            .map(|r| {
                (
                    r.tenant.as_str().to_owned(),
                    r.project_id.as_str().to_owned(),
                    r.call_id.as_str().to_owned(),
                )
            })
            .collect();
        crate::store::check_halves(&batch, |r| {
            let k = &known[&(
                r.tenant.as_str().to_owned(),
                r.project_id.as_str().to_owned(),
                r.call_id.as_str().to_owned(),
            )];
            (
                k.start
                    .as_ref()
                    .map(|(_, s)| s.started_at.timestamp_micros()),
                k.end.as_ref().map(|(_, e)| e.ended_at.timestamp_micros()),
            )
        })?;
        // Later writes in the batch win, as they would one at a time.
        for r in batch {
            let key = (
                r.tenant.as_str().to_owned(),
                r.project_id.as_str().to_owned(),
                r.call_id.as_str().to_owned(),
            );
            known.get_mut(&key).expect("registered above").apply(r);
        }
        let rows: Vec<CallRow> = order
            .iter()
            .flat_map(|key| write::rows(&key.0, &key.1, &key.2, &known[key]))
            .collect();
        // Models first: a model listed without its calls prices nothing,
        // while calls without their model would go unpriced.
        let models = write::models(&rows);
        if !models.is_empty() {
            let mut insert = self
                .client
                .insert::<ModelRow>(CALL_MODELS)
                .await
                .map_err(failed)?;
            for m in &models {
                insert.write(m).await.map_err(failed)?;
            }
            insert.end().await.map_err(failed)?;
        }
        self.insert(&rows).await?;
        if !partial.is_empty() {
            self.repair(&partial).await?;
        }
        Ok(())
    }

    async fn insert(&self, rows: &[CallRow]) -> Result<(), StatsError> {
        let mut insert = self.client.insert::<CallRow>(CALLS).await.map_err(failed)?;
        for row in rows {
            insert.write(row).await.map_err(failed)?;
        }
        insert.end().await.map_err(failed)
    }

    /// After writing halves: if another replica wrote the other half of one
    /// of these calls at the same moment (neither saw the other's row), the
    /// call now has live rows under two keys; merge them under one. Of two
    /// writers racing like this at least one sees both rows here, because
    /// each reads only after its own row is in.
    async fn repair(&self, calls: &[(String, String, String)]) -> Result<(), StatsError> {
        let mut by_project: HashMap<(String, String), Vec<String>> = HashMap::new();
        for (t, p, c) in calls {
            by_project
                .entry((t.clone(), p.clone()))
                .or_default()
                .push(c.clone());
        }
        let mut rows = Vec::new();
        for ((tenant, project), ids) in by_project {
            let mut known: HashMap<String, Known> = HashMap::new();
            for row in self.stored(&tenant, &project, &ids).await? {
                known.entry(row.call_id.clone()).or_default().absorb(row);
            }
            for (call_id, k) in known {
                if k.live_keys().count() > 1 {
                    rows.extend(write::rows(&tenant, &project, &call_id, &k));
                }
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        tracing::debug!(rows = rows.len(), "merged halves written concurrently");
        self.insert(&rows).await
    }

    async fn answer(
        &self,
        query: CallQuery,
        pricing: Pricing,
    ) -> Result<AggregateResult, StatsError> {
        let grid = query
            .bucketing
            .as_ref()
            .map(|b| BucketGrid::new(query.start, query.end, b.width_seconds, b.tz))
            .transpose()
            .map_err(|e| StatsError::invalid(e.to_string()))?;
        let plan = Plan::new(&query, grid.as_ref());
        let prices = if plan.priced() {
            self.prices(&query, &pricing).await?
        } else {
            PriceList::default()
        };
        let statement = plan.statement(&prices);
        let cells = statement
            .into_query(&self.client)
            .fetch_all::<Cell>()
            .await
            .map_err(failed)?;
        let total = match cells.first() {
            Some(c) => c.total as usize,
            // An empty page past the end still says how many rows there are.
            None if query.offset > 0 && plan.pages_in_sql() => self.count(&plan, &prices).await?,
            None => 0,
        };
        let mut rows: Vec<ResultRow> = cells.into_iter().map(|c| row(&plan, c)).collect();
        if plan.pages_in_sql() {
            // Only the lone total row of an empty page can be missing here.
            answer::fill(&mut rows, &query, grid.as_ref());
            return Ok(AggregateResult {
                bucket_width_seconds: grid.as_ref().map(|g| g.width_seconds()),
                rows,
                total_rows: total,
            });
        }
        answer::fill(&mut rows, &query, grid.as_ref());
        Ok(answer::order_and_page(rows, &query, grid.as_ref()))
    }

    /// Cells the query has before paging.
    async fn count(&self, plan: &Plan<'_>, prices: &PriceList) -> Result<usize, StatsError> {
        let unpaged = CallQuery {
            limit: None,
            offset: 0,
            order_by: vec![],
            ..plan.query.clone()
        };
        let mut st = Plan::new(&unpaged, plan.grid).statement(prices);
        st.sql = format!("SELECT count() FROM ({})", st.sql);
        let n = st
            .into_query(&self.client)
            .fetch_one::<u64>()
            .await
            .map_err(failed)?;
        Ok(n as usize)
    }
}

/// A returned cell as an answer row, finished by the shared rules.
fn row(plan: &Plan<'_>, c: Cell) -> ResultRow {
    let bucket = usize::try_from(c.bucket).ok();
    let values = plan
        .query
        .measures
        .iter()
        .map(|m| {
            let k = plan.slot(m);
            let fold = Fold {
                sum: c.sums[k],
                count: c.counts[k],
                min: c.mins[k],
                max: c.maxs[k],
            };
            if m.aggregation == polymeter_model::Aggregation::Percentile {
                let v = (fold.count > 0).then(|| c.quantiles[k][plan.level(m)]);
                finish_percentile(m.metric, v)
            } else {
                finish_measure(m, &fold)
            }
        })
        .collect();
    ResultRow {
        bucket_start_us: bucket.map(|b| plan.grid.expect("bucketed").starts_us()[b]),
        bucket_utc_offset_seconds: bucket
            .map(|b| plan.grid.expect("bucketed").utc_offset_seconds(b))
            .unwrap_or(0),
        group: c.groups,
        row_count: c.row_count,
        values,
    }
}
