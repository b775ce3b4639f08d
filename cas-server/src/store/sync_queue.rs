//! The durable queue of what the remote tier still lacks, kept in the
//! `sync_queue` column family of the local store.
//!
//! An entry is written in the same atomic batch that commits a blob or an
//! action result (when the store tracks sync), so nothing acknowledged can
//! be forgotten by a crash. The uploader ([`super::tiered`]) takes entries in
//! key order, copies them, and removes each only after the remote confirmed
//! it; failures leave the entry for a later retry. Digests that the remote
//! is known to hold go to `remote_known`, which lets `find_missing` and
//! eviction skip asking the remote.
//!
//! The queue's length is kept in memory and on disk (the store's count
//! record, adjusted in the same batch as each insert or removal, under the
//! item's commit lock), so metrics, `/ready` and opening the store never walk
//! the queue.

use reprovm_sdk::digest::{Digest, HashKind, DIGEST_LEN};
use reprovm_sdk::error::{CasError, Result};
use rocksdb::{IteratorMode, WriteBatch};
use std::sync::atomic::Ordering;

use super::rocks::{db_err, meta_key, now_secs, RocksStore, CF_META, CF_REMOTE, CF_SYNC};

const BLOB: u8 = b'c';
const ACTION: u8 = b'a';

/// One thing to copy to the remote tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncItem {
    /// A blob.
    Blob(Digest),
    /// An action-cache entry.
    Action(Digest),
}

fn key(kind: u8, d: &Digest) -> [u8; DIGEST_LEN + 2] {
    let mut k = [0u8; DIGEST_LEN + 2];
    k[0] = kind;
    k[1..].copy_from_slice(&meta_key(d));
    k
}

/// Queue key of a blob.
pub fn blob_key(d: &Digest) -> [u8; DIGEST_LEN + 2] {
    key(BLOB, d)
}

/// Queue key of an action-cache entry.
pub fn ac_key(d: &Digest) -> [u8; DIGEST_LEN + 2] {
    key(ACTION, d)
}

fn item_of_key(k: &[u8]) -> Option<SyncItem> {
    let kind = HashKind::from_tag(*k.get(1)?)?;
    let d = Digest::from_bytes(kind, k.get(2..)?.try_into().ok()?);
    match k[0] {
        BLOB => Some(SyncItem::Blob(d)),
        ACTION => Some(SyncItem::Action(d)),
        _ => None,
    }
}

impl SyncItem {
    fn key(&self) -> [u8; DIGEST_LEN + 2] {
        match self {
            Self::Blob(d) => blob_key(d),
            Self::Action(d) => ac_key(d),
        }
    }

    /// The digest whose commit lock guards this item's queue entry.
    pub(crate) fn digest(&self) -> &Digest {
        match self {
            Self::Blob(d) | Self::Action(d) => d,
        }
    }
}

