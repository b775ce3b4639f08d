//! Webhook notifications: task failure, pipeline completion (totals, duration, cache hit rate),
//! health-check failure and custom events, as generic JSON, Slack (`{"text": …}`) or Discord
//! (`{"content": …}`) payloads.
//!
//! Delivery never holds up a run: [`Notifier::notify`] queues with `try_send` (a full queue drops
//! and counts); a background task posts each notification to each endpoint in its own task, with
//! a per-attempt timeout and retries with exponential backoff. At the end of the process
//! [`Notifier::finish`] gives outstanding deliveries a bounded grace period, then abandons them,
//! so a dead or hanging endpoint costs at most that grace and never changes the exit code.
//!
//! Configured by `[notifications] enabled, webhook_url, notify_on_complete, notify_on_error,
//! format, retries, timeout_seconds`, `--webhook URL` (repeatable) and `REPROVM_WEBHOOK_URL`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::messages::RunReport;
use crate::runner::{RunObserver, TaskEvent};

/// Payload layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `{"event": …, "source": "reprovm", …fields}`.
    Json,
    /// Slack incoming webhook: `{"text": …}`.
    Slack,
    /// Discord webhook: `{"content": …}`.
    Discord,
}

impl Format {
    /// `json`, `slack`, `discord` (or `auto`: `None`).
    pub fn parse(s: &str) -> Result<Option<Self>, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(None),
            "json" | "generic" => Ok(Some(Self::Json)),
            "slack" => Ok(Some(Self::Slack)),
            "discord" => Ok(Some(Self::Discord)),
            other => Err(format!(
                "unknown webhook format {other:?}: expected json, slack, discord or auto"
            )),
        }
    }

    /// The format a URL implies when none is configured.
    pub fn for_url(url: &str) -> Self {
        if url.contains("hooks.slack.com") {
            Self::Slack
        } else if url.contains("discord.com/api/webhooks") || url.contains("discordapp.com/api/webhooks") {
            Self::Discord
        } else {
            Self::Json
        }
    }
}

/// Settings.
#[derive(Clone, Debug, PartialEq)]
pub struct NotifySpec {
    /// Endpoints.
    pub urls: Vec<String>,
    /// Forced payload format; `None` picks by URL.
    pub format: Option<Format>,
    /// Send task failures (and health-check failures).
    pub on_error: bool,
    /// Send pipeline completion.
    pub on_complete: bool,
    /// Retries after a failed attempt.
    pub retries: u32,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Longest the process waits for outstanding deliveries at exit.
    pub grace: Duration,
}

impl Default for NotifySpec {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            format: None,
            on_error: true,
            on_complete: true,
            retries: 3,
            timeout: Duration::from_secs(5),
            grace: Duration::from_secs(3),
        }
    }
}

/// Something worth telling.
#[derive(Clone, Debug)]
pub enum Notification {
    /// A task failed.
    TaskFailed {
        /// Task name.
        task: String,
        /// Why.
        reason: String,
    },
    /// A run ended.
    PipelineComplete {
        /// Its report.
        report: RunReport,
    },
    /// `--health-check` found a problem.
    HealthCheckFailed {
        /// The failing checks, `name: detail`.
        failures: Vec<String>,
    },
    /// Anything else.
    Custom {
        /// Event name.
        event: String,
        /// Text.
        message: String,
    },
}

impl Notification {
    fn event(&self) -> &str {
        match self {
            Self::TaskFailed { .. } => "task_failed",
            Self::PipelineComplete { .. } => "pipeline_complete",
            Self::HealthCheckFailed { .. } => "health_check_failed",
            Self::Custom { event, .. } => event,
        }
    }

    fn is_error(&self) -> bool {
        match self {
            Self::TaskFailed { .. } | Self::HealthCheckFailed { .. } => true,
            Self::PipelineComplete { report } => report.failed > 0,
            Self::Custom { .. } => false,
        }
    }

    /// One human line.
    pub fn text(&self) -> String {
        match self {
            Self::TaskFailed { task, reason } => format!("reprovm: task `{task}` failed: {reason}"),
            Self::PipelineComplete { report: r } => format!(
                "reprovm: pipeline {}: {} tasks, {} ran, {} cached, {} failed, {} skipped in {:.1}s (cache hit rate {:.0}%)",
                if r.failed + r.skipped + r.not_run > 0 { "FAILED" } else { "succeeded" },
                r.total,
                r.ran,
                r.cached,
                r.failed,
                r.skipped + r.not_run,
                r.wall_ms as f64 / 1000.0,
                hit_rate(r) * 100.0
            ),
            Self::HealthCheckFailed { failures } => format!("reprovm: health check failed: {}", failures.join("; ")),
            Self::Custom { event, message } => format!("reprovm: {event}: {message}"),
        }
    }

