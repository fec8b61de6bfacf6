//! Weave calls → call writes.
//!
//! * Ids: a start without `id` or `trace_id` gets a fresh UUIDv7.
//! * Refs: every string in `inputs` (resp. `output`), at any depth, that starts
//!   with `weave:///` becomes an input (resp. output) ref, in order, once.
//! * Usage: `summary.usage` maps a model name to its counters. `input_tokens`
//!   and `prompt_tokens` are added into input tokens, `output_tokens` and
//!   `completion_tokens` into output tokens; `total_tokens` is kept as sent and
//!   defaults to input + output. `cache_read_input_tokens` (or OpenAI's
//!   `prompt_tokens_details.cached_tokens` / `input_tokens_details.cached_tokens`
//!   when it is absent) and `cache_creation_input_tokens` are kept as sent.
//!   Other keys are ignored; a counter that is not a non-negative integer is
//!   refused, naming its path.

use crate::error::IngestError;
use polymeter_model::{CallId, ProjectId};
use polymeter_proto::v1::{self as pb, weave_call_op::Op};
use serde_json::{Map, Value};

fn invalid(at: &str, message: impl std::fmt::Display) -> IngestError {
    IngestError::InvalidArgument(format!("{at}{message}"))
}

fn parse_json(at: &str, field: &str, text: &str) -> Result<Value, IngestError> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).map_err(|e| invalid(at, format!("{field} is not valid JSON: {e}")))
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::String(s) if s.starts_with("weave:///") && !refs.contains(s) => {
            refs.push(s.clone());
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        Value::Object(map) => map.values().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

fn refs_in(value: &Value) -> Vec<String> {
    let mut refs = Vec::new();
    collect_refs(value, &mut refs);
    refs
}

fn counter(
    at: &str,
    path: &str,
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<i64>, IngestError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v >= 0 => Ok(Some(v)),
            _ => Err(invalid(
                at,
                format!("{path}.{key} must be a non-negative integer, got {n}"),
            )),
        },
        Some(other) => Err(invalid(
            at,
            format!("{path}.{key} must be a non-negative integer, got {other}"),
        )),
    }
}

fn cached_detail(
    at: &str,
    path: &str,
    usage: &Map<String, Value>,
) -> Result<Option<i64>, IngestError> {
    for details in ["prompt_tokens_details", "input_tokens_details"] {
        if let Some(Value::Object(d)) = usage.get(details) {
            if let Some(v) = counter(at, &format!("{path}.{details}"), d, "cached_tokens")? {
                return Ok(Some(v));
            }
        }
    }
    Ok(None)
}

/// The per-model usage in a Weave `summary`.
pub fn usage_from_summary(at: &str, summary: &Value) -> Result<Vec<pb::ModelUsage>, IngestError> {
    let usage = match summary {
        Value::Null => return Ok(Vec::new()),
        Value::Object(s) => match s.get("usage") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Object(u)) => u,
            Some(other) => {
                return Err(invalid(
                    at,
                    format!("summary.usage must be an object of models, got {other}"),
                ))
            }
        },
        other => {
            return Err(invalid(
                at,
                format!("summary must be an object, got {other}"),
            ))
        }
    };
    let mut models = Vec::with_capacity(usage.len());
    for (model, counters) in usage {
        let path = format!("summary.usage.{model}");
        let Value::Object(c) = counters else {
            return Err(invalid(
                at,
                format!("{path} must be an object of counters, got {counters}"),
            ));
        };
        let sum = |keys: &[&str]| -> Result<i64, IngestError> {
            keys.iter().try_fold(0i64, |acc, k| {
                Ok(acc.saturating_add(counter(at, &path, c, k)?.unwrap_or(0)))
            })
        };
        let input_tokens = sum(&["input_tokens", "prompt_tokens"])?;
        let output_tokens = sum(&["output_tokens", "completion_tokens"])?;
        let cache_read = match counter(at, &path, c, "cache_read_input_tokens")? {
            Some(v) => v,
            None => cached_detail(at, &path, c)?.unwrap_or(0),
        };
        models.push(pb::ModelUsage {
            model: model.clone(),
            input_tokens,
            output_tokens,
            total_tokens: counter(at, &path, c, "total_tokens")?
                .unwrap_or(input_tokens.saturating_add(output_tokens)),
            cache_read_input_tokens: cache_read,
            cache_creation_input_tokens: counter(at, &path, c, "cache_creation_input_tokens")?
                .unwrap_or(0),
            requests: counter(at, &path, c, "requests")?.unwrap_or(0),
        });
    }
    Ok(models)
}

