//! The gRPC face of the ingest service.

use crate::error::IngestError;
use crate::{feedback, otlp, weave};
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_server::{TraceService, TraceServiceServer},
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use polymeter_auth::Keyring;
use polymeter_proto::v1::{
    self as pb, feedback_service_client::FeedbackServiceClient, ingest_service_server,
    stats_service_client::StatsServiceClient,
};
use polymeter_proto::MESSAGE_LIMIT;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct IngestServer {
    stats: StatsServiceClient<Channel>,
    feedback: FeedbackServiceClient<Channel>,
    /// OTLP clients reach ingest directly, so it checks their Weave keys itself.
    keyring: Arc<Keyring>,
}

impl IngestServer {
    pub fn new(stats: Channel, feedback: Channel, keyring: Arc<Keyring>) -> Self {
        Self {
            keyring,
            stats: StatsServiceClient::new(stats)
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            feedback: FeedbackServiceClient::new(feedback)
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
        }
    }

    /// OTLP/gRPC `TraceService`, accepting gzip as OTLP exporters send it.
    pub fn trace_service(self) -> TraceServiceServer<Self> {
        TraceServiceServer::new(self)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            .max_decoding_message_size(MESSAGE_LIMIT)
    }

    async fn append(&self, calls: Vec<pb::CallWrite>) -> Result<(), IngestError> {
        if calls.is_empty() {
            return Ok(());
        }
        crate::unpriced::note(&calls);
        self.stats
            .clone()
            .append_calls(polymeter_telemetry::traced(pb::AppendCallsRequest {
                calls,
            }))
            .await
            .map(|_| ())
            .map_err(|s| IngestError::from_downstream("stats", s))
    }

    pub fn into_service(self) -> ingest_service_server::IngestServiceServer<Self> {
        ingest_service_server::IngestServiceServer::new(self)
            .max_decoding_message_size(MESSAGE_LIMIT)
            .max_encoding_message_size(MESSAGE_LIMIT)
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
        self.append(calls).await?;
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

/// OTLP/gRPC export: authenticated like the Weave routes (`authorization:
/// Basic …` metadata with an API key), project from the `project_id` metadata
/// or each resource's attributes. Spans that cannot be mapped are counted in
/// `partial_success`; the others are stored before the answer.
#[tonic::async_trait]
impl TraceService for IngestServer {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let metadata = request.metadata();
        let text = |name: &str| {
            metadata
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let principal =
            polymeter_auth::verify_basic(&self.keyring.current(), text("authorization").as_deref())
                .map_err(IngestError::from)?;
        let header_project = text("project_id").filter(|p| !p.is_empty());
        if let Some(project) = &header_project {
            principal
                .authorize("project_id", project)
                .map_err(IngestError::from)?;
        }
        let mapped = otlp::map(
            &principal.tenant,
            request.get_ref(),
            header_project.as_deref(),
            |p| principal.may_access(p),
        );
        let partial_success = (mapped.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: mapped.rejected,
            error_message: mapped.message(),
        });
        self.append(mapped.writes).await?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success,
        }))
    }
}

/// Serves the ingest service and OTLP's `TraceService` on `listener` until
/// `shutdown` resolves; calls go to the stats service over `stats`, feedback
/// to the feedback service.
pub async fn serve(
    listener: TcpListener,
    stats: Channel,
    feedback: Channel,
    keyring: Arc<Keyring>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let server = IngestServer::new(stats, feedback, keyring);
    polymeter_proto::serve(
        listener,
        tonic::service::Routes::new(server.clone().into_service())
            .add_service(server.trace_service()),
        shutdown,
    )
    .await
}
