//! Feedback on ClickHouse: one `MergeTree` row per record (feedback is
//! appended, never updated, as in the embedded store), partitioned by month
//! and ordered by tenant, project and time. A query is one `GROUP BY` that
//! folds each cell — counts, and tag and rating maps with `sumMap` — and the
//! shared [`crate::query::respond`] turns the cells into the answer.
//!
//! Acknowledgement is as for calls: after ClickHouse accepted the `INSERT`.

use crate::error::FeedbackError;
use crate::query::{respond, Answer, FeedbackQuery, RATING_KEY, RATING_UNIT};
use crate::store::FeedbackStore;
use crate::table::span_type_code;
use polymeter_clickhouse::{
    bounded, connect, migrate, Failure, Migration, Param, Schema, Statement, StoreUrl,
};
use polymeter_model::feedback::{FeedbackDimension, SpanType};
use polymeter_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

const TABLE: &str = "feedback";

/// Each project's retention period for its feedback.
const RETENTION: &str = "feedback_retention";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "feedback",
        statements: v1,
    },
    Migration {
        version: 2,
        name: "feedback_retention",
        statements: v2,
    },
];

fn v2(schema: &Schema) -> Vec<String> {
    polymeter_retention::RetentionTable::create(schema, RETENTION)
}

fn v1(schema: &Schema) -> Vec<String> {
    schema.create_table(
        TABLE,
        "tenant LowCardinality(String), \
         project_id LowCardinality(String), \
         created_ms Int64 CODEC(Delta, ZSTD(1)), \
         feedback_id String CODEC(ZSTD(1)), \
         feedback_type LowCardinality(String), \
         weave_ref String CODEC(ZSTD(1)), \
         runnable_ref Nullable(String) CODEC(ZSTD(1)), \
         call_ref Nullable(String) CODEC(ZSTD(1)), \
         trigger_ref Nullable(String) CODEC(ZSTD(1)), \
         scorer_id LowCardinality(Nullable(String)), \
         monitor_id LowCardinality(Nullable(String)), \
         span_agent_name LowCardinality(Nullable(String)), \
         span_agent_version LowCardinality(Nullable(String)), \
         span_status UInt8, \
         span_type UInt8, \
         scorer_tags Array(LowCardinality(String)), \
         rating_names Array(LowCardinality(String)), \
         rating_values Array(Float64) CODEC(ZSTD(1)), \
         wb_user_id LowCardinality(Nullable(String)), \
         payload String CODEC(ZSTD(3))",
        "MergeTree",
        "PARTITION BY toYYYYMM(toDateTime(intDiv(created_ms, 1000), 'UTC')) \
         ORDER BY (tenant, project_id, created_ms, feedback_id)",
        "cityHash64(tenant, project_id, feedback_id)",
    )
}

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct FeedbackRow {
    tenant: String,
    project_id: String,
    created_ms: i64,
    feedback_id: String,
    feedback_type: String,
    weave_ref: String,
    runnable_ref: Option<String>,
    call_ref: Option<String>,
    trigger_ref: Option<String>,
    scorer_id: Option<String>,
    monitor_id: Option<String>,
    span_agent_name: Option<String>,
    span_agent_version: Option<String>,
    span_status: u8,
    span_type: u8,
    scorer_tags: Vec<String>,
    rating_names: Vec<String>,
    rating_values: Vec<f64>,
    wb_user_id: Option<String>,
    payload: String,
}

impl From<pb::FeedbackWrite> for FeedbackRow {
    fn from(w: pb::FeedbackWrite) -> Self {
        // Sorted by name, as the embedded store keeps them.
        let mut ratings: Vec<(String, f64)> = w.scorer_ratings.into_iter().collect();
        ratings.sort_by(|a, b| a.0.cmp(&b.0));
        FeedbackRow {
            span_type: span_type_code(w.span_type.as_deref()),
            span_status: w.span_status_code as u8,
            tenant: w.tenant,
            project_id: w.project_id,
            created_ms: w.created_at_ms,
            feedback_id: w.feedback_id,
            feedback_type: w.feedback_type,
            weave_ref: w.weave_ref,
            runnable_ref: w.runnable_ref,
            call_ref: w.call_ref,
            trigger_ref: w.trigger_ref,
            scorer_id: w.scorer_id,
            monitor_id: w.monitor_id,
            span_agent_name: w.span_agent_name,
            span_agent_version: w.span_agent_version,
            scorer_tags: w.scorer_tags,
            rating_names: ratings.iter().map(|r| r.0.clone()).collect(),
            rating_values: ratings.iter().map(|r| r.1).collect(),
            wb_user_id: w.wb_user_id,
            payload: w.payload_json,
        }
    }
}

/// One cell as the query returns it.
#[derive(Debug, clickhouse::Row, Deserialize)]
struct Cell {
    bucket: i64,
    groups: Vec<String>,
    total: u64,
    scored: u64,
    tags: (Vec<String>, Vec<u64>),
    ratings: (Vec<String>, Vec<u64>, Vec<i128>),
}

