//! One run of a manifest: for each selected task, in dependency order and in parallel, compute its
//! key; if the workspace [`State`] says the task last had that key and its outputs are on disk as
//! recorded, it is up to date (no store access, no file read or written); else restore its
//! outputs on a hit, or run it, store its outputs and record the result. [`dry_run`] computes the
//! same keys and only reports.
//!
//! Layout: [`fresh`] holds the stat-cache side (file digests, the up-to-date check, recording);
//! [`dry_run`] the `-n` plan.

mod dry_run;
mod fresh;

pub use dry_run::dry_run;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reprovm_sdk::{Cas, Digest};

use crate::action_cache::{self, ActionError, ActionResult, RESULT_VERSION};
use crate::dag::{Graph, NodeState, Scheduler};
use crate::exec::{self, Exit};
use crate::limits::Limits;
use crate::manifest::Task;
use crate::messages::{Reporter, RunReport, TaskRecord};
use crate::shutdown::Shutdown;
use crate::state::{fs_clock_s, State};
use crate::workspace::Workspace;

/// What a run needs besides the graph.
pub struct RunOptions {
    /// Parallel tasks.
    pub jobs: usize,
    /// Default timeout (a task's own `timeout` wins).
    pub timeout: Option<Duration>,
    /// Default retries (a task's own `retries` wins).
    pub retries: u32,
    /// Ignore cache hits.
    pub force: bool,
    /// Continue independent work after a failure.
    pub keep_going: bool,
    /// Told about every task event (audit log, notifications, metrics, `reprovm serve`).
    pub observers: Vec<Arc<dyn RunObserver>>,
    /// Rate and resource limits on starting commands.
    pub limits: Option<Arc<Limits>>,
    /// Stop requests (SIGINT, SIGTERM): no task starts after one, running commands are stopped.
    pub shutdown: Shutdown,
    /// The workspace's stat cache and last results; saved at the end of the run.
    pub state: State,
}

/// Something that happened to a task during a run.
#[derive(Debug)]
pub enum TaskEvent<'a> {
    /// Its outputs were restored from the cache.
    CacheHit {
        /// Task name.
        task: &'a str,
        /// Its key.
        key: &'a Digest,
        /// The cached result.
        result: &'a ActionResult,
    },
    /// No usable cached result: it will run.
    CacheMiss {
        /// Task name.
        task: &'a str,
        /// Its key.
        key: &'a Digest,
    },
    /// Its command starts (attempt 1, 2, ...).
    Started {
        /// Task name.
        task: &'a str,
        /// Its key.
        key: &'a Digest,
        /// Attempt number.
        attempt: u32,
    },
    /// Its command succeeded and the outputs and result were stored.
    Completed {
        /// Task name.
        task: &'a str,
        /// Its key.
        key: &'a Digest,
        /// What was stored.
        result: &'a ActionResult,
    },
    /// It failed for good.
    Failed {
        /// Task name.
        task: &'a str,
        /// Its key, when it got that far.
        key: Option<&'a Digest>,
        /// Why.
        reason: &'a str,
    },
    /// A cached output did not hash to its recorded digest (the store returned wrong bytes).
    Corrupt {
        /// Task name.
        task: &'a str,
        /// What was wrong.
        details: &'a str,
    },
}

/// Receives the [`TaskEvent`]s of a run; called from the task's own future, so it must not block.
pub trait RunObserver: Send + Sync {
    /// One event.
    fn on_task(&self, event: &TaskEvent<'_>);
}

/// Shared state of a run.
pub struct Runner<'a> {
    graph: &'a Graph,
    ws: &'a Workspace,
    cas: Arc<dyn Cas>,
    opts: RunOptions,
    reporter: &'a Reporter,
    /// Result digests of finished tasks, for their dependents' keys.
    results: Mutex<HashMap<usize, Digest>>,
    /// The record of each finished task.
    records: Mutex<HashMap<usize, TaskRecord>>,
    /// Taken out of `opts`: read and updated by every task.
    state: Mutex<State>,
}

/// Why a task did not succeed (one attempt).
struct Failure {
    why: String,
    output: Vec<u8>,
    /// Whether running the command again could help.
    retryable: bool,
}

