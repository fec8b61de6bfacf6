//! The gRPC face of the ingest service.

use crate::error::IngestError;
use crate::weave;
use polymeter_proto::v1::{
    self as pb, ingest_service_server, stats_service_client::StatsServiceClient,
};
use std::future::Future;
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct IngestServer {
    stats: StatsServiceClient<Channel>,
}

impl IngestServer {
    pub fn new(stats: Channel) -> Self {
        Self {
            stats: StatsServiceClient::new(stats)
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
                .append_calls(pb::AppendCallsRequest { calls })
                .await
                .map_err(|s| IngestError::from_downstream("stats", s))?;
        }
        Ok(Response::new(pb::IngestWeaveCallsResponse { results }))
    }
}

/// Serves the ingest service on `listener` until `shutdown` resolves; writes go
/// to the stats service over `stats`.
pub async fn serve(
    listener: TcpListener,
    stats: Channel,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(IngestServer::new(stats).into_service())
        .serve_with_incoming_shutdown(polymeter_proto::incoming(listener), shutdown)
        .await
}
