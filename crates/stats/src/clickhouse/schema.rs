//! The calls' tables and the row a write becomes.
//!
//! `calls` is a `ReplacingMergeTree(version)` ordered by
//! `(tenant, project_id, sort_us, call_id)`. Each write is the whole call as
//! the writer knows it (stored halves merged with the new ones, see
//! [`super::write`]), under its start time (`sort_us`; the end time while
//! only the end is known) with a newer `version`, so the newest row under a
//! key is the call: queries read with `FINAL`, which ClickHouse answers by
//! merging rows of equal key in sort order, before background merges have.
//! Where a call leaves a key — its start moved, or its end arrived first and
//! was then merged under the start — the writer leaves a tombstone
//! (`is_deleted = 1`, newer) there, so a call is live under one key only.
//!
//! `call_models` lists the models each project has used, so cost queries
//! price exactly those models without scanning calls first.
//!
//! `price_overrides` holds the projects' price overrides (see
//! [`super::prices`]).

use polymeter_clickhouse::{Migration, Schema};
use serde::{Deserialize, Serialize};

pub const CALLS: &str = "calls";
pub const CALL_MODELS: &str = "call_models";
pub const PRICE_OVERRIDES: &str = "price_overrides";

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "calls and call_models",
        statements: v1,
    },
    Migration {
        version: 2,
        name: "price_overrides",
        statements: v2,
    },
    Migration {
        version: 3,
        name: "call_retention",
        statements: v3,
    },
];

/// Each project's retention period for its calls.
pub const CALL_RETENTION: &str = "call_retention";

fn v3(schema: &Schema) -> Vec<String> {
    polymeter_retention::RetentionTable::create(schema, CALL_RETENTION)
}

fn v2(schema: &Schema) -> Vec<String> {
    schema.create_table(
        PRICE_OVERRIDES,
        "tenant LowCardinality(String), project_id LowCardinality(String), model String, \
         input Float64, output Float64, cache_read Float64, cache_write Float64, \
         deleted UInt8, version UInt64",
        "ReplacingMergeTree(version)",
        "ORDER BY (tenant, project_id, model)",
        "cityHash64(tenant)",
    )
}

fn v1(schema: &Schema) -> Vec<String> {
    let mut out = schema.create_table(
        CALLS,
        "tenant LowCardinality(String), \
         project_id LowCardinality(String), \
         sort_us Int64 CODEC(Delta, ZSTD(1)), \
         call_id String CODEC(ZSTD(1)), \
         version UInt64 CODEC(Delta, ZSTD(1)), \
         is_deleted UInt8, \
         has_start UInt8, \
         started_us Int64 CODEC(Delta, ZSTD(1)), \
         trace_id String CODEC(ZSTD(1)), \
         parent_id Nullable(String) CODEC(ZSTD(1)), \
         thread_id Nullable(String) CODEC(ZSTD(1)), \
         turn_id Nullable(String) CODEC(ZSTD(1)), \
         op_name LowCardinality(String), \
         display_name LowCardinality(Nullable(String)), \
         wb_user_id LowCardinality(Nullable(String)), \
         wb_run_id LowCardinality(Nullable(String)), \
         service_id LowCardinality(Nullable(String)), \
         service_name LowCardinality(Nullable(String)), \
         app_id LowCardinality(Nullable(String)), \
         client_id LowCardinality(Nullable(String)), \
         api_key_id LowCardinality(Nullable(String)), \
         model_id LowCardinality(Nullable(String)), \
         resource_id LowCardinality(Nullable(String)), \
         input_refs Array(String) CODEC(ZSTD(1)), \
         has_end UInt8, \
         ended_us Int64 CODEC(Delta, ZSTD(1)), \
         exception Nullable(String) CODEC(ZSTD(3)), \
         usage_model Array(LowCardinality(String)), \
         usage_input_tokens Array(Int64) CODEC(ZSTD(1)), \
         usage_output_tokens Array(Int64) CODEC(ZSTD(1)), \
         usage_total_tokens Array(Int64) CODEC(ZSTD(1)), \
         usage_cache_read_input_tokens Array(Int64) CODEC(ZSTD(1)), \
         usage_cache_creation_input_tokens Array(Int64) CODEC(ZSTD(1)), \
         usage_requests Array(Int64) CODEC(ZSTD(1)), \
         output_refs Array(String) CODEC(ZSTD(1)), \
         INDEX call_id_bloom call_id TYPE bloom_filter(0.01) GRANULARITY 4",
        "ReplacingMergeTree(version)",
        "PARTITION BY toYYYYMM(toDateTime(intDiv(sort_us, 1000000), 'UTC')) \
         ORDER BY (tenant, project_id, sort_us, call_id)",
        // Every row about one call on one shard, so a call merges locally.
        "cityHash64(tenant, project_id, call_id)",
    );
    out.extend(schema.create_table(
        CALL_MODELS,
        "tenant LowCardinality(String), project_id LowCardinality(String), model String",
        "ReplacingMergeTree",
        "ORDER BY (tenant, project_id, model)",
        "cityHash64(tenant, project_id)",
    ));
    out
}

/// One row of `calls`.
#[derive(Debug, Clone, Default, clickhouse::Row, Serialize, Deserialize, PartialEq)]
pub struct CallRow {
    pub tenant: String,
    pub project_id: String,
    pub sort_us: i64,
    pub call_id: String,
    pub version: u64,
    pub is_deleted: u8,
    pub has_start: u8,
    pub started_us: i64,
    pub trace_id: String,
    pub parent_id: Option<String>,
    pub thread_id: Option<String>,
    pub turn_id: Option<String>,
    pub op_name: String,
    pub display_name: Option<String>,
    pub wb_user_id: Option<String>,
    pub wb_run_id: Option<String>,
    pub service_id: Option<String>,
    pub service_name: Option<String>,
    pub app_id: Option<String>,
    pub client_id: Option<String>,
    pub api_key_id: Option<String>,
    pub model_id: Option<String>,
    pub resource_id: Option<String>,
    pub input_refs: Vec<String>,
    pub has_end: u8,
    pub ended_us: i64,
    pub exception: Option<String>,
    pub usage_model: Vec<String>,
    pub usage_input_tokens: Vec<i64>,
    pub usage_output_tokens: Vec<i64>,
    pub usage_total_tokens: Vec<i64>,
    pub usage_cache_read_input_tokens: Vec<i64>,
    pub usage_cache_creation_input_tokens: Vec<i64>,
    pub usage_requests: Vec<i64>,
    pub output_refs: Vec<String>,
}

/// One row of `call_models`.
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct ModelRow {
    pub tenant: String,
    pub project_id: String,
    pub model: String,
}

/// The columns of the start half and of the end half, for the merges that
/// take each half from the newest row carrying it.
pub const START_COLUMNS: &[&str] = &[
    "started_us",
    "trace_id",
    "parent_id",
    "thread_id",
    "turn_id",
    "op_name",
    "display_name",
    "wb_user_id",
    "wb_run_id",
    "service_id",
    "service_name",
    "app_id",
    "client_id",
    "api_key_id",
    "model_id",
    "resource_id",
    "input_refs",
];
pub const END_COLUMNS: &[&str] = &[
    "ended_us",
    "exception",
    "usage_model",
    "usage_input_tokens",
    "usage_output_tokens",
    "usage_total_tokens",
    "usage_cache_read_input_tokens",
    "usage_cache_creation_input_tokens",
    "usage_requests",
    "output_refs",
];
