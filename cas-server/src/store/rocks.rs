//! `RocksStore`: the embedded blob store on RocksDB.
//!
//! Column families:
//! - `meta`: `[kind tag][digest]` → [`BlobMeta`]. A blob exists exactly when
//!   its meta record does; that record is written last, in the same atomic
//!   batch that ends the upload, so readers never see a partial blob.
//! - `data`: `[data id u64 BE][piece u32 BE]` → one encoded piece (see
//!   [`super::piece`]). Pieces are at most `piece_size` raw bytes, so memory
//!   stays bounded whatever the blob size. Large values live in RocksDB blob
//!   files (BlobDB) to avoid compaction rewrites.
//! - `staging`: data ids of uploads in progress. An upload that dies (error,
//!   client gone, `kill -9`) leaves its id here, and [`RocksStore::open`]
//!   deletes its pieces.
//! - `ac`: action-cache values; `refs`: named pointers.
//! - `quarantine`: meta records of blobs found corrupt (see `scrub.rs`); such a
//!   blob has no `meta` record any more, so it reads as absent until re-uploaded.
//!
//! The store is synchronous underneath; the [`Cas`] implementation runs each
//! call on tokio's blocking pool.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use reprovm_sdk::cas::{Blob, BlobInfo, ByteStream, Cas, PutOutcome, RefCondition, RefValue};
use reprovm_sdk::digest::{Digest, HashKind, Hasher, DIGEST_LEN};
use reprovm_sdk::error::{CasError, Result};
use reprovm_sdk::proto::{validate_ref_name, ByteRange, MAX_AC_VALUE, MAX_REF_VALUE};
use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::piece;
use crate::config::Compression;

pub(super) const CF_META: &str = "meta";
const CF_DATA: &str = "data";
const CF_STAGING: &str = "staging";
const CF_AC: &str = "ac";
const CF_REFS: &str = "refs";
/// Blobs and action results not yet copied to the remote tier (see `sync_queue.rs`).
pub(super) const CF_SYNC: &str = "sync_queue";
/// Digests known to be in the remote tier (so `find_missing` need not ask it).
pub(super) const CF_REMOTE: &str = "remote_known";
/// Last access time per blob, for LRU eviction; written without the WAL (losing some on a crash is harmless).
pub(super) const CF_ATIME: &str = "atime";
/// Blobs that `cas-server verify --repair` found corrupt and took out of service (see `scrub.rs`).
pub(super) const CF_QUARANTINE: &str = "quarantine";
const ALL_CFS: [&str; 9] = [
    CF_META,
    CF_DATA,
    CF_STAGING,
    CF_AC,
    CF_REFS,
    CF_SYNC,
    CF_REMOTE,
    CF_ATIME,
    CF_QUARANTINE,
];

/// Tuning of a [`RocksStore`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Raw bytes per stored piece.
    pub piece_size: usize,
    /// Largest blob accepted.
    pub max_blob_size: u64,
    /// At-rest compression.
    pub compression: Compression,
    /// Compression level.
    pub compression_level: i32,
    /// fsync the WAL when an upload commits.
    pub sync_writes: bool,
    /// Refuse uploads when the filesystem has less free space than this.
    pub min_free_space: u64,
    /// Re-hash whole-blob reads and fail them on mismatch.
    pub verify_reads: bool,
    /// Queue every new blob and action result for the remote tier, in the same batch that commits it.
    pub track_sync: bool,
    /// Refuse uploads (507) that would take the stored bytes past this.
    pub hard_limit: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            piece_size: 1 << 20,
            max_blob_size: 8 << 30,
            compression: Compression::Zstd,
            compression_level: 1,
            sync_writes: false,
            min_free_space: 64 << 20,
            verify_reads: true,
            track_sync: false,
            hard_limit: None,
        }
    }
}

/// What the meta record of a blob says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    /// Decoded size.
    pub size: u64,
    /// Raw bytes per piece.
    pub piece_size: u32,
    /// Key prefix of the pieces in `data`.
    pub data_id: u64,
    /// Unix seconds of the upload.
    pub stored_at: u64,
}

const META_VERSION: u8 = 1;
const META_LEN: usize = 1 + 8 + 4 + 8 + 8;

