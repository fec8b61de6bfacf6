//! How a write becomes a row of the columns: a protobuf `CallWrite` (from a
//! log frame, or an owned record) is viewed as borrowed strings and numbers
//! and upserted, with no per-row allocation. Segments are read through the
//! same views ([`super::table`]), so there is one mapping, not two.

use super::columns::{CallColumns, CallView, EndView, StartView, UsageView, ATTRS};
use polymeter_model::CallRecord;
use polymeter_proto::v1 as pb;

pub(crate) fn start_strings(s: &pb::CallStart) -> [Option<&str>; 8] {
    [
        Some(s.trace_id.as_str()),
        s.parent_id.as_deref(),
        s.thread_id.as_deref(),
        s.turn_id.as_deref(),
        Some(s.op_name.as_str()),
        s.display_name.as_deref(),
        s.wb_user_id.as_deref(),
        s.wb_run_id.as_deref(),
    ]
}

pub(crate) fn vendor_strings(v: Option<&pb::VendorDimensions>) -> [Option<&str>; 7] {
    let Some(v) = v else { return [None; 7] };
    [
        v.service_id.as_deref(),
        v.service_name.as_deref(),
        v.app_id.as_deref(),
        v.client_id.as_deref(),
        v.api_key_id.as_deref(),
        v.model_id.as_deref(),
        v.resource_id.as_deref(),
    ]
}

/// [`super::columns::Attr`] order from the start strings and vendor strings.
pub(crate) fn attrs<'a>(
    strings: [Option<&'a str>; 8],
    vendor: [Option<&'a str>; 7],
) -> [Option<&'a str>; ATTRS] {
    [
        strings[2], strings[3], strings[6], strings[7], strings[5], vendor[0], vendor[1],
        vendor[2], vendor[3], vendor[4], vendor[5], vendor[6],
    ]
}

/// A usage entry's counters in the segment's token-column order.
pub(crate) fn tokens(u: &pb::ModelUsage) -> [i64; 6] {
    [
        u.input_tokens,
        u.output_tokens,
        u.total_tokens,
        u.cache_read_input_tokens,
        u.cache_creation_input_tokens,
        u.requests,
    ]
}

fn usage_views<'a>(usage: &'a [pb::ModelUsage], out: &mut Vec<UsageView<'a>>) {
    out.clear();
    out.extend(usage.iter().map(|u| UsageView {
        model: &u.model,
        tokens: tokens(u),
    }));
}

pub(crate) fn apply_writes(columns: &mut CallColumns, batch: &[pb::CallWrite]) {
    let mut usage: Vec<UsageView<'_>> = Vec::new();
    let mut input_refs: Vec<&str> = Vec::new();
    let mut output_refs: Vec<&str> = Vec::new();
    for w in batch {
        input_refs.clear();
        output_refs.clear();
        if let Some(s) = &w.start {
            input_refs.extend(s.input_refs.iter().map(String::as_str));
        }
        if let Some(e) = &w.end {
            output_refs.extend(e.output_refs.iter().map(String::as_str));
            usage_views(&e.usage, &mut usage);
        }
        let view = CallView {
            tenant: &w.tenant,
            project: &w.project_id,
            call_id: &w.call_id,
            start: w.start.as_ref().map(|s| StartView {
                started_us: s.started_at_us,
                trace_id: &s.trace_id,
                parent_id: s.parent_id.as_deref().filter(|p| !p.is_empty()),
                op_name: &s.op_name,
                attrs: attrs(start_strings(s), vendor_strings(s.vendor.as_ref())),
                input_refs: &input_refs,
            }),
            end: w.end.as_ref().map(|e| EndView {
                ended_us: e.ended_at_us,
                error: e.exception.as_deref().is_some_and(|x| !x.is_empty()),
                usage: &usage,
                output_refs: &output_refs,
            }),
        };
        columns.upsert_view(&view);
    }
}

/// An owned record upserted through the same path log frames take.
pub fn apply_record(columns: &mut CallColumns, record: &CallRecord) {
    apply_writes(columns, &[record.clone().into()]);
}
