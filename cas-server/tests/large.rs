//! A 2 GiB blob through the server with flat memory: streamed from a
//! generator on upload, hashed while streaming on download; the server's
//! peak RSS must stay under 150 MiB. Neither side holds the blob in memory.

mod common;

use bytes::Bytes;
use common::{noise, Server};
use futures::StreamExt;
use reprovm_sdk::{Cas, HashKind, Hasher, HttpCas};

const SIZE: u64 = 2 << 30;
const CHUNK: usize = 1 << 20;

fn chunk(i: u64) -> Bytes {
    // 1 MiB of pseudo-random bytes per index: incompressible, like real artifacts.
    Bytes::from(noise(i, CHUNK))
}

#[tokio::test]
async fn two_gib_round_trip_keeps_server_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    let mut h = Hasher::new(HashKind::Blake3);
    for i in 0..SIZE / CHUNK as u64 {
        h.update(&chunk(i));
    }
    let digest = h.finalize();
    let client = HttpCas::new(s.url()).unwrap();
    let body = futures::stream::iter(0..SIZE / CHUNK as u64).map(|i| Ok(chunk(i)));
    client
        .put(&digest, Some(SIZE), Box::pin(body))
        .await
        .expect("2 GiB upload");

    let blob = client.get(&digest, None).await.unwrap();
    assert_eq!(blob.size, SIZE);
    let mut body = blob.body;
    let mut h = Hasher::new(HashKind::Blake3);
    let mut n = 0u64;
    while let Some(c) = body.next().await {
        let c = c.expect("download chunk");
        n += c.len() as u64;
        h.update(&c);
    }
    assert_eq!((n, h.finalize()), (SIZE, digest));
    let rss = s.peak_rss();
    eprintln!("cas-server peak RSS during the 2 GiB round trip: {} MiB", rss >> 20);
    assert!(rss < 150 << 20, "peak RSS {} MiB", rss >> 20);
}
