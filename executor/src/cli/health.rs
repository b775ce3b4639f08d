//! `reprovm --health-check`: config valid, `sh` runs, lock state, disk space of the cache dir,
//! store reachable; printed as a table; exit 0 when every check passes, 1 otherwise (and a
//! `health_check_failed` webhook).

use std::path::Path;
use std::time::{Duration, Instant};

use super::EXIT_FAILED;
use crate::lock;
use crate::messages::human;
use crate::notify::{Notification, Notifier};
use crate::store;

use super::hiargs::HiArgs;

/// Free space below which the disk check fails.
pub const MIN_FREE_BYTES: u64 = 100 * 1024 * 1024;

/// One row of the table.
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

fn row(name: &'static str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        detail: detail.into(),
    }
}

/// Prints the table; returns the exit code.
pub fn print(checks: &[Check], took: Duration) -> u8 {
    println!("{:<8} {:<6} DETAIL", "CHECK", "STATUS");
    for c in checks {
        println!("{:<8} {:<6} {}", c.name, if c.ok { "ok" } else { "FAIL" }, c.detail);
    }
    let healthy = checks.iter().all(|c| c.ok);
    println!("{} in {}", if healthy { "healthy" } else { "unhealthy" }, human(took));
    if healthy {
        0
    } else {
        EXIT_FAILED
    }
}

/// The table when the configuration itself does not load.
pub fn config_failed(error: &str) -> u8 {
    print(&[row("config", false, error)], Duration::ZERO)
}

/// Free bytes on the filesystem of `dir` (or of its nearest existing ancestor).
fn free_space(dir: &Path) -> std::io::Result<u64> {
    let mut p = dir;
    loop {
        if p.exists() {
            return fs4::available_space(p);
        }
        p = match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
    }
}

/// Runs every check.
pub async fn run(hi: &HiArgs, notifier: &Notifier) -> u8 {
    let start = Instant::now();
    let mut checks = Vec::new();
    checks.push(row(
        "config",
        true,
        match &hi.config_file {
            Some(p) => format!("{} loaded ({} warnings)", p.display(), hi.warnings.len()),
            None => "no file; defaults and environment".into(),
        },
    ));
    let sh = crate::exec::run(
        "true",
        Path::new("."),
        &[],
        Some(Duration::from_secs(10)),
        &crate::shutdown::Shutdown::new(),
    )
    .await;
    checks.push(match sh {
        Ok(o) if o.exit == crate::exec::Exit::Success => row("shell", true, "sh -c runs"),
        Ok(o) => row("shell", false, format!("sh -c true {}", o.exit)),
        Err(e) => row("shell", false, format!("cannot run sh: {e}")),
    });
    checks.push(match free_space(&hi.cache_dir) {
        Ok(free) => row(
            "disk",
            free >= MIN_FREE_BYTES,
            format!(
                "{:.1} GiB free for {} (minimum {} MiB)",
                free as f64 / (1u64 << 30) as f64,
                hi.cache_dir.display(),
                MIN_FREE_BYTES >> 20
            ),
        ),
        Err(e) => row("disk", false, format!("{}: {e}", hi.cache_dir.display())),
    });
    // The lock: free, stale (taken over by the next run) or held by a live run (which is fine,
    // but then the embedded store is in use and cannot be opened here).
    let lock_path = hi.cache_dir.join("lock");
    let holder = std::fs::read_to_string(&lock_path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok());
    let busy = holder.filter(|p| lock::pid_alive(*p) && *p != std::process::id());
    checks.push(match (holder, busy) {
        (None, _) => row("lock", true, "free"),
        (Some(pid), None) => row(
            "lock",
            true,
            format!("stale (PID {pid} is gone); the next run takes it over"),
        ),
        (Some(pid), Some(_)) => row("lock", true, format!("held by running PID {pid}")),
    });
    let embedded_busy = busy.is_some() && hi.remote.is_none();
    checks.push(if embedded_busy {
        row("store", true, "local store in use by the running PID; not opened")
    } else {
        let opened = match lock::acquire(&hi.cache_dir, Duration::ZERO, &crate::shutdown::Shutdown::new()) {
            Ok(guard) => store::open(hi.remote.as_ref(), &hi.cache_dir)
                .map(|s| (s, guard))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match opened {
            Ok((s, _guard)) => match s.cas.find_missing(&[reprovm_sdk::Digest::empty_blake3()]).await {
                Ok(_) => row("store", true, format!("{} answers", s.describe)),
                Err(e) => row("store", false, format!("{}: {e}", s.describe)),
            },
            Err(e) => row("store", false, e),
        }
    });
    let code = print(&checks, start.elapsed());
    if code != 0 {
        notifier.notify(Notification::HealthCheckFailed {
            failures: checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect(),
        });
    }
    code
}