impl<'a> Runner<'a> {
    /// A runner.
    pub fn new(
        graph: &'a Graph,
        ws: &'a Workspace,
        cas: Arc<dyn Cas>,
        mut opts: RunOptions,
        reporter: &'a Reporter,
    ) -> Self {
        let state = Mutex::new(std::mem::take(&mut opts.state));
        Self {
            state,
            graph,
            ws,
            cas,
            opts,
            reporter,
            results: Mutex::default(),
            records: Mutex::default(),
        }
    }

    /// Runs the selected tasks and reports.
    pub async fn run(&self, selected: &[bool]) -> RunReport {
        let start = Instant::now();
        let scheduler = Scheduler::new(
            self.graph,
            self.opts.jobs,
            self.opts.keep_going,
            self.opts.shutdown.clone(),
        );
        let scheduled = scheduler.run(selected, |i| self.run_task(i));
        // Status lines are buffered; they go out whenever the run waits (for a command, the store).
        let mut scheduled = std::pin::pin!(scheduled);
        let states = std::future::poll_fn(|cx| {
            let poll = scheduled.as_mut().poll(cx);
            if poll.is_pending() {
                self.reporter.flush();
            }
            poll
        })
        .await;
        if let Err(e) = self.state.lock().expect("state").save() {
            self.reporter.warn(&format!(
                "cannot save the workspace state (the next run will be slower): {e}"
            ));
        }
        let not_run = match self.opts.shutdown.signal() {
            Some(sig) => format!("not started: interrupted by {}", sig.name()),
            None => "stopped after a failure (use --keep-going)".to_string(),
        };
        let mut records = std::mem::take(&mut *self.records.lock().expect("records"));
        let mut report = RunReport::default();
        for (i, state) in states.iter().enumerate() {
            let name = &self.graph.task(i).name;
            let (status, reason) = match state {
                NodeState::NotSelected => continue,
                NodeState::Skipped => ("skipped", Some(self.failed_deps(i, &states))),
                NodeState::NotRun => ("not_run", Some(not_run.clone())),
                NodeState::Succeeded | NodeState::Failed => {
                    let r = records.remove(&i).expect("finished tasks have a record");
                    report.saved_ms += r.saved_ms;
                    report.tasks.push(r);
                    continue;
                }
            };
            self.reporter.skipped(name, reason.as_deref().unwrap_or_default());
            report.tasks.push(TaskRecord {
                name: name.clone(),
                status,
                duration_ms: 0,
                saved_ms: 0,
                attempts: 0,
                reason,
            });
        }
        for t in &report.tasks {
            match t.status {
                "ran" => report.ran += 1,
                "cached" => report.cached += 1,
                "failed" => report.failed += 1,
                "skipped" => report.skipped += 1,
                _ => report.not_run += 1,
            }
        }
        report.total = report.tasks.len();
        report.wall_ms = start.elapsed().as_millis() as u64;
        report
    }

    fn failed_deps(&self, i: usize, states: &[NodeState]) -> String {
        let bad: Vec<&str> = self
            .graph
            .deps(i)
            .iter()
            .filter(|&&d| matches!(states[d], NodeState::Failed | NodeState::Skipped))
            .map(|&d| self.graph.task(d).name.as_str())
            .collect();
        format!("skipped: dependency {} failed", bad.join(", "))
    }

    fn record(
        &self,
        i: usize,
        status: &'static str,
        took: Duration,
        saved_ms: u64,
        attempts: u32,
        reason: Option<String>,
    ) {
        let rec = TaskRecord {
            name: self.graph.task(i).name.clone(),
            status,
            duration_ms: took.as_millis() as u64,
            saved_ms,
            attempts,
            reason,
        };
        self.records.lock().expect("records").insert(i, rec);
    }

    fn emit(&self, event: TaskEvent<'_>) {
        for o in &self.opts.observers {
            o.on_task(&event);
        }
    }

