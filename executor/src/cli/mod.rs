//! The command line: [`lowargs`] is what was typed, [`hiargs`] what to do; [`run`] does it and
//! returns the exit code (0 all succeeded, 1 a task failed, 2 usage or manifest error, 3 lock held,
//! 130/143 stopped by SIGINT/SIGTERM; see [`crate::shutdown`]).

pub mod health;
pub mod hiargs;
pub mod lowargs;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::audit::Audit;
use crate::cache_cmd;
use crate::dag::Graph;
use crate::lock::{self, LockError};
use crate::manifest;
use crate::messages::Reporter;
use crate::notify::{Notification, Notifier};
use crate::runner::{self, RunObserver, RunOptions, Runner};
use crate::shutdown::{Interrupted, Shutdown};
use crate::state::State;
use crate::store::{self, StoreError};
use crate::workspace::Workspace;
use hiargs::HiArgs;
use lowargs::{CacheAction, Command, LowArgs};
use reprovm_sdk::audit::EventKind;

/// Exit code: a task failed (or the cache is corrupt, or the store unusable).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage, config or manifest.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: another run holds the lock.
pub const EXIT_LOCKED: u8 = 3;

/// An error with the exit code it ends the process with.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// What to print.
    pub error: anyhow::Error,
}

fn fail(code: u8) -> impl FnOnce(anyhow::Error) -> Failure {
    move |error| Failure { code, error }
}

trait OrExit<T> {
    fn or_exit(self, code: u8) -> Result<T, Failure>;
}

impl<T, E: Into<anyhow::Error>> OrExit<T> for Result<T, E> {
    fn or_exit(self, code: u8) -> Result<T, Failure> {
        self.map_err(|e| fail(code)(e.into()))
    }
}

/// Parses the arguments and runs; returns the exit code or an error with its code.
pub fn run(mut low: LowArgs) -> Result<u8, Failure> {
    let command = low.command.take();
    if let Some(Command::Audit { action }) = &command {
        return Ok(reprovm_sdk::audit::run_cli(action, "REPROVM_AUDIT_KEY"));
    }
    let health_check = low.health_check;
    let hi = match HiArgs::from_low(low) {
        Ok(hi) => hi,
        Err(e) if health_check => return Ok(health::config_failed(&e.to_string())),
        Err(e) => return Err(fail(EXIT_USAGE)(e.into())),
    };
    init_logging(&hi).or_exit(EXIT_USAGE)?;
    let audit = Audit::open(hi.audit.as_ref()).or_exit(EXIT_USAGE)?;
    let argv: Vec<String> = std::env::args().collect();
    audit.record(EventKind::Start, "reprovm", "start", true, argv.join(" "));
    let config = hi
        .config_file
        .as_ref()
        .map_or_else(|| "(defaults)".to_string(), |p| p.display().to_string());
    audit.record(
        EventKind::ConfigLoad,
        &config,
        "load",
        true,
        format!("{} warnings", hi.warnings.len()),
    );
    let result = with_runtime(&hi, command, &audit);
    let code = match &result {
        Ok(c) => *c,
        Err(f) => f.code,
    };
    audit.record(EventKind::Stop, "reprovm", "stop", code == 0, format!("exit {code}"));
    audit.close();
    result
}

