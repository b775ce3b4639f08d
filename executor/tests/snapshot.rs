//! `reprovm snapshot …` end to end: the real binary against the embedded store, a real
//! cas-server and a `file://` object store, on generated trees (nested and empty dirs, empty
//! files, a 300 MiB file, symlinks, odd names, exec bits, ns mtimes), compared byte for byte.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::{reprovm, Run, Server};
use reprovm_sdk::Digest;

/// `reprovm --cache-dir CACHE ARGS…` in `dir`.
fn rv(dir: &Path, args: &[&str]) -> Run {
    let cache = dir.join("cache");
    // Global flags go after the subcommand (before it, the word would be taken as a manifest).
    let mut all = args.to_vec();
    all.extend_from_slice(&["--cache-dir", cache.to_str().unwrap()]);
    reprovm(dir, &all)
}

/// The JSON object a `--json` command printed last.
fn json(run: &Run) -> serde_json::Value {
    assert_eq!(run.code, 0, "{run:?}");
    let line = run
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no output: {run:?}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {run:?}"))
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// xorshift64*: fast, deterministic, incompressible enough.
struct Rng(u64);

impl Rng {
    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }
}

/// Streams `size` pseudo-random bytes to `path`.
fn random_file(path: &Path, size: u64, seed: u64) {
    let mut f = fs::File::create(path).unwrap();
    let mut rng = Rng(seed | 1);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let k = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..k]);
        f.write_all(&buf[..k]).unwrap();
        left -= k as u64;
    }
}

fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(UNIX_EPOCH + Duration::new(secs, nanos)).unwrap();
}

