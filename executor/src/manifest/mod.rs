//! The ReproVM manifest DSL: [`lex`] splits lines into tokens with positions, [`parse`] builds the
//! [`model`] and reports errors as `file:line:col: message`.
//!
//! ```text
//! # comment
//! task build {
//!   cmd = gcc -o hello hello.c
//!   inputs = hello.c
//!   outputs = hello
//!   deps =
//!   env = CC=gcc, LANG=C      # optional
//!   timeout = 60              # optional, seconds
//!   retries = 2               # optional
//! }
//! ```

pub mod lex;
pub mod model;
pub mod parse;

pub use model::{Manifest, Task};
pub use parse::{parse_file, parse_str};
