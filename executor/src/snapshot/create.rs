//! `reprovm snapshot create DIR --name NAME`: walks DIR depth-first, cuts new and changed files
//! into FastCDC chunks ([`chunker`], sizes in [`reprovm_sdk::snapshot`]), hashes them with BLAKE3 and hands
//! them to the batching [`Uploader`]; each directory becomes a tree blob, the root's digest goes
//! into a snapshot object, and the ref `snapshots/NAME/<timestamp>` is written last
//! (`IfAbsent`), so a failed or interrupted run leaves no snapshot behind.
//!
//! Parent snapshot: the latest ref of NAME. A file whose size, mtime (ns) and inode equal its
//! entry in the parent's tree reuses that entry's chunk list without being read; its chunks are
//! still checked to be in the store (one `find_missing` per batch, no data read).

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use reprovm_sdk::snapshot::{self as fmt, ChunkRef, Entry, EntryKind, Snapshot, SnapshotStats, Timestamp, Tree};
use reprovm_sdk::{CasError, CasExt, Digest, RefCondition};

use super::chunker;
use super::report::{self, Progress};
use super::upload::{Kind, Uploader};
use super::{display_id, join_display, load_tree, resolve, Ctx, Usage};
use crate::shutdown::Interrupted;

struct Walker<'a> {
    ctx: &'a Ctx<'a>,
    up: Uploader,
    stats: SnapshotStats,
    progress: Progress,
    /// The cache dir (canonical), skipped if met: it changes while it is read.
    exclude: Option<std::path::PathBuf>,
}

/// Nanoseconds since the epoch of a metadata's mtime.
pub fn mtime_ns(md: &std::fs::Metadata) -> i64 {
    md.mtime().saturating_mul(1_000_000_000).saturating_add(md.mtime_nsec())
}

impl Walker<'_> {
    /// Snapshots one directory; returns its tree's digest.
    fn dir(&mut self, path: &Path, display: &str, parent: Option<&Tree>) -> anyhow::Result<Digest> {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("reading directory {}", path.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading directory {}", path.display()))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut entries = Vec::with_capacity(names.len());
        for name in names {
            self.ctx.shutdown.check()?;
            let p = path.join(&name);
            if self.exclude.as_deref() == Some(p.as_path()) {
                continue;
            }
            let shown = join_display(display, &name.to_string_lossy());
            let md = std::fs::symlink_metadata(&p).with_context(|| format!("reading {}", p.display()))?;
            let prev = parent.and_then(|t| t.get(name.as_bytes()));
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                EntryKind::Dir
            } else if ft.is_symlink() {
                EntryKind::Symlink
            } else if ft.is_file() {
                EntryKind::File
            } else {
                self.stats.skipped += 1;
                self.ctx
                    .out
                    .warn(&format!("skipped {shown}: not a file, directory or symlink"));
                continue;
            };
            let mut entry = Entry::new(name.as_bytes(), kind, md.mode() & 0o7777, mtime_ns(&md));
            match kind {
                EntryKind::Dir => {
                    self.stats.dirs += 1;
                    let sub_parent = prev
                        .filter(|e| e.kind == EntryKind::Dir)
                        .and_then(|e| e.subtree)
                        .and_then(|d| match load_tree(self.ctx, &d) {
                            Ok(t) => Some(t),
                            Err(e) => {
                                self.ctx
                                    .out
                                    .warn(&format!("parent tree of {shown} unreadable, re-reading it: {e:#}"));
                                None
                            }
                        });
                    entry.subtree = Some(self.dir(&p, &shown, sub_parent.as_ref())?);
                }
                EntryKind::Symlink => {
                    self.stats.symlinks += 1;
                    let target = std::fs::read_link(&p).with_context(|| format!("reading link {}", p.display()))?;
                    entry.set_target(target.as_os_str().as_bytes());
                }
                EntryKind::File => self.file(&p, &shown, &md, prev, &mut entry)?,
            }
            entries.push(entry);
        }
        let tree = Tree::new(entries);
        let bytes = Bytes::from(tree.encode());
        let digest = Digest::of_blake3(&bytes);
        self.ctx.block_on(self.up.add(digest, Some(bytes), Kind::Tree))?;
        Ok(digest)
    }

    fn file(
        &mut self,
        path: &Path,
        shown: &str,
        md: &std::fs::Metadata,
        prev: Option<&Entry>,
        entry: &mut Entry,
    ) -> anyhow::Result<()> {
        entry.inode = Some(md.ino());
        let unchanged = prev.filter(|e| {
            e.kind == EntryKind::File
                && e.size == Some(md.len())
                && e.mtime_ns == entry.mtime_ns
                && e.inode == Some(md.ino())
        });
        if let Some(p) = unchanged {
            self.stats.files_unchanged += 1;
            self.stats.bytes_total += md.len();
            self.stats.chunks_total += p.chunks.len() as u64;
            entry.size = p.size;
            entry.chunks = p.chunks.clone();
            for c in &p.chunks {
                self.ctx.block_on(self.up.add(c.digest, None, Kind::Chunk))?;
            }
            self.progress.inc(md.len());
            return Ok(());
        }
        if prev.is_some() {
            self.stats.files_changed += 1;
        } else {
            self.stats.files_new += 1;
        }
        self.progress.message(shown);
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut size = 0u64;
        let (ctx, up, progress) = (self.ctx, &mut self.up, &self.progress);
        chunker::chunk(file, md.len(), |data| {
            ctx.shutdown.check()?;
            let digest = Digest::of_blake3(&data);
            let len = data.len() as u64;
            size += len;
            entry.chunks.push(ChunkRef { digest, size: len });
            ctx.block_on(up.add(digest, Some(data), Kind::Chunk))?;
            progress.inc(len);
            Ok(())
        })
        .with_context(|| format!("reading {}", path.display()))?;
        // The size read, not the size stat'ed: a file growing while read is taken as read.
        entry.size = Some(size);
        self.stats.bytes_total += size;
        self.stats.bytes_read += size;
        self.stats.chunks_total += entry.chunks.len() as u64;
        Ok(())
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The summary `--json` prints.
#[derive(serde::Serialize)]
struct Summary<'a> {
    snapshot: String,
    r#ref: &'a str,
    digest: String,
    root: String,
    parent: Option<&'a str>,
    seconds: f64,
    #[serde(flatten)]
    stats: &'a SnapshotStats,
}

