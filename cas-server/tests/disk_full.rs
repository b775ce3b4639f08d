//! Disk full, for real: the server runs on a 64 MiB tmpfs that the test mounts
//! (root needed; CI runs as root). Uploads past the space are refused with
//! 507, nothing stored before is damaged, and once space is freed uploads
//! succeed again, without a restart. The free-space reserve is set to 1 MiB so
//! that RocksDB's own ENOSPC path is exercised, not only the up-front check.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::{noise, req, Server};
use reprovm_sdk::{Cas, CasExt, Digest, HttpCas};

/// A tmpfs mounted for the test; unmounted on drop, whatever happened.
struct Tmpfs {
    mnt: PathBuf,
}

impl Tmpfs {
    fn mount(mnt: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mnt)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { mnt: mnt.to_path_buf() }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a server that has not exited yet): detach it lazily.
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

#[tokio::test]
async fn uploads_past_the_space_get_507_and_succeed_again_once_space_is_freed() {
    assert!(
        is_root(),
        "this test mounts a tmpfs and must run as root (CI does); run it with sudo, it does not skip"
    );
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("mnt"), "64m");
    // Ballast that the test deletes later to free space.
    let ballast = fs.mnt.join("ballast");
    std::fs::write(&ballast, vec![0u8; 16 << 20]).unwrap();
    let data_dir = fs.mnt.join("data");
    let s = Server::start(&data_dir, &[("CAS_MIN_FREE_SPACE", "1MiB")]);
    let c = HttpCas::new(s.url()).unwrap();

    // Some blobs stored before the disk fills: they must survive intact.
    let mut stored: Vec<(Digest, Bytes)> = Vec::new();
    for i in 0..8u64 {
        let data = Bytes::from(noise(i, 300_000 + i as usize * 70_000));
        stored.push((c.put_bytes(data.clone()).await.unwrap(), data));
    }

    // Fill the disk with incompressible blobs until the server refuses.
    let (mut refused, mut statuses) = (0, Vec::new());
    let mut refused_digests = Vec::new();
    for i in 100..400u64 {
        let data = Bytes::from(noise(i, 900_000 + (i as usize % 7) * 100_000));
        let d = Digest::of_blake3(&data);
        let (st, _, body) = req(&s, "PUT", &format!("/v1/blobs/{d}"), &[], data.clone()).await;
        statuses.push(st);
        match st {
            201 => stored.push((d, data)),
            507 => {
                refused += 1;
                refused_digests.push(d);
                assert_eq!(common::error_code(&body), "insufficient_storage");
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("upload {i}: status {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    assert!(refused >= 5, "the 64 MiB disk never filled: {statuses:?}");
    let ready = req(&s, "GET", "/ready", &[], "").await.0;
    println!(
        "{} blobs stored, then {refused} uploads refused with 507; /ready: {ready}",
        stored.len()
    );

    // Nothing stored is damaged, and nothing refused is half there.
    for (d, data) in &stored {
        assert_eq!(&c.get_bytes(d).await.unwrap(), data, "{d}");
    }
    for d in &refused_digests {
        assert_eq!(req(&s, "HEAD", &format!("/v1/blobs/{d}"), &[], "").await.0, 404);
    }

    // Free space: uploads succeed again, without a restart.
    std::fs::remove_file(&ballast).unwrap();
    let mut after = Vec::new();
    for i in 1000..1004u64 {
        let data = Bytes::from(noise(i, 1 << 20));
        let d = Digest::of_blake3(&data);
        let mut ok = false;
        // The server's free-space reading is cached for a moment; a few tries cover that.
        for attempt in 0..150 {
            let (st, _, body) = req(&s, "PUT", &format!("/v1/blobs/{d}"), &[], data.clone()).await;
            if st == 201 {
                ok = true;
                println!("upload {i} accepted after {attempt} refusals");
                break;
            }
            if attempt % 20 == 0 {
                println!("upload {i} still refused: {}", String::from_utf8_lossy(&body));
            }
            assert_eq!(st, 507, "{}", String::from_utf8_lossy(&body));
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if !ok {
            let log = std::fs::read_to_string(data_dir.join("LOG")).unwrap_or_default();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("rror") || l.contains("ecover") || l.contains("space"))
                .collect();
            panic!(
                "uploads still refused after space was freed; RocksDB LOG:\n{}",
                lines.join("\n")
            );
        }
        after.push((d, data));
    }
    for (d, data) in stored.iter().chain(&after) {
        assert_eq!(&c.get_bytes(d).await.unwrap(), data, "{d}");
    }
    assert_eq!(
        req(&s, "GET", "/ready", &[], "").await.0,
        200,
        "/ready once space is back"
    );
    // And the store is consistent across a restart.
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&data_dir, &[("CAS_MIN_FREE_SPACE", "1MiB")]);
    let c = HttpCas::new(s.url()).unwrap();
    let all: Vec<Digest> = stored.iter().chain(&after).map(|x| x.0).collect();
    assert_eq!(c.find_missing(&all).await.unwrap(), vec![]);
    drop(s);
    drop(fs);
}
