//! The Alibaba Cloud Model Router dialect:
//! `GET /api/v1/modelRouter/open/observation/metrics` (ModelRouterQueryObservationMetrics,
//! version 20240611), signed with ACS3-HMAC-SHA256. It becomes one
//! `StatsService.AggregateCalls` over every project the credential reaches,
//! with no time buckets, grouped by the asked field. Errors use Alibaba's
//! envelope with both spellings of code and message.

use crate::auth::{request_id, signed_request};
use crate::error::{method_not_allowed, Envelope, Enveloped, Error, ErrorKind, Reason};
use crate::json::Instant;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Duration, Utc};
use polymeter_auth::{AuthError, Principal, METRICS_ACTION};
use polymeter_model::{Aggregation, Metric};
use polymeter_proto::v1::{self as pb, order, Dimension, Grain};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use utoipa::{IntoParams, ToSchema};

pub const PATH: &str = "/api/v1/modelRouter/open/observation/metrics";

/// The largest body the metrics action accepts (it reads nothing from it).
const BODY_LIMIT: usize = 64 << 10;
const ACTION: &str = "ModelRouterQueryObservationMetrics";
const VERSION: &str = "20240611";
const MAX_PAGE: u64 = 1000;
const DEFAULT_PAGE: u64 = 10;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        PATH,
        get(metrics).fallback(|method: Method| async move {
            AlibabaError::from(method_not_allowed(&method, PATH, "GET"))
        }),
    )
}

/// Alibaba's error codes, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidParameter,
    UnsupportedHttpMethod,
    IncompleteSignature,
    SignatureDoesNotMatch,
    AccessKeyNotFound,
    AccessKeyInactive,
    TimestampExpired,
    NonceUsed,
    PermissionDenied,
    ServiceUnavailable,
    ServiceTimeout,
    UnknownError,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::InvalidParameter => "InvalidParameter",
            Code::UnsupportedHttpMethod => "UnsupportedHTTPMethod",
            Code::IncompleteSignature => "IncompleteSignature",
            Code::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Code::AccessKeyNotFound => "InvalidAccessKeyId.NotFound",
            Code::AccessKeyInactive => "InvalidAccessKeyId.Inactive",
            Code::TimestampExpired => "InvalidTimeStamp.Expired",
            Code::NonceUsed => "SignatureNonceUsed",
            Code::PermissionDenied => "B.Permission.DeniedException",
            Code::ServiceUnavailable => "ServiceUnavailable",
            Code::ServiceTimeout => "ServiceTimeout",
            Code::UnknownError => "Server.Internal.UnknownError",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::AccessKeyNotFound => StatusCode::NOT_FOUND,
            Code::UnsupportedHttpMethod => StatusCode::METHOD_NOT_ALLOWED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::ServiceTimeout => StatusCode::GATEWAY_TIMEOUT,
            Code::UnknownError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Alibaba's one table: each kind, refined by its reason where Alibaba's
/// API gateway tells the cases apart, → Alibaba's code.
pub fn code(kind: ErrorKind, reason: Option<Reason>) -> Code {
    match (kind, reason) {
        (ErrorKind::Unauthenticated, Some(Reason::UnknownKey)) => Code::AccessKeyNotFound,
        (ErrorKind::Unauthenticated, Some(Reason::DisabledKey)) => Code::AccessKeyInactive,
        (ErrorKind::Unauthenticated, Some(Reason::SignatureMismatch)) => {
            Code::SignatureDoesNotMatch
        }
        (ErrorKind::Unauthenticated, Some(Reason::RequestExpired)) => Code::TimestampExpired,
        (ErrorKind::Unauthenticated, Some(Reason::NonceReused)) => Code::NonceUsed,
        (ErrorKind::Unauthenticated, _) => Code::IncompleteSignature,
        (
            ErrorKind::InvalidArgument
            | ErrorKind::NotFound
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType,
            _,
        ) => Code::InvalidParameter,
        (ErrorKind::MethodNotAllowed, _) => Code::UnsupportedHttpMethod,
        (ErrorKind::PermissionDenied, _) => Code::PermissionDenied,
        (ErrorKind::Unavailable | ErrorKind::ResourceExhausted, _) => Code::ServiceUnavailable,
        (ErrorKind::DeadlineExceeded, _) => Code::ServiceTimeout,
        (ErrorKind::DataLoss | ErrorKind::Internal, _) => Code::UnknownError,
    }
}

