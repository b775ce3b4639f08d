//! `restore`: a backup becomes a data dir, every blob re-hashed before it is
//! renamed into place; existing and running data dirs are protected.

use std::path::{Path, PathBuf};

use super::{io_err, is_lock_error, scan, BackupDir, BackupError, Result, ScanReport, Scratch};

impl BackupDir {
    /// Restores backup `id` (default: the latest) as the data dir `to`. The
    /// backup is restored beside `to`, every blob is re-hashed, and only then
    /// is it renamed into place. An existing database at `to` is replaced
    /// only with `force`, and never while a process holds its lock.
    pub fn restore(&self, id: Option<u32>, to: &Path, force: bool) -> Result<(u32, ScanReport)> {
        check_restore_target(to, force)?;
        let id = self.resolve_id(id)?;
        let name = to
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "data".into());
        let parent = match to.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(io_err("creating", &parent))?;
        let pid = std::process::id();
        let staging = Scratch::new(parent.join(format!(".{name}.restoring-{pid}")));
        self.restore_into(id, &staging.0)?;
        let report = scan::scan_store(&staging.0)?;
        if !report.ok() {
            return Err(BackupError::RestoredCorrupt {
                id,
                blobs: report.blobs,
                corrupt: report.corrupt.len(),
                dir: to.to_path_buf(),
            });
        }
        // Checked again: a server may have started on `to` while we restored.
        check_restore_target(to, force)?;
        if to.exists() {
            let old = Scratch::new(parent.join(format!(".{name}.replaced-{pid}")));
            std::fs::rename(to, &old.0).map_err(io_err("moving aside", to))?;
            std::fs::rename(&staging.0, to).map_err(io_err("moving the restored store to", to))?;
        } else {
            std::fs::rename(&staging.0, to).map_err(io_err("moving the restored store to", to))?;
        }
        Ok((id, report))
    }
}

/// Refuses a restore target that holds a database unless `force`, one whose
/// database a running process has open even with `force`, and a non-empty
/// directory that is not a data dir always (`--force` never deletes arbitrary files).
fn check_restore_target(to: &Path, force: bool) -> Result<()> {
    if to.join("CURRENT").exists() {
        if !force {
            return Err(BackupError::TargetNotEmpty {
                dir: to.to_path_buf(),
                what: "already holds a RocksDB database (a data dir)",
            });
        }
        // Taking the database's lock is the only reliable test that no server has it open.
        // (This opens the old database once; it is about to be replaced anyway.)
        let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), to).unwrap_or_default();
        if let Err(e) = rocksdb::DB::open_cf(&rocksdb::Options::default(), to, cfs) {
            let message = e.to_string();
            if is_lock_error(&message) {
                return Err(BackupError::InUse {
                    dir: to.to_path_buf(),
                    message,
                });
            }
        }
        return Ok(());
    }
    let non_empty = std::fs::read_dir(to).is_ok_and(|mut rd| rd.next().is_some());
    if non_empty {
        return Err(BackupError::NotADataDir { dir: to.to_path_buf() });
    }
    Ok(())
}
