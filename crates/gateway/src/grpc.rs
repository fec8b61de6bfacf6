//! The service traits of [`crate::api`] implemented by gRPC clients. Channels
//! connect lazily and reconnect by themselves, so the gateway starts before
//! its peers and rides out their restarts (answering "unavailable, retry"
//! meanwhile). Every call carries the caller's trace context, and every
//! failure comes back as an [`Error`] whose kind the service chose.

use crate::api::{FeedbackApi, HealthApi, IngestApi, OtlpCredentials, Services, StatsApi};
use crate::error::Error;
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use polymeter_proto::v1::{
    self as pb, feedback_service_client::FeedbackServiceClient,
    ingest_service_client::IngestServiceClient, stats_service_client::StatsServiceClient,
};
use polymeter_proto::MESSAGE_LIMIT;
use polymeter_telemetry::traced;
use std::sync::Arc;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// A lazily connecting channel to `url` (`http://host:port`).
pub fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect_lazy())
}

/// The services behind `ingest`, `stats` and `feedback` channels.
pub fn services(ingest: Channel, stats: Channel, feedback: Channel) -> Services {
    Services {
        stats: Arc::new(Stats(
            StatsServiceClient::new(stats.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
        )),
        feedback: Arc::new(Feedback(
            FeedbackServiceClient::new(feedback.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
        )),
        ingest: Arc::new(Ingest {
            ingest: IngestServiceClient::new(ingest.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            traces: TraceServiceClient::new(ingest.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
        }),
        health: Arc::new(Health(vec![
            ("ingest", ingest),
            ("stats", stats),
            ("feedback", feedback),
        ])),
    }
}

struct Stats(StatsServiceClient<Channel>);

#[tonic::async_trait]
impl StatsApi for Stats {
    async fn aggregate_calls(
        &self,
        request: pb::AggregateCallsRequest,
    ) -> Result<pb::AggregateCallsResponse, Error> {
        Ok(self
            .0
            .clone()
            .aggregate_calls(traced(request))
            .await?
            .into_inner())
    }

    async fn set_price_override(&self, request: pb::SetPriceOverrideRequest) -> Result<(), Error> {
        self.0.clone().set_price_override(traced(request)).await?;
        Ok(())
    }

    async fn delete_price_override(
        &self,
        request: pb::DeletePriceOverrideRequest,
    ) -> Result<bool, Error> {
        Ok(self
            .0
            .clone()
            .delete_price_override(traced(request))
            .await?
            .into_inner()
            .deleted)
    }

    async fn list_price_overrides(
        &self,
        request: pb::ListPriceOverridesRequest,
    ) -> Result<Vec<pb::PriceOverride>, Error> {
        Ok(self
            .0
            .clone()
            .list_price_overrides(traced(request))
            .await?
            .into_inner()
            .prices)
    }

    async fn lookup_price(
        &self,
        request: pb::LookupPriceRequest,
    ) -> Result<pb::LookupPriceResponse, Error> {
        Ok(self
            .0
            .clone()
            .lookup_price(traced(request))
            .await?
            .into_inner())
    }
}

struct Feedback(FeedbackServiceClient<Channel>);

#[tonic::async_trait]
impl FeedbackApi for Feedback {
    async fn aggregate_feedback(
        &self,
        request: pb::AggregateFeedbackRequest,
    ) -> Result<pb::AggregateFeedbackResponse, Error> {
        Ok(self
            .0
            .clone()
            .aggregate_feedback(traced(request))
            .await?
            .into_inner())
    }
}

struct Ingest {
    ingest: IngestServiceClient<Channel>,
    /// Ingest's OTLP `TraceService`, which `/otel/v1/traces` forwards to.
    traces: TraceServiceClient<Channel>,
}

#[tonic::async_trait]
impl IngestApi for Ingest {
    async fn ingest_weave_calls(
        &self,
        request: pb::IngestWeaveCallsRequest,
    ) -> Result<Vec<pb::CallRef>, Error> {
        Ok(self
            .ingest
            .clone()
            .ingest_weave_calls(traced(request))
            .await?
            .into_inner()
            .results)
    }

    async fn ingest_weave_feedback(
        &self,
        request: pb::IngestWeaveFeedbackRequest,
    ) -> Result<Vec<pb::FeedbackWrite>, Error> {
        Ok(self
            .ingest
            .clone()
            .ingest_weave_feedback(traced(request))
            .await?
            .into_inner()
            .created)
    }

    async fn export_traces(
        &self,
        request: ExportTraceServiceRequest,
        credentials: OtlpCredentials,
    ) -> Result<ExportTraceServiceResponse, Error> {
        let mut request = traced(request);
        for (name, value) in [
            ("authorization", credentials.authorization),
            ("project_id", credentials.project_id),
        ] {
            if let Some(value) = value.and_then(|v| v.parse().ok()) {
                request.metadata_mut().insert(name, value);
            }
        }
        Ok(self.traces.clone().export(request).await?.into_inner())
    }
}

struct Health(Vec<(&'static str, Channel)>);

#[tonic::async_trait]
impl HealthApi for Health {
    async fn readiness(&self) -> Vec<(&'static str, bool)> {
        let mut out = Vec::new();
        for (name, channel) in &self.0 {
            let status = HealthClient::new(channel.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            let serving =
                matches!(&status, Ok(r) if r.get_ref().status() == ServingStatus::Serving);
            out.push((*name, serving));
        }
        out
    }
}
