//! Soak test driver: N clients for a fixed time of mixed traffic against a running cas-server
//! (25% PUT of new blobs, 50% GET of stored ones, verified, 25% `blobs:missing` of 200 digests
//! half of which are stored). Prints, every `--every` seconds, the operations so far and the
//! server's resident memory (from `/proc/PID/status`), then a verdict: errors must be 0 and RSS
//! flat (the last third's peak within 20% + 32 MiB of the first third's peak). Exit 1 otherwise.
//! `benches/soak.sh` starts a server and runs this.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use rand::{Rng, SeedableRng};
use reprovm_sdk::{Cas, CasExt, Digest, HttpCas};

#[derive(Parser)]
#[command(about = "Mixed PUT/GET/missing soak test against a cas-server")]
struct Args {
    /// Server base URL.
    #[arg(long)]
    url: String,
    /// PID of the server, for its RSS.
    #[arg(long)]
    pid: u32,
    /// Concurrent clients.
    #[arg(short, long, default_value_t = 64)]
    clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 600)]
    secs: u64,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 30)]
    every: u64,
}

#[derive(Default)]
struct Counts {
    puts: AtomicU64,
    gets: AtomicU64,
    missing: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A blob size: mostly small, 1% of several pieces (up to 3 MiB), so that ten minutes of uploads
/// fit on a developer's disk.
fn random_len(rng: &mut impl Rng) -> usize {
    match rng.random_range(0..100) {
        0 => rng.random_range(1 << 20..3 << 20),
        1..=9 => rng.random_range(16 << 10..256 << 10),
        _ => rng.random_range(100..16 << 10),
    }
}

async fn client_loop(id: u64, cas: HttpCas, stored: Arc<Mutex<Vec<Digest>>>, counts: Arc<Counts>, until: Instant) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(id);
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let op = rng.random_range(0..8);
        let known: Option<Digest> = {
            let s = stored.lock().unwrap();
            (!s.is_empty()).then(|| s[rng.random_range(0..s.len())])
        };
        let result: Result<(), String> = match (op, known) {
            (0..=1, _) | (_, None) => {
                let mut data = vec![0u8; random_len(&mut rng)];
                rng.fill(&mut data[..]);
                data[..16].copy_from_slice(&[id.to_le_bytes(), n.to_le_bytes()].concat());
                let len = data.len() as u64;
                match cas.put_bytes(Bytes::from(data)).await {
                    Ok(d) => {
                        stored.lock().unwrap().push(d);
                        counts.puts.fetch_add(1, Ordering::Relaxed);
                        counts.bytes.fetch_add(len, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) => Err(format!("put: {e}")),
                }
            }
            (2..=5, Some(d)) => match cas.get_bytes(&d).await {
                // The client verifies the digest while it reads; check again.
                Ok(b) if Digest::of_blake3(&b) == d => {
                    counts.gets.fetch_add(1, Ordering::Relaxed);
                    counts.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                    Ok(())
                }
                Ok(_) => Err(format!("get {d}: wrong bytes")),
                Err(e) => Err(format!("get {d}: {e}")),
            },
            (_, Some(_)) => {
                let mut ask: Vec<Digest> = {
                    let s = stored.lock().unwrap();
                    (0..100).map(|_| s[rng.random_range(0..s.len())]).collect()
                };
                let absent: Vec<Digest> = (0..100u64)
                    .map(|i| Digest::of_blake3(&[id, n, i, 0xabad].map(u64::to_le_bytes).concat()))
                    .collect();
                ask.extend(&absent);
                match cas.find_missing(&ask).await {
                    Ok(m) if m == absent => {
                        counts.missing.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    Ok(m) => Err(format!("missing: {} reported, {} expected", m.len(), absent.len())),
                    Err(e) => Err(format!("missing: {e}")),
                }
            }
        };
        if let Err(e) = result {
            if counts.errors.fetch_add(1, Ordering::Relaxed) < 10 {
                eprintln!("client {id}: {e}");
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cas = HttpCas::new(&args.url)?;
    let counts = Arc::new(Counts::default());
    let stored: Arc<Mutex<Vec<Digest>>> = Arc::default();
    let start = Instant::now();
    let until = start + Duration::from_secs(args.secs);
    let tasks: Vec<_> = (0..args.clients as u64)
        .map(|id| tokio::spawn(client_loop(id, cas.clone(), stored.clone(), counts.clone(), until)))
        .collect();
    let mut samples: Vec<(u64, u64)> = vec![(0, rss_bytes(args.pid))];
    println!(
        "{:>6} {:>9} {:>9} {:>8} {:>9} {:>7} {:>9}",
        "secs", "puts", "gets", "missing", "MiB moved", "errors", "RSS MiB"
    );
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_secs(args.every).min(until.saturating_duration_since(Instant::now()))).await;
        let t = start.elapsed().as_secs();
        let rss = rss_bytes(args.pid);
        samples.push((t, rss));
        println!(
            "{t:>6} {:>9} {:>9} {:>8} {:>9} {:>7} {:>9.1}",
            counts.puts.load(Ordering::Relaxed),
            counts.gets.load(Ordering::Relaxed),
            counts.missing.load(Ordering::Relaxed),
            counts.bytes.load(Ordering::Relaxed) >> 20,
            counts.errors.load(Ordering::Relaxed),
            rss as f64 / (1 << 20) as f64
        );
    }
    for t in tasks {
        t.await?;
    }
    let errors = counts.errors.load(Ordering::Relaxed);
    let third = samples.len() / 3;
    let peak = |s: &[(u64, u64)]| s.iter().map(|x| x.1).max().unwrap_or(0);
    let (early, late) = (
        peak(&samples[1..=third.max(1)]),
        peak(&samples[samples.len() - third.max(1)..]),
    );
    let flat = late <= early + early / 5 + (32 << 20);
    println!(
        "soak: {} clients, {}s: {} puts, {} gets, {} missing calls, {errors} errors; RSS peak {:.1} MiB in the first third, {:.1} MiB in the last: {}",
        args.clients,
        args.secs,
        counts.puts.load(Ordering::Relaxed),
        counts.gets.load(Ordering::Relaxed),
        counts.missing.load(Ordering::Relaxed),
        early as f64 / (1 << 20) as f64,
        late as f64 / (1 << 20) as f64,
        if flat { "flat" } else { "GROWING" }
    );
    if errors > 0 || !flat {
        std::process::exit(1);
    }
    Ok(())
}
