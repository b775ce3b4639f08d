//! Real Bazel (Debian's `bazel-bootstrap`, installed by `scripts/setup.sh --test`) against the
//! server's gRPC face with `--remote_cache=grpc://127.0.0.1:PORT`: a build from a fresh output
//! base after a first one gets every action from the remote cache. Also with a token header,
//! with `--remote_download_minimal` (builds without the bytes). (Debian's Bazel 4.2 cannot speak
//! `grpcs://`: its netty has no ALPN; TLS is tested with tonic in `grpc.rs`.)

mod common;

use std::path::Path;
use std::process::Command;

use common::{req, Server};

/// A workspace of genrules (Bazel's C++ rules need a download; genrules run offline): two
/// compiles and a link with the system gcc, a text chain, and a 6.9 MB output that is larger
/// than one batch, so that it travels by ByteStream.
fn workspace(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let files = [
        ("WORKSPACE", ""),
        ("greet.h", "void greet(const char *who);\n"),
        (
            "greet.c",
            "#include <stdio.h>\n#include \"greet.h\"\nvoid greet(const char *who) { printf(\"hello %s\\n\", who); }\n",
        ),
        (
            "main.c",
            "#include \"greet.h\"\nint main(void) { greet(\"bazel\"); return 0; }\n",
        ),
        (
            "BUILD",
            r#"
genrule(name = "greet_o", srcs = ["greet.c", "greet.h"], outs = ["greet.o"],
        cmd = "gcc -c -I$$(dirname $(location greet.h)) $(location greet.c) -o $@")
genrule(name = "main_o", srcs = ["main.c", "greet.h"], outs = ["main.o"],
        cmd = "gcc -c -I$$(dirname $(location greet.h)) $(location main.c) -o $@")
genrule(name = "hello_bin", srcs = [":greet_o", ":main_o"], outs = ["hello"],
        cmd = "gcc $(location :greet_o) $(location :main_o) -o $@", executable = True)
genrule(name = "words", outs = ["words.txt"], cmd = "seq 1 20000 > $@")
genrule(name = "count", srcs = [":words"], outs = ["count.txt"], cmd = "wc -l < $(location :words) > $@")
genrule(name = "big", outs = ["big.bin"], cmd = "seq 1 1000000 > $@")
genrule(name = "both", srcs = [":count", ":big", ":hello_bin"], outs = ["both.txt"],
        cmd = "cat $(location :count) > $@ && wc -c < $(location :big) >> $@ && ./$(location :hello_bin) >> $@")
"#,
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

/// Actions run by a build: (executed locally, from the remote cache).
#[derive(Debug, PartialEq)]
struct Processes {
    local: u64,
    remote_hits: u64,
}

/// Runs `bazel build //:all` with its own output root; returns the processes line's counts.
fn bazel(ws: &Path, root: &Path, flags: &[String]) -> Processes {
    let out = Command::new("bazel")
        .arg(format!("--output_user_root={}", root.display()))
        .arg("--batch")
        .arg("build")
        .args([
            "--spawn_strategy=local",
            "--noshow_progress",
            "--color=no",
            "--curses=no",
            "//:all",
        ])
        .args(flags)
        .current_dir(ws)
        .env("HOME", root)
        .output()
        .expect("bazel is installed by scripts/setup.sh --test (bazel-bootstrap)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bazel build {flags:?} failed:\n{err}");
    // e.g. "INFO: 9 processes: 2 internal, 7 remote cache hit." or "..., 7 local."
    let line = err
        .lines()
        .find(|l| l.contains(" processes: ") || l.contains(" process: "))
        .unwrap_or_else(|| panic!("no processes line in:\n{err}"));
    let count = |what: &str| -> u64 {
        line.split([':', ',', '.'])
            .map(str::trim)
            .find_map(|part| part.strip_suffix(what).and_then(|n| n.trim().parse().ok()))
            .unwrap_or(0)
    };
    Processes {
        local: count("local"),
        remote_hits: count("remote cache hit"),
    }
}

const ACTIONS: u64 = 7;

/// A first build uploads every action; one from a fresh output base hits every one.
fn round_trip(dir: &Path, flags: &[String], minimal: bool) {
    let ws = dir.join("ws");
    workspace(&ws);
    let first = bazel(&ws, &dir.join("root-a"), flags);
    assert_eq!(
        first,
        Processes {
            local: ACTIONS,
            remote_hits: 0
        },
        "first build"
    );
    let mut second_flags = flags.to_vec();
    if minimal {
        second_flags.push("--remote_download_minimal".into());
    }
    let second = bazel(&ws, &dir.join("root-b"), &second_flags);
    assert_eq!(
        second,
        Processes {
            local: 0,
            remote_hits: ACTIONS
        },
        "second build from a fresh output base"
    );
    let both = ws.join("bazel-bin/both.txt");
    if minimal {
        assert!(!both.exists(), "builds without the bytes download no outputs");
    } else {
        let text = std::fs::read_to_string(&both).unwrap();
        assert_eq!(text, "20000\n6888896\nhello bazel\n");
    }
}

#[test]
fn bazel_gets_every_action_from_the_grpc_cache() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    round_trip(dir.path(), &[format!("--remote_cache=grpc://{}", s.addr)], false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_, _, m) = rt.block_on(req(&s, "GET", "/metrics", &[], ""));
    let m = String::from_utf8_lossy(&m);
    let count = |route: &str, status: u16| -> u64 {
        let key = format!("reprovm_http_requests_total{{route=\"{route}\",method=\"POST\",status=\"{status}\"}} ");
        m.lines().find_map(|l| l.strip_prefix(&key)?.parse().ok()).unwrap_or(0)
    };
    assert_eq!(count("grpc_get_action_result", 200), ACTIONS, "{m}");
    assert_eq!(count("grpc_update_action_result", 200), ACTIONS, "{m}");
    assert!(
        count("grpc_bytestream_write", 200) >= 1,
        "the 6.9 MB output goes by ByteStream: {m}"
    );
}

#[test]
fn bazel_with_a_token_header_and_builds_without_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cas.toml");
    std::fs::write(
        &cfg,
        "[auth]\n[[auth.tokens]]\nname = \"bazel\"\ntoken = \"bz-token-123\"\nrole = \"write\"\n",
    )
    .unwrap();
    let s = Server::start(&dir.path().join("data"), &[("CAS_CONFIG", cfg.to_str().unwrap())]);
    let cache = format!("--remote_cache=grpc://{}", s.addr);
    // Without the token the cache refuses, and Bazel says so.
    let ws = dir.path().join("refused");
    workspace(&ws);
    let out = Command::new("bazel")
        .arg(format!("--output_user_root={}", dir.path().join("root-x").display()))
        .args(["--batch", "build", "--spawn_strategy=local", "//:words", &cache])
        .current_dir(&ws)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UNAUTHENTICATED"), "{err}");
    let flags = [cache, "--remote_header=authorization=Bearer bz-token-123".to_string()];
    round_trip(dir.path(), &flags, true);
}
