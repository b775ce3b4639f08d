//! The route table: which handler a path reaches, the methods it takes, and
//! the access each method needs.
//!
//! Authorization is decided from the resolved [`Route`], never from the raw
//! path, so no path can reach a handler with a weaker check than that
//! handler's own row here (bazel's `/cas/` and `/ac/` take any prefix, and a
//! prefix such as `/swagger-ui` or `/health` must not lend them its access).

use http::Method;

use crate::auth::{Access, Role};

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/openapi.yaml`, `/swagger-ui` and its assets.
    Swagger(&'static str, &'static [u8]),
    /// `/health`.
    Health,
    /// `/ready`.
    Ready,
    /// `/metrics`.
    Metrics,
    /// `/metrics/json`.
    MetricsJson,
    /// `/v1/stats`.
    Stats,
    /// `/v1/config`.
    Config,
    /// `POST /v1/blobs:missing`.
    BlobsMissing,
    /// `POST /v1/blobs:batch`.
    BlobsBatch,
    /// `GET /v1/refs?prefix=`.
    RefsList,
    /// `/v1/admin/backups`.
    AdminBackups,
    /// `/v1/blobs/{blake3}`.
    Blob(&'a str),
    /// `/v1/ac/{key}`.
    Ac(&'a str),
    /// `/v1/refs/{name}`.
    Ref(&'a str),
    /// `…/cas/{sha256}`, any prefix.
    BazelCas(&'a str),
    /// `…/ac/{sha256}`, any prefix.
    BazelAc(&'a str),
    /// Nothing here.
    Unknown,
}

/// Splits `…/cas/{hash}` or `…/ac/{hash}` (any prefix, as bazel-remote allows) into kind and hash.
fn bazel_path(path: &str) -> Option<Route<'_>> {
    let (head, hash) = path.rsplit_once('/')?;
    if head.ends_with("/cas") {
        Some(Route::BazelCas(hash))
    } else if head.ends_with("/ac") {
        Some(Route::BazelAc(hash))
    } else {
        None
    }
}

impl<'a> Route<'a> {
    /// The route a path reaches.
    pub fn resolve(path: &'a str) -> Self {
        if let Some((ctype, bytes)) = crate::http::swagger::asset(path) {
            return Self::Swagger(ctype, bytes);
        }
        match path {
            "/health" => return Self::Health,
            "/ready" => return Self::Ready,
            "/metrics" => return Self::Metrics,
            "/metrics/json" => return Self::MetricsJson,
            "/v1/stats" => return Self::Stats,
            "/v1/config" => return Self::Config,
            "/v1/blobs:missing" => return Self::BlobsMissing,
            "/v1/blobs:batch" => return Self::BlobsBatch,
            "/v1/refs" => return Self::RefsList,
            "/v1/admin/backups" => return Self::AdminBackups,
            _ => {}
        }
        if let Some(hash) = path.strip_prefix("/v1/blobs/") {
            return Self::Blob(hash);
        }
        if let Some(key) = path.strip_prefix("/v1/ac/") {
            return Self::Ac(key);
        }
        if let Some(name) = path.strip_prefix("/v1/refs/") {
            return Self::Ref(name);
        }
        bazel_path(path).unwrap_or(Self::Unknown)
    }

    /// The label of the route in metrics and the audit log.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Swagger(..) => "swagger",
            Self::Health => "health",
            Self::Ready => "ready",
            Self::Metrics => "metrics",
            Self::MetricsJson => "metrics_json",
            Self::Stats => "stats",
            Self::Config => "config",
            Self::BlobsMissing => "blobs_missing",
            Self::BlobsBatch => "blobs_batch",
            Self::RefsList | Self::Ref(_) => "refs",
            Self::AdminBackups => "admin_backups",
            Self::Blob(_) => "blobs",
            Self::Ac(_) => "ac",
            Self::BazelCas(_) => "bazel_cas",
            Self::BazelAc(_) => "bazel_ac",
            Self::Unknown => "unknown",
        }
    }

    /// The methods the route answers (others get 405).
    pub fn methods(&self) -> &'static [Method] {
        const RO: &[Method] = &[Method::GET, Method::HEAD];
        match self {
            Self::Swagger(..)
            | Self::Health
            | Self::Ready
            | Self::Metrics
            | Self::MetricsJson
            | Self::Stats
            | Self::Config
            | Self::RefsList => RO,
            Self::BlobsMissing | Self::BlobsBatch => &[Method::POST],
            Self::AdminBackups => &[Method::GET, Method::POST],
            Self::Blob(_) | Self::Ref(_) => &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
            Self::Ac(_) | Self::BazelCas(_) | Self::BazelAc(_) => &[Method::GET, Method::HEAD, Method::PUT],
            Self::Unknown => &[],
        }
    }

    /// What a request with `method` on this route needs.
    pub fn access(&self, method: &Method) -> Access {
        let reads = *method == Method::GET || *method == Method::HEAD;
        let read_or_write = if reads {
            Access::Role(Role::Read)
        } else {
            Access::Role(Role::Write)
        };
        match self {
            // Nothing stored is revealed by these.
            Self::Swagger(..) | Self::Health | Self::Ready => Access::Public,
            Self::Metrics | Self::MetricsJson => Access::Metrics,
            Self::Config | Self::AdminBackups => Access::Role(Role::Admin),
            // Asking which blobs are missing reads, though it is a POST.
            Self::BlobsMissing | Self::Stats | Self::RefsList => Access::Role(Role::Read),
            Self::BlobsBatch => Access::Role(Role::Write),
            // Deleting a blob can break others' builds: admins only. Refs are the writers' own.
            Self::Blob(_) if *method == Method::DELETE => Access::Role(Role::Admin),
            Self::Blob(_) | Self::Ac(_) | Self::Ref(_) | Self::BazelCas(_) | Self::BazelAc(_) => read_or_write,
            // Unknown paths are not told apart from known ones before authentication.
            Self::Unknown => read_or_write,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bazel_prefixes() {
        assert_eq!(Route::resolve("/cas/abc"), Route::BazelCas("abc"));
        assert_eq!(Route::resolve("/instance/x/cas/abc"), Route::BazelCas("abc"));
        assert_eq!(Route::resolve("/swagger-ui/cas/abc"), Route::BazelCas("abc"));
        assert_eq!(Route::resolve("/health/ac/abc"), Route::BazelAc("abc"));
        assert_eq!(Route::resolve("/ac/abc"), Route::BazelAc("abc"));
        assert_eq!(Route::resolve("/cascade/abc"), Route::Unknown);
        assert_eq!(Route::resolve("/nothing"), Route::Unknown);
    }

    #[test]
    fn a_prefix_lends_no_access() {
        for prefix in [
            "/swagger-ui",
            "/health",
            "/ready",
            "/metrics",
            "/openapi.yaml",
            "/v1/admin",
            "/i",
        ] {
            let put = Route::resolve(&format!("{prefix}/cas/abc")).access(&Method::PUT);
            assert_eq!(put, Access::Role(Role::Write), "{prefix}");
            let get = Route::resolve(&format!("{prefix}/ac/abc")).access(&Method::GET);
            assert_eq!(get, Access::Role(Role::Read), "{prefix}");
        }
    }
}
