//! OpenTelemetry ingest: spans from a real exporter, OTLP/HTTP in
//! protobuf and JSON with gzip, and the refusals, all ending as calls that
//! every query dialect reads.

use crate::support::*;
use base64::Engine;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue as PbKeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PbSpan};
use polymeter_tests::{fixture, json, Client, TestStack};
use prost::Message;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use std::time::SystemTime;

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"))
    )
}

fn at(iso: &str) -> SystemTime {
    SystemTime::from(t(iso))
}

/// One bucket over the range: calls, errors, tokens, mean latency.
async fn totals(c: &Client, project: &str) -> Value {
    let body = c
        .post(
            "/calls/stats",
            &json!({
                "project_id": project,
                "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T11:00:00Z", "granularity": 3600,
                "call_metrics": [{"metric": "call_count"}, {"metric": "error_count"}, {"metric": "latency_ms", "aggregations": ["avg", "max"]}],
                "usage_metrics": [{"metric": "input_tokens"}, {"metric": "output_tokens"}, {"metric": "cache_read_input_tokens"}],
            }),
        )
        .await
        .ok();
    json!({"calls": body["call_buckets"][0], "usage": body["usage_buckets"]})
}

// The simple exporter blocks its thread while it exports, so the runtime
// needs another worker to drive the gRPC call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_the_rust_otlp_exporter_become_calls() {
    let stack = TestStack::start().await;
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        "authorization",
        basic(fixture::ACME_WEAVE_KEY).parse().unwrap(),
    );
    metadata.insert("project_id", PROJECT.parse().unwrap());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", stack.stack.ingest))
        .with_metadata(metadata)
        .build()
        .unwrap();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .build();
    let tracer = provider.tracer("polymeter-test");
    let mut chat = tracer
        .span_builder("chat gpt-4o")
        .with_kind(SpanKind::Client)
        .with_start_time(at("2024-05-01T10:00:00Z"))
        .with_attributes([
            KeyValue::new("gen_ai.operation.name", "chat"),
            KeyValue::new("gen_ai.request.model", "gpt-4o"),
            KeyValue::new("gen_ai.response.model", "gpt-4o-2024-08-06"),
            KeyValue::new("gen_ai.usage.input_tokens", 120i64),
            KeyValue::new("gen_ai.usage.output_tokens", 30i64),
            KeyValue::new("gen_ai.usage.cache_read.input_tokens", 100i64),
        ])
        .start(&tracer);
    chat.end_with_timestamp(at("2024-05-01T10:00:01.5Z"));
    let mut failed = tracer
        .span_builder("chat claude")
        .with_start_time(at("2024-05-01T10:10:00Z"))
        .with_attributes([
            KeyValue::new("gen_ai.request.model", "claude-sonnet-4"),
            KeyValue::new("gen_ai.usage.input_tokens", 10i64),
        ])
        .start(&tracer);
    failed.set_status(Status::error("overloaded"));
    failed.end_with_timestamp(at("2024-05-01T10:10:00.5Z"));
    provider.shutdown().unwrap();

    let got = totals(&stack.client, PROJECT).await;
    assert_eq!(got["calls"]["sum_call_count"], 2, "{got}");
    assert_eq!(got["calls"]["sum_error_count"], 1, "{got}");
    assert_eq!(got["calls"]["avg_latency_ms"], 1000.0, "{got}");
    assert_eq!(got["calls"]["max_latency_ms"], 1500.0, "{got}");
    let usage = got["usage"].as_array().unwrap();
    let by_model = |m: &str| {
        usage
            .iter()
            .find(|u| u["model"] == m)
            .unwrap_or_else(|| panic!("no {m} in {got}"))
            .clone()
    };
    let gpt = by_model("gpt-4o-2024-08-06");
    assert_eq!(
        (
            gpt["sum_input_tokens"].clone(),
            gpt["sum_output_tokens"].clone(),
            gpt["sum_cache_read_input_tokens"].clone()
        ),
        (json!(120), json!(30), json!(100))
    );
    assert_eq!(by_model("claude-sonnet-4")["sum_input_tokens"], 10);
    stack.stop().await;
}

