//! Requests a hostile or careless client sends, by class: each is answered
//! with the dialect's 4xx naming what is wrong — never a panic, a dropped
//! connection or a 5xx.

use crate::support::*;
use polymeter_tests::{fixture, json, TestStack};

/// Every time field has one accepted range (1970 to 2200); outside it the
/// answer is a 400 naming the field, on every route that takes a time.
#[tokio::test]
async fn times_outside_1970_to_2200_are_refused_by_name_everywhere() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    for (field, value) in [
        ("start", "+262142-12-31T00:00:00"),
        ("start", "0000-01-01T00:00:00Z"),
        ("end", "2300-01-01T00:00:00Z"),
        ("end", "9999-12-31T23:59:59Z"),
    ] {
        let mut body =
            stats_body(json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"}));
        body[field] = json!(value);
        let answer = c.post("/calls/stats", &body).await;
        let reason = answer.reason(400);
        assert!(
            reason.starts_with(field) && reason.contains("2200"),
            "{field}={value}: {reason}"
        );
    }
    let start = |at: &str| {
        json!({"start": {"project_id": PROJECT, "op_name": "chat",
        "started_at": at, "attributes": {}, "inputs": {}}})
    };
    let reason = c
        .post("/call/start", &start("2300-01-01T00:00:00Z"))
        .await
        .reason(400)
        .to_owned();
    assert!(
        reason.contains("started_at") && reason.contains("2200"),
        "{reason}"
    );
    let batch = json!({"batch": [Call::new("late", t("2024-05-01T10:00:00Z"))
        .set("ended_at", json!("2999-01-01T00:00:00Z")).body]});
    let answer = c
        .post(&format!("/v2/{PROJECT}/calls/complete"), &batch)
        .await;
    assert!(answer.reason(400).contains("ended_at"), "{}", answer.body);
    let answer = c
        .post(
            "/feedback/aggregate",
            &json!({"project_id": PROJECT, "after_ms": -5, "before_ms": 10}),
        )
        .await;
    assert!(answer.reason(400).contains("after_ms"), "{}", answer.body);
    // An open upper bound reads as "everything", not as an error.
    let answer = c
        .post(
            "/feedback/aggregate",
            &json!({"project_id": PROJECT, "after_ms": 0,
               "before_ms": 9_223_372_036_854_775_807i64}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let answer = c
        .alibaba(
            &fixture::ACME_ALIBABA,
            "startTime=0000-01-01T00:00:00Z&endTime=2024-05-02T00:00:00Z",
        )
        .await;
    assert!(alibaba_error(&answer, 400, "InvalidParameter").starts_with("startTime"));
    for end in [
        "2300-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
    ] {
        let answer = c
            .qianfan(
                &fixture::ACME_QIANFAN,
                &json!({"startTime": "2024-05-01T00:00:00Z", "endTime": end}),
            )
            .await;
        let message = qianfan_error(&answer, 400, "InvalidParameter");
        assert!(message.starts_with("endTime"), "{end}: {message}");
    }
    stack.stop().await;
}

/// A bce-auth-v1 signature whose expiration is the largest number there is
/// is simply one that has not expired — not a panic in date arithmetic.
#[tokio::test]
async fn a_bce_expiration_of_i64_max_is_no_panic() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let body = json!({"startTime": "2024-05-01T00:00:00Z", "endTime": "2024-05-02T00:00:00Z"});
    let answer = c
        .qianfan_raw(
            &fixture::ACME_QIANFAN,
            body.to_string().into_bytes(),
            i64::MAX,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    stack.stop().await;
}

/// An error message that would quote a huge value is cut before it travels
/// between services, so the client gets its 400, not a broken HTTP/2 stream.
#[tokio::test]
async fn huge_values_in_errors_stay_4xx() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let huge = "9".repeat(20_000);
    let answer = c
        .post_raw(
            "/call/end",
            format!(r#"{{"end": {{"project_id": "{PROJECT}", "id": "x", "ended_at": "2024-05-01T10:00:00Z",
                "summary": {{"usage": {{"gpt-4o": {{"input_tokens": {huge}}}}}}}}}}}"#),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let long_zone = "A".repeat(100_000);
    let answer = c
        .post(
            "/calls/stats",
            &stats_body(json!({"start": "2024-05-01T00:00:00Z",
            "end": "2024-05-02T00:00:00Z", "timezone": long_zone})),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(
        answer.body.to_string().len() < 4096,
        "the answer quotes too much"
    );
    stack.stop().await;
}

