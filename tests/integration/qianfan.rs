//! Qianfan `POST /v2/service?Action=DescribeServiceMetric`:
//! bce-auth-v1 refusals with Qianfan's body and headers, and the grouped
//! service metrics.

use crate::support::*;
use chrono::{Duration, Utc};
use polymeter_tests::fixture::{self, AccessKey};
use polymeter_tests::signing::{bce_headers, QIANFAN_PATH};
use polymeter_tests::{json, Answer, Client, TestStack};
use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::Value;

const QUERY: &str = "Action=DescribeServiceMetric";

fn range() -> Value {
    json!({"startTime": "2024-05-01T10:00:00Z", "endTime": "2024-05-01T11:00:00Z"})
}

/// Signs `signed_query` at `at` but sends `sent_query`, with `edit` applied
/// to the headers after signing.
async fn send(
    client: &Client,
    key: &AccessKey,
    signed_query: &str,
    sent_query: &str,
    at: chrono::DateTime<Utc>,
    expiration: i64,
    edit: impl FnOnce(&mut reqwest::header::HeaderMap),
) -> Answer {
    let mut headers = bce_headers(
        client.host(),
        key,
        "POST",
        QIANFAN_PATH,
        signed_query,
        at,
        expiration,
    );
    edit(&mut headers);
    client
        .send_with(
            Method::POST,
            &format!("{QIANFAN_PATH}?{sent_query}"),
            headers,
            range().to_string().into_bytes(),
        )
        .await
}

#[tokio::test]
async fn bad_signatures_and_credentials_are_refused_in_qianfans_envelope() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let key = &fixture::ACME_QIANFAN;
    let now = Utc::now();
    send(c, key, QUERY, QUERY, now, 1800, |_| {}).await.ok();

    let tampered_query = send(
        c,
        key,
        QUERY,
        "Action=DescribeServiceMetric&extra=1",
        now,
        1800,
        |_| {},
    )
    .await;
    qianfan_error(&tampered_query, 400, "SignatureDoesNotMatch");
    let tampered_header = send(c, key, QUERY, QUERY, now, 1800, |h| {
        h.insert(
            "x-bce-date",
            HeaderValue::from_static("2020-01-01T00:00:00Z"),
        );
    })
    .await;
    qianfan_error(&tampered_header, 400, "SignatureDoesNotMatch");
    // Every x-bce-* header is signed, named or not.
    let injected = send(c, key, QUERY, QUERY, now, 1800, |h| {
        h.insert("x-bce-injected", HeaderValue::from_static("1"));
    })
    .await;
    qianfan_error(&injected, 400, "SignatureDoesNotMatch");
    let wrong_secret = AccessKey {
        id: key.id,
        secret: "wrong",
    };
    qianfan_error(
        &c.qianfan(&wrong_secret, &range()).await,
        400,
        "SignatureDoesNotMatch",
    );

    let m = qianfan_error(
        &send(
            c,
            key,
            QUERY,
            QUERY,
            now - Duration::seconds(400),
            300,
            |_| {},
        )
        .await,
        400,
        "RequestExpired",
    );
    assert!(m.contains("expired"), "{m}");
    let m = qianfan_error(
        &send(
            c,
            key,
            QUERY,
            QUERY,
            now + Duration::minutes(16),
            1800,
            |_| {},
        )
        .await,
        400,
        "RequestExpired",
    );
    assert!(m.contains("ahead"), "{m}");
    send(
        c,
        key,
        QUERY,
        QUERY,
        now - Duration::seconds(200),
        300,
        |_| {},
    )
    .await
    .ok();

    qianfan_error(
        &c.qianfan(
            &AccessKey {
                id: "nobody",
                secret: "x",
            },
            &range(),
        )
        .await,
        403,
        "InvalidAccessKeyId",
    );
    let m = qianfan_error(
        &c.qianfan(&fixture::ACME_QIANFAN_DISABLED, &range()).await,
        403,
        "InvalidAccessKeyId",
    );
    assert!(m.contains("disabled"), "{m}");
    let unsigned = send(c, key, QUERY, QUERY, now, 1800, |h| {
        h.remove("authorization");
    })
    .await;
    qianfan_error(&unsigned, 403, "AccessDenied");
    let other_scheme = send(c, key, QUERY, QUERY, now, 1800, |h| {
        h.insert("authorization", HeaderValue::from_static("Bearer token"));
    })
    .await;
    qianfan_error(&other_scheme, 403, "AccessDenied");
    stack.stop().await;
}

