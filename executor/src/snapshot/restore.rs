//! `reprovm snapshot restore SNAPSHOT TARGET [--include PATH]…`: recreates files (byte for byte,
//! every chunk re-hashed as it arrives), directories (empty ones too), symlinks, permission bits
//! and mtimes (nanoseconds, symlinks included).
//!
//! The main thread walks the trees, creates directories and symlinks and hands each file to a
//! job on the blocking pool, [`FILES_IN_FLIGHT`] at a time, so that small files do not wait on
//! each other's round trips to the store. A job fetches its chunks [`FETCHES_IN_FLIGHT`] ahead,
//! within [`BYTES_IN_FLIGHT`] of fetched and unwritten chunk data over all jobs, into a temp file
//! beside the destination that is renamed into place when whole, so a reader never sees a
//! half-restored file (no fsync: an interrupted restore is redone, not resumed). Directory modes
//! and mtimes are set last, deepest first, once every file is in (a read-only directory is still
//! filled, and writing into it does not bump its mtime).

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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};

use super::report::{self, Counter, Progress};
use super::{load_tree, resolve, Ctx, Resolved, Usage};
use crate::shutdown::Shutdown;

/// Files restored at once.
const FILES_IN_FLIGHT: usize = 8;
/// Chunks of one file fetched ahead of the one being written.
const FETCHES_IN_FLIGHT: usize = 4;
/// Chunk bytes fetched and not yet written, over all files (a chunk is at most 4 MiB).
const BYTES_IN_FLIGHT: usize = 48 << 20;

#[derive(Default)]
struct Counts {
    files: u64,
    dirs: u64,
    symlinks: u64,
    bytes: u64,
}

/// What a file job needs besides its entry.
#[derive(Clone)]
struct Job {
    cas: Arc<dyn Cas>,
    rt: tokio::runtime::Handle,
    /// Permits are bytes of fetched, unwritten chunk data.
    budget: Arc<Semaphore>,
    progress: Counter,
    shutdown: Shutdown,
}

struct Restorer<'a> {
    ctx: &'a Ctx<'a>,
    counts: Counts,
    progress: Progress,
    job: Job,
    /// File jobs running; each returns the bytes it wrote.
    running: JoinSet<anyhow::Result<u64>>,
    /// Directories whose mode and mtime are set once every file is in, children before parents.
    dirs: Vec<(PathBuf, u32, i64)>,
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

/// Fetches one chunk once `budget` has room for it, and checks its size and digest.
async fn fetch(
    cas: Arc<dyn Cas>,
    budget: Arc<Semaphore>,
    c: ChunkRef,
) -> anyhow::Result<(Bytes, OwnedSemaphorePermit)> {
    let permits = c.size.clamp(1, BYTES_IN_FLIGHT as u64) as u32;
    let permit = budget
        .acquire_many_owned(permits)
        .await
        .context("the restore is stopping")?;
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
    Ok((data, permit))
}

/// One file job: chunks into a temp file beside `dest`, then mode, rename and mtime. The temp
/// file is removed if anything fails.
fn restore_file(job: &Job, e: &Entry, dest: &Path) -> anyhow::Result<u64> {
    let name = dest.file_name().context("file without a name")?;
    let tmp = dest.with_file_name(format!(
        ".{}.reprovm-restore-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = match write_file(job, e, &tmp) {
        Ok(n) => n,
        Err(err) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(err);
        }
    };
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming into {}", dest.display()))?;
    set_mtime(dest, e.mtime_ns)?;
    Ok(written)
}

fn write_file(job: &Job, e: &Entry, tmp: &Path) -> anyhow::Result<u64> {
    let mut file = std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut written = 0u64;
    job.rt.block_on(async {
        let mut chunks = futures::stream::iter(e.chunks.iter().copied())
            .map(|c| tokio::spawn(fetch(Arc::clone(&job.cas), Arc::clone(&job.budget), c)))
            .buffered(FETCHES_IN_FLIGHT);
        while let Some(fetched) = chunks.next().await {
            job.shutdown.check()?;
            let (data, _permit) = fetched.context("fetch task")??;
            file.write_all(&data)
                .with_context(|| format!("writing {}", tmp.display()))?;
            written += data.len() as u64;
            job.progress.inc(data.len() as u64);
        }
        anyhow::Ok(())
    })?;
    file.set_permissions(std::fs::Permissions::from_mode(e.mode))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    Ok(written)
}

