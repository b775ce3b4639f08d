//! `TieredStore`: the local RocksDB tier in front of a remote `Cas` (object
//! storage shared by several servers).
//!
//! - **Writes** commit locally; the commit itself queues the blob for the
//!   remote ([`super::sync_queue`]). In `write-behind` mode the PUT is
//!   acknowledged then, and the uploader copies it later, retrying with
//!   backoff and jitter for as long as it takes. In `write-through` mode the
//!   PUT is acknowledged only once the remote has it too. `read-only` never
//!   writes to the remote.
//! - **Reads** that miss locally are fetched from the remote once
//!   (single-flight: concurrent readers of the same digest wait for the one
//!   fetch, so none sees 404 for a blob the remote has), verified while they
//!   stream into the local store, then served locally. A remote object whose
//!   bytes do not match its name is reported and not served.
//! - **Refs** live in the remote (the one place several servers agree on),
//!   except in `read-only` mode.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use metrics::{counter, histogram};
use reprovm_sdk::cas::{Blob, BlobInfo, ByteStream, Cas, PutOutcome, RefCondition, RefValue};
use reprovm_sdk::digest::Digest;
use reprovm_sdk::error::{CasError, Result};
use reprovm_sdk::proto::ByteRange;
use reprovm_sdk::RetryPolicy;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::rocks::RocksStore;
use super::sync_queue::SyncItem;

/// How the remote tier is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteMode {
    /// Acknowledge after the local commit; copy in the background.
    #[default]
    WriteBehind,
    /// Acknowledge after both tiers have the blob.
    WriteThrough,
    /// Read from the remote, never write to it.
    ReadOnly,
}

/// What the uploader and reads know about the remote's health.
#[derive(Debug, Default)]
pub struct RemoteStatus {
    reachable: AtomicBool,
    /// Uploads completed.
    pub uploads: AtomicU64,
    /// Upload attempts that failed.
    pub failures: AtomicU64,
    /// Blobs fetched by read-through.
    pub downloads: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl RemoteStatus {
    /// Whether the last exchange with the remote succeeded.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// The last error talking to the remote, if the last exchange failed.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, result: &Result<()>) {
        let ok = result.is_ok();
        self.reachable.store(ok, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = result.as_ref().err().map(|e| e.to_string());
    }
}

/// A local tier in front of a remote one.
pub struct TieredStore {
    local: RocksStore,
    remote: Arc<dyn Cas>,
    mode: RemoteMode,
    /// One entry per digest being fetched from the remote; later readers wait on its lock.
    fetches: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// Wakes the uploader when something was queued.
    wake: Notify,
    /// Remote health, for `/ready` and `/v1/stats`.
    pub status: RemoteStatus,
    /// After a remote error, reads skip the remote until then (so that an outage costs one
    /// request the remote's retries, not every request).
    skip_remote_until: Mutex<Option<Instant>>,
}

/// How long reads skip the remote after it failed one.
const REMOTE_BACKOFF: Duration = Duration::from_secs(5);

fn is_not_found(e: &CasError) -> bool {
    matches!(e, CasError::NotFound { .. })
}

impl TieredStore {
    /// Builds the tiered store. Call [`TieredStore::run_uploader`] to start copying.
    pub fn new(local: RocksStore, remote: Arc<dyn Cas>, mode: RemoteMode) -> Arc<Self> {
        Arc::new(Self {
            local,
            remote,
            mode,
            fetches: Mutex::default(),
            wake: Notify::new(),
            status: RemoteStatus {
                reachable: AtomicBool::new(true),
                ..RemoteStatus::default()
            },
            skip_remote_until: Mutex::new(None),
        })
    }

    /// The local tier.
    pub fn local(&self) -> &RocksStore {
        &self.local
    }

    /// The remote tier.
    pub fn remote(&self) -> &Arc<dyn Cas> {
        &self.remote
    }

