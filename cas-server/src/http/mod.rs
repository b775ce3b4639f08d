//! The HTTP face of the server: accept loop and shutdown ([`server`]), TLS
//! ([`tls`]), rate limits and caps ([`limits`]), one module per endpoint
//! family ([`routes`]), JSON errors ([`error`]), body helpers ([`body`]) and the bundled
//! OpenAPI description and Swagger UI ([`swagger`]).

pub mod body;
pub mod error;
pub mod limits;
pub mod routes;
pub mod server;
pub mod swagger;
pub mod tls;

pub use server::{serve, AppState, Listeners};
