//! OpenTelemetry spans → call writes. Each span is one call: ids
//! and parent from the span, `op_name` from `gen_ai.operation.name` (else the
//! span name), usage from the GenAI semantic conventions and their older and
//! OpenInference spellings, error from the span status or `error.type`, vendor
//! dimensions from span then resource attributes. A span that cannot be
//! mapped is counted and explained; the others are kept.

use crate::vendor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value as Any, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use polymeter_proto::v1 as pb;

/// Model attributes, most specific first.
const MODEL: &[&str] = &[
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "ai.model.id",
];
/// Input tokens (cached ones included, as the conventions define).
const INPUT: &[&str] = &[
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "ai.usage.inputTokens",
    "ai.usage.promptTokens",
];
const OUTPUT: &[&str] = &[
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "ai.usage.outputTokens",
    "ai.usage.completionTokens",
];
const TOTAL: &[&str] = &[
    "gen_ai.usage.total_tokens",
    "llm.usage.total_tokens",
    "llm.token_count.total",
    "ai.usage.totalTokens",
];
const CACHE_READ: &[&str] = &[
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
];
const CACHE_WRITE: &[&str] = &[
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
];
/// Where a resource names its project, when the request has no `project_id` header.
pub const PROJECT_ATTRIBUTES: &[&str] = &["project_id", "polymeter.project_id"];

/// What a request's spans became.
#[derive(Debug, Default)]
pub struct Mapped {
    pub writes: Vec<pb::CallWrite>,
    pub rejected: i64,
    /// The first few reasons, for `partial_success.error_message`.
    pub reasons: Vec<String>,
}

const MAX_REASONS: usize = 5;

impl Mapped {
    fn reject(&mut self, count: usize, reason: String) {
        self.rejected += count as i64;
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(reason);
        }
    }

    pub fn message(&self) -> String {
        let more = self.rejected as usize - self.reasons.len().min(self.rejected as usize);
        let mut m = self.reasons.join("; ");
        if more > 0 {
            m.push_str(&format!("; and {more} more"));
        }
        m
    }
}

