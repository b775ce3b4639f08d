//! Content digests: 32-byte hashes written as 64 lowercase hex characters.
//!
//! Native protocol paths use BLAKE3-256; the bazel-compatible paths use SHA-256.
//! A [`Digest`] is just the 32 bytes; which function produced it is known from
//! the route or the [`HashKind`] a caller holds beside it.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// Length of a digest in bytes.
pub const DIGEST_LEN: usize = 32;

/// A 32-byte content digest and the function that made it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    kind: HashKind,
    bytes: [u8; DIGEST_LEN],
}

/// Why a string is not a digest. Keeps the rejected input for the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {input:?}: {reason}")]
pub struct DigestParseError {
    /// The text that was rejected (truncated to 80 characters).
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Digest {
    /// The digest of the empty input under BLAKE3.
    pub fn empty_blake3() -> Self {
        Self::of_blake3(b"")
    }

    /// Wraps raw bytes.
    pub const fn from_bytes(kind: HashKind, bytes: [u8; DIGEST_LEN]) -> Self {
        Self { kind, bytes }
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.bytes
    }

    /// The hash function that made this digest.
    pub const fn kind(&self) -> HashKind {
        self.kind
    }

    /// BLAKE3 of a byte slice.
    pub fn of_blake3(data: &[u8]) -> Self {
        Self::from_bytes(HashKind::Blake3, *blake3::hash(data).as_bytes())
    }

    /// SHA-256 of a byte slice.
    pub fn of_sha256(data: &[u8]) -> Self {
        Self::from_bytes(HashKind::Sha256, sha2::Sha256::digest(data).into())
    }

    /// Parses a BLAKE3 digest: 64 lowercase hex characters.
    pub fn parse(s: &str) -> Result<Self, DigestParseError> {
        Self::parse_kind(HashKind::Blake3, s)
    }

    /// Parses 64 lowercase hex characters as a digest of `kind`. Upper case is
    /// refused so that one blob has exactly one name.
    pub fn parse_kind(kind: HashKind, s: &str) -> Result<Self, DigestParseError> {
        let err = |reason| DigestParseError {
            input: s.chars().take(80).collect(),
            reason,
        };
        if s.len() != DIGEST_LEN * 2 {
            return Err(err("expected 64 hex characters"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(err("expected lowercase hex characters [0-9a-f]"));
        }
        let mut out = [0u8; DIGEST_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| err("not hex"))?;
        Ok(Self::from_bytes(kind, out))
    }

    /// Lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.bytes)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl HashKind {
    /// A one-byte tag used in storage keys.
    pub const fn tag(self) -> u8 {
        match self {
            Self::Blake3 => b'b',
            Self::Sha256 => b's',
        }
    }

    /// The kind a storage tag names.
    pub const fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            b'b' => Some(Self::Blake3),
            b's' => Some(Self::Sha256),
            _ => None,
        }
    }
}

/// The hash function a digest was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashKind {
    /// BLAKE3-256: the native protocol.
    Blake3,
    /// SHA-256: the bazel-remote compatible paths.
    Sha256,
}

/// An incremental hasher for either [`HashKind`].
#[derive(Clone)]
pub enum Hasher {
    /// BLAKE3 state.
    Blake3(Box<blake3::Hasher>),
    /// SHA-256 state.
    Sha256(sha2::Sha256),
}

impl Hasher {
    /// A fresh hasher of the given kind.
    pub fn new(kind: HashKind) -> Self {
        match kind {
            HashKind::Blake3 => Self::Blake3(Box::new(blake3::Hasher::new())),
            HashKind::Sha256 => Self::Sha256(sha2::Sha256::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Blake3(h) => {
                h.update(data);
            }
            Self::Sha256(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finalize(&self) -> Digest {
        match self {
            Self::Blake3(h) => Digest::from_bytes(HashKind::Blake3, *h.finalize().as_bytes()),
            Self::Sha256(h) => Digest::from_bytes(HashKind::Sha256, h.clone().finalize().into()),
        }
    }
}

impl HashKind {
    /// Digest of a whole slice.
    pub fn digest(self, data: &[u8]) -> Digest {
        match self {
            Self::Blake3 => Digest::of_blake3(data),
            Self::Sha256 => Digest::of_sha256(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trip() {
        let d = Digest::of_blake3(b"hello");
        assert_eq!(Digest::parse(&d.to_hex()).unwrap(), d);
        assert_eq!(
            d.to_hex(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
    }

    #[test]
    fn parse_rejects_bad_input() {
        let good = Digest::of_blake3(b"x").to_hex();
        assert!(Digest::parse(&good.to_uppercase()).is_err());
        assert!(Digest::parse(&good[..63]).is_err());
        assert!(Digest::parse(&format!("{}g", &good[..63])).is_err());
        assert!(Digest::parse("").is_err());
    }

    #[test]
    fn sha256_known_value() {
        assert_eq!(
            Digest::of_sha256(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Hasher::new(HashKind::Sha256);
        h.update(b"");
        assert_eq!(h.finalize(), Digest::of_sha256(b""));
    }
}
