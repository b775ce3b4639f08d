//! What to do: the settings of a run after merging defaults < config file < environment < flags
//! (environment and flags arrive merged by clap in [`LowArgs`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ConfigError, FileConfig};
use crate::manifest::parse::parse_secs;
use crate::messages::Style;
use crate::store::RemoteSpec;

use super::lowargs::LowArgs;

/// Resolved settings.
#[derive(Debug)]
pub struct HiArgs {
    /// Manifest path.
    pub manifest: Option<PathBuf>,
    /// Targets.
    pub targets: Vec<String>,
    /// Parallel tasks.
    pub jobs: usize,
    /// Default task timeout.
    pub timeout: Option<Duration>,
    /// Default retries.
    pub retries: u32,
    /// Cache dir.
    pub cache_dir: PathBuf,
    /// Remote store, if any.
    pub remote: Option<RemoteSpec>,
    /// Output look.
    pub style: Style,
    /// `-f`.
    pub force: bool,
    /// `-n`.
    pub dry_run: bool,
    /// `--keep-going`.
    pub keep_going: bool,
    /// `--stats`.
    pub stats: bool,
    /// `--metrics FILE`.
    pub metrics: Option<PathBuf>,
    /// `--list-tasks`.
    pub list_tasks: bool,
    /// `--clean-cache`.
    pub clean_cache: bool,
    /// `--verify-cache`.
    pub verify_cache: bool,
    /// `--health-check`.
    pub health_check: bool,
    /// How long to wait for the lock.
    pub lock_wait: Duration,
    /// Log level.
    pub log_level: String,
    /// Log file.
    pub log_file: Option<PathBuf>,
    /// Config warnings to print.
    pub warnings: Vec<String>,
    /// The config file used, if any.
    pub config_file: Option<PathBuf>,
    /// Audit log settings (`None`: off).
    pub audit: Option<reprovm_sdk::audit::AuditConfig>,
    /// Webhook notifications.
    pub notify: crate::notify::NotifySpec,
    /// Rate and resource limits on starting commands.
    pub limits: crate::limits::LimitSpec,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// From the config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A flag or variable value.
    #[error("{0}")]
    Invalid(String),
}

