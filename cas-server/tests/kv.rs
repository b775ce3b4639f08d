//! The key-value namespaces `/kv/{namespace}/{key}` against the real binary: values as CAS
//! blobs (dedup, eviction), atomic replacement, streaming, limits, naming rules, methods, roles,
//! WebDAV PROPFIND/MKCOL, per-namespace metrics.

mod common;

use std::time::Duration;

use common::{basic, curl_put, error_code, noise, raw_status, req, tokens_config, Server};

fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), env);
    (dir, server)
}

async fn stats(s: &Server) -> serde_json::Value {
    let (st, _, body) = req(s, "GET", "/v1/stats", &[], "").await;
    assert_eq!(st, 200);
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn put_get_head_replace_delete() {
    let (_d, s) = start(&[]);
    let (st, _, body) = req(&s, "GET", "/kv/ns/a/b", &[], "").await;
    assert_eq!((st, error_code(&body).as_str()), (404, "not_found"));
    assert_eq!(req(&s, "HEAD", "/kv/ns/a/b", &[], "").await.0, 404);

    let (st, h, _) = req(&s, "PUT", "/kv/ns/a/b", &[("content-type", "text/plain")], "first").await;
    assert_eq!(st, 201);
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", reprovm_sdk::Digest::of_blake3(b"first")));
    let (st, h, body) = req(&s, "GET", "/kv/ns/a/b", &[], "").await;
    assert_eq!((st, &body[..]), (200, &b"first"[..]));
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(h["content-length"], "5");
    assert_eq!(h["etag"].to_str().unwrap(), etag);
    assert!(h.contains_key("last-modified"));
    let (st, h, body) = req(&s, "HEAD", "/kv/ns/a/b", &[], "").await;
    assert_eq!((st, h["content-length"].to_str().unwrap(), body.len()), (200, "5", 0));

    // Replacing answers 204; the new value (and its own content type) is what reads see.
    let (st, _, _) = req(&s, "PUT", "/kv/ns/a/b", &[], "second value").await;
    assert_eq!(st, 204);
    let (st, h, body) = req(&s, "GET", "/kv/ns/a/b", &[], "").await;
    assert_eq!((st, &body[..]), (200, &b"second value"[..]));
    assert_eq!(h["content-type"], "application/octet-stream");

    // Namespaces are apart: the same key elsewhere is not there.
    assert_eq!(req(&s, "GET", "/kv/other/a/b", &[], "").await.0, 404);
    // The empty value is a value.
    assert_eq!(req(&s, "PUT", "/kv/ns/empty", &[], "").await.0, 201);
    let (st, _, body) = req(&s, "GET", "/kv/ns/empty", &[], "").await;
    assert_eq!((st, body.len()), (200, 0));

    assert_eq!(req(&s, "DELETE", "/kv/ns/a/b", &[], "").await.0, 204);
    assert_eq!(req(&s, "GET", "/kv/ns/a/b", &[], "").await.0, 404);
    let (st, _, body) = req(&s, "DELETE", "/kv/ns/a/b", &[], "").await;
    assert_eq!((st, error_code(&body).as_str()), (404, "not_found"));

    // Values survive a restart.
    let data = s.data_dir.clone();
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&data, &[]);
    let (st, _, body) = req(&s, "GET", "/kv/ns/empty", &[], "").await;
    assert_eq!((st, body.len()), (200, 0));
}

