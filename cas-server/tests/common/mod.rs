//! Test harness: starts the real `cas-server` binary on an ephemeral port
//! and talks HTTP to it over real sockets.
#![allow(dead_code)]

pub mod grpc;
pub mod remote;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// A running server process.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub scheme: String,
    pub data_dir: PathBuf,
    /// The `grpc_listen` address, when `CAS_GRPC_LISTEN` was given.
    pub grpc_addr: Option<String>,
}

impl Server {
    /// Starts a server on `data_dir` with extra environment variables.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cas-server"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("CAS_LOG_LEVEL", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn cas-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("read banner");
        let grpc_addr = env.iter().any(|(k, _)| *k == "CAS_GRPC_LISTEN").then(|| {
            let mut l = String::new();
            reader.read_line(&mut l).expect("read the grpc banner");
            l.trim()
                .rsplit_once("://")
                .map(|(_, a)| a.to_string())
                .unwrap_or_else(|| panic!("unexpected banner {l:?}"))
        });
        let (scheme, addr) = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|u| u.split_once("://"))
            .unwrap_or_else(|| panic!("unexpected banner {line:?}"));
        Server {
            scheme: scheme.to_string(),
            addr: addr.to_string(),
            child,
            data_dir: data_dir.to_path_buf(),
            grpc_addr,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        signal(self.pid(), "TERM");
        let status = self.child.wait().expect("wait");
        std::mem::forget(self);
        status.code()
    }

    /// SIGKILL, then wait.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::forget(self);
    }

    /// Peak resident set size (VmHWM) in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// A plain HTTP client for raw requests.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// One request; returns status, headers and the whole body.
pub async fn req(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> (u16, http::HeaderMap, Bytes) {
    let mut b = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.url()));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client()
        .request(b.body(Full::new(body.into())).unwrap())
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (status, headers, body)
}

/// The `error` code of a JSON error body.
pub fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value =
        serde_json::from_slice(body).unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(body)));
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error body without message: {v}"
    );
    v["error"].as_str().expect("error field").to_string()
}

/// Deterministic pseudo-random bytes (xorshift), cheap to regenerate for large streams.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `curl -X PUT --data-binary @file url` with `extra` arguments, printing only the status code
/// (a real client: curl sends `Expect: 100-continue` for bodies over 1 KiB unless told otherwise).
pub fn curl_put_cmd(url: &str, file: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT"])
        .args(extra)
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(url)
        .stdout(Stdio::piped());
    cmd
}

/// Runs [`curl_put_cmd`]; returns the status code curl printed.
pub fn curl_put(url: &str, file: &Path, extra: &[&str]) -> String {
    let out = curl_put_cmd(url, file, extra).output().expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a config file with these tokens (`(name, token, role)`) and returns its path, for
/// `Server::start(.., &[("CAS_CONFIG", path)])`.
pub fn tokens_config(dir: &Path, tokens: &[(&str, &str, &str)]) -> PathBuf {
    let mut text = String::from("[auth]\nallow_anonymous_read = false\nmetrics_public = true\n");
    for (name, token, role) in tokens {
        text.push_str(&format!(
            "[[auth.tokens]]\nname = \"{name}\"\ntoken = \"{token}\"\nrole = \"{role}\"\n"
        ));
    }
    let path = dir.join("cas-tokens.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `Authorization: Basic` of `user:password`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Sends `raw` (a whole HTTP/1.1 request) on a new connection and returns the status of the
/// answer (for requests a well-behaved client library will not send).
pub fn raw_status(server: &Server, raw: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&server.addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(raw).expect("send");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("read the answer");
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl.
pub fn make_certs(dir: &Path) {
    let script = r#"
set -e
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 \
  -subj /CN=reprovm-test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $who.key -out $who.csr -subj /CN=$who 2>/dev/null
done
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.ext
for who in server client; do
  openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $who.pem -days 2 -extfile $who.ext 2>/dev/null
done
"#;
    let ok = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl could not make the test certificates");
}
