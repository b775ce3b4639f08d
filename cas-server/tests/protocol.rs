//! The blob protocol, end to end: the real binary on an ephemeral port, raw
//! HTTP requests and the sdk client.

mod common;

use bytes::Bytes;
use common::{error_code, noise, req, Server};
use futures::TryStreamExt;
use reprovm_sdk::proto::{encode_frame, BatchResponse};
use reprovm_sdk::{Cas, CasExt, Digest, HttpCas, PutOutcome, RefCondition};

fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), env);
    (dir, server)
}

fn path(d: &Digest) -> String {
    format!("/v1/blobs/{d}")
}

#[tokio::test]
async fn status_codes_and_json_errors() {
    let (_dir, s) = start(&[]);
    let data = b"hello".to_vec();
    let d = Digest::of_blake3(&data);

    let (st, _, body) = req(&s, "GET", &path(&d), &[], "").await;
    assert_eq!((st, error_code(&body).as_str()), (404, "not_found"));
    let (st, _, _) = req(&s, "HEAD", &path(&d), &[], "").await;
    assert_eq!(st, 404);

    let (st, h, _) = req(&s, "PUT", &path(&d), &[], data.clone()).await;
    assert_eq!(st, 201);
    assert_eq!(h["etag"], format!("\"{d}\""));
    let (st, _, _) = req(&s, "PUT", &path(&d), &[], data.clone()).await;
    assert_eq!(st, 200, "second PUT of the same blob");

    let (st, h, body) = req(&s, "GET", &path(&d), &[], "").await;
    assert_eq!((st, &body[..]), (200, &data[..]));
    assert_eq!(h["content-length"], "5");
    assert_eq!(h["etag"], format!("\"{d}\""));
    let (st, h, body) = req(&s, "HEAD", &path(&d), &[], "").await;
    assert_eq!((st, h["content-length"].to_str().unwrap(), body.len()), (200, "5", 0));

    for bad in [
        d.to_hex().to_uppercase(),
        d.to_hex()[..63].to_string(),
        format!("{}x", &d.to_hex()[..63]),
    ] {
        let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{bad}"), &[], "").await;
        assert_eq!((st, error_code(&body).as_str()), (400, "invalid_digest"), "{bad}");
    }
    let (st, _, body) = req(&s, "GET", "/v2/nothing", &[], "").await;
    assert_eq!((st, error_code(&body).as_str()), (404, "not_found"));
    let (st, h, body) = req(&s, "POST", &path(&d), &[], "").await;
    assert_eq!((st, error_code(&body).as_str()), (405, "method_not_allowed"));
    assert!(h["allow"].to_str().unwrap().contains("PUT"));
    let (st, _, _) = req(&s, "DELETE", "/v1/blobs:missing", &[], "").await;
    assert_eq!(st, 405);

    // Wrong bytes under a digest: 400 and nothing stored.
    let other = Digest::of_blake3(b"other");
    let (st, _, body) = req(&s, "PUT", &path(&other), &[], "not other").await;
    assert_eq!((st, error_code(&body).as_str()), (400, "digest_mismatch"));
    let (st, _, _) = req(&s, "HEAD", &path(&other), &[], "").await;
    assert_eq!(st, 404, "a refused upload must leave nothing");

    // Unknown content encoding.
    let (st, _, body) = req(&s, "PUT", &path(&other), &[("content-encoding", "br")], "x").await;
    assert_eq!((st, error_code(&body).as_str()), (415, "unsupported_encoding"));

    // Delete.
    let (st, _, _) = req(&s, "DELETE", &path(&d), &[], "").await;
    assert_eq!(st, 204);
    let (st, _, _) = req(&s, "DELETE", &path(&d), &[], "").await;
    assert_eq!(st, 404);
}

