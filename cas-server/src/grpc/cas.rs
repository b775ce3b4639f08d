//! `ContentAddressableStorage`: `FindMissingBlobs`, `BatchUpdateBlobs`, `BatchReadBlobs`,
//! `GetTree` (with paging). The chunking methods (`SplitBlob`, `SpliceBlob`, `GetChunkMapping`,
//! `RegisterChunkMapping`) answer `UNIMPLEMENTED`, as REAPI asks of a server whose capabilities
//! do not advertise them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::rpc::Status as RpcStatus;
use futures::StreamExt;
use re::content_addressable_storage_server::ContentAddressableStorage;
use reprovm_sdk::cas::{bytes_stream, Cas};
use reprovm_sdk::digest::HashKind;
use reprovm_sdk::error::CasError;
use tonic::{Code, Request, Response, Status};

use super::digest::{self, Sized};
use super::status::{from_cas, invalid};
use super::tree::{read_directory, TreeError};
use super::MAX_BATCH_TOTAL;
use crate::http::server::AppState;
use crate::metrics::Metrics;

/// Directories per `GetTreeResponse` when the client names no page size.
const DEFAULT_PAGE: usize = 1000;
/// Encoded bytes per `GetTreeResponse` before a message is cut, whatever the page size.
const MAX_TREE_MESSAGE: usize = 2 << 20;
/// Blobs of one batch stored or read at once.
const BATCH_PARALLEL: usize = 8;

/// The service.
pub struct CasService {
    /// The server's state (store, limits, configuration).
    pub state: Arc<AppState>,
}

fn ok() -> Option<RpcStatus> {
    Some(RpcStatus {
        code: Code::Ok as i32,
        ..Default::default()
    })
}

fn rpc_status(s: &Status) -> Option<RpcStatus> {
    Some(RpcStatus {
        code: s.code() as i32,
        message: s.message().to_string(),
        details: Vec::new(),
    })
}

/// Refuses a batch whose blobs add up to more than [`MAX_BATCH_TOTAL`].
fn check_batch_total(total: u64, what: &str) -> Result<(), Status> {
    if total > MAX_BATCH_TOTAL {
        return Err(invalid(
            "batch_too_large",
            format!("{what} of {total} bytes in one batch; the limit is {MAX_BATCH_TOTAL} bytes (max_batch_total_size_bytes): use ByteStream for larger blobs"),
        ));
    }
    Ok(())
}

/// Decodes a zstd blob of a batch to at most its declared size.
fn unzstd(data: &[u8], size: u64) -> Result<bytes::Bytes, Status> {
    // One byte over the declared size so that an oversized payload shows as a size mismatch.
    let out = zstd::bulk::decompress(data, size as usize + 1)
        .map_err(|e| invalid("invalid_compressed_data", format!("zstd data does not decode: {e}")))?;
    Ok(out.into())
}

impl CasService {
    async fn update_one(
        &self,
        kind: HashKind,
        r: re::batch_update_blobs_request::Request,
    ) -> re::batch_update_blobs_response::Response {
        let proto = r.digest.clone();
        let result = async {
            let d = digest::required(kind, r.digest.as_ref(), "digest")?;
            let data = match re::compressor::Value::try_from(r.compressor) {
                Ok(re::compressor::Value::Identity) => bytes::Bytes::from(r.data),
                Ok(re::compressor::Value::Zstd) => unzstd(&r.data, d.size)?,
                _ => {
                    return Err(invalid(
                        "unsupported_compressor",
                        format!(
                            "compressor {} is not supported in batches (supported: IDENTITY, ZSTD)",
                            r.compressor
                        ),
                    ))
                }
            };
            if data.len() as u64 != d.size {
                return Err(invalid(
                    "size_mismatch",
                    format!("blob {} has {} bytes, not {}", d.digest, data.len(), d.size),
                ));
            }
            if d.is_empty_blob() {
                return Ok(());
            }
            let size = data.len() as u64;
            self.state
                .store
                .put(&d.digest, Some(size), bytes_stream(data))
                .await
                .map_err(from_cas)?;
            Ok(())
        }
        .await;
        re::batch_update_blobs_response::Response {
            digest: proto,
            status: match &result {
                Ok(()) => ok(),
                Err(s) => rpc_status(s),
            },
        }
    }

