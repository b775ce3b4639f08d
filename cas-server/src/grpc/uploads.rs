//! ByteStream writes in progress, by resource name, so that an interrupted `Write` resumes.
//!
//! Each upload is one store `put` running in its own task, fed through a small channel: the
//! store hashes and writes the bytes as they arrive, so memory stays flat whatever the size. The
//! `Write` calls of a client only feed that channel. When a call ends before `finish_write`
//! (the connection broke, or the client half-closed), the put waits, and a later `Write` of the
//! same resource name continues at `committed_size` (which `QueryWriteStatus` reports). An upload
//! that receives nothing for `body_idle_timeout_secs` fails like a stalled HTTP body: nothing is
//! stored and its entry goes. Uploads live in memory: after a restart `QueryWriteStatus` says
//! `NOT_FOUND` and the client starts over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use reprovm_sdk::cas::{ByteStream, PutOutcome};
use reprovm_sdk::codec::decode_stream;
use reprovm_sdk::proto::Encoding;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tonic::{Code, Status};

use super::resource::{BlobResource, Compressor};
use super::status::{from_cas, with_code};
use crate::http::server::AppState;

/// Holds one of the limited upload slots (`max_inflight_uploads`) for as long as an upload lives.
pub fn upload_slot(state: &AppState) -> Result<OwnedSemaphorePermit, Status> {
    state.limits.upload_slot().ok_or_else(|| {
        with_code(
            Code::Unavailable,
            "too_many_uploads",
            "too many uploads in flight; retry shortly",
        )
    })
}

/// The outcome of an upload's put, once it ended.
pub type Outcome = Result<PutOutcome, Status>;

/// One upload in progress.
pub struct Upload {
    /// Bytes accepted so far, as they travel (compressed bytes for `compressed-blobs`).
    committed: AtomicU64,
    /// The feed, held by one `Write` call at a time while it hands over a message.
    feed: tokio::sync::Mutex<Feed>,
    /// The put's outcome, `None` while it runs.
    done: watch::Receiver<Option<Outcome>>,
    /// Which `Write` call feeds the upload; a resuming call takes over from an older one.
    attached: AtomicU64,
}

struct Feed {
    /// `None` once `finish_write` was received.
    tx: Option<mpsc::Sender<std::io::Result<Bytes>>>,
}

/// What a `Write` call may do with the upload it attached to.
pub enum Fed {
    /// The bytes were accepted.
    Accepted,
    /// The put ended already (the blob was stored by someone else, or it failed).
    Ended,
}

impl Upload {
    /// Bytes accepted so far.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    /// Whether `finish_write` was received and the put succeeded.
    pub fn complete(&self) -> bool {
        matches!(&*self.done.borrow(), Some(Ok(_)))
    }

    /// Makes the calling `Write` the one that feeds this upload; returns its ticket.
    pub fn attach(&self) -> u64 {
        self.attached.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Hands `data` written at `offset` to the put (waiting while the store catches up);
    /// `finish` ends the upload.
    pub async fn feed(&self, ticket: u64, offset: u64, data: Bytes, finish: bool) -> Result<Fed, Status> {
        let mut feed = self.feed.lock().await;
        if self.attached.load(Ordering::SeqCst) != ticket {
            return Err(with_code(
                Code::Aborted,
                "upload_taken_over",
                "a newer Write of this resource took over the upload",
            ));
        }
        let committed = self.committed();
        if offset != committed {
            return Err(with_code(
                Code::InvalidArgument,
                "invalid_write_offset",
                format!("write_offset {offset}, but {committed} bytes are committed: continue at {committed} (QueryWriteStatus tells)"),
            ));
        }
        let Some(tx) = &feed.tx else {
            return Err(with_code(
                Code::InvalidArgument,
                "write_after_finish",
                "data after finish_write",
            ));
        };
        let n = data.len() as u64;
        if !data.is_empty() && tx.send(Ok(data)).await.is_err() {
            return Ok(Fed::Ended);
        }
        self.committed.fetch_add(n, Ordering::SeqCst);
        if finish {
            feed.tx = None; // the put sees the end of the body
        }
        Ok(Fed::Accepted)
    }

    /// Waits for the put's outcome.
    pub async fn outcome(&self) -> Outcome {
        let mut done = self.done.clone();
        let outcome = done.wait_for(Option::is_some).await.map(|v| v.clone());
        match outcome {
            Ok(Some(o)) => o,
            _ => Err(Status::internal("the upload task ended without an outcome")),
        }
    }
}

/// The uploads in progress.
pub struct Uploads {
    map: Mutex<HashMap<String, Arc<Upload>>>,
    /// How long an upload waits for more bytes (`body_idle_timeout_secs`).
    idle: Duration,
}

/// Ends a body with a timeout error when no chunk comes for `idle`.
fn idle_limited(rx: mpsc::Receiver<std::io::Result<Bytes>>, idle: Duration) -> ByteStream {
    Box::pin(futures::stream::unfold(rx, move |mut rx| async move {
        match tokio::time::timeout(idle, rx.recv()).await {
            Ok(item) => item.map(|i| (i, rx)),
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no bytes of this upload for {idle:?}: it was dropped"),
                )),
                rx,
            )),
        }
    }))
}

impl Uploads {
    /// An empty table.
    pub fn new(idle: Duration) -> Self {
        Self {
            map: Mutex::default(),
            idle,
        }
    }

    /// The upload in progress under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Upload>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Uploads in progress.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether none is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts the put of `target` under `name` (or returns the one a concurrent call started).
    pub fn start(
        self: &Arc<Self>,
        state: &Arc<AppState>,
        name: &str,
        target: &BlobResource,
        slot: OwnedSemaphorePermit,
    ) -> Arc<Upload> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = map.get(name) {
            return u.clone();
        }
        let (tx, rx) = mpsc::channel(2);
        let (done_tx, done) = watch::channel(None);
        let upload = Arc::new(Upload {
            committed: AtomicU64::new(0),
            feed: tokio::sync::Mutex::new(Feed { tx: Some(tx) }),
            done,
            attached: AtomicU64::new(0),
        });
        map.insert(name.to_string(), upload.clone());
        drop(map);
        let body = idle_limited(rx, self.idle);
        let body = match target.compressor {
            Compressor::Identity => body,
            Compressor::Zstd => decode_stream(Encoding::Zstd, body),
        };
        let (store, digest, size) = (state.store.clone(), target.blob.digest, target.blob.size);
        let (table, name, entry) = (self.clone(), name.to_string(), upload.clone());
        tokio::spawn(async move {
            let _slot = slot; // the upload slot is released when the put ends
            let outcome = store.put(&digest, Some(size), body).await.map_err(from_cas);
            let _ = done_tx.send(Some(outcome));
            let mut map = table.map.lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&name).is_some_and(|u| Arc::ptr_eq(u, &entry)) {
                map.remove(&name);
            }
        });
        upload
    }
}
