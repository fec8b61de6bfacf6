//! gRPC clients of the services behind the gateway. Channels connect lazily and
//! reconnect by themselves, so the gateway starts before its peers and rides out
//! their restarts (answering "unavailable, retry" meanwhile).

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use polymeter_proto::v1::{
    feedback_service_client::FeedbackServiceClient, ingest_service_client::IngestServiceClient,
    stats_service_client::StatsServiceClient,
};
use tonic::transport::{Channel, Endpoint};

const MESSAGE_LIMIT: usize = 64 << 20;

#[derive(Clone)]
pub struct Backends {
    pub ingest: IngestServiceClient<Channel>,
    pub stats: StatsServiceClient<Channel>,
    pub feedback: FeedbackServiceClient<Channel>,
    /// Ingest's OTLP `TraceService`, which `/otel/v1/traces` forwards to.
    pub traces: TraceServiceClient<Channel>,
    /// Raw channels, for health checks.
    pub(crate) channels: Vec<(&'static str, Channel)>,
}

/// A lazily connecting channel to `url` (`http://host:port`).
pub fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(std::time::Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect_lazy())
}

impl Backends {
    pub fn new(ingest: Channel, stats: Channel, feedback: Channel) -> Self {
        Self {
            ingest: IngestServiceClient::new(ingest.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            stats: StatsServiceClient::new(stats.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            feedback: FeedbackServiceClient::new(feedback.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            traces: TraceServiceClient::new(ingest.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            channels: vec![("ingest", ingest), ("stats", stats), ("feedback", feedback)],
        }
    }
}
