//! Every route × {anonymous, read, write, admin} × a set of path prefixes,
//! against the real binary with tokens on and anonymous reads off: a request
//! is refused exactly when the caller lacks what the route that handles it
//! needs. Bazel's `/cas/` and `/ac/` take any prefix, and no prefix (an open
//! one such as `/swagger-ui` or `/health` included) may lend them its access.

mod common;

use common::{req, Server};
use reprovm_sdk::Digest;

const CONFIG: &str = r#"
[auth]
allow_anonymous_read = false
metrics_public = false
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

/// What a request needs, in this test's own words (independent of the server's table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Need {
    Public,
    Read,
    Write,
    Admin,
}

const CALLERS: [(&str, Option<&str>, Need); 4] = [
    ("anonymous", None, Need::Public),
    ("reader", Some("Bearer r-0123456789"), Need::Read),
    ("ci", Some("Bearer w-0123456789"), Need::Write),
    ("ops", Some("Bearer a-0123456789"), Need::Admin),
];

const PREFIXES: [&str; 8] = [
    "",
    "/swagger-ui",
    "/health",
    "/ready",
    "/metrics",
    "/openapi.yaml",
    "/v1/admin",
    "/my-instance",
];

struct Case {
    method: &'static str,
    path: String,
    need: Need,
    body: Vec<u8>,
    /// Bazel paths keep their meaning under any prefix; others become unknown paths.
    bazel: bool,
}

fn case(method: &'static str, path: impl Into<String>, need: Need, body: &[u8]) -> Case {
    let path = path.into();
    let bazel = path.starts_with("/cas/") || path.starts_with("/ac/");
    Case {
        method,
        path,
        need,
        body: body.to_vec(),
        bazel,
    }
}

fn cases(blob: &[u8], sha_blob: &[u8]) -> Vec<Case> {
    use Need::*;
    let b = Digest::of_blake3(blob).to_hex();
    let s = Digest::of_sha256(sha_blob).to_hex();
    let ac_key = Digest::of_sha256(b"an action").to_hex();
    let v1_ac = Digest::of_blake3(b"an action").to_hex();
    vec![
        case("GET", "/health", Public, b""),
        case("HEAD", "/health", Public, b""),
        case("GET", "/ready", Public, b""),
        case("GET", "/openapi.yaml", Public, b""),
        case("GET", "/swagger-ui", Public, b""),
        case("GET", "/swagger-ui/init.js", Public, b""),
        case("GET", "/metrics", Read, b""),
        case("GET", "/metrics/json", Read, b""),
        case("GET", "/v1/stats", Read, b""),
        case("GET", "/v1/config", Admin, b""),
        case("POST", "/v1/blobs:missing", Read, br#"{"digests": []}"#),
        case("POST", "/v1/blobs:batch", Write, b""),
        case("GET", "/v1/refs", Read, b""),
        case("GET", "/v1/admin/backups", Admin, b""),
        case("GET", format!("/v1/blobs/{b}"), Read, b""),
        case("HEAD", format!("/v1/blobs/{b}"), Read, b""),
        case("PUT", format!("/v1/blobs/{b}"), Write, blob),
        case("DELETE", format!("/v1/blobs/{b}"), Admin, b""),
        case("GET", format!("/v1/ac/{v1_ac}"), Read, b""),
        case("PUT", format!("/v1/ac/{v1_ac}"), Write, b"result"),
        case("GET", "/v1/refs/team/main", Read, b""),
        case("PUT", "/v1/refs/team/main", Write, b"value"),
        case("DELETE", "/v1/refs/team/main", Write, b""),
        case("GET", format!("/cas/{s}"), Read, b""),
        case("HEAD", format!("/cas/{s}"), Read, b""),
        case("PUT", format!("/cas/{s}"), Write, sha_blob),
        case("GET", format!("/ac/{ac_key}"), Read, b""),
        case("PUT", format!("/ac/{ac_key}"), Write, b"result"),
        case("GET", "/nothing/here", Read, b""),
        case("PUT", "/nothing/here", Write, b"x"),
        case("POST", "/nothing/here", Write, b"x"),
    ]
}

/// The status class a caller with `have` must get for a request needing `need`.
fn expect_refused(need: Need, have: Need, anonymous: bool) -> Option<u16> {
    if need == Need::Public || have >= need {
        None
    } else if anonymous {
        Some(401)
    } else {
        Some(403)
    }
}

#[tokio::test]
async fn every_route_caller_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cas.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    let admin = [("authorization", "Bearer a-0123456789")];
    let (blob, sha_blob) = (&b"a blake3 build output"[..], &b"a sha256 build output"[..]);
    let sha = Digest::of_sha256(sha_blob).to_hex();
    let (st, _, _) = req(&s, "PUT", &format!("/cas/{sha}"), &admin, sha_blob).await;
    assert_eq!(st, 201, "stored by an admin");

    let mut checked = 0;
    let mut failures = Vec::new();
    for prefix in PREFIXES {
        for c in cases(blob, sha_blob) {
            let path = format!("{prefix}{}", c.path);
            // Under a prefix, only bazel paths keep their route; the rest are unknown paths.
            let need = if prefix.is_empty() || c.bazel {
                c.need
            } else if c.method == "GET" || c.method == "HEAD" {
                Need::Read
            } else {
                Need::Write
            };
            for (who, header, have) in CALLERS {
                let headers: Vec<(&str, &str)> = header.map(|h| ("authorization", h)).into_iter().collect();
                let (status, _, _) = req(&s, c.method, &path, &headers, c.body.clone()).await;
                let refused = matches!(status, 401 | 403).then_some(status);
                let want = expect_refused(need, have, header.is_none());
                if refused != want {
                    failures.push(format!("{who} {} {path}: {status}, expected {want:?}", c.method));
                }
                checked += 1;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, PREFIXES.len() * cases(blob, sha_blob).len() * CALLERS.len());

    // Allowed requests through a prefix reach the bazel handlers for real.
    for prefix in PREFIXES {
        let p = format!("{prefix}/cas/{sha}");
        let (st, _, body) = req(&s, "GET", &p, &[("authorization", "Bearer r-0123456789")], "").await;
        assert_eq!((st, &body[..]), (200, sha_blob), "{p}");
        let (st, _, body) = req(&s, "GET", &p, &[], "").await;
        assert_eq!(
            st,
            401,
            "{p}: anonymous read of a stored blob: {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}
