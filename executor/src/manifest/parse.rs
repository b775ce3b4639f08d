//! Builds a [`Manifest`] from tokens. Every error names the file, line and column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lex::{is_task_name, quote, tokens, Spanned, Token};
use super::model::{Manifest, Task};

/// Fields a task may have.
const FIELDS: [&str; 7] = ["cmd", "inputs", "outputs", "deps", "env", "timeout", "retries"];

/// A manifest that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {}: {source}", path.display())]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A syntax or field error at a position.
    #[error("{}:{line}:{col}: {message}", path.display())]
    Syntax {
        /// The manifest path.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong and what to do.
        message: String,
    },
}

/// Reads and parses a manifest file.
pub fn parse_file(path: &Path) -> Result<Manifest, ManifestError> {
    let src = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(path, &src)
}

/// Parses manifest text; `path` is used in messages.
pub fn parse_str(path: &Path, src: &str) -> Result<Manifest, ManifestError> {
    let err = |line: usize, col: usize, message: String| ManifestError::Syntax {
        path: path.to_path_buf(),
        line,
        col,
        message,
    };
    let mut lexed = tokens(src);
    let mut next = || lexed.next().transpose().map_err(|e| err(e.line, e.col, e.message));
    let mut tasks: Vec<Task> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    while let Some(Spanned { token, line, col }) = next()? {
        let (name, brace) = match token {
            Token::Task { name, brace } => (name, brace),
            Token::Field { key, .. } => {
                return Err(err(line, col, format!("field `{key}` outside a task block")));
            }
            Token::Open | Token::Close => return Err(err(line, col, "expected `task NAME {`".into())),
        };
        if !brace {
            match next()? {
                Some(Spanned { token: Token::Open, .. }) => {}
                Some(s) => return Err(err(s.line, s.col, format!("expected `{{` after `task {name}`"))),
                None => return Err(err(line, col, format!("expected `{{` after `task {name}`"))),
            }
        }
        if let Some(first) = seen.get(name) {
            return Err(err(
                line,
                col,
                format!("duplicate task name `{name}` (first defined on line {first})"),
            ));
        }
        seen.insert(name, line);
        let mut task = Task {
            name: name.to_string(),
            line,
            ..Task::default()
        };
        // Line of each field of FIELDS seen so far in this task.
        let mut fields_seen: [Option<usize>; FIELDS.len()] = [None; FIELDS.len()];
        let mut has_cmd = false;
        loop {
            let Some(Spanned {
                token,
                line: fl,
                col: fc,
            }) = next()?
            else {
                return Err(err(line, col, format!("task `{name}` is not closed: missing `}}`")));
            };
            match token {
                Token::Close => break,
                Token::Open => return Err(err(fl, fc, "unexpected `{`".into())),
                Token::Task { .. } => {
                    return Err(err(
                        fl,
                        fc,
                        format!("`task` inside task `{name}`: missing `}}` before it"),
                    ))
                }
                Token::Field { key, value, value_col } => {
                    let Some(field) = FIELDS.iter().position(|f| *f == key) else {
                        return Err(err(
                            fl,
                            fc,
                            format!(
                                "unknown field `{key}` in task `{name}`; known fields: {}",
                                FIELDS.join(", ")
                            ),
                        ));
                    };
                    if let Some(prev) = fields_seen[field].replace(fl) {
                        return Err(err(fl, fc, format!("field `{key}` given twice (first on line {prev})")));
                    }
                    let verr = |m: String| err(fl, value_col, m);
                    match key {
                        "cmd" => {
                            if value.is_empty() {
                                return Err(verr(format!("task `{name}` has an empty `cmd`")));
                            }
                            task.cmd = value.to_string();
                            has_cmd = true;
                        }
                        "inputs" => task.inputs = list(value),
                        "outputs" => task.outputs = list(value),
                        "deps" => {
                            task.deps = list(value);
                            if let Some(bad) = task.deps.iter().find(|d| !is_task_name(d)) {
                                return Err(verr(format!("invalid dependency name {}", quote(bad))));
                            }
                        }
                        "env" => task.env = env_list(value).map_err(verr)?,
                        "timeout" => {
                            let secs = parse_secs(value).map_err(verr)?;
                            task.timeout = Some(Duration::from_secs_f64(secs));
                        }
                        "retries" => {
                            task.retries = Some(value.parse().map_err(|_| {
                                verr(format!("`retries` must be a whole number, found {}", quote(value)))
                            })?)
                        }
                        _ => unreachable!("checked against FIELDS"),
                    }
                }
            }
        }
        if !has_cmd {
            return Err(err(line, col, format!("task `{name}` has no `cmd`")));
        }
        tasks.push(task);
    }
    Ok(Manifest {
        path: path.to_path_buf(),
        tasks,
    })
}

