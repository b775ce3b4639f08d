//! `Range: bytes=…` parsing and resolution against a blob size.

use std::ops::Range;

/// One byte range as a client asked for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b`, both inclusive.
    FromTo(u64, u64),
    /// `bytes=a-`.
    From(u64),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// Why a `Range` header was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid Range header {header:?}: {reason}")]
pub struct RangeParseError {
    /// The header as received (truncated).
    pub header: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl ByteRange {
    /// Parses a `Range` header value. Only one range is supported.
    pub fn parse(header: &str) -> Result<Self, RangeParseError> {
        let err = |reason| RangeParseError {
            header: header.chars().take(100).collect(),
            reason,
        };
        let spec = header
            .trim()
            .strip_prefix("bytes=")
            .ok_or_else(|| err("expected the unit \"bytes=\""))?;
        if spec.contains(',') {
            return Err(err("only a single range is supported"));
        }
        let (a, b) = spec
            .split_once('-')
            .ok_or_else(|| err("expected \"a-b\", \"a-\" or \"-n\""))?;
        let num = |s: &str| -> Result<u64, RangeParseError> {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(err("positions must be decimal numbers"));
            }
            s.parse().map_err(|_| err("position out of range"))
        };
        let (a, b) = (a.trim(), b.trim());
        match (a.is_empty(), b.is_empty()) {
            (true, true) => Err(err("empty range")),
            (true, false) => Ok(Self::Suffix(num(b)?)),
            (false, true) => Ok(Self::From(num(a)?)),
            (false, false) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a {
                    return Err(err("last position before first"));
                }
                Ok(Self::FromTo(a, b))
            }
        }
    }

    /// The half-open byte range this selects in a blob of `size` bytes, or
    /// `None` when it selects nothing (answered with 416).
    pub fn resolve(self, size: u64) -> Option<Range<u64>> {
        match self {
            Self::FromTo(a, b) if a < size => Some(a..b.saturating_add(1).min(size)),
            Self::From(a) if a < size => Some(a..size),
            Self::Suffix(n) if n > 0 && size > 0 => Some(size.saturating_sub(n)..size),
            _ => None,
        }
    }

    /// The header value for this range.
    pub fn to_header(self) -> String {
        match self {
            Self::FromTo(a, b) => format!("bytes={a}-{b}"),
            Self::From(a) => format!("bytes={a}-"),
            Self::Suffix(n) => format!("bytes=-{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_resolve() {
        assert_eq!(ByteRange::parse("bytes=0-0").unwrap().resolve(10), Some(0..1));
        assert_eq!(ByteRange::parse("bytes=5-").unwrap().resolve(10), Some(5..10));
        assert_eq!(ByteRange::parse("bytes=-3").unwrap().resolve(10), Some(7..10));
        assert_eq!(ByteRange::parse("bytes=-30").unwrap().resolve(10), Some(0..10));
        assert_eq!(ByteRange::parse("bytes=8-100").unwrap().resolve(10), Some(8..10));
        assert_eq!(ByteRange::parse("bytes=10-").unwrap().resolve(10), None);
        assert_eq!(ByteRange::parse("bytes=-0").unwrap().resolve(10), None);
        assert_eq!(ByteRange::parse("bytes=0-").unwrap().resolve(0), None);
        assert_eq!(
            ByteRange::parse("bytes=0-18446744073709551615").unwrap().resolve(4),
            Some(0..4)
        );
    }

    #[test]
    fn parse_rejects() {
        for bad in [
            "",
            "bytes=",
            "bytes=-",
            "bytes=5-2",
            "items=0-1",
            "bytes=a-b",
            "bytes=0-1,3-4",
            "bytes=+1-2",
            "bytes=99999999999999999999-",
        ] {
            assert!(ByteRange::parse(bad).is_err(), "{bad:?}");
        }
    }
}
