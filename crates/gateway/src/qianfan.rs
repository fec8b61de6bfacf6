//! The Baidu Qianfan dialect: `POST /v2/service?Action=DescribeServiceMetric`,
//! signed with bce-auth-v1. It becomes `StatsService.AggregateCalls` over every
//! project the credential reaches, grouped by service and app, with no time
//! buckets; a second, label-only query names each service. Errors are
//! `{requestId, code, message}` plus `X-Bce-Error-Code`/`X-Bce-Error-Message`.

use crate::auth::{request_id, signed_request};
use crate::error::{method_not_allowed, Envelope, Enveloped, Error, ErrorKind, Reason};
use crate::json::Instant;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use polymeter_auth::Principal;
use polymeter_model::{Aggregation, Metric as ModelMetric};
use polymeter_proto::v1::{self as pb, order, Dimension, Grain};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;

pub const PATH: &str = "/v2/service";
const ACTION: &str = "DescribeServiceMetric";

pub fn routes() -> Router<AppState> {
    Router::new().route(
        PATH,
        post(service).fallback(|method: Method| async move {
            QianfanError::from(method_not_allowed(&method, PATH, "POST"))
        }),
    )
}

/// Qianfan's error codes, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    AccessDenied,
    InvalidAccessKeyId,
    SignatureDoesNotMatch,
    RequestExpired,
    MalformedJson,
    InappropriateJson,
    InvalidParameter,
    MethodNotAllowed,
    RequestEntityTooLarge,
    ServiceUnavailable,
    RequestTimeout,
    InternalError,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::AccessDenied => "AccessDenied",
            Code::InvalidAccessKeyId => "InvalidAccessKeyId",
            Code::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Code::RequestExpired => "RequestExpired",
            Code::MalformedJson => "MalformedJSON",
            Code::InappropriateJson => "InappropriateJSON",
            Code::InvalidParameter => "InvalidParameter",
            Code::MethodNotAllowed => "MethodNotAllowed",
            Code::RequestEntityTooLarge => "RequestEntityTooLarge",
            Code::ServiceUnavailable => "ServiceUnavailable",
            Code::RequestTimeout => "RequestTimeout",
            Code::InternalError => "InternalError",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::AccessDenied | Code::InvalidAccessKeyId => StatusCode::FORBIDDEN,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::RequestEntityTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::RequestTimeout => StatusCode::GATEWAY_TIMEOUT,
            Code::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Qianfan's one table: each kind, refined by its reason where Baidu's
/// wire tells the cases apart, → Qianfan's code.
pub fn code(kind: ErrorKind, reason: Option<Reason>) -> Code {
    match (kind, reason) {
        (ErrorKind::Unauthenticated, Some(Reason::UnknownKey | Reason::DisabledKey)) => {
            Code::InvalidAccessKeyId
        }
        (ErrorKind::Unauthenticated, Some(Reason::SignatureMismatch)) => {
            Code::SignatureDoesNotMatch
        }
        (ErrorKind::Unauthenticated, Some(Reason::RequestExpired)) => Code::RequestExpired,
        (ErrorKind::Unauthenticated | ErrorKind::PermissionDenied, _) => Code::AccessDenied,
        (ErrorKind::InvalidArgument, Some(Reason::MalformedBody)) => Code::MalformedJson,
        (ErrorKind::InvalidArgument, Some(Reason::BodyShape))
        | (ErrorKind::UnsupportedMediaType, _) => Code::InappropriateJson,
        (ErrorKind::InvalidArgument | ErrorKind::NotFound, _) => Code::InvalidParameter,
        (ErrorKind::PayloadTooLarge, _) => Code::RequestEntityTooLarge,
        (ErrorKind::MethodNotAllowed, _) => Code::MethodNotAllowed,
        (ErrorKind::Unavailable | ErrorKind::ResourceExhausted, _) => Code::ServiceUnavailable,
        (ErrorKind::DeadlineExceeded, _) => Code::RequestTimeout,
        (ErrorKind::DataLoss | ErrorKind::Internal, _) => Code::InternalError,
    }
}

