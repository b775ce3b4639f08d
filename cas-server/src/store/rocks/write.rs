//! Writes: verified uploads in bounded pieces, atomic commit, cleanup of failed uploads, deletes.

use super::*;
use crate::store::sync_queue::SyncItem;

impl RocksStore {
    /// Refuses an upload of `incoming` bytes when the filesystem would drop
    /// below the reserve. The free-space figure is re-read at most every
    /// 250 ms (and always for uploads larger than the reserve), so small
    /// uploads do not pay a `statvfs` each.
    fn check_space(&self, incoming: u64) -> Result<()> {
        let reserve = self.inner.opts.min_free_space;
        let free = {
            let mut cached = self.inner.free_space_cache.lock().unwrap_or_else(|p| p.into_inner());
            let stale = cached
                .0
                .is_none_or(|t| t.elapsed() > std::time::Duration::from_millis(250));
            if stale || incoming > reserve {
                *cached = (Some(std::time::Instant::now()), self.free_space()?);
            }
            cached.1
        };
        let need = incoming.saturating_add(reserve);
        if free < need {
            return Err(CasError::InsufficientStorage(format!(
                "{free} bytes free on the data dir's filesystem; this upload needs {incoming} plus a reserve of {}",
                self.inner.opts.min_free_space
            )));
        }
        Ok(())
    }

