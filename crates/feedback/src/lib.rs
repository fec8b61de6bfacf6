//! The feedback service will own feedback records (scorer ratings and tags) and
//! answer their aggregation. In this release it runs as its own process with a
//! gRPC health check, so deployments and the gateway's readiness already
//! account for it; feedback ingest and `/feedback/aggregate` arrive next.

use std::future::Future;
use tokio::net::TcpListener;

/// Serves the feedback service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(polymeter_proto::incoming(listener), shutdown)
        .await
}
