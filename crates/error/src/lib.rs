//! One error vocabulary for every Polymeter process.
//!
//! A failure is described by an [`ErrorKind`] — a small closed set — plus a
//! message for people. Every crate's error type says its kind ([`HasKind`]);
//! the kind maps once to a gRPC code ([`ErrorKind::grpc_code`]) and once to an
//! HTTP status ([`ErrorKind::http_status`]), and each REST dialect maps kinds
//! to its vendor's codes in one table of its own.
//!
//! Across a gRPC hop the kind travels intact in the `Status` metadata
//! (`polymeter-error-kind`, and `polymeter-error-reason` when there is one), so
//! the receiving side never guesses it from a code or a message. A status
//! without that metadata — a transport failure, a foreign peer — is read from
//! its code.
//!
//! A [`Reason`] refines a kind where a vendor's wire distinguishes cases the
//! kind does not (Alibaba answers an expired timestamp and a bad signature
//! with different codes, both "unauthenticated" to us).

use http::StatusCode;
use std::fmt;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

const KIND_KEY: &str = "polymeter-error-kind";
const REASON_KEY: &str = "polymeter-error-reason";

/// What went wrong, in the terms every process and dialect shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed; the message names the field at fault.
    InvalidArgument,
    /// Missing, unknown, disabled or badly signed credentials.
    Unauthenticated,
    /// Valid credentials that may not do this.
    PermissionDenied,
    /// The thing asked for does not exist (a route, an override).
    NotFound,
    /// The route exists, but not with this HTTP method.
    MethodNotAllowed,
    /// The request body is larger than accepted.
    PayloadTooLarge,
    /// The request body's content type is not one the route reads.
    UnsupportedMediaType,
    /// A peer or the store cannot answer now; retrying is safe.
    Unavailable,
    /// The request's deadline passed before it was answered.
    DeadlineExceeded,
    /// A bounded resource is full (in-flight requests, the nonce cache); retry later.
    ResourceExhausted,
    /// Stored data is damaged; the service refuses rather than answers wrong.
    DataLoss,
    /// A bug or an unexpected failure.
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::PayloadTooLarge,
        ErrorKind::UnsupportedMediaType,
        ErrorKind::Unavailable,
        ErrorKind::DeadlineExceeded,
        ErrorKind::ResourceExhausted,
        ErrorKind::DataLoss,
        ErrorKind::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::DataLoss => "data_loss",
            ErrorKind::Internal => "internal",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::MethodNotAllowed => Code::Unimplemented,
            ErrorKind::PayloadTooLarge => Code::OutOfRange,
            ErrorKind::UnsupportedMediaType => Code::InvalidArgument,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorKind::ResourceExhausted => Code::ResourceExhausted,
            ErrorKind::DataLoss => Code::DataLoss,
            ErrorKind::Internal => Code::Internal,
        }
    }

    /// The HTTP status of this kind. A full resource answers 503 (with
    /// `Retry-After` where the dialect allows), as a shed request should: the
    /// client did nothing wrong and may retry.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Unavailable | ErrorKind::ResourceExhausted => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorKind::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::DataLoss | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The kind of a status that carries none: a transport failure or a peer
    /// that is not Polymeter.
    pub fn from_grpc_code(code: Code) -> Self {
        match code {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                ErrorKind::InvalidArgument
            }
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::NotFound => ErrorKind::NotFound,
            Code::Unavailable | Code::Cancelled | Code::Aborted => ErrorKind::Unavailable,
            Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            Code::ResourceExhausted => ErrorKind::ResourceExhausted,
            Code::DataLoss => ErrorKind::DataLoss,
            _ => ErrorKind::Internal,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refinement of a kind that some vendor's wire tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No credentials were sent.
    CredentialsMissing,
    /// An `Authorization` header that does not parse or omits what it must sign.
    CredentialsMalformed,
    /// The key or access key is not known.
    UnknownKey,
    /// The key exists but is disabled.
    DisabledKey,
    /// The signature, or the body hash it covers, does not match.
    SignatureMismatch,
    /// The signed time is outside the allowed window.
    RequestExpired,
    /// The signature nonce was used before.
    NonceReused,
    /// The body is not parseable at all.
    MalformedBody,
    /// The body parses but does not have the request's shape (a field of the
    /// wrong type, an unknown field).
    BodyShape,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::CredentialsMissing,
        Reason::CredentialsMalformed,
        Reason::UnknownKey,
        Reason::DisabledKey,
        Reason::SignatureMismatch,
        Reason::RequestExpired,
        Reason::NonceReused,
        Reason::MalformedBody,
        Reason::BodyShape,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::CredentialsMissing => "credentials_missing",
            Reason::CredentialsMalformed => "credentials_malformed",
            Reason::UnknownKey => "unknown_key",
            Reason::DisabledKey => "disabled_key",
            Reason::SignatureMismatch => "signature_mismatch",
            Reason::RequestExpired => "request_expired",
            Reason::NonceReused => "nonce_reused",
            Reason::MalformedBody => "malformed_body",
            Reason::BodyShape => "body_shape",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Implemented by every crate's error type: what kind of failure it is.
pub trait HasKind {
    fn kind(&self) -> ErrorKind;
    fn reason(&self) -> Option<Reason> {
        None
    }
}

/// A failure on its way between processes or out to a client: a kind, an
/// optional reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    reason: Option<Reason>,
    message: String,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            reason: None,
            message: message.into(),
        }
    }

    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn reason(&self) -> Option<Reason> {
        self.reason
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error with its message cut to `max` bytes (see [`truncate`]):
    /// what goes back to a client never quotes a huge value whole.
    pub fn bounded(mut self, max: usize) -> Self {
        if self.message.len() > max {
            self.message = truncate(&self.message, max);
        }
        self
    }

    /// The gRPC status that carries this error, kind and reason included.
    /// The message travels in a header (`grpc-message`), so it is cut to
    /// [`MAX_STATUS_MESSAGE`] bytes: a message that quotes a huge value from
    /// a request must not become a header too large for HTTP/2.
    pub fn to_status(&self) -> Status {
        let mut metadata = MetadataMap::new();
        metadata.insert(KIND_KEY, MetadataValue::from_static(self.kind.as_str()));
        if let Some(reason) = self.reason {
            metadata.insert(REASON_KEY, MetadataValue::from_static(reason.as_str()));
        }
        Status::with_metadata(
            self.kind.grpc_code(),
            truncate(&self.message, MAX_STATUS_MESSAGE),
            metadata,
        )
    }

    /// The error a status carries. A status without Polymeter's metadata is
    /// read from its code; an unavailable peer's message says to retry.
    pub fn from_status(status: &Status) -> Self {
        let text = |key: &str| {
            status
                .metadata()
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match text(KIND_KEY).as_deref().and_then(ErrorKind::parse) {
            Some(kind) => Self {
                kind,
                reason: text(REASON_KEY).as_deref().and_then(Reason::parse),
                message: status.message().to_owned(),
            },
            None => {
                let kind = ErrorKind::from_grpc_code(status.code());
                let message = match kind {
                    ErrorKind::Unavailable => {
                        format!("service unavailable, retry: {}", status.message())
                    }
                    ErrorKind::DeadlineExceeded => {
                        format!("deadline exceeded, retry: {}", status.message())
                    }
                    _ => status.message().to_owned(),
                };
                Self::new(kind, message)
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Any crate's error becomes an [`Error`] by its kind, reason and message.
impl<E: HasKind + fmt::Display> From<E> for Error {
    fn from(err: E) -> Self {
        Self {
            kind: err.kind(),
            reason: err.reason(),
            message: err.to_string(),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Status {
        err.to_status()
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::from_status(&status)
    }
}

/// A crate error's gRPC status, its kind carried along.
pub fn status<E: HasKind + fmt::Display>(err: E) -> Status {
    Error::from(err).to_status()
}

/// The longest message a gRPC status carries, in bytes.
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_huge_message_is_cut_before_it_becomes_a_header() {
        let long = "é".repeat(20_000);
        let status = Error::invalid(format!("model: {long}")).to_status();
        assert!(
            status.message().len() <= MAX_STATUS_MESSAGE,
            "{}",
            status.message().len()
        );
        assert!(status.message().starts_with("model: é") && status.message().ends_with('…'));
        assert_eq!(truncate("short", 10), "short");
    }
    use super::*;

    #[test]
    fn every_kind_crosses_a_grpc_hop_intact() {
        for kind in ErrorKind::ALL {
            for reason in [None, Some(Reason::NonceReused)] {
                let mut sent = Error::new(kind, "what went wrong");
                if let Some(r) = reason {
                    sent = sent.with_reason(r);
                }
                let got = Error::from_status(&sent.to_status());
                assert_eq!(got, sent, "{kind}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
        }
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
    }

    #[test]
    fn a_status_without_a_kind_is_read_from_its_code() {
        let refused = Error::from_status(&Status::unavailable("connection refused"));
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        assert!(refused.message().contains("retry"), "{refused}");
        let late = Error::from_status(&Status::deadline_exceeded("timeout"));
        assert_eq!(late.kind(), ErrorKind::DeadlineExceeded);
        assert_eq!(late.kind().http_status(), StatusCode::GATEWAY_TIMEOUT);
        let odd = Error::from_status(&Status::failed_precondition("x"));
        assert_eq!(odd.kind(), ErrorKind::InvalidArgument);
    }

    #[test]
    fn a_full_resource_is_a_503() {
        assert_eq!(
            ErrorKind::ResourceExhausted.http_status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
