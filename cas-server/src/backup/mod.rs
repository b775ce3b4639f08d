//! Store backups: full and incremental copies of the RocksDB store in a
//! directory, made with RocksDB's `BackupEngine`, which copies a consistent
//! state of the open database while it keeps serving.
//!
//! A backup directory holds:
//! - `meta/<id>`, `private/<id>/`, `shared_checksum/`: the engine's own files.
//!   Table and blob files are named by their checksum and size and shared
//!   between backups, so a new backup copies only the files written since the
//!   previous one (incremental).
//! - `manifests/<id>.json`: ours ([`manifest`]). Every file of backup `<id>`
//!   with its size and BLAKE3, written when the backup is made. The engine's
//!   own check only compares sizes; [`BackupDir::verify_files`] re-hashes.
//! - `LOCK.cas-backup`: an advisory lock held by whichever process works on
//!   the directory, so that a CLI command and an online backup never run the
//!   engine on it at the same time (the engine is not multi-writer safe).
//!
//! [`BackupDir::verify_deep`] and [`BackupDir::restore`] restore into a
//! scratch directory and re-hash every blob against its digest ([`scan`]).

pub mod bucket;
pub mod cli;
pub mod manifest;
mod restore;
pub mod scan;

use std::fs::File;
use std::path::{Path, PathBuf};

use reprovm_sdk::error::CasError;
use rocksdb::backup::{BackupEngine, BackupEngineOptions, RestoreOptions};
use serde::Serialize;

use crate::store::rocks::{RocksStore, StoreOptions};
pub use manifest::{FileProblem, FileReport, Manifest};
pub use scan::ScanReport;

const LOCK_FILE: &str = "LOCK.cas-backup";
const SCRATCH_PREFIX: &str = ".cas-verify-";

/// What can go wrong with a backup operation. Verification findings are not
/// errors: they come back as [`FileReport`] and [`ScanReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// An object-store URL was given as the target.
    #[error("{target:?}: object-store backup targets are not supported yet; give a directory")]
    Unsupported {
        /// The target as typed.
        target: String,
    },
    /// `--from` names no directory.
    #[error("no backup directory at {0}")]
    NoBackupDir(PathBuf),
    /// The directory has no backups.
    #[error("no backups in {0}")]
    Empty(PathBuf),
    /// `--id` names no backup.
    #[error("backup {id} does not exist in {dir} (see `cas-server backup list --from {dir}`)")]
    NoSuchBackup {
        /// Backup directory.
        dir: PathBuf,
        /// The id asked for.
        id: u32,
    },
    /// The restore target already holds data.
    #[error("{dir} {what}; pass --force to replace it")]
    TargetNotEmpty {
        /// The `--to` directory.
        dir: PathBuf,
        /// What was found there.
        what: &'static str,
    },
    /// The restore target has files but no database; it is never overwritten.
    #[error("{dir} exists, is not empty and is not a cas-server data dir; restore to a new or empty directory")]
    NotADataDir {
        /// The `--to` directory.
        dir: PathBuf,
    },
    /// A running process holds the RocksDB lock of a directory.
    #[error("{dir} is in use (its RocksDB LOCK is held, probably by a running cas-server): {message}; stop that process first, or back up a running server with POST /v1/admin/backups")]
    InUse {
        /// The database directory.
        dir: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// A restored copy failed verification; nothing was put in place.
    #[error("backup {id} restored with {corrupt} corrupt blob(s) out of {blobs}; {dir} left untouched")]
    RestoredCorrupt {
        /// Backup id.
        id: u32,
        /// Blobs checked.
        blobs: u64,
        /// Blobs that failed their digest.
        corrupt: usize,
        /// The `--to` directory.
        dir: PathBuf,
    },
    /// A RocksDB call failed.
    #[error("{context}: {source}")]
    Rocks {
        /// What we were doing.
        context: String,
        /// RocksDB's error.
        source: rocksdb::Error,
    },
    /// The store could not be opened or read.
    #[error("store: {0}")]
    Store(#[from] CasError),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the path.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A manifest could not be read or written.
    #[error("manifest {path}: {message}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Result of backup operations.
pub type Result<T, E = BackupError> = std::result::Result<T, E>;

pub(crate) fn io_err(context: impl std::fmt::Display, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let context = format!("{context} {}", path.display());
    move |source| BackupError::Io { context, source }
}

fn rocks_err(context: impl Into<String>) -> impl FnOnce(rocksdb::Error) -> BackupError {
    let context = context.into();
    move |source| BackupError::Rocks { context, source }
}

/// One backup, as `list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct BackupInfo {
    /// Always-increasing id.
    pub id: u32,
    /// Unix seconds when it was taken.
    pub timestamp: i64,
    /// Bytes of all its files (shared files count in every backup that uses them).
    pub size: u64,
    /// Number of files.
    pub num_files: u32,
    /// Whether our BLAKE3 manifest exists (backups made by other tools have none).
    pub has_manifest: bool,
}

/// The default backup directory for a data dir: `cas-backups` beside it.
pub fn default_dir(data_dir: &Path) -> PathBuf {
    match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join("cas-backups"),
        _ => PathBuf::from("cas-backups"),
    }
}

