//! The meta record of a blob: its existence, size and where its pieces are.

use super::*;

const META_VERSION: u8 = 1;
/// The data id of a blob without pieces (the empty blob); no upload is given it.
pub(crate) const NO_DATA: u64 = 0;
/// Largest piece size a record may name (the store writes 1 MiB pieces); more is corruption, and
/// decoding such a piece would allocate that much.
const MAX_PIECE_SIZE: u32 = 64 << 20;
const META_LEN: usize = 1 + 8 + 4 + 8 + 8;

/// What the meta record of a blob says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    /// Decoded size.
    pub size: u64,
    /// Raw bytes per piece.
    pub piece_size: u32,
    /// Key prefix of the pieces in `data`.
    pub data_id: u64,
    /// Unix seconds of the upload.
    pub stored_at: u64,
}

impl BlobMeta {
    pub(crate) fn encode(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        out[0] = META_VERSION;
        out[1..9].copy_from_slice(&self.size.to_be_bytes());
        out[9..13].copy_from_slice(&self.piece_size.to_be_bytes());
        out[13..21].copy_from_slice(&self.data_id.to_be_bytes());
        out[21..29].copy_from_slice(&self.stored_at.to_be_bytes());
        out
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        if b.len() != META_LEN || b[0] != META_VERSION {
            return Err(CasError::Corrupt(format!(
                "meta record of {} bytes, version {:?}",
                b.len(),
                b.first()
            )));
        }
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let meta = Self {
            size: u64_at(1),
            piece_size: u32::from_be_bytes(b[9..13].try_into().expect("4 bytes")),
            data_id: u64_at(13),
            stored_at: u64_at(21),
        };
        if meta.piece_size == 0 || meta.piece_size > MAX_PIECE_SIZE {
            return Err(CasError::Corrupt(format!(
                "meta record with a piece size of {}",
                meta.piece_size
            )));
        }
        if meta.data_id == u64::MAX {
            return Err(CasError::Corrupt("meta record with data id u64::MAX".into()));
        }
        if meta.size > 0 && meta.data_id == NO_DATA {
            return Err(CasError::Corrupt(format!(
                "meta record of a {}-byte blob without a data id",
                meta.size
            )));
        }
        if meta.size.div_ceil(u64::from(meta.piece_size)) > u64::from(u32::MAX) {
            return Err(CasError::Corrupt(format!(
                "meta record of {} bytes in pieces of {}: too many pieces",
                meta.size, meta.piece_size
            )));
        }
        Ok(meta)
    }

    /// The size field of a record of the right length, even one that does not decode (for
    /// keeping the counts right when a corrupt record is removed or replaced).
    pub(crate) fn raw_size(b: &[u8]) -> Option<u64> {
        (b.len() == META_LEN).then(|| u64::from_be_bytes(b[1..9].try_into().expect("8 bytes")))
    }

    /// Number of pieces.
    pub fn pieces(&self) -> u32 {
        self.size.div_ceil(u64::from(self.piece_size)) as u32
    }

    pub(super) fn piece_len(&self, idx: u32) -> usize {
        let start = u64::from(idx) * u64::from(self.piece_size);
        (self.size - start).min(u64::from(self.piece_size)) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(size: u64, piece_size: u32, data_id: u64) -> [u8; META_LEN] {
        BlobMeta {
            size,
            piece_size,
            data_id,
            stored_at: 1,
        }
        .encode()
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        assert!(BlobMeta::decode(&record(10, 0, 1)).is_err(), "piece size 0");
        assert!(BlobMeta::decode(&record(10, u32::MAX, 1)).is_err(), "piece size 4 GiB");
        assert!(
            BlobMeta::decode(&record(10, 1 << 20, u64::MAX)).is_err(),
            "data id at the end"
        );
        assert_eq!(BlobMeta::raw_size(&record(10, 0, 1)), Some(10));
        assert!(
            BlobMeta::decode(&record(10, 1 << 20, NO_DATA)).is_err(),
            "data without an id"
        );
        assert!(BlobMeta::decode(&record(u64::MAX, 1, 1)).is_err(), "too many pieces");
        let empty = BlobMeta::decode(&record(0, 1 << 20, NO_DATA)).unwrap();
        assert_eq!(empty.pieces(), 0);
        assert_eq!(BlobMeta::decode(&record(3 << 20, 1 << 20, 7)).unwrap().pieces(), 3);
    }
}
