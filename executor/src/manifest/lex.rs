//! Line-oriented lexer of the manifest DSL. Each non-blank, non-comment line is one token: a task
//! header, a brace, or a `key = value` field. Columns are 1-based character positions.
//!
//! A `#` starts a comment only as the first non-blank character of a line: commands often contain
//! `#` (shell comments, `$#`, URLs), so a trailing `#` is part of the value.

/// What one line holds (borrowing the manifest text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// `task NAME` optionally followed by `{`.
    Task {
        /// The task name.
        name: &'a str,
        /// Whether the `{` is on the same line.
        brace: bool,
    },
    /// A lone `{`.
    Open,
    /// A lone `}`.
    Close,
    /// `key = value` (the value trimmed, possibly empty).
    Field {
        /// Field name.
        key: &'a str,
        /// Raw value text.
        value: &'a str,
        /// Column where the value starts.
        value_col: usize,
    },
}

/// A token and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned<'a> {
    /// The token.
    pub token: Token<'a>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column of its first character.
    pub col: usize,
}

/// A line the lexer cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

/// Longest manifest line accepted, in bytes. A longer command could not be started anyway
/// (Linux limits one argument of `sh -c` to 128 KiB), and error messages stay short.
pub const MAX_LINE: usize = 64 << 10;

/// Longest task or field name, so that the messages quoting one stay short.
pub const MAX_NAME: usize = 128;

/// `text` quoted for an error message, cut to 60 characters.
pub fn quote(text: &str) -> String {
    if text.chars().count() <= 60 {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(60).collect();
        format!("{head:?}… ({} bytes)", text.len())
    }
}

/// Whether `name` is a valid task name: `[A-Za-z0-9_.-]+`.
pub fn is_task_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Refuses control characters other than tab (C0, DEL, C1).
fn check_controls(text: &str, line: usize) -> Result<(), LexError> {
    match text.chars().position(|c| c.is_control() && c != '\t') {
        Some(pos) => {
            let c = text.chars().nth(pos).expect("found above");
            Err(LexError {
                line,
                col: pos + 1,
                message: format!("control character U+{:04X} is not allowed in a manifest", c as u32),
            })
        }
        None => Ok(()),
    }
}

/// Splits `src` into tokens.
pub fn lex(src: &str) -> Result<Vec<Spanned<'_>>, LexError> {
    tokens(src).collect()
}

/// The tokens of `src` one line at a time, as [`lex`] gives them, without holding them all.
pub fn tokens(src: &str) -> impl Iterator<Item = Result<Spanned<'_>, LexError>> {
    src.lines()
        .enumerate()
        .filter_map(|(i, raw)| line_token(i + 1, raw).transpose())
}

/// The token of one line (`None` for a blank or comment line).
fn line_token(line: usize, raw: &str) -> Result<Option<Spanned<'_>>, LexError> {
    {
        let text = raw.trim_end_matches('\r');
        if text.len() > MAX_LINE {
            return Err(LexError {
                line,
                col: 1,
                message: format!("line of {} bytes; the limit is {MAX_LINE}", text.len()),
            });
        }
        // Printable ASCII and tabs need no closer look.
        if !text.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
            check_controls(text, line)?;
        }
        let body = text.trim_start();
        let indent = text[..text.len() - body.len()].chars().count();
        let body = body.trim_end();
        let col = indent + 1;
        if body.is_empty() || body.starts_with('#') {
            return Ok(None);
        }
        let err = |c: usize, m: String| LexError {
            line,
            col: c,
            message: m,
        };
        let token = if body == "{" {
            Token::Open
        } else if body == "}" {
            Token::Close
        } else if let Some(rest) = body.strip_prefix("task").filter(|r| r.starts_with(char::is_whitespace)) {
            let rest_trim = rest.trim_start();
            let name_col = col + 4 + (rest.chars().count() - rest_trim.chars().count());
            let (name, brace) = match rest_trim.strip_suffix('{') {
                Some(n) => (n.trim_end(), true),
                None => (rest_trim, false),
            };
            if name.len() > MAX_NAME {
                return Err(err(
                    name_col,
                    format!("task name {} is longer than {MAX_NAME} characters", quote(name)),
                ));
            }
            if !is_task_name(name) {
                return Err(err(
                    name_col,
                    format!(
                        "invalid task name {}: use letters, digits, '_', '.' and '-'",
                        quote(name)
                    ),
                ));
            }
            Token::Task { name, brace }
        } else if let Some((key, value)) = body.split_once('=') {
            let key = key.trim_end();
            if key.is_empty() || key.len() > MAX_NAME || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(err(col, format!("invalid field name {}", quote(key))));
            }
            let after = value.chars().take_while(|c| c.is_whitespace()).count();
            let value_col = col + body.chars().take_while(|c| *c != '=').count() + 1 + after;
            Token::Field {
                key,
                value: value.trim(),
                value_col,
            }
        } else {
            return Err(err(
                col,
                format!("expected `task NAME {{`, `key = value` or `}}`, found {}", quote(body)),
            ));
        };
        Ok(Some(Spanned { token, line, col }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_columns() {
        let toks = lex("# c\ntask a {\n  cmd = echo # not a comment\n  deps =\n}\n").unwrap();
        assert_eq!(toks.len(), 4);
        assert_eq!(toks[0].token, Token::Task { name: "a", brace: true });
        assert_eq!((toks[1].line, toks[1].col), (3, 3));
        match &toks[1].token {
            Token::Field { key, value, value_col } => {
                assert_eq!((*key, *value, *value_col), ("cmd", "echo # not a comment", 9));
            }
            t => panic!("{t:?}"),
        }
        assert_eq!(
            toks[2].token,
            Token::Field {
                key: "deps",
                value: "",
                value_col: 9
            }
        );
        assert_eq!(toks[3].token, Token::Close);
    }

    #[test]
    fn errors_have_positions() {
        let e = lex("task ok {\n   what is this\n}").unwrap_err();
        assert_eq!((e.line, e.col), (2, 4));
        let e = lex("task b@d {").unwrap_err();
        assert_eq!((e.line, e.col), (1, 6));
    }
}
