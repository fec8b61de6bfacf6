//! How call writes travel through the embedded store: log frames hold the
//! protobuf `AppendCallsRequest`; segments hold one Parquet row per write.
//!
//! Segment schema (one row per write, in log order; a call written in two
//! halves may have a start-only row and a later end-only row — readers take
//! the latest non-null half per `(tenant, project_id, call_id)`):
//!
//! | column | type |
//! |---|---|
//! | `tenant`, `project_id`, `call_id` | utf8 |
//! | `started_at` | timestamp(µs, UTC), null when the write has no start half |
//! | `trace_id`, `parent_id`, `thread_id`, `turn_id`, `op_name`, `display_name`, `wb_user_id`, `wb_run_id` | utf8 |
//! | `input_refs`, `output_refs` | list<utf8> |
//! | `service_id`, `service_name`, `app_id`, `client_id`, `api_key_id`, `model_id`, `resource_id` | utf8 |
//! | `ended_at` | timestamp(µs, UTC), null when the write has no end half |
//! | `exception` | utf8 |
//! | `usage` | list<struct<model: utf8, input_tokens, output_tokens, total_tokens, cache_read_input_tokens, cache_creation_input_tokens, requests: int64>> |

use super::columns::{CallColumns, CallView, EndView, StartView, UsageView};
use super::writes::{apply_writes, attrs, start_strings, tokens, vendor_strings};
use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, Int64Builder, ListArray, ListBuilder, RecordBatch,
    StringArray, StringBuilder, StructArray, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    DataType, Field, Fields, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use polymeter_model::validate_write;
use polymeter_proto::v1 as pb;
use polymeter_store::place::day_of_us;
use polymeter_store::{Place, Table};
use prost::Message;
use std::sync::{Arc, LazyLock};

const STRINGS: [&str; 8] = [
    "trace_id",
    "parent_id",
    "thread_id",
    "turn_id",
    "op_name",
    "display_name",
    "wb_user_id",
    "wb_run_id",
];
const VENDOR: [&str; 7] = [
    "service_id",
    "service_name",
    "app_id",
    "client_id",
    "api_key_id",
    "model_id",
    "resource_id",
];
const TOKENS: [&str; 6] = [
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "requests",
];

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn usage_fields() -> Fields {
    let mut fields = vec![Field::new("model", DataType::Utf8, false)];
    fields.extend(
        TOKENS
            .iter()
            .map(|t| Field::new(*t, DataType::Int64, false)),
    );
    Fields::from(fields)
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("project_id", DataType::Utf8, false),
        Field::new("call_id", DataType::Utf8, false),
        Field::new("started_at", timestamp(), true),
    ];
    fields.extend(STRINGS.iter().map(|n| Field::new(*n, DataType::Utf8, true)));
    fields.push(Field::new("input_refs", string_list(), true));
    fields.extend(VENDOR.iter().map(|n| Field::new(*n, DataType::Utf8, true)));
    fields.push(Field::new("ended_at", timestamp(), true));
    fields.push(Field::new("exception", DataType::Utf8, true));
    fields.push(Field::new(
        "usage",
        DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(usage_fields()),
            true,
        ))),
        true,
    ));
    fields.push(Field::new("output_refs", string_list(), true));
    Arc::new(Schema::new(fields))
});

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("segment column {name} is missing or has the wrong type"))
}

