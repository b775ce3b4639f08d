//! Content-defined chunking of one file for `snapshot create`, without a copy per chunk.
//!
//! The file is read in windows of up to [`WINDOW`] bytes (a small file in one read of its own
//! size); FastCDC finds the cut points in the window and each chunk is handed out as a
//! [`Bytes`] slice of it, so chunk data is written once by the read and never moved again. The
//! bytes after the last cut that can be trusted (less than [`CHUNK_MAX`] before the window's
//! end, while the file goes on) are carried into the next window.
//!
//! The cut points are those of fastcdc's `StreamCDC` with the same sizes: FastCDC looks at most
//! `CHUNK_MAX` bytes past a chunk's start, and a chunk is only cut here when that many bytes (or
//! the rest of the file) are in the window. So a file chunks the same as in earlier snapshots
//! and their chunks are reused.

use std::io::Read;

use bytes::Bytes;
use fastcdc::v2020::FastCDC;
use reprovm_sdk::snapshot::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN};

/// Bytes read at once from a large file: two largest chunks. A window lives until the last of
/// its chunks is uploaded, so it is kept small; the carried tail (less than `CHUNK_MAX`, about
/// `CHUNK_AVG` on average) is the only copy.
pub const WINDOW: usize = 8 << 20;

/// Reads `source` to its end and calls `each` with its chunks in order. `size_hint` (the
/// size `stat` gave) sizes the first read, one byte more so that a file of that size is read
/// and found ended in one buffer; the chunks follow what is read, not the hint.
pub fn chunk<R: Read>(
    mut source: R,
    size_hint: u64,
    mut each: impl FnMut(Bytes) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let max = CHUNK_MAX as usize;
    let mut tail = Bytes::new();
    let mut capacity = usize::try_from(size_hint.saturating_add(1))
        .unwrap_or(WINDOW)
        .clamp(1, WINDOW);
    loop {
        let mut buf = Vec::with_capacity(capacity.max(tail.len() + 1));
        buf.extend_from_slice(&tail);
        let want = (buf.capacity() - buf.len()) as u64;
        // `read_to_end` fills the spare capacity without zeroing it first.
        let got = (&mut source).take(want).read_to_end(&mut buf)? as u64;
        let eof = got < want;
        let window = Bytes::from(buf);
        let mut taken = 0;
        for c in FastCDC::new(&window, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX) {
            if !eof && window.len() - c.offset < max {
                break;
            }
            each(window.slice(c.offset..c.offset + c.length))?;
            taken = c.offset + c.length;
        }
        if eof {
            return Ok(());
        }
        tail = window.slice(taken..);
        capacity = WINDOW;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastcdc::v2020::StreamCDC;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn ours(data: &[u8], hint: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        chunk(data, hint, |b| {
            out.push(b.to_vec());
            Ok(())
        })
        .unwrap();
        out
    }

    fn streamed(data: &[u8]) -> Vec<Vec<u8>> {
        StreamCDC::new(data, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
            .map(|c| c.unwrap().data)
            .collect()
    }

    #[test]
    fn cuts_where_stream_cdc_cuts() {
        // Around the window size, and with a repeated run that forces CHUNK_MAX cuts.
        let mut zeros_inside = noise(3 * WINDOW, 7);
        zeros_inside[WINDOW - 1000..WINDOW + (6 << 20)].fill(0);
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            noise(1, 1),
            noise(CHUNK_MIN as usize - 1, 2),
            noise(CHUNK_MAX as usize + 17, 3),
            noise(WINDOW - 1, 4),
            noise(WINDOW, 5),
            noise(WINDOW + 1, 6),
            noise(2 * WINDOW + (3 << 20) + 5, 8),
            zeros_inside,
        ];
        for (i, data) in cases.iter().enumerate() {
            let want = streamed(data);
            for hint in [0, 1, data.len() as u64, data.len() as u64 / 2, u64::MAX] {
                let got = ours(data, hint);
                assert_eq!(got.len(), want.len(), "case {i}, hint {hint}: chunk count");
                assert!(got == want, "case {i}, hint {hint}: chunks differ");
            }
        }
    }

    #[test]
    fn a_read_error_is_returned() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk on fire"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(1);
                self.0 -= n;
                Ok(n)
            }
        }
        let err = chunk(Failing(WINDOW + 5), 10, |_| Ok(())).unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }
}
