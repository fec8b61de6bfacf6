//! `POST /calls/stats` → two `StatsService.AggregateCalls` queries: call
//! metrics per bucket (call grain), usage metrics per bucket × model (usage
//! grain). Both are zero-filled on the same zone-aligned grid.

use super::{WeaveBody, WeaveCaller, WeaveResult};
use crate::api::Services;
use crate::error::Error;
use crate::json::{parse, Instant};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use polymeter_model::buckets::{check_width, parse_zone};
use polymeter_model::{Aggregation, Metric};
use polymeter_proto::v1::{self as pb, Dimension, Grain};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// Weave's `CallsStatsReq`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallsStatsReq {
    /// `entity/project`.
    #[schema(pattern = "^[^/]+/[^/]+$", example = "acme/chatbot")]
    project_id: String,
    /// Inclusive start of the range (ISO 8601; without an offset, UTC).
    #[schema(value_type = String, format = DateTime)]
    start: Instant,
    /// Exclusive end of the range; default now.
    #[schema(value_type = Option<String>, format = DateTime)]
    end: Option<Instant>,
    /// Bucket width in seconds; chosen from the range when omitted.
    #[schema(minimum = 1)]
    granularity: Option<i64>,
    /// Token and cost metrics, per bucket and model.
    usage_metrics: Option<Vec<MetricSpec>>,
    /// Latency, call and error counts, per bucket.
    call_metrics: Option<Vec<MetricSpec>>,
    filter: Option<CallsFilter>,
    /// IANA zone the buckets are aligned to; default UTC.
    #[schema(example = "Europe/Paris", pattern = "^[A-Za-z0-9_+/-]+$")]
    timezone: Option<String>,
    /// Polymeter's extension (Weave has no such field): when true, call
    /// buckets are per bucket × model, like usage buckets (with a `model`
    /// key), each call counted under every model it used — calls without
    /// usage are then in none. Default false: per bucket only, as in Weave.
    call_metrics_by_model: Option<bool>,
}

/// One metric and how to aggregate it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricSpec {
    /// A usage metric (`input_tokens`, `output_tokens`, `total_tokens`,
    /// `cache_read_input_tokens`, `cache_creation_input_tokens`, `input_cost`,
    /// `output_cost`, `total_cost`) or a call metric (`latency_ms`,
    /// `call_count`, `error_count`).
    #[schema(
        pattern = "^(input_tokens|output_tokens|total_tokens|cache_read_input_tokens|cache_creation_input_tokens|input_cost|output_cost|total_cost|latency_ms|call_count|error_count)$"
    )]
    metric: String,
    /// Any of `sum`, `avg`, `min`, `max`, `count`; default `["sum"]`.
    aggregations: Option<Vec<String>>,
    /// Exact percentiles, each in 0..=100.
    percentiles: Option<Vec<f64>>,
}

/// Weave's `CallsFilter`: each list keeps calls whose field is any of its values.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallsFilter {
    /// Op refs; `…:*` matches every version.
    op_names: Option<Vec<String>>,
    input_refs: Option<Vec<String>>,
    output_refs: Option<Vec<String>>,
    parent_ids: Option<Vec<String>>,
    trace_ids: Option<Vec<String>>,
    call_ids: Option<Vec<String>>,
    thread_ids: Option<Vec<String>>,
    turn_ids: Option<Vec<String>>,
    /// Only calls without a parent.
    trace_roots_only: Option<bool>,
    wb_user_ids: Option<Vec<String>>,
    wb_run_ids: Option<Vec<String>>,
}

/// Weave's `CallsStatsRes`.
#[derive(Serialize, ToSchema)]
pub struct CallsStatsRes {
    pub start: String,
    pub end: String,
    /// The bucket width used, in seconds.
    pub granularity: u64,
    pub timezone: String,
    pub usage_buckets: Vec<StatsBucket>,
    pub call_buckets: Vec<StatsBucket>,
}

/// One bucket (× model, for usage buckets). Besides the fixed keys, one key
/// per asked aggregation: `sum_input_tokens`, `avg_latency_ms`,
/// `p95_latency_ms`, …; a number, or null where the bucket has no value.
#[derive(Serialize, ToSchema)]
pub struct StatsBucket {
    /// Bucket start, ISO 8601 with the zone's offset.
    pub timestamp: Option<String>,
    /// Usage buckets only: the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub model: Option<Option<String>>,
    /// Rows in the bucket.
    pub count: u64,
    #[serde(flatten)]
    #[schema(value_type = std::collections::HashMap<String, Option<f64>>)]
    pub values: Map<String, Value>,
}

