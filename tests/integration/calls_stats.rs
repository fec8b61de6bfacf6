//! `POST /calls/stats`, rule by rule.

use crate::support::*;
use chrono::Duration;
use polymeter_tests::{json, TestStack};
use rand::{Rng, SeedableRng};
use serde_json::Value;

#[tokio::test]
async fn call_metrics_support_every_aggregation_and_zero_fill() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let at = t("2024-05-01T12:00:00Z");
    ingest(
        c,
        &[
            Call::new("a", at).latency_ms(100),
            Call::new("b", at + Duration::minutes(10)).latency_ms(200),
            Call::new("c", at + Duration::minutes(20))
                .latency_ms(600)
                .error("boom"),
        ],
    )
    .await;
    // A call still running has no latency, but is a call.
    c.post(
        "/call/start",
        &json!({"start": {"project_id": PROJECT, "id": "d", "op_name": "chat",
                "started_at": "2024-05-01T12:30:00Z"}}),
    )
    .await
    .ok();

    let body = stats(
        c,
        json!({
            "start": "2024-05-01T12:00:00Z", "end": "2024-05-01T14:00:00Z", "granularity": 3600,
            "call_metrics": [
                {"metric": "latency_ms", "aggregations": ["sum", "avg", "min", "max", "count"]},
                {"metric": "call_count"},
                {"metric": "error_count", "aggregations": ["sum", "avg"]},
            ],
        }),
    )
    .await;
    assert_eq!(body["granularity"], 3600);
    assert_eq!(body["timezone"], "UTC");
    assert_eq!(body["start"], "2024-05-01T12:00:00Z");
    assert_eq!(body["end"], "2024-05-01T14:00:00Z");
    assert_eq!(body["usage_buckets"], json!([]));
    assert_eq!(
        body["call_buckets"],
        json!([
            {"timestamp": "2024-05-01T12:00:00+00:00", "count": 4,
             "sum_latency_ms": 900.0, "avg_latency_ms": 300.0, "min_latency_ms": 100.0,
             "max_latency_ms": 600.0, "count_latency_ms": 3, "sum_call_count": 4,
             "sum_error_count": 1, "avg_error_count": 0.25},
            {"timestamp": "2024-05-01T13:00:00+00:00", "count": 0,
             "sum_latency_ms": 0.0, "avg_latency_ms": 0.0, "min_latency_ms": null,
             "max_latency_ms": null, "count_latency_ms": 0, "sum_call_count": 0,
             "sum_error_count": 0, "avg_error_count": 0.0},
        ])
    );
    stack.stop().await;
}

