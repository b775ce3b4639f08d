//! Scrub: re-hash every stored blob, report the corrupt ones, and quarantine
//! them so that they are never served (`cas-server verify [--repair]`).
//!
//! A quarantined blob loses its `meta` record (so GET/HEAD answer 404 and
//! `find_missing` lists it) and its pieces; what it was (its meta record and
//! when it was quarantined) is kept in the `quarantine` column family for the
//! operator. A later PUT of the right bytes stores the blob afresh: it heals,
//! and the next scrub drops the quarantine record of a blob that is back.
//!
//! Reads verify too (see `rocks.rs`): a one-piece blob is re-hashed before a
//! byte is sent (500 `corrupt`), a streamed one is hashed as it goes and the
//! stream ends with an error on mismatch, so the connection is aborted
//! instead of completed. Scrub finds what nobody has read yet.

use reprovm_sdk::digest::{Digest, Hasher};
use reprovm_sdk::error::Result;
use rocksdb::{IteratorMode, WriteBatch};
use serde::Serialize;

use super::rocks::{db_err, digest_of_key, meta_key, now_secs, BlobMeta, RocksStore, CF_META, CF_QUARANTINE};

/// What a scrub found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScrubReport {
    /// Blobs checked.
    pub blobs: u64,
    /// Their decoded bytes.
    pub bytes: u64,
    /// Blobs whose pieces are missing, undecodable, or hash to another digest, with why.
    pub corrupt: Vec<(Digest, String)>,
    /// How many of `corrupt` this scrub quarantined (only with repair).
    pub quarantined: u64,
    /// Quarantine records dropped because the blob was uploaded again since.
    pub healed: u64,
    /// Blobs in quarantine after the scrub (not served until uploaded again).
    pub in_quarantine: Vec<Digest>,
}

impl ScrubReport {
    /// Whether every blob verified.
    pub fn ok(&self) -> bool {
        self.corrupt.is_empty()
    }
}

impl RocksStore {
    /// Re-hashes one blob, a piece at a time; `Some(why)` when it is corrupt.
    pub fn verify_blob(&self, digest: &Digest, meta: &BlobMeta) -> Option<String> {
        let mut hasher = Hasher::new(digest.kind());
        for idx in 0..meta.pieces() {
            match self.read_piece(meta, idx) {
                Ok(piece) => hasher.update(&piece),
                Err(e) => return Some(e.to_string()),
            }
        }
        let actual = hasher.finalize();
        (actual != *digest).then(|| format!("contents hash to {actual}"))
    }

    /// Re-hashes every blob; with `repair`, quarantines the corrupt ones.
    /// Memory stays at one piece plus the list of corrupt digests.
    pub fn scrub(&self, repair: bool) -> Result<ScrubReport> {
        let mut report = ScrubReport::default();
        for item in self.db().iterator_cf(self.cf(CF_META), IteratorMode::Start) {
            let (k, v) = item.map_err(db_err)?;
            let Some(digest) = digest_of_key(&k) else { continue };
            let meta = match BlobMeta::decode(&v) {
                Ok(meta) => meta,
                Err(e) => {
                    // A record that cannot be read is a corrupt blob, not the end of the scrub.
                    tracing::error!(%digest, error = %e, "stored blob has a corrupt meta record");
                    report.blobs += 1;
                    report.corrupt.push((digest, e.to_string()));
                    continue;
                }
            };
            report.blobs += 1;
            report.bytes += meta.size;
            if let Some(why) = self.verify_blob(&digest, &meta) {
                tracing::error!(%digest, %why, "stored blob is corrupt");
                report.corrupt.push((digest, why));
            }
        }
        if repair {
            for (digest, _) in &report.corrupt {
                if self.quarantine(digest)? {
                    report.quarantined += 1;
                }
            }
        }
        for (digest, _, _) in self.quarantined()? {
            if self.meta(&digest)?.is_some() {
                // Uploaded again (and verified by that upload): the blob healed.
                self.db()
                    .delete_cf(self.cf(CF_QUARANTINE), meta_key(&digest))
                    .map_err(db_err)?;
                report.healed += 1;
            } else {
                report.in_quarantine.push(digest);
            }
        }
        Ok(report)
    }

    /// Takes a blob out of service: records it in `quarantine`, then deletes
    /// its meta record and pieces. Returns whether it was stored.
    pub fn quarantine(&self, digest: &Digest) -> Result<bool> {
        // The record as stored (it may be the corrupt part).
        let Some(mut record) = self.db().get_cf(self.cf(CF_META), meta_key(digest)).map_err(db_err)? else {
            return Ok(false);
        };
        record.extend_from_slice(&now_secs().to_be_bytes());
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_QUARANTINE), meta_key(digest), record);
        // The record is durable before the blob goes: a crash in between leaves a
        // corrupt blob that the next scrub finds again, never an unrecorded loss.
        self.db().write_opt(batch, &self.write_opts(true)).map_err(db_err)?;
        self.delete_blob(digest)?;
        tracing::warn!(%digest, "corrupt blob quarantined");
        Ok(true)
    }

    /// Blobs in quarantine with the meta record they had, and the Unix
    /// seconds when they were quarantined.
    pub fn quarantined(&self) -> Result<Vec<(Digest, BlobMeta, u64)>> {
        let mut out = Vec::new();
        for item in self.db().iterator_cf(self.cf(CF_QUARANTINE), IteratorMode::Start) {
            let (k, v) = item.map_err(db_err)?;
            let Some(digest) = digest_of_key(&k) else { continue };
            let (meta, at) = v.split_at(v.len().saturating_sub(8));
            if let (Ok(meta), Ok(at)) = (BlobMeta::decode(meta), <[u8; 8]>::try_from(at)) {
                out.push((digest, meta, u64::from_be_bytes(at)));
            }
        }
        Ok(out)
    }
}