impl Restorer<'_> {
    fn entry(&mut self, e: &Entry, dest: &Path) -> anyhow::Result<()> {
        match e.kind {
            EntryKind::Dir => {
                let digest = e.subtree.context("directory entry without a subtree")?;
                let tree = load_tree(self.ctx, &digest)?;
                self.dir(&tree, dest)?;
                self.dirs.push((dest.to_path_buf(), e.mode, e.mtime_ns));
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

    /// Starts a job for the file once fewer than [`FILES_IN_FLIGHT`] run; a finished job's
    /// failure is returned here and stops the walk.
    fn file(&mut self, e: &Entry, dest: &Path) -> anyhow::Result<()> {
        while let Some(done) = self.running.try_join_next() {
            self.finished(done)?;
        }
        if self.running.len() >= FILES_IN_FLIGHT {
            let running = &mut self.running;
            if let Some(done) = self.ctx.block_on(async { anyhow::Ok(running.join_next().await) })? {
                self.finished(done)?;
            }
        }
        self.progress.message(&dest.to_string_lossy());
        let (job, e, dest) = (self.job.clone(), e.clone(), dest.to_path_buf());
        self.running
            .spawn_blocking_on(move || restore_file(&job, &e, &dest), self.ctx.rt.handle());
        Ok(())
    }

    fn finished(&mut self, done: Result<anyhow::Result<u64>, JoinError>) -> anyhow::Result<()> {
        let written = done.context("restore job")??;
        self.counts.files += 1;
        self.counts.bytes += written;
        Ok(())
    }

    /// Waits for every file job (after a failure each removes its temp file, and jobs still
    /// waiting for room stop at once); returns the first failure, or sets the directories'
    /// modes and mtimes.
    fn finish(&mut self, walked: anyhow::Result<()>) -> anyhow::Result<()> {
        let mut result = walked;
        if result.is_err() {
            self.job.budget.close();
        }
        while let Some(done) = self.ctx.rt.block_on(self.running.join_next()) {
            let r = self.finished(done);
            if result.is_ok() && r.is_err() {
                self.job.budget.close();
                result = r;
            }
        }
        result?;
        for (dest, mode, mtime_ns) in std::mem::take(&mut self.dirs) {
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of {}", dest.display()))?;
            set_mtime(&dest, mtime_ns)?;
            self.counts.dirs += 1;
        }
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

/// Walks what is restored: the whole snapshot, or each `--include` path.
fn walk(r: &mut Restorer, snap: &Resolved, root: &Tree, target: &Path, include: &[String]) -> anyhow::Result<()> {
    if include.is_empty() {
        return r.dir(root, target);
    }
    for inc in include {
        let parts = include_parts(inc)?;
        let Some((last, dirs)) = parts.split_last() else {
            r.dir(root, target)?;
            continue;
        };
        let mut tree = root.clone();
        let mut dest = PathBuf::from(target);
        for d in dirs {
            let e = tree
                .get(d)
                .filter(|e| e.kind == EntryKind::Dir)
                .ok_or_else(|| Usage(format!("--include {inc:?}: no such directory in {}", snap.id())))?;
            tree = load_tree(r.ctx, &e.subtree.context("directory entry without a subtree")?)?;
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
    Ok(())
}

/// `snapshot restore`.
pub fn run(ctx: &Ctx, spec: &str, target: &Path, include: &[String]) -> anyhow::Result<u8> {
    let start = Instant::now();
    let snap = resolve(ctx, spec)?;
    let root = load_tree(ctx, &snap.snapshot.root)?;
    std::fs::create_dir_all(target).with_context(|| format!("creating {}", target.display()))?;
    let progress = Progress::bytes(ctx.style, "Restoring");
    let mut r = Restorer {
        ctx,
        counts: Counts::default(),
        job: Job {
            cas: Arc::clone(&ctx.cas),
            rt: ctx.rt.handle().clone(),
            budget: Arc::new(Semaphore::new(BYTES_IN_FLIGHT)),
            progress: progress.counter(),
            shutdown: ctx.shutdown.clone(),
        },
        progress,
        running: JoinSet::new(),
        dirs: Vec::new(),
    };
    let walked = walk(&mut r, &snap, &root, target, include);
    r.finish(walked)?;
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
