//! `reprovm snapshot restore SNAPSHOT TARGET [--include PATH]…`: recreates files (byte for byte,
//! every chunk re-hashed as it arrives), directories (empty ones too), symlinks, permission bits
//! and mtimes (nanoseconds, symlinks included).
//!
//! Each file is written to a temp file beside it and renamed into place, so a reader never sees
//! a half-restored file. Chunks are fetched [`FETCHES_IN_FLIGHT`] at a time by spawned tasks while
//! the previous ones are written. A directory's mode and mtime are set after its contents (a
//! read-only directory is still filled, and writing into it does not bump its mtime).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use reprovm_sdk::snapshot::{ChunkRef, Entry, EntryKind, Tree};
use reprovm_sdk::{Cas, Digest};

use super::report::{self, Progress};
use super::{load_tree, resolve, Ctx, Usage};

/// Chunks fetched ahead of the one being written.
const FETCHES_IN_FLIGHT: usize = 4;

#[derive(Default)]
struct Counts {
    files: u64,
    dirs: u64,
    symlinks: u64,
    bytes: u64,
}

struct Restorer<'a> {
    ctx: &'a Ctx<'a>,
    counts: Counts,
    progress: Progress,
}

/// Sets the mtime of `path` itself (not a symlink's target); leaves the atime alone.
pub fn set_mtime(path: &Path, ns: i64) -> anyhow::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let mtime = TimeSpec::new(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000));
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .with_context(|| format!("setting the mtime of {}", path.display()))
}

/// Fetches one chunk and checks its size and digest.
async fn fetch(cas: Arc<dyn Cas>, c: ChunkRef) -> anyhow::Result<Bytes> {
    let data = cas
        .get(&c.digest, None)
        .await
        .with_context(|| format!("reading chunk {}", c.digest))?
        .bytes()
        .await
        .with_context(|| format!("reading chunk {}", c.digest))?;
    anyhow::ensure!(
        data.len() as u64 == c.size,
        "chunk {} has {} bytes, the tree says {}",
        c.digest,
        data.len(),
        c.size
    );
    let actual = Digest::of_blake3(&data);
    anyhow::ensure!(
        actual == c.digest,
        "chunk {} is corrupt: it hashes to {actual}",
        c.digest
    );
    Ok(data)
}

