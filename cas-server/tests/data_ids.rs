//! Data ids are never issued twice, and deleting a blob touches only its own
//! data: deleting (or evicting) the empty blob after a restart must not take
//! the pieces of a blob stored since (issue 10, item 2). Real binary, real
//! restarts.

mod common;

use std::time::{Duration, Instant};

use common::{noise, req, Server};
use reprovm_sdk::Digest;

async fn put(s: &Server, data: &[u8]) -> String {
    let d = Digest::of_blake3(data).to_hex();
    let (st, _, _) = req(s, "PUT", &format!("/v1/blobs/{d}"), &[], data.to_vec()).await;
    assert!(st == 201 || st == 200, "PUT {d}: {st}");
    d
}

async fn assert_intact(s: &Server, d: &str, data: &[u8], when: &str) {
    let (st, _, body) = req(s, "GET", &format!("/v1/blobs/{d}"), &[], "").await;
    assert_eq!(st, 200, "{when}: GET {d}");
    assert!(
        body == data,
        "{when}: blob {d} came back with {} bytes, not its own",
        body.len()
    );
}

#[tokio::test]
async fn deleting_the_empty_blob_after_restart_keeps_other_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data, &[]);
    let a = noise(1, 4096);
    let a_d = put(&s, &a).await;
    let empty = put(&s, b"").await;
    assert_eq!(s.terminate(), Some(0));

    let s = Server::start(&data, &[]);
    let x = noise(2, 3 << 20); // several pieces
    let x_d = put(&s, &x).await;
    let small = noise(3, 100); // one piece, written with its commit
    let small_d = put(&s, &small).await;
    let (st, _, _) = req(&s, "DELETE", &format!("/v1/blobs/{empty}"), &[], "").await;
    assert_eq!(st, 204);
    assert_intact(&s, &x_d, &x, "after deleting the empty blob").await;
    assert_intact(&s, &small_d, &small, "after deleting the empty blob").await;
    assert_intact(&s, &a_d, &a, "after deleting the empty blob").await;

    // The empty blob comes back and goes again, across another restart.
    put(&s, b"").await;
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&data, &[]);
    let y = noise(4, 2 << 20);
    let y_d = put(&s, &y).await;
    let (st, _, _) = req(&s, "DELETE", &format!("/v1/blobs/{empty}"), &[], "").await;
    assert_eq!(st, 204);
    for (d, bytes) in [(&x_d, &x), (&small_d, &small), (&a_d, &a), (&y_d, &y)] {
        assert_intact(&s, d, bytes, "after the second restart").await;
    }
    // A deleted blob's id is not reused either: delete X, restart, store Z, X's old id stays unused.
    let (st, _, _) = req(&s, "DELETE", &format!("/v1/blobs/{x_d}"), &[], "").await;
    assert_eq!(st, 204);
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&data, &[]);
    let z = noise(5, 2 << 20);
    let z_d = put(&s, &z).await;
    for (d, bytes) in [(&small_d, &small), (&a_d, &a), (&y_d, &y), (&z_d, &z)] {
        assert_intact(&s, d, bytes, "after deleting X and restarting").await;
    }
}

#[tokio::test]
async fn evicting_the_empty_blob_after_restart_keeps_other_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = [("CAS_MAX_SIZE", "2560KiB")];
    let s = Server::start(&data, &env);
    let empty = put(&s, b"").await;
    assert_eq!(s.terminate(), Some(0));

    let s = Server::start(&data, &env);
    std::thread::sleep(Duration::from_millis(1100)); // access times are in seconds
    let x = noise(10, 1 << 20);
    let x_d = put(&s, &x).await; // the first id handed out after the restart
    let y = noise(11, 1 << 20);
    let y_d = put(&s, &y).await;
    std::thread::sleep(Duration::from_millis(1100));
    assert_intact(&s, &x_d, &x, "before eviction").await; // X is now more recent than Y
    std::thread::sleep(Duration::from_millis(1100));
    let z = noise(12, 1 << 20);
    let z_d = put(&s, &z).await; // 3 MiB > 2.5 MiB: evict the empty blob and Y
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{y_d}"), &[], "").await;
        if st == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "Y was not evicted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{empty}"), &[], "").await;
    assert_eq!(
        st, 404,
        "the least recently used blob, the empty one, was evicted first"
    );
    assert_intact(&s, &x_d, &x, "after eviction").await;
    assert_intact(&s, &z_d, &z, "after eviction").await;
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&data, &env);
    assert_intact(&s, &x_d, &x, "after eviction and a restart").await;
    assert_intact(&s, &z_d, &z, "after eviction and a restart").await;
}
