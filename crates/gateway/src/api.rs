//! The services as the gateway sees them: one trait per service, taking and
//! returning the internal request and answer types of `polymeter.v1`. The
//! gRPC clients in [`crate::grpc`] implement them for real; the dialects'
//! unit tests implement them with fakes, so a dialect is tested without a
//! network or a store.

use crate::error::Error;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use polymeter_proto::v1 as pb;
use std::sync::Arc;

#[tonic::async_trait]
pub trait StatsApi: Send + Sync + 'static {
    async fn aggregate_calls(
        &self,
        request: pb::AggregateCallsRequest,
    ) -> Result<pb::AggregateCallsResponse, Error>;
    async fn set_price_override(&self, request: pb::SetPriceOverrideRequest) -> Result<(), Error>;
    /// Whether there was an override to delete.
    async fn delete_price_override(
        &self,
        request: pb::DeletePriceOverrideRequest,
    ) -> Result<bool, Error>;
    async fn list_price_overrides(
        &self,
        request: pb::ListPriceOverridesRequest,
    ) -> Result<Vec<pb::PriceOverride>, Error>;
    async fn lookup_price(
        &self,
        request: pb::LookupPriceRequest,
    ) -> Result<pb::LookupPriceResponse, Error>;
}

#[tonic::async_trait]
pub trait FeedbackApi: Send + Sync + 'static {
    async fn aggregate_feedback(
        &self,
        request: pb::AggregateFeedbackRequest,
    ) -> Result<pb::AggregateFeedbackResponse, Error>;
}

/// A project's data across the services that own it (calls in stats,
/// feedback in feedback): how long it is kept, and its deletion.
#[tonic::async_trait]
pub trait ProjectsApi: Send + Sync + 'static {
    /// Sets (or, without a period, removes) the retention in every owner.
    async fn set_retention(&self, request: pb::SetRetentionRequest) -> Result<(), Error>;
    /// The retention in seconds; `None`: kept forever.
    async fn get_retention(&self, request: pb::GetRetentionRequest) -> Result<Option<u64>, Error>;
    /// Deletes the project's data in every owner.
    async fn delete_project_data(&self, request: pb::DeleteProjectDataRequest)
        -> Result<(), Error>;
}

/// The credentials an OTLP/HTTP client sent, passed on for ingest to check
/// (OTLP/gRPC exporters reach ingest directly, so ingest authenticates OTLP).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtlpCredentials {
    pub authorization: Option<String>,
    pub project_id: Option<String>,
}

#[tonic::async_trait]
pub trait IngestApi: Send + Sync + 'static {
    /// One result per op, in order.
    async fn ingest_weave_calls(
        &self,
        request: pb::IngestWeaveCallsRequest,
    ) -> Result<Vec<pb::CallRef>, Error>;
    /// The records created, in order.
    async fn ingest_weave_feedback(
        &self,
        request: pb::IngestWeaveFeedbackRequest,
    ) -> Result<Vec<pb::FeedbackWrite>, Error>;
    async fn export_traces(
        &self,
        request: ExportTraceServiceRequest,
        credentials: OtlpCredentials,
    ) -> Result<ExportTraceServiceResponse, Error>;
}

/// Whether each service behind the gateway is ready.
#[tonic::async_trait]
pub trait HealthApi: Send + Sync + 'static {
    async fn readiness(&self) -> Vec<(&'static str, bool)>;
}

/// The services a router talks to.
#[derive(Clone)]
pub struct Services {
    pub stats: Arc<dyn StatsApi>,
    pub feedback: Arc<dyn FeedbackApi>,
    pub ingest: Arc<dyn IngestApi>,
    pub projects: Arc<dyn ProjectsApi>,
    pub health: Arc<dyn HealthApi>,
}