/// A backup target as typed: a directory or `file:///dir`; other URLs are refused for now.
pub fn parse_target(target: &str) -> Result<PathBuf> {
    if let Some(path) = target.strip_prefix("file://") {
        return Ok(PathBuf::from(path));
    }
    if target.contains("://") {
        return Err(BackupError::Unsupported {
            target: target.to_string(),
        });
    }
    Ok(PathBuf::from(target))
}

/// An open, locked backup directory.
pub struct BackupDir {
    path: PathBuf,
    /// Held for the lifetime of this value; see the module docs.
    _lock: File,
}

impl BackupDir {
    /// Opens a backup directory, creating it if `create` (else it must exist),
    /// and waits for its lock.
    pub fn open(path: &Path, create: bool) -> Result<Self> {
        if create {
            std::fs::create_dir_all(path).map_err(io_err("creating backup directory", path))?;
        } else if !path.is_dir() {
            return Err(BackupError::NoBackupDir(path.to_path_buf()));
        }
        let lock_path = path.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("opening", &lock_path))?;
        fs4::FileExt::lock(&lock).map_err(io_err("locking", &lock_path))?;
        let dir = Self {
            path: path.to_path_buf(),
            _lock: lock,
        };
        dir.remove_stale_scratch();
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn engine(&self) -> Result<BackupEngine> {
        let ctx = || format!("opening the backup engine on {}", self.path.display());
        let mut opts = BackupEngineOptions::new(&self.path).map_err(rocks_err(ctx()))?;
        opts.set_max_background_operations(2);
        let env = rocksdb::Env::new().map_err(rocks_err(ctx()))?;
        BackupEngine::open(&opts, &env).map_err(rocks_err(ctx()))
    }

    /// Every backup, oldest first.
    pub fn list(&self) -> Result<Vec<BackupInfo>> {
        let engine = self.engine()?;
        let mut out: Vec<BackupInfo> = engine
            .get_backup_info()
            .into_iter()
            .map(|i| BackupInfo {
                id: i.backup_id,
                timestamp: i.timestamp,
                size: i.size,
                num_files: i.num_files,
                has_manifest: manifest::path(&self.path, i.backup_id).exists(),
            })
            .collect();
        out.sort_by_key(|b| b.id);
        Ok(out)
    }

    pub(crate) fn resolve_id(&self, id: Option<u32>) -> Result<u32> {
        let ids: Vec<u32> = self.list()?.iter().map(|b| b.id).collect();
        match id {
            Some(id) if ids.contains(&id) => Ok(id),
            Some(id) => Err(BackupError::NoSuchBackup {
                dir: self.path.clone(),
                id,
            }),
            None => ids.last().copied().ok_or_else(|| BackupError::Empty(self.path.clone())),
        }
    }

    /// Backs up an open store (safe while it serves: the engine copies the
    /// live files of a consistent state after flushing the memtables), then
    /// writes the BLAKE3 manifest of the new backup.
    pub fn backup_store(&self, store: &RocksStore) -> Result<BackupInfo> {
        let mut engine = self.engine()?;
        let before = engine.get_backup_info().iter().map(|i| i.backup_id).max();
        // No commit of WAL-less pieces may fall between the backup's flush and its file list.
        let _paused = store.pause_unlogged_commits();
        engine
            .create_new_backup_flush(store.db(), true)
            .map_err(rocks_err(format!("backing up {}", store.path().display())))?;
        drop(engine);
        let info = self
            .list()?
            .into_iter()
            .filter(|b| Some(b.id) > before)
            .max_by_key(|b| b.id)
            .ok_or_else(|| BackupError::Empty(self.path.clone()))?;
        Manifest::build(&self.path, info.id)?.write(&self.path)?;
        Ok(BackupInfo {
            has_manifest: true,
            ..info
        })
    }

