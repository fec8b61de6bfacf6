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

use crate::columns::CallColumns;
use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, Int64Builder, ListArray, ListBuilder, RecordBatch,
    StringArray, StringBuilder, StructArray, TimestampMicrosecondArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    DataType, Field, Fields, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use polymeter_model::{CallEnd, CallRecord, CallStart, ModelUsage, VendorDimensions};
use polymeter_proto::v1 as pb;
use polymeter_store::Table;
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

fn start_strings(s: &CallStart) -> [Option<&str>; 8] {
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

fn vendor_strings(v: &VendorDimensions) -> [Option<&str>; 7] {
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

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| format!("segment column {name} is missing or has the wrong type"))
}

fn opt_str(a: &StringArray, i: usize) -> Option<String> {
    a.is_valid(i).then(|| a.value(i).to_owned())
}

fn strings_at(list: &ListArray, i: usize) -> Vec<String> {
    if list.is_null(i) {
        return Vec::new();
    }
    let values = list.value(i);
    let values = values.as_string::<i32>();
    (0..values.len())
        .map(|j| values.value(j).to_owned())
        .collect()
}

impl Table for CallColumns {
    type Write = CallRecord;

    fn encode(batch: &[CallRecord], buf: &mut Vec<u8>) {
        let request = pb::AppendCallsRequest {
            calls: batch.iter().cloned().map(Into::into).collect(),
        };
        request.encode(buf).expect("a Vec grows as needed");
    }

    fn decode(payload: &[u8]) -> Result<Vec<CallRecord>, String> {
        let request = pb::AppendCallsRequest::decode(payload).map_err(|e| e.to_string())?;
        request
            .calls
            .into_iter()
            .map(|w| CallRecord::try_from(w).map_err(|e| e.to_string()))
            .collect()
    }

    fn apply(&mut self, batch: Vec<CallRecord>) {
        batch.iter().for_each(|r| self.upsert(r));
    }

    fn schema() -> SchemaRef {
        SCHEMA.clone()
    }

    fn to_arrow(batch: &[CallRecord]) -> Result<RecordBatch, String> {
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
        let mut tokens: Vec<Int64Builder> = TOKENS.iter().map(|_| Int64Builder::new()).collect();

        for r in batch {
            keys[0].append_value(r.tenant.as_str());
            keys[1].append_value(r.project_id.as_str());
            keys[2].append_value(r.call_id.as_str());
            match &r.start {
                Some(s) => {
                    started.append_value(s.started_at.timestamp_micros());
                    for (b, v) in strings.iter_mut().zip(start_strings(s)) {
                        b.append_option(v);
                    }
                    for (b, v) in vendor.iter_mut().zip(vendor_strings(&s.vendor)) {
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
            match &r.end {
                Some(e) => {
                    ended.append_value(e.ended_at.timestamp_micros());
                    exception.append_option(e.exception.as_deref());
                    output_refs.append_value(e.output_refs.iter().map(Some));
                    for u in &e.usage {
                        models.append_value(&u.model);
                        let values = [
                            u.input_tokens,
                            u.output_tokens,
                            u.total_tokens,
                            u.cache_read_input_tokens,
                            u.cache_creation_input_tokens,
                            u.requests,
                        ];
                        for (b, v) in tokens.iter_mut().zip(values) {
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
        usage_children.extend(tokens.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
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

    fn from_arrow(batch: &RecordBatch) -> Result<Vec<CallRecord>, String> {
        let key = |name| column::<StringArray>(batch, name);
        let (tenant, project, call_id) = (key("tenant")?, key("project_id")?, key("call_id")?);
        let started = batch
            .column_by_name("started_at")
            .map(|c| c.as_primitive::<TimestampMicrosecondType>())
            .ok_or("segment column started_at is missing")?;
        let ended: &TimestampMicrosecondArray = batch
            .column_by_name("ended_at")
            .map(|c| c.as_primitive::<TimestampMicrosecondType>())
            .ok_or("segment column ended_at is missing")?;
        let strings: Vec<&StringArray> =
            STRINGS.iter().map(|n| key(n)).collect::<Result<_, _>>()?;
        let vendor: Vec<&StringArray> = VENDOR.iter().map(|n| key(n)).collect::<Result<_, _>>()?;
        let exception = key("exception")?;
        let input_refs = column::<ListArray>(batch, "input_refs")?;
        let output_refs = column::<ListArray>(batch, "output_refs")?;
        let usage = column::<ListArray>(batch, "usage")?;
        let usage_values = usage.values().as_struct();
        let models = usage_values.column(0).as_string::<i32>();
        let tokens: Vec<&Int64Array> = (1..=TOKENS.len())
            .map(|i| usage_values.column(i).as_primitive())
            .collect();
        let offsets = usage.value_offsets();

        let mut out = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let start = started.is_valid(i).then(|| CallStart {
                trace_id: strings[0].value(i).to_owned(),
                parent_id: opt_str(strings[1], i),
                thread_id: opt_str(strings[2], i),
                turn_id: opt_str(strings[3], i),
                op_name: strings[4].value(i).to_owned(),
                display_name: opt_str(strings[5], i),
                started_at: chrono::DateTime::from_timestamp_micros(started.value(i))
                    .unwrap_or_default(),
                wb_user_id: opt_str(strings[6], i),
                wb_run_id: opt_str(strings[7], i),
                input_refs: strings_at(input_refs, i),
                vendor: VendorDimensions {
                    service_id: opt_str(vendor[0], i),
                    service_name: opt_str(vendor[1], i),
                    app_id: opt_str(vendor[2], i),
                    client_id: opt_str(vendor[3], i),
                    api_key_id: opt_str(vendor[4], i),
                    model_id: opt_str(vendor[5], i),
                    resource_id: opt_str(vendor[6], i),
                },
            });
            let end = ended.is_valid(i).then(|| CallEnd {
                ended_at: chrono::DateTime::from_timestamp_micros(ended.value(i))
                    .unwrap_or_default(),
                exception: opt_str(exception, i),
                usage: (offsets[i] as usize..offsets[i + 1] as usize)
                    .map(|u| ModelUsage {
                        model: models.value(u).to_owned(),
                        input_tokens: tokens[0].value(u),
                        output_tokens: tokens[1].value(u),
                        total_tokens: tokens[2].value(u),
                        cache_read_input_tokens: tokens[3].value(u),
                        cache_creation_input_tokens: tokens[4].value(u),
                        requests: tokens[5].value(u),
                    })
                    .collect(),
                output_refs: strings_at(output_refs, i),
            });
            out.push(CallRecord {
                tenant: polymeter_model::TenantId::new(tenant.value(i))
                    .map_err(|e| e.to_string())?,
                project_id: polymeter_model::ProjectId::parse(project.value(i))
                    .map_err(|e| e.to_string())?,
                call_id: polymeter_model::CallId::new(call_id.value(i))
                    .map_err(|e| e.to_string())?,
                start,
                end,
            });
        }
        Ok(out)
    }
}
