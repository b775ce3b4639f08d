//! The store at scale: how long opening takes and how long `find_missing` of
//! 10,000 digests (half stored, half not) takes, on a store of N blobs.
//!
//!   SCALE_BLOBS=1000000 cargo bench -p reprovm-benches --bench scale
//!
//! Without `SCALE_BLOBS` it runs on 20,000 blobs (the smoke run of the test script).
//! Prints medians of 5 runs of each.

use std::time::{Duration, Instant};

use cas_server::{RocksStore, StoreOptions};
use reprovm_sdk::Digest;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: u64 = std::env::var("SCALE_BLOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir_in(std::env::var("SCALE_DIR").unwrap_or_else(|_| "/var/tmp".into())).unwrap();
    let opts = StoreOptions {
        min_free_space: 0,
        ..StoreOptions::default()
    };
    let blob = |i: u64| {
        let mut data = i.to_le_bytes().to_vec();
        data.resize(64, 0x5a);
        data
    };
    let started = Instant::now();
    {
        let store = RocksStore::open(dir.path(), opts.clone()).unwrap();
        for i in 0..n {
            let data = blob(i);
            store
                .put_reader(&Digest::of_blake3(&data), Some(data.len() as u64), &data[..])
                .unwrap();
        }
        store.flush().unwrap();
    }
    println!("stored {n} blobs of 64 bytes in {:.1?}", started.elapsed());
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let store = RocksStore::open(dir.path(), opts.clone()).unwrap();
        opens.push(t.elapsed());
        drop(store);
    }
    let store = RocksStore::open(dir.path(), opts).unwrap();
    let asked: Vec<Digest> = (0..10_000u64)
        .map(|i| if i % 2 == 0 { blob(i * 7 % n) } else { blob(n + i) })
        .map(|d| Digest::of_blake3(&d))
        .collect();
    let mut lookups = Vec::new();
    let rounds: usize = std::env::var("SCALE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    for _ in 0..rounds {
        let t = Instant::now();
        let missing = store.missing(&asked).unwrap();
        lookups.push(t.elapsed());
        assert_eq!(missing.len(), 5_000);
    }
    println!("open: median {:.1?} of 5", median(opens));
    println!(
        "find_missing of 10,000 digests (half stored): median {:.2?} of {rounds}",
        median(lookups)
    );
}
