//! Runs one task command: `sh -c CMD` in the workspace, in its own process group so that a timeout
//! (or the end of the command) kills everything it started, with stdout and stderr captured.
//!
//! On a stop request ([`Shutdown`]) the group gets the same signal (SIGINT or SIGTERM) and
//! [`GRACE`] to exit, every process of it (a child that traps the signal to clean up is waited
//! for too), then SIGKILL; a second signal SIGKILLs at once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

use crate::shutdown::{Shutdown, StopSignal, GRACE};

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 0.
    Success,
    /// A non-zero exit code.
    Code(i32),
    /// Killed by a signal it did not get from us.
    Signal(i32),
    /// Ran past its timeout; its process group was killed.
    TimedOut(Duration),
    /// Stopped because reprovm got this signal (forwarded to its process group).
    Interrupted(StopSignal),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Success => f.write_str("succeeded"),
            Self::Code(c) => write!(f, "exited with code {c}"),
            Self::Signal(s) => write!(f, "killed by signal {s}"),
            Self::TimedOut(t) => write!(f, "timed out after {:.1}s (process group killed)", t.as_secs_f64()),
            Self::Interrupted(s) => write!(f, "interrupted by {} (process group stopped)", s.name()),
        }
    }
}

/// What running a command gave.
#[derive(Debug)]
pub struct Outcome {
    /// How it ended.
    pub exit: Exit,
    /// Its stdout followed by its stderr.
    pub output: Vec<u8>,
    /// Wall time.
    pub duration: Duration,
}

/// How the wait for the shell ended.
enum Ended {
    Exited(std::io::Result<std::process::ExitStatus>),
    TimedOut,
    Stopped(StopSignal),
}

/// Whether any process of group `pgid` is still alive (zombies do not count: nothing runs in
/// them, and an init that does not reap would otherwise keep them forever).
fn group_alive(pgid: Pid) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return killpg(pgid, None).is_ok();
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            // `pid (comm) state ppid pgrp ...`: the fields after the last `)`.
            let mut rest = stat
                .rsplit_once(')')
                .map(|(_, r)| r)
                .unwrap_or_default()
                .split_whitespace();
            let state = rest.next();
            let pgrp = rest.nth(1).and_then(|p| p.parse::<i32>().ok());
            pgrp == Some(pgid.as_raw()) && !matches!(state, Some("Z") | Some("X"))
        })
}

/// `sh` as found on `PATH`, looked up once per process: letting every spawn search `PATH` costs a
/// failed `execve` per directory before it, while the parent waits (spawning is a vfork).
fn shell() -> &'static Path {
    static SHELL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SHELL.get_or_init(|| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .map(|dir| dir.join("sh"))
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
            // Not found: let the spawn report it.
            .unwrap_or_else(|| PathBuf::from("sh"))
    })
}

/// Runs `sh -c cmd` in `cwd` with `env` added to the inherited environment, until it ends, its
/// timeout passes or `shutdown` stops it.
pub async fn run(
    cmd: &str,
    cwd: &Path,
    env: &[(String, String)],
    timeout: Option<Duration>,
    shutdown: &Shutdown,
) -> std::io::Result<Outcome> {
    let start = Instant::now();
    let mut child = tokio::process::Command::new(shell())
        .arg("-c")
        .arg(cmd)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pgid = Pid::from_raw(child.id().expect("a just-spawned child has a pid") as i32);
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let read_out = async {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf).await;
        buf
    };
    let read_err = async {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    };
    let wait = async {
        let expired = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            s = child.wait() => Ended::Exited(s),
            _ = expired => Ended::TimedOut,
            sig = shutdown.stopped() => Ended::Stopped(sig),
        };
        let exit = match ended {
            Ended::Exited(s) => s.map(|s| {
                use std::os::unix::process::ExitStatusExt;
                match (s.code(), s.signal()) {
                    (Some(0), _) => Exit::Success,
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(sig)) => Exit::Signal(sig),
                    (None, None) => Exit::Code(-1),
                }
            }),
            Ended::TimedOut => Ok(Exit::TimedOut(timeout.unwrap_or_default())),
            Ended::Stopped(sig) => {
                let _ = killpg(pgid, sig.signal());
                let drained = async {
                    let _ = child.wait().await;
                    while group_alive(pgid) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                };
                tokio::select! {
                    _ = drained => {}
                    _ = tokio::time::sleep(GRACE) => {}
                    _ = shutdown.killed() => {}
                }
                Ok(Exit::Interrupted(sig))
            }
        };
        // Whatever the shell left behind in its group (background jobs holding our pipes, or
        // everything when it timed out or outlived a stop's grace) goes now.
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.wait().await;
        exit
    };
    let (exit, mut out, err) = tokio::join!(wait, read_out, read_err);
    out.extend_from_slice(&err);
    Ok(Outcome {
        exit: exit?,
        output: out,
        duration: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn captures_output_and_codes() {
        let dir = tempfile::tempdir().unwrap();
        let env = [("GREETING".to_string(), "hi".to_string())];
        let none = Shutdown::new();
        let o = run("echo $GREETING; echo oops >&2; exit 3", dir.path(), &env, None, &none)
            .await
            .unwrap();
        assert_eq!(o.exit, Exit::Code(3));
        assert_eq!(String::from_utf8_lossy(&o.output), "hi\noops\n");
        let o = run("pwd", dir.path(), &[], None, &none).await.unwrap();
        assert_eq!(o.exit, Exit::Success);
        assert_eq!(
            Path::new(String::from_utf8_lossy(&o.output).trim()),
            dir.path().canonicalize().unwrap()
        );
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        // A grandchild that would write a marker if it survived.
        let cmd = "(sleep 2; touch survived) & sleep 30";
        let o = run(cmd, dir.path(), &[], Some(Duration::from_millis(300)), &Shutdown::new())
            .await
            .unwrap();
        assert!(matches!(o.exit, Exit::TimedOut(_)), "{:?}", o.exit);
        assert!(o.duration < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!dir.path().join("survived").exists());
    }

    #[tokio::test]
    async fn a_stop_forwards_the_signal_and_waits_for_the_group() {
        let dir = tempfile::tempdir().unwrap();
        // The shell dies of the signal; its background child traps it, cleans up, then exits.
        let cmd = "sh -c 'trap \"sleep 0.3; touch cleaned; exit 0\" TERM; sleep 30 & wait' & sleep 30";
        let shutdown = Shutdown::new();
        let stopper = {
            let s = shutdown.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                s.request(StopSignal::Terminate);
            }
        };
        let (o, ()) = tokio::join!(run(cmd, dir.path(), &[], None, &shutdown), stopper);
        let o = o.unwrap();
        assert_eq!(o.exit, Exit::Interrupted(StopSignal::Terminate));
        assert!(o.duration < GRACE, "{:?}", o.duration);
        assert!(dir.path().join("cleaned").exists(), "the trapping child got its time");
    }

    #[tokio::test]
    async fn a_second_request_kills_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = Shutdown::new();
        let stopper = {
            let s = shutdown.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                s.request(StopSignal::Interrupt);
                tokio::time::sleep(Duration::from_millis(200)).await;
                s.request(StopSignal::Interrupt);
            }
        };
        let (o, ()) = tokio::join!(run("trap '' INT; sleep 30", dir.path(), &[], None, &shutdown), stopper);
        let o = o.unwrap();
        assert_eq!(o.exit, Exit::Interrupted(StopSignal::Interrupt));
        assert!(o.duration < Duration::from_secs(2), "{:?}", o.duration);
    }
}
