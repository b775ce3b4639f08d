//! [`ObjectStoreCas`]: a [`Cas`] kept directly in object storage (S3, Azure Blob, GCS, HTTP/WebDAV, a
//! local directory) through the `object_store` crate. No server runs; every client talks to the bucket.
//!
//! ## Layout under the prefix
//! - `cas/<first 2 hex>/<digest>`: BLAKE3 blobs; `cas-sha256/<first 2 hex>/<digest>` for SHA-256 ones.
//! - `ac/<key>`: action-cache values (opaque bytes, at most [`MAX_AC_VALUE`]).
//! - `refs/<name>`: ref values; a `/` in the name is a path separator.
//!
//! ## Guarantees
//! - `put` hashes the body while it streams and makes the object visible only once verified: small
//!   blobs (up to [`SINGLE_PUT_MAX`]) are buffered and written with one atomic `put`; larger ones go
//!   through a multipart upload that is completed only when the digest matches, and aborted otherwise.
//! - `get` of a whole blob is wrapped in [`verified_stream`], so corrupt bytes end in an error.
//! - Ref etags are the BLAKE3 of the value (so they change exactly when it does). `IfAbsent` uses
//!   `PutMode::Create`; `IfMatch` reads the current value, compares its etag and writes with
//!   `PutMode::Update` (the backend's own etag/version), which is atomic on S3, GCS and Azure. Backends
//!   without conditional updates (`LocalFileSystem`) fall back to the read-compare-write check alone:
//!   best-effort, with a small race window between two writers. Conditional deletes are always
//!   best-effort (object storage has no conditional delete).
//! - `find_missing` issues one `HEAD` per digest (object storage has no batch existence call), at most
//!   [`HEAD_CONCURRENCY`] at a time.

use std::sync::Arc;

use ::object_store::path::Path;
use ::object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart,
};
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use crate::cas::{Blob, BlobInfo, ByteStream, Cas, PutOutcome, RefCondition, RefValue};
use crate::digest::{Digest, HashKind, Hasher};
use crate::error::{CasError, Result};
use crate::proto::{validate_ref_name, ByteRange, MAX_AC_VALUE, MAX_REF_VALUE};
use crate::verify::verified_stream;

/// Blobs up to this size are buffered and written with a single `put`; larger ones stream as multipart.
pub const SINGLE_PUT_MAX: usize = 8 * 1024 * 1024;

/// Part size of multipart uploads (S3 needs at least 5 MiB per part but the last).
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts uploaded concurrently by one multipart upload.
const PART_CONCURRENCY: usize = 4;

/// `HEAD` requests in flight for one `find_missing`.
pub const HEAD_CONCURRENCY: usize = 32;

/// A content-addressed store kept in any [`ObjectStore`], laid out as the module doc says.
#[derive(Clone, Debug)]
pub struct ObjectStoreCas {
    /// The bucket (or directory) client.
    store: Arc<dyn ObjectStore>,
    /// Everything this store writes lives under this path.
    prefix: Path,
}

