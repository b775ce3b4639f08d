//! The executor's manifest parser (`executor/src/manifest/`), compiled in directly so that the
//! fuzz build does not pull in the executor's store (RocksDB). Any input must give a manifest or
//! a positioned error, never a panic; errors stay short; a manifest's tasks are valid.
#![no_main]
#![allow(dead_code, unused_imports)]

#[path = "../../executor/src/manifest/mod.rs"]
mod manifest;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match manifest::parse_str(std::path::Path::new("fuzz.rvm"), src) {
        Ok(m) => {
            for t in &m.tasks {
                assert!(manifest::lex::is_task_name(&t.name), "task name {:?}", t.name);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.rvm:"), "{msg}");
            assert!(msg.len() < 4096, "error message of {} bytes", msg.len());
        }
    }
});