impl Restorer<'_> {
    fn entry(&mut self, e: &Entry, dest: &Path) -> anyhow::Result<()> {
        match e.kind {
            EntryKind::Dir => {
                let digest = e.subtree.context("directory entry without a subtree")?;
                let tree = load_tree(self.ctx, &digest)?;
                self.dir(&tree, dest)?;
                std::fs::set_permissions(dest, std::fs::Permissions::from_mode(e.mode))
                    .with_context(|| format!("setting the mode of {}", dest.display()))?;
                set_mtime(dest, e.mtime_ns)?;
                self.counts.dirs += 1;
            }
            EntryKind::File => self.file(e, dest)?,
            EntryKind::Symlink => {
                if std::fs::symlink_metadata(dest).is_ok() {
                    std::fs::remove_file(dest).with_context(|| format!("replacing {}", dest.display()))?;
                }
                let target: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(e.target_bytes()?);
                std::os::unix::fs::symlink(&target, dest)
                    .with_context(|| format!("creating symlink {}", dest.display()))?;
                set_mtime(dest, e.mtime_ns)?;
                self.counts.symlinks += 1;
            }
        }
        Ok(())
    }

    /// Fills the directory `dest` (created if missing) with the entries of `tree`.
    fn dir(&mut self, tree: &Tree, dest: &Path) -> anyhow::Result<()> {
        match std::fs::symlink_metadata(dest) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => anyhow::bail!("{} exists and is not a directory", dest.display()),
            Err(_) => std::fs::create_dir(dest).with_context(|| format!("creating {}", dest.display()))?,
        }
        for child in &tree.entries {
            self.ctx.shutdown.check()?;
            let name = child.name_bytes()?;
            self.entry(child, &dest.join(std::ffi::OsStr::from_bytes(&name)))?;
        }
        Ok(())
    }

    fn file(&mut self, e: &Entry, dest: &Path) -> anyhow::Result<()> {
        let name = dest.file_name().context("file without a name")?;
        let tmp = dest.with_file_name(format!(
            ".{}.reprovm-restore-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        self.progress.message(&dest.to_string_lossy());
        let result = self.write_file(e, &tmp);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result?;
        std::fs::rename(&tmp, dest).with_context(|| format!("renaming into {}", dest.display()))?;
        set_mtime(dest, e.mtime_ns)?;
        self.counts.files += 1;
        Ok(())
    }

    fn write_file(&mut self, e: &Entry, tmp: &Path) -> anyhow::Result<()> {
        let mut file = std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let cas = &self.ctx.cas;
        let progress = &self.progress;
        let shutdown = &self.ctx.shutdown;
        let mut written = 0u64;
        self.ctx.block_on(async {
            let mut chunks = futures::stream::iter(e.chunks.clone())
                .map(|c| tokio::spawn(fetch(Arc::clone(cas), c)))
                .buffered(FETCHES_IN_FLIGHT);
            while let Some(data) = chunks.next().await {
                shutdown.check()?;
                let data = data.context("fetch task")??;
                file.write_all(&data)
                    .with_context(|| format!("writing {}", tmp.display()))?;
                written += data.len() as u64;
                progress.inc(data.len() as u64);
            }
            anyhow::Ok(())
        })?;
        file.set_permissions(std::fs::Permissions::from_mode(e.mode))
            .with_context(|| format!("setting the mode of {}", tmp.display()))?;
        self.counts.bytes += written;
        Ok(())
    }
}

/// The components of an `--include` path inside the snapshot.
fn include_parts(path: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => parts.push(n.as_bytes().to_vec()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Usage(format!("--include {path:?}: `..` is not allowed")).into())
            }
        }
    }
    Ok(parts)
}

/// `snapshot restore`.
pub fn run(ctx: &Ctx, spec: &str, target: &Path, include: &[String]) -> anyhow::Result<u8> {
    let start = Instant::now();
    let snap = resolve(ctx, spec)?;
    let root = load_tree(ctx, &snap.snapshot.root)?;
    std::fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    let mut r = Restorer {
        ctx,
        counts: Counts::default(),
        progress: Progress::bytes(ctx.style, "Restoring"),
    };
    if include.is_empty() {
        r.dir(&root, target)?;
    }
    for inc in include {
        let parts = include_parts(inc)?;
        let Some((last, dirs)) = parts.split_last() else {
            r.dir(&root, target)?;
            continue;
        };
        let mut tree = root.clone();
        let mut dest = PathBuf::from(target);
        for d in dirs {
            let e = tree
                .get(d)
                .filter(|e| e.kind == EntryKind::Dir)
                .ok_or_else(|| Usage(format!("--include {inc:?}: no such directory in {}", snap.id())))?;
            tree = load_tree(ctx, &e.subtree.context("directory entry without a subtree")?)?;
            dest.push(std::ffi::OsStr::from_bytes(d));
        }
        let e = tree
            .get(last)
            .ok_or_else(|| Usage(format!("--include {inc:?}: no such path in {}", snap.id())))?
            .clone();
        std::fs::create_dir_all(&dest).with_context(|| format!("creating {}", dest.display()))?;
        dest.push(std::ffi::OsStr::from_bytes(last));
        r.entry(&e, &dest)?;
    }
    r.progress.finish();
    let took = start.elapsed();
    let c = &r.counts;
    ctx.out.info(&format!(
        "restored {} into {}: {} files ({}), {} dirs, {} symlinks in {:.1}s ({})",
        snap.id(),
        target.display(),
        c.files,
        report::bytes(c.bytes),
        c.dirs,
        c.symlinks,
        took.as_secs_f64(),
        report::rate(c.bytes, took)
    ));
    Ok(0)
}
