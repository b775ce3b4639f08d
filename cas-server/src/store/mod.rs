//! Storage: the RocksDB driver ([`rocks`]) and its piece encoding ([`piece`]).
//! [`build`] turns the configuration into the store stack the server serves from.

pub mod piece;
pub mod rocks;

use std::sync::Arc;

use reprovm_sdk::cas::Cas;
use reprovm_sdk::error::{CasError, Result};

use crate::config::Config;
use rocks::{RocksStore, StoreOptions};

/// Store options from the server configuration.
pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        max_blob_size: config.max_blob_size.0,
        compression: config.compression,
        compression_level: config.compression_level,
        sync_writes: config.sync_writes,
        min_free_space: config.min_free_space.0,
        ..StoreOptions::default()
    }
}

/// Opens the local store and builds the stack served over HTTP.
pub fn build(config: &Config) -> Result<(RocksStore, Arc<dyn Cas>)> {
    let local = RocksStore::open(&config.data_dir, store_options(config))?;
    if let Some(remote) = &config.remote {
        return Err(CasError::InvalidInput(format!(
            "[remote] url = {:?}: the remote tier is not available in this version yet",
            remote.url
        )));
    }
    Ok((local.clone(), Arc::new(local)))
}
