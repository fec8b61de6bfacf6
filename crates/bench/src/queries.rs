//! The query set, once for Polymeter (internal `AggregateCalls` requests, as
//! the gateway builds them for `/calls/stats`) and once for ClickHouse (SQL
//! over the same rows), and the check that both give the same numbers.
//!
//! Each query has parts; a part is one request and one SQL statement whose
//! result columns are: bucket start (epoch seconds), the model when grouped,
//! the row count, then the measures in request order.

use crate::workload::{Workload, OPS, TENANT};
use polymeter_proto::v1::{self as pb, Dimension, Grain};
use serde_json::{json, Value};
use std::path::Path;

pub struct Query {
    pub name: &'static str,
    pub requests: Vec<pb::AggregateCallsRequest>,
    pub sql: Vec<String>,
}

fn measure(metric: pb::Metric, aggregation: pb::Aggregation, percentile: f64) -> pb::Measure {
    pb::Measure {
        metric: metric as i32,
        aggregation: aggregation as i32,
        percentile,
    }
}

struct Part<'a> {
    range: (i64, i64),
    grain: Grain,
    width: u64,
    tz: &'a str,
    model: bool,
    filters: Vec<pb::Filter>,
    measures: Vec<pb::Measure>,
}

fn request(p: Part<'_>) -> pb::AggregateCallsRequest {
    pb::AggregateCallsRequest {
        tenant: TENANT.into(),
        project_ids: vec![],
        start_us: p.range.0,
        end_us: p.range.1,
        grain: p.grain as i32,
        bucketing: Some(pb::Bucketing {
            width_seconds: p.width,
            timezone: p.tz.into(),
        }),
        filters: p.filters,
        group_by: if p.model {
            vec![Dimension::Model as i32]
        } else {
            vec![]
        },
        measures: p.measures,
        order_by: vec![],
        limit: 0,
        offset: 0,
        fill_empty_buckets: true,
    }
}

fn range_sql((start, end): (i64, i64)) -> String {
    format!(
        "tenant = '{TENANT}' AND started_at >= fromUnixTimestamp64Micro(toInt64({start}), 'UTC') \
         AND started_at < fromUnixTimestamp64Micro(toInt64({end}), 'UTC')"
    )
}

pub fn query_set(w: &Workload) -> Vec<Query> {
    use pb::{Aggregation as A, Metric as M};
    let end = w.start_us + w.span_us;
    let month = (w.start_us, end);
    let day = (end - 86_400_000_000, end);
    let week = (end - 7 * 86_400_000_000, end);
    let hour = "toUnixTimestamp(toStartOfHour(started_at))";
    let five = "toUnixTimestamp(toStartOfFiveMinutes(started_at))";
    let ny_day = "toUnixTimestamp(toStartOfDay(started_at, 'America/New_York'))";
    let roots = vec![
        pb::Filter {
            dimension: Dimension::OpName as i32,
            any_of: vec![OPS[0].into(), OPS[2].into()],
            prefixes: vec![],
            absent: false,
        },
        pb::Filter {
            dimension: Dimension::ParentId as i32,
            any_of: vec![],
            prefixes: vec![],
            absent: true,
        },
    ];
    vec![
        Query {
            name: "30 d hourly: tokens by model, p50/p95/p99 latency",
            requests: vec![
                request(Part {
                    range: month,
                    grain: Grain::Usage,
                    width: 3600,
                    tz: "UTC",
                    model: true,
                    filters: vec![],
                    measures: vec![measure(M::InputTokens, A::Sum, 0.0), measure(M::OutputTokens, A::Sum, 0.0)],
                }),
                request(Part {
                    range: month,
                    grain: Grain::Call,
                    width: 3600,
                    tz: "UTC",
                    model: false,
                    filters: vec![],
                    measures: vec![
                        measure(M::LatencyMs, A::Percentile, 50.0),
                        measure(M::LatencyMs, A::Percentile, 95.0),
                        measure(M::LatencyMs, A::Percentile, 99.0),
                    ],
                }),
            ],
            sql: vec![
                format!(
                    "SELECT {hour} AS b, model, count(), sum(input_tokens), sum(output_tokens) \
                     FROM usage WHERE {} GROUP BY b, model",
                    range_sql(month)
                ),
                format!(
                    "SELECT b, c, q[1] / 1000, q[2] / 1000, q[3] / 1000 FROM (SELECT {hour} AS b, count() AS c, \
                     quantilesExactInclusive(0.5, 0.95, 0.99)(latency_us) AS q FROM calls WHERE {} GROUP BY b)",
                    range_sql(month)
                ),
            ],
        },
        Query {
            name: "last 24 h at 5 min: tokens by model, errors, avg latency",
            requests: vec![
                request(Part {
                    range: day,
                    grain: Grain::Usage,
                    width: 300,
                    tz: "UTC",
                    model: true,
                    filters: vec![],
                    measures: vec![measure(M::TotalTokens, A::Sum, 0.0)],
                }),
                request(Part {
                    range: day,
                    grain: Grain::Call,
                    width: 300,
                    tz: "UTC",
                    model: false,
                    filters: vec![],
                    measures: vec![measure(M::ErrorCount, A::Sum, 0.0), measure(M::LatencyMs, A::Avg, 0.0)],
                }),
            ],
            sql: vec![
                format!(
                    "SELECT {five} AS b, model, count(), sum(total_tokens) FROM usage WHERE {} GROUP BY b, model",
                    range_sql(day)
                ),
                format!(
                    "SELECT {five} AS b, count(), sum(error), avg(latency_us) / 1000 FROM calls WHERE {} GROUP BY b",
                    range_sql(day)
                ),
            ],
        },
        Query {
            name: "30 d hourly, op_names + trace_roots_only: p95",
            requests: vec![request(Part {
                range: month,
                grain: Grain::Call,
                width: 3600,
                tz: "UTC",
                model: false,
                filters: roots,
                measures: vec![measure(M::LatencyMs, A::Percentile, 95.0)],
            })],
            sql: vec![format!(
                "SELECT {hour} AS b, count(), quantileExactInclusive(0.95)(latency_us) / 1000 FROM calls \
                 WHERE {} AND op_name IN ('{}', '{}') AND parent_id IS NULL GROUP BY b",
                range_sql(month),
                OPS[0],
                OPS[2]
            )],
        },
        Query {
            name: "7 d daily in America/New_York",
            requests: vec![
                request(Part {
                    range: week,
                    grain: Grain::Usage,
                    width: 86_400,
                    tz: "America/New_York",
                    model: true,
                    filters: vec![],
                    measures: vec![measure(M::TotalTokens, A::Sum, 0.0)],
                }),
                request(Part {
                    range: week,
                    grain: Grain::Call,
                    width: 86_400,
                    tz: "America/New_York",
                    model: false,
                    filters: vec![],
                    measures: vec![measure(M::ErrorCount, A::Sum, 0.0), measure(M::LatencyMs, A::Avg, 0.0)],
                }),
            ],
            sql: vec![
                format!(
                    "SELECT {ny_day} AS b, model, count(), sum(total_tokens) FROM usage WHERE {} GROUP BY b, model",
                    range_sql(week)
                ),
                format!(
                    "SELECT {ny_day} AS b, count(), sum(error), avg(latency_us) / 1000 FROM calls WHERE {} GROUP BY b",
                    range_sql(week)
                ),
            ],
        },
    ]
}