/// One output column: its key and the measure that fills it.
pub(crate) struct Column {
    key: String,
    measure: pb::Measure,
    integral: bool,
}

/// `95` → `p95`, `99.9` → `p99.9`.
fn percentile_key(p: f64) -> String {
    format!("p{p}")
}

fn columns(field: &str, specs: &[MetricSpec], allowed: &[Metric]) -> Result<Vec<Column>, Error> {
    let mut columns = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let metric = Metric::parse_among(&spec.metric, allowed)
            .map_err(|e| Error::invalid(format!("{field}[{i}].metric: {e}")))?;
        let default = ["sum".to_owned()];
        let aggregations = spec.aggregations.as_deref().unwrap_or(&default);
        for (j, name) in aggregations.iter().enumerate() {
            let aggregation = Aggregation::parse_among(name, Aggregation::LISTED)
                .map_err(|e| Error::invalid(format!("{field}[{i}].aggregations[{j}]: {e}")))?;
            columns.push(Column {
                key: format!("{name}_{}", metric.as_str()),
                measure: pb::Measure {
                    metric: metric.to_proto() as i32,
                    aggregation: aggregation.to_proto() as i32,
                    percentile: 0.0,
                },
                integral: aggregation == Aggregation::Count
                    || (metric.is_integral() && aggregation != Aggregation::Avg),
            });
        }
        for (j, &p) in spec
            .percentiles
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            if !(0.0..=100.0).contains(&p) {
                return Err(Error::invalid(format!(
                    "{field}[{i}].percentiles[{j}]: {p} is outside 0..=100"
                )));
            }
            columns.push(Column {
                key: format!("{}_{}", percentile_key(p), metric.as_str()),
                measure: pb::Measure {
                    metric: metric.to_proto() as i32,
                    aggregation: Aggregation::Percentile.to_proto() as i32,
                    percentile: p,
                },
                integral: false,
            });
        }
    }
    Ok(columns)
}

fn filters(filter: CallsFilter) -> Vec<pb::Filter> {
    let mut out = Vec::new();
    let mut any_of = |dimension: Dimension, values: Option<Vec<String>>| {
        let values = values.unwrap_or_default();
        if values.is_empty() {
            return;
        }
        // Weave names "any version of an op" as `…/op/name:*`.
        let (prefixes, exact): (Vec<String>, Vec<String>) = values
            .into_iter()
            .partition(|v| dimension == Dimension::OpName && v.ends_with(":*"));
        out.push(pb::Filter {
            dimension: dimension as i32,
            any_of: exact,
            prefixes: prefixes
                .into_iter()
                .map(|p| p[..p.len() - 1].to_owned())
                .collect(),
            absent: false,
        });
    };
    any_of(Dimension::OpName, filter.op_names);
    any_of(Dimension::InputRefs, filter.input_refs);
    any_of(Dimension::OutputRefs, filter.output_refs);
    any_of(Dimension::ParentId, filter.parent_ids);
    any_of(Dimension::TraceId, filter.trace_ids);
    any_of(Dimension::CallId, filter.call_ids);
    any_of(Dimension::ThreadId, filter.thread_ids);
    any_of(Dimension::TurnId, filter.turn_ids);
    any_of(Dimension::WbUserId, filter.wb_user_ids);
    any_of(Dimension::WbRunId, filter.wb_run_ids);
    if filter.trace_roots_only == Some(true) {
        out.push(pb::Filter {
            dimension: Dimension::ParentId as i32,
            any_of: vec![],
            prefixes: vec![],
            absent: true,
        });
    }
    out
}

fn number(value: Option<f64>, integral: bool) -> Value {
    match value {
        None => Value::Null,
        Some(v) if integral && v.fract() == 0.0 && v.abs() < 9.0e15 => json!(v as i64),
        Some(v) => json!(v),
    }
}

