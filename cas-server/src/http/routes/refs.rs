//! Named refs: `GET/HEAD/PUT/DELETE /v1/refs/{name}` with ETag
//! compare-and-swap (`If-Match: "<etag>"`, `If-None-Match: *`), and
//! `GET /v1/refs?prefix=` listing.

use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use reprovm_sdk::cas::RefCondition;
use reprovm_sdk::error::CasError;
use reprovm_sdk::proto::{validate_ref_name, RefList, MAX_REF_VALUE};

use super::HandlerResult;
use crate::http::body::{self, collect_limited};
use crate::http::error::ApiError;
use crate::http::server::AppState;

fn condition(headers: &HeaderMap) -> Result<RefCondition, ApiError> {
    let get = |n: header::HeaderName| headers.get(n).map(|v| v.to_str().map(|s| s.trim().to_string()));
    let bad = |_| ApiError::bad_request("invalid_header", "conditional headers must be ASCII");
    match (
        get(header::IF_MATCH).transpose().map_err(bad)?,
        get(header::IF_NONE_MATCH).transpose().map_err(bad)?,
    ) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "invalid_header",
            "send If-Match or If-None-Match, not both",
        )),
        (Some(tag), None) => Ok(RefCondition::IfMatch(tag.trim_matches('"').to_string())),
        (None, Some(v)) if v == "*" => Ok(RefCondition::IfAbsent),
        (None, Some(_)) => Err(ApiError::bad_request(
            "invalid_header",
            "only If-None-Match: * is supported on refs",
        )),
        (None, None) => Ok(RefCondition::Always),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    validate_ref_name(name).map_err(|m| ApiError::bad_request("invalid_ref_name", m))
}

/// Dispatches one ref by method.
pub async fn entry(state: &AppState, name: &str, req: Request<Incoming>) -> HandlerResult {
    check_name(name)?;
    match *req.method() {
        Method::PUT => {
            let cond = condition(req.headers())?;
            let value = collect_limited(req.into_body(), MAX_REF_VALUE).await?;
            let etag = state.store.ref_put(name, value, cond).await?;
            Ok(Response::builder()
                .status(StatusCode::OK)
                .header(header::ETAG, format!("\"{etag}\""))
                .body(body::empty())
                .expect("valid"))
        }
        Method::DELETE => {
            let cond = condition(req.headers())?;
            if state.store.ref_delete(name, cond).await? {
                Ok(Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(body::empty())
                    .expect("valid"))
            } else {
                Err(CasError::not_found(format!("ref {name}")).into())
            }
        }
        _ => {
            let value = state
                .store
                .ref_get(name)
                .await?
                .ok_or_else(|| CasError::not_found(format!("ref {name}")))?;
            let resp = Response::builder()
                .header(header::ETAG, format!("\"{}\"", value.etag))
                .header(header::CONTENT_LENGTH, value.value.len())
                .header(header::CONTENT_TYPE, "application/octet-stream");
            let b = if req.method() == Method::HEAD {
                body::empty()
            } else {
                body::full(value.value)
            };
            Ok(resp.body(b).expect("valid"))
        }
    }
}

/// `GET /v1/refs?prefix=`.
pub async fn list(state: &AppState, req: Request<Incoming>) -> HandlerResult {
    let prefix = req
        .uri()
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "prefix")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    let refs = state.store.ref_list(&prefix).await?;
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::json(&RefList { refs }))
        .expect("valid"))
}
