//! The stats service's errors, mapped once to gRPC status codes.

use crate::store::StoreError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The request names something wrong; the message says which field.
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The price overrides file cannot be read or written.
    #[error("{0}")]
    Internal(String),
}

impl StatsError {
    pub fn invalid(message: impl Into<String>) -> Self {
        StatsError::InvalidArgument(message.into())
    }
}

impl From<StatsError> for Status {
    fn from(err: StatsError) -> Status {
        match err {
            StatsError::InvalidArgument(m) => Status::invalid_argument(m),
            StatsError::Store(e @ StoreError::Unavailable(_)) => Status::unavailable(e.to_string()),
            StatsError::Store(e) => Status::internal(e.to_string()),
            StatsError::Internal(m) => Status::internal(m),
        }
    }
}
