//! Shutdown, restart and crash behaviour of the real binary.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{noise, Server};
use reprovm_sdk::{Cas, CasExt, Digest, HttpCas, RetryPolicy};

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_restart_serves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let s = Server::start(&data_dir, &[]);
    let client = HttpCas::new(s.url()).unwrap();
    let mut stored = Vec::new();
    for i in 0..20u64 {
        let data = Bytes::from(noise(i, (i as usize) * 50_000));
        stored.push((client.put_bytes(data.clone()).await.unwrap(), data));
    }
    // An upload that is still streaming when SIGTERM arrives completes.
    let slow = noise(1000, 4 << 20);
    let slow_digest = Digest::of_blake3(&slow);
    let chunks: Vec<Bytes> = slow.chunks(256 << 10).map(Bytes::copy_from_slice).collect();
    let body = futures::stream::unfold(chunks.into_iter(), |mut it| async move {
        let next = it.next()?;
        tokio::time::sleep(Duration::from_millis(40)).await;
        Some((Ok(next), it))
    });
    let uploader = {
        let client = client.clone();
        tokio::spawn(async move { client.put(&slow_digest, Some(4 << 20), Box::pin(body)).await })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let pid = s.pid();
    let term = tokio::task::spawn_blocking(move || s.terminate());
    uploader
        .await
        .unwrap()
        .expect("in-flight upload completes during graceful shutdown");
    assert_eq!(term.await.unwrap(), Some(0), "graceful shutdown exits 0 (pid {pid})");

    let s = Server::start(&data_dir, &[]);
    let client = HttpCas::new(s.url()).unwrap();
    for (d, data) in &stored {
        assert_eq!(&client.get_bytes(d).await.unwrap(), data);
    }
    assert_eq!(client.get_bytes(&slow_digest).await.unwrap(), slow);
}

/// Several rounds of `kill -9` while 16 clients upload; after each restart
/// every acknowledged blob is present and every blob verifies.
#[tokio::test]
async fn kill_9_during_concurrent_uploads_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let acked: Arc<Mutex<Vec<(Digest, usize, u64)>>> = Arc::default();
    let attempted: Arc<Mutex<Vec<Digest>>> = Arc::default();
    for round in 0..3u64 {
        let s = Server::start(&data_dir, &[]);
        let client = HttpCas::builder(s.url())
            .with_retry(RetryPolicy::none())
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for worker in 0..16u64 {
            let (client, acked, attempted) = (client.clone(), acked.clone(), attempted.clone());
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let seed = round << 40 | worker << 20 | i;
                    // Sizes from a few bytes to several pieces.
                    let len = [10usize, 5_000, 300_000, 1 << 20, 2_500_000][(i % 5) as usize];
                    let data = Bytes::from(noise(seed, len));
                    let d = Digest::of_blake3(&data);
                    attempted.lock().unwrap().push(d);
                    match client
                        .put(&d, Some(len as u64), reprovm_sdk::cas::bytes_stream(data))
                        .await
                    {
                        Ok(_) => acked.lock().unwrap().push((d, len, seed)),
                        Err(_) => return, // the server died under us
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(700 + round * 300)).await;
        s.kill9();
        for t in tasks {
            t.await.unwrap();
        }

        let s = Server::start(&data_dir, &[]);
        let client = HttpCas::new(s.url()).unwrap();
        let acked_now = acked.lock().unwrap().clone();
        assert!(
            acked_now.len() > 10,
            "round {round}: too few uploads acknowledged ({})",
            acked_now.len()
        );
        let digests: Vec<Digest> = acked_now.iter().map(|a| a.0).collect();
        assert_eq!(
            client.find_missing(&digests).await.unwrap(),
            vec![],
            "round {round}: acknowledged blobs lost"
        );
        for (d, len, seed) in acked_now.iter().rev().take(40) {
            assert_eq!(client.get_bytes(d).await.unwrap(), noise(*seed, *len), "round {round}");
        }
        // Every attempted digest is either absent or whole (the client verifies while reading).
        let attempted_now = attempted.lock().unwrap().clone();
        for d in &attempted_now {
            match client.get_bytes(d).await {
                Ok(bytes) => assert_eq!(Digest::of_blake3(&bytes), *d),
                Err(reprovm_sdk::CasError::NotFound { .. }) => {}
                Err(e) => panic!("round {round}: {d}: {e}"),
            }
        }
        s.kill9();
    }
}
