//! The remote tier against real servers: a directory, S3 (moto_server),
//! Azure Blob (azurite) and WebDAV (wsgidav), each started by the test.
//! `scripts/setup.sh --test` installs them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::remote::*;
use common::{noise, req, Server};
use reprovm_sdk::{Cas, CasExt, Digest, HttpCas, RetryPolicy};

fn blobs() -> Vec<Bytes> {
    [0usize, 1, 5000, 1 << 20, 3 * (1 << 20) + 7]
        .iter()
        .enumerate()
        .map(|(i, n)| Bytes::from(noise(i as u64 + 50, *n)))
        .collect()
}

/// Write-behind on one server, read-through on a second with an empty data
/// dir (single-flight), then eviction with read-through on a third.
async fn round_trip(remote: &str) {
    let dir = tempfile::tempdir().unwrap();
    let a = server_with(dir.path(), "a", "", remote);
    let ca = HttpCas::new(a.url()).unwrap();
    let data = blobs();
    let mut digests = Vec::new();
    for b in &data {
        digests.push(ca.put_bytes(b.clone()).await.unwrap());
    }
    let key = Digest::of_blake3(b"an action");
    ca.ac_put(&key, Bytes::from_static(b"action result")).await.unwrap();
    backlog_drained(&a).await;

    let b = server_with(dir.path(), "b", "", remote);
    let cb = HttpCas::new(b.url()).unwrap();
    assert_eq!(
        cb.find_missing(&digests).await.unwrap(),
        vec![],
        "the second server sees the remote's blobs"
    );
    // 16 concurrent readers of the largest blob: all get it, one remote fetch.
    let big = *digests.last().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let cb = cb.clone();
        tasks.push(tokio::spawn(async move { cb.get_bytes(&big).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), *data.last().unwrap());
    }
    assert_eq!(
        stats(&b).await["remote"]["downloads"],
        1,
        "single-flight: one fetch for 16 readers"
    );
    for (d, bytes) in digests.iter().zip(&data) {
        assert_eq!(&cb.get_bytes(d).await.unwrap(), bytes);
    }
    assert_eq!(
        cb.ac_get(&key).await.unwrap().unwrap(),
        Bytes::from_static(b"action result")
    );
    drop(b);

    // A small local tier evicts, and what it evicted is read back through the remote.
    let c = server_with(dir.path(), "c", "max_size = \"2MiB\"", remote);
    let cc = HttpCas::new(c.url()).unwrap();
    let mut more = Vec::new();
    for i in 0..6u64 {
        let bytes = Bytes::from(noise(900 + i, 1 << 20));
        more.push((cc.put_bytes(bytes.clone()).await.unwrap(), bytes));
    }
    backlog_drained(&c).await;
    wait_for(&c, "eviction", 30, |st| {
        st["blobs"].as_u64().unwrap() < 6 && st["evictions"].as_u64().unwrap() > 0
    })
    .await;
    for (d, bytes) in &more {
        assert_eq!(
            &cc.get_bytes(d).await.unwrap(),
            bytes,
            "evicted blob read through the remote"
        );
    }
}

#[tokio::test]
async fn directory_remote() {
    let remote_dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote_dir.path().display());
    round_trip(&format!("url = \"{url}\"\n")).await;
    // The layout is readable with standard tools: cas/<2 hex>/<digest>.
    let d = Digest::of_blake3(&noise(50, 0));
    assert!(remote_dir
        .path()
        .join("cas")
        .join(&d.to_hex()[..2])
        .join(d.to_hex())
        .exists());
}

#[tokio::test]
async fn s3_remote_with_moto() {
    let port = free_port();
    let _moto = moto(port);
    round_trip(&s3_config(port)).await;

    // 10,000 digests unknown locally: the server asks the bucket in bounded parallel batches.
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), "m", "", &s3_config(port));
    let client = HttpCas::new(s.url()).unwrap();
    let known = client.put_bytes(Bytes::from_static(b"known")).await.unwrap();
    backlog_drained(&s).await;
    let mut digests: Vec<Digest> = (0..9_999u32).map(|i| Digest::of_blake3(&i.to_be_bytes())).collect();
    digests.push(known);
    let started = Instant::now();
    let missing = client.find_missing(&digests).await.unwrap();
    eprintln!(
        "blobs:missing with 10,000 digests against moto S3: {:?}",
        started.elapsed()
    );
    assert_eq!(missing.len(), 9_999);
    assert!(!missing.contains(&known));
}

#[tokio::test]
async fn azure_remote_with_azurite() {
    // object_store's emulator mode talks to azurite's default port.
    let dir = tempfile::tempdir().unwrap();
    let _azurite = spawn(
        Command::new("azurite-blob")
            .args([
                "--silent",
                "--skipApiVersionCheck",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "10000",
                "--location",
            ])
            .arg(dir.path()),
        10000,
        "azurite-blob",
    );
    let status = Command::new("python3")
        .args(["-c", "from azure.storage.blob import BlobServiceClient as B; B.from_connection_string('UseDevelopmentStorage=true').create_container('cache')"])
        .status()
        .unwrap();
    assert!(status.success(), "creating the container");
    round_trip("url = \"az://cache/team\"\n[remote.options]\nazure_storage_use_emulator = \"true\"\n").await;
}

#[tokio::test]
async fn webdav_remote_with_wsgidav() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _dav = spawn(
        Command::new("wsgidav")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--auth",
                "anonymous",
                "--root",
            ])
            .arg(dir.path()),
        port,
        "wsgidav",
    );
    round_trip(&format!("url = \"http://127.0.0.1:{port}/cache\"\nallow_http = true\n")).await;
}

