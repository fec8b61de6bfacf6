//! Feedback in memory and on disk.
//!
//! In memory, one partition per `(tenant, project)` holds a column per field a
//! query reads: `created_at` in milliseconds, interned codes for the
//! low-cardinality strings (type, scorer, monitor, agent name and version),
//! the status and span type as small integers, and tags and ratings as spans
//! into shared pools. Log frames hold the protobuf `AppendFeedbackRequest`;
//! segments hold one Parquet row per record:
//!
//! | column | type |
//! |---|---|
//! | `tenant`, `project_id`, `feedback_id` | utf8 |
//! | `created_at` | timestamp(ms, UTC) |
//! | `feedback_type`, `weave_ref` | utf8 |
//! | `runnable_ref`, `call_ref`, `trigger_ref`, `scorer_id`, `monitor_id`, `span_agent_name`, `span_agent_version`, `span_type`, `wb_user_id` | utf8, nullable |
//! | `span_status_code` | utf8 (`UNSET`, `OK`, `ERROR`) |
//! | `scorer_tags` | list<utf8> |
//! | `scorer_ratings` | list<struct<name: utf8, value: float64>> |
//! | `payload` | utf8 (JSON as sent) |

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, ListArray, ListBuilder, RecordBatch,
    StringArray, StringBuilder, StructArray, TimestampMillisecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{
    DataType, Field, Fields, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use polymeter_model::feedback::{parse_span_status, span_status_name, SpanType};
use polymeter_proto::v1 as pb;
use polymeter_store::place::day_of_us;
use polymeter_store::{Place, Table};
use prost::Message;
use rustc_hash::FxHashMap;
use std::sync::{Arc, LazyLock};

pub use polymeter_store::interner::{Interner as Strings, NONE};

/// One `(tenant, project)`'s feedback.
#[derive(Default)]
pub struct Partition {
    pub tenant: String,
    pub project: String,
    pub created_ms: Vec<i64>,
    pub feedback_type: Vec<u32>,
    pub scorer_id: Vec<u32>,
    pub monitor_id: Vec<u32>,
    pub agent_name: Vec<u32>,
    pub agent_version: Vec<u32>,
    /// `pb::SpanStatus` as an integer.
    pub status: Vec<u8>,
    /// 0 none, 1 agent_turn, 2 agent_conversation.
    pub span_type: Vec<u8>,
    pub tags: Vec<(u32, u32)>,
    pub ratings: Vec<(u32, u32)>,
}

impl Partition {
    pub fn rows(&self) -> usize {
        self.created_ms.len()
    }
}

/// Every feedback record the service holds.
#[derive(Default)]
pub struct FeedbackTable {
    pub partitions: Vec<Partition>,
    by_scope: FxHashMap<(String, String), usize>,
    pub strings: Strings,
    pub tag_pool: Vec<u32>,
    pub rating_pool: Vec<(u32, f64)>,
}

pub fn span_type_code(t: Option<&str>) -> u8 {
    match t.and_then(|t| t.parse::<SpanType>().ok()) {
        None => 0,
        Some(SpanType::AgentTurn) => 1,
        Some(SpanType::AgentConversation) => 2,
    }
}

impl FeedbackTable {
    pub fn partition(&self, tenant: &str, project: &str) -> Option<&Partition> {
        self.by_scope
            .get(&(tenant.to_owned(), project.to_owned()))
            .map(|&i| &self.partitions[i])
    }

    pub fn insert(&mut self, w: &pb::FeedbackWrite) {
        let key = (w.tenant.clone(), w.project_id.clone());
        let pi = match self.by_scope.get(&key) {
            Some(&pi) => pi,
            None => {
                self.partitions.push(Partition {
                    tenant: w.tenant.clone(),
                    project: w.project_id.clone(),
                    ..Default::default()
                });
                self.by_scope.insert(key, self.partitions.len() - 1);
                self.partitions.len() - 1
            }
        };
        let s = &mut self.strings;
        let p = &mut self.partitions[pi];
        p.created_ms.push(w.created_at_ms);
        p.feedback_type.push(s.intern(&w.feedback_type));
        p.scorer_id.push(s.intern_opt(w.scorer_id.as_deref()));
        p.monitor_id.push(s.intern_opt(w.monitor_id.as_deref()));
        p.agent_name
            .push(s.intern_opt(w.span_agent_name.as_deref()));
        p.agent_version
            .push(s.intern_opt(w.span_agent_version.as_deref()));
        p.status.push(w.span_status_code as u8);
        p.span_type.push(span_type_code(w.span_type.as_deref()));
        let start = self.tag_pool.len() as u32;
        for t in &w.scorer_tags {
            let c = s.intern(t);
            self.tag_pool.push(c);
        }
        p.tags.push((start, self.tag_pool.len() as u32 - start));
        let start = self.rating_pool.len() as u32;
        // Sorted by name so every store yields ratings in the same order.
        let mut ratings: Vec<(&String, &f64)> = w.scorer_ratings.iter().collect();
        ratings.sort_by(|a, b| a.0.cmp(b.0));
        for (name, value) in ratings {
            let c = s.intern(name);
            self.rating_pool.push((c, *value));
        }
        p.ratings
            .push((start, self.rating_pool.len() as u32 - start));
    }

    pub fn rows(&self) -> usize {
        self.partitions.iter().map(Partition::rows).sum()
    }

    /// Forgets a project's feedback: all of it, or that created before
    /// `before_ms`. (Its strings stay interned, and tag and rating spans
    /// stay in the shared pools, until the next restart.)
    pub fn forget(&mut self, tenant: &str, project: &str, before_ms: Option<i64>) {
        let Some(&pi) = self.by_scope.get(&(tenant.to_owned(), project.to_owned())) else {
            return;
        };
        match before_ms {
            None => {
                self.partitions.remove(pi);
                self.by_scope = self
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| ((p.tenant.clone(), p.project.clone()), i))
                    .collect();
            }
            Some(cutoff) => {
                let p = &mut self.partitions[pi];
                let keep: Vec<bool> = p.created_ms.iter().map(|&ms| ms >= cutoff).collect();
                fn retain<T>(column: &mut Vec<T>, keep: &[bool]) {
                    let mut i = 0;
                    column.retain(|_| {
                        i += 1;
                        keep[i - 1]
                    });
                    column.shrink_to_fit();
                }
                retain(&mut p.created_ms, &keep);
                retain(&mut p.feedback_type, &keep);
                retain(&mut p.scorer_id, &keep);
                retain(&mut p.monitor_id, &keep);
                retain(&mut p.agent_name, &keep);
                retain(&mut p.agent_version, &keep);
                retain(&mut p.status, &keep);
                retain(&mut p.span_type, &keep);
                retain(&mut p.tags, &keep);
                retain(&mut p.ratings, &keep);
            }
        }
    }
}