    /// Whether a readable blob is stored under `digest`. A corrupt meta record does not count:
    /// an upload of the right bytes replaces it (and so heals the blob).
    fn holds_readable(&self, digest: &Digest) -> Result<bool> {
        match self.meta(digest) {
            Ok(m) => Ok(m.is_some()),
            Err(CasError::Corrupt(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The size a (corrupt) meta record still shows, 0 when it shows none.
    pub(super) fn raw_meta_size(&self, digest: &Digest) -> Result<u64> {
        let raw = self
            .inner
            .db
            .get_cf(&self.cf(CF_META), meta_key(digest))
            .map_err(db_err)?;
        Ok(raw.and_then(|r| BlobMeta::raw_size(&r)).unwrap_or(0))
    }

    /// Reserves room for `incoming` more bytes of an upload under `max_size_hard_limit` (507
    /// when the stored bytes plus every upload's reservation would pass it). Reservations make the
    /// limit hold for concurrent uploads too; `held` is what this upload has reserved so far.
    fn reserve(&self, held: &mut Reservation<'_>, incoming: u64) -> Result<()> {
        let Some(limit) = self.inner.opts.hard_limit else {
            return Ok(());
        };
        let reserved = &self.inner.reserved_bytes;
        let mut current = reserved.load(Ordering::SeqCst);
        loop {
            let stored = self.inner.counters.logical_bytes.load(Ordering::Relaxed);
            if stored.saturating_add(current).saturating_add(incoming) > limit {
                return Err(CasError::InsufficientStorage(format!(
                    "the store holds {stored} bytes and uploads in flight {} more; this upload of {} bytes would pass max_size_hard_limit ({limit} bytes)",
                    current.saturating_sub(held.bytes),
                    held.bytes + incoming
                )));
            }
            match reserved.compare_exchange(current, current + incoming, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        held.bytes += incoming;
        Ok(())
    }

    /// Stores the bytes of `reader` under `digest`, hashing while it writes.
    /// Synchronous: call from a blocking context.
    pub fn put_reader(&self, digest: &Digest, size: Option<u64>, reader: impl Read) -> Result<PutOutcome> {
        match self.put_reader_with(Name::Given(digest), size, reader, false)? {
            Committed::Done(_, outcome) => Ok(outcome),
            Committed::WouldBlock => unreachable!("only inline commits give way"),
        }
    }

    /// Stores the bytes of `reader` under the `kind` digest of what it reads (for values whose
    /// digest the sender does not know, such as `/kv/` values); returns that digest. The bytes
    /// stream into pieces as they arrive; an upload of bytes already stored keeps the stored blob.
    /// Synchronous: call from a blocking context.
    pub fn put_reader_by_content(
        &self,
        kind: HashKind,
        size: Option<u64>,
        reader: impl Read,
    ) -> Result<(Digest, PutOutcome)> {
        match self.put_reader_with(Name::ByContent(kind), size, reader, false)? {
            Committed::Done(d, outcome) => Ok((d, outcome)),
            Committed::WouldBlock => unreachable!("only inline commits give way"),
        }
    }

    /// [`RocksStore::put_reader`] for a small upload on an async worker: instead of waiting for a
    /// RocksDB write stall or a busy commit lock, it gives way (`WouldBlock`, nothing stored) so
    /// that the caller can retry on the blocking pool.
    pub(super) fn put_inline(&self, digest: &Digest, size: Option<u64>, bytes: &[u8]) -> Result<Committed> {
        self.put_reader_with(Name::Given(digest), size, bytes, true)
    }

    fn put_reader_with(
        &self,
        name: Name<'_>,
        size: Option<u64>,
        mut reader: impl Read,
        inline: bool,
    ) -> Result<Committed> {
        let opts = &self.inner.opts;
        if let Some(size) = size {
            if size > opts.max_blob_size {
                return Err(CasError::TooLarge {
                    size,
                    limit: opts.max_blob_size,
                });
            }
        }
        let expected = match name {
            Name::Given(d) => Some(*d),
            Name::ByContent(_) => None,
        };
        // Checked before the body only when the digest is known; a content-named upload finds
        // out at its commit (which then keeps the stored blob and drops the new pieces).
        if let Some(digest) = expected {
            if self.holds_readable(&digest)? {
                // Already stored: read the body to keep the connection usable, store nothing.
                std::io::copy(&mut reader.take(opts.max_blob_size), &mut std::io::sink()).map_err(body_err)?;
                return Ok(Committed::Done(digest, PutOutcome::Existed));
            }
        }
        self.check_space(size.unwrap_or(opts.piece_size as u64))?;
        // Checked before the body when its size is declared, and as it streams when it is not.
        let mut reservation = Reservation { store: self, bytes: 0 };
        self.reserve(&mut reservation, size.unwrap_or(0))?;
        let mut upload = Upload {
            store: self,
            data_id: None,
            staged: false,
            unlogged: false,
            inline,
        };
        let mut hasher = Hasher::new(match name {
            Name::Given(d) => d.kind(),
            Name::ByContent(kind) => kind,
        });
        // The piece buffer grows as bytes arrive, so a 4 KiB upload does not touch 1 MiB.
        let first_cap = size.map_or(64 << 10, |s| s as usize + 1).min(opts.piece_size);
        let mut buf: Vec<u8> = Vec::with_capacity(first_cap);
        let mut total = 0u64;
        let mut idx = 0u32;
        let mut last_piece: Option<Vec<u8>> = None;
        let mut incompressible_run = 0u32;
        loop {
            buf.clear();
            (&mut reader)
                .take(opts.piece_size as u64)
                .read_to_end(&mut buf)
                .map_err(body_err)?;
            let n = buf.len();
            total += n as u64;
            if total > opts.max_blob_size {
                return Err(CasError::TooLarge {
                    size: total,
                    limit: opts.max_blob_size,
                });
            }
            if let Some(size) = size.filter(|s| total > *s) {
                return Err(CasError::SizeMismatch {
                    expected: size,
                    actual: total,
                });
            }
            if size.is_none() {
                self.reserve(&mut reservation, n as u64)?;
            }
            if n == 0 {
                break;
            }
            hasher.update(&buf);
            // Incompressible data (already compressed artifacts, media) stays incompressible:
            // after a piece that did not shrink, only every 16th piece tries again.
            let codec = if incompressible_run.is_multiple_of(16) {
                opts.compression
            } else {
                Compression::None
            };
            let encoded = piece::encode(&buf, codec, opts.compression_level);
            incompressible_run = if piece::is_raw(&encoded) {
                incompressible_run + 1
            } else {
                0
            };
            if n < opts.piece_size && idx == 0 {
                // The whole blob fits one piece: it is written with the commit, in one batch.
                last_piece = Some(encoded);
                break;
            }
            upload.write_piece(idx, &encoded)?;
            idx += 1;
            if n < opts.piece_size {
                break;
            }
        }
        if let Some(size) = size.filter(|s| total != *s) {
            return Err(CasError::SizeMismatch {
                expected: size,
                actual: total,
            });
        }
        let actual = hasher.finalize();
        if let Some(expected) = expected.filter(|d| *d != actual) {
            return Err(CasError::DigestMismatch { expected, actual });
        }
        let meta = BlobMeta {
            size: total,
            piece_size: opts.piece_size as u32,
            data_id: NO_DATA,
            stored_at: now_secs(),
        };
        upload.commit(&actual, meta, last_piece)
    }

    /// Removes a blob; returns whether it existed.
    pub fn delete_blob(&self, digest: &Digest) -> Result<bool> {
        let _g = self.lock_for(digest);
        let Some(raw) = self
            .inner
            .db
            .get_cf(&self.cf(CF_META), meta_key(digest))
            .map_err(db_err)?
        else {
            return Ok(false);
        };
        // A corrupt record goes too (its pieces cannot be told apart safely, so they stay).
        let meta = BlobMeta::decode(&raw).ok();
        let mut batch = WriteBatch::default();
        batch.delete_cf(&self.cf(CF_META), meta_key(digest));
        batch.delete_cf(self.cf(CF_ATIME), meta_key(digest));
        let unqueued = self.sync_remove_in(&mut batch, &SyncItem::Blob(*digest))?;
        // Every record is counted, a corrupt one with the size it still shows (0 if none).
        let size = meta.map_or_else(|| BlobMeta::raw_size(&raw).unwrap_or(0), |m| m.size);
        self.tally_in(&mut batch, -1, -(size as i64), 0);
        // Only the blob's own pieces go. The empty blob has none (and in stores written before
        // data ids were leased, its id may since have been given to another blob).
        if let Some(meta) = meta.filter(|m| m.size > 0 && m.data_id != NO_DATA) {
            batch.delete_range_cf(
                &self.cf(CF_DATA),
                piece_key(meta.data_id, 0),
                piece_key(meta.data_id + 1, 0),
            );
        }
        self.inner
            .db
            .write_opt(batch, &self.write_opts(self.inner.opts.sync_writes))
            .map_err(db_err)?;
        self.sync_counted(false, unqueued);
        let c = &self.inner.counters;
        let sub = |a: &AtomicU64, n: u64| {
            let _ = a.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(n)));
        };
        sub(&c.blobs, 1);
        sub(&c.logical_bytes, size);
        c.deletions.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}

/// An upload in progress; dropping it without `commit` removes what it wrote.
/// Its data id is taken when its first piece is written, so the empty blob has none.
struct Upload<'a> {
    store: &'a RocksStore,
    data_id: Option<u64>,
    staged: bool,
    /// Some pieces were written without the WAL (see `write_piece`).
    unlogged: bool,
    /// Committed on an async worker: give way instead of blocking (see `put_inline`).
    inline: bool,
}

/// Bytes an upload in flight has reserved under the hard limit; given back when it ends (by then
/// a committed upload's bytes are counted as stored).
struct Reservation<'a> {
    store: &'a RocksStore,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.store.inner.reserved_bytes.fetch_sub(self.bytes, Ordering::SeqCst);
        }
    }
}

/// What an upload is stored under.
#[derive(Clone, Copy)]
enum Name<'a> {
    /// The digest the sender named (the bytes must hash to it).
    Given(&'a Digest),
    /// The digest of this kind of whatever the bytes hash to.
    ByContent(HashKind),
}

/// How a commit ended.
pub(super) enum Committed {
    /// Stored, or already there, under this digest.
    Done(Digest, PutOutcome),
    /// An inline commit would have had to wait; nothing was stored.
    WouldBlock,
}

/// Pieces from this index on (8 MiB into an upload) are written without the WAL.
const UNLOGGED_FROM_PIECE: u32 = 8;

impl Upload<'_> {
    fn data_id(&mut self) -> Result<u64> {
        match self.data_id {
            Some(id) => Ok(id),
            None => {
                let id = self.store.allocate_data_id()?;
                self.data_id = Some(id);
                Ok(id)
            }
        }
    }