#[tokio::test]
async fn values_are_cas_blobs_deduplicated_and_a_gone_blob_is_a_miss() {
    let (_d, s) = start(&[]);
    let value = noise(1, 200_000);
    let blobs_before = stats(&s).await["blobs"].as_u64().unwrap();
    let (st, h, _) = req(&s, "PUT", "/kv/ns/one", &[], value.clone()).await;
    assert_eq!(st, 201);
    assert_eq!(req(&s, "PUT", "/kv/other/two", &[], value.clone()).await.0, 201);
    assert_eq!(
        stats(&s).await["blobs"].as_u64().unwrap(),
        blobs_before + 1,
        "two keys, one blob"
    );
    // The value is the blob named by its digest.
    let digest = h["etag"].to_str().unwrap().trim_matches('"').to_string();
    let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{digest}"), &[], "").await;
    assert_eq!((st, &body[..]), (200, &value[..]));
    // The blob goes (as eviction or a quarantine would take it): both keys read as misses, never
    // as other bytes, and a listing no longer shows them.
    let listing = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
    let (_, _, body) = req(&s, "PROPFIND", "/kv/other/", &[("depth", "1")], "").await;
    assert!(listing(&body).contains("<D:href>/kv/other/two</D:href>"));
    assert_eq!(req(&s, "DELETE", &format!("/v1/blobs/{digest}"), &[], "").await.0, 204);
    let (st, _, body) = req(&s, "PROPFIND", "/kv/other/", &[("depth", "1")], "").await;
    assert_eq!(st, 207);
    assert!(!listing(&body).contains("two"), "{}", listing(&body));
    assert_eq!(req(&s, "GET", "/kv/ns/one", &[], "").await.0, 404);
    assert_eq!(req(&s, "HEAD", "/kv/other/two", &[], "").await.0, 404);
    // Writing the value again brings the key back.
    assert_eq!(req(&s, "PUT", "/kv/ns/one", &[], value.clone()).await.0, 201);
    let (st, _, body) = req(&s, "GET", "/kv/ns/one", &[], "").await;
    assert_eq!((st, body.len()), (200, value.len()));
}

#[tokio::test]
async fn lru_eviction_turns_old_keys_into_misses() {
    // 1 MiB budget; each value 400 KiB of noise (incompressible).
    let (_d, s) = start(&[("CAS_MAX_SIZE", "1MiB")]);
    for i in 0..6 {
        let (st, _, _) = req(&s, "PUT", &format!("/kv/ns/k{i}"), &[], noise(i, 400 << 10)).await;
        assert_eq!(st, 201);
        tokio::time::sleep(Duration::from_millis(1100)).await; // distinct access times
    }
    // The eviction loop runs every 2 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stats(&s).await["logical_bytes"].as_u64().unwrap() > 1 << 20 {
        assert!(std::time::Instant::now() < deadline, "eviction did not run");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(req(&s, "GET", "/kv/ns/k0", &[], "").await.0, 404, "oldest evicted");
    let (st, _, body) = req(&s, "GET", "/kv/ns/k5", &[], "").await;
    assert_eq!((st, &body[..]), (200, &noise(5, 400 << 10)[..]), "newest kept, whole");
}