#[tokio::test]
async fn usage_metrics_are_grouped_by_bucket_and_model() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let at = t("2024-05-01T12:00:00Z");
    ingest(
        c,
        &[
            Call::new("a", at).usage(json!({
                "gpt-4o": {"prompt_tokens": 10, "completion_tokens": 5, "cache_read_input_tokens": 2},
                "claude-3-5-sonnet": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 11,
                                      "cache_creation_input_tokens": 4},
            })),
            Call::new("b", at + Duration::minutes(5))
                .usage(json!({"gpt-4o": {"input_tokens": 20, "output_tokens": 10}})),
            // A call without usage has no usage rows.
            Call::new("c", at + Duration::minutes(6)),
        ],
    )
    .await;
    let metrics: Vec<Value> = [
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
        "input_cost",
        "output_cost",
        "total_cost",
    ]
    .iter()
    .map(|m| json!({"metric": m, "aggregations": ["sum"]}))
    .collect();
    let body = stats(
        c,
        json!({"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T14:00:00Z",
               "granularity": 3600, "usage_metrics": metrics}),
    )
    .await;
    let zero = |ts: &str, model: &str| {
        json!({"timestamp": ts, "model": model, "count": 0, "sum_input_tokens": 0,
               "sum_output_tokens": 0, "sum_total_tokens": 0, "sum_cache_read_input_tokens": 0,
               "sum_cache_creation_input_tokens": 0, "sum_input_cost": 0.0,
               "sum_output_cost": 0.0, "sum_total_cost": 0.0})
    };
    assert_eq!(
        body["usage_buckets"],
        json!([
            // Costs from the shipped table. claude-3-5-sonnet: input
            // 3e-6, output 1.5e-5, no cache-write price so the input price:
            // (7 − 4) × 3e-6 = 9e-6; 3 × 1.5e-5 = 4.5e-5; + 4 × 3e-6 → 6.6e-5.
            {"timestamp": "2024-05-01T12:00:00+00:00", "model": "claude-3-5-sonnet", "count": 1,
             "sum_input_tokens": 7, "sum_output_tokens": 3, "sum_total_tokens": 11,
             "sum_cache_read_input_tokens": 0, "sum_cache_creation_input_tokens": 4,
             "sum_input_cost": 9e-6, "sum_output_cost": 4.5e-5, "sum_total_cost": 6.6e-5},
            // gpt-4o: input 2.5e-6, output 1e-5, cache read 1.25e-6:
            // (10 − 2 + 20) × 2.5e-6 = 7e-5; 15 × 1e-5 = 1.5e-4; + 2 × 1.25e-6 → 2.225e-4.
            {"timestamp": "2024-05-01T12:00:00+00:00", "model": "gpt-4o", "count": 2,
             "sum_input_tokens": 30, "sum_output_tokens": 15, "sum_total_tokens": 45,
             "sum_cache_read_input_tokens": 2, "sum_cache_creation_input_tokens": 0,
             "sum_input_cost": 7e-5, "sum_output_cost": 1.5e-4, "sum_total_cost": 2.225e-4},
            zero("2024-05-01T13:00:00+00:00", "claude-3-5-sonnet"),
            zero("2024-05-01T13:00:00+00:00", "gpt-4o"),
        ])
    );
    // The other aggregations over usage rows.
    let body = stats(
        c,
        json!({"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T13:00:00Z",
               "granularity": 3600, "usage_metrics": [{"metric": "input_tokens",
               "aggregations": ["avg", "min", "max", "count"], "percentiles": [50]}]}),
    )
    .await;
    let gpt = &body["usage_buckets"][1];
    assert_eq!(gpt["model"], "gpt-4o");
    assert_eq!(
        (
            &gpt["avg_input_tokens"],
            &gpt["min_input_tokens"],
            &gpt["max_input_tokens"]
        ),
        (&json!(15.0), &json!(10), &json!(20))
    );
    assert_eq!(
        (&gpt["count_input_tokens"], &gpt["p50_input_tokens"]),
        (&json!(2), &json!(15.0))
    );
    stack.stop().await;
}

/// numpy.percentile's default: linear interpolation between closest ranks.
fn oracle(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

#[tokio::test]
async fn percentiles_are_exact() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let at = t("2024-05-01T00:00:00Z");
    let mut by_hour: Vec<Vec<f64>> = vec![Vec::new(); 3];
    let calls: Vec<Call> = (0..601)
        .map(|i| {
            let started = at + Duration::seconds(i * 17);
            let us: i64 = rng.random_range(1_000..5_000_000);
            let hour = (i * 17 / 3600) as usize;
            by_hour[hour].push(us as f64 / 1000.0);
            Call::new(&format!("p{i}"), started).latency_us(us)
        })
        .collect();
    ingest(c, &calls).await;
    let ps: [f64; 10] = [0.0, 1.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0];
    let body = stats(
        c,
        json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-01T03:00:00Z", "granularity": 3600,
               "call_metrics": [{"metric": "latency_ms", "aggregations": [], "percentiles": ps}]}),
    )
    .await;
    let buckets = body["call_buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 3);
    for (bucket, values) in buckets.iter().zip(&by_hour) {
        assert_eq!(bucket["count"], values.len());
        for p in ps {
            let key = if p.fract() == 0.0 {
                format!("p{}_latency_ms", p as i64)
            } else {
                format!("p{p}_latency_ms")
            };
            let got = bucket[&key]
                .as_f64()
                .unwrap_or_else(|| panic!("{key} missing in {bucket}"));
            let want = oracle(values, p);
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{key}: {got} != {want}"
            );
        }
    }
    assert!(buckets[0].get("p99.9_latency_ms").is_some());
    stack.stop().await;
}

