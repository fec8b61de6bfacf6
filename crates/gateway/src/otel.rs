//! OTLP/HTTP: `POST /otel/v1/traces`, protobuf or JSON, optionally gzip. The
//! body becomes OTLP's own `TraceService/Export` on the ingest service, with
//! the client's `Authorization` and `project_id` headers passed on as gRPC
//! metadata (ingest authenticates OTLP, since exporters also reach it over
//! gRPC directly). Answers and errors are OTLP's: `ExportTraceServiceResponse`
//! or a `google.rpc.Status`, in the request's encoding.

use crate::api::OtlpCredentials;
use crate::error::{Error, ErrorKind};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use std::io::Read;

pub const PATH: &str = "/otel/v1/traces";
/// A decompressed body may not exceed the gRPC message limit.
const INFLATED_LIMIT: u64 = polymeter_proto::MESSAGE_LIMIT as u64;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        PATH,
        post(traces).fallback(|method: Method| async move {
            OtlpError(
                Encoding::Json,
                crate::error::method_not_allowed(&method, PATH, "POST"),
            )
        }),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// An OTLP `ExportTraceServiceRequest` or `ExportTraceServiceResponse` in
/// protobuf encoding.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // documents a body read as bytes
pub struct OtlpProtobuf(Vec<u8>);

/// An OTLP `ExportTraceServiceRequest` in OTLP/JSON (`resourceSpans`, …).
#[derive(utoipa::ToSchema)]
#[schema(value_type = Object)]
#[allow(dead_code)] // documents a body decoded by opentelemetry-proto
pub struct OtlpJsonRequest(serde_json::Value);

/// OTLP's `ExportTraceServiceResponse` in OTLP/JSON: rejected spans, if any.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtlpJsonResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<OtlpPartialSuccess>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtlpPartialSuccess {
    pub rejected_spans: i64,
    pub error_message: String,
}

/// `google.rpc.Status` in OTLP/JSON: the body of an OTLP/HTTP error.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OtlpStatusJson {
    /// The gRPC code of the error's kind.
    pub code: i32,
    pub message: String,
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// `error` as OTLP/HTTP answers a request with these headers (protobuf
/// unless the request was JSON).
pub fn error_response(headers: &axum::http::HeaderMap, error: Error) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let encoding = if json {
        Encoding::Json
    } else {
        Encoding::Protobuf
    };
    OtlpError(encoding, error).into_response()
}

/// An [`Error`] as OTLP/HTTP answers it: the kind's HTTP status and a
/// `google.rpc.Status` with the kind's gRPC code, in the request's encoding.
#[derive(Debug)]
pub struct OtlpError(Encoding, Error);

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        let OtlpError(encoding, error) = self;
        let error = error.bounded(crate::error::MAX_MESSAGE);
        let status = RpcStatus {
            code: error.kind().grpc_code() as i32,
            message: error.message().to_owned(),
        };
        let body = match encoding {
            Encoding::Protobuf => status.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&OtlpStatusJson {
                code: status.code,
                message: status.message,
            })
            .unwrap_or_default(),
        };
        (
            error.kind().http_status(),
            [(header::CONTENT_TYPE, encoding.content_type())],
            body,
        )
            .into_response()
    }
}

fn encoding(headers: &HeaderMap) -> Result<Encoding, OtlpError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(OtlpError(
            Encoding::Json,
            Error::new(
                ErrorKind::UnsupportedMediaType,
                format!(
                    "Content-Type {content_type:?} is not supported; send application/x-protobuf or application/json"
                ),
            ),
        )),
    }
}