#[tokio::test]
async fn limits_give_413_and_507() {
    let (_dir, s) = start(&[("CAS_MAX_BLOB_SIZE", "1KiB")]);
    let big = noise(1, 2000);
    let d = Digest::of_blake3(&big);
    let (st, _, body) = req(&s, "PUT", &path(&d), &[], big.clone()).await;
    assert_eq!((st, error_code(&body).as_str()), (413, "too_large"));
    // Without Content-Length (chunked), the limit is enforced while streaming.
    let client = HttpCas::new(s.url()).unwrap();
    let chunks: Vec<std::io::Result<Bytes>> = big.chunks(100).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let err = client
        .put(&d, None, Box::pin(futures::stream::iter(chunks)))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("exceeds") || matches!(err, reprovm_sdk::CasError::TooLarge { .. }),
        "{err}"
    );
    assert!(!client.contains(&d).await.unwrap());
    drop(s);

    // A data dir whose filesystem has less free space than the reserve refuses uploads with 507.
    let (_dir, s) = start(&[("CAS_MIN_FREE_SPACE", "1000000TiB")]);
    let (st, _, body) = req(&s, "PUT", &path(&Digest::of_blake3(b"x")), &[], "x").await;
    assert_eq!((st, error_code(&body).as_str()), (507, "insufficient_storage"));
    let (st, _, _) = req(&s, "GET", "/ready", &[], "").await;
    assert_eq!(st, 503, "/ready reports the full disk");
}

#[tokio::test]
async fn round_trips_through_the_sdk_client() {
    let (_dir, s) = start(&[]);
    let client = HttpCas::new(s.url()).unwrap();
    for (i, len) in [0usize, 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 17]
        .into_iter()
        .enumerate()
    {
        let data = Bytes::from(noise(i as u64, len));
        let d = client.put_bytes(data.clone()).await.unwrap();
        assert_eq!(d, Digest::of_blake3(&data));
        assert_eq!(client.stat(&d).await.unwrap().unwrap().size, len as u64);
        assert_eq!(client.get_bytes(&d).await.unwrap(), data, "len {len}");
    }
    // Chunked upload (no size given → no Content-Length).
    let data = noise(99, 2_500_000);
    let d = Digest::of_blake3(&data);
    let chunks: Vec<std::io::Result<Bytes>> = data.chunks(65_536).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    let outcome = client
        .put(&d, None, Box::pin(futures::stream::iter(chunks)))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Created);
    assert_eq!(client.get_bytes(&d).await.unwrap(), data);
}

#[tokio::test]
async fn ranges() {
    let (_dir, s) = start(&[]);
    // Two sizes: one piece, and several pieces (pieces are 1 MiB) so ranges cross piece edges.
    for len in [1000usize, 2 * (1 << 20) + 500] {
        let data = noise(len as u64, len);
        let d = Digest::of_blake3(&data);
        assert_eq!(req(&s, "PUT", &path(&d), &[], data.clone()).await.0, 201);
        let n = len as u64;
        let cases: Vec<(String, u64, u64)> = vec![
            ("bytes=0-0".into(), 0, 0),
            ("bytes=0-".into(), 0, n - 1),
            (format!("bytes={}-", n - 1), n - 1, n - 1),
            ("bytes=-10".into(), n - 10, n - 1),
            (format!("bytes=-{}", n + 5), 0, n - 1),
            (format!("bytes=5-{}", n + 100), 5, n - 1),
        ];
        let mut cases = cases;
        if n > 1048580 {
            // Crosses the edge between the first and second 1 MiB piece.
            cases.push(("bytes=1048570-1048580".into(), 1048570, 1048580));
        }
        for (range, a, b) in cases {
            let (st, h, body) = req(&s, "GET", &path(&d), &[("range", &range)], "").await;
            assert_eq!(st, 206, "{range} on {len}");
            assert_eq!(h["content-range"], format!("bytes {a}-{b}/{n}"), "{range}");
            assert_eq!(&body[..], &data[a as usize..=b as usize], "{range} on {len}");
        }
        for unsat in [
            format!("bytes={n}-"),
            format!("bytes={}-{}", n + 1, n + 9),
            "bytes=-0".into(),
        ] {
            let (st, h, body) = req(&s, "GET", &path(&d), &[("range", &unsat)], "").await;
            assert_eq!(
                (st, error_code(&body).as_str()),
                (416, "range_not_satisfiable"),
                "{unsat}"
            );
            assert_eq!(h["content-range"], format!("bytes */{n}"));
        }
        for bad in ["bytes=5-1", "lines=0-1", "bytes=0-1,4-5", "bytes=x-"] {
            let (st, _, body) = req(&s, "GET", &path(&d), &[("range", bad)], "").await;
            assert_eq!((st, error_code(&body).as_str()), (400, "invalid_range"), "{bad}");
        }
    }
    // The empty blob has no satisfiable range.
    let e = Digest::of_blake3(b"");
    assert_eq!(req(&s, "PUT", &path(&e), &[], "").await.0, 201);
    assert_eq!(req(&s, "GET", &path(&e), &[("range", "bytes=0-")], "").await.0, 416);
}

