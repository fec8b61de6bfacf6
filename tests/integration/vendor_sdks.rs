//! The vendors' own Python SDKs, pointed at a local gateway, get correct
//! answers: Alibaba's `alibabacloud_aicontent20240611` (whose response model
//! wants `data` as a list) and Baidu's `qianfan`; and OpenTelemetry's Python
//! SDK exports spans over OTLP/HTTP that every dialect then reads. The SDKs
//! live in the test venv (`polymeter_tests::tools`); if they cannot be
//! installed the test fails — it never skips.

use crate::support::*;
use chrono::{Duration, SecondsFormat, Utc};
use polymeter_tests::{fixture, json, TestStack};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

use polymeter_tests::tools::{python as sdk_python, repo};

fn run_script(python: &Path, script: &str, args: &[&str], env: &[(&str, String)]) -> Value {
    let out = Command::new(python)
        .arg(repo().join("tests/sdk").join(script))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{script} printed no JSON ({e}): {stdout}"))
}

fn stamp(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[tokio::test]
async fn the_official_sdks_read_correct_numbers_from_a_local_gateway() {
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let stack = TestStack::start().await;
    let c = &stack.client;
    // Within the last hour, so the SDK's own 30d preset sees them too.
    let at = Utc::now() - Duration::minutes(20);
    let call = |id: &str,
                model: &str,
                model_id: i64,
                service: &str,
                app: &str,
                input: i64,
                ms: i64| {
        Call::new(id, at)
            .attributes(json!({
                "alibaba": {"model_id": model_id},
                "qianfan": {"service_id": service, "service_name": format!("{service}-name"), "app_id": app},
            }))
            .tokens(model, input, input / 2)
            .latency_ms(ms)
    };
    ingest(
        c,
        &[
            call("a", "qwen-max", 1, "svco-chat", "1001", 100, 200),
            call("b", "qwen-max", 1, "svco-chat", "1002", 200, 400).error("boom"),
            call("c", "qwen-max", 1, "svco-search", "1001", 300, 600),
            call("d", "qwen-plus", 2, "svco-search", "1001", 400, 800),
        ],
    )
    .await;
    let (start, end) = (
        stamp(at - Duration::minutes(5)),
        stamp(at + Duration::minutes(5)),
    );

    let ali = {
        let python = python.clone();
        let args: Vec<String> = vec![
            c.host().to_owned(),
            fixture::ACME_ALIBABA.id.into(),
            fixture::ACME_ALIBABA.secret.into(),
            start.clone(),
            end.clone(),
        ];
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_script(&python, "alibaba_metrics.py", &args, &[])
        })
        .await
        .unwrap()
    };
    assert_eq!(ali["status"], 200);
    assert_eq!(ali["whole"]["success"], true);
    let whole = &ali["whole"]["data"][0];
    assert_eq!(whole["totalCalls"], 4);
    assert_eq!(whole["successRate"], 75.0);
    assert_eq!(whole["avgResponseTime"], 500.0);
    assert_eq!(whole["inputTokens"], 1000);
    assert_eq!(whole["outputTokens"], 500);
    let grouped = &ali["grouped"];
    assert_eq!(grouped["totalCount"], 2);
    let totals: Vec<&Value> = grouped["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["totalCalls"])
        .collect();
    assert_eq!(
        totals,
        [&json!(3), &json!(1)],
        "ordered by totalCalls DESC: {grouped}"
    );
    assert_eq!(ali["preset"]["data"][0]["totalCalls"], 4);
    assert_eq!(ali["preset"]["maxResults"], 1);
    assert_eq!(
        ali["wrong_secret"]["code"], "SignatureDoesNotMatch",
        "{}",
        ali["wrong_secret"]
    );

    let env = [
        ("QIANFAN_CONSOLE_API_BASE_URL", c.base.clone()),
        ("QIANFAN_ACCESS_KEY", fixture::ACME_QIANFAN.id.to_owned()),
        (
            "QIANFAN_SECRET_KEY",
            fixture::ACME_QIANFAN.secret.to_owned(),
        ),
    ];
    let qf = tokio::task::spawn_blocking(move || {
        run_script(
            &python,
            "qianfan_metric.py",
            &[&start, &end, "svco-search", "1002"],
            &env,
        )
    })
    .await
    .unwrap();
    let metric = |input: i64, ok: i64, failed: i64| {
        json!({"inputTokensTotal": input, "outputTokensTotal": input / 2, "tokensTotal": input + input / 2,
               "succeedCallTotal": ok, "failureCallTotal": failed, "callTotal": ok + failed})
    };
    assert_eq!(
        qf["all"]["result"]["serviceList"],
        json!([
            {"serviceId": "svco-chat", "serviceName": "svco-chat-name", "appList": [
                {"appId": "1001", "metric": metric(100, 1, 0)},
                {"appId": "1002", "metric": metric(200, 0, 1)},
            ]},
            {"serviceId": "svco-search", "serviceName": "svco-search-name", "appList": [
                {"appId": "1001", "metric": metric(700, 2, 0)},
            ]},
        ])
    );
    assert_eq!(
        qf["service"]["result"]["serviceList"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        qf["service"]["result"]["serviceList"][0]["serviceId"],
        "svco-search"
    );
    assert_eq!(
        qf["app"]["result"]["serviceList"][0]["appList"],
        json!([{"appId": "1002", "metric": metric(200, 0, 1)}])
    );
    let refused = qf["wrong_secret"]["message"].as_str().unwrap_or_default();
    assert!(
        refused.contains("SignatureDoesNotMatch"),
        "{}",
        qf["wrong_secret"]
    );
    stack.stop().await;
}

#[tokio::test]
async fn spans_from_the_python_otlp_http_exporter_reach_every_dialect() {
    let python = tokio::task::spawn_blocking(sdk_python).await.unwrap();
    let stack = TestStack::start().await;
    let c = &stack.client;
    let args = [
        c.base.clone(),
        fixture::ACME_WEAVE_KEY.to_owned(),
        PROJECT.to_owned(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_script(&python, "otlp_export.py", &args, &[])
    })
    .await
    .unwrap();
    assert_eq!(out["exported"], 3);

    let weave = stats(
        c,
        json!({
            "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z", "granularity": 3600,
            "call_metrics": [{"metric": "call_count"}, {"metric": "error_count"}, {"metric": "latency_ms", "aggregations": ["max"]}],
            "usage_metrics": [{"metric": "input_tokens"}, {"metric": "output_tokens"}],
            "filter": {"trace_roots_only": false},
        }),
    )
    .await;
    let bucket = &weave["call_buckets"][0];
    assert_eq!(
        (
            bucket["sum_call_count"].clone(),
            bucket["sum_error_count"].clone()
        ),
        (json!(3), json!(1)),
        "{weave}"
    );
    assert_eq!(bucket["max_latency_ms"], 2000.0);
    let models: Vec<(Value, Value)> = weave["usage_buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["model"].clone(), u["sum_input_tokens"].clone()))
        .collect();
    assert_eq!(
        models,
        [
            (json!("gpt-4o-mini"), json!(40)),
            (json!("gpt-4o-mini-2024-07-18"), json!(200))
        ]
    );
    let roots = stats(
        c,
        json!({"start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z", "granularity": 3600,
        "call_metrics": [{"metric": "call_count"}], "filter": {"trace_roots_only": true}}),
    )
    .await;
    assert_eq!(
        roots["call_buckets"][0]["sum_call_count"], 1,
        "the agent span is the only root"
    );

    let ali = alibaba_data(
        c.alibaba(
            &fixture::ACME_ALIBABA,
            "startTime=2024-05-01T10:00:00Z&endTime=2024-05-01T11:00:00Z&groupBy=modelId",
        )
        .await,
    );
    let nine = ali
        .iter()
        .find(|d| d["modelId"] == 9)
        .unwrap_or_else(|| panic!("{ali:?}"));
    assert_eq!(
        (
            nine["totalCalls"].clone(),
            nine["inputTokens"].clone(),
            nine["avgResponseTime"].clone()
        ),
        (json!(1), json!(200), json!(800.0))
    );
    let qf = c
        .qianfan(&fixture::ACME_QIANFAN, &json!({"serviceId": ["svco-otel"], "startTime": "2024-05-01T10:00:00Z", "endTime": "2024-05-01T10:59:00Z"}))
        .await
        .ok();
    assert_eq!(
        qf["result"]["serviceList"][0]["appList"][0],
        json!({"appId": "42", "metric": {"inputTokensTotal": 240, "outputTokensTotal": 50, "tokensTotal": 290,
               "succeedCallTotal": 2, "failureCallTotal": 1, "callTotal": 3}})
    );
    stack.stop().await;
}
