//! What was typed after `reprovm snapshot`: the clap definition of its subcommands.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `reprovm snapshot …`.
#[derive(Debug, Clone, Subcommand)]
pub enum SnapshotAction {
    /// Snapshot a directory: FastCDC chunks, only missing ones uploaded; files unchanged since the
    /// parent snapshot (size, mtime, inode) are not re-read.
    Create {
        /// The directory.
        dir: PathBuf,
        /// Snapshot name; the ref is `snapshots/NAME/<UTC timestamp>`.
        #[arg(long)]
        name: String,
        /// Re-read every file instead of trusting the parent snapshot's entries.
        #[arg(long)]
        no_parent: bool,
        /// Print the summary as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// List snapshots (all, or one NAME's).
    #[command(alias = "ls")]
    List {
        /// Only this name.
        name: Option<String>,
        /// JSON lines on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Restore a snapshot (NAME = its latest, NAME@TIMESTAMP, or snapshots/NAME/TIMESTAMP) into TARGET.
    Restore {
        /// The snapshot.
        snapshot: String,
        /// Directory to restore into (created if needed).
        target: PathBuf,
        /// Restore only this path of the snapshot (file or directory); repeatable.
        #[arg(long, value_name = "PATH")]
        include: Vec<String>,
    },
    /// Paths added (+), removed (-) and modified (M) from snapshot A to snapshot B.
    Diff {
        /// The older snapshot.
        a: String,
        /// The newer snapshot.
        b: String,
        /// JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every chunk of a snapshot (exit 1 on any failure, naming chunk and files).
    Verify {
        /// The snapshot.
        snapshot: String,
        /// Check only a subset of the chunks: `N%` or `n/m` (the n-th of m disjoint slices).
        #[arg(long, value_name = "N%|n/m")]
        read_data_subset: Option<String>,
        /// JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Delete snapshot refs not kept by the policy (then `reprovm cache gc` frees their data).
    Forget(ForgetArgs),
}

/// The retention policy of `snapshot forget` (restic semantics: a snapshot is kept when any rule
/// keeps it; each `--keep-<unit> N` keeps the latest snapshot of each of the last N units that
/// have one).
#[derive(Debug, Clone, Args)]
pub struct ForgetArgs {
    /// Only this name's snapshots (default: every name, each on its own).
    pub name: Option<String>,
    /// Keep the N most recent.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Keep the latest of each of the last N hours.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<usize>,
    /// Keep the latest of each of the last N days (UTC).
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    /// Keep the latest of each of the last N weeks (Monday to Sunday, UTC).
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    /// Keep the latest of each of the last N months.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
    /// Keep the latest of each of the last N years.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<usize>,
    /// Only print what would be removed.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}
