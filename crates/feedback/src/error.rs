//! The feedback service's errors. Each says its kind of the one vocabulary,
//! which picks the gRPC code and travels with the status to the gateway.

use polymeter_error::{ErrorKind, HasKind};
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// The request names something wrong; the message says which field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The store cannot take writes or answer now; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data is damaged; the service refuses rather than answers wrong.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Internal(String),
}

impl From<polymeter_store::StoreError> for FeedbackError {
    fn from(e: polymeter_store::StoreError) -> Self {
        match e.kind() {
            ErrorKind::DataLoss => FeedbackError::Corrupt(e.to_string()),
            ErrorKind::Unavailable => FeedbackError::Unavailable(e.to_string()),
            _ => FeedbackError::Internal(e.to_string()),
        }
    }
}

impl HasKind for FeedbackError {
    fn kind(&self) -> ErrorKind {
        match self {
            FeedbackError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            FeedbackError::Unavailable(_) => ErrorKind::Unavailable,
            FeedbackError::Corrupt(_) => ErrorKind::DataLoss,
            FeedbackError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<FeedbackError> for Status {
    fn from(err: FeedbackError) -> Status {
        polymeter_error::status(err)
    }
}