impl ObjectStoreCas {
    /// Wraps a store; all keys live under `prefix` (may be empty).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self { store, prefix }
    }

    /// Opens a store from a URL: `s3://bucket/prefix`, `az://container/prefix`, `gs://bucket/prefix`,
    /// `http(s)://host/prefix` (WebDAV) or `file:///dir` (created when missing). `options` are the
    /// backend's configuration keys (`aws_region`, `aws_endpoint`, `aws_allow_http`, ...), as
    /// `object_store::parse_url_opts` takes them; cloud credentials also come from the providers'
    /// usual environment variables (`AWS_ACCESS_KEY_ID`, ...).
    pub fn from_url(url: &str, options: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let parsed = url::Url::parse(url).map_err(|e| CasError::InvalidInput(format!("store URL {url:?}: {e}")))?;
        if parsed.scheme() == "file" {
            let dir = parsed
                .to_file_path()
                .map_err(|_| CasError::InvalidInput(format!("store URL {url:?}: not an absolute local path")))?;
            std::fs::create_dir_all(&dir)?;
            let local = ::object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(backend)?;
            return Ok(Self::new(Arc::new(local), Path::default()));
        }
        let mut opts: Vec<(String, String)> = options.into_iter().collect();
        if matches!(parsed.scheme(), "s3" | "s3a") {
            // The providers' usual variables, as the AWS builder's `from_env` would read them.
            for (var, key) in [
                ("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
                ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
                ("AWS_SESSION_TOKEN", "aws_session_token"),
                ("AWS_REGION", "aws_region"),
                ("AWS_DEFAULT_REGION", "aws_region"),
                ("AWS_ENDPOINT", "aws_endpoint"),
                ("AWS_ENDPOINT_URL", "aws_endpoint"),
                ("AWS_ALLOW_HTTP", "aws_allow_http"),
            ] {
                if let Ok(v) = std::env::var(var) {
                    if !opts.iter().any(|(k, _)| k == key) {
                        opts.push((key.to_string(), v));
                    }
                }
            }
        }
        let (store, prefix) = ::object_store::parse_url_opts(&parsed, opts).map_err(backend)?;
        Ok(Self::new(Arc::from(store), prefix))
    }

    /// The wrapped object store.
    pub fn inner(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The path prefix everything of this store lives under.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    fn blob_path(&self, d: &Digest) -> Path {
        let hex = d.to_hex();
        let dir = match d.kind() {
            HashKind::Blake3 => "cas",
            HashKind::Sha256 => "cas-sha256",
        };
        self.prefix.clone().join(dir).join(&hex[..2]).join(hex.as_str())
    }

    /// Every BLAKE3 blob in the store whose hex digest starts with `hex_prefix`
    /// (listing `cas/<2 hex>/`; objects with names that are not digests are skipped).
    pub fn list_blobs(&self, hex_prefix: &str) -> futures::stream::BoxStream<'_, Result<Digest>> {
        let mut dir = self.prefix.clone().join("cas");
        if hex_prefix.len() >= 2 {
            dir = dir.join(&hex_prefix[..2]);
        }
        let wanted = hex_prefix.to_string();
        self.store
            .list(Some(&dir))
            .map_err(backend)
            .try_filter_map(move |meta| {
                let name = meta.location.filename().unwrap_or("").to_string();
                let keep = name.starts_with(&wanted);
                async move { Ok(if keep { Digest::parse(&name).ok() } else { None }) }
            })
            .boxed()
    }

    fn ac_path(&self, key: &Digest) -> Path {
        self.prefix.clone().join("ac").join(key.to_hex().as_str())
    }

    fn refs_root(&self) -> Path {
        self.prefix.clone().join("refs")
    }

    fn ref_path(&self, name: &str) -> Result<Path> {
        validate_ref_name(name).map_err(CasError::InvalidInput)?;
        Ok(name.split('/').fold(self.refs_root(), |p, seg| p.join(seg)))
    }

    /// The object's size, or `None` when absent.
    async fn head(&self, path: &Path) -> Result<Option<u64>> {
        match self.store.head(path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(::object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    /// Reads a small object whole, with its meta (for refs).
    async fn get_small(&self, path: &Path) -> Result<Option<(Bytes, ::object_store::ObjectMeta)>> {
        match self.store.get(path).await {
            Ok(r) => {
                let meta = r.meta.clone();
                Ok(Some((r.bytes().await.map_err(backend)?, meta)))
            }
            Err(::object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    /// Streams `body` into a multipart upload of `path`, starting with `head` (already hashed).
    /// Completes only when the whole body hashes to `digest`; aborts otherwise.
    async fn put_multipart(
        &self,
        path: &Path,
        digest: &Digest,
        size: Option<u64>,
        head: BytesMut,
        mut hasher: Hasher,
        mut body: ByteStream,
    ) -> Result<()> {
        let upload = self.store.put_multipart(path).await.map_err(backend)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut n = head.len() as u64;
        writer.put(head.freeze());
        let outcome: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                n += chunk.len() as u64;
                if size.is_some_and(|s| n > s) {
                    return Err(CasError::SizeMismatch {
                        expected: size.unwrap_or_default(),
                        actual: n,
                    });
                }
                writer.wait_for_capacity(PART_CONCURRENCY).await.map_err(backend)?;
                writer.put(chunk);
            }
            check_body(digest, size, n, &hasher)
        }
        .await;
        match outcome {
            Ok(()) => {
                writer.finish().await.map_err(backend)?;
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(%path, error = %abort, "aborting a refused multipart upload failed");
                }
                Err(e)
            }
        }
    }
}

/// The error for a body that does not match what it was announced as.
fn check_body(digest: &Digest, size: Option<u64>, n: u64, hasher: &Hasher) -> Result<()> {
    if let Some(expected) = size.filter(|s| *s != n) {
        return Err(CasError::SizeMismatch { expected, actual: n });
    }
    let actual = hasher.finalize();
    if actual != *digest {
        return Err(CasError::DigestMismatch {
            expected: *digest,
            actual,
        });
    }
    Ok(())
}

/// Maps an object_store error onto the [`CasError`] a caller handles.
fn backend(e: ::object_store::Error) -> CasError {
    match e {
        ::object_store::Error::NotFound { path, .. } => CasError::not_found(path),
        ::object_store::Error::Precondition { path, .. } | ::object_store::Error::AlreadyExists { path, .. } => {
            CasError::PreconditionFailed { name: path }
        }
        other => CasError::Backend(other.to_string()),
    }
}

/// The etag of a ref value: its BLAKE3, quoted like an HTTP entity tag.
fn ref_etag(value: &[u8]) -> String {
    format!("\"{}\"", Digest::of_blake3(value).to_hex())
}

#[async_trait::async_trait]
impl Cas for ObjectStoreCas {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let present: Vec<(Digest, bool)> = futures::stream::iter(digests.iter().copied())
            .map(|d| async move { Ok::<_, CasError>((d, self.head(&self.blob_path(&d)).await?.is_some())) })
            .buffered(HEAD_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(present.into_iter().filter(|(_, here)| !here).map(|(d, _)| d).collect())
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        Ok(self.head(&self.blob_path(digest)).await?.map(|size| BlobInfo { size }))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Blob> {
        let path = self.blob_path(digest);
        let size = self
            .head(&path)
            .await?
            .ok_or_else(|| CasError::not_found(format!("blob {digest}")))?;
        let span = match range {
            None => 0..size,
            Some(r) => r.resolve(size).ok_or(CasError::RangeNotSatisfiable { size })?,
        };
        let whole = span == (0..size);
        if size == 0 {
            let body: ByteStream = Box::pin(futures::stream::empty());
            let body = verified_stream(*digest, Some(0), body);
            return Ok(Blob {
                size,
                range: span,
                body,
            });
        }
        let opts = GetOptions::new().with_range((!whole).then(|| GetRange::Bounded(span.clone())));
        let result = self.store.get_opts(&path, opts).await.map_err(backend)?;
        let body: ByteStream = Box::pin(result.into_stream().map_err(std::io::Error::other));
        let body = if whole {
            verified_stream(*digest, Some(size), body)
        } else {
            body
        };
        Ok(Blob {
            size,
            range: span,
            body,
        })
    }

    async fn put(&self, digest: &Digest, size: Option<u64>, mut body: ByteStream) -> Result<PutOutcome> {
        let path = self.blob_path(digest);
        if self.head(&path).await?.is_some() {
            return Ok(PutOutcome::Existed);
        }
        let mut hasher = Hasher::new(digest.kind());
        let mut buf = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            buf.extend_from_slice(&chunk);
            if size.is_some_and(|s| buf.len() as u64 > s) {
                return Err(CasError::SizeMismatch {
                    expected: size.unwrap_or_default(),
                    actual: buf.len() as u64,
                });
            }
            if buf.len() > SINGLE_PUT_MAX {
                self.put_multipart(&path, digest, size, buf, hasher, body).await?;
                return Ok(PutOutcome::Created);
            }
        }
        check_body(digest, size, buf.len() as u64, &hasher)?;
        self.store
            .put(&path, PutPayload::from(buf.freeze()))
            .await
            .map_err(backend)?;
        Ok(PutOutcome::Created)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let path = self.blob_path(digest);
        if self.head(&path).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&path).await {
            Ok(()) | Err(::object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(backend(e)),
        }
    }

    async fn ac_get(&self, key: &Digest) -> Result<Option<Bytes>> {
        Ok(self.get_small(&self.ac_path(key)).await?.map(|(v, _)| v))
    }

    async fn ac_put(&self, key: &Digest, value: Bytes) -> Result<()> {
        if value.len() > MAX_AC_VALUE {
            return Err(CasError::TooLarge {
                size: value.len() as u64,
                limit: MAX_AC_VALUE as u64,
            });
        }
        self.store
            .put(&self.ac_path(key), PutPayload::from(value))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn ref_get(&self, name: &str) -> Result<Option<RefValue>> {
        let path = self.ref_path(name)?;
        Ok(self.get_small(&path).await?.map(|(value, _)| RefValue {
            etag: ref_etag(&value),
            value,
        }))
    }

    async fn ref_put(&self, name: &str, value: Bytes, cond: RefCondition) -> Result<String> {
        let path = self.ref_path(name)?;
        if value.len() > MAX_REF_VALUE {
            return Err(CasError::TooLarge {
                size: value.len() as u64,
                limit: MAX_REF_VALUE as u64,
            });
        }
        let etag = ref_etag(&value);
        let lost = || CasError::PreconditionFailed { name: name.to_string() };
        let mode = match &cond {
            RefCondition::Always => PutMode::Overwrite,
            RefCondition::IfAbsent => PutMode::Create,
            RefCondition::IfMatch(want) => {
                let (current, meta) = self.get_small(&path).await?.ok_or_else(lost)?;
                if ref_etag(&current) != *want {
                    return Err(lost());
                }
                PutMode::Update(UpdateVersion {
                    e_tag: meta.e_tag,
                    version: meta.version,
                })
            }
        };
        let conditional = matches!(mode, PutMode::Update(_));
        let payload = PutPayload::from(value);
        match self
            .store
            .put_opts(&path, payload.clone(), PutOptions::from(mode))
            .await
        {
            Ok(_) => Ok(etag),
            Err(::object_store::Error::NotImplemented { .. } | ::object_store::Error::NotSupported { .. })
                if conditional =>
            {
                // No conditional update on this backend: the etag check above is all we have.
                self.store.put(&path, payload).await.map_err(backend)?;
                Ok(etag)
            }
            Err(::object_store::Error::Precondition { .. } | ::object_store::Error::AlreadyExists { .. }) => {
                Err(lost())
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn ref_delete(&self, name: &str, cond: RefCondition) -> Result<bool> {
        let path = self.ref_path(name)?;
        let current = self.get_small(&path).await?;
        let lost = || CasError::PreconditionFailed { name: name.to_string() };
        match (&cond, &current) {
            (RefCondition::IfAbsent, Some(_)) => return Err(lost()),
            (RefCondition::IfMatch(want), Some((v, _))) if ref_etag(v) != *want => return Err(lost()),
            (RefCondition::IfMatch(_), None) => return Err(lost()),
            _ => {}
        }
        if current.is_none() {
            return Ok(false);
        }
        match self.store.delete(&path).await {
            Ok(()) | Err(::object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(backend(e)),
        }
    }

    async fn ref_list(&self, prefix: &str) -> Result<Vec<String>> {
        let root = self.refs_root();
        let metas: Vec<::object_store::ObjectMeta> =
            self.store.list(Some(&root)).try_collect().await.map_err(backend)?;
        let mut names: Vec<String> = metas
            .iter()
            .filter_map(|m| {
                let parts: Vec<String> = m
                    .location
                    .prefix_match(&root)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                Some(parts.join("/"))
            })
            .filter(|n| n.starts_with(prefix) && validate_ref_name(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cas::{bytes_stream, CasExt};

    fn memory() -> ObjectStoreCas {
        ObjectStoreCas::new(Arc::new(::object_store::memory::InMemory::new()), Path::from("pre/fix"))
    }

    fn chunks(data: Vec<u8>, size: usize) -> ByteStream {
        let parts: Vec<std::io::Result<Bytes>> = Bytes::from(data)
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(parts))
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The same checks for every backend.
    async fn conformance(cas: ObjectStoreCas) {
        let small = Bytes::from_static(b"hello object store");
        let d = Digest::of_blake3(&small);
        assert_eq!(cas.find_missing(&[d]).await.unwrap(), vec![d]);
        assert_eq!(cas.stat(&d).await.unwrap(), None);
        assert!(matches!(cas.get(&d, None).await, Err(CasError::NotFound { .. })));
        assert_eq!(cas.put_bytes(small.clone()).await.unwrap(), d);
        assert_eq!(
            cas.put(&d, None, bytes_stream(small.clone())).await.unwrap(),
            PutOutcome::Existed
        );
        assert!(cas.find_missing(&[d]).await.unwrap().is_empty());
        assert_eq!(
            cas.stat(&d).await.unwrap(),
            Some(BlobInfo {
                size: small.len() as u64
            })
        );
        assert_eq!(cas.get_bytes(&d).await.unwrap(), small);
        let part = cas.get(&d, Some(ByteRange::FromTo(6, 11))).await.unwrap();
        assert_eq!(part.range, 6..12);
        assert_eq!(&part.bytes().await.unwrap()[..], b"object");

        // A body that does not hash to its name is refused and leaves nothing behind.
        let other = Digest::of_blake3(b"something else");
        let err = cas.put(&other, None, bytes_stream(small.clone())).await.unwrap_err();
        assert!(matches!(err, CasError::DigestMismatch { .. }), "{err}");
        assert_eq!(cas.find_missing(&[other]).await.unwrap(), vec![other]);
        let err = cas.put(&other, Some(3), bytes_stream(small.clone())).await.unwrap_err();
        assert!(matches!(err, CasError::SizeMismatch { .. }), "{err}");

        // The empty blob.
        let empty = cas.put_bytes(Bytes::new()).await.unwrap();
        assert_eq!(cas.get_bytes(&empty).await.unwrap().len(), 0);

        // A large blob goes through multipart, streaming, and verifies on read.
        let big = noise(SINGLE_PUT_MAX + 3 * 1024 * 1024 + 17);
        let bd = Digest::of_blake3(&big);
        let wrong = Digest::of_blake3(b"not the big one");
        let err = cas.put(&wrong, None, chunks(big.clone(), 1 << 20)).await.unwrap_err();
        assert!(matches!(err, CasError::DigestMismatch { .. }), "{err}");
        assert_eq!(cas.find_missing(&[wrong]).await.unwrap(), vec![wrong]);
        let n = big.len() as u64;
        assert_eq!(
            cas.put(&bd, Some(n), chunks(big.clone(), 1 << 20)).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(&cas.get_bytes(&bd).await.unwrap()[..], &big[..]);
        assert_eq!(cas.find_missing(&[d, wrong, bd]).await.unwrap(), vec![wrong]);

        // SHA-256 blobs live beside, not among, BLAKE3 ones.
        let sd = Digest::of_sha256(&small);
        cas.put(&sd, None, bytes_stream(small.clone())).await.unwrap();
        assert_eq!(cas.get_bytes(&sd).await.unwrap(), small);

        assert!(cas.delete(&d).await.unwrap());
        assert!(!cas.delete(&d).await.unwrap());
        assert_eq!(cas.find_missing(&[d]).await.unwrap(), vec![d]);

        // Action cache.
        let key = Digest::of_blake3(b"action");
        assert_eq!(cas.ac_get(&key).await.unwrap(), None);
        cas.ac_put(&key, Bytes::from_static(b"{\"v\":1}")).await.unwrap();
        assert_eq!(
            cas.ac_get(&key).await.unwrap().unwrap(),
            Bytes::from_static(b"{\"v\":1}")
        );
        let too_big = Bytes::from(vec![0u8; MAX_AC_VALUE + 1]);
        assert!(matches!(
            cas.ac_put(&key, too_big).await,
            Err(CasError::TooLarge { .. })
        ));

        // Refs with compare-and-swap.
        assert_eq!(cas.ref_get("snap/a").await.unwrap(), None);
        let e1 = cas
            .ref_put("snap/a", Bytes::from_static(b"one"), RefCondition::IfAbsent)
            .await
            .unwrap();
        let again = cas
            .ref_put("snap/a", Bytes::from_static(b"x"), RefCondition::IfAbsent)
            .await;
        assert!(matches!(again, Err(CasError::PreconditionFailed { .. })));
        let e2 = cas
            .ref_put("snap/a", Bytes::from_static(b"two"), RefCondition::IfMatch(e1.clone()))
            .await
            .unwrap();
        assert_ne!(e1, e2);
        let stale = cas
            .ref_put("snap/a", Bytes::from_static(b"3"), RefCondition::IfMatch(e1.clone()))
            .await;
        assert!(matches!(stale, Err(CasError::PreconditionFailed { .. })));
        let got = cas.ref_get("snap/a").await.unwrap().unwrap();
        assert_eq!((got.value, got.etag), (Bytes::from_static(b"two"), e2.clone()));
        cas.ref_put("snap/b", Bytes::from_static(b"b"), RefCondition::Always)
            .await
            .unwrap();
        cas.ref_put("other", Bytes::from_static(b"o"), RefCondition::Always)
            .await
            .unwrap();
        assert_eq!(cas.ref_list("snap/").await.unwrap(), vec!["snap/a", "snap/b"]);
        assert_eq!(cas.ref_list("").await.unwrap().len(), 3);
        assert!(matches!(cas.ref_get("../x").await, Err(CasError::InvalidInput(_))));
        let bad = cas.ref_delete("snap/a", RefCondition::IfMatch(e1)).await;
        assert!(matches!(bad, Err(CasError::PreconditionFailed { .. })));
        assert!(cas.ref_delete("snap/a", RefCondition::IfMatch(e2)).await.unwrap());
        assert!(!cas.ref_delete("snap/a", RefCondition::Always).await.unwrap());
        assert_eq!(cas.ref_list("snap/").await.unwrap(), vec!["snap/b"]);
    }

    #[tokio::test]
    async fn in_memory_conformance() {
        conformance(memory()).await;
    }

    #[tokio::test]
    async fn local_filesystem_conformance() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/store/nested", dir.path().display());
        conformance(ObjectStoreCas::from_url(&url, []).unwrap()).await;
        // The documented layout.
        let d = Digest::of_blake3(b"layout");
        let cas = ObjectStoreCas::from_url(&url, []).unwrap();
        cas.put_bytes(Bytes::from_static(b"layout")).await.unwrap();
        let hex = d.to_hex();
        let on_disk = dir.path().join("store/nested/cas").join(&hex[..2]).join(&hex);
        assert_eq!(std::fs::read(on_disk).unwrap(), b"layout");
    }

    #[tokio::test]
    async fn corrupt_object_fails_on_read() {
        let cas = memory();
        let d = cas.put_bytes(Bytes::from_static(b"original")).await.unwrap();
        // Tamper with the stored object behind the Cas's back.
        cas.inner()
            .put(&cas.blob_path(&d), PutPayload::from_static(b"tampered"))
            .await
            .unwrap();
        let err = cas.get_bytes(&d).await.unwrap_err();
        assert!(err.to_string().contains("hash"), "{err}");
    }

    #[test]
    fn rejects_bad_urls() {
        assert!(matches!(
            ObjectStoreCas::from_url("not a url", []),
            Err(CasError::InvalidInput(_))
        ));
        assert!(ObjectStoreCas::from_url("ftp://host/x", []).is_err());
    }
}