/// Alibaba's envelope, coded by [`code`].
pub struct Alibaba;

/// An [`Error`] in Alibaba's envelope.
pub type AlibabaError = Enveloped<Alibaba>;

fn invalid(message: impl Into<String>) -> AlibabaError {
    Error::invalid(message).into()
}

impl Envelope for Alibaba {
    fn render(error: &Error) -> Response {
        let id = request_id();
        let code = code(error.kind(), error.reason());
        let status = code.status();
        let body = AlibabaErrorBody {
            request_id: id.clone(),
            request_id_pascal: id.clone(),
            success: false,
            err_code: code.as_str().to_owned(),
            err_message: error.message().to_owned(),
            code: code.as_str().to_owned(),
            message: error.message().to_owned(),
            http_status_code: status.as_u16(),
        };
        (status, [("x-acs-request-id", id)], Json(body)).into_response()
    }
}

/// A field `groupBy` may name, with the dimensions it groups by and the keys
/// each adds to a ModelMetricsDTO.
struct GroupField {
    name: &'static str,
    dimensions: &'static [(Dimension, &'static str)],
}

const GROUP_FIELDS: &[GroupField] = &[
    GroupField {
        name: "modelId",
        dimensions: &[
            (Dimension::ModelId, "modelId"),
            (Dimension::Model, "modelName"),
        ],
    },
    GroupField {
        name: "modelName",
        dimensions: &[(Dimension::Model, "modelName")],
    },
    GroupField {
        name: "clientId",
        dimensions: &[(Dimension::ClientId, "clientId")],
    },
    GroupField {
        name: "apiKeyId",
        dimensions: &[(Dimension::ApiKeyId, "apiKeyId")],
    },
    GroupField {
        name: "resourceId",
        dimensions: &[(Dimension::ResourceId, "resourceId")],
    },
];

/// ModelMetricsDTO's fields, each one measure.
const METRICS: &[(&str, Metric, Aggregation)] = &[
    ("totalCalls", Metric::CallCount, Aggregation::Sum),
    ("successRate", Metric::SuccessCount, Aggregation::Avg),
    ("avgResponseTime", Metric::LatencyMs, Aggregation::Avg),
    ("inputTokens", Metric::InputTokens, Aggregation::Sum),
    ("outputTokens", Metric::OutputTokens, Aggregation::Sum),
];

const TIME_RANGES: &[(&str, i64)] = &[
    ("1h", 3600),
    ("6h", 6 * 3600),
    ("24h", 24 * 3600),
    ("7d", 7 * 86400),
    ("30d", 30 * 86400),
];

/// The query parameters, decoded; the last value wins for a repeated name.
struct Params(HashMap<String, String>);

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn integer(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, AlibabaError> {
        self.get(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| (min..=max).contains(n))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{name}: {v:?} must be an integer from {min} to {max}"
                        ))
                    })
            })
            .transpose()
    }

    fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, AlibabaError> {
        self.get(name)
            .map(|v| {
                Instant::parse(v).map(|i| i.0).ok_or_else(|| {
                    invalid(format!(
                        "{name}: {:?} is not an ISO 8601 time such as 2024-01-01T00:00:00Z between {}",
                        crate::error::truncate(v, 64),
                        polymeter_model::time::RANGE
                    ))
                })
            })
            .transpose()
    }
}

fn time_window(
    p: &Params,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), AlibabaError> {
    let (start, end) = (p.time("startTime")?, p.time("endTime")?);
    let (start, end) = match (p.get("timeRange"), start, end) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(invalid(
                "timeRange: give either timeRange or startTime/endTime, not both",
            ))
        }
        (Some(range), None, None) => {
            let seconds = TIME_RANGES
                .iter()
                .find(|(name, _)| *name == range)
                .map(|(_, s)| *s)
                .ok_or_else(|| {
                    invalid(format!(
                        "timeRange: {range:?} is not one of 1h, 6h, 24h, 7d, 30d"
                    ))
                })?;
            (now - Duration::seconds(seconds), now)
        }
        (None, Some(start), end) => (start, end.unwrap_or(now)),
        (None, None, Some(_)) => return Err(invalid("startTime: required when endTime is given")),
        (None, None, None) => (now - Duration::hours(24), now),
    };
    if end <= start {
        return Err(invalid("endTime: must be after startTime"));
    }
    Ok((start, end))
}

