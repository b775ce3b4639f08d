//! What a workspace's last runs left behind, so that a run where nothing changed touches neither
//! file contents nor the store (the equivalent of ninja's `.ninja_log`, or git's index):
//!
//! - a **stat cache**: workspace path → (device, inode, size, mode, mtime and ctime in
//!   nanoseconds, BLAKE3 digest, and when the entry was taken). A file whose `stat` is identical
//!   has its digest taken from here instead of being read again.
//! - **task results**: task name → the key it last ran or was restored under, and its action
//!   result. A task whose key is the same and whose outputs `stat` as recorded is up to date:
//!   nothing is read from the store nor written to disk.
//!
//! The "racy git" rule: an entry is trusted only if the file's mtime and ctime are strictly older
//! than the second (of the kernel's file clock) in which the entry was taken. A file written in
//! the same tick as it was hashed could change again without its timestamps moving; such an entry
//! is re-hashed on the next run (and then becomes trusted). The time is read *before* the `stat`
//! and the read, so a change during or after hashing always leaves a newer timestamp.
//!
//! The file lives in `<cache dir>/state/<workspace id>`; it is only a cache: a missing, corrupt
//! or foreign file means a slower run, never a wrong one. It is rewritten (temp file + rename)
//! only when something changed.

mod codec;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use reprovm_sdk::Digest;
use rustc_hash::FxHashMap;

use crate::action_cache::{ActionResult, OutputEntry, RESULT_VERSION};
use codec::{Reader, Writer};

/// Format version of the state file.
const VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"RVMSTATE";

/// The parts of a file's `stat` that change when its content may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// Device.
    pub dev: u64,
    /// Inode (a file replaced by another one has a new inode).
    pub ino: u64,
    /// Bytes.
    pub size: u64,
    /// Type and permission bits.
    pub mode: u32,
    /// Last content change, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Last change of content or metadata (a restored mtime still moves it).
    pub ctime_ns: i64,
}

impl FileStat {
    /// From `stat` (or `lstat`) metadata.
    pub fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mode: m.mode(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        }
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == 0o100000
    }

    /// The permission bits, as action results record them.
    pub fn perm(&self) -> u32 {
        self.mode & 0o7777
    }
}

/// The current second of the clock the kernel stamps files with (`CLOCK_REALTIME_COARSE`),
/// rounded down. Read it before the `stat` of what it dates.
pub fn fs_clock_s() -> i64 {
    use nix::time::{clock_gettime, ClockId};
    match clock_gettime(ClockId::CLOCK_REALTIME_COARSE) {
        Ok(t) => t.tv_sec(),
        // Cannot happen on Linux; trusting nothing is always safe.
        Err(_) => i64::MIN,
    }
}

#[derive(Clone, Debug)]
struct FileEntry {
    stat: FileStat,
    digest: Digest,
    /// [`fs_clock_s`] read before the `stat` and the hash.
    checked_s: i64,
}

#[derive(Clone, Debug)]
struct TaskEntry {
    key: Digest,
    result: ActionResult,
}

/// The state of one workspace, loaded at the start of a run and saved at its end.
#[derive(Debug, Default)]
pub struct State {
    path: Option<PathBuf>,
    /// The store the task results are in (`Store::describe`): results recorded against another
    /// store are dropped, so that a new store still receives every result.
    store: String,
    files: FxHashMap<String, FileEntry>,
    tasks: FxHashMap<String, TaskEntry>,
    dirty: bool,
}

impl State {
    /// Where the state of the workspace rooted at `root` is kept in `cache_dir`.
    pub fn location(cache_dir: &Path, root: &Path) -> PathBuf {
        let id = blake3::hash(root.as_os_str().as_encoded_bytes());
        cache_dir.join("state").join(&id.to_hex()[..16])
    }

