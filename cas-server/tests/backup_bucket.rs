//! Store backups kept in a bucket (S3 through moto_server): create twice
//! (the second uploads only new files), verify --deep, and restore from the
//! bucket alone (an empty local mirror) to a data dir a new server serves.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{noise, Server};
use reprovm_sdk::{CasExt, HttpCas};

struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn backup(args: &[&str], port: u16, cache: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cas-server"))
        .arg("backup")
        .args(args)
        .env("AWS_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("CAS_BACKUP_CACHE", cache)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn backups_to_and_restores_from_a_bucket() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let moto = Moto(
        Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (scripts/setup.sh --test)"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "moto_server did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("http://127.0.0.1:{port}/backups")])
        .status()
        .unwrap()
        .success());

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cache = dir.path().join("mirror");
    let url = "s3://backups/cas/prod";
    let mut stored = Vec::new();
    for round in 0..2u64 {
        let s = Server::start(&data, &[]);
        let client = HttpCas::new(s.url()).unwrap();
        for i in 0..20u64 {
            let b = Bytes::from(noise(round * 100 + i, 30_000 + i as usize * 1000));
            stored.push((client.put_bytes(b.clone()).await.unwrap(), b));
        }
        assert_eq!(s.terminate(), Some(0));
        let (ok, out) = backup(
            &["create", "--data-dir", data.to_str().unwrap(), "--to", url],
            port,
            &cache,
        );
        assert!(ok, "{out}");
        let uploaded: usize = out
            .split("bucket updated: ")
            .nth(1)
            .and_then(|s| s.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no upload count in {out}"));
        eprintln!("round {round}: {uploaded} files uploaded");
        assert!(uploaded > 0);
    }
    // An online backup of a running server straight to the bucket.
    let aws = [
        ("AWS_ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        (
            "CAS_BACKUP_CACHE",
            dir.path().join("server-mirror").to_string_lossy().into_owned(),
        ),
    ];
    let env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start(&data, &env);
    let (status, _, body) = common::req(&s, "POST", "/v1/admin/backups", &[], format!("{{\"to\": \"{url}\"}}")).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = common::req(&s, "GET", &format!("/v1/admin/backups?from={url}"), &[], "").await;
    let listed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, listed["backups"].as_array().map(Vec::len)),
        (200, Some(3)),
        "{listed}"
    );
    assert_eq!(s.terminate(), Some(0));

    // A fresh machine: nothing local, everything comes from the bucket.
    std::fs::remove_dir_all(&cache).unwrap();
    let (ok, out) = backup(&["list", "--from", url], port, &cache);
    assert!(
        ok && out
            .lines()
            .filter(|l| l.trim_start().starts_with(['1', '2', '3']))
            .count()
            == 3,
        "{out}"
    );
    let (ok, out) = backup(&["verify", "--deep", "--from", url], port, &cache);
    assert!(ok, "{out}");
    assert!(out.contains("40 blobs"), "{out}");
    std::fs::remove_dir_all(&cache).unwrap();
    let restored = dir.path().join("restored");
    let (ok, out) = backup(
        &["restore", "--from", url, "--to", restored.to_str().unwrap()],
        port,
        &cache,
    );
    assert!(ok, "{out}");
    drop(moto);
    let s = Server::start(&restored, &[]);
    let client = HttpCas::new(s.url()).unwrap();
    for (d, b) in &stored {
        assert_eq!(&client.get_bytes(d).await.unwrap(), b);
    }
}
