//! Operations, end to end with the real binary: the hash-chained audit log and `reprovm audit
//! verify|report`, webhooks against a local receiver (formats, retries, a hanging endpoint),
//! back-pressure and `--health-check`, and `reprovm serve`'s REST API with auth.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{bin, reprovm, reprovm_env, workspace};
use serde_json::Value;

const TWO_TASKS: &str = "task a {\n cmd = echo a > a.out\n outputs = a.out\n}\ntask b {\n cmd = cat a.out > b.out\n inputs = \n outputs = b.out\n deps = a\n}\n";

#[test]
fn audit_log_records_a_run_and_verify_names_tampered_lines() {
    let ws = workspace(TWO_TASKS, &[]);
    let log = ws.path().join("audit/audit.log");
    let log_s = log.to_str().unwrap();
    assert_eq!(reprovm(ws.path(), &["--audit-log", log_s, "manifest.rvm"]).code, 0);
    assert_eq!(reprovm(ws.path(), &["--audit-log", log_s, "manifest.rvm"]).code, 0);
    // A manifest whose output leaves the workspace is a security violation.
    std::fs::write(
        ws.path().join("bad.rvm"),
        "task x {\n cmd = true\n outputs = ../../etc/x\n}\n",
    )
    .unwrap();
    assert_eq!(reprovm(ws.path(), &["--audit-log", log_s, "bad.rvm"]).code, 2);

    let text = std::fs::read_to_string(&log).unwrap();
    let types: Vec<&str> = text
        .lines()
        .map(|l| l.split(" type=").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    for t in [
        "START",
        "CONFIG_LOAD",
        "CACHE_MISS",
        "TASK_START",
        "TASK_COMPLETE",
        "CACHE_STORE",
        "CACHE_HIT",
        "SECURITY_VIOLATION",
        "STOP",
    ] {
        assert!(types.contains(&t), "{t} missing from\n{text}");
    }
    let key_file = ws.path().join("audit/audit.log.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let ok = reprovm(ws.path(), &["audit", "verify", log_s]);
    assert_eq!(ok.code, 0, "{ok:?}");
    assert!(ok.stdout.contains("intact"), "{ok:?}");

    let report = reprovm(
        ws.path(),
        &["audit", "report", log_s, "--from", "2000-01-01", "--to", "2999-12-31"],
    );
    assert_eq!(report.code, 0, "{report:?}");
    assert!(report.stdout.contains("TASK_COMPLETE"), "{report:?}");
    assert!(report.stdout.contains("security events:"), "{report:?}");
    assert!(report.stdout.contains("../../etc/x"), "{report:?}");
    let none = reprovm(ws.path(), &["audit", "report", log_s, "--to", "2000-01-01"]);
    assert!(none.stdout.contains("events: 0 "), "{none:?}");

    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let write = |ls: &[String]| std::fs::write(&log, ls.join("\n") + "\n").unwrap();
    let mut edited = lines.clone();
    edited[4] = edited[4].replacen("success=1", "success=0", 1);
    write(&edited);
    let r = reprovm(ws.path(), &["audit", "verify", log_s]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("line 5 (seq 5): edited"), "{r:?}");

    let mut removed = lines.clone();
    removed.remove(6);
    write(&removed);
    let r = reprovm(ws.path(), &["audit", "verify", log_s]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("line 7 (seq 8): the line with seq 7 before it was removed"),
        "{r:?}"
    );

    let mut moved = lines.clone();
    moved.swap(2, 3);
    write(&moved);
    let r = reprovm(ws.path(), &["audit", "verify", log_s]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("line 3 (seq 4): out of order"), "{r:?}");
    assert!(r.stdout.contains("line 4 (seq 3): out of order"), "{r:?}");
}

/// A local HTTP receiver that records every request body and answers with the given statuses in
/// turn (then 200), or never answers (`hang`).
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start(statuses: Vec<u16>, hang: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                if hang {
                    held.push(s);
                    continue;
                }
                let body = read_request(&mut s);
                g.lock().unwrap().push(body);
                let status = statuses.next().unwrap_or(200);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver { url, got }
    }

    fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    }
}