/// The tree of the issue; returns the number of regular files.
fn make_tree(root: &Path, big: u64) -> u64 {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::create_dir_all(root.join("with space/ünï cødé ✓")).unwrap();
    fs::create_dir_all(root.join("dup1")).unwrap();
    fs::create_dir_all(root.join("dup2/deeper")).unwrap();
    fs::write(root.join("a/b/c/deep.txt"), "deep\n").unwrap();
    fs::write(root.join("a/b/empty.txt"), "").unwrap();
    fs::write(root.join("with space/ünï cødé ✓/naïve file.txt"), "ça marche ✓\n").unwrap();
    fs::write(root.join("tool.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("tool.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("secret"), "s3cr3t").unwrap();
    fs::set_permissions(root.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    random_file(&root.join("dup1/data.bin"), 3 << 20, 7);
    random_file(&root.join("dup2/deeper/data.bin"), 3 << 20, 7);
    random_file(&root.join("big.bin"), big, 42);
    random_file(&root.join("a/small.bin"), 100_000, 9);
    std::os::unix::fs::symlink("a/b/c/deep.txt", root.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("a/b", root.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    set_mtime(&root.join("a/b/c/deep.txt"), 1_600_000_000, 123_456_789);
    set_mtime(&root.join("secret"), 1_000_000_000, 1);
    fs::set_permissions(root.join("a/b/c"), fs::Permissions::from_mode(0o750)).unwrap();
    9
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let mut nb = 0;
        while nb < na {
            let k = fb.read(&mut bb[nb..na]).unwrap();
            if k == 0 {
                return false;
            }
            nb += k;
        }
        if ba[..na] != bb[..na] {
            return false;
        }
        if na == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
    }
}

/// Asserts that `b` is a faithful copy of `a`: names, types, bytes, modes, symlink targets, mtimes.
fn assert_same_tree(a: &Path, b: &Path) {
    let names = |d: &Path| {
        let mut v: Vec<_> = fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    assert_eq!(names(a), names(b), "entries of {} vs {}", a.display(), b.display());
    for name in names(a) {
        let (pa, pb) = (a.join(&name), b.join(&name));
        let (ma, mb) = (fs::symlink_metadata(&pa).unwrap(), fs::symlink_metadata(&pb).unwrap());
        assert_eq!(ma.file_type(), mb.file_type(), "type of {}", pb.display());
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "mtime of {}",
            pb.display()
        );
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
            continue;
        }
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "mode of {}", pb.display());
        if ma.is_dir() {
            assert_same_tree(&pa, &pb);
        } else {
            assert_eq!(ma.len(), mb.len(), "size of {}", pb.display());
            assert!(same_bytes(&pa, &pb), "{} differs", pb.display());
        }
    }
}

#[test]
fn round_trip_of_a_300_mib_tree_then_a_one_byte_edit_uploads_few_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dir) = (tmp.path().join("src"), tmp.path());
    let files = make_tree(&src, 300 << 20);

    let first = json(&rv(dir, &["snapshot", "create", "src", "--name", "big", "--json"]));
    assert_eq!(n(&first, "files_new"), files);
    assert_eq!(n(&first, "dirs"), 9);
    assert_eq!(n(&first, "symlinks"), 3);
    // At most 4 MiB per chunk.
    assert!(n(&first, "chunks_total") >= 300 / 4, "{first}");
    // dup2/deeper/data.bin is dup1/data.bin: its chunks are counted but not sent again.
    assert!(
        n(&first, "bytes_uploaded") <= (300 << 20) + (3 << 20) + 100_100,
        "{first}"
    );
    assert!(n(&first, "chunks_uploaded") < n(&first, "chunks_total"), "{first}");

    let out = rv(dir, &["snapshot", "restore", "big", "restored"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_same_tree(&src, &dir.join("restored"));

    // One byte in the middle of the big file.
    let mut f = fs::File::options()
        .read(true)
        .write(true)
        .open(src.join("big.bin"))
        .unwrap();
    f.seek(SeekFrom::Start(150 << 20)).unwrap();
    let mut b = [0u8];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(150 << 20)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
    drop(f);

    let second = json(&rv(dir, &["snapshot", "create", "src", "--name", "big", "--json"]));
    assert_eq!(n(&second, "files_changed"), 1, "{second}");
    assert_eq!(n(&second, "files_unchanged"), files - 1, "{second}");
    assert_eq!(
        n(&second, "bytes_read"),
        300 << 20,
        "only the big file is re-read: {second}"
    );
    let up = n(&second, "chunks_uploaded");
    assert!((1..=3).contains(&up), "a 1-byte edit uploaded {up} chunks: {second}");
    assert!(n(&second, "bytes_uploaded") <= 3 * (4 << 20), "{second}");
    // Only the trees on the path to big.bin (the root) changed.
    assert_eq!(n(&second, "trees_uploaded"), 1, "{second}");

    let diff = json(&rv(
        dir,
        &[
            "snapshot",
            "diff",
            first["snapshot"].as_str().unwrap(),
            second["snapshot"].as_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(
        diff["changes"],
        serde_json::json!([{"change": "M", "path": "big.bin"}]),
        "{diff}"
    );

    let out = rv(dir, &["snapshot", "restore", "big", "edited", "--include", "big.bin"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(same_bytes(&src.join("big.bin"), &dir.join("edited/big.bin")));
    assert_eq!(fs::read_dir(dir.join("edited")).unwrap().count(), 1);

    let third = json(&rv(dir, &["snapshot", "create", "src", "--name", "big", "--json"]));
    assert_eq!(
        (
            n(&third, "bytes_read"),
            n(&third, "chunks_uploaded"),
            n(&third, "trees_uploaded")
        ),
        (0, 0, 0),
        "an unchanged tree is neither re-read nor re-sent: {third}"
    );
    assert_eq!(n(&third, "files_unchanged"), files);
}

#[test]
fn identical_files_are_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir_all(dir.join("src/b")).unwrap();
    fs::create_dir_all(dir.join("src/c")).unwrap();
    random_file(&dir.join("src/a.bin"), 3 << 20, 1);
    fs::copy(dir.join("src/a.bin"), dir.join("src/b/copy.bin")).unwrap();
    fs::copy(dir.join("src/a.bin"), dir.join("src/c/copy2.bin")).unwrap();
    let s = json(&rv(dir, &["snapshot", "create", "src", "--name", "dedupe", "--json"]));
    let per_file = n(&s, "chunks_total") / 3;
    assert_eq!(n(&s, "chunks_total"), 3 * per_file);
    assert_eq!(n(&s, "chunks_uploaded"), per_file, "{s}");
    assert_eq!(n(&s, "bytes_uploaded"), 3 << 20, "{s}");
    // Blobs: the chunks of one copy, 3 trees (root, b, c) and the snapshot object.
    let stats = rv(dir, &["cache", "stats"]);
    assert!(
        stats.stdout.contains(&format!("blobs:           {}\n", per_file + 4)),
        "{stats:?}"
    );
}

/// Overwrites the first stored piece of `digest` in the embedded store with other bytes of the
/// same length, the way a flipped bit on disk would.
fn corrupt_in_store(cache: &Path, digest: &Digest, content: &[u8]) {
    let store = cas_server::RocksStore::open(cache.join("cas"), cas_server::StoreOptions::default()).unwrap();
    let meta = store.meta(digest).unwrap().expect("chunk stored");
    let mut key = meta.data_id.to_be_bytes().to_vec();
    key.extend_from_slice(&0u32.to_be_bytes());
    let mut piece = vec![0u8]; // raw piece tag
    piece.extend_from_slice(content);
    piece[1] ^= 0x01;
    let db = store.db();
    db.put_cf(db.cf_handle("data").unwrap(), key, piece).unwrap();
    store.flush().unwrap();
}

#[test]
fn verify_catches_a_corrupted_chunk_and_names_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let content = b"hello snapshot, please stay intact\n";
    fs::create_dir_all(dir.join("src/docs")).unwrap();
    fs::write(dir.join("src/docs/readme.txt"), content).unwrap();
    random_file(&dir.join("src/other.bin"), 2 << 20, 3);
    json(&rv(dir, &["snapshot", "create", "src", "--name", "v", "--json"]));
    let ok = rv(dir, &["snapshot", "verify", "v"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.all().contains("no errors"), "{ok:?}");

    let digest = Digest::of_blake3(content);
    corrupt_in_store(&dir.join("cache"), &digest, content);
    let bad = rv(dir, &["snapshot", "verify", "v"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.all().contains(&digest.to_hex()), "{bad:?}");
    assert!(bad.all().contains("docs/readme.txt"), "{bad:?}");
    let j = rv(dir, &["snapshot", "verify", "v", "--json"]);
    assert_eq!(j.code, 1);
    let v: serde_json::Value = serde_json::from_str(j.stdout.trim()).unwrap();
    assert_eq!(v["failed_chunks"][0]["digest"], digest.to_hex(), "{v}");
    assert_eq!(v["failed_chunks"].as_array().unwrap().len(), 1, "{v}");
    // A restore refuses the corrupt chunk too.
    let r = rv(dir, &["snapshot", "restore", "v", "out"]);
    assert_eq!(r.code, 1, "{r:?}");
}

fn blob_present(cache: &Path, d: &Digest) -> bool {
    let store = cas_server::RocksStore::open(cache.join("cas"), cas_server::StoreOptions::default()).unwrap();
    store.meta(d).unwrap().is_some()
}

#[test]
fn forget_then_gc_frees_only_what_no_snapshot_reaches() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (kept, old, new) = (
        &b"in both snapshots"[..],
        &b"only in the first"[..],
        &b"only in the second!"[..],
    );
    fs::create_dir_all(dir.join("src/sub")).unwrap();
    fs::write(dir.join("src/sub/kept.txt"), kept).unwrap();
    fs::write(dir.join("src/changing.txt"), old).unwrap();
    json(&rv(dir, &["snapshot", "create", "src", "--name", "g", "--json"]));
    // Chunks are named only inside trees: gc must walk them to keep anything.
    let gc = rv(dir, &["cache", "gc"]);
    assert!(gc.all().contains("deleted 0 "), "{gc:?}");

    fs::write(dir.join("src/changing.txt"), new).unwrap();
    json(&rv(dir, &["snapshot", "create", "src", "--name", "g", "--json"]));
    let usage = rv(dir, &["snapshot", "forget"]);
    assert_eq!(usage.code, 2, "no policy is a usage error: {usage:?}");
    let dry = rv(dir, &["snapshot", "forget", "--keep-last", "1", "--dry-run"]);
    assert!(dry.all().contains("would remove 1"), "{dry:?}");
    let forget = rv(dir, &["snapshot", "forget", "--keep-last", "1"]);
    assert_eq!(forget.code, 0, "{forget:?}");
    assert!(forget.all().contains("removed 1"), "{forget:?}");
    let list = rv(dir, &["snapshot", "list"]);
    assert!(list.all().contains("1 snapshots"), "{list:?}");

    // The first snapshot's object, root tree and old chunk go; sub/ is shared and stays.
    let gc = rv(dir, &["cache", "gc"]);
    assert!(gc.all().contains("deleted 3 "), "{gc:?}");
    let cache = dir.join("cache");
    assert!(!blob_present(&cache, &Digest::of_blake3(old)));
    assert!(blob_present(&cache, &Digest::of_blake3(kept)));
    assert!(blob_present(&cache, &Digest::of_blake3(new)));
    let v = rv(dir, &["snapshot", "verify", "g"]);
    assert_eq!(v.code, 0, "{v:?}");
    let r = rv(dir, &["snapshot", "restore", "g", "out"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&dir.join("src"), &dir.join("out"));
}

/// Create, unchanged re-create, verify, restore through a remote store URL.
fn round_trip_through(remote: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let files = make_tree(&dir.join("src"), 6 << 20);
    let create = [
        "snapshot", "create", "src", "--name", "remote", "--json", "--remote", remote,
    ];
    let first = json(&rv(dir, &create));
    assert_eq!(n(&first, "files_new"), files);
    assert!(n(&first, "chunks_uploaded") > 0);
    let again = json(&rv(dir, &create));
    assert_eq!(
        (n(&again, "bytes_read"), n(&again, "chunks_uploaded")),
        (0, 0),
        "{again}"
    );
    let v = rv(dir, &["snapshot", "verify", "remote", "--remote", remote]);
    assert_eq!(v.code, 0, "{v:?}");
    let r = rv(dir, &["snapshot", "restore", "remote", "out", "--remote", remote]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&dir.join("src"), &dir.join("out"));
    let list = rv(dir, &["snapshot", "list", "remote", "--remote", remote]);
    assert!(list.all().contains("2 snapshots"), "{list:?}");
    assert!(!dir.join("cache/cas").exists(), "the embedded store was not used");
}

#[test]
fn round_trip_through_a_cas_server() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    round_trip_through(&server.url);
}

#[test]
fn round_trip_through_file_object_storage() {
    let bucket = tempfile::tempdir().unwrap();
    round_trip_through(&format!("file://{}/bucket", bucket.path().display()));
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir(dir.join("src")).unwrap();
    for args in [
        &["snapshot", "restore", "nothing-here", "out"][..],
        &["snapshot", "create", "src", "--name", "bad/name"],
        &["snapshot", "create", "missing-dir", "--name", "x"],
        &["snapshot", "verify", "x@yesterday"],
    ] {
        let r = rv(dir, args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
    }
    json(&rv(dir, &["snapshot", "create", "src", "--name", "x", "--json"]));
    let r = rv(dir, &["snapshot", "verify", "x", "--read-data-subset", "0/3"]);
    assert_eq!(r.code, 2, "{r:?}");
    let r = rv(dir, &["snapshot", "restore", "x", "out", "--include", "../etc"]);
    assert_eq!(r.code, 2, "{r:?}");
}

#[test]
fn the_cache_dir_is_not_snapshotted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::create_dir(dir.join("src")).unwrap();
    fs::write(dir.join("src/f"), "f").unwrap();
    let s = json(&rv(dir, &["snapshot", "create", ".", "--name", "self", "--json"]));
    assert_eq!(n(&s, "files_new"), 1, "only src/f, nothing of cache/: {s}");
    let out = tempfile::tempdir().unwrap();
    let r = rv(dir, &["snapshot", "restore", "self", out.path().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(out.path().join("src/f").exists() && !out.path().join("cache").exists());
}

/// A moto S3 server on a free port with bucket `snap`, killed on drop.
struct Moto(std::process::Child, u16);

impl Moto {
    fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server (run scripts/setup.sh --test)");
        let moto = Moto(child, port);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let status = std::process::Command::new("curl")
            .args(["-sf", "-X", "PUT", &format!("http://127.0.0.1:{port}/snap")])
            .status()
            .unwrap();
        assert!(status.success(), "creating the bucket");
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn round_trip_through_s3() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let conf = dir.join("s3.conf");
    fs::write(
        &conf,
        format!(
            "[remote_cas]\nenabled = true\nurl = s3://snap/team\nendpoint = http://127.0.0.1:{}\nregion = us-east-1\nallow_http = true\naccess_key = test\nsecret_key = test\n",
            moto.1
        ),
    )
    .unwrap();
    fs::create_dir_all(dir.join("src/sub")).unwrap();
    random_file(&dir.join("src/sub/data.bin"), 5 << 20, 11);
    fs::write(dir.join("src/note.txt"), "to s3 and back\n").unwrap();
    std::os::unix::fs::symlink("sub/data.bin", dir.join("src/link")).unwrap();
    let c = conf.to_str().unwrap();
    let first = json(&rv(
        dir,
        &["snapshot", "create", "src", "--name", "s3", "--json", "--config", c],
    ));
    assert_eq!(n(&first, "files_new"), 2);
    let again = json(&rv(
        dir,
        &["snapshot", "create", "src", "--name", "s3", "--json", "--config", c],
    ));
    assert_eq!(
        (n(&again, "bytes_read"), n(&again, "chunks_uploaded")),
        (0, 0),
        "{again}"
    );
    let v = rv(dir, &["snapshot", "verify", "s3", "--config", c]);
    assert_eq!(v.code, 0, "{v:?}");
    let r = rv(dir, &["snapshot", "restore", "s3", "out", "--config", c]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_same_tree(&dir.join("src"), &dir.join("out"));
    assert!(!dir.join("cache/cas").exists(), "the embedded store was not used");
}

/// Every file below `dir` whose name marks it as a restore's temp file.
fn restore_leftovers(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else if e.file_name().to_string_lossy().contains(".reprovm-restore-") {
                found.push(p);
            }
        }
    }
    found
}

#[test]
fn many_small_files_restore_in_parallel_exactly_and_a_corrupt_one_leaves_no_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let src = dir.join("src");
    // 300 files of 1-9 KiB over 12 directories (more than the jobs run at once), each with its
    // own mtime, a read-only directory among them, and a few multi-chunk files.
    for i in 0..300u64 {
        let d = src.join(format!("d{:02}", i % 12));
        fs::create_dir_all(&d).unwrap();
        let f = d.join(format!("f{i:03}.txt"));
        fs::write(&f, format!("file {i}\n").repeat(100 + (i as usize * 37) % 800)).unwrap();
        set_mtime(&f, 1_500_000_000 + i, (i * 1_000_003) as u32 % 1_000_000_000);
    }
    for i in 0..3 {
        random_file(&src.join(format!("d0{i}/big{i}.bin")), (5 << 20) + i * 12345, 100 + i);
    }
    fs::File::open(src.join("d03"))
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::new(1_400_000_000, 5))
        .unwrap();
    fs::set_permissions(src.join("d03"), fs::Permissions::from_mode(0o555)).unwrap();
    json(&rv(dir, &["snapshot", "create", "src", "--name", "many", "--json"]));

    let ok = rv(dir, &["snapshot", "restore", "many", "out"]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.all().contains("303 files"), "{ok:?}");
    assert_same_tree(&src, &dir.join("out"));
    assert!(restore_leftovers(&dir.join("out")).is_empty());

    // One file's only chunk corrupted in the store: the restore fails naming it, and neither
    // that file's temp file nor any other job's is left behind.
    let victim = fs::read(src.join("d07/f151.txt")).unwrap();
    let digest = Digest::of_blake3(&victim);
    corrupt_in_store(&dir.join("cache"), &digest, &victim);
    let bad = rv(dir, &["snapshot", "restore", "many", "out2"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.all().contains(&digest.to_hex()), "{bad:?}");
    assert!(bad.all().contains("corrupt"), "{bad:?}");
    assert!(!dir.join("out2/d07/f151.txt").exists());
    assert_eq!(restore_leftovers(&dir.join("out2")), Vec::<std::path::PathBuf>::new());
    fs::set_permissions(src.join("d03"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.join("out/d03"), fs::Permissions::from_mode(0o755)).unwrap();
}
