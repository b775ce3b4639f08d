//! Malformed manifests: NUL bytes, megabyte lines, invalid UTF-8, unclosed
//! blocks. Each exits 2 with a `manifest.rvm:line:col:` message (or says the
//! file is unreadable), and no command runs.

mod common;

use common::reprovm;

#[test]
fn malformed_manifests_exit_2_and_run_nothing() {
    let long = "x".repeat(1 << 20);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "NUL in a command",
            b"task a {\n cmd = touch ran\0\n}\n".to_vec(),
            "manifest.rvm:2:",
        ),
        (
            "NUL in a task name",
            b"task a\0b {\n cmd = touch ran\n}\n".to_vec(),
            "manifest.rvm:1:",
        ),
        (
            "NUL between tasks",
            b"task a {\n cmd = touch ran\n}\n\0\n".to_vec(),
            "manifest.rvm:4:",
        ),
        (
            "1 MiB command line",
            format!("task a {{\n cmd = touch ran {long}\0\n}}\n").into_bytes(),
            "manifest.rvm:2:",
        ),
        (
            "1 MiB task name",
            format!("task {long} {{\n cmd = touch ran\n}}\n").into_bytes(),
            "manifest.rvm:1:",
        ),
        (
            "1 MiB line of garbage",
            format!("task a {{\n cmd = touch ran\n}}\n{long}\n").into_bytes(),
            "manifest.rvm:4:",
        ),
        (
            "invalid UTF-8",
            b"task a {\n cmd = touch ran \xff\xfe\n}\n".to_vec(),
            "manifest.rvm",
        ),
        (
            "unclosed block",
            b"task a {\n cmd = touch ran\n".to_vec(),
            "manifest.rvm:",
        ),
        (
            "timeout of 1e300 hours",
            b"task a {\n cmd = touch ran\n timeout = 1e300h\n}\n".to_vec(),
            "manifest.rvm:3:",
        ),
    ];
    for (name, manifest, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.rvm"), &manifest).unwrap();
        let r = reprovm(dir.path(), &["manifest.rvm"]);
        assert_eq!(r.code, 2, "{name}: {r:?}");
        assert!(
            r.stderr.contains(want),
            "{name}: expected {want:?} in {:?}",
            &r.stderr[..r.stderr.len().min(400)]
        );
        assert!(
            r.stderr.len() < 4096,
            "{name}: the message should not echo a megabyte: {} bytes",
            r.stderr.len()
        );
        assert!(!dir.path().join("ran").exists(), "{name}: a command ran");
    }
}
