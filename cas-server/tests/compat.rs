//! bazel-remote compatibility with a real, unmodified client: ccache's HTTP
//! remote storage in `layout=bazel` mode (SHA-256 keys under `/ac/` and `/cas/`).

mod common;

use std::process::Command;

use common::{req, Server};

fn ccache(dir: &std::path::Path, cache: &str, url: &str, args: &[&str]) -> String {
    let out = Command::new("ccache")
        .args(args)
        .current_dir(dir)
        .env("CCACHE_DIR", dir.join(cache))
        .env("CCACHE_REMOTE_STORAGE", format!("{url}|layout=bazel"))
        .env("CCACHE_NOHASHDIR", "1")
        .output()
        .expect("ccache is installed by scripts/setup.sh --test");
    assert!(
        out.status.success(),
        "ccache {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stat(stats: &str, key: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in ccache stats:\n{stats}"))
}

#[tokio::test]
async fn ccache_shares_results_through_the_bazel_layout() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"), &[]);
    let src = dir.path().join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void) { puts(\"hello\"); return 0; }\n",
    )
    .unwrap();

    // Machine A compiles: a miss that fills the remote.
    ccache(dir.path(), "a", &s.url(), &["gcc", "-c", "hello.c", "-o", "a.o"]);
    let stats_a = ccache(dir.path(), "a", &s.url(), &["--print-stats"]);
    assert_eq!(stat(&stats_a, "remote_storage_miss"), 1, "{stats_a}");
    let metrics = String::from_utf8(req(&s, "GET", "/metrics", &[], "").await.2.to_vec()).unwrap();
    // ccache keeps its entries (manifest and result) as action-cache values under /ac/{sha256}.
    assert!(
        metrics.contains("route=\"bazel_ac\",method=\"PUT\",status=\"200\"} 2"),
        "{metrics}"
    );

    // Machine B (empty local cache) gets a remote hit and the same object file.
    ccache(dir.path(), "b", &s.url(), &["gcc", "-c", "hello.c", "-o", "b.o"]);
    let stats_b = ccache(dir.path(), "b", &s.url(), &["--print-stats"]);
    assert_eq!(stat(&stats_b, "remote_storage_hit"), 1, "{stats_b}");
    assert_eq!(
        std::fs::read(dir.path().join("a.o")).unwrap(),
        std::fs::read(dir.path().join("b.o")).unwrap()
    );
}
