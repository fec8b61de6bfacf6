//! One conformance suite for every store: the same dataset goes into a stack
//! on the embedded store and a stack on ClickHouse (a real server when
//! `POLYMETER_TEST_CLICKHOUSE_URL` is set, otherwise ClickHouse's engine
//! through the chDB adapter), every query case runs against both, and the
//! answers must be the same JSON — statuses, envelopes and every number —
//! once the per-request ids are set aside.
//!
//! The cases cover `/calls/stats` (every metric and aggregation, exact
//! percentiles, DST and half-hour zones, every filter), `/feedback/aggregate`,
//! Alibaba (groups, ordering, paging) and Qianfan, cost with a project price
//! override, calls sent split, out of order, moved and re-sent, and tenancy.

use crate::support::*;
use chrono::Duration;
use polymeter_proto::v1::{self as pb, stats_service_client::StatsServiceClient};
use polymeter_tests::{fixture, json, Client, Store, TestStack};
use serde_json::Value;

const OTHER: &str = "acme/other";

/// A query as some client sends it.
enum Ask {
    Weave(&'static str, Value),
    WeaveAs(&'static str, &'static str, Value),
    /// A Weave-authenticated GET (the projects list).
    WeaveGet(&'static str, &'static str),
    Alibaba(&'static fixture::AccessKey, String),
    Qianfan(&'static fixture::AccessKey, Value),
    /// Straight to the stats service, for what no dialect asks yet (ids by
    /// prefix, groups of ids: the embedded store reads their text from disk).
    Stats(pb::AggregateCallsRequest),
}

async fn ask(stack: &TestStack, q: &Ask) -> Value {
    let c = &stack.client;
    if let Ask::Stats(request) = q {
        let mut stats = StatsServiceClient::connect(format!("http://{}", stack.stack.stats))
            .await
            .unwrap();
        let body = match stats.aggregate_calls(request.clone()).await {
            Ok(r) => {
                let r = r.into_inner();
                json!({"total_rows": r.total_rows, "rows": r.rows.iter().map(|row| json!({
                    "bucket": row.bucket_start_us,
                    "group": row.group.iter().map(|g| g.value.clone()).collect::<Vec<_>>(),
                    "count": row.row_count,
                    "values": row.values.iter().map(|v| v.value).collect::<Vec<_>>(),
                })).collect::<Vec<_>>()})
            }
            Err(status) => json!({"code": status.code() as i32, "message": status.message()}),
        };
        return json!({"status": 200, "body": body});
    }
    let answer = match q {
        Ask::Weave(path, body) => c.post(path, body).await,
        Ask::WeaveAs(key, path, body) => c.with_weave_key(Some(key)).post(path, body).await,
        Ask::WeaveGet(key, path) => c.with_weave_key(Some(key)).get(path).await,
        Ask::Alibaba(key, query) => c.alibaba(key, query).await,
        Ask::Qianfan(key, body) => c.qianfan(key, body).await,
        Ask::Stats(_) => unreachable!("answered above"),
    };
    let mut body = answer.body;
    forget_request_ids(&mut body);
    json!({"status": answer.status, "body": body})
}

/// Request ids differ per request by design; everything else must not.
fn forget_request_ids(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for key in ["requestId", "RequestId", "request_id"] {
                map.remove(key);
            }
            map.values_mut().for_each(forget_request_ids);
        }
        Value::Array(items) => items.iter_mut().for_each(forget_request_ids),
        _ => {}
    }
}

fn models(i: i64) -> &'static str {
    [
        "gpt-4o",
        "claude-3-5-sonnet-20241022",
        "qwen-max",
        "my-private-model",
    ][(i % 4) as usize]
}

