//! Retention and deletion of a project's data, through the gateway's
//! `/v1/projects/…` routes: what expired or was deleted is gone from every
//! dialect's answers — and, on the embedded store, from every file — while
//! other projects' data and later writes stay. On both stores.

use crate::support::*;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use polymeter_proto::v1::{self as pb, feedback_service_client::FeedbackServiceClient};
use polymeter_tests::{fixture, json, Client, Store, TestStack};
use serde_json::Value;

/// Calls, Alibaba tokens, Qianfan tokens and feedback records of acme/bot,
/// and calls of acme/other, over the whole test's range.
#[derive(Debug, PartialEq)]
struct Seen {
    bot_calls: i64,
    bot_alibaba_tokens: i64,
    bot_qianfan_tokens: i64,
    bot_feedback: i64,
    other_calls: i64,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn calls_of(c: &Client, project: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    let answer = c
        .post(
            "/calls/stats",
            &json!({"project_id": project, "start": iso(from), "end": iso(to),
                    "call_metrics": [{"metric": "call_count"}]}),
        )
        .await
        .ok();
    column(&answer["call_buckets"], "sum_call_count")
        .iter()
        .map(|v| v.as_i64().unwrap_or(0))
        .sum()
}

async fn seen(c: &Client, from: DateTime<Utc>, to: DateTime<Utc>) -> Seen {
    let alibaba = alibaba_data(
        c.alibaba(
            &fixture::ACME_ALIBABA_BOT_ONLY,
            &format!("startTime={}&endTime={}", stamp(from), stamp(to)),
        )
        .await,
    );
    let qianfan = c
        .qianfan(
            &fixture::ACME_QIANFAN,
            &json!({"startTime": stamp(from), "endTime": stamp(to)}),
        )
        .await
        .ok();
    let qianfan_tokens: i64 = qianfan["result"]["serviceList"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["appList"].as_array().unwrap().clone())
        .map(|a| a["metric"]["inputTokensTotal"].as_i64().unwrap())
        .sum();
    let feedback = c
        .post(
            "/feedback/aggregate",
            &json!({"project_id": PROJECT, "after_ms": from.timestamp_millis(),
                    "before_ms": to.timestamp_millis()}),
        )
        .await
        .ok();
    Seen {
        bot_calls: calls_of(c, PROJECT, from, to).await,
        bot_alibaba_tokens: alibaba
            .iter()
            .map(|d| d["inputTokens"].as_i64().unwrap_or(0))
            .sum(),
        bot_qianfan_tokens: qianfan_tokens,
        bot_feedback: feedback["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["total_count"].as_i64().unwrap())
            .sum(),
        other_calls: calls_of(c, "acme/other", from, to).await,
    }
}

/// Feedback for acme/bot created at `at`, straight to the feedback service
/// (Weave's routes stamp feedback with the time it arrives).
async fn feedback_at(stack: &TestStack, id: &str, at: DateTime<Utc>) {
    let mut client = FeedbackServiceClient::connect(format!("http://{}", stack.stack.feedback))
        .await
        .unwrap();
    client
        .append_feedback(pb::AppendFeedbackRequest {
            feedback: vec![pb::FeedbackWrite {
                tenant: "acme".into(),
                project_id: PROJECT.into(),
                feedback_id: id.into(),
                created_at_ms: at.timestamp_millis(),
                feedback_type: "wandb.reaction.1".into(),
                weave_ref: format!("weave:///{PROJECT}/call/{id}"),
                payload_json: "{}".into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
}

/// Every file under `dir` whose bytes contain `marker`.
fn files_holding(dir: &std::path::Path, marker: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .unwrap_or_default()
                .windows(marker.len())
                .any(|w| w == marker.as_bytes())
            {
                found.push(path);
            }
        }
    }
    found
}

fn call(id: &str, at: DateTime<Utc>, input_tokens: i64) -> Call {
    Call::new(id, at)
        .attributes(json!({"qianfan": {"service_id": "svc", "app_id": "1"}}))
        .tokens("m", input_tokens, 1)
}

async fn expired_and_deleted_data_leave_every_answer(store: Store) {
    let mut stack = TestStack::start_with_store(store).await;
    let now = Utc::now() - Duration::minutes(5);
    let old = now - Duration::days(40);
    let (from, to) = (old - Duration::hours(1), now + Duration::minutes(10));
    let c = stack.client.clone();
    ingest(
        &c,
        &[
            call("old-1", old, 100)
                .set("op_name", json!("weave:///acme/bot/op/expiring-marker:v1")),
            call("old-2", old + Duration::days(1), 200),
            call("new-1", now, 10).set("op_name", json!("weave:///acme/bot/op/deleted-marker:v1")),
        ],
    )
    .await;
    ingest_into(&c, "acme/other", &[call("other-1", old, 1000)]).await;
    feedback_at(&stack, "fb-old", old).await;
    feedback_at(&stack, "fb-new", now).await;
    let before = Seen {
        bot_calls: 3,
        bot_alibaba_tokens: 310,
        bot_qianfan_tokens: 1310,
        bot_feedback: 2,
        other_calls: 1,
    };
    assert_eq!(seen(&c, from, to).await, before);
    let stats_dir = stack.data_dir().join("stats");
    if store == Store::Embedded {
        assert!(!files_holding(&stats_dir, "expiring-marker").is_empty());
    }

    // Thirty days: the 40-day-old calls and feedback of acme/bot go, now.
    let set = c
        .send_json(
            reqwest::Method::PUT,
            "/v1/projects/acme/bot/retention",
            &json!({"retention": "30d"}),
        )
        .await
        .ok();
    assert_eq!(set["retention_seconds"], 30 * 86_400);
    let shown = c
        .send_json(
            reqwest::Method::GET,
            "/v1/projects/acme/bot/retention",
            &json!({}),
        )
        .await
        .ok();
    assert_eq!(shown["retention"], "30d");
    let expired = Seen {
        bot_calls: 1,
        bot_alibaba_tokens: 10,
        bot_qianfan_tokens: 1010,
        bot_feedback: 1,
        other_calls: 1,
    };
    assert_eq!(seen(&c, from, to).await, expired);
    if store == Store::Embedded {
        assert_eq!(
            files_holding(&stats_dir, "expiring-marker"),
            Vec::<std::path::PathBuf>::new()
        );
        assert!(!files_holding(&stats_dir, "deleted-marker").is_empty());
    }
    // A call older than the period, sent now, is not counted either.
    ingest(&c, &[call("old-3", old, 5)]).await;
    assert_eq!(seen(&c, from, to).await, expired);

    // Deleting the project: every call and record of it so far goes.
    let deleted = c
        .send_json(reqwest::Method::DELETE, "/v1/projects/acme/bot", &json!({}))
        .await
        .ok();
    assert_eq!(deleted["deleted"], true);
    let gone = Seen {
        bot_calls: 0,
        bot_alibaba_tokens: 0,
        bot_qianfan_tokens: 1000,
        bot_feedback: 0,
        other_calls: 1,
    };
    assert_eq!(seen(&c, from, to).await, gone);
    if store == Store::Embedded {
        assert_eq!(
            files_holding(&stats_dir, "deleted-marker"),
            Vec::<std::path::PathBuf>::new()
        );
    }
    // Writes after the deletion are kept, and everything holds over a restart.
    ingest(&c, &[call("after-1", now, 7)]).await;
    let after = Seen {
        bot_calls: 1,
        bot_alibaba_tokens: 7,
        bot_qianfan_tokens: 1007,
        bot_feedback: 0,
        other_calls: 1,
    };
    assert_eq!(seen(&c, from, to).await, after);
    stack = stack.restart().await;
    assert_eq!(seen(&stack.client, from, to).await, after);
    let shown = stack
        .client
        .send_json(
            reqwest::Method::GET,
            "/v1/projects/acme/bot/retention",
            &json!({}),
        )
        .await
        .ok();
    assert_eq!(shown["retention_seconds"], 30 * 86_400);

    // Kept forever again: nothing comes back, new old calls count.
    let cleared = stack
        .client
        .send_json(
            reqwest::Method::DELETE,
            "/v1/projects/acme/bot/retention",
            &json!({}),
        )
        .await
        .ok();
    assert_eq!(cleared["retention"], Value::Null);
    ingest(&stack.client, &[call("old-4", old, 3)]).await;
    assert_eq!(seen(&stack.client, from, to).await.bot_calls, 2);
    stack.stop().await;
}

#[tokio::test]
async fn on_the_embedded_store() {
    expired_and_deleted_data_leave_every_answer(Store::Embedded).await;
}

#[tokio::test]
async fn on_clickhouse() {
    expired_and_deleted_data_leave_every_answer(Store::ClickHouse).await;
}

/// A project of another tenant, or outside a key's projects, cannot be
/// touched; a bad period is refused by name.
#[tokio::test]
async fn retention_is_the_callers_own_projects_only() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let put = |c: &Client, path: &str, body: Value| {
        let (c, path) = (c.clone(), path.to_owned());
        async move { c.send_json(reqwest::Method::PUT, &path, &body).await }
    };
    let other = put(
        c,
        "/v1/projects/globex/bot/retention",
        json!({"retention": "30d"}),
    )
    .await;
    assert_eq!(other.status, 403, "{}", other.body);
    let bot_only = c.with_weave_key(Some(fixture::ACME_BOT_ONLY_WEAVE_KEY));
    let outside = bot_only
        .send_json(
            reqwest::Method::DELETE,
            "/v1/projects/acme/other",
            &json!({}),
        )
        .await;
    assert_eq!(outside.status, 403, "{}", outside.body);
    let short = put(
        c,
        "/v1/projects/acme/bot/retention",
        json!({"retention": "10m"}),
    )
    .await;
    assert!(short.reason(400).contains("retention"), "{}", short.body);
    let nobody = c.with_weave_key(None);
    let anonymous = nobody
        .send_json(reqwest::Method::DELETE, "/v1/projects/acme/bot", &json!({}))
        .await;
    assert_eq!(anonymous.status, 401);
    stack.stop().await;
}
