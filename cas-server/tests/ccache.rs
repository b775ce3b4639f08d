//! ccache's HTTP remote storage, unmodified (the ccache from the distribution), on `/kv/ccache`:
//! the default `subdirs` layout and `flat`, and credentials in the URL (HTTP Basic). A first
//! compile with an empty local cache misses and uploads; a second with another empty local cache
//! gets a remote hit and the same object file.

mod common;

use std::path::Path;
use std::process::Command;

use common::{req, tokens_config, Server};

fn ccache(dir: &Path, cache: &str, remote: &str, args: &[&str]) -> String {
    let out = Command::new("ccache")
        .args(args)
        .current_dir(dir)
        .env("CCACHE_DIR", dir.join(cache))
        .env("CCACHE_REMOTE_STORAGE", remote)
        .env("CCACHE_NOHASHDIR", "1")
        .env_remove("CCACHE_DISABLE")
        .output()
        .expect("ccache is installed by scripts/setup.sh --test");
    assert!(
        out.status.success(),
        "ccache {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A counter of `ccache --print-stats` (tab-separated `name value` lines).
fn stat(stats: &str, key: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('\t')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {key} in ccache stats:\n{stats}"))
}

fn source(dir: &Path) {
    std::fs::write(
        dir.join("hello.c"),
        "#include <stdio.h>\nint main(void) { puts(\"hello from the remote cache\"); return 0; }\n",
    )
    .unwrap();
}

/// Compiles on machine A (empty local cache), then on machine B (another empty local cache);
/// returns the stats of both.
fn two_machines(dir: &Path, remote: &str) -> (String, String) {
    source(dir);
    ccache(dir, "a", remote, &["gcc", "-c", "hello.c", "-o", "a.o"]);
    let a = ccache(dir, "a", remote, &["--print-stats"]);
    ccache(dir, "b", remote, &["gcc", "-c", "hello.c", "-o", "b.o"]);
    let b = ccache(dir, "b", remote, &["--print-stats"]);
    assert_eq!(
        std::fs::read(dir.join("a.o")).unwrap(),
        std::fs::read(dir.join("b.o")).unwrap(),
        "the object from the remote hit differs"
    );
    (a, b)
}

async fn propfind(s: &Server, path: &str, auth: &[(&str, &str)]) -> String {
    let mut h = vec![("depth", "1")];
    h.extend_from_slice(auth);
    let (st, _, body) = req(s, "PROPFIND", path, &h, "").await;
    assert_eq!(st, 207, "{path}");
    String::from_utf8_lossy(&body).into_owned()
}

/// The hrefs of a PROPFIND answer, less the first (the path itself).
fn children(xml: &str) -> Vec<String> {
    xml.split("<D:href>")
        .skip(2)
        .filter_map(|p| p.split_once("</D:href>").map(|(h, _)| h.to_string()))
        .collect()
}

#[tokio::test]
async fn subdirs_layout_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    let remote = format!("{}/kv/ccache", s.url());
    let (a, b) = two_machines(dir.path(), &remote);
    assert_eq!(stat(&a, "remote_storage_miss"), 1, "{a}");
    assert_eq!(stat(&a, "remote_storage_error"), 0, "{a}");
    assert_eq!(stat(&b, "remote_storage_hit"), 1, "{b}");
    assert_eq!(stat(&b, "remote_storage_error"), 0, "{b}");
    assert_eq!(stat(&b, "cache_miss"), 0, "{b}");
    // Keys are `{2 chars}/{rest}`: only directories at the top.
    let top = children(&propfind(&s, "/kv/ccache/", &[]).await);
    assert!(!top.is_empty() && top.iter().all(|h| h.ends_with('/')), "{top:?}");
    let st: serde_json::Value = serde_json::from_slice(&req(&s, "GET", "/v1/stats", &[], "").await.2).unwrap();
    let ns = &st["kv"]["ccache"];
    assert_eq!(ns["puts"], 2, "a manifest and a result: {st}");
    assert!(ns["hits"].as_u64().unwrap() >= 1, "{st}");
    assert!(ns["misses"].as_u64().unwrap() >= 1, "{st}");
}

#[tokio::test]
async fn flat_layout() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    let remote = format!("{}/kv/ccache-flat|layout=flat", s.url());
    let (a, b) = two_machines(dir.path(), &remote);
    assert_eq!(stat(&a, "remote_storage_miss"), 1, "{a}");
    assert_eq!(stat(&b, "remote_storage_hit"), 1, "{b}");
    assert_eq!(stat(&b, "remote_storage_error"), 0, "{b}");
    // Keys sit at the top, no directories.
    let top = children(&propfind(&s, "/kv/ccache-flat/", &[]).await);
    assert_eq!(top.len(), 2, "{top:?}");
    assert!(top.iter().all(|h| !h.ends_with('/')), "{top:?}");
}

#[tokio::test]
async fn credentials_in_the_url_and_read_only_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = tokens_config(dir.path(), &[("dev", "r-secret", "read"), ("ci", "w-secret", "write")]);
    let s = Server::start(&dir.path().join("data"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    let with = |user: &str, token: &str| format!("http://{user}:{token}@{}/kv/ccache", s.addr);
    // A read-only token: the lookup works (a miss), the upload is refused (403), so nothing is stored.
    source(dir.path());
    ccache(
        dir.path(),
        "r",
        &with("dev", "r-secret"),
        &["gcc", "-c", "hello.c", "-o", "r.o"],
    );
    let r = ccache(dir.path(), "r", &with("dev", "r-secret"), &["--print-stats"]);
    assert_eq!(stat(&r, "remote_storage_miss"), 1, "{r}");
    assert!(
        stat(&r, "remote_storage_error") >= 1,
        "the refused upload is an error: {r}"
    );
    let auth = common::basic("dev", "r-secret");
    assert!(children(&propfind(&s, "/kv/ccache/", &[("authorization", &auth)]).await).is_empty());
    // Without credentials: every request refused (401).
    let anon = format!("{}/kv/ccache", s.url());
    ccache(dir.path(), "n", &anon, &["gcc", "-c", "hello.c", "-o", "n.o"]);
    let n = ccache(dir.path(), "n", &anon, &["--print-stats"]);
    assert!(stat(&n, "remote_storage_error") >= 1, "{n}");
    // The writer's token fills the cache; a reader on another machine then hits.
    let (a, b) = {
        let w = with("ci", "w-secret");
        ccache(dir.path(), "a", &w, &["gcc", "-c", "hello.c", "-o", "a.o"]);
        let a = ccache(dir.path(), "a", &w, &["--print-stats"]);
        let rd = with("dev", "r-secret");
        ccache(dir.path(), "b", &rd, &["gcc", "-c", "hello.c", "-o", "b.o"]);
        (a, ccache(dir.path(), "b", &rd, &["--print-stats"]))
    };
    assert_eq!(stat(&a, "remote_storage_error"), 0, "{a}");
    assert_eq!(stat(&b, "remote_storage_hit"), 1, "{b}");
    assert_eq!(
        std::fs::read(dir.path().join("a.o")).unwrap(),
        std::fs::read(dir.path().join("b.o")).unwrap()
    );
}