/// `snapshot create`.
pub fn run(ctx: &Ctx, dir: &Path, name: &str, no_parent: bool, json: bool) -> anyhow::Result<u8> {
    fmt::validate_name(name).map_err(|e| Usage(e.to_string()))?;
    let md = std::fs::metadata(dir).map_err(|e| Usage(format!("cannot snapshot {}: {e}", dir.display())))?;
    if !md.is_dir() {
        return Err(Usage(format!("{} is not a directory", dir.display())).into());
    }
    let source = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    let start = Instant::now();

    let parent = if no_parent {
        None
    } else {
        match resolve(ctx, name) {
            Ok(r) => Some(r),
            Err(e) if e.downcast_ref::<Usage>().is_some() => None, // first snapshot of this name
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => return Err(e.context("no snapshot saved")),
            Err(e) => {
                ctx.out
                    .warn(&format!("parent snapshot unreadable, reading every file: {e:#}"));
                None
            }
        }
    };
    let parent_root = match &parent {
        Some(p) => match load_tree(ctx, &p.snapshot.root) {
            Ok(t) => Some(t),
            Err(e) => {
                ctx.out
                    .warn(&format!("parent tree unreadable, reading every file: {e:#}"));
                None
            }
        },
        None => None,
    };

    let mut w = Walker {
        ctx,
        up: Uploader::new(ctx.cas.clone()),
        stats: SnapshotStats::default(),
        progress: Progress::bytes(ctx.style, "Snapshotting"),
        exclude: std::fs::canonicalize(&ctx.cache_dir).ok(),
    };
    let root = w.dir(&source, "", parent_root.as_ref()).context("no snapshot saved")?;
    let Walker {
        up,
        mut stats,
        progress,
        ..
    } = w;
    let uploaded = ctx.block_on(up.finish())?;
    progress.finish();
    // The last chance to stop before the snapshot becomes visible.
    ctx.shutdown.check().context("no snapshot saved")?;
    stats.chunks_uploaded = uploaded.chunks;
    stats.bytes_uploaded = uploaded.chunk_bytes;
    stats.trees_uploaded = uploaded.trees;
    stats.missing_calls = uploaded.missing_calls;

    let mut snapshot = Snapshot {
        version: reprovm_sdk::snapshot::object::SNAPSHOT_VERSION,
        name: name.to_string(),
        time: String::new(),
        root,
        hostname: hostname(),
        source: source.to_string_lossy().into_owned(),
        parent: parent.as_ref().map(|p| p.ref_name.clone()),
        stats,
    };
    // Two snapshots of one name in the same nanosecond: the second retries with a new time.
    let (ref_name, digest) = loop {
        let at = Timestamp::now();
        snapshot.time = at.to_string();
        let digest = ctx
            .block_on(ctx.cas.put_bytes(Bytes::from(snapshot.encode())))
            .context("storing the snapshot object")?;
        let ref_name = fmt::ref_name(name, &at);
        let value = Bytes::from(digest.to_hex());
        match ctx
            .rt
            .block_on(ctx.cas.ref_put(&ref_name, value, RefCondition::IfAbsent))
        {
            Ok(_) => break (ref_name, digest),
            Err(CasError::PreconditionFailed { .. }) => continue,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("writing ref {ref_name}"))),
        }
    };
    let took = start.elapsed();
    let s = &snapshot.stats;
    if json {
        let summary = Summary {
            snapshot: display_id(&ref_name),
            r#ref: &ref_name,
            digest: digest.to_hex(),
            root: root.to_hex(),
            parent: snapshot.parent.as_deref(),
            seconds: took.as_secs_f64(),
            stats: s,
        };
        println!("{}", serde_json::to_string(&summary).expect("summary serializes"));
    } else {
        ctx.out.info(&format!("snapshot {} saved", display_id(&ref_name)));
        if let Some(p) = &snapshot.parent {
            ctx.out.info(&format!("parent:  {}", display_id(p)));
        }
        ctx.out.info(&format!(
            "files:   {} new, {} changed, {} unchanged; {} dirs, {} symlinks{}",
            s.files_new,
            s.files_changed,
            s.files_unchanged,
            s.dirs,
            s.symlinks,
            if s.skipped > 0 {
                format!(", {} skipped", s.skipped)
            } else {
                String::new()
            }
        ));
        ctx.out.info(&format!(
            "data:    {} total, {} read, {} chunks of which {} uploaded ({} added), {} trees uploaded",
            report::bytes(s.bytes_total),
            report::bytes(s.bytes_read),
            s.chunks_total,
            s.chunks_uploaded,
            report::bytes(s.bytes_uploaded),
            s.trees_uploaded
        ));
        ctx.out.info(&format!(
            "took {:.1}s ({} read)",
            took.as_secs_f64(),
            report::rate(s.bytes_read, took)
        ));
    }
    Ok(0)
}
