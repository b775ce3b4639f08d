//! The key-value layer: named values in namespaces, for build tools that bring their own keys
//! (ccache, sccache, Gradle, Turborepo, Nx). Served at `/kv/{namespace}/{key}` (see
//! `crate::http::routes::kv`) and used by the protocol routes built on it.
//!
//! - A value is an ordinary CAS blob, named by the BLAKE3 digest of its bytes: dedup, at-rest
//!   compression, LRU eviction, the remote tier and backups apply to it as to any blob.
//! - A key's record ([`KvEntry`]: digest, size, time, a small [`Metadata`] map) lives in the
//!   store's `kv` column family under `{namespace}/{key}`.
//! - A write streams the value into the store first (never whole in memory), then writes the
//!   record in one RocksDB write: a reader sees the old value or the new one, never a mix.
//! - A record whose blob is gone (evicted, quarantined as corrupt) reads as a miss, and without
//!   a remote tier the read removes that record. A blob no record names any more stays until
//!   eviction takes it (other keys, or other protocols, may name the same bytes).
//!
//! Files: [`key`] (names), [`entry`] (records and metadata), [`metrics`] (per-namespace counts).

pub mod entry;
pub mod key;
pub mod metrics;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::TryStreamExt;
use reprovm_sdk::cas::{ByteStream, Cas};
use reprovm_sdk::digest::HashKind;
use reprovm_sdk::error::CasError;

use crate::store::rocks::{KvCondition, KvItem, KvWrite, RocksStore};
use crate::store::tiered::TieredStore;
pub use entry::{KvEntry, Metadata};
pub use key::{DirPath, KeyPath, KvKey, Namespace};
pub use metrics::{KvMetrics, NamespaceCounters, NamespaceStats};

/// Why a key-value call failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A namespace, key or prefix breaks the naming rules (HTTP 400 `invalid_key`).
    #[error("{0}")]
    InvalidKey(String),
    /// A metadata attribute breaks the rules or the bounds (HTTP 400 `invalid_metadata`).
    #[error("{0}")]
    InvalidMetadata(String),
    /// A write that asked for an absent key found a value there (HTTP 409 `exists`).
    #[error("{0} already holds a value")]
    Exists(String),
    /// The store failed, or refused the value (too large: 413; no room: 507; ...).
    #[error(transparent)]
    Store(#[from] CasError),
}

/// When a write goes ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutCondition {
    /// Always: the new value replaces the old.
    Always,
    /// Only when the key holds no readable value ([`KvError::Exists`] otherwise); checked before
    /// the body is read and again, atomically, when the record is written.
    IfAbsent,
}

/// A value found for reading.
pub struct KvValue {
    /// Its record.
    pub entry: KvEntry,
    /// Its bytes (exactly `entry.size` of them, verified against the digest as they stream).
    pub body: ByteStream,
}

/// A value written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The new record.
    pub entry: KvEntry,
    /// Whether the key held a record before (HTTP answers 204 rather than 201).
    pub replaced: bool,
}

/// One item of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listed {
    /// A key (its path within the namespace) and its record.
    Entry {
        /// The key's path.
        path: String,
        /// Its record.
        entry: KvEntry,
    },
    /// A "directory": the common part of keys that continue past the next `/` (ends with `/`).
    Dir(String),
}

/// A page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Items in key order.
    pub items: Vec<Listed>,
    /// Whether more items follow (ask again with `after` = the last item's path).
    pub truncated: bool,
}

/// Most items one listing call returns.
pub const MAX_LIST: usize = 10_000;

/// The key-value layer over a store stack. Cheap to share (`Arc` it).
pub struct KvStore {
    /// Where the records live (and, without a remote tier, the values).
    local: RocksStore,
    /// The tiered store, when values also go to a remote tier.
    tier: Option<Arc<TieredStore>>,
    /// What values are read from (the tiered stack, or the local store).
    values: Arc<dyn Cas>,
    metrics: KvMetrics,
}

