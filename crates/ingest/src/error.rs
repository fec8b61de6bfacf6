//! The ingest service's errors. Each says its kind of the one vocabulary; a
//! downstream service's failure keeps the kind that service chose.

use polymeter_error::{Error, ErrorKind, HasKind};
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The input is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A downstream service refused or failed the write; nothing was stored
    /// unless its kind says the outcome is unknown.
    #[error("{service}: {error}")]
    Downstream { service: &'static str, error: Error },
    /// The caller's credentials were refused.
    #[error(transparent)]
    Auth(#[from] polymeter_auth::AuthError),
}

impl IngestError {
    /// Keeps a downstream status's kind: its refusals stay refusals, its
    /// outages stay retryable.
    pub fn from_downstream(service: &'static str, status: Status) -> Self {
        IngestError::Downstream {
            service,
            error: Error::from_status(&status),
        }
    }
}

impl HasKind for IngestError {
    fn kind(&self) -> ErrorKind {
        match self {
            IngestError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            IngestError::Downstream { error, .. } => error.kind(),
            IngestError::Auth(e) => e.kind(),
        }
    }

    fn reason(&self) -> Option<polymeter_error::Reason> {
        match self {
            IngestError::Downstream { error, .. } => error.reason(),
            IngestError::Auth(e) => e.reason(),
            IngestError::InvalidArgument(_) => None,
        }
    }
}

impl From<IngestError> for Status {
    fn from(err: IngestError) -> Status {
        polymeter_error::status(err)
    }
}
