//! The W&B Weave dialect: call ingest (`/call/start`, `/call/end`,
//! `/call/upsert_batch`, `/v2/{entity}/{project}/calls/complete`),
//! `POST /calls/stats`, feedback ingest and `POST /feedback/aggregate`.
//! Errors use Weave's envelope, `{"reason": "…"}`, with the kind's HTTP status.

mod caller;
pub(crate) mod calls;
pub(crate) mod feedback;
pub(crate) mod stats;

pub use caller::WeaveCaller;

use crate::error::{Envelope, Enveloped, Error, ErrorKind};
use crate::state::AppState;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

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

/// Weave's one table: a kind's HTTP status is Weave's status (Weave's server
/// answers plain HTTP statuses with a `reason`).
pub fn status(kind: ErrorKind) -> StatusCode {
    kind.http_status()
}

/// Weave's error body.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct WeaveErrorBody {
    /// What is wrong, naming the field at fault.
    pub reason: String,
}

/// Weave's envelope: the kind's status and `{"reason"}`; 401s say how to
/// authenticate.
pub struct Weave;

/// An [`Error`] in Weave's envelope.
pub type WeaveError = Enveloped<Weave>;

impl Envelope for Weave {
    fn render(error: &Error) -> Response {
        let kind = error.kind();
        let body = WeaveErrorBody {
            reason: error.message().to_owned(),
        };
        let mut response = (status(kind), Json(body)).into_response();
        if kind == ErrorKind::Unauthenticated {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"polymeter\""),
            );
        }
        response
    }
}

pub type WeaveResult<T> = Result<T, WeaveError>;

/// A request body whose rejections (too large, unreadable, over the
/// tenant's byte budget) come back in Weave's envelope rather than as axum's
/// plain text. Read after [`WeaveCaller`], whose budget it counts against.
pub struct WeaveBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for WeaveBody {
    type Rejection = WeaveError;

    async fn from_request(request: axum::extract::Request, _: &S) -> Result<Self, WeaveError> {
        let (parts, body) = request.into_parts();
        let budget = parts
            .extensions
            .get::<std::sync::Arc<crate::limits::BodyBudget>>();
        Ok(WeaveBody(
            crate::read_body(body, budget.map(|b| &**b)).await?,
        ))
    }
}
