//! Blob endpoints: `GET/HEAD/PUT/DELETE /v1/blobs/{blake3}` (and bazel's
//! `/cas/{sha256}`, same handler with SHA-256 digests), `POST /v1/blobs:missing`,
//! `POST /v1/blobs:batch`.

use futures::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use reprovm_sdk::cas::{bytes_stream, ByteStream, Cas, PutOutcome};
use reprovm_sdk::codec::{decode_stream, encode_stream};
use reprovm_sdk::digest::Digest;
use reprovm_sdk::error::CasError;
use reprovm_sdk::proto::{
    BatchDecoder, BatchResponse, BatchResult, ByteRange, Encoding, MissingRequest, MissingResponse, MAX_MISSING_DIGESTS,
};

use super::HandlerResult;
use crate::http::body::{self, collect_limited, request_stream};
use crate::http::error::ApiError;
use crate::http::server::AppState;
use crate::metrics::Metrics;

/// Blobs smaller than this are sent uncompressed even when the client accepts zstd/lz4.
const MIN_WIRE_COMPRESS: u64 = 1024;
/// Largest blob in one batch frame.
const MAX_BATCH_FRAME: u64 = 16 << 20;

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn etag(d: &Digest) -> String {
    format!("\"{d}\"")
}

/// Counts bytes flowing through a stream into a metrics counter.
fn counted(s: ByteStream, record: fn(u64)) -> ByteStream {
    Box::pin(s.inspect_ok(move |b| record(b.len() as u64)))
}

/// Holds one of the limited upload slots for the duration of an upload.
pub(crate) fn upload_slot(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.limits.upload_slot().ok_or_else(|| {
        let mut e = ApiError::new(503, "too_many_uploads", "too many uploads in flight; retry shortly");
        e.headers.push((header::RETRY_AFTER, "1".into()));
        e
    })
}

/// Dispatches one blob by method.
pub async fn blob(state: &AppState, digest: Digest, req: Request<Incoming>) -> HandlerResult {
    match *req.method() {
        Method::PUT => put(state, digest, req).await,
        Method::DELETE => delete(state, digest).await,
        _ => get(state, digest, req).await,
    }
}

async fn get(state: &AppState, digest: Digest, req: Request<Incoming>) -> HandlerResult {
    let headers = req.headers();
    let tag = etag(&digest);
    let range = header_str(headers, header::RANGE)
        .map(ByteRange::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_range", e.to_string()))?;
    if req.method() == Method::HEAD {
        let info = state.store.stat(&digest).await?;
        Metrics::lookup("cas", info.is_some());
        let info = info.ok_or_else(|| CasError::not_found(format!("blob {digest}")))?;
        return Ok(Response::builder()
            .header(header::CONTENT_LENGTH, info.size)
            .header(header::ETAG, tag)
            .header(header::ACCEPT_RANGES, "bytes")
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body::empty())
            .expect("valid response"));
    }
    if header_str(headers, header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"))
        && range.is_none()
        && state.store.stat(&digest).await?.is_some()
    {
        Metrics::lookup("cas", true);
        return Ok(Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, tag)
            .body(body::empty())
            .expect("valid"));
    }
    let accept = header_str(headers, header::ACCEPT_ENCODING)
        .map(Encoding::negotiate)
        .unwrap_or(Encoding::Identity);
    let blob = match state.store.get(&digest, range).await {
        Ok(b) => b,
        Err(CasError::RangeNotSatisfiable { size }) => {
            let mut e = ApiError::new(
                416,
                "range_not_satisfiable",
                format!("the range does not overlap the blob's {size} bytes"),
            );
            e.headers.push((header::CONTENT_RANGE, format!("bytes */{size}")));
            return Err(e);
        }
        Err(e) => {
            Metrics::lookup("cas", !matches!(e, CasError::NotFound { .. }));
            return Err(e.into());
        }
    };
    Metrics::lookup("cas", true);
    let mut resp = Response::builder()
        .header(header::ETAG, tag)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::VARY, "Accept-Encoding");
    let len = blob.range.end - blob.range.start;
    if range.is_some() {
        resp = resp.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{}", blob.range.start, blob.range.end - 1, blob.size),
        );
    }
    let encoding = if range.is_none() && len >= MIN_WIRE_COMPRESS {
        accept
    } else {
        Encoding::Identity
    };
    let stream = if encoding == Encoding::Identity {
        resp = resp.header(header::CONTENT_LENGTH, len);
        blob.body
    } else {
        resp = resp.header(header::CONTENT_ENCODING, encoding.as_str());
        encode_stream(encoding, state.config.compression_level.max(1), blob.body)
    };
    Ok(resp
        .body(body::stream(counted(stream, Metrics::bytes_out)))
        .expect("valid response"))
}

