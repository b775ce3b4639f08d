//! Server configuration: serde structs only, loaded from TOML, then `CAS_*`
//! environment variables, then command-line flags (each layer wins over the
//! one before). Unknown keys are refused so that a typo is not silently ignored.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A byte count written as `123`, `"64KiB"`, `"50GiB"`, `"1.5GB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"50GiB"`, `"10 MB"`, `"4096"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected e.g. \"512MiB\" or \"50GiB\""))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1 << 20,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            "t" | "tb" => 1000u64.pow(4),
            "tib" => 1 << 40,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {s:?}: use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB"
                ))
            }
        };
        Ok(Self((num * mult as f64) as u64))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => Self::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// At-rest compression of stored pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Zstandard (default).
    Zstd,
    /// LZ4: faster, compresses less.
    Lz4,
    /// Store raw.
    None,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The whole server configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (HTTP, and gRPC told apart by its content type).
    pub listen: String,
    /// A second address that serves gRPC only (the REAPI cache services); none = gRPC on `listen` only.
    pub grpc_listen: Option<String>,
    /// RocksDB directory.
    pub data_dir: PathBuf,
    /// Size the local store aims to stay under (LRU eviction); none = unbounded.
    pub max_size: Option<ByteSize>,
    /// Uploads that would take the stored bytes past this get 507 (instead of overfilling the disk).
    pub max_size_hard_limit: Option<ByteSize>,
    /// Largest blob accepted (413 beyond).
    pub max_blob_size: ByteSize,
    /// Uploads are refused with 507 when the data dir's filesystem has less free space than this.
    pub min_free_space: ByteSize,
    /// At-rest compression.
    pub compression: Compression,
    /// Compression level (zstd: 1–19).
    pub compression_level: i32,
    /// fsync the write-ahead log before acknowledging an upload (survives power loss, not only crashes).
    pub sync_writes: bool,
    /// Log level filter (`info`, `debug`, `cas_server=debug,info`...).
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Seconds to wait for in-flight requests on shutdown.
    pub shutdown_grace_secs: u64,
    /// Remote tier (object storage).
    pub remote: Option<RemoteConfig>,
    /// Authentication.
    pub auth: AuthConfig,
    /// TLS.
    pub tls: Option<TlsConfig>,
    /// Rate limits, timeouts and caps.
    pub limits: LimitsConfig,
    /// Default directory of online backups (`POST /v1/admin/backups`); none = `cas-backups` beside `data_dir`.
    pub backup_dir: Option<PathBuf>,
    /// `[audit]`: the hash-chained audit log.
    pub audit: crate::audit::AuditSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            grpc_listen: None,
            data_dir: PathBuf::from("./cas-data"),
            max_size: None,
            max_size_hard_limit: None,
            max_blob_size: ByteSize(8 << 30),
            min_free_space: ByteSize(64 << 20),
            compression: Compression::Zstd,
            compression_level: 1,
            sync_writes: false,
            log_level: "info".into(),
            log_format: LogFormat::Pretty,
            max_connections: 4096,
            shutdown_grace_secs: 30,
            remote: None,
            auth: AuthConfig::default(),
            tls: None,
            limits: LimitsConfig::default(),
            backup_dir: None,
            audit: Default::default(),
        }
    }
}

/// `[remote]`: the object-storage tier.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// `s3://bucket/prefix`, `az://…`, `gs://…`, `http(s)://…`, `file:///dir`.
    pub url: String,
    /// Custom endpoint (S3-compatible servers).
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Allow plain HTTP endpoints.
    pub allow_http: bool,
    /// `write-behind` (default), `write-through` or `read-only`.
    pub mode: crate::store::tiered::RemoteMode,
    /// Access key (else from the provider's usual environment variables).
    pub access_key_id: Option<String>,
    /// Secret key.
    pub secret_access_key: Option<String>,
    /// Concurrent uploads of the write-behind queue.
    pub uploaders: usize,
    /// Longest wait between retries of a failing remote, in seconds.
    pub max_retry_backoff_secs: u64,
    /// Extra `object_store` configuration keys, passed as they are (e.g. `azure_storage_use_emulator`).
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            endpoint: None,
            region: None,
            allow_http: false,
            mode: Default::default(),
            access_key_id: None,
            secret_access_key: None,
            uploaders: 8,
            max_retry_backoff_secs: 30,
            options: Default::default(),
        }
    }
}

/// `[auth]`. With no tokens at all (none here, no token file) the server is
/// open to everyone, as a local cache; once any token exists, every request
/// but `/health` (and `/metrics` when `metrics_public`) needs one.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Let requests without credentials read.
    pub allow_anonymous_read: bool,
    /// Serve `/metrics` and `/metrics/json` without credentials.
    pub metrics_public: bool,
    /// Known tokens.
    pub tokens: Vec<TokenConfig>,
    /// A TOML file of `[[tokens]]` entries, re-read on SIGHUP.
    pub token_file: Option<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            allow_anonymous_read: false,
            metrics_public: true,
            tokens: Vec::new(),
            token_file: None,
        }
    }
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Name shown in logs.
    pub name: String,
    /// The secret.
    pub token: String,
    /// `read`, `write` or `admin`.
    pub role: String,
}

