//! The gateway's one error type. Service errors arrive as gRPC statuses and
//! are mapped here once; each dialect renders a `GatewayError` in its own
//! envelope.

use axum::http::StatusCode;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// Missing, unknown, disabled or badly signed credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that may not do this (another tenant's project, a
    /// missing permission).
    #[error("{0}")]
    Forbidden(String),
    /// The body is larger than the gateway accepts.
    #[error("{0}")]
    TooLarge(String),
    /// No route answers this method and path.
    #[error("{0}")]
    NotFound(String),
    /// The path exists, but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// A service behind the gateway is down; the client should retry.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A body that could not be read: too large, or cut off.
impl From<axum::extract::rejection::BytesRejection> for GatewayError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        let message = format!("request body: {}", rejection.body_text());
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            GatewayError::TooLarge(message)
        } else {
            GatewayError::BadRequest(message)
        }
    }
}

/// The answer for a known path asked with the wrong method.
pub fn method_not_allowed(method: &axum::http::Method, path: &str, allowed: &str) -> GatewayError {
    GatewayError::MethodNotAllowed(format!("{method} is not allowed on {path}; use {allowed}"))
}

impl From<Status> for GatewayError {
    fn from(status: Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                GatewayError::BadRequest(message)
            }
            Code::Unauthenticated => GatewayError::Unauthorized(message),
            Code::PermissionDenied => GatewayError::Forbidden(message),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted => {
                GatewayError::Unavailable(format!("service unavailable, retry: {message}"))
            }
            _ => GatewayError::Internal(message),
        }
    }
}