    fn write_piece(&mut self, idx: u32, encoded: &[u8]) -> Result<()> {
        let id = self.data_id()?;
        let db = &self.store.inner.db;
        let w = self.store.write_opts(false);
        if !self.staged {
            db.put_cf_opt(&self.store.cf(CF_STAGING), id.to_be_bytes(), [], &w)
                .map_err(db_err)?;
            self.staged = true;
        }
        // Past the first pieces, a large upload skips the WAL: each byte is then written once
        // (memtable, then blob file at flush) instead of twice. Its commit flushes the data
        // column family first, so nothing acknowledged lives only in a memtable; an upload
        // killed before its commit is cleaned up through `staging` as before.
        let w = if idx >= UNLOGGED_FROM_PIECE {
            self.unlogged = true;
            let mut w = WriteOptions::default();
            w.disable_wal(true);
            w
        } else {
            w
        };
        db.put_cf_opt(&self.store.cf(CF_DATA), piece_key(id, idx), encoded, &w)
            .map_err(db_err)
    }

    fn commit(mut self, digest: &Digest, mut meta: BlobMeta, single_piece: Option<Vec<u8>>) -> Result<Committed> {
        let store = self.store;
        // Unlogged pieces become durable with this flush, before the blob exists. An online
        // backup waits for such a commit to end (flush and batch), and such commits for it.
        let _unlogged_commit = self
            .unlogged
            .then(|| store.inner.unlogged_commits.read().unwrap_or_else(|p| p.into_inner()));
        if self.unlogged {
            store.inner.db.flush_cf(&store.cf(CF_DATA)).map_err(db_err)?;
        }
        let _g = if self.inline {
            match store.try_lock_for(digest) {
                Some(g) => g,
                None => return Ok(Committed::WouldBlock),
            }
        } else {
            store.lock_for(digest)
        };
        // What is stored under the digest now: a readable blob (ours is dropped), nothing, or a
        // corrupt record that this upload replaces (and whose count it takes over).
        let replaced = match store.meta(digest) {
            Ok(Some(_)) => return Ok(Committed::Done(*digest, PutOutcome::Existed)),
            Ok(None) => None,
            Err(CasError::Corrupt(_)) => Some(store.raw_meta_size(digest)?),
            Err(e) => return Err(e),
        };
        let mut batch = WriteBatch::default();
        if let Some(p) = &single_piece {
            batch.put_cf(&store.cf(CF_DATA), piece_key(self.data_id()?, 0), p);
        }
        meta.data_id = self.data_id.unwrap_or(NO_DATA);
        batch.put_cf(&store.cf(CF_META), meta_key(digest), meta.encode());
        match replaced {
            None => store.tally_in(&mut batch, 1, meta.size as i64, 0),
            Some(old) => store.tally_in(&mut batch, 0, meta.size as i64 - old as i64, 0),
        }
        batch.put_cf(store.cf(CF_ATIME), meta_key(digest), meta.stored_at.to_be_bytes());
        let queued = store.inner.opts.track_sync && store.sync_queue_in(&mut batch, &SyncItem::Blob(*digest))?;
        if self.staged {
            batch.delete_cf(&store.cf(CF_STAGING), meta.data_id.to_be_bytes());
        }
        let mut w = store.write_opts(store.inner.opts.sync_writes);
        w.set_no_slowdown(self.inline);
        match store.inner.db.write_opt(batch, &w) {
            Ok(()) => {}
            Err(e) if self.inline && e.kind() == rocksdb::ErrorKind::Incomplete => return Ok(Committed::WouldBlock),
            Err(e) => return Err(db_err(e)),
        }
        self.staged = false; // committed: nothing to clean up
        store.sync_counted(queued, false);
        let c = &store.inner.counters;
        if replaced.is_none() {
            c.blobs.fetch_add(1, Ordering::Relaxed);
        }
        c.logical_bytes.fetch_add(meta.size, Ordering::Relaxed);
        if let Some(old) = replaced {
            let _ = c
                .logical_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(old)));
        }
        Ok(Committed::Done(*digest, PutOutcome::Created))
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        let Some(id) = self.data_id.filter(|_| self.staged) else {
            return;
        };
        let (db, s) = (&self.store.inner.db, self.store);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(&s.cf(CF_DATA), piece_key(id, 0), piece_key(id + 1, 0));
        batch.delete_cf(&s.cf(CF_STAGING), id.to_be_bytes());
        if let Err(e) = db.write(batch) {
            // The staging entry stays; the next open cleans up.
            tracing::warn!(data_id = id, error = %e, "could not remove an abandoned upload");
        }
    }
}
