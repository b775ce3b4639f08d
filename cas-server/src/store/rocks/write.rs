//! Writes: verified uploads in bounded pieces, atomic commit, cleanup of failed uploads, deletes.

use super::*;

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

    /// Stores the bytes of `reader` under `digest`, hashing while it writes.
    /// Synchronous: call from a blocking context.
    pub fn put_reader(&self, digest: &Digest, size: Option<u64>, mut reader: impl Read) -> Result<PutOutcome> {
        let opts = &self.inner.opts;
        if let Some(size) = size {
            if size > opts.max_blob_size {
                return Err(CasError::TooLarge {
                    size,
                    limit: opts.max_blob_size,
                });
            }
        }
        if self.meta(digest)?.is_some() {
            // Already stored: read the body to keep the connection usable, store nothing.
            std::io::copy(&mut reader.take(opts.max_blob_size), &mut std::io::sink()).map_err(body_err)?;
            return Ok(PutOutcome::Existed);
        }
        self.check_space(size.unwrap_or(opts.piece_size as u64))?;
        if let Some(limit) = opts.hard_limit {
            let stored = self.inner.counters.logical_bytes.load(Ordering::Relaxed);
            if stored.saturating_add(size.unwrap_or(0)) > limit {
                return Err(CasError::InsufficientStorage(format!(
                    "the store holds {stored} bytes; this upload would pass max_size_hard_limit ({limit} bytes)"
                )));
            }
        }
        let data_id = self.inner.next_data_id.fetch_add(1, Ordering::SeqCst);
        let mut upload = Upload {
            store: self,
            data_id,
            staged: false,
        };
        let mut hasher = Hasher::new(digest.kind());
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
        if actual != *digest {
            return Err(CasError::DigestMismatch {
                expected: *digest,
                actual,
            });
        }
        let meta = BlobMeta {
            size: total,
            piece_size: opts.piece_size as u32,
            data_id,
            stored_at: now_secs(),
        };
        upload.commit(digest, &meta, last_piece)
    }

    /// Removes a blob; returns whether it existed.
    pub fn delete_blob(&self, digest: &Digest) -> Result<bool> {
        let _g = self.lock_for(digest);
        let Some(meta) = self.meta(digest)? else {
            return Ok(false);
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(&self.cf(CF_META), meta_key(digest));
        batch.delete_cf(self.cf(CF_ATIME), meta_key(digest));
        batch.delete_cf(self.cf(CF_SYNC), crate::store::sync_queue::blob_key(digest));
        batch.delete_range_cf(
            &self.cf(CF_DATA),
            piece_key(meta.data_id, 0),
            piece_key(meta.data_id + 1, 0),
        );
        self.inner
            .db
            .write_opt(batch, &self.write_opts(self.inner.opts.sync_writes))
            .map_err(db_err)?;
        self.inner.counters.blobs.fetch_sub(1, Ordering::Relaxed);
        self.inner
            .counters
            .logical_bytes
            .fetch_sub(meta.size, Ordering::Relaxed);
        Ok(true)
    }
}

/// An upload in progress; dropping it without `commit` removes what it wrote.
struct Upload<'a> {
    store: &'a RocksStore,
    data_id: u64,
    staged: bool,
}

impl Upload<'_> {
    fn write_piece(&mut self, idx: u32, encoded: &[u8]) -> Result<()> {
        let db = &self.store.inner.db;
        let w = self.store.write_opts(false);
        if !self.staged {
            db.put_cf_opt(&self.store.cf(CF_STAGING), self.data_id.to_be_bytes(), [], &w)
                .map_err(db_err)?;
            self.staged = true;
        }
        db.put_cf_opt(&self.store.cf(CF_DATA), piece_key(self.data_id, idx), encoded, &w)
            .map_err(db_err)
    }

    fn commit(mut self, digest: &Digest, meta: &BlobMeta, single_piece: Option<Vec<u8>>) -> Result<PutOutcome> {
        let store = self.store;
        let _g = store.lock_for(digest);
        if store.meta(digest)?.is_some() {
            // A concurrent upload of the same blob committed first; ours is dropped.
            return Ok(PutOutcome::Existed);
        }
        let mut batch = WriteBatch::default();
        if let Some(p) = &single_piece {
            batch.put_cf(&store.cf(CF_DATA), piece_key(self.data_id, 0), p);
        }
        batch.put_cf(&store.cf(CF_META), meta_key(digest), meta.encode());
        batch.put_cf(store.cf(CF_ATIME), meta_key(digest), meta.stored_at.to_be_bytes());
        if store.inner.opts.track_sync {
            batch.put_cf(
                store.cf(CF_SYNC),
                crate::store::sync_queue::blob_key(digest),
                meta.stored_at.to_be_bytes(),
            );
        }
        if self.staged {
            batch.delete_cf(&store.cf(CF_STAGING), self.data_id.to_be_bytes());
        }
        store
            .inner
            .db
            .write_opt(batch, &store.write_opts(store.inner.opts.sync_writes))
            .map_err(db_err)?;
        self.staged = false;
        self.data_id = u64::MAX; // committed: nothing to clean up
        store.inner.counters.blobs.fetch_add(1, Ordering::Relaxed);
        store
            .inner
            .counters
            .logical_bytes
            .fetch_add(meta.size, Ordering::Relaxed);
        Ok(PutOutcome::Created)
    }
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if !self.staged {
            return;
        }
        let (db, s) = (&self.store.inner.db, self.store);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            &s.cf(CF_DATA),
            piece_key(self.data_id, 0),
            piece_key(self.data_id + 1, 0),
        );
        batch.delete_cf(&s.cf(CF_STAGING), self.data_id.to_be_bytes());
        if let Err(e) = db.write(batch) {
            // The staging entry stays; the next open cleans up.
            tracing::warn!(data_id = self.data_id, error = %e, "could not remove an abandoned upload");
        }
    }
}
