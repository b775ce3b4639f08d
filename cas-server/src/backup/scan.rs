//! Re-hashes every blob of a store against its digest, one piece at a time
//! (memory stays at one piece whatever the blob size).

use std::path::Path;

use reprovm_sdk::digest::Digest;
use serde::Serialize;

use super::Result;
use crate::store::rocks::{RocksStore, StoreOptions};

/// What a scan found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScanReport {
    /// Blobs checked.
    pub blobs: u64,
    /// Their decoded bytes.
    pub bytes: u64,
    /// Blobs whose pieces are missing, unreadable, or hash to another digest, with why.
    pub corrupt: Vec<(Digest, String)>,
    /// Refs present (not checked: a ref has no digest of its own).
    pub refs: usize,
}

impl ScanReport {
    /// Whether every blob verified.
    pub fn ok(&self) -> bool {
        self.corrupt.is_empty()
    }
}

/// Opens the store in `dir` (a restored copy: opening cleans up uploads that
/// were in flight when the backup was taken) and re-hashes every blob.
pub fn scan_store(dir: &Path) -> Result<ScanReport> {
    let store = RocksStore::open(
        dir,
        StoreOptions {
            verify_reads: false,
            min_free_space: 0,
            ..StoreOptions::default()
        },
    )?;
    let mut report = ScanReport {
        refs: store.ref_list_sync("")?.len(),
        ..ScanReport::default()
    };
    for item in store.list_blobs() {
        let (digest, meta) = item?;
        report.blobs += 1;
        report.bytes += meta.size;
        // The same check as `cas-server verify`: every piece decodes and the whole hashes right.
        let failure = store.verify_blob(&digest, &meta);
        if let Some(why) = failure {
            report.corrupt.push((digest, why));
        }
    }
    Ok(report)
}
