//! Response bodies and request-body helpers.

use bytes::Bytes;
use futures::TryStreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use reprovm_sdk::cas::ByteStream;

use super::error::ApiError;

/// The body type of every response.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// An in-memory body.
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).map_err(|never| match never {}).boxed_unsync()
}

/// A streamed body.
pub fn stream(s: ByteStream) -> Body {
    StreamBody::new(s.map_ok(Frame::data)).boxed_unsync()
}

/// A JSON body.
pub fn json(value: &impl serde::Serialize) -> Body {
    full(serde_json::to_vec(value).expect("serializable"))
}

/// The request body as a byte stream that fails when the client stalls for
/// longer than `idle` between two chunks (a slow client cannot hold an upload slot forever).
pub fn request_stream(body: Incoming, idle: std::time::Duration) -> ByteStream {
    let inner = body.into_data_stream().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            format!("reading request body: {e}"),
        )
    });
    Box::pin(futures::stream::unfold(Box::pin(inner), move |mut s| async move {
        match tokio::time::timeout(idle, futures::StreamExt::next(&mut s)).await {
            Ok(item) => item.map(|i| (i, s)),
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("request body stalled for {idle:?}"),
                )),
                s,
            )),
        }
    }))
}

/// Collects a request body of at most `limit` bytes (413 beyond).
pub async fn collect_limited(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    // Small bodies only: a client that cannot send one in two minutes is not coming.
    let collected = tokio::time::timeout(std::time::Duration::from_secs(120), limited.collect())
        .await
        .map_err(|_| ApiError::new(408, "timeout", "request body not received in time"))?;
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError::new(
            413,
            "too_large",
            format!("request body exceeds {limit} bytes"),
        )),
        Err(e) => Err(ApiError::new(400, "bad_body", format!("reading request body: {e}"))),
    }
}
