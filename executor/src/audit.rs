//! The executor's audit trail: settings (`--audit-log FILE`, `REPROVM_AUDIT_LOG`, `[audit]
//! enabled, log_file, log_to_syslog, audit_key, key_file, syslog_socket`, `REPROVM_AUDIT_KEY`) and
//! the [`RunObserver`] that turns a run's task events into audit lines. The log itself (format,
//! hash chain, asynchronous writer, verify, report) is the sdk's [`reprovm_sdk::audit`], shared
//! with cas-server.
//!
//! Events: `START`/`STOP` of the process, `CONFIG_LOAD`, `TASK_START` / `TASK_COMPLETE` /
//! `TASK_FAIL`, `CACHE_HIT` / `CACHE_MISS` / `CACHE_STORE`, `BLOB_DELETE` (`cache clean`,
//! `DELETE /cache`), and `SECURITY_VIOLATION` for manifest paths leaving the workspace and
//! restored outputs that do not match their digest. `user` is the OS user (`$USER`), or the token
//! name for `reprovm serve` requests.

use std::path::PathBuf;
use std::time::Duration;

use reprovm_sdk::audit::{AuditConfig, AuditLog, Event, EventKind};

use crate::config::FileConfig;
use crate::runner::{RunObserver, TaskEvent};

/// The audit settings of a run: `None` when auditing is off.
pub fn settings(flag: Option<PathBuf>, file: &FileConfig) -> Result<Option<AuditConfig>, String> {
    let enabled = file
        .flag("audit", "enabled")
        .map_err(|e| e.to_string())?
        .unwrap_or(false);
    let path = match flag {
        Some(p) => p,
        None if enabled => file
            .get("audit", "log_file")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".reprovm/audit.log")),
        None => return Ok(None),
    };
    let to_syslog = file
        .flag("audit", "log_to_syslog")
        .map_err(|e| e.to_string())?
        .unwrap_or(false);
    let syslog = to_syslog.then(|| {
        file.get("audit", "syslog_socket")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/log"))
    });
    let key = std::env::var("REPROVM_AUDIT_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .or_else(|| file.get("audit", "audit_key").map(str::to_string));
    Ok(Some(AuditConfig {
        path,
        key,
        key_file: file.get("audit", "key_file").map(PathBuf::from),
        syslog,
        app: "reprovm".into(),
        capacity: 0,
    }))
}

/// The OS user running the process.
pub fn os_user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid:{}", nix::unistd::getuid()))
}

/// An audit log with the user it writes as.
#[derive(Clone, Debug)]
pub struct Audit {
    log: AuditLog,
    user: String,
}

impl Audit {
    /// Opens the log of `cfg` (or a disabled one).
    pub fn open(cfg: Option<&AuditConfig>) -> Result<Self, reprovm_sdk::audit::AuditError> {
        let log = match cfg {
            Some(c) => AuditLog::open(c)?,
            None => AuditLog::disabled(),
        };
        Ok(Self { log, user: os_user() })
    }

    /// The same log, writing as another user (a token name).
    pub fn as_user(&self, user: &str) -> Self {
        Self {
            log: self.log.clone(),
            user: user.to_string(),
        }
    }

    /// The underlying log.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }

    /// Records an event.
    pub fn record(&self, kind: EventKind, resource: &str, action: &str, success: bool, details: impl Into<String>) {
        self.log.record(
            Event::new(kind, self.user.as_str(), resource, action)
                .success(success)
                .details(details),
        );
    }

    /// Writes what is queued and stops the writer (end of the process).
    pub fn close(&self) {
        if self.log.enabled() {
            self.log.flush(Duration::from_secs(5));
            self.log.close();
        }
    }
}

impl RunObserver for Audit {
    fn on_task(&self, event: &TaskEvent<'_>) {
        use EventKind as K;
        if !self.log.enabled() {
            // Nothing would be written: do not build 10,000 event texts for nothing.
            return;
        }
        match *event {
            TaskEvent::CacheHit { task, key, result } => self.record(
                K::CacheHit,
                task,
                "restore",
                true,
                format!("key {key}, {} outputs", result.outputs.len()),
            ),
            TaskEvent::CacheMiss { task, key } => self.record(K::CacheMiss, task, "lookup", true, format!("key {key}")),
            TaskEvent::Started { task, key, attempt } => self.record(
                K::TaskStart,
                task,
                "execute",
                true,
                format!("attempt {attempt}, key {key}"),
            ),
            TaskEvent::Completed { task, key, result } => {
                self.record(
                    K::TaskComplete,
                    task,
                    "execute",
                    true,
                    format!("{} ms", result.duration_ms),
                );
                let bytes: u64 = result.outputs.iter().map(|o| o.size).sum();
                self.record(
                    K::CacheStore,
                    task,
                    "store",
                    true,
                    format!("key {key}, {} outputs, {bytes} bytes", result.outputs.len()),
                );
            }
            TaskEvent::Failed { task, reason, .. } => self.record(K::TaskFail, task, "execute", false, reason),
            TaskEvent::Corrupt { task, details } => self.record(
                K::SecurityViolation,
                task,
                "restore",
                false,
                format!("digest mismatch: {details}"),
            ),
        }
    }
}
