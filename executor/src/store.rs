//! Chooses and opens the store a run uses, from `--remote` / `REPROVM_REMOTE_CAS_URL` / config:
//! - none: the embedded store in `<cache dir>/cas` (cas-server's `RocksStore` as a library);
//! - `http(s)://host:port`: a cas-server through the sdk's HTTP client;
//! - `s3://`, `az://`, `gs://`, `file:///dir`: object storage through the sdk's `ObjectStoreCas`.
//!
//! The embedded store is wrapped in [`IndexedStore`], which appends every action-cache key it
//! writes to `<cache dir>/ac-keys`: `reprovm cache gc` needs to enumerate action results, and the
//! store's public API has no listing of its action cache.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cas_server::{RocksStore, StoreOptions};
use reprovm_sdk::cas::{Blob, BlobInfo, ByteStream, PutOutcome, RefCondition, RefValue};
use reprovm_sdk::proto::ByteRange;
use reprovm_sdk::{Cas, CasError, Digest, HttpCas, ObjectStoreCas};

/// Where the remote store is and how to log in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RemoteSpec {
    /// The URL.
    pub url: String,
    /// Bearer token for a cas-server.
    pub token: Option<String>,
    /// object_store configuration keys (`aws_region`, ...).
    pub options: Vec<(String, String)>,
}

/// An opened store.
pub struct Store {
    /// What tasks read and write.
    pub cas: Arc<dyn Cas>,
    /// The embedded store, when that is what `cas` is (for `cache` commands).
    pub local: Option<RocksStore>,
    /// For messages: `local .reprovm/cas`, `http://…`.
    pub describe: String,
}

/// The store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A URL scheme no backend handles.
    #[error("unsupported store URL {0:?}: use http(s)://, s3://, az://, gs:// or file:///")]
    Scheme(String),
    /// The backend refused.
    #[error("cannot open store {what}: {source}")]
    Open {
        /// Which store.
        what: String,
        /// Why.
        source: CasError,
    },
}

/// Directory of the embedded store inside a cache dir.
pub fn local_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("cas")
}

/// File listing the action-cache keys written to the embedded store.
pub fn ac_index_path(cache_dir: &Path) -> PathBuf {
    cache_dir.join("ac-keys")
}

/// Opens the embedded store of a cache dir.
pub fn open_local(cache_dir: &Path) -> Result<RocksStore, StoreError> {
    let dir = local_dir(cache_dir);
    RocksStore::open(&dir, StoreOptions::default()).map_err(|source| StoreError::Open {
        what: dir.display().to_string(),
        source,
    })
}

/// Opens the store for a run.
pub fn open(remote: Option<&RemoteSpec>, cache_dir: &Path) -> Result<Store, StoreError> {
    let Some(remote) = remote else {
        let local = open_local(cache_dir)?;
        let indexed = IndexedStore {
            inner: local.clone(),
            index: Mutex::new(None),
            index_path: ac_index_path(cache_dir),
        };
        return Ok(Store {
            cas: Arc::new(indexed),
            local: Some(local),
            describe: format!("local {}", local_dir(cache_dir).display()),
        });
    };
    let url = remote.url.as_str();
    let err = |source| StoreError::Open {
        what: url.to_string(),
        source,
    };
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or_default();
    let cas: Arc<dyn Cas> = match scheme {
        "http" | "https" => {
            let mut b = HttpCas::builder(url);
            if let Some(t) = &remote.token {
                b = b.with_token(t.clone());
            }
            Arc::new(b.build().map_err(err)?)
        }
        "s3" | "s3a" | "az" | "azure" | "abfs" | "abfss" | "adl" | "gs" | "file" => {
            Arc::new(ObjectStoreCas::from_url(url, remote.options.clone()).map_err(err)?)
        }
        _ => return Err(StoreError::Scheme(url.to_string())),
    };
    Ok(Store {
        cas,
        local: None,
        describe: url.to_string(),
    })
}

/// The embedded store, recording each action-cache key it writes in an append-only file.
pub struct IndexedStore {
    inner: RocksStore,
    /// Opened on the first write.
    index: Mutex<Option<std::fs::File>>,
    index_path: PathBuf,
}

impl IndexedStore {
    fn record(&self, key: &Digest) -> std::io::Result<()> {
        let mut guard = self.index.lock().expect("index lock");
        if guard.is_none() {
            *guard = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.index_path)?,
            );
        }
        let file = guard.as_mut().expect("opened above");
        file.write_all(format!("{key}\n").as_bytes())
    }
}

#[async_trait::async_trait]
impl Cas for IndexedStore {
    async fn find_missing(&self, digests: &[Digest]) -> reprovm_sdk::Result<Vec<Digest>> {
        self.inner.find_missing(digests).await
    }
    async fn stat(&self, digest: &Digest) -> reprovm_sdk::Result<Option<BlobInfo>> {
        self.inner.stat(digest).await
    }
    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> reprovm_sdk::Result<Blob> {
        self.inner.get(digest, range).await
    }
    async fn put(&self, digest: &Digest, size: Option<u64>, body: ByteStream) -> reprovm_sdk::Result<PutOutcome> {
        self.inner.put(digest, size, body).await
    }
    async fn delete(&self, digest: &Digest) -> reprovm_sdk::Result<bool> {
        self.inner.delete(digest).await
    }
    async fn ac_get(&self, key: &Digest) -> reprovm_sdk::Result<Option<Bytes>> {
        self.inner.ac_get(key).await
    }
    async fn ac_put(&self, key: &Digest, value: Bytes) -> reprovm_sdk::Result<()> {
        self.inner.ac_put(key, value).await?;
        self.record(key)?;
        Ok(())
    }
    async fn ref_get(&self, name: &str) -> reprovm_sdk::Result<Option<RefValue>> {
        self.inner.ref_get(name).await
    }
    async fn ref_put(&self, name: &str, value: Bytes, cond: RefCondition) -> reprovm_sdk::Result<String> {
        self.inner.ref_put(name, value, cond).await
    }
    async fn ref_delete(&self, name: &str, cond: RefCondition) -> reprovm_sdk::Result<bool> {
        self.inner.ref_delete(name, cond).await
    }
    async fn ref_list(&self, prefix: &str) -> reprovm_sdk::Result<Vec<String>> {
        self.inner.ref_list(prefix).await
    }
}