/// 150 calls over four days around New York's spring DST change, in two
/// projects, with every attribute a filter or group can read.
fn calls() -> (Vec<Call>, Vec<Call>) {
    let base = t("2024-03-09T00:00:00Z");
    let mut bot = Vec::new();
    let mut other = Vec::new();
    for i in 0..150i64 {
        let started = base + Duration::seconds(i * 41 * 60 + i * 13);
        let mut call = Call::new(&format!("c{i:03}"), started)
            .set(
                "op_name",
                json!(format!("weave:///acme/bot/op/{}:v{}", ["chat", "embed", "plan"][(i % 3) as usize], i % 2)),
            )
            .attributes(json!({
                "qianfan": {"service_id": format!("svco-{}", i % 4), "service_name": format!("svc {}", i % 4), "app_id": (i % 3).to_string()},
                "alibaba": {"model_id": i % 5, "client_id": i % 6, "api_key_id": i % 2, "resource_id": format!("r{}", i % 3)},
            }))
            .latency_us(1_000 + (i * 7_919) % 2_500_000);
        if i % 5 == 0 {
            call = call.usage(json!({
                models(i): {"input_tokens": 100 * i + 7, "output_tokens": 3 * i + 1, "requests": 1,
                            "cache_read_input_tokens": 10 * i, "cache_creation_input_tokens": i},
                models(i + 1): {"input_tokens": 50, "output_tokens": 5, "requests": 2},
            }));
        } else if i % 11 != 3 {
            call = call.tokens(models(i), 40 * i + 3, 2 * i + 1);
        }
        if i == 148 {
            // Counts past 32 bits, which the embedded store keeps apart.
            call = call.tokens(models(i), 6_000_000_007, 4_294_967_295);
        }
        if i % 7 == 2 {
            call = call.error("rate limited");
        }
        if i % 4 == 1 {
            call = call.set("parent_id", json!(format!("c{:03}", i - 1)));
        }
        if i % 3 == 0 {
            call = call
                .set("thread_id", json!(format!("th{}", i % 9)))
                .set("turn_id", json!(format!("tu{i}")))
                .set("wb_user_id", json!(format!("u{}", i % 4)))
                .set("wb_run_id", json!(format!("run{}", i % 2)));
        }
        if i % 6 == 0 {
            call = call.set(
                "inputs",
                json!({"doc": format!("weave:///acme/bot/object/doc{}:v1", i % 12)}),
            );
        }
        if i % 8 == 0 {
            call = call.set(
                "output",
                json!({"answer": format!("weave:///acme/bot/object/out{}:v1", i % 3)}),
            );
        }
        if i % 10 == 9 {
            other.push(call);
        } else {
            bot.push(call);
        }
    }
    (bot, other)
}

fn feedback() -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..24i64 {
        let kind = [
            "wandb.runnable.relevance",
            "wandb.runnable.toxicity",
            "wandb.reaction.1",
        ][(i % 3) as usize];
        let span = ["agent_turn", "agent_conversation", "call"][(i % 3) as usize];
        let mut v = json!({
            "project_id": "acme/bot",
            "feedback_type": kind,
            "weave_ref": format!("weave:///acme/bot/{span}/x{i}"),
            "payload": {"i": i},
        });
        if i % 3 != 2 {
            v["runnable_ref"] = json!(format!(
                "weave:///acme/bot/object/{}:v1",
                ["relevance", "relevance_v2", "toxicity"][(i % 3) as usize]
            ));
            v["scorer_ratings"] =
                json!({"_rating_": (i % 11) as f64 / 10.0, "accuracy": (i % 4) as f64 * 0.1});
        }
        if i % 4 == 0 {
            v["trigger_ref"] = json!(format!("weave:///acme/bot/object/monitor_{}:v2", i % 3));
            let tag = ["toxic", "ok"][(i % 2) as usize];
            v["scorer_tags"] = json!(["hallucination", tag]);
        }
        if i % 2 == 0 {
            v["span_agent_name"] = json!(["planner", "writer"][(i % 4 / 2) as usize]);
            v["span_agent_version"] = json!(format!("{}.0", i % 3));
            v["span_status_code"] = json!(["OK", "ERROR", "UNSET"][(i % 3) as usize]);
        }
        out.push(v);
    }
    // A zero rating: its sum is 0 and must still be reported.
    out.push(
        json!({"project_id": "acme/bot", "feedback_type": "wandb.runnable.relevance",
        "weave_ref": "weave:///acme/bot/agent_turn/z", "payload": {},
        "runnable_ref": "weave:///acme/bot/object/zero:v1", "scorer_ratings": {"_rating_": 0.0}}),
    );
    out
}

