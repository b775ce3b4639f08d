//! REAPI digests (`hash` in lowercase hex and `size_bytes`) and digest functions.
//!
//! SHA-256 is REAPI's default (`digest_function` unset); BLAKE3 is the server's native hash, so
//! a BLAKE3 blob written over gRPC is the one `/v1/blobs/{blake3}` serves.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use re::digest_function::Value as DigestFunction;
use reprovm_sdk::digest::{Digest, HashKind};
use tonic::Status;

use super::status::invalid;

/// A digest and the size the client gave with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sized {
    /// The hash (and its function).
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
}

impl Sized {
    /// Whether this names the empty blob, which the server has whether or not it was uploaded.
    pub fn is_empty_blob(&self) -> bool {
        self.size == 0 && self.digest == self.digest.kind().digest(b"")
    }

    /// The REAPI form.
    pub fn to_proto(self) -> re::Digest {
        re::Digest {
            hash: self.digest.to_hex(),
            size_bytes: self.size as i64,
        }
    }

    /// `hash/size`, as in resource names and messages.
    pub fn display(&self) -> String {
        format!("{}/{}", self.digest, self.size)
    }
}

/// The hash a request's `digest_function` names (unset: SHA-256).
pub fn kind(digest_function: i32) -> Result<HashKind, Status> {
    match DigestFunction::try_from(digest_function) {
        Ok(DigestFunction::Unknown | DigestFunction::Sha256) => Ok(HashKind::Sha256),
        Ok(DigestFunction::Blake3) => Ok(HashKind::Blake3),
        Ok(other) => Err(invalid(
            "unsupported_digest_function",
            format!(
                "digest function {} is not supported; this server has SHA256 and BLAKE3",
                other.as_str_name()
            ),
        )),
        Err(_) => Err(invalid(
            "unsupported_digest_function",
            format!("unknown digest function {digest_function}"),
        )),
    }
}

/// Parses a hash in lowercase hex and a size.
pub fn parse_parts(kind: HashKind, hash: &str, size: i64) -> Result<Sized, Status> {
    let digest = Digest::parse_kind(kind, hash).map_err(|e| invalid("invalid_digest", e.to_string()))?;
    if size < 0 {
        return Err(invalid(
            "invalid_digest",
            format!("digest {hash} has a negative size_bytes {size}"),
        ));
    }
    Ok(Sized {
        digest,
        size: size as u64,
    })
}

/// Parses a REAPI digest.
pub fn parse(kind: HashKind, d: &re::Digest) -> Result<Sized, Status> {
    parse_parts(kind, &d.hash, d.size_bytes)
}

/// Parses a digest that a request must carry.
pub fn required(kind: HashKind, d: Option<&re::Digest>, what: &str) -> Result<Sized, Status> {
    let d = d.ok_or_else(|| invalid("invalid_digest", format!("the request has no {what}")))?;
    parse(kind, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_functions() {
        assert_eq!(kind(0).unwrap(), HashKind::Sha256);
        assert_eq!(kind(DigestFunction::Blake3 as i32).unwrap(), HashKind::Blake3);
        assert_eq!(
            kind(DigestFunction::Md5 as i32).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let empty = Digest::of_sha256(b"");
        let s = parse_parts(HashKind::Sha256, &empty.to_hex(), 0).unwrap();
        assert!(s.is_empty_blob());
        assert!(parse_parts(HashKind::Sha256, &empty.to_hex(), -1).is_err());
        assert!(parse_parts(HashKind::Sha256, &empty.to_hex().to_uppercase(), 0).is_err());
        assert!(parse_parts(HashKind::Sha256, "abc", 0).is_err());
    }
}
