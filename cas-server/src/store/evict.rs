//! LRU eviction of the local tier down to a byte budget.
//!
//! Access times live in the `atime` column family (written at upload and on
//! each read, without the WAL). Eviction scans the blobs, skips those still
//! queued for the remote tier (they would be lost), and deletes the least
//! recently used until the stored bytes fit the target. The scan is
//! O(blobs); it runs on a blocking thread every few seconds only while the
//! store is over its `max_size`.

use std::sync::atomic::Ordering;

use metrics::counter;
use reprovm_sdk::error::Result;
use rocksdb::IteratorMode;

use super::rocks::{db_err, digest_of_key, meta_key, RocksStore, CF_ATIME, CF_META};
use super::sync_queue::SyncItem;

impl RocksStore {
    /// Deletes least-recently-used blobs until at most `target` bytes are
    /// stored; returns (blobs, bytes) evicted.
    pub fn evict_to(&self, target: u64) -> Result<(u64, u64)> {
        self.flush_atimes();
        let stored = self.counters().logical_bytes.load(Ordering::Relaxed);
        if stored <= target {
            return Ok((0, 0));
        }
        let mut candidates = Vec::new();
        for entry in self.db().iterator_cf(self.cf(CF_META), IteratorMode::Start) {
            let (k, v) = entry.map_err(db_err)?;
            let Some(d) = digest_of_key(&k) else { continue };
            let size = u64::from_be_bytes(v.get(1..9).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
            let atime = self
                .db()
                .get_pinned_cf(self.cf(CF_ATIME), meta_key(&d))
                .map_err(db_err)?
                .and_then(|b| b.as_ref().try_into().ok().map(u64::from_be_bytes))
                .unwrap_or(0);
            candidates.push((atime, size, d));
        }
        candidates.sort_unstable_by_key(|c| c.0);
        let (mut n, mut bytes) = (0u64, 0u64);
        let mut remaining = stored;
        for (_, size, d) in candidates {
            if remaining <= target {
                break;
            }
            if self.sync_is_pending(&SyncItem::Blob(d))? {
                continue; // not in the remote tier yet: evicting would lose it
            }
            if self.delete_blob(&d)? {
                remaining = remaining.saturating_sub(size);
                n += 1;
                bytes += size;
            }
        }
        counter!("reprovm_evictions_total").increment(n);
        counter!("reprovm_evicted_bytes_total").increment(bytes);
        if n > 0 {
            tracing::info!(blobs = n, bytes, target, "evicted least recently used blobs");
        }
        Ok((n, bytes))
    }
}
