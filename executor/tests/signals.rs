//! SIGINT and SIGTERM sent to the real `reprovm` binary: running commands (their whole process
//! groups) are stopped, the lock is released, the audit log gets its STOP line, and the exit
//! code is 130 / 143; a second SIGINT kills at once. The same for `reprovm serve` and for
//! `reprovm snapshot create`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{bin, reprovm, workspace};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `reprovm ARGS` in `dir`, not waited for.
fn spawn(dir: &Path, args: &[&str]) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, _) in std::env::vars() {
        if k.starts_with("REPROVM_") {
            cmd.env_remove(k);
        }
    }
    cmd.spawn().expect("spawn reprovm")
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// Waits for `path` to hold a PID.
fn wait_pid(path: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < deadline, "{} never written", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits at most `limit` for the child; panics (after killing it) past that.
fn wait_exit(child: &mut Child, limit: Duration) -> (ExitStatus, Duration, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
            return (status, start.elapsed(), out);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("reprovm still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process runs (a zombie does not: the init of a container may never reap it).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

fn assert_gone(pids: &[i32]) {
    // SIGKILLed processes vanish asynchronously; give the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &p in pids {
        assert!(!alive(p), "process {p} outlived reprovm");
    }
}

/// The lock is gone and another run can start at once.
fn assert_unlocked(dir: &Path) {
    assert!(!dir.join("cache/lock").exists(), "lock file left behind");
    std::fs::write(dir.join("quick.rvm"), "task q {\n cmd = true\n}\n").unwrap();
    let r = reprovm(dir, &["--cache-dir", "cache", "quick.rvm"]);
    assert_eq!(r.code, 0, "{r:?}");
}

fn assert_stop_line(dir: &Path, code: u8) {
    let log = std::fs::read_to_string(dir.join("audit.log")).unwrap();
    let last = log.lines().last().unwrap_or_default();
    assert!(
        last.contains("type=STOP") && last.contains(&format!("details=exit {code}")),
        "{log}"
    );
}

const RUN: [&str; 5] = ["--cache-dir", "cache", "--audit-log", "audit.log", "manifest.rvm"];

#[test]
fn sigint_stops_the_task_group_releases_the_lock_and_exits_130() {
    // The shell and its foreground sleep die of SIGINT; the background sleep ignores it (as
    // background jobs of `sh -c` do) and is SIGKILLed when the grace period ends.
    let ws = workspace(
        "task slow {\n cmd = echo $$ > task.pid; sleep 60 & echo $! > child.pid; sleep 60\n outputs = never.out\n}\n\
         task later {\n cmd = touch later.out\n outputs = later.out\n}\n",
        &[],
    );
    let d = ws.path();
    // One job: `later` waits for `slow`'s slot, and must never start.
    let mut child = spawn(d, &[&["-j", "1"][..], &RUN[..]].concat());
    let pids = [wait_pid(&d.join("task.pid")), wait_pid(&d.join("child.pid"))];
    signal(&child, Signal::SIGINT);
    let (status, took, out) = wait_exit(&mut child, Duration::from_secs(12));
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(out.contains("SIGINT"), "{out}");
    assert_gone(&pids);
    assert!(!d.join("later.out").exists(), "no task starts after the signal: {out}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_stop_line(d, 130);
    assert_unlocked(d);
}

#[test]
fn sigterm_is_forwarded_so_a_task_can_clean_up_and_exits_143() {
    let ws = workspace(
        "task slow {\n cmd = echo $$ > task.pid; trap 'echo bye > cleaned.txt; exit 1' TERM; sleep 60 & echo $! > child.pid; wait\n outputs = never.out\n}\n",
        &[],
    );
    let d = ws.path();
    let mut child = spawn(d, &RUN);
    let pids = [wait_pid(&d.join("task.pid")), wait_pid(&d.join("child.pid"))];
    signal(&child, Signal::SIGTERM);
    let (status, took, out) = wait_exit(&mut child, Duration::from_secs(12));
    assert_eq!(status.code(), Some(143), "{out}");
    assert!(took < Duration::from_secs(4), "the group exited by itself: {took:?}");
    assert_eq!(std::fs::read_to_string(d.join("cleaned.txt")).unwrap(), "bye\n");
    assert_gone(&pids);
    assert_stop_line(d, 143);
    assert_unlocked(d);
}

#[test]
fn a_second_sigint_kills_at_once() {
    // A task deaf to SIGINT: the first one only asks, the second kills.
    let ws = workspace(
        "task deaf {\n cmd = trap '' INT; echo $$ > task.pid; sleep 60 & echo $! > child.pid; sleep 60\n outputs = never.out\n}\n",
        &[],
    );
    let d = ws.path();
    let mut child = spawn(d, &RUN);
    let pids = [wait_pid(&d.join("task.pid")), wait_pid(&d.join("child.pid"))];
    signal(&child, Signal::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "still in its grace period");
    signal(&child, Signal::SIGINT);
    let (status, took, out) = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(took < Duration::from_secs(2), "not at once: {took:?}");
    assert_gone(&pids);
    assert_stop_line(d, 130);
    assert_unlocked(d);
}

/// One HTTP/1.1 request with `Connection: close`; returns the status.
fn http(addr: &str, method: &str, path: &str, body: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out[9..12].parse().unwrap()
}

fn serve(dir: &Path) -> (Child, String) {
    let mut child = spawn(
        dir,
        &[
            "serve",
            "--cache-dir",
            "cache",
            "--listen",
            "127.0.0.1:0",
            "manifest.rvm",
        ],
    );
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let Some(addr) = line.trim().strip_prefix("listening on http://").map(str::to_string) else {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        panic!("reprovm serve did not start: {line:?} {:?}\n{err}", child.wait());
    };
    // Keep the pipes drained and open.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let mut stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, addr)
}

fn wait_exit_code(child: &mut Child, limit: Duration) -> (Option<i32>, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code(), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("reprovm serve still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_exits_143_on_sigterm_idle_or_running_a_task() {
    let ws = workspace(
        "task slow {\n cmd = echo $$ > task.pid; sleep 60\n outputs = never.out\n}\n",
        &[],
    );
    let d = ws.path();

    let (mut idle, addr) = serve(d);
    assert_eq!(http(&addr, "GET", "/health", ""), 200);
    signal(&idle, Signal::SIGTERM);
    let (code, _) = wait_exit_code(&mut idle, Duration::from_secs(10));
    assert_eq!(code, Some(143));
    assert!(!d.join("cache/lock").exists());

    let (mut busy, addr) = serve(d);
    assert_eq!(http(&addr, "POST", "/tasks", "{}"), 202);
    let pid = wait_pid(&d.join("task.pid"));
    signal(&busy, Signal::SIGTERM);
    let (code, took) = wait_exit_code(&mut busy, Duration::from_secs(15));
    assert_eq!(code, Some(143));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_gone(&[pid]);
    assert_unlocked(d);
}

#[test]
fn snapshot_create_stops_on_sigint_while_the_store_hangs() {
    // A "cas-server" that takes requests and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().flatten() {
            let _ = seen_tx.send(());
            held.push(s);
        }
    });
    let ws = workspace("", &[("docs/readme.txt", "hello\n")]);
    let d = ws.path();
    let mut child = spawn(d, &["snapshot", "create", "--remote", &url, "docs", "--name", "docs"]);
    seen_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the store was called");
    signal(&child, Signal::SIGINT);
    let (status, took, out) = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(
        out.contains("no snapshot saved") && out.contains("interrupted by SIGINT"),
        "{out}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
}
