//! Weave call ingest: the four routes, their answers, and why re-sending never
//! double counts.

use crate::support::*;
use polymeter_tests::{json, Client, TestStack};
use serde_json::Value;

async fn totals(c: &Client) -> (Value, Value) {
    let body = stats(
        c,
        json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z", "granularity": 86400,
               "call_metrics": [{"metric": "call_count"}, {"metric": "latency_ms"},
                                {"metric": "error_count"}],
               "usage_metrics": [{"metric": "total_tokens"}]}),
    )
    .await;
    (
        body["call_buckets"][0].clone(),
        body["usage_buckets"].clone(),
    )
}

#[tokio::test]
async fn start_then_end_becomes_one_finished_call() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let started = c
        .post(
            "/call/start",
            &json!({"start": {"project_id": PROJECT, "op_name": "chat",
                    "started_at": "2024-05-01T10:00:00Z", "attributes": {}, "inputs": {"q": "hi"}}}),
        )
        .await
        .ok();
    let id = started["id"].as_str().expect("a generated id").to_owned();
    assert!(
        !started["trace_id"].as_str().unwrap().is_empty(),
        "a generated trace id"
    );
    let (calls, _) = totals(c).await;
    assert_eq!(
        (&calls["sum_call_count"], &calls["sum_latency_ms"]),
        (&json!(1), &json!(0.0))
    );

    let ended = c
        .post(
            "/call/end",
            &json!({"end": {"project_id": PROJECT, "id": id, "ended_at": "2024-05-01T10:00:02.5Z",
                    "output": "hello", "summary": {"usage": {"gpt-4o": {"prompt_tokens": 3,
                    "completion_tokens": 4, "requests": 1}}}}}),
        )
        .await
        .ok();
    assert_eq!(ended, json!({}));
    let (calls, usage) = totals(c).await;
    assert_eq!(
        (&calls["sum_call_count"], &calls["sum_latency_ms"]),
        (&json!(1), &json!(2500.0))
    );
    assert_eq!(usage[0]["sum_total_tokens"], 7);
    stack.stop().await;
}

#[tokio::test]
async fn upsert_batch_answers_per_item_and_resending_never_double_counts() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let batch = json!({"batch": [
        {"mode": "start", "req": {"start": {"project_id": PROJECT, "id": "b1", "trace_id": "tb",
            "op_name": "chat", "started_at": "2024-05-01T10:00:00Z", "attributes": {}, "inputs": {}}}},
        {"mode": "end", "req": {"end": {"project_id": PROJECT, "id": "b1",
            "ended_at": "2024-05-01T10:00:01Z", "exception": "RateLimitError",
            "summary": {"usage": {"gpt-4o": {"input_tokens": 10, "output_tokens": 5}}}}}},
    ]});
    let answer = c.post("/call/upsert_batch", &batch).await.ok();
    assert_eq!(answer, json!({"res": [{"id": "b1", "trace_id": "tb"}, {}]}));
    for _ in 0..3 {
        c.post("/call/upsert_batch", &batch).await.ok();
    }
    let (calls, usage) = totals(c).await;
    assert_eq!(calls["sum_call_count"], 1);
    assert_eq!(calls["sum_error_count"], 1);
    assert_eq!(usage[0]["sum_total_tokens"], 15);

    // A corrected end replaces the earlier one.
    c.post(
        "/call/end",
        &json!({"end": {"project_id": PROJECT, "id": "b1", "ended_at": "2024-05-01T10:00:03Z",
                "summary": {"usage": {"gpt-4o": {"input_tokens": 1, "output_tokens": 1}}}}}),
    )
    .await
    .ok();
    let (calls, usage) = totals(c).await;
    assert_eq!(
        (&calls["sum_error_count"], &calls["sum_latency_ms"]),
        (&json!(0), &json!(3000.0))
    );
    assert_eq!(usage[0]["sum_total_tokens"], 2);
    stack.stop().await;
}

#[tokio::test]
async fn an_end_that_arrives_first_waits_for_its_start() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    c.post(
        "/call/end",
        &json!({"end": {"project_id": PROJECT, "id": "early", "ended_at": "2024-05-01T10:00:01Z",
                "summary": {}}}),
    )
    .await
    .ok();
    let (calls, _) = totals(c).await;
    assert_eq!(
        calls["sum_call_count"], 0,
        "a call with no start has no place in time yet"
    );
    c.post(
        "/call/start",
        &json!({"start": {"project_id": PROJECT, "id": "early", "op_name": "chat",
                "started_at": "2024-05-01T10:00:00Z"}}),
    )
    .await
    .ok();
    let (calls, _) = totals(c).await;
    assert_eq!(
        (&calls["sum_call_count"], &calls["sum_latency_ms"]),
        (&json!(1), &json!(1000.0))
    );
    stack.stop().await;
}

