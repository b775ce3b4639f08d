//! Transport security and abuse limits: TLS (HTTP/1.1 and HTTP/2 via ALPN),
//! client certificates mapped to a role, the sdk trusting a private CA,
//! per-IP rate limits, slow clients, stalled bodies, the upload cap and
//! oversize headers.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{error_code, make_certs, req, Server};
use reprovm_sdk::{CasExt, Digest, HttpCas};

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, version) = text.split_once(' ').unwrap_or(("000", ""));
    (code.to_string(), version.to_string())
}

#[tokio::test]
async fn tls_alpn_client_certificates_and_sdk_ca() {
    let dir = tempfile::tempdir().unwrap();
    make_certs(dir.path());
    let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let cfg = dir.path().join("cas.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nclient_cert_role = \"write\"\n\
             [auth]\n[[auth.tokens]]\nname = \"reader\"\ntoken = \"r-secret\"\nrole = \"read\"\n",
            p("server.pem"),
            p("server.key"),
            p("ca.pem")
        ),
    )
    .unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    assert_eq!(s.scheme, "https");
    let base = s.url();
    let ca = p("ca.pem");

    // HTTP/1.1 and HTTP/2 (ALPN) over TLS.
    assert_eq!(
        curl(&["--cacert", &ca, "--http1.1", &format!("{base}/health")]),
        ("200".into(), "1.1".into())
    );
    assert_eq!(
        curl(&["--cacert", &ca, "--http2", &format!("{base}/health")]),
        ("200".into(), "2".into())
    );
    // An untrusted client refuses the server; plain HTTP to the TLS port gets no HTTP answer.
    assert_eq!(curl(&[&format!("{base}/health")]).0, "000");
    assert_eq!(curl(&[&format!("http://{}/health", s.addr)]).0, "000");

    // Without credentials: 401. With the client certificate: the configured role (write).
    let blob = dir.path().join("blob");
    std::fs::write(&blob, b"over tls").unwrap();
    let d = Digest::of_blake3(b"over tls");
    let url = format!("{base}/v1/blobs/{d}");
    let put = |extra: &[&str]| {
        let mut args = vec!["--cacert", ca.as_str(), "-X", "PUT", "--data-binary"];
        let at = format!("@{}", blob.display());
        let mut owned: Vec<String> = args.drain(..).map(String::from).collect();
        owned.push(at);
        owned.extend(extra.iter().map(|s| s.to_string()));
        owned.push(url.clone());
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        curl(&refs).0
    };
    assert_eq!(put(&[]), "401", "{}", curl_verbose(&ca, &url));
    assert_eq!(
        put(&["-H", "Authorization: Bearer r-secret"]),
        "403",
        "a token wins over the certificate"
    );
    assert_eq!(put(&["--cert", &p("client.pem"), "--key", &p("client.key")]), "201");

    // The sdk trusts the private CA when told to, and refuses the server otherwise.
    let client = HttpCas::builder(base.clone())
        .with_token("r-secret")
        .with_ca_file(&ca)
        .build()
        .unwrap();
    assert_eq!(client.get_bytes(&d).await.unwrap(), Bytes::from_static(b"over tls"));
    let untrusting = HttpCas::builder(base).with_token("r-secret").build().unwrap();
    assert!(untrusting.get_bytes(&d).await.is_err());
}

#[tokio::test]
async fn per_ip_rate_limit_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_RATE_LIMIT_PER_IP", "5")]);
    let cfg_burst = 100; // default burst
    let mut limited = None;
    for i in 0..(cfg_burst + 50) {
        let (st, h, body) = req(&s, "GET", "/v1/stats", &[], "").await;
        if st == 429 {
            assert_eq!(error_code(&body), "rate_limited");
            limited = Some((i, h["retry-after"].to_str().unwrap().parse::<u64>().unwrap()));
            break;
        }
        assert_eq!(st, 200);
    }
    let (i, retry_after) = limited.expect("the bucket ran dry");
    assert!(i >= 100, "the burst of 100 is allowed first (limited after {i})");
    assert!(retry_after >= 1);
}

