//! The WebDAV subset that WebDAV cache clients use (sccache through opendal's `webdav`
//! service): `PROPFIND` with `Depth: 0` or `1` (207 Multi-Status), `MKCOL`, `OPTIONS`, on the
//! `/kv/{namespace}/` paths whose `GET/HEAD/PUT/DELETE` are [`super::kv`]'s.
//!
//! Directories are implied by the keys below them, as in object stores: every path that ends
//! in `/` is a collection (empty until a key is written below it), `MKCOL` creates nothing and
//! answers 201 (405 where a key already names a value), and a path without the `/` is a
//! collection when keys exist below it. `Depth: infinity` (or no `Depth`) is refused with 403
//! (`propfind-finite-depth`, RFC 4918 §9.1): a whole namespace is not walked in one answer.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::HandlerResult;
use crate::http::body::{self, collect_limited};
use crate::http::error::ApiError;
use crate::http::server::AppState;
use crate::kv::{DirPath, KeyPath, KvEntry, KvKey, Listed, Namespace, MAX_LIST};

/// Methods every `/kv/` path answers (the `Allow` of `OPTIONS`).
pub const ALLOW: &str = "GET, HEAD, PUT, DELETE, OPTIONS, PROPFIND, MKCOL";

fn http_date(unix_secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_secs))
}

/// One `<D:response>` of a collection.
fn collection_xml(out: &mut String, href: &str, name: &str) {
    let now = httpdate::fmt_http_date(SystemTime::now());
    let _ = write!(
        out,
        "<D:response><D:href>{href}</D:href><D:propstat><D:prop>\
         <D:displayname>{name}</D:displayname><D:getlastmodified>{now}</D:getlastmodified>\
         <D:resourcetype><D:collection/></D:resourcetype>\
         </D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
    );
}

/// One `<D:response>` of a value.
fn entry_xml(out: &mut String, href: &str, name: &str, e: &KvEntry) {
    let ctype = e.metadata.content_type().unwrap_or("application/octet-stream");
    let _ = write!(
        out,
        "<D:response><D:href>{href}</D:href><D:propstat><D:prop>\
         <D:displayname>{name}</D:displayname><D:getcontentlength>{}</D:getcontentlength>\
         <D:getlastmodified>{}</D:getlastmodified><D:getetag>{}</D:getetag>\
         <D:getcontenttype>{}</D:getcontenttype><D:resourcetype></D:resourcetype>\
         </D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>",
        e.size,
        http_date(e.stored_at),
        xml_escape(&e.etag()),
        xml_escape(ctype),
    );
}

/// Escapes text for XML content. Hrefs and names need none: keys are made of URL-safe bytes
/// that XML leaves alone (see [`crate::kv::key`]).
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn last_segment(path: &str) -> &str {
    let p = path.strip_suffix('/').unwrap_or(path);
    p.rsplit('/').next().unwrap_or(p)
}

fn multistatus(responses: &str) -> HandlerResult {
    Ok(Response::builder()
        .status(StatusCode::MULTI_STATUS)
        .header(header::CONTENT_TYPE, "application/xml; charset=utf-8")
        .body(body::full(format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<D:multistatus xmlns:D=\"DAV:\">{responses}</D:multistatus>"
        )))
        .expect("valid"))
}

fn not_found(ns: &Namespace, path: &str) -> ApiError {
    ApiError::new(404, "not_found", format!("nothing at /kv/{ns}/{path}"))
}

/// Handles `OPTIONS`, `PROPFIND` and `MKCOL` on `/kv/{ns}/{path}`.
pub async fn handle(state: &AppState, ns: &Namespace, path: &str, req: Request<Incoming>) -> HandlerResult {
    match req.method().as_str() {
        "OPTIONS" => Ok(Response::builder()
            .header(header::ALLOW, ALLOW)
            .header("DAV", "1")
            .header(header::CONTENT_LENGTH, 0)
            .body(body::empty())
            .expect("valid")),
        "MKCOL" => mkcol(state, ns, path, req).await,
        _ => propfind(state, ns, path, req).await,
    }
}

