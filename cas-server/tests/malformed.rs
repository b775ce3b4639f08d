//! Malformed input catalogue: each case sends one bad request (through hyper,
//! or as raw bytes over TCP when hyper would refuse to send it) and asserts the
//! status, the JSON error code where the server can answer with one, and that
//! nothing was stored: no blob, action-cache entry or ref appears, and the
//! blob count in `/v1/stats` is unchanged.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::{noise, req, Server};
use reprovm_sdk::proto::encode_frame;
use reprovm_sdk::Digest;

/// How a case reaches the server.
enum Send {
    /// A well-formed HTTP request (method, path, headers, body).
    Http(&'static str, String, Vec<(&'static str, String)>, Bytes),
    /// Raw bytes on a fresh connection; `close` half-closes after sending.
    Raw(Vec<u8>, bool),
}

struct Case {
    name: &'static str,
    send: Send,
    /// Acceptable statuses; `None` in the list stands for "connection closed without an answer".
    status: &'static [Option<u16>],
    /// The JSON error code, when the answer is ours (not hyper's).
    code: Option<&'static str>,
    /// Paths that must answer 404 afterwards (what the request tried to create).
    absent: Vec<String>,
}

fn blob(d: &Digest) -> String {
    format!("/v1/blobs/{d}")
}

fn http(
    method: &'static str,
    path: impl Into<String>,
    headers: &[(&'static str, &str)],
    body: impl Into<Bytes>,
) -> Send {
    Send::Http(
        method,
        path.into(),
        headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        body.into(),
    )
}

/// Sends raw bytes and reads the first response: status (None: closed without one) and body.
fn raw_request(addr: &str, bytes: &[u8], close: bool) -> (Option<u16>, Bytes) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The peer may close early (e.g. after 431); a failed write is part of the answer.
    let _ = s.write_all(bytes);
    if close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = |resp: &[u8]| {
        let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
            return false;
        };
        let head = String::from_utf8_lossy(&resp[..end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        resp.len() >= end + 4 + len
    };
    while !complete(&resp) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&resp);
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|t| t.get(..3)?.parse().ok());
    let body = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|end| Bytes::copy_from_slice(&resp[end + 4..]))
        .unwrap_or_default();
    (status, body)
}

/// The `error` code of a JSON error body, if it is one.
fn code_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v["message"].as_str().filter(|m| !m.is_empty())?;
    Some(v["error"].as_str()?.to_string())
}

fn put_head(path: &str, len: usize, extra: &str) -> Vec<u8> {
    format!("PUT {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len}\r\n{extra}\r\n").into_bytes()
}

