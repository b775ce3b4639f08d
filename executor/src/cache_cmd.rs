//! `reprovm cache stats|clean|verify|gc` and the `--clean-cache` / `--verify-cache` flags, on the
//! embedded store of a cache dir (remote stores are maintained by their own server or bucket tools).
//!
//! gc's roots are the store's own action cache and refs, read in full before anything is
//! deleted: any failure to read one (a store error, an undecodable action result, a snapshot
//! whose trees cannot be walked) stops gc with an error and nothing deleted, since an unread
//! root may reach any blob.

use std::collections::HashSet;
use std::path::Path;

use cas_server::RocksStore;
use reprovm_sdk::{CasError, Digest, Hasher};

use crate::action_cache::{ActionResult, DecodeError};
use crate::shutdown::{Interrupted, Shutdown};
use crate::store::{local_dir, open_local, StoreError};

/// Cache maintenance failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Opening the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading it.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// Files of the cache dir.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A snapshot whose trees cannot be walked (gc then deletes nothing).
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::reach::ReachError),
    /// Reading gc's roots from the store failed (gc then deletes nothing).
    #[error("{what}: {source}; gc stopped without deleting anything")]
    Roots {
        /// What was being read.
        what: String,
        /// Why it failed.
        source: CasError,
    },
    /// An action result gc cannot read, so it cannot know what it keeps alive.
    #[error(
        "action result {key}: {source}; gc stopped without deleting anything (rerunning the task that \
         wrote it replaces it; `reprovm cache clean` empties the cache)"
    )]
    BadResult {
        /// Its action-cache key.
        key: Digest,
        /// Why it does not decode.
        source: DecodeError,
    },
    /// A signal stopped it between two blobs.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
    /// A snapshot ref whose value is not a digest.
    #[error("snapshot ref {name} does not hold a snapshot digest; gc stopped without deleting anything")]
    BadSnapshotRef {
        /// The ref.
        name: String,
    },
}

fn roots(what: impl Into<String>) -> impl FnOnce(CasError) -> CacheError {
    move |source| CacheError::Roots {
        what: what.into(),
        source,
    }
}

/// Figures of `cache stats`.
#[derive(Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Stored blobs.
    pub blobs: u64,
    /// Their total size.
    pub bytes: u64,
    /// Size of the database files.
    pub disk_bytes: u64,
    /// Action results recorded.
    pub action_results: u64,
    /// Refs.
    pub refs: u64,
}

/// A blob that failed verification.
#[derive(Debug)]
pub struct Corrupt {
    /// Its name.
    pub digest: Digest,
    /// What was wrong.
    pub reason: String,
}

/// `cache stats`.
pub fn stats(cache_dir: &Path) -> Result<Stats, CacheError> {
    if !local_dir(cache_dir).exists() {
        return Ok(Stats::default());
    }
    let store = open_local(cache_dir)?;
    let mut s = Stats {
        disk_bytes: store.disk_bytes(),
        refs: store.ref_list_sync("")?.len() as u64,
        ..Stats::default()
    };
    for item in store.list_blobs() {
        let (_, meta) = item?;
        s.blobs += 1;
        s.bytes += meta.size;
    }
    for item in store.list_ac() {
        item?;
        s.action_results += 1;
    }
    Ok(s)
}

