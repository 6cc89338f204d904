//! The `terra-sink` binary.

use std::process::ExitCode;

/// jemalloc instead of glibc's malloc. A burst of large bodies left glibc holding most of the
/// peak for good (its arenas and raised mmap threshold keep freed multi-megabyte blocks);
/// jemalloc with its background thread (the `background_threads` feature) returns pages left
/// unused for `dirty_decay_ms` (10 s by default) to the OS even while the process is idle.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    terra_sink::cli::main().await
}
