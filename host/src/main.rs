//! The `drydock` binary: everything lives in the library's `cli` module.

fn main() -> std::process::ExitCode {
    drydock_host::cli::main()
}
