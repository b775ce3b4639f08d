//! Names in the key-value layer: namespaces and key paths, checked once when they enter.
//!
//! A namespace is 1 to [`MAX_NAMESPACE_LEN`] bytes of `A-Z a-z 0-9 - _ .`, not starting with
//! `.`. A key path is 1 to [`MAX_KEY_LEN`] bytes of `/`-separated segments, each 1 to
//! [`MAX_SEGMENT_LEN`] bytes of `A-Z a-z 0-9 - _ . ~ + = , @`, none of them `.` or `..`.
//! Nothing is percent-decoded: `%`, spaces, control bytes and everything else are refused.

use super::KvError;

/// Longest namespace name.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// Longest key path, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest segment of a key path.
pub const MAX_SEGMENT_LEN: usize = 255;

fn namespace_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Whether `b` may appear in a key segment.
pub(crate) fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'+' | b'=' | b',' | b'@')
}

/// A checked namespace name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// Checks a namespace name.
    pub fn parse(s: &str) -> Result<Self, KvError> {
        let bad = |why: &str| Err(KvError::InvalidKey(format!("namespace {:?}: {why}", truncated(s))));
        if s.is_empty() || s.len() > MAX_NAMESPACE_LEN {
            return bad(&format!("must be 1 to {MAX_NAMESPACE_LEN} bytes"));
        }
        if s.starts_with('.') {
            return bad("must not start with '.'");
        }
        if !s.bytes().all(namespace_byte) {
            return bad("only A-Z a-z 0-9 - _ . are allowed");
        }
        Ok(Self(s.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A checked key path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyPath(String);

fn truncated(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Checks the segments of a path (without a leading or trailing `/`).
fn check_segments(s: &str) -> Result<(), KvError> {
    let bad = |why: String| Err(KvError::InvalidKey(format!("key {:?}: {why}", truncated(s))));
    if s.len() > MAX_KEY_LEN {
        return bad(format!("longer than {MAX_KEY_LEN} bytes"));
    }
    for seg in s.split('/') {
        if seg.is_empty() {
            return bad("empty path segment".into());
        }
        if seg == "." || seg == ".." {
            return bad(format!("{seg:?} segments are not allowed"));
        }
        if seg.len() > MAX_SEGMENT_LEN {
            return bad(format!("a segment is longer than {MAX_SEGMENT_LEN} bytes"));
        }
        if let Some(b) = seg.bytes().find(|b| !is_key_byte(*b)) {
            return bad(format!(
                "byte 0x{b:02x} is not allowed (keys use A-Z a-z 0-9 - _ . ~ + = , @ and / between segments)"
            ));
        }
    }
    Ok(())
}

impl KeyPath {
    /// Checks a key path.
    pub fn parse(s: &str) -> Result<Self, KvError> {
        if s.is_empty() {
            return Err(KvError::InvalidKey("empty key".into()));
        }
        check_segments(s)?;
        Ok(Self(s.to_string()))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A "directory" of a namespace, for listings: the namespace root (empty) or a path that ends in
/// `/` (`a/b/`). Directories are implied by the keys below them; none is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirPath(String);

impl DirPath {
    /// The namespace root.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Checks a directory path; a trailing `/` is optional (`a/b` and `a/b/` are the same).
    pub fn parse(s: &str) -> Result<Self, KvError> {
        let trimmed = s.strip_suffix('/').unwrap_or(s);
        if trimmed.is_empty() {
            return Ok(Self::root());
        }
        check_segments(trimmed)?;
        Ok(Self(format!("{trimmed}/")))
    }

    /// The path with its trailing `/` (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key of one namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KvKey {
    /// Its namespace.
    pub namespace: Namespace,
    /// Its path within the namespace.
    pub path: KeyPath,
}

impl KvKey {
    /// Checks both parts.
    pub fn parse(namespace: &str, path: &str) -> Result<Self, KvError> {
        Ok(Self {
            namespace: Namespace::parse(namespace)?,
            path: KeyPath::parse(path)?,
        })
    }

    /// The key of its record in the store: `{namespace}/{path}`.
    pub(crate) fn record_key(&self) -> Vec<u8> {
        record_prefix(&self.namespace, self.path.as_str())
    }
}

impl std::fmt::Display for KvKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.path)
    }
}

/// `{namespace}/{rest}` as bytes (a namespace cannot contain `/`, so no namespace's records
/// share a prefix with another's).
pub(crate) fn record_prefix(ns: &Namespace, rest: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.0.len() + 1 + rest.len());
    k.extend_from_slice(ns.0.as_bytes());
    k.push(b'/');
    k.extend_from_slice(rest.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        for ok in ["ccache", "team_x", "a", "A-b.c_9"] {
            assert!(Namespace::parse(ok).is_ok(), "{ok}");
        }
        let long = "n".repeat(MAX_NAMESPACE_LEN + 1);
        for bad in ["", ".hidden", "a/b", "a b", "ü", "a%2F", &long] {
            assert!(Namespace::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_paths() {
        for ok in [
            "a",
            ".sccache_check",
            "ab/cdef0123",
            "a/b/c/abcdef",
            "x/cas/0123",
            "k~+=,@-_.x",
            "..a",
        ] {
            assert!(KeyPath::parse(ok).is_ok(), "{ok}");
        }
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let long_seg = "k".repeat(MAX_SEGMENT_LEN + 1);
        for bad in [
            "", "/a", "a/", "a//b", "..", "a/../b", "./a", "a/.", "a b", "a\tb", "a\x00", "a%2e", "a?b", "a#b", "a\\b",
            "é", &long, &long_seg,
        ] {
            assert!(KeyPath::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dirs_and_record_keys() {
        assert_eq!(DirPath::parse("").unwrap(), DirPath::root());
        assert_eq!(DirPath::parse("/").unwrap(), DirPath::root());
        assert_eq!(DirPath::parse("a/b").unwrap().as_str(), "a/b/");
        assert_eq!(DirPath::parse("a/b/").unwrap().as_str(), "a/b/");
        assert!(DirPath::parse("a//").is_err());
        assert!(DirPath::parse("../").is_err());
        let k = KvKey::parse("ns", "a/b").unwrap();
        assert_eq!(k.record_key(), b"ns/a/b");
        assert_eq!(k.to_string(), "ns/a/b");
    }
}
