//! The connection to Redis, and what is known of whether writes through it
//! work: which hash slots failed, the probe that finds when they work
//! again, and a fresh cluster connection when the old one stays stuck.
//!
//! # Why per slot
//!
//! On a cluster each master fails alone. A commit that succeeds on one
//! master says nothing of another, so a host cannot call itself ready again
//! because *some* commit succeeded: while one master is down, writers keep
//! succeeding on the others, and `/readyz` would say 200 while every write
//! of the dead master's shards fails. So each failure is remembered by the
//! hash slot it met (the shard's, or the shard registry's), and the state
//! turns back to writable only once every remembered slot took a write again,
//! a client's commit or the probe's. A standalone server is one slot.
//!
//! # Why a fresh connection
//!
//! The cluster client repairs itself (slot map refreshes, reconnects), yet a
//! host under load was seen answering `unreachable: timed out` for every
//! write 30 s after a failover had finished, while other hosts on the same
//! cluster wrote again within seconds. Whatever state the client is stuck
//! in, a new connection built from the configured nodes reads the slot map
//! afresh. So while writes keep failing for an unreachable node or a
//! failover, the link builds one (at most every [`RECONNECT_INTERVAL`]) and
//! the next operations use it; those in flight finish on the old one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;

use super::{CONNECT_TIMEOUT, Connection, redis_key, shard_tag, slot};
use crate::backend::{Health, HealthMonitor, StorageFault};

/// How often, at most, a host whose writes fail probes the server.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long writes must have failed for an unreachable node or a failover
/// before the link builds a fresh cluster connection, and how often at most
/// it does so after. A failover that the client follows by itself (a few
/// seconds with Redis's default timeouts on one machine) needs none.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(5);
/// The key a standalone server's probe writes.
const PROBE_KEY: &[u8] = b"o:probe";
/// The shard registry's key (see the module doc of `redis`): its probe key
/// carries it as hash tag, so that both are in one slot.
const REGISTRY_PROBE_KEY: &[u8] = b"{o:shards}p";

/// Where a write failed: a hash slot, and a key of that slot that a probe
/// may write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Place {
    slot: u16,
    probe_key: Vec<u8>,
}

/// See the module doc.
pub(super) struct RedisLink {
    connection: RwLock<Connection>,
    /// Builds fresh cluster connections; `None` for a standalone server,
    /// whose connection manager reconnects by itself.
    cluster: Option<ClusterClient>,
    health: HealthMonitor,
    failing: Mutex<Failing>,
    /// Whether a probe or a reconnect runs now: never two at once.
    probing: AtomicBool,
    reconnecting: AtomicBool,
}

/// The slots whose last write failed, and since when writes fail.
#[derive(Default)]
struct Failing {
    /// Each failing slot's probe key and the fault it met last.
    slots: HashMap<u16, (Vec<u8>, StorageFault)>,
    since: Option<Instant>,
    last_probe: Option<Instant>,
    last_reconnect: Option<Instant>,
}

impl RedisLink {
    pub(super) fn new(connection: Connection, cluster: Option<ClusterClient>) -> Arc<Self> {
        Arc::new(Self {
            connection: RwLock::new(connection),
            cluster,
            health: HealthMonitor::new("redis"),
            failing: Mutex::new(Failing::default()),
            probing: AtomicBool::new(false),
            reconnecting: AtomicBool::new(false),
        })
    }

    /// The connection operations use now (a cheap clone).
    pub(super) fn connection(&self) -> Connection {
        self.connection.read().expect("connection lock").clone()
    }

    pub(super) fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// Where the records of `shard` live.
    pub(super) fn shard(&self, shard: &[u8]) -> Place {
        if self.cluster.is_none() {
            return Self::server();
        }
        Place {
            slot: slot(shard_tag(shard).as_bytes()),
            probe_key: redis_key(shard, b'p', b""),
        }
    }

    /// Where the shard registry lives.
    pub(super) fn registry(&self) -> Place {
        if self.cluster.is_none() {
            return Self::server();
        }
        Place {
            slot: slot(b"o:shards"),
            probe_key: REGISTRY_PROBE_KEY.to_vec(),
        }
    }

    /// A standalone server: one place.
    fn server() -> Place {
        Place {
            slot: 0,
            probe_key: PROBE_KEY.to_vec(),
        }
    }

    /// A write reached `place` and Redis took it (a conflict counts: the
    /// server answered). Writes work again once no place is left failing.
    pub(super) fn worked(&self, place: &Place) {
        let mut failing = self.failing.lock().expect("failing lock");
        if failing.slots.is_empty() {
            return;
        }
        failing.slots.remove(&place.slot);
        if failing.slots.is_empty() {
            failing.since = None;
            self.health.succeeded();
        }
    }

