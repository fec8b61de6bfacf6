//! Weave feedback: `/feedback/create` and `/feedback/batch/create` →
//! `IngestService.IngestWeaveFeedback`; `/feedback/aggregate` →
//! `FeedbackService.AggregateFeedback`.

use super::{WeaveBody, WeaveCaller, WeaveResult};
use crate::api::Services;
use crate::error::Error;
use crate::json::parse;
use axum::extract::State;
use axum::Json;
use chrono::{SecondsFormat, TimeZone, Utc};
use polymeter_model::feedback::FeedbackDimension;
use polymeter_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Weave's `FeedbackCreateReq` with the agent-monitor fields. Fields Polymeter
/// does not use (`creator`, `annotation_ref`, …) are accepted and ignored.
#[derive(Deserialize, ToSchema)]
pub struct FeedbackCreate {
    /// `entity/project`.
    #[schema(pattern = "^[^/]+/[^/]+$", example = "acme/chatbot")]
    project_id: String,
    /// What the feedback is about, e.g. `weave:///acme/bot/call/<id>`.
    #[schema(pattern = "^weave:///[^/]+/[^/]+/[^/]+/[^/]+")]
    weave_ref: String,
    #[schema(min_length = 1)]
    feedback_type: String,
    #[serde(default)]
    payload: Value,
    runnable_ref: Option<String>,
    call_ref: Option<String>,
    trigger_ref: Option<String>,
    wb_user_id: Option<String>,
    #[serde(default)]
    scorer_tags: Vec<String>,
    #[serde(default)]
    scorer_ratings: BTreeMap<String, f64>,
    span_agent_name: Option<String>,
    span_agent_version: Option<String>,
    span_status_code: Option<String>,
}

/// Weave's `FeedbackCreateBatchReq`.
#[derive(Deserialize, ToSchema)]
pub struct BatchCreate {
    batch: Vec<FeedbackCreate>,
}

impl From<FeedbackCreate> for pb::WeaveFeedback {
    fn from(f: FeedbackCreate) -> Self {
        pb::WeaveFeedback {
            project_id: f.project_id,
            weave_ref: f.weave_ref,
            feedback_type: f.feedback_type,
            payload_json: if f.payload.is_null() {
                "{}".into()
            } else {
                f.payload.to_string()
            },
            runnable_ref: f.runnable_ref,
            call_ref: f.call_ref,
            trigger_ref: f.trigger_ref,
            scorer_tags: f.scorer_tags,
            scorer_ratings: f.scorer_ratings.into_iter().collect(),
            span_agent_name: f.span_agent_name,
            span_agent_version: f.span_agent_version,
            span_status_code: f.span_status_code.unwrap_or_default(),
            wb_user_id: f.wb_user_id,
        }
    }
}

/// Weave's `FeedbackCreateRes`.
#[derive(Serialize, ToSchema)]
pub struct FeedbackCreateRes {
    pub id: String,
    /// Set by the server, ISO 8601 in milliseconds.
    pub created_at: Option<String>,
    pub wb_user_id: Option<String>,
    pub payload: Value,
}

/// Weave's `FeedbackCreateBatchRes`.
#[derive(Serialize, ToSchema)]
pub struct BatchCreateRes {
    pub res: Vec<FeedbackCreateRes>,
}

fn created(w: &pb::FeedbackWrite) -> FeedbackCreateRes {
    let at = Utc
        .timestamp_millis_opt(w.created_at_ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true));
    FeedbackCreateRes {
        id: w.feedback_id.clone(),
        created_at: at,
        wb_user_id: w.wb_user_id.clone(),
        payload: serde_json::from_str::<Value>(&w.payload_json).unwrap_or(Value::Null),
    }
}

async fn ingest(
    services: &Services,
    caller: &WeaveCaller,
    items: Vec<pb::WeaveFeedback>,
) -> Result<Vec<pb::FeedbackWrite>, Error> {
    let request = pb::IngestWeaveFeedbackRequest {
        tenant: caller.tenant(),
        feedback: items,
    };
    services.ingest.ingest_weave_feedback(request).await
}

/// Records one piece of feedback (Weave `feedback_create`).
#[utoipa::path(post, path = "/feedback/create", tag = "Weave", request_body = FeedbackCreate,
    responses((status = 200, description = "Stored durably", body = FeedbackCreateRes)),
    security(("weave_basic" = [])))]
