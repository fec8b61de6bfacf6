//! Builders for the calls the specifications below ingest.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use polymeter_tests::{json, Client};
use serde_json::Value;

pub const PROJECT: &str = "acme/bot";

/// The `polymeter` command line, built by cargo for these tests.
pub fn polymeter_binary() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_polymeter-under-test").into()
}

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A finished call, in the shape of `/v2/{entity}/{project}/calls/complete`.
#[derive(Clone)]
pub struct Call {
    pub body: Value,
}

impl Call {
    pub fn new(id: &str, started_at: DateTime<Utc>) -> Self {
        Self {
            body: json!({
                "id": id,
                "op_name": "weave:///acme/bot/op/chat:v1",
                "trace_id": format!("trace-{id}"),
                "started_at": iso(started_at),
                "ended_at": iso(started_at + Duration::milliseconds(100)),
                "inputs": {},
                "output": null,
                "summary": {},
            }),
        }
    }

    pub fn set(mut self, key: &str, value: Value) -> Self {
        self.body[key] = value;
        self
    }

    pub fn latency_us(self, us: i64) -> Self {
        let start = t(self.body["started_at"].as_str().unwrap());
        self.set("ended_at", json!(iso(start + Duration::microseconds(us))))
    }

    pub fn latency_ms(self, ms: i64) -> Self {
        self.latency_us(ms * 1000)
    }

    pub fn usage(self, usage: Value) -> Self {
        self.set("summary", json!({ "usage": usage }))
    }

    pub fn error(self, message: &str) -> Self {
        self.set("exception", json!(message))
    }
}

/// Ingests finished calls into `project` in one batch.
pub async fn ingest_into(client: &Client, project: &str, calls: &[Call]) {
    let batch: Vec<Value> = calls.iter().map(|c| c.body.clone()).collect();
    let answer = client
        .post(
            &format!("/v2/{project}/calls/complete"),
            &json!({ "batch": batch }),
        )
        .await;
    answer.ok();
}

pub async fn ingest(client: &Client, calls: &[Call]) {
    ingest_into(client, PROJECT, calls).await
}

/// `/calls/stats` for [`PROJECT`], merged over `extra`.
pub async fn stats(client: &Client, extra: Value) -> Value {
    client.post("/calls/stats", &stats_body(extra)).await.ok()
}

pub fn stats_body(extra: Value) -> Value {
    let mut body = json!({ "project_id": PROJECT });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The `key` column of every call bucket.
pub fn column(buckets: &Value, key: &str) -> Vec<Value> {
    buckets
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b[key].clone())
        .collect()
}

impl Call {
    /// Sets the call's Weave `attributes` (where vendor dimensions come from).
    pub fn attributes(self, attributes: Value) -> Self {
        self.set("attributes", attributes)
    }

    /// One model's token usage.
    pub fn tokens(self, model: &str, input: i64, output: i64) -> Self {
        self.usage(
            json!({ model: { "input_tokens": input, "output_tokens": output, "requests": 1 } }),
        )
    }
}

/// The Alibaba metrics DTOs of an answer, after asserting success.
pub fn alibaba_data(answer: polymeter_tests::Answer) -> Vec<Value> {
    let body = answer.ok();
    assert_eq!(body["success"], true, "{body}");
    body["data"].as_array().expect("data is an array").clone()
}

/// Asserts Alibaba's error envelope: status, both code spellings, both
/// message spellings; returns the message.
#[track_caller]
pub fn alibaba_error(answer: &polymeter_tests::Answer, status: u16, code: &str) -> String {
    let b = &answer.body;
    assert_eq!(answer.status, status, "{b}");
    assert_eq!(b["Code"], code, "{b}");
    assert_eq!(b["errCode"], code, "{b}");
    assert_eq!(b["success"], false, "{b}");
    assert_eq!(b["httpStatusCode"], status, "{b}");
    assert_eq!(b["Message"], b["errMessage"], "{b}");
    assert!(
        b["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{b}"
    );
    assert_eq!(b["RequestId"], b["requestId"], "{b}");
    b["Message"].as_str().unwrap().to_owned()
}

/// Asserts Qianfan's error envelope and headers; returns the message.
#[track_caller]
pub fn qianfan_error(answer: &polymeter_tests::Answer, status: u16, code: &str) -> String {
    let b = &answer.body;
    assert_eq!(answer.status, status, "{b}");
    assert_eq!(b["code"], code, "{b}");
    assert!(
        b["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{b}"
    );
    assert_eq!(answer.headers["x-bce-error-code"], code);
    assert!(answer.headers.contains_key("x-bce-error-message"));
    b["message"].as_str().unwrap().to_owned()
}
