//! Feedback ingest and `POST /feedback/aggregate`, as a table of
//! cases over one hand-made dataset with hand-computed answers.

use polymeter_tests::{json, Client, TestStack};
use serde_json::Value;

const P: &str = "acme/bot";

fn item(kind: &str, weave_ref: &str, extra: Value) -> Value {
    let mut v = json!({"project_id": P, "feedback_type": kind, "weave_ref": weave_ref,
                       "payload": {"note": kind}});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

/// f1…f5 in one batch (one `created_at`), as the table below assumes.
fn dataset() -> Vec<Value> {
    vec![
        item(
            "wandb.runnable.relevance",
            "weave:///acme/bot/agent_turn/t1",
            json!({"runnable_ref": "weave:///acme/bot/object/relevance:v1",
                   "trigger_ref": "weave:///acme/bot/object/monitor_a:v1",
                   "span_agent_name": "planner", "span_agent_version": "1.0", "span_status_code": "OK",
                   "scorer_tags": ["hallucination"], "scorer_ratings": {"_rating_": 0.9, "accuracy": 1.0}}),
        ),
        item(
            "wandb.runnable.relevance",
            "weave:///acme/bot/agent_conversation/c1",
            json!({"runnable_ref": "weave:///acme/bot/object/relevance:v1",
                   "trigger_ref": "weave:///acme/bot/object/monitor_b:v3",
                   "span_agent_name": "planner", "span_agent_version": "2.0", "span_status_code": "ERROR",
                   "scorer_ratings": {"_rating_": 0.2}}),
        ),
        item(
            "wandb.runnable.toxicity",
            "weave:///acme/bot/call/x1",
            json!({"runnable_ref": "weave:///acme/bot/op/toxicity_check:v2",
                   "span_agent_name": "writer", "span_agent_version": "1.0",
                   "scorer_tags": ["toxic", "hallucination"]}),
        ),
        item("wandb.reaction.1", "weave:///acme/bot/call/x2", json!({})),
        item(
            "wandb.runnable.relevance",
            "weave:///acme/bot/agent_turn/t2",
            json!({"runnable_ref": "weave:///acme/bot/object/relevance_v2:v1",
                   "trigger_ref": "weave:///acme/bot/object/monitor_a:v1",
                   "span_agent_name": "writer", "span_agent_version": "1.0", "span_status_code": "OK",
                   "scorer_ratings": {"accuracy": 0.5}}),
        ),
    ]
}

fn created_ms(answer: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(answer["created_at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

async fn aggregate(c: &Client, query: Value) -> Value {
    let mut body = json!({"project_id": P, "after_ms": 0, "before_ms": 4_000_000_000_000i64});
    for (k, v) in query.as_object().unwrap() {
        body[k] = v.clone();
    }
    c.post("/feedback/aggregate", &body).await.ok()
}

/// A bucket with only counts, for compact expectations.
fn totals(answer: &Value) -> Vec<(Value, u64, u64)> {
    answer["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["group"].clone(),
                b["total_count"].as_u64().unwrap(),
                b["scored_count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn feedback_create_answers_in_weaves_shape() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let before = chrono::Utc::now().timestamp_millis();
    let one = c.post("/feedback/create", &dataset()[0]).await.ok();
    assert!(!one["id"].as_str().unwrap().is_empty());
    assert!(
        created_ms(&one) >= before,
        "created_at is set by the server"
    );
    assert_eq!(one["payload"], json!({"note": "wandb.runnable.relevance"}));
    assert!(one.get("wb_user_id").is_some());
    let batch = c
        .post("/feedback/batch/create", &json!({"batch": dataset()}))
        .await
        .ok();
    assert_eq!(batch["res"].as_array().unwrap().len(), 5);
    stack.stop().await;
}

#[tokio::test]
async fn aggregate_answers_every_filter_and_grouping() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    c.post("/feedback/batch/create", &json!({"batch": dataset()}))
        .await
        .ok();
    // Another project's feedback never counts.
    c.post(
        "/feedback/create",
        &json!({"project_id": "acme/other", "feedback_type": "wandb.runnable.relevance",
                "weave_ref": "weave:///acme/other/call/z", "payload": {}}),
    )
    .await
    .ok();

    let everything = aggregate(c, json!({})).await;
    assert_eq!(everything["time_bucket_seconds"], Value::Null);
    assert_eq!(
        everything["buckets"],
        json!([{"time_bucket_start_ms": null, "group": {}, "total_count": 5, "scored_count": 4,
                "tag_counts": {"hallucination": 2, "toxic": 1},
                "rating_counts": {"_rating_": 2, "accuracy": 2},
                "rating_sums": {"_rating_": 1.1, "accuracy": 1.5}}])
    );

    let none = json!({});
    // A filter, and the (group, total_count, scored_count) of each bucket it leaves.
    type Expected = Vec<(Value, u64, u64)>;
    let cases: Vec<(Value, Expected)> = vec![
        (
            json!({"feedback_types": ["wandb.runnable"]}),
            vec![(none.clone(), 4, 4)],
        ),
        (
            json!({"feedback_types": ["wandb.runnable.rel"]}),
            vec![(none.clone(), 3, 3)],
        ),
        (
            json!({"feedback_types": ["wandb.reaction", "wandb.runnable.tox"]}),
            vec![(none.clone(), 2, 1)],
        ),
        (
            json!({"scorer_ids": ["relevance"]}),
            vec![(none.clone(), 2, 2)],
        ),
        (
            json!({"scorer_ids": ["relevance*"]}),
            vec![(none.clone(), 3, 3)],
        ),
        (
            json!({"scorer_ids": ["toxicity_check", "relevance_v2"]}),
            vec![(none.clone(), 2, 2)],
        ),
        (
            json!({"monitor_ids": ["monitor_a"]}),
            vec![(none.clone(), 2, 2)],
        ),
        (
            json!({"monitor_ids": ["monitor_*"]}),
            vec![(none.clone(), 3, 3)],
        ),
        (
            json!({"span_agent_names": ["writer"]}),
            vec![(none.clone(), 2, 2)],
        ),
        (
            json!({"span_types": ["agent_turn"]}),
            vec![(none.clone(), 2, 2)],
        ),
        (
            json!({"span_types": ["agent_conversation", "agent_turn"]}),
            vec![(none.clone(), 3, 3)],
        ),
        (json!({"tags": ["toxic"]}), vec![(none.clone(), 1, 1)]),
        (
            json!({"tags": ["hallucination", "toxic"]}),
            vec![(none.clone(), 2, 2)],
        ),
        (json!({"rating_min": 0.5}), vec![(none.clone(), 1, 1)]),
        (json!({"rating_max": 0.5}), vec![(none.clone(), 1, 1)]),
        (json!({"rating_min": 0.0}), vec![(none.clone(), 2, 2)]),
        (
            json!({"rating_min": 0.2, "rating_max": 0.2}),
            vec![(none.clone(), 1, 1)],
        ),
        (
            json!({"scorer_ids": ["relevance*"], "span_agent_names": ["writer"]}),
            vec![(none.clone(), 1, 1)],
        ),
        // Nothing matches: still exactly one row without buckets or groups …
        (json!({"tags": ["nope"]}), vec![(none.clone(), 0, 0)]),
        // … but no rows once grouped.
        (json!({"tags": ["nope"], "group_by": ["scorer_id"]}), vec![]),
        (
            json!({"group_by": ["scorer_id"]}),
            vec![
                (json!({"scorer_id": ""}), 1, 0),
                (json!({"scorer_id": "relevance"}), 2, 2),
                (json!({"scorer_id": "relevance_v2"}), 1, 1),
                (json!({"scorer_id": "toxicity_check"}), 1, 1),
            ],
        ),
        (
            json!({"group_by": ["span_status_code"]}),
            vec![
                (json!({"span_status_code": "ERROR"}), 1, 1),
                (json!({"span_status_code": "OK"}), 2, 2),
                (json!({"span_status_code": "UNSET"}), 2, 1),
            ],
        ),
        (
            json!({"group_by": ["span_agent_name", "span_agent_version"]}),
            vec![
                (
                    json!({"span_agent_name": "", "span_agent_version": ""}),
                    1,
                    0,
                ),
                (
                    json!({"span_agent_name": "planner", "span_agent_version": "1.0"}),
                    1,
                    1,
                ),
                (
                    json!({"span_agent_name": "planner", "span_agent_version": "2.0"}),
                    1,
                    1,
                ),
                (
                    json!({"span_agent_name": "writer", "span_agent_version": "1.0"}),
                    2,
                    2,
                ),
            ],
        ),
        (
            json!({"group_by": ["span_status_code", "scorer_id"], "monitor_ids": ["monitor_*"]}),
            vec![
                (
                    json!({"span_status_code": "ERROR", "scorer_id": "relevance"}),
                    1,
                    1,
                ),
                (
                    json!({"span_status_code": "OK", "scorer_id": "relevance"}),
                    1,
                    1,
                ),
                (
                    json!({"span_status_code": "OK", "scorer_id": "relevance_v2"}),
                    1,
                    1,
                ),
            ],
        ),
    ];
    for (query, want) in cases {
        let answer = aggregate(c, query.clone()).await;
        assert_eq!(totals(&answer), want, "query {query}");
    }

    // The per-group maps, for one grouping.
    let by_status = aggregate(
        c,
        json!({"group_by": ["span_status_code"], "span_types": ["agent_turn"]}),
    )
    .await;
    assert_eq!(
        by_status["buckets"],
        json!([{"time_bucket_start_ms": null, "group": {"span_status_code": "OK"}, "total_count": 2,
                "scored_count": 2, "tag_counts": {"hallucination": 1},
                "rating_counts": {"_rating_": 1, "accuracy": 2},
                "rating_sums": {"_rating_": 0.9, "accuracy": 1.5}}])
    );
    stack.stop().await;
}

#[tokio::test]
async fn buckets_are_utc_epoch_multiples_and_the_range_is_half_open() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let first = c
        .post("/feedback/batch/create", &json!({"batch": dataset()}))
        .await
        .ok();
    let t1 = created_ms(&first["res"][0]);
    // Wait into the next second, so the second batch lands in the next 1 s bucket.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let second = c
        .post(
            "/feedback/create",
            &item(
                "wandb.runnable.relevance",
                "weave:///acme/bot/call/x3",
                json!({"scorer_ratings": {"_rating_": 1.0}}),
            ),
        )
        .await
        .ok();
    let t2 = created_ms(&second);
    let range = json!({"after_ms": t1 - 5_000, "before_ms": t2 + 5_000});
    let mut q = range.clone();
    q["time_bucket_seconds"] = json!(1);
    let answer = aggregate(c, q).await;
    assert_eq!(answer["time_bucket_seconds"], 1);
    let starts: Vec<i64> = answer["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["time_bucket_start_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(starts, [t1 / 1000 * 1000, t2 / 1000 * 1000]);
    assert_eq!(
        totals(&answer).iter().map(|t| t.1).collect::<Vec<_>>(),
        [5, 1],
        "empty buckets between are omitted"
    );
    // after_ms is inclusive, before_ms exclusive.
    let only_second = aggregate(c, json!({"after_ms": t2, "before_ms": t2 + 1})).await;
    assert_eq!(totals(&only_second), [(json!({}), 1, 1)]);
    let only_first = aggregate(c, json!({"after_ms": t1, "before_ms": t2})).await;
    assert_eq!(totals(&only_first), [(json!({}), 5, 4)]);
    stack.stop().await;
}

#[tokio::test]
async fn bad_feedback_input_is_400_naming_the_problem() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let base = || json!({"project_id": P, "after_ms": 1000, "before_ms": 2000});
    let with = |k: &str, v: Value| {
        let mut b = base();
        b[k] = v;
        b
    };
    let cases: Vec<(Value, &[&str])> = vec![
        (
            with("before_ms", json!(1000)),
            &["before_ms", "greater than after_ms"],
        ),
        (with("after_ms", json!(-1)), &["after_ms"]),
        (
            with("time_bucket_seconds", json!(0)),
            &["time_bucket_seconds", "> 0"],
        ),
        (
            json!({"project_id": P, "after_ms": 0, "before_ms": 100_000_000, "time_bucket_seconds": 1}),
            &["time_bucket_seconds", "10000"],
        ),
        (with("rating_min", json!(1.5)), &["rating_min", "0..=1"]),
        (with("rating_max", json!(-0.1)), &["rating_max"]),
        (
            with("span_types", json!(["agent_step"])),
            &["span_types", "agent_turn, agent_conversation"],
        ),
        (
            with("group_by", json!(["model"])),
            &["group_by[0]", "scorer_id, span_agent_name"],
        ),
        (with("colour", json!(1)), &["unknown field `colour`"]),
        (with("tags", json!("toxic")), &["tags", "invalid type"]),
    ];
    for (body, wanted) in cases {
        let answer = c.post("/feedback/aggregate", &body).await;
        let reason = answer.reason(400);
        for w in wanted {
            assert!(reason.contains(w), "{body}: {reason:?} lacks {w:?}");
        }
    }
    let good = || item("wandb.runnable.x", "weave:///acme/bot/call/x1", json!({}));
    let create_cases: Vec<(Value, &[&str])> = vec![
        (
            {
                let mut b = good();
                b["scorer_ratings"] = json!({"x": 1.5});
                b
            },
            &["scorer_ratings.x", "0..=1"],
        ),
        (
            {
                let mut b = good();
                b["scorer_ratings"] = json!({"x": "high"});
                b
            },
            &["scorer_ratings.x", "invalid type"],
        ),
        (
            {
                let mut b = good();
                b["span_status_code"] = json!("FINE");
                b
            },
            &["span_status_code", "UNSET, OK, ERROR"],
        ),
        (
            {
                let mut b = good();
                b["weave_ref"] = json!("call-123");
                b
            },
            &["weave_ref", "weave:///"],
        ),
        (
            {
                let mut b = good();
                b["weave_ref"] = json!("weave:///acme/other/call/1");
                b
            },
            &["weave_ref", "not in project"],
        ),
        (
            {
                let mut b = good();
                b["runnable_ref"] = json!("weave:///acme/bot/call/1");
                b
            },
            &["runnable_ref", "object or op"],
        ),
        (
            {
                let mut b = good();
                b["trigger_ref"] = json!("weave://acme");
                b
            },
            &["trigger_ref"],
        ),
        (
            {
                let mut b = good();
                b.as_object_mut().unwrap().remove("feedback_type");
                b
            },
            &["missing field `feedback_type`"],
        ),
    ];
    for (body, wanted) in create_cases {
        let answer = c.post("/feedback/create", &body).await;
        let reason = answer.reason(400);
        for w in wanted {
            assert!(reason.contains(w), "{body}: {reason:?} lacks {w:?}");
        }
    }
    // A refused batch stores nothing, not even its valid items.
    let answer = c
        .post(
            "/feedback/batch/create",
            &json!({"batch": [good(), {"project_id": P, "feedback_type": "x",
               "weave_ref": "weave:///acme/bot/call/1", "span_status_code": "MAYBE"}]}),
        )
        .await;
    assert!(answer.reason(400).contains("batch[1]"));
    let all = aggregate(c, json!({})).await;
    assert_eq!(totals(&all), [(json!({}), 0, 0)]);
    stack.stop().await;
}
