//! Bit rot: a byte flipped in a stored piece is caught when the blob is read
//! (500 for a one-piece blob, an aborted stream for a large one), reported by
//! `cas-server verify`, quarantined by `verify --repair` (then the blob reads
//! as absent), and healed by a PUT of the right bytes.

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use common::{client, error_code, noise, req, Server};
use http_body_util::{BodyExt, Full};
use reprovm_sdk::{Cas, CasExt, Digest, HttpCas};

/// Flips one bit in piece `idx` of a blob, through the store opened as a library (server stopped).
fn flip_bit(data_dir: &Path, digest: &Digest, idx: u32) {
    let store = cas_server::RocksStore::open(
        data_dir,
        cas_server::StoreOptions {
            min_free_space: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let meta = store.meta(digest).unwrap().expect("blob stored");
    assert!(idx < meta.pieces());
    let mut key = meta.data_id.to_be_bytes().to_vec();
    key.extend_from_slice(&idx.to_be_bytes());
    let db = store.db();
    let cf = db.cf_handle("data").unwrap();
    let mut value = db.get_cf(&cf, &key).unwrap().expect("piece stored");
    let at = value.len() - 7;
    value[at] ^= 0x10;
    db.put_cf(&cf, &key, &value).unwrap();
    store.flush().unwrap();
}

/// `cas-server verify` on a data dir: (exit code, stdout).
fn verify(data_dir: &Path, repair: bool) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cas-server"));
    cmd.args(["verify", "--data-dir"]).arg(data_dir);
    if repair {
        cmd.arg("--repair");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "verify (repair={repair}):\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap(), stdout)
}

#[tokio::test]
async fn flipped_bit_is_never_served_and_verify_quarantines_then_put_heals() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let small = Bytes::from(noise(1, 200_000));
    let large = Bytes::from(noise(2, 3 << 20 | 12345));
    let good = Bytes::from(noise(3, 2 << 20));
    let (ds, dl, dg) = (
        Digest::of_blake3(&small),
        Digest::of_blake3(&large),
        Digest::of_blake3(&good),
    );
    let s = Server::start(&data_dir, &[]);
    let c = HttpCas::new(s.url()).unwrap();
    for b in [&small, &large, &good] {
        c.put_bytes(b.clone()).await.unwrap();
    }
    assert_eq!(s.terminate(), Some(0));
    let (code, out) = verify(&data_dir, false);
    assert_eq!(code, 0, "a clean store verifies");
    assert!(out.contains("blobs: 3") && out.contains("corrupt: 0"), "{out}");

    flip_bit(&data_dir, &ds, 0);
    flip_bit(&data_dir, &dl, 1);

    let s = Server::start(&data_dir, &[]);
    let c = HttpCas::new(s.url()).unwrap();
    let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{ds}"), &[], "").await;
    assert_eq!((st, error_code(&body).as_str()), (500, "corrupt"), "small corrupt blob");
    let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{ds}"), &[("range", "bytes=0-99")], "").await;
    assert_eq!(st, 500, "a range of a corrupt small blob is refused too: {body:?}");
    // The large one: headers go out, then the stream is aborted before its end.
    let resp = client()
        .request(
            http::Request::get(format!("{}/v1/blobs/{dl}", s.url()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let collected = resp.into_body().collect().await;
    assert!(
        collected.is_err(),
        "the corrupt large blob's response must not complete"
    );
    assert!(
        c.get_bytes(&dl).await.is_err(),
        "the sdk client reports the aborted read"
    );
    assert_eq!(c.get_bytes(&dg).await.unwrap(), good, "the intact blob still reads");
    assert_eq!(s.terminate(), Some(0));

    let (code, out) = verify(&data_dir, false);
    assert_eq!(code, 1, "corruption found: exit 1");
    assert!(out.contains("blobs: 3") && out.contains("corrupt: 2"), "{out}");
    assert!(out.contains(&format!("corrupt {ds}")) && out.contains(&format!("corrupt {dl}")));
    assert!(!out.contains(&dg.to_hex()), "{out}");
    assert!(
        out.contains("in quarantine: 0"),
        "without --repair nothing is quarantined: {out}"
    );

    let (code, out) = verify(&data_dir, true);
    assert_eq!(code, 1);
    assert!(
        out.contains("quarantined: 2") && out.contains("in quarantine: 2"),
        "{out}"
    );
    let (code, out) = verify(&data_dir, false);
    assert_eq!(code, 0, "after repair the store verifies: {out}");
    assert!(
        out.contains("blobs: 1") && out.contains(&format!("quarantined {ds}")),
        "{out}"
    );

    let s = Server::start(&data_dir, &[]);
    let c = HttpCas::new(s.url()).unwrap();
    let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{ds}"), &[], "").await;
    assert_eq!(
        (st, error_code(&body).as_str()),
        (404, "not_found"),
        "quarantined reads as absent"
    );
    let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{dl}"), &[], "").await;
    assert_eq!(st, 404);
    assert_eq!(c.find_missing(&[ds, dl, dg]).await.unwrap(), vec![ds, dl]);
    // A PUT of the right bytes heals.
    let (st, _, _) = req(&s, "PUT", &format!("/v1/blobs/{ds}"), &[], small.clone()).await;
    assert_eq!(st, 201, "re-upload of a quarantined blob stores it again");
    let (st, _, _) = req(&s, "PUT", &format!("/v1/blobs/{dl}"), &[], large.clone()).await;
    assert_eq!(st, 201);
    assert_eq!(c.get_bytes(&ds).await.unwrap(), small);
    assert_eq!(c.get_bytes(&dl).await.unwrap(), large);
    assert_eq!(s.terminate(), Some(0));
    let (code, out) = verify(&data_dir, false);
    assert_eq!(code, 0);
    assert!(
        out.contains("blobs: 3") && out.contains("healed: 2") && out.contains("in quarantine: 0"),
        "{out}"
    );
}

#[test]
fn verify_refuses_a_store_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let _s = Server::start(&data_dir, &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_cas-server"))
        .args(["verify", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is a server running on it?"), "{stderr}");
}

/// A meta record with a piece size of 0 (it used to divide by zero): the store opens, the blob
/// reads as corrupt (500), other blobs are served, `verify` reports it and `--repair` removes it.
#[tokio::test]
async fn a_corrupt_meta_record_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (bad, good) = (Bytes::from(noise(7, 3 << 20)), Bytes::from(noise(8, 5000)));
    let (bad_d, good_d) = (Digest::of_blake3(&bad), Digest::of_blake3(&good));
    {
        let s = Server::start(&data_dir, &[]);
        let c = HttpCas::new(s.url()).unwrap();
        c.put_bytes(bad.clone()).await.unwrap();
        c.put_bytes(good.clone()).await.unwrap();
        assert_eq!(s.terminate(), Some(0));
    }
    zero_piece_size(&data_dir, &bad_d);
    let s = Server::start(&data_dir, &[]);
    let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{bad_d}"), &[], "").await;
    assert_eq!((st, error_code(&body).as_str()), (500, "corrupt"));
    let (st, _, _) = req(&s, "HEAD", &format!("/v1/blobs/{bad_d}"), &[], "").await;
    assert_eq!(st, 500);
    let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{good_d}"), &[], "").await;
    assert_eq!((st, body), (200, good.clone()), "the other blob is served");
    assert_eq!(req(&s, "GET", "/health", &[], "").await.0, 200, "the server is alive");
    // GET cannot serve it, so blobs:missing must not call it present (a client would never re-upload).
    let c = HttpCas::new(s.url()).unwrap();
    assert_eq!(c.find_missing(&[bad_d, good_d]).await.unwrap(), vec![bad_d]);
    assert_eq!(stored_blobs(&s).await, 2, "the corrupt record still counts");
    assert_eq!(s.terminate(), Some(0));

    let (code, out) = verify(&data_dir, false);
    assert_ne!(code, 0, "verify reports the corrupt record");
    assert!(out.contains(&bad_d.to_hex()), "{out}");
    let (code, _) = verify(&data_dir, true);
    assert_ne!(code, 0, "repair still reports what it found");
    let (code, out) = verify(&data_dir, false);
    assert_eq!(code, 0, "after repair the store verifies: {out}");
    let s = Server::start(&data_dir, &[]);
    assert_eq!(
        req(&s, "GET", &format!("/v1/blobs/{bad_d}"), &[], "").await.0,
        404,
        "absent now"
    );
    let c = HttpCas::new(s.url()).unwrap();
    c.put_bytes(bad.clone()).await.unwrap();
    assert_eq!(c.get_bytes(&bad_d).await.unwrap(), bad, "and heals with a PUT");
}

/// Writes a piece size of 0 into a blob's meta record (server stopped).
fn zero_piece_size(data_dir: &Path, d: &Digest) {
    let store = cas_server::RocksStore::open(data_dir, Default::default()).unwrap();
    let db = store.db();
    let cf = db.cf_handle("meta").unwrap();
    let mut key = vec![d.kind().tag()];
    key.extend_from_slice(d.as_bytes());
    let mut record = db.get_cf(&cf, &key).unwrap().expect("meta record");
    record[9..13].copy_from_slice(&0u32.to_be_bytes());
    db.put_cf(&cf, &key, &record).unwrap();
    store.flush().unwrap();
}

async fn stored_blobs(s: &Server) -> u64 {
    let (_, _, b) = req(s, "GET", "/v1/stats", &[], "").await;
    serde_json::from_slice::<serde_json::Value>(&b).unwrap()["blobs"]
        .as_u64()
        .unwrap()
}

/// An upload with `Expect: 100-continue` (curl's default for bodies over 1 KiB) replaces a corrupt
/// record instead of failing on it, and the count stays right.
#[tokio::test]
async fn an_upload_heals_a_corrupt_meta_record() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let bad = noise(9, 200_000);
    let bad_d = Digest::of_blake3(&bad);
    {
        let s = Server::start(&data_dir, &[]);
        HttpCas::new(s.url())
            .unwrap()
            .put_bytes(Bytes::from(bad.clone()))
            .await
            .unwrap();
        assert_eq!(s.terminate(), Some(0));
    }
    zero_piece_size(&data_dir, &bad_d);
    let s = Server::start(&data_dir, &[]);
    let file = dir.path().join("bad");
    std::fs::write(&file, &bad).unwrap();
    let url = format!("{}/v1/blobs/{bad_d}", s.url());
    let code = common::curl_put(&url, &file, &["-H", "Expect: 100-continue"]);
    assert_eq!(code, "201", "the upload replaces the corrupt record");
    let (st, _, body) = req(&s, "GET", &format!("/v1/blobs/{bad_d}"), &[], "").await;
    assert_eq!((st, body.len()), (200, bad.len()));
    assert_eq!(stored_blobs(&s).await, 1, "replaced, not added");
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start(&data_dir, &[]);
    assert_eq!(stored_blobs(&s).await, 1, "and so after a restart");
}
