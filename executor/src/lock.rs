//! The run lock: `<cache dir>/lock` holds the PID of the run using the cache dir.
//!
//! The PID inside is what other runs (and people) read: a live PID other than ours means the cache
//! dir is busy, a dead one is a stale lock we take over. An advisory `flock` on the same file makes
//! the take-over race-free between two reprovm processes; the PID check still catches holders that
//! do not use `flock` (older tools, hand-written lock files).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::shutdown::{Interrupted, Shutdown};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds it.
    #[error("already running (PID {pid}); lock file {}", path.display())]
    Held {
        /// The holder.
        pid: u32,
        /// The lock file.
        path: PathBuf,
    },
    /// I/O on the lock file.
    #[error("lock file {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A signal came while waiting for the holder.
    #[error(transparent)]
    Interrupted(#[from] Interrupted),
}

/// The held lock; dropping it removes the file.
#[derive(Debug)]
pub struct LockGuard {
    path: PathBuf,
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Remove while still holding the flock, so nobody takes a file that is going away.
        let _ = std::fs::remove_file(&self.path);
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

/// Whether a process with this PID exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesized command name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        return !matches!(state, Some('Z') | Some('X'));
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// Takes the lock in `dir`, waiting up to `wait` for a live holder to finish (or for a stop request).
pub fn acquire(dir: &Path, wait: Duration, shutdown: &Shutdown) -> Result<LockGuard, LockError> {
    let path = dir.join("lock");
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let deadline = Instant::now() + wait;
    let me = std::process::id();
    loop {
        let held_by = match try_take(&path, me).map_err(io)? {
            Ok(guard) => return Ok(guard),
            Err(pid) => pid,
        };
        if Instant::now() >= deadline {
            return Err(LockError::Held { pid: held_by, path });
        }
        shutdown.check()?;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One attempt: the guard, or the PID of the live holder.
fn try_take(path: &Path, me: u32) -> std::io::Result<Result<LockGuard, u32>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if fs4::FileExt::try_lock(&file).is_err() {
        // Another reprovm holds the flock; its PID may not be written yet.
        let pid = read_pid(&mut file).unwrap_or(0);
        return Ok(Err(pid));
    }
    // We own the flock, but the file may have been removed and replaced since we opened it.
    let same = std::fs::metadata(path).map(|m| m.ino()).ok() == Some(file.metadata()?.ino());
    if !same {
        let _ = fs4::FileExt::unlock(&file);
        return try_take(path, me);
    }
    if let Some(pid) = read_pid(&mut file) {
        if pid != me && pid_alive(pid) {
            let _ = fs4::FileExt::unlock(&file);
            return Ok(Err(pid));
        }
        if pid != me {
            tracing::info!(pid, "taking over a stale lock from a dead process");
        }
    }
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{me}")?;
    file.sync_all()?;
    Ok(Ok(LockGuard {
        path: path.to_path_buf(),
        file,
    }))
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_holder_blocks_dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        std::fs::write(dir.path().join("lock"), format!("{}\n", sleeper.id())).unwrap();
        match acquire(dir.path(), Duration::ZERO, &Shutdown::new()).unwrap_err() {
            LockError::Held { pid, .. } => assert_eq!(pid, sleeper.id()),
            e => panic!("{e}"),
        }
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        let guard = acquire(dir.path(), Duration::ZERO, &Shutdown::new()).unwrap();
        let content = std::fs::read_to_string(dir.path().join("lock")).unwrap();
        assert_eq!(content.trim(), std::process::id().to_string());
        drop(guard);
        assert!(!dir.path().join("lock").exists());
    }

    #[test]
    fn waits_for_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let mut sleeper = std::process::Command::new("sleep").arg("0.5").spawn().unwrap();
        std::fs::write(dir.path().join("lock"), format!("{}\n", sleeper.id())).unwrap();
        let reaper = std::thread::spawn(move || sleeper.wait());
        let start = Instant::now();
        let _guard = acquire(dir.path(), Duration::from_secs(10), &Shutdown::new()).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        reaper.join().unwrap().unwrap();
    }
}
