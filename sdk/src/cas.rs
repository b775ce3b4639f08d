//! The `Cas` trait: what every store offers, local or remote.
//!
//! The core trait is small and batch-first (`find_missing` is required,
//! `contains` is derived in [`CasExt`]). Stores compose by wrapping: the
//! server's tiered store is a `Cas` made of two `Cas`es, and the executor
//! holds a `dyn Cas` chosen from a URL.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::error::{CasError, Result};
use crate::proto::ByteRange;
use crate::Digest;

/// A stream of byte chunks: request and response bodies, file contents.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// A blob being read.
pub struct Blob {
    /// Size of the whole blob.
    pub size: u64,
    /// The byte range `body` carries (the whole blob when no range was asked).
    pub range: std::ops::Range<u64>,
    /// The bytes.
    pub body: ByteStream,
}

impl Blob {
    /// Collects the body into memory. Only for blobs known to be small.
    pub async fn bytes(self) -> Result<Bytes> {
        let parts: Vec<Bytes> = self.body.try_collect().await?;
        Ok(parts.concat().into())
    }
}

/// What a `put` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutOutcome {
    /// The blob was new and is now stored.
    Created,
    /// The blob was already present; nothing was written.
    Existed,
}

/// A named ref with its entity tag (for compare-and-swap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefValue {
    /// The stored value.
    pub value: Bytes,
    /// An opaque tag that changes whenever the value does.
    pub etag: String,
}

/// The condition under which a ref write or delete happens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RefCondition {
    /// Unconditional.
    #[default]
    Always,
    /// Only if the ref currently has this etag (`If-Match`).
    IfMatch(String),
    /// Only if the ref does not exist (`If-None-Match: *`).
    IfAbsent,
}

/// Size and state of a stored blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    /// Size in bytes of the decoded blob.
    pub size: u64,
}

/// A content-addressed store.
///
/// Digests name blobs by their content; an implementation never makes a blob
/// visible under a digest its bytes do not hash to.
#[async_trait::async_trait]
pub trait Cas: Send + Sync + 'static {
    /// Returns those of `digests` that the store does not have, in input order.
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>>;

    /// Size of a blob, or `None` when absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>>;

    /// Reads a blob (or part of it). `NotFound` when absent,
    /// `RangeNotSatisfiable` when `range` misses it.
    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Blob>;

    /// Stores the bytes of `body` under `digest`, verifying them while they
    /// stream. `size`, when known, is checked too. On any error nothing is stored.
    async fn put(&self, digest: &Digest, size: Option<u64>, body: ByteStream) -> Result<PutOutcome>;

    /// Removes a blob. Returns whether it existed.
    async fn delete(&self, digest: &Digest) -> Result<bool>;

    /// Reads an action-cache entry.
    async fn ac_get(&self, key: &Digest) -> Result<Option<Bytes>>;

    /// Writes an action-cache entry.
    async fn ac_put(&self, key: &Digest, value: Bytes) -> Result<()>;

    /// Reads a ref.
    async fn ref_get(&self, name: &str) -> Result<Option<RefValue>>;

    /// Writes a ref if `cond` holds; returns the new etag.
    async fn ref_put(&self, name: &str, value: Bytes, cond: RefCondition) -> Result<String>;

    /// Deletes a ref if `cond` holds. Returns whether it existed.
    async fn ref_delete(&self, name: &str, cond: RefCondition) -> Result<bool>;

    /// Names of the refs starting with `prefix`, sorted.
    async fn ref_list(&self, prefix: &str) -> Result<Vec<String>>;
}

/// Conveniences derived from [`Cas`], for every implementation.
#[async_trait::async_trait]
pub trait CasExt: Cas {
    /// Whether one blob is present.
    async fn contains(&self, digest: &Digest) -> Result<bool> {
        Ok(self.find_missing(std::slice::from_ref(digest)).await?.is_empty())
    }

    /// Stores an in-memory blob under its BLAKE3 digest and returns the digest.
    async fn put_bytes(&self, data: Bytes) -> Result<Digest> {
        let digest = Digest::of_blake3(&data);
        let size = data.len() as u64;
        self.put(&digest, Some(size), bytes_stream(data)).await?;
        Ok(digest)
    }

    /// Reads a whole blob into memory. Only for blobs known to be small.
    async fn get_bytes(&self, digest: &Digest) -> Result<Bytes> {
        self.get(digest, None).await?.bytes().await
    }

    /// Stores a file under `digest` (its BLAKE3), streaming it from disk.
    async fn put_file(&self, digest: &Digest, path: &std::path::Path) -> Result<PutOutcome> {
        let file = tokio::fs::File::open(path).await?;
        let size = file.metadata().await?.len();
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        self.put(digest, Some(size), Box::pin(body)).await
    }

    /// Writes a blob to a file, streaming.
    async fn get_to_file(&self, digest: &Digest, path: &std::path::Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let blob = self.get(digest, None).await?;
        let mut file = tokio::fs::File::create(path).await?;
        let mut body = blob.body;
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        if n != blob.size {
            return Err(CasError::SizeMismatch {
                expected: blob.size,
                actual: n,
            });
        }
        Ok(n)
    }
}

impl<T: Cas + ?Sized> CasExt for T {}

/// A [`ByteStream`] yielding one in-memory buffer.
pub fn bytes_stream(data: Bytes) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(data) }))
}

/// Forwards every method through an `Arc`, so `Arc<dyn Cas>` is a `Cas`.
#[async_trait::async_trait]
impl<T: Cas + ?Sized> Cas for Arc<T> {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        (**self).find_missing(digests).await
    }
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        (**self).stat(digest).await
    }
    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Blob> {
        (**self).get(digest, range).await
    }
    async fn put(&self, digest: &Digest, size: Option<u64>, body: ByteStream) -> Result<PutOutcome> {
        (**self).put(digest, size, body).await
    }
    async fn delete(&self, digest: &Digest) -> Result<bool> {
        (**self).delete(digest).await
    }
    async fn ac_get(&self, key: &Digest) -> Result<Option<Bytes>> {
        (**self).ac_get(key).await
    }
    async fn ac_put(&self, key: &Digest, value: Bytes) -> Result<()> {
        (**self).ac_put(key, value).await
    }
    async fn ref_get(&self, name: &str) -> Result<Option<RefValue>> {
        (**self).ref_get(name).await
    }
    async fn ref_put(&self, name: &str, value: Bytes, cond: RefCondition) -> Result<String> {
        (**self).ref_put(name, value, cond).await
    }
    async fn ref_delete(&self, name: &str, cond: RefCondition) -> Result<bool> {
        (**self).ref_delete(name, cond).await
    }
    async fn ref_list(&self, prefix: &str) -> Result<Vec<String>> {
        (**self).ref_list(prefix).await
    }
}