fn catalogue() -> Vec<Case> {
    let data = b"some bytes to store".to_vec();
    let d = Digest::of_blake3(&data);
    let hex = d.to_hex();
    let mut cases = Vec::new();
    let mut add = |name, send, status: &'static [Option<u16>], code, absent: Vec<String>| {
        cases.push(Case {
            name,
            send,
            status,
            code,
            absent,
        })
    };
    const S400: &[Option<u16>] = &[Some(400)];
    // Digests.
    for (name, bad) in [
        ("upper-case digest", hex.to_uppercase()),
        ("short digest", hex[..63].to_string()),
        ("long digest", format!("{hex}0")),
        ("non-hex digest", format!("{}g", &hex[..63])),
        ("digest with an encoded space", format!("{}%20", &hex[..63])),
    ] {
        add(
            name,
            http("PUT", format!("/v1/blobs/{bad}"), &[], data.clone()),
            S400,
            Some("invalid_digest"),
            vec![blob(&d)],
        );
    }
    add(
        "sha-256 path with a blake3 digest of other bytes",
        http("PUT", format!("/cas/{hex}"), &[], data.clone()),
        S400,
        Some("digest_mismatch"),
        vec![format!("/cas/{hex}")],
    );
    add(
        "wrong bytes for the digest",
        http("PUT", blob(&d), &[], "other bytes"),
        S400,
        Some("digest_mismatch"),
        vec![blob(&d)],
    );
    // Bodies that do not match their Content-Length.
    let mut truncated = put_head(&blob(&d), data.len(), "");
    truncated.extend_from_slice(&data[..7]);
    add(
        "truncated body, then EOF",
        Send::Raw(truncated, true),
        &[None, Some(400)],
        None,
        vec![blob(&d)],
    );
    let long_data = [data.as_slice(), b"and more"].concat();
    let dl = Digest::of_blake3(&long_data);
    let mut longer = put_head(&blob(&dl), data.len(), "");
    longer.extend_from_slice(&long_data);
    add(
        "body longer than Content-Length",
        Send::Raw(longer, true),
        S400,
        Some("digest_mismatch"),
        vec![blob(&dl), blob(&d)],
    );
    let nan = format!("PUT {} HTTP/1.1\r\nhost: x\r\ncontent-length: x19\r\n\r\n", blob(&d));
    add(
        "non-numeric Content-Length",
        Send::Raw(nan.into_bytes(), true),
        S400,
        None,
        vec![blob(&d)],
    );
    let conflicting = format!(
        "PUT {} HTTP/1.1\r\nhost: x\r\ncontent-length: 19\r\ncontent-length: 5\r\n\r\n",
        blob(&d)
    );
    add(
        "two different Content-Lengths",
        Send::Raw(conflicting.into_bytes(), true),
        S400,
        None,
        vec![blob(&d)],
    );
    let big = Digest::of_blake3(b"big");
    add(
        "Content-Length past max_blob_size",
        Send::Raw(put_head(&blob(&big), 9 << 30, ""), true),
        &[Some(413)],
        None,
        vec![blob(&big)],
    );
    // Ranges (on an absent blob the range is checked first, or 404: both store nothing).
    for (name, r) in [
        ("range end before start", "bytes=9-2"),
        ("range in other units", "lines=0-1"),
        ("multi-range", "bytes=0-1,5-6"),
        ("non-numeric range", "bytes=a-b"),
        ("range without bytes=", "0-10"),
        ("empty range", "bytes=-"),
        ("range overflowing u64", "bytes=0-99999999999999999999999"),
    ] {
        add(
            name,
            http("GET", blob(&d), &[("range", r)], ""),
            &[Some(400), Some(404)],
            None,
            vec![blob(&d)],
        );
    }
    // Oversize headers: hyper answers 431 before routing.
    let huge = "a".repeat(200 << 10);
    let oversize = format!("GET {} HTTP/1.1\r\nhost: x\r\nx-big: {huge}\r\n\r\n", blob(&d));
    add(
        "one 200 KiB header",
        Send::Raw(oversize.into_bytes(), false),
        &[Some(431)],
        None,
        vec![],
    );
    let many: String = (0..2000).map(|i| format!("x-h{i}: {}\r\n", "v".repeat(50))).collect();
    let many = format!(
        "PUT {} HTTP/1.1\r\nhost: x\r\ncontent-length: 19\r\n{many}\r\n",
        blob(&d)
    );
    add(
        "2000 headers",
        Send::Raw(many.into_bytes(), false),
        &[Some(431)],
        None,
        vec![blob(&d)],
    );
    // Encodings.
    for enc in ["br", "gzip", "zstd, lz4", "identity;q=x"] {
        add(
            "unknown Content-Encoding",
            http("PUT", blob(&d), &[("content-encoding", enc)], data.clone()),
            &[Some(415)],
            Some("unsupported_encoding"),
            vec![blob(&d)],
        );
    }
    add(
        "corrupt zstd body",
        http("PUT", blob(&d), &[("content-encoding", "zstd")], "not zstd at all"),
        S400,
        None,
        vec![blob(&d)],
    );
    add(
        "corrupt lz4 body",
        http("PUT", blob(&d), &[("content-encoding", "lz4")], "not lz4 at all"),
        S400,
        None,
        vec![blob(&d)],
    );
    let mut z = zstd::bulk::compress(&noise(9, 100_000), 3).unwrap();
    z.truncate(z.len() / 2);
    let dz = Digest::of_blake3(&noise(9, 100_000));
    add(
        "truncated zstd body",
        http("PUT", blob(&dz), &[("content-encoding", "zstd")], z),
        S400,
        None,
        vec![blob(&dz)],
    );
    let z = zstd::bulk::compress(b"decodes to other bytes", 3).unwrap();
    add(
        "zstd body of other bytes",
        http("PUT", blob(&d), &[("content-encoding", "zstd")], z),
        S400,
        Some("digest_mismatch"),
        vec![blob(&d)],
    );
    // blobs:missing bodies.
    for (name, body) in [
        ("missing: JSON array", "[1,2]".to_string()),
        ("missing: JSON string", "\"digests\"".to_string()),
        ("missing: not JSON", "{digests".to_string()),
        ("missing: digests not a list", "{\"digests\": 5}".to_string()),
        (
            "missing: a bad digest in the list",
            format!("{{\"digests\": [\"{}\"]}}", hex.to_uppercase()),
        ),
    ] {
        add(
            name,
            http("POST", "/v1/blobs:missing", &[], body),
            S400,
            Some("invalid_json"),
            vec![],
        );
    }
    let many: Vec<Digest> = (0..10_001u32).map(|i| Digest::of_blake3(&i.to_le_bytes())).collect();
    let body = serde_json::to_vec(&serde_json::json!({ "digests": many })).unwrap();
    add(
        "missing: 10,001 digests",
        http("POST", "/v1/blobs:missing", &[], body),
        S400,
        Some("too_many_digests"),
        vec![],
    );
    // Batch frames.
    let mut frame = BytesMut::new();
    encode_frame(&d, &data, &mut frame);
    let whole = frame.freeze();
    add(
        "batch: frame cut in its body",
        http("POST", "/v1/blobs:batch", &[], whole.slice(..whole.len() - 3)),
        S400,
        Some("invalid_frame"),
        vec![blob(&d)],
    );
    add(
        "batch: frame cut in its header",
        http("POST", "/v1/blobs:batch", &[], whole.slice(..20)),
        S400,
        Some("invalid_frame"),
        vec![blob(&d)],
    );
    let mut huge_len = BytesMut::new();
    huge_len.put_slice(d.as_bytes());
    huge_len.put_u64(u64::MAX);
    huge_len.put_slice(&data);
    add(
        "batch: frame length u64::MAX",
        http("POST", "/v1/blobs:batch", &[], huge_len.freeze()),
        &[Some(400), Some(413)],
        None,
        vec![blob(&d)],
    );
    // Refs and the action cache.
    for (name, path) in [
        ("ref name with ..", "/v1/refs/a/../../etc".to_string()),
        ("ref name with encoded ..", "/v1/refs/a/%2e%2e/%2e%2e/etc".to_string()),
        ("ref name with NUL", "/v1/refs/a%00b".to_string()),
        ("absolute ref name", "/v1/refs//etc/passwd".to_string()),
        ("ref name with backslash", "/v1/refs/a%5c..%5cb".to_string()),
        ("ref name of 2000 chars", format!("/v1/refs/{}", "n".repeat(2000))),
    ] {
        add(
            name,
            http("PUT", path, &[], "x"),
            S400,
            Some("invalid_ref_name"),
            vec![],
        );
    }
    add(
        "ac key that is not a digest",
        http("PUT", "/v1/ac/xyz", &[], "v"),
        S400,
        Some("invalid_digest"),
        vec![],
    );
    let key = Digest::of_blake3(b"ac key");
    add(
        "ac value over 4 MiB",
        http("PUT", format!("/v1/ac/{key}"), &[], vec![0u8; (4 << 20) + 1]),
        &[Some(413)],
        Some("too_large"),
        vec![format!("/v1/ac/{key}")],
    );
    cases
}

