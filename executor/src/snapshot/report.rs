//! Output of the snapshot commands: a byte-counting progress line with the rate (on a terminal,
//! without `--no-progress` or `-q`), and byte sizes for humans.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::messages::Style;

/// A progress line counting bytes, or nothing when output is not a terminal. Cleared when
/// dropped; [`Counter`]s count into it from other threads.
pub struct Progress(Counter);

/// Counts bytes into a [`Progress`] line from any thread (and never clears it).
#[derive(Clone)]
pub struct Counter(Option<ProgressBar>);

impl Counter {
    /// Counts `n` more bytes.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.0 {
            b.inc(n);
        }
    }
}

impl Progress {
    /// A progress line starting with `verb` ("Snapshotting", "Restoring"...).
    pub fn bytes(style: Style, verb: &str) -> Self {
        let on = style.progress && !style.quiet && std::io::stderr().is_terminal();
        Self(Counter(on.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            let template =
                format!("{{spinner}} {verb} {{bytes}} at {{binary_bytes_per_sec}}, {{elapsed}} {{wide_msg}}");
            bar.set_style(ProgressStyle::with_template(&template).expect("valid template"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        })))
    }

    /// Counts `n` more bytes.
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// Shows what is being worked on.
    pub fn message(&self, text: &str) {
        if let Some(b) = &self.0 .0 {
            b.set_message(text.to_string());
        }
    }

    /// A handle that counts into this line from another thread.
    pub fn counter(&self) -> Counter {
        self.0.clone()
    }

    /// Removes the line.
    pub fn finish(&self) {
        if let Some(b) = &self.0 .0 {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `512 B`, `1.5 KiB`, `300.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Bytes per second over `d`, for summaries.
pub fn rate(n: u64, d: Duration) -> String {
    let secs = d.as_secs_f64().max(1e-3);
    format!("{}/s", bytes((n as f64 / secs) as u64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_bytes() {
        assert_eq!(super::bytes(5), "5 B");
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::bytes(300 << 20), "300.0 MiB");
    }
}
