//! Cost: priced from the shipped table at query time, cached
//! tokens counted once at their own price, unknown models at 0, project
//! overrides through the API and the CLI applying to past calls too.

use crate::support::*;
use polymeter_tests::{fixture, json, Client, TestStack};
use serde_json::Value;

/// `usage_buckets` of one hour-long bucket, keyed by model.
async fn costs(c: &Client) -> Value {
    let body = stats(
        c,
        json!({
            "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z", "granularity": 3600,
            "usage_metrics": [{"metric": "input_cost"}, {"metric": "output_cost"}, {"metric": "total_cost"}],
        }),
    )
    .await;
    let mut by_model = serde_json::Map::new();
    for u in body["usage_buckets"].as_array().unwrap() {
        by_model.insert(u["model"].as_str().unwrap().to_owned(), u.clone());
    }
    Value::Object(by_model)
}

fn close(v: &Value, expected: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - expected).abs() < 1e-12)
}

async fn dataset(c: &Client) {
    ingest(
        c,
        &[
            // gpt-4o in the shipped table: input 2.5e-6, output 1e-5, cache read
            // 1.25e-6, cache write (none listed) = input.
            Call::new("a", t("2024-05-01T10:00:00Z")).usage(json!({"gpt-4o": {
                "input_tokens": 1000, "output_tokens": 200,
                "cache_read_input_tokens": 400, "cache_creation_input_tokens": 100}})),
            Call::new("b", t("2024-05-01T10:01:00Z"))
                .usage(json!({"my-private-model": {"input_tokens": 50, "output_tokens": 5}})),
        ],
    )
    .await;
}

