//! The call record and how writes about a call merge into it.
//!
//! A call arrives in halves (Weave's start and end, or both at once). Each half
//! replaces the same half of an earlier write with the same key, so a retried
//! batch or a start-then-end sequence converges on one record and never counts
//! twice.

use crate::ids::{CallId, IdError, ProjectId, TenantId};
use chrono::{DateTime, Utc};
use polymeter_proto::v1 as pb;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelUsage {
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cache_read_input_tokens: i64,
    pub cache_creation_input_tokens: i64,
    pub requests: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VendorDimensions {
    pub service_id: Option<String>,
    pub service_name: Option<String>,
    pub app_id: Option<String>,
    pub client_id: Option<String>,
    pub api_key_id: Option<String>,
    pub model_id: Option<String>,
    pub resource_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallStart {
    pub trace_id: String,
    pub parent_id: Option<String>,
    pub thread_id: Option<String>,
    pub turn_id: Option<String>,
    pub op_name: String,
    pub display_name: Option<String>,
    pub started_at: DateTime<Utc>,
    pub wb_user_id: Option<String>,
    pub wb_run_id: Option<String>,
    pub input_refs: Vec<String>,
    pub vendor: VendorDimensions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallEnd {
    pub ended_at: DateTime<Utc>,
    pub exception: Option<String>,
    pub usage: Vec<ModelUsage>,
    pub output_refs: Vec<String>,
}

/// One LLM or agent call, as far as it is known.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub tenant: TenantId,
    pub project_id: ProjectId,
    pub call_id: CallId,
    pub start: Option<CallStart>,
    pub end: Option<CallEnd>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("{field} is outside {}: {value} µs", crate::time::RANGE)]
    TimeOutOfRange { field: &'static str, value: i64 },
    #[error("call {call_id}: a write must carry a start, an end or both")]
    Empty { call_id: String },
    #[error("{field} is longer than {max} bytes")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} has more than {max} entries")]
    TooMany { field: &'static str, max: usize },
}

/// The longest id (call, trace, parent, thread, turn, project), in bytes.
pub const MAX_ID: usize = 512;
/// The longest name or label (op name, model, user, run, vendor dimensions).
pub const MAX_NAME: usize = 1024;
/// The longest exception text kept; longer ones are refused, not cut, so a
/// client learns its limit.
pub const MAX_EXCEPTION: usize = 64 * 1024;
/// Most usage entries (models) on one call.
pub const MAX_USAGE: usize = 255;
/// Most input or output refs on one call.
pub const MAX_REFS: usize = 1000;

fn limit(field: &'static str, value: &str, max: usize) -> Result<(), RecordError> {
    if value.len() > max {
        Err(RecordError::TooLong { field, max })
    } else {
        Ok(())
    }
}

/// Every string and list of a write within its documented limit.
fn check_sizes(w: &pb::CallWrite) -> Result<(), RecordError> {
    limit("project_id", &w.project_id, MAX_ID)?;
    limit("id", &w.call_id, MAX_ID)?;
    if let Some(s) = &w.start {
        limit("trace_id", &s.trace_id, MAX_ID)?;
        for (field, v) in [
            ("parent_id", &s.parent_id),
            ("thread_id", &s.thread_id),
            ("turn_id", &s.turn_id),
        ] {
            limit(field, v.as_deref().unwrap_or(""), MAX_ID)?;
        }
        limit("op_name", &s.op_name, MAX_NAME)?;
        for (field, v) in [
            ("display_name", &s.display_name),
            ("wb_user_id", &s.wb_user_id),
            ("wb_run_id", &s.wb_run_id),
        ] {
            limit(field, v.as_deref().unwrap_or(""), MAX_NAME)?;
        }
        if let Some(v) = &s.vendor {
            for value in [
                &v.service_id,
                &v.service_name,
                &v.app_id,
                &v.client_id,
                &v.api_key_id,
                &v.model_id,
                &v.resource_id,
            ] {
                limit("attributes", value.as_deref().unwrap_or(""), MAX_NAME)?;
            }
        }
        if s.input_refs.len() > MAX_REFS {
            return Err(RecordError::TooMany {
                field: "input_refs",
                max: MAX_REFS,
            });
        }
        for r in &s.input_refs {
            limit("input_refs", r, MAX_NAME)?;
        }
    }
    if let Some(e) = &w.end {
        limit(
            "exception",
            e.exception.as_deref().unwrap_or(""),
            MAX_EXCEPTION,
        )?;
        if e.usage.len() > MAX_USAGE {
            return Err(RecordError::TooMany {
                field: "usage",
                max: MAX_USAGE,
            });
        }
        for u in &e.usage {
            limit("usage model", &u.model, MAX_NAME)?;
        }
        if e.output_refs.len() > MAX_REFS {
            return Err(RecordError::TooMany {
                field: "output_refs",
                max: MAX_REFS,
            });
        }
        for r in &e.output_refs {
            limit("output_refs", r, MAX_NAME)?;
        }
    }
    Ok(())
}

fn micros(field: &'static str, value: i64) -> Result<DateTime<Utc>, RecordError> {
    crate::time::from_micros(value).ok_or(RecordError::TimeOutOfRange { field, value })
}

fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

impl From<pb::ModelUsage> for ModelUsage {
    fn from(u: pb::ModelUsage) -> Self {
        Self {
            model: u.model,
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            total_tokens: u.total_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            requests: u.requests,
        }
    }
}

impl From<ModelUsage> for pb::ModelUsage {
    fn from(u: ModelUsage) -> Self {
        Self {
            model: u.model,
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            total_tokens: u.total_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            requests: u.requests,
        }
    }
}

impl From<pb::VendorDimensions> for VendorDimensions {
    fn from(v: pb::VendorDimensions) -> Self {
        Self {
            service_id: v.service_id,
            service_name: v.service_name,
            app_id: v.app_id,
            client_id: v.client_id,
            api_key_id: v.api_key_id,
            model_id: v.model_id,
            resource_id: v.resource_id,
        }
    }
}

impl From<VendorDimensions> for pb::VendorDimensions {
    fn from(v: VendorDimensions) -> Self {
        Self {
            service_id: v.service_id,
            service_name: v.service_name,
            app_id: v.app_id,
            client_id: v.client_id,
            api_key_id: v.api_key_id,
            model_id: v.model_id,
            resource_id: v.resource_id,
        }
    }
}

/// Checks a write without converting it: everything [`CallRecord::try_from`]
/// would refuse, this refuses.
pub fn validate_write(w: &pb::CallWrite) -> Result<(), RecordError> {
    if w.start.is_none() && w.end.is_none() {
        return Err(RecordError::Empty {
            call_id: w.call_id.clone(),
        });
    }
    if w.tenant.is_empty() {
        return Err(IdError::Empty { field: "tenant" }.into());
    }
    if w.call_id.is_empty() {
        return Err(IdError::Empty { field: "id" }.into());
    }
    ProjectId::check(&w.project_id)?;
    check_sizes(w)?;
    if let Some(s) = &w.start {
        micros("started_at", s.started_at_us)?;
    }
    if let Some(e) = &w.end {
        micros("ended_at", e.ended_at_us)?;
    }
    Ok(())
}

impl TryFrom<pb::CallWrite> for CallRecord {
    type Error = RecordError;

    fn try_from(w: pb::CallWrite) -> Result<Self, RecordError> {
        validate_write(&w)?;
        let start = w
            .start
            .map(|s| -> Result<CallStart, RecordError> {
                Ok(CallStart {
                    trace_id: s.trace_id,
                    parent_id: s.parent_id,
                    thread_id: s.thread_id,
                    turn_id: s.turn_id,
                    op_name: s.op_name,
                    display_name: s.display_name,
                    started_at: micros("started_at", s.started_at_us)?,
                    wb_user_id: s.wb_user_id,
                    wb_run_id: s.wb_run_id,
                    input_refs: s.input_refs,
                    vendor: s.vendor.map(Into::into).unwrap_or_default(),
                })
            })
            .transpose()?;
        let end = w
            .end
            .map(|e| -> Result<CallEnd, RecordError> {
                Ok(CallEnd {
                    ended_at: micros("ended_at", e.ended_at_us)?,
                    exception: e.exception,
                    usage: e.usage.into_iter().map(Into::into).collect(),
                    output_refs: e.output_refs,
                })
            })
            .transpose()?;
        Ok(Self {
            tenant: TenantId::new(w.tenant)?,
            project_id: ProjectId::parse(&w.project_id)?,
            call_id: CallId::new(w.call_id)?,
            start,
            end,
        })
    }
}

impl From<CallRecord> for pb::CallWrite {
    fn from(r: CallRecord) -> Self {
        Self {
            tenant: r.tenant.as_str().to_owned(),
            project_id: r.project_id.as_str().to_owned(),
            call_id: r.call_id.as_str().to_owned(),
            start: r.start.map(|s| pb::CallStart {
                trace_id: s.trace_id,
                parent_id: s.parent_id,
                thread_id: s.thread_id,
                turn_id: s.turn_id,
                op_name: s.op_name,
                display_name: s.display_name,
                started_at_us: to_micros(s.started_at),
                wb_user_id: s.wb_user_id,
                wb_run_id: s.wb_run_id,
                input_refs: s.input_refs,
                vendor: Some(s.vendor.into()),
            }),
            end: r.end.map(|e| pb::CallEnd {
                ended_at_us: to_micros(e.ended_at),
                exception: e.exception,
                usage: e.usage.into_iter().map(Into::into).collect(),
                output_refs: e.output_refs,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(model: &str, total: i64) -> ModelUsage {
        ModelUsage {
            model: model.into(),
            total_tokens: total,
            ..Default::default()
        }
    }

    fn record(start: Option<i64>, end: Option<(i64, Option<&str>)>) -> CallRecord {
        CallRecord {
            tenant: TenantId::new("t").unwrap(),
            project_id: ProjectId::parse("e/p").unwrap(),
            call_id: CallId::new("c").unwrap(),
            start: start.map(|s| CallStart {
                trace_id: "tr".into(),
                parent_id: None,
                thread_id: None,
                turn_id: None,
                op_name: "op".into(),
                display_name: None,
                started_at: micros("started_at", s).unwrap(),
                wb_user_id: None,
                wb_run_id: None,
                input_refs: vec![],
                vendor: Default::default(),
            }),
            end: end.map(|(e, exc)| CallEnd {
                ended_at: micros("ended_at", e).unwrap(),
                exception: exc.map(str::to_owned),
                usage: vec![usage("b", 5), usage("a", 5), usage("c", 1)],
                output_refs: vec![],
            }),
        }
    }

    #[test]
    fn proto_round_trip() {
        let r = record(Some(7), Some((9, Some("x"))));
        let back = CallRecord::try_from(pb::CallWrite::from(r.clone())).unwrap();
        assert_eq!(back, r);
    }
}
