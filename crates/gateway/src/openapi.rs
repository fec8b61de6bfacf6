//! The gateway's published contract: an OpenAPI 3.1 document generated from
//! the types the dialects parse and render (`utoipa` derives on the request
//! and answer structs, `#[utoipa::path]` on the handlers), served at
//! `GET /openapi.json` and written by `polymeter openapi`.
//!
//! Error responses are not written by hand per route: [`Contract`] adds, to
//! every operation of a dialect, one response per status that dialect's one
//! error table can produce, with its envelope and the vendor codes it uses.

use crate::error::{ErrorKind, Reason};
use crate::{alibaba, console, health, otel, prices, projects, qianfan, weave};
use axum::Json;
use std::collections::{BTreeMap, BTreeSet};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Polymeter",
        description = "LLM usage and quality metrics behind the REST dialects existing clients speak: W&B Weave, Alibaba Cloud Model Router, Baidu Qianfan and OpenTelemetry (OTLP/HTTP), plus Polymeter's own price overrides and operations routes.\n\nLimits, on every route (a request past one is refused with 400 naming the field, 413 for the body): a body of at most 64 MiB (also once decompressed), one JSON document; every time between 1970-01-01T00:00:00Z and 2200-01-01T00:00:00Z; ids (call, trace, parent, thread, turn, project) at most 512 bytes; names (op, model, user, run, vendor dimensions, refs) at most 1024 bytes; an exception at most 64 KiB; at most 255 models of usage and 1000 input or output refs per call; a query at most 100 percentiles, 128 measures, 2,000,000 measure × bucket values and 1000 values per filter. Past --max-inflight requests in flight (or a tenant's share), or past the bytes of request bodies a tenant (--tenant-inflight-mib) or the gateway (--max-inflight-mib) may buffer at once, 503 with Retry-After. A project's retention and deletion: the Projects routes."
    ),
    paths(
        weave::calls::start,
        weave::calls::end,
        weave::calls::upsert_batch,
        weave::calls::complete,
        weave::stats::calls_stats,
        weave::feedback::create,
        weave::feedback::batch_create,
        weave::feedback::aggregate,
        prices::list,
        prices::lookup,
        prices::set,
        prices::delete,
        projects::list_projects,
        console::chart,
        projects::get_retention,
        projects::set_retention,
        projects::keep_forever,
        projects::delete_data,
        alibaba::metrics,
        qianfan::service,
        otel::traces,
        health::healthz,
        health::readyz,
        prometheus,
        openapi_json,
    ),
    components(schemas(
        weave::WeaveErrorBody,
        alibaba::AlibabaErrorBody,
        qianfan::QianfanErrorBody,
        otel::OtlpStatusJson,
    )),
    modifiers(&Contract),
    tags(
        (name = "Weave", description = "W&B Weave: call and feedback ingest, `/calls/stats`, `/feedback/aggregate`. Errors: `{\"reason\"}`."),
        (name = "Prices", description = "Per-project price overrides, authenticated and enveloped like Weave."),
        (name = "Console", description = "What the web console (served at /console/) asks besides the query APIs: its charts, drawn as SVG from numbers sent in the request; no stored data is read."),
        (name = "Projects", description = "The projects a key sees (with call counts and first and last call), and a project's data as a whole: its retention period and its deletion; authenticated and enveloped like Weave."),
        (name = "Alibaba", description = "Alibaba Cloud Model Router observation metrics, signed with ACS3-HMAC-SHA256."),
        (name = "Qianfan", description = "Baidu Qianfan DescribeServiceMetric, signed with bce-auth-v1."),
        (name = "OpenTelemetry", description = "OTLP/HTTP trace export. Errors: `google.rpc.Status` in the request's encoding."),
        (name = "Operations", description = "Health, readiness, metrics and this document."),
    )
)]
struct ApiDoc;

/// Prometheus text exposition of the gateway's metrics.
#[utoipa::path(get, path = "/metrics", tag = "Operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
#[allow(dead_code)] // documents the route `exposition::render` serves
fn prometheus() {}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "Operations",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
pub(crate) async fn openapi_json() -> Json<Document> {
    // Built once: the document is a function of the code alone.
    static DOCUMENT: std::sync::OnceLock<Document> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}

/// The whole contract.
pub fn document() -> Document {
    ApiDoc::openapi()
}

/// The document as pretty JSON, as `polymeter openapi` writes it.
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .expect("an OpenAPI document always serialises")
}

/// Security schemes and each dialect's error responses.
struct Contract;

/// A dialect's error statuses: each with the vendor codes behind it.
type Statuses = BTreeMap<u16, BTreeSet<&'static str>>;

fn every_case() -> impl Iterator<Item = (ErrorKind, Option<Reason>)> {
    ErrorKind::ALL.into_iter().flat_map(|kind| {
        std::iter::once(None)
            .chain(Reason::ALL.into_iter().map(Some))
            .map(move |reason| (kind, reason))
    })
}

