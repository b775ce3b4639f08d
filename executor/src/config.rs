//! The configuration file: the seed's INI layout (`[section]` then `key=value`, `#`/`;` comments)
//! or TOML (chosen by a `.toml` extension), read into one `section.key → text` map.
//!
//! Every key of the seed's complete example is known. Keys whose feature this version has are
//! used (listed in [`USED`]); the others are accepted and ignored. Unknown sections or keys give a
//! warning, never an error. Precedence (applied in `cli::hiargs`): defaults < file < `REPROVM_*`
//! environment < flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Keys this version acts on.
pub const USED: &[(&str, &[&str])] = &[
    ("logging", &["log_file", "log_level", "log_colors"]),
    ("cache", &["cache_dir"]),
    (
        "rate_limiting",
        &[
            "max_cpu_percent",
            "max_memory_mb",
            "max_concurrent_tasks",
            "max_tasks_per_second",
            "max_wait_seconds",
        ],
    ),
    (
        "notifications",
        &[
            "enabled",
            "webhook_url",
            "notify_on_complete",
            "notify_on_error",
            "format",
            "retries",
            "timeout_seconds",
        ],
    ),
    (
        "audit",
        &[
            "enabled",
            "log_file",
            "log_to_syslog",
            "audit_key",
            "key_file",
            "syslog_socket",
        ],
    ),
    ("serve", &["token_file", "allow_anonymous_read", "metrics_public"]),
    (
        "execution",
        &["parallel_jobs", "retry_attempts", "timeout_seconds", "keep_going"],
    ),
    (
        "remote_cas",
        &[
            "enabled",
            "url",
            "backend",
            "endpoint",
            "bucket",
            "prefix",
            "region",
            "access_key",
            "secret_key",
            "token",
            "allow_http",
        ],
    ),
];

/// Keys of the seed design that belong to features not built yet: accepted, ignored.
const KNOWN_UNUSED: &[(&str, &[&str])] = &[
    ("cache", &["max_cache_size_mb", "cache_ttl_hours"]),
    (
        "performance",
        &[
            "enable_metrics",
            "metrics_interval_seconds",
            "metrics_file",
            "enable_profiling",
        ],
    ),
    (
        "security",
        &["enable_sandboxing", "max_input_size_mb", "validate_checksums"],
    ),
    ("compression", &["algorithm", "level", "enabled"]),
    ("prometheus", &["enabled", "port", "metrics_path"]),
    ("backup", &["backup_dir", "max_backups", "compression", "auto_backup"]),
];

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not INI / TOML.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when the TOML parser gives none).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A known key with a value of the wrong kind.
    #[error("{}: [{section}] {key} = {value:?}: {expected}", path.display())]
    Value {
        /// The file.
        path: PathBuf,
        /// Section.
        section: String,
        /// Key.
        key: String,
        /// Value as written.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// A loaded configuration file.
#[derive(Clone, Debug, Default)]
pub struct FileConfig {
    /// Where it came from (for messages); `None` when no file was used.
    pub path: Option<PathBuf>,
    /// `(section, key)` → value text.
    values: BTreeMap<(String, String), String>,
    /// Warnings to show (unknown keys).
    pub warnings: Vec<String>,
}

impl FileConfig {
    /// Loads `path` (INI, or TOML when it ends in `.toml`).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let entries = if path.extension().is_some_and(|e| e == "toml") {
            parse_toml(path, &text)?
        } else {
            parse_ini(path, &text)?
        };
        let mut cfg = Self {
            path: Some(path.to_path_buf()),
            ..Self::default()
        };
        for (line, section, key, value) in entries {
            let known = |table: &[(&str, &[&str])]| {
                table
                    .iter()
                    .any(|(s, keys)| *s == section && keys.contains(&key.as_str()))
            };
            if !known(USED) && !known(KNOWN_UNUSED) {
                let at = if line > 0 { format!(":{line}") } else { String::new() };
                cfg.warnings.push(format!(
                    "{}{at}: unknown key `{key}` in [{section}] (ignored)",
                    path.display()
                ));
            }
            cfg.values.insert((section, key), value);
        }
        Ok(cfg)
    }

    /// The raw text of `[section] key`.
    pub fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.values
            .get(&(section.to_string(), key.to_string()))
            .map(String::as_str)
    }

    fn value_err(&self, section: &str, key: &str, expected: &'static str) -> ConfigError {
        ConfigError::Value {
            path: self.path.clone().unwrap_or_default(),
            section: section.into(),
            key: key.into(),
            value: self.get(section, key).unwrap_or_default().into(),
            expected,
        }
    }

    /// `[section] key` as a number.
    pub fn number<T: std::str::FromStr>(&self, section: &str, key: &str) -> Result<Option<T>, ConfigError> {
        self.get(section, key)
            .map(|v| v.parse().map_err(|_| self.value_err(section, key, "expected a number")))
            .transpose()
    }

    /// `[section] key` as a boolean (`1/0`, `true/false`, `yes/no`, `on/off`).
    pub fn flag(&self, section: &str, key: &str) -> Result<Option<bool>, ConfigError> {
        self.get(section, key)
            .map(|v| parse_bool(v).ok_or_else(|| self.value_err(section, key, "expected 1/0, true/false, yes/no")))
            .transpose()
    }
}