async fn mkcol(state: &AppState, ns: &Namespace, path: &str, req: Request<Incoming>) -> HandlerResult {
    let dir = DirPath::parse(path)?;
    let has_body = super::kv::content_length(req.headers())?.is_some_and(|n| n > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    if has_body {
        return Err(ApiError::new(415, "unsupported_media_type", "MKCOL takes no body"));
    }
    if dir == DirPath::root() {
        return Err(ApiError::method_not_allowed(req.method(), ALLOW)
            .with_message(format!("/kv/{ns}/ exists: it is the namespace")));
    }
    let file = dir.as_str().trim_end_matches('/');
    let key = KvKey {
        namespace: ns.clone(),
        path: KeyPath::parse(file)?,
    };
    if state.kv.head(&key).await?.is_some() {
        return Err(ApiError::method_not_allowed(req.method(), ALLOW)
            .with_message(format!("/kv/{key} is a value, not a collection")));
    }
    Ok(Response::builder()
        .status(StatusCode::CREATED)
        .body(body::empty())
        .expect("valid"))
}

async fn propfind(state: &AppState, ns: &Namespace, path: &str, req: Request<Incoming>) -> HandlerResult {
    let depth = match req.headers().get("depth").map(|v| v.to_str().unwrap_or("?").trim()) {
        Some("0") => 0,
        Some("1") => 1,
        Some(d) if d.eq_ignore_ascii_case("infinity") => return Err(infinite_depth()),
        None => return Err(infinite_depth()),
        Some(d) => {
            return Err(ApiError::bad_request(
                "invalid_header",
                format!("Depth {d:?}: use 0 or 1"),
            ))
        }
    };
    // The body asks for properties; every answer carries the same few, so it is read and dropped.
    collect_limited(req.into_body(), 64 << 10).await?;
    let base = format!("/kv/{ns}/");
    let mut out = String::new();
    let dir = if path.is_empty() || path.ends_with('/') {
        DirPath::parse(path)?
    } else {
        let key = KvKey {
            namespace: ns.clone(),
            path: KeyPath::parse(path)?,
        };
        if let Some(entry) = state.kv.head(&key).await? {
            entry_xml(&mut out, &format!("{base}{path}"), last_segment(path), &entry);
            return multistatus(&out);
        }
        let dir = DirPath::parse(path)?;
        let below = state.kv.list(ns, dir.as_str(), true, None, 1).await?;
        if below.items.is_empty() {
            return Err(not_found(ns, path));
        }
        dir
    };
    let name = if dir == DirPath::root() {
        ns.as_str()
    } else {
        last_segment(dir.as_str())
    };
    collection_xml(&mut out, &format!("{base}{}", dir.as_str()), name);
    if depth == 1 {
        let listing = state.kv.list(ns, dir.as_str(), true, None, MAX_LIST).await?;
        if listing.truncated {
            tracing::warn!(namespace = %ns, dir = dir.as_str(), "PROPFIND listing cut at {MAX_LIST} items");
        }
        for item in &listing.items {
            match item {
                Listed::Dir(p) => collection_xml(&mut out, &format!("{base}{p}"), last_segment(p)),
                Listed::Entry { path, entry } => {
                    entry_xml(&mut out, &format!("{base}{path}"), last_segment(path), entry)
                }
            }
        }
    }
    multistatus(&out)
}

fn infinite_depth() -> ApiError {
    ApiError::new(
        403,
        "propfind_finite_depth",
        "PROPFIND needs Depth: 0 or Depth: 1 (a whole namespace is not listed in one answer)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_escapes() {
        assert_eq!(last_segment("a/b/c"), "c");
        assert_eq!(last_segment("a/b/"), "b");
        assert_eq!(last_segment("c"), "c");
        assert_eq!(xml_escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
