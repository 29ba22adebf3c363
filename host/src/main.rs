fn main() -> std::process::ExitCode {
    ostore::cli::main()
}
