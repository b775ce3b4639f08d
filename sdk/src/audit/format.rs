//! The text of an audit line: UTC time stamps, field escaping, and parsing a line back.
//!
//! `user`, `resource` and `action` are single words: space, `=`, `%` and control characters are
//! percent-encoded. `details` runs to the final ` chain=`; backslash, CR and LF are escaped as
//! `\\`, `\r`, `\n`, so a line is always one line. Time stamps sort as text, which is what the
//! `--from`/`--to` filters of a report use.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Event, EventKind};

/// `YYYY-MM-DD HH:MM:SS` in UTC.
pub fn timestamp(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Percent-encodes what would break a one-word field.
pub fn word(s: &str) -> String {
    if s.is_empty() {
        return "-".into();
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ' ' || c == '=' || c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverses [`word`].
pub fn unword(s: &str) -> String {
    if s == "-" {
        return String::new();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_pair = bytes.get(i + 1..i + 3).filter(|p| p.iter().all(u8::is_ascii_hexdigit));
        if let (b'%', Some(pair)) = (bytes[i], hex_pair) {
            let pair = std::str::from_utf8(pair).expect("ascii");
            out.push(u8::from_str_radix(pair, 16).expect("hex"));
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes free text onto one line.
pub fn text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r")
}

/// The hashed part of a line: everything before ` chain=`.
pub fn body(at: SystemTime, seq: u64, ev: &Event) -> String {
    format!(
        "[{}] seq={seq} type={} user={} resource={} action={} success={} details={}",
        timestamp(at),
        ev.kind.as_str(),
        word(&ev.user),
        word(&ev.resource),
        word(&ev.action),
        u8::from(ev.success),
        text(&ev.details)
    )
}

/// A line read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedLine {
    /// `YYYY-MM-DD HH:MM:SS`.
    pub time: String,
    /// Sequence number.
    pub seq: u64,
    /// The `type=` value as written (a known [`EventKind`] or not).
    pub kind: String,
    /// Who.
    pub user: String,
    /// On what.
    pub resource: String,
    /// Verb.
    pub action: String,
    /// `success=1`.
    pub success: bool,
    /// Free text (escapes kept).
    pub details: String,
    /// The hashed part of the line.
    pub body: String,
    /// The chain value written on the line.
    pub chain: [u8; 32],
}

impl ParsedLine {
    /// The event kind, when it is one this version knows.
    pub fn event_kind(&self) -> Option<EventKind> {
        EventKind::parse(&self.kind)
    }
}

/// Parses one line; `None` when it is not in the audit layout.
pub fn parse_line(line: &str) -> Option<ParsedLine> {
    let (body, chain_hex) = line.trim_end_matches(['\n', '\r']).rsplit_once(" chain=")?;
    let mut chain = [0u8; 32];
    hex::decode_to_slice(chain_hex, &mut chain).ok()?;
    let rest = body.strip_prefix('[')?;
    let (time, rest) = rest.split_once("] ")?;
    let (fields, details) = rest.split_once(" details=")?;
    let mut it = fields.split(' ');
    let mut field = |name: &str| -> Option<String> {
        let (k, v) = it.next()?.split_once('=')?;
        (k == name).then(|| v.to_string())
    };
    let seq = field("seq")?.parse().ok()?;
    let kind = field("type")?;
    let user = unword(&field("user")?);
    let resource = unword(&field("resource")?);
    let action = unword(&field("action")?);
    let success = field("success")? == "1";
    Some(ParsedLine {
        time: time.to_string(),
        seq,
        kind,
        user,
        resource,
        action,
        success,
        details: details.to_string(),
        body: body.to_string(),
        chain,
    })
}