#[tokio::test]
async fn granularity_is_chosen_from_the_range_and_capped_at_ten_thousand_buckets() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let start = t("2024-05-01T00:00:00Z");
    let cases = [
        (Duration::hours(1), None, 300, 12),
        (Duration::hours(2), None, 300, 24),
        (Duration::hours(6), None, 3600, 6),
        (Duration::hours(12), None, 3600, 12),
        (Duration::days(3), None, 21_600, 12),
        (Duration::days(10), None, 43_200, 20),
        (Duration::days(30), None, 86_400, 30),
        (Duration::hours(1), Some(60), 60, 60),
        // 10,800 one-second buckets are too many: max(1, floor(10800/10000) + 1) = 2.
        (Duration::hours(3), Some(1), 2, 5_400),
        // 30 days of minutes: floor(2592000/10000) + 1 = 260, which neither divides
        // nor spans whole days, so buckets sit on epoch multiples of 260 s.
        (Duration::days(30), Some(60), 260, 9_971),
    ];
    for (range, granularity, want, buckets) in cases {
        let mut body = json!({"start": iso(start), "end": iso(start + range),
                              "call_metrics": [{"metric": "call_count"}]});
        if let Some(g) = granularity {
            body["granularity"] = json!(g);
        }
        let answer = stats(c, body).await;
        assert_eq!(
            answer["granularity"], want,
            "range {range:?}, granularity {granularity:?}"
        );
        assert_eq!(
            answer["call_buckets"].as_array().unwrap().len(),
            buckets,
            "range {range:?}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn only_calls_in_start_inclusive_end_exclusive_count() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    ingest(
        c,
        &[
            Call::new("before", t("2024-05-01T12:09:59Z")),
            Call::new("at-start", t("2024-05-01T12:10:00Z")),
            Call::new("inside", t("2024-05-01T12:40:00Z")),
            Call::new("at-end", t("2024-05-01T12:50:00Z")),
        ],
    )
    .await;
    let body = stats(
        c,
        json!({"start": "2024-05-01T12:10:00Z", "end": "2024-05-01T12:50:00Z", "granularity": 3600,
               "call_metrics": [{"metric": "call_count"}]}),
    )
    .await;
    // The one bucket starts before `start` (at 12:00) but counts only calls from 12:10.
    assert_eq!(
        body["call_buckets"],
        json!([{"timestamp": "2024-05-01T12:00:00+00:00", "count": 2, "sum_call_count": 2}])
    );
    stack.stop().await;
}

#[tokio::test]
async fn buckets_follow_dst_in_new_york() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    ingest(
        c,
        &[
            // 2024-03-10 05:30 EDT: still in the first 6 h bucket, which is 5 hours long.
            Call::new("spring-1", t("2024-03-10T09:30:00Z")),
            // 06:00 EDT opens the second bucket.
            Call::new("spring-2", t("2024-03-10T10:00:00Z")),
            // 2024-11-03 01:30 EDT and 01:30 EST: the repeated hour is one bucket.
            Call::new("fall-1", t("2024-11-03T05:30:00Z")),
            Call::new("fall-2", t("2024-11-03T06:30:00Z")),
            // 2024-11-03 23:30 EST belongs to the 25-hour day of Nov 3.
            Call::new("fall-late", t("2024-11-04T04:30:00Z")),
        ],
    )
    .await;
    let q = |start: &str, end: &str, g: i64| {
        json!({"start": start, "end": end, "granularity": g, "timezone": "America/New_York",
               "call_metrics": [{"metric": "call_count"}]})
    };
    let spring = stats(c, q("2024-03-10T05:00:00Z", "2024-03-11T04:00:00Z", 21_600)).await;
    assert_eq!(spring["timezone"], "America/New_York");
    assert_eq!(
        column(&spring["call_buckets"], "timestamp"),
        [
            "2024-03-10T00:00:00-05:00",
            "2024-03-10T06:00:00-04:00",
            "2024-03-10T12:00:00-04:00",
            "2024-03-10T18:00:00-04:00"
        ]
    );
    assert_eq!(column(&spring["call_buckets"], "count"), [1, 1, 0, 0]);

    let spring_hours = stats(c, q("2024-03-10T05:00:00Z", "2024-03-10T09:00:00Z", 3600)).await;
    assert_eq!(
        column(&spring_hours["call_buckets"], "timestamp"),
        [
            "2024-03-10T00:00:00-05:00",
            "2024-03-10T01:00:00-05:00",
            "2024-03-10T03:00:00-04:00",
            "2024-03-10T04:00:00-04:00"
        ]
    );

    let fall_hours = stats(c, q("2024-11-03T04:00:00Z", "2024-11-03T09:00:00Z", 3600)).await;
    assert_eq!(
        column(&fall_hours["call_buckets"], "timestamp"),
        [
            "2024-11-03T00:00:00-04:00",
            "2024-11-03T01:00:00-04:00",
            "2024-11-03T02:00:00-05:00",
            "2024-11-03T03:00:00-05:00"
        ]
    );
    assert_eq!(column(&fall_hours["call_buckets"], "count"), [0, 2, 0, 0]);

    let fall_days = stats(c, q("2024-11-02T04:00:00Z", "2024-11-05T05:00:00Z", 86_400)).await;
    assert_eq!(
        column(&fall_days["call_buckets"], "timestamp"),
        [
            "2024-11-02T00:00:00-04:00",
            "2024-11-03T00:00:00-04:00",
            "2024-11-04T00:00:00-05:00"
        ]
    );
    assert_eq!(column(&fall_days["call_buckets"], "count"), [0, 3, 0]);
    stack.stop().await;
}