    /// One task, start to end. Returns success.
    async fn run_task(&self, i: usize) -> bool {
        let task = self.graph.task(i);
        let start = Instant::now();
        let key = match self.key(i, task).await {
            Ok(k) => k,
            Err(why) => {
                self.reporter.failed(&task.name, &why, &[]);
                self.emit(TaskEvent::Failed {
                    task: &task.name,
                    key: None,
                    reason: &why,
                });
                self.record(i, "failed", start.elapsed(), 0, 0, Some(why));
                return false;
            }
        };
        tracing::debug!(task = %task.name, %key, "task key");
        if !self.opts.force && self.up_to_date(task, &key).await {
            let state = self.state.lock().expect("state");
            let result = state.result(&task.name, &key).expect("checked just now");
            self.results.lock().expect("results").insert(i, result.result_digest());
            self.reporter
                .cached(&task.name, 0, Duration::from_millis(result.duration_ms));
            self.emit(TaskEvent::CacheHit {
                task: &task.name,
                key: &key,
                result,
            });
            self.record(i, "cached", start.elapsed(), result.duration_ms, 0, None);
            return true;
        }
        // Boxed: the up-to-date path above stays a small future (10,000 of them in a no-op).
        Box::pin(self.restore_or_run(i, task, key, start)).await
    }

