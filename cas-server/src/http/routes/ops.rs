//! Operations endpoints: liveness, readiness, metrics, statistics, config.

use std::sync::atomic::Ordering;

use http::{header, Response, StatusCode};
use serde_json::json;

use super::HandlerResult;
use crate::http::body;
use crate::http::server::AppState;
use crate::metrics::Metrics;

fn json_response(status: StatusCode, value: &serde_json::Value) -> HandlerResult {
    Ok(Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::json(value))
        .expect("valid"))
}

/// `GET /health`: the process answers.
pub async fn health(_state: &AppState) -> HandlerResult {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /ready`: the store is open and the disk has room; 503 otherwise.
pub async fn ready(state: &AppState) -> HandlerResult {
    let local = state.local.clone();
    let free = tokio::task::spawn_blocking(move || local.free_space())
        .await
        .ok()
        .and_then(|r| r.ok());
    let min_free = state.config.min_free_space.0;
    let disk_ok = free.is_some_and(|f| f >= min_free);
    let store_ok = state.local.meta(&reprovm_sdk::Digest::empty_blake3()).is_ok();
    let remote = remote_json(state).await;
    let remote_ok = remote["reachable"].as_bool().unwrap_or(true);
    let ready = disk_ok && store_ok && remote_ok;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({
            "ready": ready,
            "store": {"open": store_ok, "path": state.local.path()},
            "disk": {"free_bytes": free, "min_free_bytes": min_free, "ok": disk_ok},
            "remote": remote,
        }),
    )
}

/// Remote tier health: configured, reachable, backlog, counters.
async fn remote_json(state: &AppState) -> serde_json::Value {
    let backlog = state.local.sync_backlog(); // a counter in memory, not a walk of the queue
    metrics::gauge!("reprovm_sync_backlog").set(backlog as f64);
    match &state.tier {
        None => json!({"configured": false, "sync_backlog": backlog}),
        Some(t) => json!({
            "configured": true,
            "url": state.config.remote.as_ref().map(|r| r.url.clone()),
            "mode": t.mode(),
            "reachable": t.status.reachable(),
            "last_error": t.status.last_error(),
            "sync_backlog": backlog,
            "uploads": t.status.uploads.load(Ordering::Relaxed),
            "upload_failures": t.status.failures.load(Ordering::Relaxed),
            "downloads": t.status.downloads.load(Ordering::Relaxed),
        }),
    }
}

fn refresh_gauges(state: &AppState) {
    // For the "disk near limit" alert (deploy/prometheus/alerts.yml).
    if let Ok(free) = state.local.free_space() {
        metrics::gauge!("reprovm_disk_free_bytes").set(free as f64);
    }
    metrics::gauge!("reprovm_store_max_bytes").set(state.config.max_size.map_or(0.0, |s| s.0 as f64));
    metrics::counter!("reprovm_audit_dropped_total").absolute(state.audit.dropped());
    let c = state.local.counters();
    Metrics::store_gauges(
        c.blobs.load(Ordering::Relaxed),
        c.logical_bytes.load(Ordering::Relaxed),
        state.local.disk_bytes(),
    );
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(state: &AppState) -> HandlerResult {
    refresh_gauges(state);
    remote_json(state).await;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
        .body(body::full(state.metrics.render()))
        .expect("valid"))
}

/// `GET /metrics/json`.
pub async fn metrics_json(state: &AppState) -> HandlerResult {
    refresh_gauges(state);
    json_response(StatusCode::OK, &state.metrics.render_json())
}

/// `GET /v1/stats`.
pub async fn stats(state: &AppState) -> HandlerResult {
    let c = state.local.counters();
    let m = state.metrics.render_json();
    let sum = |prefix: &str| -> f64 {
        m.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .filter_map(|(_, v)| v.as_f64())
                    .sum()
            })
            .unwrap_or(0.0)
    };
    let (hits, misses) = (sum("reprovm_cache_hits_total"), sum("reprovm_cache_misses_total"));
    let hit_rate = if hits + misses > 0.0 {
        hits / (hits + misses)
    } else {
        0.0
    };
    json_response(
        StatusCode::OK,
        &json!({
            "blobs": c.blobs.load(Ordering::Relaxed),
            "logical_bytes": c.logical_bytes.load(Ordering::Relaxed),
            "disk_bytes": state.local.disk_bytes(),
            "hits": hits as u64,
            "misses": misses as u64,
            "hit_rate": hit_rate,
            "evictions": sum("reprovm_evictions_total") as u64,
            "kv": state.kv.metrics().snapshot(),
            "remote": remote_json(state).await,
            "uptime_seconds": state.started.elapsed().as_secs(),
        }),
    )
}

/// `GET /v1/config`: the effective configuration, secrets redacted.
pub async fn config(state: &AppState) -> HandlerResult {
    json_response(StatusCode::OK, &state.config.redacted())
}