fn rows(rows: Vec<pb::AggregateRow>, columns: &[Column], model: bool) -> Vec<StatsBucket> {
    rows.into_iter()
        .map(|row| {
            let offset = FixedOffset::east_opt(row.bucket_utc_offset_seconds)
                .unwrap_or(FixedOffset::east_opt(0).unwrap());
            let timestamp = row
                .bucket_start_us
                .and_then(|us| Utc.timestamp_micros(us).single())
                .map(|t| {
                    t.with_timezone(&offset)
                        .format("%Y-%m-%dT%H:%M:%S%:z")
                        .to_string()
                });
            StatsBucket {
                timestamp,
                model: model.then(|| row.group.first().and_then(|g| g.value.clone())),
                count: row.row_count,
                values: columns
                    .iter()
                    .zip(row.values)
                    .map(|(column, value)| {
                        (column.key.clone(), number(value.value, column.integral))
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The stats service queries one `/calls/stats` request becomes, and what
/// the answer echoes.
pub struct StatsPlan {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    timezone: String,
    /// Usage metrics per bucket × model, when any are asked.
    usage: Option<(pb::AggregateCallsRequest, Vec<Column>)>,
    /// Call metrics per bucket (or bucket × model); runs with no measures
    /// when nothing is asked, since the service decides the granularity
    /// echoed back.
    calls: Option<(pb::AggregateCallsRequest, Vec<Column>)>,
    calls_by_model: bool,
}

/// `/calls/stats` → internal queries, or a 400 naming the field.
pub fn translate(req: CallsStatsReq, tenant: &str, now: DateTime<Utc>) -> Result<StatsPlan, Error> {
    let start = req.start.0;
    let end = req.end.map(|e| e.0).unwrap_or(now);
    if end <= start {
        return Err(Error::invalid(format!(
            "end ({}) must be after start ({})",
            end.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            start.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        )));
    }
    let width = match req.granularity {
        None => 0,
        Some(g) if g > 0 => {
            check_width(g as u64).map_err(|e| Error::invalid(format!("granularity: {e}")))?
        }
        Some(g) => {
            return Err(Error::invalid(format!(
                "granularity: must be a positive number of seconds, got {g}"
            )))
        }
    };
    let timezone = req.timezone.unwrap_or_else(|| "UTC".to_owned());
    parse_zone(&timezone).map_err(|e| Error::invalid(format!("timezone: {e}")))?;
    let call_columns = columns(
        "call_metrics",
        req.call_metrics.as_deref().unwrap_or(&[]),
        Metric::CALL,
    )?;
    let usage_columns = columns(
        "usage_metrics",
        req.usage_metrics.as_deref().unwrap_or(&[]),
        Metric::USAGE,
    )?;
    let filters = filters(req.filter.unwrap_or_default());
    let query =
        |grain: Grain, group_by: Vec<Dimension>, columns: &[Column]| pb::AggregateCallsRequest {
            tenant: tenant.to_owned(),
            project_ids: vec![req.project_id.clone()],
            start_us: start.timestamp_micros(),
            end_us: end.timestamp_micros(),
            grain: grain as i32,
            bucketing: Some(pb::Bucketing {
                width_seconds: width,
                timezone: timezone.clone(),
            }),
            filters: filters.clone(),
            group_by: group_by.into_iter().map(|d| d as i32).collect(),
            measures: columns.iter().map(|c| c.measure).collect(),
            order_by: vec![],
            limit: 0,
            offset: 0,
            fill_empty_buckets: true,
        };
    let usage = (!usage_columns.is_empty()).then(|| {
        (
            query(Grain::Usage, vec![Dimension::Model], &usage_columns),
            usage_columns,
        )
    });
    let calls_by_model = req.call_metrics_by_model == Some(true);
    let calls = (!call_columns.is_empty() || usage.is_none()).then(|| {
        let calls = match calls_by_model {
            true => query(Grain::Usage, vec![Dimension::Model], &call_columns),
            false => query(Grain::Call, vec![], &call_columns),
        };
        (calls, call_columns)
    });
    Ok(StatsPlan {
        start,
        end,
        timezone,
        usage,
        calls,
        calls_by_model,
    })
}

/// The services' answers → Weave's `CallsStatsRes`. `usage` and `calls`
/// answer the plan's queries of the same names.
pub fn render(
    plan: &StatsPlan,
    usage: Option<pb::AggregateCallsResponse>,
    calls: Option<pb::AggregateCallsResponse>,
) -> CallsStatsRes {
    let mut granularity = 0;
    let mut usage_buckets = Vec::new();
    if let (Some((_, columns)), Some(answer)) = (&plan.usage, usage) {
        granularity = answer.bucket_width_seconds;
        usage_buckets = rows(answer.rows, columns, true);
    }
    let mut call_buckets = Vec::new();
    if let (Some((_, columns)), Some(answer)) = (&plan.calls, calls) {
        granularity = answer.bucket_width_seconds;
        if !columns.is_empty() {
            call_buckets = rows(answer.rows, columns, plan.calls_by_model);
        }
    }
    CallsStatsRes {
        start: plan.start.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        end: plan.end.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        granularity,
        timezone: plan.timezone.clone(),
        usage_buckets,
        call_buckets,
    }
}

/// Time-bucketed call and usage statistics of one project.
#[utoipa::path(post, path = "/calls/stats", tag = "Weave",
    request_body = CallsStatsReq,
    responses((status = 200, description = "Buckets covering the range", body = CallsStatsRes)),
    security(("weave_basic" = [])))]
pub async fn calls_stats(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<CallsStatsRes>> {
    let req: CallsStatsReq = parse(&body)?;
    caller.check("project_id", &req.project_id)?;
    let plan = translate(req, &caller.0.tenant, Utc::now())?;
    let mut usage = None;
    if let Some((query, _)) = &plan.usage {
        usage = Some(services.stats.aggregate_calls(query.clone()).await?);
    }
    let mut calls = None;
    if let Some((query, _)) = &plan.calls {
        calls = Some(services.stats.aggregate_calls(query.clone()).await?);
    }
    Ok(Json(render(&plan, usage, calls)))
}

#[cfg(test)]
mod tests {
    use crate::error::{Error, ErrorKind};
    use crate::testing::{post, router, Fake};
    use axum::http::StatusCode;
    use polymeter_proto::v1::{self as pb, Dimension, Grain};
    use serde_json::json;
    use std::sync::Arc;

    fn row(bucket_us: i64, model: Option<&str>, values: &[Option<f64>]) -> pb::AggregateRow {
        pb::AggregateRow {
            bucket_start_us: Some(bucket_us),
            bucket_utc_offset_seconds: 3600,
            group: model
                .map(|m| pb::GroupValue {
                    value: Some(m.into()),
                })
                .into_iter()
                .collect(),
            row_count: 3,
            values: values
                .iter()
                .map(|&value| pb::MeasureValue { value })
                .collect(),
        }
    }

    #[tokio::test]
    async fn call_metrics_by_model_are_asked_per_usage_row_and_carry_the_model() {
        let fake = Arc::new(Fake::default());
        let t0 = 1_714_521_600_000_000;
        *fake.calls_answers.lock().unwrap() = vec![pb::AggregateCallsResponse {
            bucket_width_seconds: 3600,
            rows: vec![row(
                t0,
                Some("gpt-4o"),
                &[Some(2.0), Some(300.0), Some(120.5)],
            )],
            total_rows: 1,
        }];
        let (app, auth) = router(fake.clone());
        let (status, body) = post(
            &app,
            "/calls/stats",
            &auth,
            json!({"project_id": "acme/bot", "start": "2024-05-01T00:00:00Z",
                   "end": "2024-05-01T01:00:00Z", "call_metrics_by_model": true,
                   "call_metrics": [{"metric": "error_count"}, {"metric": "latency_ms", "percentiles": [95]}]}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["call_buckets"][0]["model"], "gpt-4o");
        assert_eq!(body["call_buckets"][0]["sum_error_count"], 2);
        assert_eq!(body["call_buckets"][0]["p95_latency_ms"], 120.5);
        let asked = fake.calls_asked.lock().unwrap();
        assert_eq!(asked[0].grain, Grain::Usage as i32);
        assert_eq!(asked[0].group_by, vec![Dimension::Model as i32]);
    }

    #[tokio::test]
    async fn usage_and_call_metrics_become_two_queries_and_render_weaves_keys() {
        let fake = Arc::new(Fake::default());
        let t0 = 1_714_521_600_000_000; // 2024-05-01T00:00:00Z
        *fake.calls_answers.lock().unwrap() = vec![
            pb::AggregateCallsResponse {
                bucket_width_seconds: 3600,
                rows: vec![row(t0, Some("gpt-4o"), &[Some(12.0)])],
                total_rows: 1,
            },
            pb::AggregateCallsResponse {
                bucket_width_seconds: 3600,
                rows: vec![row(t0, None, &[Some(2.0), Some(12.5), None])],
                total_rows: 1,
            },
        ];
        let (app, auth) = router(fake.clone());
        let (status, body) = post(
            &app,
            "/calls/stats",
            &auth,
            json!({
                "project_id": "acme/bot",
                "start": "2024-05-01T00:00:00Z",
                "end": "2024-05-01T02:00:00Z",
                "timezone": "Europe/Paris",
                "usage_metrics": [{"metric": "input_tokens"}],
                "call_metrics": [
                    {"metric": "call_count"},
                    {"metric": "latency_ms", "aggregations": ["avg"], "percentiles": [99.9]}
                ],
                "filter": {"op_names": ["weave:///acme/bot/op/chat:*"], "trace_roots_only": true}
            }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let asked = fake.calls_asked.lock().unwrap().clone();
        assert_eq!(asked.len(), 2);
        let (usage, calls) = (&asked[0], &asked[1]);
        assert_eq!(usage.grain, Grain::Usage as i32);
        assert_eq!(usage.group_by, vec![Dimension::Model as i32]);
        assert_eq!(calls.grain, Grain::Call as i32);
        assert_eq!(calls.tenant, "local");
        assert_eq!(calls.project_ids, vec!["acme/bot".to_owned()]);
        assert_eq!(calls.measures.len(), 3);
        assert_eq!(calls.measures[2].percentile, 99.9);
        let bucketing = calls.bucketing.clone().unwrap();
        assert_eq!(
            (bucketing.width_seconds, bucketing.timezone.as_str()),
            (0, "Europe/Paris")
        );
        // `…:*` is a prefix; roots only is "parent absent".
        assert_eq!(
            calls.filters[0].prefixes,
            vec!["weave:///acme/bot/op/chat:"]
        );
        assert!(calls.filters[1].absent);

        assert_eq!(body["granularity"], 3600);
        assert_eq!(body["usage_buckets"][0]["model"], "gpt-4o");
        assert_eq!(body["usage_buckets"][0]["sum_input_tokens"], 12);
        assert_eq!(
            body["call_buckets"][0]["timestamp"],
            "2024-05-01T01:00:00+01:00"
        );
        assert_eq!(body["call_buckets"][0]["sum_call_count"], 2);
        assert_eq!(body["call_buckets"][0]["avg_latency_ms"], 12.5);
        assert_eq!(body["call_buckets"][0]["p99.9_latency_ms"], json!(null));
        assert_eq!(body["call_buckets"][0]["count"], 3);
    }

    #[tokio::test]
    async fn bad_fields_are_400s_naming_them_and_never_reach_the_service() {
        let fake = Arc::new(Fake::default());
        let (app, auth) = router(fake.clone());
        let base = json!({"project_id": "acme/bot", "start": "2024-05-01T00:00:00Z"});
        for (patch, words) in [
            (json!({"granularity": 0}), "granularity"),
            (
                json!({"granularity": 100_000_000_000i64}),
                "granularity: at most",
            ),
            (json!({"timezone": "Mars/Base"}), "timezone"),
            (
                json!({"end": "2024-04-01T00:00:00Z"}),
                "must be after start",
            ),
            (
                json!({"call_metrics": [{"metric": "tokens"}]}),
                "call_metrics[0].metric",
            ),
            (json!({"colour": 1}), "unknown field `colour`"),
        ] {
            let mut body = base.clone();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            let (status, answer) = post(&app, "/calls/stats", &auth, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
            let reason = answer["reason"].as_str().unwrap();
            assert!(reason.contains(words), "{reason:?} lacks {words:?}");
        }
        assert!(fake.calls_asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_service_error_keeps_its_kind_in_weaves_envelope() {
        let fake = Arc::new(Fake::default());
        let (app, auth) = router(fake.clone());
        let body = json!({"project_id": "acme/bot", "start": "2024-05-01T00:00:00Z"});
        for (kind, status) in [
            (ErrorKind::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (ErrorKind::DeadlineExceeded, StatusCode::GATEWAY_TIMEOUT),
            (ErrorKind::InvalidArgument, StatusCode::BAD_REQUEST),
            (ErrorKind::DataLoss, StatusCode::INTERNAL_SERVER_ERROR),
        ] {
            *fake.fail.lock().unwrap() = Some(Error::new(kind, "what the service said"));
            let (got, answer) = post(&app, "/calls/stats", &auth, body.clone()).await;
            assert_eq!(got, status, "{kind}");
            assert_eq!(answer["reason"], "what the service said");
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_weaves_envelope_and_the_next_request_is_served() {
        let fake = Arc::new(Fake::default());
        let (app, auth) = router(fake.clone());
        let body = json!({"project_id": "acme/bot", "start": "2024-05-01T00:00:00Z"});
        fake.panic.store(true, std::sync::atomic::Ordering::Relaxed);
        let (status, answer) = post(&app, "/calls/stats", &auth, body.clone()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(answer["reason"]
            .as_str()
            .unwrap()
            .contains("internal error"));
        fake.panic
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let (status, _) = post(&app, "/calls/stats", &auth, body).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_wrong_key_or_another_tenants_project_is_refused_before_any_query() {
        let fake = Arc::new(Fake::default());
        let (app, _) = router(fake.clone());
        let body = json!({"project_id": "acme/bot", "start": "2024-05-01T00:00:00Z"});
        let (status, _) = post(&app, "/calls/stats", "Basic YXBpOm5vcGU=", body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(fake.calls_asked.lock().unwrap().is_empty());
    }
}
