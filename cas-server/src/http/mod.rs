//! The HTTP face of the server: accept loop and shutdown ([`server`]), one
//! module per endpoint family ([`routes`]), JSON errors ([`error`]) and body
//! helpers ([`body`]).

pub mod body;
pub mod error;
pub mod routes;
pub mod server;

pub use server::{serve, AppState};
