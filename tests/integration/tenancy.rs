//! Tenancy: every Weave route wants an API key, and no credential of any
//! dialect reaches another tenant's data.

use crate::support::*;
use polymeter_tests::{fixture, json, TestStack};
use serde_json::Value;

/// Every Weave route with a body aimed at `project`.
fn weave_routes(project: &str) -> Vec<(String, Value)> {
    let start = json!({"project_id": project, "id": "c1", "op_name": "op", "started_at": "2024-05-01T10:00:00Z"});
    let end = json!({"project_id": project, "id": "c1", "ended_at": "2024-05-01T10:00:01Z"});
    let feedback = json!({"project_id": project, "weave_ref": format!("weave:///{project}/call/c1"), "feedback_type": "note", "payload": {}});
    vec![
        ("/call/start".into(), json!({ "start": start })),
        ("/call/end".into(), json!({ "end": end })),
        (
            "/call/upsert_batch".into(),
            json!({"batch": [{"mode": "start", "req": {"start": start}}]}),
        ),
        (
            format!("/v2/{project}/calls/complete"),
            json!({"batch": [Call::new("c2", t("2024-05-01T10:00:00Z")).body]}),
        ),
        (
            "/calls/stats".into(),
            json!({"project_id": project, "start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"}),
        ),
        ("/feedback/create".into(), feedback.clone()),
        (
            "/feedback/batch/create".into(),
            json!({ "batch": [feedback] }),
        ),
        (
            "/feedback/aggregate".into(),
            json!({"project_id": project, "after_ms": 0, "before_ms": 1}),
        ),
    ]
}

#[tokio::test]
async fn every_weave_route_refuses_a_request_without_a_valid_key() {
    let stack = TestStack::start().await;
    let keys = [
        (None, "authentication required"),
        (Some("pm-not-a-key"), "not known"),
        (Some(fixture::ACME_DISABLED_WEAVE_KEY), "disabled"),
    ];
    for (key, reason) in keys {
        let client = stack.client.with_weave_key(key);
        for (path, body) in weave_routes(PROJECT) {
            let answer = client.post(&path, &body).await;
            assert!(
                answer.reason(401).contains(reason),
                "{path}: {}",
                answer.body
            );
            assert_eq!(
                answer.headers["www-authenticate"],
                "Basic realm=\"polymeter\""
            );
        }
    }
    let wrong_scheme = stack
        .client
        .send_with(
            reqwest::Method::POST,
            "/calls/stats",
            [(reqwest::header::AUTHORIZATION, "Bearer x".parse().unwrap())]
                .into_iter()
                .collect(),
            b"{}".to_vec(),
        )
        .await;
    assert!(wrong_scheme.reason(401).contains("Basic"));
    stack.stop().await;
}

