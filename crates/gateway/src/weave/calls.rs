//! Weave call ingest → `IngestService.IngestWeaveCalls`. JSON-valued fields go
//! through as JSON text; ingest extracts refs and usage.

use super::{WeaveBody, WeaveCaller, WeaveResult};
use crate::api::Services;
use crate::error::Error;
use crate::json::{parse, Instant};
use axum::extract::{Path, State};
use axum::Json;
use polymeter_proto::v1::{self as pb, weave_call_op::Op};
use serde::Deserialize;
use serde_json::{json, Value};

/// Weave's `StartedCallSchemaForInsert`. Fields Polymeter does not use
/// (`otel_dump`, `wb_run_step`, …) are accepted and ignored so every SDK
/// version can write.
#[derive(Deserialize)]
struct StartedCall {
    project_id: String,
    id: Option<String>,
    op_name: String,
    display_name: Option<String>,
    trace_id: Option<String>,
    parent_id: Option<String>,
    thread_id: Option<String>,
    turn_id: Option<String>,
    started_at: Instant,
    #[serde(default)]
    attributes: Value,
    #[serde(default)]
    inputs: Value,
    wb_user_id: Option<String>,
    wb_run_id: Option<String>,
}

/// Weave's `EndedCallSchemaForInsert`.
#[derive(Deserialize)]
struct EndedCall {
    project_id: String,
    id: String,
    ended_at: Instant,
    exception: Option<String>,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    summary: Value,
}

/// A finished call sent whole: the start fields and the end fields together.
#[derive(Deserialize)]
struct CompleteCall {
    project_id: Option<String>,
    id: Option<String>,
    op_name: String,
    display_name: Option<String>,
    trace_id: Option<String>,
    parent_id: Option<String>,
    thread_id: Option<String>,
    turn_id: Option<String>,
    started_at: Instant,
    ended_at: Instant,
    #[serde(default)]
    attributes: Value,
    #[serde(default)]
    inputs: Value,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    summary: Value,
    exception: Option<String>,
    wb_user_id: Option<String>,
    wb_run_id: Option<String>,
}

#[derive(Deserialize)]
struct StartReq {
    start: StartedCall,
}

#[derive(Deserialize)]
struct EndReq {
    end: EndedCall,
}

#[derive(Deserialize)]
#[serde(tag = "mode", content = "req", rename_all = "lowercase")]
enum BatchItem {
    Start(StartReq),
    End(EndReq),
}

