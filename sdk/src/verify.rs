//! Stream adapters that check what flows through them.

use bytes::Bytes;
use futures::StreamExt;

use crate::cas::ByteStream;
use crate::digest::{Digest, Hasher};

/// Wraps `body` so that it yields an error instead of ending cleanly when the
/// bytes do not hash to `digest` or do not add up to `size`. A consumer that
/// writes the stream somewhere must discard the result when it sees the error.
pub fn verified_stream(digest: Digest, size: Option<u64>, body: ByteStream) -> ByteStream {
    let state = (body, Hasher::new(digest.kind()), 0u64, false);
    Box::pin(futures::stream::unfold(
        state,
        move |(mut body, mut hasher, mut n, done)| async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    n += chunk.len() as u64;
                    Some((Ok(chunk), (body, hasher, n, false)))
                }
                Some(Err(e)) => Some((Err(e), (body, hasher, n, true))),
                None => {
                    let actual = hasher.finalize();
                    let err = if size.is_some_and(|s| s != n) {
                        format!("received {n} bytes, expected {}", size.unwrap_or_default())
                    } else if actual != digest {
                        format!("bytes hash to {actual}, expected {digest}")
                    } else {
                        return None;
                    };
                    Some((
                        Err(std::io::Error::new(std::io::ErrorKind::InvalidData, err)),
                        (body, hasher, n, true),
                    ))
                }
            }
        },
    ))
}

/// Chunks of at most `max` bytes from an in-memory buffer (zero-copy slices).
pub fn chunked(data: Bytes, max: usize) -> impl Iterator<Item = Bytes> {
    let n = data.len().div_ceil(max.max(1));
    (0..n).map(move |i| data.slice(i * max..((i + 1) * max).min(data.len())))
}