impl BlobMeta {
    pub(super) fn encode(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        out[0] = META_VERSION;
        out[1..9].copy_from_slice(&self.size.to_be_bytes());
        out[9..13].copy_from_slice(&self.piece_size.to_be_bytes());
        out[13..21].copy_from_slice(&self.data_id.to_be_bytes());
        out[21..29].copy_from_slice(&self.stored_at.to_be_bytes());
        out
    }

    pub(super) fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != META_LEN || b[0] != META_VERSION {
            return Err(CasError::Corrupt(format!(
                "meta record of {} bytes, version {:?}",
                b.len(),
                b.first()
            )));
        }
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(Self {
            size: u64_at(1),
            piece_size: u32::from_be_bytes(b[9..13].try_into().expect("4 bytes")),
            data_id: u64_at(13),
            stored_at: u64_at(21),
        })
    }

    /// Number of pieces.
    pub fn pieces(&self) -> u32 {
        self.size.div_ceil(u64::from(self.piece_size)) as u32
    }

    fn piece_len(&self, idx: u32) -> usize {
        let start = u64::from(idx) * u64::from(self.piece_size);
        (self.size - start).min(u64::from(self.piece_size)) as usize
    }
}

/// Counts kept in memory for `/v1/stats` and metrics.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Blobs stored.
    pub blobs: AtomicU64,
    /// Sum of their decoded sizes.
    pub logical_bytes: AtomicU64,
}

struct Inner {
    db: DB,
    path: PathBuf,
    opts: StoreOptions,
    next_data_id: AtomicU64,
    /// Serializes the final existence check and commit of uploads of the same
    /// digest (striped by the digest's first byte). Held only for the commit.
    commit_locks: Vec<Mutex<()>>,
    /// Serializes ref compare-and-swap.
    refs_lock: Mutex<()>,
    /// Last free-space reading of the data dir's filesystem, and when it was taken.
    free_space_cache: Mutex<(Option<std::time::Instant>, u64)>,
    counters: StoreCounters,
}

/// The embedded RocksDB blob store. Cheap to clone.
#[derive(Clone)]
pub struct RocksStore {
    inner: Arc<Inner>,
}

pub(super) fn meta_key(d: &Digest) -> [u8; DIGEST_LEN + 1] {
    let mut k = [0u8; DIGEST_LEN + 1];
    k[0] = d.kind().tag();
    k[1..].copy_from_slice(d.as_bytes());
    k
}

pub(super) fn digest_of_key(k: &[u8]) -> Option<Digest> {
    let kind = HashKind::from_tag(*k.first()?)?;
    Some(Digest::from_bytes(kind, k.get(1..)?.try_into().ok()?))
}

fn piece_key(data_id: u64, idx: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&data_id.to_be_bytes());
    k[8..].copy_from_slice(&idx.to_be_bytes());
    k
}

pub(super) fn db_err(e: rocksdb::Error) -> CasError {
    let s = e.to_string();
    if s.contains("No space left") || s.contains("ENOSPC") {
        CasError::InsufficientStorage(s)
    } else {
        CasError::Backend(s)
    }
}

pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The entity tag of a ref value.
pub fn ref_etag(value: &[u8]) -> String {
    blake3::hash(value).to_hex()[..32].to_string()
}

/// An error from the upload's body (client gone, bad encoding) as opposed to the store.
fn body_err(e: std::io::Error) -> CasError {
    match e.kind() {
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::TimedOut | std::io::ErrorKind::ConnectionAborted => {
            CasError::InvalidInput(format!("bad request body: {e}"))
        }
        _ => CasError::Io(e),
    }
}