#[tokio::test]
async fn compression_both_ways() {
    let (_dir, s) = start(&[]);
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog\n".repeat(60_000); // ~2.6 MB
    let d = Digest::of_blake3(&text);

    // Upload zstd-encoded; the digest is of the decoded bytes.
    let z = zstd::bulk::compress(&text, 3).unwrap();
    let (st, _, _) = req(&s, "PUT", &path(&d), &[("content-encoding", "zstd")], z).await;
    assert_eq!(st, 201);
    // At rest the store keeps it compressed.
    let stats: serde_json::Value = serde_json::from_slice(&req(&s, "GET", "/v1/stats", &[], "").await.2).unwrap();
    assert_eq!(stats["logical_bytes"], text.len() as u64);

    // lz4 frame upload of another blob.
    let text2: Vec<u8> = b"lz4 lz4 lz4 lz4 ".repeat(10_000);
    let d2 = Digest::of_blake3(&text2);
    let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
    std::io::Write::write_all(&mut enc, &text2).unwrap();
    let l = enc.finish().unwrap();
    assert_eq!(
        req(&s, "PUT", &path(&d2), &[("content-encoding", "lz4")], l).await.0,
        201
    );

    // Download with Accept-Encoding.
    let (st, h, body) = req(&s, "GET", &path(&d), &[("accept-encoding", "zstd")], "").await;
    assert_eq!((st, h["content-encoding"].to_str().unwrap()), (200, "zstd"));
    assert!(body.len() < text.len() / 10);
    assert_eq!(zstd::stream::decode_all(&body[..]).unwrap(), text);
    let (st, h, body) = req(&s, "GET", &path(&d2), &[("accept-encoding", "lz4")], "").await;
    assert_eq!((st, h["content-encoding"].to_str().unwrap()), (200, "lz4"));
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(&body[..]), &mut out).unwrap();
    assert_eq!(out, text2);
    let (_, h, body) = req(&s, "GET", &path(&d2), &[], "").await;
    assert!(h.get("content-encoding").is_none());
    assert_eq!(&body[..], &text2[..]);

    // Corrupt compressed bodies: 400, nothing stored.
    let d3 = Digest::of_blake3(b"never stored");
    for enc in ["zstd", "lz4"] {
        let (st, _, body) = req(
            &s,
            "PUT",
            &path(&d3),
            &[("content-encoding", enc)],
            "garbage that is not compressed",
        )
        .await;
        assert_eq!(st, 400, "{enc}: {}", String::from_utf8_lossy(&body));
        assert_eq!(req(&s, "HEAD", &path(&d3), &[], "").await.0, 404);
    }
}

