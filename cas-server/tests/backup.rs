//! Store backups through the real binary: `cas-server backup …` and
//! `POST/GET /v1/admin/backups`, restored stores served by a new server.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{noise, req, Server};
use reprovm_sdk::{Cas, CasExt, Digest, HttpCas};

/// Runs `cas-server ARGS`; returns exit code, stdout, stderr.
fn cas(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cas-server"))
        .args(args)
        .env_remove("CAS_BACKUP_DIR")
        .env_remove("CAS_DATA_DIR")
        .output()
        .expect("run cas-server");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Like [`cas`], but the command must succeed.
fn cas_ok(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    let (code, stdout, stderr) = cas(args);
    assert_eq!(code, 0, "cas-server {:?} failed:\n{stdout}\n{stderr}", os(args));
    stdout
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<String> {
    args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect()
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// (digest, seed, len) of a blob made by [`noise`].
type Stored = (Digest, u64, usize);

const SIZES: [usize; 5] = [10, 5_000, 300_000, 1 << 20, 2_500_000];

async fn upload(server: &Server, seeds: std::ops::Range<u64>, sizes: &[usize]) -> Vec<Stored> {
    let client = HttpCas::new(server.url()).unwrap();
    let mut out = Vec::new();
    for seed in seeds {
        let len = sizes[seed as usize % sizes.len()];
        let d = client.put_bytes(Bytes::from(noise(seed, len))).await.unwrap();
        out.push((d, seed, len));
    }
    out
}

/// Starts a server on `data_dir` and checks that it serves every blob byte for byte.
async fn assert_serves(data_dir: &Path, blobs: &[Stored]) {
    let s = Server::start(data_dir, &[]);
    let client = HttpCas::new(s.url()).unwrap();
    let digests: Vec<Digest> = blobs.iter().map(|b| b.0).collect();
    assert_eq!(
        client.find_missing(&digests).await.unwrap(),
        vec![],
        "blobs missing after restore"
    );
    for (d, seed, len) in blobs {
        assert_eq!(client.get_bytes(d).await.unwrap(), noise(*seed, *len), "blob {d}");
    }
    assert_eq!(s.terminate(), Some(0));
}

fn list_ids(backups: &Path) -> Vec<u64> {
    let out = cas_ok(&[&"backup", &"list", &"--json", &"--from", &backups]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .inspect(|b| assert_eq!(b["has_manifest"], true))
        .map(|b| b["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn create_list_verify_restore_prune_and_tamper() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, backups) = (tmp.path().join("data"), tmp.path().join("backups"));

    let s = Server::start(&data, &[]);
    let first = upload(&s, 0..24, &SIZES).await;
    assert_eq!(s.terminate(), Some(0));
    let out = cas_ok(&[&"backup", &"create", &"--data-dir", &data, &"--to", &backups, &"--json"]);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["id"], 1, "{out}");
    let size1 = dir_size(&backups);

    // A second backup after a few more uploads copies only the new files.
    let s = Server::start(&data, &[]);
    let second = upload(&s, 100..103, &[5_000]).await;
    assert_eq!(s.terminate(), Some(0));
    cas_ok(&[&"backup", &"create", &"--data-dir", &data, &"--to", &backups]);
    let (size2, store) = (dir_size(&backups), dir_size(&data));
    let growth = size2 - size1;
    eprintln!("store {store} bytes; backup dir {size1} -> {size2} bytes");
    assert!(size1 > store / 2, "first backup is full: {size1} of {store}");
    assert!(
        growth < store / 10,
        "incremental backup grew by {growth} bytes; store is {store}"
    );
    assert_eq!(list_ids(&backups), [1, 2]);
    let human = cas_ok(&[&"backup", &"list", &"--from", &backups]);
    assert!(human.contains("manifest") && human.lines().count() == 3, "{human}");

    let out = cas_ok(&[&"backup", &"verify", &"--from", &backups]);
    assert_eq!(out.matches("checksums OK").count(), 2, "{out}");
    let out = cas_ok(&[&"backup", &"verify", &"--deep", &"--from", &backups, &"--id", &"2"]);
    assert!(out.contains("27 blobs") && out.contains(" 0 corrupt"), "{out}");
    assert!(!backups
        .read_dir()
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".cas-verify")));

    // Restore the latest and the first backup into new dirs.
    let all: Vec<Stored> = first.iter().chain(&second).cloned().collect();
    let restored = tmp.path().join("restored");
    let out = cas_ok(&[&"backup", &"restore", &"--from", &backups, &"--to", &restored]);
    assert!(out.contains("27 blobs") && out.contains("verified"), "{out}");
    assert_serves(&restored, &all).await;
    let older = tmp.path().join("older");
    cas_ok(&[
        &"backup", &"restore", &"--from", &backups, &"--id", &"1", &"--to", &older,
    ]);
    assert_serves(&older, &first).await;
    let s = Server::start(&older, &[]);
    let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{}", second[0].0), &[], "").await;
    assert_eq!(st, 404, "backup 1 predates the second upload");
    drop(s);

    // Prune keeps the newest; its shared files are intact.
    let out = cas_ok(&[&"backup", &"prune", &"--keep", &"1", &"--from", &backups]);
    assert!(out.contains("removed backups [1]"), "{out}");
    assert_eq!(list_ids(&backups), [2]);
    assert!(!backups.join("manifests/1.json").exists());
    cas_ok(&[&"backup", &"verify", &"--deep", &"--from", &backups]);

    // Flip one byte of the largest shared file: verify names it and fails.
    let victim = std::fs::read_dir(backups.join("shared_checksum"))
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    let name = format!("shared_checksum/{}", victim.file_name().unwrap().to_string_lossy());
    let (code, out, err) = cas(&[&"backup", &"verify", &"--from", &backups]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains(&format!("MODIFIED {name}")), "{out}");
    assert!(err.contains("verification failed"), "{err}");
    let (code, out, _) = cas(&[&"backup", &"verify", &"--deep", &"--from", &backups]);
    assert_eq!(code, 1, "{out}");
    // A restore of a tampered backup fails and leaves nothing behind.
    let bad = tmp.path().join("bad");
    let (code, _, err) = cas(&[&"backup", &"restore", &"--from", &backups, &"--to", &bad]);
    assert_eq!(code, 1, "{err}");
    assert!(!bad.exists());

    // Usage errors exit 2, operational errors 1.
    assert_eq!(cas(&[&"backup", &"prune", &"--keep", &"0", &"--from", &backups]).0, 2);
    assert_eq!(cas(&[&"backup", &"list"]).0, 2);
    let nowhere = tmp.path().join("nowhere");
    let (code, _, err) = cas(&[&"backup", &"list", &"--from", &nowhere]);
    assert_eq!(code, 1);
    assert!(err.contains("no backup directory"), "{err}");
    assert!(!nowhere.exists(), "list must not create the directory");
}

#[tokio::test]
async fn restore_refuses_live_and_existing_data_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, backups) = (tmp.path().join("data"), tmp.path().join("backups"));
    let s = Server::start(&data, &[]);
    let blobs = upload(&s, 0..6, &SIZES).await;
    // An offline backup of a running server's dir is refused with a pointer to the online one.
    let (code, _, err) = cas(&[&"backup", &"create", &"--data-dir", &data, &"--to", &backups]);
    assert_eq!(code, 1);
    assert!(err.contains("in use") && err.contains("/v1/admin/backups"), "{err}");
    assert_eq!(s.terminate(), Some(0));
    cas_ok(&[&"backup", &"create", &"--data-dir", &data, &"--to", &backups]);

    // Over an existing data dir: refused without --force.
    let (code, _, err) = cas(&[&"backup", &"restore", &"--from", &backups, &"--to", &data]);
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");
    // ... and refused even with --force while a server has it open.
    let s = Server::start(&data, &[]);
    let (code, _, err) = cas(&[&"backup", &"restore", &"--from", &backups, &"--to", &data, &"--force"]);
    assert_eq!(code, 1);
    assert!(err.contains("in use"), "{err}");
    let client = HttpCas::new(s.url()).unwrap();
    assert_eq!(client.get_bytes(&blobs[0].0).await.unwrap(), noise(0, SIZES[0]));
    let extra = upload(&s, 50..51, &[1_000]).await;
    assert_eq!(s.terminate(), Some(0));
    // Stopped: --force replaces it with the backup (which predates `extra`).
    cas_ok(&[&"backup", &"restore", &"--from", &backups, &"--to", &data, &"--force"]);
    assert_serves(&data, &blobs).await;
    let s = Server::start(&data, &[]);
    let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{}", extra[0].0), &[], "").await;
    assert_eq!(st, 404);
    drop(s);

    // A non-empty directory that is not a data dir is never overwritten.
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me").unwrap();
    let (code, _, err) = cas(&[&"backup", &"restore", &"--from", &backups, &"--to", &other, &"--force"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a cas-server data dir"), "{err}");
    assert_eq!(std::fs::read_to_string(other.join("notes.txt")).unwrap(), "keep me");
}

#[tokio::test]
async fn online_backup_under_concurrent_uploads_restores_every_acknowledged_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (default_dir, explicit_dir) = (tmp.path().join("default-backups"), tmp.path().join("explicit"));
    let s = Server::start(&data, &[("CAS_BACKUP_DIR", default_dir.to_str().unwrap())]);
    let acked: Arc<Mutex<Vec<Stored>>> = Arc::new(Mutex::new(upload(&s, 0..10, &SIZES).await));
    let stop = Arc::new(AtomicBool::new(false));
    let client = HttpCas::new(s.url()).unwrap();
    let mut workers = Vec::new();
    for w in 0..8u64 {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let seed = 1_000_000 + (w << 32) + i;
                let len = [10usize, 5_000, 300_000, 1 << 20, 1_500_000][(i % 5) as usize];
                let d = client.put_bytes(Bytes::from(noise(seed, len))).await.unwrap();
                acked.lock().unwrap().push((d, seed, len));
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Everything acknowledged before the request is sent must be in the backup.
    let before = acked.lock().unwrap().clone();
    let (st, _, body) = req(&s, "POST", "/v1/admin/backups", &[], "").await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(info["id"], 1, "{info}");
    assert_eq!(info["dir"], default_dir.to_str().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_second = acked.lock().unwrap().clone();
    let to = serde_json::json!({ "to": explicit_dir }).to_string();
    let (st, _, body) = req(
        &s,
        "POST",
        "/v1/admin/backups",
        &[("content-type", "application/json")],
        to,
    )
    .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        before.len() > 20 && acked.lock().unwrap().len() > before.len(),
        "uploads ran before ({}) and during the backup ({})",
        before.len(),
        acked.lock().unwrap().len()
    );

    let (st, _, body) = req(&s, "GET", "/v1/admin/backups", &[], "").await;
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["backups"].as_array().unwrap().len(), 1, "{v}");
    let q = format!("/v1/admin/backups?from={}", explicit_dir.display());
    let (st, _, body) = req(&s, "GET", &q, &[], "").await;
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let (st, _, _) = req(&s, "GET", "/v1/admin/backups?from=/nonexistent/backups", &[], "").await;
    assert_eq!(st, 404);
    // Buckets are supported (tests/backup_bucket.rs); a scheme object_store does not know is not.
    let (st, _, body) = req(&s, "POST", "/v1/admin/backups", &[], r#"{"to":"ftp://bucket/x"}"#).await;
    assert_eq!((st, common::error_code(&body).as_str()), (400, "unsupported_target"));
    let (st, _, _) = req(&s, "DELETE", "/v1/admin/backups", &[], "").await;
    assert_eq!(st, 405);
    assert_eq!(s.terminate(), Some(0));

    cas_ok(&[&"backup", &"verify", &"--deep", &"--from", &default_dir]);
    let restored = tmp.path().join("restored");
    cas_ok(&[&"backup", &"restore", &"--from", &default_dir, &"--to", &restored]);
    assert_serves(&restored, &before).await;
    let restored2 = tmp.path().join("restored2");
    cas_ok(&[&"backup", &"restore", &"--from", &explicit_dir, &"--to", &restored2]);
    assert_serves(&restored2, &before_second).await;
}

#[tokio::test]
async fn backups_endpoint_is_for_admins_only() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        "[[tokens]]\nname = \"ci\"\ntoken = \"write-tok\"\nrole = \"write\"\n\n\
         [[tokens]]\nname = \"ops\"\ntoken = \"admin-tok\"\nrole = \"admin\"\n",
    )
    .unwrap();
    let backups = tmp.path().join("backups");
    let s = Server::start(
        &tmp.path().join("data"),
        &[
            ("CAS_TOKEN_FILE", tokens.to_str().unwrap()),
            ("CAS_BACKUP_DIR", backups.to_str().unwrap()),
        ],
    );
    let (st, _, _) = req(&s, "POST", "/v1/admin/backups", &[], "").await;
    assert_eq!(st, 401);
    let (st, _, _) = req(
        &s,
        "POST",
        "/v1/admin/backups",
        &[("authorization", "Bearer write-tok")],
        "",
    )
    .await;
    assert_eq!(st, 403);
    let (st, _, _) = req(
        &s,
        "GET",
        "/v1/admin/backups",
        &[("authorization", "Bearer write-tok")],
        "",
    )
    .await;
    assert_eq!(st, 403);
    assert!(
        !backups.exists(),
        "a refused request must not touch the backup directory"
    );
    let (st, _, body) = req(
        &s,
        "POST",
        "/v1/admin/backups",
        &[("authorization", "Bearer admin-tok")],
        "",
    )
    .await;
    assert_eq!(st, 201, "{}", String::from_utf8_lossy(&body));
    let (st, _, _) = req(
        &s,
        "GET",
        "/v1/admin/backups",
        &[("authorization", "Bearer admin-tok")],
        "",
    )
    .await;
    assert_eq!(st, 200);
}