fn kv(key: &str, value: any_value::Value) -> PbKeyValue {
    PbKeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn pb_span(id: u8, start: &str, ms: u64, attrs: Vec<PbKeyValue>) -> PbSpan {
    let nanos = |s: &str| t(s).timestamp_nanos_opt().unwrap() as u64;
    PbSpan {
        trace_id: vec![7; 16],
        span_id: vec![id; 8],
        name: format!("span-{id}"),
        start_time_unix_nano: nanos(start),
        end_time_unix_nano: nanos(start) + ms * 1_000_000,
        attributes: attrs,
        ..Default::default()
    }
}

fn export(resource: Vec<PbKeyValue>, spans: Vec<PbSpan>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn post_otlp(
    c: &Client,
    content_type: &str,
    gzipped: bool,
    body: Vec<u8>,
    key: Option<&str>,
    project: Option<&str>,
) -> (u16, HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_str(content_type).unwrap());
    if let Some(k) = key {
        headers.insert("authorization", basic(k).parse().unwrap());
    }
    if let Some(p) = project {
        headers.insert("project_id", p.parse().unwrap());
    }
    let body = if gzipped {
        headers.insert("content-encoding", HeaderValue::from_static("gzip"));
        gzip(&body)
    } else {
        body
    };
    let response = reqwest::Client::new()
        .post(format!("{}/otel/v1/traces", c.base))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn otlp_http_takes_protobuf_and_json_plain_or_gzip() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let tokens = |n: i64| {
        vec![
            kv(
                "gen_ai.response.model",
                any_value::Value::StringValue("m".into()),
            ),
            kv("gen_ai.usage.input_tokens", any_value::Value::IntValue(n)),
        ]
    };
    for (i, gzipped) in [(1u8, false), (2, true)] {
        let body = export(
            vec![],
            vec![pb_span(i, "2024-05-01T10:00:00Z", 100, tokens(10))],
        )
        .encode_to_vec();
        let (status, headers, body) = post_otlp(
            c,
            "application/x-protobuf",
            gzipped,
            body,
            Some(fixture::ACME_WEAVE_KEY),
            Some(PROJECT),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(
            ExportTraceServiceResponse::decode(&body[..])
                .unwrap()
                .partial_success,
            None
        );
    }
    // OTLP/JSON: hex ids, nanoseconds as strings, the project as a resource attribute.
    let json_body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "project_id", "value": {"stringValue": PROJECT}}]},
        "scopeSpans": [{"spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": "llm", "kind": 3,
            "startTimeUnixNano": "1714557600000000000", "endTimeUnixNano": "1714557600300000000",
            "attributes": [
                {"key": "llm.model_name", "value": {"stringValue": "m"}},
                {"key": "llm.token_count.prompt", "value": {"intValue": "10"}}
            ],
            "status": {"code": 2, "message": "bad"}
        }]}]
    }]});
    for gzipped in [false, true] {
        let mut v = json_body.clone();
        if gzipped {
            v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] =
                json!("eee19b7ec3c1b175");
        }
        let (status, headers, body) = post_otlp(
            c,
            "application/json",
            gzipped,
            v.to_string().into_bytes(),
            Some(fixture::ACME_WEAVE_KEY),
            None,
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(headers["content-type"], "application/json");
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            answer.get("partialSuccess").is_none_or(|p| p.is_null()),
            "{answer}"
        );
    }
    let got = totals(c, PROJECT).await;
    assert_eq!(got["calls"]["sum_call_count"], 4, "{got}");
    assert_eq!(got["calls"]["sum_error_count"], 2, "{got}");
    assert_eq!(got["usage"][0]["sum_input_tokens"], 40, "{got}");
    // Re-sending a span updates it; it is not counted twice.
    let body = export(
        vec![],
        vec![pb_span(1, "2024-05-01T10:00:00Z", 100, tokens(10))],
    )
    .encode_to_vec();
    post_otlp(
        c,
        "application/x-protobuf",
        false,
        body,
        Some(fixture::ACME_WEAVE_KEY),
        Some(PROJECT),
    )
    .await;
    assert_eq!(totals(c, PROJECT).await["calls"]["sum_call_count"], 4);
    stack.stop().await;
}