#[tokio::test]
async fn buckets_align_to_a_half_hour_zone() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    // 06:15 in Kolkata (+05:30).
    ingest(c, &[Call::new("k", t("2024-05-01T00:45:00Z"))]).await;
    let hours = stats(
        c,
        json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-01T02:00:00Z", "granularity": 3600,
               "timezone": "Asia/Kolkata", "call_metrics": [{"metric": "call_count"}]}),
    )
    .await;
    assert_eq!(
        column(&hours["call_buckets"], "timestamp"),
        [
            "2024-05-01T05:00:00+05:30",
            "2024-05-01T06:00:00+05:30",
            "2024-05-01T07:00:00+05:30"
        ]
    );
    assert_eq!(column(&hours["call_buckets"], "count"), [0, 1, 0]);
    let days = stats(
        c,
        json!({"start": "2024-04-30T00:00:00Z", "end": "2024-05-02T00:00:00Z", "granularity": 86400,
               "timezone": "Asia/Kolkata", "call_metrics": [{"metric": "call_count"}]}),
    )
    .await;
    assert_eq!(
        column(&days["call_buckets"], "timestamp"),
        [
            "2024-04-30T00:00:00+05:30",
            "2024-05-01T00:00:00+05:30",
            "2024-05-02T00:00:00+05:30"
        ]
    );
    assert_eq!(column(&days["call_buckets"], "count"), [0, 1, 0]);
    stack.stop().await;
}

