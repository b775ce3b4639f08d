//! Streaming compression and decompression of byte streams (`zstd`, `lz4`
//! frame format) with bounded memory: the codec runs on a blocking thread and
//! hands chunks over a small channel.

use std::io::{Read, Write};

use bytes::Bytes;

use crate::cas::ByteStream;
use crate::proto::Encoding;

const CHUNK: usize = 256 * 1024;

fn channel_stream(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> ByteStream {
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Decodes `body` from `encoding`. Corrupt input ends the stream with an
/// `InvalidData` error.
pub fn decode_stream(encoding: Encoding, body: ByteStream) -> ByteStream {
    if encoding == Encoding::Identity {
        return body;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let input = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
        let mut reader: Box<dyn Read> = match encoding {
            Encoding::Zstd => match zstd::stream::read::Decoder::new(input) {
                Ok(d) => Box::new(d),
                Err(e) => {
                    let _ = tx.blocking_send(Err(invalid(e)));
                    return;
                }
            },
            Encoding::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
            Encoding::Identity => unreachable!("handled above"),
        };
        let mut buf = vec![0u8; CHUNK];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send(Ok(Bytes::copy_from_slice(&buf[..n]))).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.blocking_send(Err(invalid(e)));
                    return;
                }
            }
        }
    });
    channel_stream(rx)
}

fn invalid(e: std::io::Error) -> std::io::Error {
    match e.kind() {
        // Errors of the underlying body (client went away) keep their kind.
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData | std::io::ErrorKind::Other => {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("corrupt compressed body: {e}"))
        }
        _ => e,
    }
}

/// A `Write` that forwards everything written to a channel as chunks.
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !buf.is_empty() {
            self.tx
                .blocking_send(Ok(Bytes::copy_from_slice(buf)))
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "reader went away"))?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encodes `body` into `encoding` at `level` (zstd only).
pub fn encode_stream(encoding: Encoding, level: i32, body: ByteStream) -> ByteStream {
    if encoding == Encoding::Identity {
        return body;
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut input = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body));
        let out = std::io::BufWriter::with_capacity(CHUNK, ChannelWriter { tx: tx.clone() });
        let result = (|| -> std::io::Result<()> {
            match encoding {
                Encoding::Zstd => {
                    let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                    std::io::copy(&mut input, &mut enc)?;
                    enc.finish()?.flush()
                }
                Encoding::Lz4 => {
                    let mut enc = lz4_flex::frame::FrameEncoder::new(out);
                    std::io::copy(&mut input, &mut enc)?;
                    enc.finish().map_err(std::io::Error::other)?.flush()
                }
                Encoding::Identity => unreachable!("handled above"),
            }
        })();
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    channel_stream(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    async fn collect(s: ByteStream) -> std::io::Result<Vec<u8>> {
        Ok(s.try_collect::<Vec<Bytes>>().await?.concat())
    }

    #[tokio::test]
    async fn round_trips() {
        let data: Bytes = (0..3_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
        for enc in [Encoding::Zstd, Encoding::Lz4] {
            let encoded = collect(encode_stream(enc, 3, crate::cas::bytes_stream(data.clone())))
                .await
                .unwrap();
            assert!(encoded.len() < data.len() / 10);
            let decoded = collect(decode_stream(enc, crate::cas::bytes_stream(encoded.into())))
                .await
                .unwrap();
            assert_eq!(decoded, data);
        }
    }

    #[tokio::test]
    async fn corrupt_input_is_invalid_data() {
        for enc in [Encoding::Zstd, Encoding::Lz4] {
            let err = collect(decode_stream(
                enc,
                crate::cas::bytes_stream(Bytes::from_static(b"not compressed at all")),
            ))
            .await
            .unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{enc:?}: {err}");
        }
    }
}
