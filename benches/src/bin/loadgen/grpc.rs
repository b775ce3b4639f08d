//! The gRPC modes of `loadgen`: REAPI ByteStream `Write`/`Read` of one blob per call, and
//! `BatchUpdateBlobs`/`BatchReadBlobs` of `--batch` blobs per call, against `grpc://HOST:PORT`.
//! Blobs are named by SHA-256 (REAPI's default), made as the HTTP modes make them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
use bs::byte_stream_client::ByteStreamClient;
use bytes::Bytes;
use re::content_addressable_storage_client::ContentAddressableStorageClient;
use sha2::Digest as _;
use tonic::transport::Channel;

/// One gRPC operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// ByteStream Write, one blob per call.
    BsWrite,
    /// ByteStream Read, one blob per call (blobs uploaded first, untimed).
    BsRead,
    /// BatchUpdateBlobs of `batch` blobs per call.
    BatchUpdate,
    /// BatchReadBlobs of `batch` blobs per call (blobs uploaded first, untimed).
    BatchRead,
}

/// ByteStream message size of the uploads (Bazel's default chunk is 16 KiB; larger is kinder).
const WRITE_CHUNK: usize = 256 * 1024;

/// What to run.
pub struct Plan {
    pub op: Op,
    /// `host:port`.
    pub addr: String,
    pub concurrency: usize,
    /// Calls in total.
    pub calls: usize,
    /// Blobs per batch call.
    pub batch: usize,
    pub seed: u64,
    /// The shared part of every blob.
    pub base: Bytes,
}

impl Plan {
    fn blobs(&self) -> usize {
        match self.op {
            Op::BsWrite | Op::BsRead => self.calls,
            Op::BatchUpdate | Op::BatchRead => self.calls * self.batch.max(1),
        }
    }

    fn prefix(&self, i: usize) -> [u8; 8] {
        (self.seed << 40 ^ i as u64).to_le_bytes()
    }

    fn data(&self, i: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.base.len() + 8);
        v.extend_from_slice(&self.prefix(i));
        v.extend_from_slice(&self.base);
        v
    }

    fn digest(&self, i: usize) -> re::Digest {
        let mut h = sha2::Sha256::new();
        h.update(self.prefix(i));
        h.update(&self.base);
        re::Digest {
            hash: hex::encode(h.finalize()),
            size_bytes: self.base.len() as i64 + 8,
        }
    }
}

async fn connect(addr: &str) -> anyhow::Result<Channel> {
    Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await
        .with_context(|| format!("connecting to grpc://{addr}"))
}

fn upload_id(i: usize) -> String {
    let r: u64 = rand::random();
    format!("{r:016x}-{i}")
}

