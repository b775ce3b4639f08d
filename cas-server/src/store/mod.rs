//! Storage: drivers behind the sdk's `Cas` trait, and how the configuration
//! composes them.
//!
//! - [`rocks`]: the local RocksDB store; [`piece`]: its at-rest encoding.
//! - [`sync_queue`]: the durable queue of what the remote tier lacks.
//! - [`evict`]: LRU eviction of the local tier.
//! - [`scrub`]: re-hashing every blob, quarantine of corrupt ones.
//! - [`tiered`]: a local store in front of a remote one (a store of stores).
//!
//! [`build`] turns the configuration into the stack the server serves from.

pub mod evict;
pub mod piece;
pub mod rocks;
pub mod scrub;
pub mod sync_queue;
pub mod tiered;

use std::sync::Arc;
use std::time::Duration;

use reprovm_sdk::cas::Cas;
use reprovm_sdk::error::{CasError, Result};
use reprovm_sdk::object_store::ObjectStoreCas;
use reprovm_sdk::RetryPolicy;

use crate::config::{Config, RemoteConfig};
use rocks::{RocksStore, StoreOptions};
use tiered::TieredStore;

/// Store options from the server configuration.
pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        max_blob_size: config.max_blob_size.0,
        compression: config.compression,
        compression_level: config.compression_level,
        sync_writes: config.sync_writes,
        min_free_space: config.min_free_space.0,
        track_sync: config.remote.is_some(),
        hard_limit: config.max_size_hard_limit.map(|s| s.0),
        ..StoreOptions::default()
    }
}

/// The `object_store` options a `[remote]` section stands for.
pub fn remote_options(remote: &RemoteConfig) -> Vec<(String, String)> {
    let scheme = remote.url.split("://").next().unwrap_or("");
    let mut opts = Vec::new();
    let mut add = |k: &str, v: Option<&String>| {
        if let Some(v) = v {
            opts.push((k.to_string(), v.clone()));
        }
    };
    match scheme {
        "s3" | "s3a" => {
            add("aws_endpoint", remote.endpoint.as_ref());
            add("aws_region", remote.region.as_ref());
            add("aws_access_key_id", remote.access_key_id.as_ref());
            add("aws_secret_access_key", remote.secret_access_key.as_ref());
        }
        "az" | "azure" | "abfs" | "abfss" => {
            add("azure_storage_endpoint", remote.endpoint.as_ref());
            add("azure_storage_account_name", remote.access_key_id.as_ref());
            add("azure_storage_access_key", remote.secret_access_key.as_ref());
        }
        "gs" => {
            add("google_service_account_key", remote.secret_access_key.as_ref());
        }
        _ => {}
    }
    if remote.allow_http {
        opts.push(("allow_http".into(), "true".into()));
    }
    opts.extend(remote.options.iter().map(|(k, v)| (k.clone(), v.clone())));
    opts
}

/// Opens the remote tier of a `[remote]` section.
pub fn open_remote(remote: &RemoteConfig) -> Result<ObjectStoreCas> {
    if remote.url.is_empty() {
        return Err(CasError::InvalidInput(
            "[remote] needs a url (s3://, az://, gs://, http(s)://, file:///)".into(),
        ));
    }
    ObjectStoreCas::from_url(&remote.url, remote_options(remote))
}

/// The opened store stack.
pub struct Stores {
    /// The local RocksDB tier.
    pub local: RocksStore,
    /// What requests are served from.
    pub serving: Arc<dyn Cas>,
    /// The tiered store, when a remote is configured.
    pub tier: Option<Arc<TieredStore>>,
}

/// Opens the local store and, with a `[remote]`, the tiered stack over it.
pub fn build(config: &Config) -> Result<Stores> {
    let local = RocksStore::open(&config.data_dir, store_options(config))?;
    let Some(remote_cfg) = &config.remote else {
        return Ok(Stores {
            serving: Arc::new(local.clone()),
            local,
            tier: None,
        });
    };
    let remote: Arc<dyn Cas> = Arc::new(open_remote(remote_cfg)?);
    let tier = TieredStore::new(local.clone(), remote, remote_cfg.mode);
    Ok(Stores {
        serving: tier.clone(),
        local,
        tier: Some(tier),
    })
}

/// Starts the background work of a store stack: the remote uploader, and
/// eviction whenever the local tier is over `max_size`. Needs a tokio runtime.
pub fn spawn_background(config: &Config, stores: &Stores) {
    if let (Some(tier), Some(remote)) = (&stores.tier, &config.remote) {
        let retry = RetryPolicy {
            max_attempts: u32::MAX,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(remote.max_retry_backoff_secs.max(1)),
        };
        tokio::spawn(tier.clone().run_uploader(remote.uploaders, retry));
    }
    if let Some(max) = config.max_size {
        let local = stores.local.clone();
        tokio::spawn(async move {
            let mut pacer = evict::EvictionPacer::new(max.0);
            let stored = |l: &RocksStore| l.counters().logical_bytes.load(std::sync::atomic::Ordering::Relaxed);
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if !pacer.should_run(stored(&local)) {
                    continue;
                }
                let l = local.clone();
                // Evict down to 90% so that eviction runs in batches, not per upload.
                let r = tokio::task::spawn_blocking(move || l.evict_to(max.0 / 10 * 9)).await;
                if let Ok(Err(e)) = r {
                    tracing::error!(error = %e, "eviction failed");
                }
                pacer.ran(stored(&local));
            }
        });
    }
}
