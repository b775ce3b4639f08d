//! The Remote Execution API v2 cache services over gRPC, on the same store as the HTTP API.
//!
//! gRPC shares the server's port with HTTP: the accept loop ([`crate::http::server`]) hands every
//! HTTP/2 request whose content type is `application/grpc` to [`Grpc::call`] (h2c with prior
//! knowledge, or TLS with ALPN `h2`), so `grpc://HOST:PORT` and `http://HOST:PORT` name the same
//! server. `grpc_listen` adds a port of its own that serves gRPC only.
//!
//! Digests are SHA-256 (REAPI's default) or BLAKE3 (`digest_function: BLAKE3`); a SHA-256 blob
//! written here is the blob bazel's HTTP `/cas/{sha256}` serves, and an action result the entry
//! of `/ac/{sha256}`. Instance names are accepted and share one store.
//!
//! ## Layout
//! - [`table`]: every method this server knows, its metrics label and the role it needs.
//! - [`dispatch`]: authentication, rate limits, metrics, access and audit log of each call,
//!   then the service the table names.
//! - [`capabilities`], [`cas`], [`ac`], [`bytestream`]: one file per service.
//! - [`uploads`]: ByteStream writes in progress, so that an interrupted `Write` resumes.
//! - [`resource`]: ByteStream resource names; [`digest`]: REAPI digests; [`status`]: store
//!   errors as gRPC statuses; [`tree`]: reading `Directory` and `Tree` messages from the store.

pub mod ac;
pub mod bytestream;
pub mod capabilities;
pub mod cas;
pub mod digest;
pub mod dispatch;
mod observe;
pub mod resource;
pub mod status;
pub mod table;
pub mod tree;
pub mod uploads;

pub use dispatch::{is_grpc, Grpc};

/// Largest total of blob bytes in one `BatchUpdateBlobs` or `BatchReadBlobs` call (advertised
/// as `max_batch_total_size_bytes`); larger blobs go through ByteStream.
pub const MAX_BATCH_TOTAL: u64 = 4 << 20;

/// Largest gRPC message the server decodes: a full batch plus its framing, with room to spare.
pub const MAX_MESSAGE: usize = 8 << 20;

/// Largest `data` of one ByteStream `ReadResponse`.
pub const READ_CHUNK: usize = 1 << 20;
