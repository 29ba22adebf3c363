//! `spin up` flags that mean nothing to `ostore up`. They are accepted by
//! the parser (hidden from `--help`) only to be refused by name: a Spin
//! user who types one learns it has no effect here, instead of an unknown
//! flag error or, worse, a flag silently ignored.

use clap::Args;

/// Every `spin up` flag (Spin 3.6) that has no counterpart here, each with
/// why; the flags Spin and ostore share (`--from`, `--listen`, `--build`,
/// `--env`, `--key-value`, `--state-dir`, `--runtime-config-file`,
/// `--tls-cert`, `--tls-key`) are `ostore up`'s own.
#[derive(Args)]
pub(super) struct SpinOnlyFlags {
    #[arg(long, hide = true, value_name = "REFERENCE")]
    from_registry: Option<String>,
    #[arg(short = 'k', long, hide = true)]
    insecure: bool,
    #[arg(long, alias = "tmp", hide = true, value_name = "DIR")]
    temp: Option<String>,
    #[arg(long, hide = true, value_name = "DIR")]
    cache_dir: Option<String>,
    #[arg(long, hide = true)]
    direct_mounts: bool,
    #[arg(short = 'c', long, hide = true, value_name = "ID")]
    component_id: Vec<String>,
    #[arg(short = 'L', long, hide = true, value_name = "DIR")]
    log_dir: Option<String>,
    #[arg(long, hide = true)]
    truncate_logs: bool,
    #[arg(long, hide = true)]
    disable_cache: bool,
    #[arg(long, hide = true, value_name = "FILE")]
    cache: Option<String>,
    #[arg(long, hide = true)]
    disable_pooling: bool,
    #[arg(long, hide = true, value_name = "ID")]
    follow: Vec<String>,
    #[arg(short = 'q', long, hide = true)]
    quiet: bool,
    #[arg(long, hide = true, value_name = "STATEMENT")]
    sqlite: Vec<String>,
    #[arg(long, hide = true, value_name = "KEY=VALUE")]
    variable: Vec<String>,
    #[arg(long, hide = true)]
    allow_transient_write: bool,
    #[arg(long, hide = true)]
    find_free_port: bool,
    #[arg(long, hide = true, value_name = "BYTES")]
    http1_max_buf_size: Option<String>,
    #[arg(long, hide = true, value_name = "N")]
    max_instance_reuse_count: Option<String>,
    #[arg(long, hide = true, value_name = "N")]
    max_instance_concurrent_reuse_count: Option<String>,
    #[arg(long, hide = true, value_name = "DURATION")]
    idle_instance_timeout: Option<String>,
}

impl SpinOnlyFlags {
    /// The first of these flags given, and why it means nothing here.
    pub(super) fn given(&self) -> Option<(&'static str, &'static str)> {
        let given = [
            (
                self.from_registry.is_some(),
                "--from-registry",
                "ostore runs applications from a local spin.toml only (-f)",
            ),
            (
                self.insecure,
                "--insecure",
                "ostore does not pull applications from registries",
            ),
            (
                self.temp.is_some(),
                "--temp",
                "ostore mounts `files` directories in place, read-only; it copies nothing",
            ),
            (
                self.cache_dir.is_some(),
                "--cache-dir",
                "ostore does not pull applications from registries",
            ),
            (
                self.direct_mounts,
                "--direct-mounts",
                "ostore always mounts `files` directories in place, read-only",
            ),
            (
                !self.component_id.is_empty(),
                "--component-id",
                "ostore runs every component of an application",
            ),
            (
                self.log_dir.is_some(),
                "--log-dir",
                "components write to ostore's own stdout and stderr",
            ),
            (
                self.truncate_logs,
                "--truncate-logs",
                "components write to ostore's own stdout and stderr",
            ),
            (
                self.disable_cache,
                "--disable-cache",
                "ostore keeps no compilation cache",
            ),
            (
                self.cache.is_some(),
                "--cache",
                "ostore keeps no compilation cache",
            ),
            (
                self.disable_pooling,
                "--disable-pooling",
                "ostore always uses the pooling allocator (see --max-instances)",
            ),
            (
                !self.follow.is_empty(),
                "--follow",
                "components write to ostore's own stdout and stderr",
            ),
            (
                self.quiet,
                "--quiet",
                "components write to ostore's own stdout and stderr",
            ),
            (
                !self.sqlite.is_empty(),
                "--sqlite",
                "ostore has no SQLite database",
            ),
            (
                !self.variable.is_empty(),
                "--variable",
                "give variables as SPIN_VARIABLE_<NAME> environment variables",
            ),
            (
                self.allow_transient_write,
                "--allow-transient-write",
                "`files` are mounted read-only",
            ),
            (
                self.find_free_port,
                "--find-free-port",
                "give --listen 127.0.0.1:0 for a free port",
            ),
            (
                self.http1_max_buf_size.is_some(),
                "--http1-max-buf-size",
                "ostore's HTTP buffers are not configurable",
            ),
            (
                self.max_instance_reuse_count.is_some(),
                "--max-instance-reuse-count",
                "ostore gives every request a fresh instance",
            ),
            (
                self.max_instance_concurrent_reuse_count.is_some(),
                "--max-instance-concurrent-reuse-count",
                "ostore gives every request a fresh instance",
            ),
            (
                self.idle_instance_timeout.is_some(),
                "--idle-instance-timeout",
                "ostore gives every request a fresh instance",
            ),
        ];
        given
            .into_iter()
            .find(|(given, _, _)| *given)
            .map(|(_, flag, why)| (flag, why))
    }
}
