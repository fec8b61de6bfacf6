//! What one gateway takes on at a time, so that a flood is refused early
//! rather than queued without end:
//!
//! * at most `max_inflight` requests in flight; past that a request is shed
//!   at once with 503 and `Retry-After` in its dialect's envelope (the
//!   operational routes — health, metrics, the contract — are never shed);
//! * at most `tenant_inflight` of them for any one tenant, so one tenant's
//!   flood cannot take every slot from the others ([`Admission`], taken where
//!   a dialect has established the tenant);
//! * a request body that does not arrive within `body_timeout` is cut off,
//!   headers must arrive within `header_timeout` and an idle connection is
//!   closed after it (a slow client cannot hold a connection and its buffers
//!   forever);
//! * every call to a service has a deadline ([`crate::grpc::Deadlines`]).

use crate::error::Error;
use crate::grpc::Deadlines;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use polymeter_error::ErrorKind;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The gateway's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub deadlines: Deadlines,
    pub max_inflight: usize,
    pub tenant_inflight: usize,
    pub body_timeout: Duration,
    /// Request headers must arrive within this long, and an idle keep-alive
    /// connection is closed after it.
    pub header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadlines: Deadlines::default(),
            max_inflight: 512,
            tenant_inflight: 128,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Seconds a shed client is asked to wait.
const RETRY_AFTER_SECONDS: &str = "1";

/// In-flight counts, global and per tenant.
pub struct Gate {
    all: Arc<Semaphore>,
    per_tenant: usize,
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// A tenant's slot, held for the rest of its request.
pub struct Admission(#[allow(dead_code)] OwnedSemaphorePermit);

impl Gate {
    pub fn new(limits: &Limits) -> Self {
        Gate {
            all: Arc::new(Semaphore::new(limits.max_inflight.max(1))),
            per_tenant: limits.tenant_inflight.max(1),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `tenant`, or "unavailable, retry" when it has all of its own.
    pub fn admit(&self, tenant: &str) -> Result<Admission, Error> {
        let semaphore = self
            .tenants
            .lock()
            .expect("tenant gate")
            .entry(tenant.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone();
        semaphore.try_acquire_owned().map(Admission).map_err(|_| {
            crate::exposition::shed("tenant");
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "this tenant already has {} requests in flight; retry shortly",
                    self.per_tenant
                ),
            )
        })
    }
}

/// Routes that answer operators and load balancers, never shed.
fn operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics" | "/openapi.json")
}

/// Sheds the request when every slot is taken.
pub async fn shed(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    if operational(request.uri().path()) {
        return next.run(request).await;
    }
    let Ok(_slot) = gate.all.clone().try_acquire_owned() else {
        crate::exposition::shed("gateway");
        let error = Error::new(
            ErrorKind::Unavailable,
            "the gateway is at its limit of requests in flight; retry shortly",
        );
        return in_envelope(&request, error);
    };
    next.run(request).await
}

/// `error` in the envelope of the dialect that owns the request's route.
pub fn in_envelope(request: &Request, error: Error) -> Response {
    let path = request.uri().path();
    if path == crate::alibaba::PATH {
        crate::alibaba::AlibabaError::new(error).into_response()
    } else if path == crate::qianfan::PATH {
        crate::qianfan::QianfanError::new(error).into_response()
    } else if path == crate::otel::PATH {
        crate::otel::error_response(request.headers(), error)
    } else {
        crate::weave::WeaveError::new(error).into_response()
    }
}

/// Every 503 tells the client when to come back.
pub async fn retry_after(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static(RETRY_AFTER_SECONDS));
    }
    response
}
