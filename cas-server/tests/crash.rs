//! Crash safety: 20 rounds of `kill -9` at random moments while 32 clients
//! upload blobs of random sizes. After each restart every acknowledged blob is
//! present and reads back whole, and no digest ever returns bytes that hash
//! differently. The kill moments and sizes come from a seeded RNG: the seed is
//! printed, and `CRASH_SEED=<n>` replays a run.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{noise, Server};
use rand::{Rng, SeedableRng};
use reprovm_sdk::{Cas, CasError, CasExt, Digest, HttpCas, RetryPolicy};

const ROUNDS: u64 = 20;
const CLIENTS: u64 = 32;

/// A blob size: mostly small, some of several pieces (pieces are 1 MiB), a few large enough
/// that their later pieces skip the WAL (from 8 MiB on) and rely on the flush before commit.
fn random_len(rng: &mut impl Rng) -> usize {
    match rng.random_range(0..40) {
        0..=3 => rng.random_range(0..100),
        4..=23 => rng.random_range(100..64 << 10),
        24..=35 => rng.random_range(64 << 10..1 << 20),
        36..=38 => rng.random_range(1 << 20..3 << 20),
        _ => rng.random_range(8 << 20..12 << 20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_at_random_moments_during_32_way_uploads() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    println!("crash test seed: {seed} (replay with CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    // (digest, len, content seed) of every acknowledged upload, all rounds.
    let mut acked_all: Vec<(Digest, usize, u64)> = Vec::new();
    let mut attempted_all: Vec<Digest> = Vec::new();
    for round in 0..ROUNDS {
        let s = Server::start(&data_dir, &[]);
        let client = HttpCas::builder(s.url())
            .with_retry(RetryPolicy::none())
            .build()
            .unwrap();
        let acked: Arc<Mutex<Vec<(Digest, usize, u64)>>> = Arc::default();
        let attempted: Arc<Mutex<Vec<Digest>>> = Arc::default();
        let mut tasks = Vec::new();
        for worker in 0..CLIENTS {
            let (client, acked, attempted) = (client.clone(), acked.clone(), attempted.clone());
            let mut wrng = rand::rngs::StdRng::seed_from_u64(seed ^ (round << 32 | worker));
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let content_seed = seed.rotate_left(17) ^ (round << 40 | worker << 24 | i);
                    let len = random_len(&mut wrng);
                    let data = Bytes::from(noise(content_seed, len));
                    let d = Digest::of_blake3(&data);
                    attempted.lock().unwrap().push(d);
                    match client
                        .put(&d, Some(len as u64), reprovm_sdk::cas::bytes_stream(data))
                        .await
                    {
                        Ok(_) => acked.lock().unwrap().push((d, len, content_seed)),
                        Err(_) => return, // the server died under us
                    }
                }
            }));
        }
        let kill_after = Duration::from_millis(rng.random_range(50..1500));
        tokio::time::sleep(kill_after).await;
        s.kill9();
        for t in tasks {
            t.await.unwrap();
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        let attempted = std::mem::take(&mut *attempted.lock().unwrap());
        println!(
            "round {round}: killed after {kill_after:?}; {} acknowledged of {} attempted",
            acked.len(),
            attempted.len()
        );
        acked_all.extend(acked.iter().copied());
        attempted_all.extend(attempted.iter().copied());

        let s = Server::start(&data_dir, &[]);
        let client = HttpCas::new(s.url()).unwrap();
        let digests: Vec<Digest> = acked_all.iter().map(|a| a.0).collect();
        assert_eq!(
            client.find_missing(&digests).await.unwrap(),
            vec![],
            "seed {seed} round {round}: acknowledged blobs lost"
        );
        for (d, len, content_seed) in &acked {
            let got = client
                .get_bytes(d)
                .await
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: {d}: {e}"));
            assert_eq!(got, noise(*content_seed, *len), "seed {seed} round {round}: {d}");
        }
        // Every digest attempted this round is either absent or whole.
        for d in &attempted {
            match client.get_bytes(d).await {
                Ok(bytes) => assert_eq!(Digest::of_blake3(&bytes), *d, "seed {seed} round {round}"),
                Err(CasError::NotFound { .. }) => {}
                Err(e) => panic!("seed {seed} round {round}: {d}: {e}"),
            }
        }
        // The counts the store keeps on disk (read at open, not recounted) match what it holds.
        let mut distinct: Vec<Digest> = attempted_all.clone();
        distinct.sort_unstable_by_key(|d| d.to_hex());
        distinct.dedup();
        let absent = client.find_missing(&distinct).await.unwrap().len();
        let (_, _, body) = common::req(&s, "GET", "/v1/stats", &[], "").await;
        let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            stats["blobs"].as_u64().unwrap() as usize,
            distinct.len() - absent,
            "seed {seed} round {round}: the blob count after kill -9"
        );
        s.kill9();
    }
    assert!(
        acked_all.len() > 100,
        "seed {seed}: too few uploads acknowledged over {ROUNDS} rounds ({})",
        acked_all.len()
    );
    // Finally the whole store re-hashes clean, blobs from every round included.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cas-server"))
        .args(["verify", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "seed {seed}: verify after the crashes:\n{stdout}"
    );
    assert!(stdout.contains("corrupt: 0"), "{stdout}");
    println!(
        "{} acknowledged, {} attempted over {ROUNDS} rounds",
        acked_all.len(),
        attempted_all.len()
    );
}
