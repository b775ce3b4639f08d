//! The stat-cache side of a run: file digests that skip the read when the [`State`] vouches for
//! the file, the up-to-date check that skips the store, and recording what a task produced.
//!
//! [`State`]: crate::state::State

use std::borrow::Cow;

use reprovm_sdk::Digest;

use super::Runner;
use crate::action_cache::{self, ActionResult, OutputEntry};
use crate::manifest::Task;
use crate::state::FileStat;
use crate::workspace::{Stat, Workspace};

/// Whether what is on disk is a regular file (not a symlink) of the recorded size and mode.
fn same_file(st: &Stat, o: &OutputEntry) -> bool {
    !st.link && st.stat.is_file() && st.stat.size == o.size && st.stat.perm() == o.mode
}

/// Files up to this size are hashed on the runtime thread; larger ones on the blocking pool.
const INLINE_HASH: u64 = 256 << 10;

impl Runner<'_> {
    /// The `stat` and digest of the workspace file `norm` (a normalized path), `None` when it does
    /// not exist. The digest comes from the state when the file's `stat` is unchanged and old
    /// enough to trust; otherwise the file is read, and the state updated.
    pub(super) async fn file_digest(&self, norm: &str) -> std::io::Result<Option<(FileStat, Digest)>> {
        let Some(st) = self.ws.stat(norm)? else {
            return Ok(None);
        };
        if let Some(d) = self.state.lock().expect("state").digest(norm, &st.stat) {
            return Ok(Some((st.stat, d)));
        }
        tracing::debug!(
            path = norm,
            "hashing: no stat-cache entry, changed, or too recent to trust"
        );
        let abs = self.ws.root().join(norm);
        let d = action_cache::hash_file_sized(&abs, st.stat.size, INLINE_HASH).await?;
        // `checked_s` was read before the `stat`, which came before this read: a change made
        // after either leaves a newer timestamp than the entry's, so the entry can be trusted
        // once its timestamps are older than `checked_s`.
        self.state
            .lock()
            .expect("state")
            .record_file(norm, st.stat, d, st.checked_s);
        Ok(Some((st.stat, d)))
    }

    /// Whether the task last had `key` and its outputs are on disk as recorded (regular files,
    /// same size, mode and digest): then nothing needs to be read from the store.
    pub(super) async fn up_to_date(&self, task: &Task, key: &Digest) -> bool {
        let outputs = {
            let state = self.state.lock().expect("state");
            let Some(result) = state.result(&task.name, key) else {
                return false;
            };
            if !self.declared(task).is_some_and(|d| {
                d.iter()
                    .map(|d| &**d)
                    .eq(result.outputs.iter().map(|o| o.path.as_str()))
            }) {
                return false;
            }
            // Usually every output is vouched for by its stat: no copy, no read.
            let mut all_trusted = true;
            for o in &result.outputs {
                let Ok(Some(st)) = self.ws.stat(&o.path) else {
                    return false;
                };
                if !same_file(&st, o) {
                    return false;
                }
                match state.digest(&o.path, &st.stat) {
                    Some(d) if d == o.digest => {}
                    Some(_) => return false,
                    None => all_trusted = false,
                }
            }
            if all_trusted {
                return true;
            }
            result.outputs.clone()
        };
        for o in &outputs {
            match self.file_digest(&o.path).await {
                Ok(Some((_, d))) if d == o.digest => {}
                _ => return false,
            }
        }
        true
    }

    /// The task's declared outputs, normalized and sorted (as results record them), once checked.
    fn declared<'t>(&self, task: &'t Task) -> Option<Vec<Cow<'t, str>>> {
        let mut declared = Vec::with_capacity(task.outputs.len());
        for o in &task.outputs {
            let norm = Workspace::normalized(o).ok()?;
            self.ws.check(o, &norm).ok()?;
            declared.push(norm);
        }
        declared.sort();
        Some(declared)
    }

    /// Records that `key` produced `result` and that its outputs, as they are on disk now, have
    /// the result's digests. `checked_s` is [`crate::state::fs_clock_s`] as read before the
    /// outputs were hashed (after a run) or written (after a restore).
    pub(super) fn remember(&self, key: &Digest, result: &ActionResult, checked_s: i64) {
        let mut state = self.state.lock().expect("state");
        state.record_task(*key, result);
        for o in &result.outputs {
            match self.ws.stat(&o.path) {
                Ok(Some(st)) if !st.link && st.stat.is_file() && st.stat.size == o.size => {
                    state.record_file(&o.path, st.stat, o.digest, checked_s.min(st.checked_s));
                }
                _ => {}
            }
        }
    }
}