#[tokio::test]
async fn cost_is_priced_from_the_table_with_cache_tokens_counted_once() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    dataset(c).await;
    let got = costs(c).await;
    let gpt = &got["gpt-4o"];
    // input (1000 − 400 − 100) × 2.5e-6 = 0.00125; output 200 × 1e-5 = 0.002;
    // total 0.00125 + 0.002 + 400 × 1.25e-6 + 100 × 2.5e-6 = 0.004
    assert!(close(&gpt["sum_input_cost"], 0.00125), "{gpt}");
    assert!(close(&gpt["sum_output_cost"], 0.002), "{gpt}");
    assert!(close(&gpt["sum_total_cost"], 0.004), "{gpt}");
    let unknown = &got["my-private-model"];
    assert_eq!(
        (
            unknown["sum_total_cost"].clone(),
            unknown["sum_input_cost"].clone()
        ),
        (json!(0.0), json!(0.0)),
        "{unknown}"
    );
    // Unknown models are counted where operators look.
    let metrics = reqwest::get(format!("{}/metrics", c.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("polymeter_unpriced_usage_total"),
        "{metrics}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_project_override_reprices_past_calls_until_removed() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    dataset(c).await;
    let path = format!("/v1/projects/{PROJECT}/prices/my-private-model");
    let set = c
        .send_with(
            reqwest::Method::PUT,
            &path,
            basic_json(),
            json!({"input": 1e-6, "output": 4e-6})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let got = costs(c).await;
    // 50 × 1e-6 + 5 × 4e-6 = 0.00007
    assert!(
        close(&got["my-private-model"]["sum_total_cost"], 0.00007),
        "{got}"
    );
    assert!(
        close(&got["gpt-4o"]["sum_total_cost"], 0.004),
        "other models keep the table's price: {got}"
    );

    let lookup = c
        .send_with(reqwest::Method::GET, &path, basic_json(), vec![])
        .await
        .ok();
    assert_eq!(lookup["source"], "override");
    assert_eq!(
        lookup["price"]["cache_read"], 1e-6,
        "cache prices default to the input price"
    );
    let table = c
        .send_with(
            reqwest::Method::GET,
            &format!("/v1/projects/{PROJECT}/prices/openai/gpt-4o-2024-08-06"),
            basic_json(),
            vec![],
        )
        .await
        .ok();
    assert_eq!(
        (table["source"].clone(), table["price"]["input"].clone()),
        (json!("table"), json!(2.5e-6))
    );
    let list = c
        .send_with(
            reqwest::Method::GET,
            &format!("/v1/projects/{PROJECT}/prices"),
            basic_json(),
            vec![],
        )
        .await
        .ok();
    assert_eq!(
        list["overrides"]["my-private-model"]["output"], 4e-6,
        "{list}"
    );
    // Another project of the same tenant is not affected.
    ingest_into(
        c,
        "acme/other",
        &[Call::new("x", t("2024-05-01T10:00:00Z")).tokens("my-private-model", 50, 5)],
    )
    .await;
    let other = c.post("/calls/stats", &json!({"project_id": "acme/other", "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z", "granularity": 3600, "usage_metrics": [{"metric": "total_cost"}]})).await.ok();
    assert_eq!(other["usage_buckets"][0]["sum_total_cost"], 0.0);

    let bad = c
        .send_with(
            reqwest::Method::PUT,
            &path,
            basic_json(),
            json!({"input": -1, "output": 0}).to_string().into_bytes(),
        )
        .await;
    assert!(bad.reason(400).contains("input"), "{}", bad.body);
    let globex = c.with_weave_key(Some(fixture::GLOBEX_WEAVE_KEY));
    let refused = globex
        .send_with(
            reqwest::Method::PUT,
            &path,
            basic_json_for(fixture::GLOBEX_WEAVE_KEY),
            json!({"input": 0, "output": 0}).to_string().into_bytes(),
        )
        .await;
    refused.reason(403);

    let deleted = c
        .send_with(reqwest::Method::DELETE, &path, basic_json(), vec![])
        .await;
    assert_eq!(deleted.status, 200);
    assert_eq!(costs(c).await["my-private-model"]["sum_total_cost"], 0.0);
    c.send_with(reqwest::Method::DELETE, &path, basic_json(), vec![])
        .await
        .reason(404);
    stack.stop().await;
}

fn basic_json_for(key: &str) -> reqwest::header::HeaderMap {
    use base64::Engine;
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("content-type", "application/json".parse().unwrap());
    let token = base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"));
    h.insert("authorization", format!("Basic {token}").parse().unwrap());
    h
}

fn basic_json() -> reqwest::header::HeaderMap {
    basic_json_for(fixture::ACME_WEAVE_KEY)
}

// The CLI runs as a blocking child process talking to this process's stats
// service, so the runtime needs a second worker to serve it meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_cache_attributes_are_priced_and_the_cli_manages_overrides() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    // OTLP/JSON with the current conventions' cache attribute (inclusive in input).
    let body = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
    "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "chat",
    "startTimeUnixNano": "1714557600000000000", "endTimeUnixNano": "1714557601000000000",
    "attributes": [
        {"key": "gen_ai.response.model", "value": {"stringValue": "gpt-4o-mini-2024-07-18"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "10000"}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "1000"}},
        {"key": "gen_ai.usage.cache_read.input_tokens", "value": {"intValue": "8000"}}
    ]}]}]}]});
    let mut headers = basic_json();
    headers.insert("project_id", PROJECT.parse().unwrap());
    c.send_with(
        reqwest::Method::POST,
        "/otel/v1/traces",
        headers,
        body.to_string().into_bytes(),
    )
    .await
    .ok();
    let got = costs(c).await;
    // gpt-4o-mini: input 1.5e-7, output 6e-7, cache read 7.5e-8.
    // input 2000 × 1.5e-7 = 0.0003; output 1000 × 6e-7 = 0.0006; total + 8000 × 7.5e-8 = 0.0015
    let m = &got["gpt-4o-mini-2024-07-18"];
    assert!(
        close(&m["sum_input_cost"], 0.0003)
            && close(&m["sum_output_cost"], 0.0006)
            && close(&m["sum_total_cost"], 0.0015),
        "{m}"
    );

    let cli = |args: &[&str]| {
        let out = std::process::Command::new(polymeter_binary())
            .args([
                "prices",
                "--stats-url",
                &format!("http://{}", stack.stack.stats),
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = cli(&["lookup", "gpt-4o-mini-2024-07-18"]);
    assert!(ok && out.contains("1.5e-7"), "{out}");
    let (ok, out) = cli(&["lookup", "no-such-model"]);
    assert!(!ok && out.contains("not in the price table"), "{out}");
    let scope = [
        "--tenant",
        "acme",
        "--project",
        PROJECT,
        "--model",
        "gpt-4o-mini-2024-07-18",
    ];
    let (ok, out) = cli(&[
        &["set"][..],
        &scope,
        &["--input", "0", "--output", "0", "--cache-read", "0"],
    ]
    .concat());
    assert!(ok, "{out}");
    assert_eq!(
        costs(c).await["gpt-4o-mini-2024-07-18"]["sum_total_cost"],
        0.0
    );
    let (ok, out) = cli(&["list", "--tenant", "acme", "--project", PROJECT]);
    assert!(ok && out.contains("gpt-4o-mini-2024-07-18"), "{out}");
    let (ok, _) = cli(&[&["unset"][..], &scope].concat());
    assert!(ok);
    assert!(close(
        &costs(c).await["gpt-4o-mini-2024-07-18"]["sum_total_cost"],
        0.0015
    ));
    stack.stop().await;
}