pub async fn create(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<FeedbackCreateRes>> {
    let req: FeedbackCreate = parse(&body)?;
    caller.check("project_id", &req.project_id)?;
    let created_records = ingest(&services, &caller, vec![req.into()]).await?;
    let first = created_records
        .first()
        .ok_or_else(|| Error::internal("ingest created nothing"))?;
    Ok(Json(created(first)))
}

/// Records feedback in one batch, stored whole or not at all.
#[utoipa::path(post, path = "/feedback/batch/create", tag = "Weave", request_body = BatchCreate,
    responses((status = 200, description = "Stored durably", body = BatchCreateRes)),
    security(("weave_basic" = [])))]
pub async fn batch_create(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<BatchCreateRes>> {
    let req: BatchCreate = parse(&body)?;
    for (i, item) in req.batch.iter().enumerate() {
        caller.check(&format!("batch[{i}].project_id"), &item.project_id)?;
    }
    let records = ingest(
        &services,
        &caller,
        req.batch.into_iter().map(Into::into).collect(),
    )
    .await?;
    Ok(Json(BatchCreateRes {
        res: records.iter().map(created).collect(),
    }))
}

/// Weave's `FeedbackAggregateReq`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AggregateReq {
    /// `entity/project`.
    #[schema(pattern = "^[^/]+/[^/]+$", example = "acme/chatbot")]
    project_id: String,
    after_ms: u64,
    before_ms: u64,
    time_bucket_seconds: Option<i64>,
    #[serde(default)]
    feedback_types: Vec<String>,
    #[serde(default)]
    group_by: Vec<String>,
    #[serde(default)]
    monitor_ids: Vec<String>,
    #[serde(default)]
    scorer_ids: Vec<String>,
    #[serde(default)]
    span_agent_names: Vec<String>,
    #[serde(default)]
    span_types: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    rating_min: Option<f64>,
    rating_max: Option<f64>,
}

/// `/feedback/aggregate` → the feedback query and the group names its rows
/// carry, or a 400 naming the field.
pub fn translate(
    req: AggregateReq,
    tenant: &str,
) -> Result<(pb::AggregateFeedbackRequest, Vec<FeedbackDimension>), Error> {
    let group_by: Vec<FeedbackDimension> = req
        .group_by
        .iter()
        .enumerate()
        .map(|(i, g)| {
            g.parse()
                .map_err(|e| Error::invalid(format!("group_by[{i}]: {e}")))
        })
        .collect::<Result<_, _>>()?;
    let request = pb::AggregateFeedbackRequest {
        tenant: tenant.to_owned(),
        project_id: req.project_id,
        after_ms: req.after_ms.min(i64::MAX as u64) as i64,
        before_ms: req.before_ms.min(i64::MAX as u64) as i64,
        time_bucket_seconds: req.time_bucket_seconds,
        feedback_types: req.feedback_types,
        monitor_ids: req.monitor_ids,
        scorer_ids: req.scorer_ids,
        span_agent_names: req.span_agent_names,
        span_types: req.span_types,
        tags: req.tags,
        rating_min: req.rating_min,
        rating_max: req.rating_max,
        group_by: group_by.iter().map(|d| d.to_proto() as i32).collect(),
    };
    Ok((request, group_by))
}

/// The feedback service's answer → Weave's aggregate response.
pub fn render(
    request: &pb::AggregateFeedbackRequest,
    group_by: &[FeedbackDimension],
    answer: pb::AggregateFeedbackResponse,
) -> AggregateRes {
    let buckets = answer
        .buckets
        .into_iter()
        .map(|b| FeedbackBucketRes {
            time_bucket_start_ms: b.time_bucket_start_ms,
            group: group_by
                .iter()
                .zip(b.group)
                .map(|(d, v)| (d.as_str().to_owned(), v))
                .collect(),
            total_count: b.total_count,
            scored_count: b.scored_count,
            tag_counts: b.tag_counts.into_iter().collect(),
            rating_counts: b.rating_counts.into_iter().collect(),
            rating_sums: b.rating_sums.into_iter().collect(),
        })
        .collect();
    AggregateRes {
        after_ms: request.after_ms,
        before_ms: request.before_ms,
        time_bucket_seconds: request.time_bucket_seconds,
        buckets,
    }
}

