//! Which Redis errors are storage faults that clear by themselves, so that
//! a commit that meets one fails with a typed
//! [`BackendError::WritesFailing`], `/readyz` says so, and the change is
//! logged once rather than per request.
//!
//! - `OOM command not allowed when used memory > 'maxmemory'`: the server
//!   refuses writes that would grow memory (`maxmemory-policy noeviction`)
//!   until memory is freed or the limit raised. Deletes still work.
//! - a refused, dropped or timed-out connection: the server is down or
//!   unreachable; the client reconnects by itself once it is back.
//! - `CLUSTERDOWN`, `TRYAGAIN`, `MOVED`/`ASK` (when the client's retries ran
//!   out), `MASTERDOWN`, `READONLY` (a write reached a demoted master) and
//!   `LOADING` (a restarted server still reading its files): a failover or
//!   restart in progress.
//!
//! Anything else (a script error, a wrong type, a refused password) is not
//! expected to clear by itself and stays a plain storage error.

use std::sync::Arc;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::backend::{BackendError, StorageFault};

/// The storage fault `e` stands for, if it is one that clears by itself.
pub(super) fn fault_of(e: &RedisError) -> Option<StorageFault> {
    if e.code() == Some("OOM") {
        return Some(StorageFault::OutOfMemory);
    }
    // A WAIT (the replica durability) routed to the shard's master found a
    // replica there: the master was demoted, or the client's slot map is
    // older than a failover.
    if e.to_string()
        .contains("WAIT cannot be used with replica instances")
    {
        return Some(StorageFault::Failover);
    }
    match e.kind() {
        ErrorKind::Server(
            ServerErrorKind::ClusterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::BusyLoading,
        ) => Some(StorageFault::Failover),
        ErrorKind::ClusterConnectionNotFound => Some(StorageFault::Unreachable),
        _ if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_connection_dropped()
            || e.is_timeout() =>
        {
            Some(StorageFault::Unreachable)
        }
        _ => None,
    }
}

/// `e` as a backend error: typed as failing writes when it is a fault that
/// clears by itself.
pub(super) fn backend_error(e: RedisError) -> BackendError {
    match fault_of(&e) {
        Some(fault) => BackendError::WritesFailing {
            fault,
            source: Arc::new(e),
        },
        None => BackendError::storage(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a server answers with `line` (a RESP error, without `-`).
    fn server_error(line: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
            Err(e) => e,
            Ok(value) => value.extract_error().expect_err("an error reply"),
        }
    }

    #[test]
    fn oom_is_out_of_memory() {
        let e = server_error(
            "OOM command not allowed when used memory > 'maxmemory'. script: abc, on @user_script:20.",
        );
        assert_eq!(fault_of(&e), Some(StorageFault::OutOfMemory));
        let typed = backend_error(e);
        assert_eq!(typed.fault(), Some(StorageFault::OutOfMemory));
        assert!(
            typed
                .to_string()
                .starts_with("writes failing: out of memory: "),
            "{typed}"
        );
    }

    #[test]
    fn cluster_redirections_and_outages_are_a_failover() {
        for line in [
            "CLUSTERDOWN The cluster is down",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "MOVED 3999 127.0.0.1:6381",
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
            "READONLY You can't write against a read only replica.",
            "LOADING Redis is loading the dataset in memory",
            "ERR WAIT cannot be used with replica instances. Please also note that...",
        ] {
            assert_eq!(
                fault_of(&server_error(line)),
                Some(StorageFault::Failover),
                "{line}"
            );
        }
    }

    #[test]
    fn a_refused_or_dropped_connection_is_unreachable() {
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::TimedOut,
        ] {
            let e = RedisError::from(std::io::Error::from(kind));
            assert_eq!(fault_of(&e), Some(StorageFault::Unreachable), "{kind:?}");
        }
    }

    #[test]
    fn other_errors_are_not_faults_that_clear() {
        for line in [
            "ERR Error running script",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "NOSCRIPT No matching script",
        ] {
            let e = server_error(line);
            assert_eq!(fault_of(&e), None, "{line}");
            assert!(matches!(backend_error(e), BackendError::Storage(_)));
        }
    }
}
