//! The byte layout of the state file: little-endian integers, length-prefixed strings, raw
//! 32-byte digests, and a BLAKE3 of everything before it at the end, so that a torn or foreign
//! file is recognised and ignored (the state is only a cache: losing it costs a slower run).
//!
//! ```text
//! "RVMSTATE" u32:version str:store
//! u64:files  { str:path u64:dev u64:ino u64:size u32:mode i64:mtime_ns i64:ctime_ns i64:checked_s digest }
//! u64:tasks  { str:name digest:key u64:duration_ms u64:outputs { str:path digest u64:size u32:mode } }
//! digest:blake3-of-all-the-above
//! ```

use reprovm_sdk::{Digest, HashKind};

/// Bytes of a BLAKE3 digest (and of the checksum).
const DIGEST_LEN: usize = 32;

/// Appends fields to a buffer.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    pub fn digest(&mut self, d: &Digest) {
        self.0.extend_from_slice(d.as_bytes());
    }
    /// The bytes with their checksum appended.
    pub fn finish(mut self) -> Vec<u8> {
        let sum = blake3::hash(&self.0);
        self.0.extend_from_slice(sum.as_bytes());
        self.0
    }
}

/// The file ended early or holds something else.
#[derive(Debug, thiserror::Error)]
#[error("state file is truncated or corrupt")]
pub struct Corrupt;

/// Reads fields from a checked buffer.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader over `data` once its trailing checksum matches.
    pub fn checked(data: &'a [u8]) -> Result<Self, Corrupt> {
        let body_len = data.len().checked_sub(DIGEST_LEN).ok_or(Corrupt)?;
        let (body, sum) = data.split_at(body_len);
        if blake3::hash(body).as_bytes() != sum {
            return Err(Corrupt);
        }
        Ok(Self(body))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        if self.0.len() < n {
            return Err(Corrupt);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Corrupt> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    pub fn u32(&mut self) -> Result<u32, Corrupt> {
        self.array().map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Result<u64, Corrupt> {
        self.array().map(u64::from_le_bytes)
    }
    pub fn i64(&mut self) -> Result<i64, Corrupt> {
        self.array().map(i64::from_le_bytes)
    }
    pub fn str(&mut self) -> Result<String, Corrupt> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Corrupt)
    }
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        self.take(n)
    }
    pub fn digest(&mut self) -> Result<Digest, Corrupt> {
        Ok(Digest::from_bytes(HashKind::Blake3, self.array()?))
    }
    /// A count of items, each at least `min_item` bytes long (so a corrupt count cannot make the
    /// caller reserve gigabytes).
    pub fn count(&mut self, min_item: usize) -> Result<usize, Corrupt> {
        let n = self.u64()?;
        if n > (self.0.len() / min_item.max(1)) as u64 {
            return Err(Corrupt);
        }
        Ok(n as usize)
    }
    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_any_flipped_byte_is_refused() {
        let mut w = Writer::default();
        w.u32(7);
        w.str("héllo");
        w.i64(-5);
        w.digest(&Digest::of_blake3(b"x"));
        let data = w.finish();
        let mut r = Reader::checked(&data).unwrap();
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.digest().unwrap(), Digest::of_blake3(b"x"));
        assert!(r.is_empty());
        assert!(r.u32().is_err());
        for i in 0..data.len() {
            let mut bad = data.clone();
            bad[i] ^= 1;
            assert!(Reader::checked(&bad).is_err(), "byte {i}");
        }
        assert!(Reader::checked(&data[..10]).is_err());
    }
}