/// The same writes, in the same order, into one stack.
async fn seed(c: &Client) {
    let (bot, other) = calls();
    ingest(c, &bot).await;
    ingest_into(c, OTHER, &other).await;
    // Re-sent with new usage: the later end wins, nothing counts twice.
    let resent: Vec<Call> = bot[..12]
        .iter()
        .map(|call| call.clone().tokens("gpt-4o", 1_000, 10))
        .collect();
    ingest(c, &resent).await;
    let post = |path: &'static str, body: Value| async move {
        c.post(path, &body).await.ok();
    };
    // Start, then end.
    post(
        "/call/start",
        json!({"start": {"project_id": PROJECT, "id": "s1", "trace_id": "ts1", "op_name": "split",
        "started_at": "2024-03-10T06:30:00Z", "attributes": {}, "inputs": {}}}),
    )
    .await;
    post("/call/end", json!({"end": {"project_id": PROJECT, "id": "s1", "ended_at": "2024-03-10T06:30:02Z",
        "summary": {"usage": {"gpt-4o": {"prompt_tokens": 30, "completion_tokens": 4, "requests": 1}}}}})).await;
    // End before start.
    post("/call/end", json!({"end": {"project_id": PROJECT, "id": "s2", "ended_at": "2024-03-10T08:00:01Z",
        "exception": "boom", "summary": {"usage": {"qwen-max": {"input_tokens": 9, "output_tokens": 9}}}}})).await;
    post(
        "/call/start",
        json!({"start": {"project_id": PROJECT, "id": "s2", "trace_id": "ts2", "op_name": "split",
        "started_at": "2024-03-10T07:59:00Z", "attributes": {}, "inputs": {}}}),
    )
    .await;
    // A start re-sent with another time: the call moves, it is not two calls.
    post(
        "/call/start",
        json!({"start": {"project_id": PROJECT, "id": "s3", "trace_id": "ts3", "op_name": "split",
        "started_at": "2024-03-09T02:00:00Z", "attributes": {}, "inputs": {}}}),
    )
    .await;
    post(
        "/call/start",
        json!({"start": {"project_id": PROJECT, "id": "s3", "trace_id": "ts3", "op_name": "split",
        "started_at": "2024-03-11T02:00:00Z", "attributes": {}, "inputs": {}}}),
    )
    .await;
    post("/call/end", json!({"end": {"project_id": PROJECT, "id": "s3", "ended_at": "2024-03-11T02:00:00.250Z",
        "summary": {"usage": {"claude-3-5-sonnet-20241022": {"input_tokens": 70, "output_tokens": 7}}}}})).await;
    // Still running.
    post(
        "/call/start",
        json!({"start": {"project_id": PROJECT, "id": "s4", "trace_id": "ts4", "op_name": "split",
        "started_at": "2024-03-11T03:00:00Z", "attributes": {}, "inputs": {}}}),
    )
    .await;
    // A batch of halves, sent twice.
    let batch = json!({"batch": [
        {"mode": "start", "req": {"start": {"project_id": PROJECT, "id": "b1", "trace_id": "tb", "op_name": "batch",
            "started_at": "2024-03-11T04:00:00Z", "attributes": {}, "inputs": {}}}},
        {"mode": "end", "req": {"end": {"project_id": PROJECT, "id": "b1", "ended_at": "2024-03-11T04:00:01Z",
            "summary": {"usage": {"gpt-4o": {"input_tokens": 11, "output_tokens": 2}}}}}},
    ]});
    post("/call/upsert_batch", batch.clone()).await;
    post("/call/upsert_batch", batch).await;
    // Another tenant's calls in a project of its own.
    let globex = c.with_weave_key(Some(fixture::GLOBEX_WEAVE_KEY));
    ingest_into(&globex, "globex/app", &calls().0[..20]).await;
    // A project price override (and a price for a model the table lacks).
    for (model, price) in [
        (
            "my-private-model",
            json!({"input": 1e-6, "output": 4e-6, "cache_read": 2.5e-7}),
        ),
        ("gpt-4o", json!({"input": 3e-6, "output": 1.1e-5})),
    ] {
        let answer = c
            .send_json(
                reqwest::Method::PUT,
                &format!("/v1/projects/{PROJECT}/prices/{model}"),
                &price,
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    c.post("/feedback/batch/create", &json!({"batch": feedback()}))
        .await
        .ok();
}

fn stats(extra: Value) -> Ask {
    let mut body = json!({"project_id": PROJECT, "start": "2024-03-09T00:00:00Z", "end": "2024-03-13T00:00:00Z"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    Ask::Weave("/calls/stats", body)
}

fn every_metric() -> Value {
    let aggs = json!(["sum", "avg", "min", "max", "count"]);
    let ps = json!([0, 12.5, 50, 95, 99, 99.9, 100]);
    let specs = |names: &[&str]| -> Vec<Value> {
        names
            .iter()
            .map(|m| json!({"metric": m, "aggregations": aggs, "percentiles": ps}))
            .collect()
    };
    json!({
        "usage_metrics": specs(&["input_tokens", "output_tokens", "total_tokens", "cache_read_input_tokens",
                                 "cache_creation_input_tokens", "input_cost", "output_cost", "total_cost"]),
        "call_metrics": specs(&["latency_ms", "call_count", "error_count"]),
    })
}

fn merged(mut a: Value, b: Value) -> Value {
    for (k, v) in b.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

fn feedback_query(extra: Value) -> Ask {
    let mut body = json!({"project_id": PROJECT, "after_ms": 0, "before_ms": 4_000_000_000_000i64});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    Ask::Weave("/feedback/aggregate", body)
}

fn cases() -> Vec<(&'static str, Ask)> {
    let all = every_metric();
    let range = "startTime=2024-03-09T00:00:00Z&endTime=2024-03-13T00:00:00Z";
    let qf = |extra: Value| {
        let mut body =
            json!({"startTime": "2024-03-09T00:00:00Z", "endTime": "2024-03-13T00:00:00Z"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        Ask::Qianfan(&fixture::ACME_QIANFAN, body)
    };
    vec![
        ("hourly over New York's DST change", stats(merged(all.clone(), json!({"granularity": 3600, "timezone": "America/New_York"})))),
        ("daily over New York's DST change", stats(merged(all.clone(), json!({"granularity": 86400, "timezone": "America/New_York"})))),
        ("six-hourly over New York's DST change", stats(merged(all.clone(), json!({"granularity": 21600, "timezone": "America/New_York"})))),
        ("half-hourly in +05:30", stats(merged(all.clone(), json!({"granularity": 1800, "timezone": "Asia/Kolkata",
            "start": "2024-03-10T00:00:00Z", "end": "2024-03-11T00:00:00Z"})))),
        ("odd width from the epoch", stats(merged(all.clone(), json!({"granularity": 7000})))),
        ("width chosen from the range", stats(all.clone())),
        ("one bucket over everything", stats(merged(all.clone(), json!({"granularity": 864000})))),
        ("the other project", stats(merged(all.clone(), json!({"project_id": OTHER, "granularity": 43200})))),
        ("an empty range fills its buckets", stats(merged(all.clone(), json!({"start": "2023-01-01T00:00:00Z", "end": "2023-01-01T06:00:00Z", "granularity": 3600})))),
        ("op names, with every version", stats(merged(all.clone(), json!({"granularity": 43200,
            "filter": {"op_names": ["weave:///acme/bot/op/chat:*", "weave:///acme/bot/op/plan:v1"]}})))),
        ("roots only", stats(json!({"granularity": 86400, "call_metrics": [{"metric": "call_count"}],
            "filter": {"trace_roots_only": true}}))),
        ("parents, threads and turns", stats(json!({"granularity": 86400, "call_metrics": [{"metric": "call_count"}, {"metric": "latency_ms", "percentiles": [50]}],
            "filter": {"parent_ids": ["c000", "c004", "c008"], "thread_ids": ["th0", "th3"]}}))),
        ("turns", stats(json!({"granularity": 86400, "call_metrics": [{"metric": "call_count"}], "filter": {"turn_ids": ["tu3", "tu6", "tu99"]}}))),
        ("users and runs", stats(json!({"granularity": 86400, "usage_metrics": [{"metric": "total_tokens"}],
            "call_metrics": [{"metric": "call_count"}], "filter": {"wb_user_ids": ["u0", "u3"], "wb_run_ids": ["run0"]}}))),
        ("call and trace ids", stats(json!({"granularity": 86400, "usage_metrics": [{"metric": "total_cost"}],
            "call_metrics": [{"metric": "call_count"}], "filter": {"call_ids": ["c001", "c002", "s1", "s3"], "trace_ids": ["trace-c001", "ts1", "ts3"]}}))),
        ("input refs", stats(json!({"granularity": 86400, "call_metrics": [{"metric": "call_count"}],
            "filter": {"input_refs": ["weave:///acme/bot/object/doc0:v1", "weave:///acme/bot/object/doc6:v1"]}}))),
        ("output refs", stats(json!({"granularity": 86400, "call_metrics": [{"metric": "call_count"}],
            "usage_metrics": [{"metric": "output_tokens"}],
            "filter": {"output_refs": ["weave:///acme/bot/object/out1:v1"]}}))),
        ("feedback, everything", feedback_query(json!({}))),
        ("feedback by scorer", feedback_query(json!({"group_by": ["scorer_id"]}))),
        ("feedback by agent and version", feedback_query(json!({"group_by": ["span_agent_name", "span_agent_version"]}))),
        ("feedback by status, bucketed", feedback_query(json!({"group_by": ["span_status_code"], "time_bucket_seconds": 1_000_000_000}))),
        ("feedback filters", feedback_query(json!({"feedback_types": ["wandb.runnable"], "scorer_ids": ["relevance*"],
            "span_types": ["agent_turn", "agent_conversation"]}))),
        ("feedback monitors and tags", feedback_query(json!({"monitor_ids": ["monitor_*"], "tags": ["toxic"]}))),
        ("feedback agents", feedback_query(json!({"span_agent_names": ["writer"], "group_by": ["scorer_id"]}))),
        ("feedback rating bounds", feedback_query(json!({"rating_min": 0.2, "rating_max": 0.7, "group_by": ["scorer_id"]}))),
        ("feedback that matches nothing", feedback_query(json!({"tags": ["nope"]}))),
        ("alibaba totals", Ask::Alibaba(&fixture::ACME_ALIBABA, range.into())),
        ("alibaba by model", Ask::Alibaba(&fixture::ACME_ALIBABA, format!("{range}&groupBy=modelId"))),
        ("alibaba by client, slowest first", Ask::Alibaba(&fixture::ACME_ALIBABA,
            format!("{range}&groupBy=clientId&orderBy=avgResponseTime&orderDirection=DESC"))),
        ("alibaba by key, paged", Ask::Alibaba(&fixture::ACME_ALIBABA,
            format!("{range}&groupBy=resourceId&orderBy=totalCalls&orderDirection=ASC&pageSize=2&pageIndex=2&needTotalCount=true"))),
        ("alibaba past the last page", Ask::Alibaba(&fixture::ACME_ALIBABA,
            format!("{range}&groupBy=apiKeyId&pageSize=5&pageIndex=9&needTotalCount=true"))),
        ("alibaba filtered", Ask::Alibaba(&fixture::ACME_ALIBABA, format!("{range}&clientId=2&modelId=1"))),
        ("qianfan totals", qf(json!({}))),
        ("qianfan by service", qf(json!({"serviceId": ["svco-1", "svco-2"]}))),
        ("qianfan by app", qf(json!({"appId": "2"}))),
        ("another tenant's project is refused", Ask::WeaveAs(fixture::GLOBEX_WEAVE_KEY, "/calls/stats",
            json!({"project_id": PROJECT, "start": "2024-03-09T00:00:00Z", "end": "2024-03-13T00:00:00Z"}))),
        ("another tenant sees only its own", Ask::WeaveAs(fixture::GLOBEX_WEAVE_KEY, "/calls/stats",
            json!({"project_id": "globex/app", "start": "2024-03-09T00:00:00Z", "end": "2024-03-13T00:00:00Z",
                   "granularity": 86400, "call_metrics": [{"metric": "call_count"}], "usage_metrics": [{"metric": "total_tokens"}]}))),
        ("call metrics by model (the console's top models)", Ask::Weave("/calls/stats", json!({
            "project_id": PROJECT, "start": "2024-03-09T00:00:00Z", "end": "2024-03-13T00:00:00Z",
            "granularity": 3_153_600_000u64, "timezone": "Asia/Kolkata", "call_metrics_by_model": true,
            "call_metrics": [{"metric": "call_count"}, {"metric": "error_count"},
                             {"metric": "latency_ms", "aggregations": ["avg"], "percentiles": [95]}],
            "usage_metrics": [{"metric": "total_tokens"}, {"metric": "total_cost"}]}))),
        ("acme's projects, first and last call", Ask::WeaveGet(fixture::ACME_WEAVE_KEY, "/v1/projects")),
        ("a key limited to one project lists only it", Ask::WeaveGet(fixture::ACME_BOT_ONLY_WEAVE_KEY, "/v1/projects")),
        ("globex's projects", Ask::WeaveGet(fixture::GLOBEX_WEAVE_KEY, "/v1/projects")),
        ("globex alibaba", Ask::Alibaba(&fixture::GLOBEX_ALIBABA, format!("{range}&groupBy=modelId"))),
        ("traces of calls by id prefix", ids_query(
            vec![pb::Dimension::TraceId],
            vec![id_filter(pb::Dimension::CallId, &["c00", "c13"], &["c120"])],
        )),
        ("parents by trace prefix, then the call-less", ids_query(
            vec![pb::Dimension::ParentId, pb::Dimension::CallId],
            vec![id_filter(pb::Dimension::TraceId, &["trace-c01", "trace-c14"], &[])],
        )),
        ("calls without a parent, by parent prefix or none", ids_query(
            vec![pb::Dimension::CallId],
            vec![pb::Filter { absent: true, ..id_filter(pb::Dimension::ParentId, &["c04"], &[]) }],
        )),
    ]
}

fn id_filter(dimension: pb::Dimension, prefixes: &[&str], values: &[&str]) -> pb::Filter {
    pb::Filter {
        dimension: dimension as i32,
        any_of: values.iter().map(|v| v.to_string()).collect(),
        prefixes: prefixes.iter().map(|v| v.to_string()).collect(),
        absent: false,
    }
}

fn ids_query(group_by: Vec<pb::Dimension>, filters: Vec<pb::Filter>) -> Ask {
    let sum = |metric: pb::Metric| pb::Measure {
        metric: metric as i32,
        aggregation: pb::Aggregation::Sum as i32,
        percentile: 0.0,
    };
    Ask::Stats(pb::AggregateCallsRequest {
        tenant: "acme".into(),
        project_ids: vec![],
        start_us: t("2024-03-09T00:00:00Z").timestamp_micros(),
        end_us: t("2024-03-13T00:00:00Z").timestamp_micros(),
        grain: pb::Grain::Call as i32,
        filters,
        group_by: group_by.into_iter().map(|d| d as i32).collect(),
        measures: vec![sum(pb::Metric::CallCount), sum(pb::Metric::TotalTokens)],
        limit: 40,
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_give_the_same_answers() {
    let (embedded, clickhouse) = tokio::join!(
        TestStack::start_with_store(Store::Embedded),
        TestStack::start_with_store(Store::ClickHouse)
    );
    tokio::join!(seed(&embedded.client), seed(&clickhouse.client));
    let mut differ = Vec::new();
    let mut nonzero = 0;
    for (name, case) in cases() {
        let (want, got) = tokio::join!(ask(&embedded, &case), ask(&clickhouse, &case));
        if want["status"] == 200 {
            nonzero += 1;
        }
        if let Ask::WeaveGet(..) = case {
            let projects = want["body"]["projects"].as_array();
            assert!(projects.is_some_and(|p| !p.is_empty()), "{name}: {want}");
        }
        if let Ask::Stats(_) = case {
            // Groups of ids come back as the ids sent, not as their hashes.
            let rows = want["body"]["rows"].as_array().cloned().unwrap_or_default();
            assert!(rows.len() > 2, "{name}: {want}");
            for id in rows
                .iter()
                .flat_map(|r| r["group"].as_array().unwrap().clone())
            {
                let id = id.as_str().unwrap_or_default();
                let token = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
                assert!(!token, "{name}: {id} looks like a hash");
            }
        }
        if want != got {
            differ.push(format!(
                "{name}:\n  embedded:   {want}\n  clickhouse: {got}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} cases differ:\n{}",
        differ.len(),
        cases().len(),
        differ.join("\n")
    );
    // The cases must have asked something real.
    assert!(nonzero >= 30, "only {nonzero} cases answered 200");
    let sample = ask(&embedded, &cases().remove(0).1).await;
    assert!(
        sample["body"]["call_buckets"]
            .as_array()
            .is_some_and(|b| b.len() > 48),
        "{sample}"
    );
    embedded.stop().await;
    clickhouse.stop().await;
}
