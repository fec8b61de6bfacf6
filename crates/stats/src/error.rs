//! The stats service's errors. Each says its kind of the one vocabulary,
//! which picks the gRPC code and travels with the status to the gateway.

use crate::store::StoreError;
use polymeter_error::{ErrorKind, HasKind};
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The request names something wrong; the message says which field of
    /// `polymeter.v1` (never a dialect's field: the gateway names those).
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The price overrides file cannot be read or written, or a worker failed.
    #[error("{0}")]
    Internal(String),
}

impl StatsError {
    pub fn invalid(message: impl Into<String>) -> Self {
        StatsError::InvalidArgument(message.into())
    }
}

impl HasKind for StatsError {
    fn kind(&self) -> ErrorKind {
        match self {
            StatsError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            StatsError::Store(e) => e.kind(),
            StatsError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<StatsError> for Status {
    fn from(err: StatsError) -> Status {
        polymeter_error::status(err)
    }
}