/// `cache clean`: deletes the embedded store. Returns the bytes freed.
pub fn clean(cache_dir: &Path) -> Result<u64, CacheError> {
    let mut freed = 0;
    // The workspace states go too: they vouch for results that were in the store.
    for dir in [local_dir(cache_dir), cache_dir.join("state")] {
        if dir.exists() {
            freed += dir_size(&dir);
            std::fs::remove_dir_all(&dir)?;
        }
    }
    Ok(freed)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Re-hashes every blob of `store`; returns the corrupt ones (and deletes them when `delete`).
pub fn verify(store: &RocksStore, delete: bool, shutdown: &Shutdown) -> Result<(u64, Vec<Corrupt>), CacheError> {
    let mut checked = 0;
    let mut bad = Vec::new();
    let blobs: Vec<_> = store.list_blobs().collect::<Result<_, _>>()?;
    for (digest, meta) in blobs {
        shutdown.check()?;
        checked += 1;
        let mut h = Hasher::new(digest.kind());
        let mut n = 0u64;
        let mut reason = None;
        for idx in 0..meta.pieces() {
            match store.read_piece(&meta, idx) {
                Ok(piece) => {
                    n += piece.len() as u64;
                    h.update(&piece);
                }
                Err(e) => {
                    reason = Some(e.to_string());
                    break;
                }
            }
        }
        let reason = reason.or_else(|| {
            if n != meta.size {
                Some(format!("{n} bytes stored, {} recorded", meta.size))
            } else {
                let actual = h.finalize();
                (actual != digest).then(|| format!("content hashes to {actual}"))
            }
        });
        if let Some(reason) = reason {
            if delete {
                store.delete_blob(&digest)?;
            }
            bad.push(Corrupt { digest, reason });
        }
    }
    Ok((checked, bad))
}

/// `cache gc`: deletes the blobs no action result and no ref reaches. Returns (kept, deleted, bytes freed).
/// A stop request ends it between two deletions (what is deleted was garbage either way).
pub fn gc(cache_dir: &Path, dry_run: bool, shutdown: &Shutdown) -> Result<(u64, u64, u64), CacheError> {
    if !local_dir(cache_dir).exists() {
        return Ok((0, 0, 0));
    }
    let store = open_local(cache_dir)?;
    let live = live_set(&store)?;
    let (mut kept, mut deleted, mut freed) = (0, 0, 0);
    let blobs: Vec<_> = store.list_blobs().collect::<Result<_, _>>()?;
    for (d, meta) in blobs {
        if live.contains(&d) {
            kept += 1;
        } else {
            if !dry_run {
                shutdown.check()?;
                store.delete_blob(&d)?;
            }
            deleted += 1;
            freed += meta.size;
        }
    }
    Ok((kept, deleted, freed))
}

/// Every blob an action result or a ref reaches; an error if any of them cannot be read.
fn live_set(store: &RocksStore) -> Result<HashSet<Digest>, CacheError> {
    let mut live: HashSet<Digest> = HashSet::new();
    for item in store.list_ac() {
        let (key, value) = item.map_err(roots("listing the action cache"))?;
        let result = ActionResult::parse(&value).map_err(|source| CacheError::BadResult { key, source })?;
        live.extend(result.outputs.iter().map(|o| o.digest));
    }
    // Refs are opaque to the store: any digest written in a ref's value keeps that blob. A
    // snapshot ref's value is the digest of a snapshot object: walk it to its trees and chunks.
    let mut trees_walked = HashSet::new();
    for name in store.ref_list_sync("").map_err(roots("listing refs"))? {
        let Some(r) = store
            .ref_get_sync(&name)
            .map_err(roots(format!("reading ref {name}")))?
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&r.value);
        if name.starts_with(reprovm_sdk::snapshot::REF_ROOT) {
            let d = Digest::parse(text.trim()).map_err(|_| CacheError::BadSnapshotRef { name: name.clone() })?;
            crate::snapshot::reach::mark(store, &name, d, &mut live, &mut trees_walked)?;
        } else {
            live.extend(digests_in(&text));
        }
    }
    Ok(live)
}

/// Every 64-hex run in `text` that parses as a digest.
fn digests_in(text: &str) -> Vec<Digest> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .filter_map(|w| Digest::parse(w).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_digests_in_ref_values() {
        let d = Digest::of_blake3(b"x");
        let text = format!("{{\"root\":\"{d}\",\"n\":1}}");
        assert_eq!(digests_in(&text), vec![d]);
        assert!(digests_in("no digests here").is_empty());
    }
}
