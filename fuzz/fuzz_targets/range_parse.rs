//! `Range` header parsing: a parsed range prints back to an equal range, and resolves within
//! any blob size (never past its end, never empty).
#![no_main]

use libfuzzer_sys::fuzz_target;
use reprovm_sdk::proto::ByteRange;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap());
    let Ok(header) = std::str::from_utf8(&data[8..]) else {
        return;
    };
    let Ok(r) = ByteRange::parse(header) else {
        return;
    };
    assert_eq!(ByteRange::parse(&r.to_header()), Ok(r));
    for size in [size, size % 4096, 0, 1, u64::MAX] {
        if let Some(span) = r.resolve(size) {
            assert!(span.start < span.end && span.end <= size, "{r:?} in {size}: {span:?}");
        }
    }
});
