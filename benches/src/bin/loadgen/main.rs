//! `loadgen`: drives any HTTP blob cache with PUT and GET requests of a given
//! blob size at a given concurrency, and prints ops/s, MB/s and latency
//! percentiles.
//!
//! The URL template names where a blob goes: `{digest}` is replaced by the
//! blob's BLAKE3 hex digest, so the same run can target cas-server
//! (`http://127.0.0.1:8080/v1/blobs/{digest}`) or nginx with WebDAV
//! (`http://127.0.0.1:8081/dav/{digest}`).
//!
//! Bodies are made from one shared random buffer with a per-request 8-byte
//! prefix, so blobs are distinct and incompressible; digests are computed
//! before the clock starts.
//!
//! The gRPC modes ([`grpc`]: `bs-write`, `bs-read`, `batch-update`, `batch-read`) drive the
//! REAPI cache services of `--url grpc://HOST:PORT` the same way.

mod grpc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rand::RngCore;

type Body = UnsyncBoxBody<Bytes, std::convert::Infallible>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Op {
    /// Upload distinct blobs.
    Put,
    /// Upload blobs (untimed), then download them.
    Get,
    /// gRPC: ByteStream Write, one blob per call.
    BsWrite,
    /// gRPC: ByteStream Read, one blob per call.
    BsRead,
    /// gRPC: BatchUpdateBlobs, `--batch` blobs per call.
    BatchUpdate,
    /// gRPC: BatchReadBlobs, `--batch` blobs per call.
    BatchRead,
}

impl Op {
    fn grpc(self) -> Option<grpc::Op> {
        match self {
            Self::Put | Self::Get => None,
            Self::BsWrite => Some(grpc::Op::BsWrite),
            Self::BsRead => Some(grpc::Op::BsRead),
            Self::BatchUpdate => Some(grpc::Op::BatchUpdate),
            Self::BatchRead => Some(grpc::Op::BatchRead),
        }
    }
}

#[derive(Parser)]
#[command(about = "Load generator for HTTP blob caches")]
struct Args {
    /// URL with `{digest}` where the blob's hex digest goes (HTTP modes), or
    /// `grpc://HOST:PORT` (gRPC modes).
    #[arg(long)]
    url: String,
    /// put, get, or a gRPC mode: bs-write, bs-read, batch-update, batch-read.
    #[arg(long, value_enum, default_value = "put")]
    op: Op,
    /// Blob size: 4KiB, 1MiB, 256MiB...
    #[arg(long, default_value = "4KiB")]
    size: String,
    /// Concurrent connections.
    #[arg(short, long, default_value_t = 64)]
    concurrency: usize,
    /// Requests (calls) in total.
    #[arg(short = 'n', long, default_value_t = 20_000)]
    requests: usize,
    /// Blobs per call of the batch modes.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Seed for the blob contents (use different seeds for runs against the same server).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
    /// Also report the CPU time this process spent during the measured phase (Linux /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
}

/// User + system CPU seconds of a process so far, from /proc/<pid>/stat (0 when unreadable).
fn cpu_secs(pid: &str, clk_tck: u64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at field 3; utime, stime are 14, 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (ticks(11) + ticks(12)) as f64 / clk_tck.max(1) as f64
}

fn parse_size(s: &str) -> anyhow::Result<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: usize = s[..split].parse().with_context(|| format!("bad size {s:?}"))?;
    let mult = match s[split..].to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        other => bail!("unknown unit {other:?}"),
    };
    Ok(n * mult)
}

/// Blob `i`: an 8-byte prefix (seed, index) followed by the shared buffer.
struct Blobs {
    base: Bytes,
    seed: u64,
}

impl Blobs {
    fn prefix(&self, i: usize) -> [u8; 8] {
        (self.seed << 40 ^ i as u64).to_le_bytes()
    }
    fn digest(&self, i: usize) -> String {
        let mut h = blake3::Hasher::new();
        h.update(&self.prefix(i));
        h.update(&self.base);
        h.finalize().to_hex().to_string()
    }
    fn body(&self, i: usize) -> Body {
        let parts = vec![Bytes::copy_from_slice(&self.prefix(i)), self.base.clone()];
        StreamBody::new(futures::stream::iter(parts.into_iter().map(|b| Ok(Frame::data(b))))).boxed_unsync()
    }
    fn len(&self) -> u64 {
        self.base.len() as u64 + 8
    }
}

async fn send(client: &Client<HttpConnector, Body>, req: hyper::Request<Body>) -> anyhow::Result<(u16, u64)> {
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref() {
            n += d.len() as u64;
        }
    }
    Ok((status, n))
}

fn request(op: Op, url: &str, blobs: &Blobs, i: usize) -> hyper::Request<Body> {
    let b = hyper::Request::builder().uri(url);
    match op {
        Op::Put => b
            .method("PUT")
            .header("content-length", blobs.len())
            .body(blobs.body(i)),
        Op::Get => b.method("GET").body(Full::new(Bytes::new()).boxed_unsync()),
        Op::BsWrite | Op::BsRead | Op::BatchUpdate | Op::BatchRead => unreachable!("gRPC modes make no HTTP request"),
    }
    .expect("valid request")
}