#[tokio::test]
async fn bad_bodies_and_actions_are_refused_naming_the_field() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let key = &fixture::ACME_QIANFAN;
    let raw = |body: &'static str| async move {
        let headers = bce_headers(c.host(), key, "POST", QIANFAN_PATH, QUERY, Utc::now(), 1800);
        c.send_with(
            Method::POST,
            &format!("{QIANFAN_PATH}?{QUERY}"),
            headers,
            body.as_bytes().to_vec(),
        )
        .await
    };
    qianfan_error(&raw("{not json").await, 400, "MalformedJSON");
    let m = qianfan_error(&raw(r#"{"serviceId": "svc", "startTime": "2024-05-01T10:00:00Z", "endTime": "2024-05-01T11:00:00Z"}"#).await, 400, "InappropriateJSON");
    assert!(m.starts_with("serviceId"), "{m}");
    let m = qianfan_error(
        &c.qianfan(key, &json!({"endTime": "2024-05-01T11:00:00Z"}))
            .await,
        400,
        "InvalidParameter",
    );
    assert!(m.starts_with("startTime"), "{m}");
    let m = qianfan_error(
        &c.qianfan(
            key,
            &json!({"startTime": "May 1st", "endTime": "2024-05-01T11:00:00Z"}),
        )
        .await,
        400,
        "InvalidParameter",
    );
    assert!(m.starts_with("startTime"), "{m}");
    let m = qianfan_error(
        &c.qianfan(
            key,
            &json!({"startTime": "2024-05-01T11:00:00Z", "endTime": "2024-05-01T10:00:00Z"}),
        )
        .await,
        400,
        "InvalidParameter",
    );
    assert!(m.starts_with("endTime"), "{m}");
    let q = "Action=DescribeService";
    let headers = bce_headers(c.host(), key, "POST", QIANFAN_PATH, q, Utc::now(), 1800);
    let answer = c
        .send_with(
            Method::POST,
            &format!("{QIANFAN_PATH}?{q}"),
            headers,
            range().to_string().into_bytes(),
        )
        .await;
    let m = qianfan_error(&answer, 400, "InvalidParameter");
    assert!(
        m.contains("Action") && m.contains("DescribeServiceMetric"),
        "{m}"
    );
    stack.stop().await;
}

async fn dataset(client: &Client) {
    let call = |id: &str, at: &str, service: &str, name: &str, app: Value, input: i64| {
        Call::new(id, t(at))
            .attributes(
                json!({"qianfan": {"service_id": service, "service_name": name, "app_id": app}}),
            )
            .tokens("ernie-4.0", input, 1)
    };
    ingest(
        client,
        &[
            call(
                "a",
                "2024-05-01T10:00:10Z",
                "svco-b",
                "chat",
                json!(1483416575),
                100,
            ),
            call(
                "b",
                "2024-05-01T10:05:30Z",
                "svco-b",
                "chat",
                json!(1483416575),
                200,
            )
            .error("timeout"),
            call(
                "c",
                "2024-05-01T10:06:00Z",
                "svco-b",
                "chat",
                json!("26217442"),
                300,
            ),
            call(
                "d",
                "2024-05-01T10:30:00Z",
                "svco-a",
                "search",
                json!("26217442"),
                400,
            ),
            // No Qianfan attributes: reported under an empty service and app.
            Call::new("e", t("2024-05-01T10:31:00Z")).tokens("ernie-4.0", 500, 1),
        ],
    )
    .await;
}

fn metric(input: i64, output: i64, ok: i64, failed: i64) -> Value {
    json!({
        "inputTokensTotal": input,
        "outputTokensTotal": output,
        "tokensTotal": input + output,
        "succeedCallTotal": ok,
        "failureCallTotal": failed,
        "callTotal": ok + failed,
    })
}

#[tokio::test]
async fn services_hold_their_apps_metrics() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    dataset(c).await;
    let body = c.qianfan(&fixture::ACME_QIANFAN, &range()).await.ok();
    assert!(body["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(body["result"]["startTime"], "2024-05-01T10:00:00Z");
    assert_eq!(body["result"]["endTime"], "2024-05-01T11:00:00Z");
    let expected = json!([
        {"serviceId": "", "serviceName": "", "appList": [{"appId": "", "metric": metric(500, 1, 1, 0)}]},
        {"serviceId": "svco-a", "serviceName": "search", "appList": [{"appId": "26217442", "metric": metric(400, 1, 1, 0)}]},
        {"serviceId": "svco-b", "serviceName": "chat", "appList": [
            {"appId": "1483416575", "metric": metric(300, 2, 1, 1)},
            {"appId": "26217442", "metric": metric(300, 1, 1, 0)},
        ]},
    ]);
    assert_eq!(body["result"]["serviceList"], expected);

    let only_b = c
        .qianfan(&fixture::ACME_QIANFAN, &json!({"serviceId": ["svco-b"], "appId": ["26217442"], "startTime": "2024-05-01T10:00:00Z", "endTime": "2024-05-01T11:00:00Z"}))
        .await
        .ok();
    assert_eq!(
        only_b["result"]["serviceList"],
        json!([{"serviceId": "svco-b", "serviceName": "chat", "appList": [{"appId": "26217442", "metric": metric(300, 1, 1, 0)}]}])
    );
    // The Python SDK sends appId as one string.
    let one_app = c
        .qianfan(&fixture::ACME_QIANFAN, &json!({"appId": "1483416575", "startTime": "2024-05-01T10:00:00Z", "endTime": "2024-05-01T11:00:00Z"}))
        .await
        .ok();
    assert_eq!(
        one_app["result"]["serviceList"][0]["appList"],
        json!([{"appId": "1483416575", "metric": metric(300, 2, 1, 1)}])
    );
    stack.stop().await;
}

#[tokio::test]
async fn times_have_minute_precision_and_the_end_minute_is_included() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    dataset(c).await;
    let calls = |start: &'static str, end: &'static str| async move {
        let body = c
            .qianfan(
                &fixture::ACME_QIANFAN,
                &json!({"startTime": start, "endTime": end}),
            )
            .await
            .ok();
        body["result"]["serviceList"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["appList"].as_array().unwrap().clone())
            .map(|a| a["metric"]["callTotal"].as_i64().unwrap())
            .sum::<i64>()
    };
    // 10:05:00 → 10:05:59 covers the call at 10:05:30 but not the one at 10:06:00.
    assert_eq!(
        calls("2024-05-01T10:05:00Z", "2024-05-01T10:05:00Z").await,
        1
    );
    // Start seconds become 00: 10:00:45 still covers the call at 10:00:10.
    assert_eq!(
        calls("2024-05-01T10:00:45Z", "2024-05-01T10:00:00Z").await,
        1
    );
    // End seconds become 59: 10:05:01 covers 10:05:30.
    assert_eq!(
        calls("2024-05-01T10:00:00Z", "2024-05-01T10:05:01Z").await,
        2
    );
    stack.stop().await;
}
