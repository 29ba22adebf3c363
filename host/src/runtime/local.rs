//! Requests a guest sends to its own application, served in process, as
//! Spin serves them: self requests (a URL without a host, as Spin SDKs send
//! `/path`, or the host `self.alt`; ostore also takes `self`) go to the
//! application's routes, and service chaining
//! (`http://<component>.spin.internal/...`) to one component, private
//! endpoints included. Neither leaves the process.
//!
//! Each hop counts against the same limits as a client's request (a fresh
//! instance, its instance caps, its memory), never outlives the deadline of
//! the request that set it off, and a chain stops at [`MAX_LOCAL_HOPS`]:
//! a component that calls itself forever gets `loop-detected`, and the
//! host carries on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderValue;
use wasmtime_wasi_http::WasiBody;

use crate::http::ResponseBody;
use crate::manifest::OutboundRule;

/// Local requests one client's request may set off in a row. The request
/// that would be one more gets `loop-detected`: each hop holds an instance
/// while it waits for the next, so an unbounded chain would take every
/// instance of its application until the deadline.
pub const MAX_LOCAL_HOPS: u32 = 10;

/// The host name suffix of service chaining, as Spin spells it.
const CHAINING_SUFFIX: &str = ".spin.internal";

/// What a request to the application itself is sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalTarget {
    /// The application's routes, which pick a component by the path as
    /// for a client (private endpoints have no route).
    Routes,
    /// One component, by id, private or not.
    Component(String),
}

impl LocalTarget {
    /// What `uri` names, if it names the guest's own application.
    pub fn of(uri: &http::Uri) -> Option<LocalTarget> {
        // wasi:http needs an authority: SDKs send a path-only URL as
        // `http://:80/path`, an empty host.
        let host = uri.host().unwrap_or_default().to_ascii_lowercase();
        if host.is_empty() || host == "self.alt" || host == "self" {
            return Some(LocalTarget::Routes);
        }
        let id = host.strip_suffix(CHAINING_SUFFIX)?;
        (!id.is_empty() && !id.contains('.')).then(|| LocalTarget::Component(id.to_string()))
    }

    /// Whether `rules` (a component's `allowed_outbound_hosts`) allow a
    /// request to this target. As in Spin, the request's scheme and port do
    /// not matter, only the host: `http://self` or `http://self.alt` allow
    /// self requests, `http://<id>.spin.internal` chaining to `<id>` and
    /// `http://*.spin.internal` to any component; a rule for any host
    /// (`*`) allows both.
    pub fn allowed_by(&self, rules: &[OutboundRule]) -> bool {
        rules.iter().any(|rule| match self {
            LocalTarget::Routes => rule.allows_self_requests(),
            LocalTarget::Component(id) => {
                rule.allows_chaining_to(&format!("{id}{CHAINING_SUFFIX}"))
            }
        })
    }
}

/// What a local request yields: the response, or the error the guest gets.
pub type LocalAnswer = Pin<
    Box<
        dyn Future<Output = Result<hyper::Response<ResponseBody>, wasmtime_wasi_http::Error>>
            + Send,
    >,
>;

/// Serves the requests an application's components send to the
/// application itself. The router implements it for each application.
pub trait LocalService: Send + Sync {
    /// Serves `req`, sent to `target` by a component of the application;
    /// `chain` is where the request stands (pass it on to the component
    /// that serves it).
    fn serve(
        self: Arc<Self>,
        target: LocalTarget,
        req: http::Request<WasiBody>,
        chain: Chain,
    ) -> LocalAnswer;
}

/// Where a request to a component stands among the local requests that one
/// client's request set off.
#[derive(Clone)]
pub struct Chain {
    /// The application of the component, which serves its local requests;
    /// `None`: local requests are refused (`destination-not-found`).
    service: Option<Arc<dyn LocalService>>,
    /// Local hops from the client's request: 0 for the client's own.
    hops: u32,
    /// When the client's request must be answered; no hop outlives it.
    deadline: Option<Instant>,
    /// The scheme and `Host` of the client's request: a self request is
    /// sent to them, as Spin sends it to its own listener.
    https: bool,
    host: Option<HeaderValue>,
}