/// Weave's `FeedbackAggregateRes`.
#[derive(Serialize, ToSchema)]
pub struct AggregateRes {
    pub after_ms: i64,
    pub before_ms: i64,
    pub time_bucket_seconds: Option<i64>,
    pub buckets: Vec<FeedbackBucketRes>,
}

/// One bucket × group: counts of rows, scored rows, tags and ratings.
#[derive(Serialize, ToSchema)]
pub struct FeedbackBucketRes {
    /// Null without time buckets.
    pub time_bucket_start_ms: Option<i64>,
    /// The group's value of each `group_by` dimension.
    pub group: BTreeMap<String, String>,
    pub total_count: u64,
    /// Rows with a tag or a rating.
    pub scored_count: u64,
    pub tag_counts: BTreeMap<String, u64>,
    pub rating_counts: BTreeMap<String, u64>,
    pub rating_sums: BTreeMap<String, f64>,
}

/// Counts of feedback rows, tags and ratings per time bucket and group.
#[utoipa::path(post, path = "/feedback/aggregate", tag = "Weave", request_body = AggregateReq,
    responses((status = 200, description = "Buckets with counts", body = AggregateRes)),
    security(("weave_basic" = [])))]
pub async fn aggregate(
    State(services): State<Services>,
    caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<AggregateRes>> {
    let req: AggregateReq = parse(&body)?;
    caller.check("project_id", &req.project_id)?;
    let (request, group_by) = translate(req, &caller.0.tenant)?;
    let answer = services
        .feedback
        .aggregate_feedback(request.clone())
        .await?;
    Ok(Json(render(&request, &group_by, answer)))
}

#[cfg(test)]
mod tests {
    use crate::testing::{post, router, Fake};
    use axum::http::StatusCode;
    use polymeter_proto::v1 as pb;
    use serde_json::json;
    use std::sync::Arc;

    #[tokio::test]
    async fn aggregate_translates_filters_and_renders_sorted_counts() {
        let fake = Arc::new(Fake::default());
        *fake.feedback_answer.lock().unwrap() = Some(pb::AggregateFeedbackResponse {
            buckets: vec![pb::FeedbackBucket {
                time_bucket_start_ms: Some(0),
                group: vec!["judge".into()],
                total_count: 4,
                scored_count: 3,
                tag_counts: [("b".to_owned(), 1), ("a".to_owned(), 2)].into(),
                rating_counts: [("_rating_".to_owned(), 3)].into(),
                rating_sums: [("_rating_".to_owned(), 2.5)].into(),
            }],
        });
        let (app, auth) = router(fake.clone());
        let (status, body) = post(
            &app,
            "/feedback/aggregate",
            &auth,
            json!({
                "project_id": "acme/bot", "after_ms": 0, "before_ms": 60000,
                "time_bucket_seconds": 60, "group_by": ["scorer_id"],
                "scorer_ids": ["judge*"], "rating_min": 0.5
            }),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let asked = fake.feedback_asked.lock().unwrap()[0].clone();
        assert_eq!(asked.tenant, "local");
        assert_eq!(asked.scorer_ids, vec!["judge*"]);
        assert_eq!(asked.rating_min, Some(0.5));
        assert_eq!(asked.time_bucket_seconds, Some(60));
        let bucket = &body["buckets"][0];
        assert_eq!(bucket["group"], json!({"scorer_id": "judge"}));
        assert_eq!(bucket["tag_counts"].to_string(), r#"{"a":2,"b":1}"#);
        assert_eq!(bucket["rating_sums"]["_rating_"], 2.5);
        assert_eq!(body["time_bucket_seconds"], 60);
    }

    #[tokio::test]
    async fn an_unknown_group_is_a_400_naming_it() {
        let fake = Arc::new(Fake::default());
        let (app, auth) = router(fake.clone());
        let (status, body) = post(
            &app,
            "/feedback/aggregate",
            &auth,
            json!({"project_id": "acme/bot", "after_ms": 0, "before_ms": 1, "group_by": ["colour"]}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["reason"].as_str().unwrap().contains("group_by[0]"));
        assert!(fake.feedback_asked.lock().unwrap().is_empty());
    }
}
