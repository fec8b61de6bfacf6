//! A project's data as a whole, authenticated and enveloped like the Weave
//! routes (`Authorization: Basic`, `{"reason"}` errors):
//!
//! - `GET    /v1/projects` — the projects of the caller's tenant that hold
//!   calls (those the key may see), with their call counts and when their
//!   first and last calls started; answered by the stats service's one
//!   aggregation path (grouped by project), like any other query
//! - `GET    /v1/projects/{entity}/{project}/retention` — how long the
//!   project's calls and feedback are kept
//! - `PUT    /v1/projects/{entity}/{project}/retention` — `{"retention": "30d"}`
//!   (`d`, `h`, `m`, `s`; one hour to a hundred years); records older than
//!   that, by when a call started or feedback was created, are deleted at
//!   once and from then on
//! - `DELETE /v1/projects/{entity}/{project}/retention` — keep forever again
//! - `DELETE /v1/projects/{entity}/{project}` — delete every call and every
//!   feedback record of the project stored so far (its price overrides and
//!   retention stay)
//!
//! The stats and feedback services each keep and enforce the period for
//! the records they own; this module asks both.

use crate::api::Services;
use crate::error::Error;
use crate::json::parse;
use crate::weave::{WeaveBody, WeaveCaller, WeaveResult};
use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use polymeter_model::duration::{format_period, parse_period};
use polymeter_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes() -> Router<crate::state::AppState> {
    Router::new()
        .route("/v1/projects", get(list_projects))
        .route(
            "/v1/projects/{entity}/{project}/retention",
            get(get_retention).put(set_retention).delete(keep_forever),
        )
        .route("/v1/projects/{entity}/{project}", delete(delete_data))
}

/// A retention period to set.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionBody {
    /// `30d`, `12h`, `90m` or `3600s`: at least one hour, at most a hundred years.
    #[schema(example = "30d")]
    retention: String,
}

/// A project's retention.
#[derive(Serialize, ToSchema)]
pub struct RetentionRes {
    pub project_id: String,
    /// The period, in the largest whole unit; `null`: kept forever.
    pub retention: Option<String>,
    pub retention_seconds: Option<u64>,
}

/// A project whose data was deleted.
#[derive(Serialize, ToSchema)]
pub struct DeletedRes {
    pub project_id: String,
    pub deleted: bool,
}

/// The projects a key sees.
#[derive(Serialize, ToSchema)]
pub struct ProjectsRes {
    /// By project id.
    pub projects: Vec<ProjectSummary>,
}

/// One project that holds calls.
#[derive(Serialize, ToSchema)]
pub struct ProjectSummary {
    /// `entity/project`.
    pub project_id: String,
    /// Calls stored (within the project's retention).
    pub calls: u64,
    /// When its earliest call started (RFC 3339, UTC).
    pub first_seen: String,
    /// When its latest call started (RFC 3339, UTC).
    pub last_seen: String,
}

/// The projects of the caller's tenant that hold calls, with call counts and
/// first and last start times — what a console offers to pick from.
#[utoipa::path(get, path = "/v1/projects", tag = "Projects",
    responses((status = 200, description = "The projects the key may see", body = ProjectsRes)),
    security(("weave_basic" = [])))]
pub(crate) async fn list_projects(
    State(services): State<Services>,
    caller: WeaveCaller,
) -> WeaveResult<Json<ProjectsRes>> {
    use polymeter_model::time::{EARLIEST_US, LATEST_US};
    let measure = |metric: pb::Metric, aggregation: pb::Aggregation| pb::Measure {
        metric: metric as i32,
        aggregation: aggregation as i32,
        percentile: 0.0,
    };
    let answer = services
        .stats
        .aggregate_calls(pb::AggregateCallsRequest {
            tenant: caller.tenant(),
            project_ids: caller.0.projects.clone(),
            start_us: EARLIEST_US,
            end_us: LATEST_US,
            grain: pb::Grain::Call as i32,
            group_by: vec![pb::Dimension::ProjectId as i32],
            measures: vec![
                measure(pb::Metric::StartedAtUs, pb::Aggregation::Min),
                measure(pb::Metric::StartedAtUs, pb::Aggregation::Max),
            ],
            ..Default::default()
        })
        .await?;
    let projects = answer
        .rows
        .into_iter()
        .filter_map(|row| {
            let project_id = row.group.first()?.value.clone()?;
            let instant = |i: usize| -> Option<String> {
                let us = row.values.get(i)?.value?;
                Some(
                    chrono::DateTime::from_timestamp_micros(us as i64)?
                        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                )
            };
            Some(ProjectSummary {
                calls: row.row_count,
                first_seen: instant(0)?,
                last_seen: instant(1)?,
                project_id,
            })
        })
        // A tenant's stored projects are its own; a key may be narrower.
        .filter(|p| caller.0.may_access(&p.project_id))
        .collect();
    Ok(Json(ProjectsRes { projects }))
}