#[derive(Deserialize)]
struct BatchReq {
    batch: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct CompleteReq {
    batch: Vec<CompleteCall>,
}

fn json_text(v: &Value) -> String {
    if v.is_null() {
        String::new()
    } else {
        v.to_string()
    }
}

impl From<StartedCall> for pb::WeaveCallStart {
    fn from(s: StartedCall) -> Self {
        pb::WeaveCallStart {
            project_id: s.project_id,
            id: s.id,
            op_name: s.op_name,
            display_name: s.display_name,
            trace_id: s.trace_id,
            parent_id: s.parent_id,
            thread_id: s.thread_id,
            turn_id: s.turn_id,
            started_at_us: s.started_at.micros(),
            attributes_json: json_text(&s.attributes),
            inputs_json: json_text(&s.inputs),
            wb_user_id: s.wb_user_id,
            wb_run_id: s.wb_run_id,
        }
    }
}

impl From<EndedCall> for pb::WeaveCallEnd {
    fn from(e: EndedCall) -> Self {
        pb::WeaveCallEnd {
            project_id: e.project_id,
            id: e.id,
            ended_at_us: e.ended_at.micros(),
            exception: e.exception,
            output_json: json_text(&e.output),
            summary_json: json_text(&e.summary),
        }
    }
}

async fn ingest(
    services: &Services,
    caller: &WeaveCaller,
    ops: Vec<Op>,
) -> Result<Vec<pb::CallRef>, Error> {
    let request = pb::IngestWeaveCallsRequest {
        tenant: caller.tenant(),
        ops: ops
            .into_iter()
            .map(|op| pb::WeaveCallOp { op: Some(op) })
            .collect(),
    };
    services.ingest.ingest_weave_calls(request).await
}

pub async fn start(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<Value>> {
    let req: StartReq = parse(&body)?;
    caller.check("start.project_id", &req.start.project_id)?;
    let results = ingest(&services, &caller, vec![Op::Start(req.start.into())]).await?;
    let r = results.into_iter().next().unwrap_or_default();
    Ok(Json(json!({ "id": r.id, "trace_id": r.trace_id })))
}

pub async fn end(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<Value>> {
    let req: EndReq = parse(&body)?;
    caller.check("end.project_id", &req.end.project_id)?;
    ingest(&services, &caller, vec![Op::End(req.end.into())]).await?;
    Ok(Json(json!({})))
}

pub async fn upsert_batch(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<Value>> {
    let req: BatchReq = parse(&body)?;
    for (i, item) in req.batch.iter().enumerate() {
        let (field, project_id) = match item {
            BatchItem::Start(s) => ("req.start.project_id", &s.start.project_id),
            BatchItem::End(e) => ("req.end.project_id", &e.end.project_id),
        };
        caller.check(&format!("batch[{i}].{field}"), project_id)?;
    }
    let is_start: Vec<bool> = req
        .batch
        .iter()
        .map(|b| matches!(b, BatchItem::Start(_)))
        .collect();
    let ops = req
        .batch
        .into_iter()
        .map(|item| match item {
            BatchItem::Start(s) => Op::Start(s.start.into()),
            BatchItem::End(e) => Op::End(e.end.into()),
        })
        .collect();
    let results = ingest(&services, &caller, ops).await?;
    let res: Vec<Value> = results
        .into_iter()
        .zip(is_start)
        .map(|(r, start)| {
            if start {
                json!({ "id": r.id, "trace_id": r.trace_id })
            } else {
                json!({})
            }
        })
        .collect();
    Ok(Json(json!({ "res": res })))
}

pub async fn complete(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, project)): Path<(String, String)>,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<Value>> {
    let project_id = format!("{entity}/{project}");
    caller.check("path", &project_id)?;
    let req: CompleteReq = parse(&body)?;
    let mut ops = Vec::with_capacity(req.batch.len());
    for (i, c) in req.batch.into_iter().enumerate() {
        if let Some(p) = c.project_id.as_deref().filter(|p| *p != project_id) {
            return Err(Error::invalid(format!(
                "batch[{i}].project_id: {p:?} does not match the path's project {project_id:?}"
            ))
            .into());
        }
        if c.ended_at.0 < c.started_at.0 {
            return Err(Error::invalid(format!(
                "batch[{i}].ended_at must not be before started_at"
            ))
            .into());
        }
        let start = pb::WeaveCallStart {
            project_id: project_id.clone(),
            id: c.id.clone(),
            op_name: c.op_name,
            display_name: c.display_name,
            trace_id: c.trace_id,
            parent_id: c.parent_id,
            thread_id: c.thread_id,
            turn_id: c.turn_id,
            started_at_us: c.started_at.micros(),
            attributes_json: json_text(&c.attributes),
            inputs_json: json_text(&c.inputs),
            wb_user_id: c.wb_user_id,
            wb_run_id: c.wb_run_id,
        };
        let end = pb::WeaveCallEnd {
            project_id: project_id.clone(),
            id: c.id.unwrap_or_default(),
            ended_at_us: c.ended_at.micros(),
            exception: c.exception,
            output_json: json_text(&c.output),
            summary_json: json_text(&c.summary),
        };
        ops.push(Op::Complete(pb::WeaveCompleteCall {
            start: Some(start),
            end: Some(end),
        }));
    }
    let results = ingest(&services, &caller, ops).await?;
    let res: Vec<Value> = results
        .into_iter()
        .map(|r| json!({ "id": r.id, "trace_id": r.trace_id }))
        .collect();
    Ok(Json(json!({ "res": res })))
}
