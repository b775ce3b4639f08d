//! The store's counts kept on disk: blobs, their bytes, and the length of the
//! sync queue, as one record in the default column family that every commit,
//! delete and queue change adjusts with a merge in its own atomic batch. So the
//! counts are as crash-consistent as the data, and opening a store reads one
//! record instead of walking every meta record (start-up time does not grow
//! with the blob count).
//!
//! A store written before the record existed has none: its first open counts
//! once and writes the record.

use super::*;

/// Key of the record in the default column family.
const TALLY_KEY: &[u8] = b"tally";
/// Name of the merge operator (stored in the database's options file).
pub(super) const MERGE_NAME: &str = "reprovm_tally_add";

/// The counts, or a change to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    pub blobs: i64,
    pub bytes: i64,
    pub queued: i64,
}

impl Tally {
    fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.blobs.to_le_bytes());
        out[8..16].copy_from_slice(&self.bytes.to_le_bytes());
        out[16..].copy_from_slice(&self.queued.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<Self> {
        let at = |i: usize| b.get(i..i + 8)?.try_into().ok().map(i64::from_le_bytes);
        (b.len() == 24).then_some(())?;
        Some(Self {
            blobs: at(0)?,
            bytes: at(8)?,
            queued: at(16)?,
        })
    }

    fn add(self, o: Self) -> Self {
        Self {
            blobs: self.blobs.wrapping_add(o.blobs),
            bytes: self.bytes.wrapping_add(o.bytes),
            queued: self.queued.wrapping_add(o.queued),
        }
    }
}

/// The merge operator: the sum of the base record and every operand.
pub(super) fn merge_add(_key: &[u8], existing: Option<&[u8]>, operands: &rocksdb::MergeOperands) -> Option<Vec<u8>> {
    let base = existing.and_then(Tally::decode).unwrap_or_default();
    let sum = operands.iter().filter_map(Tally::decode).fold(base, Tally::add);
    Some(sum.encode().to_vec())
}

impl RocksStore {
    /// Adds a change of the counts to `batch`.
    pub(crate) fn tally_in(&self, batch: &mut WriteBatch, blobs: i64, bytes: i64, queued: i64) {
        let delta = Tally { blobs, bytes, queued };
        if delta != Tally::default() {
            batch.merge_cf(&self.cf(rocksdb::DEFAULT_COLUMN_FAMILY_NAME), TALLY_KEY, delta.encode());
        }
    }

    /// The counts on disk, `None` for a store written before they were kept.
    pub(super) fn read_tally(&self) -> Result<Option<Tally>> {
        let v = self
            .inner
            .db
            .get_cf(&self.cf(rocksdb::DEFAULT_COLUMN_FAMILY_NAME), TALLY_KEY)
            .map_err(db_err)?;
        v.map(|v| Tally::decode(&v).ok_or_else(|| CasError::Corrupt("the store's count record".into())))
            .transpose()
    }

    /// Writes the counts of a store that had none (its first open by this version).
    pub(super) fn write_tally(&self, t: Tally) -> Result<()> {
        self.inner
            .db
            .put_cf_opt(
                &self.cf(rocksdb::DEFAULT_COLUMN_FAMILY_NAME),
                TALLY_KEY,
                t.encode(),
                &self.write_opts(true),
            )
            .map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_add() {
        let t = Tally {
            blobs: 3,
            bytes: -5,
            queued: 1 << 40,
        };
        assert_eq!(Tally::decode(&t.encode()), Some(t));
        assert_eq!(Tally::decode(&[0; 23]), None);
        assert_eq!(
            t.add(t),
            Tally {
                blobs: 6,
                bytes: -10,
                queued: 2 << 40
            }
        );
    }

    #[test]
    fn counts_survive_reopen_without_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            min_free_space: 0,
            track_sync: true,
            ..StoreOptions::default()
        };
        let digests: Vec<Digest> = (0..5u8)
            .map(|i| {
                let data = vec![i; 1000 + usize::from(i)];
                let d = Digest::of_blake3(&data);
                (d, data)
            })
            .map(|(d, data)| {
                let s = RocksStore::open(dir.path(), opts.clone()).unwrap();
                s.put_reader(&d, Some(data.len() as u64), &data[..]).unwrap();
                d
            })
            .collect();
        let s = RocksStore::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(s.read_tally().unwrap().unwrap().blobs, 5);
        assert!(s.delete_blob(&digests[0]).unwrap());
        drop(s);
        let s = RocksStore::open(dir.path(), opts).unwrap();
        let t = s.read_tally().unwrap().unwrap();
        assert_eq!((t.blobs, t.bytes, t.queued), (4, 1001 + 1002 + 1003 + 1004, 4));
        assert_eq!(s.counters().blobs.load(Ordering::Relaxed), 4);
        assert_eq!(s.sync_backlog(), 4);
    }

    #[test]
    fn a_store_without_the_record_is_counted_once() {
        let dir = tempfile::tempdir().unwrap();
        let opts = StoreOptions {
            min_free_space: 0,
            ..StoreOptions::default()
        };
        {
            let s = RocksStore::open(dir.path(), opts.clone()).unwrap();
            for i in 0..3u8 {
                let data = vec![i; 100];
                s.put_reader(&Digest::of_blake3(&data), Some(100), &data[..]).unwrap();
            }
            // As a store written before the count record and the data-id lease existed.
            let default = s.cf(rocksdb::DEFAULT_COLUMN_FAMILY_NAME);
            s.db().delete_cf(&default, TALLY_KEY).unwrap();
            s.db().delete_cf(&default, DATA_ID_LEASE_KEY).unwrap();
        }
        let s = RocksStore::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(s.counters().blobs.load(Ordering::Relaxed), 3);
        assert_eq!(s.counters().logical_bytes.load(Ordering::Relaxed), 300);
        let t = s.read_tally().unwrap().expect("written at the first open");
        assert_eq!((t.blobs, t.bytes), (3, 300));
        drop(s);
        let s = RocksStore::open(dir.path(), opts).unwrap();
        assert_eq!(s.counters().blobs.load(Ordering::Relaxed), 3);
    }
}
