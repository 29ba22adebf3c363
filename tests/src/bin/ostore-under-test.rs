//! The `ostore` command, built as a binary of this crate so that Cargo builds
//! it for the integration tests (`CARGO_BIN_EXE_ostore-under-test`).

fn main() -> std::process::ExitCode {
    ostore::cli::main()
}