/// Statuses a route can answer with, from one dialect's table, leaving out
/// the kinds in `skip` (those the route cannot produce). A wrong method is a
/// property of the path, not of an operation, so 405 is always left out.
fn statuses(
    skip: &[ErrorKind],
    table: impl Fn(ErrorKind, Option<Reason>) -> (u16, &'static str),
) -> Statuses {
    let mut out = Statuses::new();
    for (kind, reason) in every_case() {
        if kind == ErrorKind::MethodNotAllowed || skip.contains(&kind) {
            continue;
        }
        let (status, code) = table(kind, reason);
        out.entry(status).or_default().insert(code);
    }
    out
}

/// Weave's and OTLP's table: the kind's own status, named by the kind.
fn by_kind(kind: ErrorKind, _: Option<Reason>) -> (u16, &'static str) {
    (weave::status(kind).as_u16(), kind.as_str())
}

fn add_errors(
    operation: &mut Operation,
    statuses: &Statuses,
    content: &[(&str, &str)],
    what: &str,
) {
    for (status, codes) in statuses {
        let codes: Vec<&str> = codes.iter().copied().collect();
        let mut response = ResponseBuilder::new().description(format!(
            "{what}; {}: {}",
            if codes.len() == 1 { "code" } else { "codes" },
            codes.join(", ")
        ));
        for (media, schema) in content {
            response = response.content(
                *media,
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        *schema,
                    ))))
                    .build(),
            );
        }
        operation
            .responses
            .responses
            .insert(status.to_string(), RefOr::T(response.build()));
    }
}

impl Modify for Contract {
    fn modify(&self, api: &mut Document) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "weave_basic",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A Polymeter API key as the password: `Authorization: Basic base64(\"api:<key>\")`, as W&B clients send `WANDB_API_KEY`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "acs3_hmac_sha256",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "Alibaba Cloud ACS3-HMAC-SHA256: `ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<names>,Signature=<hex>`. The signature is the hex HMAC-SHA256, keyed by the AccessKey secret, of `ACS3-HMAC-SHA256\\n` + hex SHA-256 of the canonical request (method, path, sorted RFC 3986 query, signed headers — `host` and every `x-acs-*` — the signed-header list, and the body's hex SHA-256). The key needs the action aicontent:ModelRouterQueryObservationMetrics.",
            ))),
        );
        components.add_security_scheme(
            "bce_auth_v1",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "Baidu bce-auth-v1: `bce-auth-v1/<ak>/<timestamp>/<expiration>/<signedHeaders>/<signature>`. The signing key is the hex HMAC-SHA256 of the prefix keyed by the secret key; the signature is the hex HMAC-SHA256 of the canonical request (method, path, sorted query, the signed headers and every `x-bce-*`) keyed by that hex string. The body is not signed.",
            ))),
        );

        // Weave routes read any body as JSON, so none answers 415.
        let weave = statuses(&[ErrorKind::UnsupportedMediaType], by_kind);
        let otlp = statuses(&[], by_kind);
        let alibaba = statuses(&[], |k, r| {
            let c = alibaba::code(k, r);
            (c.status().as_u16(), c.as_str())
        });
        let qianfan = statuses(&[], |k, r| {
            let c = qianfan::code(k, r);
            (c.status().as_u16(), c.as_str())
        });
        let json = "application/json";
        for item in api.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                match operation.tags.as_ref().and_then(|t| t.first()).map(String::as_str) {
                    Some("Weave") | Some("Prices") | Some("Projects") | Some("Console") => add_errors(
                        operation,
                        &weave,
                        &[(json, weave::WeaveErrorBody::name().as_ref())],
                        "Error in Weave's envelope",
                    ),
                    Some("Alibaba") => add_errors(
                        operation,
                        &alibaba,
                        &[(json, alibaba::AlibabaErrorBody::name().as_ref())],
                        "Error in Alibaba's envelope",
                    ),
                    Some("Qianfan") => add_errors(
                        operation,
                        &qianfan,
                        &[(json, qianfan::QianfanErrorBody::name().as_ref())],
                        "Error in Qianfan's envelope, also in the X-Bce-Error-Code and X-Bce-Error-Message headers",
                    ),
                    Some("OpenTelemetry") => add_errors(
                        operation,
                        &otlp,
                        &[
                            (json, otel::OtlpStatusJson::name().as_ref()),
                            ("application/x-protobuf", "OtlpProtobuf"),
                        ],
                        "google.rpc.Status in the request's encoding",
                    ),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/call/start",
            "/call/end",
            "/call/upsert_batch",
            "/v2/{entity}/{project}/calls/complete",
            "/calls/stats",
            "/feedback/create",
            "/feedback/batch/create",
            "/feedback/aggregate",
            "/v1/projects/{entity}/{project}/prices",
            "/v1/projects/{entity}/{project}/prices/{model}",
            "/api/v1/modelRouter/open/observation/metrics",
            "/v2/service",
            "/otel/v1/traces",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is missing");
        }
    }

    #[test]
    fn error_responses_come_from_each_dialects_table() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let alibaba =
            &doc["paths"]["/api/v1/modelRouter/open/observation/metrics"]["get"]["responses"];
        assert!(alibaba["404"]["description"]
            .as_str()
            .unwrap()
            .contains("InvalidAccessKeyId.NotFound"));
        let qianfan = &doc["paths"]["/v2/service"]["post"]["responses"];
        assert!(qianfan["403"]["description"]
            .as_str()
            .unwrap()
            .contains("InvalidAccessKeyId"));
        let stats = &doc["paths"]["/calls/stats"]["post"]["responses"];
        for status in ["400", "401", "403", "503", "504"] {
            assert!(stats[status].is_object(), "/calls/stats lacks {status}");
        }
    }
}
