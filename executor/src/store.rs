//! Chooses and opens the store a run uses, from `--remote` / `REPROVM_REMOTE_CAS_URL` / config:
//! - none: the embedded store in `<cache dir>/cas` (cas-server's `RocksStore` as a library);
//! - `http(s)://host:port`: a cas-server through the sdk's HTTP client;
//! - `s3://`, `az://`, `gs://`, `file:///dir`: object storage through the sdk's `ObjectStoreCas`.
//!
//! The embedded store is used as it is: `reprovm cache gc` enumerates action results with
//! `RocksStore::list_ac`, so nothing outside the database (which a backup and restore would not
//! carry) decides what is live.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use cas_server::{RocksStore, StoreOptions};
use reprovm_sdk::proto::ByteRange;
use reprovm_sdk::{
    Blob, BlobInfo, ByteStream, Cas, CasError, Digest, HttpCas, ObjectStoreCas, PutOutcome, RefCondition, RefValue,
};

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

/// Opens the embedded store of a cache dir.
pub fn open_local(cache_dir: &Path) -> Result<RocksStore, StoreError> {
    let dir = local_dir(cache_dir);
    RocksStore::open(&dir, StoreOptions::default()).map_err(|source| StoreError::Open {
        what: dir.display().to_string(),
        source,
    })
}

/// Opens the store for a run, except the embedded store, which is opened by its first use: a
/// run whose tasks are all up to date never needs it, and opening RocksDB costs ~70 ms.
pub fn open_lazy(remote: Option<&RemoteSpec>, cache_dir: &Path) -> Result<Store, StoreError> {
    if remote.is_some() {
        return open(remote, cache_dir);
    }
    Ok(Store {
        cas: Arc::new(LazyLocal {
            dir: local_dir(cache_dir),
            store: tokio::sync::OnceCell::new(),
        }),
        local: None,
        describe: format!("local {}", local_dir(cache_dir).display()),
    })
}

/// The embedded store, opened on first use (an open that fails is tried again by the next call).
struct LazyLocal {
    dir: PathBuf,
    store: tokio::sync::OnceCell<RocksStore>,
}

impl LazyLocal {
    async fn get(&self) -> Result<&RocksStore, CasError> {
        self.store
            .get_or_try_init(|| async {
                tracing::debug!(dir = %self.dir.display(), "opening the embedded store");
                RocksStore::open(&self.dir, StoreOptions::default())
                    .map_err(|e| CasError::Unavailable(format!("cannot open store {}: {e}", self.dir.display())))
            })
            .await
    }
}

#[async_trait::async_trait]
impl Cas for LazyLocal {
    async fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, CasError> {
        self.get().await?.find_missing(digests).await
    }
    async fn stat(&self, digest: &Digest) -> Result<Option<BlobInfo>, CasError> {
        self.get().await?.stat(digest).await
    }
    async fn get(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Blob, CasError> {
        Cas::get(self.get().await?, digest, range).await
    }
    async fn put(&self, digest: &Digest, size: Option<u64>, body: ByteStream) -> Result<PutOutcome, CasError> {
        self.get().await?.put(digest, size, body).await
    }
    async fn delete(&self, digest: &Digest) -> Result<bool, CasError> {
        self.get().await?.delete(digest).await
    }
    async fn ac_get(&self, key: &Digest) -> Result<Option<Bytes>, CasError> {
        self.get().await?.ac_get(key).await
    }
    async fn ac_put(&self, key: &Digest, value: Bytes) -> Result<(), CasError> {
        self.get().await?.ac_put(key, value).await
    }
    async fn ref_get(&self, name: &str) -> Result<Option<RefValue>, CasError> {
        self.get().await?.ref_get(name).await
    }
    async fn ref_put(&self, name: &str, value: Bytes, cond: RefCondition) -> Result<String, CasError> {
        self.get().await?.ref_put(name, value, cond).await
    }
    async fn ref_delete(&self, name: &str, cond: RefCondition) -> Result<bool, CasError> {
        self.get().await?.ref_delete(name, cond).await
    }
    async fn ref_list(&self, prefix: &str) -> Result<Vec<String>, CasError> {
        self.get().await?.ref_list(prefix).await
    }
}

/// Opens the store for a run.
pub fn open(remote: Option<&RemoteSpec>, cache_dir: &Path) -> Result<Store, StoreError> {
    let Some(remote) = remote else {
        let local = open_local(cache_dir)?;
        return Ok(Store {
            cas: Arc::new(local.clone()),
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
