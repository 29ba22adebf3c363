//! The `ostore` command, built as a binary of this crate so that Cargo builds
//! it for the integration tests (`CARGO_BIN_EXE_ostore-under-test`).

/// The allocator of the `ostore` binary (see host/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ostore::cli::main()
}
