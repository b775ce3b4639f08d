//! ByteStream resource names.
//!
//! - read: `{instance}/blobs/{function/}{hash}/{size}` and
//!   `{instance}/compressed-blobs/{compressor}/{function/}{hash}/{size}`;
//! - write: `{instance}/uploads/{uuid}/blobs/{function/}{hash}/{size}{/metadata}` and
//!   `{instance}/uploads/{uuid}/compressed-blobs/{compressor}/{function/}{hash}/{size}{/metadata}`.
//!
//! The instance name may be empty (no leading slash) or span segments; none of its segments is
//! one of REAPI's keywords, so the first keyword ends it. `function` is present only for digest
//! functions a hash length does not tell apart (here: `blake3`); without it the hash is SHA-256.

use reprovm_sdk::digest::HashKind;
use tonic::Status;

use super::digest::{parse_parts, Sized};
use super::status::invalid;

/// How the bytes of a resource travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compressor {
    /// As they are.
    Identity,
    /// zstd frames (`compressed-blobs/zstd/...`).
    Zstd,
}

/// A blob a resource name names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobResource {
    /// The instance name (the server keeps one store for all).
    pub instance: String,
    /// The blob.
    pub blob: Sized,
    /// Its encoding on the wire.
    pub compressor: Compressor,
}

/// An upload a write resource name names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadResource {
    /// The client's id of this upload.
    pub uuid: String,
    /// What is uploaded.
    pub target: BlobResource,
}

const KEYWORDS: [&str; 7] = [
    "blobs",
    "uploads",
    "actions",
    "actionResults",
    "operations",
    "capabilities",
    "compressed-blobs",
];

fn bad(name: &str, why: &str) -> Status {
    let shown: String = name.chars().take(200).collect();
    invalid("invalid_resource_name", format!("resource name {shown:?}: {why}"))
}

/// Parses what follows `blobs/` or `compressed-blobs/`: `[compressor/][function/]hash/size`, and
/// returns the rest (upload metadata).
fn blob_part<'a>(
    name: &str,
    keyword: &str,
    mut rest: &'a [&'a str],
) -> Result<(Sized, Compressor, &'a [&'a str]), Status> {
    let compressor = if keyword == "compressed-blobs" {
        let (c, tail) = rest.split_first().ok_or_else(|| bad(name, "no compressor"))?;
        rest = tail;
        match *c {
            "zstd" => Compressor::Zstd,
            "identity" => return Err(bad(name, "\"identity\" is not a compressor; use blobs/")),
            other => {
                return Err(bad(
                    name,
                    &format!("compressor {other:?} is not supported (supported: zstd)"),
                ))
            }
        }
    } else {
        Compressor::Identity
    };
    let kind = match rest.first() {
        Some(&"blake3") => {
            rest = &rest[1..];
            HashKind::Blake3
        }
        Some(&"sha256") => {
            rest = &rest[1..];
            HashKind::Sha256
        }
        // `{function}/{hash}/...` with a function this server does not have.
        Some(f) if f.len() != 64 && rest.get(1).is_some_and(|h| h.len() == 64) => {
            return Err(bad(
                name,
                &format!("digest function {f:?} is not supported (supported: sha256, blake3)"),
            ))
        }
        _ => HashKind::Sha256,
    };
    let [hash, size, tail @ ..] = rest else {
        return Err(bad(name, "expected {hash}/{size} after the blob keyword"));
    };
    let size: i64 = size
        .parse()
        .map_err(|_| bad(name, &format!("size {size:?} is not a number")))?;
    let blob = parse_parts(kind, hash, size).map_err(|s| bad(name, s.message()))?;
    Ok((blob, compressor, tail))
}

fn instance_of(segments: &[&str]) -> String {
    segments.join("/")
}