impl RocksStore {
    /// Opens (or creates) a store in `path`, cleaning up uploads that a crash interrupted.
    pub fn open(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)?;
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_max_background_jobs(2);
        db_opts.set_max_total_wal_size(256 << 20);
        db_opts.set_keep_log_file_num(4);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            if *name == CF_DATA {
                // Pieces are compressed by us; big ones go to blob files.
                o.set_write_buffer_size(16 << 20);
                o.set_max_write_buffer_number(2);
                o.set_enable_blob_files(true);
                o.set_min_blob_size(32 << 10);
                o.set_blob_file_size(256 << 20);
                o.set_enable_blob_gc(true);
            } else {
                o.set_write_buffer_size(8 << 20);
            }
            ColumnFamilyDescriptor::new(*name, o)
        });
        // The default column family is unused; left out, it would get a 64 MiB memtable, and
        // RocksDB resumes by itself after a disk-full error only once the largest memtable's
        // size is free again.
        let mut default_cf = Options::default();
        default_cf.set_write_buffer_size(1 << 20);
        let cfs = cfs.chain([ColumnFamilyDescriptor::new(rocksdb::DEFAULT_COLUMN_FAMILY_NAME, default_cf)]);
        let db = DB::open_cf_descriptors(&db_opts, &path, cfs).map_err(db_err)?;
        let store = Self {
            inner: Arc::new(Inner {
                db,
                path,
                opts,
                next_data_id: AtomicU64::new(0),
                commit_locks: (0..64).map(|_| Mutex::new(())).collect(),
                refs_lock: Mutex::new(()),
                free_space_cache: Mutex::new((None, 0)),
                counters: StoreCounters::default(),
            }),
        };
        store.recover()?;
        Ok(store)
    }

    /// The database (for the sibling modules that extend the store, and for
    /// `crate::backup`, which hands it to RocksDB's BackupEngine).
    pub fn db(&self) -> &DB {
        &self.inner.db
    }

    pub(super) fn cf(&self, name: &str) -> &ColumnFamily {
        self.inner.db.cf_handle(name).expect("column family created at open")
    }

    /// Deletes pieces of interrupted uploads, then sets the id counter and counts.
    fn recover(&self) -> Result<()> {
        let db = &self.inner.db;
        let (data, staging) = (self.cf(CF_DATA), self.cf(CF_STAGING));
        let mut abandoned = 0;
        for item in db.iterator_cf(&staging, IteratorMode::Start) {
            let (k, _) = item.map_err(db_err)?;
            let id = u64::from_be_bytes(k[..8].try_into().map_err(|_| CasError::Corrupt("staging key".into()))?);
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(&data, piece_key(id, 0), piece_key(id + 1, 0));
            batch.delete_cf(&staging, k);
            db.write(batch).map_err(db_err)?;
            abandoned += 1;
        }
        if abandoned > 0 {
            tracing::warn!(abandoned, "removed pieces of uploads interrupted by a crash");
        }
        let last_id = db
            .iterator_cf(&data, IteratorMode::End)
            .next()
            .transpose()
            .map_err(db_err)?
            .and_then(|(k, _)| k.get(..8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes"))));
        self.inner
            .next_data_id
            .store(last_id.map_or(1, |id| id + 1), Ordering::SeqCst);
        let (mut blobs, mut bytes) = (0, 0);
        for item in db.iterator_cf(&self.cf(CF_META), IteratorMode::Start) {
            let (_, v) = item.map_err(db_err)?;
            blobs += 1;
            bytes += BlobMeta::decode(&v)?.size;
        }
        self.inner.counters.blobs.store(blobs, Ordering::Relaxed);
        self.inner.counters.logical_bytes.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    /// Directory of the database.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
    /// In-memory counts.
    pub fn counters(&self) -> &StoreCounters {
        &self.inner.counters
    }

    /// Bytes the database's files take on disk.
    pub fn disk_bytes(&self) -> u64 {
        std::fs::read_dir(&self.inner.path)
            .map(|rd| rd.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    /// Free bytes on the data dir's filesystem.
    pub fn free_space(&self) -> Result<u64> {
        Ok(fs4::available_space(&self.inner.path)?)
    }

    /// Flushes memtables and the WAL to disk (used on shutdown).
    pub fn flush(&self) -> Result<()> {
        self.inner.db.flush_wal(true).map_err(db_err)?;
        for name in ALL_CFS {
            self.inner.db.flush_cf(&self.cf(name)).map_err(db_err)?;
        }
        Ok(())
    }

    /// The meta record of a blob.
    pub fn meta(&self, digest: &Digest) -> Result<Option<BlobMeta>> {
        let v = self
            .inner
            .db
            .get_pinned_cf(&self.cf(CF_META), meta_key(digest))
            .map_err(db_err)?;
        v.map(|v| BlobMeta::decode(&v)).transpose()
    }

    /// Every stored blob's digest and meta, in key order (for scrub and gc).
    pub fn list_blobs(&self) -> impl Iterator<Item = Result<(Digest, BlobMeta)>> + '_ {
        self.inner
            .db
            .iterator_cf(&self.cf(CF_META), IteratorMode::Start)
            .map(|item| {
                let (k, v) = item.map_err(db_err)?;
                let d = digest_of_key(&k).ok_or_else(|| CasError::Corrupt("meta key".into()))?;
                Ok((d, BlobMeta::decode(&v)?))
            })
    }

    /// Reads and decodes one piece.
    pub fn read_piece(&self, meta: &BlobMeta, idx: u32) -> Result<Vec<u8>> {
        let stored = self
            .inner
            .db
            .get_pinned_cf(&self.cf(CF_DATA), piece_key(meta.data_id, idx))
            .map_err(db_err)?
            .ok_or_else(|| CasError::Corrupt(format!("piece {idx} of data {} is missing", meta.data_id)))?;
        piece::decode(&stored, meta.piece_len(idx))
            .map_err(|e| CasError::Corrupt(format!("piece {idx} of data {}: {e}", meta.data_id)))
    }

    /// Looks a blob up for reading: its meta, the byte span `range` selects,
    /// and, for a blob of at most one piece, the verified bytes of that span.
    pub fn open_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<(BlobMeta, std::ops::Range<u64>, Option<Bytes>)> {
        let meta = self
            .meta(digest)?
            .ok_or_else(|| CasError::not_found(format!("blob {digest}")))?;
        let span = match range {
            None => 0..meta.size,
            Some(r) => r
                .resolve(meta.size)
                .ok_or(CasError::RangeNotSatisfiable { size: meta.size })?,
        };
        self.touch(digest);
        if meta.pieces() > 1 {
            return Ok((meta, span, None));
        }
        let piece = if meta.size == 0 {
            Vec::new()
        } else {
            self.read_piece(&meta, 0)?
        };
        // Small blobs are always verified, ranged or not: never send bytes that fail their digest.
        if self.inner.opts.verify_reads && digest.kind().digest(&piece) != *digest {
            tracing::error!(%digest, "stored blob fails verification");
            return Err(CasError::Corrupt(format!("stored blob {digest} fails verification")));
        }
        let data = Bytes::from(piece).slice(span.start as usize..span.end as usize);
        Ok((meta, span, Some(data)))
    }

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

    /// Records an access for LRU eviction: a memtable write without the WAL, no read.
    fn touch(&self, digest: &Digest) {
        let mut w = WriteOptions::default();
        w.disable_wal(true);
        let _ = self
            .inner
            .db
            .put_cf_opt(self.cf(CF_ATIME), meta_key(digest), now_secs().to_be_bytes(), &w);
    }

    pub(super) fn write_opts(&self, sync: bool) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(sync);
        w
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
            let codec = if incompressible_run % 16 == 0 { opts.compression } else { Compression::None };
            let encoded = piece::encode(&buf, codec, opts.compression_level);
            incompressible_run = if piece::is_raw(&encoded) { incompressible_run + 1 } else { 0 };
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

    fn lock_for(&self, digest: &Digest) -> std::sync::MutexGuard<'_, ()> {
        let i = digest.as_bytes()[0] as usize % self.inner.commit_locks.len();
        self.inner.commit_locks[i].lock().unwrap_or_else(|p| p.into_inner())
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
        batch.delete_cf(self.cf(CF_SYNC), super::sync_queue::blob_key(digest));
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

    /// The digests among `digests` that are not stored, in order.
    pub fn missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let cf = self.cf(CF_META);
        let keys: Vec<_> = digests.iter().map(meta_key).collect();
        let found = self.inner.db.batched_multi_get_cf(&cf, keys.iter(), false);
        let mut missing = Vec::new();
        for (d, r) in digests.iter().zip(found) {
            if r.map_err(db_err)?.is_none() {
                missing.push(*d);
            }
        }
        Ok(missing)
    }

    /// Reads an action-cache value.
    pub fn ac_get_sync(&self, key: &Digest) -> Result<Option<Bytes>> {
        let v = self.inner.db.get_cf(&self.cf(CF_AC), meta_key(key)).map_err(db_err)?;
        Ok(v.map(Bytes::from))
    }

    /// Writes an action-cache value.
    pub fn ac_put_sync(&self, key: &Digest, value: &[u8]) -> Result<()> {
        if value.len() > MAX_AC_VALUE {
            return Err(CasError::TooLarge {
                size: value.len() as u64,
                limit: MAX_AC_VALUE as u64,
            });
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_AC), meta_key(key), value);
        if self.inner.opts.track_sync {
            batch.put_cf(
                self.cf(CF_SYNC),
                super::sync_queue::ac_key(key),
                now_secs().to_be_bytes(),
            );
        }
        let w = self.write_opts(self.inner.opts.sync_writes);
        self.inner.db.write_opt(batch, &w).map_err(db_err)
    }

    /// Reads a ref.
    pub fn ref_get_sync(&self, name: &str) -> Result<Option<RefValue>> {
        validate_ref_name(name).map_err(CasError::InvalidInput)?;
        let v = self
            .inner
            .db
            .get_cf(&self.cf(CF_REFS), name.as_bytes())
            .map_err(db_err)?;
        Ok(v.map(|v| RefValue {
            etag: ref_etag(&v),
            value: Bytes::from(v),
        }))
    }

    fn check_cond(&self, name: &str, cond: &RefCondition) -> Result<Option<RefValue>> {
        let current = self.ref_get_sync(name)?;
        let ok = match (cond, &current) {
            (RefCondition::Always, _) => true,
            (RefCondition::IfAbsent, cur) => cur.is_none(),
            (RefCondition::IfMatch(tag), Some(cur)) => cur.etag == *tag,
            (RefCondition::IfMatch(_), None) => false,
        };
        if ok {
            Ok(current)
        } else {
            Err(CasError::PreconditionFailed { name: name.to_string() })
        }
    }

    /// Writes a ref if `cond` holds.
    pub fn ref_put_sync(&self, name: &str, value: &[u8], cond: &RefCondition) -> Result<String> {
        if value.len() > MAX_REF_VALUE {
            return Err(CasError::TooLarge {
                size: value.len() as u64,
                limit: MAX_REF_VALUE as u64,
            });
        }
        let _g = self.inner.refs_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.check_cond(name, cond)?;
        let w = self.write_opts(self.inner.opts.sync_writes);
        self.inner
            .db
            .put_cf_opt(&self.cf(CF_REFS), name.as_bytes(), value, &w)
            .map_err(db_err)?;
        Ok(ref_etag(value))
    }

    /// Deletes a ref if `cond` holds.
    pub fn ref_delete_sync(&self, name: &str, cond: &RefCondition) -> Result<bool> {
        let _g = self.inner.refs_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.check_cond(name, cond)?;
        if current.is_none() {
            return Ok(false);
        }
        let w = self.write_opts(self.inner.opts.sync_writes);
        self.inner
            .db
            .delete_cf_opt(&self.cf(CF_REFS), name.as_bytes(), &w)
            .map_err(db_err)?;
        Ok(true)
    }

    /// Ref names starting with `prefix`.
    pub fn ref_list_sync(&self, prefix: &str) -> Result<Vec<String>> {
        let cf = self.cf(CF_REFS);
        let mode = IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.inner.db.iterator_cf(&cf, mode) {
            let (k, _) = item.map_err(db_err)?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(RocksStore) -> Result<T> + Send + 'static) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| CasError::Backend(format!("store task failed: {e}")))?
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
                super::sync_queue::blob_key(digest),
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

/// Streams pieces `first..=last` of a blob, sliced to `range`, from a blocking
/// thread through a small channel (bounded memory). With `verify`, the whole
/// blob is re-hashed and a mismatch ends the stream with an error.
fn stream_pieces(
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

#[async_trait::async_trait]
impl Cas for RocksStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let digests = digests.to_vec();
        self.blocking(move |s| s.missing(&digests)).await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        let d = *digest;
        Ok(self
            .blocking(move |s| s.meta(&d))
            .await?
            .map(|m| BlobInfo { size: m.size }))
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Blob> {
        let d = *digest;
        // One trip to the blocking pool: meta, and for a one-piece blob its bytes too.
        let (meta, span, small) = self.blocking(move |s| s.open_blob(&d, range)).await?;
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
