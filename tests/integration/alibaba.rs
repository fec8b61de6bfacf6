//! Alibaba Model Router `GET /api/v1/modelRouter/open/observation/metrics`
//!: ACS3-HMAC-SHA256 refusals in Alibaba's envelope, and the
//! metrics the dialect answers.

use crate::support::*;
use chrono::{Duration, Utc};
use polymeter_tests::fixture::{self, AccessKey};
use polymeter_tests::signing::{acs3_headers, nonce, ALIBABA_PATH};
use polymeter_tests::{json, Answer, Client, TestStack};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::Value;

/// Signs `signed_query` but sends `sent_query`, with `edit` applied to the
/// headers after signing.
async fn tampered(
    client: &Client,
    key: &AccessKey,
    signed_query: &str,
    sent_query: &str,
    body: &[u8],
    edit: impl FnOnce(&mut reqwest::header::HeaderMap),
) -> Answer {
    let mut headers = acs3_headers(client.host(), key, signed_query, b"", Utc::now(), &nonce());
    edit(&mut headers);
    client
        .send_with(
            Method::GET,
            &format!("{ALIBABA_PATH}?{sent_query}"),
            headers,
            body.to_vec(),
        )
        .await
}

#[tokio::test]
async fn bad_signatures_and_credentials_are_refused_in_alibabas_envelope() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let key = &fixture::ACME_ALIBABA;
    let q = "timeRange=24h";

    let m = alibaba_error(
        &tampered(c, key, q, "timeRange=30d", b"", |_| {}).await,
        400,
        "SignatureDoesNotMatch",
    );
    assert!(m.contains("signature"), "{m}");
    let m = alibaba_error(
        &tampered(c, key, q, q, b"{\"x\":1}", |_| {}).await,
        400,
        "SignatureDoesNotMatch",
    );
    assert!(m.contains("x-acs-content-sha256"), "{m}");
    alibaba_error(
        &tampered(c, key, q, q, b"", |h| {
            h.insert("x-acs-version", HeaderValue::from_static("20990101"));
        })
        .await,
        400,
        "SignatureDoesNotMatch",
    );
    let m = alibaba_error(
        &tampered(c, key, q, q, b"", |h| {
            h.insert("x-acs-injected", HeaderValue::from_static("1"));
        })
        .await,
        400,
        "IncompleteSignature",
    );
    assert!(m.contains("x-acs-injected"), "{m}");
    alibaba_error(
        &tampered(c, key, q, q, b"", |h| {
            h.remove("authorization");
        })
        .await,
        400,
        "IncompleteSignature",
    );
    // Signed with the wrong secret.
    let wrong = AccessKey {
        id: key.id,
        secret: "not-the-secret",
    };
    alibaba_error(&c.alibaba(&wrong, q).await, 400, "SignatureDoesNotMatch");
    alibaba_error(
        &c.alibaba(
            &AccessKey {
                id: "LTAInobody",
                secret: "x",
            },
            q,
        )
        .await,
        404,
        "InvalidAccessKeyId.NotFound",
    );
    alibaba_error(
        &c.alibaba(&fixture::ACME_ALIBABA_DISABLED, q).await,
        400,
        "InvalidAccessKeyId.Inactive",
    );
    let m = alibaba_error(
        &c.alibaba(&fixture::ACME_ALIBABA_NO_PERMISSION, q).await,
        403,
        "B.Permission.DeniedException",
    );
    assert!(
        m.contains("aicontent:ModelRouterQueryObservationMetrics"),
        "{m}"
    );

    for skew in [Duration::minutes(-16), Duration::minutes(16)] {
        let headers = acs3_headers(c.host(), key, q, b"", Utc::now() + skew, &nonce());
        let answer = c
            .send_with(Method::GET, &format!("{ALIBABA_PATH}?{q}"), headers, vec![])
            .await;
        alibaba_error(&answer, 400, "InvalidTimeStamp.Expired");
    }
    let headers = acs3_headers(
        c.host(),
        key,
        q,
        b"",
        Utc::now() - Duration::minutes(14),
        &nonce(),
    );
    c.send_with(Method::GET, &format!("{ALIBABA_PATH}?{q}"), headers, vec![])
        .await
        .ok();

    // The same signed request twice: the second is a replay.
    let headers = acs3_headers(c.host(), key, q, b"", Utc::now(), &nonce());
    c.send_with(
        Method::GET,
        &format!("{ALIBABA_PATH}?{q}"),
        headers.clone(),
        vec![],
    )
    .await
    .ok();
    let replay = c
        .send_with(Method::GET, &format!("{ALIBABA_PATH}?{q}"), headers, vec![])
        .await;
    alibaba_error(&replay, 400, "SignatureNonceUsed");
    stack.stop().await;
}