#[tokio::test]
async fn complete_calls_are_ingested_whole_and_idempotently() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let calls = [
        Call::new("x1", t("2024-05-01T10:00:00Z")).latency_ms(250),
        Call::new("x2", t("2024-05-01T11:00:00Z"))
            .latency_ms(750)
            .usage(json!({"m": {"total_tokens": 9}})),
    ];
    let batch: Vec<Value> = calls.iter().map(|c| c.body.clone()).collect();
    let answer = c
        .post(
            &format!("/v2/{PROJECT}/calls/complete"),
            &json!({"batch": batch}),
        )
        .await
        .ok();
    assert_eq!(
        answer,
        json!({"res": [{"id": "x1", "trace_id": "trace-x1"}, {"id": "x2", "trace_id": "trace-x2"}]})
    );
    ingest(c, &calls).await;
    let (totals, usage) = totals(c).await;
    assert_eq!(
        (&totals["sum_call_count"], &totals["sum_latency_ms"]),
        (&json!(2), &json!(1000.0))
    );
    assert_eq!(usage[0]["sum_total_tokens"], 9);
    stack.stop().await;
}

#[tokio::test]
async fn malformed_calls_are_400_and_store_nothing() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let good = json!({"mode": "start", "req": {"start": {"project_id": PROJECT, "id": "ok",
        "op_name": "chat", "started_at": "2024-05-01T10:00:00Z"}}});
    let cases: Vec<(&str, Value, &[&str])> = vec![
        (
            "/call/start",
            json!({"start": {"project_id": PROJECT, "started_at": "2024-05-01T10:00:00Z"}}),
            &["start", "missing field `op_name`"],
        ),
        (
            "/call/start",
            json!({"start": {"project_id": PROJECT, "op_name": "x", "started_at": "noon"}}),
            &["start.started_at", "invalid date-time"],
        ),
        (
            "/call/start",
            json!({"start": {"project_id": "flat", "op_name": "x", "started_at": "2024-05-01T10:00:00Z"}}),
            &["project_id", "entity/project"],
        ),
        (
            "/call/end",
            json!({"end": {"project_id": PROJECT, "id": "e", "ended_at": "2024-05-01T10:00:00Z",
                   "summary": {"usage": {"gpt-4o": {"prompt_tokens": "ten"}}}}}),
            &["summary.usage.gpt-4o.prompt_tokens", "non-negative integer"],
        ),
        (
            "/call/end",
            json!({"end": {"project_id": PROJECT, "id": "e", "ended_at": "2024-05-01T10:00:00Z",
                   "summary": {"usage": {"gpt-4o": {"output_tokens": -3}}}}}),
            &["summary.usage.gpt-4o.output_tokens"],
        ),
        (
            "/call/upsert_batch",
            json!({"batch": [good.clone(), {"mode": "middle", "req": {}}]}),
            &["batch[1]", "unknown variant `middle`"],
        ),
        (
            "/call/upsert_batch",
            json!({"batch": [good.clone(), {"mode": "end", "req": {"end": {"project_id": PROJECT,
                "id": "ok", "ended_at": "2024-05-01T10:00:00Z", "summary": {"usage": 3}}}}]}),
            &["batch[1]", "summary.usage must be an object"],
        ),
        (
            "/v2/acme/bot/calls/complete",
            json!({"batch": [{"id": "z", "op_name": "x", "started_at": "2024-05-01T10:00:01Z",
                   "ended_at": "2024-05-01T10:00:00Z"}]}),
            &["batch[0].ended_at", "before started_at"],
        ),
        (
            "/v2/acme/bot/calls/complete",
            json!({"batch": [{"project_id": "acme/other", "id": "z", "op_name": "x",
                   "started_at": "2024-05-01T10:00:00Z", "ended_at": "2024-05-01T10:00:00Z"}]}),
            &["batch[0].project_id", "does not match"],
        ),
    ];
    for (path, body, wanted) in cases {
        let answer = c.post(path, &body).await;
        let reason = answer.reason(400);
        for w in wanted {
            assert!(
                reason.contains(w),
                "{path} {body}: reason {reason:?} lacks {w:?}"
            );
        }
    }
    // The valid start in the refused batches was not stored either.
    let (calls, _) = totals(c).await;
    assert_eq!(calls["sum_call_count"], 0);
    stack.stop().await;
}