fn inflate(headers: &HeaderMap, body: Bytes) -> Result<Bytes, Error> {
    let coding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match coding.as_str() {
        "identity" | "" => Ok(body),
        "gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(INFLATED_LIMIT + 1)
                .read_to_end(&mut out)
                .map_err(|e| Error::invalid(format!("request body: gzip: {e}")))?;
            if out.len() as u64 > INFLATED_LIMIT {
                return Err(Error::new(
                    ErrorKind::PayloadTooLarge,
                    format!("request body: more than {INFLATED_LIMIT} bytes once decompressed"),
                ));
            }
            Ok(out.into())
        }
        other => Err(Error::invalid(format!(
            "Content-Encoding {other:?} is not supported; send gzip or none"
        ))),
    }
}

fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, Error> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            Error::invalid(format!(
                "request body is not an OTLP ExportTraceServiceRequest: {e}"
            ))
        }),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| Error::invalid(format!("request body is not OTLP/JSON: {e}"))),
    }
}

/// Ingest's answer in the request's encoding.
fn render(encoding: Encoding, answer: ExportTraceServiceResponse) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => answer.encode_to_vec(),
        Encoding::Json => {
            let answer = OtlpJsonResponse {
                partial_success: answer.partial_success.map(|p| OtlpPartialSuccess {
                    rejected_spans: p.rejected_spans,
                    error_message: p.error_message,
                }),
            };
            serde_json::to_vec(&answer).expect("a plain struct always serialises")
        }
    }
}

/// OTLP/HTTP trace export: spans become calls (GenAI attributes). Authenticated
/// with a Weave key; the project from the `project_id` header or each
/// resource's attributes.
#[utoipa::path(post, path = "/otel/v1/traces", tag = "OpenTelemetry",
    params(("project_id" = Option<String>, Header, description = "`entity/project` for spans whose resource names none"),
           ("Content-Encoding" = Option<String>, Header, description = "`gzip` or none")),
    request_body(content((OtlpProtobuf = "application/x-protobuf"), (OtlpJsonRequest = "application/json"))),
    responses((status = 200, description = "Stored durably; rejected spans are counted in partialSuccess",
        content((OtlpProtobuf = "application/x-protobuf"), (OtlpJsonResponse = "application/json")))),
    security(("weave_basic" = [])))]
pub(crate) async fn traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, OtlpError> {
    let encoding = encoding(&headers)?;
    let fail = |e: Error| OtlpError(encoding, e);
    // The key is checked (ingest checks it again, with the project) and the
    // tenant's slot taken before the body is read, so an unauthenticated
    // client cannot make the gateway buffer its body.
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = polymeter_auth::verify_basic(&state.auth.index(), authorization)
        .map_err(|e| fail(e.into()))?;
    let admission = state.gate.admit(&principal.tenant).map_err(fail)?;
    let body = admission.read_body(body).await.map_err(fail)?;
    let body = inflate(&headers, body).map_err(fail)?;
    let export = decode(encoding, &body).map_err(fail)?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let credentials = OtlpCredentials {
        authorization: header("authorization"),
        project_id: header("project_id"),
    };
    let answer = state
        .services
        .ingest
        .export_traces(export, credentials)
        .await
        .map_err(fail)?;
    let body = render(encoding, answer);
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use crate::testing::{router, Fake};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn send(content_type: &str, body: &str) -> (StatusCode, String, serde_json::Value) {
        let (app, auth) = router(Arc::new(Fake::default()));
        let request = Request::post("/otel/v1/traces")
            .header("content-type", content_type)
            .header("authorization", auth)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let media = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, media, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn otlp_json_is_answered_in_json() {
        let (status, media, body) = send("application/json", r#"{"resourceSpans": []}"#).await;
        assert_eq!(
            (status, media.as_str()),
            (StatusCode::OK, "application/json")
        );
        assert_eq!(body, serde_json::json!({}));
    }

    #[tokio::test]
    async fn errors_are_google_rpc_status_with_the_kinds_code() {
        let (status, _, body) = send("text/plain", "x").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(body["code"], tonic::Code::InvalidArgument as i32);
        let (status, _, body) = send("application/json", "{not json").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["message"].as_str().unwrap().contains("OTLP/JSON"));
    }
}
