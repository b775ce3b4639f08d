//! A run where nothing changed reads no file and opens no store (the workspace state vouches for
//! every file by its `stat`), and it must still notice every change: an input edited in place
//! with the same size within the same second, one whose mtime was put back, one replaced by
//! another file with the same mtime; a deleted or modified output is restored. Entries too new to
//! trust (the file changed in the second its entry was taken) are re-hashed.
//!
//! Each case first makes the state trust the input (the file is older than the run that recorded
//! it, and a second run reads nothing), so that only the `stat` comparison can catch the change.

mod common;

use std::fs::{File, FileTimes, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{marked, reprovm, workspace, Run};

const COPY: &str = "
task copy {
  cmd = cp in.txt out.txt; echo ran >> runs.log
  inputs = in.txt
  outputs = out.txt
}
";

/// Sleeps into the next second of the clock, so that files written before are older than it.
fn next_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    std::thread::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos())) + Duration::from_millis(30));
}

/// A run with the debug log, which names every file read for its digest.
fn run_logged(dir: &Path) -> Run {
    reprovm(dir, &["--log-level", "reprovm=debug", "manifest.rvm"])
}

fn hashed(run: &Run, path: &str) -> bool {
    run.stderr
        .lines()
        .any(|l| l.contains("hashing") && l.contains(&format!("path=\"{path}\"")))
}

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs.log")).map_or(0, |s| s.lines().count())
}

/// A workspace whose `in.txt` the state trusts: `copy` ran once, and a no-op read nothing.
fn trusted_workspace() -> tempfile::TempDir {
    let ws = workspace(COPY, &[("in.txt", "aaaa\n")]);
    next_second();
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(marked(&r, "[+]"), ["copy"], "{r:?}");
    // out.txt was recorded in the second it was written: the next run reads it once more.
    next_second();
    assert_eq!(marked(&reprovm(ws.path(), &["manifest.rvm"]), "[*]"), ["copy"]);
    let r = run_logged(ws.path());
    assert_eq!(marked(&r, "[*]"), ["copy"], "{r:?}");
    assert!(!hashed(&r, "in.txt"), "the no-op should trust in.txt: {r:?}");
    assert!(!hashed(&r, "out.txt"), "the no-op should trust out.txt: {r:?}");
    assert!(
        r.stderr.lines().all(|l| !l.contains("opening the embedded store")),
        "a no-op does not open the store: {r:?}"
    );
    assert_eq!(runs(ws.path()), 1);
    ws
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Overwrites `path` in place (same inode) with `data`.
fn overwrite_in_place(path: &Path, data: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(data).unwrap();
}

fn set_mtime(path: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(FileTimes::new().set_modified(t))
        .unwrap();
}

fn assert_reran(dir: &Path, expect: &str) {
    let r = reprovm(dir, &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(marked(&r, "[+]"), ["copy"], "the change must rerun the task: {r:?}");
    assert_eq!(std::fs::read_to_string(dir.join("out.txt")).unwrap(), expect);
    assert_eq!(runs(dir), 2);
}

#[test]
fn an_input_edited_in_place_with_the_same_size_in_the_same_second_reruns() {
    let ws = trusted_workspace();
    let input = ws.path().join("in.txt");
    let before = mtime(&input);
    let ino = std::fs::metadata(&input).unwrap().ino();
    overwrite_in_place(&input, b"bbbb\n");
    // Same second, a nanosecond later: a check on whole seconds would miss it.
    set_mtime(&input, before + Duration::from_nanos(1));
    let after = std::fs::metadata(&input).unwrap();
    assert_eq!((after.ino(), after.len(), after.mtime()), (ino, 5, before_secs(before)));
    assert_reran(ws.path(), "bbbb\n");
}

fn before_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn an_input_whose_mtime_was_put_back_with_touch_reruns() {
    let ws = trusted_workspace();
    let input = ws.path().join("in.txt");
    let m = std::fs::metadata(&input).unwrap();
    let stamp = format!("@{}.{:09}", m.mtime(), m.mtime_nsec());
    overwrite_in_place(&input, b"cccc\n");
    let st = std::process::Command::new("touch")
        .args(["-m", "-d", &stamp])
        .arg(&input)
        .status()
        .unwrap();
    assert!(st.success());
    let after = std::fs::metadata(&input).unwrap();
    // Inode, size, mtime to the nanosecond: all as recorded; only ctime tells.
    assert_eq!(
        (after.ino(), after.len(), after.mtime(), after.mtime_nsec()),
        (m.ino(), m.len(), m.mtime(), m.mtime_nsec())
    );
    assert_reran(ws.path(), "cccc\n");
}

#[test]
fn an_input_replaced_by_another_file_with_the_same_mtime_reruns() {
    let ws = trusted_workspace();
    let input = ws.path().join("in.txt");
    let before = mtime(&input);
    let other = ws.path().join("other.txt");
    std::fs::write(&other, "dddd\n").unwrap();
    set_mtime(&other, before);
    std::fs::rename(&other, &input).unwrap();
    assert_eq!(mtime(&input), before);
    assert_reran(ws.path(), "dddd\n");
}

#[test]
fn deleted_and_modified_outputs_are_restored() {
    let ws = trusted_workspace();
    let out = ws.path().join("out.txt");
    std::fs::remove_file(&out).unwrap();
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("[*] copy (cached, restored 1 file"), "{r:?}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "aaaa\n");

    // Modified in place, same size, mtime put back: restored, not trusted.
    next_second();
    reprovm(ws.path(), &["manifest.rvm"]);
    let r = run_logged(ws.path());
    assert!(!hashed(&r, "out.txt"), "trusted again: {r:?}");
    let before = mtime(&out);
    overwrite_in_place(&out, b"zzzz\n");
    set_mtime(&out, before);
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("[*] copy (cached, restored 1 file"), "{r:?}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "aaaa\n");
    assert_eq!(runs(ws.path()), 1, "restored, never rerun");
}

#[test]
fn an_entry_taken_in_the_second_its_file_changed_is_hashed_again() {
    // The input is written and recorded in the same second: it could change again within that
    // second without its timestamps moving, so the next run must read it once more.
    for attempt in 0.. {
        let ws = workspace(COPY, &[("in.txt", "aaaa\n")]);
        let written = before_secs(mtime(&ws.path().join("in.txt")));
        let r = reprovm(ws.path(), &["manifest.rvm"]);
        assert_eq!(marked(&r, "[+]"), ["copy"], "{r:?}");
        let after_run = before_secs(SystemTime::now());
        if after_run != written {
            assert!(attempt < 5, "could not run within one second of writing");
            continue;
        }
        next_second();
        let r = run_logged(ws.path());
        assert_eq!(marked(&r, "[*]"), ["copy"], "{r:?}");
        assert!(hashed(&r, "in.txt"), "a racy entry must be re-hashed: {r:?}");
        assert!(hashed(&r, "out.txt"), "a racy entry must be re-hashed: {r:?}");
        let r = run_logged(ws.path());
        assert!(
            !hashed(&r, "in.txt") && !hashed(&r, "out.txt"),
            "now old enough to trust: {r:?}"
        );
        return;
    }
}

#[test]
fn a_damaged_state_file_is_ignored() {
    let ws = trusted_workspace();
    let dir = ws.path().join(".reprovm/state");
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::write(e.unwrap().path(), b"garbage").unwrap();
    }
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(marked(&r, "[*]"), ["copy"], "falls back to the store: {r:?}");
    assert_eq!(runs(ws.path()), 1);
}
