//! `google.bytestream.ByteStream`: `Read` (offset and limit), `Write` (streamed, verified while it
//! streams, resumable through [`super::uploads`]) and `QueryWriteStatus`, on blobs named as
//! [`super::resource`] describes, plain or `compressed-blobs/zstd`.

use std::sync::Arc;

use bazel_remote_apis::google::bytestream as bs;
use bs::byte_stream_server::ByteStream;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use reprovm_sdk::cas::Cas;
use reprovm_sdk::codec::encode_stream;
use reprovm_sdk::error::CasError;
use reprovm_sdk::proto::{ByteRange, Encoding};
use tonic::{Code, Request, Response, Status, Streaming};

use super::resource::{parse_read, parse_write, Compressor};
use super::status::{from_cas, invalid, with_code};
use super::uploads::{upload_slot, Fed, Uploads};
use super::READ_CHUNK;
use crate::http::server::AppState;
use crate::metrics::Metrics;

/// The service.
pub struct ByteStreamService {
    /// The server's state.
    pub state: Arc<AppState>,
    /// Writes in progress.
    pub uploads: Arc<Uploads>,
}

type ReadStream = std::pin::Pin<Box<dyn Stream<Item = Result<bs::ReadResponse, Status>> + Send>>;

/// Whether an upload was created by the call that reports it, for the audit log.
#[derive(Clone, Copy, Debug)]
pub struct Created;

/// Cuts store chunks into messages of at most [`READ_CHUNK`] bytes.
fn messages(body: reprovm_sdk::cas::ByteStream) -> ReadStream {
    Box::pin(body.flat_map(|chunk| {
        let items: Vec<Result<bs::ReadResponse, Status>> = match chunk {
            Ok(mut b) => {
                Metrics::bytes_out(b.len() as u64);
                let mut out = Vec::with_capacity(b.len() / READ_CHUNK + 1);
                while !b.is_empty() {
                    let part = b.split_to(b.len().min(READ_CHUNK));
                    out.push(Ok(bs::ReadResponse { data: part.into() }));
                }
                out
            }
            Err(e) => vec![Err(from_cas(CasError::from(e)))],
        };
        futures::stream::iter(items)
    }))
}

impl ByteStreamService {
    /// Reads the next message of a `Write`, giving up after the body idle timeout.
    async fn next(&self, stream: &mut Streaming<bs::WriteRequest>) -> Result<Option<bs::WriteRequest>, Status> {
        match tokio::time::timeout(self.state.limits.body_idle, stream.message()).await {
            Ok(r) => r,
            Err(_) => Err(with_code(
                Code::DeadlineExceeded,
                "timeout",
                format!(
                    "no Write message for {:?}; resume with QueryWriteStatus and Write",
                    self.state.limits.body_idle
                ),
            )),
        }
    }

    /// Whether the local tier has the blob whole (asked of the local tier only, as the HTTP
    /// `Expect` pre-check does: a remote outage must not hold up an upload).
    async fn stored(&self, blob: &super::digest::Sized) -> bool {
        blob.is_empty_blob() || matches!(self.state.local.stat(&blob.digest).await, Ok(Some(i)) if i.size == blob.size)
    }
}

#[tonic::async_trait]
impl ByteStream for ByteStreamService {
    type ReadStream = ReadStream;

    async fn read(&self, request: Request<bs::ReadRequest>) -> Result<Response<ReadStream>, Status> {
        let req = request.into_inner();
        let res = parse_read(&req.resource_name)?;
        if req.read_offset < 0 {
            return Err(with_code(
                Code::OutOfRange,
                "invalid_read_offset",
                format!("read_offset {} is negative", req.read_offset),
            ));
        }
        if req.read_limit < 0 {
            return Err(invalid(
                "invalid_read_limit",
                format!("read_limit {} is negative", req.read_limit),
            ));
        }
        if res.compressor != Compressor::Identity && req.read_limit != 0 {
            return Err(invalid(
                "invalid_read_limit",
                "read_limit must be 0 when reading compressed-blobs",
            ));
        }
        let (offset, limit, blob) = (req.read_offset as u64, req.read_limit as u64, res.blob);
        if offset > blob.size {
            return Err(with_code(
                Code::OutOfRange,
                "range_not_satisfiable",
                format!(
                    "read_offset {offset} is past the end of blob {} ({} bytes)",
                    blob.digest, blob.size
                ),
            ));
        }
        if blob.is_empty_blob()
            || offset == blob.size
                && self
                    .state
                    .store
                    .stat(&blob.digest)
                    .await
                    .map_err(from_cas)?
                    .is_some_and(|i| i.size == blob.size)
        {
            Metrics::lookup("cas", true);
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        }
        let range = match (offset, limit) {
            (0, 0) => None,
            (o, 0) => Some(ByteRange::From(o)),
            (o, l) => Some(ByteRange::FromTo(o, o.saturating_add(l) - 1)),
        };
        let found = match self.state.store.get(&blob.digest, range).await {
            Ok(b) if b.size == blob.size => Ok(b),
            Ok(b) => Err(CasError::not_found(format!(
                "blob {} of {} bytes (the stored one has {})",
                blob.digest, blob.size, b.size
            ))),
            Err(e) => Err(e),
        };
        Metrics::lookup("cas", found.is_ok());
        let found = found.map_err(from_cas)?;
        let body = match res.compressor {
            Compressor::Identity => found.body,
            Compressor::Zstd => encode_stream(Encoding::Zstd, self.state.config.compression_level.max(1), found.body),
        };
        Ok(Response::new(messages(body)))
    }