#[tokio::test]
async fn a_weave_key_cannot_touch_another_tenants_projects_on_any_route() {
    let stack = TestStack::start().await;
    let globex = stack.client.with_weave_key(Some(fixture::GLOBEX_WEAVE_KEY));
    for (path, body) in weave_routes(PROJECT) {
        let answer = globex.post(&path, &body).await;
        assert!(
            answer.reason(403).contains("acme/bot"),
            "{path}: {}",
            answer.body
        );
    }
    // An entity nobody owns is refused too.
    let answer = stack
        .client
        .post(
            "/calls/stats",
            &json!({"project_id": "nobody/x", "start": "2024-05-01T00:00:00Z"}),
        )
        .await;
    answer.reason(403);
    // Nothing was written by the refused requests.
    let body = stats(&stack.client, json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z", "granularity": 86400, "call_metrics": [{"metric": "call_count"}]})).await;
    assert_eq!(body["call_buckets"][0]["sum_call_count"], 0, "{body}");
    let feedback = stack
        .client
        .post(
            "/feedback/aggregate",
            &json!({"project_id": PROJECT, "after_ms": 0, "before_ms": i64::MAX}),
        )
        .await
        .ok();
    assert_eq!(feedback["buckets"][0]["total_count"], 0, "{feedback}");
    stack.stop().await;
}

#[tokio::test]
async fn a_key_limited_to_a_project_reaches_only_that_project() {
    let stack = TestStack::start().await;
    let bot_only = stack
        .client
        .with_weave_key(Some(fixture::ACME_BOT_ONLY_WEAVE_KEY));
    for (path, body) in weave_routes("acme/other") {
        bot_only.post(&path, &body).await.reason(403);
    }
    ingest_into(
        &bot_only,
        "acme/bot",
        &[Call::new("a", t("2024-05-01T10:00:00Z"))],
    )
    .await;
    stack.stop().await;
}

/// Same-named projects of two tenants stay apart in every query dialect.
#[tokio::test]
async fn tenants_see_only_their_own_calls_in_every_dialect() {
    let stack = TestStack::start().await;
    let acme = &stack.client;
    let globex = acme.with_weave_key(Some(fixture::GLOBEX_WEAVE_KEY));
    let now = chrono::Utc::now() - chrono::Duration::minutes(5);
    let svc = json!({"qianfan": {"service_id": "svc", "app_id": "1"}});
    ingest_into(
        acme,
        "acme/bot",
        &[Call::new("a1", now)
            .attributes(svc.clone())
            .tokens("m", 10, 1)],
    )
    .await;
    ingest_into(
        acme,
        "acme/other",
        &[Call::new("a2", now)
            .attributes(svc.clone())
            .tokens("m", 20, 2)],
    )
    .await;
    ingest_into(
        &globex,
        "globex/bot",
        &[Call::new("g1", now)
            .attributes(svc.clone())
            .tokens("m", 1000, 100)],
    )
    .await;

    // The projects list: each key sees its own tenant's projects, a key
    // limited to one project only that one.
    ingest_into(
        acme,
        "acme/bot",
        &[Call::new("a3", now - chrono::Duration::days(2))],
    )
    .await;
    let listed = |client: polymeter_tests::Client| async move {
        let body = client.get("/v1/projects").await.ok();
        body["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["project_id"].as_str().unwrap().to_owned(),
                    p["calls"].as_u64().unwrap(),
                    p["first_seen"].as_str().unwrap().to_owned(),
                    p["last_seen"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Times are stored to the microsecond.
    let at = |t: chrono::DateTime<chrono::Utc>| {
        chrono::DateTime::from_timestamp_micros(t.timestamp_micros())
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    let (first, last) = (at(now - chrono::Duration::days(2)), at(now));
    assert_eq!(
        listed(acme.clone()).await,
        vec![
            ("acme/bot".into(), 2, first.clone(), last.clone()),
            ("acme/other".into(), 1, last.clone(), last.clone()),
        ]
    );
    assert_eq!(
        listed(globex.clone()).await,
        vec![("globex/bot".into(), 1, last.clone(), last.clone())]
    );
    assert_eq!(
        listed(acme.with_weave_key(Some(fixture::ACME_BOT_ONLY_WEAVE_KEY))).await,
        vec![("acme/bot".into(), 2, first, last)]
    );

    let one = |data: Vec<Value>| data[0]["inputTokens"].as_i64().unwrap();
    assert_eq!(
        one(alibaba_data(
            acme.alibaba(&fixture::ACME_ALIBABA, "timeRange=1h").await
        )),
        30
    );
    assert_eq!(
        one(alibaba_data(
            acme.alibaba(&fixture::GLOBEX_ALIBABA, "timeRange=1h").await
        )),
        1000
    );
    // A key limited to one project sees only that project.
    assert_eq!(
        one(alibaba_data(
            acme.alibaba(&fixture::ACME_ALIBABA_BOT_ONLY, "timeRange=1h")
                .await
        )),
        10
    );

    let range = json!({
        "startTime": (now - chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "endTime": (now + chrono::Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    let tokens = |answer: polymeter_tests::Answer| {
        let body = answer.ok();
        body["result"]["serviceList"][0]["appList"][0]["metric"]["inputTokensTotal"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(
        tokens(acme.qianfan(&fixture::ACME_QIANFAN, &range).await),
        30
    );
    assert_eq!(
        tokens(acme.qianfan(&fixture::GLOBEX_QIANFAN, &range).await),
        1000
    );
    stack.stop().await;
}

/// `polymeter keys` edits the file a running gateway reads: a new key works
/// at once, a disabled one stops working at once.
#[tokio::test]
async fn keys_added_and_disabled_with_the_cli_take_effect_without_a_restart() {
    let stack = TestStack::start().await;
    let file = stack.data_dir().join("credentials.toml");
    let keys = |args: &[&str]| {
        let out = std::process::Command::new(polymeter_binary())
            .arg("keys")
            .arg("--credentials")
            .arg(&file)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let out = keys(&[
        "add", "--tenant", "initech", "--entity", "initech", "--kind", "weave", "--label", "ci",
    ]);
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("pm-"))
        .expect("key printed")
        .to_owned();
    let id = out
        .split_whitespace()
        .find(|w| w.starts_with("wk-"))
        .unwrap()
        .trim_end_matches(':')
        .to_owned();
    assert!(
        !std::fs::read_to_string(&file).unwrap().contains(&key),
        "only the hash is stored"
    );
    let initech = stack.client.with_weave_key(Some(&key));
    ingest_into(
        &initech,
        "initech/app",
        &[Call::new("i1", t("2024-05-01T10:00:00Z"))],
    )
    .await;
    initech
        .post(
            "/calls/stats",
            &json!({"project_id": PROJECT, "start": "2024-05-01T00:00:00Z"}),
        )
        .await
        .reason(403);

    let listing = keys(&["list"]);
    assert!(
        listing.contains(&id) && listing.contains("initech") && !listing.contains(&key),
        "{listing}"
    );
    keys(&["disable", &id]);
    assert!(keys(&["list"]).contains("disabled"));
    let answer = initech
        .post(
            "/calls/stats",
            &json!({"project_id": "initech/app", "start": "2024-05-01T00:00:00Z"}),
        )
        .await;
    assert!(answer.reason(401).contains("disabled"));
    keys(&["enable", &id]);
    initech
        .post(
            "/calls/stats",
            &json!({"project_id": "initech/app", "start": "2024-05-01T00:00:00Z"}),
        )
        .await
        .ok();

    let out = keys(&[
        "add",
        "--tenant",
        "initech",
        "--kind",
        "alibaba",
        "--project",
        "initech/app",
    ]);
    assert!(
        out.contains("alibaba access key: LTAI") && out.contains("secret:"),
        "{out}"
    );
    let refused = std::process::Command::new(polymeter_binary())
        .args(["keys", "--credentials"])
        .arg(&file)
        .args([
            "add",
            "--tenant",
            "initech",
            "--kind",
            "qianfan",
            "--project",
            "acme/bot",
        ])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("acme/bot"));
    stack.stop().await;
}