    /// The body to post.
    pub fn payload(&self, format: Format) -> Value {
        match format {
            Format::Slack => json!({ "text": self.text() }),
            Format::Discord => {
                let mut t = self.text();
                if t.len() > 2000 {
                    let mut cut = 1997;
                    while !t.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    t.truncate(cut);
                    t.push_str("...");
                }
                json!({ "content": t })
            }
            Format::Json => {
                let mut v = json!({
                    "event": self.event(),
                    "source": "reprovm",
                    "time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                    "host": nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()),
                    "message": self.text(),
                });
                let extra = match self {
                    Self::TaskFailed { task, reason } => json!({"task": task, "reason": reason}),
                    Self::PipelineComplete { report: r } => json!({
                        "total": r.total, "ran": r.ran, "cached": r.cached, "failed": r.failed,
                        "skipped": r.skipped, "not_run": r.not_run, "duration_ms": r.wall_ms,
                        "saved_ms": r.saved_ms, "cache_hit_rate": hit_rate(r),
                        "success": r.failed + r.skipped + r.not_run == 0,
                    }),
                    Self::HealthCheckFailed { failures } => json!({"failures": failures}),
                    Self::Custom { .. } => json!({}),
                };
                if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                    o.extend(e);
                }
                v
            }
        }
    }
}

/// Cached share of the tasks that ran or were restored.
pub fn hit_rate(r: &RunReport) -> f64 {
    let n = r.ran + r.cached;
    if n == 0 {
        0.0
    } else {
        r.cached as f64 / n as f64
    }
}

