//! Polymeter's own price-override API, authenticated and enveloped
//! like the Weave routes (`Authorization: Basic`, `{"reason"}` errors):
//!
//! - `GET    /v1/projects/{entity}/{project}/prices` — the project's overrides
//! - `PUT    /v1/projects/{entity}/{project}/prices/{model}` — set one,
//!   `{"input": 2.5e-6, "output": 1e-5, "cache_read": …, "cache_write": …}` (USD per token)
//! - `DELETE /v1/projects/{entity}/{project}/prices/{model}` — remove one
//! - `GET    /v1/projects/{entity}/{project}/prices/{model}` — the price the
//!   project's calls of `model` are costed with, and where it comes from
//!
//! The stats service keeps overrides and prices at query time, so a change
//! applies to past calls too.

use crate::api::Services;
use crate::error::Error;
use crate::json::parse;
use crate::state::AppState;
use crate::weave::{WeaveBody, WeaveCaller, WeaveResult};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use polymeter_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/projects/{entity}/{project}/prices", get(list))
        .route(
            "/v1/projects/{entity}/{project}/prices/{*model}",
            get(lookup).put(set).delete(delete),
        )
}

/// A price override, USD per token; cache prices default to the input price.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceBody {
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
}

/// A price, USD per token.
#[derive(Serialize, ToSchema)]
pub struct PriceRes {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

fn render(price: Option<pb::Price>) -> Option<PriceRes> {
    price.map(|p| PriceRes {
        input: p.input,
        output: p.output,
        cache_read: p.cache_read.unwrap_or(p.input),
        cache_write: p.cache_write.unwrap_or(p.input),
    })
}

/// A project's overrides by model.
#[derive(Serialize, ToSchema)]
pub struct OverridesRes {
    pub project_id: String,
    pub overrides: BTreeMap<String, PriceRes>,
}

/// The price a project's calls of a model are costed with.
#[derive(Serialize, ToSchema)]
pub struct LookupRes {
    pub model: String,
    /// `override`, `table` or `none`.
    pub source: String,
    pub price: Option<PriceRes>,
}

/// The override now in force.
#[derive(Serialize, ToSchema)]
pub struct SetRes {
    pub model: String,
    pub price: Option<PriceRes>,
}

/// The model whose override was removed.
#[derive(Serialize, ToSchema)]
pub struct DeleteRes {
    pub deleted: String,
}

fn project(caller: &WeaveCaller, entity: &str, project: &str) -> Result<String, Error> {
    let id = format!("{entity}/{project}");
    caller.check("path", &id)?;
    Ok(id)
}

/// The project's price overrides.
#[utoipa::path(get, path = "/v1/projects/{entity}/{project}/prices", tag = "Prices",
    params(("entity" = String, Path, min_length = 1, max_length = 200), ("project" = String, Path, min_length = 1, max_length = 200)),
    responses((status = 200, description = "Overrides by model", body = OverridesRes)),
    security(("weave_basic" = [])))]
pub(crate) async fn list(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name)): Path<(String, String)>,
) -> WeaveResult<Json<OverridesRes>> {
    let project_id = project(&caller, &entity, &name)?;
    let overrides = services
        .stats
        .list_price_overrides(pb::ListPriceOverridesRequest {
            tenant: caller.tenant(),
            project_id: project_id.clone(),
        })
        .await?;
    Ok(Json(OverridesRes {
        project_id,
        overrides: overrides
            .into_iter()
            .filter_map(|o| Some((o.model, render(o.price)?)))
            .collect(),
    }))
}

/// The price the project's calls of `model` are costed with, and its source.
#[utoipa::path(get, path = "/v1/projects/{entity}/{project}/prices/{model}", tag = "Prices",
    params(("entity" = String, Path, min_length = 1, max_length = 200), ("project" = String, Path, min_length = 1, max_length = 200), ("model" = String, Path, description = "A model name as calls report it", min_length = 1, max_length = 200)),
    responses((status = 200, description = "The price in force", body = LookupRes)),
    security(("weave_basic" = [])))]
pub(crate) async fn lookup(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name, model)): Path<(String, String, String)>,
) -> WeaveResult<Json<LookupRes>> {
    let project_id = project(&caller, &entity, &name)?;
    let answer = services
        .stats
        .lookup_price(pb::LookupPriceRequest {
            tenant: caller.tenant(),
            project_id,
            model: model.clone(),
        })
        .await?;
    Ok(Json(LookupRes {
        model,
        source: answer.source,
        price: render(answer.price),
    }))
}

/// Sets the project's price for `model`; it applies to past calls too.
#[utoipa::path(put, path = "/v1/projects/{entity}/{project}/prices/{model}", tag = "Prices",
    params(("entity" = String, Path, min_length = 1, max_length = 200), ("project" = String, Path, min_length = 1, max_length = 200), ("model" = String, Path, description = "A model name as calls report it", min_length = 1, max_length = 200)),
    request_body = PriceBody,
    responses((status = 200, description = "Stored durably", body = SetRes)),
    security(("weave_basic" = [])))]
pub(crate) async fn set(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name, model)): Path<(String, String, String)>,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<SetRes>> {
    let project_id = project(&caller, &entity, &name)?;
    let p: PriceBody = parse(&body)?;
    let price = pb::Price {
        input: p.input,
        output: p.output,
        cache_read: p.cache_read,
        cache_write: p.cache_write,
    };
    services
        .stats
        .set_price_override(pb::SetPriceOverrideRequest {
            tenant: caller.tenant(),
            project_id,
            price: Some(pb::PriceOverride {
                model: model.clone(),
                price: Some(price),
            }),
        })
        .await?;
    Ok(Json(SetRes {
        model,
        price: render(Some(price)),
    }))
}

/// Removes the project's override for `model`.
#[utoipa::path(delete, path = "/v1/projects/{entity}/{project}/prices/{model}", tag = "Prices",
    params(("entity" = String, Path, min_length = 1, max_length = 200), ("project" = String, Path, min_length = 1, max_length = 200), ("model" = String, Path, description = "A model name as calls report it", min_length = 1, max_length = 200)),
    responses((status = 200, description = "Removed", body = DeleteRes)),
    security(("weave_basic" = [])))]
pub(crate) async fn delete(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name, model)): Path<(String, String, String)>,
) -> WeaveResult<Json<DeleteRes>> {
    let project_id = project(&caller, &entity, &name)?;
    let deleted = services
        .stats
        .delete_price_override(pb::DeletePriceOverrideRequest {
            tenant: caller.tenant(),
            project_id: project_id.clone(),
            model: model.clone(),
        })
        .await?;
    if !deleted {
        return Err(Error::not_found(format!(
            "project {project_id:?} has no price override for {model:?}"
        ))
        .into());
    }
    Ok(Json(DeleteRes { deleted: model }))
}

#[cfg(test)]
mod tests {
    use crate::testing::{router, Fake};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::sync::Arc;
    use tower::ServiceExt;

    #[tokio::test]
    async fn deleting_an_override_that_is_not_there_is_a_404_in_weaves_envelope() {
        let (app, auth) = router(Arc::new(Fake::default()));
        let request = Request::delete("/v1/projects/acme/bot/prices/openai/gpt-4o")
            .header("authorization", auth)
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert!(body["reason"].as_str().unwrap().contains("openai/gpt-4o"));
    }
}
