//! All user-facing output of a run: status lines, the progress bar, the summary and `--stats`.
//!
//! Status lines go to stdout; the progress bar, warnings and errors to stderr. The bar is drawn
//! only when stderr is a terminal and neither `--no-progress` nor `-q` is given; otherwise each
//! task gets a plain line. Colour is on only for a terminal without `--no-color` / `NO_COLOR`.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// How output should look, decided once from flags, config and the terminal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    /// ANSI colours.
    pub color: bool,
    /// Only failures and errors.
    pub quiet: bool,
    /// Commands and their output too.
    pub verbose: bool,
    /// A progress bar (when stderr is a terminal).
    pub progress: bool,
}

const GREEN: &str = "32";
const CYAN: &str = "36";
const RED: &str = "31";
const YELLOW: &str = "33";
const DIM: &str = "2";
const BOLD: &str = "1";

/// One task's line in the report.
#[derive(Clone, Debug, Serialize)]
pub struct TaskRecord {
    /// Task name.
    pub name: String,
    /// `ran`, `cached`, `failed`, `skipped`, `not_run`.
    pub status: &'static str,
    /// Time spent on it in this run (command, hashing, upload or restore).
    pub duration_ms: u64,
    /// For a cache hit, how long the command took when it ran.
    pub saved_ms: u64,
    /// Command attempts made.
    pub attempts: u32,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The whole run, as `--metrics FILE` writes it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    /// Tasks selected.
    pub total: usize,
    /// Commands run.
    pub ran: usize,
    /// Restored from the cache.
    pub cached: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped because a dependency failed.
    pub skipped: usize,
    /// Not started because the run stopped.
    pub not_run: usize,
    /// Wall time of the run.
    pub wall_ms: u64,
    /// Sum of the recorded durations of the cache hits.
    pub saved_ms: u64,
    /// Per task, in manifest order.
    pub tasks: Vec<TaskRecord>,
}

/// Prints a run's progress.
pub struct Reporter {
    style: Style,
    bar: Option<ProgressBar>,
    /// Status lines not written yet, when stdout is not a terminal: one `write` per task would be
    /// most of the system time of a run where every task is up to date. The runner flushes
    /// whenever it waits (for a command, the store); warnings, errors and the summary flush too.
    pending: Option<Mutex<String>>,
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.flush();
    }
}

fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// `1.2s`, `350ms`, `2m03s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

impl Style {
    /// Whether colour should be used, given the flag, `NO_COLOR` and the terminal.
    pub fn detect_color(no_color_flag: bool) -> bool {
        !no_color_flag && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
    }
}