/// `[tls]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA bundle: clients presenting a certificate it signed get `client_cert_role` (mTLS).
    /// Clients without a certificate are still accepted and authenticate with tokens.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Role of clients authenticated by certificate: `read`, `write` or `admin`.
    #[serde(default = "default_cert_role")]
    pub client_cert_role: String,
}

fn default_cert_role() -> String {
    "read".into()
}

/// `[limits]`: protection against floods and slow clients.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests per second allowed from one IP address (token bucket; 429 beyond). None = unlimited.
    pub per_ip_rps: Option<u32>,
    /// Requests per second allowed for one token. None = unlimited.
    pub per_token_rps: Option<u32>,
    /// Bucket size: requests allowed in a burst above the rate.
    pub burst: u32,
    /// Uploads in flight at once (503 with Retry-After beyond).
    pub max_inflight_uploads: usize,
    /// Seconds a client may take to send its request headers.
    pub header_timeout_secs: u64,
    /// Seconds a request body may stall between two chunks.
    pub body_idle_timeout_secs: u64,
    /// Largest request head (HTTP/1 read buffer / HTTP/2 header list), bytes.
    pub max_header_bytes: usize,
    /// Seconds a TLS handshake may take.
    pub tls_handshake_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_ip_rps: None,
            per_token_rps: None,
            burst: 100,
            max_inflight_uploads: 1024,
            header_timeout_secs: 10,
            body_idle_timeout_secs: 60,
            max_header_bytes: 64 * 1024,
            tls_handshake_timeout_secs: 10,
        }
    }
}

/// Errors loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message with line and column.
        message: String,
    },
    /// An environment variable has a bad value.
    #[error("invalid value {value:?} in environment variable {var}: {message}")]
    Env {
        /// Variable name.
        var: &'static str,
        /// Its value.
        value: String,
        /// Why.
        message: String,
    },
}

