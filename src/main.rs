//! The `modgate` binary: everything is in [`modgate::cli`].

fn main() -> std::process::ExitCode {
    modgate::cli::main()
}
