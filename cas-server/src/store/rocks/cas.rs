//! The async [`Cas`] face of the store: each call runs on the blocking pool.

use super::read::{stream_pieces, ReadError};
use super::*;

#[async_trait::async_trait]
impl Cas for RocksStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let digests = digests.to_vec();
        self.blocking(move |s| s.missing(&digests)).await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        let d = *digest;
        let meta = match self.meta_cached(&d) {
            Ok(m) => m,
            Err(ReadError::Cas(e)) => return Err(e),
            Err(ReadError::NeedsIo) => self.blocking(move |s| s.meta(&d)).await?,
        };
        Ok(meta.map(|m| BlobInfo { size: m.size }))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Blob> {
        let d = *digest;
        // Hot small blobs are served from memory on the spot; anything that needs the disk
        // takes one trip to the blocking pool (meta, and for a one-piece blob its bytes too).
        let (meta, span, small) = match self.try_open_blob_cached(&d, range) {
            Some(r) => r?,
            None => self.blocking(move |s| s.open_blob(&d, range)).await?,
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
