//! Reads: existence checks, one-piece reads, and streamed multi-piece reads.

use super::*;

/// A blob looked up for reading: its meta, the byte span asked for, and for a
/// one-piece blob the verified bytes of that span.
pub type OpenedBlob = (BlobMeta, std::ops::Range<u64>, Option<Bytes>);

/// Why a read did not complete.
pub(super) enum ReadError {
    /// The read was restricted to memory and the data is on disk only.
    NeedsIo,
    /// A real error.
    Cas(CasError),
}

impl From<CasError> for ReadError {
    fn from(e: CasError) -> Self {
        Self::Cas(e)
    }
}

impl ReadError {
    fn into_cas(self) -> CasError {
        match self {
            Self::Cas(e) => e,
            Self::NeedsIo => CasError::Backend("read needs I/O".into()),
        }
    }
}

/// One-piece blobs at least this large are read without RocksDB's CRC (see `open_blob_tier`).
const UNCHECKED_PIECE_MIN: u64 = 64 << 10;

impl RocksStore {
    /// A point lookup; with `cached_only` it is answered from the memtables and
    /// the block cache, or fails with `NeedsIo` instead of touching the disk.
    fn lookup(
        &self,
        cf: &str,
        key: &[u8],
        cached_only: bool,
    ) -> Result<Option<rocksdb::DBPinnableSlice<'_>>, ReadError> {
        self.lookup_opts(cf, key, cached_only, true)
    }

    /// [`RocksStore::lookup`]; without `checksums`, RocksDB does not check its own CRCs (for reads
    /// that are verified against the blob's digest before a byte is sent).
    fn lookup_opts(
        &self,
        cf: &str,
        key: &[u8],
        cached_only: bool,
        checksums: bool,
    ) -> Result<Option<rocksdb::DBPinnableSlice<'_>>, ReadError> {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_verify_checksums(checksums);
        // A block read without its checksum must not enter the shared block cache, where later
        // reads that rely on the checksum would take it unchecked.
        opts.fill_cache(checksums);
        if cached_only {
            opts.set_read_tier(rocksdb::ReadTier::BlockCache);
        }
        match self.inner.db.get_pinned_cf_opt(self.cf(cf), key, &opts) {
            Ok(v) => Ok(v),
            Err(e) if cached_only && e.kind() == rocksdb::ErrorKind::Incomplete => Err(ReadError::NeedsIo),
            Err(e) => Err(ReadError::Cas(db_err(e))),
        }
    }

    /// Reads and decodes one piece.
    pub fn read_piece(&self, meta: &BlobMeta, idx: u32) -> Result<Vec<u8>> {
        self.read_piece_tier(meta, idx, false, true)
            .map_err(ReadError::into_cas)
    }

    /// Reads one piece; `checksums` as in [`RocksStore::lookup_opts`].
    fn read_piece_tier(
        &self,
        meta: &BlobMeta,
        idx: u32,
        cached_only: bool,
        checksums: bool,
    ) -> Result<Vec<u8>, ReadError> {
        let stored = self
            .lookup_opts(CF_DATA, &piece_key(meta.data_id, idx), cached_only, checksums)?
            .ok_or_else(|| CasError::Corrupt(format!("piece {idx} of data {} is missing", meta.data_id)))?;
        let piece = piece::decode(&stored, meta.piece_len(idx))
            .map_err(|e| CasError::Corrupt(format!("piece {idx} of data {}: {e}", meta.data_id)))?;
        Ok(piece)
    }

    /// [`RocksStore::open_blob`] answered from memory only: `None` when it would need the disk.
    /// Lets the async front end serve hot small blobs without a trip to the blocking pool.
    pub fn try_open_blob_cached(&self, digest: &Digest, range: Option<ByteRange>) -> Option<Result<OpenedBlob>> {
        match self.open_blob_tier(digest, range, true) {
            Ok(x) => Some(Ok(x)),
            Err(ReadError::NeedsIo) => None,
            Err(ReadError::Cas(e)) => Some(Err(e)),
        }
    }

    /// Looks a blob up for reading: its meta, the byte span `range` selects,
    /// and, for a blob of at most one piece, the verified bytes of that span.
    pub fn open_blob(&self, digest: &Digest, range: Option<ByteRange>) -> Result<OpenedBlob> {
        self.open_blob_tier(digest, range, false).map_err(ReadError::into_cas)
    }

    fn open_blob_tier(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
        cached_only: bool,
    ) -> Result<OpenedBlob, ReadError> {
        let meta = match self.lookup(CF_META, &meta_key(digest), cached_only)? {
            Some(v) => BlobMeta::decode(&v)?,
            None => return Err(CasError::not_found(format!("blob {digest}")).into()),
        };
        self.open_blob_meta(digest, meta, range, cached_only)
    }

    /// [`RocksStore::open_blob`] of a blob whose meta record the caller has read already.
    pub fn open_blob_with(&self, digest: &Digest, meta: BlobMeta, range: Option<ByteRange>) -> Result<OpenedBlob> {
        self.open_blob_meta(digest, meta, range, false)
            .map_err(ReadError::into_cas)
    }

    fn open_blob_meta(
        &self,
        digest: &Digest,
        meta: BlobMeta,
        range: Option<ByteRange>,
        cached_only: bool,
    ) -> Result<OpenedBlob, ReadError> {
        let span = match range {
            None => 0..meta.size,
            Some(r) => r
                .resolve(meta.size)
                .ok_or(CasError::RangeNotSatisfiable { size: meta.size })?,
        };
        if meta.pieces() > 1 {
            self.touch(digest);
            return Ok((meta, span, None));
        }
        let piece = if meta.size == 0 {
            Vec::new()
        } else {
            // A large piece (a RocksDB blob-file value, never in the block cache) is verified
            // against the digest below before any byte is sent, so RocksDB's own CRC of it would
            // check the same bytes twice. Small pieces share SST blocks with others and keep it.
            let checksums = !self.inner.opts.verify_reads || meta.size < UNCHECKED_PIECE_MIN;
            self.read_piece_tier(&meta, 0, cached_only, checksums)?
        };
        self.touch(digest);
        // Small blobs are always verified, ranged or not: never send bytes that fail their digest.
        if self.inner.opts.verify_reads && digest.kind().digest(&piece) != *digest {
            tracing::error!(%digest, "stored blob fails verification");
            return Err(CasError::Corrupt(format!("stored blob {digest} fails verification")).into());
        }
        let data = Bytes::from(piece).slice(span.start as usize..span.end as usize);
        Ok((meta, span, Some(data)))
    }

    /// The digests among `digests` that are not stored, in order.
    pub fn missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let cf = self.cf(CF_META);
        // One batched lookup in key order (RocksDB then walks each file once); the bloom filters
        // answer most absent keys without reading a block.
        let mut keys: Vec<([u8; DIGEST_LEN + 1], usize)> =
            digests.iter().enumerate().map(|(i, d)| (meta_key(d), i)).collect();
        keys.sort_unstable();
        // Only presence is read here, so RocksDB's block checksums (a third of this call's time at
        // 1M blobs) are not checked, and the blocks read stay out of the block cache (where reads
        // that rely on the checksum would take them unchecked). A record that does not decode
        // counts as missing: GET cannot serve it, and the client's upload replaces it.
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_verify_checksums(false);
        opts.fill_cache(false);
        let found = self
            .inner
            .db
            .batched_multi_get_cf_opt(&cf, keys.iter().map(|(k, _)| k), true, &opts);
        let mut absent = vec![false; digests.len()];
        for ((_, i), r) in keys.iter().zip(found) {
            absent[*i] = r.map_err(db_err)?.is_none_or(|v| BlobMeta::decode(&v).is_err());
        }
        Ok(digests
            .iter()
            .zip(absent)
            .filter(|(_, a)| *a)
            .map(|(d, _)| *d)
            .collect())
    }
}

