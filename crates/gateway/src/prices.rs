//! Polymeter's own price-override API (DESIGN 5), authenticated and enveloped
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
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/projects/{entity}/{project}/prices", get(list))
        .route(
            "/v1/projects/{entity}/{project}/prices/{*model}",
            get(lookup).put(set).delete(delete),
        )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceBody {
    input: f64,
    output: f64,
    cache_read: Option<f64>,
    cache_write: Option<f64>,
}

fn render(price: Option<pb::Price>) -> Value {
    match price {
        None => Value::Null,
        Some(p) => json!({
            "input": p.input,
            "output": p.output,
            "cache_read": p.cache_read.unwrap_or(p.input),
            "cache_write": p.cache_write.unwrap_or(p.input),
        }),
    }
}

fn project(caller: &WeaveCaller, entity: &str, project: &str) -> Result<String, Error> {
    let id = format!("{entity}/{project}");
    caller.check("path", &id)?;
    Ok(id)
}

async fn list(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name)): Path<(String, String)>,
) -> WeaveResult<Json<Value>> {
    let project_id = project(&caller, &entity, &name)?;
    let overrides = services
        .stats
        .list_price_overrides(pb::ListPriceOverridesRequest {
            tenant: caller.tenant(),
            project_id: project_id.clone(),
        })
        .await?;
    let prices: serde_json::Map<String, Value> = overrides
        .into_iter()
        .map(|o| (o.model, render(o.price)))
        .collect();
    Ok(Json(
        json!({ "project_id": project_id, "overrides": prices }),
    ))
}

async fn lookup(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name, model)): Path<(String, String, String)>,
) -> WeaveResult<Json<Value>> {
    let project_id = project(&caller, &entity, &name)?;
    let answer = services
        .stats
        .lookup_price(pb::LookupPriceRequest {
            tenant: caller.tenant(),
            project_id,
            model: model.clone(),
        })
        .await?;
    Ok(Json(
        json!({ "model": model, "source": answer.source, "price": render(answer.price) }),
    ))
}

async fn set(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name, model)): Path<(String, String, String)>,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Json<Value>> {
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
    Ok(Json(
        json!({ "model": model, "price": render(Some(price)) }),
    ))
}

async fn delete(
    State(services): State<Services>,
    caller: WeaveCaller,
    Path((entity, name, model)): Path<(String, String, String)>,
) -> WeaveResult<Json<Value>> {
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
    Ok(Json(json!({ "deleted": model })))
}
