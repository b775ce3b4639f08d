//! The one error type every [`Cas`](crate::Cas) implementation returns.
//!
//! Each variant is a case a caller handles differently; [`CasError::code`] is
//! the stable machine-readable name used in the JSON error bodies of the HTTP
//! protocol, and [`CasError::status`] the HTTP status that goes with it.

use crate::Digest;

/// Errors from a content-addressed store, local or remote.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CasError {
    /// The blob, action result or ref does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, e.g. `blob 1f3a…`.
        what: String,
    },
    /// The uploaded bytes hash to something else than the name they were sent under.
    #[error("digest mismatch: expected {expected}, uploaded bytes hash to {actual}")]
    DigestMismatch {
        /// The digest in the request.
        expected: Digest,
        /// The digest of the bytes received.
        actual: Digest,
    },
    /// The body was shorter or longer than announced.
    #[error("size mismatch: announced {expected} bytes, received {actual}")]
    SizeMismatch {
        /// Announced size.
        expected: u64,
        /// Received size (at least).
        actual: u64,
    },
    /// The blob is larger than the configured limit.
    #[error("blob of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the rejected blob (or bytes received so far).
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The store has no room left.
    #[error("insufficient storage: {0}")]
    InsufficientStorage(String),
    /// A `Range` that does not overlap the blob.
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// Size of the blob.
        size: u64,
    },
    /// A compare-and-swap on a ref lost.
    #[error("precondition failed for ref {name:?}")]
    PreconditionFailed {
        /// The ref name.
        name: String,
    },
    /// The request itself is wrong (bad name, bad encoding, bad frame...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The caller lacks the credentials or the role for this.
    #[error("{message}")]
    Unauthorized {
        /// Whether credentials were missing (401) rather than insufficient (403).
        missing: bool,
        /// Human-readable text.
        message: String,
    },
    /// The store could not be reached (connection refused, timed out...).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A remote server answered with an error this type has no variant for.
    #[error("server answered {status} {code}: {message}")]
    Remote {
        /// HTTP status.
        status: u16,
        /// The `error` field of the JSON body.
        code: String,
        /// The `message` field of the JSON body.
        message: String,
    },
    /// Stored data failed verification.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// Local I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An error of the storage engine or backend.
    #[error("backend error: {0}")]
    Backend(String),
}

impl CasError {
    /// Shorthand for [`CasError::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// Stable machine-readable code, the `error` field of JSON error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::DigestMismatch { .. } => "digest_mismatch",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::TooLarge { .. } => "too_large",
            Self::InsufficientStorage(_) => "insufficient_storage",
            Self::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            Self::PreconditionFailed { .. } => "precondition_failed",
            Self::InvalidInput(_) => "invalid_input",
            Self::Unauthorized { missing: true, .. } => "unauthorized",
            Self::Unauthorized { missing: false, .. } => "forbidden",
            Self::Unavailable(_) => "unavailable",
            Self::Remote { .. } => "remote_error",
            Self::Corrupt(_) => "corrupt",
            Self::Io(e) if is_no_space(e) => "insufficient_storage",
            Self::Io(_) => "io_error",
            Self::Backend(_) => "backend_error",
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound { .. } => 404,
            Self::DigestMismatch { .. } | Self::SizeMismatch { .. } | Self::InvalidInput(_) => 400,
            Self::TooLarge { .. } => 413,
            Self::InsufficientStorage(_) => 507,
            Self::RangeNotSatisfiable { .. } => 416,
            Self::PreconditionFailed { .. } => 412,
            Self::Unauthorized { missing: true, .. } => 401,
            Self::Unauthorized { missing: false, .. } => 403,
            Self::Unavailable(_) => 503,
            Self::Remote { status, .. } => *status,
            Self::Io(e) if is_no_space(e) => 507,
            Self::Corrupt(_) | Self::Io(_) | Self::Backend(_) => 500,
        }
    }

    /// True when retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
            || matches!(self, Self::Remote { status, .. } if *status >= 500 && *status != 507)
    }
}

/// True for "no space left on device" (ENOSPC) and quota errors.
pub fn is_no_space(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28) | Some(122))
}

/// Result alias for store operations.
pub type Result<T, E = CasError> = std::result::Result<T, E>;
