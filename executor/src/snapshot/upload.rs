//! Batched uploads of `snapshot create`: blobs are collected into batches (at most
//! [`BATCH_BLOBS`] digests or [`BATCH_BYTES`] of data), each batch makes one `find_missing`
//! call, then only the missing blobs are put, [`PUTS_IN_FLIGHT`] at a time. One batch uploads in
//! a spawned task while the next one fills, so memory stays at about two batches.
//!
//! A blob may be queued without its bytes (a chunk reused from the parent snapshot): it must
//! already be in the store, and a batch that finds it missing fails the snapshot rather than
//! writing one that cannot be restored.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reprovm_sdk::cas::bytes_stream;
use reprovm_sdk::{Cas, Digest};
use tokio::task::JoinHandle;

/// Most digests per `find_missing` call.
pub const BATCH_BLOBS: usize = 1000;
/// Most bytes of chunk data held per batch.
pub const BATCH_BYTES: usize = 16 << 20;
/// Concurrent puts of one batch.
const PUTS_IN_FLIGHT: usize = 8;

/// Chunk or tree (counted apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// File contents.
    Chunk,
    /// A directory.
    Tree,
}

/// What the uploads did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Uploaded {
    /// Chunks put.
    pub chunks: u64,
    /// Their bytes.
    pub chunk_bytes: u64,
    /// Trees put.
    pub trees: u64,
    /// `find_missing` calls.
    pub missing_calls: u64,
}

impl Uploaded {
    fn add(&mut self, o: Uploaded) {
        self.chunks += o.chunks;
        self.chunk_bytes += o.chunk_bytes;
        self.trees += o.trees;
        self.missing_calls += o.missing_calls;
    }
}

struct Item {
    digest: Digest,
    data: Option<Bytes>,
    kind: Kind,
}

/// The batching uploader.
pub struct Uploader {
    cas: Arc<dyn Cas>,
    pending: Vec<Item>,
    pending_bytes: usize,
    /// Digests already queued in this run: a chunk used twice is checked and sent once.
    seen: HashSet<Digest>,
    inflight: Option<JoinHandle<anyhow::Result<Uploaded>>>,
    done: Uploaded,
}

impl Uploader {
    /// An uploader into `cas`.
    pub fn new(cas: Arc<dyn Cas>) -> Self {
        Self {
            cas,
            pending: Vec::new(),
            pending_bytes: 0,
            seen: HashSet::new(),
            inflight: None,
            done: Uploaded::default(),
        }
    }

    /// Queues a blob (`data` = `None`: it must be in the store already).
    pub async fn add(&mut self, digest: Digest, data: Option<Bytes>, kind: Kind) -> anyhow::Result<()> {
        if !self.seen.insert(digest) {
            return Ok(());
        }
        self.pending_bytes += data.as_ref().map_or(0, Bytes::len);
        self.pending.push(Item { digest, data, kind });
        if self.pending.len() >= BATCH_BLOBS || self.pending_bytes >= BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Waits for the batch in flight, then starts uploading the pending one.
    async fn flush(&mut self) -> anyhow::Result<()> {
        self.wait().await?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.inflight = Some(tokio::spawn(upload_batch(Arc::clone(&self.cas), batch)));
        Ok(())
    }

    async fn wait(&mut self) -> anyhow::Result<()> {
        if let Some(h) = self.inflight.take() {
            self.done.add(h.await.context("upload task")??);
        }
        Ok(())
    }

    /// Uploads what is left and returns the totals.
    pub async fn finish(mut self) -> anyhow::Result<Uploaded> {
        self.flush().await?;
        self.wait().await?;
        Ok(self.done)
    }
}

async fn upload_batch(cas: Arc<dyn Cas>, batch: Vec<Item>) -> anyhow::Result<Uploaded> {
    let digests: Vec<Digest> = batch.iter().map(|i| i.digest).collect();
    let missing: HashSet<Digest> = cas
        .find_missing(&digests)
        .await
        .context("asking the store which blobs it lacks")?
        .into_iter()
        .collect();
    let mut out = Uploaded {
        missing_calls: 1,
        ..Uploaded::default()
    };
    let mut puts = Vec::new();
    for item in batch.into_iter().filter(|i| missing.contains(&i.digest)) {
        let Some(data) = item.data else {
            anyhow::bail!(
                "chunk {} of the parent snapshot is missing from the store; run `snapshot create --no-parent` to re-read every file",
                item.digest
            );
        };
        match item.kind {
            Kind::Chunk => {
                out.chunks += 1;
                out.chunk_bytes += data.len() as u64;
            }
            Kind::Tree => out.trees += 1,
        }
        puts.push((item.digest, data));
    }
    futures::stream::iter(puts)
        .map(|(digest, data)| {
            let cas = Arc::clone(&cas);
            async move {
                let size = data.len() as u64;
                cas.put(&digest, Some(size), bytes_stream(data))
                    .await
                    .with_context(|| format!("uploading blob {digest}"))
            }
        })
        .buffer_unordered(PUTS_IN_FLIGHT)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    Ok(out)
}