/// Questions whose cost would grow without bound are refused up front,
/// naming the field: thousands of percentiles, measures × buckets past the
/// cap, filter lists of hundreds of thousands of values.
#[tokio::test]
async fn amplifying_questions_are_refused_up_front() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let percentiles: Vec<f64> = (0..10_000).map(|i| i as f64 / 100.0).collect();
    let answer = c
        .post(
            "/calls/stats",
            &stats_body(json!({"start": "2024-05-01T00:00:00Z",
            "end": "2024-05-02T00:00:00Z", "granularity": 9,
            "call_metrics": [{"metric": "latency_ms", "percentiles": percentiles}]})),
        )
        .await;
    let reason = answer.reason(400).to_owned();
    assert!(reason.contains("percentiles"), "{reason}");
    let scorers: Vec<String> = (0..200_000).map(|i| format!("s{i}*")).collect();
    let answer = c
        .post(
            "/feedback/aggregate",
            &json!({"project_id": PROJECT, "after_ms": 0,
            "before_ms": 4_000_000_000_000i64, "scorer_ids": scorers}),
        )
        .await;
    assert!(answer.reason(400).contains("scorer_ids"), "{}", answer.body);
    let ids: Vec<String> = (0..5_000).map(|i| format!("c{i}")).collect();
    let answer = c
        .post(
            "/calls/stats",
            &stats_body(json!({"start": "2024-05-01T00:00:00Z",
            "end": "2024-05-02T00:00:00Z", "filter": {"call_ids": ids}})),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    stack.stop().await;
}

/// An unauthenticated client that announces a huge body and then stalls is
/// refused from its headers alone: the gateway never waits for, or buffers,
/// the body of a caller it has not admitted.
#[tokio::test]
async fn credentials_are_checked_before_a_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = TestStack::start().await;
    let host = stack.client.host().to_owned();
    for (path, auth) in [
        ("/otel/v1/traces", "Basic YXBpOm5vdC1hLWtleQ=="),
        (
            "/v2/service?Action=DescribeServiceMetric",
            "bce-auth-v1/nobody/2024-05-01T00:00:00Z/1800/host/00",
        ),
    ] {
        let mut conn = tokio::net::TcpStream::connect(&host).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-protobuf\r\n\
             Authorization: {auth}\r\nContent-Length: 60000000\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), conn.read(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{path}: no answer while the body was outstanding"))
            .unwrap();
        let text = String::from_utf8_lossy(&answer[..n]);
        assert!(
            text.starts_with("HTTP/1.1 401") || text.starts_with("HTTP/1.1 403"),
            "{path}: {text}"
        );
    }
    stack.stop().await;
}

/// One JSON document per body: trailing data after a valid document is
/// refused, on the Weave routes and on Qianfan alike.
#[tokio::test]
async fn trailing_data_after_a_json_document_is_refused() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let body = format!(
        "{} xyz",
        stats_body(json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z"}))
    );
    let answer = c.post_raw("/calls/stats", body).await;
    assert!(answer.reason(400).contains("trailing"), "{}", answer.body);
    let body = br#"{"startTime": "2024-05-01T00:00:00Z", "endTime": "2024-05-02T00:00:00Z"} xyz"#;
    let answer = c
        .qianfan_raw(&fixture::ACME_QIANFAN, body.to_vec(), 1800)
        .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    stack.stop().await;
}

