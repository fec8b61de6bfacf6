//! Fake services for the dialects' unit tests: each records the internal
//! requests it is sent and answers with what the test gave it, so a dialect
//! is tested as a pure translation without a network or a store.

use crate::api::{
    FeedbackApi, HealthApi, IngestApi, OtlpCredentials, ProjectsApi, Services, StatsApi,
};
use crate::auth::Auth;
use crate::error::Error;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use polymeter_auth::{Credentials, Keyring, NewKey};
use polymeter_proto::v1 as pb;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// One fake for every service: answers come from queues the test fills
/// (or an error the test sets); requests are recorded.
#[derive(Default)]
pub struct Fake {
    pub calls_answers: Mutex<Vec<pb::AggregateCallsResponse>>,
    pub calls_asked: Mutex<Vec<pb::AggregateCallsRequest>>,
    pub feedback_answer: Mutex<Option<pb::AggregateFeedbackResponse>>,
    pub feedback_asked: Mutex<Vec<pb::AggregateFeedbackRequest>>,
    pub ingested: Mutex<Vec<pb::IngestWeaveCallsRequest>>,
    pub retention_set: Mutex<Vec<pb::SetRetentionRequest>>,
    pub fail: Mutex<Option<Error>>,
    /// Makes the stats service's fake panic, standing in for a bug.
    pub panic: std::sync::atomic::AtomicBool,
}

impl Fake {
    fn failure(&self) -> Result<(), Error> {
        match self.fail.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[tonic::async_trait]
impl StatsApi for Fake {
    async fn aggregate_calls(
        &self,
        request: pb::AggregateCallsRequest,
    ) -> Result<pb::AggregateCallsResponse, Error> {
        if self.panic.load(std::sync::atomic::Ordering::Relaxed) {
            panic!("a bug in a service client");
        }
        self.failure()?;
        self.calls_asked.lock().unwrap().push(request);
        let mut answers = self.calls_answers.lock().unwrap();
        Ok(if answers.is_empty() {
            pb::AggregateCallsResponse::default()
        } else {
            answers.remove(0)
        })
    }
    async fn set_price_override(&self, _: pb::SetPriceOverrideRequest) -> Result<(), Error> {
        self.failure()
    }
    async fn delete_price_override(
        &self,
        _: pb::DeletePriceOverrideRequest,
    ) -> Result<bool, Error> {
        self.failure().map(|_| false)
    }
    async fn list_price_overrides(
        &self,
        _: pb::ListPriceOverridesRequest,
    ) -> Result<Vec<pb::PriceOverride>, Error> {
        self.failure().map(|_| vec![])
    }
    async fn lookup_price(
        &self,
        _: pb::LookupPriceRequest,
    ) -> Result<pb::LookupPriceResponse, Error> {
        self.failure().map(|_| pb::LookupPriceResponse::default())
    }
}

#[tonic::async_trait]
impl FeedbackApi for Fake {
    async fn aggregate_feedback(
        &self,
        request: pb::AggregateFeedbackRequest,
    ) -> Result<pb::AggregateFeedbackResponse, Error> {
        self.failure()?;
        self.feedback_asked.lock().unwrap().push(request);
        Ok(self
            .feedback_answer
            .lock()
            .unwrap()
            .clone()
            .unwrap_or_default())
    }
}

#[tonic::async_trait]
impl IngestApi for Fake {
    async fn ingest_weave_calls(
        &self,
        request: pb::IngestWeaveCallsRequest,
    ) -> Result<Vec<pb::CallRef>, Error> {
        self.failure()?;
        let refs = request
            .ops
            .iter()
            .map(|_| pb::CallRef {
                id: "id".into(),
                trace_id: "trace".into(),
            })
            .collect();
        self.ingested.lock().unwrap().push(request);
        Ok(refs)
    }
    async fn ingest_weave_feedback(
        &self,
        _: pb::IngestWeaveFeedbackRequest,
    ) -> Result<Vec<pb::FeedbackWrite>, Error> {
        self.failure().map(|_| vec![])
    }
    async fn export_traces(
        &self,
        _: ExportTraceServiceRequest,
        _: OtlpCredentials,
    ) -> Result<ExportTraceServiceResponse, Error> {
        self.failure()
            .map(|_| ExportTraceServiceResponse::default())
    }
}

#[tonic::async_trait]
impl ProjectsApi for Fake {
    async fn set_retention(&self, request: pb::SetRetentionRequest) -> Result<(), Error> {
        self.failure()?;
        self.retention_set.lock().unwrap().push(request);
        Ok(())
    }
    async fn get_retention(&self, _: pb::GetRetentionRequest) -> Result<Option<u64>, Error> {
        self.failure()?;
        Ok(self
            .retention_set
            .lock()
            .unwrap()
            .last()
            .and_then(|r| r.retention_seconds))
    }
    async fn delete_project_data(&self, _: pb::DeleteProjectDataRequest) -> Result<(), Error> {
        self.failure()
    }
}

#[tonic::async_trait]
impl HealthApi for Fake {
    async fn readiness(&self) -> Vec<(&'static str, bool)> {
        vec![("stats", self.fail.lock().unwrap().is_none())]
    }
}

/// A router over `fake` with a development tenant owning every entity, and
/// that tenant's Weave key as a ready `Authorization` header value.
pub fn router(fake: Arc<Fake>) -> (axum::Router, String) {
    let (credentials, keys) = Credentials::development("local");
    let key = keys
        .iter()
        .find_map(|k| match k {
            NewKey::Weave { key, .. } => Some(key.clone()),
            _ => None,
        })
        .expect("a development tenant has a Weave key");
    let services = Services {
        stats: fake.clone(),
        feedback: fake.clone(),
        ingest: fake.clone(),
        projects: fake.clone(),
        health: fake,
    };
    let auth = Arc::new(Auth::new(Keyring::fixed(&credentials)));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api:{key}"))
    );
    (
        crate::router(services, auth, crate::Limits::default()),
        basic,
    )
}

/// POSTs `body` as JSON with `authorization`; the status and the JSON answer.
pub async fn post(
    router: &axum::Router,
    path: &str,
    authorization: &str,
    body: Value,
) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("authorization", authorization)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The development tenant's principal, as a verified key would give it.
pub fn principal() -> polymeter_auth::Principal {
    let (credentials, keys) = Credentials::development("local");
    let index = polymeter_auth::Index::build(&credentials);
    keys.iter()
        .find_map(|k| match k {
            NewKey::Weave { key, .. } => index.weave(key).ok(),
            _ => None,
        })
        .expect("a development tenant has a Weave key")
}
