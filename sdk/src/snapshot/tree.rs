//! Tree objects: one directory of a snapshot, stored as a blob.
//!
//! Format version 1 is UTF-8 JSON, entries sorted by the bytes of their names, no duplicates:
//!
//! ```json
//! {"version":1,"entries":[
//!   {"name":"bin","type":"dir","mode":493,"mtime_ns":1700000000000000000,"subtree":"<64 hex>"},
//!   {"name":"data.bin","type":"file","mode":420,"mtime_ns":…,"size":3145728,"inode":1234,
//!    "chunks":[{"digest":"<64 hex>","size":1048576},…]},
//!   {"name":"latest","type":"symlink","mode":511,"mtime_ns":…,"target":"data.bin"}
//! ]}
//! ```
//!
//! - `mode` is the permission bits (`st_mode & 0o7777`), `mtime_ns` nanoseconds since the epoch.
//! - `size` and `chunks` (in file order, BLAKE3 digests of FastCDC chunks) only for files; an
//!   empty file has no chunks. `inode` is the source file's inode, used with `size` and
//!   `mtime_ns` to skip re-reading unchanged files in the next snapshot.
//! - `subtree` only for directories: the digest of the directory's own tree blob.
//! - `target` only for symlinks, stored as written (not resolved).
//! - A name (or target) that is not UTF-8 is written as `name_hex` (`target_hex`): the raw bytes
//!   in lowercase hex, with `name` holding a lossy rendering for humans.
//!
//! Encoding is deterministic (field order fixed, entries sorted), so equal directories are
//! equal blobs and are stored once.

use serde::{Deserialize, Serialize};

use super::FormatError;
use crate::Digest;

/// The tree format version this build writes and reads.
pub const TREE_VERSION: u32 = 1;

/// One directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Format version ([`TREE_VERSION`]).
    pub version: u32,
    /// Entries sorted by name bytes.
    pub entries: Vec<Entry>,
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// One chunk of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's bytes.
    pub digest: Digest,
    /// Its length.
    pub size: u64,
}

/// One name in a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The name (lossy when `name_hex` is set).
    pub name: String,
    /// The raw name bytes in hex, only when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_hex: Option<String>,
    /// File, directory or symlink.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// File size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Source inode of a file (change detection only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// A file's chunks in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkRef>,
    /// A directory's tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<Digest>,
    /// A symlink's target (lossy when `target_hex` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The raw target bytes in hex, only when they are not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hex: Option<String>,
}

/// Text and, when it is not UTF-8, its hex form.
fn text_of(bytes: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), Some(hex::encode(bytes))),
    }
}

fn bytes_of(text: &str, hex_form: Option<&str>) -> Result<Vec<u8>, FormatError> {
    match hex_form {
        None => Ok(text.as_bytes().to_vec()),
        Some(h) => hex::decode(h).map_err(|e| FormatError::Invalid {
            what: "tree",
            message: format!("bad hex name {h:?}: {e}"),
        }),
    }
}

impl Entry {
    /// A new entry of `kind` named by raw bytes; the kind's own fields are left empty.
    pub fn new(name: &[u8], kind: EntryKind, mode: u32, mtime_ns: i64) -> Self {
        let (name, name_hex) = text_of(name);
        Self {
            name,
            name_hex,
            kind,
            mode,
            mtime_ns,
            size: None,
            inode: None,
            chunks: Vec::new(),
            subtree: None,
            target: None,
            target_hex: None,
        }
    }

    /// Sets a symlink's target from raw bytes.
    pub fn set_target(&mut self, target: &[u8]) {
        let (t, h) = text_of(target);
        self.target = Some(t);
        self.target_hex = h;
    }

    /// The raw name bytes.
    pub fn name_bytes(&self) -> Result<Vec<u8>, FormatError> {
        bytes_of(&self.name, self.name_hex.as_deref())
    }

    /// The raw symlink target bytes (empty for other kinds).
    pub fn target_bytes(&self) -> Result<Vec<u8>, FormatError> {
        bytes_of(self.target.as_deref().unwrap_or_default(), self.target_hex.as_deref())
    }

    /// Whether the contents (type, bytes, target, subtree) or mode differ; mtime and inode aside.
    pub fn differs_from(&self, other: &Entry) -> bool {
        self.kind != other.kind
            || self.mode != other.mode
            || self.size != other.size
            || self.chunks != other.chunks
            || self.subtree != other.subtree
            || self.target != other.target
            || self.target_hex != other.target_hex
    }
}

