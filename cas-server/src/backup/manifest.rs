//! `manifests/<id>.json`: every file of a backup with its size and BLAKE3,
//! written when the backup is made and checked by `verify`.
//!
//! The file list comes from the engine's meta file `meta/<id>` (schema 1:
//! a timestamp line, a sequence-number line, optional `metadata` line, the
//! file count, then `<relative path> crc32 <crc32c>` per file). The meta file
//! itself is listed too, so an edit to it is caught.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{io_err, BackupError, Result};

/// One file of a backup.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Path relative to the backup directory.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// BLAKE3 of the contents, hex.
    pub blake3: String,
}

/// The manifest of one backup.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Backup id.
    pub backup_id: u32,
    /// Unix seconds when the manifest was written.
    pub created: u64,
    /// Every file, in the meta file's order, the meta file last.
    pub files: Vec<ManifestEntry>,
}

/// Where the manifest of backup `id` lives.
pub fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join("manifests").join(format!("{id}.json"))
}

/// Ids that have a manifest.
pub fn ids(dir: &Path) -> Result<Vec<u32>> {
    let mdir = dir.join("manifests");
    let rd = match std::fs::read_dir(&mdir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("listing", &mdir)(e)),
    };
    Ok(rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
        .collect())
}

/// Files named by the engine's meta file of backup `id`.
fn files_in_meta(dir: &Path, id: u32) -> Result<Vec<String>> {
    let meta = dir.join("meta").join(id.to_string());
    let text = std::fs::read_to_string(&meta).map_err(io_err("reading", &meta))?;
    let bad = |message: String| BackupError::Manifest {
        path: meta.clone(),
        message,
    };
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let mut line = lines.next().ok_or_else(|| bad("empty meta file".into()))?;
    if line.starts_with("schema_version ") {
        line = lines.next().ok_or_else(|| bad("no timestamp".into()))?;
    }
    let _timestamp = line;
    let _sequence = lines.next().ok_or_else(|| bad("no sequence number".into()))?;
    let count = loop {
        let l = lines.next().ok_or_else(|| bad("no file count".into()))?;
        if let Ok(n) = l.trim().parse::<usize>() {
            break n;
        }
        // A `<field> <data>` line (e.g. `metadata`) before the count.
    };
    let files: Vec<String> = lines
        .take(count)
        .filter_map(|l| l.split(' ').next().map(str::to_string))
        .collect();
    if files.len() != count {
        return Err(bad(format!("lists {} of {count} files", files.len())));
    }
    Ok(files)
}

/// BLAKE3 and size of a file, streamed.
fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hasher.finalize().to_hex().to_string()))
}

impl Manifest {
    /// Hashes every file of backup `id`. Files under `shared_checksum/` are
    /// named by their crc32c and size, so an entry an earlier manifest has for
    /// the same name is reused (an incremental backup hashes only new files).
    pub fn build(dir: &Path, id: u32) -> Result<Self> {
        let mut known: HashMap<String, ManifestEntry> = HashMap::new();
        if let Some(prev) = ids(dir)?.into_iter().filter(|i| *i < id).max() {
            if let Some(m) = Self::read(dir, prev)? {
                known.extend(
                    m.files
                        .into_iter()
                        .filter(|e| e.path.starts_with("shared_checksum/"))
                        .map(|e| (e.path.clone(), e)),
                );
            }
        }
        let mut names = files_in_meta(dir, id)?;
        names.push(format!("meta/{id}"));
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            if let Some(e) = known.remove(&name) {
                files.push(e);
                continue;
            }
            let p = dir.join(&name);
            let (size, blake3) = hash_file(&p).map_err(io_err("hashing", &p))?;
            files.push(ManifestEntry {
                path: name,
                size,
                blake3,
            });
        }
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Self {
            version: 1,
            backup_id: id,
            created,
            files,
        })
    }

    /// Writes the manifest (to a temporary name, then renamed: never half-written).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let target = path(dir, self.backup_id);
        let mdir = dir.join("manifests");
        std::fs::create_dir_all(&mdir).map_err(io_err("creating", &mdir))?;
        let tmp = target.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).expect("serializable");
        std::fs::write(&tmp, text).map_err(io_err("writing", &tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err("syncing", &tmp))?;
        std::fs::rename(&tmp, &target).map_err(io_err("renaming", &target))
    }

    /// Reads the manifest of backup `id`, if there is one.
    pub fn read(dir: &Path, id: u32) -> Result<Option<Self>> {
        let p = path(dir, id);
        let text = match std::fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &p)(e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| BackupError::Manifest {
                path: p,
                message: e.to_string(),
            })
    }

    /// Re-hashes every listed file.
    pub fn check(&self, dir: &Path) -> FileReport {
        let mut report = FileReport {
            id: self.backup_id,
            files: self.files.len(),
            bytes: 0,
            problems: Vec::new(),
        };
        for e in &self.files {
            let p = dir.join(&e.path);
            match hash_file(&p) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    report.problems.push(FileProblem::Missing { path: e.path.clone() })
                }
                Err(err) => report.problems.push(FileProblem::Unreadable {
                    path: e.path.clone(),
                    message: err.to_string(),
                }),
                Ok((size, _)) if size != e.size => report.problems.push(FileProblem::SizeChanged {
                    path: e.path.clone(),
                    expected: e.size,
                    actual: size,
                }),
                Ok((size, hash)) if hash != e.blake3 => {
                    report.bytes += size;
                    report.problems.push(FileProblem::Modified { path: e.path.clone() })
                }
                Ok((size, _)) => report.bytes += size,
            }
        }
        report
    }
}

