//! Tokens and roles against the real binary: 401 vs 403, Bearer and Basic,
//! anonymous reads, admin-only routes, secrets redacted, SIGHUP reload.

mod common;

use bytes::Bytes;
use common::{error_code, req, signal, Server};
use reprovm_sdk::{CasError, CasExt, Digest, HttpCas};

const CONFIG: &str = r#"
[auth]
allow_anonymous_read = false
metrics_public = false
token_file = "TOKEN_FILE"
[[auth.tokens]]
name = "reader"
token = "r-0123456789"
role = "read"
[[auth.tokens]]
name = "ci"
token = "w-0123456789"
role = "write"
[[auth.tokens]]
name = "ops"
token = "a-0123456789"
role = "admin"
"#;

fn start(anonymous_read: bool) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens.toml");
    std::fs::write(&token_file, "").unwrap();
    let cfg = dir.path().join("cas.toml");
    let text = CONFIG.replace("TOKEN_FILE", token_file.to_str().unwrap());
    let text = text.replace(
        "allow_anonymous_read = false",
        &format!("allow_anonymous_read = {anonymous_read}"),
    );
    std::fs::write(&cfg, text).unwrap();
    let server = Server::start(&dir.path().join("data"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    (dir, server)
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[tokio::test]
async fn roles_statuses_and_redaction() {
    let (_dir, s) = start(false);
    let d = Digest::of_blake3(b"secret build output");
    let p = format!("/v1/blobs/{d}");
    let body = &b"secret build output"[..];

    let (st, h, b) = req(&s, "GET", &p, &[], "").await;
    assert_eq!((st, error_code(&b).as_str()), (401, "unauthorized"));
    assert!(h["www-authenticate"].to_str().unwrap().contains("Bearer"));
    let (st, _, _) = req(&s, "PUT", &p, &[("authorization", &bearer("wrong"))], body).await;
    assert_eq!(st, 401, "unknown token");
    let (st, _, b) = req(&s, "PUT", &p, &[("authorization", &bearer("r-0123456789"))], body).await;
    assert_eq!((st, error_code(&b).as_str()), (403, "forbidden"));
    assert_eq!(
        req(&s, "HEAD", &p, &[("authorization", &bearer("a-0123456789"))], "")
            .await
            .0,
        404,
        "nothing stored"
    );
    let (st, _, _) = req(&s, "PUT", &p, &[("authorization", &bearer("w-0123456789"))], body).await;
    assert_eq!(st, 201);
    let (st, _, got) = req(&s, "GET", &p, &[("authorization", &bearer("r-0123456789"))], "").await;
    assert_eq!((st, &got[..]), (200, body));

    // HTTP Basic, as a URL with credentials sends it; the sdk takes the token from the URL.
    let url = s.url().replace("http://", "http://ci:w-0123456789@");
    let client = HttpCas::new(url).unwrap();
    let d2 = client.put_bytes(Bytes::from_static(b"via basic")).await.unwrap();
    assert_eq!(client.get_bytes(&d2).await.unwrap(), Bytes::from_static(b"via basic"));
    let anon = HttpCas::new(s.url()).unwrap();
    assert!(matches!(
        anon.get_bytes(&d2).await,
        Err(CasError::Unauthorized { missing: true, .. })
    ));

    // Delete is admin-only.
    let (st, _, _) = req(&s, "DELETE", &p, &[("authorization", &bearer("w-0123456789"))], "").await;
    assert_eq!(st, 403);
    let (st, _, _) = req(&s, "DELETE", &p, &[("authorization", &bearer("a-0123456789"))], "").await;
    assert_eq!(st, 204);

    // Open and closed operational routes.
    assert_eq!(req(&s, "GET", "/health", &[], "").await.0, 200);
    assert_eq!(
        req(&s, "GET", "/metrics", &[], "").await.0,
        401,
        "metrics_public = false"
    );
    assert_eq!(
        req(&s, "GET", "/metrics", &[("authorization", &bearer("r-0123456789"))], "")
            .await
            .0,
        200
    );
    assert_eq!(
        req(
            &s,
            "GET",
            "/v1/config",
            &[("authorization", &bearer("w-0123456789"))],
            ""
        )
        .await
        .0,
        403
    );
    let (st, _, cfg) = req(
        &s,
        "GET",
        "/v1/config",
        &[("authorization", &bearer("a-0123456789"))],
        "",
    )
    .await;
    assert_eq!(st, 200);
    let text = String::from_utf8_lossy(&cfg);
    assert!(
        text.contains("\"ops\"") && !text.contains("a-0123456789") && !text.contains("w-0123456789"),
        "{text}"
    );
}

#[tokio::test]
async fn anonymous_reads_and_sighup_reload() {
    let (dir, s) = start(true);
    let d = Digest::of_blake3(b"x");
    let p = format!("/v1/blobs/{d}");
    assert_eq!(
        req(&s, "GET", &p, &[], "").await.0,
        404,
        "anonymous may read (and finds nothing)"
    );
    let (st, _, b) = req(&s, "PUT", &p, &[], "x").await;
    assert_eq!(
        (st, error_code(&b).as_str()),
        (401, "unauthorized"),
        "anonymous may not write"
    );

    // A token added to the token file works after SIGHUP.
    let (st, _, _) = req(&s, "PUT", &p, &[("authorization", &bearer("new-token-42"))], "x").await;
    assert_eq!(st, 401);
    std::fs::write(
        dir.path().join("tokens.toml"),
        "[[tokens]]\nname = \"late\"\ntoken = \"new-token-42\"\nrole = \"write\"\n",
    )
    .unwrap();
    signal(s.pid(), "HUP");
    let mut status = 0;
    for _ in 0..50 {
        status = req(&s, "PUT", &p, &[("authorization", &bearer("new-token-42"))], "x")
            .await
            .0;
        if status == 201 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 201, "token from the reloaded file");
    // A broken token file keeps the previous tokens.
    std::fs::write(dir.path().join("tokens.toml"), "not [ toml").unwrap();
    signal(s.pid(), "HUP");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        req(&s, "HEAD", &p, &[("authorization", &bearer("new-token-42"))], "")
            .await
            .0,
        200
    );
}
