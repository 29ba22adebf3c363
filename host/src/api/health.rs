//! The health probes and the storage lines of `/metrics`.
//!
//! `/healthz` says the process serves; `/readyz` says it can take writes
//! (a host whose disk is full still reads, so a liveness probe alone makes
//! it look healthy). Both answer anyone, as probes must, and so say nothing
//! but the state: no path, no error text.

use http::StatusCode;

use crate::backend::Health;
use crate::http::{ResponseBody, text_response};

/// `/healthz`: 200 while the process serves requests.
pub(super) fn live() -> hyper::Response<ResponseBody> {
    text_response(StatusCode::OK.as_u16(), "ok\n")
}

/// `/readyz`: 200 while writes succeed; 503 with the reason while they
/// fail.
pub(super) fn ready(health: Health) -> hyper::Response<ResponseBody> {
    match health.failing {
        None => text_response(StatusCode::OK.as_u16(), "ready\n"),
        Some(fault) => text_response(
            StatusCode::SERVICE_UNAVAILABLE.as_u16(),
            format!("not ready: writes failing: {fault}\n"),
        ),
    }
}

/// The storage's lines of `/metrics`.
pub(super) fn metrics(health: Health) -> String {
    format!(
        "# HELP ostore_storage_writable Whether the last commit succeeded (1) or writes fail (0).\n\
         # TYPE ostore_storage_writable gauge\n\
         ostore_storage_writable {}\n\
         # HELP ostore_storage_failed_commits_total Commits that failed for a storage fault \
         (a full disk, an I/O error, an unreachable server).\n\
         # TYPE ostore_storage_failed_commits_total counter\n\
         ostore_storage_failed_commits_total {}\n",
        u8::from(health.writable()),
        health.failed_commits
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::StorageFault;

    #[test]
    fn readiness_follows_the_storage_and_says_only_the_state() {
        assert_eq!(ready(Health::default()).status(), 200);
        let full = Health {
            failing: Some(StorageFault::DiskFull),
            failed_commits: 3,
        };
        assert_eq!(ready(full).status(), 503);
        let text = metrics(full);
        assert!(text.contains("ostore_storage_writable 0\n"), "{text}");
        assert!(
            text.contains("ostore_storage_failed_commits_total 3\n"),
            "{text}"
        );
        assert!(metrics(Health::default()).contains("ostore_storage_writable 1\n"));
        assert_eq!(live().status(), 200);
    }
}
