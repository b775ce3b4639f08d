//! Prometheus metrics. All names carry the `reprovm_` prefix; counters end in
//! `_total`, sizes in `_bytes`, latencies are `_seconds` histograms.
//!
//! The `metrics` crate has one global recorder per process; [`Metrics::install`]
//! sets it once and every later call shares the same handle.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Handle to the process's metrics.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    /// The per-request series by (route, method, status), looked up once each: building a
    /// labelled key (two label strings, a hash, a registry lookup) on every request cost more
    /// than the increment.
    requests: Arc<RwLock<HashMap<RequestKey, (Counter, Histogram)>>>,
}

type RequestKey = (&'static str, &'static str, u16);

/// A method's name as a static string (the label of an unusual method is `other`).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Registers every series the server exports at zero, so dashboards and alert rules see each
/// name from the first scrape (deploy/ checks its names against a live `/metrics`).
fn register_all() {
    for kind in ["cas", "ac", "kv"] {
        counter!("reprovm_cache_hits_total", "kind" => kind).increment(0);
        counter!("reprovm_cache_misses_total", "kind" => kind).increment(0);
    }
    for name in [
        "reprovm_http_received_bytes_total",
        "reprovm_http_sent_bytes_total",
        "reprovm_remote_uploads_total",
        "reprovm_remote_upload_failures_total",
        "reprovm_remote_downloads_total",
        "reprovm_remote_corrupt_total",
        "reprovm_remote_read_failures_total",
        "reprovm_evictions_total",
        "reprovm_evicted_bytes_total",
    ] {
        counter!(name).increment(0);
    }
    for name in [
        "reprovm_store_blobs",
        "reprovm_store_logical_bytes",
        "reprovm_store_disk_bytes",
        "reprovm_sync_backlog",
    ] {
        gauge!(name).increment(0.0);
    }
    // Per-namespace key-value series (see `crate::kv::metrics`); `_other` is the label namespaces
    // past the first 64 share, so it names a real series from the first scrape on.
    for name in [
        "reprovm_kv_hits_total",
        "reprovm_kv_misses_total",
        "reprovm_kv_puts_total",
        "reprovm_kv_received_bytes_total",
        "reprovm_kv_sent_bytes_total",
    ] {
        counter!(name, "namespace" => crate::kv::metrics::OTHER_LABEL).increment(0);
    }
    counter!("reprovm_http_requests_total", "route" => "health", "method" => "GET", "status" => "200").increment(0);
    let _ = histogram!("reprovm_http_request_duration_seconds", "route" => "health");
    for name in [
        "reprovm_remote_upload_duration_seconds",
        "reprovm_remote_download_duration_seconds",
    ] {
        let _ = histogram!(name);
    }
}

impl Metrics {
    /// Installs the Prometheus recorder (once per process) and returns its handle.
    pub fn install() -> Self {
        let handle = HANDLE
            .get_or_init(|| {
                let recorder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                    .expect("non-empty buckets")
                    .build_recorder();
                let handle = recorder.handle();
                // Fails only if another recorder was set first; we then still render ours (empty).
                let _ = metrics::set_global_recorder(recorder);
                handle
            })
            .clone();
        register_all();
        Self {
            handle,
            requests: Arc::default(),
        }
    }

    /// Records one answered request.
    pub fn request(&self, route: &'static str, method: &str, status: u16, elapsed: Duration) {
        let key = (route, method_label(method), status);
        let cached = self
            .requests
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let (count, latency) = cached.unwrap_or_else(|| {
            let series = (
                counter!("reprovm_http_requests_total", "route" => route, "method" => key.1, "status" => status.to_string()),
                histogram!("reprovm_http_request_duration_seconds", "route" => route),
            );
            let mut map = self.requests.write().unwrap_or_else(|p| p.into_inner());
            map.entry(key).or_insert(series).clone()
        });
        count.increment(1);
        latency.record(elapsed.as_secs_f64());
    }

    /// Request body bytes received.
    pub fn bytes_in(n: u64) {
        counter!("reprovm_http_received_bytes_total").increment(n);
    }

    /// Response body bytes sent.
    pub fn bytes_out(n: u64) {
        counter!("reprovm_http_sent_bytes_total").increment(n);
    }

    /// A lookup that found (`hit`) or did not find what it asked for.
    pub fn lookup(kind: &'static str, hit: bool) {
        if hit {
            counter!("reprovm_cache_hits_total", "kind" => kind).increment(1);
        } else {
            counter!("reprovm_cache_misses_total", "kind" => kind).increment(1);
        }
    }

    /// Store size gauges, refreshed before each render.
    pub fn store_gauges(blobs: u64, logical_bytes: u64, disk_bytes: u64) {
        gauge!("reprovm_store_blobs").set(blobs as f64);
        gauge!("reprovm_store_logical_bytes").set(logical_bytes as f64);
        gauge!("reprovm_store_disk_bytes").set(disk_bytes as f64);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// The same samples as JSON: `{"name{labels}": value}`.
    pub fn render_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for line in self.render().lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some((key, value)) = line.rsplit_once(' ') {
                if let Ok(v) = value.parse::<f64>() {
                    map.insert(key.to_string(), serde_json::json!(v));
                }
            }
        }
        serde_json::Value::Object(map)
    }
}