/// A comma-separated list; blanks around items and empty items are dropped.
fn list(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !out.iter().any(|x| x == item) {
            out.push(item.to_string());
        }
    }
    out
}

/// `KEY=VALUE, KEY2=VALUE2`.
fn env_list(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("`env` entries are KEY=VALUE, found {}", quote(item)))?;
        let k = k.trim();
        let valid = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("invalid environment variable name {}", quote(k)));
        }
        if out.iter().any(|(x, _)| x == k) {
            return Err(format!("environment variable {} given twice", quote(k)));
        }
        out.push((k.to_string(), v.trim().to_string()));
    }
    Ok(out)
}

/// Longest duration [`parse_secs`] accepts (about 31 years): every value converts to a
/// `Duration` and can be added to an `Instant` (found by fuzz/manifest_parse).
pub const MAX_SECS: f64 = 1e9;

/// Seconds: `30`, `1.5`, `30s`, `2m`, `1h`, at most [`MAX_SECS`].
pub fn parse_secs(value: &str) -> Result<f64, String> {
    let v = value.trim();
    let (num, mult) = match v.chars().last() {
        Some('s') => (&v[..v.len() - 1], 1.0),
        Some('m') => (&v[..v.len() - 1], 60.0),
        Some('h') => (&v[..v.len() - 1], 3600.0),
        _ => (v, 1.0),
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n * mult <= MAX_SECS => Ok(n * mult),
        Ok(n) if n > 0.0 => Err(format!("{} is more than {MAX_SECS} seconds", quote(value))),
        _ => Err(format!(
            "expected a positive number of seconds (e.g. 30, 1.5, 2m), found {}",
            quote(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Manifest, ManifestError> {
        parse_str(Path::new("m.rvm"), src)
    }

    fn error_at(src: &str) -> (usize, usize, String) {
        match parse(src).unwrap_err() {
            ManifestError::Syntax { line, col, message, .. } => (line, col, message),
            e => panic!("{e}"),
        }
    }

    #[test]
    fn parses_the_classic_example() {
        let m = parse(
            "# build hello\ntask build {\n  cmd = gcc -o hello hello.c\n  inputs = hello.c\n  outputs = hello\n  deps =\n}\n\ntask run\n{\n cmd = ./hello > out.txt\n inputs = hello\n outputs = out.txt\n deps = build\n env = A=1, B = two\n timeout = 2m\n retries = 3\n}\n",
        )
        .unwrap();
        assert_eq!(m.tasks.len(), 2);
        let b = &m.tasks[0];
        assert_eq!(
            (b.name.as_str(), b.cmd.as_str(), b.line),
            ("build", "gcc -o hello hello.c", 2)
        );
        assert_eq!(b.inputs, ["hello.c"]);
        assert!(b.deps.is_empty());
        let r = &m.tasks[1];
        assert_eq!(r.deps, ["build"]);
        assert_eq!(
            r.env,
            [("A".to_string(), "1".to_string()), ("B".to_string(), "two".to_string())]
        );
        assert_eq!(r.timeout, Some(Duration::from_secs(120)));
        assert_eq!(r.retries, Some(3));
    }

    #[test]
    fn errors_name_line_and_column() {
        let (l, c, m) = error_at("task a {\n  cmd = x\n  colour = red\n}\n");
        assert_eq!((l, c), (3, 3));
        assert!(m.contains("unknown field `colour`"), "{m}");
        let (l, c, m) = error_at("task a {\n  cmd = x\n}\ntask a {\n cmd = y\n}\n");
        assert_eq!((l, c), (4, 1));
        assert!(m.contains("duplicate task name `a`") && m.contains("line 1"), "{m}");
        let (l, _, m) = error_at("task a {\n  cmd = x\n");
        assert_eq!(l, 1);
        assert!(m.contains("missing `}`"), "{m}");
        let (l, c, m) = error_at("task a {\n  cmd = x\n  timeout = soon\n}\n");
        assert_eq!((l, c), (3, 13));
        assert!(m.contains("seconds"), "{m}");
        let (_, _, m) = error_at("task a {\n  inputs = x\n}\n");
        assert!(m.contains("no `cmd`"), "{m}");
        let e = parse("task a {\n  cmd = x\n  cmd = y\n}\n").unwrap_err().to_string();
        assert!(e.starts_with("m.rvm:3:3: field `cmd` given twice"), "{e}");
    }

    #[test]
    fn lists_drop_blanks_and_duplicates() {
        assert_eq!(list(" a, b ,,a , "), ["a", "b"]);
        assert!(list("").is_empty());
        assert!(env_list("1X=2").is_err());
        assert!(env_list("NOEQ").is_err());
    }
}