pub struct ClickHouseFeedbackStore {
    client: clickhouse::Client,
    schema: polymeter_clickhouse::Schema,
    /// How long a query and a write may wait on ClickHouse.
    limits: (std::time::Duration, std::time::Duration),
}

impl From<Failure> for FeedbackError {
    fn from(f: Failure) -> Self {
        match f.kind {
            polymeter_error::ErrorKind::Unavailable => FeedbackError::Unavailable(f.to_string()),
            _ => FeedbackError::Internal(f.to_string()),
        }
    }
}

fn failed(e: impl Into<Failure>) -> FeedbackError {
    e.into().into()
}

impl ClickHouseFeedbackStore {
    /// Connects and applies the feedback migrations.
    pub async fn open(url: &StoreUrl) -> Result<Self, FeedbackError> {
        let client = connect(url);
        migrate(&client, url, "feedback", MIGRATIONS)
            .await
            .map_err(failed)?;
        Ok(Self {
            client,
            schema: polymeter_clickhouse::Schema::new(url),
            limits: (url.query_timeout, url.write_timeout),
        })
    }

    /// The projects' retention periods for feedback, in this database.
    pub fn retention_table(&self) -> polymeter_retention::RetentionTable {
        polymeter_retention::RetentionTable::new(self.client.clone(), RETENTION)
    }
}

/// Deleted with lightweight `DELETE`s, as the calls are (see the stats
/// service's ClickHouse store).
#[tonic::async_trait]
impl polymeter_retention::ProjectData for ClickHouseFeedbackStore {
    async fn expire(
        &self,
        tenant: &str,
        project: &str,
        cutoff_us: i64,
        _: polymeter_retention::Expiry,
    ) -> Result<(), polymeter_error::Error> {
        // Whole milliseconds at or after the cutoff stay.
        let cutoff_ms = cutoff_us.div_euclid(1000) + i64::from(cutoff_us.rem_euclid(1000) != 0);
        self.delete_rows(tenant, project, Some(("created_ms", cutoff_ms)))
            .await
    }

    async fn delete(&self, tenant: &str, project: &str) -> Result<(), polymeter_error::Error> {
        self.delete_rows(tenant, project, None).await
    }
}

impl ClickHouseFeedbackStore {
    async fn delete_rows(
        &self,
        tenant: &str,
        project: &str,
        before: Option<(&str, i64)>,
    ) -> Result<(), polymeter_error::Error> {
        polymeter_clickhouse::delete_project_rows(
            &self.client,
            &self.schema,
            TABLE,
            (tenant, project),
            before,
            self.limits.0,
        )
        .await
        .map_err(polymeter_error::Error::from)
    }
}

