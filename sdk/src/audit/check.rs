//! Reading a written audit log back: [`verify`] walks the chain and names each edited, removed or
//! reordered line; [`report`] counts events by type in a time window and lists the security
//! events; [`run_cli`] is the `audit verify|report` subcommand of both binaries.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::format::{parse_line, ParsedLine};
use super::{chain_hash, default_key_file, io_err, key_from_file, key_from_text, AuditError};

/// What is wrong with a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not an audit line at all.
    Malformed,
    /// Its content does not match its hash.
    Edited,
    /// Lines with these sequence numbers (inclusive) are gone before this line.
    Removed {
        /// First missing.
        from: u64,
        /// Last missing.
        to: u64,
    },
    /// The line is not where its sequence number says it belongs.
    Reordered {
        /// The sequence number the position called for.
        expected: u64,
    },
}

/// A problem found by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line's sequence number, when it has one.
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}", self.line)?;
        if let Some(s) = self.seq {
            write!(f, " (seq {s})")?;
        }
        match &self.kind {
            ProblemKind::Malformed => write!(f, ": not an audit line"),
            ProblemKind::Edited => write!(f, ": edited (its hash does not match its content)"),
            ProblemKind::Removed { from, to } if from == to => {
                write!(f, ": the line with seq {from} before it was removed")
            }
            ProblemKind::Removed { from, to } => write!(f, ": the lines with seq {from}..{to} before it were removed"),
            ProblemKind::Reordered { expected } => write!(f, ": out of order (seq {expected} belongs here)"),
        }
    }
}

/// The outcome of [`verify`].
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// Lines read.
    pub lines: usize,
    /// Sequence number of the last line.
    pub last_seq: u64,
    /// Chain value of the last line: keep it elsewhere to detect a truncated tail later.
    pub head: [u8; 32],
    /// Everything found; empty when the log is intact.
    pub problems: Vec<Problem>,
}

fn read_lines(path: &Path) -> Result<Vec<Option<ParsedLine>>, AuditError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line.map_err(io_err(path))?;
        out.push(parse_line(&line));
    }
    Ok(out)
}

/// Checks every line's hash and sequence number.
///
/// A line with seq `s` must hash from the chain of the line with seq `s - 1` (wherever that line
/// is), so a moved line is reported once, as moved, and an edit is pinned to the edited line.
pub fn verify(path: &Path, key: &[u8; 32]) -> Result<Verified, AuditError> {
    let lines = read_lines(path)?;
    let mut by_seq: HashMap<u64, &ParsedLine> = HashMap::new();
    for p in lines.iter().flatten() {
        by_seq.entry(p.seq).or_insert(p);
    }
    // The chain values a line with seq `s` may have been computed from: the one written on the
    // line with seq `s - 1`, and the one that line's content gives (they differ when it was edited).
    let prevs = |s: u64| -> Vec<[u8; 32]> {
        if s == 1 {
            return vec![[0; 32]];
        }
        let Some(prev) = by_seq.get(&(s - 1)) else {
            return Vec::new();
        };
        let mut out = vec![prev.chain];
        let before = if s == 2 {
            Some([0; 32])
        } else {
            by_seq.get(&(s - 2)).map(|p| p.chain)
        };
        out.extend(before.map(|b| chain_hash(key, &b, &prev.body)));
        out
    };
    let mut v = Verified {
        lines: lines.len(),
        ..Verified::default()
    };
    let mut expected = 1u64;
    for (i, parsed) in lines.iter().enumerate() {
        let line = i + 1;
        let Some(p) = parsed else {
            v.problems.push(Problem {
                line,
                seq: None,
                kind: ProblemKind::Malformed,
            });
            continue;
        };
        let verifies = |seq: u64, body: &str| -> Option<bool> {
            let c = prevs(seq);
            (!c.is_empty()).then(|| c.iter().any(|prev| chain_hash(key, prev, body) == p.chain))
        };
        let mut kinds = Vec::new();
        if p.seq != expected {
            // A changed seq field is an edit, not a move.
            let as_expected = p
                .body
                .replacen(&format!(" seq={} ", p.seq), &format!(" seq={expected} "), 1);
            if verifies(expected, &as_expected) == Some(true) {
                kinds.push(ProblemKind::Edited);
            } else if p.seq < expected || (expected..p.seq).all(|s| by_seq.contains_key(&s)) {
                kinds.push(ProblemKind::Reordered { expected });
            } else {
                kinds.push(ProblemKind::Removed {
                    from: expected,
                    to: p.seq - 1,
                });
            }
        }
        if kinds.is_empty() && verifies(p.seq, &p.body) == Some(false) {
            kinds.push(ProblemKind::Edited);
        }
        for kind in kinds {
            v.problems.push(Problem {
                line,
                seq: Some(p.seq),
                kind,
            });
        }
        expected = p.seq.max(expected.saturating_sub(1)) + 1;
        v.last_seq = p.seq;
        v.head = p.chain;
    }
    Ok(v)
}