#[tokio::test]
async fn every_calls_filter_field_narrows_the_calls() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let at = t("2024-05-01T12:00:00Z");
    let call = |id: &str, op: &str, trace: &str, parent: Option<&str>, n: &str| {
        Call::new(id, at)
            .set("op_name", json!(op))
            .set("trace_id", json!(trace))
            .set("parent_id", json!(parent))
            .set("thread_id", json!(format!("thread-{n}")))
            .set("turn_id", json!(format!("turn-{n}")))
            .set("wb_user_id", json!(format!("user-{n}")))
            .set("wb_run_id", json!(format!("run-{n}")))
            .set(
                "inputs",
                json!({"dataset": format!("weave:///acme/bot/object/in-{n}:1")}),
            )
            .set(
                "output",
                json!({"nested": [format!("weave:///acme/bot/object/out-{n}:1")]}),
            )
    };
    ingest(
        c,
        &[
            call("c1", "weave:///acme/bot/op/chat:v1", "t1", None, "1"),
            call("c2", "weave:///acme/bot/op/chat:v2", "t1", Some("c1"), "2"),
            call("c3", "weave:///acme/bot/op/embed:v1", "t2", None, "3"),
        ],
    )
    .await;
    let cases = [
        (json!({"op_names": ["weave:///acme/bot/op/chat:v1"]}), 1),
        (json!({"op_names": ["weave:///acme/bot/op/chat:*"]}), 2),
        (
            json!({"op_names": ["weave:///acme/bot/op/embed:v1", "weave:///acme/bot/op/chat:v2"]}),
            2,
        ),
        (
            json!({"input_refs": ["weave:///acme/bot/object/in-2:1"]}),
            1,
        ),
        (
            json!({"output_refs": ["weave:///acme/bot/object/out-3:1"]}),
            1,
        ),
        (json!({"parent_ids": ["c1"]}), 1),
        (json!({"trace_ids": ["t1"]}), 2),
        (json!({"call_ids": ["c1", "c3"]}), 2),
        (json!({"thread_ids": ["thread-3"]}), 1),
        (json!({"turn_ids": ["turn-1", "turn-2"]}), 2),
        (json!({"wb_user_ids": ["user-2"]}), 1),
        (json!({"wb_run_ids": ["run-9"]}), 0),
        (json!({"trace_roots_only": true}), 2),
        (json!({"trace_roots_only": false}), 3),
        (json!({"trace_roots_only": true, "trace_ids": ["t1"]}), 1),
        (json!({"op_names": []}), 3),
    ];
    for (filter, want) in cases {
        let body = stats(
            c,
            json!({"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T13:00:00Z",
                   "granularity": 3600, "filter": filter, "call_metrics": [{"metric": "call_count"}]}),
        )
        .await;
        assert_eq!(
            body["call_buckets"][0]["sum_call_count"], want,
            "filter {filter}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_project_sees_only_its_own_calls() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let at = t("2024-05-01T12:00:00Z");
    ingest(c, &[Call::new("mine", at)]).await;
    ingest_into(
        c,
        "acme/other",
        &[Call::new("theirs", at), Call::new("theirs-2", at)],
    )
    .await;
    let body = stats(
        c,
        json!({"start": "2024-05-01T12:00:00Z", "end": "2024-05-01T13:00:00Z",
               "call_metrics": [{"metric": "call_count"}], "granularity": 3600}),
    )
    .await;
    assert_eq!(body["call_buckets"][0]["sum_call_count"], 1);
    stack.stop().await;
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_problem() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let base = || json!({"project_id": PROJECT, "start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"});
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = base();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(Value, &[&str])> = vec![
        (
            with("granularity", json!("hourly")),
            &["granularity", "invalid type"],
        ),
        (with("granularity", json!(0)), &["granularity", "positive"]),
        (with("granularity", json!(-5)), &["granularity", "positive"]),
        (
            with("granularity", json!(1_000_000_000_000_000i64)),
            &["granularity", "at most"],
        ),
        (with("colour", json!("blue")), &["unknown field `colour`"]),
        (
            with("filter", json!({"op_name": ["x"]})),
            &["filter", "unknown field `op_name`"],
        ),
        (
            with("filter", json!({"op_names": "x"})),
            &["filter.op_names", "invalid type"],
        ),
        (
            with("end", json!("2024-04-30T00:00:00Z")),
            &["end", "must be after start"],
        ),
        (
            with("end", json!("2024-05-01T00:00:00Z")),
            &["must be after start"],
        ),
        (
            with("start", json!("yesterday")),
            &["start", "invalid date-time"],
        ),
        (
            with("timezone", json!("Mars/Olympus_Mons")),
            &["timezone", "Mars/Olympus_Mons"],
        ),
        (
            with(
                "call_metrics",
                json!([{"metric": "latency_ms", "percentiles": [101]}]),
            ),
            &["call_metrics[0].percentiles[0]", "101", "0..=100"],
        ),
        (
            with(
                "call_metrics",
                json!([{"metric": "latency_ms", "percentiles": [50, -1]}]),
            ),
            &["call_metrics[0].percentiles[1]", "-1"],
        ),
        (
            with(
                "call_metrics",
                json!([{"metric": "latency_ms", "aggregations": ["median"]}]),
            ),
            &[
                "call_metrics[0].aggregations[0]",
                "median",
                "allowed: sum, avg, min, max, count",
            ],
        ),
        (
            with("usage_metrics", json!([{"metric": "latency_ms"}])),
            &[
                "usage_metrics[0].metric",
                "latency_ms",
                "allowed: input_tokens",
            ],
        ),
        (
            with("call_metrics", json!([{"metric": "input_tokens"}])),
            &[
                "call_metrics[0].metric",
                "allowed: latency_ms, call_count, error_count",
            ],
        ),
        (
            with(
                "call_metrics",
                json!([{"metric": "call_count", "colour": 1}]),
            ),
            &["unknown field `colour`"],
        ),
        (without("project_id"), &["missing field `project_id`"]),
        (without("start"), &["missing field `start`"]),
        (
            with("project_id", json!("no-slash")),
            &["project_id", "entity/project"],
        ),
    ];
    for (body, wanted) in cases {
        let answer = c.post("/calls/stats", &body).await;
        let reason = answer.reason(400);
        for w in wanted {
            assert!(reason.contains(w), "{body}: reason {reason:?} lacks {w:?}");
        }
    }
    let answer = c.post_raw("/calls/stats", "{not json".into()).await;
    assert!(answer.reason(400).contains("not valid JSON"));
    stack.stop().await;
}