#[tokio::test]
async fn bad_payloads_are_refused_and_bad_spans_reported_without_losing_the_rest() {
    let stack = TestStack::start().await;
    let c = &stack.client;
    let key = Some(fixture::ACME_WEAVE_KEY);

    let (status, _, body) = post_otlp(
        c,
        "application/x-protobuf",
        false,
        b"\xff\xff\xff".to_vec(),
        key,
        Some(PROJECT),
    )
    .await;
    assert_eq!(status, 400);
    let rpc: Value = {
        // google.rpc.Status{code=1, message=2}, decoded by hand to stay independent of the server's types.
        #[derive(prost::Message)]
        struct RpcStatus {
            #[prost(int32, tag = "1")]
            code: i32,
            #[prost(string, tag = "2")]
            message: String,
        }
        let s = RpcStatus::decode(&body[..]).unwrap();
        json!({"code": s.code, "message": s.message})
    };
    assert_eq!(rpc["code"], 3, "INVALID_ARGUMENT: {rpc}");
    assert!(
        rpc["message"]
            .as_str()
            .unwrap()
            .contains("ExportTraceServiceRequest"),
        "{rpc}"
    );
    let (status, _, body) = post_otlp(
        c,
        "application/json",
        false,
        b"{\"resourceSpans\": 5}".to_vec(),
        key,
        Some(PROJECT),
    )
    .await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("OTLP/JSON"));
    let (status, _, _) = post_otlp(c, "text/plain", false, b"x".to_vec(), key, Some(PROJECT)).await;
    assert_eq!(status, 415);
    let (status, _, body) = post_otlp(
        c,
        "application/x-protobuf",
        false,
        gzip(b"x"),
        key,
        Some(PROJECT),
    )
    .await;
    assert_eq!(
        status,
        400,
        "gzip without Content-Encoding is not protobuf: {}",
        String::from_utf8_lossy(&body)
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-protobuf"),
    );
    headers.insert("content-encoding", HeaderValue::from_static("gzip"));
    // Authenticated: the caller is checked before its body is read.
    headers.insert(
        "authorization",
        basic(fixture::ACME_WEAVE_KEY).parse().unwrap(),
    );
    let response = reqwest::Client::new()
        .post(format!("{}/otel/v1/traces", c.base))
        .headers(headers)
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    let good = || pb_span(1, "2024-05-01T10:00:00Z", 100, vec![]);
    let body = export(vec![], vec![good()]).encode_to_vec();
    let (status, _, _) = post_otlp(
        c,
        "application/x-protobuf",
        false,
        body.clone(),
        None,
        Some(PROJECT),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = post_otlp(
        c,
        "application/x-protobuf",
        false,
        body.clone(),
        Some(fixture::ACME_DISABLED_WEAVE_KEY),
        Some(PROJECT),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = post_otlp(
        c,
        "application/x-protobuf",
        false,
        body.clone(),
        key,
        Some("globex/bot"),
    )
    .await;
    assert_eq!(status, 403);

    // One batch: a good span, a span with a zero trace id, and a resource
    // naming another tenant's project. Only the good span is kept.
    let mut bad = pb_span(2, "2024-05-01T10:00:00Z", 100, vec![]);
    bad.trace_id = vec![0; 16];
    let mut request = export(
        vec![kv(
            "project_id",
            any_value::Value::StringValue(PROJECT.into()),
        )],
        vec![good(), bad],
    );
    request.resource_spans.push(
        export(
            vec![kv(
                "project_id",
                any_value::Value::StringValue("globex/bot".into()),
            )],
            vec![
                pb_span(3, "2024-05-01T10:00:00Z", 1, vec![]),
                pb_span(4, "2024-05-01T10:00:00Z", 1, vec![]),
            ],
        )
        .resource_spans
        .remove(0),
    );
    let (status, _, body) = post_otlp(
        c,
        "application/x-protobuf",
        false,
        request.encode_to_vec(),
        key,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let partial = ExportTraceServiceResponse::decode(&body[..])
        .unwrap()
        .partial_success
        .unwrap();
    assert_eq!(partial.rejected_spans, 3);
    assert!(
        partial.error_message.contains("trace_id") && partial.error_message.contains("globex/bot"),
        "{}",
        partial.error_message
    );
    assert_eq!(totals(c, PROJECT).await["calls"]["sum_call_count"], 1);
    let globex = c.with_weave_key(Some(fixture::GLOBEX_WEAVE_KEY));
    assert_eq!(
        totals(&globex, "globex/bot").await["calls"]["sum_call_count"],
        0
    );
    stack.stop().await;
}