    async fn write(
        &self,
        request: Request<Streaming<bs::WriteRequest>>,
    ) -> Result<Response<bs::WriteResponse>, Status> {
        let mut stream = request.into_inner();
        let Some(first) = self.next(&mut stream).await? else {
            return Err(invalid("empty_write", "a Write with no message"));
        };
        let name = first.resource_name.clone();
        let res = parse_write(&name)?;
        let blob = res.target.blob;
        let compressed = res.target.compressor != Compressor::Identity;
        // Already there: done at once, whatever was sent (-1 for compressed uploads, as REAPI says).
        let done_size = if compressed { -1 } else { blob.size as i64 };
        let upload = match self.uploads.get(&name) {
            Some(u) => u,
            None if self.stored(&blob).await => {
                return Ok(Response::new(bs::WriteResponse {
                    committed_size: done_size,
                }));
            }
            None if first.write_offset != 0 => {
                return Err(with_code(
                    Code::InvalidArgument,
                    "invalid_write_offset",
                    format!(
                        "write_offset {}, but no upload of {name:?} is in progress: start at 0",
                        first.write_offset
                    ),
                ));
            }
            None => {
                let limit = self.state.config.max_blob_size.0;
                if blob.size > limit {
                    return Err(from_cas(CasError::TooLarge { size: blob.size, limit }));
                }
                let slot = upload_slot(&self.state)?;
                self.uploads.start(&self.state, &name, &res.target, slot)
            }
        };
        let ticket = upload.attach();
        let mut msg = first;
        loop {
            if !msg.resource_name.is_empty() && msg.resource_name != name {
                return Err(invalid(
                    "invalid_resource_name",
                    "a Write names one resource: the first message's",
                ));
            }
            if msg.write_offset < 0 {
                return Err(invalid(
                    "invalid_write_offset",
                    format!("write_offset {} is negative", msg.write_offset),
                ));
            }
            let finish = msg.finish_write;
            let n = msg.data.len() as u64;
            let fed = upload
                .feed(ticket, msg.write_offset as u64, Bytes::from(msg.data), finish)
                .await?;
            Metrics::bytes_in(n);
            if finish || matches!(fed, Fed::Ended) {
                break;
            }
            match self.next(&mut stream).await? {
                Some(m) => msg = m,
                // Half-closed before finish_write: the upload waits for a resuming Write.
                None => {
                    return Ok(Response::new(bs::WriteResponse {
                        committed_size: upload.committed() as i64,
                    }))
                }
            }
        }
        let outcome = upload.outcome().await?;
        let mut resp = Response::new(bs::WriteResponse {
            committed_size: if compressed {
                upload.committed() as i64
            } else {
                blob.size as i64
            },
        });
        if outcome == reprovm_sdk::cas::PutOutcome::Created {
            resp.extensions_mut().insert(Created);
        }
        Ok(resp)
    }

    async fn query_write_status(
        &self,
        request: Request<bs::QueryWriteStatusRequest>,
    ) -> Result<Response<bs::QueryWriteStatusResponse>, Status> {
        let name = request.into_inner().resource_name;
        let res = parse_write(&name)?;
        if let Some(u) = self.uploads.get(&name) {
            return Ok(Response::new(bs::QueryWriteStatusResponse {
                committed_size: u.committed() as i64,
                complete: u.complete(),
            }));
        }
        let blob = res.target.blob;
        if self.stored(&blob).await
            || self
                .state
                .store
                .stat(&blob.digest)
                .await
                .map_err(from_cas)?
                .is_some_and(|i| i.size == blob.size)
        {
            return Ok(Response::new(bs::QueryWriteStatusResponse {
                committed_size: blob.size as i64,
                complete: true,
            }));
        }
        Err(Status::not_found(format!(
            "no upload of {name:?} is in progress: start at 0"
        )))
    }
}
