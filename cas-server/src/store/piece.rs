//! Encoding of stored pieces: one tag byte, then the payload.
//!
//! Each piece of a blob is compressed on its own so that a range read only
//! decodes the pieces it touches. A piece that does not shrink is stored raw.

use crate::config::Compression;

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const LZ4: u8 = 2;

/// Encodes one piece of raw bytes for storage.
pub fn encode(raw: &[u8], compression: Compression, level: i32) -> Vec<u8> {
    let compressed = match compression {
        Compression::None => None,
        Compression::Zstd => zstd::bulk::compress(raw, level).ok().map(|c| (ZSTD, c)),
        Compression::Lz4 => Some((LZ4, lz4_flex::block::compress(raw))),
    };
    match compressed {
        // Keep compression only when it saves at least 1/32 of the piece.
        Some((tag, c)) if c.len() + raw.len() / 32 < raw.len() => {
            let mut out = Vec::with_capacity(c.len() + 1);
            out.push(tag);
            out.extend_from_slice(&c);
            out
        }
        _ => {
            let mut out = Vec::with_capacity(raw.len() + 1);
            out.push(RAW);
            out.extend_from_slice(raw);
            out
        }
    }
}

/// Decodes a stored piece whose raw length is `raw_len`.
pub fn decode(stored: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let (tag, body) = stored.split_first().ok_or("empty piece")?;
    let out = match *tag {
        RAW => body.to_vec(),
        ZSTD => zstd::bulk::decompress(body, raw_len).map_err(|e| format!("zstd: {e}"))?,
        LZ4 => lz4_flex::block::decompress(body, raw_len).map_err(|e| format!("lz4: {e}"))?,
        t => return Err(format!("unknown piece tag {t}")),
    };
    if out.len() != raw_len {
        return Err(format!("piece decodes to {} bytes, expected {raw_len}", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_each_codec() {
        let text = b"hello hello hello hello hello hello hello hello".repeat(100);
        let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        for c in [Compression::Zstd, Compression::Lz4, Compression::None] {
            for data in [&text[..], &noise[..], &[][..]] {
                let enc = encode(data, c, 3);
                assert_eq!(decode(&enc, data.len()).unwrap(), data);
            }
        }
        assert!(encode(&text, Compression::Zstd, 3).len() < text.len() / 4);
        assert_eq!(encode(&noise, Compression::Zstd, 3)[0], RAW);
        assert!(decode(&[ZSTD, 1, 2, 3], 10).is_err());
    }
}