/// Qianfan's envelope, coded by [`code`].
pub struct Qianfan;

/// An [`Error`] in Qianfan's envelope.
pub type QianfanError = Enveloped<Qianfan>;

fn invalid(message: impl Into<String>) -> QianfanError {
    Error::invalid(message).into()
}

/// Header values must be visible ASCII; anything else becomes `?`.
fn header_text(text: &str) -> HeaderValue {
    let ascii: String = text
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect();
    HeaderValue::from_str(&ascii).unwrap_or(HeaderValue::from_static("error"))
}

impl Envelope for Qianfan {
    fn render(error: &Error) -> Response {
        let id = request_id();
        let code = code(error.kind(), error.reason());
        let body = QianfanErrorBody {
            request_id: id.clone(),
            code: code.as_str().to_owned(),
            message: error.message().to_owned(),
        };
        let mut response = (code.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert("x-bce-error-code", HeaderValue::from_static(code.as_str()));
        headers.insert("x-bce-error-message", header_text(error.message()));
        headers.insert("x-bce-request-id", header_text(&id));
        response
    }
}

/// `appId` is a list in the API document but a single string from the Python SDK.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `DescribeServiceMetric`'s body.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricRequest {
    /// Services to include; all when absent.
    service_id: Option<Vec<String>>,
    /// Apps to include; all when absent.
    app_id: Option<OneOrMany>,
    /// Required; UTC, minute precision (seconds become 00).
    #[schema(required = true, format = DateTime, example = "2024-04-23T00:00:00Z")]
    start_time: Option<String>,
    /// Required; UTC, minute precision (the end minute is included).
    #[schema(required = true, format = DateTime, example = "2024-04-23T01:00:00Z")]
    end_time: Option<String>,
}

/// `DescribeServiceMetric`'s answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResponse {
    pub request_id: String,
    pub result: MetricResult,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricResult {
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub service_list: Vec<ServiceMetrics>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMetrics {
    pub service_id: String,
    /// The name most of the service's calls carry.
    pub service_name: String,
    pub app_list: Vec<AppMetrics>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppMetrics {
    pub app_id: String,
    pub metric: Metric,
}

/// Sums over the range.
#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    pub input_tokens_total: i64,
    pub output_tokens_total: i64,
    pub tokens_total: i64,
    /// Calls that ended without an exception.
    pub succeed_call_total: i64,
    pub failure_call_total: i64,
    /// Every call, running ones included.
    pub call_total: i64,
}

/// Qianfan's error body (also in `X-Bce-Error-Code`/`X-Bce-Error-Message`).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QianfanErrorBody {
    pub request_id: String,
    pub code: String,
    pub message: String,
}

/// An empty body is an empty request: every field is then reported missing
/// by name rather than as unparseable JSON.
fn parse_body(body: &[u8]) -> Result<MetricRequest, QianfanError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    Ok(crate::json::parse(body)?)
}

/// A required minute-precision time; `round_up` makes `12:05:xx` mean the
/// end of minute 12:05.
fn minute(name: &str, value: Option<&str>, round_up: bool) -> Result<DateTime<Utc>, QianfanError> {
    let text = value.ok_or_else(|| invalid(format!("{name}: required")))?;
    let t = Instant::parse(text).map(|i| i.0).ok_or_else(|| {
        invalid(format!(
            "{name}: {:?} is not a UTC time such as 2024-04-23T00:00:00Z between {}",
            crate::error::truncate(text, 64),
            polymeter_model::time::RANGE
        ))
    })?;
    // Whole seconds, not `duration_trunc`: that works in nanoseconds and
    // fails past 2262, which a client may well send.
    let minute = t.timestamp().div_euclid(60) + i64::from(round_up);
    minute
        .checked_mul(60)
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(|| invalid(format!("{name}: {text:?} is out of range")))
}