#[tokio::test]
async fn missing_batch_ac_refs_and_bazel() {
    let (_dir, s) = start(&[]);
    let client = HttpCas::new(s.url()).unwrap();
    let present = client.put_bytes(Bytes::from_static(b"present")).await.unwrap();

    // 10,000 digests in one call.
    let mut digests: Vec<Digest> = (0..9_999u32).map(|i| Digest::of_blake3(&i.to_le_bytes())).collect();
    digests.insert(5000, present);
    let body = serde_json::to_vec(&serde_json::json!({ "digests": digests })).unwrap();
    let (st, _, resp) = req(&s, "POST", "/v1/blobs:missing", &[], body).await;
    assert_eq!(st, 200);
    let missing: reprovm_sdk::proto::MissingResponse = serde_json::from_slice(&resp).unwrap();
    assert_eq!(missing.missing.len(), 9_999);
    assert!(!missing.missing.contains(&present));
    digests.push(Digest::of_blake3(b"one too many"));
    let body = serde_json::to_vec(&serde_json::json!({ "digests": digests })).unwrap();
    let (st, _, resp) = req(&s, "POST", "/v1/blobs:missing", &[], body).await;
    assert_eq!((st, error_code(&resp).as_str()), (400, "too_many_digests"));
    for bad in [&b"[1,2]"[..], b"{\"digests\": [\"zz\"]}", b"not json"] {
        let (st, _, resp) = req(&s, "POST", "/v1/blobs:missing", &[], bad.to_vec()).await;
        assert_eq!((st, error_code(&resp).as_str()), (400, "invalid_json"));
    }

    // Batch upload: two good frames, one with a wrong digest.
    let mut frames = bytes::BytesMut::new();
    encode_frame(&Digest::of_blake3(b"a"), b"a", &mut frames);
    encode_frame(&Digest::of_blake3(b"bb"), b"bb", &mut frames);
    encode_frame(&Digest::of_blake3(b"c"), b"not c", &mut frames);
    let (st, _, resp) = req(&s, "POST", "/v1/blobs:batch", &[], frames.freeze()).await;
    assert_eq!(st, 200);
    let results: BatchResponse = serde_json::from_slice(&resp).unwrap();
    let statuses: Vec<u16> = results.results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 201, 400]);
    assert!(client.contains(&Digest::of_blake3(b"bb")).await.unwrap());
    assert!(!client.contains(&Digest::of_blake3(b"c")).await.unwrap());
    let (st, _, resp) = req(&s, "POST", "/v1/blobs:batch", &[], vec![1u8; 50]).await;
    assert_eq!((st, error_code(&resp).as_str()), (400, "invalid_frame"));

    // Action cache.
    let key = Digest::of_blake3(b"action");
    assert_eq!(client.ac_get(&key).await.unwrap(), None);
    client.ac_put(&key, Bytes::from_static(b"result")).await.unwrap();
    assert_eq!(
        client.ac_get(&key).await.unwrap().unwrap(),
        Bytes::from_static(b"result")
    );
    let (st, _, resp) = req(&s, "PUT", &format!("/v1/ac/{key}"), &[], vec![0u8; 4 * 1024 * 1024 + 1]).await;
    assert_eq!((st, error_code(&resp).as_str()), (413, "too_large"));

    // Refs with compare-and-swap and prefix listing.
    let tag1 = client
        .ref_put("snapshots/a/1", Bytes::from_static(b"v1"), RefCondition::IfAbsent)
        .await
        .unwrap();
    let err = client
        .ref_put("snapshots/a/1", Bytes::from_static(b"v1b"), RefCondition::IfAbsent)
        .await
        .unwrap_err();
    assert!(matches!(err, reprovm_sdk::CasError::PreconditionFailed { .. }), "{err}");
    let tag2 = client
        .ref_put(
            "snapshots/a/1",
            Bytes::from_static(b"v2"),
            RefCondition::IfMatch(tag1.clone()),
        )
        .await
        .unwrap();
    assert_ne!(tag1, tag2);
    let err = client
        .ref_put("snapshots/a/1", Bytes::from_static(b"v3"), RefCondition::IfMatch(tag1))
        .await
        .unwrap_err();
    assert!(matches!(err, reprovm_sdk::CasError::PreconditionFailed { .. }));
    let got = client.ref_get("snapshots/a/1").await.unwrap().unwrap();
    assert_eq!((got.value, got.etag), (Bytes::from_static(b"v2"), tag2.clone()));
    client
        .ref_put("snapshots/b/1", Bytes::from_static(b"x"), RefCondition::Always)
        .await
        .unwrap();
    client
        .ref_put("other", Bytes::from_static(b"y"), RefCondition::Always)
        .await
        .unwrap();
    assert_eq!(
        client.ref_list("snapshots/").await.unwrap(),
        ["snapshots/a/1", "snapshots/b/1"]
    );
    assert!(client
        .ref_delete("snapshots/a/1", RefCondition::IfMatch(tag2))
        .await
        .unwrap());
    assert!(client.ref_get("snapshots/a/1").await.unwrap().is_none());
    let (st, _, resp) = req(&s, "PUT", "/v1/refs/a/../../etc", &[], "x").await;
    assert_eq!((st, error_code(&resp).as_str()), (400, "invalid_ref_name"));

    // bazel-remote compatible paths: SHA-256, optional prefix and X-Digest-SizeBytes.
    let blob = b"bazel output";
    let sha = Digest::of_sha256(blob);
    assert_eq!(req(&s, "PUT", &format!("/cas/{sha}"), &[], blob.to_vec()).await.0, 201);
    let (st, _, body) = req(&s, "GET", &format!("/some/instance/cas/{sha}"), &[], "").await;
    assert_eq!((st, &body[..]), (200, &blob[..]));
    let blob2 = b"second";
    let sha2 = Digest::of_sha256(blob2);
    let (st, _, _) = req(
        &s,
        "PUT",
        &format!("/inst/cas/{sha2}"),
        &[("x-digest-sizebytes", "99")],
        blob2.to_vec(),
    )
    .await;
    assert_eq!(st, 400, "size header disagrees with the body");
    let (st, _, _) = req(&s, "PUT", &format!("/cas/{}", Digest::of_sha256(b"x")), &[], "y").await;
    assert_eq!(st, 400, "SHA-256 mismatch");
    // The SHA-256 namespace is separate from the BLAKE3 one.
    assert_eq!(req(&s, "GET", &format!("/v1/blobs/{sha}"), &[], "").await.0, 404);
    let (st, _, _) = req(&s, "PUT", &format!("/ac/{sha}"), &[], "action result").await;
    assert_eq!(st, 200);
    let (st, _, body) = req(&s, "GET", &format!("/prefix/ac/{sha}"), &[], "").await;
    assert_eq!((st, &body[..]), (200, &b"action result"[..]));
}

