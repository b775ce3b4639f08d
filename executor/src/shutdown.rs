//! Stopping on SIGINT/SIGTERM: one [`Shutdown`] handle that every long phase honours.
//!
//! The first signal asks everything to stop: the scheduler starts no more tasks, each running
//! command's process group gets the same signal and [`GRACE`] to exit (then SIGKILL, see
//! `exec.rs`), snapshot walks stop at the next file or chunk, `serve` stops accepting. The
//! process then leaves the normal way (audit `STOP` line, lock released) with exit code 130
//! (SIGINT) or 143 (SIGTERM). A second signal kills the commands at once.
//!
//! Installing the handlers replaces the default "die now", so a phase that does not look at the
//! handle would swallow the signal: a watchdog therefore ends the process
//! [`STOP_DEADLINE`] after the first signal and [`KILL_DEADLINE`] after the second, whatever it
//! is doing (a lock file left behind then names a dead PID, which the next run takes over).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

/// How long a signalled command's process group has to exit before it is SIGKILLed.
pub const GRACE: Duration = Duration::from_secs(5);
/// After the first signal, the process ends by force if it is still running this late.
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// After the second signal, the same.
pub const KILL_DEADLINE: Duration = Duration::from_secs(2);

/// The signal that stopped the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl StopSignal {
    /// The exit code of a process it stopped: 128 + the signal number.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }

    /// The signal itself, to forward to process groups.
    pub fn signal(self) -> Signal {
        match self {
            Self::Interrupt => Signal::SIGINT,
            Self::Terminate => Signal::SIGTERM,
        }
    }

    /// `SIGINT`, `SIGTERM`.
    pub fn name(self) -> &'static str {
        self.signal().as_str()
    }
}

/// Work was stopped by a signal.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("interrupted by {}", .0.name())]
pub struct Interrupted(pub StopSignal);

/// A cheap, cloneable handle on the process's stop requests.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The first signal (its exit code is the process's).
    first: OnceLock<StopSignal>,
    /// Cancelled by the first signal: stop starting work, ask running commands to stop.
    stop: CancellationToken,
    /// Cancelled by the second: kill running commands now.
    kill: CancellationToken,
}

impl Shutdown {
    /// A handle no signal reaches (tests, or before [`Shutdown::install`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles SIGINT and SIGTERM from now on, on `rt`; prints `announce`'s line on the first.
    pub fn install(rt: &tokio::runtime::Runtime, announce: fn(StopSignal)) -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let _enter = rt.enter();
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let me = Self::new();
        let handle = me.clone();
        rt.spawn(async move {
            loop {
                let sig = tokio::select! {
                    _ = int.recv() => StopSignal::Interrupt,
                    _ = term.recv() => StopSignal::Terminate,
                };
                let first = handle.signal().is_none();
                handle.request(sig);
                if first {
                    announce(sig);
                }
                let code = handle.signal().unwrap_or(sig).exit_code();
                let deadline = if first { STOP_DEADLINE } else { KILL_DEADLINE };
                std::thread::spawn(move || {
                    std::thread::sleep(deadline);
                    tracing::warn!(?deadline, "still running after a stop request; exiting by force");
                    std::process::exit(code.into());
                });
            }
        });
        Ok(me)
    }

    /// Records a stop request, as a signal would: the first stops, any later one kills.
    pub fn request(&self, sig: StopSignal) {
        if self.inner.first.set(sig).is_ok() {
            tracing::info!(signal = sig.name(), "stopping");
            self.inner.stop.cancel();
        } else {
            tracing::info!(signal = sig.name(), "second signal: killing running commands");
            self.inner.kill.cancel();
        }
    }

    /// The first signal received, if any.
    pub fn signal(&self) -> Option<StopSignal> {
        self.inner.first.get().copied()
    }

    /// `Err` once a stop was requested: for loops to call between steps.
    pub fn check(&self) -> Result<(), Interrupted> {
        match self.signal() {
            Some(sig) => Err(Interrupted(sig)),
            None => Ok(()),
        }
    }

    /// Resolves when a stop is requested, with the signal.
    pub async fn stopped(&self) -> StopSignal {
        self.inner.stop.cancelled().await;
        self.signal().expect("set before the token is cancelled")
    }

    /// Resolves when a second signal asks to kill at once.
    pub async fn killed(&self) {
        self.inner.kill.cancelled().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_request_stops_second_kills() {
        let s = Shutdown::new();
        assert!(s.check().is_ok());
        s.request(StopSignal::Terminate);
        assert_eq!(s.stopped().await, StopSignal::Terminate);
        assert!(s.check().is_err());
        let killed = tokio::time::timeout(Duration::from_millis(50), s.killed()).await;
        assert!(killed.is_err(), "one signal does not kill");
        s.request(StopSignal::Interrupt);
        s.killed().await;
        // The first signal decides the exit code.
        assert_eq!(s.signal().map(StopSignal::exit_code), Some(143));
    }
}