fn any_of(dimension: Dimension, values: Vec<String>) -> Option<pb::Filter> {
    (!values.is_empty()).then(|| pb::Filter {
        dimension: dimension as i32,
        any_of: values,
        prefixes: vec![],
        absent: false,
    })
}

/// The metric object's fields, each one measure, in [`Metric`]'s order.
const METRICS: &[ModelMetric] = &[
    ModelMetric::InputTokens,
    ModelMetric::OutputTokens,
    ModelMetric::TotalTokens,
    ModelMetric::SuccessCount,
    ModelMetric::ErrorCount,
    ModelMetric::CallCount,
];

fn text(group: &[pb::GroupValue], i: usize) -> String {
    group
        .get(i)
        .and_then(|g| g.value.clone())
        .unwrap_or_default()
}

/// What one `DescribeServiceMetric` asks of the stats service.
pub struct MetricPlan {
    start_time: Option<String>,
    end_time: Option<String>,
    /// Sums per service × app.
    sums: pb::AggregateCallsRequest,
    /// Calls per service × service name, most first, to label each service.
    labels: pb::AggregateCallsRequest,
}

/// The request body → the stats queries over every project `principal`
/// reaches, or a 400 naming the field.
pub fn translate(body: &[u8], principal: &Principal) -> Result<MetricPlan, QianfanError> {
    let req = parse_body(body)?;
    let start = minute("startTime", req.start_time.as_deref(), false)?;
    let end = minute("endTime", req.end_time.as_deref(), true)?;
    if end <= start {
        return Err(invalid("endTime: must not be before startTime"));
    }
    let apps = match req.app_id {
        None => vec![],
        Some(OneOrMany::One(a)) => vec![a],
        Some(OneOrMany::Many(a)) => a,
    };
    let filters: Vec<pb::Filter> = [
        any_of(Dimension::ServiceId, req.service_id.unwrap_or_default()),
        any_of(Dimension::AppId, apps),
    ]
    .into_iter()
    .flatten()
    .collect();
    let query =
        |group_by: &[Dimension], measures: Vec<pb::Measure>, order_by| pb::AggregateCallsRequest {
            tenant: principal.tenant.clone(),
            project_ids: principal.projects.clone(),
            start_us: start.timestamp_micros(),
            end_us: end.timestamp_micros(),
            grain: Grain::Call as i32,
            bucketing: None,
            filters: filters.clone(),
            group_by: group_by.iter().map(|d| *d as i32).collect(),
            measures,
            order_by,
            limit: 0,
            offset: 0,
            fill_empty_buckets: false,
        };
    let sums = METRICS
        .iter()
        .map(|metric| pb::Measure {
            metric: metric.to_proto() as i32,
            aggregation: Aggregation::Sum.to_proto() as i32,
            percentile: 0.0,
        })
        .collect();
    // A service's name is a label: the one most of its calls carry.
    let by_calls = vec![
        pb::Order {
            key: Some(order::Key::Dimension(Dimension::ServiceId as i32)),
            descending: false,
        },
        pb::Order {
            key: Some(order::Key::RowCount(true)),
            descending: true,
        },
    ];
    Ok(MetricPlan {
        sums: query(&[Dimension::ServiceId, Dimension::AppId], sums, vec![]),
        labels: query(
            &[Dimension::ServiceId, Dimension::ServiceName],
            vec![],
            by_calls,
        ),
        start_time: req.start_time,
        end_time: req.end_time,
    })
}