/// The SQL of one feedback question.
fn statement(query: &FeedbackQuery) -> Statement {
    let q = &query.request;
    let mut p = Statement::default();
    let mut cond = vec![
        format!(
            "tenant = {}",
            p.bind("String", Param::Str(q.tenant.clone()))
        ),
        format!(
            "project_id = {}",
            p.bind("String", Param::Str(q.project_id.clone()))
        ),
        format!("created_ms >= {}", p.bind("Int64", Param::Int(q.after_ms))),
        format!("created_ms < {}", p.bind("Int64", Param::Int(q.before_ms))),
    ];
    if !q.feedback_types.is_empty() {
        let v = p.bind("Array(String)", Param::Strs(q.feedback_types.clone()));
        cond.push(format!(
            "arrayExists(w -> startsWith(feedback_type, w), {v})"
        ));
    }
    // `name*` matches by prefix, anything else exactly; absent never matches.
    for (column, wanted) in [("monitor_id", &q.monitor_ids), ("scorer_id", &q.scorer_ids)] {
        if wanted.is_empty() {
            continue;
        }
        let v = p.bind("Array(String)", Param::Strs(wanted.clone()));
        cond.push(format!(
            "isNotNull({column}) AND arrayExists(w -> if(endsWith(w, '*'), \
             startsWith(assumeNotNull({column}), substring(w, 1, length(w) - 1)), \
             assumeNotNull({column}) = w), {v})"
        ));
    }
    if !q.span_agent_names.is_empty() {
        let v = p.bind("Array(String)", Param::Strs(q.span_agent_names.clone()));
        cond.push(format!(
            "isNotNull(span_agent_name) AND has({v}, assumeNotNull(span_agent_name))"
        ));
    }
    if !query.span_types.is_empty() {
        let codes = query
            .span_types
            .iter()
            .map(|t| match t {
                SpanType::AgentTurn => 1,
                SpanType::AgentConversation => 2,
            })
            .collect();
        let v = p.bind("Array(UInt8)", Param::Ints(codes));
        cond.push(format!("has({v}, span_type)"));
    }
    if !q.tags.is_empty() {
        let v = p.bind("Array(String)", Param::Strs(q.tags.clone()));
        cond.push(format!("hasAny(scorer_tags, {v})"));
    }
    if q.rating_min.is_some() || q.rating_max.is_some() {
        let key = p.bind("String", Param::Str(RATING_KEY.into()));
        let rating = format!("rating_values[indexOf(rating_names, {key})]");
        cond.push(format!("has(rating_names, {key})"));
        if let Some(min) = q.rating_min {
            let m = p.bind("Float64", Param::Float(min));
            cond.push(format!("{rating} >= {m}"));
        }
        if let Some(max) = q.rating_max {
            let m = p.bind("Float64", Param::Float(max));
            cond.push(format!("{rating} <= {m}"));
        }
    }
    let mut sql = String::from("SELECT ");
    let mut keys = Vec::new();
    match query.width_ms {
        Some(w) => {
            let _ = write!(sql, "intDiv(created_ms, {w}) * {w} AS bucket");
            keys.push("bucket".to_owned());
        }
        None => sql.push_str("toInt64(-1) AS bucket"),
    }
    let groups: Vec<String> = query
        .group_by
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let value = match d {
                // A record without the dimension groups under "".
                FeedbackDimension::ScorerId => "ifNull(scorer_id, '')",
                FeedbackDimension::SpanAgentName => "ifNull(span_agent_name, '')",
                FeedbackDimension::SpanAgentVersion => "ifNull(span_agent_version, '')",
                FeedbackDimension::SpanStatusCode => {
                    "transform(span_status, [1, 2], ['OK', 'ERROR'], 'UNSET')"
                }
            };
            keys.push(format!("g{i}"));
            format!("toString({value}) AS g{i}")
        })
        .collect();
    for g in &groups {
        let _ = write!(sql, ", {g}");
    }
    let list: Vec<String> = (0..groups.len()).map(|i| format!("g{i}")).collect();
    let _ = write!(
        sql,
        ", {} AS groups, count() AS total, \
         countIf(notEmpty(scorer_tags) OR notEmpty(rating_names)) AS scored, \
         CAST(sumMap(scorer_tags, arrayMap(t -> toUInt64(1), scorer_tags)), \
              'Tuple(Array(String), Array(UInt64))') AS tags, \
         CAST(sumMap(rating_names, arrayMap(r -> toUInt64(1), rating_names), \
                     arrayMap(v -> toInt128(v * {RATING_UNIT:?}), rating_values)), \
              'Tuple(Array(String), Array(UInt64), Array(Int128))') AS ratings \
         FROM {TABLE} WHERE {}",
        if list.is_empty() {
            "CAST([], 'Array(String)')".to_owned()
        } else {
            format!("[{}]", list.join(", "))
        },
        cond.join(" AND ")
    );
    if !keys.is_empty() {
        let _ = write!(sql, " GROUP BY {}", keys.join(", "));
    }
    // Only the columns `Cell` reads.
    p.sql = format!("SELECT bucket, groups, total, scored, tags, ratings FROM ({sql})");
    p
}

#[tonic::async_trait]
impl FeedbackStore for ClickHouseFeedbackStore {
    async fn append(&self, batch: Vec<pb::FeedbackWrite>) -> Result<(), FeedbackError> {
        if batch.is_empty() {
            return Ok(());
        }
        bounded(self.limits.1, "the write to ClickHouse", self.write(batch)).await
    }

    async fn aggregate(
        &self,
        query: FeedbackQuery,
    ) -> Result<pb::AggregateFeedbackResponse, FeedbackError> {
        bounded(self.limits.0, "the ClickHouse query", self.answer(query)).await
    }
}

impl ClickHouseFeedbackStore {
    async fn write(&self, batch: Vec<pb::FeedbackWrite>) -> Result<(), FeedbackError> {
        let mut insert = self
            .client
            .insert::<FeedbackRow>(TABLE)
            .await
            .map_err(failed)?;
        for w in batch {
            insert.write(&FeedbackRow::from(w)).await.map_err(failed)?;
        }
        insert.end().await.map_err(failed)
    }

    async fn answer(
        &self,
        query: FeedbackQuery,
    ) -> Result<pb::AggregateFeedbackResponse, FeedbackError> {
        let q = statement(&query).into_query(&self.client);
        let cells = q.fetch_all::<Cell>().await.map_err(failed)?;
        let mut out = BTreeMap::new();
        for c in cells {
            // With neither buckets nor groups, SQL answers one row even when
            // nothing matched; `respond` adds that row itself.
            if c.total == 0 {
                continue;
            }
            let (names, counts, sums) = c.ratings;
            let answer = Answer {
                total: c.total,
                scored: c.scored,
                tags: c.tags.0.into_iter().zip(c.tags.1).collect(),
                ratings: names
                    .into_iter()
                    .zip(counts)
                    .zip(sums)
                    .map(|((n, c), s)| (n, c, s))
                    .collect(),
            };
            out.insert(((c.bucket >= 0).then_some(c.bucket), c.groups), answer);
        }
        Ok(respond(out, &query))
    }
}
