//! One dataset, ingested once, gives the same numbers in every query dialect:
//! Weave `/calls/stats`, Alibaba and Qianfan agree on calls, errors, tokens
//! and average latency over the same range.

use crate::support::*;
use chrono::Duration;
use polymeter_tests::{fixture, json, TestStack};
use serde_json::Value;

fn n(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test]
async fn weave_alibaba_and_qianfan_agree_on_one_dataset() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let base = t("2024-05-01T10:00:00Z");
    let mut calls = Vec::new();
    for i in 0..40i64 {
        let model = ["qwen-max", "ernie-4.0", "gpt-4o"][(i % 3) as usize];
        let mut call = Call::new(&format!("c{i}"), base + Duration::seconds(i * 83))
            .attributes(json!({
                "qianfan": {"service_id": format!("svco-{}", i % 4), "app_id": (i % 3).to_string()},
                "alibaba": {"model_id": i % 3, "client_id": i % 5},
            }))
            .latency_ms(50 + (i * 37) % 900);
        call = if i % 7 == 0 {
            // Two models in one call: tokens add up over both in every dialect.
            call.usage(json!({
                model: {"input_tokens": 10 * i, "output_tokens": i, "requests": 1},
                "embed-v1": {"input_tokens": 5, "output_tokens": 0, "requests": 1},
            }))
        } else {
            call.tokens(model, 10 * i + 3, i + 1)
        };
        if i % 6 == 1 {
            call = call.error("rate limited");
        }
        calls.push(call);
    }
    // Outside the range on both sides.
    calls.push(Call::new("before", base - Duration::seconds(1)).tokens("qwen-max", 999, 9));
    calls.push(Call::new("after", t("2024-05-01T11:00:00Z")).tokens("qwen-max", 999, 9));
    ingest(c, &calls).await;

    let weave = stats(
        c,
        json!({
            "start": "2024-05-01T10:00:00Z",
            "end": "2024-05-01T11:00:00Z",
            "granularity": 3600,
            "call_metrics": [
                {"metric": "call_count"},
                {"metric": "error_count"},
                {"metric": "latency_ms", "aggregations": ["avg"]},
            ],
            "usage_metrics": [{"metric": "input_tokens"}, {"metric": "output_tokens"}],
        }),
    )
    .await;
    let bucket = &weave["call_buckets"][0];
    let (calls_w, errors_w, latency_w) = (
        n(&bucket["sum_call_count"]),
        n(&bucket["sum_error_count"]),
        n(&bucket["avg_latency_ms"]),
    );
    let usage = weave["usage_buckets"].as_array().unwrap();
    let input_w: f64 = usage.iter().map(|u| n(&u["sum_input_tokens"])).sum();
    let output_w: f64 = usage.iter().map(|u| n(&u["sum_output_tokens"])).sum();
    assert_eq!(calls_w, 40.0);

    let ali = alibaba_data(
        c.alibaba(
            &fixture::ACME_ALIBABA,
            "startTime=2024-05-01T10:00:00Z&endTime=2024-05-01T11:00:00Z",
        )
        .await,
    );
    let a = &ali[0];
    assert_eq!(n(&a["totalCalls"]), calls_w);
    assert!((n(&a["totalCalls"]) * (1.0 - n(&a["successRate"]) / 100.0) - errors_w).abs() < 1e-9);
    assert_eq!(n(&a["inputTokens"]), input_w);
    assert_eq!(n(&a["outputTokens"]), output_w);
    assert!(
        (n(&a["avgResponseTime"]) - latency_w).abs() < 1e-9,
        "{a} vs {latency_w}"
    );

    // Grouped answers add up to the same totals.
    let by_model = alibaba_data(
        c.alibaba(&fixture::ACME_ALIBABA, "startTime=2024-05-01T10:00:00Z&endTime=2024-05-01T11:00:00Z&groupBy=modelId&pageSize=100")
            .await,
    );
    assert_eq!(
        by_model.iter().map(|d| n(&d["totalCalls"])).sum::<f64>(),
        calls_w
    );
    assert_eq!(
        by_model.iter().map(|d| n(&d["inputTokens"])).sum::<f64>(),
        input_w
    );

    // Qianfan's range is whole minutes, the end minute included: 10:00–10:59.
    let q = c
        .qianfan(
            &fixture::ACME_QIANFAN,
            &json!({"startTime": "2024-05-01T10:00:00Z", "endTime": "2024-05-01T10:59:00Z"}),
        )
        .await
        .ok();
    let apps: Vec<Value> = q["result"]["serviceList"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["appList"].as_array().unwrap().clone())
        .map(|a| a["metric"].clone())
        .collect();
    assert_eq!(apps.len(), 12, "4 services × 3 apps: {q}");
    let sum = |k: &str| apps.iter().map(|m| n(&m[k])).sum::<f64>();
    assert_eq!(sum("callTotal"), calls_w);
    assert_eq!(sum("failureCallTotal"), errors_w);
    assert_eq!(sum("succeedCallTotal"), calls_w - errors_w);
    assert_eq!(sum("inputTokensTotal"), input_w);
    assert_eq!(sum("outputTokensTotal"), output_w);
    assert_eq!(sum("tokensTotal"), input_w + output_w);
    stack.stop().await;
}