    async fn read_one(&self, d: Sized) -> re::batch_read_blobs_response::Response {
        let result = async {
            if d.is_empty_blob() {
                return Ok(bytes::Bytes::new());
            }
            let blob = self.state.store.get(&d.digest, None).await?;
            if blob.size != d.size {
                return Err(CasError::not_found(format!(
                    "blob {} of {} bytes (the stored one has {})",
                    d.digest, d.size, blob.size
                )));
            }
            blob.bytes().await
        }
        .await;
        Metrics::lookup("cas", result.is_ok());
        let (data, status) = match result {
            Ok(data) => {
                Metrics::bytes_out(data.len() as u64);
                (data.to_vec(), ok())
            }
            Err(e) => (Vec::new(), rpc_status(&from_cas(e))),
        };
        re::batch_read_blobs_response::Response {
            digest: Some(d.to_proto()),
            data,
            compressor: re::compressor::Value::Identity as i32,
            status,
        }
    }
}

type TreeStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<re::GetTreeResponse, Status>> + Send>>;
type ChunkStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not offered by this server (its capabilities advertise no blob splitting or splicing)"
    ))
}

#[tonic::async_trait]
impl ContentAddressableStorage for CasService {
    async fn find_missing_blobs(
        &self,
        request: Request<re::FindMissingBlobsRequest>,
    ) -> Result<Response<re::FindMissingBlobsResponse>, Status> {
        let req = request.into_inner();
        let kind = digest::kind(req.digest_function)?;
        let mut sizes: HashMap<reprovm_sdk::Digest, Vec<u64>> = HashMap::new();
        let mut asked = Vec::new();
        for d in &req.blob_digests {
            let d = digest::parse(kind, d)?;
            if d.is_empty_blob() {
                continue;
            }
            let seen = sizes.entry(d.digest).or_default();
            if seen.is_empty() {
                asked.push(d.digest);
            }
            if !seen.contains(&d.size) {
                seen.push(d.size);
            }
        }
        let missing = self.state.store.find_missing(&asked).await.map_err(from_cas)?;
        let missing_blob_digests = missing
            .into_iter()
            .flat_map(|digest| {
                let sizes = sizes.get(&digest).cloned().unwrap_or_default();
                sizes.into_iter().map(move |size| Sized { digest, size }.to_proto())
            })
            .collect();
        Ok(Response::new(re::FindMissingBlobsResponse { missing_blob_digests }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<re::BatchUpdateBlobsRequest>,
    ) -> Result<Response<re::BatchUpdateBlobsResponse>, Status> {
        let req = request.into_inner();
        let kind = digest::kind(req.digest_function)?;
        let total: u64 = req.requests.iter().map(|r| r.data.len() as u64).sum();
        check_batch_total(total, "uploads")?;
        let _slot = super::uploads::upload_slot(&self.state)?;
        Metrics::bytes_in(total);
        let responses = futures::stream::iter(req.requests)
            .map(|r| self.update_one(kind, r))
            .buffered(BATCH_PARALLEL)
            .collect()
            .await;
        Ok(Response::new(re::BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<re::BatchReadBlobsRequest>,
    ) -> Result<Response<re::BatchReadBlobsResponse>, Status> {
        let req = request.into_inner();
        let kind = digest::kind(req.digest_function)?;
        let digests = req
            .digests
            .iter()
            .map(|d| digest::parse(kind, d))
            .collect::<Result<Vec<_>, _>>()?;
        check_batch_total(digests.iter().map(|d| d.size).sum(), "reads")?;
        let responses = futures::stream::iter(digests)
            .map(|d| self.read_one(d))
            .buffered(BATCH_PARALLEL)
            .collect()
            .await;
        Ok(Response::new(re::BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = TreeStream;

    async fn get_tree(&self, request: Request<re::GetTreeRequest>) -> Result<Response<TreeStream>, Status> {
        let req = request.into_inner();
        let kind = digest::kind(req.digest_function)?;
        let root = digest::required(kind, req.root_digest.as_ref(), "root_digest")?;
        if req.page_size < 0 {
            return Err(invalid(
                "invalid_page_size",
                format!("page_size {} is negative", req.page_size),
            ));
        }
        let skip = parse_page_token(&req.page_token)?;
        let page = (req.page_size > 0).then_some(req.page_size as usize);
        let store = self.state.store.clone();
        // The root must exist: NOT_FOUND before the stream starts.
        let root_dir = read_directory(&*store, &root)
            .await
            .map_err(tree_status)?
            .ok_or_else(|| Status::not_found(format!("root directory {} is not in the CAS", root.display())))?;
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let walk = Walk {
                store,
                kind,
                page,
                skip,
            };
            if let Err(s) = walk.run(root, root_dir, &tx).await {
                let _ = tx.send(Err(s)).await;
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn split_blob(&self, _: Request<re::SplitBlobRequest>) -> Result<Response<re::SplitBlobResponse>, Status> {
        Err(unimplemented("SplitBlob"))
    }

    type GetChunkMappingStream = ChunkStream<re::GetChunkMappingResponse>;

    async fn get_chunk_mapping(
        &self,
        _: Request<re::GetChunkMappingRequest>,
    ) -> Result<Response<Self::GetChunkMappingStream>, Status> {
        Err(unimplemented("GetChunkMapping"))
    }

    async fn splice_blob(&self, _: Request<re::SpliceBlobRequest>) -> Result<Response<re::SpliceBlobResponse>, Status> {
        Err(unimplemented("SpliceBlob"))
    }

    async fn register_chunk_mapping(
        &self,
        _: Request<tonic::Streaming<re::RegisterChunkMappingRequest>>,
    ) -> Result<Response<re::RegisterChunkMappingResponse>, Status> {
        Err(unimplemented("RegisterChunkMapping"))
    }
}

fn tree_status(e: TreeError) -> Status {
    match e {
        TreeError::Store(e) => from_cas(e),
        e @ TreeError::Malformed { .. } => invalid("invalid_directory", e.to_string()),
    }
}

/// Page tokens are the number of directories of the (deterministic) walk already sent.
fn parse_page_token(token: &str) -> Result<usize, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token.strip_prefix("skip:").and_then(|n| n.parse().ok()).ok_or_else(|| {
        invalid(
            "invalid_page_token",
            format!("page_token {token:?} was not made by this server"),
        )
    })
}

fn page_token(sent: usize) -> String {
    format!("skip:{sent}")
}

/// A breadth-first walk of a directory tree, each directory once, in the order of the
/// `directories` lists: the same tree always walks the same way, so a page token can be the
/// count of directories already sent.
struct Walk {
    store: Arc<dyn Cas>,
    kind: HashKind,
    /// At most this many directories, then one last message with the token to go on from.
    page: Option<usize>,
    /// Directories of earlier pages (walked, not sent).
    skip: usize,
}

impl Walk {
    async fn run(
        self,
        root: Sized,
        root_dir: re::Directory,
        tx: &tokio::sync::mpsc::Sender<Result<re::GetTreeResponse, Status>>,
    ) -> Result<(), Status> {
        let mut queue = VecDeque::from([(root, Some(root_dir))]);
        let mut seen = HashSet::from([root]);
        let mut index = 0usize; // directories walked so far
        let mut batch = Vec::new();
        let mut batch_bytes = 0usize;
        let mut sent_in_call = 0usize;
        let per_message = self.page.unwrap_or(DEFAULT_PAGE).min(DEFAULT_PAGE);
        while let Some((d, known)) = queue.pop_front() {
            let dir = match known {
                Some(dir) => dir,
                // Missing parts of the tree are left out, as REAPI says.
                None => match read_directory(&*self.store, &d).await.map_err(tree_status)? {
                    Some(dir) => dir,
                    None => continue,
                },
            };
            for child in &dir.directories {
                let c = digest::required(self.kind, child.digest.as_ref(), "directory digest")?;
                if seen.insert(c) {
                    queue.push_back((c, None));
                }
            }
            index += 1;
            if index <= self.skip {
                continue;
            }
            batch_bytes += prost::Message::encoded_len(&dir);
            batch.push(dir);
            sent_in_call += 1;
            let page_full = self.page.is_some_and(|p| sent_in_call >= p);
            if batch.len() >= per_message || batch_bytes >= MAX_TREE_MESSAGE || page_full {
                let more = !queue.is_empty();
                let msg = re::GetTreeResponse {
                    directories: std::mem::take(&mut batch),
                    next_page_token: if more { page_token(index) } else { String::new() },
                };
                batch_bytes = 0;
                if tx.send(Ok(msg)).await.is_err() {
                    return Ok(()); // the client went away
                }
                if page_full {
                    return Ok(());
                }
            }
        }
        if !batch.is_empty() || sent_in_call == 0 {
            let _ = tx
                .send(Ok(re::GetTreeResponse {
                    directories: batch,
                    next_page_token: String::new(),
                }))
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(parse_page_token("").unwrap(), 0);
        assert_eq!(parse_page_token(&page_token(42)).unwrap(), 42);
        assert_eq!(parse_page_token("42").unwrap_err().code(), Code::InvalidArgument);
        assert_eq!(parse_page_token("skip:x").unwrap_err().code(), Code::InvalidArgument);
    }

    #[test]
    fn batch_totals() {
        assert!(check_batch_total(MAX_BATCH_TOTAL, "x").is_ok());
        assert_eq!(
            check_batch_total(MAX_BATCH_TOTAL + 1, "x").unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}
