//! Errors the router itself raises (wrong method, oversized body) still come
//! in the envelope of the dialect whose route was asked.

use crate::support::*;
use polymeter_tests::{fixture, json, TestStack};
use reqwest::Method;

#[tokio::test]
async fn a_wrong_method_is_405_in_each_dialects_envelope() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let weave = c.get("/calls/stats").await;
    assert!(weave.reason(405).contains("POST"), "{}", weave.body);
    let alibaba = c
        .send_with(
            Method::POST,
            "/api/v1/modelRouter/open/observation/metrics",
            Default::default(),
            vec![],
        )
        .await;
    assert!(alibaba_error(&alibaba, 405, "UnsupportedHTTPMethod").contains("GET"));
    let qianfan = c
        .send_with(
            Method::GET,
            "/v2/service?Action=DescribeServiceMetric",
            Default::default(),
            vec![],
        )
        .await;
    assert!(qianfan_error(&qianfan, 405, "MethodNotAllowed").contains("POST"));
    stack.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_413_in_each_dialects_envelope() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    // One byte over the gateway's 64 MiB limit, as a JSON string.
    let huge = format!("\"{}\"", "x".repeat(64 << 20));
    let weave = c.post_raw("/call/upsert_batch", huge.clone()).await;
    assert!(weave.reason(413).contains("request body"), "{}", weave.body);
    // Signed: the caller is checked before its body is read (bce-auth-v1
    // does not sign the body), so the size is what is refused.
    let qianfan = c
        .qianfan_raw(&fixture::ACME_QIANFAN, huge.into_bytes(), 1800)
        .await;
    qianfan_error(&qianfan, 413, "RequestEntityTooLarge");
    // Alibaba signs the body's hash, so its body is read before the caller
    // is known — and the metrics action needs none, so it is capped small.
    let alibaba = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/modelRouter/open/observation/metrics",
            c.base
        ))
        .body(vec![b' '; 100 << 10])
        .send()
        .await
        .unwrap();
    assert_eq!(alibaba.status(), 400);
    let body: serde_json::Value = alibaba.json().await.unwrap();
    assert_eq!(body["Code"], "InvalidParameter", "{body}");
    let message = body["Message"].as_str().unwrap();
    assert!(message.contains("request body: longer than"), "{message}");
    // The stack still answers afterwards.
    c.post(
        "/calls/stats",
        &stats_body(json!({"start": "2024-05-01T00:00:00Z"})),
    )
    .await
    .ok();
    stack.stop().await;
}
