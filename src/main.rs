//! The `modgate` binary: everything is in [`modgate::cli`].

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    modgate::cli::main()
}
