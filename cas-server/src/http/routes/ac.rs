//! Action cache: `GET/HEAD/PUT /v1/ac/{key}` (and bazel's `/ac/{sha256}`).
//! Values are opaque bytes of at most 4 MiB.

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use reprovm_sdk::digest::Digest;
use reprovm_sdk::error::CasError;
use reprovm_sdk::proto::MAX_AC_VALUE;

use super::HandlerResult;
use crate::http::body::{self, collect_limited};
use crate::http::server::AppState;
use crate::metrics::Metrics;

/// Dispatches one action-cache entry by method.
pub async fn entry(state: &AppState, key: Digest, req: Request<Incoming>) -> HandlerResult {
    if req.method() == Method::PUT {
        let value = collect_limited(req.into_body(), MAX_AC_VALUE).await?;
        Metrics::bytes_in(value.len() as u64);
        state.store.ac_put(&key, value).await?;
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .body(body::empty())
            .expect("valid"));
    }
    let value = state.store.ac_get(&key).await?;
    Metrics::lookup("ac", value.is_some());
    let value = value.ok_or_else(|| CasError::not_found(format!("action {key}")))?;
    let resp = Response::builder()
        .header(header::CONTENT_LENGTH, value.len())
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if req.method() == Method::HEAD {
        return Ok(resp.body(body::empty()).expect("valid"));
    }
    Metrics::bytes_out(value.len() as u64);
    Ok(resp.body(body::full(value)).expect("valid"))
}