fn project(caller: &WeaveCaller, entity: &str, project: &str) -> Result<String, Error> {
    let id = format!("{entity}/{project}");
    caller.check("path", &id)?;
    Ok(id)
}

fn render(project_id: String, seconds: Option<u64>) -> RetentionRes {
    RetentionRes {
        project_id,
        retention: seconds.map(|s| format_period(std::time::Duration::from_secs(s))),
        retention_seconds: seconds,
    }
}

/// How long the project's calls and feedback are kept.
#[utoipa::path(get, path = "/v1/projects/{entity}/{project}/retention", tag = "Projects",
    params(("entity" = String, Path, min_length = 1, max_length = 200), ("project" = String, Path, min_length = 1, max_length = 200)),
    responses((status = 200, description = "The retention period", body = RetentionRes)),
    security(("weave_basic" = [])))]
pub(crate) async fn get_retention(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name)): Path<(String, String)>,
) -> WeaveResult<Json<RetentionRes>> {
    let project_id = project(&caller, &entity, &name)?;
    let seconds = services
        .projects
        .get_retention(pb::GetRetentionRequest {
            tenant: caller.tenant(),
            project_id: project_id.clone(),
        })
        .await?;
    Ok(Json(render(project_id, seconds)))
}

/// Sets the project's retention: older calls and feedback are deleted now
/// and from then on, and no answer includes them.
#[utoipa::path(put, path = "/v1/projects/{entity}/{project}/retention", tag = "Projects",
    params(("entity" = String, Path, min_length = 1, max_length = 200), ("project" = String, Path, min_length = 1, max_length = 200)),
    request_body = RetentionBody,
    responses((status = 200, description = "Stored durably and applied", body = RetentionRes)),
    security(("weave_basic" = [])))]
pub(crate) async fn set_retention(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name)): Path<(String, String)>,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<RetentionRes>> {
    let project_id = project(&caller, &entity, &name)?;
    let asked: RetentionBody = parse(&body)?;
    let period = parse_period(&asked.retention).ok_or_else(|| {
        Error::invalid(format!(
            "retention: {:?} is not a period such as 30d, 12h, 90m or 3600s",
            asked.retention
        ))
    })?;
    services
        .projects
        .set_retention(pb::SetRetentionRequest {
            tenant: caller.tenant(),
            project_id: project_id.clone(),
            retention_seconds: Some(period.as_secs()),
        })
        .await?;
    Ok(Json(render(project_id, Some(period.as_secs()))))
}

/// Removes the project's retention: its data is kept forever again.
#[utoipa::path(delete, path = "/v1/projects/{entity}/{project}/retention", tag = "Projects",
    params(("entity" = String, Path, min_length = 1, max_length = 200), ("project" = String, Path, min_length = 1, max_length = 200)),
    responses((status = 200, description = "Kept forever", body = RetentionRes)),
    security(("weave_basic" = [])))]
pub(crate) async fn keep_forever(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name)): Path<(String, String)>,
) -> WeaveResult<Json<RetentionRes>> {
    let project_id = project(&caller, &entity, &name)?;
    services
        .projects
        .set_retention(pb::SetRetentionRequest {
            tenant: caller.tenant(),
            project_id: project_id.clone(),
            retention_seconds: None,
        })
        .await?;
    Ok(Json(render(project_id, None)))
}

