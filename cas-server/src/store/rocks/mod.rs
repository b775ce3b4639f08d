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
//! - `kv`: entries of the `/kv/` namespaces (name → digest and metadata; see `crate::kv`).
//! - `quarantine`: meta records of blobs found corrupt (see `scrub.rs`); such a
//!   blob has no `meta` record any more, so it reads as absent until re-uploaded.
//!
//! The store is synchronous underneath; the [`Cas`] implementation runs each
//! call on tokio's blocking pool.
//!
//! Files: [`meta`] (the meta record), `write.rs` (uploads, deletes, crash
//! cleanup of a failed upload), `read.rs` (lookups and streamed reads),
//! `named.rs` (action cache and refs), `kv.rs` (key-value entries), `cas.rs` (the async `Cas` face).

mod cas;
mod kv;
mod meta;
mod named;
mod read;
mod tally;
mod write;

pub use kv::{KvCondition, KvItem, KvWrite};
pub use meta::BlobMeta;
use meta::NO_DATA;
pub use read::OpenedBlob;

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
/// Key-value entries: `{namespace}/{key}` → an encoded entry (see `crate::kv::entry`).
const CF_KV: &str = "kv";
/// Blobs and action results not yet copied to the remote tier (see `sync_queue.rs`).
pub(super) const CF_SYNC: &str = "sync_queue";
/// Digests known to be in the remote tier (so `find_missing` need not ask it).
pub(super) const CF_REMOTE: &str = "remote_known";
/// Last access time per blob, for LRU eviction; written without the WAL (losing some on a crash is harmless).
pub(super) const CF_ATIME: &str = "atime";
/// Blobs that `cas-server verify --repair` found corrupt and took out of service (see `scrub.rs`).
pub(super) const CF_QUARANTINE: &str = "quarantine";
/// Key (in the default column family) of the data-id lease: every id below it may have been
/// handed out, so none below it is ever issued again, across restarts.
const DATA_ID_LEASE_KEY: &[u8] = b"data_id_lease";
/// Data ids leased per durable write of the lease.
const DATA_ID_LEASE: u64 = 1 << 16;
/// Access times gathered in memory before one batch write.
const ATIME_BATCH: usize = 4096;
/// Size of the block cache shared by all column families.
const BLOCK_CACHE_BYTES: usize = 64 << 20;
const ALL_CFS: [&str; 10] = [
    CF_META,
    CF_DATA,
    CF_STAGING,
    CF_AC,
    CF_REFS,
    CF_KV,
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

/// Counts kept in memory for `/v1/stats` and metrics.
#[derive(Debug, Default)]
pub struct StoreCounters {
    /// Blobs stored.
    pub blobs: AtomicU64,
    /// Sum of their decoded sizes.
    pub logical_bytes: AtomicU64,
    /// Blobs deleted since the store opened (by eviction or a DELETE): lets the key-value
    /// layer's sweeper know when records may have lost their blob.
    pub deletions: AtomicU64,
}

struct Inner {
    db: DB,
    path: PathBuf,
    opts: StoreOptions,
    /// The next data id to hand out (ids start at 1; 0 means "no data", the empty blob's).
    next_data_id: AtomicU64,
    /// Ids below this are covered by the durable lease; taking the lock extends it.
    leased_data_id: AtomicU64,
    lease_lock: Mutex<()>,
    /// Serializes the final existence check and commit of uploads of the same
    /// digest (striped by the digest's first byte). Held only for the commit.
    commit_locks: Vec<Mutex<()>>,
    /// Serializes ref compare-and-swap.
    refs_lock: Mutex<()>,
    /// Serialize changes of the same key-value entry (striped by a hash of the key).
    kv_locks: Vec<Mutex<()>>,
    /// Last free-space reading of the data dir's filesystem, and when it was taken.
    free_space_cache: Mutex<(Option<std::time::Instant>, u64)>,
    /// Access times not yet written (see `touch`).
    pending_atime: Mutex<std::collections::HashMap<[u8; DIGEST_LEN + 1], u64>>,
    counters: StoreCounters,
    /// Length of the sync queue (see `sync_queue.rs`).
    sync_backlog: AtomicU64,
    /// Held shared by a commit of WAL-less pieces (flush, then batch), exclusively by an online
    /// backup, so that a backup never holds a blob's meta record without its flushed pieces.
    unlogged_commits: std::sync::RwLock<()>,
    /// Bytes reserved under `max_size_hard_limit` by uploads in flight (see `write.rs`).
    reserved_bytes: AtomicU64,
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
        // One bounded block cache holds data blocks *and* index/filter blocks for every column
        // family, so memory stays bounded as the store grows (index blocks otherwise live
        // outside any cache and grow with the data).
        let cache = rocksdb::Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        // Bloom filters: a lookup of an absent key (most of `blobs:missing`, every new upload's
        // existence check) is answered without reading a data block.
        table.set_bloom_filter(10.0, false);
        let cfs = ALL_CFS.iter().map(|name| {
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
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
        default_cf.set_merge_operator_associative(tally::MERGE_NAME, tally::merge_add);
        let cfs = cfs.chain([ColumnFamilyDescriptor::new(
            rocksdb::DEFAULT_COLUMN_FAMILY_NAME,
            default_cf,
        )]);
        let db = DB::open_cf_descriptors(&db_opts, &path, cfs).map_err(db_err)?;
        let store = Self {
            inner: Arc::new(Inner {
                db,
                path,
                opts,
                next_data_id: AtomicU64::new(0),
                leased_data_id: AtomicU64::new(0),
                lease_lock: Mutex::new(()),
                commit_locks: (0..64).map(|_| Mutex::new(())).collect(),
                refs_lock: Mutex::new(()),
                kv_locks: (0..16).map(|_| Mutex::new(())).collect(),
                free_space_cache: Mutex::new((None, 0)),
                pending_atime: Mutex::default(),
                counters: StoreCounters::default(),
                sync_backlog: AtomicU64::new(0),
                unlogged_commits: std::sync::RwLock::new(()),
                reserved_bytes: AtomicU64::new(0),
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
            let id = k
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| CasError::Corrupt("staging key".into()))?;
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(&data, piece_key(id, 0), piece_key(id + 1, 0));
            batch.delete_cf(&staging, k);
            db.write(batch).map_err(db_err)?;
            abandoned += 1;
        }
        if abandoned > 0 {
            tracing::warn!(abandoned, "removed pieces of uploads interrupted by a crash");
        }
        // Data ids are never issued twice: start past the durable lease, past every piece on disk,
        // and past every meta record (stores written before the lease existed gave the empty
        // blob an id without pieces, which a restart could then hand out again).
        let last_piece_id = db
            .iterator_cf(&data, IteratorMode::End)
            .next()
            .transpose()
            .map_err(db_err)?
            .and_then(|(k, _)| k.get(..8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes"))));
        let leased = db
            .get_cf(&self.cf(rocksdb::DEFAULT_COLUMN_FAMILY_NAME), DATA_ID_LEASE_KEY)
            .map_err(db_err)?
            .map(|v| {
                v.as_slice()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .map_err(|_| CasError::Corrupt("data id lease".into()))
            })
            .transpose()?;
        // The counts are on disk (see `tally.rs`); a store written before they were kept is
        // counted once, here, and so is one without a data-id lease (its meta records bound the ids).
        let mut last_meta_id = 0;
        let counts = match (self.read_tally()?, leased) {
            (Some(t), Some(_)) => t,
            _ => {
                let (mut blobs, mut bytes, mut unreadable) = (0i64, 0i64, 0u64);
                for item in db.iterator_cf(&self.cf(CF_META), IteratorMode::Start) {
                    let (_, v) = item.map_err(db_err)?;
                    // A corrupt record must not keep the store from opening: reads of that blob
                    // fail (500 `corrupt`) and `cas-server verify` reports it.
                    let Ok(meta) = BlobMeta::decode(&v) else {
                        // Counted as stored (a delete or an upload over it takes it back off).
                        unreadable += 1;
                        blobs += 1;
                        bytes += BlobMeta::raw_size(&v).unwrap_or(0) as i64;
                        continue;
                    };
                    blobs += 1;
                    bytes += meta.size as i64;
                    last_meta_id = last_meta_id.max(meta.data_id);
                }
                if unreadable > 0 {
                    tracing::error!(unreadable, "meta records that cannot be read; run `cas-server verify`");
                }
                let t = tally::Tally {
                    blobs,
                    bytes,
                    queued: self.count_sync_queue()? as i64,
                };
                self.write_tally(t)?;
                tracing::info!(blobs, bytes, "counted the store once; later opens read the counts");
                t
            }
        };
        let next = [
            leased.unwrap_or(1),
            last_piece_id.map_or(1, |id| id + 1),
            last_meta_id + 1,
            1,
        ]
        .into_iter()
        .max()
        .expect("non-empty");
        self.inner.next_data_id.store(next, Ordering::SeqCst);
        self.extend_lease(next)?;
        let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
        self.inner
            .counters
            .blobs
            .store(unsigned(counts.blobs), Ordering::Relaxed);
        self.inner
            .counters
            .logical_bytes
            .store(unsigned(counts.bytes), Ordering::Relaxed);
        self.inner
            .sync_backlog
            .store(unsigned(counts.queued), Ordering::Relaxed);
        Ok(())
    }

    /// Hands out a data id that no blob, live or deleted, has had.
    pub(super) fn allocate_data_id(&self) -> Result<u64> {
        let id = self.inner.next_data_id.fetch_add(1, Ordering::SeqCst);
        if id >= self.inner.leased_data_id.load(Ordering::SeqCst) {
            self.extend_lease(id + 1)?;
        }
        Ok(id)
    }

    /// Makes the durable lease cover every id below `needed` (and the next [`DATA_ID_LEASE`]).
    fn extend_lease(&self, needed: u64) -> Result<()> {
        let _g = self.inner.lease_lock.lock().unwrap_or_else(|p| p.into_inner());
        if needed <= self.inner.leased_data_id.load(Ordering::SeqCst) {
            return Ok(());
        }
        let lease = needed + DATA_ID_LEASE;
        let default = self.cf(rocksdb::DEFAULT_COLUMN_FAMILY_NAME);
        self.inner
            .db
            .put_cf_opt(&default, DATA_ID_LEASE_KEY, lease.to_be_bytes(), &self.write_opts(true))
            .map_err(db_err)?;
        self.inner.leased_data_id.store(lease, Ordering::SeqCst);
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
        self.flush_atimes();
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

    /// Records an access for LRU eviction. Reads must not contend on the
    /// database's write path, so accesses gather in memory and are written in
    /// one batch (without the WAL) when enough have gathered, before eviction
    /// and on flush.
    fn touch(&self, digest: &Digest) {
        let full = {
            let mut pending = self.inner.pending_atime.lock().unwrap_or_else(|p| p.into_inner());
            pending.insert(meta_key(digest), now_secs());
            pending.len() >= ATIME_BATCH
        };
        if full {
            // Reads run on async workers: during a RocksDB write stall the batch waits for later.
            self.write_atimes(true);
        }
    }

    /// Writes the gathered access times.
    pub fn flush_atimes(&self) {
        self.write_atimes(false);
    }

    /// Writes the gathered access times; with `give_way`, a write stall keeps them for the next time.
    fn write_atimes(&self, give_way: bool) {
        let pending = std::mem::take(&mut *self.inner.pending_atime.lock().unwrap_or_else(|p| p.into_inner()));
        if pending.is_empty() {
            return;
        }
        let mut batch = WriteBatch::default();
        for (k, t) in &pending {
            batch.put_cf(self.cf(CF_ATIME), k, t.to_be_bytes());
        }
        let mut w = WriteOptions::default();
        w.disable_wal(true);
        w.set_no_slowdown(give_way);
        match self.inner.db.write_opt(batch, &w) {
            Ok(()) => {}
            Err(e) if give_way && e.kind() == rocksdb::ErrorKind::Incomplete => {
                let mut now = self.inner.pending_atime.lock().unwrap_or_else(|p| p.into_inner());
                for (k, t) in pending {
                    now.entry(k).or_insert(t); // a newer access wins
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not record access times"),
        }
    }

    pub(super) fn write_opts(&self, sync: bool) -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(sync);
        w
    }

    /// The queue-length counter (kept by `sync_queue.rs`).
    pub(crate) fn sync_backlog_counter(&self) -> &AtomicU64 {
        &self.inner.sync_backlog
    }

    /// Holds off commits of WAL-less pieces while the guard lives (for online backups).
    pub fn pause_unlogged_commits(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.inner.unlogged_commits.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The commit lock of a digest if it is free now.
    pub(super) fn try_lock_for(&self, digest: &Digest) -> Option<std::sync::MutexGuard<'_, ()>> {
        let i = digest.as_bytes()[0] as usize % self.inner.commit_locks.len();
        match self.inner.commit_locks[i].try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// The commit lock of a digest: held to check and change what is stored under it.
    pub(crate) fn lock_for(&self, digest: &Digest) -> std::sync::MutexGuard<'_, ()> {
        let i = digest.as_bytes()[0] as usize % self.inner.commit_locks.len();
        self.inner.commit_locks[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the blocking pool.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(RocksStore) -> Result<T> + Send + 'static) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(store))
            .await
            .map_err(|e| CasError::Backend(format!("store task failed: {e}")))?
    }
}
