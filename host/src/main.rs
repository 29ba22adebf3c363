/// mimalloc rather than the system's: a listing's page reads about a
/// thousand 4 KiB pages, each allocated and later freed by redb's cache, and
/// glibc's malloc and free were a sixth of its time (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ostore::cli::main()
}
