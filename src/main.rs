//! The `modgate` binary: everything is in [`modgate::cli`].

/// mimalloc (its v2, built without transparent huge pages): per-thread free
/// lists make the many small, short-lived allocations of a proxied request
/// cheaper than glibc's, most of all when one worker frees what another
/// allocated. v2 returns freed memory to the system after 10 ms, where v3
/// waits a second: with v3 the cached-zip benchmark's peak RSS rose from 63
/// to 107 MB, with v2 it stays at glibc's (issue 13's closing note).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    modgate::cli::main()
}