/// Calls over two models, two clients and two API keys; one error each model.
async fn dataset(client: &Client) -> chrono::DateTime<Utc> {
    let at = Utc::now() - Duration::minutes(30);
    let call = |id: &str, model: &str, model_id: i64, client_id: i64, input: i64, ms: i64| {
        Call::new(id, at)
            .attributes(json!({"alibaba": {"model_id": model_id, "client_id": client_id, "api_key_id": client_id * 10, "resource_id": format!("res-{client_id}")}}))
            .tokens(model, input, input / 10)
            .latency_ms(ms)
    };
    ingest(
        client,
        &[
            call("a", "qwen-max", 1, 7, 100, 100),
            call("b", "qwen-max", 1, 7, 300, 300).error("boom"),
            call("c", "qwen-max", 1, 8, 200, 200),
            call("d", "qwen-plus", 2, 8, 50, 400),
            call("e", "qwen-plus", 2, 8, 50, 600).error("boom"),
            // Two hours old: outside 1h, inside 6h.
            Call::new("old", at - Duration::hours(2))
                .attributes(json!({"alibaba.model_id": 1}))
                .tokens("qwen-max", 1000, 0),
        ],
    )
    .await;
    at
}

#[tokio::test]
async fn the_whole_range_is_one_dto_with_rates_in_percent_and_times_in_ms() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    dataset(c).await;
    let data = alibaba_data(c.alibaba(&fixture::ACME_ALIBABA, "timeRange=1h").await);
    assert_eq!(data.len(), 1);
    let d = &data[0];
    assert_eq!(d["totalCalls"], 5);
    assert_eq!(d["successRate"], 60.0);
    assert_eq!(d["avgResponseTime"], 320.0);
    assert_eq!(d["inputTokens"], 700);
    assert_eq!(d["outputTokens"], 70);
    let six = alibaba_data(c.alibaba(&fixture::ACME_ALIBABA, "timeRange=6h").await);
    assert_eq!(six[0]["totalCalls"], 6);
    assert_eq!(six[0]["inputTokens"], 1700);
    // The default range is the last 24 hours; an empty range is still one element.
    assert_eq!(
        alibaba_data(c.alibaba(&fixture::ACME_ALIBABA, "").await)[0]["totalCalls"],
        6
    );
    let empty = alibaba_data(
        c.alibaba(
            &fixture::ACME_ALIBABA,
            "startTime=2020-01-01T00:00:00Z&endTime=2020-01-02T00:00:00Z",
        )
        .await,
    );
    assert_eq!(
        empty,
        vec![
            json!({"totalCalls": 0, "successRate": 0.0, "avgResponseTime": 0.0, "inputTokens": 0, "outputTokens": 0})
        ]
    );
    stack.stop().await;
}