/// The answers to the plan's two queries → Qianfan's response body.
pub fn render(
    plan: &MetricPlan,
    rows: &[pb::AggregateRow],
    labels: &[pb::AggregateRow],
) -> MetricResponse {
    let mut names: HashMap<String, String> = HashMap::new();
    for row in labels {
        let name = text(&row.group, 1);
        if !name.is_empty() {
            names.entry(text(&row.group, 0)).or_insert(name);
        }
    }
    // Rows come sorted by service, then app: consecutive rows share a service.
    let mut services: Vec<ServiceMetrics> = Vec::new();
    for row in rows {
        let service_id = text(&row.group, 0);
        let v = |i: usize| row.values.get(i).and_then(|v| v.value).unwrap_or(0.0) as i64;
        let app = AppMetrics {
            app_id: text(&row.group, 1),
            metric: Metric {
                input_tokens_total: v(0),
                output_tokens_total: v(1),
                tokens_total: v(2),
                succeed_call_total: v(3),
                failure_call_total: v(4),
                call_total: v(5),
            },
        };
        match services.last_mut() {
            Some(s) if s.service_id == service_id => s.app_list.push(app),
            _ => services.push(ServiceMetrics {
                service_name: names.get(&service_id).cloned().unwrap_or_default(),
                service_id,
                app_list: vec![app],
            }),
        }
    }
    MetricResponse {
        request_id: request_id(),
        result: MetricResult {
            start_time: plan.start_time.clone(),
            end_time: plan.end_time.clone(),
            service_list: services,
        },
    }
}

/// Token and call totals per service and app over a range (Baidu Qianfan
/// `DescribeServiceMetric`).
#[utoipa::path(post, path = "/v2/service", tag = "Qianfan", operation_id = "DescribeServiceMetric",
    params(("Action" = String, Query, description = "The action: DescribeServiceMetric", pattern = "^DescribeServiceMetric$"),
           ("x-bce-date" = Option<String>, Header, description = "The signing time, ISO 8601 UTC")),
    request_body = MetricRequest,
    responses((status = 200, description = "Totals per service and app", body = MetricResponse)),
    security(("bce_auth_v1" = [])))]
