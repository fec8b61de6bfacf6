//! The ingest service's errors, mapped once to gRPC status codes.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The input is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A downstream service could not take the write; nothing was stored.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl IngestError {
    /// Keeps a downstream status's meaning: its refusals stay refusals, its
    /// outages stay retryable.
    pub fn from_downstream(service: &str, status: Status) -> Self {
        match status.code() {
            Code::InvalidArgument => IngestError::InvalidArgument(status.message().to_owned()),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted => {
                IngestError::Unavailable(format!("{service} is unavailable: {}", status.message()))
            }
            _ => IngestError::Internal(format!("{service}: {}", status.message())),
        }
    }
}

impl From<IngestError> for Status {
    fn from(err: IngestError) -> Status {
        match err {
            IngestError::InvalidArgument(m) => Status::invalid_argument(m),
            IngestError::Unavailable(m) => Status::unavailable(m),
            IngestError::Internal(m) => Status::internal(m),
        }
    }
}
