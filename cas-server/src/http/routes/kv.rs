//! Key-value namespaces: `GET/HEAD/PUT/DELETE /kv/{namespace}/{key}` (the layer is
//! [`crate::kv`]), and the WebDAV methods on the same paths ([`super::webdav`]).
//!
//! The helpers here ([`put_value`], [`value_response`], and `ApiError: From<KvError>`) are what
//! the protocol routes built on the key-value layer use to take and give values over HTTP.

use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use reprovm_sdk::error::CasError;

use super::HandlerResult;
use crate::http::body::{self, request_stream, Body};
use crate::http::error::ApiError;
use crate::http::server::AppState;
use crate::kv::{KvError, KvKey, KvValue, Metadata, Namespace, PutCondition, Stored};

impl From<KvError> for ApiError {
    fn from(e: KvError) -> Self {
        match e {
            KvError::InvalidKey(m) => ApiError::bad_request("invalid_key", m),
            KvError::InvalidMetadata(m) => ApiError::bad_request("invalid_metadata", m),
            e @ KvError::Exists(_) => ApiError::new(409, "exists", e.to_string()),
            KvError::Store(e) => e.into(),
        }
    }
}

fn header_str<'h>(headers: &'h HeaderMap, name: &header::HeaderName) -> Result<Option<&'h str>, ApiError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::bad_request("invalid_header", format!("{name} must be ASCII")))
        })
        .transpose()
}

/// The `Content-Length` of a request, if it has one (400 when it does not parse).
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    header_str(headers, &header::CONTENT_LENGTH)?
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| ApiError::bad_request("invalid_length", format!("bad Content-Length {v:?}")))
        })
        .transpose()
}

/// Streams a request body into `key` with `metadata`: the declared size is checked against the
/// limit before any byte is read (413, and a client waiting on `Expect: 100-continue` is
/// answered without being told to send), chunked bodies are checked as they stream, and only
/// identity bodies are taken (415 for a `Content-Encoding`). Holds an upload slot while it reads.
pub async fn put_value(
    state: &AppState,
    key: &KvKey,
    req: Request<Incoming>,
    metadata: Metadata,
    cond: PutCondition,
) -> Result<Stored, ApiError> {
    let headers = req.headers();
    if let Some(enc) = header_str(headers, &header::CONTENT_ENCODING)?.filter(|e| !e.eq_ignore_ascii_case("identity")) {
        return Err(ApiError::new(
            415,
            "unsupported_encoding",
            format!("Content-Encoding {enc:?} is not taken on /kv/ values; send the bytes as they are"),
        ));
    }
    let size = content_length(headers)?;
    let limit = state.kv.max_value_size();
    if let Some(n) = size.filter(|n| *n > limit) {
        return Err(CasError::TooLarge { size: n, limit }.into());
    }
    let _slot = super::blobs::upload_slot(state)?;
    let body = request_stream(req.into_body(), state.limits.body_idle);
    Ok(state.kv.put(key, size, metadata, body, cond).await?)
}

/// The answer carrying a value: `Content-Length`, `ETag` (the value's digest), `Last-Modified`,
/// `Content-Type` (the stored one, else `application/octet-stream`); an empty body for HEAD.
/// `extra` headers (a protocol's attributes) are added as they are.
pub fn value_response(value: KvValue, head: bool, extra: &[(&str, &str)]) -> Response<Body> {
    let entry = &value.entry;
    let mut resp = Response::builder()
        .header(header::CONTENT_LENGTH, entry.size)
        .header(header::ETAG, entry.etag())
        .header(
            header::LAST_MODIFIED,
            httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(entry.stored_at)),
        )
        .header(
            header::CONTENT_TYPE,
            entry.metadata.content_type().unwrap_or("application/octet-stream"),
        );
    for (k, v) in extra {
        resp = resp.header(*k, *v);
    }
    let b = if head { body::empty() } else { body::stream(value.body) };
    resp.body(b).expect("valid response")
}

/// The metadata a plain PUT stores: its `Content-Type`, when it sent one.
fn put_metadata(headers: &HeaderMap) -> Result<Metadata, ApiError> {
    let mut m = Metadata::new();
    if let Some(ct) = header_str(headers, &header::CONTENT_TYPE)? {
        m.insert(crate::kv::entry::CONTENT_TYPE, ct.trim())?;
    }
    Ok(m)
}

/// Dispatches `/kv/{namespace}/{key}` by method; `key` is what follows the namespace (slashes
/// right after it are dropped: WebDAV clients configured with a trailing `/` send `//`).
pub async fn entry(state: &AppState, namespace: &str, key: &str, req: Request<Incoming>) -> HandlerResult {
    let ns = Namespace::parse(namespace)?;
    let method = req.method().clone();
    if method == Method::OPTIONS || method.as_str() == "PROPFIND" || method.as_str() == "MKCOL" {
        return super::webdav::handle(state, &ns, key, req).await;
    }
    if key.is_empty() || key.ends_with('/') {
        return Err(ApiError::bad_request(
            "invalid_key",
            format!("{method} needs a key after /kv/{ns}/ (list a directory with PROPFIND)"),
        ));
    }
    let key = KvKey {
        namespace: ns,
        path: crate::kv::KeyPath::parse(key)?,
    };
    match method {
        Method::PUT => {
            let metadata = put_metadata(req.headers())?;
            let stored = put_value(state, &key, req, metadata, PutCondition::Always).await?;
            let status = if stored.replaced {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::CREATED
            };
            Ok(Response::builder()
                .status(status)
                .header(header::ETAG, stored.entry.etag())
                .body(body::empty())
                .expect("valid"))
        }
        Method::DELETE => {
            if state.kv.delete(&key).await? {
                Ok(Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(body::empty())
                    .expect("valid"))
            } else {
                Err(CasError::not_found(format!("key {key}")).into())
            }
        }
        Method::HEAD => {
            let entry = state.kv.head(&key).await?;
            let entry = entry.ok_or_else(|| CasError::not_found(format!("key {key}")))?;
            let empty = KvValue {
                entry,
                body: reprovm_sdk::cas::bytes_stream(bytes::Bytes::new()),
            };
            Ok(value_response(empty, true, &[]))
        }
        _ => {
            let value = state.kv.get(&key).await?;
            let value = value.ok_or_else(|| CasError::not_found(format!("key {key}")))?;
            Ok(value_response(value, false, &[]))
        }
    }
}