/// Setup statements and the query set for `chdb_bench.py`.
pub fn clickhouse_spec(
    set: &[Query],
    parquet: &Path,
    session: &Path,
    iterations: usize,
) -> anyhow::Result<Value> {
    let parquet = std::fs::canonicalize(parquet)?;
    let p = parquet.display();
    let setup = vec![
        "CREATE TABLE calls (tenant LowCardinality(String), project_id LowCardinality(String), \
         call_id String, trace_id String, parent_id Nullable(String), op_name LowCardinality(String), \
         started_at DateTime64(6, 'UTC'), latency_us Int64, error UInt8) \
         ENGINE = MergeTree ORDER BY (tenant, started_at)"
            .to_string(),
        format!("INSERT INTO calls SELECT * FROM file('{p}/calls-*.parquet', Parquet)"),
        "CREATE TABLE usage (tenant LowCardinality(String), project_id LowCardinality(String), \
         started_at DateTime64(6, 'UTC'), model LowCardinality(String), input_tokens Int64, \
         output_tokens Int64, total_tokens Int64, cache_read_input_tokens Int64) \
         ENGINE = MergeTree ORDER BY (tenant, started_at)"
            .to_string(),
        format!("INSERT INTO usage SELECT * FROM file('{p}/usage-*.parquet', Parquet)"),
        "OPTIMIZE TABLE calls FINAL".to_string(),
        "OPTIMIZE TABLE usage FINAL".to_string(),
    ];
    Ok(json!({
        "session_dir": session,
        "setup": setup,
        "warmup": 2,
        "iterations": iterations,
        "queries": set.iter().map(|q| json!({"name": q.name, "sql": q.sql})).collect::<Vec<_>>(),
    }))
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Checks every non-empty bucket (× model) against ClickHouse's rows.
pub fn compare(
    q: &Query,
    ours: &[pb::AggregateCallsResponse],
    theirs: &Value,
) -> Result<usize, String> {
    let mut rows = 0;
    for (part, (request, answer)) in q.requests.iter().zip(ours).enumerate() {
        let grouped = !request.group_by.is_empty();
        let mut mine: std::collections::BTreeMap<(i64, String), Vec<f64>> = Default::default();
        for r in answer.rows.iter().filter(|r| r.row_count > 0) {
            let key = (
                r.bucket_start_us.unwrap_or(0) / 1_000_000,
                r.group
                    .first()
                    .and_then(|g| g.value.clone())
                    .unwrap_or_default(),
            );
            let mut values = vec![r.row_count as f64];
            values.extend(r.values.iter().map(|v| v.value.unwrap_or(f64::NAN)));
            mine.insert(key, values);
        }
        let their_rows = theirs[part].as_array().ok_or("no ClickHouse rows")?;
        if their_rows.len() != mine.len() {
            return Err(format!(
                "part {part}: {} rows here, {} in ClickHouse",
                mine.len(),
                their_rows.len()
            ));
        }
        for row in their_rows {
            let row = row.as_array().ok_or("bad row")?;
            let bucket = number(&row[0]).ok_or("bad bucket")? as i64;
            let (model, rest) = if grouped {
                (row[1].as_str().unwrap_or_default().to_owned(), &row[2..])
            } else {
                (String::new(), &row[1..])
            };
            let values = mine
                .get(&(bucket, model.clone()))
                .ok_or_else(|| format!("part {part}: bucket {bucket} {model} missing here"))?;
            for (i, (a, b)) in values.iter().zip(rest).enumerate() {
                let b = number(b).ok_or("bad value")?;
                if !close(*a, b) {
                    return Err(format!("part {part}: bucket {bucket} {model} column {i}: {a} here, {b} in ClickHouse"));
                }
            }
            rows += 1;
        }
    }
    Ok(rows)
}
