//! `deploy/` against the real binaries: the systemd units pass `systemd-analyze verify`; every
//! metric the Grafana dashboard and the alert rules name is in a live `/metrics` of cas-server or
//! `reprovm serve`; schemathesis finds no failure against either server with `deploy/openapi.yaml`;
//! Swagger UI is served from the bundled copy; the server's audit log records refusals and digest
//! mismatches and `cas-server audit verify` detects an edited line.
//!
//! Needs `systemd-analyze` and `schemathesis` (`scripts/setup.sh --test`) and the `reprovm`
//! binary next to `cas-server` (`cargo build --release --workspace`).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{req, Server};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cas-server"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("{name} not found: run scripts/setup.sh --test"))
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let analyze = tool("systemd-analyze");
    let dir = tempfile::tempdir().unwrap();
    let bins = bin_dir();
    assert!(
        bins.join("reprovm").exists(),
        "build the workspace first: cargo build --release --workspace"
    );
    let mut units = Vec::new();
    for name in ["cas-server.service", "cas-server@.service", "reprovm-serve.service"] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(name)).unwrap();
        for key in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "ReadWritePaths=",
            "CapabilityBoundingSet=\n",
            "Restart=on-failure",
            "KillSignal=SIGTERM",
        ] {
            assert!(text.contains(key), "{name} lacks {key:?}");
        }
        // The units name /usr/local/bin; verify checks that ExecStart exists, so point it at the build.
        let text = text.replace("/usr/local/bin/", &format!("{}/", bins.display()));
        let file = if name.ends_with("@.service") {
            name.replace("@.", "@test.")
        } else {
            name.to_string()
        };
        std::fs::write(dir.path().join(&file), text).unwrap();
        units.push(dir.path().join(file));
    }
    let out = Command::new(analyze).arg("verify").args(&units).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify failed: {stderr}");
    // Unknown keys and similar mistakes are only warnings: treat any output as a failure.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

/// `reprovm serve` on an ephemeral port, in a workspace with one task.
struct Serve {
    child: Child,
    addr: String,
    _ws: tempfile::TempDir,
}

impl Serve {
    fn start() -> Serve {
        let ws = tempfile::tempdir().unwrap();
        std::fs::write(
            ws.path().join("manifest.rvm"),
            "task hello {\n cmd = echo hi > out.txt\n outputs = out.txt\n}\n",
        )
        .unwrap();
        let mut child = Command::new(bin_dir().join("reprovm"))
            .args(["serve", "--listen", "127.0.0.1:0", "manifest.rvm"])
            .current_dir(ws.path())
            .env("NO_COLOR", "1")
            .env("REPROVM_LOG_LEVEL", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn reprovm serve (cargo build --release --workspace)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .expect(&line)
            .to_string();
        Serve { child, addr, _ws: ws }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(addr: &str, path: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let resp = common::client()
            .get(format!("http://{addr}{path}").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let b = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    })
}

/// Metric names (`reprovm_…`) named in a file.
fn names_in(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("reprovm_") {
        let start = i + pos;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_lowercase() || b[end].is_ascii_digit() || b[end] == b'_') {
            end += 1;
        }
        out.insert(text[start..end].to_string());
        i = end;
    }
    out
}

#[test]
fn every_metric_in_the_dashboard_and_alerts_is_exported() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let serve = Serve::start();
    let exposed = format!("{}\n{}", get(&server.addr, "/metrics"), get(&serve.addr, "/metrics"));
    let series: std::collections::BTreeSet<String> = exposed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let mut checked = 0;
    for file in ["grafana/reprovm-dashboard.json", "prometheus/alerts.yml"] {
        let text = std::fs::read_to_string(deploy().join(file)).unwrap();
        for name in names_in(&text) {
            assert!(
                series.contains(&name),
                "{file} uses {name}, which no live /metrics exports:\n{exposed}"
            );
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} names checked");
    // Conventions: prefix, counters end in _total, histograms are _seconds.
    for line in exposed.lines().filter(|l| l.starts_with("# TYPE")) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (name, kind) = (parts[2], parts[3]);
        assert!(name.starts_with("reprovm_"), "{line}");
        match kind {
            "counter" => assert!(name.ends_with("_total"), "{line}"),
            "histogram" => assert!(name.ends_with("_seconds"), "{line}"),
            _ => {}
        }
    }
}

fn schemathesis(addr: &str, tag: &str) {
    let st = tool("schemathesis");
    // It leaves a cache directory in its working directory.
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(st)
        .current_dir(cwd.path())
        .args(["run"])
        .arg(deploy().join("openapi.yaml"))
        .args(["--url", &format!("http://{addr}")])
        .args(["--include-tag", tag])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args([
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
        ])
        .args(["--exclude-path", "/swagger-ui"])
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis against {tag}:\n{text}");
    assert!(!text.contains(" failed") || text.contains("0 failed"), "{text}");
}

#[test]
fn schemathesis_finds_no_failure_in_either_server() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    schemathesis(&server.addr, "cas-server");
    let serve = Serve::start();
    schemathesis(&serve.addr, "reprovm-serve");
}

#[test]
fn swagger_ui_and_the_spec_are_served_without_a_cdn() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), &[]);
    let html = get(&server.addr, "/swagger-ui");
    assert!(
        html.contains("/swagger-ui/swagger-ui-bundle.js") && !html.contains("https://"),
        "{html}"
    );
    let js = get(&server.addr, "/swagger-ui/swagger-ui-bundle.js");
    assert!(js.len() > 1_000_000);
    let spec = get(&server.addr, "/openapi.yaml");
    assert!(spec.starts_with("openapi: 3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_audit_log_records_refusals_and_mismatches_and_verifies() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("audit.log");
    let cfg = data.path().join("cas.toml");
    std::fs::write(
        &cfg,
        format!(
            "[auth]\n[[auth.tokens]]\nname = \"ci\"\ntoken = \"w-secret\"\nrole = \"write\"\n[audit]\nlog = \"{}\"\n",
            log.display()
        ),
    )
    .unwrap();
    let server = Server::start(&data.path().join("store"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    let digest = reprovm_sdk::Digest::of_blake3(b"hello").to_hex();
    let (s, _, _) = req(&server, "PUT", &format!("/v1/blobs/{digest}"), &[], "hello").await;
    assert_eq!(s, 401);
    let auth = [("authorization", "Bearer w-secret")];
    let (s, _, _) = req(&server, "PUT", &format!("/v1/blobs/{digest}"), &auth, "HELLO").await;
    assert_eq!(s, 400);
    let (s, _, _) = req(&server, "PUT", &format!("/v1/blobs/{digest}"), &auth, "hello").await;
    assert_eq!(s, 201);
    let (s, _, _) = req(&server, "DELETE", &format!("/v1/blobs/{digest}"), &auth, "").await;
    assert_eq!(s, 403);
    assert_eq!(server.terminate(), Some(0));

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("type=START "), "{text}");
    assert!(text.contains("type=AUTH_FAILURE user=anonymous"), "{text}");
    assert!(text.contains("type=SECURITY_VIOLATION user=ci"), "{text}");
    assert!(text.contains("type=CACHE_STORE user=ci"), "{text}");
    assert!(text.contains("type=STOP "), "{text}");
    let verify = |expect: i32| {
        let out = Command::new(env!("CARGO_BIN_EXE_cas-server"))
            .args(["audit", "verify"])
            .arg(&log)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(expect), "{stdout}");
        stdout
    };
    assert!(verify(0).contains("intact"));
    std::fs::write(&log, text.replacen("user=ci", "user=someone-else", 1)).unwrap();
    assert!(verify(1).contains("edited"));
}
