//! The ingest service owns nothing durable: it validates and normalises what
//! clients send (Weave call starts/ends and their usage summaries) into
//! [`CallWrite`](polymeter_proto::v1::CallWrite)s, and acknowledges only after
//! the owning service (stats) has made them durable.

pub mod error;
pub mod feedback;
pub mod otlp;
pub mod service;
mod unpriced;
pub mod vendor;
pub mod weave;

pub use error::IngestError;
pub use service::{serve, IngestServer};