    /// An operation at `place` failed for `fault`: a commit (counted as a
    /// failed commit) or a read that shows writes would fail too.
    pub(super) fn failed(
        self: &Arc<Self>,
        place: &Place,
        fault: StorageFault,
        error: &dyn std::fmt::Display,
        commit: bool,
    ) {
        {
            let mut failing = self.failing.lock().expect("failing lock");
            failing
                .slots
                .insert(place.slot, (place.probe_key.clone(), fault));
            failing.since.get_or_insert_with(Instant::now);
            if commit {
                self.health.failed(fault, error);
            } else {
                self.health.failing(fault, error);
            }
        }
        if matches!(fault, StorageFault::Unreachable | StorageFault::Failover) {
            self.reconnect_if_stuck();
        }
    }

    /// Whether writes work, as the last operations (and probes) found;
    /// while they fail, starts a probe.
    pub(super) fn health(self: &Arc<Self>) -> Health {
        let health = self.health.health();
        if !health.writable() {
            self.probe();
        }
        health
    }

    /// While writes fail, writes one small key in each failing slot in the
    /// background (at most once per [`PROBE_INTERVAL`]), so that `/readyz`
    /// turns ready again once the server takes writes, even if no client
    /// writes meanwhile (a load balancer that follows `/readyz` sends
    /// none). The write is one that Redis refuses when out of memory, and
    /// that needs the slot's master reachable. The first slot still failing
    /// ends the round: its fault stays the state.
    fn probe(self: &Arc<Self>) {
        let keys: Vec<(u16, Vec<u8>, Option<StorageFault>)> = {
            let mut failing = self.failing.lock().expect("failing lock");
            let now = Instant::now();
            if failing
                .last_probe
                .is_some_and(|at| now.duration_since(at) < PROBE_INTERVAL)
            {
                return;
            }
            failing.last_probe = Some(now);
            let mut keys: Vec<_> = failing
                .slots
                .iter()
                .map(|(slot, (key, fault))| (*slot, key.clone(), Some(*fault)))
                .collect();
            if keys.is_empty() {
                let server = Self::server();
                keys.push((server.slot, server.probe_key, None));
            }
            keys
        };
        // Outside a runtime (a synchronous caller) nothing is probed.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let link = self.clone();
        runtime.spawn(async move {
            for (slot, key, fault) in keys {
                let mut c = link.connection();
                let mut probe = redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("PX")
                    .arg(PROBE_INTERVAL.as_millis() as u64 * 10)
                    .query_async::<()>(&mut c)
                    .await
                    .map_err(super::faults::backend_error);
                // A slot that had no replica works once one confirms a
                // write again (see `confirm_replicated`).
                if probe.is_ok() && fault == Some(StorageFault::NoReplica) {
                    probe = super::confirm_replicated(c, slot).await;
                }
                let place = Place {
                    slot,
                    probe_key: key,
                };
                match probe {
                    Ok(()) => link.worked(&place),
                    Err(e) => {
                        if let Some(fault) = e.fault() {
                            link.failed(&place, fault, &e, false);
                        }
                        break;
                    }
                }
            }
            link.probing.store(false, Ordering::Release);
        });
    }

    /// On a cluster whose writes have failed for an unreachable node or a
    /// failover for [`RECONNECT_INTERVAL`], builds a fresh connection in the
    /// background (see the module doc).
    fn reconnect_if_stuck(self: &Arc<Self>) {
        let Some(client) = self.cluster.clone() else {
            return;
        };
        {
            let mut failing = self.failing.lock().expect("failing lock");
            let now = Instant::now();
            let due = |at: Option<Instant>| {
                at.is_some_and(|at| now.duration_since(at) >= RECONNECT_INTERVAL)
            };
            if !due(failing.since)
                || !(failing.last_reconnect.is_none() || due(failing.last_reconnect))
            {
                return;
            }
            failing.last_reconnect = Some(now);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let link = self.clone();
        runtime.spawn(async move {
            // Each node's attempt is bounded by the connect timeout; the
            // whole, in case the client waits on something else.
            let fresh = tokio::time::timeout(CONNECT_TIMEOUT * 3, client.get_async_connection());
            match fresh.await {
                Ok(Ok(connection)) => {
                    *link.connection.write().expect("connection lock") =
                        Connection::Cluster(connection);
                    tracing::info!("redis: writes kept failing; using a fresh cluster connection");
                }
                Ok(Err(e)) => tracing::debug!("redis: a fresh cluster connection failed: {e}"),
                Err(_) => tracing::debug!("redis: a fresh cluster connection timed out"),
            }
            link.reconnecting.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shards_probe_key_is_in_the_shards_slot_and_the_registrys_in_the_registrys() {
        // The slot of a key with a hash tag is the slot of the tag alone.
        let shard = b"some shard";
        let key = redis_key(shard, b'p', b"");
        let open = key.iter().position(|&b| b == b'{').unwrap();
        let close = key.iter().position(|&b| b == b'}').unwrap();
        assert_eq!(
            slot(&key[open + 1..close]),
            slot(shard_tag(shard).as_bytes())
        );
        assert_eq!(&REGISTRY_PROBE_KEY[1..9], b"o:shards");
    }
}
