//! The W&B Weave dialect: call ingest (`/call/start`, `/call/end`,
//! `/call/upsert_batch`, `/v2/{entity}/{project}/calls/complete`),
//! `POST /calls/stats`, feedback ingest and `POST /feedback/aggregate`. Errors use Weave's envelope, `{"reason": "…"}`.

mod calls;
mod feedback;
mod stats;

use crate::auth::AppState;
use crate::error::GatewayError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/call/start", post(calls::start).fallback(wrong_method))
        .route("/call/end", post(calls::end).fallback(wrong_method))
        .route(
            "/call/upsert_batch",
            post(calls::upsert_batch).fallback(wrong_method),
        )
        .route(
            "/v2/{entity}/{project}/calls/complete",
            post(calls::complete).fallback(wrong_method),
        )
        .route(
            "/calls/stats",
            post(stats::calls_stats).fallback(wrong_method),
        )
        .route(
            "/feedback/create",
            post(feedback::create).fallback(wrong_method),
        )
        .route(
            "/feedback/batch/create",
            post(feedback::batch_create).fallback(wrong_method),
        )
        .route(
            "/feedback/aggregate",
            post(feedback::aggregate).fallback(wrong_method),
        )
}

/// Every Weave route is a POST; another method gets 405 in Weave's envelope.
async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> WeaveError {
    crate::error::method_not_allowed(&method, uri.path(), "POST").into()
}

/// A [`GatewayError`] in Weave's envelope.
#[derive(Debug)]
pub struct WeaveError(GatewayError);

impl<E: Into<GatewayError>> From<E> for WeaveError {
    fn from(err: E) -> Self {
        WeaveError(err.into())
    }
}

impl IntoResponse for WeaveError {
    fn into_response(self) -> Response {
        let status: StatusCode = self.0.status();
        let mut response = (status, Json(json!({ "reason": self.0.to_string() }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"polymeter\""),
            );
        }
        response
    }
}

pub type WeaveResult<T> = Result<T, WeaveError>;

/// A request body whose rejections (too large, unreadable) come back in
/// Weave's envelope rather than as axum's plain text.
pub struct WeaveBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for WeaveBody {
    type Rejection = WeaveError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, WeaveError> {
        axum::body::Bytes::from_request(request, state)
            .await
            .map(WeaveBody)
            .map_err(|rejection| WeaveError(GatewayError::from(rejection)))
    }
}
