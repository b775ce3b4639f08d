//! Request routing: one module per endpoint family.
//!
//! | module | paths |
//! |---|---|
//! | [`blobs`] | `/v1/blobs/{blake3}`, `/v1/blobs:missing`, `/v1/blobs:batch`, and bazel's `/cas/{sha256}` |
//! | [`ac`] | `/v1/ac/{key}` and bazel's `/ac/{sha256}` |
//! | [`refs`] | `/v1/refs/{name}`, `/v1/refs?prefix=` |
//! | [`kv`] | `/kv/{namespace}/{key}` (GET/HEAD/PUT/DELETE); [`webdav`]: PROPFIND, MKCOL, OPTIONS there |
//! | [`ops`] | `/health`, `/ready`, `/metrics`, `/metrics/json`, `/v1/stats`, `/v1/config` |
//! | [`admin`] | `/v1/admin/backups` |
//!
//! [`table`] resolves a path to its [`Route`] and says what each route needs;
//! authorization is decided from that route, never from the raw path.

pub mod ac;
pub mod admin;
pub mod blobs;
pub mod kv;
pub mod ops;
pub mod refs;
pub mod table;
pub mod webdav;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use reprovm_sdk::digest::{Digest, HashKind};

use super::body::Body;
use super::error::ApiError;
use super::server::AppState;
pub use table::Route;

/// Result of a handler.
pub type HandlerResult = Result<Response<Body>, ApiError>;

/// Finds the handler for a request; returns the route label (for metrics) and the answer.
pub async fn dispatch(
    state: &AppState,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    cert_role: Option<crate::auth::Role>,
) -> (&'static str, Response<Body>) {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let route = Route::resolve(&path);
    let principal = state
        .auth
        .check_with_cert(route.access(&method), req.headers(), cert_role);
    let user = principal.as_ref().map_or("anonymous", |p| p.name.as_str()).to_string();
    // Every request counts against its IP's bucket, refused ones too; authenticated ones also against the token's.
    let token = principal
        .as_ref()
        .ok()
        .filter(|p| p.name != "anonymous")
        .map(|p| p.name.as_str());
    if let Err(wait) = state.limits.check_rate(peer.ip(), token) {
        let secs = wait.as_secs() + 1;
        let mut e = ApiError::new(429, "rate_limited", format!("too many requests; retry in {secs} s"));
        e.headers.push((http::header::RETRY_AFTER, secs.to_string()));
        return ("rate_limited", e.into_response());
    }
    if let Err(e) = principal {
        tracing::warn!(target: "security", method = %req.method(), path = %path, reason = %e, "request refused");
        drain_small_body(req).await;
        let e = ApiError::from(e);
        let audit = &state.audit;
        crate::audit::after_request(audit, &user, "auth", &method, &path, e.status.as_u16(), Some(e.code));
        return ("auth", e.into_response());
    }
    let result = match check_method(&route, &method) {
        Ok(()) => handle(state, route, req).await,
        Err(e) => Err(e),
    };
    let (status, code) = match &result {
        Ok(r) => (r.status().as_u16(), None),
        Err(e) => (e.status.as_u16(), Some(e.code)),
    };
    crate::audit::after_request(&state.audit, &user, route.label(), &method, &path, status, code);
    (route.label(), result.unwrap_or_else(ApiError::into_response))
}

/// Reads a small refused body (≤ 64 KiB, at most a second) before answering,
/// so that clients still sending it see the answer instead of a reset stream. A client that
/// waits for `100 Continue` is not sent on: it gets the refusal before it sends a byte.
async fn drain_small_body(req: Request<Incoming>) {
    use http_body_util::BodyExt;
    let waits = req
        .headers()
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if waits {
        return;
    }
    let small = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n <= 64 * 1024);
    if small {
        let body = http_body_util::Limited::new(req.into_body(), 64 * 1024);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), body.collect()).await;
    }
}

fn parse_digest(kind: HashKind, s: &str) -> Result<Digest, ApiError> {
    Digest::parse_kind(kind, s).map_err(|e| ApiError::bad_request("invalid_digest", e.to_string()))
}

fn check_method(route: &Route<'_>, method: &Method) -> Result<(), ApiError> {
    let allowed = route.methods();
    if allowed.is_empty() || allowed.contains(method) {
        return Ok(());
    }
    let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    Err(ApiError::method_not_allowed(method, &allow))
}

/// Runs the handler of a resolved route (whose method and access are checked).
async fn handle(state: &AppState, route: Route<'_>, req: Request<Incoming>) -> HandlerResult {
    match route {
        Route::Swagger(ctype, bytes) => Ok(Response::builder()
            .header(http::header::CONTENT_TYPE, ctype)
            .body(super::body::full(bytes::Bytes::from_static(bytes)))
            .expect("valid")),
        Route::Health => ops::health(state).await,
        Route::Ready => ops::ready(state).await,
        Route::Metrics => ops::metrics(state).await,
        Route::MetricsJson => ops::metrics_json(state).await,
        Route::Stats => ops::stats(state).await,
        Route::Config => ops::config(state).await,
        Route::BlobsMissing => blobs::missing(state, req).await,
        Route::BlobsBatch => blobs::batch(state, req).await,
        Route::RefsList => refs::list(state, req).await,
        Route::AdminBackups => admin::backups(state, req).await,
        Route::Blob(hash) => blobs::blob(state, parse_digest(HashKind::Blake3, hash)?, req).await,
        Route::Ac(key) => ac::entry(state, parse_digest(HashKind::Blake3, key)?, req).await,
        Route::Ref(name) => refs::entry(state, name, req).await,
        Route::Kv(ns, key) => kv::entry(state, ns, key, req).await,
        Route::BazelCas(hash) => blobs::blob(state, parse_digest(HashKind::Sha256, hash)?, req).await,
        Route::BazelAc(hash) => ac::entry(state, parse_digest(HashKind::Sha256, hash)?, req).await,
        Route::Unknown => Err(ApiError::no_route(req.uri().path())),
    }
}
