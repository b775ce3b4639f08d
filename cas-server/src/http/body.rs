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

/// The request body as a byte stream.
pub fn request_stream(body: Incoming) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            format!("reading request body: {e}"),
        )
    }))
}

/// Collects a request body of at most `limit` bytes (413 beyond).
pub async fn collect_limited(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(ApiError::new(
            413,
            "too_large",
            format!("request body exceeds {limit} bytes"),
        )),
        Err(e) => Err(ApiError::new(400, "bad_body", format!("reading request body: {e}"))),
    }
}