fn opt_str(a: &StringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn decode_writes(payload: &[u8]) -> Result<Vec<pb::CallWrite>, String> {
    let request = pb::AppendCallsRequest::decode(payload).map_err(|e| e.to_string())?;
    for w in &request.calls {
        validate_write(w).map_err(|e| e.to_string())?;
    }
    Ok(request.calls)
}

/// Every call, trace and parent id stored for `tenant`'s `project` — in its
/// segments and in the logs not yet compacted — passed to `f` (an id may
/// come more than once). The columns hold ids only as hashes; this is where
/// their text is read back.
pub(crate) fn each_stored_id(
    store: &polymeter_store::Durable<crate::embedded::columns::CallColumns>,
    tenant: &str,
    project: &str,
    f: &mut dyn FnMut(&str),
) -> Result<(), polymeter_store::StoreError> {
    const IDS: [&str; 5] = ["tenant", "project_id", "call_id", "trace_id", "parent_id"];
    // Both readers below hand ids to `f`, one after the other.
    let f = std::cell::RefCell::new(f);
    store.read_scope(
        tenant,
        project,
        &IDS,
        &mut |batch| {
            let [t, p, call, trace, parent] = IDS.map(|n| column::<StringArray>(batch, n));
            let (t, p, call, trace, parent) = (t?, p?, call?, trace?, parent?);
            let mut f = f.borrow_mut();
            for i in 0..batch.num_rows() {
                if t.value(i) == tenant && p.value(i) == project {
                    f(call.value(i));
                    opt_str(trace, i)
                        .into_iter()
                        .chain(opt_str(parent, i))
                        .for_each(&mut **f);
                }
            }
            Ok(())
        },
        &mut |payload| {
            let mut f = f.borrow_mut();
            for w in decode_writes(payload)? {
                if w.tenant == tenant && w.project_id == project {
                    f(&w.call_id);
                    if let Some(s) = &w.start {
                        f(&s.trace_id);
                        s.parent_id.as_deref().into_iter().for_each(&mut **f);
                    }
                }
            }
            Ok(())
        },
    )
}

/// The segment's columns, downcast once.
struct SegmentColumns<'a> {
    keys: [&'a StringArray; 3],
    started: &'a TimestampMicrosecondArray,
    ended: &'a TimestampMicrosecondArray,
    strings: Vec<&'a StringArray>,
    vendor: Vec<&'a StringArray>,
    exception: &'a StringArray,
    input_refs: &'a ListArray,
    output_refs: &'a ListArray,
    usage: &'a ListArray,
    models: &'a StringArray,
    tokens: Vec<&'a Int64Array>,
}

impl<'a> SegmentColumns<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self, String> {
        let key = |name| column::<StringArray>(batch, name);
        let time = |name: &str| -> Result<&'a TimestampMicrosecondArray, String> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
                .ok_or_else(|| format!("segment column {name} is missing or has the wrong type"))
        };
        let usage = column::<ListArray>(batch, "usage")?;
        let usage_values = usage
            .values()
            .as_struct_opt()
            .ok_or("usage is not a list of structs")?;
        Ok(Self {
            keys: [key("tenant")?, key("project_id")?, key("call_id")?],
            started: time("started_at")?,
            ended: time("ended_at")?,
            strings: STRINGS.iter().map(|n| key(n)).collect::<Result<_, _>>()?,
            vendor: VENDOR.iter().map(|n| key(n)).collect::<Result<_, _>>()?,
            exception: key("exception")?,
            input_refs: column::<ListArray>(batch, "input_refs")?,
            output_refs: column::<ListArray>(batch, "output_refs")?,
            usage,
            models: usage_values
                .column(0)
                .as_string_opt::<i32>()
                .ok_or("usage.model")?,
            tokens: (1..=TOKENS.len())
                .map(|i| {
                    usage_values
                        .column(i)
                        .as_primitive_opt()
                        .ok_or("usage tokens")
                })
                .collect::<Result<_, _>>()?,
        })
    }

    fn strings_at(list: &'a ListArray, i: usize, out: &mut Vec<&'a str>) {
        out.clear();
        if list.is_null(i) {
            return;
        }
        let values = list.values().as_string::<i32>();
        let offsets = list.value_offsets();
        out.extend((offsets[i] as usize..offsets[i + 1] as usize).map(|j| values.value(j)));
    }

    fn start_strings(&self, i: usize) -> [Option<&'a str>; 8] {
        std::array::from_fn(|k| opt_str(self.strings[k], i))
    }

    fn vendor_strings(&self, i: usize) -> [Option<&'a str>; 7] {
        std::array::from_fn(|k| opt_str(self.vendor[k], i))
    }

    fn usage_at(&self, i: usize, out: &mut Vec<UsageView<'a>>) {
        out.clear();
        let offsets = self.usage.value_offsets();
        out.extend(
            (offsets[i] as usize..offsets[i + 1] as usize).map(|u| UsageView {
                model: self.models.value(u),
                tokens: std::array::from_fn(|k| self.tokens[k].value(u)),
            }),
        );
    }

    /// What [`validate_write`] checks of the keys, without allocating.
    fn check(&self, i: usize) -> Result<(), String> {
        if self.keys[0].value(i).is_empty() || self.keys[2].value(i).is_empty() {
            return Err(format!("row {i}: empty tenant or call id"));
        }
        polymeter_model::ProjectId::check(self.keys[1].value(i)).map_err(|e| e.to_string())
    }
}