pub(crate) async fn service(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, QianfanError> {
    // bce-auth-v1 does not sign the body, so the caller is checked (and
    // given its tenant's slot) before a byte of the body is read: an
    // unauthenticated client cannot make the gateway buffer anything.
    let key = state
        .auth
        .verify_bce(&signed_request(&method, &uri, &headers, b""))?;
    let admission = state.gate.admit(&key.principal.tenant)?;
    let body = admission.read_body(body).await?;
    let action = polymeter_auth::query_pairs(uri.query().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v);
    if action.as_deref() != Some(ACTION) {
        return Err(invalid(format!(
            "Action: {action:?} is not supported; supported: {ACTION}"
        )));
    }
    let plan = translate(&body, &key.principal)?;
    let stats = &state.services.stats;
    let rows = stats.aggregate_calls(plan.sums.clone()).await?.rows;
    let labels = if rows.is_empty() {
        vec![]
    } else {
        stats.aggregate_calls(plan.labels.clone()).await?.rows
    };
    Ok(Json(render(&plan, &rows, &labels)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::principal;

    #[test]
    fn the_one_table_gives_baidus_codes() {
        let cases = [
            (
                ErrorKind::Unauthenticated,
                Some(Reason::SignatureMismatch),
                "SignatureDoesNotMatch",
                400,
            ),
            (
                ErrorKind::Unauthenticated,
                Some(Reason::RequestExpired),
                "RequestExpired",
                400,
            ),
            (
                ErrorKind::Unauthenticated,
                Some(Reason::UnknownKey),
                "InvalidAccessKeyId",
                403,
            ),
            (
                ErrorKind::Unauthenticated,
                Some(Reason::CredentialsMissing),
                "AccessDenied",
                403,
            ),
            (
                ErrorKind::InvalidArgument,
                Some(Reason::MalformedBody),
                "MalformedJSON",
                400,
            ),
            (
                ErrorKind::InvalidArgument,
                Some(Reason::BodyShape),
                "InappropriateJSON",
                400,
            ),
            (ErrorKind::InvalidArgument, None, "InvalidParameter", 400),
            (ErrorKind::Unavailable, None, "ServiceUnavailable", 503),
            (
                ErrorKind::ResourceExhausted,
                None,
                "ServiceUnavailable",
                503,
            ),
            (ErrorKind::DeadlineExceeded, None, "RequestTimeout", 504),
            (ErrorKind::DataLoss, None, "InternalError", 500),
        ];
        for (kind, reason, name, status) in cases {
            let c = code(kind, reason);
            assert_eq!((c.as_str(), c.status().as_u16()), (name, status), "{kind}");
        }
    }

    #[test]
    fn the_body_becomes_a_minute_aligned_grouped_query_and_a_label_query() {
        let plan = translate(
            br#"{"serviceId": ["s1"], "appId": "a1", "startTime": "2024-05-01T10:00:31Z", "endTime": "2024-05-01T11:00:05Z"}"#,
            &principal(),
        )
        .unwrap();
        let s = &plan.sums;
        assert_eq!(s.start_us % 60_000_000, 0);
        assert_eq!(s.end_us - s.start_us, 61 * 60 * 1_000_000);
        assert_eq!(
            s.group_by,
            vec![Dimension::ServiceId as i32, Dimension::AppId as i32]
        );
        assert_eq!(s.filters[1].any_of, vec!["a1"]);
        assert_eq!(
            plan.labels.group_by,
            vec![Dimension::ServiceId as i32, Dimension::ServiceName as i32]
        );
        let group = |a: &str, b: &str| {
            vec![
                pb::GroupValue {
                    value: Some(a.into()),
                },
                pb::GroupValue {
                    value: Some(b.into()),
                },
            ]
        };
        let sums = vec![pb::AggregateRow {
            group: group("s1", "a1"),
            values: (1..=6)
                .map(|v| pb::MeasureValue {
                    value: Some(v as f64),
                })
                .collect(),
            ..Default::default()
        }];
        let labels = vec![pb::AggregateRow {
            group: group("s1", "chat"),
            ..Default::default()
        }];
        let body = serde_json::to_value(render(&plan, &sums, &labels)).unwrap();
        let service = &body["result"]["serviceList"][0];
        assert_eq!(service["serviceName"], "chat");
        assert_eq!(service["appList"][0]["metric"]["callTotal"], 6);
        assert_eq!(body["result"]["startTime"], "2024-05-01T10:00:31Z");
    }

    #[test]
    fn times_far_from_now_are_answered_not_panicked_on() {
        let plan = translate(
            br#"{"startTime": "2024-04-23T00:00:00Z", "endTime": "2199-12-31T23:58:30Z"}"#,
            &principal(),
        )
        .unwrap();
        assert_eq!(plan.sums.end_us % 60_000_000, 0);
        // Outside the one accepted range (years 1970 to 2200): refused by
        // name, never a panic in the minute arithmetic.
        for end in [
            "2263-01-01T00:00:00Z",
            "2300-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "+262142-12-31T23:59:00",
            "0000-01-01T00:00:00Z",
        ] {
            let body = format!(r#"{{"startTime": "2024-01-01T00:00:00Z", "endTime": "{end}"}}"#);
            let e = translate(body.as_bytes(), &principal()).err().unwrap();
            assert_eq!(e.0.kind(), ErrorKind::InvalidArgument, "{end}");
            assert!(e.0.message().starts_with("endTime"), "{}", e.0);
            assert!(
                e.0.message().contains(polymeter_model::time::RANGE),
                "{}",
                e.0
            );
        }
    }

    #[test]
    fn bad_bodies_get_the_right_reason() {
        let e = translate(b"{not json", &principal()).err().unwrap();
        assert_eq!(code(e.0.kind(), e.0.reason()), Code::MalformedJson);
        let e = translate(br#"{"serviceId": "s"}"#, &principal())
            .err()
            .unwrap();
        assert_eq!(code(e.0.kind(), e.0.reason()), Code::InappropriateJson);
        let e = translate(br#"{"startTime": "2024-05-01T10:00:00Z"}"#, &principal())
            .err()
            .unwrap();
        assert!(e.0.message().starts_with("endTime"), "{}", e.0);
    }
}
