//! The `ostore` command line: flags in, the library's pieces out.
//!
//! It lives in the library (the binary is one line) so that the integration
//! tests can build the very same command as a binary of their own crate.
//!
//! | module | job |
//! |---|---|
//! | `up` | `ostore up`: flags to a [`HostConfig`](crate::host::HostConfig), the banner, signals |
//! | `local` | `credentials` and `tls`: commands on a data directory |
//! | `integrity` | `check` and `repair`: find damage in a data directory's records, and mend it |
//! | `remote` | `kv`, `stores`, `partitions`, `stats`: the REST API client |

mod integrity;
mod local;
mod remote;
mod spin_flags;
mod up;

use std::error::Error;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use local::{CredentialsCommand, KeyArgs, TlsCommand};
use remote::{KvCommand, PartitionsCommand, ServerArgs, StoresCommand};
use up::UpArgs;

/// An encrypted object store for WebAssembly applications.
#[derive(Parser)]
#[command(name = "ostore", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the applications described by Spin manifests (like `spin up`).
    // Boxed: its many flags would make every command as large.
    Up(Box<UpArgs>),
    /// Manage the client credentials of the REST and Stats APIs.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// TLS helpers.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// Walk every record and index of the data (offline) and report what is
    /// damaged; exit status 1 if anything is.
    Check(KeyArgs),
    /// Rebuild what can be derived (expiry index, usage counters) and set
    /// aside what cannot be opened, leaving the rest as it is (offline).
    Repair(KeyArgs),
    /// Read, write, delete and list keys of a running server.
    Kv {
        #[command(subcommand)]
        command: KvCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List or delete the stores of a running server's application.
    Stores {
        #[command(subcommand)]
        command: StoresCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List or delete the partitions of a store.
    Partitions {
        #[command(subcommand)]
        command: PartitionsCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Requests per day or month, key counts and bytes stored.
    Stats {
        /// Only this store (default: all stores of the environment).
        #[arg(long, value_name = "STORE")]
        store: Option<String>,
        /// First day, YYYY-MM-DD (default: 29 days before --end).
        #[arg(long, value_name = "DATE")]
        start: Option<String>,
        /// Last day, YYYY-MM-DD (default: today, UTC).
        #[arg(long, value_name = "DATE")]
        end: Option<String>,
        /// 1day or 1month.
        #[arg(long, value_name = "PERIOD", default_value = "1day")]
        period: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Runs the `ostore` command with the process's arguments.
pub fn main() -> ExitCode {
    // Host errors can reach clients as text (a guest that echoes why its
    // read of a body failed, say): they must not carry the host's stack and
    // source paths, whatever RUST_BACKTRACE asks. Panics keep theirs.
    // SAFETY: nothing else runs yet; no other thread reads the environment.
    unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ostore=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::up(*args).await,
            Command::Credentials(command) => local::credentials(command).await,
            Command::Tls(TlsCommand::SelfSigned { out_dir, names }) => {
                local::self_signed(&out_dir, &names)
            }
            Command::Check(keys) => integrity::check(keys).await,
            Command::Repair(keys) => integrity::repair(keys).await,
            Command::Kv { command, server } => remote::kv(command, server).await,
            Command::Stores { command, server } => remote::stores(command, server).await,
            Command::Partitions { command, server } => remote::partitions(command, server).await,
            Command::Stats {
                store,
                start,
                end,
                period,
                server,
            } => remote::stats(server, store, start, end, period).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, `outer: inner: ...`, leaving out a
/// cause whose words the error before it already says.
fn report(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let words = e.to_string();
        if !text.contains(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_each_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let wrapped = crate::host::HostError::DataDir {
            path: "/data".into(),
            source: io,
        };
        assert_eq!(
            report(&wrapped),
            "cannot create data directory /data: disk on fire"
        );
        let backend = crate::backend::BackendError::storage(std::io::Error::other("no space"));
        let store = crate::objectstore::Error::Storage(backend);
        assert_eq!(
            report(&store),
            "store not available: storage failed: no space"
        );
    }
}
