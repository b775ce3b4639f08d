//! What `reprovm serve` keeps between requests: the manifest's graph and workspace, the open
//! store, the runs (queued, running, finished) and each task's last outcome, updated from the
//! runner's events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

use crate::action_cache::OutputEntry;
use crate::audit::Audit;
use crate::cli::hiargs::HiArgs;
use crate::dag::Graph;
use crate::limits::Limits;
use crate::messages::{Reporter, RunReport, Style};
use crate::notify::{Notification, Notifier};
use crate::runner::{RunObserver, RunOptions, Runner, TaskEvent};
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::workspace::Workspace;
use cas_server::auth::Authenticator;
use cas_server::metrics::Metrics;

/// A task's last known outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TaskState {
    /// `never_run`, `running`, `ran`, `cached`, `failed`, `skipped`, `not_run`.
    pub status: String,
    /// Its last key.
    pub key: Option<String>,
    /// Its outputs as last stored or restored.
    pub outputs: Vec<OutputEntry>,
    /// The run that last touched it.
    pub run_id: Option<u64>,
    /// Why it failed or was skipped.
    pub reason: Option<String>,
    /// Time spent in that run.
    pub duration_ms: Option<u64>,
}

/// One `POST /tasks`.
#[derive(Clone, Debug, Serialize)]
pub struct RunInfo {
    /// Its id.
    pub id: u64,
    /// `queued`, `running`, `succeeded`, `failed`.
    pub status: &'static str,
    /// Targets (empty: all).
    pub targets: Vec<String>,
    /// `force`.
    pub force: bool,
    /// Unix seconds.
    pub submitted: u64,
    /// The report once finished.
    pub report: Option<RunReport>,
}

/// Shared server state.
pub struct State {
    pub(super) graph: Graph,
    pub(super) ws: Workspace,
    pub(super) store: Store,
    pub(super) auth: Authenticator,
    pub(super) audit: Audit,
    pub(super) notifier: Arc<Notifier>,
    pub(super) metrics: Metrics,
    limits: Option<Arc<Limits>>,
    jobs: usize,
    timeout: Option<Duration>,
    retries: u32,
    keep_going: bool,
    /// Runs one at a time.
    pub(super) run_lock: tokio::sync::Mutex<()>,
    pub(super) runs: Mutex<Vec<RunInfo>>,
    pub(super) tasks: Arc<Mutex<HashMap<String, TaskState>>>,
    /// `GET /config`.
    pub(super) config: Value,
    /// Stops the run in progress (and any queued one) on SIGTERM/SIGINT.
    shutdown: Shutdown,
    /// The workspace's stat cache and last results (`crate::state`), loaded by each run.
    pub(super) state_file: std::path::PathBuf,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}/…", rest.split('/').next().unwrap_or_default()),
        None => "…".into(),
    }
}