/// `1/0`, `true/false`, `yes/no`, `on/off`.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

type Entry = (usize, String, String, String);

fn parse_ini(path: &Path, text: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut out = Vec::new();
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let err = |message: String| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| err(format!("expected `[section]`, found {line:?}")))?;
            section = name.trim().to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| err(format!("expected `key=value` or `[section]`, found {line:?}")))?;
        if section.is_empty() {
            return Err(err(format!("`{}` appears before any [section]", k.trim())));
        }
        let v = v.trim();
        let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
        out.push((i + 1, section.clone(), k.trim().to_string(), v.to_string()));
    }
    Ok(out)
}

fn parse_toml(path: &Path, text: &str) -> Result<Vec<Entry>, ConfigError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
            .unwrap_or(0),
        message: e.message().to_string(),
    })?;
    let mut out = Vec::new();
    for (section, v) in table {
        let toml::Value::Table(keys) = v else {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line: 0,
                message: format!("top-level key `{section}`: settings go in sections like [cache]"),
            });
        };
        for (k, v) in keys {
            let text = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => other.to_string(),
            };
            out.push((0, section.clone(), k, text));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../tests/data/reprovm.conf");

    #[test]
    fn the_seed_config_loads_without_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("reprovm.conf");
        std::fs::write(&p, SEED).unwrap();
        let c = FileConfig::load(&p).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.number::<usize>("execution", "parallel_jobs").unwrap(), Some(8));
        assert_eq!(c.flag("remote_cas", "enabled").unwrap(), Some(false));
        assert_eq!(c.get("cache", "cache_dir"), Some(".reprovm"));
    }

    #[test]
    fn unknown_keys_warn_and_toml_works() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.conf");
        std::fs::write(&p, "[cache]\ncache_dir = x\nshiny=1\n[nope]\na=b\n").unwrap();
        let c = FileConfig::load(&p).unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(
            c.warnings[0].contains(":3: unknown key `shiny` in [cache]"),
            "{:?}",
            c.warnings
        );
        let t = dir.path().join("c.toml");
        std::fs::write(&t, "[execution]\nparallel_jobs = 3\n[logging]\nlog_colors = false\n").unwrap();
        let c = FileConfig::load(&t).unwrap();
        assert_eq!(c.number::<usize>("execution", "parallel_jobs").unwrap(), Some(3));
        assert_eq!(c.flag("logging", "log_colors").unwrap(), Some(false));
        std::fs::write(&p, "key=1\n").unwrap();
        assert!(matches!(FileConfig::load(&p), Err(ConfigError::Syntax { line: 1, .. })));
        std::fs::write(&p, "[execution]\nparallel_jobs=many\n").unwrap();
        let c = FileConfig::load(&p).unwrap();
        assert!(c.number::<usize>("execution", "parallel_jobs").is_err());
    }
}