impl Config {
    /// Parses TOML text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Applies `CAS_*` variables from `env` (a lookup, so tests need not touch the process environment).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn bad(var: &'static str, value: &str, message: impl ToString) -> ConfigError {
            ConfigError::Env {
                var,
                value: value.to_string(),
                message: message.to_string(),
            }
        }
        fn parse_bool(var: &'static str, v: &str) -> Result<bool, ConfigError> {
            match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(bad(var, v, "expected true or false")),
            }
        }
        fn parse_enum<T: serde::de::DeserializeOwned>(var: &'static str, v: &str) -> Result<T, ConfigError> {
            T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(v))
                .map_err(|e| bad(var, v, e))
        }
        let size = |var: &'static str, v: &str| ByteSize::parse(v).map_err(|e| bad(var, v, e));
        let num = |var: &'static str, v: &str| v.parse::<u64>().map_err(|e| bad(var, v, e));
        if let Some(v) = env("CAS_AUDIT_LOG") {
            self.audit.log = Some(v.into());
        }
        if let Some(v) = env("CAS_AUDIT_KEY") {
            self.audit.key = Some(v);
        }
        if let Some(v) = env("CAS_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = env("CAS_GRPC_LISTEN") {
            self.grpc_listen = Some(v);
        }
        if let Some(v) = env("CAS_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = env("CAS_MAX_SIZE") {
            self.max_size = Some(size("CAS_MAX_SIZE", &v)?);
        }
        if let Some(v) = env("CAS_MAX_BLOB_SIZE") {
            self.max_blob_size = size("CAS_MAX_BLOB_SIZE", &v)?;
        }
        if let Some(v) = env("CAS_MIN_FREE_SPACE") {
            self.min_free_space = size("CAS_MIN_FREE_SPACE", &v)?;
        }
        if let Some(v) = env("CAS_COMPRESSION") {
            self.compression = parse_enum("CAS_COMPRESSION", &v)?;
        }
        if let Some(v) = env("CAS_COMPRESSION_LEVEL") {
            self.compression_level = num("CAS_COMPRESSION_LEVEL", &v)? as i32;
        }
        if let Some(v) = env("CAS_SYNC_WRITES") {
            self.sync_writes = parse_bool("CAS_SYNC_WRITES", &v)?;
        }
        if let Some(v) = env("CAS_LOG_LEVEL") {
            self.log_level = v;
        }
        if let Some(v) = env("CAS_LOG_FORMAT") {
            self.log_format = parse_enum("CAS_LOG_FORMAT", &v)?;
        }
        if let Some(v) = env("CAS_MAX_CONNECTIONS") {
            self.max_connections = num("CAS_MAX_CONNECTIONS", &v)? as usize;
        }
        if let Some(v) = env("CAS_REMOTE_URL") {
            self.remote.get_or_insert_with(RemoteConfig::default).url = v;
        }
        if let Some(v) = env("CAS_REMOTE_ENDPOINT") {
            self.remote.get_or_insert_with(RemoteConfig::default).endpoint = Some(v);
        }
        if let Some(v) = env("CAS_REMOTE_MODE") {
            self.remote.get_or_insert_with(RemoteConfig::default).mode = parse_enum("CAS_REMOTE_MODE", &v)?;
        }
        if let Some(v) = env("CAS_MAX_SIZE_HARD_LIMIT") {
            self.max_size_hard_limit = Some(size("CAS_MAX_SIZE_HARD_LIMIT", &v)?);
        }
        if let Some(v) = env("CAS_BACKUP_DIR") {
            self.backup_dir = Some(v.into());
        }
        if let (Some(cert), Some(key)) = (env("CAS_TLS_CERT"), env("CAS_TLS_KEY")) {
            let client_ca = self.tls.as_ref().and_then(|t| t.client_ca.clone());
            self.tls = Some(TlsConfig {
                cert: cert.into(),
                key: key.into(),
                client_ca,
                client_cert_role: default_cert_role(),
            });
        }
        if let Some(v) = env("CAS_RATE_LIMIT_PER_IP") {
            self.limits.per_ip_rps = Some(num("CAS_RATE_LIMIT_PER_IP", &v)? as u32);
        }
        if let Some(v) = env("CAS_RATE_LIMIT_PER_TOKEN") {
            self.limits.per_token_rps = Some(num("CAS_RATE_LIMIT_PER_TOKEN", &v)? as u32);
        }
        if let Some(v) = env("CAS_HEADER_TIMEOUT_SECS") {
            self.limits.header_timeout_secs = num("CAS_HEADER_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = env("CAS_BODY_IDLE_TIMEOUT_SECS") {
            self.limits.body_idle_timeout_secs = num("CAS_BODY_IDLE_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = env("CAS_TOKEN_FILE") {
            self.auth.token_file = Some(v.into());
        }
        if let Some(v) = env("CAS_ALLOW_ANONYMOUS_READ") {
            self.auth.allow_anonymous_read = parse_bool("CAS_ALLOW_ANONYMOUS_READ", &v)?;
        }
        Ok(())
    }

    /// The configuration as JSON with secrets replaced by `"<redacted>"`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut c = self.clone();
        for t in &mut c.auth.tokens {
            t.token = "<redacted>".into();
        }
        if c.audit.key.is_some() {
            c.audit.key = Some("<redacted>".into());
        }
        if let Some(r) = &mut c.remote {
            if r.secret_access_key.is_some() {
                r.secret_access_key = Some("<redacted>".into());
            }
            for (k, v) in r.options.iter_mut() {
                if k.contains("key") || k.contains("secret") || k.contains("token") || k.contains("password") {
                    *v = "<redacted>".into();
                }
            }
        }
        serde_json::to_value(c).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ByteSize::parse("50GiB").unwrap().0, 50 << 30);
        assert_eq!(ByteSize::parse("4096").unwrap().0, 4096);
        assert_eq!(ByteSize::parse("1.5 KB").unwrap().0, 1500);
        assert!(ByteSize::parse("12 parsecs").is_err());
    }

    #[test]
    fn design_example_loads_and_env_wins() {
        let text = r#"
listen = "127.0.0.1:8080"
data_dir = "./cas-data"
max_size = "50GiB"
max_blob_size = "8GiB"

[remote]
url = "s3://bucket/prefix"
endpoint = "http://127.0.0.1:9000"
region = "us-east-1"
allow_http = true
mode = "write-behind"

[auth]
allow_anonymous_read = false
[[auth.tokens]]
name = "ci"
token = "s3cret"
role = "write"

[tls]
cert = "server.crt"
key = "server.key"
"#;
        let mut c = Config::from_toml(text, Path::new("x.toml")).unwrap();
        assert_eq!(c.max_size, Some(ByteSize(50 << 30)));
        c.apply_env(|k| (k == "CAS_LISTEN").then(|| "0.0.0.0:1".to_string()))
            .unwrap();
        assert_eq!(c.listen, "0.0.0.0:1");
        assert!(!c.redacted().to_string().contains("s3cret"));
    }

    #[test]
    fn unknown_keys_and_bad_env_are_refused() {
        let e = Config::from_toml("lisen = \"x\"", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let mut c = Config::default();
        assert!(c
            .apply_env(|k| (k == "CAS_MAX_SIZE").then(|| "lots".to_string()))
            .is_err());
        assert!(c
            .apply_env(|k| (k == "CAS_COMPRESSION").then(|| "gzip".to_string()))
            .is_err());
    }
}