#[tokio::test]
async fn grouped_ordered_filtered_and_paged() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let at = dataset(c).await;
    let key = &fixture::ACME_ALIBABA;

    let by_model = alibaba_data(c.alibaba(key, "timeRange=1h&groupBy=modelId").await);
    assert_eq!(by_model.len(), 2);
    assert_eq!(by_model[0]["modelId"], 1);
    assert_eq!(by_model[0]["modelName"], "qwen-max");
    assert_eq!(by_model[0]["totalCalls"], 3);
    assert!((by_model[0]["successRate"].as_f64().unwrap() - 200.0 / 3.0).abs() < 1e-9);
    assert_eq!(by_model[1]["modelId"], 2);
    assert_eq!(by_model[1]["avgResponseTime"], 500.0);

    let ordered = alibaba_data(
        c.alibaba(
            key,
            "timeRange=1h&groupBy=clientId&orderBy=avgResponseTime&orderDirection=DESC",
        )
        .await,
    );
    let clients: Vec<&Value> = ordered.iter().map(|d| &d["clientId"]).collect();
    assert_eq!(clients, [&json!(8), &json!(7)]);
    let asc = alibaba_data(
        c.alibaba(
            key,
            "timeRange=1h&groupBy=apiKeyId&orderBy=apiKeyId&orderDirection=ASC",
        )
        .await,
    );
    assert_eq!(asc[0]["apiKeyId"], 70);
    let by_resource = alibaba_data(c.alibaba(key, "timeRange=1h&groupBy=resourceId").await);
    assert_eq!(by_resource[0]["resourceId"], "res-7");

    let filtered = alibaba_data(c.alibaba(key, "timeRange=1h&clientId=8&modelId=1").await);
    assert_eq!(filtered[0]["totalCalls"], 1);

    let start = (at - Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let end = (at + Duration::minutes(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let custom = alibaba_data(
        c.alibaba(key, &format!("startTime={start}&endTime={end}"))
            .await,
    );
    assert_eq!(custom[0]["totalCalls"], 5);

    // Page numbers, with the total asked for in the SDK's spelling.
    let page = c
        .alibaba(
            key,
            "timeRange=1h&groupBy=clientId&pageIndex=2&pageSize=1&needTotalCount=True",
        )
        .await
        .ok();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["clientId"], 8);
    assert_eq!(
        (
            page["pageIndex"].clone(),
            page["pageSize"].clone(),
            page["totalCount"].clone()
        ),
        (json!(2), json!(1), json!(2))
    );
    assert_eq!(page["nextToken"], "");
    let no_total = c
        .alibaba(key, "timeRange=1h&groupBy=clientId&needTotalCount=false")
        .await
        .ok();
    assert!(no_total.get("totalCount").is_none());

    // Tokens: follow nextToken until it is empty.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let q = format!(
            "timeRange=1h&groupBy=modelId&maxResults=1&needTotalCount=true{}",
            if token.is_empty() {
                String::new()
            } else {
                format!("&nextToken={token}")
            }
        );
        let body = c.alibaba(key, &q).await.ok();
        assert_eq!(body["totalCount"], 2);
        seen.extend(
            body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["modelId"].clone()),
        );
        token = body["nextToken"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, [json!(1), json!(2)]);
    stack.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let cases = [
        ("timeRange=2h", "timeRange"),
        ("timeRange=1h&startTime=2024-01-01T00:00:00Z", "timeRange"),
        ("startTime=yesterday", "startTime"),
        ("endTime=2024-01-01T00:00:00Z", "startTime"),
        (
            "startTime=2024-01-02T00:00:00Z&endTime=2024-01-01T00:00:00Z",
            "endTime",
        ),
        ("groupBy=colour", "groupBy"),
        ("orderBy=colour", "orderBy"),
        ("groupBy=modelId&orderBy=clientId", "orderBy"),
        ("orderDirection=UP", "orderDirection"),
        ("pageSize=0", "pageSize"),
        ("pageIndex=x", "pageIndex"),
        ("maxResults=100000", "maxResults"),
        ("nextToken=abc", "nextToken"),
        ("pageIndex=1&maxResults=5", "pageIndex"),
        ("clientId=abc", "clientId"),
        ("needTotalCount=yes", "needTotalCount"),
    ];
    for (query, parameter) in cases {
        let m = alibaba_error(
            &c.alibaba(&fixture::ACME_ALIBABA, query).await,
            400,
            "InvalidParameter",
        );
        assert!(m.starts_with(parameter), "{query}: {m}");
    }
    stack.stop().await;
}
