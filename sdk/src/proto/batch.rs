//! Frames of `POST /v1/blobs:batch`: a 32-byte BLAKE3 digest, a u64
//! big-endian length, then that many bytes; repeated until the body ends.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::digest::{Digest, HashKind, DIGEST_LEN};

/// Bytes before each frame's payload.
pub const FRAME_HEADER_LEN: usize = DIGEST_LEN + 8;

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchFrame {
    /// The digest the payload claims to have.
    pub digest: Digest,
    /// The payload.
    pub data: Bytes,
}

/// Appends one frame to `out`.
pub fn encode_frame(digest: &Digest, data: &[u8], out: &mut BytesMut) {
    out.reserve(FRAME_HEADER_LEN + data.len());
    out.put_slice(digest.as_bytes());
    out.put_u64(data.len() as u64);
    out.put_slice(data);
}

/// Incremental decoder: feed body chunks, take complete frames.
#[derive(Debug)]
pub struct BatchDecoder {
    buf: BytesMut,
    max_frame: u64,
}

impl BatchDecoder {
    /// A decoder refusing payloads larger than `max_frame` bytes.
    pub fn new(max_frame: u64) -> Self {
        Self {
            buf: BytesMut::new(),
            max_frame,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<BatchFrame>, String> {
        if self.buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let len = u64::from_be_bytes(self.buf[DIGEST_LEN..FRAME_HEADER_LEN].try_into().expect("8 bytes"));
        if len > self.max_frame {
            return Err(format!(
                "frame of {len} bytes exceeds the batch limit of {} bytes per blob",
                self.max_frame
            ));
        }
        let total = FRAME_HEADER_LEN + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total);
        let mut digest = [0u8; DIGEST_LEN];
        frame.copy_to_slice(&mut digest);
        frame.advance(8);
        Ok(Some(BatchFrame {
            digest: Digest::from_bytes(HashKind::Blake3, digest),
            data: frame.freeze(),
        }))
    }

    /// Call at end of body: an error if a partial frame is left.
    pub fn finish(&self) -> Result<(), String> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "batch body ends inside a frame ({} stray bytes)",
                self.buf.len()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_odd_pieces() {
        let mut body = BytesMut::new();
        let blobs: Vec<Vec<u8>> = vec![vec![], b"a".to_vec(), vec![7u8; 1000]];
        for b in &blobs {
            encode_frame(&Digest::of_blake3(b), b, &mut body);
        }
        let mut dec = BatchDecoder::new(1 << 20);
        let mut got = vec![];
        for piece in body.chunks(7) {
            dec.push(piece);
            while let Some(f) = dec.next_frame().unwrap() {
                got.push(f);
            }
        }
        dec.finish().unwrap();
        assert_eq!(got.len(), 3);
        for (f, b) in got.iter().zip(&blobs) {
            assert_eq!(f.digest, Digest::of_blake3(b));
            assert_eq!(&f.data[..], &b[..]);
        }
    }

    #[test]
    fn truncated_and_oversize() {
        let mut body = BytesMut::new();
        encode_frame(&Digest::of_blake3(b"abc"), b"abc", &mut body);
        let mut dec = BatchDecoder::new(2);
        dec.push(&body);
        assert!(dec.next_frame().is_err());
        let mut dec = BatchDecoder::new(100);
        dec.push(&body[..body.len() - 1]);
        assert!(dec.next_frame().unwrap().is_none());
        assert!(dec.finish().is_err());
    }
}