async fn put(state: &AppState, digest: Digest, req: Request<Incoming>) -> HandlerResult {
    let headers = req.headers();
    let encoding = match header_str(headers, header::CONTENT_ENCODING) {
        None => Encoding::Identity,
        Some(v) => Encoding::parse(v).ok_or_else(|| {
            ApiError::new(
                415,
                "unsupported_encoding",
                format!("Content-Encoding {v:?} is not supported; use zstd, lz4 or identity"),
            )
        })?,
    };
    let content_length: Option<u64> = match header_str(headers, header::CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| ApiError::bad_request("invalid_length", format!("bad Content-Length {v:?}")))?,
        ),
    };
    let declared: Option<u64> = match header_str(headers, "x-digest-sizebytes") {
        None => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| ApiError::bad_request("invalid_length", format!("bad X-Digest-SizeBytes {v:?}")))?,
        ),
    };
    // The decoded size is known from Content-Length only for identity bodies.
    let size = declared.or(if encoding == Encoding::Identity {
        content_length
    } else {
        None
    });
    let limit = state.config.max_blob_size.0;
    if let Some(n) = size.filter(|n| *n > limit) {
        return Err(CasError::TooLarge { size: n, limit }.into());
    }
    let expects_continue = header_str(headers, header::EXPECT).is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    // The client waits for our go-ahead: when we have the blob, say so instead. Asked of the
    // local tier only: a remote outage must never hold up or fail an upload the local tier takes.
    // A record the local tier cannot read counts as absent here: the upload replaces it.
    if expects_continue && matches!(state.local.stat(&digest).await, Ok(Some(_))) {
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::ETAG, etag(&digest))
            .body(body::empty())
            .expect("valid"));
    }
    let _slot = upload_slot(state)?;
    let stream = decode_stream(
        encoding,
        counted(
            request_stream(req.into_body(), state.limits.body_idle),
            Metrics::bytes_in,
        ),
    );
    let outcome = state.store.put(&digest, size, stream).await.map_err(|e| {
        if let CasError::DigestMismatch { expected, actual } = &e {
            tracing::warn!(target: "security", %expected, %actual, "upload refused: digest mismatch");
        }
        ApiError::from(e)
    })?;
    let status = match outcome {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Existed => StatusCode::OK,
    };
    Ok(Response::builder()
        .status(status)
        .header(header::ETAG, etag(&digest))
        .body(body::empty())
        .expect("valid"))
}

async fn delete(state: &AppState, digest: Digest) -> HandlerResult {
    if state.store.delete(&digest).await? {
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(body::empty())
            .expect("valid"))
    } else {
        Err(CasError::not_found(format!("blob {digest}")).into())
    }
}

/// `POST /v1/blobs:missing`.
pub async fn missing(state: &AppState, req: Request<Incoming>) -> HandlerResult {
    // 10,000 digests of 66 JSON bytes each fit well within 1 MiB.
    let raw = collect_limited(req.into_body(), 1 << 20).await?;
    let parsed: MissingRequest = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("expected {{\"digests\": [\"<64 hex>\", ...]}}: {e}"),
        )
    })?;
    if parsed.digests.len() > MAX_MISSING_DIGESTS {
        return Err(ApiError::bad_request(
            "too_many_digests",
            format!(
                "{} digests in one call; the limit is {MAX_MISSING_DIGESTS}",
                parsed.digests.len()
            ),
        ));
    }
    let missing = state.store.find_missing(&parsed.digests).await?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::json(&MissingResponse { missing }))
        .expect("valid"))
}

/// `POST /v1/blobs:batch`: frames are decoded and stored as they arrive.
pub async fn batch(state: &AppState, req: Request<Incoming>) -> HandlerResult {
    let _slot = upload_slot(state)?;
    let mut body = request_stream(req.into_body(), state.limits.body_idle);
    let mut decoder = BatchDecoder::new(MAX_BATCH_FRAME.min(state.config.max_blob_size.0));
    let mut results = Vec::new();
    loop {
        while let Some(frame) = decoder
            .next_frame()
            .map_err(|e| ApiError::bad_request("invalid_frame", e))?
        {
            let actual = Digest::of_blake3(&frame.data);
            let result = if actual != frame.digest {
                BatchResult {
                    digest: frame.digest,
                    status: 400,
                    error: Some("digest_mismatch".into()),
                }
            } else {
                let size = frame.data.len() as u64;
                match state
                    .store
                    .put(&frame.digest, Some(size), bytes_stream(frame.data))
                    .await
                {
                    Ok(PutOutcome::Created) => BatchResult {
                        digest: frame.digest,
                        status: 201,
                        error: None,
                    },
                    Ok(PutOutcome::Existed) => BatchResult {
                        digest: frame.digest,
                        status: 200,
                        error: None,
                    },
                    Err(e) => BatchResult {
                        digest: frame.digest,
                        status: e.status(),
                        error: Some(e.code().into()),
                    },
                }
            };
            results.push(result);
        }
        match body.next().await {
            Some(Ok(chunk)) => {
                Metrics::bytes_in(chunk.len() as u64);
                decoder.push(&chunk);
            }
            Some(Err(e)) => return Err(ApiError::bad_request("bad_body", e.to_string())),
            None => break,
        }
    }
    decoder
        .finish()
        .map_err(|e| ApiError::bad_request("invalid_frame", e))?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::json(&BatchResponse { results }))
        .expect("valid"))
}
