//! The tiered store under deletes and outages (issue 10, items 3 and 4):
//! `blobs:missing` never reports a blob that GET cannot serve, and with the
//! remote down, uploads (with `Expect: 100-continue`, as curl sends) are
//! acknowledged by the local tier while reads degrade instead of failing.
//! S3 is moto, started by the test; the library-level case uses a real
//! RocksDB and a real directory bucket.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cas_server::store::rocks::{RocksStore, StoreOptions};
use cas_server::store::sync_queue::SyncItem;
use cas_server::store::tiered::{RemoteMode, TieredStore};
use common::remote::*;
use common::{noise, req, Server};
use reprovm_sdk::object_store::ObjectStoreCas;
use reprovm_sdk::{Cas, CasExt, Digest};

async fn missing(s: &Server, digests: &[&str]) -> Vec<String> {
    let body = serde_json::json!({ "digests": digests }).to_string();
    let (st, _, b) = req(s, "POST", "/v1/blobs:missing", &[], body).await;
    assert_eq!(st, 200, "blobs:missing: {}", String::from_utf8_lossy(&b));
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
    v["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn missing_tells_the_truth_after_deleting_a_synced_blob() {
    let port = free_port();
    let _moto = moto(port);
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), "a", "", &s3_config(port));
    let data = noise(1, 10_000);
    let d = Digest::of_blake3(&data).to_hex();
    let (st, _, _) = req(&s, "PUT", &format!("/v1/blobs/{d}"), &[], data).await;
    assert_eq!(st, 201);
    backlog_drained(&s).await;
    assert_eq!(missing(&s, &[&d]).await, Vec::<String>::new(), "synced: present");

    let (st, _, _) = req(&s, "DELETE", &format!("/v1/blobs/{d}"), &[], "").await;
    assert_eq!(st, 204);
    let (st, _, _) = req(&s, "GET", &format!("/v1/blobs/{d}"), &[], "").await;
    assert_eq!(st, 404, "deleted from both tiers");
    assert_eq!(
        missing(&s, &[&d]).await,
        vec![d.clone()],
        "find_missing agrees with GET"
    );
    // And after a restart (the record of what the remote holds is on disk).
    assert_eq!(s.terminate(), Some(0));
    let s = server_with(dir.path(), "a", "", &s3_config(port));
    assert_eq!(missing(&s, &[&d]).await, vec![d.clone()]);
    let (st, _, _) = req(&s, "GET", &format!("/v1/blobs/{d}"), &[], "").await;
    assert_eq!(st, 404);
}

/// The uploader took an item from the queue; the blob was deleted before it was copied.
#[tokio::test]
async fn an_item_deleted_before_its_upload_is_not_remembered_as_remote() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).unwrap();
    let opts = StoreOptions {
        track_sync: true,
        ..StoreOptions::default()
    };
    let local = RocksStore::open(dir.path().join("local"), opts).unwrap();
    let remote: Arc<dyn Cas> =
        Arc::new(ObjectStoreCas::from_url(&format!("file://{}", bucket.display()), Vec::new()).unwrap());
    let tier = TieredStore::new(local.clone(), remote, RemoteMode::WriteBehind);
    let d = tier.put_bytes(Bytes::from(noise(2, 5000))).await.unwrap();
    assert_eq!(local.sync_backlog(), 1);
    assert!(local.delete_blob(&d).unwrap(), "deleted before its upload");
    assert_eq!(local.sync_backlog(), 0, "the delete took it off the queue");
    tier.push_item(SyncItem::Blob(d)).await.unwrap(); // the uploader's copy of the item
    assert_eq!(
        tier.find_missing(&[d]).await.unwrap(),
        vec![d],
        "never uploaded: missing"
    );
    assert!(tier.get(&d, None).await.is_err(), "and GET cannot serve it");
}

fn curl_put_expect(url: &str, file: &std::path::Path) -> (String, Duration) {
    let started = Instant::now();
    let code = common::curl_put(url, file, &["-H", "Expect: 100-continue", "--expect100-timeout", "30"]);
    (code, started.elapsed())
}