impl KvStore {
    /// The layer over `local` (records) and `values` (the stack blobs are read from; `tier` when
    /// it is a tiered store, so that writes reach the remote as other uploads do).
    pub fn new(local: RocksStore, tier: Option<Arc<TieredStore>>, values: Arc<dyn Cas>) -> Self {
        Self {
            local,
            tier,
            values,
            metrics: KvMetrics::default(),
        }
    }

    /// The layer over an opened store stack.
    pub fn over(stores: &crate::store::Stores) -> Self {
        Self::new(stores.local.clone(), stores.tier.clone(), stores.serving.clone())
    }

    /// Largest value accepted (the store's `max_blob_size`).
    pub fn max_value_size(&self) -> u64 {
        self.local.options().max_blob_size
    }

    /// Per-namespace counts.
    pub fn metrics(&self) -> &KvMetrics {
        &self.metrics
    }

    /// The counters of one namespace (for protocol routes that count more than reads and writes).
    pub fn counters(&self, ns: &Namespace) -> Arc<NamespaceCounters> {
        self.metrics.namespace(ns.as_str())
    }

    /// The record of `key` and its raw bytes; an undecodable record reads as absent (and is
    /// reported), so a write replaces it.
    fn record(&self, key: &KvKey) -> Result<Option<(Vec<u8>, KvEntry)>, KvError> {
        let Some(raw) = self.local.kv_get_sync(&key.record_key())? else {
            return Ok(None);
        };
        match KvEntry::decode(&raw) {
            Some(e) => Ok(Some((raw, e))),
            None => {
                tracing::error!(%key, "undecodable key-value record; reads as a miss until rewritten");
                Ok(None)
            }
        }
    }

    /// Removes a record that names a blob which is gone, unless it changed meanwhile. Only
    /// without a remote tier: with one, "not here" may mean "the remote is down".
    async fn forget_dangling(&self, key: &KvKey, raw: Vec<u8>) {
        if self.tier.is_some() {
            return;
        }
        let (local, k) = (self.local.clone(), key.record_key());
        let r = tokio::task::spawn_blocking(move || local.kv_delete_sync(&k, &KvCondition::IfEquals(raw))).await;
        if let Ok(Err(e)) = r {
            tracing::warn!(%key, error = %e, "could not remove a record whose value is gone");
        }
    }

