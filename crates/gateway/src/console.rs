//! The web console's routes (`polymeter_console` owns the page and the
//! charts):
//!
//! - `GET /` — redirects to the console
//! - `GET /console/` — the page; `/console/console.js`, `/console/console.css`
//! - `POST /console/chart` — an SVG chart of the numbers in the body
//!   (Weave key, Weave envelope). It reads no stored data: the page fetched
//!   the numbers from the public query APIs and sends them here to be drawn.

use crate::error::Error;
use crate::json::parse;
use crate::weave::{WeaveBody, WeaveCaller, WeaveResult};
use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use polymeter_console::{ChartSpec, ASSETS};

/// The page may load only its own script and style, and talk only to this
/// gateway; charts arrive as SVG markup whose inline styles it needs.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A chart opened on its own runs nothing.
const CHART_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'";

pub fn routes() -> Router<crate::state::AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(|| asset(Path(String::new()))))
        .route("/console/chart", post(chart))
        .route("/console/{file}", get(asset))
        // The page and its charts are text that shrinks several times over
        // (for clients that accept gzip); the query APIs answer as before.
        .layer(tower_http::compression::CompressionLayer::new().gzip(true))
}

/// A 401 to a script's request (`X-Requested-With: XMLHttpRequest`, as the
/// console and many web clients send) carries no `WWW-Authenticate`
/// challenge: with one, browsers stop the page and ask for a password in a
/// dialog of their own instead of letting the page say the key was refused.
pub(crate) async fn no_challenge_for_scripts(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let from_script = request
        .headers()
        .get("x-requested-with")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
    let mut response = next.run(request).await;
    if from_script && response.status() == StatusCode::UNAUTHORIZED {
        response.headers_mut().remove(header::WWW_AUTHENTICATE);
    }
    response
}

async fn asset(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == file) else {
        return crate::weave::WeaveError::from(Error::not_found(format!(
            "no console file {file:?}"
        )))
        .into_response();
    };
    let mut response = (StatusCode::OK, asset.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Compiled into the binary: a new binary may change them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(headers, PAGE_POLICY);
    response
}

fn secure(headers: &mut axum::http::HeaderMap, policy: &'static str) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(policy),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// Draws a time-series chart (SVG) of the numbers sent: one value per bucket
/// and series, with a hover title per point and axes naming the unit and
/// zone. Reads no stored data.
#[utoipa::path(post, path = "/console/chart", tag = "Console", request_body = ChartSpec,
    responses((status = 200, description = "The chart", content_type = "image/svg+xml", body = String)),
    security(("weave_basic" = [])))]
pub(crate) async fn chart(
    _caller: WeaveCaller,
    WeaveBody(body): WeaveBody,
) -> WeaveResult<Response> {
    let spec: ChartSpec = parse(&body)?;
    let svg = tokio::task::spawn_blocking(move || polymeter_console::render(&spec))
        .await
        .map_err(|_| Error::internal("internal error: the chart could not be drawn"))?
        .map_err(|e| Error::invalid(e.0))?;
    let mut response = (StatusCode::OK, svg).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    secure(headers, CHART_POLICY);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use crate::testing::{router, Fake};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn send_to(
        app: &axum::Router,
        request: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = app.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_root_redirects_to_the_page_which_loads_only_its_own_files() {
        let (app, _) = router(Arc::new(Fake::default()));
        let send = |r| send_to(&app, r);
        let (status, headers, _) = send(Request::get("/").body(Body::empty()).unwrap()).await;
        assert!(status.is_redirection());
        assert_eq!(headers["location"], "/console/");
        let (status, headers, page) =
            send(Request::get("/console/").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        assert!(page.contains("console.js"));
        for file in ["console.js", "console.css"] {
            let (status, _, _) = send(
                Request::get(format!("/console/{file}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{file}");
        }
        let (status, _, body) = send(
            Request::get("/console/nope.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("reason"), "{body}");
    }

    #[tokio::test]
    async fn a_chart_needs_a_key_and_a_well_formed_spec() {
        let (app, auth) = router(Arc::new(Fake::default()));
        let send = |r| send_to(&app, r);
        let spec = serde_json::json!({"kind": "line", "title": "Calls", "unit": "calls",
            "zone": "UTC", "bucket_seconds": 60, "buckets": [0, 60000],
            "series": [{"name": "calls", "values": [1, 2]}]});
        let request = |auth: Option<&str>, body: String| {
            let mut r = Request::post("/console/chart");
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            r.body(Body::from(body)).unwrap()
        };
        let (status, headers, _) = send(request(None, spec.to_string())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.contains_key("www-authenticate"));
        let from_script = Request::post("/console/chart")
            .header("x-requested-with", "XMLHttpRequest")
            .body(Body::from(spec.to_string()))
            .unwrap();
        let (status, headers, _) = send(from_script).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            !headers.contains_key("www-authenticate"),
            "no browser dialog"
        );
        let (status, headers, svg) = send(request(Some(&auth), spec.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{svg}");
        assert_eq!(headers["content-type"], "image/svg+xml");
        assert!(
            svg.contains("1970-01-01 00:01 UTC · calls: 2 calls"),
            "{svg}"
        );
        let mut bad = spec.clone();
        bad["series"][0]["values"] = serde_json::json!([1]);
        let (status, _, body) = send(request(Some(&auth), bad.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("series[0].values"), "{body}");
    }
}
