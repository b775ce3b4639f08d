//! The server's audit trail: `[audit] log, key, key_file, syslog` (and `CAS_AUDIT_LOG`,
//! `CAS_AUDIT_KEY`) open the sdk's hash-chained [`AuditLog`]; [`after_request`] turns an
//! answered request into an event. `cas-server audit verify|report FILE` reads it back.
//!
//! Events: `START`/`STOP`, `CONFIG_LOAD`, `CONFIG_CHANGE` (token reload on SIGHUP),
//! `AUTH_FAILURE` (401/403), `SECURITY_VIOLATION` (an upload whose bytes do not hash to its
//! name), `CACHE_HIT`/`CACHE_MISS` (action-cache reads), `CACHE_STORE` (new blobs and action
//! results), `BLOB_DELETE` and `BACKUP`. gRPC calls count the same way: `GetActionResult` hits
//! and misses, `UpdateActionResult`, and ByteStream writes that stored a new blob. Blob reads are
//! not audited one by one: they are the bulk of the traffic and are counted in the metrics instead.

use std::path::PathBuf;

use reprovm_sdk::audit::{AuditConfig, AuditError, AuditLog, Event, EventKind};
use serde::{Deserialize, Serialize};

/// `[audit]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// The log file; none = no audit log.
    pub log: Option<PathBuf>,
    /// The chain key (64 hex digits or a passphrase); none = the key file.
    pub key: Option<String>,
    /// The key file [default: `<log>.key`, created 0600].
    pub key_file: Option<PathBuf>,
    /// Copy each line to this local syslog socket (e.g. `/dev/log`).
    pub syslog: Option<PathBuf>,
}

/// Opens the configured log (or a disabled one).
pub fn open(s: &AuditSettings) -> Result<AuditLog, AuditError> {
    match &s.log {
        None => Ok(AuditLog::disabled()),
        Some(path) => AuditLog::open(&AuditConfig {
            path: path.clone(),
            key: s.key.clone(),
            key_file: s.key_file.clone(),
            syslog: s.syslog.clone(),
            app: "cas-server".into(),
            capacity: 0,
        }),
    }
}

/// The event an answered request makes, if any. `error` is the error code of a refused request.
pub fn after_request(
    log: &AuditLog,
    user: &str,
    route: &str,
    method: &http::Method,
    path: &str,
    status: u16,
    error: Option<&str>,
) {
    use EventKind as K;
    if !log.enabled() {
        return;
    }
    let ok = (200..400).contains(&status);
    let kind = match (route, method.as_str(), status) {
        (_, _, 401 | 403) => K::AuthFailure,
        _ if error == Some("digest_mismatch") => K::SecurityViolation,
        ("ac" | "bazel_ac" | "kv", "GET" | "HEAD", 200) | ("grpc_get_action_result", _, 200) => K::CacheHit,
        ("ac" | "bazel_ac" | "kv", "GET" | "HEAD", 404) | ("grpc_get_action_result", _, 404) => K::CacheMiss,
        ("blobs" | "bazel_cas" | "grpc_bytestream_write", "PUT" | "POST", 201)
        | ("ac" | "bazel_ac", "PUT", _)
        | ("kv", "PUT", 201 | 204)
        | ("grpc_update_action_result", _, _) => K::CacheStore,
        ("blobs", "DELETE", _) => K::BlobDelete,
        ("admin_backups", "POST", _) => K::Backup,
        _ => return,
    };
    let details = match error {
        Some(code) => format!("status {status} {code}"),
        None => format!("status {status}"),
    };
    log.record(
        Event::new(kind, user, path, method.as_str())
            .success(ok && kind != K::SecurityViolation)
            .details(details),
    );
}
