//! The `modgate` binary: everything is in [`modgate::cli`].

/// mimalloc: per-thread free lists make the many small, short-lived
/// allocations of each proxied request cheaper than glibc's allocator,
/// most of all when one thread frees what another allocated.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    modgate::cli::main()
}