fn find<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(value: &Any) -> Option<String> {
    match value {
        Any::StringValue(s) if !s.is_empty() => Some(s.clone()),
        Any::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

fn first_text(attrs: &[KeyValue], keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| find(attrs, k).and_then(text))
}

/// A token counter: an integer, a whole double, or a numeric string.
/// `Err` names the attribute when the value is not a count.
fn count(attrs: &[KeyValue], keys: &[&str]) -> Result<Option<i64>, String> {
    for key in keys {
        let Some(value) = find(attrs, key) else {
            continue;
        };
        let n = match value {
            Any::IntValue(i) => Some(*i),
            Any::DoubleValue(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
            Any::StringValue(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        return match n {
            Some(n) if n >= 0 => Ok(Some(n)),
            _ => Err(format!("{key} must be a non-negative integer")),
        };
    }
    Ok(None)
}

fn id_hex(bytes: &[u8], len: usize) -> Option<String> {
    (bytes.len() == len && bytes.iter().any(|b| *b != 0)).then(|| hex::encode(bytes))
}

/// Vendor dimensions: resource attributes, overridden by the span's own.
fn vendor_dimensions(resource: &[KeyValue], span: &[KeyValue]) -> pb::VendorDimensions {
    let mut out = pb::VendorDimensions::default();
    for (name, slot) in vendor::ATTRIBUTES {
        if let Some(v) = find(span, name)
            .or_else(|| find(resource, name))
            .and_then(text)
        {
            *slot(&mut out) = Some(v);
        }
    }
    out
}

fn usage(attrs: &[KeyValue]) -> Result<Vec<pb::ModelUsage>, String> {
    let model = first_text(attrs, MODEL);
    let input = count(attrs, INPUT)?;
    let output = count(attrs, OUTPUT)?;
    let total = count(attrs, TOTAL)?;
    let cache_read = count(attrs, CACHE_READ)?;
    let cache_write = count(attrs, CACHE_WRITE)?;
    let any_tokens = [input, output, total, cache_read, cache_write]
        .iter()
        .any(Option::is_some);
    if model.is_none() && !any_tokens {
        return Ok(vec![]);
    }
    let (input, output) = (input.unwrap_or(0), output.unwrap_or(0));
    Ok(vec![pb::ModelUsage {
        // Tokens without a model still count, under a name that says so.
        model: model.unwrap_or_else(|| "unknown".to_owned()),
        input_tokens: input,
        output_tokens: output,
        total_tokens: total.unwrap_or(input.saturating_add(output)),
        cache_read_input_tokens: cache_read.unwrap_or(0),
        cache_creation_input_tokens: cache_write.unwrap_or(0),
        requests: 1,
    }])
}

fn exception(span: &Span) -> Option<String> {
    let error_type = first_text(&span.attributes, &["error.type"]);
    match span.status.as_ref() {
        Some(s) if s.code == StatusCode::Error as i32 => Some(
            [
                Some(s.message.clone()).filter(|m| !m.is_empty()),
                error_type,
            ]
            .into_iter()
            .flatten()
            .next()
            .unwrap_or_else(|| "error".to_owned()),
        ),
        _ => error_type,
    }
}

fn call(project_id: &str, resource: &[KeyValue], span: &Span) -> Result<pb::CallWrite, String> {
    let trace_id = id_hex(&span.trace_id, 16).ok_or("trace_id must be 16 bytes, not all zero")?;
    let span_id = id_hex(&span.span_id, 8).ok_or("span_id must be 8 bytes, not all zero")?;
    let parent_id = id_hex(&span.parent_span_id, 8);
    if span.start_time_unix_nano == 0 {
        return Err("start_time_unix_nano is missing".into());
    }
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err("end_time_unix_nano is before start_time_unix_nano".into());
    }
    let micros = |nanos: u64| (nanos / 1000).min(i64::MAX as u64) as i64;
    for (field, nanos) in [
        ("start_time_unix_nano", span.start_time_unix_nano),
        ("end_time_unix_nano", span.end_time_unix_nano),
    ] {
        polymeter_model::time::check_micros(field, micros(nanos))?;
    }
    let name = (!span.name.is_empty()).then(|| span.name.clone());
    let op_name = first_text(&span.attributes, &["gen_ai.operation.name"])
        .or_else(|| name.clone())
        .ok_or("the span has neither a name nor gen_ai.operation.name")?;
    Ok(pb::CallWrite {
        tenant: String::new(),
        project_id: project_id.to_owned(),
        call_id: span_id,
        start: Some(pb::CallStart {
            trace_id,
            parent_id,
            thread_id: first_text(&span.attributes, &["gen_ai.conversation.id", "session.id"]),
            turn_id: None,
            op_name,
            display_name: name,
            started_at_us: micros(span.start_time_unix_nano),
            wb_user_id: None,
            wb_run_id: None,
            input_refs: vec![],
            vendor: Some(vendor_dimensions(resource, &span.attributes)),
        }),
        end: Some(pb::CallEnd {
            ended_at_us: micros(span.end_time_unix_nano),
            exception: exception(span),
            usage: usage(&span.attributes)?,
            output_refs: vec![],
        }),
    })
}

/// Maps every span of `request`. The project of a resource's spans is
/// `header_project`, else the resource's `project_id` attribute; spans whose
/// project is missing, malformed or not `allowed` are rejected.
pub fn map(
    tenant: &str,
    request: &ExportTraceServiceRequest,
    header_project: Option<&str>,
    allowed: impl Fn(&str) -> bool,
) -> Mapped {
    let mut out = Mapped::default();
    for (r, rs) in request.resource_spans.iter().enumerate() {
        let resource: &[KeyValue] = rs
            .resource
            .as_ref()
            .map(|r| &r.attributes[..])
            .unwrap_or(&[]);
        let spans: Vec<&Span> = rs.scope_spans.iter().flat_map(|s| &s.spans).collect();
        let project = header_project
            .map(str::to_owned)
            .or_else(|| first_text(resource, PROJECT_ATTRIBUTES));
        let Some(project) = project else {
            out.reject(
                spans.len(),
                format!("resource_spans[{r}]: no project: send a project_id header or a project_id resource attribute"),
            );
            continue;
        };
        if let Err(e) = polymeter_model::ProjectId::check(&project) {
            out.reject(spans.len(), format!("resource_spans[{r}]: {e}"));
            continue;
        }
        if !allowed(&project) {
            out.reject(
                spans.len(),
                format!("resource_spans[{r}]: this API key has no access to project {project:?}"),
            );
            continue;
        }
        for span in spans {
            match call(&project, resource, span) {
                Ok(mut write) => {
                    write.tenant = tenant.to_owned();
                    out.writes.push(write);
                }
                Err(e) => out.reject(
                    1,
                    format!("span {:?} ({}): {e}", span.name, hex::encode(&span.span_id)),
                ),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    fn kv(key: &str, value: Any) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }
    fn s(v: &str) -> Any {
        Any::StringValue(v.into())
    }
    fn i(v: i64) -> Any {
        Any::IntValue(v)
    }

    fn span(name: &str, attrs: Vec<KeyValue>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: name.into(),
            start_time_unix_nano: 1_714_557_600_000_000_000,
            end_time_unix_nano: 1_714_557_600_250_000_000,
            attributes: attrs,
            ..Default::default()
        }
    }

    fn request(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
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

    fn one(attrs: Vec<KeyValue>) -> pb::CallWrite {
        let m = map(
            "t",
            &request(vec![], vec![span("llm", attrs)]),
            Some("e/p"),
            |_| true,
        );
        assert_eq!(m.rejected, 0, "{}", m.message());
        m.writes.into_iter().next().unwrap()
    }

    fn usage_of(w: &pb::CallWrite) -> pb::ModelUsage {
        w.end.as_ref().unwrap().usage[0].clone()
    }

    #[test]
    fn ids_times_and_names_come_from_the_span() {
        let mut sp = span("ChatOpenAI", vec![kv("gen_ai.operation.name", s("chat"))]);
        sp.parent_span_id = vec![3; 8];
        let m = map("t", &request(vec![], vec![sp]), Some("e/p"), |_| true);
        let w = &m.writes[0];
        let start = w.start.as_ref().unwrap();
        assert_eq!(w.call_id, "0202020202020202");
        assert_eq!(start.trace_id, "01010101010101010101010101010101");
        assert_eq!(start.parent_id.as_deref(), Some("0303030303030303"));
        assert_eq!(start.op_name, "chat");
        assert_eq!(start.display_name.as_deref(), Some("ChatOpenAI"));
        assert_eq!(
            w.end.as_ref().unwrap().ended_at_us - start.started_at_us,
            250_000
        );
        assert_eq!(w.tenant, "t");
    }

    #[test]
    fn model_precedence() {
        let u = usage_of(&one(vec![
            kv("ai.model.id", s("d")),
            kv("llm.model_name", s("c")),
            kv("gen_ai.request.model", s("b")),
            kv("gen_ai.response.model", s("a")),
        ]));
        assert_eq!(u.model, "a");
        assert_eq!(
            usage_of(&one(vec![
                kv("ai.model.id", s("d")),
                kv("llm.model_name", s("c"))
            ]))
            .model,
            "c"
        );
        assert_eq!(usage_of(&one(vec![kv("ai.model.id", s("d"))])).model, "d");
    }

    #[test]
    fn every_token_family_is_read() {
        let current = usage_of(&one(vec![
            kv("gen_ai.response.model", s("m")),
            kv("gen_ai.usage.input_tokens", i(100)),
            kv("gen_ai.usage.output_tokens", i(20)),
            kv("gen_ai.usage.cache_read.input_tokens", i(30)),
            kv("gen_ai.usage.cache_creation.input_tokens", i(10)),
        ]));
        assert_eq!(
            (
                current.input_tokens,
                current.output_tokens,
                current.total_tokens,
                current.cache_read_input_tokens,
                current.cache_creation_input_tokens
            ),
            (100, 20, 120, 30, 10)
        );
        let older = usage_of(&one(vec![
            kv("gen_ai.request.model", s("m")),
            kv("gen_ai.usage.prompt_tokens", i(7)),
            kv("gen_ai.usage.completion_tokens", s("3")),
            kv("llm.usage.total_tokens", i(11)),
        ]));
        assert_eq!(
            (older.input_tokens, older.output_tokens, older.total_tokens),
            (7, 3, 11)
        );
        let openinference = usage_of(&one(vec![
            kv("llm.model_name", s("m")),
            kv("llm.token_count.prompt", i(5)),
            kv("llm.token_count.completion", Any::DoubleValue(2.0)),
            kv("llm.token_count.total", i(7)),
            kv("llm.token_count.prompt_details.cache_read", i(1)),
        ]));
        assert_eq!(
            (
                openinference.input_tokens,
                openinference.output_tokens,
                openinference.total_tokens,
                openinference.cache_read_input_tokens
            ),
            (5, 2, 7, 1)
        );
        let vercel = usage_of(&one(vec![
            kv("ai.model.id", s("m")),
            kv("ai.usage.promptTokens", i(4)),
            kv("ai.usage.completionTokens", i(6)),
        ]));
        assert_eq!((vercel.input_tokens, vercel.output_tokens), (4, 6));
        assert!(one(vec![kv("http.method", s("GET"))])
            .end
            .unwrap()
            .usage
            .is_empty());
        assert_eq!(
            usage_of(&one(vec![kv("gen_ai.usage.input_tokens", i(1))])).model,
            "unknown"
        );
    }

    #[test]
    fn errors_come_from_the_status_or_error_type() {
        let mut sp = span("x", vec![]);
        sp.status = Some(Status {
            code: StatusCode::Error as i32,
            message: "boom".into(),
        });
        let m = map("t", &request(vec![], vec![sp]), Some("e/p"), |_| true);
        assert_eq!(
            m.writes[0].end.as_ref().unwrap().exception.as_deref(),
            Some("boom")
        );
        assert_eq!(
            one(vec![kv("error.type", s("RateLimitError"))])
                .end
                .unwrap()
                .exception
                .as_deref(),
            Some("RateLimitError")
        );
        assert_eq!(one(vec![]).end.unwrap().exception, None);
    }

    #[test]
    fn vendor_dimensions_from_resource_then_span() {
        let m = map(
            "t",
            &request(
                vec![
                    kv("qianfan.service_id", s("svc")),
                    kv("qianfan.app_id", s("resource-app")),
                ],
                vec![span(
                    "x",
                    vec![kv("qianfan.app_id", i(7)), kv("alibaba.model_id", i(3))],
                )],
            ),
            Some("e/p"),
            |_| true,
        );
        let v = m.writes[0].start.as_ref().unwrap().vendor.clone().unwrap();
        assert_eq!(
            (
                v.service_id.as_deref(),
                v.app_id.as_deref(),
                v.model_id.as_deref()
            ),
            (Some("svc"), Some("7"), Some("3"))
        );
    }

    #[test]
    fn unmappable_spans_are_rejected_and_the_rest_kept() {
        let mut bad_id = span("bad id", vec![]);
        bad_id.trace_id = vec![0; 16];
        let mut backwards = span("backwards", vec![]);
        backwards.end_time_unix_nano = 1;
        let bad_tokens = span("bad tokens", vec![kv("gen_ai.usage.input_tokens", i(-1))]);
        let good = span("good", vec![]);
        let m = map(
            "t",
            &request(vec![], vec![bad_id, backwards, bad_tokens, good]),
            Some("e/p"),
            |_| true,
        );
        assert_eq!((m.writes.len(), m.rejected), (1, 3));
        let message = m.message();
        assert!(
            message.contains("trace_id")
                && message.contains("end_time_unix_nano")
                && message.contains("gen_ai.usage.input_tokens"),
            "{message}"
        );
    }

    #[test]
    fn the_project_comes_from_the_header_or_the_resource_and_must_be_allowed() {
        let r = request(
            vec![kv("project_id", s("acme/bot"))],
            vec![span("x", vec![])],
        );
        assert_eq!(
            map("t", &r, None, |_| true).writes[0].project_id,
            "acme/bot"
        );
        assert_eq!(
            map("t", &r, Some("acme/other"), |_| true).writes[0].project_id,
            "acme/other"
        );
        let refused = map("t", &r, None, |p| p != "acme/bot");
        assert_eq!(refused.rejected, 1);
        assert!(refused.message().contains("no access"));
        let nowhere = map("t", &request(vec![], vec![span("x", vec![])]), None, |_| {
            true
        });
        assert!(nowhere.message().contains("no project"));
    }
}