    /// The state in `path` for a run against `store`; empty when missing or unreadable.
    pub fn load(path: PathBuf, store: &str) -> Self {
        let mut state = Self {
            store: store.to_string(),
            ..Self::default()
        };
        match std::fs::read(&path) {
            Ok(data) => {
                if let Err(e) = state.decode(&data) {
                    tracing::debug!(path = %path.display(), "ignoring the state file: {e}");
                    state.files.clear();
                    state.tasks.clear();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::debug!(path = %path.display(), "cannot read the state file: {e}"),
        }
        state.path = Some(path);
        state
    }

    /// The digest of `rel` if its entry matches `stat` and is old enough to trust.
    pub fn digest(&self, rel: &str, stat: &FileStat) -> Option<Digest> {
        let e = self.files.get(rel)?;
        let trusted = e.stat == *stat && stat.mtime_ns.max(stat.ctime_ns) < e.checked_s.saturating_mul(1_000_000_000);
        trusted.then_some(e.digest)
    }

    /// Records that `rel`, as `stat` describes it, hashed to `digest`, with `checked_s` read
    /// before the `stat` and the hash.
    pub fn record_file(&mut self, rel: &str, stat: FileStat, digest: Digest, checked_s: i64) {
        let entry = FileEntry {
            stat,
            digest,
            checked_s,
        };
        match self.files.get_mut(rel) {
            Some(e) if e.stat == stat && e.digest == digest && e.checked_s >= checked_s => {}
            Some(e) => {
                *e = entry;
                self.dirty = true;
            }
            None => {
                self.files.insert(rel.to_string(), entry);
                self.dirty = true;
            }
        }
    }

    /// The result `task` last had under `key`, if that is the key it has now.
    pub fn result(&self, task: &str, key: &Digest) -> Option<&ActionResult> {
        self.tasks.get(task).filter(|t| t.key == *key).map(|t| &t.result)
    }

    /// Records the result of a task (named in it) under `key`.
    pub fn record_task(&mut self, key: Digest, result: &ActionResult) {
        if self.result(&result.task, &key) == Some(result) {
            return;
        }
        let entry = TaskEntry {
            key,
            result: result.clone(),
        };
        self.tasks.insert(result.task.clone(), entry);
        self.dirty = true;
    }

    /// Writes the state back if anything changed.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = self.path.as_ref().filter(|_| self.dirty) else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, self.encode())?;
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.dirty = false;
        Ok(())
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.0.extend_from_slice(MAGIC);
        w.u32(VERSION);
        w.str(&self.store);
        w.u64(self.files.len() as u64);
        for (path, e) in &self.files {
            w.str(path);
            let s = &e.stat;
            w.u64(s.dev);
            w.u64(s.ino);
            w.u64(s.size);
            w.u32(s.mode);
            w.i64(s.mtime_ns);
            w.i64(s.ctime_ns);
            w.i64(e.checked_s);
            w.digest(&e.digest);
        }
        w.u64(self.tasks.len() as u64);
        for (name, t) in &self.tasks {
            w.str(name);
            w.digest(&t.key);
            w.u64(t.result.duration_ms);
            w.u64(t.result.outputs.len() as u64);
            for o in &t.result.outputs {
                w.str(&o.path);
                w.digest(&o.digest);
                w.u64(o.size);
                w.u32(o.mode);
            }
        }
        w.finish()
    }

    fn decode(&mut self, data: &[u8]) -> Result<(), codec::Corrupt> {
        let mut r = Reader::checked(data)?;
        if r.bytes(MAGIC.len())? != MAGIC || r.u32()? != VERSION {
            return Err(codec::Corrupt);
        }
        let same_store = r.str()? == self.store;
        let n = r.count(84)?;
        self.files.reserve(n);
        for _ in 0..n {
            let path = r.str()?;
            let stat = FileStat {
                dev: r.u64()?,
                ino: r.u64()?,
                size: r.u64()?,
                mode: r.u32()?,
                mtime_ns: r.i64()?,
                ctime_ns: r.i64()?,
            };
            let checked_s = r.i64()?;
            let digest = r.digest()?;
            self.files.insert(
                path,
                FileEntry {
                    stat,
                    digest,
                    checked_s,
                },
            );
        }
        let n = r.count(52)?;
        self.tasks.reserve(if same_store { n } else { 0 });
        for _ in 0..n {
            let name = r.str()?;
            let key = r.digest()?;
            let duration_ms = r.u64()?;
            let outputs = (0..r.count(48)?)
                .map(|_| {
                    Ok(OutputEntry {
                        path: r.str()?,
                        digest: r.digest()?,
                        size: r.u64()?,
                        mode: r.u32()?,
                    })
                })
                .collect::<Result<Vec<_>, codec::Corrupt>>()?;
            let result = ActionResult {
                version: RESULT_VERSION,
                task: name.clone(),
                exit_code: 0,
                duration_ms,
                outputs,
            };
            if same_store {
                self.tasks.insert(name, TaskEntry { key, result });
            }
        }
        if !r.is_empty() {
            return Err(codec::Corrupt);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(ino: u64, mtime_s: i64) -> FileStat {
        FileStat {
            dev: 1,
            ino,
            size: 3,
            mode: 0o100644,
            mtime_ns: mtime_s * 1_000_000_000 + 5,
            ctime_ns: mtime_s * 1_000_000_000 + 5,
        }
    }

    #[test]
    fn entries_are_trusted_only_when_identical_and_older_than_their_check() {
        let mut s = State::default();
        let d = Digest::of_blake3(b"abc");
        s.record_file("a", stat(7, 100), d, 101);
        assert_eq!(s.digest("a", &stat(7, 100)), Some(d));
        assert_eq!(s.digest("a", &stat(8, 100)), None, "another inode");
        assert_eq!(s.digest("b", &stat(7, 100)), None);
        let mut touched = stat(7, 100);
        touched.ctime_ns += 1;
        assert_eq!(s.digest("a", &touched), None, "ctime moved by a nanosecond");
        // Written in the second it was checked: racy, re-hash.
        s.record_file("a", stat(7, 100), d, 100);
        assert_eq!(s.digest("a", &stat(7, 100)), Some(d), "a later check is kept");
        s.record_file("r", stat(9, 100), d, 100);
        assert_eq!(s.digest("r", &stat(9, 100)), None);
    }

    #[test]
    fn save_and_load_round_trip_and_another_store_drops_the_results() {
        let dir = tempfile::tempdir().unwrap();
        let path = State::location(dir.path(), Path::new("/ws"));
        let mut s = State::load(path.clone(), "local x");
        let d = Digest::of_blake3(b"abc");
        s.record_file("a/b", stat(7, 100), d, 101);
        let result = ActionResult {
            version: RESULT_VERSION,
            task: "t".into(),
            exit_code: 0,
            duration_ms: 12,
            outputs: vec![OutputEntry {
                path: "o".into(),
                digest: d,
                size: 3,
                mode: 0o644,
            }],
        };
        s.record_task(d, &result);
        s.save().unwrap();
        let again = State::load(path.clone(), "local x");
        assert_eq!(again.digest("a/b", &stat(7, 100)), Some(d));
        assert_eq!(again.result("t", &d), Some(&result));
        assert_eq!(again.result("t", &Digest::of_blake3(b"other")), None);
        let other = State::load(path.clone(), "http://elsewhere");
        assert_eq!(other.result("t", &d), None);
        assert_eq!(other.digest("a/b", &stat(7, 100)), Some(d));
        // A damaged file is ignored.
        let mut data = std::fs::read(&path).unwrap();
        data[20] ^= 0xff;
        std::fs::write(&path, data).unwrap();
        assert_eq!(State::load(path, "local x").digest("a/b", &stat(7, 100)), None);
    }
}