fn filters(p: &Params) -> Result<Vec<pb::Filter>, AlibabaError> {
    let mut out = Vec::new();
    for (name, dimension) in [
        ("clientId", Dimension::ClientId),
        ("apiKeyId", Dimension::ApiKeyId),
        ("modelId", Dimension::ModelId),
    ] {
        if let Some(id) = p.integer(name, i64::MIN, i64::MAX)? {
            out.push(pb::Filter {
                dimension: dimension as i32,
                any_of: vec![id.to_string()],
                prefixes: vec![],
                absent: false,
            });
        }
    }
    Ok(out)
}

fn group_fields(p: &Params) -> Result<Vec<&'static GroupField>, AlibabaError> {
    let Some(text) = p.get("groupBy") else {
        return Ok(vec![]);
    };
    let mut fields: Vec<&'static GroupField> = Vec::new();
    for name in text.split(',').map(str::trim) {
        let field = GROUP_FIELDS
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                let allowed: Vec<&str> = GROUP_FIELDS.iter().map(|f| f.name).collect();
                invalid(format!(
                    "groupBy: {name:?} is not one of {}",
                    allowed.join(", ")
                ))
            })?;
        if !fields.iter().any(|f| f.name == field.name) {
            fields.push(field);
        }
    }
    Ok(fields)
}

/// `keys[i]` names the DTO field of `dimensions[i]`.
fn order(
    p: &Params,
    dimensions: &[Dimension],
    keys: &[&'static str],
) -> Result<Vec<pb::Order>, AlibabaError> {
    let descending = match p
        .get("orderDirection")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("DESC") => true,
        Some("ASC") => false,
        Some(_) => return Err(invalid("orderDirection: must be ASC or DESC")),
    };
    let Some(name) = p.get("orderBy") else {
        return Ok(vec![]);
    };
    let key = if let Some(i) = METRICS.iter().position(|(m, _, _)| *m == name) {
        order::Key::Measure(i as u32)
    } else if let Some(i) = keys.iter().position(|k| *k == name) {
        order::Key::Dimension(dimensions[i] as i32)
    } else {
        let mut allowed: Vec<&str> = METRICS.iter().map(|(m, _, _)| *m).collect();
        allowed.extend(keys);
        return Err(invalid(format!(
            "orderBy: {name:?} is not one of {} (a group field must also be in groupBy)",
            allowed.join(", ")
        )));
    };
    Ok(vec![pb::Order {
        key: Some(key),
        descending,
    }])
}

/// Page-number or token paging; both select an offset and a size.
struct Paging {
    offset: u64,
    size: u64,
}

fn paging(p: &Params) -> Result<Paging, AlibabaError> {
    let token_mode = p.get("maxResults").is_some() || p.get("nextToken").is_some();
    let page_mode = p.get("pageIndex").is_some() || p.get("pageSize").is_some();
    if token_mode && page_mode {
        return Err(invalid(
            "pageIndex: use either pageIndex/pageSize or maxResults/nextToken, not both",
        ));
    }
    if token_mode {
        let size = p
            .integer("maxResults", 1, MAX_PAGE as i64)?
            .unwrap_or(DEFAULT_PAGE as i64) as u64;
        let offset = match p.get("nextToken") {
            None => 0,
            Some(t) => t.parse::<u64>().map_err(|_| {
                invalid(format!("nextToken: {t:?} is not a token this API returned"))
            })?,
        };
        Ok(Paging { offset, size })
    } else {
        let index = p
            .integer("pageIndex", 1, i64::MAX / MAX_PAGE as i64)?
            .unwrap_or(1) as u64;
        let size = p
            .integer("pageSize", 1, MAX_PAGE as i64)?
            .unwrap_or(DEFAULT_PAGE as i64) as u64;
        Ok(Paging {
            offset: (index - 1) * size,
            size,
        })
    }
}

