//! The route table: which handler a path reaches, the methods it takes, and
//! the access each method needs.
//!
//! Authorization is decided from the resolved [`Route`], never from the raw
//! path, so no path can reach a handler with a weaker check than that
//! handler's own row here (bazel's `/cas/` and `/ac/` take any prefix, and a
//! prefix such as `/swagger-ui` or `/health` must not lend them its access).

use std::sync::LazyLock;

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
    /// `/kv/{namespace}/{key}`: the namespace, and the rest of the path after it (leading
    /// slashes dropped; empty for the namespace itself).
    Kv(&'a str, &'a str),
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
        // Before the bazel paths: a key may well end in `/cas/{hash}` or `/ac/{hash}`.
        if let Some(rest) = path.strip_prefix("/kv/") {
            let (ns, key) = rest.split_once('/').unwrap_or((rest, ""));
            return Self::Kv(ns, key.trim_start_matches('/'));
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
            Self::Kv(..) => "kv",
            Self::BazelCas(_) => "bazel_cas",
            Self::BazelAc(_) => "bazel_ac",
            Self::Unknown => "unknown",
        }
    }

    /// The methods the route answers (others get 405).
    pub fn methods(&self) -> &'static [Method] {
        const RO: &[Method] = &[Method::GET, Method::HEAD];
        static KV: LazyLock<[Method; 7]> = LazyLock::new(|| {
            let ext = |m: &[u8]| Method::from_bytes(m).expect("a valid method name");
            [
                Method::GET,
                Method::HEAD,
                Method::PUT,
                Method::DELETE,
                Method::OPTIONS,
                ext(b"PROPFIND"),
                ext(b"MKCOL"),
            ]
        });
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
            Self::Kv(..) => &*KV,
            Self::Unknown => &[],
        }
    }

    /// What a request with `method` on this route needs.
    pub fn access(&self, method: &Method) -> Access {
        let reads = *method == Method::GET || *method == Method::HEAD;
        // Asking what a path holds, or what it answers, reads too.
        let kv_reads = reads || *method == Method::OPTIONS || method.as_str() == "PROPFIND";
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
            // Every namespace: readers look (GET, HEAD, PROPFIND, OPTIONS), writers also
            // change (PUT, DELETE, MKCOL).
            Self::Kv(..) if kv_reads => Access::Role(Role::Read),
            Self::Kv(..) => Access::Role(Role::Write),
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
    fn kv_paths_win_over_bazel_prefixes() {
        assert_eq!(Route::resolve("/kv/ns/a/cas/abc"), Route::Kv("ns", "a/cas/abc"));
        assert_eq!(Route::resolve("/kv/ns/ac/abc"), Route::Kv("ns", "ac/abc"));
        assert_eq!(Route::resolve("/kv/ns//x"), Route::Kv("ns", "x"));
        assert_eq!(Route::resolve("/kv/ns/"), Route::Kv("ns", ""));
        assert_eq!(Route::resolve("/kv/ns"), Route::Kv("ns", ""));
        assert_eq!(Route::resolve("/kvx/cas/abc"), Route::BazelCas("abc"));
        let kv = Route::resolve("/kv/ns/k");
        let propfind = Method::from_bytes(b"PROPFIND").unwrap();
        let mkcol = Method::from_bytes(b"MKCOL").unwrap();
        assert_eq!(kv.access(&Method::GET), Access::Role(Role::Read));
        assert_eq!(kv.access(&propfind), Access::Role(Role::Read));
        assert_eq!(kv.access(&Method::PUT), Access::Role(Role::Write));
        assert_eq!(kv.access(&Method::DELETE), Access::Role(Role::Write));
        assert_eq!(kv.access(&mkcol), Access::Role(Role::Write));
        assert_eq!(kv.access(&Method::POST), Access::Role(Role::Write));
        assert!(kv.methods().contains(&propfind) && !kv.methods().contains(&Method::POST));
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
