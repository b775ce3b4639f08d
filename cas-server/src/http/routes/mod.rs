//! Request routing: one module per endpoint family.
//!
//! | module | paths |
//! |---|---|
//! | [`blobs`] | `/v1/blobs/{blake3}`, `/v1/blobs:missing`, `/v1/blobs:batch`, and bazel's `/cas/{sha256}` |
//! | [`ac`] | `/v1/ac/{key}` and bazel's `/ac/{sha256}` |
//! | [`refs`] | `/v1/refs/{name}`, `/v1/refs?prefix=` |
//! | [`ops`] | `/health`, `/ready`, `/metrics`, `/metrics/json`, `/v1/stats`, `/v1/config` |
//! | [`admin`] | `/v1/admin/backups` |

pub mod ac;
pub mod admin;
pub mod blobs;
pub mod ops;
pub mod refs;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use reprovm_sdk::digest::{Digest, HashKind};

use super::body::Body;
use super::error::ApiError;
use super::server::AppState;

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
    let principal = state
        .auth
        .check_with_cert(req.method(), &path, req.headers(), cert_role);
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
    let (route, result) = route(state, &path, req).await;
    let (status, code) = match &result {
        Ok(r) => (r.status().as_u16(), None),
        Err(e) => (e.status.as_u16(), Some(e.code)),
    };
    crate::audit::after_request(&state.audit, &user, route, &method, &path, status, code);
    (route, result.unwrap_or_else(ApiError::into_response))
}

/// Reads a small refused body (≤ 64 KiB, at most a second) before answering,
/// so that clients still sending it see the answer instead of a reset stream.
async fn drain_small_body(req: Request<Incoming>) {
    use http_body_util::BodyExt;
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

fn check_method(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) {
        return Ok(());
    }
    let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
    Err(ApiError::method_not_allowed(method, &allow))
}

/// Splits `…/cas/{hash}` or `…/ac/{hash}` (any prefix, as bazel-remote allows) into kind and hash.
fn bazel_path(path: &str) -> Option<(&'static str, &str)> {
    let (head, hash) = path.rsplit_once('/')?;
    if head.ends_with("/cas") || head == "/cas" {
        Some(("cas", hash))
    } else if head.ends_with("/ac") || head == "/ac" {
        Some(("ac", hash))
    } else {
        None
    }
}

async fn route(state: &AppState, path: &str, req: Request<Incoming>) -> (&'static str, HandlerResult) {
    use Method as M;
    let method = req.method().clone();
    let ro = [M::GET, M::HEAD];
    macro_rules! guarded {
        ($label:expr, $allowed:expr, $call:expr) => {
            (
                $label,
                match check_method(&method, &$allowed) {
                    Ok(()) => $call.await,
                    Err(e) => Err(e),
                },
            )
        };
    }
    if let Some((ctype, bytes)) = super::swagger::asset(path) {
        return guarded!("swagger", ro, async {
            Ok(Response::builder()
                .header(http::header::CONTENT_TYPE, ctype)
                .body(super::body::full(bytes::Bytes::from_static(bytes)))
                .expect("valid"))
        });
    }
    match path {
        "/health" => return guarded!("health", ro, ops::health(state)),
        "/ready" => return guarded!("ready", ro, ops::ready(state)),
        "/metrics" => return guarded!("metrics", ro, ops::metrics(state)),
        "/metrics/json" => return guarded!("metrics_json", ro, ops::metrics_json(state)),
        "/v1/stats" => return guarded!("stats", ro, ops::stats(state)),
        "/v1/config" => return guarded!("config", ro, ops::config(state)),
        "/v1/blobs:missing" => return guarded!("blobs_missing", [M::POST], blobs::missing(state, req)),
        "/v1/blobs:batch" => return guarded!("blobs_batch", [M::POST], blobs::batch(state, req)),
        "/v1/refs" => return guarded!("refs", ro, refs::list(state, req)),
        "/v1/admin/backups" => return guarded!("admin_backups", [M::GET, M::POST], admin::backups(state, req)),
        _ => {}
    }
    if let Some(hash) = path.strip_prefix("/v1/blobs/") {
        let allowed = [M::GET, M::HEAD, M::PUT, M::DELETE];
        return guarded!("blobs", allowed, async {
            let d = parse_digest(HashKind::Blake3, hash)?;
            blobs::blob(state, d, req).await
        });
    }
    if let Some(key) = path.strip_prefix("/v1/ac/") {
        return guarded!("ac", [M::GET, M::HEAD, M::PUT], async {
            let d = parse_digest(HashKind::Blake3, key)?;
            ac::entry(state, d, req).await
        });
    }
    if let Some(name) = path.strip_prefix("/v1/refs/") {
        let name = name.to_string();
        return guarded!(
            "refs",
            [M::GET, M::HEAD, M::PUT, M::DELETE],
            refs::entry(state, &name, req)
        );
    }
    match bazel_path(path) {
        Some(("cas", hash)) => guarded!("bazel_cas", [M::GET, M::HEAD, M::PUT], async {
            let d = parse_digest(HashKind::Sha256, hash)?;
            blobs::blob(state, d, req).await
        }),
        Some((_, hash)) => guarded!("bazel_ac", [M::GET, M::HEAD, M::PUT], async {
            let d = parse_digest(HashKind::Sha256, hash)?;
            ac::entry(state, d, req).await
        }),
        None => ("unknown", Err(ApiError::no_route(path))),
    }
}

#[cfg(test)]
mod tests {
    use super::bazel_path;

    #[test]
    fn bazel_prefixes() {
        assert_eq!(bazel_path("/cas/abc"), Some(("cas", "abc")));
        assert_eq!(bazel_path("/instance/x/cas/abc"), Some(("cas", "abc")));
        assert_eq!(bazel_path("/ac/abc"), Some(("ac", "abc")));
        assert_eq!(bazel_path("/cascade/abc"), None);
        assert_eq!(bazel_path("/nothing"), None);
    }
}
