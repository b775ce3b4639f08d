//! Real remote-tier servers for the tests (moto for S3), and waiting on a
//! server's `/v1/stats`. `scripts/setup.sh --test` installs them.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reprovm_sdk::object_store::ObjectStoreCas;

use super::{req, Server};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A helper process (emulator) killed on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on port {port} (is it installed? run scripts/setup.sh --test)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn spawn(cmd: &mut Command, port: u16, what: &str) -> Proc {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e} (run scripts/setup.sh --test)"));
    let p = Proc(child);
    wait_port(port, what);
    p
}

pub fn moto(port: u16) -> Proc {
    let p = spawn(
        Command::new("moto_server").args(["-H", "127.0.0.1", "-p", &port.to_string()]),
        port,
        "moto_server",
    );
    let status = Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("http://127.0.0.1:{port}/cache")])
        .status()
        .unwrap();
    assert!(status.success(), "creating the bucket");
    p
}

pub fn s3_config(port: u16) -> String {
    format!(
        "url = \"s3://cache/team\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\nallow_http = true\naccess_key_id = \"test\"\nsecret_access_key = \"test\"\n"
    )
}

/// Writes a config with the given `[remote]` body (plus top-level extras) and starts a server.
pub fn server_with(dir: &Path, name: &str, top: &str, remote: &str) -> Server {
    let cfg = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg, format!("{top}\n[remote]\nmax_retry_backoff_secs = 1\n{remote}")).unwrap();
    Server::start(&dir.join(name), &[("CAS_CONFIG", cfg.to_str().unwrap())])
}

pub async fn stats(s: &Server) -> serde_json::Value {
    serde_json::from_slice(&req(s, "GET", "/v1/stats", &[], "").await.2).unwrap()
}

pub async fn wait_for(
    s: &Server,
    what: &str,
    secs: u64,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let st = stats(s).await;
        if pred(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn backlog_drained(s: &Server) {
    wait_for(s, "the sync backlog to drain", 120, |st| {
        st["remote"]["sync_backlog"] == 0
    })
    .await;
}

/// The bucket that `s3_config(port)` names, opened directly (to check what reached it).
pub fn moto_bucket(port: u16) -> ObjectStoreCas {
    ObjectStoreCas::from_url(
        "s3://cache/team",
        [
            ("aws_endpoint", format!("http://127.0.0.1:{port}")),
            ("aws_allow_http", "true".into()),
            ("aws_region", "us-east-1".into()),
            ("aws_access_key_id", "test".into()),
            ("aws_secret_access_key", "test".into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    )
    .unwrap()
}