    /// Backs up the data dir of a stopped server.
    pub fn backup_data_dir(&self, data_dir: &Path) -> Result<BackupInfo> {
        if !data_dir.join("CURRENT").is_file() {
            return Err(BackupError::Io {
                context: format!("{} holds no RocksDB database", data_dir.display()),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let store = RocksStore::open(data_dir, StoreOptions::default()).map_err(|e| match e {
            CasError::Backend(message) if is_lock_error(&message) => BackupError::InUse {
                dir: data_dir.to_path_buf(),
                message,
            },
            e => e.into(),
        })?;
        self.backup_store(&store)
    }

    /// Deletes all but the newest `keep` backups (and their manifests); returns the ids removed.
    pub fn prune(&self, keep: usize) -> Result<Vec<u32>> {
        let before: Vec<u32> = self.list()?.iter().map(|b| b.id).collect();
        let mut engine = self.engine()?;
        engine
            .purge_old_backups(keep)
            .map_err(rocks_err(format!("pruning {}", self.path.display())))?;
        drop(engine);
        let after: Vec<u32> = self.list()?.iter().map(|b| b.id).collect();
        let removed: Vec<u32> = before.into_iter().filter(|id| !after.contains(id)).collect();
        for id in &removed {
            let p = manifest::path(&self.path, *id);
            std::fs::remove_file(&p)
                .or_else(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(io_err("removing", &p))?;
        }
        Ok(removed)
    }

    /// The ids `verify` should look at: the engine's backups plus any that
    /// only a manifest still names (the engine skips a backup whose meta
    /// file it cannot read; that must not hide it from verification).
    pub fn ids_to_verify(&self, id: Option<u32>) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.list()?.iter().map(|b| b.id).collect();
        ids.extend(manifest::ids(&self.path)?);
        ids.sort_unstable();
        ids.dedup();
        match id {
            Some(id) if ids.contains(&id) => Ok(vec![id]),
            Some(id) => Err(BackupError::NoSuchBackup {
                dir: self.path.clone(),
                id,
            }),
            None if ids.is_empty() => Err(BackupError::Empty(self.path.clone())),
            None => Ok(ids),
        }
    }

    /// Checks every file of backup `id`: the engine's size check, then each
    /// file re-hashed against the manifest. Problems name the file.
    pub fn verify_files(&self, id: u32) -> Result<FileReport> {
        let mut report = match Manifest::read(&self.path, id)? {
            Some(m) => m.check(&self.path),
            None => FileReport::without_manifest(id),
        };
        let engine = self.engine()?;
        let known = engine.get_backup_info().iter().any(|i| i.backup_id == id);
        if !known {
            report.problems.push(FileProblem::NotInEngine);
        } else if let Err(e) = engine.verify_backup(id) {
            report.problems.push(FileProblem::Engine(e.to_string()));
        }
        Ok(report)
    }

    /// Restores backup `id` into a scratch directory (the engine checks each
    /// file's crc32c while copying) and re-hashes every blob.
    pub fn verify_deep(&self, id: u32) -> Result<ScanReport> {
        let scratch = Scratch::new(self.path.join(format!("{SCRATCH_PREFIX}{id}-{}", std::process::id())));
        self.restore_into(id, &scratch.0)?;
        scan::scan_store(&scratch.0)
    }

    pub(crate) fn restore_into(&self, id: u32, dir: &Path) -> Result<()> {
        let mut engine = self.engine()?;
        engine
            .restore_from_backup(dir, dir, &RestoreOptions::default(), id)
            .map_err(rocks_err(format!("restoring backup {id} into {}", dir.display())))
    }

    fn remove_stale_scratch(&self) {
        let Ok(rd) = std::fs::read_dir(&self.path) else { return };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A directory removed when dropped (scratch restores, a replaced data dir).
pub(crate) struct Scratch(pub(crate) PathBuf);

impl Scratch {
    pub(crate) fn new(path: PathBuf) -> Self {
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// RocksDB reports a held `LOCK` only as text ("While lock file: …/LOCK:
/// Resource temporarily unavailable"); there is no error kind for it.
pub(crate) fn is_lock_error(message: &str) -> bool {
    message.contains("lock file") || message.contains("/LOCK")
}