#[tokio::test]
async fn corrupt_remote_object_is_not_served() {
    let remote_dir = tempfile::tempdir().unwrap();
    let remote = format!("url = \"file://{}\"\n", remote_dir.path().display());
    let dir = tempfile::tempdir().unwrap();
    let a = server_with(dir.path(), "a", "", &remote);
    let data = Bytes::from(noise(7, 10_000));
    let d = HttpCas::new(a.url()).unwrap().put_bytes(data).await.unwrap();
    backlog_drained(&a).await;
    let path = remote_dir.path().join("cas").join(&d.to_hex()[..2]).join(d.to_hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5000] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    let b = server_with(dir.path(), "b", "", &remote);
    let (status, _, body) = req(&b, "GET", &format!("/v1/blobs/{d}"), &[], "").await;
    assert_eq!(status, 500, "{}", String::from_utf8_lossy(&body));
    assert_eq!(common::error_code(&body), "corrupt");
    assert_eq!(stats(&b).await["blobs"], 0, "the corrupt copy was not kept");
}

/// S3 goes away during 1,000 uploads: they all succeed locally, /ready shows
/// the backlog, a restart keeps it, and once S3 is back it drains and every
/// object is in the bucket and verifies.
#[tokio::test]
async fn s3_outage_backlog_survives_restart_and_drains() {
    let port = free_port();
    let moto_proc = moto(port);
    let dir = tempfile::tempdir().unwrap();
    let s = server_with(dir.path(), "a", "", &s3_config(port));
    drop(moto_proc);

    let client = HttpCas::builder(s.url())
        .with_retry(RetryPolicy::none())
        .build()
        .unwrap();
    let mut digests = Vec::new();
    for chunk in (0..1000u64).collect::<Vec<_>>().chunks(50) {
        let mut tasks = Vec::new();
        for &i in chunk {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                client
                    .put_bytes(Bytes::from(noise(10_000 + i, 1000 + i as usize)))
                    .await
            }));
        }
        for t in tasks {
            digests.push(t.await.unwrap().expect("uploads succeed locally while S3 is down"));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, body) = req(&s, "GET", "/ready", &[], "").await;
        let ready: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if status == 503 && ready["remote"]["reachable"] == false {
            assert!(ready["remote"]["sync_backlog"].as_u64().unwrap() > 0, "{ready}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never reported the unreachable remote: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.terminate(), Some(0));

    let s = server_with(dir.path(), "a", "", &s3_config(port));
    let backlog = stats(&s).await["remote"]["sync_backlog"].as_u64().unwrap();
    assert!(backlog > 0, "the backlog survives a restart");
    let _moto = moto(port);
    backlog_drained(&s).await;

    let bucket = moto_bucket(port);
    let started = Instant::now();
    assert_eq!(
        bucket.find_missing(&digests).await.unwrap(),
        vec![],
        "every object is in the bucket"
    );
    eprintln!("find_missing of 1000 digests against moto: {:?}", started.elapsed());
    for (i, d) in digests.iter().enumerate().step_by(37) {
        let got = bucket.get_bytes(d).await.expect("object verifies");
        assert_eq!(got.len(), 1000 + i);
    }
}

fn sync_cmd(args: &[&str], cfg: &Path, data: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cas-server"))
        .arg("sync")
        .args(args)
        .arg("--config")
        .arg(cfg)
        .arg("--data-dir")
        .arg(data)
        .env("CAS_LOG_LEVEL", "error")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sync_commands_push_pull_status() {
    let dir = tempfile::tempdir().unwrap();
    let remote_dir = dir.path().join("bucket");
    let (d1, d2) = (dir.path().join("d1"), dir.path().join("d2"));
    // Blobs stored before any remote was configured.
    let s = Server::start(&d1, &[]);
    let client = HttpCas::new(s.url()).unwrap();
    let mut stored = Vec::new();
    for i in 0..3u64 {
        let b = Bytes::from(noise(300 + i, 20_000));
        stored.push((client.put_bytes(b.clone()).await.unwrap(), b));
    }
    let cfg = dir.path().join("sync.toml");
    std::fs::write(&cfg, format!("[remote]\nurl = \"file://{}\"\n", remote_dir.display())).unwrap();
    // The server holds the data dir: the command says so instead of corrupting anything.
    let (code, _, err) = sync_cmd(&["status"], &cfg, &d1);
    assert_ne!(code, 0);
    assert!(err.contains("is cas-server running"), "{err}");
    assert_eq!(s.terminate(), Some(0));

    let (code, out, err) = sync_cmd(&["status"], &cfg, &d1);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("reachable:    true") && out.contains("sync backlog: 0"),
        "{out}"
    );
    let (code, out, err) = sync_cmd(&["push"], &cfg, &d1);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("queued 3 blobs"), "{out}");
    for (d, _) in &stored {
        assert!(remote_dir.join("cas").join(&d.to_hex()[..2]).join(d.to_hex()).exists());
    }
    let (code, out, err) = sync_cmd(&["pull"], &cfg, &d2);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 wanted, 0 already local, 3 fetched, 0 failed"), "{out}");
    let (code, out, _) = sync_cmd(&["pull", &stored[0].0.to_hex()], &cfg, &d2);
    assert_eq!(code, 0);
    assert!(out.contains("1 wanted, 1 already local"), "{out}");
    // The pulled store serves the blobs without any remote.
    let s2 = Server::start(&d2, &[]);
    let c2 = HttpCas::new(s2.url()).unwrap();
    for (d, b) in &stored {
        assert_eq!(&c2.get_bytes(d).await.unwrap(), b);
    }
}
