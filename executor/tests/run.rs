//! End-to-end runs of the `reprovm` binary on real files and processes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{marked, reprovm, reprovm_env, workspace, Server};

fn copy_example(name: &str) -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    dir
}

#[test]
fn hello_c_builds_then_hits_then_restores_deleted_outputs() {
    let ws = copy_example("hello");
    let d = ws.path();
    let r = reprovm(d, &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(marked(&r, "[+]"), ["compile", "link", "run"], "{r:?}");
    assert_eq!(
        std::fs::read_to_string(d.join("greeting.txt")).unwrap(),
        "Hello from ReproVM!\n"
    );
    let binary = std::fs::read(d.join("hello")).unwrap();
    let mode = std::fs::metadata(d.join("hello")).unwrap().permissions().mode() & 0o777;

    let r = reprovm(d, &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(marked(&r, "[*]"), ["compile", "link", "run"], "{r:?}");
    assert!(r.stdout.contains("3 cached"), "{r:?}");

    // Deleted outputs come back byte-identical with their mode bits.
    std::fs::remove_file(d.join("hello")).unwrap();
    std::fs::remove_file(d.join("greeting.txt")).unwrap();
    let r = reprovm(d, &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(marked(&r, "[+]").is_empty(), "{r:?}");
    assert_eq!(std::fs::read(d.join("hello")).unwrap(), binary);
    assert_eq!(
        std::fs::metadata(d.join("hello")).unwrap().permissions().mode() & 0o777,
        mode
    );
    assert_eq!(
        std::fs::read_to_string(d.join("greeting.txt")).unwrap(),
        "Hello from ReproVM!\n"
    );
    let out = std::process::Command::new(d.join("hello")).output().unwrap();
    assert_eq!(out.stdout, b"Hello from ReproVM!\n");

    // A changed source reruns compile; identical object code lets the rest hit.
    std::fs::write(
        d.join("hello.c"),
        "#include <stdio.h>\nint main(void){puts(\"changed\");return 0;}\n",
    )
    .unwrap();
    let r = reprovm(d, &["manifest.rvm"]);
    assert_eq!(marked(&r, "[+]"), ["compile", "link", "run"], "{r:?}");
    assert_eq!(std::fs::read_to_string(d.join("greeting.txt")).unwrap(), "changed\n");
}

#[test]
fn data_pipeline_example_runs_then_hits() {
    let ws = copy_example("data-pipeline");
    let d = ws.path();
    let r = reprovm(d, &["-j", "2", "--stats", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Task statistics:"), "{r:?}");
    let report = std::fs::read_to_string(d.join("report.md")).unwrap();
    assert!(report.contains("Cairo 30.0") && report.contains("Oslo 2"), "{report}");
    let r = reprovm(d, &["manifest.rvm"]);
    assert_eq!(marked(&r, "[*]"), ["clean", "count", "report", "stats"], "{r:?}");
}

const DIAMOND: &str = "
task base {
  cmd = cat base.txt > base.out; echo base >> runs.log
  inputs = base.txt
  outputs = base.out
}
task left {
  cmd = cat base.out left.txt > left.out; echo left >> runs.log
  inputs = base.out, left.txt
  outputs = left.out
  deps = base
}
task right {
  cmd = cat base.out right.txt > right.out; echo right >> runs.log
  inputs = base.out, right.txt
  outputs = right.out
  deps = base
}
task top {
  cmd = cat left.out right.out > top.out; echo top >> runs.log
  inputs = left.out, right.out
  outputs = top.out
  deps = left, right
}
";

#[test]
fn diamond_reruns_only_what_a_change_reaches() {
    let ws = workspace(
        DIAMOND,
        &[("base.txt", "b\n"), ("left.txt", "l\n"), ("right.txt", "r\n")],
    );
    let d = ws.path();
    let r = reprovm(d, &["-j", "4", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(std::fs::read_to_string(d.join("top.out")).unwrap(), "b\nl\nb\nr\n");
    std::fs::write(d.join("left.txt"), "L\n").unwrap();
    std::fs::remove_file(d.join("runs.log")).unwrap();
    let r = reprovm(d, &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(marked(&r, "[+]"), ["left", "top"], "{r:?}");
    assert_eq!(marked(&r, "[*]"), ["base", "right"], "{r:?}");
    assert_eq!(std::fs::read_to_string(d.join("runs.log")).unwrap(), "left\ntop\n");
    assert_eq!(std::fs::read_to_string(d.join("top.out")).unwrap(), "b\nL\nb\nr\n");

    // A target selects itself and its deps only.
    let r = reprovm(d, &["-f", "manifest.rvm", "left"]);
    assert_eq!(marked(&r, "[+]"), ["base", "left"], "{r:?}");

    // Dry run says why, runs nothing.
    std::fs::write(d.join("right.txt"), "R\n").unwrap();
    let log_before = std::fs::read_to_string(d.join("runs.log")).unwrap();
    let r = reprovm(d, &["-n", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("[*] base: cached (hit)"), "{r:?}");
    assert!(r.stdout.contains("[+] right: would run (miss"), "{r:?}");
    assert!(
        r.stdout.contains("[+] top: would run (dependency `right` will run)"),
        "{r:?}"
    );
    assert_eq!(std::fs::read_to_string(d.join("runs.log")).unwrap(), log_before);
    let r = reprovm(d, &["-n", "-f", "manifest.rvm"]);
    assert!(r.stdout.contains("[+] base: would run (forced)"), "{r:?}");
}

#[test]
fn failure_stops_dependents_and_keep_going_finishes_independent_work() {
    let m = "
task bad {
  cmd = echo boom >&2; exit 4
}
task after_bad {
  cmd = touch after
  outputs = after
  deps = bad
}
task fine {
  cmd = touch fine
  outputs = fine
}
";
    let ws = workspace(m, &[]);
    let d = ws.path();
    let r = reprovm(d, &["-j", "1", "manifest.rvm"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("[!] bad: command exited with code 4"), "{r:?}");
    assert!(r.stderr.contains("boom"), "{r:?}");
    assert!(!d.join("after").exists() && !d.join("fine").exists());

    let r = reprovm(d, &["-j", "1", "--keep-going", "--metrics", "m.json", "manifest.rvm"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(d.join("fine").exists(), "{r:?}");
    assert!(!d.join("after").exists());
    assert!(
        r.stdout.contains("[-] after_bad (skipped: dependency bad failed)"),
        "{r:?}"
    );
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("m.json")).unwrap()).unwrap();
    assert_eq!(
        (m["ran"].as_u64(), m["failed"].as_u64(), m["skipped"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(m["tasks"].as_array().unwrap().len(), 3);
}

#[test]
fn timeout_kills_the_process_group() {
    let m = "
task slow {
  cmd = (sleep 3; touch leaked) & sleep 60
  timeout = 1
}
";
    let ws = workspace(m, &[]);
    let start = Instant::now();
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(r.stderr.contains("timed out after 1.0s"), "{r:?}");
    std::thread::sleep(Duration::from_millis(3500));
    assert!(!ws.path().join("leaked").exists(), "the background child survived");
    // The flag works too.
    let ws = workspace("task s {\n cmd = sleep 60\n}\n", &[]);
    let r = reprovm(ws.path(), &["-t", "0.5", "manifest.rvm"]);
    assert!(r.stderr.contains("timed out"), "{r:?}");
}

#[test]
fn retries_rerun_a_failed_command() {
    let m = "
task flaky {
  cmd = if [ -f tried ]; then echo ok > out; else touch tried; exit 1; fi
  outputs = out
}
";
    let ws = workspace(m, &[]);
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 1, "{r:?}");
    std::fs::remove_file(ws.path().join("tried")).unwrap();
    let r = reprovm(ws.path(), &["--retry", "2", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("attempt 2"), "{r:?}");
    assert!(r.stderr.contains("retrying (1/2)"), "{r:?}");
    // The per-task field works the same way.
    let ws = workspace(&m.replace("outputs = out", "outputs = out\n  retries = 1"), &[]);
    assert_eq!(reprovm(ws.path(), &["manifest.rvm"]).code, 0);
}

#[test]
fn missing_output_fails_the_task() {
    let ws = workspace("task t {\n cmd = true\n outputs = never.txt\n}\n", &[]);
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("declared output \"never.txt\" was not produced"),
        "{r:?}"
    );
}

#[test]
fn manifest_errors_exit_2_with_positions() {
    let cases: [(&str, &[&str], &str); 6] = [
        (
            "task a {\n cmd = x\n deps = b\n}\ntask b {\n cmd = y\n deps = a\n}\n",
            &[],
            "dependency cycle: a -> b -> a",
        ),
        (
            "task a {\n  cmd = x\n  colour = red\n}\n",
            &[],
            "manifest.rvm:3:3: unknown field `colour`",
        ),
        (
            "task a {\n cmd = x\n deps = ghost\n}\n",
            &[],
            "depends on unknown task `ghost`",
        ),
        (
            "task a {\n cmd = x\n}\ntask a {\n cmd = y\n}\n",
            &[],
            "manifest.rvm:4:1: duplicate task name `a`",
        ),
        ("task a {\n cmd = x\n}\n", &["nope"], "unknown target `nope`"),
        ("task a {\n cmd = x\n outputs = ../escape\n}\n", &[], "contains `..`"),
    ];
    for (m, targets, want) in cases {
        let ws = workspace(m, &[]);
        let mut args = vec!["manifest.rvm"];
        args.extend(targets);
        let r = reprovm(ws.path(), &args);
        assert_eq!(r.code, 2, "{want}: {r:?}");
        assert!(r.stderr.contains(want), "{want}: {r:?}");
    }
}

#[test]
fn paths_escaping_the_workspace_are_refused() {
    let ws = workspace("task a {\n cmd = touch /tmp/x\n outputs = /tmp/x\n}\n", &[]);
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("is absolute"), "{r:?}");
    let outside = tempfile::tempdir().unwrap();
    let ws = workspace("task a {\n cmd = touch link/x\n outputs = link/x\n}\n", &[]);
    std::os::unix::fs::symlink(outside.path(), ws.path().join("link")).unwrap();
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("points outside the workspace"), "{r:?}");
    assert!(!outside.path().join("x").exists());
}

/// Each task waits for the other's marker: they can only both finish when run at the same time.
#[test]
fn jobs_run_tasks_in_parallel() {
    let m = "
task a {
  cmd = touch a.ready; while [ ! -f b.ready ]; do sleep 0.02; done; touch a.out
  outputs = a.out
}
task b {
  cmd = touch b.ready; while [ ! -f a.ready ]; do sleep 0.02; done; touch b.out
  outputs = b.out
}
";
    let ws = workspace(m, &[]);
    let r = reprovm(ws.path(), &["-j", "1", "-t", "1", "manifest.rvm"]);
    assert_eq!(r.code, 1, "-j 1 cannot finish both: {r:?}");
    assert!(r.stderr.contains("timed out"), "{r:?}");
    assert!(!ws.path().join("a.out").exists() && !ws.path().join("b.out").exists());
    for f in ["a.ready", "b.ready"] {
        let _ = std::fs::remove_file(ws.path().join(f));
    }
    let r = reprovm(ws.path(), &["-j", "2", "-f", "-t", "30", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(marked(&r, "[+]"), ["a", "b"]);
}

#[test]
fn lock_held_by_a_live_pid_exits_3_and_a_dead_one_is_taken_over() {
    let ws = workspace("task a {\n cmd = touch out\n outputs = out\n}\n", &[]);
    let cache = ws.path().join(".reprovm");
    std::fs::create_dir_all(&cache).unwrap();
    let mut live = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(cache.join("lock"), format!("{}\n", live.id())).unwrap();
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains(&format!("already running (PID {})", live.id())),
        "{r:?}"
    );
    assert!(!ws.path().join("out").exists());
    live.kill().unwrap();
    live.wait().unwrap();
    // Now the PID is dead: a stale lock.
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(ws.path().join("out").exists());
    assert!(!cache.join("lock").exists(), "the lock is released at exit");
}

#[test]
fn the_seed_config_loads_and_unknown_keys_warn() {
    let ws = workspace("task a {\n cmd = touch out\n outputs = out\n}\n", &[]);
    let seed = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/reprovm.conf");
    std::fs::copy(&seed, ws.path().join("reprovm.conf")).unwrap();
    let r = reprovm(ws.path(), &["manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    // No warning about the config itself. (The seed's max_cpu_percent=80 may make a busy test
    // machine delay the task with a back-pressure warning: that one is about the machine.)
    let config_warnings = r
        .stderr
        .lines()
        .filter(|l| l.contains("warning") && !l.contains("although CPU"))
        .count();
    assert_eq!(config_warnings, 0, "{r:?}");
    // The seed config sends the log to .reprovm/reprovm.log.
    assert!(ws.path().join(".reprovm/reprovm.log").exists());

    std::fs::write(
        ws.path().join("other.conf"),
        "[cache]\ncache_dir=alt-cache\nsparkles=1\n",
    )
    .unwrap();
    let r = reprovm(ws.path(), &["--config", "other.conf", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("unknown key `sparkles` in [cache]"), "{r:?}");
    assert!(ws.path().join("alt-cache/cas").is_dir());
    // Environment beats the file; flags beat the environment.
    let r = reprovm_env(
        ws.path(),
        &["--config", "other.conf", "manifest.rvm"],
        &[("REPROVM_CACHE_DIR", "env-cache")],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(ws.path().join("env-cache/cas").is_dir());
    let r = reprovm_env(
        ws.path(),
        &["--config", "other.conf", "--cache-dir", "flag-cache", "manifest.rvm"],
        &[("REPROVM_CACHE_DIR", "env-cache")],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(ws.path().join("flag-cache/cas").is_dir());
}

#[test]
fn cache_commands() {
    let ws = workspace(
        DIAMOND,
        &[("base.txt", "b\n"), ("left.txt", "l\n"), ("right.txt", "r\n")],
    );
    let d = ws.path();
    assert_eq!(reprovm(d, &["manifest.rvm"]).code, 0);
    let r = reprovm(d, &["cache", "stats"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("action results:  4"), "{r:?}");
    let r = reprovm(d, &["cache", "verify"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("Verified 4 blobs: 0 corrupt"), "{r:?}");
    let r = reprovm(d, &["cache", "gc"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("kept 4 blobs, deleted 0"), "{r:?}");
    let r = reprovm(d, &["--verify-cache", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("0 corrupt"), "{r:?}");
    let r = reprovm(d, &["cache", "clean"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = reprovm(d, &["--clean-cache", "manifest.rvm"]);
    assert_eq!(marked(&r, "[+]").len(), 4, "{r:?}");
}

fn two_clones_share(remote: &str) {
    let files = [("base.txt", "b\n"), ("left.txt", "l\n"), ("right.txt", "r\n")];
    let first = workspace(DIAMOND, &files);
    let second = workspace(DIAMOND, &files);
    let r = reprovm(first.path(), &["--remote", remote, "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(marked(&r, "[+]").len(), 4, "{r:?}");
    let r = reprovm_env(second.path(), &["manifest.rvm"], &[("REPROVM_REMOTE_CAS_URL", remote)]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(marked(&r, "[*]"), ["base", "left", "right", "top"], "{r:?}");
    assert_eq!(
        std::fs::read(second.path().join("top.out")).unwrap(),
        std::fs::read(first.path().join("top.out")).unwrap()
    );
    assert!(
        !second.path().join(".reprovm/cas").exists(),
        "no embedded store with a remote"
    );
}

#[test]
fn two_workspaces_share_a_cas_server() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    two_clones_share(&server.url);
}

#[test]
fn two_workspaces_share_an_object_store() {
    let bucket = tempfile::tempdir().unwrap();
    let url = format!("file://{}/bucket", bucket.path().display());
    two_clones_share(&url);
    assert!(bucket.path().join("bucket/ac").is_dir());
}

#[test]
fn list_tasks_and_usage() {
    let ws = workspace(DIAMOND, &[]);
    let r = reprovm(ws.path(), &["--list-tasks", "manifest.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("top  <- left, right"), "{r:?}");
    assert_eq!(reprovm(ws.path(), &[]).code, 2);
    assert_eq!(reprovm(ws.path(), &["--bogus"]).code, 2);
    let r = reprovm(ws.path(), &["--remote", "ftp://x", "manifest.rvm"]);
    assert_eq!(r.code, 2, "{r:?}");
}
