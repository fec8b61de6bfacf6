//! The gateway speaks the one error vocabulary of `polymeter-error`: every
//! failure, from a body that will not parse to a service that is down, is an
//! [`Error`] with a kind. Statuses from the services arrive with their kind
//! intact; each dialect maps kinds to its vendor's codes in one table and
//! renders its own envelope.

pub use polymeter_error::truncate;
pub use polymeter_error::{Error, ErrorKind, Reason};

use axum::response::{IntoResponse, Response};
use std::marker::PhantomData;

/// How one dialect writes an [`Error`] on its wire: its status (from its one
/// table of kinds), body and headers.
pub trait Envelope {
    fn render(error: &Error) -> Response;
}

/// An [`Error`] on its way out, in dialect `D`'s envelope; any error of the
/// vocabulary converts into it, so handlers use `?` throughout.
pub struct Enveloped<D>(pub Error, PhantomData<D>);

impl<D> Enveloped<D> {
    pub fn new(error: Error) -> Self {
        Self(error, PhantomData)
    }
}

impl<D> std::fmt::Debug for Enveloped<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<D, E: Into<Error>> From<E> for Enveloped<D> {
    fn from(err: E) -> Self {
        Self::new(err.into())
    }
}

/// The longest error message a client is sent, in bytes.
pub const MAX_MESSAGE: usize = 1024;

impl<D: Envelope> IntoResponse for Enveloped<D> {
    fn into_response(self) -> Response {
        if matches!(
            self.0.kind(),
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied
        ) {
            crate::exposition::auth_refused(
                self.0
                    .reason()
                    .map_or(self.0.kind().as_str(), |r| r.as_str()),
            );
        }
        D::render(&self.0.bounded(MAX_MESSAGE))
    }
}

/// The answer for a known path asked with the wrong method.
pub fn method_not_allowed(method: &axum::http::Method, path: &str, allowed: &str) -> Error {
    Error::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on {path}; use {allowed}"),
    )
}
