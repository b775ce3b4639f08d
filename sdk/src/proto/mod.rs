//! Wire types of the blob protocol: JSON bodies, ranges, encodings, batch
//! frames and ref names. No I/O here; both the server and the client use
//! these, and the fuzz targets attack the parsers directly.

mod batch;
mod encoding;
mod range;

pub use batch::{encode_frame, BatchDecoder, BatchFrame, FRAME_HEADER_LEN};
pub use encoding::Encoding;
pub use range::{ByteRange, RangeParseError};

use serde::{Deserialize, Serialize};

use crate::Digest;

/// Most digests one `blobs:missing` call may carry.
pub const MAX_MISSING_DIGESTS: usize = 10_000;

/// Largest action-cache value.
pub const MAX_AC_VALUE: usize = 4 * 1024 * 1024;

/// Largest ref value.
pub const MAX_REF_VALUE: usize = 1024 * 1024;

/// Body of `POST /v1/blobs:missing`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MissingRequest {
    /// BLAKE3 digests to check.
    pub digests: Vec<Digest>,
}

/// Answer of `POST /v1/blobs:missing`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MissingResponse {
    /// The digests the server does not have, in request order.
    pub missing: Vec<Digest>,
}

/// One blob's outcome in a `POST /v1/blobs:batch` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchResult {
    /// The blob's digest as sent.
    pub digest: Digest,
    /// HTTP-style status: 201 stored, 200 already present, 400 mismatch...
    pub status: u16,
    /// Error code when the blob was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Answer of `POST /v1/blobs:batch`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BatchResponse {
    /// One entry per frame, in request order.
    pub results: Vec<BatchResult>,
}

/// Answer of `GET /v1/refs?prefix=`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefList {
    /// Ref names, sorted.
    pub refs: Vec<String>,
}

/// JSON error body: `{"error": code, "message": text}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Stable machine-readable code.
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

/// Checks a ref name: 1–512 bytes of `[A-Za-z0-9._/@:+-]`, `/`-separated
/// segments that are neither empty, `.` nor `..`.
pub fn validate_ref_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 512 {
        return Err("ref names are 1 to 512 bytes long".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._/@:+-".contains(*c)))
    {
        return Err(format!(
            "ref name {name:?} contains {c:?}; allowed: A-Z a-z 0-9 . _ / @ : + -"
        ));
    }
    if name.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return Err(format!("ref name {name:?} has an empty, '.' or '..' segment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        assert!(validate_ref_name("snapshots/home/2026-11-30T00:00:00Z").is_ok());
        for bad in ["", "../x", "a//b", "a/./b", "a b", "a\0b", "/abs", "a/"] {
            assert!(validate_ref_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_request_rejects_bad_digests() {
        assert!(serde_json::from_str::<MissingRequest>(r#"{"digests":["abc"]}"#).is_err());
        assert!(serde_json::from_str::<MissingRequest>(r#"[1,2]"#).is_err());
    }
}