fn read_request(s: &mut TcpStream) -> String {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

#[test]
fn webhooks_report_failures_and_completion_in_each_format_with_retries() {
    let manifest = "task ok {\n cmd = true\n}\ntask bad {\n cmd = exit 3\n}\n";
    let ws = workspace(manifest, &[]);
    // The first post is refused with 500: it is retried.
    let rx = Receiver::start(vec![500], false);
    let r = reprovm(ws.path(), &["-k", "--webhook", &rx.url, "manifest.rvm"]);
    assert_eq!(r.code, 1, "{r:?}");
    let bodies = rx.bodies();
    let failed: Vec<&Value> = bodies.iter().filter(|b| b["event"] == "task_failed").collect();
    let done: Vec<&Value> = bodies.iter().filter(|b| b["event"] == "pipeline_complete").collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|b| b["task"] == "bad"),
        "{bodies:?}"
    );
    assert!(!done.is_empty(), "{bodies:?}");
    assert_eq!(done[0]["total"], 2);
    assert_eq!(done[0]["failed"], 1);
    assert_eq!(done[0]["success"], false);
    assert!(
        done[0]["duration_ms"].is_u64() && done[0]["cache_hit_rate"].is_f64(),
        "{bodies:?}"
    );
    // Two notifications, the first to arrive refused with 500 and retried.
    assert_eq!(failed.len() + done.len(), 3, "{bodies:?}");

    for (format, field) in [("slack", "text"), ("discord", "content")] {
        let rx = Receiver::start(vec![], false);
        let r = reprovm_env(
            ws.path(),
            &["-k", "manifest.rvm"],
            &[("REPROVM_WEBHOOK_URL", &rx.url), ("REPROVM_WEBHOOK_FORMAT", format)],
        );
        assert_eq!(r.code, 1, "{r:?}");
        let bodies = rx.bodies();
        assert!(
            bodies
                .iter()
                .any(|b| b[field].as_str().is_some_and(|t| t.contains("task `bad` failed"))),
            "{format}: {bodies:?}"
        );
        assert!(bodies.iter().all(|b| b.as_object().unwrap().len() == 1), "{bodies:?}");
    }

    // Custom events, from the config file.
    let rx = Receiver::start(vec![], false);
    std::fs::write(
        ws.path().join("n.conf"),
        format!("[notifications]\nwebhook_url={}\nnotify_on_complete=0\n", rx.url),
    )
    .unwrap();
    let r = reprovm(ws.path(), &["notify", "--config", "n.conf", "deployed", "v1.2 is live"]);
    assert_eq!(r.code, 0, "{r:?}");
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0]["event"], "deployed");
}

#[test]
fn a_hanging_webhook_neither_fails_nor_holds_the_run() {
    let ws = workspace("task ok {\n cmd = true\n}\n", &[]);
    let rx = Receiver::start(vec![], true);
    std::fs::write(
        ws.path().join("n.conf"),
        format!("[notifications]\nwebhook_url={}\ntimeout_seconds=1\n", rx.url),
    )
    .unwrap();
    let mut child = Command::new(bin())
        .args(["--config", "n.conf", "--metrics", "m.json", "manifest.rvm"])
        .current_dir(ws.path())
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Bounded by the 1 s grace, not by the endpoint: wait generously, then fail rather than hang.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "reprovm waited on a hanging webhook");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(ws.path().join("m.json").exists());
}

