//! The snapshot object: the blob a snapshot ref points to.
//!
//! Format version 1, UTF-8 JSON:
//!
//! ```json
//! {"version":1,"name":"home","time":"2026-11-30T08:15:00.123456789Z","root":"<tree digest>",
//!  "hostname":"build-01","source":"/home/me","parent":"snapshots/home/2026-11-29T08:15:00.000000000Z",
//!  "stats":{"files_new":3,"files_changed":1,"files_unchanged":120,…}}
//! ```
//!
//! `parent` is the *ref name* of the snapshot whose file list was reused (not a digest, so that a
//! garbage collector following digests does not keep forgotten parents alive).

use serde::{Deserialize, Serialize};

use super::{FormatError, Timestamp};
use crate::Digest;

/// The snapshot format version this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// What `snapshot create` counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotStats {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files in the parent whose size, mtime or inode changed (re-read).
    pub files_changed: u64,
    /// Files matching the parent (not re-read).
    pub files_unchanged: u64,
    /// Directories (the root excluded).
    pub dirs: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Special files skipped (sockets, FIFOs, devices).
    pub skipped: u64,
    /// Total size of all files.
    pub bytes_total: u64,
    /// Bytes read from disk (new and changed files).
    pub bytes_read: u64,
    /// Chunk references of all files (a chunk used twice counts twice).
    pub chunks_total: u64,
    /// Distinct chunks uploaded (the store lacked them).
    pub chunks_uploaded: u64,
    /// Their bytes.
    pub bytes_uploaded: u64,
    /// Tree blobs uploaded.
    pub trees_uploaded: u64,
    /// `blobs:missing` calls made.
    pub missing_calls: u64,
}

/// A snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Format version ([`SNAPSHOT_VERSION`]).
    pub version: u32,
    /// The snapshot's name (the `NAME` of its ref).
    pub name: String,
    /// When it was taken (the `TIMESTAMP` of its ref).
    pub time: String,
    /// Root tree digest.
    pub root: Digest,
    /// Host it was taken on.
    pub hostname: String,
    /// Absolute path of the directory.
    pub source: String,
    /// Ref of the parent snapshot, if one was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Figures of the run that made it.
    #[serde(default)]
    pub stats: SnapshotStats,
}

impl Snapshot {
    /// The blob bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a snapshot serializes")
    }

    /// Parses a snapshot blob.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let json = |source| FormatError::Json {
            what: "snapshot",
            source,
        };
        let v: Version = serde_json::from_slice(bytes).map_err(json)?;
        if v.version != SNAPSHOT_VERSION {
            return Err(FormatError::Version {
                what: "snapshot",
                found: v.version,
                supported: SNAPSHOT_VERSION,
            });
        }
        let s: Snapshot = serde_json::from_slice(bytes).map_err(json)?;
        if Timestamp::parse(&s.time).is_none() {
            return Err(FormatError::Invalid {
                what: "snapshot",
                message: format!("time {:?} is not a snapshot timestamp", s.time),
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Snapshot {
            version: SNAPSHOT_VERSION,
            name: "home".into(),
            time: Timestamp::from_unix_nanos(1).to_string(),
            root: Digest::of_blake3(b"root"),
            hostname: "h".into(),
            source: "/src".into(),
            parent: None,
            stats: SnapshotStats {
                files_new: 2,
                ..Default::default()
            },
        };
        assert_eq!(Snapshot::decode(&s.encode()).unwrap(), s);
        let mut bad = s.clone();
        bad.time = "yesterday".into();
        assert!(Snapshot::decode(&bad.encode()).is_err());
        bad.version = 9;
        assert!(matches!(
            Snapshot::decode(&bad.encode()),
            Err(FormatError::Version { .. })
        ));
    }
}