/// One call of `op` on blobs `first..first+n`; returns the payload bytes moved.
async fn call(
    plan: &Plan,
    digests: &[re::Digest],
    ch: &Channel,
    op: Op,
    first: usize,
    n: usize,
) -> anyhow::Result<u64> {
    let max = 64 << 20;
    match op {
        Op::BsWrite => {
            let d = &digests[first];
            let name = format!("uploads/{}/blobs/{}/{}", upload_id(first), d.hash, d.size_bytes);
            let data = Bytes::from(plan.data(first));
            let len = data.len();
            let reqs: Vec<bs::WriteRequest> = (0..len.div_ceil(WRITE_CHUNK))
                .map(|k| {
                    let end = ((k + 1) * WRITE_CHUNK).min(len);
                    bs::WriteRequest {
                        resource_name: if k == 0 { name.clone() } else { String::new() },
                        write_offset: (k * WRITE_CHUNK) as i64,
                        finish_write: end == len,
                        data: data.slice(k * WRITE_CHUNK..end).to_vec(),
                    }
                })
                .collect();
            let r = ByteStreamClient::new(ch.clone())
                .write(futures::stream::iter(reqs))
                .await?;
            if r.into_inner().committed_size != len as i64 {
                bail!("Write of {} committed the wrong size", d.hash);
            }
            Ok(len as u64)
        }
        Op::BsRead => {
            let d = &digests[first];
            let mut s = ByteStreamClient::new(ch.clone())
                .max_decoding_message_size(max)
                .read(bs::ReadRequest {
                    resource_name: format!("blobs/{}/{}", d.hash, d.size_bytes),
                    read_offset: 0,
                    read_limit: 0,
                })
                .await?
                .into_inner();
            let mut got = 0u64;
            while let Some(m) = s.message().await? {
                got += m.data.len() as u64;
            }
            if got != d.size_bytes as u64 {
                bail!("Read of {} returned {got} bytes", d.hash);
            }
            Ok(got)
        }
        Op::BatchUpdate => {
            let requests: Vec<_> = (first..first + n)
                .map(|i| re::batch_update_blobs_request::Request {
                    digest: Some(digests[i].clone()),
                    data: plan.data(i),
                    compressor: 0,
                })
                .collect();
            let bytes: u64 = requests.iter().map(|r| r.data.len() as u64).sum();
            let r = ContentAddressableStorageClient::new(ch.clone())
                .max_encoding_message_size(max)
                .batch_update_blobs(re::BatchUpdateBlobsRequest {
                    requests,
                    ..Default::default()
                })
                .await?
                .into_inner();
            if let Some(bad) = r
                .responses
                .iter()
                .find(|r| r.status.as_ref().is_none_or(|s| s.code != 0))
            {
                bail!("BatchUpdateBlobs: {:?}", bad.status);
            }
            Ok(bytes)
        }
        Op::BatchRead => {
            let r = ContentAddressableStorageClient::new(ch.clone())
                .max_decoding_message_size(max)
                .batch_read_blobs(re::BatchReadBlobsRequest {
                    digests: digests[first..first + n].to_vec(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let mut bytes = 0;
            for resp in &r.responses {
                if resp.status.as_ref().is_none_or(|s| s.code != 0) {
                    bail!("BatchReadBlobs: {:?}", resp.status);
                }
                bytes += resp.data.len() as u64;
            }
            Ok(bytes)
        }
    }
}

/// Runs `op` over every call of the plan at the plan's concurrency.
async fn phase(
    plan: &Arc<Plan>,
    digests: &Arc<Vec<re::Digest>>,
    op: Op,
) -> anyhow::Result<(Duration, Vec<Duration>, u64)> {
    let per_call = match op {
        Op::BsWrite | Op::BsRead => 1,
        Op::BatchUpdate | Op::BatchRead => plan.batch.max(1),
    };
    let calls = digests.len() / per_call;
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..plan.concurrency.min(calls).max(1) {
        let (plan, digests, next) = (plan.clone(), digests.clone(), next.clone());
        // A connection per worker, as the HTTP modes have.
        let ch = connect(&plan.addr).await?;
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut bytes) = (Vec::new(), 0u64);
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= calls {
                    return Ok::<_, anyhow::Error>((lat, bytes));
                }
                let t = Instant::now();
                bytes += call(&plan, &digests, &ch, op, c * per_call, per_call).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let (mut all, mut bytes) = (Vec::new(), 0);
    for t in tasks {
        let (lat, b) = t.await??;
        all.extend(lat);
        bytes += b;
    }
    Ok((start.elapsed(), all, bytes))
}

/// Prepares (uploads for the read modes, untimed) and runs the plan; returns the measured
/// phase's duration, per-call latencies and payload bytes.
pub async fn run(plan: Plan, measured: impl FnOnce()) -> anyhow::Result<(Duration, Vec<Duration>, u64)> {
    let digests: Arc<Vec<re::Digest>> = Arc::new((0..plan.blobs()).map(|i| plan.digest(i)).collect());
    let plan = Arc::new(plan);
    match plan.op {
        Op::BsRead => {
            phase(&plan, &digests, Op::BsWrite).await.context("preparing blobs")?;
        }
        Op::BatchRead => {
            phase(&plan, &digests, Op::BatchUpdate)
                .await
                .context("preparing blobs")?;
        }
        _ => {}
    }
    measured();
    phase(&plan, &digests, plan.op).await
}