impl RocksStore {
    /// Up to `limit` queued items, oldest key first, skipping those in `skip`.
    pub fn sync_pending(&self, limit: usize, skip: &std::collections::HashSet<SyncItem>) -> Result<Vec<SyncItem>> {
        let mut out = Vec::new();
        for entry in self.db().iterator_cf(self.cf(CF_SYNC), IteratorMode::Start) {
            let (k, _) = entry.map_err(db_err)?;
            let item = item_of_key(&k).ok_or_else(|| CasError::Corrupt("sync queue key".into()))?;
            if !skip.contains(&item) {
                out.push(item);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Number of queued items (kept in memory; no walk of the queue).
    pub fn sync_backlog(&self) -> u64 {
        self.sync_backlog_counter().load(Ordering::Relaxed)
    }

    /// Counts the queue (once, when the store opens).
    pub(crate) fn count_sync_queue(&self) -> Result<u64> {
        let mut n = 0;
        for entry in self.db().iterator_cf(self.cf(CF_SYNC), IteratorMode::Start) {
            entry.map_err(db_err)?;
            n += 1;
        }
        Ok(n)
    }

    /// Adds `item` to `batch` unless it is queued already; returns whether it is new. The caller
    /// holds the item's commit lock, and calls [`RocksStore::sync_counted`] once the batch is written.
    pub(crate) fn sync_queue_in(&self, batch: &mut WriteBatch, item: &SyncItem) -> Result<bool> {
        let queued = self.sync_is_pending(item)?;
        if !queued {
            batch.put_cf(self.cf(CF_SYNC), item.key(), now_secs().to_be_bytes());
            self.tally_in(batch, 0, 0, 1);
        }
        Ok(!queued)
    }

    /// Adds the removal of `item` to `batch`; returns whether it was queued (same rules as
    /// [`RocksStore::sync_queue_in`]).
    pub(crate) fn sync_remove_in(&self, batch: &mut WriteBatch, item: &SyncItem) -> Result<bool> {
        let queued = self.sync_is_pending(item)?;
        if queued {
            batch.delete_cf(self.cf(CF_SYNC), item.key());
            self.tally_in(batch, 0, 0, -1);
        }
        Ok(queued)
    }

    /// Applies the queue-length changes of a written batch.
    pub(crate) fn sync_counted(&self, added: bool, removed: bool) {
        let c = self.sync_backlog_counter();
        if added {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if removed {
            // Never below zero, even if a count was off.
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
        }
    }

    /// Whether an item is still queued.
    pub fn sync_is_pending(&self, item: &SyncItem) -> Result<bool> {
        Ok(self
            .db()
            .get_pinned_cf(self.cf(CF_SYNC), item.key())
            .map_err(db_err)?
            .is_some())
    }

    /// Removes a handled item from the queue; `remote_has` says whether the remote holds it now
    /// (only then is a blob remembered as there: an item deleted before its upload is not).
    pub fn sync_done(&self, item: &SyncItem, remote_has: bool) -> Result<()> {
        let _g = self.lock_for(item.digest());
        let mut batch = WriteBatch::default();
        let removed = self.sync_remove_in(&mut batch, item)?;
        if let (SyncItem::Blob(d), true) = (item, remote_has) {
            batch.put_cf(self.cf(CF_REMOTE), meta_key(d), now_secs().to_be_bytes());
        }
        self.db().write_opt(batch, &self.write_opts(false)).map_err(db_err)?;
        self.sync_counted(false, removed);
        Ok(())
    }

    /// Queues an item (for `sync push` of blobs stored before a remote was configured).
    pub fn sync_enqueue(&self, item: &SyncItem) -> Result<()> {
        let _g = self.lock_for(item.digest());
        let mut batch = WriteBatch::default();
        let added = self.sync_queue_in(&mut batch, item)?;
        self.db().write(batch).map_err(db_err)?;
        self.sync_counted(added, false);
        Ok(())
    }

    /// Forgets that the remote holds a blob (it was deleted there).
    pub fn forget_remote(&self, d: &Digest) -> Result<()> {
        self.db().delete_cf(self.cf(CF_REMOTE), meta_key(d)).map_err(db_err)
    }

    /// Remembers that the remote holds a blob.
    pub fn mark_remote_known(&self, d: &Digest) -> Result<()> {
        self.db()
            .put_cf(self.cf(CF_REMOTE), meta_key(d), now_secs().to_be_bytes())
            .map_err(db_err)
    }

    /// Of `digests`, those the remote is known to hold.
    pub fn remote_known(&self, digests: &[Digest]) -> Result<Vec<bool>> {
        let keys: Vec<_> = digests.iter().map(meta_key).collect();
        self.db()
            .batched_multi_get_cf(self.cf(CF_REMOTE), keys.iter(), false)
            .into_iter()
            .map(|r| r.map(|v| v.is_some()).map_err(db_err))
            .collect()
    }

    /// Queues every local blob the remote is not known to hold; returns how many.
    pub fn enqueue_unsynced(&self) -> Result<u64> {
        let mut n = 0;
        for entry in self.db().iterator_cf(self.cf(CF_META), IteratorMode::Start) {
            let (k, _) = entry.map_err(db_err)?;
            let Some(d) = super::rocks::digest_of_key(&k) else {
                continue;
            };
            if !self.remote_known(&[d])?[0] && !self.sync_is_pending(&SyncItem::Blob(d))? {
                self.sync_enqueue(&SyncItem::Blob(d))?;
                n += 1;
            }
        }
        Ok(n)
    }
}
