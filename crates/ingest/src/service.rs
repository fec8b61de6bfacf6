//! The gRPC face of the ingest service.

use crate::error::IngestError;
use crate::{feedback, weave};
use polymeter_proto::v1::{
    self as pb, feedback_service_client::FeedbackServiceClient, ingest_service_server,
    stats_service_client::StatsServiceClient,
};
use std::future::Future;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct IngestServer {
    stats: StatsServiceClient<Channel>,
    feedback: FeedbackServiceClient<Channel>,
}

impl IngestServer {
    pub fn new(stats: Channel, feedback: Channel) -> Self {
        Self {
            stats: StatsServiceClient::new(stats)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
            feedback: FeedbackServiceClient::new(feedback)
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20),
        }
    }

    pub fn into_service(self) -> ingest_service_server::IngestServiceServer<Self> {
        ingest_service_server::IngestServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

#[tonic::async_trait]
impl ingest_service_server::IngestService for IngestServer {
    async fn ingest_weave_calls(
        &self,
        request: Request<pb::IngestWeaveCallsRequest>,
    ) -> Result<Response<pb::IngestWeaveCallsResponse>, Status> {
        let request = request.into_inner();
        if request.tenant.is_empty() {
            return Err(IngestError::InvalidArgument("tenant must not be empty".into()).into());
        }
        let (calls, results) = weave::normalise(&request.tenant, request.ops)?;
        if !calls.is_empty() {
            self.stats
                .clone()
                .append_calls(polymeter_telemetry::traced(pb::AppendCallsRequest {
                    calls,
                }))
                .await
                .map_err(|s| IngestError::from_downstream("stats", s))?;
        }
        Ok(Response::new(pb::IngestWeaveCallsResponse { results }))
    }

    async fn ingest_weave_feedback(
        &self,
        request: Request<pb::IngestWeaveFeedbackRequest>,
    ) -> Result<Response<pb::IngestWeaveFeedbackResponse>, Status> {
        let request = request.into_inner();
        if request.tenant.is_empty() {
            return Err(IngestError::InvalidArgument("tenant must not be empty".into()).into());
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        let created = feedback::normalise(&request.tenant, request.feedback, now_ms)?;
        if !created.is_empty() {
            self.feedback
                .clone()
                .append_feedback(polymeter_telemetry::traced(pb::AppendFeedbackRequest {
                    feedback: created.clone(),
                }))
                .await
                .map_err(|s| IngestError::from_downstream("feedback", s))?;
        }
        Ok(Response::new(pb::IngestWeaveFeedbackResponse { created }))
    }
}

/// Serves the ingest service on `listener` until `shutdown` resolves; calls go
/// to the stats service over `stats`, feedback to the feedback service.
pub async fn serve(
    listener: TcpListener,
    stats: Channel,
    feedback: Channel,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    polymeter_proto::serve(
        listener,
        tonic::service::Routes::new(IngestServer::new(stats, feedback).into_service()),
        shutdown,
    )
    .await
}