/// Figures of [`report`].
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Lines in the window.
    pub events: u64,
    /// Of which with `success=0`.
    pub failures: u64,
    /// Count per `type=`.
    pub by_type: BTreeMap<String, u64>,
    /// The security events (auth failures, violations), in order.
    pub security: Vec<ParsedLine>,
    /// Lines that are not audit lines.
    pub malformed: u64,
}

/// Counts the events whose time is within `[from, to]` (either may be a prefix such as a date).
pub fn report(path: &Path, from: Option<&str>, to: Option<&str>) -> Result<Report, AuditError> {
    let mut r = Report::default();
    for parsed in read_lines(path)? {
        let Some(p) = parsed else {
            r.malformed += 1;
            continue;
        };
        let head = |bound: &str| p.time.get(..bound.len()).unwrap_or(&p.time).to_string();
        if from.is_some_and(|f| head(f).as_str() < f) || to.is_some_and(|t| head(t).as_str() > t) {
            continue;
        }
        r.events += 1;
        r.failures += u64::from(!p.success);
        *r.by_type.entry(p.kind.clone()).or_default() += 1;
        if p.event_kind().is_some_and(|k| k.is_security()) {
            r.security.push(p);
        }
    }
    Ok(r)
}

/// `audit verify|report` (shared by `reprovm` and `cas-server`).
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; name every edited, removed or reordered line (exit 1 if any).
    Verify {
        /// The audit log.
        file: PathBuf,
        /// The key file [default: FILE.key].
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// The key itself (64 hex digits or the passphrase of the config's `audit_key`).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
    },
    /// Count events by type in a time window and list the security events.
    Report {
        /// The audit log.
        file: PathBuf,
        /// From this time (UTC, `YYYY-MM-DD[ HH:MM:SS]`, inclusive).
        #[arg(long)]
        from: Option<String>,
        /// Up to this time (inclusive; a date covers the whole day).
        #[arg(long)]
        to: Option<String>,
    },
}

/// Runs an `audit` subcommand, printing to stdout; `key_env` names the variable holding the key.
/// Exit code: 0 intact, 1 problems found, 2 unreadable log or key.
pub fn run_cli(cmd: &AuditCommand, key_env: &str) -> u8 {
    match run(cmd, key_env) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("audit: {e}");
            2
        }
    }
}

fn run(cmd: &AuditCommand, key_env: &str) -> Result<u8, AuditError> {
    match cmd {
        AuditCommand::Verify { file, key_file, key } => {
            let key = match key
                .clone()
                .or_else(|| std::env::var(key_env).ok().filter(|k| !k.is_empty()))
            {
                Some(k) => key_from_text(&k),
                None => key_from_file(&key_file.clone().unwrap_or_else(|| default_key_file(file)), false)?,
            };
            let v = verify(file, &key)?;
            for p in &v.problems {
                println!("{}: {p}", file.display());
            }
            if v.problems.is_empty() {
                println!(
                    "{}: intact: {} lines, last seq {}, head {}",
                    file.display(),
                    v.lines,
                    v.last_seq,
                    hex::encode(v.head)
                );
                Ok(0)
            } else {
                println!(
                    "{}: TAMPERED: {} problem(s) in {} lines",
                    file.display(),
                    v.problems.len(),
                    v.lines
                );
                Ok(1)
            }
        }
        AuditCommand::Report { file, from, to } => {
            let r = report(file, from.as_deref(), to.as_deref())?;
            println!(
                "audit report {} from {} to {}",
                file.display(),
                from.as_deref().unwrap_or("the start"),
                to.as_deref().unwrap_or("the end")
            );
            println!(
                "events: {}  failures: {}  security: {}",
                r.events,
                r.failures,
                r.security.len()
            );
            println!("{:<20} {:>10}", "type", "count");
            for (t, n) in &r.by_type {
                println!("{t:<20} {n:>10}");
            }
            if r.malformed > 0 {
                println!("malformed lines: {}", r.malformed);
            }
            if !r.security.is_empty() {
                println!("security events:");
                for p in &r.security {
                    println!(
                        "  [{}] {} user={} resource={} action={} details={}",
                        p.time, p.kind, p.user, p.resource, p.action, p.details
                    );
                }
            }
            Ok(0)
        }
    }
}
