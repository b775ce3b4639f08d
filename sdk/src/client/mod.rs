//! Clients for remote stores.

mod http;
mod retry;

pub use http::{HttpCas, HttpCasBuilder};
pub use retry::RetryPolicy;