fn raw(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until the server closes; returns what it sent and how long that took.
fn read_until_closed(mut s: TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

#[tokio::test]
async fn slow_and_stalled_clients_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        &dir.path().join("data"),
        &[("CAS_HEADER_TIMEOUT_SECS", "1"), ("CAS_BODY_IDLE_TIMEOUT_SECS", "1")],
    );
    // Slowloris: headers that never end.
    let mut c = raw(&s.addr);
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
    let (_, took) = read_until_closed(c);
    assert!(
        took < Duration::from_secs(5),
        "a half-sent head holds the connection for {took:?}"
    );

    // A body that stalls: the upload fails and stores nothing.
    let d = Digest::of_blake3(&[7u8; 1000]);
    let mut c = raw(&s.addr);
    write!(
        c,
        "PUT /v1/blobs/{d} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    )
    .unwrap();
    c.write_all(&[7u8; 10]).unwrap();
    let (_, took) = read_until_closed(c);
    assert!(
        took < Duration::from_secs(6),
        "a stalled body holds the connection for {took:?}"
    );
    assert_eq!(req(&s, "HEAD", &format!("/v1/blobs/{d}"), &[], "").await.0, 404);

    // Oversize request head: refused, not buffered without bound.
    let mut c = raw(&s.addr);
    let big = "a".repeat(200 * 1024);
    let _ = write!(c, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let (answer, _) = read_until_closed(c);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:.80}");
}

#[tokio::test]
async fn upload_cap_answers_503_while_full() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cas.toml");
    std::fs::write(&cfg, "[limits]\nmax_inflight_uploads = 1\nbody_idle_timeout_secs = 5\n").unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    // One upload holds the only slot (its body arrives slowly).
    let d = Digest::of_blake3(&[1u8; 100]);
    let mut c = raw(&s.addr);
    write!(
        c,
        "PUT /v1/blobs/{d} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    )
    .unwrap();
    c.write_all(&[1u8; 10]).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = Digest::of_blake3(b"other");
    let (st, h, body) = req(&s, "PUT", &format!("/v1/blobs/{other}"), &[], "other").await;
    assert_eq!((st, error_code(&body).as_str()), (503, "too_many_uploads"));
    assert_eq!(h["retry-after"], "1");
    // Finishing the first upload frees the slot.
    c.write_all(&[1u8; 90]).unwrap();
    let mut answer = [0u8; 12];
    c.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 201");
    assert_eq!(req(&s, "PUT", &format!("/v1/blobs/{other}"), &[], "other").await.0, 201);
}

fn curl_verbose(ca: &str, url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sv", "--cacert", ca, "-X", "PUT", "--data-binary", "x", url])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `max_size_hard_limit` holds for uploads whose size is not declared (chunked, no Content-Length).
#[tokio::test]
async fn hard_limit_holds_for_chunked_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_MAX_SIZE_HARD_LIMIT", "1MiB")]);
    let put_chunked = |data: Vec<u8>| {
        let d = Digest::of_blake3(&data).to_hex();
        let file = dir.path().join(&d);
        std::fs::write(&file, &data).unwrap();
        let url = format!("{}/v1/blobs/{d}", s.url());
        let code = common::curl_put(&url, &file, &["-H", "Transfer-Encoding: chunked"]);
        (d, code)
    };
    let (big, code) = put_chunked(common::noise(1, 3 << 20));
    assert_eq!(code, "507", "a chunked upload past the hard limit");
    let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{big}"), &[], "").await;
    assert_eq!(st, 404, "nothing of it is stored");
    let (small, code) = put_chunked(common::noise(2, 512 << 10));
    assert_eq!(code, "201", "a chunked upload within the limit");
    let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{small}"), &[], "").await;
    assert_eq!(st, 200);
    let (_, code) = put_chunked(common::noise(3, 768 << 10));
    assert_eq!(code, "507", "the limit counts what is stored");
}

/// The hard limit holds for uploads in flight at the same time: each reserves its bytes, so eight
/// concurrent (slow) uploads of 300 KiB under a 1 MiB limit cannot all be taken.
#[tokio::test]
async fn hard_limit_holds_for_concurrent_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_MAX_SIZE_HARD_LIMIT", "1MiB")]);
    let mut children = Vec::new();
    for i in 0..8u64 {
        let data = common::noise(100 + i, 300 << 10);
        let d = Digest::of_blake3(&data).to_hex();
        let file = dir.path().join(&d);
        std::fs::write(&file, &data).unwrap();
        let url = format!("{}/v1/blobs/{d}", s.url());
        let extra = ["-H", "Expect:", "--limit-rate", "300k"];
        let child = common::curl_put_cmd(&url, &file, &extra).spawn().unwrap();
        children.push(child);
    }
    let codes: Vec<String> = children
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).to_string())
        .collect();
    let created = codes.iter().filter(|c| *c == "201").count();
    let refused = codes.iter().filter(|c| *c == "507").count();
    assert_eq!(created + refused, 8, "{codes:?}");
    assert!(
        (1..=3).contains(&created),
        "at most 3 x 300 KiB fit in 1 MiB: {codes:?}"
    );
    let (_, _, body) = req(&s, "GET", "/v1/stats", &[], "").await;
    let stats: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(stats["logical_bytes"].as_u64().unwrap() <= 1 << 20, "{stats}");
}