#[tokio::test]
async fn a_reader_sees_the_old_or_the_new_value_never_a_mix() {
    let (_d, s) = start(&[]);
    // Multi-piece values (3 MiB, 1 MiB pieces) whose bytes differ everywhere.
    let a = noise(10, 3 << 20);
    let b = noise(11, 3 << 20);
    assert_eq!(req(&s, "PUT", "/kv/ns/atomic", &[], a.clone()).await.0, 201);
    let url = s.url();
    let writer = {
        let (a, b) = (a.clone(), b.clone());
        let url = url.clone();
        tokio::spawn(async move {
            let c = common::client();
            for i in 0..12 {
                let v = if i % 2 == 0 { b.clone() } else { a.clone() };
                let r = http::Request::put(format!("{url}/kv/ns/atomic"))
                    .body(http_body_util::Full::new(bytes::Bytes::from(v)))
                    .unwrap();
                let resp = c.request(r).await.unwrap();
                assert!(resp.status().is_success());
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let (st, _, body) = req(&s, "GET", "/kv/ns/atomic", &[], "").await;
        assert_eq!(st, 200);
        assert!(body[..] == a[..] || body[..] == b[..], "a read saw a mix");
        reads += 1;
    }
    writer.await.unwrap();
    assert!(reads > 0);
}

#[tokio::test]
async fn big_values_stream_through_flat_memory() {
    let (dir, s) = start(&[]);
    let file = dir.path().join("big");
    let size = 256usize << 20;
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for i in 0..(size >> 20) as u64 {
            f.write_all(&noise(i, 1 << 20)).unwrap();
        }
    }
    let url = format!("{}/kv/ns/big", s.url());
    // Chunked, no Content-Length: the size is learnt as it streams.
    assert_eq!(curl_put(&url, &file, &["-H", "Transfer-Encoding: chunked"]), "201");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("curl -sS --fail {url} | cmp - {}", file.display()))
        .status()
        .unwrap();
    assert!(out.success(), "the value read back differs");
    let rss = s.peak_rss();
    eprintln!("cas-server peak RSS for a 256 MiB value up and down: {} MiB", rss >> 20);
    assert!(rss < 150 << 20, "peak RSS {} MiB", rss >> 20);
}

#[tokio::test]
async fn limits_expect_continue_and_chunked_bodies() {
    let (dir, s) = start(&[("CAS_MAX_BLOB_SIZE", "64KiB")]);
    let small = dir.path().join("small");
    let big = dir.path().join("big");
    std::fs::write(&small, noise(1, 60 << 10)).unwrap();
    std::fs::write(&big, noise(2, 100 << 10)).unwrap();
    let url = format!("{}/kv/ns/v", s.url());
    // curl sends `Expect: 100-continue` for these bodies: the server answers at once.
    assert_eq!(curl_put(&url, &small, &[]), "201");
    assert_eq!(curl_put(&url, &big, &[]), "413");
    assert_eq!(curl_put(&url, &big, &["-H", "Transfer-Encoding: chunked"]), "413");
    assert_eq!(curl_put(&url, &small, &["-H", "Transfer-Encoding: chunked"]), "204");
    let (st, _, body) = req(&s, "PUT", "/kv/ns/w", &[], noise(3, 65 << 10)).await;
    assert_eq!((st, error_code(&body).as_str()), (413, "too_large"));
    // The old value is still whole after the refused replacements.
    let (st, _, body) = req(&s, "GET", "/kv/ns/v", &[], "").await;
    assert_eq!((st, &body[..]), (200, &std::fs::read(&small).unwrap()[..]));
    assert_eq!(req(&s, "GET", "/kv/ns/w", &[], "").await.0, 404);
    // A body cut short (the client goes away after 3 of 10 bytes) stores nothing.
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
        c.write_all(b"PUT /kv/ns/short HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
            .unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
    }
    assert_eq!(req(&s, "GET", "/kv/ns/short", &[], "").await.0, 404);
    let (st, _, body) = req(&s, "PUT", "/kv/ns/z", &[("content-encoding", "gzip")], "x").await;
    assert_eq!((st, error_code(&body).as_str()), (415, "unsupported_encoding"));
}

#[tokio::test]
async fn malformed_keys_and_wrong_methods() {
    let (_d, s) = start(&[]);
    let long_key = format!("/kv/ns/{}", "k".repeat(1025));
    let long_ns = format!("/kv/{}/k", "n".repeat(65));
    for path in [
        "/kv/ns/a//b",
        "/kv/ns/..",
        "/kv/ns/a/../b",
        "/kv/ns/./a",
        "/kv/ns/a%2e",
        "/kv/ns/a%00b",
        "/kv/ns/a%20b",
        "/kv/ns/a/",
        "/kv/ns/",
        "/kv/.hidden/a",
        "/kv//a",
        "/kv/",
        long_key.as_str(),
        long_ns.as_str(),
    ] {
        for method in ["GET", "PUT"] {
            let (st, _, body) = req(&s, method, path, &[], "x").await;
            assert_eq!(st, 400, "{method} {path}");
            assert_eq!(error_code(&body), "invalid_key", "{method} {path}");
        }
    }
    // Control bytes and spaces cannot even be sent by a client library: raw requests.
    assert_eq!(raw_status(&s, b"GET /kv/ns/a\x01b HTTP/1.1\r\nhost: x\r\n\r\n"), 400);
    assert_eq!(raw_status(&s, b"GET /kv/ns/a\x7fb HTTP/1.1\r\nhost: x\r\n\r\n"), 400);
    // Keys as long as the rules allow.
    let seg = "k".repeat(255);
    let ok_key = format!("/kv/ns/{seg}/{seg}/{seg}/{}", "j".repeat(1024 - 3 * 256 - 1));
    assert_eq!(req(&s, "PUT", &ok_key, &[], "x").await.0, 201);
    // `/kv/…/cas/{hash}` is a key, not bazel's CAS.
    let hash = reprovm_sdk::Digest::of_sha256(b"y").to_hex();
    assert_eq!(req(&s, "PUT", &format!("/kv/ns/x/cas/{hash}"), &[], "x").await.0, 201);
    assert_eq!(req(&s, "GET", &format!("/cas/{hash}"), &[], "").await.0, 404);
    let (st, _, body) = req(&s, "GET", &format!("/kv/ns/x/cas/{hash}"), &[], "").await;
    assert_eq!((st, &body[..]), (200, &b"x"[..]));

    for method in ["POST", "PATCH"] {
        let (st, h, body) = req(&s, method, "/kv/ns/k", &[], "").await;
        assert_eq!(
            (st, error_code(&body).as_str()),
            (405, "method_not_allowed"),
            "{method}"
        );
        let allow = h["allow"].to_str().unwrap();
        for m in ["GET", "HEAD", "PUT", "DELETE", "PROPFIND", "MKCOL"] {
            assert!(allow.contains(m), "{allow}");
        }
    }
}

#[tokio::test]
async fn roles_apply_to_every_namespace_bearer_and_basic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tokens_config(
        dir.path(),
        &[("reader", "r-secret", "read"), ("ci", "w-secret", "write")],
    );
    let s = Server::start(&dir.path().join("data"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    let (r, w) = ("Bearer r-secret", "Bearer w-secret");
    for ns in ["ccache", "gradle", "team_x"] {
        let path = format!("/kv/{ns}/k");
        let (st, h, body) = req(&s, "PUT", &path, &[], "v").await;
        assert_eq!((st, error_code(&body).as_str()), (401, "unauthorized"), "{ns}");
        assert!(h["www-authenticate"].to_str().unwrap().contains("Basic"));
        assert_eq!(req(&s, "GET", &path, &[], "").await.0, 401);
        assert_eq!(
            req(&s, "GET", &path, &[("authorization", "Bearer nope")], "").await.0,
            401
        );
        let (st, _, body) = req(&s, "PUT", &path, &[("authorization", r)], "v").await;
        assert_eq!(
            (st, error_code(&body).as_str()),
            (403, "forbidden"),
            "read token writes"
        );
        assert_eq!(req(&s, "DELETE", &path, &[("authorization", r)], "").await.0, 403);
        assert_eq!(
            req(&s, "MKCOL", &format!("/kv/{ns}/d/"), &[("authorization", r)], "")
                .await
                .0,
            403
        );
        assert_eq!(req(&s, "PUT", &path, &[("authorization", w)], "v").await.0, 201);
        // Basic with the token as the password (ccache `http://user:token@host/...`, Gradle).
        let b = basic("anyone", "w-secret");
        assert_eq!(req(&s, "PUT", &path, &[("authorization", &b)], "v2").await.0, 204);
        let (st, _, body) = req(&s, "GET", &path, &[("authorization", &basic("x", "r-secret"))], "").await;
        assert_eq!((st, &body[..]), (200, &b"v2"[..]));
        assert_eq!(req(&s, "HEAD", &path, &[("authorization", r)], "").await.0, 200);
        let pf = [("authorization", r), ("depth", "0")];
        assert_eq!(req(&s, "PROPFIND", &path, &pf, "").await.0, 207);
        assert_eq!(
            req(&s, "GET", &path, &[("authorization", &basic("x", "wrong"))], "")
                .await
                .0,
            401
        );
    }
}

#[tokio::test]
async fn webdav_propfind_mkcol_options() {
    let (_d, s) = start(&[]);
    for k in ["a/b/1", "a/b/2", "a/c", "top"] {
        assert_eq!(req(&s, "PUT", &format!("/kv/dav/{k}"), &[], k.to_string()).await.0, 201);
    }
    let text = |b: &bytes::Bytes| String::from_utf8_lossy(b).into_owned();
    // Depth 0 on a value: its properties.
    let (st, h, body) = req(&s, "PROPFIND", "/kv/dav/a/c", &[("depth", "0")], "").await;
    assert_eq!(st, 207);
    assert!(h["content-type"].to_str().unwrap().starts_with("application/xml"));
    let b = text(&body);
    assert!(b.contains("<D:href>/kv/dav/a/c</D:href>"), "{b}");
    assert!(b.contains("<D:getcontentlength>3</D:getcontentlength>"), "{b}");
    assert!(
        b.contains("<D:getlastmodified>") && b.contains(" GMT</D:getlastmodified>"),
        "{b}"
    );
    assert!(!b.contains("collection"), "{b}");
    // Depth 1 on the root (also reached with the `//` of an endpoint ending in `/`).
    for path in ["/kv/dav/", "/kv/dav//"] {
        let (st, _, body) = req(&s, "PROPFIND", path, &[("depth", "1")], "").await;
        assert_eq!(st, 207);
        let b = text(&body);
        assert_eq!(b.matches("<D:response>").count(), 3, "root, a/, top: {b}");
        assert!(b.contains("<D:href>/kv/dav/</D:href>"), "{b}");
        assert!(b.contains("<D:href>/kv/dav/a/</D:href>"), "{b}");
        assert!(b.contains("<D:href>/kv/dav/top</D:href>"), "{b}");
    }
    let (st, _, body) = req(&s, "PROPFIND", "/kv/dav/a/b/", &[("depth", "1")], "").await;
    assert_eq!(st, 207);
    let b = text(&body);
    assert_eq!(b.matches("<D:response>").count(), 3, "{b}");
    assert!(b.contains("<D:href>/kv/dav/a/b/2</D:href>"));
    // A directory without its slash is a collection when keys are below it.
    let (st, _, body) = req(&s, "PROPFIND", "/kv/dav/a", &[("depth", "0")], "").await;
    assert_eq!(st, 207);
    assert!(text(&body).contains("<D:collection/>"));
    // Nothing there.
    assert_eq!(
        req(&s, "PROPFIND", "/kv/dav/nothing", &[("depth", "0")], "").await.0,
        404
    );
    // Every path ending in `/` is a collection (directories are implied, as in object stores).
    assert_eq!(
        req(&s, "PROPFIND", "/kv/dav/new/dir/", &[("depth", "0")], "").await.0,
        207
    );
    // No Depth means infinity: refused, as RFC 4918 allows.
    let (st, _, body) = req(&s, "PROPFIND", "/kv/dav/", &[], "").await;
    assert_eq!((st, error_code(&body).as_str()), (403, "propfind_finite_depth"));
    assert_eq!(
        req(&s, "PROPFIND", "/kv/dav/", &[("depth", "infinity")], "").await.0,
        403
    );
    assert_eq!(req(&s, "PROPFIND", "/kv/dav/", &[("depth", "2")], "").await.0, 400);
    // MKCOL: created (nothing to store), refused on a value or the namespace itself.
    assert_eq!(req(&s, "MKCOL", "/kv/dav/x/y/", &[], "").await.0, 201);
    assert_eq!(req(&s, "MKCOL", "/kv/dav/top", &[], "").await.0, 405);
    assert_eq!(req(&s, "MKCOL", "/kv/dav/", &[], "").await.0, 405);
    assert_eq!(req(&s, "MKCOL", "/kv/dav/x/", &[], "body").await.0, 415);
    let (st, h, _) = req(&s, "OPTIONS", "/kv/dav/", &[], "").await;
    assert_eq!(st, 200);
    assert_eq!(h["dav"], "1");
    assert!(h["allow"].to_str().unwrap().contains("PROPFIND"));
}

#[tokio::test]
async fn per_namespace_metrics_and_stats() {
    let (_d, s) = start(&[]);
    assert_eq!(req(&s, "PUT", "/kv/alpha/k", &[], "12345").await.0, 201);
    assert_eq!(req(&s, "GET", "/kv/alpha/k", &[], "").await.0, 200);
    assert_eq!(req(&s, "GET", "/kv/alpha/k", &[], "").await.0, 200);
    assert_eq!(req(&s, "HEAD", "/kv/alpha/nope", &[], "").await.0, 404);
    assert_eq!(req(&s, "GET", "/kv/beta/nope", &[], "").await.0, 404);
    let st = stats(&s).await;
    let alpha = &st["kv"]["alpha"];
    assert_eq!(alpha["hits"], 2, "{st}");
    assert_eq!(alpha["misses"], 1);
    assert_eq!(alpha["puts"], 1);
    assert_eq!(alpha["received_bytes"], 5);
    assert_eq!(alpha["sent_bytes"], 10);
    assert_eq!(st["kv"]["beta"]["misses"], 1);
    assert!(
        st["hits"].as_u64().unwrap() >= 2,
        "kv lookups count in the server's hit rate"
    );
    let (_, _, body) = req(&s, "GET", "/metrics", &[], "").await;
    let m = String::from_utf8_lossy(&body);
    assert!(m.contains("reprovm_kv_hits_total{namespace=\"alpha\"} 2"), "{m}");
    assert!(m.contains("reprovm_kv_misses_total{namespace=\"beta\"} 1"), "{m}");
    assert!(m.contains("reprovm_kv_sent_bytes_total{namespace=\"alpha\"} 10"), "{m}");
    assert!(m.contains("reprovm_cache_hits_total{kind=\"kv\"} 2"), "{m}");
}
