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
use std::time::Duration;
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

    async fn append(
        &self,
        calls: Vec<pb::CallWrite>,
        deadline: Duration,
    ) -> Result<(), IngestError> {
        if calls.is_empty() {
            return Ok(());
        }
        crate::unpriced::note(&calls);
        metrics::counter!("polymeter_ingest_calls_total").increment(calls.len() as u64);
        let mut client = self.stats.clone();
        downstream(
            "stats",
            deadline,
            pb::AppendCallsRequest { calls },
            |r| async move { client.append_calls(r).await },
        )
        .await
        .map(|_| ())
    }

    pub fn into_service(self) -> ingest_service_server::IngestServiceServer<Self> {
        ingest_service_server::IngestServiceServer::new(self)
            .max_decoding_message_size(MESSAGE_LIMIT)
            .max_encoding_message_size(MESSAGE_LIMIT)
    }
}

/// How long ingest may spend on a write: the caller's own deadline (its
/// `grpc-timeout`, which the gateway always sends), at most [`WRITE_DEADLINE`].
fn deadline(metadata: &tonic::metadata::MetadataMap) -> Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(grpc_timeout)
        .map_or(WRITE_DEADLINE, |d| d.min(WRITE_DEADLINE))
}

/// The longest ingest waits for stats or feedback on one write.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// gRPC's `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(text: &str) -> Option<Duration> {
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// [`polymeter_proto::call_within`] towards stats or feedback. A write cut
/// off by the deadline may have been applied; re-sending it is safe (stores
/// are keyed).
async fn downstream<Q, T, F>(
    service: &'static str,
    deadline: Duration,
    request: Q,
    call: impl FnOnce(Request<Q>) -> F,
) -> Result<T, IngestError>
where
    F: Future<Output = Result<Response<T>, Status>>,
{
    match polymeter_proto::call_within(deadline, request, call).await {
        Ok(answer) => Ok(answer),
        Err(polymeter_proto::CallError::Status(status)) => {
            Err(IngestError::from_downstream(service, status))
        }
        Err(polymeter_proto::CallError::Expired) => Err(IngestError::Downstream {
            service,
            error: polymeter_error::Error::new(
                polymeter_error::ErrorKind::DeadlineExceeded,
                format!(
                    "did not answer within {deadline:?}; the write may have been applied, and re-sending it is safe"
                ),
            ),
        }),
    }
}

#[tonic::async_trait]
impl ingest_service_server::IngestService for IngestServer {
    async fn ingest_weave_calls(
        &self,
        request: Request<pb::IngestWeaveCallsRequest>,
    ) -> Result<Response<pb::IngestWeaveCallsResponse>, Status> {
        if request.get_ref().tenant.is_empty() {
            return Err(IngestError::InvalidArgument("tenant must not be empty".into()).into());
        }
        let deadline = deadline(request.metadata());
        let request = request.into_inner();
        metrics::counter!("polymeter_ingest_bytes_total", "route" => "weave")
            .increment(prost::Message::encoded_len(&request) as u64);
        let (calls, results) = weave::normalise(&request.tenant, request.ops)?;
        self.append(calls, deadline).await?;
        Ok(Response::new(pb::IngestWeaveCallsResponse { results }))
    }

    async fn ingest_weave_feedback(
        &self,
        request: Request<pb::IngestWeaveFeedbackRequest>,
    ) -> Result<Response<pb::IngestWeaveFeedbackResponse>, Status> {
        let deadline = deadline(request.metadata());
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
            metrics::counter!("polymeter_ingest_feedback_total").increment(created.len() as u64);
            let mut client = self.feedback.clone();
            let batch = pb::AppendFeedbackRequest {
                feedback: created.clone(),
            };
            downstream("feedback", deadline, batch, |r| async move {
                client.append_feedback(r).await
            })
            .await?;
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
        let deadline = deadline(metadata);
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
        metrics::counter!("polymeter_ingest_bytes_total", "route" => "otlp")
            .increment(prost::Message::encoded_len(request.get_ref()) as u64);
        metrics::counter!("polymeter_ingest_rejected_spans_total")
            .increment(mapped.rejected.max(0) as u64);
        let partial_success = (mapped.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: mapped.rejected,
            error_message: mapped.message(),
        });
        self.append(mapped.writes, deadline).await?;
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

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn grpc_timeouts_in_every_unit_and_the_cap() {
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout("1M"), Some(Duration::from_secs(60)));
        assert_eq!(grpc_timeout("9u"), Some(Duration::from_micros(9)));
        for bad in ["", "5", "S", "123456789S", "5x", "-5S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad}");
        }
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert_eq!(deadline(&metadata), WRITE_DEADLINE);
        metadata.insert("grpc-timeout", "1500m".parse().unwrap());
        assert_eq!(deadline(&metadata), Duration::from_millis(1500));
        metadata.insert("grpc-timeout", "1H".parse().unwrap());
        assert_eq!(deadline(&metadata), WRITE_DEADLINE);
    }
}