impl Reporter {
    /// A reporter for a run of `total` tasks.
    pub fn new(style: Style, total: u64) -> Self {
        let bar = (style.progress && !style.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = "Building [{wide_bar}] {percent:>3}% ({pos}/{len}) {per_sec:.dim} ETA: {eta} {msg}";
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("█░ "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let pending = (bar.is_none() && !std::io::stdout().is_terminal()).then(Mutex::default);
        Self { style, bar, pending }
    }

    /// A reporter that prints plain lines only (cache commands, dry runs).
    pub fn plain(style: Style) -> Self {
        Self {
            style: Style {
                progress: false,
                ..style
            },
            bar: None,
            pending: None,
        }
    }

    fn out(&self, line: String) {
        match (&self.bar, &self.pending) {
            (Some(bar), _) => bar.println(line),
            (None, Some(pending)) => {
                let mut p = pending.lock().expect("pending lines");
                p.push_str(&line);
                p.push('\n');
                if p.len() >= 64 << 10 {
                    write_stdout(&std::mem::take(&mut *p));
                }
            }
            (None, None) => println!("{line}"),
        }
    }

    /// Writes the buffered status lines.
    pub fn flush(&self) {
        if let Some(pending) = &self.pending {
            let mut p = pending.lock().expect("pending lines");
            if !p.is_empty() {
                write_stdout(&std::mem::take(&mut *p));
            }
        }
    }

    fn err(&self, line: String) {
        self.flush();
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn tick(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// A line shown unless `-q`.
    pub fn info(&self, text: &str) {
        if !self.style.quiet {
            self.out(text.to_string());
        }
    }

    /// A line shown only with `-V`.
    pub fn verbose(&self, text: &str) {
        if self.style.verbose && !self.style.quiet {
            self.out(paint(self.style.color, DIM, text));
        }
    }

    /// A warning on stderr (shown even with `-q`).
    pub fn warn(&self, text: &str) {
        self.err(format!("{} {text}", paint(self.style.color, YELLOW, "warning:")));
    }

    /// A task starts (only shown with `-V`).
    pub fn started(&self, name: &str, cmd: &str) {
        self.verbose(&format!("[>] {name}: {cmd}"));
        if let Some(bar) = &self.bar {
            bar.set_message(name.to_string());
        }
    }

    /// A cache hit.
    pub fn cached(&self, name: &str, restored: usize, saved: Duration) {
        self.tick();
        if !self.style.quiet {
            let what = match restored {
                0 => "cached".to_string(),
                n => format!("cached, restored {n} file{}", if n == 1 { "" } else { "s" }),
            };
            self.out(format!(
                "{} {name} ({what}; saves {})",
                paint(self.style.color, CYAN, "[*]"),
                human(saved)
            ));
        }
    }

    /// A command ran and succeeded.
    pub fn ran(&self, name: &str, took: Duration, attempts: u32, output: &[u8]) {
        self.tick();
        if self.style.quiet {
            return;
        }
        let retry = if attempts > 1 {
            format!(", attempt {attempts}")
        } else {
            String::new()
        };
        self.out(format!(
            "{} {name} ({}{retry})",
            paint(self.style.color, GREEN, "[+]"),
            human(took)
        ));
        if self.style.verbose && !output.is_empty() {
            self.out(indent(output));
        }
    }

    /// A failed attempt that will be retried.
    pub fn retrying(&self, name: &str, attempt: u32, of: u32, why: &str) {
        if !self.style.quiet {
            self.err(format!(
                "{} {name}: {why}; retrying ({attempt}/{of})",
                paint(self.style.color, YELLOW, "[~]")
            ));
        }
    }

    /// A task failed for good.
    pub fn failed(&self, name: &str, why: &str, output: &[u8]) {
        self.tick();
        self.err(format!("{} {name}: {why}", paint(self.style.color, RED, "[!]")));
        if !output.is_empty() {
            self.err(indent(output));
        }
    }

    /// A task not run because of a failure elsewhere.
    pub fn skipped(&self, name: &str, why: &str) {
        self.tick();
        if !self.style.quiet {
            self.out(format!("{} {name} ({why})", paint(self.style.color, YELLOW, "[-]")));
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The closing summary, and the `--stats` table when asked.
    pub fn summary(&self, r: &RunReport, stats: bool) {
        self.finish();
        if stats {
            self.out(paint(self.style.color, BOLD, "Task statistics:"));
            let width = r.tasks.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
            self.out(format!(
                "  {:width$}  {:8}  {:>10}  {:>10}  attempts",
                "task", "status", "time", "saved"
            ));
            for t in &r.tasks {
                self.out(format!(
                    "  {:width$}  {:8}  {:>10}  {:>10}  {}",
                    t.name,
                    t.status,
                    human(Duration::from_millis(t.duration_ms)),
                    human(Duration::from_millis(t.saved_ms)),
                    t.attempts
                ));
            }
        }
        let line = format!(
            "Summary: {} ran, {} cached, {} failed{}{} of {} in {} (time saved: {})",
            r.ran,
            r.cached,
            r.failed,
            if r.skipped > 0 {
                format!(", {} skipped", r.skipped)
            } else {
                String::new()
            },
            if r.not_run > 0 {
                format!(", {} not run", r.not_run)
            } else {
                String::new()
            },
            r.total,
            human(Duration::from_millis(r.wall_ms)),
            human(Duration::from_millis(r.saved_ms)),
        );
        let code = if r.failed > 0 { RED } else { GREEN };
        if r.failed > 0 {
            self.err(paint(self.style.color, code, &line));
        } else if !self.style.quiet {
            self.out(paint(self.style.color, code, &line));
        }
        self.flush();
    }
}

/// Writes to stdout; a closed pipe (`reprovm … | head`) is not an error worth a panic.
fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Task output indented under its status line, trailing newline removed.
fn indent(output: &[u8]) -> String {
    String::from_utf8_lossy(output)
        .trim_end()
        .lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level error line of the binary: `reprovm: error: …` (stderr).
pub fn error(color: bool, text: &str) {
    eprintln!("reprovm: {} {text}", paint(color, RED, "error:"));
}

/// Printed on the first SIGINT/SIGTERM (stderr): what happens now and how to hurry it.
pub fn stopping(sig: crate::shutdown::StopSignal) {
    eprintln!(
        "reprovm: {}: stopping; running commands get the signal and {} s to exit (again to kill them now)",
        sig.name(),
        crate::shutdown::GRACE.as_secs()
    );
}