/// Starts the runtime and the signal handlers, runs the command; a signal received makes the
/// exit code 130 (SIGINT) or 143 (SIGTERM), whatever the command returned.
fn with_runtime(hi: &HiArgs, command: Option<Command>, audit: &Audit) -> Result<u8, Failure> {
    // A run of tasks waits on commands, pipes and the store; its own work is a little hashing and
    // bookkeeping per task. One thread does it without a cross-thread wake-up per event (which
    // cost more than that work); blocking work (large files, the embedded store) still goes to
    // the blocking pool. Snapshots and `serve` use every core.
    let mut builder = match command {
        None | Some(Command::Notify { .. }) => tokio::runtime::Builder::new_current_thread(),
        Some(_) => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = builder
        .enable_all()
        .build()
        .context("starting the async runtime")
        .or_exit(EXIT_FAILED)?;
    let shutdown = Shutdown::install(&rt, crate::messages::stopping)
        .context("installing the SIGINT/SIGTERM handlers")
        .or_exit(EXIT_FAILED)?;
    let result = run_command(hi, command, audit, &rt, &shutdown);
    match (shutdown.signal(), result) {
        (None, result) => result,
        (Some(sig), Ok(_)) => Ok(sig.exit_code()),
        (Some(sig), Err(f)) => Err(Failure {
            code: sig.exit_code(),
            error: f.error,
        }),
    }
}

fn run_command(
    hi: &HiArgs,
    command: Option<Command>,
    audit: &Audit,
    rt: &tokio::runtime::Runtime,
    shutdown: &Shutdown,
) -> Result<u8, Failure> {
    let plain = Reporter::plain(hi.style);
    for w in &hi.warnings {
        plain.warn(w);
    }
    match &command {
        Some(Command::Cache { action }) => return cache_command(hi, *action, &plain, shutdown),
        Some(Command::Snapshot { action }) => return crate::snapshot::run(hi, action.clone(), rt, &plain, shutdown),
        Some(Command::Audit { .. }) => unreachable!("handled before the settings"),
        Some(Command::Serve { listen, manifest }) => {
            return crate::serve::run(hi, listen, manifest, audit, rt, shutdown).or_exit(EXIT_FAILED)
        }
        Some(Command::Notify { .. }) | None => {}
    }
    let notifier = {
        let _rt = rt.enter();
        Arc::new(Notifier::start(hi.notify.clone()))
    };
    if let Some(Command::Notify { event, message }) = command {
        if !notifier.enabled() {
            return Err(fail(EXIT_USAGE)(anyhow::anyhow!(
                "no webhook configured: give --webhook URL, REPROVM_WEBHOOK_URL or [notifications] webhook_url"
            )));
        }
        notifier.notify(Notification::Custom { event, message });
        rt.block_on(notifier.finish());
        let failed = notifier.counters.failed.load(std::sync::atomic::Ordering::Relaxed);
        return Ok(if failed > 0 { EXIT_FAILED } else { 0 });
    }
    if hi.health_check {
        let code = rt.block_on(health::run(hi, &notifier));
        rt.block_on(notifier.finish());
        return Ok(code);
    }
    let Some(manifest_path) = hi.manifest.clone() else {
        return Err(fail(EXIT_USAGE)(anyhow::anyhow!(
            "no manifest given: usage `reprovm [OPTIONS] MANIFEST [TARGET...]` (see --help)"
        )));
    };
    let manifest = manifest::parse_file(&manifest_path).or_exit(EXIT_USAGE)?;
    let graph = Graph::build(manifest).or_exit(EXIT_USAGE)?;
    let selected = graph.select(&hi.targets).or_exit(EXIT_USAGE)?;
    if hi.list_tasks {
        list_tasks(&graph);
        return Ok(0);
    }
    let dir = match manifest_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let ws = Workspace::new(&dir)
        .with_context(|| format!("workspace {}", dir.display()))
        .or_exit(EXIT_USAGE)?;
    if let Err(e) = check_paths(&graph, &ws) {
        audit.record(
            EventKind::SecurityViolation,
            &manifest_path.display().to_string(),
            "resolve",
            false,
            format!("{e:#}"),
        );
        return Err(fail(EXIT_USAGE)(e));
    }

    let _lock = take_lock(hi, shutdown)?;
    if !hi.lock_wait.is_zero() {
        // We may have waited for another run, which may have changed the workspace.
        ws.forget();
    }
    if hi.clean_cache {
        clean_local(hi, &plain)?;
        audit.record(
            EventKind::BlobDelete,
            &hi.cache_dir.display().to_string(),
            "clean",
            true,
            "--clean-cache",
        );
    }
    let store = if hi.verify_cache || hi.dry_run {
        store::open(hi.remote.as_ref(), &hi.cache_dir)
    } else {
        store::open_lazy(hi.remote.as_ref(), &hi.cache_dir)
    }
    .map_err(store_failure)?;
    if hi.verify_cache {
        verify_local(hi, store.local.as_ref(), &plain, true, shutdown)?;
    }
    tracing::info!(store = %store.describe, "store opened");

    if hi.dry_run {
        let plan = rt.block_on(runner::dry_run(&graph, &ws, &*store.cas, &selected, hi.force));
        let n = plan.iter().filter(|p| p.2).count();
        for (name, why, would_run) in &plan {
            let mark = if *would_run { "[+]" } else { "[*]" };
            println!("{mark} {name}: {why}");
        }
        println!("Dry run: {n} of {} tasks would run; nothing was run.", plan.len());
        return Ok(0);
    }

    let total = selected.iter().filter(|s| **s).count() as u64;
    let reporter = Reporter::new(hi.style, total);
    let prom_file = hi
        .metrics
        .as_ref()
        .filter(|p| p.extension().is_some_and(|e| e == "prom"));
    // Only a `.prom` file reads the recorder; building one calibrates a clock (~10 ms), and
    // without one the counters cost nothing.
    let metrics = prom_file.map(|_| crate::metrics::install());
    let limits = hi.limits.any().then(|| crate::limits::Limits::new(hi.limits.clone()));
    let mut observers: Vec<Arc<dyn RunObserver>> = vec![Arc::new(audit.clone()), notifier.clone()];
    if metrics.is_some() {
        observers.push(Arc::new(crate::metrics::MetricsObserver));
    }
    let opts = RunOptions {
        jobs: hi.jobs,
        timeout: hi.timeout,
        retries: hi.retries,
        force: hi.force,
        keep_going: hi.keep_going,
        observers,
        limits: limits.clone(),
        shutdown: shutdown.clone(),
        state: State::load(State::location(&hi.cache_dir, ws.root()), &store.describe),
    };
    let cas = Arc::clone(&store.cas);
    let report = rt.block_on(Runner::new(&graph, &ws, cas, opts, &reporter).run(&selected));
    reporter.summary(&report, hi.stats);
    notifier.notify(Notification::PipelineComplete { report: report.clone() });
    rt.block_on(async {
        tokio::select! {
            () = notifier.finish() => {}
            () = shutdown.killed() => {}
        }
    });
    if let Some(sig) = shutdown.signal() {
        return Ok(sig.exit_code());
    }
    let c = &notifier.counters;
    let delivered = [&c.delivered, &c.failed, &c.dropped].map(|n| n.load(std::sync::atomic::Ordering::Relaxed));
    crate::metrics::run_finished(
        &report,
        limits.as_ref().map_or(0, |l| l.waits()),
        audit.log().dropped(),
        delivered,
    );
    if let (Some(path), Some(metrics)) = (prom_file, &metrics) {
        crate::metrics::write_prom(metrics, path)
            .with_context(|| format!("writing metrics to {}", path.display()))
            .or_exit(EXIT_FAILED)?;
    } else if let Some(path) = &hi.metrics {
        let json = serde_json::to_vec_pretty(&report).expect("report serializes");
        std::fs::write(path, json)
            .with_context(|| format!("writing metrics to {}", path.display()))
            .or_exit(EXIT_FAILED)?;
    }
    Ok(if report.failed > 0 || report.skipped > 0 || report.not_run > 0 {
        EXIT_FAILED
    } else {
        0
    })
}

pub(crate) fn store_failure(e: StoreError) -> Failure {
    let code = match e {
        StoreError::Scheme(_) => EXIT_USAGE,
        StoreError::Open { .. } => EXIT_FAILED,
    };
    fail(code)(e.into())
}

pub(crate) fn take_lock(hi: &HiArgs, shutdown: &Shutdown) -> Result<lock::LockGuard, Failure> {
    lock::acquire(&hi.cache_dir, hi.lock_wait, shutdown).map_err(|e| {
        let code = match e {
            LockError::Held { .. } => EXIT_LOCKED,
            LockError::Io { .. } => EXIT_FAILED,
            LockError::Interrupted(Interrupted(sig)) => sig.exit_code(),
        };
        fail(code)(e.into())
    })
}

fn init_logging(hi: &HiArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&hi.log_level)
        .with_context(|| format!("invalid log level {:?}", hi.log_level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &hi.log_file {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("log dir {}", dir.display()))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("log file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init()
                .map_err(|e| anyhow::anyhow!(e))
        }
        None => builder
            .with_writer(std::io::stderr)
            .try_init()
            .map_err(|e| anyhow::anyhow!(e)),
    }
}

fn list_tasks(graph: &Graph) {
    for t in graph.tasks() {
        if t.deps.is_empty() {
            println!("{}", t.name);
        } else {
            println!("{}  <- {}", t.name, t.deps.join(", "));
        }
    }
}

/// Every input and output path of every task stays in the workspace.
pub(crate) fn check_paths(graph: &Graph, ws: &Workspace) -> anyhow::Result<()> {
    for t in graph.tasks() {
        for (kind, list) in [("input", &t.inputs), ("output", &t.outputs)] {
            for p in list.iter() {
                Workspace::normalized(p)
                    .and_then(|norm| ws.check(p, &norm))
                    .with_context(|| format!("task `{}` (line {}): {kind} refused", t.name, t.line))?;
            }
        }
    }
    ws.all_checked();
    Ok(())
}

fn no_remote(hi: &HiArgs, what: &str) -> Result<(), Failure> {
    if let Some(r) = &hi.remote {
        return Err(fail(EXIT_USAGE)(anyhow::anyhow!(
            "{what} works on the local cache in {}; it does not touch the remote store {}",
            hi.cache_dir.display(),
            r.url
        )));
    }
    Ok(())
}

fn clean_local(hi: &HiArgs, out: &Reporter) -> Result<(), Failure> {
    let freed = cache_cmd::clean(&hi.cache_dir).or_exit(EXIT_FAILED)?;
    out.info(&format!(
        "Cleaned {} ({} bytes freed)",
        store::local_dir(&hi.cache_dir).display(),
        freed
    ));
    Ok(())
}

/// Verifies the local store; with `delete` drops corrupt blobs. Returns how many were corrupt.
fn verify_local(
    hi: &HiArgs,
    local: Option<&cas_server::RocksStore>,
    out: &Reporter,
    delete: bool,
    shutdown: &Shutdown,
) -> Result<usize, Failure> {
    let Some(store) = local else {
        no_remote(hi, "--verify-cache")?;
        return Ok(0);
    };
    let (checked, bad) = cache_cmd::verify(store, delete, shutdown).or_exit(EXIT_FAILED)?;
    for c in &bad {
        out.warn(&format!(
            "corrupt blob {}: {}{}",
            c.digest,
            c.reason,
            if delete { " (deleted)" } else { "" }
        ));
    }
    out.info(&format!("Verified {checked} blobs: {} corrupt", bad.len()));
    Ok(bad.len())
}

fn cache_command(hi: &HiArgs, action: CacheAction, out: &Reporter, shutdown: &Shutdown) -> Result<u8, Failure> {
    no_remote(hi, "`reprovm cache`")?;
    let _lock = take_lock(hi, shutdown)?;
    match action {
        CacheAction::Stats => {
            let s = cache_command_stats(hi)?;
            println!("cache dir:       {}", hi.cache_dir.display());
            println!("blobs:           {}", s.blobs);
            println!("bytes:           {}", s.bytes);
            println!("disk bytes:      {}", s.disk_bytes);
            println!("action results:  {}", s.action_results);
            println!("refs:            {}", s.refs);
        }
        CacheAction::Clean => clean_local(hi, out)?,
        CacheAction::Verify { delete } => {
            if !store::local_dir(&hi.cache_dir).exists() {
                out.info("Verified 0 blobs: 0 corrupt");
                return Ok(0);
            }
            let local = store::open_local(&hi.cache_dir).map_err(store_failure)?;
            if verify_local(hi, Some(&local), out, delete, shutdown)? > 0 {
                return Ok(EXIT_FAILED);
            }
        }
        CacheAction::Gc { dry_run } => {
            let (kept, deleted, freed) = cache_cmd::gc(&hi.cache_dir, dry_run, shutdown).or_exit(EXIT_FAILED)?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            out.info(&format!("gc: kept {kept} blobs, {verb} {deleted} ({freed} bytes)"));
        }
    }
    Ok(0)
}

fn cache_command_stats(hi: &HiArgs) -> Result<cache_cmd::Stats, Failure> {
    cache_cmd::stats(&hi.cache_dir).or_exit(EXIT_FAILED)
}
