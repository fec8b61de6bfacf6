//! Tenancy and credentials. This crate owns the credentials file (tenants,
//! the Weave entities they own, their keys), its hot-reloaded index, and the
//! verification of each dialect's own authentication: HTTP Basic with a Weave
//! API key, Alibaba's ACS3-HMAC-SHA256 and Baidu's bce-auth-v1 signatures.
//! It decides *who* a request acts for; the gateway decides what each failure
//! looks like in its dialect.

pub mod acs3;
pub mod bce;
mod canonical;
pub mod credentials;
pub mod keyring;
mod nonce;

pub use canonical::{query_pairs, SignedRequest};
pub use credentials::{Credentials, KeyKind, KeyRequest, NewKey};
pub use keyring::{Index, Keyring, Principal, SigningKey, METRICS_ACTION};
pub use nonce::NonceCache;

use base64::Engine;
use polymeter_error::{ErrorKind, Reason};

/// How far a signed request's clock may be from ours, either way.
pub const CLOCK_SKEW_SECONDS: i64 = 15 * 60;

/// Why a request is not allowed, or why the credentials file cannot be used.
/// Each dialect maps these once onto its own error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials at all.
    #[error("{0}")]
    Missing(String),
    /// An `Authorization` header that does not parse, or omits what it must sign.
    #[error("{0}")]
    Malformed(String),
    #[error("the access key is not known")]
    UnknownAccessKey,
    #[error("the key {0} is disabled")]
    DisabledKey(String),
    /// The signature (or the body hash it covers) does not match.
    #[error("{0}")]
    SignatureMismatch(String),
    /// The signed time is outside the allowed window.
    #[error("{0}")]
    Expired(String),
    #[error("the signature nonce {0:?} was already used")]
    NonceReused(String),
    /// Too many nonces in flight to remember; the client should retry later.
    #[error("too many signed requests in the replay window; retry later")]
    NonceCacheFull,
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    #[error("credentials file {path}: {message}")]
    File { path: String, message: String },
    #[error("invalid credentials: {0}")]
    Invalid(String),
    #[error("no tenant named {0:?}; create it with --entity")]
    UnknownTenant(String),
    #[error("no key with id or access key {0:?}")]
    UnknownKey(String),
    /// A project id that is not `entity/project`; the message names the field.
    #[error("{0}")]
    InvalidProject(String),
}

impl polymeter_error::HasKind for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Missing(_)
            | AuthError::Malformed(_)
            | AuthError::UnknownAccessKey
            | AuthError::DisabledKey(_)
            | AuthError::SignatureMismatch(_)
            | AuthError::Expired(_)
            | AuthError::NonceReused(_) => ErrorKind::Unauthenticated,
            AuthError::Forbidden(_) => ErrorKind::PermissionDenied,
            AuthError::NonceCacheFull => ErrorKind::ResourceExhausted,
            AuthError::InvalidProject(_) => ErrorKind::InvalidArgument,
            AuthError::File { .. }
            | AuthError::Invalid(_)
            | AuthError::UnknownTenant(_)
            | AuthError::UnknownKey(_) => ErrorKind::Internal,
        }
    }

    fn reason(&self) -> Option<Reason> {
        Some(match self {
            AuthError::Missing(_) => Reason::CredentialsMissing,
            AuthError::Malformed(_) => Reason::CredentialsMalformed,
            AuthError::UnknownAccessKey => Reason::UnknownKey,
            AuthError::DisabledKey(_) => Reason::DisabledKey,
            AuthError::SignatureMismatch(_) => Reason::SignatureMismatch,
            AuthError::Expired(_) => Reason::RequestExpired,
            AuthError::NonceReused(_) => Reason::NonceReused,
            _ => return None,
        })
    }
}

/// The principal of a Weave request: `Authorization: Basic base64("api:" + key)`.
/// The user name is not checked (W&B clients send `api`); the password is the key.
pub fn verify_basic(index: &Index, authorization: Option<&str>) -> Result<Principal, AuthError> {
    let value = authorization.ok_or_else(|| {
        AuthError::Missing(
            "authentication required: send Authorization: Basic base64(\"api:<key>\")".into(),
        )
    })?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
        .ok_or_else(|| AuthError::Malformed("Authorization must use the Basic scheme".into()))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            AuthError::Malformed("Authorization: Basic credentials are not valid base64".into())
        })?;
    let (_, key) = decoded.split_once(':').ok_or_else(|| {
        AuthError::Malformed("Authorization: Basic credentials must be \"api:<key>\"".into())
    })?;
    index.weave(key)
}

/// Constant-time equality of two signatures or hashes written in hex.
pub(crate) fn same_hex(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len()
        && bool::from(
            a.to_ascii_lowercase()
                .as_bytes()
                .ct_eq(b.to_ascii_lowercase().as_bytes()),
        )
}
