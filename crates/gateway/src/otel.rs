//! OTLP/HTTP: `POST /otel/v1/traces`, protobuf or JSON, optionally gzip. The
//! body becomes OTLP's own `TraceService/Export` on the ingest service, with
//! the client's `Authorization` and `project_id` headers passed on as gRPC
//! metadata (ingest authenticates OTLP, since exporters also reach it over
//! gRPC directly). Answers and errors are OTLP's: `ExportTraceServiceResponse`
//! or a `google.rpc.Status`, in the request's encoding.

use crate::auth::AppState;
use crate::error::GatewayError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::io::Read;

pub const PATH: &str = "/otel/v1/traces";
/// A decompressed body may not exceed the gRPC message limit.
const INFLATED_LIMIT: u64 = 64 << 20;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        PATH,
        post(traces).fallback(|method: Method| async move {
            OtlpError {
                encoding: Encoding::Json,
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: crate::error::method_not_allowed(&method, PATH, "POST").to_string(),
            }
        }),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
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

/// `google.rpc.Status`, the body of an OTLP/HTTP error.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Debug)]
struct OtlpError {
    encoding: Encoding,
    status: StatusCode,
    message: String,
}

impl OtlpError {
    fn new(encoding: Encoding, err: GatewayError) -> Self {
        Self {
            encoding,
            status: err.status(),
            message: err.to_string(),
        }
    }
}

/// The gRPC code an HTTP status stands for, as `google.rpc.Status` wants it.
fn grpc_code(status: StatusCode) -> tonic::Code {
    match status {
        StatusCode::BAD_REQUEST
        | StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => tonic::Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_FOUND => tonic::Code::Unimplemented,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    }
}

impl IntoResponse for OtlpError {
    fn into_response(self) -> Response {
        let status = RpcStatus {
            code: grpc_code(self.status) as i32,
            message: self.message,
        };
        let body = match self.encoding {
            Encoding::Protobuf => status.encode_to_vec(),
            Encoding::Json => serde_json::to_vec(&serde_json::json!({
                "code": status.code,
                "message": status.message,
            }))
            .unwrap_or_default(),
        };
        (
            self.status,
            [(header::CONTENT_TYPE, self.encoding.content_type())],
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
        _ => Err(OtlpError {
            encoding: Encoding::Json,
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            message: format!(
                "Content-Type {content_type:?} is not supported; send application/x-protobuf or application/json"
            ),
        }),
    }
}

fn inflate(headers: &HeaderMap, body: Bytes) -> Result<Bytes, GatewayError> {
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
                .map_err(|e| GatewayError::BadRequest(format!("request body: gzip: {e}")))?;
            if out.len() as u64 > INFLATED_LIMIT {
                return Err(GatewayError::TooLarge(format!(
                    "request body: more than {INFLATED_LIMIT} bytes once decompressed"
                )));
            }
            Ok(out.into())
        }
        other => Err(GatewayError::BadRequest(format!(
            "Content-Encoding {other:?} is not supported; send gzip or none"
        ))),
    }
}

fn decode(encoding: Encoding, body: &[u8]) -> Result<ExportTraceServiceRequest, GatewayError> {
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            GatewayError::BadRequest(format!(
                "request body is not an OTLP ExportTraceServiceRequest: {e}"
            ))
        }),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| GatewayError::BadRequest(format!("request body is not OTLP/JSON: {e}"))),
    }
}

async fn traces(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OtlpError> {
    let encoding = encoding(&headers)?;
    let fail = |e: GatewayError| OtlpError::new(encoding, e);
    let body = body.map_err(|r| fail(r.into()))?;
    let body = inflate(&headers, body).map_err(fail)?;
    let export = decode(encoding, &body).map_err(fail)?;
    let mut request = polymeter_telemetry::traced(export);
    for name in ["authorization", "project_id"] {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            if let Ok(value) = value.parse() {
                request.metadata_mut().insert(name, value);
            }
        }
    }
    let answer = state
        .backends
        .traces
        .clone()
        .export(request)
        .await
        .map_err(|status| fail(status.into()))?
        .into_inner();
    let body = match encoding {
        Encoding::Protobuf => answer.encode_to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&answer).map_err(|e| fail(GatewayError::Internal(e.to_string())))?
        }
    };
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    Ok(response)
}