    /// Whether the blob a record names is readable (locally, or through the remote tier).
    async fn value_present(&self, entry: &KvEntry) -> Result<bool, KvError> {
        match self.values.stat(&entry.digest).await {
            Ok(Some(info)) => Ok(info.size == entry.size),
            Ok(None) | Err(CasError::Corrupt(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The record of `key` when its value is there (a lookup: counted as a hit or a miss).
    pub async fn head(&self, key: &KvKey) -> Result<Option<KvEntry>, KvError> {
        let counters = self.counters(&key.namespace);
        let found = match self.record(key)? {
            None => None,
            Some((raw, entry)) => {
                if self.value_present(&entry).await? {
                    Some(entry)
                } else {
                    self.forget_dangling(key, raw).await;
                    None
                }
            }
        };
        counters.lookup(found.is_some());
        Ok(found)
    }

    /// The value of `key`, streaming (a lookup: counted as a hit or a miss; bytes sent are
    /// counted as they stream). A value whose blob is gone, or fails verification before its
    /// first byte, is a miss: never a partial or wrong value.
    pub async fn get(&self, key: &KvKey) -> Result<Option<KvValue>, KvError> {
        let counters = self.counters(&key.namespace);
        let Some((raw, entry)) = self.record(key)? else {
            counters.lookup(false);
            return Ok(None);
        };
        let blob = match self.values.get(&entry.digest, None).await {
            Ok(b) if b.size == entry.size => b,
            Ok(b) => {
                tracing::error!(%key, record = entry.size, blob = b.size, "key-value record and blob disagree on the size");
                counters.lookup(false);
                return Ok(None);
            }
            Err(CasError::NotFound { .. }) => {
                self.forget_dangling(key, raw).await;
                counters.lookup(false);
                return Ok(None);
            }
            Err(CasError::Corrupt(e)) => {
                tracing::error!(%key, error = %e, "the value of a key fails verification; answered as a miss");
                counters.lookup(false);
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        counters.lookup(true);
        let c = counters.clone();
        let body: ByteStream = Box::pin(blob.body.inspect_ok(move |b| c.bytes_out(b.len() as u64)));
        Ok(Some(KvValue { entry, body }))
    }

    /// Stores `body` as the value of `key` with `metadata`; `size`, when known, is checked
    /// against the limit before a byte is read and against the body as it streams. Returns the
    /// new record, and whether it replaced one.
    pub async fn put(
        &self,
        key: &KvKey,
        size: Option<u64>,
        metadata: Metadata,
        body: ByteStream,
        cond: PutCondition,
    ) -> Result<Stored, KvError> {
        let limit = self.max_value_size();
        if let Some(n) = size.filter(|n| *n > limit) {
            return Err(CasError::TooLarge { size: n, limit }.into());
        }
        let cond = match cond {
            PutCondition::Always => KvCondition::Always,
            PutCondition::IfAbsent => match self.record(key)? {
                None => KvCondition::IfAbsent,
                Some((_, e)) if self.value_present(&e).await? => return Err(KvError::Exists(key.to_string())),
                // A record whose value is gone counts as absent: replace exactly that record.
                Some((raw, _)) => KvCondition::IfEquals(raw),
            },
        };
        let counters = self.counters(&key.namespace);
        let received = Arc::new(AtomicU64::new(0));
        let (c, r) = (counters.clone(), received.clone());
        let body: ByteStream = Box::pin(body.inspect_ok(move |b| {
            c.bytes_in(b.len() as u64);
            r.fetch_add(b.len() as u64, Ordering::Relaxed);
        }));
        let (digest, _) = match &self.tier {
            Some(t) => t.put_by_content(HashKind::Blake3, size, body).await?,
            None => self.local.put_by_content(HashKind::Blake3, size, body).await?,
        };
        let entry = KvEntry {
            digest,
            size: received.load(Ordering::Relaxed),
            stored_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            metadata,
        };
        let (local, k, v) = (self.local.clone(), key.record_key(), entry.encode());
        let written = tokio::task::spawn_blocking(move || local.kv_put_sync(&k, &v, &cond))
            .await
            .map_err(|e| CasError::Backend(format!("store task failed: {e}")))??;
        if written == KvWrite::Refused {
            return Err(KvError::Exists(key.to_string()));
        }
        counters.put();
        Ok(Stored {
            entry,
            replaced: written == KvWrite::Replaced,
        })
    }

    /// Removes `key`; returns whether it held a record. The value's blob stays (other keys may
    /// name the same bytes) until eviction takes it.
    pub async fn delete(&self, key: &KvKey) -> Result<bool, KvError> {
        let (local, k) = (self.local.clone(), key.record_key());
        Ok(
            tokio::task::spawn_blocking(move || local.kv_delete_sync(&k, &KvCondition::Always))
                .await
                .map_err(|e| CasError::Backend(format!("store task failed: {e}")))??,
        )
    }

    /// Removes every record whose blob is gone from the local store (without a remote tier
    /// only); returns how many went. Walks the records in pages of 1,000; a record rewritten
    /// meanwhile is left alone.
    pub fn sweep_dangling_sync(&self) -> Result<u64, CasError> {
        if self.tier.is_some() {
            return Ok(0);
        }
        let (mut after, mut removed) = (None::<Vec<u8>>, 0u64);
        loop {
            let (items, more) = self.local.kv_list_sync(b"", after.as_deref(), None, 1000)?;
            for item in &items {
                let KvItem::Entry(k, v) = item else { continue };
                let gone = KvEntry::decode(v).is_some_and(|e| matches!(self.local.meta(&e.digest), Ok(None)));
                if gone && self.local.kv_delete_sync(k, &KvCondition::IfEquals(v.clone()))? {
                    removed += 1;
                }
            }
            match items.last() {
                Some(KvItem::Entry(k, _)) if more => after = Some(k.clone()),
                _ => return Ok(removed),
            }
        }
    }

    /// Every `every`, when blobs were deleted since the last sweep (eviction, `DELETE`), removes
    /// the records left without their blob, so that they do not pile up unread. Not with a
    /// remote tier (reads fetch such blobs back from it). Needs a tokio runtime.
    pub fn spawn_sweeper(self: &Arc<Self>, every: std::time::Duration) {
        if self.tier.is_some() {
            return;
        }
        let kv = self.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            loop {
                tokio::time::sleep(every).await;
                let deletions = kv.local.counters().deletions.load(Ordering::Relaxed);
                if deletions == seen {
                    continue;
                }
                seen = deletions;
                let k = kv.clone();
                match tokio::task::spawn_blocking(move || k.sweep_dangling_sync()).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!(removed = n, "removed key-value records whose blob was evicted"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "sweeping key-value records failed"),
                    Err(e) => tracing::warn!(error = %e, "the key-value sweeper failed"),
                }
            }
        });
    }

    /// Up to `limit` (at most [`MAX_LIST`]) keys of `ns` that start with `prefix`, in key order,
    /// after the key `after`. With `delimited`, keys that continue past a `/` after the prefix
    /// come back as one [`Listed::Dir`] each (a directory listing: pass a [`DirPath`] as the
    /// prefix). Without a remote tier, keys whose value is gone are left out.
    pub async fn list(
        &self,
        ns: &Namespace,
        prefix: &str,
        delimited: bool,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Listing, KvError> {
        if let Some(b) = prefix.bytes().find(|b| *b != b'/' && !key::is_key_byte(*b)) {
            return Err(KvError::InvalidKey(format!(
                "prefix {prefix:?}: byte 0x{b:02x} is not allowed"
            )));
        }
        let start = key::record_prefix(ns, prefix);
        let after = after.map(|a| key::record_prefix(ns, a));
        let skip = key::record_prefix(ns, "").len();
        let (local, check) = (self.local.clone(), self.tier.is_none());
        let limit = limit.clamp(1, MAX_LIST);
        let listing = tokio::task::spawn_blocking(move || -> Result<Listing, CasError> {
            let delimiter = delimited.then_some(b'/');
            let (items, truncated) = local.kv_list_sync(&start, after.as_deref(), delimiter, limit)?;
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    KvItem::Prefix(p) => out.push(Listed::Dir(String::from_utf8_lossy(&p[skip..]).into_owned())),
                    KvItem::Entry(k, v) => {
                        let path = String::from_utf8_lossy(&k[skip..]).into_owned();
                        let Some(entry) = KvEntry::decode(&v) else {
                            tracing::error!(key = %path, "undecodable key-value record left out of a listing");
                            continue;
                        };
                        if check && !matches!(local.meta(&entry.digest), Ok(Some(_))) {
                            continue; // its value is gone: a GET would miss
                        }
                        out.push(Listed::Entry { path, entry });
                    }
                }
            }
            Ok(Listing { items: out, truncated })
        })
        .await
        .map_err(|e| CasError::Backend(format!("store task failed: {e}")))??;
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rocks::StoreOptions;
    use futures::StreamExt;

    fn kv() -> (tempfile::TempDir, KvStore) {
        let dir = tempfile::tempdir().unwrap();
        let local = RocksStore::open(dir.path(), StoreOptions::default()).unwrap();
        let values: Arc<dyn Cas> = Arc::new(local.clone());
        (dir, KvStore::new(local, None, values))
    }

    fn body(v: &'static [u8]) -> ByteStream {
        reprovm_sdk::cas::bytes_stream(bytes::Bytes::from_static(v))
    }

    async fn read(kv: &KvStore, key: &KvKey) -> Option<Vec<u8>> {
        let v = kv.get(key).await.unwrap()?;
        let mut out = Vec::new();
        let mut b = v.body;
        while let Some(c) = b.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        Some(out)
    }

    #[tokio::test]
    async fn conditions_replacement_and_sweeping() {
        let (_d, kv) = kv();
        let a = KvKey::parse("ns", "a").unwrap();
        let b = KvKey::parse("ns", "b").unwrap();
        let s = kv
            .put(&a, Some(2), Metadata::new(), body(b"v1"), PutCondition::IfAbsent)
            .await
            .unwrap();
        assert!(!s.replaced);
        let e = kv
            .put(&a, None, Metadata::new(), body(b"v2"), PutCondition::IfAbsent)
            .await;
        assert!(matches!(e, Err(KvError::Exists(_))));
        assert_eq!(read(&kv, &a).await.as_deref(), Some(&b"v1"[..]));
        let s = kv
            .put(&a, None, Metadata::new(), body(b"v2"), PutCondition::Always)
            .await
            .unwrap();
        assert!(s.replaced);
        assert_eq!(s.entry.size, 2);
        assert_eq!(read(&kv, &a).await.as_deref(), Some(&b"v2"[..]));
        // A declared size that the body does not match stores nothing.
        let e = kv
            .put(&b, Some(5), Metadata::new(), body(b"abc"), PutCondition::Always)
            .await;
        assert!(matches!(e, Err(KvError::Store(CasError::SizeMismatch { .. }))), "{e:?}");
        assert!(kv.head(&b).await.unwrap().is_none());
        kv.put(&b, None, Metadata::new(), body(b"bb"), PutCondition::Always)
            .await
            .unwrap();
        // a's blob goes: the sweep removes a's record (only), and a reads as absent.
        assert!(kv.local.delete_blob(&s.entry.digest).unwrap());
        assert!(kv.local.kv_get_sync(b"ns/a").unwrap().is_some());
        assert_eq!(kv.sweep_dangling_sync().unwrap(), 1);
        assert!(kv.local.kv_get_sync(b"ns/a").unwrap().is_none());
        assert_eq!(read(&kv, &b).await.as_deref(), Some(&b"bb"[..]));
        // A record whose blob is gone counts as absent for IfAbsent.
        let digest_b = kv.head(&b).await.unwrap().unwrap().digest;
        kv.local.delete_blob(&digest_b).unwrap();
        kv.put(&b, None, Metadata::new(), body(b"new"), PutCondition::IfAbsent)
            .await
            .unwrap();
        assert_eq!(read(&kv, &b).await.as_deref(), Some(&b"new"[..]));
        let st = kv.metrics().snapshot();
        assert_eq!(st["ns"].puts, 4);
    }

    #[tokio::test]
    async fn listing_by_directory() {
        let (_d, kv) = kv();
        for k in ["d/x/1", "d/x/2", "d/y", "e"] {
            let key = KvKey::parse("ns", k).unwrap();
            kv.put(&key, None, Metadata::new(), body(b"v"), PutCondition::Always)
                .await
                .unwrap();
        }
        let ns = Namespace::parse("ns").unwrap();
        let l = kv.list(&ns, "", true, None, 100).await.unwrap();
        let names: Vec<String> = l
            .items
            .iter()
            .map(|i| match i {
                Listed::Dir(d) => d.clone(),
                Listed::Entry { path, .. } => path.clone(),
            })
            .collect();
        assert_eq!(names, ["d/", "e"]);
        let l = kv.list(&ns, "d/", true, None, 100).await.unwrap();
        assert!(matches!(&l.items[..], [Listed::Dir(x), Listed::Entry { path, .. }] if x == "d/x/" && path == "d/y"));
        let l = kv.list(&ns, "d/", false, Some("d/x/1"), 1).await.unwrap();
        assert!(matches!(&l.items[..], [Listed::Entry { path, .. }] if path == "d/x/2"));
        assert!(l.truncated);
        assert!(kv.list(&ns, "a b", false, None, 1).await.is_err());
    }
}