/// Streams pieces `first..=last` of a blob, sliced to `range`, from a blocking
/// thread through a small channel (bounded memory). With `verify`, the whole
/// blob is re-hashed and a mismatch ends the stream with an error.
pub(super) fn stream_pieces(
    store: RocksStore,
    digest: Digest,
    meta: BlobMeta,
    range: std::ops::Range<u64>,
    verify: bool,
) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let ps = u64::from(meta.piece_size);
        let first = (range.start / ps) as u32;
        let last = ((range.end.max(1) - 1) / ps) as u32;
        let mut hasher = verify.then(|| Hasher::new(digest.kind()));
        for idx in first..=last.min(meta.pieces().saturating_sub(1)) {
            let piece = match store.read_piece(&meta, idx) {
                Ok(p) => p,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            };
            if let Some(h) = &mut hasher {
                h.update(&piece);
            }
            let base = u64::from(idx) * ps;
            let lo = range.start.saturating_sub(base) as usize;
            let hi = ((range.end - base) as usize).min(piece.len());
            let mut chunk = Bytes::from(piece);
            if lo > 0 || hi < chunk.len() {
                chunk = chunk.slice(lo..hi);
            }
            let is_last = idx == last;
            if let Some(h) = hasher.as_ref().filter(|_| is_last) {
                let actual = h.finalize();
                if actual != digest {
                    tracing::error!(%digest, %actual, "stored blob fails verification; aborting the read");
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("stored blob {digest} is corrupt"),
                    )));
                    return;
                }
            }
            if tx.blocking_send(Ok(chunk)).is_err() {
                return; // reader went away
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
