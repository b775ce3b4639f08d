//! Runs one task command: `sh -c CMD` in the workspace, in its own process group so that a timeout
//! (or the end of the command) kills everything it started, with stdout and stderr captured.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;

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
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Success => f.write_str("succeeded"),
            Self::Code(c) => write!(f, "exited with code {c}"),
            Self::Signal(s) => write!(f, "killed by signal {s}"),
            Self::TimedOut(t) => write!(f, "timed out after {:.1}s (process group killed)", t.as_secs_f64()),
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

/// Runs `sh -c cmd` in `cwd` with `env` added to the inherited environment.
pub async fn run(
    cmd: &str,
    cwd: &Path,
    env: &[(String, String)],
    timeout: Option<Duration>,
) -> std::io::Result<Outcome> {
    let start = Instant::now();
    let mut child = tokio::process::Command::new("sh")
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
        let status = match timeout {
            Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
            None => Some(child.wait().await),
        };
        // Whatever the shell left behind in its group (background jobs holding our pipes, or
        // everything when it timed out) goes now.
        let _ = killpg(pgid, Signal::SIGKILL);
        match status {
            Some(s) => s.map(|s| {
                use std::os::unix::process::ExitStatusExt;
                match (s.code(), s.signal()) {
                    (Some(0), _) => Exit::Success,
                    (Some(c), _) => Exit::Code(c),
                    (None, Some(sig)) => Exit::Signal(sig),
                    (None, None) => Exit::Code(-1),
                }
            }),
            None => {
                let _ = child.wait().await;
                Ok(Exit::TimedOut(timeout.unwrap_or_default()))
            }
        }
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
        let o = run("echo $GREETING; echo oops >&2; exit 3", dir.path(), &env, None)
            .await
            .unwrap();
        assert_eq!(o.exit, Exit::Code(3));
        assert_eq!(String::from_utf8_lossy(&o.output), "hi\noops\n");
        let o = run("pwd", dir.path(), &[], None).await.unwrap();
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
        let o = run(cmd, dir.path(), &[], Some(Duration::from_millis(300)))
            .await
            .unwrap();
        assert!(matches!(o.exit, Exit::TimedOut(_)), "{:?}", o.exit);
        assert!(o.duration < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!dir.path().join("survived").exists());
    }
}