    /// The write mode.
    pub fn mode(&self) -> RemoteMode {
        self.mode
    }

    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(RocksStore) -> Result<T> + Send + 'static) -> Result<T> {
        let local = self.local.clone();
        tokio::task::spawn_blocking(move || f(local))
            .await
            .map_err(|e| CasError::Backend(format!("task failed: {e}")))?
    }

    /// Copies one queued item to the remote and removes it from the queue.
    pub async fn push_item(&self, item: SyncItem) -> Result<()> {
        let start = Instant::now();
        let result = async {
            // Whether the remote holds the item now; only then is it remembered as there.
            let remote_has = match item {
                SyncItem::Blob(d) => {
                    if self.remote.stat(&d).await?.is_some() {
                        true
                    } else {
                        match self.local.get(&d, None).await {
                            Ok(blob) => {
                                self.remote.put(&d, Some(blob.size), blob.body).await?;
                                true
                            }
                            Err(e) if is_not_found(&e) => false, // deleted locally since: nothing to copy
                            Err(e) => return Err(e),
                        }
                    }
                }
                SyncItem::Action(k) => match self.local.ac_get(&k).await? {
                    Some(v) => {
                        self.remote.ac_put(&k, v).await?;
                        true
                    }
                    None => false,
                },
            };
            self.blocking(move |l| l.sync_done(&item, remote_has)).await
        }
        .await;
        histogram!("reprovm_remote_upload_duration_seconds").record(start.elapsed().as_secs_f64());
        match &result {
            Ok(()) => {
                self.status.uploads.fetch_add(1, Ordering::Relaxed);
                counter!("reprovm_remote_uploads_total").increment(1);
            }
            Err(e) => {
                self.status.failures.fetch_add(1, Ordering::Relaxed);
                counter!("reprovm_remote_upload_failures_total").increment(1);
                tracing::warn!(?item, error = %e, "copy to the remote tier failed; will retry");
            }
        }
        result
    }