impl Chain {
    /// The chain of a client's request, of scheme `https` and `Host` header
    /// `host`, to a component of the application `service` serves.
    pub fn client(service: Arc<dyn LocalService>, https: bool, host: Option<HeaderValue>) -> Self {
        Self {
            service: Some(service),
            hops: 0,
            deadline: None,
            https,
            host,
        }
    }

    /// Local hops from the client's request.
    pub fn hops(&self) -> u32 {
        self.hops
    }

    /// When the client's request must be answered, if it is bounded yet.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The client request's scheme: whether it came over HTTPS.
    pub fn https(&self) -> bool {
        self.https
    }

    /// The client request's `Host` header.
    pub fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    /// The chain of the requests a component sends while serving this
    /// one, which must be answered by `deadline`.
    pub(super) fn onward(&self, deadline: Instant) -> Chain {
        Chain {
            deadline: Some(self.deadline.map_or(deadline, |d| d.min(deadline))),
            ..self.clone()
        }
    }

    /// Sends `req` to `target`, one hop further; `loop-detected` past
    /// [`MAX_LOCAL_HOPS`].
    pub(super) fn send(&self, target: LocalTarget, req: http::Request<WasiBody>) -> LocalAnswer {
        let Some(service) = self.service.clone() else {
            return Box::pin(async { Err(wasmtime_wasi_http::Error::DestinationNotFound) });
        };
        if self.hops >= MAX_LOCAL_HOPS {
            return Box::pin(async { Err(wasmtime_wasi_http::Error::LoopDetected) });
        }
        let next = Chain {
            hops: self.hops + 1,
            ..self.clone()
        };
        service.serve(target, req, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(uri: &str) -> Option<LocalTarget> {
        LocalTarget::of(&uri.parse().unwrap())
    }

    #[test]
    fn self_requests_and_chaining_are_told_by_the_host_alone() {
        for uri in [
            "http://:80/a",
            "https://:443/a?b",
            "http://self.alt/a",
            "https://SELF/a",
            "/a",
        ] {
            assert_eq!(target(uri), Some(LocalTarget::Routes), "{uri}");
        }
        assert_eq!(
            target("https://Auth.spin.internal:8443/x"),
            Some(LocalTarget::Component("auth".into()))
        );
        for uri in [
            "http://example.com/",
            "http://spin.internal/",
            "http://a.b.spin.internal/",
            "http://self.example/",
            "http://a.spin.internal.evil/",
        ] {
            assert_eq!(target(uri), None, "{uri}");
        }
    }

    #[test]
    fn local_requests_need_their_own_rules() {
        let rules = |list: &[&str]| -> Vec<OutboundRule> {
            list.iter()
                .map(|r| OutboundRule::parse(r).unwrap())
                .collect()
        };
        let chain_a = LocalTarget::Component("a".into());
        let chain_b = LocalTarget::Component("b".into());
        let own = LocalTarget::Routes;
        let cases: [(&[&str], [bool; 3]); 7] = [
            (&[], [false, false, false]),
            (&["http://self"], [true, false, false]),
            (&["https://self.alt"], [true, false, false]),
            (&["http://a.spin.internal"], [false, true, false]),
            (&["https://*.spin.internal"], [false, true, true]),
            (&["*://*:*"], [true, true, true]),
            (
                &["http://example.com", "http://a.example"],
                [false, false, false],
            ),
        ];
        for (list, [own_ok, a_ok, b_ok]) in cases {
            let r = rules(list);
            assert_eq!(own.allowed_by(&r), own_ok, "{list:?} self");
            assert_eq!(chain_a.allowed_by(&r), a_ok, "{list:?} a");
            assert_eq!(chain_b.allowed_by(&r), b_ok, "{list:?} b");
        }
    }
}