/// What `verify` found about the files of one backup.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// Backup id.
    pub id: u32,
    /// Files listed.
    pub files: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Everything wrong, each naming its file where there is one.
    pub problems: Vec<FileProblem>,
}

impl FileReport {
    /// A report for a backup that has no manifest: that is a problem of its own.
    pub fn without_manifest(id: u32) -> Self {
        Self {
            id,
            files: 0,
            bytes: 0,
            problems: vec![FileProblem::NoManifest],
        }
    }

    /// Whether nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One finding of `verify`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum FileProblem {
    /// A listed file is gone.
    Missing {
        /// Relative path.
        path: String,
    },
    /// A listed file cannot be read.
    Unreadable {
        /// Relative path.
        path: String,
        /// OS error.
        message: String,
    },
    /// A listed file has another size.
    SizeChanged {
        /// Relative path.
        path: String,
        /// Size in the manifest.
        expected: u64,
        /// Size now.
        actual: u64,
    },
    /// A listed file has the same size but other contents.
    Modified {
        /// Relative path.
        path: String,
    },
    /// The backup has no manifest, so its files cannot be re-hashed.
    NoManifest,
    /// A manifest exists but the engine does not list the backup (its meta file is unreadable or gone).
    NotInEngine,
    /// The engine's own check failed.
    Engine(String),
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing { path } => write!(f, "MISSING  {path}"),
            Self::Unreadable { path, message } => write!(f, "UNREADABLE {path}: {message}"),
            Self::SizeChanged { path, expected, actual } => {
                write!(f, "SIZE     {path}: {actual} bytes, expected {expected}")
            }
            Self::Modified { path } => write!(f, "MODIFIED {path}: BLAKE3 differs from the manifest"),
            Self::NoManifest => write!(f, "no manifest: file contents cannot be checked (only sizes)"),
            Self::NotInEngine => write!(f, "RocksDB does not list this backup (meta file unreadable or missing)"),
            Self::Engine(m) => write!(f, "RocksDB check failed: {m}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_schema_1_and_2_meta_files() {
        let dir = std::env::temp_dir().join(format!("cas-manifest-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        std::fs::write(
            dir.join("meta/1"),
            "1700000000\n42\n2\nprivate/1/MANIFEST-000005 crc32 1\nshared_checksum/000009_7_3.sst crc32 7\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("meta/2"),
            "schema_version 2.1\n1700000000\n42\nmetadata 00\n1\nshared_checksum/a.blob crc32 1 size 3\n",
        )
        .unwrap();
        assert_eq!(
            files_in_meta(&dir, 1).unwrap(),
            ["private/1/MANIFEST-000005", "shared_checksum/000009_7_3.sst"]
        );
        assert_eq!(files_in_meta(&dir, 2).unwrap(), ["shared_checksum/a.blob"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
