//! Weave feedback → feedback records: ids and `created_at` are set here, refs
//! are checked, and the dimensions that derive from refs are filled in
//! (`scorer_id`, `monitor_id`, `span_type`). A batch is refused whole when any
//! item is malformed.

use crate::error::IngestError;
use polymeter_model::feedback::{parse_span_status, WeaveRef};
use polymeter_model::ProjectId;
use polymeter_proto::v1 as pb;

fn invalid(at: &str, message: impl std::fmt::Display) -> IngestError {
    IngestError::InvalidArgument(format!("{at}{message}"))
}

fn record(
    at: &str,
    tenant: &str,
    f: pb::WeaveFeedback,
    now_ms: i64,
) -> Result<pb::FeedbackWrite, IngestError> {
    ProjectId::check(&f.project_id).map_err(|e| invalid(at, format!("project_id: {e}")))?;
    if f.feedback_type.is_empty() {
        return Err(invalid(at, "feedback_type must not be empty"));
    }
    let weave_ref = WeaveRef::parse("weave_ref", &f.weave_ref).map_err(|e| invalid(at, e))?;
    if format!("{}/{}", weave_ref.entity, weave_ref.project) != f.project_id {
        return Err(invalid(
            at,
            format!(
                "weave_ref: {:?} is not in project {:?}",
                f.weave_ref, f.project_id
            ),
        ));
    }
    let object = |field: &str, r: &Option<String>| -> Result<Option<String>, IngestError> {
        r.as_deref()
            .map(|text| {
                WeaveRef::parse(field, text)
                    .and_then(|r| r.object_name(field).map(str::to_owned))
                    .map_err(|e| invalid(at, e))
            })
            .transpose()
    };
    let scorer_id = object("runnable_ref", &f.runnable_ref)?;
    let monitor_id = object("trigger_ref", &f.trigger_ref)?;
    if let Some(call) = f.call_ref.as_deref() {
        WeaveRef::parse("call_ref", call).map_err(|e| invalid(at, e))?;
    }
    let status = parse_span_status(&f.span_status_code)
        .map_err(|e| invalid(at, format!("span_status_code: {e}")))?;
    for (name, value) in &f.scorer_ratings {
        if !value.is_finite() || !(0.0..=1.0).contains(value) {
            return Err(invalid(
                at,
                format!("scorer_ratings.{name} must be within 0..=1, got {value}"),
            ));
        }
    }
    let mut write = pb::FeedbackWrite {
        tenant: tenant.to_owned(),
        project_id: f.project_id,
        feedback_id: uuid::Uuid::now_v7().to_string(),
        created_at_ms: now_ms,
        feedback_type: f.feedback_type,
        span_type: WeaveRef::span_type(&f.weave_ref).map(|t| t.as_str().to_owned()),
        weave_ref: f.weave_ref,
        runnable_ref: f.runnable_ref,
        call_ref: f.call_ref,
        trigger_ref: f.trigger_ref,
        scorer_id,
        monitor_id,
        span_agent_name: f.span_agent_name,
        span_agent_version: f.span_agent_version,
        span_status_code: 0,
        scorer_tags: f.scorer_tags,
        scorer_ratings: f.scorer_ratings,
        payload_json: f.payload_json,
        wb_user_id: f.wb_user_id,
    };
    write.set_span_status_code(status);
    Ok(write)
}

/// Normalises a batch; every record gets the same `created_at`.
pub fn normalise(
    tenant: &str,
    items: Vec<pb::WeaveFeedback>,
    now_ms: i64,
) -> Result<Vec<pb::FeedbackWrite>, IngestError> {
    let many = items.len() > 1;
    items
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let at = if many {
                format!("batch[{i}]: ")
            } else {
                String::new()
            };
            record(&at, tenant, f, now_ms)
        })
        .collect()
}
