//! Directory snapshots: the formats `reprovm snapshot` writes into any [`Cas`](crate::Cas), and
//! their codec. No I/O here beyond encoding and decoding.
//!
//! A snapshot is three kinds of object:
//! - **chunks**: pieces of file contents cut by FastCDC ([`CHUNK_MIN`] / [`CHUNK_AVG`] /
//!   [`CHUNK_MAX`]), each stored as a blob under its BLAKE3 digest;
//! - **trees** ([`Tree`]): one blob per directory, a versioned JSON list of entries sorted by name
//!   (files list their chunks, directories name their subtree's digest), so an unchanged
//!   subtree is the same blob and is stored once;
//! - **the snapshot object** ([`Snapshot`]): a small JSON blob naming the root tree, when, where
//!   and from what parent it was taken, with its statistics.
//!
//! The ref `snapshots/<NAME>/<TIMESTAMP>` ([`ref_name`]) holds the snapshot object's digest as 64
//! hex characters. A garbage collector keeps what a ref reaches by reading the snapshot object,
//! then walking trees to their chunks ([`Tree::children`]).
//!
//! ## Layout
//! - [`tree`]: [`Tree`], [`Entry`], [`EntryKind`], [`ChunkRef`].
//! - [`object`]: [`Snapshot`], [`SnapshotStats`].
//! - [`time`]: the fixed-width UTC timestamps of ref names, and calendar buckets for `forget`.

pub mod object;
pub mod time;
pub mod tree;

pub use object::{Snapshot, SnapshotStats};
pub use time::Timestamp;
pub use tree::{ChunkRef, Entry, EntryKind, Tree};

/// Smallest chunk FastCDC cuts (except a file's last): 256 KiB.
///
/// Chosen with [`CHUNK_AVG`] and [`CHUNK_MAX`] so that a 1-byte edit re-uploads about one
/// average chunk, a 1 GiB file is ~1,000 chunks (one `blobs:missing` call), and a chunk fits
/// in a few 1 MiB store pieces.
pub const CHUNK_MIN: u32 = 256 * 1024;
/// Average chunk size FastCDC aims for: 1 MiB.
pub const CHUNK_AVG: u32 = 1024 * 1024;
/// Largest chunk: 4 MiB.
pub const CHUNK_MAX: u32 = 4 * 1024 * 1024;

/// Prefix of every snapshot ref.
pub const REF_ROOT: &str = "snapshots/";

/// A snapshot format problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Not the JSON this version expects.
    #[error("invalid {what}: {source}")]
    Json {
        /// `tree` or `snapshot`.
        what: &'static str,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// Written by a newer (or unknown) version of the format.
    #[error("{what} format version {found} is not supported (this build reads version {supported})")]
    Version {
        /// `tree` or `snapshot`.
        what: &'static str,
        /// The version in the object.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A field that cannot be right (bad hex name, unsorted or duplicate entries...).
    #[error("invalid {what}: {message}")]
    Invalid {
        /// `tree` or `snapshot`.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A snapshot name or ref that does not fit the naming rules.
    #[error("{0}")]
    Name(String),
}

/// Checks a snapshot name: 1–100 characters of `[A-Za-z0-9._:+-]`, not `.` or `..`.
pub fn validate_name(name: &str) -> Result<(), FormatError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._:+-".contains(c);
    if name.is_empty() || name.len() > 100 || name == "." || name == ".." || !name.chars().all(ok_char) {
        return Err(FormatError::Name(format!(
            "snapshot name {name:?} is not valid: use 1 to 100 of A-Z a-z 0-9 . _ : + -"
        )));
    }
    Ok(())
}

/// `snapshots/<name>/` (the prefix listing one name's snapshots).
pub fn ref_prefix(name: &str) -> String {
    format!("{REF_ROOT}{name}/")
}

/// `snapshots/<name>/<timestamp>`.
pub fn ref_name(name: &str, at: &Timestamp) -> String {
    format!("{REF_ROOT}{name}/{at}")
}

/// Splits `snapshots/<name>/<timestamp>` into its name and time.
pub fn parse_ref(r: &str) -> Result<(String, Timestamp), FormatError> {
    let bad = || FormatError::Name(format!("{r:?} is not a snapshot ref (snapshots/NAME/TIMESTAMP)"));
    let rest = r.strip_prefix(REF_ROOT).ok_or_else(bad)?;
    let (name, ts) = rest.split_once('/').ok_or_else(bad)?;
    validate_name(name).map_err(|_| bad())?;
    let ts = Timestamp::parse(ts).ok_or_else(bad)?;
    Ok((name.to_string(), ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_round_trip_and_are_valid_ref_names() {
        let t = Timestamp::from_unix_nanos(1_700_000_000_123_456_789);
        let r = ref_name("home", &t);
        assert_eq!(r, "snapshots/home/2023-11-14T22:13:20.123456789Z");
        assert!(crate::proto::validate_ref_name(&r).is_ok());
        assert_eq!(parse_ref(&r).unwrap(), ("home".to_string(), t));
        assert!(parse_ref("snapshots/home").is_err());
        assert!(parse_ref("other/home/2023-11-14T22:13:20.123456789Z").is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("web-01.daily").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "a@b", "é"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
