//! Per-namespace counters: hits, misses, writes, bytes in and out. Each namespace gets its own
//! Prometheus label up to [`MAX_NAMESPACE_LABELS`] names; later ones share the label `_other`,
//! so that clients inventing namespaces cannot grow the series without bound.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use metrics::{counter, Counter};
use serde::Serialize;

/// Most namespaces counted under their own name.
pub const MAX_NAMESPACE_LABELS: usize = 64;
/// The label every further namespace is counted under.
pub const OTHER_LABEL: &str = "_other";

/// The counters of one label.
pub struct NamespaceCounters {
    hits: (AtomicU64, Counter),
    misses: (AtomicU64, Counter),
    puts: (AtomicU64, Counter),
    bytes_in: (AtomicU64, Counter),
    bytes_out: (AtomicU64, Counter),
}

fn add(c: &(AtomicU64, Counter), n: u64) {
    c.0.fetch_add(n, Ordering::Relaxed);
    c.1.increment(n);
}

impl NamespaceCounters {
    fn new(label: &str) -> Self {
        let series = |name: &'static str| (AtomicU64::new(0), counter!(name, "namespace" => label.to_string()));
        Self {
            hits: series("reprovm_kv_hits_total"),
            misses: series("reprovm_kv_misses_total"),
            puts: series("reprovm_kv_puts_total"),
            bytes_in: series("reprovm_kv_received_bytes_total"),
            bytes_out: series("reprovm_kv_sent_bytes_total"),
        }
    }

    /// A lookup that found its value (`hit`) or not. Also counted in the server-wide
    /// `reprovm_cache_hits_total` / `reprovm_cache_misses_total` under `kind="kv"`.
    pub fn lookup(&self, hit: bool) {
        add(if hit { &self.hits } else { &self.misses }, 1);
        crate::metrics::Metrics::lookup("kv", hit);
    }

    /// A value written.
    pub fn put(&self) {
        add(&self.puts, 1);
    }

    /// Value bytes received.
    pub fn bytes_in(&self, n: u64) {
        add(&self.bytes_in, n);
    }

    /// Value bytes sent.
    pub fn bytes_out(&self, n: u64) {
        add(&self.bytes_out, n);
    }

    fn snapshot(&self) -> NamespaceStats {
        let get = |c: &(AtomicU64, Counter)| c.0.load(Ordering::Relaxed);
        NamespaceStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            puts: get(&self.puts),
            received_bytes: get(&self.bytes_in),
            sent_bytes: get(&self.bytes_out),
        }
    }
}

/// What `/v1/stats` shows for one namespace (since the server started).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NamespaceStats {
    /// Lookups (GET, HEAD) that found the value.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Values written.
    pub puts: u64,
    /// Value bytes received.
    pub received_bytes: u64,
    /// Value bytes sent.
    pub sent_bytes: u64,
}

/// The counters of every namespace seen.
#[derive(Default)]
pub struct KvMetrics {
    labels: RwLock<HashMap<String, Arc<NamespaceCounters>>>,
}

impl KvMetrics {
    /// The counters `namespace` is counted under.
    pub fn namespace(&self, namespace: &str) -> Arc<NamespaceCounters> {
        if let Some(c) = self.labels.read().unwrap_or_else(|p| p.into_inner()).get(namespace) {
            return c.clone();
        }
        let mut map = self.labels.write().unwrap_or_else(|p| p.into_inner());
        let own = map.len() < MAX_NAMESPACE_LABELS || map.contains_key(namespace);
        let label = if own { namespace } else { OTHER_LABEL };
        if let Some(c) = map.get(label) {
            return c.clone();
        }
        let c = Arc::new(NamespaceCounters::new(label));
        map.insert(label.to_string(), c.clone());
        c
    }

    /// Every label's counts.
    pub fn snapshot(&self) -> BTreeMap<String, NamespaceStats> {
        let map = self.labels.read().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, c)| (k.clone(), c.snapshot())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded() {
        let m = KvMetrics::default();
        for i in 0..MAX_NAMESPACE_LABELS + 10 {
            m.namespace(&format!("ns{i}")).lookup(true);
        }
        let snap = m.snapshot();
        // The first MAX_NAMESPACE_LABELS namespaces have their own label; the rest share one.
        assert_eq!(snap.len(), MAX_NAMESPACE_LABELS + 1);
        assert_eq!(snap[OTHER_LABEL].hits, 10);
        assert_eq!(snap["ns0"].hits, 1);
        m.namespace("ns0").bytes_out(5);
        assert_eq!(m.snapshot()["ns0"].sent_bytes, 5);
    }
}