async fn stored_blobs(s: &Server) -> u64 {
    let (_, _, body) = req(s, "GET", "/v1/stats", &[], "").await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["blobs"].as_u64().expect("blobs in /v1/stats")
}

#[tokio::test]
async fn malformed_requests_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    // One blob that is there all along, so that range cases also meet a real blob.
    let present = b"present".to_vec();
    assert_eq!(
        req(&s, "PUT", &blob(&Digest::of_blake3(&present)), &[], present)
            .await
            .0,
        201
    );
    let baseline = stored_blobs(&s).await;
    let cases = catalogue();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (status, body) = match &case.send {
            Send::Http(method, path, headers, body) => {
                let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let (st, _, b) = req(&s, method, path, &hs, body.clone()).await;
                (Some(st), b)
            }
            Send::Raw(bytes, close) => {
                let (addr, bytes, close) = (s.addr.clone(), bytes.clone(), *close);
                tokio::task::spawn_blocking(move || raw_request(&addr, &bytes, close))
                    .await
                    .unwrap()
            }
        };
        println!("{}: {status:?}", case.name);
        if !case.status.contains(&status) {
            failures.push(format!(
                "{}: status {status:?}, expected {:?}: {body:?}",
                case.name, case.status
            ));
            continue;
        }
        if let Some(code) = case.code {
            let got = code_of(&body);
            if got.as_deref() != Some(code) {
                failures.push(format!("{}: error {got:?}, expected {code:?}", case.name));
            }
        }
        for path in &case.absent {
            let (st, _, _) = req(&s, "HEAD", path, &[], "").await;
            if st != 404 {
                failures.push(format!("{}: {path} answers {st} afterwards", case.name));
            }
        }
        let now = stored_blobs(&s).await;
        if now != baseline {
            failures.push(format!("{}: {now} blobs stored, {baseline} before", case.name));
        }
        let (_, _, refs) = req(&s, "GET", "/v1/refs?prefix=", &[], "").await;
        let refs: serde_json::Value = serde_json::from_slice(&refs).unwrap();
        if refs["refs"].as_array().is_some_and(|r| !r.is_empty()) {
            failures.push(format!("{}: refs appeared: {refs}", case.name));
        }
    }
    println!("{} malformed cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // The server is still healthy after all that.
    assert_eq!(req(&s, "GET", "/health", &[], "").await.0, 200);
}