impl Tree {
    /// A tree of `entries`, sorted by name bytes.
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by_cached_key(|e| e.name_bytes().unwrap_or_default());
        Self {
            version: TREE_VERSION,
            entries,
        }
    }

    /// The blob bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a tree serializes")
    }

    /// Parses a tree blob, checking version, order and per-kind fields.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(|source| FormatError::Json { what: "tree", source })?;
        if v.version != TREE_VERSION {
            return Err(FormatError::Version {
                what: "tree",
                found: v.version,
                supported: TREE_VERSION,
            });
        }
        let tree: Tree = serde_json::from_slice(bytes).map_err(|source| FormatError::Json { what: "tree", source })?;
        let invalid = |message: String| FormatError::Invalid { what: "tree", message };
        let mut prev: Option<Vec<u8>> = None;
        for e in &tree.entries {
            let name = e.name_bytes()?;
            if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
                return Err(invalid(format!("entry name {:?} is not a file name", e.name)));
            }
            if prev.as_ref().is_some_and(|p| *p >= name) {
                return Err(invalid(format!("entries not sorted or duplicated at {:?}", e.name)));
            }
            let ok = match e.kind {
                EntryKind::File => e.size.is_some() && e.subtree.is_none() && e.target.is_none(),
                EntryKind::Dir => e.subtree.is_some() && e.chunks.is_empty() && e.target.is_none(),
                EntryKind::Symlink => e.target.is_some() && e.chunks.is_empty() && e.subtree.is_none(),
            };
            if !ok {
                return Err(invalid(format!(
                    "entry {:?} has fields that do not fit its type",
                    e.name
                )));
            }
            // Checked: sizes that wrap around u64 must not add up (found by fuzz/snapshot_tree).
            let total = e.chunks.iter().try_fold(0u64, |acc, c| acc.checked_add(c.size));
            if e.kind == EntryKind::File && total != Some(e.size.unwrap_or(0)) {
                return Err(invalid(format!(
                    "file {:?}: chunk sizes do not add up to its size",
                    e.name
                )));
            }
            prev = Some(name);
        }
        Ok(tree)
    }

    /// The entry named `name` (binary search).
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name_bytes().unwrap_or_default().as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Every blob this tree names directly: its files' chunks and its subtrees.
    pub fn children(&self) -> impl Iterator<Item = Digest> + '_ {
        self.entries
            .iter()
            .flat_map(|e| e.chunks.iter().map(|c| c.digest).chain(e.subtree))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &[u8], data: &[u8]) -> Entry {
        let mut e = Entry::new(name, EntryKind::File, 0o644, 1);
        e.size = Some(data.len() as u64);
        if !data.is_empty() {
            e.chunks.push(ChunkRef {
                digest: Digest::of_blake3(data),
                size: data.len() as u64,
            });
        }
        e
    }

    #[test]
    fn round_trip_sorted_and_deterministic() {
        let mut link = Entry::new(b"l", EntryKind::Symlink, 0o777, -5);
        link.set_target(b"../x");
        let mut dir = Entry::new("ünï cødé".as_bytes(), EntryKind::Dir, 0o755, 2);
        dir.subtree = Some(Digest::of_blake3(b"t"));
        let t = Tree::new(vec![file(b"z", b"zz"), link, dir, file(b"a", b"")]);
        assert_eq!(t.entries[0].name, "a");
        let bytes = t.encode();
        assert_eq!(Tree::decode(&bytes).unwrap(), t);
        assert_eq!(Tree::new(t.entries.iter().rev().cloned().collect()).encode(), bytes);
        assert_eq!(t.children().count(), 2);
        assert!(t.get(b"z").is_some() && t.get(b"q").is_none());
    }

    #[test]
    fn non_utf8_names_survive() {
        let t = Tree::new(vec![file(b"caf\xe9", b"x")]);
        let back = Tree::decode(&t.encode()).unwrap();
        assert_eq!(back.entries[0].name_bytes().unwrap(), b"caf\xe9");
    }

    #[test]
    fn rejects_bad_trees() {
        let t = Tree::new(vec![file(b"a", b"1"), file(b"b", b"2")]);
        let mut unsorted = t.clone();
        unsorted.entries.reverse();
        assert!(Tree::decode(&unsorted.encode()).is_err());
        let mut future = t.clone();
        future.version = 2;
        assert!(matches!(
            Tree::decode(&future.encode()),
            Err(FormatError::Version { found: 2, .. })
        ));
        let mut slash = t.clone();
        slash.entries[0].name = "a/b".into();
        assert!(Tree::decode(&slash.encode()).is_err());
        let mut sizes = t;
        sizes.entries[0].size = Some(7);
        assert!(Tree::decode(&sizes.encode()).is_err());
        assert!(Tree::decode(b"{\"version\":1,\"entries\":[],\"x\":1}").is_err());
    }
}