fn need_total(p: &Params) -> Result<bool, AlibabaError> {
    match p.get("needTotalCount") {
        None | Some("false") | Some("False") => Ok(false),
        Some("true") | Some("True") => Ok(true),
        Some(v) => Err(invalid(format!(
            "needTotalCount: {v:?} must be true or false"
        ))),
    }
}

/// Ids are integers in Alibaba's schema; a value that is not one stays text.
fn id_value(value: Option<String>) -> Value {
    match value {
        None => Value::Null,
        Some(v) => v
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::String(v)),
    }
}

/// Alibaba's `ModelMetricsDTO`: one per group (or one for the whole range).
/// Group fields appear only when grouped by them; ids are integers in
/// Alibaba's schema and stay text when a stored value is not one.
#[derive(Serialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ModelMetricsDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub model_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub model_name: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub client_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub api_key_id: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    pub resource_id: Option<Value>,
    pub total_calls: i64,
    /// Percent of calls that ended without an exception, 0–100.
    pub success_rate: f64,
    /// Mean latency of finished calls, in milliseconds.
    pub avg_response_time: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
}

fn dto(row: &pb::AggregateRow, keys: &[&str]) -> ModelMetricsDto {
    let value = |i: usize| row.values.get(i).and_then(|v| v.value).unwrap_or(0.0);
    let mut out = ModelMetricsDto {
        total_calls: value(0) as i64,
        success_rate: value(1) * 100.0,
        avg_response_time: value(2),
        input_tokens: value(3) as i64,
        output_tokens: value(4) as i64,
        ..Default::default()
    };
    for (key, group) in keys.iter().zip(&row.group) {
        let text = group.value.clone();
        match *key {
            "modelName" => out.model_name = Some(text.map(Value::String).unwrap_or(Value::Null)),
            "modelId" => out.model_id = Some(id_value(text)),
            "clientId" => out.client_id = Some(id_value(text)),
            "apiKeyId" => out.api_key_id = Some(id_value(text)),
            _ => out.resource_id = Some(id_value(text)),
        }
    }
    out
}

/// The answer of `ModelRouterQueryObservationMetrics`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsRes {
    pub request_id: String,
    pub success: bool,
    pub http_status_code: u16,
    pub data: Vec<ModelMetricsDto>,
    pub page_index: u64,
    pub page_size: u64,
    pub max_results: u64,
    /// The token of the next page; empty on the last page.
    pub next_token: String,
    /// Groups in all pages, when `needTotalCount` is true.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_count: Option<u64>,
}

/// Alibaba's error body: both spellings of code and message (the official
/// SDK reads `Code`/`Message`).
#[derive(Serialize, ToSchema)]
pub struct AlibabaErrorBody {
    #[serde(rename = "requestId")]
    pub request_id: String,
    #[serde(rename = "RequestId")]
    pub request_id_pascal: String,
    pub success: bool,
    #[serde(rename = "errCode")]
    pub err_code: String,
    #[serde(rename = "errMessage")]
    pub err_message: String,
    #[serde(rename = "Code")]
    pub code: String,
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "httpStatusCode")]
    pub http_status_code: u16,
}

/// The query parameters (documentation of what [`translate`] reads).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(non_snake_case, dead_code)]
pub struct MetricsParams {
    /// A range ending now; not with `startTime`/`endTime`. Default: 24h.
    #[param(inline, value_type = Option<String>, pattern = "^(1h|6h|24h|7d|30d)$")]
    timeRange: Option<String>,
    /// Start of the range, ISO 8601.
    #[param(value_type = Option<String>, format = DateTime)]
    startTime: Option<String>,
    /// End of the range, ISO 8601; default now.
    #[param(value_type = Option<String>, format = DateTime)]
    endTime: Option<String>,
    clientId: Option<i64>,
    apiKeyId: Option<i64>,
    modelId: Option<i64>,
    /// Comma-separated: `modelId`, `modelName`, `clientId`, `apiKeyId`, `resourceId`.
    groupBy: Option<String>,
    /// A metric (`totalCalls`, `successRate`, …) or a grouped field.
    orderBy: Option<String>,
    #[param(value_type = Option<String>, pattern = "^(ASC|DESC|asc|desc)$")]
    orderDirection: Option<String>,
    #[param(minimum = 1)]
    pageIndex: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    pageSize: Option<i64>,
    #[param(minimum = 1, maximum = 1000)]
    maxResults: Option<i64>,
    nextToken: Option<String>,
    #[param(value_type = Option<String>, pattern = "^(true|True|false|False)$")]
    needTotalCount: Option<String>,
}