#[tokio::test]
async fn concurrent_put_and_get_of_one_digest() {
    let (_dir, s) = start(&[]);
    let data = Bytes::from(noise(7, 3 * (1 << 20) + 5));
    let d = Digest::of_blake3(&data);
    let client = HttpCas::new(s.url()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (client, data) = (client.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                client
                    .put(&d, Some(data.len() as u64), reprovm_sdk::cas::bytes_stream(data))
                    .await
                    .map(Some)
            } else {
                // A reader sees the whole blob or 404, never a part.
                match client.get(&d, None).await {
                    Ok(blob) => {
                        let got: Vec<Bytes> = blob.body.try_collect().await.unwrap();
                        assert_eq!(got.concat(), data.to_vec());
                        Ok(None)
                    }
                    Err(reprovm_sdk::CasError::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }));
    }
    let mut created = 0;
    for t in tasks {
        if let Some(PutOutcome::Created) = t.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1, "exactly one concurrent upload creates the blob");
    assert_eq!(client.get_bytes(&d).await.unwrap(), data);
    let stats: serde_json::Value = serde_json::from_slice(&req(&s, "GET", "/v1/stats", &[], "").await.2).unwrap();
    assert_eq!(stats["blobs"], 1);
}

#[tokio::test]
async fn ops_endpoints() {
    let (_dir, s) = start(&[]);
    let client = HttpCas::new(s.url()).unwrap();
    let d = client.put_bytes(Bytes::from_static(b"metrics")).await.unwrap();
    client.get_bytes(&d).await.unwrap();
    let _ = client.stat(&Digest::of_blake3(b"absent")).await.unwrap();
    assert_eq!(req(&s, "GET", "/health", &[], "").await.0, 200);
    let (st, _, body) = req(&s, "GET", "/ready", &[], "").await;
    assert_eq!(st, 200);
    let ready: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready["ready"], true);
    let (st, _, body) = req(&s, "GET", "/metrics", &[], "").await;
    assert_eq!(st, 200);
    let text = String::from_utf8(body.to_vec()).unwrap();
    for name in [
        "reprovm_http_requests_total{route=\"blobs\",method=\"PUT\",status=\"201\"} 1",
        "reprovm_http_request_duration_seconds_bucket",
        "reprovm_http_received_bytes_total",
        "reprovm_http_sent_bytes_total",
        "reprovm_cache_hits_total",
        "reprovm_cache_misses_total",
        "reprovm_store_blobs 1",
        "reprovm_store_logical_bytes 7",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }
    let (st, _, body) = req(&s, "GET", "/metrics/json", &[], "").await;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((st, json["reprovm_store_blobs"].as_f64()), (200, Some(1.0)));
    let stats: serde_json::Value = serde_json::from_slice(&req(&s, "GET", "/v1/stats", &[], "").await.2).unwrap();
    assert_eq!(stats["blobs"], 1);
    assert!(stats["hit_rate"].as_f64().unwrap() > 0.0);
    let (st, _, body) = req(&s, "GET", "/v1/config", &[], "").await;
    let config: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((st, config["max_blob_size"].as_u64()), (200, Some(8 << 30)));
}