fn ratings_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ])
}

const OPTIONAL: [&str; 9] = [
    "runnable_ref",
    "call_ref",
    "trigger_ref",
    "scorer_id",
    "monitor_id",
    "span_agent_name",
    "span_agent_version",
    "span_type",
    "wb_user_id",
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let mut fields = vec![
        Field::new("tenant", DataType::Utf8, false),
        Field::new("project_id", DataType::Utf8, false),
        Field::new("feedback_id", DataType::Utf8, false),
        Field::new(
            "created_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("feedback_type", DataType::Utf8, false),
        Field::new("weave_ref", DataType::Utf8, false),
    ];
    fields.extend(
        OPTIONAL
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true)),
    );
    fields.push(Field::new("span_status_code", DataType::Utf8, false));
    fields.push(Field::new(
        "scorer_tags",
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        false,
    ));
    fields.push(Field::new(
        "scorer_ratings",
        DataType::List(Arc::new(Field::new(
            "item",
            DataType::Struct(ratings_fields()),
            true,
        ))),
        false,
    ));
    fields.push(Field::new("payload", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
});

fn optional(w: &pb::FeedbackWrite) -> [Option<&str>; 9] {
    [
        w.runnable_ref.as_deref(),
        w.call_ref.as_deref(),
        w.trigger_ref.as_deref(),
        w.scorer_id.as_deref(),
        w.monitor_id.as_deref(),
        w.span_agent_name.as_deref(),
        w.span_agent_version.as_deref(),
        w.span_type.as_deref(),
        w.wb_user_id.as_deref(),
    ]
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, String> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| format!("segment column {name} is missing or has the wrong type"))
}

impl Table for FeedbackTable {
    type Write = pb::FeedbackWrite;

