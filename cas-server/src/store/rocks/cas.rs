//! The async [`Cas`] face of the store: each call runs on the blocking pool.

use super::read::stream_pieces;
use super::write::Committed;
use super::*;

/// Largest one-piece blob read without a trip to the blocking pool.
const INLINE_READ_MAX: u64 = 64 << 10;

/// Largest upload committed without a trip to the blocking pool (when writes are not fsynced).
const INLINE_PUT_MAX: u64 = 64 << 10;

/// Reads up to `declared + 1` bytes of a body (one more than declared lets the store report a
/// size mismatch instead of a truncated blob).
async fn gather(mut body: ByteStream, declared: u64) -> Result<bytes::BytesMut> {
    use futures::StreamExt;
    let limit = declared as usize + 1;
    let mut buf = bytes::BytesMut::with_capacity(limit.min(INLINE_PUT_MAX as usize + 1));
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(body_err)?;
        let room = limit - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= limit {
            break;
        }
    }
    Ok(buf)
}

impl RocksStore {
    /// Stores a body under the `kind` digest of its bytes, whatever they are; returns that digest
    /// (see [`RocksStore::put_reader_by_content`]). A small body of known size is hashed first and
    /// committed like any named upload; others stream into pieces on the blocking pool.
    pub async fn put_by_content(
        &self,
        kind: HashKind,
        size: Option<u64>,
        body: ByteStream,
    ) -> Result<(Digest, PutOutcome)> {
        if let Some(n) = size.filter(|n| *n <= INLINE_PUT_MAX) {
            let bytes = gather(body, n).await?;
            let d = kind.digest(&bytes);
            // A body longer than announced reaches the store, which reports the mismatch.
            let outcome = self
                .put(&d, size, reprovm_sdk::cas::bytes_stream(bytes.freeze()))
                .await?;
            return Ok((d, outcome));
        }
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
        self.blocking(move |s| s.put_reader_by_content(kind, size, reader))
            .await
    }
}

#[async_trait::async_trait]
impl Cas for RocksStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let digests = digests.to_vec();
        self.blocking(move |s| s.missing(&digests)).await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        let d = *digest;
        // A meta record is small and its blocks are mostly in the page cache: read it here.
        Ok(self.meta(&d)?.map(|m| BlobInfo { size: m.size }))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Blob> {
        let d = *digest;
        // Small blobs are read and verified on this thread (from the block cache, or a read of a
        // few KiB that the page cache almost always answers): a hand-off to the blocking pool and
        // back costs more than the read. Larger one-piece blobs take one trip to the pool;
        // multi-piece blobs stream from it.
        let (meta, span, small) = match self.try_open_blob_cached(&d, range) {
            Some(r) => r?,
            None => match self.meta(&d)? {
                None => return Err(CasError::not_found(format!("blob {d}"))),
                Some(m) if m.pieces() > 1 || m.size <= INLINE_READ_MAX => self.open_blob_with(&d, m, range)?,
                Some(m) => self.blocking(move |s| s.open_blob_with(&d, m, range)).await?,
            },
        };
        let body = match small {
            Some(data) => reprovm_sdk::cas::bytes_stream(data),
            None => {
                let verify = span == (0..meta.size) && self.inner.opts.verify_reads;
                stream_pieces(self.clone(), d, meta, span.clone(), verify)
            }
        };
        Ok(Blob {
            size: meta.size,
            range: span,
            body,
        })
    }

    async fn put(&self, digest: &Digest, size: Option<u64>, body: ByteStream) -> Result<PutOutcome> {
        let d = *digest;
        if let Some(n) = size.filter(|n| *n <= INLINE_PUT_MAX && !self.inner.opts.sync_writes) {
            // A small upload is gathered here, then hashed and committed on this thread: one
            // memtable write and one WAL append (no fsync) cost less than the hand-off to the
            // blocking pool and back, which dominated small PUTs.
            // If RocksDB stalls writes or the commit lock is busy, the commit gives way and the
            // upload goes to the blocking pool instead of holding up this worker.
            let bytes = gather(body, n).await?;
            return match self.put_inline(&d, size, &bytes[..])? {
                Committed::Done(_, outcome) => Ok(outcome),
                Committed::WouldBlock => self.blocking(move |s| s.put_reader(&d, size, &bytes[..])).await,
            };
        }
        let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
        self.blocking(move |s| s.put_reader(&d, size, reader)).await
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let d = *digest;
        self.blocking(move |s| s.delete_blob(&d)).await
    }

    async fn ac_get(&self, key: &Digest) -> Result<Option<Bytes>> {
        let k = *key;
        self.blocking(move |s| s.ac_get_sync(&k)).await
    }

    async fn ac_put(&self, key: &Digest, value: Bytes) -> Result<()> {
        let k = *key;
        self.blocking(move |s| s.ac_put_sync(&k, &value)).await
    }

    async fn ref_get(&self, name: &str) -> Result<Option<RefValue>> {
        let n = name.to_string();
        self.blocking(move |s| s.ref_get_sync(&n)).await
    }

    async fn ref_put(&self, name: &str, value: Bytes, cond: RefCondition) -> Result<String> {
        let n = name.to_string();
        self.blocking(move |s| s.ref_put_sync(&n, &value, &cond)).await
    }

    async fn ref_delete(&self, name: &str, cond: RefCondition) -> Result<bool> {
        let n = name.to_string();
        self.blocking(move |s| s.ref_delete_sync(&n, &cond)).await
    }

    async fn ref_list(&self, prefix: &str) -> Result<Vec<String>> {
        let p = prefix.to_string();
        self.blocking(move |s| s.ref_list_sync(&p)).await
    }
}
