//! The record of one key: the digest of its value (a CAS blob), the value's size, when it was
//! written, and a small metadata map.
//!
//! Encoding: `[version 1][hash kind tag][32-byte digest][size u64 BE][stored_at u64 BE]`, then,
//! when the map is not empty, the map as a JSON object.

use std::collections::BTreeMap;

use reprovm_sdk::digest::{Digest, HashKind, DIGEST_LEN};

use super::KvError;

const ENTRY_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 1 + DIGEST_LEN + 8 + 8;

/// Most metadata attributes one entry carries.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// Longest attribute name.
pub const MAX_METADATA_NAME: usize = 64;
/// Longest attribute value.
pub const MAX_METADATA_VALUE: usize = 1024;
/// Most bytes all attributes take together (names and values).
pub const MAX_METADATA_BYTES: usize = 4096;

/// The attribute that holds the value's content type.
pub const CONTENT_TYPE: &str = "content-type";

/// A small map of attributes stored with an entry: the content type, and what a protocol needs
/// to hand back with the value (Turborepo's `x-artifact-tag`, for example). Names are lower-case
/// `a-z 0-9 -` (HTTP header names work as they are); values are printable ASCII, so that any
/// value can go back out as a header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, or fails when either breaks the rules above or the map would grow
    /// past its bounds. Names are lower-cased.
    pub fn insert(&mut self, name: &str, value: &str) -> Result<(), KvError> {
        let name = name.to_ascii_lowercase();
        let bad = |why: String| Err(KvError::InvalidMetadata(why));
        if name.is_empty() || name.len() > MAX_METADATA_NAME {
            return bad(format!("attribute names are 1 to {MAX_METADATA_NAME} bytes"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad(format!("attribute name {name:?}: only a-z 0-9 - are allowed"));
        }
        if value.len() > MAX_METADATA_VALUE {
            return bad(format!("attribute {name}: longer than {MAX_METADATA_VALUE} bytes"));
        }
        if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return bad(format!("attribute {name}: only printable ASCII is allowed"));
        }
        let old = self.0.get(&name).map_or(0, |v| name.len() + v.len());
        if !self.0.contains_key(&name) && self.0.len() >= MAX_METADATA_ENTRIES {
            return bad(format!("at most {MAX_METADATA_ENTRIES} attributes"));
        }
        if self.bytes() - old + name.len() + value.len() > MAX_METADATA_BYTES {
            return bad(format!("attributes take more than {MAX_METADATA_BYTES} bytes"));
        }
        self.0.insert(name, value.to_string());
        Ok(())
    }

    /// The value of `name` (lower-case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// The content type, when one was stored.
    pub fn content_type(&self) -> Option<&str> {
        self.get(CONTENT_TYPE)
    }

    /// Every attribute, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there is no attribute.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn bytes(&self) -> usize {
        self.0.iter().map(|(k, v)| k.len() + v.len()).sum()
    }
}

/// What a key names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    /// The value's digest: the CAS blob that holds it.
    pub digest: Digest,
    /// The value's size in bytes.
    pub size: u64,
    /// Unix seconds of the write.
    pub stored_at: u64,
    /// Attributes stored with the value.
    pub metadata: Metadata,
}

impl KvEntry {
    /// The entity tag of the value (its digest, quoted), for `ETag` headers.
    pub fn etag(&self) -> String {
        format!("\"{}\"", self.digest)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 64);
        out.push(ENTRY_VERSION);
        out.push(self.digest.kind().tag());
        out.extend_from_slice(self.digest.as_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.stored_at.to_be_bytes());
        if !self.metadata.is_empty() {
            out.extend_from_slice(&serde_json::to_vec(&self.metadata.0).expect("a map of strings serializes"));
        }
        out
    }

    /// Decodes a record; `None` for one that is not a record of this version (corrupt).
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < HEADER_LEN || b[0] != ENTRY_VERSION {
            return None;
        }
        let kind = HashKind::from_tag(b[1])?;
        let digest = Digest::from_bytes(kind, b[2..2 + DIGEST_LEN].try_into().ok()?);
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let (size, stored_at) = (u64_at(2 + DIGEST_LEN), u64_at(2 + DIGEST_LEN + 8));
        let rest = &b[HEADER_LEN..];
        let metadata = if rest.is_empty() {
            Metadata::new()
        } else {
            let map: BTreeMap<String, String> = serde_json::from_slice(rest).ok()?;
            let mut m = Metadata::new();
            for (k, v) in &map {
                m.insert(k, v).ok()?;
            }
            m
        };
        Some(Self {
            digest,
            size,
            stored_at,
            metadata,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut metadata = Metadata::new();
        metadata.insert("Content-Type", "application/octet-stream").unwrap();
        metadata.insert("x-artifact-tag", "abc=").unwrap();
        let e = KvEntry {
            digest: Digest::of_blake3(b"v"),
            size: 1,
            stored_at: 7,
            metadata,
        };
        let back = KvEntry::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.metadata.content_type(), Some("application/octet-stream"));
        let bare = KvEntry {
            metadata: Metadata::new(),
            ..e.clone()
        };
        assert_eq!(bare.encode().len(), HEADER_LEN);
        assert_eq!(KvEntry::decode(&bare.encode()).unwrap(), bare);
        assert!(KvEntry::decode(&e.encode()[..HEADER_LEN - 1]).is_none());
        let mut bad = e.encode();
        bad.push(b'}');
        assert!(KvEntry::decode(&bad).is_none());
    }

    #[test]
    fn metadata_bounds() {
        let mut m = Metadata::new();
        assert!(m.insert("", "v").is_err());
        assert!(m.insert("a b", "v").is_err());
        assert!(m.insert("a", "line\nbreak").is_err());
        assert!(m.insert("a", &"v".repeat(MAX_METADATA_VALUE + 1)).is_err());
        for i in 0..MAX_METADATA_ENTRIES {
            m.insert(&format!("k{i}"), "v").unwrap();
        }
        assert!(m.insert("one-more", "v").is_err());
        m.insert("k0", "replaced").unwrap();
        assert_eq!(m.get("k0"), Some("replaced"));
        let mut big = Metadata::new();
        for i in 0..4 {
            big.insert(&format!("k{i}"), &"v".repeat(1000)).unwrap();
        }
        assert!(big.insert("k4", &"v".repeat(200)).is_err(), "past the byte bound");
    }
}
