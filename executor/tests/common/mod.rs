//! Test harness: runs the real `reprovm` binary in temp workspaces, and starts a real
//! `cas-server` (built next to it) on an ephemeral port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The `reprovm` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_reprovm")
}

/// Result of one run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `reprovm ARGS` with `dir` as the working directory, no colours, no config from the environment.
pub fn reprovm(dir: &Path, args: &[&str]) -> Run {
    reprovm_env(dir, args, &[])
}

pub fn reprovm_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args).current_dir(dir).env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("REPROVM_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out: Output = cmd.output().expect("run reprovm");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temp workspace holding `manifest.rvm` and the given files.
pub fn workspace(manifest: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("manifest.rvm"), manifest).unwrap();
    for (name, content) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(p, content).unwrap();
    }
    dir
}

/// The names of the tasks with the given status mark (`[+]`, `[*]`, `[!]`, `[-]`) in the output.
pub fn marked(run: &Run, mark: &str) -> Vec<String> {
    let mut names: Vec<String> = run
        .all()
        .lines()
        .filter_map(|l| l.strip_prefix(mark))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|n| n.trim_end_matches(':').to_string())
        .collect();
    names.sort();
    names
}

/// A running cas-server.
pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        let exe: PathBuf = Path::new(bin()).with_file_name("cas-server");
        assert!(
            exe.exists(),
            "{} not found: build it first with `cargo build --release -p cas-server`",
            exe.display()
        );
        let mut child = Command::new(exe)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("CAS_LOG_LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cas-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
            .to_string();
        Server {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
