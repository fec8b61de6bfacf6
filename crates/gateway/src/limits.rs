//! What one gateway takes on at a time, so that a flood is refused early
//! rather than queued without end:
//!
//! * at most `max_inflight` requests in flight; past that a request is shed
//!   at once with 503 and `Retry-After` in its dialect's envelope (the
//!   operational routes — health, metrics, the contract — are never shed);
//! * at most `tenant_inflight` of them for any one tenant, so one tenant's
//!   flood cannot take every slot from the others ([`Admission`], taken where
//!   a dialect has established the tenant);
//! * at most `tenant_inflight_bytes` of request bodies buffered for any one
//!   tenant and `max_inflight_bytes` for all of them ([`BodyBudget`]): bodies
//!   are counted as they arrive, after the caller is known, so neither a
//!   stranger nor one tenant's large batches can fill the gateway's memory;
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
    /// Bytes of request bodies buffered at once, for all tenants.
    pub max_inflight_bytes: usize,
    /// Bytes of request bodies one tenant may have buffered at once.
    pub tenant_inflight_bytes: usize,
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
            max_inflight_bytes: 1024 << 20,
            tenant_inflight_bytes: 256 << 20,
            body_timeout: Duration::from_secs(30),
            header_timeout: Duration::from_secs(10),
        }
    }
}

/// Seconds a shed client is asked to wait.
const RETRY_AFTER_SECONDS: &str = "1";

/// In-flight counts and body bytes, global and per tenant.
pub struct Gate {
    all: Arc<Semaphore>,
    all_bytes: Arc<Semaphore>,
    limits: Limits,
    tenants: Mutex<HashMap<String, TenantShare>>,
}

/// One tenant's request slots and body bytes.
#[derive(Clone)]
struct TenantShare {
    requests: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
}

/// A tenant's slot, held for the rest of its request, with the budget its
/// body is read against.
pub struct Admission {
    _slot: OwnedSemaphorePermit,
    budget: Arc<BodyBudget>,
}

/// The bytes a request may buffer: taken from its tenant's share and from
/// the gateway's as they arrive, and given back when the request is over
/// (when the last holder of the budget — the handler's [`Admission`] —
/// drops it).
pub struct BodyBudget {
    tenant: Arc<Semaphore>,
    all: Arc<Semaphore>,
    tenant_limit: usize,
    all_limit: usize,
    held: Mutex<Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>>,
}

impl Gate {
    pub fn new(limits: &Limits) -> Self {
        let limits = Limits {
            max_inflight: limits.max_inflight.max(1),
            tenant_inflight: limits.tenant_inflight.max(1),
            max_inflight_bytes: limits.max_inflight_bytes.clamp(1, Semaphore::MAX_PERMITS),
            tenant_inflight_bytes: limits
                .tenant_inflight_bytes
                .clamp(1, Semaphore::MAX_PERMITS),
            ..*limits
        };
        Gate {
            all: Arc::new(Semaphore::new(limits.max_inflight)),
            all_bytes: Arc::new(Semaphore::new(limits.max_inflight_bytes)),
            limits,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for `tenant`, or "unavailable, retry" when it has all of its own.
    pub fn admit(&self, tenant: &str) -> Result<Admission, Error> {
        let share = self
            .tenants
            .lock()
            .expect("tenant gate")
            .entry(tenant.to_owned())
            .or_insert_with(|| TenantShare {
                requests: Arc::new(Semaphore::new(self.limits.tenant_inflight)),
                bytes: Arc::new(Semaphore::new(self.limits.tenant_inflight_bytes)),
            })
            .clone();
        let slot = share.requests.try_acquire_owned().map_err(|_| {
            crate::exposition::shed("tenant");
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "this tenant already has {} requests in flight; retry shortly",
                    self.limits.tenant_inflight
                ),
            )
        })?;
        Ok(Admission {
            _slot: slot,
            budget: Arc::new(BodyBudget {
                tenant: share.bytes,
                all: self.all_bytes.clone(),
                tenant_limit: self.limits.tenant_inflight_bytes,
                all_limit: self.limits.max_inflight_bytes,
                held: Mutex::new(None),
            }),
        })
    }
}

impl Admission {
    /// The budget this request's body is read against.
    pub fn budget(&self) -> Arc<BodyBudget> {
        self.budget.clone()
    }

    /// Reads the request body against this admission's budget.
    pub async fn read_body(&self, body: axum::body::Body) -> Result<axum::body::Bytes, Error> {
        crate::read_body(body, Some(&self.budget)).await
    }
}

impl BodyBudget {
    /// Takes `bytes` more from the tenant's share and the gateway's, or says
    /// which is spent (503: the bytes come back as other requests finish).
    pub fn take(&self, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Ok(());
        }
        let spent = |limit: &'static str, what: &str, cap: usize| {
            crate::exposition::shed(limit);
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{what} already has {} MiB of request bodies in flight; retry shortly",
                    cap >> 20
                ),
            )
        };
        let n = u32::try_from(bytes)
            .map_err(|_| spent("tenant_bytes", "this tenant", self.tenant_limit))?;
        let tenant = self
            .tenant
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| spent("tenant_bytes", "this tenant", self.tenant_limit))?;
        let all = self
            .all
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| spent("gateway_bytes", "the gateway", self.all_limit))?;
        match &mut *self.held.lock().expect("body budget") {
            Some((t, a)) => {
                t.merge(tenant);
                a.merge(all);
            }
            none => *none = Some((tenant, all)),
        }
        Ok(())
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
