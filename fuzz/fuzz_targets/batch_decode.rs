//! The `POST /v1/blobs:batch` frame decoder, fed the input in chunks of fuzzer-chosen sizes:
//! it never panics, never returns a frame over its limit, and the frames it returns re-encode to
//! exactly the bytes it consumed.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use reprovm_sdk::proto::{encode_frame, BatchDecoder};

fuzz_target!(|data: &[u8]| {
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let max_frame = 4096;
    let mut dec = BatchDecoder::new(max_frame);
    let mut reencoded = BytesMut::new();
    let mut failed = false;
    'feed: for chunk in body.chunks(step) {
        dec.push(chunk);
        loop {
            match dec.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.data.len() as u64 <= max_frame);
                    encode_frame(&f.digest, &f.data, &mut reencoded);
                }
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
    }
    assert_eq!(
        &body[..reencoded.len()],
        &reencoded[..],
        "frames re-encode to their input"
    );
    if !failed && dec.finish().is_ok() {
        assert_eq!(reencoded.len(), body.len(), "a clean finish consumed everything");
    }
});
