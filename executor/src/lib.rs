//! # reprovm (library)
//!
//! The parts of the task runner that are useful without running it, shared by the `reprovm`
//! binary, its tests and the fuzz targets (`fuzz/`):
//! - [`manifest`]: the task DSL's lexer, parser and model.
#![deny(unsafe_code)]

pub mod manifest;
