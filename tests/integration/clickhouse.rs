//! The ClickHouse store's own guarantees, beyond giving the embedded store's
//! answers (that is `conformance`): an outage answers "unavailable, retry"
//! and loses nothing acknowledged; replicas starting together migrate safely.

use crate::support::*;
use chrono::Duration;
use polymeter::{open_feedback_store, open_stats, StoreChoice};
use polymeter_tests::clickhouse::ClickHouse;
use polymeter_tests::{json, Store, TestStack};

async fn call_count(c: &polymeter_tests::Client) -> serde_json::Value {
    let body = stats_body(
        json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z",
        "granularity": 86400, "call_metrics": [{"metric": "call_count"}]}),
    );
    let answer = c.post("/calls/stats", &body).await.ok();
    answer["call_buckets"][0]["sum_call_count"].clone()
}

/// One stats replica's store and price overrides over `choice`.
async fn replica(
    choice: &StoreChoice,
    dir: &std::path::Path,
    name: &str,
) -> (
    std::sync::Arc<dyn polymeter_stats::CallStore>,
    std::sync::Arc<polymeter_stats::prices::PriceOverrides>,
) {
    let stores = open_stats(choice, &dir.join(name), 1 << 20).await.unwrap();
    (stores.calls, stores.prices)
}

#[tokio::test]
async fn an_outage_answers_unavailable_and_loses_nothing_acknowledged() {
    let mut stack = TestStack::start_with_store(Store::ClickHouse).await;
    if !stack.clickhouse.as_ref().unwrap().is_adapter() {
        eprintln!("a real ClickHouse server cannot be stopped from here; outage not exercised");
        return;
    }
    let c = stack.client.clone();
    let base = t("2024-05-01T10:00:00Z");
    let calls: Vec<Call> = (0..5)
        .map(|i| Call::new(&format!("a{i}"), base + Duration::minutes(i)).tokens("gpt-4o", 10, 1))
        .collect();
    ingest(&c, &calls).await;
    assert_eq!(call_count(&c).await, 5);

    stack.clickhouse.as_mut().unwrap().kill();
    let late = Call::new("late", base + Duration::minutes(30));
    let answer = c
        .post(
            &format!("/v2/{PROJECT}/calls/complete"),
            &json!({"batch": [late.body.clone()]}),
        )
        .await;
    let reason = answer.reason(503);
    assert!(reason.contains("unavailable"), "{reason}");
    let answer = c
        .post(
            "/calls/stats",
            &stats_body(json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"})),
        )
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    let answer = c
        .post(
            "/feedback/create",
            &json!({"project_id": PROJECT, "feedback_type": "wandb.reaction.1",
            "weave_ref": "weave:///acme/bot/call/a0", "payload": {}}),
        )
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);

    // ClickHouse returns: no restart of Polymeter, the acknowledged calls are
    // there, and the refused one can simply be sent again.
    stack.clickhouse.as_mut().unwrap().restart();
    assert_eq!(call_count(&c).await, 5);
    ingest(&c, &[late]).await;
    assert_eq!(call_count(&c).await, 6);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once_and_agree() {
    let ch = ClickHouse::start();
    let choice = StoreChoice::parse(&ch.url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Four stats and four feedback replicas start at the same moment.
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..4 {
        let (choice, path) = (choice.clone(), dir.path().join(i.to_string()));
        opening.spawn(async move {
            open_stats(&choice, &path, 1 << 20).await?;
            open_feedback_store(&choice, &path, 1 << 20)
                .await
                .map(|_| ())
        });
    }
    while let Some(done) = opening.join_next().await {
        done.unwrap().expect("every replica starts");
    }
    // And once more, as after a rolling restart: nothing left to apply.
    open_stats(&choice, dir.path(), 1 << 20).await.unwrap();
    let stack = TestStack::start_with_clickhouse(ch).await;
    let c = &stack.client;
    ingest(c, &[Call::new("m1", t("2024-05-01T10:00:00Z"))]).await;
    assert_eq!(call_count(c).await, 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_override_set_through_one_replica_reaches_the_others() {
    let ch = ClickHouse::start();
    let choice = StoreChoice::parse(&ch.url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, a) = replica(&choice, dir.path(), "a").await;
    let (_, b) = replica(&choice, dir.path(), "b").await;
    let price = polymeter_pricing::Price::new(1e-6, 2e-6, None, None).unwrap();
    let writer = a.clone();
    tokio::task::spawn_blocking(move || writer.set("acme", "acme/bot", "My-Model", price))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        a.for_project("acme", "acme/bot").unwrap()["my-model"],
        price
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while b.for_project("acme", "acme/bot").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "replica b never saw the override"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.for_project("acme", "acme/bot").unwrap()["my-model"],
        price
    );
    // A third replica starting now reads it at once; a delete reaches it too.
    let (_, c) = replica(&choice, dir.path(), "c").await;
    assert_eq!(
        c.for_project("acme", "acme/bot").unwrap()["my-model"],
        price
    );
    let writer = b.clone();
    let deleted =
        tokio::task::spawn_blocking(move || writer.delete("acme", "acme/bot", "my-model"))
            .await
            .unwrap()
            .unwrap();
    assert!(deleted);
    let (_, d) = replica(&choice, dir.path(), "d").await;
    assert!(d.for_project("acme", "acme/bot").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_clickhouse_costs_a_caller_at_most_the_store_timeout() {
    let mut ch = ClickHouse::start();
    if !ch.is_adapter() {
        eprintln!("a real ClickHouse server cannot be stalled from here; stall not exercised");
        return;
    }
    ch.url.push_str("?query_timeout=1s&write_timeout=1s");
    let stack = TestStack::start_with_clickhouse(ch).await;
    let c = stack.client.clone();
    let call = Call::new("stalled", t("2024-05-01T10:00:00Z")).tokens("gpt-4o", 10, 1);
    stack.clickhouse.as_ref().unwrap().signal("STOP");
    let started = std::time::Instant::now();
    let answer = c
        .post(
            &format!("/v2/{PROJECT}/calls/complete"),
            &json!({"batch": [call.body.clone()]}),
        )
        .await;
    let reason = answer.reason(503).to_owned();
    assert!(reason.contains("re-sending is safe"), "{reason}");
    let answer = c
        .post(
            "/calls/stats",
            &stats_body(json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"})),
        )
        .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    // Two bounded waits of about a second each (the write's lookup, then the query).
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    stack.clickhouse.as_ref().unwrap().signal("CONT");
    // The write whose outcome was unknown is re-sent: it counts once.
    ingest(&c, &[call]).await;
    assert_eq!(call_count(&c).await, 1);
    stack.stop().await;
}

/// Two stats replicas write the two halves of the same calls at the same
/// moment, neither seeing the other's row first: every call still ends up
/// whole and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halves_written_at_once_by_two_replicas_make_one_whole_call() {
    use polymeter_model::{
        CallEnd, CallId, CallRecord, CallStart, ModelUsage, ProjectId, TenantId,
    };
    let ch = ClickHouse::start();
    let choice = StoreChoice::parse(&ch.url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = replica(&choice, dir.path(), "a").await;
    let (b, _) = replica(&choice, dir.path(), "b").await;
    let base = t("2024-05-01T10:00:00Z");
    let record = |i: i64, start: bool| CallRecord {
        tenant: TenantId::new("acme").unwrap(),
        project_id: ProjectId::parse(PROJECT).unwrap(),
        call_id: CallId::new(format!("race{i}")).unwrap(),
        start: start.then(|| CallStart {
            trace_id: format!("t{i}"),
            parent_id: None,
            thread_id: None,
            turn_id: None,
            op_name: "race".into(),
            display_name: None,
            started_at: base + Duration::seconds(i),
            wb_user_id: None,
            wb_run_id: None,
            input_refs: vec![],
            vendor: Default::default(),
        }),
        end: (!start).then(|| CallEnd {
            ended_at: base + Duration::seconds(i) + Duration::milliseconds(250),
            exception: None,
            usage: vec![ModelUsage {
                model: "gpt-4o".into(),
                input_tokens: 10,
                total_tokens: 10,
                ..Default::default()
            }],
            output_refs: vec![],
        }),
    };
    for i in 0..24 {
        // Alternate which half goes first, so both orders race.
        let (first, second) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (x, y) = tokio::join!(
            first.upsert(vec![record(i, i % 2 == 0)]),
            second.upsert(vec![record(i, i % 2 == 1)])
        );
        x.unwrap();
        y.unwrap();
    }
    let stack = TestStack::start_with_clickhouse(ch).await;
    let body = stats_body(
        json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z",
        "granularity": 86400, "call_metrics": [{"metric": "call_count"},
        {"metric": "latency_ms", "aggregations": ["count", "sum"]}],
        "usage_metrics": [{"metric": "input_tokens"}]}),
    );
    let answer = stack.client.post("/calls/stats", &body).await.ok();
    let calls = &answer["call_buckets"][0];
    assert_eq!(calls["sum_call_count"], 24, "{answer}");
    assert_eq!(
        calls["count_latency_ms"], 24,
        "every call has its end: {answer}"
    );
    assert_eq!(calls["sum_latency_ms"], 24.0 * 250.0, "{answer}");
    assert_eq!(
        answer["usage_buckets"][0]["sum_input_tokens"], 240,
        "{answer}"
    );
    stack.stop().await;
}
