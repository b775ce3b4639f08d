//! Stable fuzz twins for what the cargo-fuzz workspace (`fuzz/`) does not build (it avoids
//! compiling RocksDB under nightly): the config loader (`Config::from_toml` and the `CAS_*`
//! environment layer) on mutated TOML, and the HTTP routing on random paths and methods sent to
//! the real server. Seeded (`TWIN_SEED`), so a failure replays.

mod common;

use std::path::{Path, PathBuf};

use cas_server::Config;
use common::{req, Server};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
}

fn seed() -> u64 {
    let s = std::env::var("TWIN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xc0f16u64);
    println!("twin seed {s} (replay with TWIN_SEED={s})");
    s | 1
}

const TOML_DICT: &[&str] = &[
    "\"",
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "\n",
    ",",
    "{",
    "}",
    "GiB",
    "1.5",
    "-1",
    "18446744073709551616",
    "1e400",
    "true",
    "\"\"",
    "#",
    "'",
    "\\u0000",
    "max_size",
    "[remote]",
    "mode = \"nope\"",
    "[auth]",
    "role = \"root\"",
    "unknown_key = 1",
    ".",
    "KiB",
    "TiB",
    "99999999999999999999 TiB",
];

const ENV_VARS: &[&str] = &[
    "CAS_MAX_SIZE",
    "CAS_MAX_BLOB_SIZE",
    "CAS_MIN_FREE_SPACE",
    "CAS_COMPRESSION",
    "CAS_COMPRESSION_LEVEL",
    "CAS_SYNC_WRITES",
    "CAS_REMOTE_MODE",
    "CAS_REMOTE_URL",
    "CAS_ALLOW_ANONYMOUS_READ",
    "CAS_LOG_FORMAT",
];

fn mutate_text(rng: &mut Rng, input: &str, dict: &[&str]) -> String {
    let mut out = input.as_bytes().to_vec();
    for _ in 0..1 + rng.below(5) {
        let at = rng.below(out.len() + 1);
        match rng.below(4) {
            0 if at < out.len() => {
                let end = (at + 1 + rng.below(10)).min(out.len());
                out.drain(at..end);
            }
            1 if at < out.len() => out[at] ^= 1 << rng.below(7),
            _ => {
                let tok = rng.pick(dict);
                out.splice(at..at, tok.bytes());
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn config_loader_twin() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/config_toml");
    let seed_text = std::fs::read_to_string(root.join("full.toml")).unwrap();
    let path = Path::new("fuzz.toml");
    let base = Config::from_toml(&seed_text, path).expect("the seed config is valid");
    assert_eq!(base.max_size.map(|s| s.0), Some(50 << 30));
    let mut rng = Rng(seed());
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..3_000 {
        let text = mutate_text(&mut rng, &seed_text, TOML_DICT);
        match Config::from_toml(&text, path) {
            Ok(mut c) => {
                ok += 1;
                // The environment layer on top, with one mutated variable.
                let var = rng.pick(ENV_VARS);
                let start = rng.pick(&["1GiB", "zstd", "true", "write-through", "3"]);
                let value = mutate_text(&mut rng, start, TOML_DICT);
                if let Err(e) = c.apply_env(|k| (k == var).then(|| value.clone())) {
                    assert!(e.to_string().contains(var), "{e}");
                }
            }
            Err(e) => {
                refused += 1;
                let msg = e.to_string();
                assert!(msg.contains("fuzz.toml"), "{msg}");
            }
        }
    }
    println!("config twin: {ok} accepted, {refused} refused");
    assert!(
        ok > 100 && refused > 100,
        "mutations too mild or too harsh: {ok} ok, {refused} refused"
    );
}

const SEGMENTS: &[&str] = &[
    "v1",
    "blobs",
    "blobs:missing",
    "blobs:batch",
    "ac",
    "cas",
    "refs",
    "health",
    "ready",
    "metrics",
    "stats",
    "config",
    "admin",
    "backups",
    "..",
    ".",
    "%2e%2e",
    "%00",
    "%2F",
    "",
    "x",
    "v2",
    "snapshots",
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    "AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "af1349b9",
    "?prefix=",
    "?x=%ff",
];

#[tokio::test]
async fn routing_twin_never_answers_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    let mut rng = Rng(seed());
    let methods = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"];
    for _ in 0..600 {
        let n = 1 + rng.below(5);
        let path: String = (0..n).map(|_| format!("/{}", rng.pick(SEGMENTS))).collect();
        let method = rng.pick(&methods);
        let body = ["", "{}", "[1]", "x"][rng.below(4)];
        let (st, _, resp) = req(&s, method, &path, &[], body).await;
        assert!(st < 500, "{method} {path}: {st} {}", String::from_utf8_lossy(&resp));
        if st >= 400 && method != "HEAD" && st != 431 {
            let v: serde_json::Value = serde_json::from_slice(&resp)
                .unwrap_or_else(|_| panic!("{method} {path}: {st} without a JSON error: {resp:?}"));
            assert!(v["error"].is_string(), "{method} {path}: {v}");
        }
    }
    assert_eq!(req(&s, "GET", "/health", &[], "").await.0, 200);
}
