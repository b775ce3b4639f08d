//! What was typed: the clap definition of the command line. Each option that has an environment
//! twin names it; clap reads it when the flag is absent, which gives flags > environment. The file
//! and defaults come after, in [`super::hiargs`].

use std::path::PathBuf;

use clap::{ArgAction, Parser, Subcommand};

/// ReproVM: runs a manifest's tasks in parallel, in dependency order, with a content-addressed cache.
#[derive(Debug, Parser)]
#[command(
    name = "reprovm",
    version,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 all tasks succeeded, 1 a task failed, 2 usage or manifest error, 3 lock held."
)]
pub struct LowArgs {
    /// The manifest file.
    #[arg(value_name = "MANIFEST")]
    pub manifest: Option<PathBuf>,

    /// Tasks to run (with their deps); all tasks when none are given.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Print the version.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,

    /// Show commands and their output.
    #[arg(short = 'V', long, env = "REPROVM_VERBOSE", global = true)]
    pub verbose: bool,

    /// Print only failures and errors.
    #[arg(short, long, env = "REPROVM_QUIET", global = true)]
    pub quiet: bool,

    /// Tasks run at once [default: CPU count].
    #[arg(short, long, value_name = "N", env = "REPROVM_JOBS")]
    pub jobs: Option<usize>,

    /// Ignore cache hits: run every selected task.
    #[arg(short, long, env = "REPROVM_FORCE")]
    pub force: bool,

    /// Print what would run and why; run nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Kill a task (its whole process group) after SEC seconds.
    #[arg(short, long, value_name = "SEC", env = "REPROVM_TIMEOUT")]
    pub timeout: Option<String>,

    /// Retry a failed command up to N times.
    #[arg(long, value_name = "N", env = "REPROVM_RETRY_ATTEMPTS")]
    pub retry: Option<u32>,

    /// Let independent tasks finish after a failure.
    #[arg(short = 'k', long, env = "REPROVM_KEEP_GOING")]
    pub keep_going: bool,

    /// No colours (also NO_COLOR).
    #[arg(long, env = "REPROVM_NO_COLOR", global = true)]
    pub no_color: bool,

    /// No progress bar: one plain line per task.
    #[arg(long, env = "REPROVM_NO_PROGRESS")]
    pub no_progress: bool,

    /// Cache directory (embedded store, lock file) [default: .reprovm].
    #[arg(long, value_name = "DIR", env = "REPROVM_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,

    /// Empty the local cache before running.
    #[arg(long)]
    pub clean_cache: bool,

    /// Re-hash every blob of the local cache before running; drop corrupt ones.
    #[arg(long)]
    pub verify_cache: bool,

    /// Per-task times after the summary.
    #[arg(long)]
    pub stats: bool,

    /// Write the run's statistics as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,

    /// Print the tasks and their deps, run nothing.
    #[arg(long)]
    pub list_tasks: bool,

    /// Remote store: http(s)://host:port (cas-server), s3://bucket/prefix, az://, gs://, file:///dir.
    #[arg(long, value_name = "URL", env = "REPROVM_REMOTE_CAS_URL", global = true)]
    pub remote: Option<String>,

    /// Configuration file (INI as in the seed design, or TOML) [default: ./reprovm.conf if present].
    #[arg(long, value_name = "FILE", env = "REPROVM_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// Log level of the diagnostic log: error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL", env = "REPROVM_LOG_LEVEL", global = true)]
    pub log_level: Option<String>,

    /// Write the diagnostic log to FILE instead of stderr.
    #[arg(long, value_name = "FILE", env = "REPROVM_LOG_FILE", global = true)]
    pub log_file: Option<PathBuf>,

    /// Wait up to SEC seconds for another run's lock instead of exiting with code 3.
    #[arg(
        long,
        value_name = "SEC",
        env = "REPROVM_LOCK_WAIT",
        default_value = "0",
        global = true
    )]
    pub lock_wait: f64,

    /// Check store, disk space, lock, config and `sh`; print a table; exit 0 healthy, 1 not.
    #[arg(long)]
    pub health_check: bool,

    /// Append hash-chained audit events to FILE (see `reprovm audit verify`).
    #[arg(long, value_name = "FILE", env = "REPROVM_AUDIT_LOG", global = true)]
    pub audit_log: Option<PathBuf>,

    /// POST notifications (task failure, pipeline end) to URL; repeatable.
    #[arg(
        long = "webhook",
        value_name = "URL",
        env = "REPROVM_WEBHOOK_URL",
        value_delimiter = ',',
        global = true
    )]
    pub webhooks: Vec<String>,

    /// Start no command while the machine's CPU use is above PCT percent.
    #[arg(long, value_name = "PCT", env = "REPROVM_MAX_CPU_PERCENT", global = true)]
    pub max_cpu: Option<f64>,

    /// Start no command while the machine's used memory is above MB MiB.
    #[arg(long, value_name = "MB", env = "REPROVM_MAX_MEMORY_MB", global = true)]
    pub max_memory_mb: Option<u64>,

    /// Start at most N commands per second (token bucket).
    #[arg(long, value_name = "N", env = "REPROVM_MAX_TASKS_PER_SECOND", global = true)]
    pub max_tasks_per_second: Option<f64>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and maintain the local cache.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
    },
    /// Incremental directory snapshots in the store (`--remote` like a run).
    Snapshot {
        #[command(subcommand)]
        action: crate::snapshot::args::SnapshotAction,
    },
    /// Check or summarize an audit log.
    Audit {
        #[command(subcommand)]
        action: reprovm_sdk::audit::AuditCommand,
    },
    /// Send a custom event to the configured webhooks.
    Notify {
        /// Event name (the `event` field of the JSON payload).
        event: String,
        /// Text.
        #[arg(default_value = "")]
        message: String,
    },
    /// Serve the REST API for a manifest: tasks, runs, cache, metrics, health, config.
    Serve {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", env = "REPROVM_LISTEN", default_value = "127.0.0.1:8090")]
        listen: String,
        /// The manifest file.
        #[arg(value_name = "MANIFEST")]
        manifest: PathBuf,
    },
}

/// `reprovm cache …`.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CacheAction {
    /// Blobs, bytes, action results and refs in the local store.
    Stats,
    /// Delete the local store.
    Clean,
    /// Re-hash every blob; report corrupt ones (exit 1 if any).
    Verify {
        /// Also delete the corrupt blobs (they are rebuilt by the next run).
        #[arg(long)]
        delete: bool,
    },
    /// Delete blobs that no action result and no ref reaches.
    Gc {
        /// Only report what would be deleted.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
}
