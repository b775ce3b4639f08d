//! Store errors as gRPC statuses, and the HTTP status each gRPC code is counted as.
//!
//! Every status made from a store error carries its stable error code (the `error` field of the
//! HTTP API's JSON errors) in the `reprovm-error` metadata, so that the access log, the audit
//! log and clients see the same code on both faces.

use reprovm_sdk::error::CasError;
use tonic::{Code, Status};

/// The metadata key that carries the error code.
pub const ERROR_KEY: &str = "reprovm-error";

/// A status with a machine-readable error code beside the message.
pub fn with_code(code: Code, error: &'static str, message: impl Into<String>) -> Status {
    let mut s = Status::new(code, message);
    s.metadata_mut()
        .insert(ERROR_KEY, tonic::metadata::MetadataValue::from_static(error));
    s
}

/// `INVALID_ARGUMENT` with an error code.
pub fn invalid(error: &'static str, message: impl Into<String>) -> Status {
    with_code(Code::InvalidArgument, error, message)
}

/// The status a store error is answered with.
pub fn from_cas(e: CasError) -> Status {
    let code = match &e {
        CasError::NotFound { .. } => Code::NotFound,
        CasError::DigestMismatch { .. } | CasError::SizeMismatch { .. } | CasError::InvalidInput(_) => {
            Code::InvalidArgument
        }
        // Retrying does not help: the limit is the server's.
        CasError::TooLarge { .. } => Code::InvalidArgument,
        CasError::InsufficientStorage(_) => Code::ResourceExhausted,
        CasError::RangeNotSatisfiable { .. } => Code::OutOfRange,
        CasError::PreconditionFailed { .. } => Code::FailedPrecondition,
        CasError::Unauthorized { missing: true, .. } => Code::Unauthenticated,
        CasError::Unauthorized { missing: false, .. } => Code::PermissionDenied,
        CasError::Unavailable(_) => Code::Unavailable,
        CasError::Remote { status, .. } => from_http(*status),
        CasError::Io(io) if reprovm_sdk::error::is_no_space(io) => Code::ResourceExhausted,
        CasError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Code::DeadlineExceeded,
        CasError::Corrupt(_) | CasError::Io(_) | CasError::Backend(_) => Code::Internal,
        _ => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "store error");
    }
    if let CasError::DigestMismatch { expected, actual } = &e {
        tracing::warn!(target: "security", %expected, %actual, "gRPC upload refused: digest mismatch");
    }
    with_code(code, e.code(), e.to_string())
}

fn from_http(status: u16) -> Code {
    match status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        409 | 412 => Code::FailedPrecondition,
        413 => Code::InvalidArgument,
        416 => Code::OutOfRange,
        429 | 507 => Code::ResourceExhausted,
        501 => Code::Unimplemented,
        502..=504 => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// The HTTP status a gRPC code is counted as in `reprovm_http_requests_total` and the logs, so
/// that the same dashboards and alerts (4xx, 5xx rates) cover both faces. A call the client
/// cancelled is counted as 499, as nginx does.
pub fn http_equivalent(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 499,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_code() {
        let s = from_cas(CasError::not_found("blob x"));
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.metadata().get(ERROR_KEY).unwrap(), "not_found");
        let s = from_cas(CasError::InsufficientStorage("full".into()));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(http_equivalent(Code::ResourceExhausted), 429);
        assert_eq!(
            from_cas(CasError::RangeNotSatisfiable { size: 3 }).code(),
            Code::OutOfRange
        );
    }
}