fn check_project(at: &str, project_id: &str) -> Result<(), IngestError> {
    ProjectId::parse(project_id)
        .map(|_| ())
        .map_err(|e| invalid(at, e))
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn start_write(
    at: &str,
    s: pb::WeaveCallStart,
) -> Result<(pb::CallWrite, pb::CallRef), IngestError> {
    check_project(at, &s.project_id)?;
    if s.op_name.is_empty() {
        return Err(invalid(at, "start.op_name must not be empty"));
    }
    let id = s.id.filter(|i| !i.is_empty()).unwrap_or_else(new_id);
    let trace_id = s.trace_id.filter(|t| !t.is_empty()).unwrap_or_else(new_id);
    let inputs = parse_json(at, "start.inputs", &s.inputs_json)?;
    let attributes = parse_json(at, "start.attributes", &s.attributes_json)?;
    let vendor = crate::vendor::from_json(&attributes)
        .map_err(|e| invalid(at, format!("start.attributes.{e}")))?;
    let write = pb::CallWrite {
        tenant: String::new(),
        project_id: s.project_id,
        call_id: id.clone(),
        start: Some(pb::CallStart {
            trace_id: trace_id.clone(),
            parent_id: s.parent_id.filter(|p| !p.is_empty()),
            thread_id: s.thread_id,
            turn_id: s.turn_id,
            op_name: s.op_name,
            display_name: s.display_name,
            started_at_us: s.started_at_us,
            wb_user_id: s.wb_user_id,
            wb_run_id: s.wb_run_id,
            input_refs: refs_in(&inputs),
            vendor: Some(vendor),
        }),
        end: None,
    };
    Ok((write, pb::CallRef { id, trace_id }))
}

fn end_half(at: &str, e: &pb::WeaveCallEnd) -> Result<pb::CallEnd, IngestError> {
    let summary = parse_json(at, "end.summary", &e.summary_json)?;
    let output = parse_json(at, "end.output", &e.output_json)?;
    Ok(pb::CallEnd {
        ended_at_us: e.ended_at_us,
        exception: e.exception.clone(),
        usage: usage_from_summary(at, &summary)?,
        output_refs: refs_in(&output),
    })
}

fn end_write(at: &str, e: pb::WeaveCallEnd) -> Result<(pb::CallWrite, pb::CallRef), IngestError> {
    check_project(at, &e.project_id)?;
    CallId::new(e.id.clone()).map_err(|err| invalid(at, format!("end.{err}")))?;
    let end = end_half(at, &e)?;
    let write = pb::CallWrite {
        tenant: String::new(),
        project_id: e.project_id,
        call_id: e.id.clone(),
        start: None,
        end: Some(end),
    };
    Ok((
        write,
        pb::CallRef {
            id: e.id,
            trace_id: String::new(),
        },
    ))
}

/// Normalises a batch of Weave ops into one write per op, and the ids each
/// call ended up with. The whole batch is refused if any op is malformed, so
/// nothing is half-written.
pub fn normalise(
    tenant: &str,
    ops: Vec<pb::WeaveCallOp>,
) -> Result<(Vec<pb::CallWrite>, Vec<pb::CallRef>), IngestError> {
    let many = ops.len() > 1;
    let mut writes = Vec::with_capacity(ops.len());
    let mut refs = Vec::with_capacity(ops.len());
    for (i, op) in ops.into_iter().enumerate() {
        let at = if many {
            format!("batch[{i}]: ")
        } else {
            String::new()
        };
        let (mut write, call_ref) = match op.op {
            Some(Op::Start(s)) => start_write(&at, s)?,
            Some(Op::End(e)) => end_write(&at, e)?,
            Some(Op::Complete(c)) => {
                let (Some(s), Some(e)) = (c.start, c.end) else {
                    return Err(invalid(
                        &at,
                        "a complete call needs both its start and end halves",
                    ));
                };
                let (mut write, mut call_ref) = start_write(&at, s)?;
                if e.ended_at_us < write.start.as_ref().unwrap().started_at_us {
                    return Err(invalid(&at, "ended_at must not be before started_at"));
                }
                write.end = Some(end_half(&at, &e)?);
                call_ref.trace_id = write.start.as_ref().unwrap().trace_id.clone();
                (write, call_ref)
            }
            None => return Err(invalid(&at, "empty op: expected start, end or complete")),
        };
        write.tenant = tenant.to_owned();
        writes.push(write);
        refs.push(call_ref);
    }
    Ok((writes, refs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prompt_and_completion_tokens_fold_into_input_and_output() {
        let usage = usage_from_summary(
            "",
            &json!({"usage": {"gpt-4o": {"prompt_tokens": 10, "input_tokens": 5,
                "completion_tokens": 7, "requests": 2,
                "prompt_tokens_details": {"cached_tokens": 3}}}}),
        )
        .unwrap();
        assert_eq!(usage.len(), 1);
        let u = &usage[0];
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.total_tokens),
            (15, 7, 22)
        );
        assert_eq!((u.cache_read_input_tokens, u.requests), (3, 2));
    }

    #[test]
    fn total_tokens_is_kept_as_sent() {
        let usage = usage_from_summary(
            "",
            &json!({"usage": {"m": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 9}}}),
        )
        .unwrap();
        assert_eq!(usage[0].total_tokens, 9);
    }

    #[test]
    fn bad_counters_are_refused_with_their_path() {
        let err = usage_from_summary("", &json!({"usage": {"m": {"prompt_tokens": "ten"}}}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "summary.usage.m.prompt_tokens must be a non-negative integer, got \"ten\""
        );
        assert!(usage_from_summary("", &json!({"usage": {"m": {"output_tokens": -1}}})).is_err());
    }

    #[test]
    fn refs_are_found_at_any_depth_once() {
        let refs = refs_in(
            &json!({"a": "weave:///e/p/object/x:1", "b": [{"c": "weave:///e/p/op/y:2"}],
            "d": "weave:///e/p/object/x:1", "e": "not a ref"}),
        );
        assert_eq!(refs, ["weave:///e/p/object/x:1", "weave:///e/p/op/y:2"]);
    }
}
