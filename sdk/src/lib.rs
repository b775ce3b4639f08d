//! # reprovm-sdk
//!
//! The client library and protocol types that cas-server, the `reprovm`
//! executor and third parties share.
//!
//! ## Layout
//! - [`audit`]: the tamper-evident (keyed BLAKE3 chain) audit log of both binaries, its writer,
//!   `verify`, `report` and their `audit` subcommand.
//! - [`digest`]: [`Digest`] (BLAKE3-256 or SHA-256, 64 lowercase hex) and incremental hashing.
//! - [`proto`]: wire types of the blob protocol — JSON bodies, `Range`, encodings, batch frames, ref names.
//! - [`cas`]: the [`Cas`] trait every store implements, and [`CasExt`] conveniences.
//! - [`error`]: [`CasError`], with the HTTP status and code of each case.
//! - [`client`]: [`HttpCas`], the streaming HTTP client of a cas-server, with retries.
//! - [`codec`]: streaming zstd/lz4 encoding and decoding of byte streams.
//! - [`verify`]: stream adapters that check digests on the fly.
//! - [`object_store`]: [`ObjectStoreCas`], a `Cas` kept directly in S3/Azure/GCS/HTTP/local object storage
//!   (feature `object-store`).
//! - [`snapshot`]: formats of directory snapshots (tree and snapshot objects, ref names, chunk sizes).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod cas;
pub mod client;
pub mod codec;
pub mod digest;
pub mod error;
#[cfg(feature = "object-store")]
pub mod object_store;
pub mod proto;
pub mod snapshot;
pub mod verify;

pub use cas::{Blob, BlobInfo, ByteStream, Cas, CasExt, PutOutcome, RefCondition, RefValue};
pub use client::{HttpCas, RetryPolicy};
pub use digest::{Digest, HashKind, Hasher};
pub use error::{CasError, Result};
#[cfg(feature = "object-store")]
pub use object_store::ObjectStoreCas;
