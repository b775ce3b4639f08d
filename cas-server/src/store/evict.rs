//! LRU eviction of the local tier down to a byte budget.
//!
//! Access times live in the `atime` column family (written at upload and,
//! batched, on reads, without the WAL), keyed like `meta`. Eviction walks
//! both column families side by side in key order and keeps only the oldest
//! blobs whose sizes add up to what must be freed (a bounded heap, not every
//! blob's record), skipping blobs still queued for the remote tier (they would
//! be lost), then deletes those oldest first. The walk is O(blobs) in time; it
//! runs only while the store is over its `max_size`, and backs off while
//! nothing more can be evicted.

use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use metrics::counter;
use reprovm_sdk::digest::DIGEST_LEN;
use reprovm_sdk::error::Result;
use rocksdb::IteratorMode;

use super::rocks::{db_err, digest_of_key, BlobMeta, RocksStore, CF_ATIME, CF_META};
use super::sync_queue::SyncItem;

/// A blob that may be evicted, ordered by access time (then digest, for a total order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    atime: u64,
    digest: [u8; DIGEST_LEN + 1],
    size: u64,
}

impl RocksStore {
    /// Deletes least-recently-used blobs until at most `target` bytes are
    /// stored; returns (blobs, bytes) evicted.
    pub fn evict_to(&self, target: u64) -> Result<(u64, u64)> {
        self.flush_atimes();
        let stored = self.counters().logical_bytes.load(Ordering::Relaxed);
        if stored <= target {
            return Ok((0, 0));
        }
        let need = stored - target;
        let check_queue = self.options().track_sync;
        // A max-heap of the oldest candidates: the newest leaves as soon as the others suffice.
        let (mut heap, mut heap_bytes) = (BinaryHeap::<Candidate>::new(), 0u64);
        let mut atimes = self.db().iterator_cf(self.cf(CF_ATIME), IteratorMode::Start).peekable();
        for entry in self.db().iterator_cf(self.cf(CF_META), IteratorMode::Start) {
            let (k, v) = entry.map_err(db_err)?;
            let Some(d) = digest_of_key(&k) else { continue };
            let Ok(meta) = BlobMeta::decode(&v) else { continue };
            // Advance the access-time walk to this key (both are in key order).
            let mut atime = 0;
            while let Some(Ok((ak, av))) = atimes.peek() {
                match ak.as_ref().cmp(k.as_ref()) {
                    std::cmp::Ordering::Less => {
                        atimes.next();
                    }
                    std::cmp::Ordering::Equal => {
                        atime = av.as_ref().try_into().map(u64::from_be_bytes).unwrap_or(0);
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
            if let Some(Err(e)) = atimes.peek() {
                return Err(db_err(e.clone()));
            }
            if check_queue && self.sync_is_pending(&SyncItem::Blob(d))? {
                continue; // not in the remote tier yet: evicting would lose it
            }
            heap.push(Candidate {
                atime,
                digest: k.as_ref().try_into().unwrap_or([0; DIGEST_LEN + 1]),
                size: meta.size,
            });
            heap_bytes += meta.size;
            while heap.peek().is_some_and(|top| heap_bytes - top.size >= need) {
                heap_bytes -= heap.pop().expect("peeked").size;
            }
        }
        let (mut n, mut bytes) = (0u64, 0u64);
        for c in heap.into_sorted_vec() {
            let Some(d) = digest_of_key(&c.digest) else { continue };
            if self.delete_blob(&d)? {
                n += 1;
                bytes += c.size;
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

/// Decides when the eviction loop walks the store: whenever it is over `max`, except that after
/// a walk that could not get under `max` (everything left is waiting for the remote tier), it
/// waits for the store to change or for a backoff to pass before walking again.
pub struct EvictionPacer {
    max: u64,
    blocked: Option<(u64, Instant, Duration)>,
}

impl EvictionPacer {
    /// A pacer for a budget of `max` bytes.
    pub fn new(max: u64) -> Self {
        Self { max, blocked: None }
    }

    /// Whether to walk now, given the bytes stored.
    pub fn should_run(&self, stored: u64) -> bool {
        if stored <= self.max {
            return false;
        }
        match self.blocked {
            Some((at_bytes, since, wait)) => stored > at_bytes || since.elapsed() >= wait,
            None => true,
        }
    }

    /// Records the bytes stored after a walk.
    pub fn ran(&mut self, stored_after: u64) {
        self.blocked = if stored_after > self.max {
            let wait = self.blocked.map_or(Duration::from_secs(4), |(_, _, w)| {
                (w * 2).min(Duration::from_secs(120))
            });
            Some((stored_after, Instant::now(), wait))
        } else {
            None
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_backs_off_while_nothing_can_go() {
        let mut p = EvictionPacer::new(100);
        assert!(!p.should_run(100));
        assert!(p.should_run(101));
        p.ran(150); // could not get under the budget
        assert!(!p.should_run(150), "no new walk until something changes");
        assert!(p.should_run(151), "more stored: walk again");
        p.ran(90);
        assert!(p.should_run(101));
    }

    #[test]
    fn candidates_order_by_access_time() {
        let c = |atime, b| Candidate {
            atime,
            digest: [b; DIGEST_LEN + 1],
            size: 1,
        };
        let mut v = [c(5, 1), c(1, 9), c(3, 2)];
        v.sort();
        assert_eq!(v.iter().map(|c| c.atime).collect::<Vec<_>>(), [1, 3, 5]);
    }
}