async fn run_phase(
    client: &Client<HttpConnector, Body>,
    args: &Args,
    op: Op,
    blobs: Arc<Blobs>,
    urls: Arc<Vec<String>>,
) -> anyhow::Result<(Duration, Vec<Duration>, u64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.min(urls.len()) {
        let (client, next, blobs, urls) = (client.clone(), next.clone(), blobs.clone(), urls.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut bytes = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= urls.len() {
                    return Ok::<_, anyhow::Error>((lat, bytes));
                }
                let t = Instant::now();
                let (status, n) = send(&client, request(op, &urls[i], &blobs, i)).await?;
                if !(200..300).contains(&status) {
                    bail!("{op:?} {} answered {status}", urls[i]);
                }
                lat.push(t.elapsed());
                bytes += if op == Op::Put { blobs.len() } else { n };
            }
        }));
    }
    let mut all = Vec::new();
    let mut bytes = 0;
    for t in tasks {
        let (lat, b) = t.await??;
        all.extend(lat);
        bytes += b;
    }
    Ok((start.elapsed(), all, bytes))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let size = parse_size(&args.size)?.max(9);
    let mut base = vec![0u8; size - 8];
    rand::rng().fill_bytes(&mut base);
    let server = args.server_pid.map(|p| p.to_string());
    let cpu = |who: Option<&str>| who.map_or(0.0, |p| cpu_secs(p, args.clk_tck));
    if let Some(op) = args.op.grpc() {
        let Some(addr) = args.url.strip_prefix("grpc://") else {
            bail!("the gRPC modes need --url grpc://HOST:PORT");
        };
        let plan = grpc::Plan {
            op,
            addr: addr.trim_end_matches('/').to_string(),
            concurrency: args.concurrency,
            calls: args.requests,
            batch: args.batch,
            seed: args.seed,
            base: base.into(),
        };
        let mut before = (0.0, 0.0);
        let (elapsed, lat, bytes) = grpc::run(plan, || before = (cpu(Some("self")), cpu(server.as_deref()))).await?;
        let used = (cpu(Some("self")) - before.0, cpu(server.as_deref()) - before.1);
        return report(&args, size, elapsed, lat, bytes, used);
    }
    if !args.url.contains("{digest}") {
        bail!("--url must contain {{digest}}");
    }
    let blobs = Arc::new(Blobs {
        base: base.into(),
        seed: args.seed,
    });
    let urls: Arc<Vec<String>> = Arc::new(
        (0..args.requests)
            .map(|i| args.url.replace("{digest}", &blobs.digest(i)))
            .collect(),
    );
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.concurrency)
        .build(connector);
    if args.op == Op::Get {
        run_phase(&client, &args, Op::Put, blobs.clone(), urls.clone())
            .await
            .context("preparing blobs")?;
    }
    let (client0, server0) = (cpu(Some("self")), cpu(server.as_deref()));
    let (elapsed, lat, bytes) = run_phase(&client, &args, args.op, blobs, urls).await?;
    let used = (cpu(Some("self")) - client0, cpu(server.as_deref()) - server0);
    report(&args, size, elapsed, lat, bytes, used)
}

/// Prints the figures of a measured phase: `used` is the (client, server) CPU seconds.
fn report(
    args: &Args,
    size: usize,
    elapsed: Duration,
    mut lat: Vec<Duration>,
    bytes: u64,
    used: (f64, f64),
) -> anyhow::Result<()> {
    let (client_cpu, server_cpu) = used;
    if lat.is_empty() {
        bail!("no request was measured");
    }
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    let secs = elapsed.as_secs_f64();
    let ops = lat.len() as f64 / secs;
    let mbps = bytes as f64 / secs / 1e6;
    if args.json {
        println!(
            "{{\"op\":\"{:?}\",\"size\":{size},\"concurrency\":{},\"requests\":{},\"batch\":{},\"seconds\":{secs:.3},\"ops_per_sec\":{ops:.1},\"mb_per_sec\":{mbps:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"client_cpu_s\":{client_cpu:.3},\"server_cpu_s\":{server_cpu:.3}}}",
            args.op, args.concurrency, lat.len(), if args.op.grpc().is_some() { args.batch } else { 1 }, pct(0.5), pct(0.9), pct(0.99), pct(1.0)
        );
    } else {
        println!(
            "{:?} {} x {} B, concurrency {}: {:.2}s, {ops:.0} ops/s, {mbps:.1} MB/s, latency ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}; CPU s client {client_cpu:.2} server {server_cpu:.2}",
            args.op, lat.len(), size, args.concurrency, secs, pct(0.5), pct(0.9), pct(0.99), pct(1.0)
        );
    }
    Ok(())
}
