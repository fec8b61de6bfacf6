//! The internal protocol every Polymeter process speaks: `polymeter.v1`, generated
//! from `proto/polymeter/v1/polymeter.proto`. Nothing but generated code lives
//! here, besides [`incoming`], so every service depends on one definition of
//! the wire and serves it the same way.

#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("polymeter.v1");
}

/// Accepted connections of a gRPC server, with Nagle's algorithm off: tonic
/// only sets `TCP_NODELAY` on listeners it binds itself, and small unary
/// answers otherwise wait out the peer's delayed ACK (~40 ms each).
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}