/// The share of a partition (1/64, or 64k calls) whose expiry is worth a
/// rebuild, as a fraction compared in [`CallColumns::expired`].
const EXPIRE_AT_LEAST: f64 = 1.0 / 64.0;

impl Table for CallColumns {
    type Write = pb::CallWrite;

    fn encode(batch: &[pb::CallWrite], buf: &mut Vec<u8>) {
        // The wire form of `AppendCallsRequest { calls: batch }`, without cloning the batch.
        for w in batch {
            prost::encoding::message::encode(1, w, buf);
        }
    }

    fn decode(payload: &[u8]) -> Result<Vec<pb::CallWrite>, String> {
        decode_writes(payload)
    }

    fn apply(&mut self, batch: Vec<pb::CallWrite>) {
        apply_writes(self, &batch);
    }

    fn replay(&mut self, payload: &[u8]) -> Result<(), String> {
        apply_writes(self, &decode_writes(payload)?);
        Ok(())
    }

    /// A write is kept on the UTC day its call started (the write's own
    /// start, else the stored one); a lone end whose start is not known,
    /// on the day it ended. A start re-sent to an earlier day leaves the
    /// earlier write in its later day's segment: should the earlier day
    /// expire first, a restart would show that stale start until its own
    /// day expires too (rare: it takes a re-sent start that moved back by a
    /// day or more).
    fn place<'a>(&self, w: &'a pb::CallWrite) -> Place<'a> {
        let started = w
            .start
            .as_ref()
            .map(|s| s.started_at_us)
            .or_else(|| self.halves(&w.tenant, &w.project_id, &w.call_id).0);
        let at = started
            .or(w.end.as_ref().map(|e| e.ended_at_us))
            .unwrap_or(0);
        Place {
            tenant: &w.tenant,
            project: &w.project_id,
            day: day_of_us(at),
        }
    }

    fn remove(&mut self, tenant: &str, project: &str, before_us: Option<i64>) {
        self.forget(tenant, project, before_us);
    }

    /// Rebuilding a partition holds the table for a while (about a second at
    /// 10M calls), so the minute's routine expiry waits until a sixty-fourth
    /// of the partition, or 64k calls, has expired.
    fn expire_lazily(&mut self, tenant: &str, project: &str, before_us: i64) {
        if self.expired(tenant, project, before_us) >= EXPIRE_AT_LEAST {
            self.forget(tenant, project, Some(before_us));
        }
    }

    const SNAPSHOTS: bool = true;

    fn write_snapshot(&self, out: &mut polymeter_store::SnapshotWriter) -> bool {
        CallColumns::write_snapshot(self, out);
        true
    }

    fn read_snapshot(from: &mut polymeter_store::SnapshotReader<'_>) -> Result<Self, String> {
        CallColumns::read_snapshot(from)
    }

    fn schema() -> SchemaRef {
        SCHEMA.clone()
    }

    fn to_arrow(batch: &[pb::CallWrite]) -> Result<RecordBatch, String> {
        let n = batch.len();
        let mut keys = [
            StringBuilder::new(),
            StringBuilder::new(),
            StringBuilder::new(),
        ];
        let mut started = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut ended = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut strings: Vec<StringBuilder> =
            STRINGS.iter().map(|_| StringBuilder::new()).collect();
        let mut vendor: Vec<StringBuilder> = VENDOR.iter().map(|_| StringBuilder::new()).collect();
        let mut exception = StringBuilder::new();
        let mut input_refs = ListBuilder::new(StringBuilder::new());
        let mut output_refs = ListBuilder::new(StringBuilder::new());
        let mut usage_offsets = vec![0i32];
        let mut usage_valid = Vec::with_capacity(n);
        let mut models = StringBuilder::new();
        let mut token_builders: Vec<Int64Builder> =
            TOKENS.iter().map(|_| Int64Builder::new()).collect();

        for w in batch {
            keys[0].append_value(&w.tenant);
            keys[1].append_value(&w.project_id);
            keys[2].append_value(&w.call_id);
            match &w.start {
                Some(s) => {
                    started.append_value(s.started_at_us);
                    for (b, v) in strings.iter_mut().zip(start_strings(s)) {
                        b.append_option(v);
                    }
                    for (b, v) in vendor.iter_mut().zip(vendor_strings(s.vendor.as_ref())) {
                        b.append_option(v);
                    }
                    input_refs.append_value(s.input_refs.iter().map(Some));
                }
                None => {
                    started.append_null();
                    strings
                        .iter_mut()
                        .chain(vendor.iter_mut())
                        .for_each(|b| b.append_null());
                    input_refs.append_null();
                }
            }
            match &w.end {
                Some(e) => {
                    ended.append_value(e.ended_at_us);
                    exception.append_option(e.exception.as_deref());
                    output_refs.append_value(e.output_refs.iter().map(Some));
                    for u in &e.usage {
                        models.append_value(&u.model);
                        for (b, v) in token_builders.iter_mut().zip(tokens(u)) {
                            b.append_value(v);
                        }
                    }
                    usage_offsets.push(usage_offsets.last().unwrap() + e.usage.len() as i32);
                    usage_valid.push(true);
                }
                None => {
                    ended.append_null();
                    exception.append_null();
                    output_refs.append_null();
                    usage_offsets.push(*usage_offsets.last().unwrap());
                    usage_valid.push(false);
                }
            }
        }
        let mut usage_children: Vec<ArrayRef> = vec![Arc::new(models.finish())];
        usage_children.extend(
            token_builders
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef),
        );
        let usage_struct = StructArray::try_new(usage_fields(), usage_children, None)
            .map_err(|e| e.to_string())?;
        let usage = ListArray::try_new(
            Arc::new(Field::new("item", DataType::Struct(usage_fields()), true)),
            OffsetBuffer::new(usage_offsets.into()),
            Arc::new(usage_struct),
            Some(usage_valid.into()),
        )
        .map_err(|e| e.to_string())?;

        let mut columns: Vec<ArrayRef> = keys
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        columns.push(Arc::new(started.finish()));
        columns.extend(strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(input_refs.finish()));
        columns.extend(vendor.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(ended.finish()));
        columns.push(Arc::new(exception.finish()));
        columns.push(Arc::new(usage));
        columns.push(Arc::new(output_refs.finish()));
        RecordBatch::try_new(SCHEMA.clone(), columns).map_err(|e| e.to_string())
    }

    fn from_arrow(batch: &RecordBatch) -> Result<Vec<pb::CallWrite>, String> {
        let c = SegmentColumns::new(batch)?;
        let (mut refs_in, mut refs_out, mut usage) = (Vec::new(), Vec::new(), Vec::new());
        let owned = |v: Option<&str>| v.map(str::to_owned);
        (0..batch.num_rows())
            .map(|i| {
                c.check(i)?;
                let start = c.started.is_valid(i).then(|| {
                    let s = c.start_strings(i);
                    let v = c.vendor_strings(i);
                    SegmentColumns::strings_at(c.input_refs, i, &mut refs_in);
                    pb::CallStart {
                        trace_id: s[0].unwrap_or_default().to_owned(),
                        parent_id: owned(s[1]),
                        thread_id: owned(s[2]),
                        turn_id: owned(s[3]),
                        op_name: s[4].unwrap_or_default().to_owned(),
                        display_name: owned(s[5]),
                        started_at_us: c.started.value(i),
                        wb_user_id: owned(s[6]),
                        wb_run_id: owned(s[7]),
                        input_refs: refs_in.iter().map(|r| r.to_string()).collect(),
                        vendor: Some(pb::VendorDimensions {
                            service_id: owned(v[0]),
                            service_name: owned(v[1]),
                            app_id: owned(v[2]),
                            client_id: owned(v[3]),
                            api_key_id: owned(v[4]),
                            model_id: owned(v[5]),
                            resource_id: owned(v[6]),
                        }),
                    }
                });
                let end = c.ended.is_valid(i).then(|| {
                    c.usage_at(i, &mut usage);
                    SegmentColumns::strings_at(c.output_refs, i, &mut refs_out);
                    pb::CallEnd {
                        ended_at_us: c.ended.value(i),
                        exception: owned(opt_str(c.exception, i)),
                        usage: usage
                            .iter()
                            .map(|u| pb::ModelUsage {
                                model: u.model.to_owned(),
                                input_tokens: u.tokens[0],
                                output_tokens: u.tokens[1],
                                total_tokens: u.tokens[2],
                                cache_read_input_tokens: u.tokens[3],
                                cache_creation_input_tokens: u.tokens[4],
                                requests: u.tokens[5],
                            })
                            .collect(),
                        output_refs: refs_out.iter().map(|r| r.to_string()).collect(),
                    }
                });
                Ok(pb::CallWrite {
                    tenant: c.keys[0].value(i).to_owned(),
                    project_id: c.keys[1].value(i).to_owned(),
                    call_id: c.keys[2].value(i).to_owned(),
                    start,
                    end,
                })
            })
            .collect()
    }

    fn load_arrow(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let c = SegmentColumns::new(batch)?;
        let (mut refs_in, mut refs_out, mut usage) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..batch.num_rows() {
            c.check(i)?;
            let start = if c.started.is_valid(i) {
                SegmentColumns::strings_at(c.input_refs, i, &mut refs_in);
                let s = c.start_strings(i);
                Some((s, c.vendor_strings(i)))
            } else {
                None
            };
            if c.ended.is_valid(i) {
                c.usage_at(i, &mut usage);
                SegmentColumns::strings_at(c.output_refs, i, &mut refs_out);
            }
            let view = CallView {
                tenant: c.keys[0].value(i),
                project: c.keys[1].value(i),
                call_id: c.keys[2].value(i),
                start: start.map(|(s, v)| StartView {
                    started_us: c.started.value(i),
                    trace_id: s[0].unwrap_or_default(),
                    parent_id: s[1].filter(|p| !p.is_empty()),
                    op_name: s[4].unwrap_or_default(),
                    attrs: attrs(s, v),
                    input_refs: &refs_in,
                }),
                end: c.ended.is_valid(i).then(|| EndView {
                    ended_us: c.ended.value(i),
                    error: opt_str(c.exception, i).is_some_and(|x| !x.is_empty()),
                    usage: &usage,
                    output_refs: &refs_out,
                }),
            };
            self.upsert_view(&view);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polymeter_model::{
        CallEnd, CallId, CallRecord, CallStart, ModelUsage, ProjectId, TenantId, VendorDimensions,
    };

    fn record(i: i64) -> CallRecord {
        let at = chrono::DateTime::from_timestamp_micros(1_714_521_600_000_000 + i).unwrap();
        CallRecord {
            tenant: TenantId::new("t").unwrap(),
            project_id: ProjectId::parse("e/p").unwrap(),
            call_id: CallId::new(format!("c{i}")).unwrap(),
            start: (i % 3 != 2).then(|| CallStart {
                trace_id: format!("tr{i}"),
                parent_id: (i % 2 == 0).then(|| "p".into()),
                thread_id: Some("th".into()),
                turn_id: None,
                op_name: "op".into(),
                display_name: None,
                started_at: at,
                wb_user_id: Some("u".into()),
                wb_run_id: None,
                input_refs: vec!["weave:///e/p/object/a:1".into()],
                vendor: VendorDimensions {
                    app_id: Some("app".into()),
                    ..Default::default()
                },
            }),
            end: (i % 3 != 1).then(|| CallEnd {
                ended_at: at + chrono::Duration::milliseconds(i),
                exception: (i % 4 == 0).then(|| "boom".into()),
                usage: vec![ModelUsage {
                    model: "m".into(),
                    input_tokens: i,
                    output_tokens: 2,
                    total_tokens: i + 2,
                    cache_read_input_tokens: 1,
                    cache_creation_input_tokens: 0,
                    requests: 1,
                }],
                output_refs: vec![],
            }),
        }
    }

    #[test]
    fn writes_round_trip_through_log_frames_and_segments() {
        let writes: Vec<pb::CallWrite> = (0..50).map(|i| record(i).into()).collect();
        let mut frame = Vec::new();
        CallColumns::encode(&writes, &mut frame);
        assert_eq!(CallColumns::decode(&frame).unwrap(), writes);
        let batch = CallColumns::to_arrow(&writes).unwrap();
        assert_eq!(batch.schema(), CallColumns::schema());
        let back = CallColumns::from_arrow(&batch).unwrap();
        let normalised: Vec<pb::CallWrite> = writes
            .into_iter()
            .map(|mut w| {
                // A segment has no "absent" vendor message, only absent fields.
                if let Some(s) = &mut w.start {
                    s.vendor.get_or_insert_with(Default::default);
                }
                w
            })
            .collect();
        assert_eq!(back, normalised);
    }

    /// Ids live in memory only as hashes; their text is read back from the
    /// segments and from the log not yet compacted, of the project asked only.
    #[test]
    fn stored_ids_are_read_back_from_segments_and_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = polymeter_store::Durable::open(
            dir.path(),
            CallColumns::new(),
            polymeter_store::Options::default(),
        )
        .unwrap();
        let mut other: pb::CallWrite = record(7).into();
        other.project_id = "e/q".into();
        other.call_id = "elsewhere".into();
        store
            .append((0..6).map(|i| record(i).into()).chain([other]).collect())
            .unwrap();
        store.checkpoint().unwrap();
        store.append(vec![record(6).into()]).unwrap();
        let mut seen = Vec::new();
        each_stored_id(&store, "t", "e/p", &mut |id| seen.push(id.to_owned())).unwrap();
        seen.sort();
        seen.dedup();
        // c2 and c5 are ends alone: no trace or parent.
        let want = [
            "c0", "c1", "c2", "c3", "c4", "c5", "c6", "p", "tr0", "tr1", "tr3", "tr4", "tr6",
        ];
        assert_eq!(seen, want);
    }

    /// Ends are held as 32-bit durations where they fit; every other end
    /// (alone, before its start, hours later, or left by a moved start) is
    /// still exactly where it was sent, and survives a snapshot.
    #[test]
    fn ends_are_kept_exactly_whatever_their_order_and_length() {
        const T: i64 = 1_714_521_600_000_000;
        let half = |id: &str, start: Option<i64>, end: Option<i64>| -> pb::CallWrite {
            let mut w: pb::CallWrite = record(0).into();
            w.call_id = id.into();
            match start {
                Some(at) => w.start.as_mut().unwrap().started_at_us = at,
                None => w.start = None,
            }
            match end {
                Some(at) => w.end.as_mut().unwrap().ended_at_us = at,
                None => w.end = None,
            }
            w
        };
        let hour = 3_600_000_000;
        let mut columns = CallColumns::new();
        columns.apply(vec![
            half("lone-end-first", None, Some(T + 5_000_000)),
            half("lone-end-first", Some(T), None),
            half("hours", Some(T), Some(T + 2 * hour)),
            half("negative", Some(T), Some(T - 1)),
            half("moved", Some(T), Some(T + 1_000_000)),
            half("moved", Some(T - 2 * hour), None),
            half("moved-back", Some(T - 2 * hour), Some(T + 1)),
            half("moved-back", Some(T), None),
            half("only-end", None, Some(T + 7)),
        ]);
        let want = [
            ("lone-end-first", (Some(T), Some(T + 5_000_000))),
            ("hours", (Some(T), Some(T + 2 * hour))),
            ("negative", (Some(T), Some(T - 1))),
            ("moved", (Some(T - 2 * hour), Some(T + 1_000_000))),
            ("moved-back", (Some(T), Some(T + 1))),
            ("only-end", (None, Some(T + 7))),
        ];
        let mut out = polymeter_store::SnapshotWriter::default();
        assert!(<CallColumns as Table>::write_snapshot(&columns, &mut out));
        let bytes = polymeter_store::snapshot::tests_support::payload(out);
        let restored = <CallColumns as Table>::read_snapshot(
            &mut polymeter_store::SnapshotReader::new(&bytes),
        )
        .unwrap();
        for c in [&columns, &restored] {
            for (id, halves) in want {
                assert_eq!(c.halves("t", "e/p", id), halves, "{id}");
            }
        }
        // Only the ends a duration cannot hold are kept aside.
        let p = &columns.partitions[0];
        assert_eq!(p.ends.len(), 4, "hours, negative, moved (2 h on), only-end");
    }

    #[test]
    fn columns_round_trip_through_a_snapshot() {
        let mut columns = CallColumns::new();
        let writes: Vec<pb::CallWrite> = (0..5000).map(|i| record(i).into()).collect();
        columns.apply(writes.clone());
        let snapshot = |c: &CallColumns| {
            let mut out = polymeter_store::SnapshotWriter::default();
            assert!(<CallColumns as Table>::write_snapshot(c, &mut out));
            polymeter_store::snapshot::tests_support::payload(out)
        };
        let bytes = snapshot(&columns);
        let mut reader = polymeter_store::SnapshotReader::new(&bytes);
        let restored = <CallColumns as Table>::read_snapshot(&mut reader).unwrap();
        assert!(reader.is_at_end());
        assert_eq!(snapshot(&restored), bytes);
        for w in &writes {
            assert_eq!(
                restored.halves(&w.tenant, &w.project_id, &w.call_id),
                columns.halves(&w.tenant, &w.project_id, &w.call_id)
            );
        }
        // Cut anywhere, it is refused rather than misread.
        for cut in [0, 1, bytes.len() / 3, bytes.len() - 1] {
            let mut reader = polymeter_store::SnapshotReader::new(&bytes[..cut]);
            assert!(
                <CallColumns as Table>::read_snapshot(&mut reader).is_err(),
                "{cut}"
            );
        }
    }

    #[test]
    fn the_routine_expiry_waits_for_a_sixty_fourth_of_the_project() {
        let mut columns = CallColumns::new();
        // record(i) starts at BASE + i µs; 1000 calls.
        let writes: Vec<pb::CallWrite> = (0..1000).map(|i| record(i).into()).collect();
        columns.apply(writes);
        let base = 1_714_521_600_000_000;
        let whole = |c: &CallColumns| c.halves("t", "e/p", "c999").0.is_some();
        // 5 of 1000 started before the cutoff: left for later.
        columns.expire_lazily("t", "e/p", base + 5);
        assert!(columns.halves("t", "e/p", "c0").0.is_some());
        // 100 of 1000: removed now.
        columns.expire_lazily("t", "e/p", base + 100);
        assert_eq!(columns.halves("t", "e/p", "c0"), (None, None));
        assert!(whole(&columns));
        // Asked (remove) always takes effect at once.
        columns.remove("t", "e/p", Some(base + 101));
        assert_eq!(columns.halves("t", "e/p", "c100"), (None, None));
    }
}