    fn encode(batch: &[pb::FeedbackWrite], buf: &mut Vec<u8>) {
        for w in batch {
            prost::encoding::message::encode(1, w, buf);
        }
    }

    fn decode(payload: &[u8]) -> Result<Vec<pb::FeedbackWrite>, String> {
        Ok(pb::AppendFeedbackRequest::decode(payload)
            .map_err(|e| e.to_string())?
            .feedback)
    }

    fn apply(&mut self, batch: Vec<pb::FeedbackWrite>) {
        batch.iter().for_each(|w| self.insert(w));
    }

    /// A record's segment is its project's and the UTC day it was created.
    fn place<'a>(&self, w: &'a pb::FeedbackWrite) -> Place<'a> {
        Place {
            tenant: &w.tenant,
            project: &w.project_id,
            day: day_of_us(w.created_at_ms.saturating_mul(1000)),
        }
    }

    fn remove(&mut self, tenant: &str, project: &str, before_us: Option<i64>) {
        // Milliseconds, rounded up: a record at 999 µs past a millisecond
        // cutoff does not exist (feedback times are whole milliseconds).
        let before_ms =
            before_us.map(|us| us.div_euclid(1000) + i64::from(us.rem_euclid(1000) != 0));
        self.forget(tenant, project, before_ms);
    }

    fn schema() -> SchemaRef {
        SCHEMA.clone()
    }

    fn to_arrow(batch: &[pb::FeedbackWrite]) -> Result<RecordBatch, String> {
        let mut keys: Vec<StringBuilder> = (0..3).map(|_| StringBuilder::new()).collect();
        let mut created = TimestampMillisecondBuilder::new().with_timezone("UTC");
        let mut kind = StringBuilder::new();
        let mut weave_ref = StringBuilder::new();
        let mut opt: Vec<StringBuilder> = OPTIONAL.iter().map(|_| StringBuilder::new()).collect();
        let mut status = StringBuilder::new();
        let mut tags = ListBuilder::new(StringBuilder::new());
        let mut names = StringBuilder::new();
        let mut values = Float64Builder::new();
        let mut rating_offsets = vec![0i32];
        let mut payload = StringBuilder::new();
        for w in batch {
            keys[0].append_value(&w.tenant);
            keys[1].append_value(&w.project_id);
            keys[2].append_value(&w.feedback_id);
            created.append_value(w.created_at_ms);
            kind.append_value(&w.feedback_type);
            weave_ref.append_value(&w.weave_ref);
            for (b, v) in opt.iter_mut().zip(optional(w)) {
                b.append_option(v);
            }
            status.append_value(span_status_name(w.span_status_code()));
            tags.append_value(w.scorer_tags.iter().map(Some));
            let mut ratings: Vec<(&String, &f64)> = w.scorer_ratings.iter().collect();
            ratings.sort_by(|a, b| a.0.cmp(b.0));
            for (n, v) in &ratings {
                names.append_value(n);
                values.append_value(**v);
            }
            rating_offsets.push(rating_offsets.last().unwrap() + ratings.len() as i32);
            payload.append_value(&w.payload_json);
        }
        let ratings_struct = StructArray::try_new(
            ratings_fields(),
            vec![Arc::new(names.finish()), Arc::new(values.finish())],
            None,
        )
        .map_err(|e| e.to_string())?;
        let ratings = ListArray::try_new(
            Arc::new(Field::new("item", DataType::Struct(ratings_fields()), true)),
            OffsetBuffer::new(rating_offsets.into()),
            Arc::new(ratings_struct),
            None,
        )
        .map_err(|e| e.to_string())?;
        let mut columns: Vec<ArrayRef> = keys
            .iter_mut()
            .map(|b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        columns.push(Arc::new(created.finish()));
        columns.push(Arc::new(kind.finish()));
        columns.push(Arc::new(weave_ref.finish()));
        columns.extend(opt.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(status.finish()));
        columns.push(Arc::new(tags.finish()));
        columns.push(Arc::new(ratings));
        columns.push(Arc::new(payload.finish()));
        RecordBatch::try_new(SCHEMA.clone(), columns).map_err(|e| e.to_string())
    }

    fn from_arrow(batch: &RecordBatch) -> Result<Vec<pb::FeedbackWrite>, String> {
        let keys = [
            strings(batch, "tenant")?,
            strings(batch, "project_id")?,
            strings(batch, "feedback_id")?,
        ];
        let created = batch
            .column_by_name("created_at")
            .and_then(|c| c.as_primitive_opt::<TimestampMillisecondType>())
            .ok_or("segment column created_at is missing")?;
        let kind = strings(batch, "feedback_type")?;
        let weave_ref = strings(batch, "weave_ref")?;
        let opt: Vec<&StringArray> = OPTIONAL
            .iter()
            .map(|n| strings(batch, n))
            .collect::<Result<_, _>>()?;
        let status = strings(batch, "span_status_code")?;
        let tags = batch
            .column_by_name("scorer_tags")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or("segment column scorer_tags is missing")?;
        let ratings = batch
            .column_by_name("scorer_ratings")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or("segment column scorer_ratings is missing")?;
        let rating_values = ratings
            .values()
            .as_struct_opt()
            .ok_or("scorer_ratings is not a list of structs")?;
        let names = rating_values
            .column(0)
            .as_string_opt::<i32>()
            .ok_or("scorer_ratings.name")?;
        let values = rating_values
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .ok_or("scorer_ratings.value")?;
        let tag_values = tags.values().as_string_opt::<i32>().ok_or("scorer_tags")?;
        let payload = strings(batch, "payload")?;
        let get = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
        (0..batch.num_rows())
            .map(|i| {
                let (t0, t1) = (
                    tags.value_offsets()[i] as usize,
                    tags.value_offsets()[i + 1] as usize,
                );
                let (r0, r1) = (
                    ratings.value_offsets()[i] as usize,
                    ratings.value_offsets()[i + 1] as usize,
                );
                let mut w = pb::FeedbackWrite {
                    tenant: keys[0].value(i).to_owned(),
                    project_id: keys[1].value(i).to_owned(),
                    feedback_id: keys[2].value(i).to_owned(),
                    created_at_ms: created.value(i),
                    feedback_type: kind.value(i).to_owned(),
                    weave_ref: weave_ref.value(i).to_owned(),
                    runnable_ref: get(opt[0], i),
                    call_ref: get(opt[1], i),
                    trigger_ref: get(opt[2], i),
                    scorer_id: get(opt[3], i),
                    monitor_id: get(opt[4], i),
                    span_agent_name: get(opt[5], i),
                    span_agent_version: get(opt[6], i),
                    span_status_code: 0,
                    span_type: get(opt[7], i),
                    scorer_tags: (t0..t1).map(|j| tag_values.value(j).to_owned()).collect(),
                    scorer_ratings: (r0..r1)
                        .map(|j| (names.value(j).to_owned(), values.value(j)))
                        .collect(),
                    payload_json: payload.value(i).to_owned(),
                    wb_user_id: get(opt[8], i),
                };
                let code = parse_span_status(status.value(i)).map_err(|e| e.to_string())?;
                w.set_span_status_code(code);
                Ok(w)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feedback_round_trips_through_frames_and_segments() {
        let writes: Vec<pb::FeedbackWrite> = (0..20)
            .map(|i| pb::FeedbackWrite {
                tenant: "t".into(),
                project_id: "e/p".into(),
                feedback_id: format!("f{i}"),
                created_at_ms: 1_700_000_000_000 + i,
                feedback_type: "wandb.runnable.my_scorer".into(),
                weave_ref: "weave:///e/p/agent_turn/x".into(),
                runnable_ref: (i % 2 == 0).then(|| "weave:///e/p/object/s:1".into()),
                scorer_id: (i % 2 == 0).then(|| "s".into()),
                span_status_code: (i % 3) as i32,
                span_type: Some("agent_turn".into()),
                scorer_tags: vec!["a".into(), "b".into()],
                scorer_ratings: [("_rating_".to_owned(), 0.5), ("x".to_owned(), 1.0)].into(),
                payload_json: "{\"k\":1}".into(),
                ..Default::default()
            })
            .collect();
        let mut frame = Vec::new();
        FeedbackTable::encode(&writes, &mut frame);
        assert_eq!(FeedbackTable::decode(&frame).unwrap(), writes);
        let batch = FeedbackTable::to_arrow(&writes).unwrap();
        assert_eq!(FeedbackTable::from_arrow(&batch).unwrap(), writes);
    }
}
