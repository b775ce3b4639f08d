//! `reprovm cache gc` on the embedded store: its roots come from the store itself (so a store
//! restored by `cas-server backup restore` keeps what its action results use), and any root it
//! cannot read stops it before anything is deleted.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use cas_server::{RocksStore, StoreOptions};
use common::{bin, marked, reprovm, workspace};
use reprovm_sdk::{Digest, RefCondition};

const TWO_TASKS: &str = "task a {\n cmd = echo alpha > a.out\n outputs = a.out\n}\n\
task b {\n cmd = cat a.out a.out > b.out\n inputs = a.out\n outputs = b.out\n deps = a\n}\n";

fn cas_server() -> PathBuf {
    let exe = Path::new(bin()).with_file_name("cas-server");
    assert!(
        exe.exists(),
        "{} not found: build it first with `cargo build --release -p cas-server`",
        exe.display()
    );
    exe
}

fn cas_server_cmd(args: &[&str]) {
    let out = Command::new(cas_server())
        .args(args)
        .env("CAS_LOG_LEVEL", "warn")
        .output()
        .expect("run cas-server");
    assert!(
        out.status.success(),
        "cas-server {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The blobs of a cache dir's embedded store.
fn blobs(cache: &Path) -> Vec<Digest> {
    let store = RocksStore::open(cache.join("cas"), StoreOptions::default()).unwrap();
    store.list_blobs().map(|b| b.unwrap().0).collect()
}

#[test]
fn gc_after_backup_restore_keeps_what_results_use_and_the_next_run_hits() {
    let ws = workspace(TWO_TASKS, &[]);
    let d = ws.path();
    let r = reprovm(d, &["--cache-dir", "cache", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(marked(&r, "[+]"), ["a", "b"], "{r:?}");

    let backups = tempfile::tempdir().unwrap();
    let backups = backups.path().to_str().unwrap();
    let data = d.join("cache/cas");
    cas_server_cmd(&[
        "backup",
        "create",
        "--data-dir",
        data.to_str().unwrap(),
        "--to",
        backups,
    ]);
    let restored = d.join("restored/cas");
    cas_server_cmd(&[
        "backup",
        "restore",
        "--from",
        backups,
        "--to",
        restored.to_str().unwrap(),
    ]);
    let before = blobs(&d.join("restored"));
    assert_eq!(before.len(), 2, "two outputs stored");

    let gc = reprovm(d, &["cache", "gc", "--cache-dir", "restored"]);
    assert_eq!(gc.code, 0, "{gc:?}");
    assert!(gc.all().contains("kept 2 blobs, deleted 0"), "{gc:?}");
    assert_eq!(blobs(&d.join("restored")), before);

    std::fs::remove_file(d.join("a.out")).unwrap();
    std::fs::remove_file(d.join("b.out")).unwrap();
    let r = reprovm(d, &["--cache-dir", "restored", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(marked(&r, "[+]").is_empty(), "nothing may rerun: {r:?}");
    assert_eq!(marked(&r, "[*]"), ["a", "b"], "{r:?}");
    assert_eq!(std::fs::read_to_string(d.join("b.out")).unwrap(), "alpha\nalpha\n");

    let stats = reprovm(d, &["cache", "stats", "--cache-dir", "restored"]);
    assert!(stats.stdout.contains("action results:  2"), "{stats:?}");
}

#[test]
fn gc_deletes_nothing_when_a_root_cannot_be_read() {
    let ws = workspace(TWO_TASKS, &[]);
    let d = ws.path();
    let cache = d.join("cache");
    assert_eq!(reprovm(d, &["--cache-dir", "cache", "manifest.rvm"]).code, 0);
    let orphan = Digest::of_blake3(b"nobody uses me");
    let bad_key = Digest::of_blake3(b"a key whose value is garbage");
    {
        let store = RocksStore::open(cache.join("cas"), StoreOptions::default()).unwrap();
        store.put_reader(&orphan, Some(14), &b"nobody uses me"[..]).unwrap();
        store.ac_put_sync(&bad_key, b"{not an action result").unwrap();
    }
    let before = blobs(&cache);
    assert_eq!(before.len(), 3);

    let gc = reprovm(d, &["cache", "gc", "--cache-dir", "cache"]);
    assert_eq!(gc.code, 1, "{gc:?}");
    assert!(gc.stderr.contains(&format!("action result {bad_key}")), "{gc:?}");
    assert!(gc.stderr.contains("gc stopped without deleting anything"), "{gc:?}");
    assert_eq!(blobs(&cache), before, "nothing deleted");

    // A result of another version is as unreadable.
    let other_version = br#"{"version":99,"task":"x","exit_code":0,"duration_ms":0,"outputs":[]}"#;
    let empty_result = br#"{"version":1,"task":"x","exit_code":0,"duration_ms":0,"outputs":[]}"#;
    let snap_ref = "snapshots/docs/2026-01-01T00:00:00.000000000Z";
    let never_stored = Digest::of_blake3(b"a snapshot object nobody stored").to_hex();
    let steps: [(&[u8], Option<&str>, &str); 3] = [
        (other_version, None, "action-result version 99"),
        // Valid results, but a snapshot ref that names no digest...
        (empty_result, Some("not a digest"), "does not hold a snapshot digest"),
        // ...or a snapshot object that is not in the store.
        (empty_result, Some(&never_stored), "is missing from the store"),
    ];
    for (value, ref_value, expected) in steps {
        {
            let store = RocksStore::open(cache.join("cas"), StoreOptions::default()).unwrap();
            store.ac_put_sync(&bad_key, value).unwrap();
            if let Some(v) = ref_value {
                store
                    .ref_put_sync(snap_ref, v.as_bytes(), &RefCondition::Always)
                    .unwrap();
            }
        }
        let gc = reprovm(d, &["cache", "gc", "--cache-dir", "cache"]);
        assert_eq!(gc.code, 1, "{expected}: {gc:?}");
        assert!(gc.stderr.contains(expected), "{expected}: {gc:?}");
        assert_eq!(blobs(&cache), before, "{expected}: nothing deleted");
    }

    // Once every root reads, gc deletes the orphan and only it.
    {
        let store = RocksStore::open(cache.join("cas"), StoreOptions::default()).unwrap();
        store.ref_delete_sync(snap_ref, &RefCondition::Always).unwrap();
    }
    let gc = reprovm(d, &["cache", "gc", "--cache-dir", "cache"]);
    assert_eq!(gc.code, 0, "{gc:?}");
    assert!(gc.all().contains("kept 2 blobs, deleted 1"), "{gc:?}");
    let after = blobs(&cache);
    assert!(!after.contains(&orphan));
    assert_eq!(after.len(), 2);
    let r = reprovm(d, &["--cache-dir", "cache", "manifest.rvm"]);
    assert_eq!(marked(&r, "[*]"), ["a", "b"], "{r:?}");
}