#[tokio::test]
async fn remote_outage_degrades_reads_and_never_fails_uploads() {
    let port = free_port();
    let moto_proc = moto(port);
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), "a", "", &s3_config(port));
    let stored = noise(3, 2000);
    let stored_d = Digest::of_blake3(&stored).to_hex();
    assert_eq!(
        req(&s, "PUT", &format!("/v1/blobs/{stored_d}"), &[], stored.clone())
            .await
            .0,
        201
    );
    backlog_drained(&s).await;
    drop(moto_proc); // S3 is down from here on

    // Uploads with `Expect: 100-continue` (curl sends it for bodies over 1 KiB) are taken locally.
    let mut uploaded = Vec::new();
    for (i, n) in [2000usize, 64 << 10, 3 << 20].into_iter().enumerate() {
        let data = noise(100 + i as u64, n);
        let d = Digest::of_blake3(&data).to_hex();
        let file = dir.path().join(format!("blob{i}"));
        std::fs::write(&file, &data).unwrap();
        let (code, took) = curl_put_expect(&format!("{}/v1/blobs/{d}", s.url()), &file);
        assert_eq!(
            code, "201",
            "PUT of {n} bytes with Expect: 100-continue during the outage (took {took:?})"
        );
        // The same through bazel's path, and again (now stored locally: 200 without the body).
        let sha = Digest::of_sha256(&data).to_hex();
        let (code, _) = curl_put_expect(&format!("{}/cas/{sha}", s.url()), &file);
        assert_eq!(code, "201", "bazel PUT during the outage");
        let (code, _) = curl_put_expect(&format!("{}/cas/{sha}", s.url()), &file);
        assert_eq!(code, "200", "a repeated PUT is answered from the local tier");
        uploaded.push((d, data));
    }
    for (d, data) in &uploaded {
        let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{d}"), &[], "").await;
        assert_eq!((st, body.len()), (200, data.len()));
    }

    // Reads the local tier can answer degrade instead of failing.
    let unknown = Digest::of_blake3(b"never stored").to_hex();
    let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{unknown}"), &[], "").await;
    assert_eq!(st, 404, "HEAD of a blob the local tier lacks: not found, not an error");
    let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{stored_d}"), &[], "").await;
    assert_eq!(st, 200, "HEAD of a local blob");
    let all: Vec<&str> = uploaded
        .iter()
        .map(|(d, _)| d.as_str())
        .chain([unknown.as_str()])
        .collect();
    assert_eq!(
        missing(&s, &all).await,
        vec![unknown.clone()],
        "blobs:missing from the local tier"
    );
    let ac = Digest::of_sha256(b"an action").to_hex();
    let (st, _, _) = req(&s, "GET", &format!("/ac/{ac}"), &[], "").await;
    assert_eq!(st, 404, "action cache GET: a miss, not an error");
    let (st, _, _) = req(&s, "PUT", &format!("/ac/{ac}"), &[], "result").await;
    assert_eq!(st, 200, "action cache PUT is taken locally");
    let (st, _, body) = req(&s, "GET", &format!("/ac/{ac}"), &[], "").await;
    assert_eq!((st, &body[..]), (200, &b"result"[..]));

    // S3 back (moto starts empty): the backlog drains into the bucket.
    let _moto = moto(port);
    backlog_drained(&s).await;
    let bucket = moto_bucket(port);
    for (d, data) in &uploaded {
        let got = bucket
            .get_bytes(&Digest::parse(d).unwrap())
            .await
            .expect("in the bucket");
        assert!(got == data[..], "bucket copy of {d}");
    }
}

#[tokio::test]
async fn the_backlog_count_follows_the_queue() {
    let port = free_port();
    let moto_proc = moto(port);
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), "a", "", &s3_config(port));
    drop(moto_proc);
    let mut digests = Vec::new();
    for i in 0..20u64 {
        let data = noise(200 + i, 3000);
        let d = Digest::of_blake3(&data).to_hex();
        assert_eq!(
            req(&s, "PUT", &format!("/v1/blobs/{d}"), &[], data.clone()).await.0,
            201
        );
        // The same bytes again: no second queue entry.
        assert_eq!(req(&s, "PUT", &format!("/v1/blobs/{d}"), &[], data).await.0, 200);
        digests.push(d);
    }
    let key = Digest::of_blake3(b"action").to_hex();
    for _ in 0..3 {
        assert_eq!(req(&s, "PUT", &format!("/v1/ac/{key}"), &[], "v").await.0, 200);
    }
    wait_for(&s, "a backlog of 21", 10, |st| st["remote"]["sync_backlog"] == 21).await;
    assert_eq!(s.terminate(), Some(0));
    let s = server_with(dir.path(), "a", "", &s3_config(port));
    wait_for(&s, "a backlog of 21 after a restart", 10, |st| {
        st["remote"]["sync_backlog"] == 21
    })
    .await;
    let _moto = moto(port);
    backlog_drained(&s).await;
    let (_, _, m) = req(&s, "GET", "/metrics", &[], "").await;
    let text = String::from_utf8_lossy(&m);
    assert!(
        text.lines().any(|l| l.trim() == "reprovm_sync_backlog 0"),
        "metrics show the drained backlog"
    );
}
