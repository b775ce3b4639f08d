//! `reprovm snapshot create|list|restore|diff|verify|forget`: incremental directory snapshots kept
//! in whatever store the run uses (embedded, cas-server, object storage), in the formats of
//! [`reprovm_sdk::snapshot`].
//!
//! The commands are plain synchronous code on the main thread that calls into the async store
//! through `Runtime::block_on`; uploads, downloads and re-hashes run as spawned tasks so that
//! disk and network overlap. `create` and `restore` look at the process's [`Shutdown`] between
//! files and chunks: on SIGINT/SIGTERM they stop with an error (no ref written, a half-written
//! file's temp file removed) and the process exits 130/143.
//!
//! ## Layout
//! - [`args`]: the clap subcommands.
//! - `create`: walk, change detection against the parent; `chunker`: FastCDC cuts as slices of
//!   large reads; `upload`: batches
//!   (one `find_missing` per batch, then only missing blobs are put).
//! - `restore`, `diff`, `verify`, `forget` (with its retention policy), `list`: one command each.
//! - [`reach`]: what a snapshot ref keeps alive, for `reprovm cache gc`.
//! - `report`: progress bars and byte formatting of these commands.

pub mod args;
mod chunker;
mod create;
mod diff;
mod forget;
mod list;
pub mod reach;
mod report;
mod restore;
mod upload;
mod verify;

use std::sync::Arc;

use anyhow::Context;
use reprovm_sdk::snapshot::{self as fmt, Snapshot, Timestamp, Tree, REF_ROOT};
use reprovm_sdk::{Cas, CasExt, Digest};
use tokio::runtime::Runtime;

use crate::cli::hiargs::HiArgs;
use crate::cli::{Failure, EXIT_FAILED, EXIT_USAGE};
use crate::messages::Reporter;
use crate::shutdown::{Interrupted, Shutdown};
use crate::store;
use args::SnapshotAction;

/// A mistake in what was typed (a bad name, an unknown snapshot, a bad path): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// What a command needs: the store, the runtime, the output style.
pub struct Ctx<'a> {
    /// The store snapshots live in.
    pub cas: Arc<dyn Cas>,
    /// Drives the store's futures.
    pub rt: &'a Runtime,
    /// Plain lines and warnings.
    pub out: &'a Reporter,
    /// Output look (progress bars).
    pub style: crate::messages::Style,
    /// The cache dir: never snapshotted, even when it lies inside the directory.
    pub cache_dir: std::path::PathBuf,
    /// Stop requests, looked at between files and chunks.
    pub shutdown: Shutdown,
}

impl Ctx<'_> {
    /// Runs `fut` on the runtime; a stop request (SIGINT/SIGTERM) abandons it with [`Interrupted`].
    pub fn block_on<T, E: Into<anyhow::Error>>(
        &self,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T> {
        self.rt.block_on(async {
            tokio::select! {
                r = fut => r.map_err(Into::into),
                sig = self.shutdown.stopped() => Err(Interrupted(sig).into()),
            }
        })
    }
}

/// Runs one `snapshot` subcommand; returns the exit code.
pub fn run(
    hi: &HiArgs,
    action: SnapshotAction,
    rt: &Runtime,
    out: &Reporter,
    shutdown: &Shutdown,
) -> Result<u8, Failure> {
    // The embedded store is one RocksDB: take the cache dir's lock as a run does.
    let _lock = match hi.remote {
        None => Some(crate::cli::take_lock(hi, shutdown)?),
        Some(_) => None,
    };
    let opened = store::open(hi.remote.as_ref(), &hi.cache_dir).map_err(crate::cli::store_failure)?;
    tracing::info!(store = %opened.describe, "store opened");
    let ctx = Ctx {
        cas: opened.cas,
        rt,
        out,
        style: hi.style,
        cache_dir: hi.cache_dir.clone(),
        shutdown: shutdown.clone(),
    };
    let result = match action {
        SnapshotAction::Create {
            dir,
            name,
            no_parent,
            json,
        } => create::run(&ctx, &dir, &name, no_parent, json),
        SnapshotAction::List { name, json } => list::run(&ctx, name.as_deref(), json),
        SnapshotAction::Restore {
            snapshot,
            target,
            include,
        } => restore::run(&ctx, &snapshot, &target, &include),
        SnapshotAction::Diff { a, b, json } => diff::run(&ctx, &a, &b, json),
        SnapshotAction::Verify {
            snapshot,
            read_data_subset,
            json,
        } => verify::run(&ctx, &snapshot, read_data_subset.as_deref(), json),
        SnapshotAction::Forget(f) => forget::run(&ctx, &f),
    };
    result.map_err(|error| {
        let code = if error.downcast_ref::<Usage>().is_some() {
            EXIT_USAGE
        } else {
            EXIT_FAILED
        };
        Failure { code, error }
    })
}

