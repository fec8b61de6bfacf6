//! Weave call ingest → `IngestService.IngestWeaveCalls`. JSON-valued fields go
//! through as JSON text; ingest extracts refs and usage.

use super::{WeaveBody, WeaveCaller, WeaveResult};
use crate::api::Services;
use crate::error::Error;
use crate::json::{parse, Instant};
use axum::extract::{Path, State};
use axum::Json;
use polymeter_proto::v1::{self as pb, weave_call_op::Op};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Weave's `StartedCallSchemaForInsert`. Fields Polymeter does not use
/// (`otel_dump`, `wb_run_step`, …) are accepted and ignored so every SDK
/// version can write.
#[derive(Deserialize, ToSchema)]
pub struct StartedCall {
    /// `entity/project`.
    #[schema(pattern = "^[^/]+/[^/]+$", example = "acme/chatbot")]
    project_id: String,
    id: Option<String>,
    #[schema(min_length = 1)]
    op_name: String,
    display_name: Option<String>,
    trace_id: Option<String>,
    parent_id: Option<String>,
    thread_id: Option<String>,
    turn_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    started_at: Instant,
    #[serde(default)]
    #[schema(value_type = Object)]
    attributes: Value,
    #[serde(default)]
    inputs: Value,
    wb_user_id: Option<String>,
    wb_run_id: Option<String>,
}

/// Weave's `EndedCallSchemaForInsert`.
#[derive(Deserialize, ToSchema)]
pub struct EndedCall {
    /// `entity/project`.
    #[schema(pattern = "^[^/]+/[^/]+$", example = "acme/chatbot")]
    project_id: String,
    #[schema(min_length = 1)]
    id: String,
    #[schema(value_type = String, format = DateTime)]
    ended_at: Instant,
    exception: Option<String>,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    /// `usage`: counters per model (`prompt_tokens`, `input_tokens`, …).
    #[schema(value_type = Object)]
    summary: Value,
}

/// A finished call sent whole: the start fields and the end fields together.
#[derive(Deserialize, ToSchema)]
pub struct CompleteCall {
    project_id: Option<String>,
    id: Option<String>,
    #[schema(min_length = 1)]
    op_name: String,
    display_name: Option<String>,
    trace_id: Option<String>,
    parent_id: Option<String>,
    thread_id: Option<String>,
    turn_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    started_at: Instant,
    #[schema(value_type = String, format = DateTime)]
    ended_at: Instant,
    #[serde(default)]
    #[schema(value_type = Object)]
    attributes: Value,
    #[serde(default)]
    inputs: Value,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    /// `usage`: counters per model (`prompt_tokens`, `input_tokens`, …).
    #[schema(value_type = Object)]
    summary: Value,
    exception: Option<String>,
    wb_user_id: Option<String>,
    wb_run_id: Option<String>,
}

/// Weave's `CallStartReq`.
#[derive(Deserialize, ToSchema)]
pub struct StartReq {
    start: StartedCall,
}

/// Weave's `CallEndReq`.
#[derive(Deserialize, ToSchema)]
pub struct EndReq {
    end: EndedCall,
}

/// One item of an upsert batch: `{"mode": "start", "req": …}` or `{"mode": "end", "req": …}`.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "mode", content = "req", rename_all = "lowercase")]
pub enum BatchItem {
    Start(StartReq),
    End(EndReq),
}

/// Weave's `CallCreateBatchReq`.
#[derive(Deserialize, ToSchema)]
pub struct BatchReq {
    batch: Vec<BatchItem>,
}

/// Finished calls sent whole.
#[derive(Deserialize, ToSchema)]
pub struct CompleteReq {
    batch: Vec<CompleteCall>,
}

/// Weave's `CallStartRes`: the call's id and trace id (generated when not sent).
#[derive(Serialize, ToSchema, Default)]
pub struct CallRefRes {
    pub id: String,
    pub trace_id: String,
}

impl From<pb::CallRef> for CallRefRes {
    fn from(r: pb::CallRef) -> Self {
        Self {
            id: r.id,
            trace_id: r.trace_id,
        }
    }
}

/// Weave's `CallEndRes`: empty.
#[derive(Serialize, ToSchema)]
pub struct CallEndRes {}

/// One answer of an upsert batch: the ids for a start, nothing for an end.
#[derive(Serialize, ToSchema)]
pub struct BatchItemRes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// Weave's `CallCreateBatchRes`.
#[derive(Serialize, ToSchema)]
pub struct BatchRes {
    pub res: Vec<BatchItemRes>,
}

/// The ids of each completed call, in order.
#[derive(Serialize, ToSchema)]
pub struct CompleteRes {
    pub res: Vec<CallRefRes>,
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

/// Starts a call (Weave `call_start`).
#[utoipa::path(post, path = "/call/start", tag = "Weave", request_body = StartReq,
    responses((status = 200, description = "Stored durably", body = CallRefRes)),
    security(("weave_basic" = [])))]
