//! glibc malloc tuning for the server and the executor.
//!
//! Both move large buffers (chunks, pieces, compressed output) between threads: the async
//! runtime's workers, the blocking pool and RocksDB's own. glibc gives each thread that
//! contends for the heap an arena of its own, up to eight per core, and memory freed into an
//! arena stays with it, so the peak RSS grows with the number of threads that ever held a large
//! buffer, not with the bytes in flight (`snapshot restore` of 512 MiB: 145 MiB with the default,
//! 82 MiB with two arenas, at the same speed). Limiting arenas to the core count keeps the peak
//! near what is actually held.
#![allow(unsafe_code)]

/// Caps glibc's malloc arenas at the number of cores (at least 2). Call first thing in `main`,
/// before any thread starts. A no-op on other C libraries, or when `MALLOC_ARENA_MAX` is set in
/// the environment (the operator's choice wins).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        let cores = libc::c_int::try_from(cores).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a malloc parameter; M_ARENA_MAX may be changed at any time
        // and takes effect for arenas created afterwards. No memory is touched.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, cores);
        }
    }
}