impl HiArgs {
    /// Merges the layers.
    pub fn from_low(low: LowArgs) -> Result<Self, SettingsError> {
        let file = match &low.config {
            Some(p) => FileConfig::load(p)?,
            None if Path::new("reprovm.conf").is_file() => FileConfig::load(Path::new("reprovm.conf"))?,
            None => FileConfig::default(),
        };
        let jobs = match low.jobs {
            Some(j) => j,
            None => file.number("execution", "parallel_jobs")?.unwrap_or_else(default_jobs),
        };
        if jobs == 0 {
            return Err(SettingsError::Invalid("--jobs must be at least 1".into()));
        }
        // `[rate_limiting] max_concurrent_tasks` caps -j.
        let jobs = match file.number::<usize>("rate_limiting", "max_concurrent_tasks")? {
            Some(max) if max > 0 => jobs.min(max),
            _ => jobs,
        };
        let audit = crate::audit::settings(low.audit_log.clone(), &file).map_err(SettingsError::Invalid)?;
        let notify = crate::notify::settings(&low.webhooks, &file).map_err(SettingsError::Invalid)?;
        let limits = crate::limits::settings(low.max_cpu, low.max_memory_mb, low.max_tasks_per_second, &file)
            .map_err(SettingsError::Invalid)?;
        let timeout = match &low.timeout {
            Some(t) => Some(parse_secs(t).map_err(|e| SettingsError::Invalid(format!("--timeout: {e}")))?),
            None => file.number::<f64>("execution", "timeout_seconds")?.filter(|s| *s > 0.0),
        }
        .map(Duration::from_secs_f64);
        let retries = match low.retry {
            Some(r) => r,
            None => file.number("execution", "retry_attempts")?.unwrap_or(0),
        };
        let keep_going = low.keep_going || file.flag("execution", "keep_going")?.unwrap_or(false);
        let cache_dir = low
            .cache_dir
            .clone()
            .or_else(|| file.get("cache", "cache_dir").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(".reprovm"));
        let remote = remote_spec(low.remote.clone(), &file)?;
        let colors_in_file = file.flag("logging", "log_colors")?.unwrap_or(true);
        let style = Style {
            color: colors_in_file && Style::detect_color(low.no_color),
            quiet: low.quiet,
            verbose: low.verbose,
            progress: !low.no_progress,
        };
        let log_level = low
            .log_level
            .clone()
            .or_else(|| file.get("logging", "log_level").map(str::to_string))
            .unwrap_or_else(|| "warn".into())
            .to_ascii_lowercase();
        let log_file = low
            .log_file
            .clone()
            .or_else(|| file.get("logging", "log_file").map(PathBuf::from));
        if !(low.lock_wait >= 0.0 && low.lock_wait.is_finite()) {
            return Err(SettingsError::Invalid(
                "--lock-wait must be a number of seconds >= 0".into(),
            ));
        }
        Ok(Self {
            manifest: low.manifest,
            targets: low.targets,
            jobs,
            timeout,
            retries,
            cache_dir,
            remote,
            style,
            force: low.force,
            dry_run: low.dry_run,
            keep_going,
            stats: low.stats,
            metrics: low.metrics,
            list_tasks: low.list_tasks,
            clean_cache: low.clean_cache,
            verify_cache: low.verify_cache,
            health_check: low.health_check,
            lock_wait: Duration::from_secs_f64(low.lock_wait),
            log_level,
            log_file,
            warnings: file.warnings,
            config_file: file.path,
            audit,
            notify,
            limits,
        })
    }
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The remote store from `--remote`/`REPROVM_REMOTE_CAS_URL`, else from `[remote_cas]`.
fn remote_spec(flag: Option<String>, file: &FileConfig) -> Result<Option<RemoteSpec>, SettingsError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let section_on = file.flag("remote_cas", "enabled")?.unwrap_or(false);
    let from_file = || -> Option<String> {
        if !section_on {
            return None;
        }
        if let Some(u) = file.get("remote_cas", "url") {
            return Some(u.to_string());
        }
        let backend = file.get("remote_cas", "backend")?;
        let bucket = file.get("remote_cas", "bucket").unwrap_or_default();
        let prefix = file
            .get("remote_cas", "prefix")
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        match backend {
            "s3" => Some(format!("s3://{bucket}{prefix}")),
            "gcs" | "gs" => Some(format!("gs://{bucket}{prefix}")),
            "azure" | "az" => Some(format!("az://{bucket}{prefix}")),
            "http" | "https" => file.get("remote_cas", "endpoint").map(str::to_string),
            _ => None,
        }
    };
    let Some(url) = flag.filter(|u| !u.is_empty()).or_else(from_file) else {
        return Ok(None);
    };
    if section_on
        && file
            .get("remote_cas", "backend")
            .is_some_and(|b| !["s3", "gcs", "gs", "azure", "az", "http", "https"].contains(&b))
    {
        return Err(SettingsError::Invalid(format!(
            "[remote_cas] backend = {:?}: expected s3, gcs, azure or http",
            file.get("remote_cas", "backend").unwrap_or_default()
        )));
    }
    let mut options = Vec::new();
    let mut opt = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            options.push((k.to_string(), v));
        }
    };
    let file_val = |k: &str| file.get("remote_cas", k).map(str::to_string);
    if url.starts_with("s3://") || url.starts_with("s3a://") {
        let endpoint = file_val("endpoint").map(|e| if e.contains("://") { e } else { format!("https://{e}") });
        // The seed's default endpoint is AWS itself: only a custom endpoint needs setting.
        opt("aws_endpoint", endpoint.filter(|e| !e.ends_with("s3.amazonaws.com")));
        opt("aws_region", file_val("region"));
        opt(
            "aws_allow_http",
            file_val("allow_http").map(|v| crate::config::parse_bool(&v).unwrap_or(false).to_string()),
        );
        opt(
            "aws_access_key_id",
            env("REPROVM_REMOTE_CAS_ACCESS_KEY").or_else(|| file_val("access_key")),
        );
        opt(
            "aws_secret_access_key",
            env("REPROVM_REMOTE_CAS_SECRET_KEY").or_else(|| file_val("secret_key")),
        );
    }
    let token = env("REPROVM_REMOTE_CAS_TOKEN").or_else(|| file_val("token"));
    Ok(Some(RemoteSpec { url, token, options }))
}
