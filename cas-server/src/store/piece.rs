//! Encoding of stored pieces: one tag byte, then the payload.
//!
//! Each piece of a blob is compressed on its own so that a range read only
//! decodes the pieces it touches. A piece that does not shrink is stored raw.

use std::cell::RefCell;

use crate::config::Compression;

thread_local! {
    // zstd contexts are costly to create (hundreds of KiB); keep one per thread.
    static ZSTD_C: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static ZSTD_D: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn zstd_compress(raw: &[u8], level: i32) -> Option<Vec<u8>> {
    ZSTD_C.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        slot.as_mut()?.1.compress(raw).ok()
    })
}

fn zstd_decompress(data: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    ZSTD_D.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        slot.as_mut()
            .expect("set above")
            .decompress(data, raw_len)
            .map_err(|e| format!("zstd: {e}"))
    })
}

/// Pieces smaller than this are stored raw: compressing them saves little and costs a context setup.
const MIN_COMPRESS: usize = 512;

const RAW: u8 = 0;
const ZSTD: u8 = 1;
const LZ4: u8 = 2;

/// Pieces at least this large are sampled before they are compressed.
const SAMPLE_FROM: usize = 64 << 10;
/// Bytes per sample, and samples per piece.
const SAMPLE_LEN: usize = 4 << 10;
const SAMPLES: usize = 4;

/// Whether a large piece is worth compressing: a few samples spread over it are compressed with
/// lz4 (a fraction of the cost of compressing the piece with zstd), and the piece is compressed
/// only if they shrink by the same 1/32 that the piece must save. Already-compressed or random
/// data (artifacts, media) is then stored raw without a full compression attempt.
fn looks_compressible(raw: &[u8]) -> bool {
    if raw.len() < SAMPLE_FROM {
        return true;
    }
    let step = (raw.len() - SAMPLE_LEN) / (SAMPLES - 1);
    let (mut total, mut packed) = (0, 0);
    for i in 0..SAMPLES {
        let sample = &raw[i * step..i * step + SAMPLE_LEN];
        total += sample.len();
        packed += lz4_flex::block::compress(sample).len();
    }
    packed + total / 32 < total
}

/// Encodes one piece of raw bytes for storage.
pub fn encode(raw: &[u8], compression: Compression, level: i32) -> Vec<u8> {
    let compressed = match compression {
        _ if raw.len() < MIN_COMPRESS => None,
        Compression::None => None,
        _ if !looks_compressible(raw) => None,
        Compression::Zstd => zstd_compress(raw, level).map(|c| (ZSTD, c)),
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

/// Whether an encoded piece was stored raw (compression did not pay).
pub fn is_raw(encoded: &[u8]) -> bool {
    encoded.first() == Some(&RAW)
}

/// Decodes a stored piece whose raw length is `raw_len`.
pub fn decode(stored: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
    let (tag, body) = stored.split_first().ok_or("empty piece")?;
    let out = match *tag {
        RAW => body.to_vec(),
        ZSTD => zstd_decompress(body, raw_len)?,
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

    /// Incompressible bytes (xorshift).
    fn noise(len: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn sampling_skips_random_pieces_and_keeps_compressible_ones() {
        let random = noise(1 << 20);
        assert!(!looks_compressible(&random));
        assert!(is_raw(&encode(&random, Compression::Zstd, 1)));
        let text: Vec<u8> = b"fn main() { println!(\"hello\"); }\n"
            .iter()
            .cycle()
            .take(1 << 20)
            .copied()
            .collect();
        assert!(looks_compressible(&text));
        assert!(!is_raw(&encode(&text, Compression::Zstd, 1)));
        // Random with compressible stretches the samples land on still compresses.
        let mut mixed = random.clone();
        mixed[..600 << 10].fill(0);
        assert!(!is_raw(&encode(&mixed, Compression::Zstd, 1)));
        assert_eq!(
            decode(&encode(&mixed, Compression::Zstd, 1), mixed.len()).unwrap(),
            mixed
        );
    }

    #[test]
    fn round_trip_each_codec() {
        let text = b"hello hello hello hello hello hello hello hello".repeat(100);
        let noise = noise(5000);
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