/// Deletes every call and feedback record of the project stored so far.
/// Re-sending is safe; records sent afterwards are kept.
#[utoipa::path(delete, path = "/v1/projects/{entity}/{project}", tag = "Projects",
    params(("entity" = String, Path, min_length = 1, max_length = 200), ("project" = String, Path, min_length = 1, max_length = 200)),
    responses((status = 200, description = "Deleted, durably", body = DeletedRes)),
    security(("weave_basic" = [])))]
pub(crate) async fn delete_data(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name)): Path<(String, String)>,
) -> WeaveResult<Json<DeletedRes>> {
    let project_id = project(&caller, &entity, &name)?;
    services
        .projects
        .delete_project_data(pb::DeleteProjectDataRequest {
            tenant: caller.tenant(),
            project_id: project_id.clone(),
        })
        .await?;
    Ok(Json(DeletedRes {
        project_id,
        deleted: true,
    }))
}

#[cfg(test)]
mod tests {
    use crate::testing::{router, Fake};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn put(fake: &Arc<Fake>, body: &str) -> (StatusCode, serde_json::Value) {
        let (app, auth) = router(fake.clone());
        let request = Request::put("/v1/projects/acme/bot/retention")
            .header("authorization", auth)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn projects_are_listed_from_one_grouped_aggregation() {
        use polymeter_proto::v1 as pb;
        let fake = Arc::new(Fake::default());
        let row = |project: &str, calls: u64, first: f64, last: f64| pb::AggregateRow {
            group: vec![pb::GroupValue {
                value: Some(project.into()),
            }],
            row_count: calls,
            values: vec![
                pb::MeasureValue { value: Some(first) },
                pb::MeasureValue { value: Some(last) },
            ],
            ..Default::default()
        };
        fake.calls_answers
            .lock()
            .unwrap()
            .push(pb::AggregateCallsResponse {
                rows: vec![
                    row(
                        "acme/bot",
                        3,
                        1_709_942_400_000_000.0,
                        1_710_028_800_500_000.0,
                    ),
                    row(
                        "acme/eval",
                        1,
                        1_709_942_400_000_000.0,
                        1_709_942_400_000_000.0,
                    ),
                ],
                ..Default::default()
            });
        let (app, auth) = router(fake.clone());
        let request = Request::get("/v1/projects")
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"projects": [
                {"project_id": "acme/bot", "calls": 3,
                 "first_seen": "2024-03-09T00:00:00Z", "last_seen": "2024-03-10T00:00:00.500Z"},
                {"project_id": "acme/eval", "calls": 1,
                 "first_seen": "2024-03-09T00:00:00Z", "last_seen": "2024-03-09T00:00:00Z"},
            ]})
        );
        let asked = fake.calls_asked.lock().unwrap();
        assert_eq!(asked[0].tenant, "local");
        assert_eq!(asked[0].group_by, vec![pb::Dimension::ProjectId as i32]);
    }

    #[tokio::test]
    async fn listing_projects_needs_a_key() {
        let fake = Arc::new(Fake::default());
        let (app, _) = router(fake.clone());
        let response = app
            .oneshot(Request::get("/v1/projects").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(fake.calls_asked.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_period_in_days_becomes_seconds_for_every_owner() {
        let fake = Arc::new(Fake::default());
        let (status, body) = put(&fake, r#"{"retention": "30d"}"#).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["retention"], "30d");
        assert_eq!(body["retention_seconds"], 30 * 86_400);
        let asked = fake.retention_set.lock().unwrap();
        assert_eq!(asked[0].project_id, "acme/bot");
        assert_eq!(asked[0].retention_seconds, Some(30 * 86_400));
    }

    #[tokio::test]
    async fn a_period_that_does_not_parse_is_a_400_naming_the_field() {
        let fake = Arc::new(Fake::default());
        for bad in [
            r#"{"retention": "a month"}"#,
            r#"{"retention": 30}"#,
            r#"{}"#,
        ] {
            let (status, body) = put(&fake, bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
            assert!(
                body["reason"].as_str().unwrap().contains("retention"),
                "{body}"
            );
        }
        assert!(fake.retention_set.lock().unwrap().is_empty());
    }
}