/// A snapshot found from what the user typed.
pub struct Resolved {
    /// `snapshots/NAME/TIMESTAMP`.
    pub ref_name: String,
    /// Digest of the snapshot object.
    pub digest: Digest,
    /// The object.
    pub snapshot: Snapshot,
}

impl Resolved {
    /// `NAME@TIMESTAMP`, how listings show it.
    pub fn id(&self) -> String {
        display_id(&self.ref_name)
    }
}

/// `snapshots/NAME/TS` → `NAME@TS`.
pub fn display_id(ref_name: &str) -> String {
    match fmt::parse_ref(ref_name) {
        Ok((name, ts)) => format!("{name}@{ts}"),
        Err(_) => ref_name.to_string(),
    }
}

/// Finds a snapshot: `NAME` (its latest), `NAME@latest`, `NAME@TIMESTAMP` or `snapshots/NAME/TIMESTAMP`.
pub fn resolve(ctx: &Ctx, spec: &str) -> anyhow::Result<Resolved> {
    let (name, at) = if spec.starts_with(REF_ROOT) {
        let (n, t) = fmt::parse_ref(spec).map_err(|e| Usage(e.to_string()))?;
        (n, Some(t))
    } else if let Some((n, t)) = spec.split_once('@') {
        let at = match t {
            "latest" => None,
            _ => Some(Timestamp::parse(t).ok_or_else(|| {
                Usage(format!(
                    "{spec:?}: expected NAME@TIMESTAMP with a timestamp like 2026-11-30T08:15:00.123456789Z (see `snapshot list`)"
                ))
            })?),
        };
        (n.to_string(), at)
    } else {
        (spec.to_string(), None)
    };
    fmt::validate_name(&name).map_err(|e| Usage(e.to_string()))?;
    let ref_name = match at {
        Some(t) => fmt::ref_name(&name, &t),
        None => ctx
            .block_on(ctx.cas.ref_list(&fmt::ref_prefix(&name)))
            .context("listing snapshots")?
            .into_iter()
            .rfind(|r| fmt::parse_ref(r).is_ok())
            .ok_or_else(|| Usage(format!("no snapshot named {name:?} (see `reprovm snapshot list`)")))?,
    };
    let value = ctx
        .block_on(ctx.cas.ref_get(&ref_name))
        .with_context(|| format!("reading ref {ref_name}"))?
        .ok_or_else(|| {
            Usage(format!(
                "no snapshot {} (see `reprovm snapshot list`)",
                display_id(&ref_name)
            ))
        })?;
    let text = String::from_utf8_lossy(&value.value);
    let digest = Digest::parse(text.trim()).with_context(|| format!("ref {ref_name} does not hold a digest"))?;
    let snapshot = load_snapshot(ctx, &digest).with_context(|| format!("snapshot {}", display_id(&ref_name)))?;
    Ok(Resolved {
        ref_name,
        digest,
        snapshot,
    })
}

/// Reads a small blob and checks that it hashes to its name.
fn load_verified(ctx: &Ctx, digest: &Digest) -> anyhow::Result<bytes::Bytes> {
    let bytes = ctx.block_on(ctx.cas.get_bytes(digest))?;
    let actual = Digest::of_blake3(&bytes);
    anyhow::ensure!(
        actual == *digest,
        "blob {digest} is corrupt: its bytes hash to {actual}"
    );
    Ok(bytes)
}

/// Reads and decodes a snapshot object.
pub fn load_snapshot(ctx: &Ctx, digest: &Digest) -> anyhow::Result<Snapshot> {
    let bytes = load_verified(ctx, digest).with_context(|| format!("reading snapshot object {digest}"))?;
    Ok(Snapshot::decode(&bytes)?)
}

/// Reads and decodes a tree.
pub fn load_tree(ctx: &Ctx, digest: &Digest) -> anyhow::Result<Tree> {
    let bytes = load_verified(ctx, digest).with_context(|| format!("reading tree {digest}"))?;
    Tree::decode(&bytes).with_context(|| format!("tree {digest}"))
}

/// `dir/name` for messages, from raw name bytes.
pub fn join_display(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}
