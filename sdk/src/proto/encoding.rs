//! Content encodings of the wire protocol (`Content-Encoding`, `Accept-Encoding`).

/// A body encoding. The digest is always of the decoded bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// No encoding.
    Identity,
    /// Zstandard (RFC 8878); a body may hold several frames.
    Zstd,
    /// LZ4 frame format.
    Lz4,
}

impl Encoding {
    /// Parses a `Content-Encoding` value; `None` for unsupported encodings.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Self::Identity),
            "zstd" => Some(Self::Zstd),
            "lz4" => Some(Self::Lz4),
            _ => None,
        }
    }

    /// Picks the encoding for a response from an `Accept-Encoding` value:
    /// the supported compressed encoding with the highest q-value, else identity.
    pub fn negotiate(accept: &str) -> Self {
        let mut best = (0.0f32, Self::Identity);
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()))
                .unwrap_or(1.0);
            let enc = match Self::parse(name) {
                Some(e @ (Self::Zstd | Self::Lz4)) => e,
                _ => continue,
            };
            if q > best.0 {
                best = (q, enc);
            }
        }
        best.1
    }

    /// The header token.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Zstd => "zstd",
            Self::Lz4 => "lz4",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(Encoding::negotiate("gzip, zstd"), Encoding::Zstd);
        assert_eq!(Encoding::negotiate("lz4;q=0.9, zstd;q=0.5"), Encoding::Lz4);
        assert_eq!(Encoding::negotiate("gzip"), Encoding::Identity);
        assert_eq!(Encoding::negotiate("zstd;q=0"), Encoding::Identity);
        assert_eq!(Encoding::parse("br"), None);
    }
}
