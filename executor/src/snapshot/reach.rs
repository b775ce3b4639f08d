//! What a snapshot ref keeps alive, for `reprovm cache gc` on the embedded store: the snapshot
//! object, its root tree, every tree below, and every chunk those trees list.
//!
//! A blob that should be there but is missing or corrupt stops the walk with an error: gc cannot
//! know what the unreadable part reaches, so it must delete nothing.

use std::collections::HashSet;

use cas_server::RocksStore;
use reprovm_sdk::snapshot::{FormatError, Snapshot, Tree};
use reprovm_sdk::{CasError, Digest};

/// A snapshot could not be walked.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// A blob the snapshot needs is not in the store.
    #[error(
        "snapshot ref {reference}: {what} {digest} is missing from the store; gc stopped without deleting anything"
    )]
    Missing {
        /// The ref walked.
        reference: String,
        /// `snapshot object` or `tree`.
        what: &'static str,
        /// The blob.
        digest: Digest,
    },
    /// A blob does not hash to its name.
    #[error("snapshot ref {reference}: {what} {digest} is corrupt; gc stopped without deleting anything")]
    Corrupt {
        /// The ref walked.
        reference: String,
        /// `snapshot object` or `tree`.
        what: &'static str,
        /// The blob.
        digest: Digest,
    },
    /// A blob is not in the expected format.
    #[error("snapshot ref {reference}: {source}; gc stopped without deleting anything")]
    Format {
        /// The ref walked.
        reference: String,
        /// The decoder's complaint.
        source: FormatError,
    },
    /// Reading the store.
    #[error(transparent)]
    Cas(#[from] CasError),
}

/// Reads a whole blob (trees and snapshot objects are small) and checks its digest.
fn read_blob(store: &RocksStore, d: &Digest, reference: &str, what: &'static str) -> Result<Vec<u8>, ReachError> {
    let Some(meta) = store.meta(d)? else {
        return Err(ReachError::Missing {
            reference: reference.to_string(),
            what,
            digest: *d,
        });
    };
    let mut out = Vec::with_capacity(meta.size as usize);
    for i in 0..meta.pieces() {
        out.extend_from_slice(&store.read_piece(&meta, i)?);
    }
    if Digest::of_blake3(&out) != *d {
        return Err(ReachError::Corrupt {
            reference: reference.to_string(),
            what,
            digest: *d,
        });
    }
    Ok(out)
}

/// Adds to `live` everything the snapshot object `snapshot` (named by ref `reference`) reaches.
/// `visited` holds the trees already walked (snapshots share most of their trees).
pub fn mark(
    store: &RocksStore,
    reference: &str,
    snapshot: Digest,
    live: &mut HashSet<Digest>,
    visited: &mut HashSet<Digest>,
) -> Result<(), ReachError> {
    let format = |source| ReachError::Format {
        reference: reference.to_string(),
        source,
    };
    live.insert(snapshot);
    let s = Snapshot::decode(&read_blob(store, &snapshot, reference, "snapshot object")?).map_err(format)?;
    let mut stack = vec![s.root];
    while let Some(tree_digest) = stack.pop() {
        if !visited.insert(tree_digest) {
            continue;
        }
        live.insert(tree_digest);
        let tree = Tree::decode(&read_blob(store, &tree_digest, reference, "tree")?).map_err(format)?;
        for e in &tree.entries {
            live.extend(e.chunks.iter().map(|c| c.digest));
            stack.extend(e.subtree);
        }
    }
    Ok(())
}