    /// A task that is not up to date: restored from the store on a hit, else run.
    async fn restore_or_run(&self, i: usize, task: &Task, key: Digest, start: Instant) -> bool {
        if !self.opts.force {
            let checked_s = fs_clock_s();
            match self.try_restore(task, &key).await {
                Ok(Some((result, written))) => {
                    self.remember(&key, &result, checked_s);
                    let saved = Duration::from_millis(result.duration_ms);
                    self.results.lock().expect("results").insert(i, result.result_digest());
                    self.reporter.cached(&task.name, written, saved);
                    self.emit(TaskEvent::CacheHit {
                        task: &task.name,
                        key: &key,
                        result: &result,
                    });
                    self.record(i, "cached", start.elapsed(), result.duration_ms, 0, None);
                    return true;
                }
                Ok(None) => {}
                Err(e) => {
                    if matches!(e, ActionError::Corrupt { .. }) {
                        self.emit(TaskEvent::Corrupt {
                            task: &task.name,
                            details: &e.to_string(),
                        });
                    }
                    // A broken cache entry is not fatal: run the task and overwrite it.
                    self.reporter
                        .warn(&format!("{}: cannot restore from cache ({e}); running it", task.name));
                }
            }
        }
        self.emit(TaskEvent::CacheMiss {
            task: &task.name,
            key: &key,
        });
        let attempts_allowed = 1 + task.retries.unwrap_or(self.opts.retries);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let _running = match &self.opts.limits {
                Some(l) => {
                    let started = tokio::select! {
                        s = l.start() => Some(s),
                        _ = self.opts.shutdown.stopped() => None,
                    };
                    let (running, warning) = started.unzip();
                    if let Some(w) = warning.flatten() {
                        self.reporter.warn(&format!("{}: {w}", task.name));
                    }
                    running
                }
                None => None,
            };
            if let Err(stop) = self.opts.shutdown.check() {
                let why = format!("not started: {stop}");
                self.reporter.skipped(&task.name, &why);
                self.record(i, "not_run", start.elapsed(), 0, attempt - 1, Some(why));
                return false;
            }
            self.reporter.started(&task.name, &task.cmd);
            self.emit(TaskEvent::Started {
                task: &task.name,
                key: &key,
                attempt,
            });
            match self.execute(task, &key).await {
                Ok((result, output, took, checked_s)) => {
                    self.remember(&key, &result, checked_s);
                    self.results.lock().expect("results").insert(i, result.result_digest());
                    self.emit(TaskEvent::Completed {
                        task: &task.name,
                        key: &key,
                        result: &result,
                    });
                    self.reporter.ran(&task.name, took, attempt, &output);
                    self.record(i, "ran", start.elapsed(), 0, attempt, None);
                    return true;
                }
                Err(f) if f.retryable && attempt < attempts_allowed => {
                    self.reporter
                        .retrying(&task.name, attempt, attempts_allowed - 1, &f.why);
                }
                Err(f) => {
                    let why = if attempt > 1 {
                        format!("{} (after {attempt} attempts)", f.why)
                    } else {
                        f.why
                    };
                    self.reporter.failed(&task.name, &why, &f.output);
                    self.emit(TaskEvent::Failed {
                        task: &task.name,
                        key: Some(&key),
                        reason: &why,
                    });
                    self.record(i, "failed", start.elapsed(), 0, attempt, Some(why));
                    return false;
                }
            }
        }
    }

    /// The task key from the files on disk and the deps' results.
    async fn key(&self, i: usize, task: &Task) -> Result<Digest, String> {
        let mut inputs = Vec::with_capacity(task.inputs.len());
        for rel in &task.inputs {
            let norm = Workspace::normalized(rel).map_err(|e| format!("input {e}"))?;
            self.ws.check(rel, &norm).map_err(|e| format!("input {e}"))?;
            let d = match self.file_digest(&norm).await {
                Ok(Some((_, d))) => d,
                Ok(None) => {
                    let missing = std::io::Error::from(nix::errno::Errno::ENOENT);
                    return Err(format!("input {rel:?}: {missing}"));
                }
                Err(e) => return Err(format!("input {rel:?}: {e}")),
            };
            inputs.push((norm, d));
        }
        let mut inputs: Vec<(&str, Digest)> = inputs.iter().map(|(n, d)| (&**n, *d)).collect();
        let mut deps: Vec<(&str, Digest)> = {
            let results = self.results.lock().expect("results");
            self.graph
                .deps(i)
                .iter()
                .map(|&d| (self.graph.task(d).name.as_str(), results[&d]))
                .collect()
        };
        Ok(action_cache::task_key_of(&task.cmd, &task.env, &mut inputs, &mut deps))
    }

    /// On a hit whose blobs are all present, restores the outputs.
    async fn try_restore(&self, task: &Task, key: &Digest) -> Result<Option<(ActionResult, usize)>, ActionError> {
        let Some(result) = action_cache::lookup(&*self.cas, key).await? else {
            return Ok(None);
        };
        // The declared outputs must match what was recorded (they are part of the task, not the key).
        let mut declared: Vec<String> = task
            .outputs
            .iter()
            .map(|o| Workspace::normalize(o))
            .collect::<Result<_, _>>()?;
        declared.sort();
        let recorded: Vec<&String> = result.outputs.iter().map(|o| &o.path).collect();
        if declared.iter().collect::<Vec<_>>() != recorded {
            return Ok(None);
        }
        if !action_cache::outputs_present(&*self.cas, &result).await? {
            return Ok(None);
        }
        let written = action_cache::restore_outputs(&*self.cas, self.ws, &result).await;
        for o in &result.outputs {
            self.ws.forget_file(&o.path);
        }
        Ok(Some((result, written?)))
    }

    /// Runs the command once, then stores its outputs and result. Also returns [`fs_clock_s`] as
    /// read before the outputs were hashed.
    async fn execute(&self, task: &Task, key: &Digest) -> Result<(ActionResult, Vec<u8>, Duration, i64), Failure> {
        // Declared outputs' directories exist before the command runs (as in most build tools).
        for rel in &task.outputs {
            let parent = self
                .ws
                .resolve(rel)
                .ok()
                .and_then(|p| p.parent().map(|p| p.to_path_buf()));
            if let Some(dir) = parent {
                std::fs::create_dir_all(&dir).map_err(|e| Failure {
                    why: format!("creating {}: {e}", dir.display()),
                    output: Vec::new(),
                    retryable: false,
                })?;
            }
        }
        let timeout = task.timeout.or(self.opts.timeout);
        let outcome = exec::run(&task.cmd, self.ws.root(), &task.env, timeout, &self.opts.shutdown).await;
        // The command may have changed any file.
        self.ws.forget();
        let checked_s = fs_clock_s();
        let outcome = outcome.map_err(|e| Failure {
            why: format!("cannot start `sh -c`: {e}"),
            output: Vec::new(),
            retryable: false,
        })?;
        if outcome.exit != Exit::Success {
            return Err(Failure {
                why: format!("command {}", outcome.exit),
                output: outcome.output,
                retryable: !matches!(outcome.exit, Exit::Interrupted(_)),
            });
        }
        let outputs = match action_cache::store_outputs(&*self.cas, self.ws, &task.outputs).await {
            Ok(o) => o,
            Err(e) => {
                let retryable = matches!(e, ActionError::MissingOutput(_) | ActionError::NotAFile(_));
                return Err(Failure {
                    why: e.to_string(),
                    output: outcome.output,
                    retryable,
                });
            }
        };
        let result = ActionResult {
            version: RESULT_VERSION,
            task: task.name.clone(),
            exit_code: 0,
            duration_ms: outcome.duration.as_millis() as u64,
            outputs,
        };
        if let Err(e) = self.cas.ac_put(key, result.encode()).await {
            return Err(Failure {
                why: format!("storing the action result: {e}"),
                output: outcome.output,
                retryable: false,
            });
        }
        Ok((result, outcome.output, outcome.duration, checked_s))
    }
}
