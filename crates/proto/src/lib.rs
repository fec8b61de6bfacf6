//! The internal protocol every Polymeter process speaks: `polymeter.v1`, generated
//! from `proto/polymeter/v1/polymeter.proto`. Nothing but generated code lives
//! here, besides [`serve`], so every service depends on one definition of the
//! wire and serves it the same way.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("polymeter.v1");
}

/// The largest message a Polymeter gRPC peer sends or accepts, and the largest
/// request body (decompressed) the gateway reads: batches of calls can be large.
pub const MESSAGE_LIMIT: usize = 64 << 20;

/// Accepted connections of a gRPC server, with Nagle's algorithm off: tonic
/// only sets `TCP_NODELAY` on listeners it binds itself, and small unary
/// answers otherwise wait out the peer's delayed ACK (~40 ms each).
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Serves `routes` on `listener` until `shutdown` resolves, as every Polymeter
/// gRPC service is served: with the standard gRPC health service, a span per
/// call that joins the caller's trace, every call counted and timed
/// (`polymeter_grpc_requests_total`), and Nagle's algorithm off.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: tonic::service::Routes,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    tonic::transport::Server::builder()
        .layer(polymeter_telemetry::metrics::GrpcMetricsLayer)
        .trace_fn(polymeter_telemetry::grpc_span)
        .add_routes(routes.add_service(health))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}

/// Why a call made with [`call_within`] has no answer.
#[derive(Debug)]
pub enum CallError {
    /// The deadline passed (enforced here, or by tonic from the
    /// `grpc-timeout` it sent): the peer may still have acted on the call.
    Expired,
    /// The peer answered with an error.
    Status(tonic::Status),
}

/// Calls a peer as every Polymeter client does: the caller's trace context
/// and `limit` travel with the request (`grpc-timeout`), and the answer is
/// awaited at most that long — a peer that stalls never answers, whatever
/// the header says.
pub async fn call_within<Q, T, F>(
    limit: std::time::Duration,
    request: Q,
    call: impl FnOnce(tonic::Request<Q>) -> F,
) -> Result<T, CallError>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut request = polymeter_telemetry::traced(request);
    request.set_timeout(limit);
    match tokio::time::timeout(limit, call(request)).await {
        Ok(Ok(answer)) => Ok(answer.into_inner()),
        // tonic's own enforcement of the `grpc-timeout` it sent.
        Ok(Err(status)) if status.code() == tonic::Code::Cancelled => Err(CallError::Expired),
        Ok(Err(status)) => Err(CallError::Status(status)),
        Err(_) => Err(CallError::Expired),
    }
}