impl State {
    /// Builds the state.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        hi: &HiArgs,
        graph: Graph,
        ws: Workspace,
        store: Store,
        auth: Authenticator,
        audit: Audit,
        notifier: Arc<Notifier>,
        metrics: Metrics,
        shutdown: Shutdown,
    ) -> Self {
        let tasks = graph
            .tasks()
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    TaskState {
                        status: "never_run".into(),
                        ..TaskState::default()
                    },
                )
            })
            .collect();
        let config = json!({
            "manifest": hi.manifest.as_ref().map(|p| p.display().to_string()),
            "config_file": hi.config_file.as_ref().map(|p| p.display().to_string()),
            "cache_dir": hi.cache_dir.display().to_string(),
            "store": store.describe,
            "remote": hi.remote.as_ref().map(|r| json!({
                "url": r.url,
                "token": r.token.as_ref().map(|_| "<redacted>"),
                "options": r.options.iter().map(|(k, v)| {
                    let secret = k.contains("secret") || k.contains("key") || k.contains("token");
                    (k.clone(), if secret { "<redacted>".to_string() } else { v.clone() })
                }).collect::<HashMap<_, _>>(),
            })),
            "jobs": hi.jobs,
            "timeout_seconds": hi.timeout.map(|t| t.as_secs_f64()),
            "retries": hi.retries,
            "keep_going": hi.keep_going,
            "rate_limiting": {
                "max_cpu_percent": hi.limits.max_cpu_percent,
                "max_memory_mb": hi.limits.max_memory_mb,
                "max_tasks_per_second": hi.limits.tasks_per_second,
            },
            "notifications": {
                "webhooks": hi.notify.urls.iter().map(|u| redact(u)).collect::<Vec<_>>(),
                "notify_on_error": hi.notify.on_error,
                "notify_on_complete": hi.notify.on_complete,
            },
            "audit": hi.audit.as_ref().map(|a| json!({
                "log_file": a.path.display().to_string(),
                "key": a.key.as_ref().map(|_| "<redacted>"),
                "syslog": a.syslog.as_ref().map(|p| p.display().to_string()),
            })),
            "auth": {"tokens_configured": auth.enabled()},
        });
        Self {
            state_file: crate::state::State::location(&hi.cache_dir, ws.root()),
            graph,
            ws,
            store,
            auth,
            audit,
            notifier,
            metrics,
            limits: hi.limits.any().then(|| Limits::new(hi.limits.clone())),
            jobs: hi.jobs,
            timeout: hi.timeout,
            retries: hi.retries,
            keep_going: hi.keep_going,
            run_lock: tokio::sync::Mutex::new(()),
            runs: Mutex::default(),
            tasks: Arc::new(Mutex::new(tasks)),
            config,
            shutdown,
        }
    }

    /// Queues a run; returns its id. The caller checked the targets.
    pub fn submit(self: &Arc<Self>, targets: Vec<String>, selected: Vec<bool>, force: bool, user: &str) -> u64 {
        let id = {
            let mut runs = self.runs.lock().expect("runs");
            let id = runs.len() as u64 + 1;
            runs.push(RunInfo {
                id,
                status: "queued",
                targets,
                force,
                submitted: now(),
                report: None,
            });
            id
        };
        let st = self.clone();
        let audit = self.audit.as_user(user);
        tokio::spawn(async move { st.execute(id, selected, force, audit).await });
        id
    }

    fn set_run(&self, id: u64, status: &'static str, report: Option<RunReport>) {
        let mut runs = self.runs.lock().expect("runs");
        if let Some(r) = runs.iter_mut().find(|r| r.id == id) {
            r.status = status;
            if report.is_some() {
                r.report = report;
            }
        }
    }

    async fn execute(self: Arc<Self>, id: u64, selected: Vec<bool>, force: bool, audit: Audit) {
        let _one_at_a_time = self.run_lock.lock().await;
        self.set_run(id, "running", None);
        metrics::gauge!("reprovm_runs_in_progress").increment(1.0);
        let reporter = Reporter::new(
            Style {
                color: false,
                quiet: true,
                verbose: false,
                progress: false,
            },
            selected.iter().filter(|s| **s).count() as u64,
        );
        let observers: Vec<Arc<dyn RunObserver>> = vec![
            Arc::new(audit.clone()),
            self.notifier.clone(),
            Arc::new(crate::metrics::MetricsObserver),
            Arc::new(Tracker {
                tasks: self.tasks.clone(),
                run_id: id,
            }),
        ];
        let opts = RunOptions {
            jobs: self.jobs,
            timeout: self.timeout,
            retries: self.retries,
            force,
            keep_going: self.keep_going,
            observers,
            limits: self.limits.clone(),
            shutdown: self.shutdown.clone(),
            state: crate::state::State::load(self.state_file.clone(), &self.store.describe),
        };
        // What was seen at start-up or in the last run is stale by now.
        self.ws.forget();
        let report = Runner::new(&self.graph, &self.ws, self.store.cas.clone(), opts, &reporter)
            .run(&selected)
            .await;
        {
            let mut tasks = self.tasks.lock().expect("tasks");
            for rec in &report.tasks {
                if let Some(t) = tasks.get_mut(&rec.name) {
                    t.status = rec.status.to_string();
                    t.reason = rec.reason.clone();
                    t.duration_ms = Some(rec.duration_ms);
                    t.run_id = Some(id);
                }
            }
        }
        let ok = report.failed + report.skipped + report.not_run == 0;
        crate::metrics::run_finished(
            &report,
            self.limits.as_ref().map_or(0, |l| l.waits()),
            audit.log().dropped(),
            [0; 3],
        );
        metrics::gauge!("reprovm_runs_in_progress").decrement(1.0);
        self.notifier
            .notify(Notification::PipelineComplete { report: report.clone() });
        self.set_run(id, if ok { "succeeded" } else { "failed" }, Some(report));
    }
}

/// Keeps [`TaskState`]s current during a run.
struct Tracker {
    tasks: Arc<Mutex<HashMap<String, TaskState>>>,
    run_id: u64,
}

impl RunObserver for Tracker {
    fn on_task(&self, event: &TaskEvent<'_>) {
        let mut tasks = self.tasks.lock().expect("tasks");
        let mut set = |name: &str, status: &str, key: Option<String>, outputs: Option<&[OutputEntry]>| {
            if let Some(t) = tasks.get_mut(name) {
                t.status = status.into();
                t.run_id = Some(self.run_id);
                if key.is_some() {
                    t.key = key;
                }
                if let Some(o) = outputs {
                    t.outputs = o.to_vec();
                }
            }
        };
        match event {
            TaskEvent::CacheHit { task, key, result } => {
                set(task, "cached", Some(key.to_string()), Some(&result.outputs))
            }
            TaskEvent::Started { task, key, .. } => set(task, "running", Some(key.to_string()), None),
            TaskEvent::Completed { task, key, result } => {
                set(task, "ran", Some(key.to_string()), Some(&result.outputs))
            }
            TaskEvent::Failed { task, key, .. } => set(task, "failed", key.map(|k| k.to_string()), None),
            TaskEvent::CacheMiss { .. } | TaskEvent::Corrupt { .. } => {}
        }
    }
}