/// Parses a `Read` resource name.
pub fn parse_read(name: &str) -> Result<BlobResource, Status> {
    let segments: Vec<&str> = name.split('/').collect();
    let at = segments
        .iter()
        .position(|s| KEYWORDS.contains(s))
        .ok_or_else(|| bad(name, "expected {instance}/blobs/{hash}/{size}"))?;
    let keyword = segments[at];
    if keyword != "blobs" && keyword != "compressed-blobs" {
        return Err(bad(
            name,
            &format!("{keyword:?} cannot be read; expected blobs/ or compressed-blobs/"),
        ));
    }
    let (blob, compressor, tail) = blob_part(name, keyword, &segments[at + 1..])?;
    if !tail.is_empty() {
        return Err(bad(name, "unexpected segments after the size"));
    }
    Ok(BlobResource {
        instance: instance_of(&segments[..at]),
        blob,
        compressor,
    })
}

/// Parses a `Write` (or `QueryWriteStatus`) resource name.
pub fn parse_write(name: &str) -> Result<UploadResource, Status> {
    let segments: Vec<&str> = name.split('/').collect();
    let at = segments
        .iter()
        .position(|s| KEYWORDS.contains(s))
        .ok_or_else(|| bad(name, "expected {instance}/uploads/{uuid}/blobs/{hash}/{size}"))?;
    if segments[at] != "uploads" {
        return Err(bad(
            name,
            "a write needs uploads/{uuid}/blobs/... or uploads/{uuid}/compressed-blobs/...",
        ));
    }
    let uuid = segments
        .get(at + 1)
        .filter(|u| !u.is_empty() && !KEYWORDS.contains(u))
        .ok_or_else(|| bad(name, "no upload id after uploads/"))?;
    let keyword = segments.get(at + 2).copied().unwrap_or("");
    if keyword != "blobs" && keyword != "compressed-blobs" {
        return Err(bad(name, "expected blobs/ or compressed-blobs/ after the upload id"));
    }
    // What follows the size is the client's own metadata, which the server ignores.
    let (blob, compressor, _metadata) = blob_part(name, keyword, &segments[at + 3..])?;
    Ok(UploadResource {
        uuid: uuid.to_string(),
        target: BlobResource {
            instance: instance_of(&segments[..at]),
            blob,
            compressor,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reprovm_sdk::digest::Digest;

    fn hash() -> String {
        Digest::of_sha256(b"x").to_hex()
    }

    #[test]
    fn read_names() {
        let h = hash();
        let r = parse_read(&format!("blobs/{h}/1")).unwrap();
        assert_eq!(
            (r.instance.as_str(), r.blob.size, r.compressor),
            ("", 1, Compressor::Identity)
        );
        let r = parse_read(&format!("main/x/blobs/{h}/1")).unwrap();
        assert_eq!(r.instance, "main/x");
        let r = parse_read(&format!("i/compressed-blobs/zstd/{h}/1")).unwrap();
        assert_eq!(r.compressor, Compressor::Zstd);
        let r = parse_read(&format!("blobs/blake3/{h}/1")).unwrap();
        assert_eq!(r.blob.digest.kind(), HashKind::Blake3);
        for bad in [
            String::new(),
            format!("blobs/{h}"),
            format!("blobs/{h}/-1"),
            format!("blobs/{h}/x"),
            format!("blobs/{h}/1/extra"),
            format!("blobs/{}/1", h.to_uppercase()),
            format!("compressed-blobs/brotli/{h}/1"),
            format!("blobs/md5/{h}/1"),
            format!("uploads/u/blobs/{h}/1"),
            format!("actions/{h}/1"),
        ] {
            assert_eq!(
                parse_read(&bad).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn write_names() {
        let h = hash();
        let w = parse_write(&format!("uploads/abc/blobs/{h}/1")).unwrap();
        assert_eq!((w.uuid.as_str(), w.target.instance.as_str()), ("abc", ""));
        let w = parse_write(&format!("inst/uploads/abc/compressed-blobs/zstd/{h}/1/meta/data")).unwrap();
        assert_eq!(
            (w.target.instance.as_str(), w.target.compressor),
            ("inst", Compressor::Zstd)
        );
        for bad in [
            format!("blobs/{h}/1"),
            format!("uploads/blobs/{h}/1"),
            format!("uploads/abc/{h}/1"),
            format!("uploads/abc/blobs/{h}"),
        ] {
            assert_eq!(
                parse_write(&bad).unwrap_err().code(),
                tonic::Code::InvalidArgument,
                "{bad}"
            );
        }
    }
}