    /// Drains the queue until it is empty or a round fails; returns (copied, failed).
    pub async fn push_round(&self, parallel: usize) -> Result<(usize, usize)> {
        let items = self
            .blocking(move |l| l.sync_pending(parallel.max(1) * 8, &HashSet::new()))
            .await?;
        let results: Vec<Result<()>> = futures::stream::iter(items)
            .map(|it| self.push_item(it))
            .buffer_unordered(parallel.max(1))
            .collect()
            .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        let first_err = results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()));
        self.status.record(&first_err);
        Ok((self.status.uploads.load(Ordering::Relaxed) as usize, failed))
    }

    /// The background uploader: copies queued items with `parallel` uploads
    /// at a time; after a failing round waits with exponential backoff and
    /// jitter (capped by `retry.max_backoff`) and tries again, forever.
    pub async fn run_uploader(self: Arc<Self>, parallel: usize, retry: RetryPolicy) {
        if self.mode == RemoteMode::ReadOnly {
            return;
        }
        let mut streak = 0u32;
        loop {
            let before = self.status.uploads.load(Ordering::Relaxed);
            match self.push_round(parallel).await {
                Ok((_, 0)) if self.status.uploads.load(Ordering::Relaxed) == before => {
                    // Nothing was queued: sleep until woken (or a while, to catch entries of `sync push`).
                    streak = 0;
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    }
                }
                Ok((_, 0)) => streak = 0,
                Ok(_) | Err(_) => {
                    streak = streak.saturating_add(1);
                    tokio::time::sleep(retry.backoff(streak + 1)).await;
                }
            }
        }
    }

    /// Fetches a blob the local tier lacks from the remote, once for all concurrent readers.
    async fn fetch(&self, d: &Digest) -> Result<()> {
        let lock = self
            .fetches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(*d)
            .or_default()
            .clone();
        let guard = lock.lock().await;
        let result = self.fetch_locked(d).await;
        drop(guard);
        let mut map = self.fetches.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(d).is_some_and(|l| Arc::strong_count(l) <= 2) {
            map.remove(d);
        }
        result
    }

    async fn fetch_locked(&self, d: &Digest) -> Result<()> {
        if self.local.stat(d).await?.is_some() {
            return Ok(()); // another reader fetched it while we waited
        }
        let start = Instant::now();
        self.remote_usable()?;
        let blob = match self.remote.get(d, None).await {
            Ok(b) => b,
            Err(e) => return Err(self.remote_failed(e)),
        };
        match self.local.put(d, Some(blob.size), blob.body).await {
            Ok(_) => {}
            Err(e @ (CasError::InvalidInput(_) | CasError::DigestMismatch { .. } | CasError::SizeMismatch { .. })) => {
                counter!("reprovm_remote_corrupt_total").increment(1);
                tracing::error!(digest = %d, error = %e, "remote object fails verification; not served");
                return Err(CasError::Corrupt(format!(
                    "remote copy of blob {d} fails verification: {e}"
                )));
            }
            Err(e) => return Err(e),
        }
        let item = SyncItem::Blob(*d);
        self.blocking(move |l| l.sync_done(&item, true)).await?;
        self.status.downloads.fetch_add(1, Ordering::Relaxed);
        counter!("reprovm_remote_downloads_total").increment(1);
        histogram!("reprovm_remote_download_duration_seconds").record(start.elapsed().as_secs_f64());
        Ok(())
    }

    /// `Err(Unavailable)` while reads skip the remote after an error.
    fn remote_usable(&self) -> Result<()> {
        let until = *self.skip_remote_until.lock().unwrap_or_else(|p| p.into_inner());
        match until {
            Some(t) if Instant::now() < t => Err(CasError::Unavailable(format!(
                "the remote tier failed recently ({}); retrying it shortly",
                self.status.last_error().unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }

    /// Notes a failed exchange with the remote (not-found is not a failure); returns the error.
    fn remote_failed(&self, e: CasError) -> CasError {
        if !is_not_found(&e) {
            self.status.record(&Err(CasError::Unavailable(e.to_string())));
            *self.skip_remote_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + REMOTE_BACKOFF);
            counter!("reprovm_remote_read_failures_total").increment(1);
            tracing::warn!(error = %e, "remote tier unavailable; answering from the local tier");
        }
        e
    }

    /// Asks the remote for `call`'s answer; when it is down, `degraded` stands in (an answer the
    /// local tier can give that never claims more than it knows).
    async fn ask_remote<T, F>(&self, call: F, degraded: T) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        if self.remote_usable().is_err() {
            return Ok(degraded);
        }
        match call.await {
            Ok(v) => Ok(v),
            Err(e) if is_not_found(&e) => Err(e),
            Err(e) => {
                self.remote_failed(e);
                Ok(degraded)
            }
        }
    }

    /// Stores a body under the digest of its bytes (see [`RocksStore::put_by_content`]) in the
    /// local tier, then copies it to the remote as [`Cas::put`] does.
    pub async fn put_by_content(
        &self,
        kind: reprovm_sdk::digest::HashKind,
        size: Option<u64>,
        body: ByteStream,
    ) -> Result<(Digest, PutOutcome)> {
        let (digest, outcome) = self.local.put_by_content(kind, size, body).await?;
        self.stored_locally(&digest).await?;
        Ok((digest, outcome))
    }

    /// After a local commit (which queued the blob): wakes the uploader, or in write-through
    /// mode copies the blob now.
    async fn stored_locally(&self, digest: &Digest) -> Result<()> {
        match self.mode {
            RemoteMode::ReadOnly => {}
            RemoteMode::WriteBehind => self.wake.notify_one(),
            RemoteMode::WriteThrough => {
                let item = SyncItem::Blob(*digest);
                if self.blocking(move |l| l.sync_is_pending(&item)).await? {
                    self.push_item(item).await.map_err(|e| {
                        CasError::Unavailable(format!("stored locally but not in the remote tier yet: {e}"))
                    })?;
                }
            }
        }
        Ok(())
    }

    fn refs(&self) -> &dyn Cas {
        if self.mode == RemoteMode::ReadOnly {
            &self.local
        } else {
            self.remote.as_ref()
        }
    }
}

#[async_trait::async_trait]
impl Cas for TieredStore {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>> {
        let local_missing = self.local.find_missing(digests).await?;
        if local_missing.is_empty() {
            return Ok(local_missing);
        }
        if self.remote_usable().is_err() {
            // Remote down: not even what it is known to hold can be fetched now.
            return Ok(local_missing);
        }
        let lm = local_missing.clone();
        let known = self.blocking(move |l| l.remote_known(&lm)).await?;
        let ask: Vec<Digest> = local_missing
            .iter()
            .zip(known)
            .filter(|(_, k)| !k)
            .map(|(d, _)| *d)
            .collect();
        if ask.is_empty() {
            return Ok(ask);
        }
        // Remote down: what it might hold is unknown, so it is reported missing (a client then
        // uploads, which the local tier accepts), never present.
        self.ask_remote(self.remote.find_missing(&ask), ask.clone()).await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>> {
        match self.local.stat(digest).await? {
            Some(info) => Ok(Some(info)),
            None => self.ask_remote(self.remote.stat(digest), None).await,
        }
    }

    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Blob> {
        match self.local.get(digest, range).await {
            Err(e) if is_not_found(&e) => {}
            other => return other,
        }
        self.fetch(digest).await?;
        self.local.get(digest, range).await
    }

    async fn put(&self, digest: &Digest, size: Option<u64>, body: ByteStream) -> Result<PutOutcome> {
        let outcome = self.local.put(digest, size, body).await?;
        self.stored_locally(digest).await?;
        Ok(outcome)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let local = self.local.delete(digest).await?;
        if self.mode == RemoteMode::ReadOnly {
            return Ok(local);
        }
        let remote = self.remote.delete(digest).await?;
        // The remote no longer has it: `find_missing` must not trust the old record.
        let d = *digest;
        self.blocking(move |l| l.forget_remote(&d)).await?;
        Ok(local || remote)
    }

    async fn ac_get(&self, key: &Digest) -> Result<Option<Bytes>> {
        if let Some(v) = self.local.ac_get(key).await? {
            return Ok(Some(v));
        }
        // Remote down: a cache miss, as for any entry the local tier lacks.
        let Some(v) = self.ask_remote(self.remote.ac_get(key), None).await? else {
            return Ok(None);
        };
        let (k, v2) = (*key, v.clone());
        self.blocking(move |l| {
            l.ac_put_sync(&k, &v2)?;
            l.sync_done(&SyncItem::Action(k), true)
        })
        .await?;
        Ok(Some(v))
    }

    async fn ac_put(&self, key: &Digest, value: Bytes) -> Result<()> {
        self.local.ac_put(key, value).await?;
        match self.mode {
            RemoteMode::ReadOnly => {}
            RemoteMode::WriteBehind => self.wake.notify_one(),
            RemoteMode::WriteThrough => self.push_item(SyncItem::Action(*key)).await?,
        }
        Ok(())
    }

    async fn ref_get(&self, name: &str) -> Result<Option<RefValue>> {
        self.refs().ref_get(name).await
    }

    async fn ref_put(&self, name: &str, value: Bytes, cond: RefCondition) -> Result<String> {
        self.refs().ref_put(name, value, cond).await
    }

    async fn ref_delete(&self, name: &str, cond: RefCondition) -> Result<bool> {
        self.refs().ref_delete(name, cond).await
    }

    async fn ref_list(&self, prefix: &str) -> Result<Vec<String>> {
        self.refs().ref_list(prefix).await
    }
}
