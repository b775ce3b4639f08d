//! # cas-server
//!
//! A content-addressed storage server: blobs named by their BLAKE3 (or, on the
//! bazel-compatible paths, SHA-256) digest, stored in RocksDB, served over a
//! streaming HTTP protocol that verifies every upload while it streams.
//!
//! The store is also a library: the `reprovm` executor embeds
//! [`store::rocks::RocksStore`] as its local cache without running a server.
//!
//! ## Layout
//! - [`config`]: the configuration (TOML file, `CAS_*` environment, flags).
//! - [`audit`]: the `[audit]` settings and which requests become audit events.
//! - [`auth`]: tokens, roles, and the role each route needs.
//! - [`store`]: storage drivers behind the sdk's `Cas` trait — [`store::rocks`]
//!   (RocksDB, pieces, crash recovery), [`store::piece`] (at-rest compression),
//!   [`store::tiered`] (local tier in front of object storage), [`store::sync_queue`]
//!   (durable write-behind queue) and [`store::evict`] (LRU eviction).
//! - [`kv`]: the key-value layer (`/kv/{namespace}/{key}`): named values stored as CAS blobs.
//! - [`http`]: accept loop and graceful shutdown, routes, JSON errors.
//! - [`grpc`]: the REAPI v2 cache services (Capabilities, CAS, ActionCache, ByteStream) on the same port.
//! - [`metrics`]: Prometheus metrics.
//! - [`sync`]: `cas-server sync status|push|pull`.
//! - [`backup`]: incremental store backups (RocksDB BackupEngine), BLAKE3 manifests, deep verify, restore.
//! - [`malloc`]: glibc arena limit for processes that pass large buffers between threads.
#![deny(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod backup;
pub mod config;
pub mod grpc;
pub mod http;
pub mod kv;
pub mod malloc;
pub mod metrics;
pub mod store;
pub mod sync;

pub use config::Config;
pub use store::rocks::{RocksStore, StoreOptions};
