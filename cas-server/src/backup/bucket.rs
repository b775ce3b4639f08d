//! Backups kept in object storage (`s3://`, `az://`, `gs://`, `http(s)://`).
//!
//! RocksDB's BackupEngine works on a local directory, so a bucket target is a
//! local mirror (a cache directory, `CAS_BACKUP_CACHE` or
//! `/var/tmp/cas-backup-cache/<hash of the URL>`) kept in step with the
//! bucket: before an operation the mirror is filled with what the bucket has
//! (files of the same name and size are not downloaded again), and after
//! `create`/`prune` the bucket is made equal to the mirror (new files
//! uploaded, removed ones deleted). Backup files are immutable and the shared
//! table/blob files are named by checksum and size, so an incremental backup
//! uploads only its new files. Transfers stream in 8 MiB parts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use reprovm_sdk::object_store::ObjectStoreCas;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Whether a backup target names object storage rather than a local directory.
pub fn is_bucket_url(target: &str) -> bool {
    target.contains("://") && !target.starts_with("file://")
}

/// The local mirror directory of a bucket target.
pub fn mirror_dir(url: &str) -> PathBuf {
    let base = std::env::var_os("CAS_BACKUP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/cas-backup-cache"));
    base.join(&blake3::hash(url.as_bytes()).to_hex()[..16])
}

/// A bucket location: the store and the prefix under which the backup files live.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    prefix: ObjPath,
}

fn err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Every regular file under `dir`, as (relative path with `/`, size).
fn local_files(dir: &Path) -> std::io::Result<HashMap<String, u64>> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .map_err(err)?
                    .to_string_lossy()
                    .replace('\\', "/");
                // The lock and scratch space are local matters.
                if !rel.starts_with("LOCK") && !rel.starts_with(".cas-verify") {
                    out.insert(rel, meta.len());
                }
            }
        }
    }
    Ok(out)
}

impl Bucket {
    /// Opens a bucket URL (credentials from the providers' usual environment variables).
    pub fn open(url: &str) -> std::io::Result<Self> {
        let cas = ObjectStoreCas::from_url(url, Vec::<(String, String)>::new()).map_err(err)?;
        Ok(Self {
            store: cas.inner().clone(),
            prefix: cas.prefix().clone(),
        })
    }

    fn key(&self, rel: &str) -> ObjPath {
        rel.split('/').fold(self.prefix.clone(), |p, part| p.join(part))
    }

    async fn remote_files(&self) -> std::io::Result<HashMap<String, u64>> {
        let list: Vec<_> = self.store.list(Some(&self.prefix)).try_collect().await.map_err(err)?;
        let base = self.prefix.as_ref();
        Ok(list
            .into_iter()
            .filter_map(|m| {
                let full = m.location.as_ref();
                let rel = if base.is_empty() {
                    full
                } else {
                    full.strip_prefix(base)?.strip_prefix('/')?
                };
                Some((rel.to_string(), m.size))
            })
            .collect())
    }

    /// Fills `dir` with the bucket's files; returns how many were downloaded.
    pub async fn pull(&self, dir: &Path) -> std::io::Result<usize> {
        let local = if dir.is_dir() {
            local_files(dir)?
        } else {
            HashMap::new()
        };
        let mut n = 0;
        for (rel, size) in self.remote_files().await? {
            if local.get(&rel) == Some(&size) {
                continue;
            }
            let target = dir.join(&rel);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let tmp = target.with_extension("part");
            let mut file = tokio::fs::File::create(&tmp).await?;
            let mut body = self.store.get(&self.key(&rel)).await.map_err(err)?.into_stream();
            while let Some(chunk) = body.try_next().await.map_err(err)? {
                file.write_all(&chunk).await?;
            }
            file.sync_all().await?;
            tokio::fs::rename(&tmp, &target).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Makes the bucket equal to `dir`; returns (uploaded, deleted).
    pub async fn push(&self, dir: &Path) -> std::io::Result<(usize, usize)> {
        let local = local_files(dir)?;
        let remote = self.remote_files().await?;
        // Data files first, BackupEngine's meta files last: a bucket copy never lists a backup
        // whose files are not there yet.
        let mut todo: Vec<&String> = local
            .iter()
            .filter(|(rel, size)| remote.get(*rel) != Some(size))
            .map(|(r, _)| r)
            .collect();
        todo.sort_by_key(|rel| {
            (
                rel.starts_with("meta/") || rel.starts_with("manifests/"),
                (*rel).clone(),
            )
        });
        for rel in &todo {
            let upload = self.store.put_multipart(&self.key(rel)).await.map_err(err)?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
            let mut file = tokio::fs::File::open(dir.join(rel)).await?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                writer.wait_for_capacity(4).await.map_err(err)?;
                writer.write(&buf[..n]);
            }
            writer.finish().await.map_err(err)?;
        }
        let mut deleted = 0;
        for rel in remote.keys().filter(|rel| !local.contains_key(*rel)) {
            self.store.delete(&self.key(rel)).await.map_err(err)?;
            deleted += 1;
        }
        Ok((todo.len(), deleted))
    }
}