pub async fn start(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<CallRefRes>> {
    let req: StartReq = parse(&body)?;
    caller.check("start.project_id", &req.start.project_id)?;
    let results = ingest(&services, &caller, vec![Op::Start(req.start.into())]).await?;
    let r = results.into_iter().next().unwrap_or_default();
    Ok(Json(r.into()))
}

/// Ends a call (Weave `call_end`); its usage and exception are taken from the
/// summary and the exception.
#[utoipa::path(post, path = "/call/end", tag = "Weave", request_body = EndReq,
    responses((status = 200, description = "Stored durably", body = CallEndRes)),
    security(("weave_basic" = [])))]
pub async fn end(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<CallEndRes>> {
    let req: EndReq = parse(&body)?;
    caller.check("end.project_id", &req.end.project_id)?;
    ingest(&services, &caller, vec![Op::End(req.end.into())]).await?;
    Ok(Json(CallEndRes {}))
}

/// Starts and ends calls in one batch, stored whole or not at all.
#[utoipa::path(post, path = "/call/upsert_batch", tag = "Weave", request_body = BatchReq,
    responses((status = 200, description = "Stored durably", body = BatchRes)),
    security(("weave_basic" = [])))]
pub async fn upsert_batch(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<BatchRes>> {
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
    let res = results
        .into_iter()
        .zip(is_start)
        .map(|(r, start)| BatchItemRes {
            id: start.then_some(r.id),
            trace_id: start.then_some(r.trace_id),
        })
        .collect();
    Ok(Json(BatchRes { res }))
}

/// Finished calls of `project_id` → ingest ops, or a 400 naming the item.
pub fn translate_complete(project_id: &str, req: CompleteReq) -> Result<Vec<Op>, Error> {
    let mut ops = Vec::with_capacity(req.batch.len());
    for (i, c) in req.batch.into_iter().enumerate() {
        if let Some(p) = c.project_id.as_deref().filter(|p| *p != project_id) {
            return Err(Error::invalid(format!(
                "batch[{i}].project_id: {p:?} does not match the path's project {project_id:?}"
            )));
        }
        if c.ended_at.0 < c.started_at.0 {
            return Err(Error::invalid(format!(
                "batch[{i}].ended_at must not be before started_at"
            )));
        }
        let start = pb::WeaveCallStart {
            project_id: project_id.to_owned(),
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
            project_id: project_id.to_owned(),
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
    Ok(ops)
}

/// Stores finished calls sent whole (start and end fields together).
#[utoipa::path(post, path = "/v2/{entity}/{project}/calls/complete", tag = "Weave",
    params(("entity" = String, Path, description = "The project's entity"),
           ("project" = String, Path, description = "The project's name")),
    request_body = CompleteReq,
    responses((status = 200, description = "Stored durably", body = CompleteRes)),
    security(("weave_basic" = [])))]
pub async fn complete(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, project)): Path<(String, String)>,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<CompleteRes>> {
    let project_id = format!("{entity}/{project}");
    caller.check("path", &project_id)?;
    let ops = translate_complete(&project_id, parse(&body)?)?;
    let results = ingest(&services, &caller, ops).await?;
    Ok(Json(CompleteRes {
        res: results.into_iter().map(Into::into).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use crate::testing::{post, router, Fake};
    use axum::http::StatusCode;
    use polymeter_proto::v1::weave_call_op::Op;
    use serde_json::json;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_start_becomes_one_ingest_op_for_the_callers_tenant() {
        let fake = Arc::new(Fake::default());
        let (app, auth) = router(fake.clone());
        let (status, body) = post(
            &app,
            "/call/start",
            &auth,
            json!({"start": {"project_id": "acme/bot", "op_name": "chat",
                             "started_at": "2024-05-01T12:00:00", "attributes": {"x": 1},
                             "otel_dump": "ignored"}}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body, json!({"id": "id", "trace_id": "trace"}));
        let asked = fake.ingested.lock().unwrap()[0].clone();
        assert_eq!(asked.tenant, "local");
        let Some(Op::Start(start)) = &asked.ops[0].op else {
            panic!("not a start: {asked:?}")
        };
        assert_eq!(start.project_id, "acme/bot");
        assert_eq!(start.started_at_us, 1_714_564_800_000_000);
        assert_eq!(start.attributes_json, r#"{"x":1}"#);
    }

    #[tokio::test]
    async fn a_complete_batch_for_another_project_is_refused_whole() {
        let fake = Arc::new(Fake::default());
        let (app, auth) = router(fake.clone());
        let call = |project: &str| {
            json!({"project_id": project, "op_name": "chat",
                   "started_at": "2024-05-01T12:00:00Z", "ended_at": "2024-05-01T12:00:01Z"})
        };
        let (status, body) = post(
            &app,
            "/v2/acme/bot/calls/complete",
            &auth,
            json!({"batch": [call("acme/bot"), call("acme/other")]}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["reason"]
            .as_str()
            .unwrap()
            .starts_with("batch[1].project_id"));
        assert!(fake.ingested.lock().unwrap().is_empty());
    }
}
