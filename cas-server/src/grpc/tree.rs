//! Reading `Directory` and `Tree` messages from the store.
//!
//! A `Directory` is small and decoded whole (up to [`MAX_DIRECTORY`]). A `Tree` (an output
//! directory of an action result) can be large, so [`tree_file_digests`] reads it as a stream of
//! its top-level fields, one `Directory` at a time, and never holds the whole blob.

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bytes::{Buf, BytesMut};
use futures::StreamExt;
use prost::Message;
use reprovm_sdk::cas::Cas;
use reprovm_sdk::digest::HashKind;
use reprovm_sdk::error::CasError;

use super::digest::{self, Sized};

/// Largest `Directory` message read.
pub const MAX_DIRECTORY: u64 = 16 << 20;

/// Why a directory or tree could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The store failed (including `NotFound`).
    #[error(transparent)]
    Store(#[from] CasError),
    /// The blob is not the message it should be.
    #[error("{what} {digest} is not a valid message: {why}")]
    Malformed {
        /// `directory` or `tree`.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// What is wrong.
        why: String,
    },
}

/// Reads and decodes one `Directory`; `Ok(None)` when the store lacks it.
pub async fn read_directory(store: &dyn Cas, d: &Sized) -> Result<Option<re::Directory>, TreeError> {
    let malformed = |why: String| TreeError::Malformed {
        what: "directory",
        digest: d.display(),
        why,
    };
    if d.size > MAX_DIRECTORY {
        return Err(malformed(format!("larger than {MAX_DIRECTORY} bytes")));
    }
    if d.is_empty_blob() {
        return Ok(Some(re::Directory::default()));
    }
    let blob = match store.get(&d.digest, None).await {
        Ok(b) => b,
        Err(CasError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if blob.size != d.size {
        return Ok(None);
    }
    let bytes = blob.bytes().await?;
    re::Directory::decode(bytes)
        .map(Some)
        .map_err(|e| malformed(e.to_string()))
}

/// Adds the file digests of `dir` to `out`.
pub fn file_digests(kind: HashKind, dir: &re::Directory, out: &mut Vec<Sized>) -> Result<(), tonic::Status> {
    for f in &dir.files {
        out.push(digest::required(kind, f.digest.as_ref(), "file digest")?);
    }
    Ok(())
}

/// The digests of every file in the `Tree` stored under `tree`, read as a stream.
/// `Ok(None)` when the store lacks the tree.
pub async fn tree_file_digests(store: &dyn Cas, kind: HashKind, tree: &Sized) -> Result<Option<Vec<Sized>>, TreeError> {
    let malformed = |why: String| TreeError::Malformed {
        what: "tree",
        digest: tree.display(),
        why,
    };
    let mut out = Vec::new();
    if tree.is_empty_blob() {
        return Ok(Some(out));
    }
    let blob = match store.get(&tree.digest, None).await {
        Ok(b) => b,
        Err(CasError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if blob.size != tree.size {
        return Ok(None);
    }
    let mut body = blob.body;
    let mut buf = BytesMut::new();
    let mut ended = false;
    loop {
        // One top-level field: a key, a length, then that many bytes of a Directory.
        match next_field(&mut buf).map_err(malformed)? {
            Some(Field::Directory(bytes)) => {
                let dir = re::Directory::decode(bytes).map_err(|e| malformed(e.to_string()))?;
                file_digests(kind, &dir, &mut out).map_err(|s| malformed(s.message().to_string()))?;
                continue;
            }
            Some(Field::Skip) => continue,
            None if ended => break,
            None => {}
        }
        match body.next().await {
            Some(chunk) => buf.extend_from_slice(&chunk.map_err(CasError::from)?),
            None => ended = true,
        }
        if buf.len() as u64 > MAX_DIRECTORY + 16 {
            return Err(malformed(format!("a directory larger than {MAX_DIRECTORY} bytes")));
        }
    }
    if !buf.is_empty() {
        return Err(malformed("truncated".into()));
    }
    Ok(Some(out))
}

enum Field {
    /// `root` (1) or `children` (2).
    Directory(bytes::Bytes),
    /// Any other field, skipped.
    Skip,
}

/// Takes one whole top-level field off the front of `buf`, or `None` when more bytes are needed.
fn next_field(buf: &mut BytesMut) -> Result<Option<Field>, String> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    let mut peek = &buf[..];
    let before = peek.len();
    let Ok((tag, wire)) = decode_key(&mut peek) else {
        // A key is at most 5 bytes: with more than that buffered, it is malformed.
        return if buf.len() > 10 {
            Err("a malformed field key".into())
        } else {
            Ok(None)
        };
    };
    let len = match wire {
        WireType::LengthDelimited => match decode_varint(&mut peek) {
            Ok(n) => n,
            Err(e) if buf.len() > 15 => return Err(e.to_string()),
            Err(_) => return Ok(None),
        },
        WireType::Varint => match decode_varint(&mut peek) {
            Ok(_) => 0,
            Err(e) if buf.len() > 15 => return Err(e.to_string()),
            Err(_) => return Ok(None),
        },
        WireType::SixtyFourBit => 8,
        WireType::ThirtyTwoBit => 4,
        _ => return Err("an unsupported wire type in a Tree".into()),
    };
    let head = before - peek.len();
    if len > MAX_DIRECTORY {
        return Err("a Tree field larger than the directory limit".into());
    }
    let len = len as usize;
    if peek.len() < len {
        return Ok(None);
    }
    buf.advance(head);
    let value = buf.split_to(len).freeze();
    Ok(Some(match (tag, wire) {
        (1 | 2, WireType::LengthDelimited) => Field::Directory(value),
        _ => Field::Skip,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_read_field_by_field_from_any_split() {
        let file = |n: u8| re::FileNode {
            name: format!("f{n}"),
            digest: Some(re::Digest {
                hash: hex::encode([n; 32]),
                size_bytes: n as i64,
            }),
            ..Default::default()
        };
        let dir = |files: Vec<re::FileNode>| re::Directory {
            files,
            ..Default::default()
        };
        let tree = re::Tree {
            root: Some(dir(vec![file(1)])),
            children: vec![dir(vec![file(2), file(3)]), dir(vec![])],
        };
        let bytes = tree.encode_to_vec();
        for split in 1..bytes.len() {
            let mut buf = BytesMut::new();
            let mut found = 0;
            for chunk in bytes.chunks(split) {
                buf.extend_from_slice(chunk);
                while let Some(f) = next_field(&mut buf).unwrap() {
                    if let Field::Directory(d) = f {
                        found += re::Directory::decode(d).unwrap().files.len();
                    }
                }
            }
            assert!(buf.is_empty());
            assert_eq!(found, 3, "split {split}");
        }
    }
}