/// What one metrics request asks of the stats service, and how to page it.
pub struct MetricsPlan {
    request: pb::AggregateCallsRequest,
    /// The DTO key of each group dimension, in order.
    keys: Vec<&'static str>,
    paging: Paging,
    need_total: bool,
}

/// The query parameters → the stats query over every project `principal`
/// reaches, or a 400 naming the parameter.
pub fn translate(
    query: &str,
    principal: &Principal,
    now: DateTime<Utc>,
) -> Result<MetricsPlan, AlibabaError> {
    let params = Params(polymeter_auth::query_pairs(query).into_iter().collect());
    let (start, end) = time_window(&params, now)?;
    let fields = group_fields(&params)?;
    let (dimensions, keys): (Vec<Dimension>, Vec<&'static str>) = fields
        .iter()
        .flat_map(|f| f.dimensions.iter().copied())
        .unzip();
    let paging = paging(&params)?;
    let request = pb::AggregateCallsRequest {
        tenant: principal.tenant.clone(),
        project_ids: principal.projects.clone(),
        start_us: start.timestamp_micros(),
        end_us: end.timestamp_micros(),
        grain: Grain::Call as i32,
        bucketing: None,
        filters: filters(&params)?,
        group_by: dimensions.iter().map(|d| *d as i32).collect(),
        measures: METRICS
            .iter()
            .map(|(_, metric, aggregation)| pb::Measure {
                metric: metric.to_proto() as i32,
                aggregation: aggregation.to_proto() as i32,
                percentile: 0.0,
            })
            .collect(),
        order_by: order(&params, &dimensions, &keys)?,
        limit: paging.size,
        offset: paging.offset,
        fill_empty_buckets: false,
    };
    Ok(MetricsPlan {
        request,
        keys,
        paging,
        need_total: need_total(&params)?,
    })
}

/// The stats answer → Alibaba's response body.
pub fn render(plan: &MetricsPlan, answer: pb::AggregateCallsResponse) -> MetricsRes {
    let MetricsPlan {
        keys,
        paging,
        need_total,
        ..
    } = plan;
    let mut data: Vec<ModelMetricsDto> = answer.rows.iter().map(|r| dto(r, keys)).collect();
    let mut total = answer.total_rows;
    // Without groups the range is one element even when it holds no calls.
    if keys.is_empty() && total == 0 {
        total = 1;
        if paging.offset == 0 {
            data.push(dto(&pb::AggregateRow::default(), keys));
        }
    }
    let next = paging.offset + data.len() as u64;
    MetricsRes {
        request_id: request_id(),
        success: true,
        http_status_code: 200,
        data,
        page_index: paging.offset / paging.size + 1,
        page_size: paging.size,
        max_results: paging.size,
        next_token: if next < total {
            next.to_string()
        } else {
            String::new()
        },
        total_count: need_total.then_some(total),
    }
}

/// Call metrics of the credential's projects (Alibaba Cloud Model Router
/// `ModelRouterQueryObservationMetrics`, version 20240611).
#[utoipa::path(get, path = "/api/v1/modelRouter/open/observation/metrics", tag = "Alibaba", operation_id = "ModelRouterQueryObservationMetrics",
    params(MetricsParams,
        ("x-acs-action" = String, Header, description = "ModelRouterQueryObservationMetrics"),
        ("x-acs-version" = String, Header, description = "20240611"),
        ("x-acs-date" = String, Header, description = "The signing time, ISO 8601 UTC; within 15 minutes of the server's"),
        ("x-acs-signature-nonce" = String, Header, description = "Unique per request; a reused nonce is refused"),
        ("x-acs-content-sha256" = String, Header, description = "Hex SHA-256 of the body")),
    responses((status = 200, description = "Metrics", body = MetricsRes)),
    security(("acs3_hmac_sha256" = [])))]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, AlibabaError> {
    // ACS3 signs the body's hash, so the body is read before the caller is
    // known; the action takes its parameters from the query, so a body
    // larger than a signature's worth of slack is refused unread.
    let body = crate::read_body_within(body, None, BODY_LIMIT).await?;
    let key = state
        .auth
        .verify_acs3(&signed_request(&method, &uri, &headers, &body))?;
    let _admission = state.gate.admit(&key.principal.tenant)?;
    for (header, expected) in [("x-acs-action", ACTION), ("x-acs-version", VERSION)] {
        let got = headers.get(header).and_then(|v| v.to_str().ok());
        if got != Some(expected) {
            return Err(invalid(format!(
                "{header}: must be {expected}, got {got:?}"
            )));
        }
    }
    if !key.allows(METRICS_ACTION) {
        return Err(AuthError::Forbidden(format!(
            "the access key {} is not allowed {METRICS_ACTION}",
            key.principal.key_id
        ))
        .into());
    }
    let plan = translate(uri.query().unwrap_or(""), &key.principal, Utc::now())?;
    let answer = state
        .services
        .stats
        .aggregate_calls(plan.request.clone())
        .await?;
    Ok(Json(render(&plan, answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::principal;

    #[test]
    fn every_kind_has_an_alibaba_code_and_auth_reasons_keep_theirs() {
        assert_eq!(
            code(ErrorKind::Unauthenticated, Some(Reason::NonceReused)),
            Code::NonceUsed
        );
        assert_eq!(
            code(ErrorKind::Unauthenticated, Some(Reason::UnknownKey)).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            code(ErrorKind::ResourceExhausted, None).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            code(ErrorKind::DeadlineExceeded, None).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        for kind in ErrorKind::ALL {
            let status = code(kind, None).status();
            assert_eq!(
                status.is_server_error(),
                kind.http_status().is_server_error(),
                "{kind}"
            );
        }
    }

    #[test]
    fn parameters_become_one_grouped_ordered_paged_query() {
        let now = Utc::now();
        let plan = translate(
            "timeRange=7d&groupBy=modelId&orderBy=totalCalls&orderDirection=ASC&pageIndex=2&pageSize=5&needTotalCount=True&clientId=42",
            &principal(),
            now,
        )
        .unwrap();
        let r = &plan.request;
        assert_eq!(r.tenant, "local");
        assert_eq!(r.end_us - r.start_us, 7 * 86_400 * 1_000_000);
        assert_eq!(
            r.group_by,
            vec![Dimension::ModelId as i32, Dimension::Model as i32]
        );
        assert_eq!((r.limit, r.offset), (5, 5));
        assert_eq!(r.filters[0].any_of, vec!["42"]);
        assert!(!r.order_by[0].descending);
        let body = serde_json::to_value(render(
            &plan,
            pb::AggregateCallsResponse {
                bucket_width_seconds: 0,
                total_rows: 6,
                rows: vec![pb::AggregateRow {
                    group: vec![
                        pb::GroupValue {
                            value: Some("7".into()),
                        },
                        pb::GroupValue {
                            value: Some("qwen".into()),
                        },
                    ],
                    values: [4.0, 0.75, 120.5, 10.0, 20.0]
                        .iter()
                        .map(|v| pb::MeasureValue { value: Some(*v) })
                        .collect(),
                    ..Default::default()
                }],
            },
        ))
        .unwrap();
        let dto = &body["data"][0];
        assert_eq!(dto["modelId"], 7);
        assert_eq!(dto["modelName"], "qwen");
        assert_eq!(dto["successRate"], 75.0);
        assert_eq!(dto["totalCalls"], 4);
        assert_eq!(body["totalCount"], 6);
        assert_eq!(body["nextToken"], "");
        assert_eq!(body["pageIndex"], 2);
    }

    #[test]
    fn bad_parameters_name_themselves() {
        for (query, name) in [
            ("timeRange=2w", "timeRange"),
            ("groupBy=colour", "groupBy"),
            ("orderDirection=UP", "orderDirection"),
            ("pageSize=0", "pageSize"),
            ("needTotalCount=maybe", "needTotalCount"),
            ("pageIndex=1&maxResults=5", "pageIndex"),
        ] {
            let err = translate(query, &principal(), Utc::now()).err().unwrap();
            assert_eq!(err.0.kind(), ErrorKind::InvalidArgument);
            assert!(err.0.message().starts_with(name), "{}", err.0);
        }
    }
}
