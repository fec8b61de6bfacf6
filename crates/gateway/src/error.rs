//! The gateway speaks the one error vocabulary of `polymeter-error`: every
//! failure, from a body that will not parse to a service that is down, is an
//! [`Error`] with a kind. Statuses from the services arrive with their kind
//! intact; each dialect maps kinds to its vendor's codes in one table and
//! renders its own envelope.

pub use polymeter_error::{Error, ErrorKind, Reason};

use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

/// A body that could not be read: too large, or cut off.
pub fn body_error(rejection: BytesRejection) -> Error {
    let message = format!("request body: {}", rejection.body_text());
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::new(ErrorKind::PayloadTooLarge, message)
    } else {
        Error::invalid(message)
    }
}

/// The answer for a known path asked with the wrong method.
pub fn method_not_allowed(method: &axum::http::Method, path: &str, allowed: &str) -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on {path}; use {allowed}"),
    )
}