/// The notification settings: `--webhook URL` (repeatable) / `REPROVM_WEBHOOK_URL` (comma-separated)
/// win over `[notifications] webhook_url` (used when `enabled` is not 0). The seed example's
/// placeholder URL (`…/YOUR/…`) is ignored.
pub fn settings(flags: &[String], file: &crate::config::FileConfig) -> Result<NotifySpec, String> {
    let sec = "notifications";
    let e = |e: crate::config::ConfigError| e.to_string();
    let mut spec = NotifySpec::default();
    let urls: Vec<String> = if flags.iter().any(|u| !u.trim().is_empty()) {
        flags
            .iter()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect()
    } else if file.flag(sec, "enabled").map_err(e)?.unwrap_or(true) {
        file.get(sec, "webhook_url")
            .map(|u| {
                u.split(',')
                    .map(|u| u.trim().to_string())
                    .filter(|u| !u.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    for u in &urls {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(format!("webhook URL {u:?}: expected http:// or https://"));
        }
    }
    spec.urls = urls.into_iter().filter(|u| !u.contains("/YOUR/")).collect();
    spec.on_complete = file.flag(sec, "notify_on_complete").map_err(e)?.unwrap_or(true);
    spec.on_error = file.flag(sec, "notify_on_error").map_err(e)?.unwrap_or(true);
    let format = std::env::var("REPROVM_WEBHOOK_FORMAT")
        .ok()
        .or_else(|| file.get(sec, "format").map(str::to_string));
    spec.format = Format::parse(format.as_deref().unwrap_or("auto"))?;
    if let Some(r) = file.number(sec, "retries").map_err(e)? {
        spec.retries = r;
    }
    if let Some(t) = file
        .number::<f64>(sec, "timeout_seconds")
        .map_err(e)?
        .filter(|t| *t > 0.0)
    {
        spec.timeout = Duration::from_secs_f64(t);
        spec.grace = Duration::from_secs_f64(t.min(30.0));
    }
    Ok(spec)
}

/// Delivery counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Posts answered with 2xx.
    pub delivered: AtomicU64,
    /// Notifications given up on (after retries), per endpoint.
    pub failed: AtomicU64,
    /// Dropped because the queue was full.
    pub dropped: AtomicU64,
}

/// Queues notifications and delivers them in the background.
pub struct Notifier {
    spec: NotifySpec,
    /// Taken (closed) by [`Notifier::finish`].
    tx: Mutex<Option<mpsc::Sender<Notification>>>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Delivery counters.
    pub counters: Arc<Counters>,
}

impl Notifier {
    /// A notifier; with no URL it sends nothing. Must be called inside a tokio runtime.
    pub fn start(spec: NotifySpec) -> Self {
        let counters = Arc::new(Counters::default());
        if spec.urls.is_empty() {
            return Self {
                spec,
                tx: Mutex::new(None),
                worker: Mutex::new(None),
                counters,
            };
        }
        let (tx, rx) = mpsc::channel(256);
        let worker = tokio::spawn(deliver_all(spec.clone(), rx, counters.clone()));
        Self {
            spec,
            tx: Mutex::new(Some(tx)),
            worker: Mutex::new(Some(worker)),
            counters,
        }
    }

    /// Whether any endpoint is configured.
    pub fn enabled(&self) -> bool {
        !self.spec.urls.is_empty()
    }

    /// Queues a notification if its kind is wanted; never blocks.
    pub fn notify(&self, n: Notification) {
        let Some(tx) = self.tx.lock().expect("notifier").clone() else {
            return;
        };
        let wanted = match &n {
            Notification::TaskFailed { .. } | Notification::HealthCheckFailed { .. } => self.spec.on_error,
            Notification::PipelineComplete { .. } => self.spec.on_complete || (self.spec.on_error && n.is_error()),
            Notification::Custom { .. } => true,
        };
        if wanted && tx.try_send(n).is_err() {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops taking notifications and waits at most the grace period for deliveries in flight.
    pub async fn finish(&self) {
        drop(self.tx.lock().expect("notifier").take());
        let worker = self.worker.lock().expect("notifier").take();
        if let Some(mut w) = worker {
            if tokio::time::timeout(self.spec.grace, &mut w).await.is_err() {
                tracing::warn!(grace = ?self.spec.grace, "webhook deliveries still pending at exit; abandoned");
                w.abort();
            }
        }
    }
}

impl RunObserver for Notifier {
    fn on_task(&self, event: &TaskEvent<'_>) {
        if let TaskEvent::Failed { task, reason, .. } = event {
            self.notify(Notification::TaskFailed {
                task: task.to_string(),
                reason: reason.to_string(),
            });
        }
    }
}

async fn deliver_all(spec: NotifySpec, mut rx: mpsc::Receiver<Notification>, counters: Arc<Counters>) {
    let client = match reqwest::Client::builder().timeout(spec.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "webhook client");
            return;
        }
    };
    let mut tasks = JoinSet::new();
    while let Some(n) = rx.recv().await {
        for url in &spec.urls {
            let body = n.payload(spec.format.unwrap_or_else(|| Format::for_url(url)));
            let (client, url, counters, retries) = (client.clone(), url.clone(), counters.clone(), spec.retries);
            tasks.spawn(async move { post_with_retries(&client, &url, &body, retries, &counters).await });
        }
        // Reap finished deliveries so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

async fn post_with_retries(client: &reqwest::Client, url: &str, body: &Value, retries: u32, counters: &Counters) {
    let mut backoff = Duration::from_millis(200);
    for attempt in 0..=retries {
        let outcome = client.post(url).json(body).send().await;
        match outcome {
            Ok(r) if r.status().is_success() => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(r) => tracing::warn!(%url, status = %r.status(), attempt, "webhook refused"),
            Err(e) => tracing::warn!(%url, error = %e, attempt, "webhook failed"),
        }
        if attempt < retries {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
    counters.failed.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> RunReport {
        RunReport {
            total: 4,
            ran: 1,
            cached: 3,
            wall_ms: 1500,
            ..RunReport::default()
        }
    }

    #[test]
    fn formats() {
        let n = Notification::PipelineComplete { report: report() };
        let j = n.payload(Format::Json);
        assert_eq!(j["event"], "pipeline_complete");
        assert_eq!(j["cache_hit_rate"], 0.75);
        assert_eq!(j["duration_ms"], 1500);
        assert_eq!(j["success"], true);
        let s = n.payload(Format::Slack);
        assert!(s["text"].as_str().unwrap().contains("cache hit rate 75%"), "{s}");
        let d = Notification::Custom {
            event: "deploy".into(),
            message: "é".repeat(1500),
        }
        .payload(Format::Discord);
        assert!(d["content"].as_str().unwrap().len() <= 2000);
        assert_eq!(Format::for_url("https://hooks.slack.com/services/x"), Format::Slack);
        assert_eq!(Format::for_url("https://discord.com/api/webhooks/1/y"), Format::Discord);
        assert_eq!(Format::for_url("http://127.0.0.1:9/x"), Format::Json);
        assert!(Format::parse("teams").is_err());
    }
}