#[test]
fn back_pressure_and_rate_limit_flags_and_prometheus_metrics_file() {
    let ws = workspace(
        "task a {\n cmd = echo a\n}\ntask b {\n cmd = echo b\n}\ntask c {\n cmd = echo c\n}\n",
        &[],
    );
    std::fs::write(ws.path().join("r.conf"), "[rate_limiting]\nmax_wait_seconds=0\n").unwrap();
    // Used memory is always above 1 MiB: with nothing else running, a start waits max_wait (0).
    let r = reprovm(
        ws.path(),
        &[
            "--config",
            "r.conf",
            "--max-memory-mb",
            "1",
            "--max-tasks-per-second",
            "50",
            "--metrics",
            "m.prom",
            "manifest.rvm",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("starting a task although memory"), "{r:?}");
    let prom = std::fs::read_to_string(ws.path().join("m.prom")).unwrap();
    assert!(prom.contains("reprovm_tasks_total{status=\"ran\"} 3"), "{prom}");
    assert!(prom.contains("reprovm_backpressure_waits_total 3"), "{prom}");
    assert!(prom.contains("reprovm_runs_total{result=\"success\"} 1"), "{prom}");
    let bad = reprovm(ws.path(), &["--max-cpu", "180", "manifest.rvm"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

#[test]
fn health_check_prints_a_table_and_fails_on_a_dead_store_or_bad_config() {
    let ws = workspace("task a {\n cmd = true\n}\n", &[]);
    let r = reprovm(ws.path(), &["--health-check"]);
    assert_eq!(r.code, 0, "{r:?}");
    for row in [
        "config   ok",
        "shell    ok",
        "disk     ok",
        "lock     ok",
        "store    ok",
    ] {
        assert!(r.stdout.contains(row), "{row}: {r:?}");
    }
    let r = reprovm(ws.path(), &["--health-check", "--remote", "http://127.0.0.1:1"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("store    FAIL"), "{r:?}");
    std::fs::write(ws.path().join("bad.conf"), "[execution]\nparallel_jobs=many\n").unwrap();
    let r = reprovm(ws.path(), &["--health-check", "--config", "bad.conf"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("config   FAIL"), "{r:?}");
}

/// `reprovm serve` on an ephemeral port.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(dir: &Path, args: &[&str]) -> Serve {
        let mut child = Command::new(bin())
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "manifest.rvm"])
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .expect(&line)
            .to_string();
        Serve { child, addr }
    }

    fn call(&self, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
        http(&self.addr, method, path, body, token)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub fn http(addr: &str, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    (status, body)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn wait_run(srv: &Serve, id: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, body) = srv.call("GET", &format!("/runs/{id}"), "", Some("w-secret"));
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        if v["status"] != "queued" && v["status"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "run {id} did not finish: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_runs_tasks_and_reports_them_with_auth_and_audit() {
    let ws = workspace(TWO_TASKS, &[]);
    std::fs::write(
        ws.path().join("tokens.toml"),
        "[[tokens]]\nname = \"reader\"\ntoken = \"r-secret\"\nrole = \"read\"\n[[tokens]]\nname = \"ci\"\ntoken = \"w-secret\"\nrole = \"write\"\n[[tokens]]\nname = \"boss\"\ntoken = \"a-secret\"\nrole = \"admin\"\n",
    )
    .unwrap();
    std::fs::write(
        ws.path().join("s.conf"),
        "[serve]\ntoken_file=tokens.toml\n[audit]\nenabled=1\nlog_file=audit.log\naudit_key=test-key\n",
    )
    .unwrap();
    let srv = Serve::start(ws.path(), &["--config", "s.conf"]);
    assert_eq!(srv.call("GET", "/health", "", None).0, 200);
    assert_eq!(srv.call("GET", "/tasks", "", None).0, 401);
    assert_eq!(srv.call("POST", "/tasks", "{}", Some("r-secret")).0, 403);
    assert_eq!(srv.call("GET", "/config", "", Some("w-secret")).0, 403);
    let (code, body) = srv.call("GET", "/tasks", "", Some("r-secret"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["tasks"][1]["status"], "never_run");
    assert_eq!(
        srv.call("POST", "/tasks", r#"{"targets": ["nope"]}"#, Some("w-secret"))
            .0,
        400
    );

    let (code, body) = srv.call("POST", "/tasks", r#"{"targets": ["b"]}"#, Some("w-secret"));
    assert_eq!(code, 202, "{body}");
    let run = wait_run(&srv, json(&body)["run_id"].as_u64().unwrap());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["report"]["ran"], 2, "{run}");
    let (_, body) = srv.call("GET", "/tasks/b", "", Some("r-secret"));
    let b = json(&body);
    assert_eq!(b["status"], "ran", "{b}");
    assert_eq!(b["key"].as_str().unwrap().len(), 64, "{b}");
    assert_eq!(b["outputs"][0]["path"], "b.out", "{b}");
    assert_eq!(srv.call("GET", "/tasks/zzz", "", Some("r-secret")).0, 404);

    // Two more runs back to back: serialized, the second all hits.
    let (_, one) = srv.call("POST", "/tasks", "", Some("w-secret"));
    let (_, two) = srv.call("POST", "/tasks", r#"{"force": false}"#, Some("w-secret"));
    let r1 = wait_run(&srv, json(&one)["run_id"].as_u64().unwrap());
    let r2 = wait_run(&srv, json(&two)["run_id"].as_u64().unwrap());
    assert_eq!(r1["report"]["cached"], 2, "{r1}");
    assert_eq!(r2["report"]["cached"], 2, "{r2}");

    let (_, cache) = srv.call("GET", "/cache", "", Some("r-secret"));
    assert!(json(&cache)["blobs"].as_u64().unwrap() >= 1, "{cache}");
    let (_, metrics) = srv.call("GET", "/metrics", "", None);
    assert!(metrics.contains("reprovm_tasks_total{status=\"ran\"} 2"), "{metrics}");
    assert!(
        metrics.contains("reprovm_runs_total{result=\"success\"} 3"),
        "{metrics}"
    );
    let (code, config) = srv.call("GET", "/config", "", Some("a-secret"));
    assert_eq!(code, 200);
    assert!(!config.contains("test-key"), "secrets are redacted: {config}");
    assert_eq!(srv.call("DELETE", "/cache", "", Some("w-secret")).0, 403);
    let (code, del) = srv.call("DELETE", "/cache", "", Some("a-secret"));
    assert_eq!(code, 200, "{del}");
    assert!(json(&del)["deleted_blobs"].as_u64().unwrap() >= 1);
    let (code, ui) = srv.call("GET", "/swagger-ui", "", None);
    assert_eq!(code, 200);
    assert!(ui.contains("swagger-ui-bundle.js"));

    // SIGTERM: exits 143 (128 + SIGTERM), as a run does.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(srv.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let mut srv = srv;
    let status = srv.child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{status:?}");
    let audit = std::fs::read_to_string(ws.path().join("audit.log")).unwrap();
    assert!(
        audit.contains("type=AUTH_FAILURE user=anonymous resource=/tasks"),
        "{audit}"
    );
    assert!(audit.contains("type=TASK_START user=ci resource=a"), "{audit}");
    assert!(audit.contains("type=BLOB_DELETE user=boss"), "{audit}");
    let v = reprovm(ws.path(), &["audit", "verify", "audit.log", "--key", "test-key"]);
    assert_eq!(v.code, 0, "{v:?}");
}

#[test]
fn serve_sees_files_changed_between_runs() {
    let ws = workspace(
        "task copy {\n  cmd = cp in.txt out.txt\n  inputs = in.txt\n  outputs = out.txt\n}\n",
        &[("in.txt", "one\n")],
    );
    std::fs::write(
        ws.path().join("tokens.toml"),
        "[[tokens]]\nname = \"ci\"\ntoken = \"w-secret\"\nrole = \"write\"\n",
    )
    .unwrap();
    std::fs::write(ws.path().join("s.conf"), "[serve]\ntoken_file=tokens.toml\n").unwrap();
    let srv = Serve::start(ws.path(), &["--config", "s.conf"]);
    let run = || {
        let (code, body) = srv.call("POST", "/tasks", "", Some("w-secret"));
        assert_eq!(code, 202, "{body}");
        wait_run(&srv, json(&body)["run_id"].as_u64().unwrap())
    };
    assert_eq!(run()["report"]["ran"], 1);
    // Into the next second, so that the workspace state comes to trust in.txt's stat.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    std::thread::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos())) + Duration::from_millis(30));
    assert_eq!(run()["report"]["cached"], 1);
    assert_eq!(run()["report"]["cached"], 1);
    // What the server saw at start-up or in the last run must not hide these.
    std::fs::write(ws.path().join("in.txt"), "two\n").unwrap();
    let r = run();
    assert_eq!(r["report"]["ran"], 1, "{r}");
    assert_eq!(std::fs::read_to_string(ws.path().join("out.txt")).unwrap(), "two\n");
    std::fs::remove_file(ws.path().join("out.txt")).unwrap();
    let r = run();
    assert_eq!(r["report"]["cached"], 1, "{r}");
    assert_eq!(std::fs::read_to_string(ws.path().join("out.txt")).unwrap(), "two\n");
}
