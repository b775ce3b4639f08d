//! The executor's Prometheus metrics, on the same recorder as cas-server's
//! ([`cas_server::metrics::Metrics`]): written to `--metrics FILE.prom` at the end of a run (the
//! node-exporter textfile layout) and scraped from `reprovm serve` at `/metrics`.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `reprovm_tasks_total` | counter | `status` = ran, cached, failed, skipped, not_run |
//! | `reprovm_task_duration_seconds` | histogram | (commands that ran) |
//! | `reprovm_cache_hits_total`, `reprovm_cache_misses_total` | counter | `kind="action"` |
//! | `reprovm_runs_total` | counter | `result` = success, failure |
//! | `reprovm_run_duration_seconds` | histogram | |
//! | `reprovm_run_cache_hit_ratio` | gauge | (last run) |
//! | `reprovm_runs_in_progress` | gauge | |
//! | `reprovm_backpressure_waits_total` | counter | |
//! | `reprovm_audit_dropped_total` | counter | |
//! | `reprovm_webhook_deliveries_total` | counter | `result` = delivered, failed, dropped |
//! | `reprovm_process_resident_memory_bytes` | gauge | |

use std::time::Duration;

use cas_server::metrics::Metrics;
use metrics::{counter, gauge, histogram};

use crate::messages::RunReport;
use crate::runner::{RunObserver, TaskEvent};

/// Installs the recorder and registers every executor metric at zero, so that dashboards and
/// alerts see each name from the first scrape.
pub fn install() -> Metrics {
    let m = Metrics::install();
    for s in ["ran", "cached", "failed", "skipped", "not_run"] {
        counter!("reprovm_tasks_total", "status" => s).absolute(0);
    }
    counter!("reprovm_cache_hits_total", "kind" => "action").absolute(0);
    counter!("reprovm_cache_misses_total", "kind" => "action").absolute(0);
    for r in ["success", "failure"] {
        counter!("reprovm_runs_total", "result" => r).absolute(0);
    }
    for r in ["delivered", "failed", "dropped"] {
        counter!("reprovm_webhook_deliveries_total", "result" => r).absolute(0);
    }
    counter!("reprovm_backpressure_waits_total").absolute(0);
    counter!("reprovm_audit_dropped_total").absolute(0);
    gauge!("reprovm_runs_in_progress").set(0.0);
    gauge!("reprovm_run_cache_hit_ratio").set(0.0);
    let _ = histogram!("reprovm_task_duration_seconds");
    let _ = histogram!("reprovm_run_duration_seconds");
    refresh_process();
    m
}

/// Process gauges, refreshed before a render.
pub fn refresh_process() {
    if let Some(rss) = resident_bytes() {
        gauge!("reprovm_process_resident_memory_bytes").set(rss as f64);
    }
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// Records the end of a run.
pub fn run_finished(report: &RunReport, backpressure_waits: usize, audit_dropped: u64, webhooks: [u64; 3]) {
    let ok = report.failed + report.skipped + report.not_run == 0;
    counter!("reprovm_runs_total", "result" => if ok { "success" } else { "failure" }).increment(1);
    histogram!("reprovm_run_duration_seconds").record(Duration::from_millis(report.wall_ms).as_secs_f64());
    counter!("reprovm_tasks_total", "status" => "skipped").increment(report.skipped as u64);
    counter!("reprovm_tasks_total", "status" => "not_run").increment(report.not_run as u64);
    gauge!("reprovm_run_cache_hit_ratio").set(crate::notify::hit_rate(report));
    counter!("reprovm_backpressure_waits_total").increment(backpressure_waits as u64);
    counter!("reprovm_audit_dropped_total").absolute(audit_dropped);
    for (r, n) in ["delivered", "failed", "dropped"].into_iter().zip(webhooks) {
        counter!("reprovm_webhook_deliveries_total", "result" => r).absolute(n);
    }
    refresh_process();
}

/// Counts task outcomes as they happen.
pub struct MetricsObserver;

impl RunObserver for MetricsObserver {
    fn on_task(&self, event: &TaskEvent<'_>) {
        match event {
            TaskEvent::CacheHit { .. } => {
                counter!("reprovm_cache_hits_total", "kind" => "action").increment(1);
                counter!("reprovm_tasks_total", "status" => "cached").increment(1);
            }
            TaskEvent::CacheMiss { .. } => counter!("reprovm_cache_misses_total", "kind" => "action").increment(1),
            TaskEvent::Completed { result, .. } => {
                counter!("reprovm_tasks_total", "status" => "ran").increment(1);
                histogram!("reprovm_task_duration_seconds").record(result.duration_ms as f64 / 1000.0);
            }
            TaskEvent::Failed { .. } => counter!("reprovm_tasks_total", "status" => "failed").increment(1),
            TaskEvent::Started { .. } | TaskEvent::Corrupt { .. } => {}
        }
    }
}

/// Writes the Prometheus text exposition to `path` (atomically: temp file, then rename).
pub fn write_prom(m: &Metrics, path: &std::path::Path) -> std::io::Result<()> {
    refresh_process();
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, m.render())?;
    std::fs::rename(&tmp, path)
}