/// One validation per record whatever the route: an end before its start is
/// refused when the halves come separately too (either order, either store),
/// as `/calls/complete` and OTLP refuse it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_before_its_start_is_refused_on_every_route_and_store() {
    for store in [
        polymeter_tests::Store::Embedded,
        polymeter_tests::Store::ClickHouse,
    ] {
        let stack = TestStack::start_with_store(store).await;
        let c = &stack.client;
        let start = |id: &str, at: &str| {
            json!({"start": {"project_id": PROJECT, "id": id, "trace_id": "t",
            "op_name": "chat", "started_at": at, "attributes": {}, "inputs": {}}})
        };
        let end = |id: &str, at: &str| json!({"end": {"project_id": PROJECT, "id": id, "ended_at": at, "summary": {}}});
        c.post("/call/start", &start("a", "2024-05-01T10:00:00Z"))
            .await
            .ok();
        let answer = c.post("/call/end", &end("a", "2024-05-01T09:59:00Z")).await;
        assert!(
            answer.reason(400).contains("before started_at"),
            "{store:?}: {}",
            answer.body
        );
        c.post("/call/end", &end("b", "2024-05-01T09:59:00Z"))
            .await
            .ok();
        let answer = c
            .post("/call/start", &start("b", "2024-05-01T10:00:00Z"))
            .await;
        assert!(
            answer.reason(400).contains("before started_at"),
            "{store:?}: {}",
            answer.body
        );
        let batch = json!({"batch": [
            {"mode": "start", "req": start("c", "2024-05-01T10:00:00Z")},
            {"mode": "end", "req": end("c", "2024-05-01T09:00:00Z")},
        ]});
        let answer = c.post("/call/upsert_batch", &batch).await;
        assert_eq!(answer.status, 400, "{store:?}: {}", answer.body);
        // Nothing reports a negative latency.
        let body = stats_body(
            json!({"start": "2024-05-01T00:00:00Z", "end": "2024-05-02T00:00:00Z",
            "granularity": 86400, "call_metrics": [{"metric": "latency_ms", "aggregations": ["min"]}]}),
        );
        let answer = c.post("/calls/stats", &body).await.ok();
        let min = &answer["call_buckets"][0]["min_latency_ms"];
        assert!(
            min.is_null() || min.as_f64().unwrap() >= 0.0,
            "{store:?}: {answer}"
        );
        stack.stop().await;
    }
}

/// Every string and list is bounded where it enters, with a 400 naming it;
/// bytes that are not UTF-8 are refused even in a field no one reads.
#[tokio::test]
async fn long_values_and_bad_bytes_are_refused_by_name() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let long = "m".repeat(20_000);
    let end = json!({"end": {"project_id": PROJECT, "id": "x", "ended_at": "2024-05-01T10:00:00Z",
        "summary": {"usage": {long.clone(): {"input_tokens": 1}}}}});
    let answer = c.post("/call/end", &end).await;
    assert!(
        answer.reason(400).contains("usage model"),
        "{}",
        answer.body
    );
    let start = json!({"start": {"project_id": PROJECT, "op_name": long, "started_at": "2024-05-01T10:00:00Z",
        "attributes": {}, "inputs": {}}});
    let answer = c.post("/call/start", &start).await;
    assert!(answer.reason(400).contains("op_name"), "{}", answer.body);
    let project = format!("acme/{}", "p".repeat(100_000));
    let answer = c
        .post(
            "/calls/stats",
            &json!({"project_id": project, "start": "2024-05-01T00:00:00Z"}),
        )
        .await;
    assert!(
        answer.status == 400 || answer.status == 403,
        "{}",
        answer.body
    );
    assert!(answer.body.to_string().len() < 4096);
    let mut body =
        br#"{"project_id": "acme/bot", "start": "2024-05-01T00:00:00Z", "junk": ""#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#""}"#);
    let answer = c
        .send_with(
            reqwest::Method::POST,
            "/calls/stats",
            {
                let mut h = reqwest::header::HeaderMap::new();
                h.insert("content-type", "application/json".parse().unwrap());
                h.insert(
                    "authorization",
                    format!(
                        "Basic {}",
                        base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            format!("api:{}", fixture::ACME_WEAVE_KEY)
                        )
                    )
                    .parse()
                    .unwrap(),
                );
                h
            },
            body,
        )
        .await;
    assert!(answer.reason(400).contains("UTF-8"), "{}", answer.body);
    stack.stop().await;
}
