//! A backend on Redis, standalone or Cluster, shared by several hosts.
//!
//! # Layout in Redis
//!
//! Each shard becomes a hash tag, so that everything of one shard lives in
//! one hash slot, on one master, where one Lua script can change it
//! atomically:
//!
//! | Redis key | type | holds |
//! |---|---|---|
//! | `o{S}r` key | string | a record (already sealed by the host) |
//! | `o{S}i` | sorted set | every record key of shard S, all at score 0, so ZRANGEBYLEX gives them in byte order |
//! | `o{S}d` id | string, expiring | "this commit was applied", so a retried commit is applied once |
//! | `o{S}p` | string, expiring | a health probe's write to S's slot (see `link`) |
//! | `o:shards` | sorted set | every shard name, for scans of several shards |
//!
//! `S` is the shard's name in hex. Names and keys reaching a backend are
//! HMAC tags and values are sealed: Redis sees no plaintext.
//!
//! # Commits
//!
//! A batch is one script (EVALSHA, loaded on first use and again after a
//! failover) that checks every expectation, then applies every write and
//! index change, or does nothing. The client retries a command whose
//! connection dropped; the commit id makes that retry a no-op if the first
//! attempt had landed, so an increment is never applied twice.
//!
//! # Durability
//!
//! See [`RedisDurability`]. Redis acknowledges a script after running it;
//! whether that write survives the master's crash is the server's
//! `appendfsync` setting, and whether it survives a failover is whether a
//! replica had it.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, RedisError, RedisFuture, Script, Value};

use super::{Backend, BackendError, Batch, BoxFuture, Expect, Health, Pair, Shards, StorageFault};
use crate::encryption::hex;
use link::{Place, RedisLink};

mod config;
mod faults;
mod link;

pub use config::{RedisConfig, RedisDurability, RedisUrlError};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command may wait for its answer. A failover takes a few
/// seconds; a request's own deadline bounds the whole.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a commit waits for a replica (`WAIT`) in the replica mode:
/// less than the response timeout, so that WAIT answers first.
const REPLICA_PATIENCE: Duration = Duration::from_secs(5);
/// How long a commit id is remembered: far longer than any retry.
const COMMIT_ID_TTL_MS: u64 = 120_000;
/// The sorted set of every shard's name.
const SHARDS: &[u8] = b"o:shards";
/// How many shard names one registry read takes.
const SHARD_PAGE: usize = 1024;

/// Checks each expectation, then applies each write and its index change,
/// or nothing. KEYS: the index, the commit marker, then one record key per
/// write. ARGV: per write, its op (`p`ut or `d`elete), its index member
/// (the record's key), its expectation (`a`ny, `n`ot present or `v`alue),
/// the expected value and the new value.
const COMMIT: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end
local n = #KEYS - 2
for i = 1, n do
  local a = (i - 1) * 5
  local expect = ARGV[a + 3]
  if expect ~= 'a' then
    local current = redis.call('GET', KEYS[i + 2])
    if expect == 'n' then
      if current then return 0 end
    elseif current ~= ARGV[a + 4] then
      return 0
    end
  end
end
for i = 1, n do
  local a = (i - 1) * 5
  if ARGV[a + 1] == 'p' then
    redis.call('SET', KEYS[i + 2], ARGV[a + 5])
    redis.call('ZADD', KEYS[1], 0, ARGV[a + 2])
  else
    redis.call('DEL', KEYS[i + 2])
    redis.call('ZREM', KEYS[1], ARGV[a + 2])
  end
end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[#ARGV])
return 1
";

/// Up to ARGV[3] records of one shard between two ZRANGEBYLEX bounds, as
/// alternating keys and values, read at one moment. KEYS: the index.
/// ARGV[4]: the prefix of the shard's record keys.
const SCAN: &str = r"
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, m in ipairs(members) do
  local v = redis.call('GET', ARGV[4] .. m)
  if v then
    out[#out + 1] = m
    out[#out + 1] = v
  end
end
return out
";

/// One connection to a standalone server or to a whole cluster; both
/// reconnect by themselves.
#[derive(Clone)]
enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// A [`Backend`] on a Redis server or cluster, which several hosts may
/// share.
pub struct RedisBackend {
    /// The connection, and whether writes through it work.
    link: Arc<RedisLink>,
    durability: RedisDurability,
    commit: Script,
    scan: Script,
    /// Shards this process knows are in the registry (it only grows).
    registered: Mutex<HashSet<Vec<u8>>>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("cluster", &self.link.is_cluster())
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects, and checks that the server is what `config` says it is: a
    /// cluster for a cluster URL, a standalone server otherwise, that the
    /// password is accepted, and that it keeps writes as the durability
    /// asks.
    pub async fn connect(config: &RedisConfig) -> Result<Self, BackendError> {
        let at = config.addresses();
        let fail = |what: String, e: RedisError| BackendError::Connect {
            what: format!("{what}: {}", one_line(&e)),
            source: Some(Arc::new(e)),
        };
        let refused = |e: RedisError| {
            let kind = if e.kind() == redis::ErrorKind::AuthenticationFailed
                || e.code().is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH")
            {
                format!("Redis at {at} refused the credentials")
            } else if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() {
                format!("cannot reach Redis at {at}")
            } else if config.cluster && e.to_string().contains("cluster support disabled") {
                format!("Redis at {at} is not a cluster (use redis:// for a standalone server)")
            } else {
                format!("cannot use Redis at {at}")
            };
            fail(kind, e)
        };
        let infos = config
            .nodes
            .iter()
            .map(|n| config.connection_info(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(refused)?;
        let mut cluster_client = None;
        let mut connection = if config.cluster {
            let mut builder = ClusterClientBuilder::new(infos)
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .retries(8);
            if let Some(user) = &config.username {
                builder = builder.username(user);
            }
            if let Some(password) = &config.password {
                builder = builder.password(password);
            }
            let client = builder.build().map_err(refused)?;
            let connection = client.get_async_connection().await.map_err(refused)?;
            cluster_client = Some(client);
            Connection::Cluster(connection)
        } else {
            let client = redis::Client::open(infos.into_iter().next().expect("one node"))
                .map_err(refused)?;
            let manager = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(2);
            Connection::Standalone(
                ConnectionManager::new_with_config(client, manager)
                    .await
                    .map_err(refused)?,
            )
        };
        // The manager connects lazily on some errors: prove the server
        // answers (and takes our password) before saying we are up.
        // (A cluster answers from every master, a server from itself.)
        let info: Value = redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut connection)
            .await
            .map_err(refused)?;
        let cluster_node = match info {
            Value::BulkString(text) => text.windows(17).any(|w| w == b"cluster_enabled:1"),
            Value::VerbatimString { text, .. } => text.contains("cluster_enabled:1"),
            _ => false,
        };
        if !config.cluster && cluster_node {
            return Err(BackendError::Connect {
                what: format!(
                    "Redis at {at} is a cluster node (use redis+cluster:// to use the cluster)"
                ),
                source: None,
            });
        }
        warn_unless_fsynced(&mut connection, &at).await;
        Ok(Self {
            link: RedisLink::new(connection, cluster_client),
            durability: config.durability,
            commit: Script::new(COMMIT),
            scan: Script::new(SCAN),
            registered: Mutex::new(HashSet::new()),
        })
    }

    /// A read's error, typed as [`faults::backend_error`] types it. A
    /// server that cannot be reached (or is failing over) fails writes
    /// too, so the health turns to failing without waiting for a commit.
    /// `place` is where the read went.
    fn read_error(&self, place: &Place, e: RedisError) -> BackendError {
        let e = faults::backend_error(e);
        if let Some(fault @ (StorageFault::Unreachable | StorageFault::Failover)) = e.fault() {
            self.link.failed(place, fault, &e, false);
        }
        e
    }

    /// Applies `batch` (see [`Backend::commit`]).
    async fn apply(&self, batch: Batch) -> Result<(), BackendError> {
        let id: [u8; 16] = crate::encryption::random_array();
        let mut call = self.commit.prepare_invoke();
        call.key(redis_key(&batch.shard, b'i', b""))
            .key(redis_key(&batch.shard, b'd', &id));
        for w in &batch.writes {
            call.key(redis_key(&batch.shard, b'r', &w.key));
        }
        for w in &batch.writes {
            let (expect, expected): (&str, &[u8]) = match &w.expect {
                Expect::Any => ("a", b""),
                Expect::Absent => ("n", b""),
                Expect::Value(v) => ("v", v),
            };
            call.arg(if w.value.is_some() { "p" } else { "d" })
                .arg(&w.key)
                .arg(expect)
                .arg(expected)
                .arg(w.value.as_deref().unwrap_or_default());
        }
        call.arg(COMMIT_ID_TTL_MS);
        let mut c = self.link.connection();
        let applied: i64 = call
            .invoke_async(&mut c)
            .await
            .map_err(faults::backend_error)?;
        if applied != 1 {
            return Err(BackendError::Conflict);
        }
        self.replicate(&batch.shard).await
    }

    /// Adds `shard` to the registry unless this process already did.
    async fn register(&self, shard: &[u8]) -> Result<(), BackendError> {
        if self
            .registered
            .lock()
            .expect("registry lock")
            .contains(shard)
        {
            return Ok(());
        }
        let mut c = self.link.connection();
        redis::cmd("ZADD")
            .arg(SHARDS)
            .arg(0)
            .arg(shard)
            .query_async::<()>(&mut c)
            .await
            .map_err(faults::backend_error)?;
        self.registered
            .lock()
            .expect("registry lock")
            .insert(shard.to_vec());
        Ok(())
    }

    /// The names of the shards a scan reads, in order.
    async fn shards(&self, shards: Shards<'_>) -> Result<Vec<Vec<u8>>, BackendError> {
        let start = match shards {
            Shards::One(shard) => return Ok(vec![shard.to_vec()]),
            Shards::StartingWith(start) => start,
        };
        let mut c = self.link.connection();
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut min = lex_min(start, None);
        let max = lex_max(start);
        loop {
            let page: Vec<Vec<u8>> = redis::cmd("ZRANGEBYLEX")
                .arg(SHARDS)
                .arg(&min)
                .arg(&max)
                .arg("LIMIT")
                .arg(0)
                .arg(SHARD_PAGE)
                .query_async(&mut c)
                .await
                .map_err(|e| self.read_error(&self.link.registry(), e))?;
            let full = page.len() == SHARD_PAGE;
            if let Some(last) = page.last() {
                min = lex_min(start, Some(last));
            }
            names.extend(page);
            if !full {
                return Ok(names);
            }
        }
    }

    /// Waits until a replica has every write this connection made to
    /// `shard`'s master, if the durability asks for it.
    async fn replicate(&self, shard: &[u8]) -> Result<(), BackendError> {
        if self.durability != RedisDurability::Replica {
            return Ok(());
        }
        confirm_replicated(self.link.connection(), slot(shard_tag(shard).as_bytes())).await
    }
}

/// Waits until a replica has every write `connection` made to the master
/// of `slot` (on a standalone server: to the server).
async fn confirm_replicated(connection: Connection, slot: u16) -> Result<(), BackendError> {
    let mut wait = redis::cmd("WAIT");
    wait.arg(1).arg(REPLICA_PATIENCE.as_millis() as u64);
    let acked: i64 = match connection {
        Connection::Standalone(mut c) => wait
            .query_async(&mut c)
            .await
            .map_err(faults::backend_error)?,
        Connection::Cluster(mut c) => {
            let route = Route::new(slot, SlotAddr::Master);
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
            let value = c
                .route_command(wait, routing)
                .await
                .and_then(Value::extract_error)
                .map_err(faults::backend_error)?;
            redis::from_redis_value(value).map_err(BackendError::storage)?
        }
    };
    if acked < 1 {
        // Typed, so that `/readyz` says so; it clears once a replica
        // confirms again (a commit's WAIT, or the probe's).
        return Err(BackendError::WritesFailing {
            fault: StorageFault::NoReplica,
            source: Arc::new(NotReplicated),
        });
    }
    Ok(())
}

/// A write that no replica confirmed in time.
#[derive(Debug, thiserror::Error)]
#[error("no Redis replica confirmed the write in time; it may or may not have been kept")]
struct NotReplicated;

/// Says so if the server does not fsync every write to its append-only
/// file: then an acknowledged write can be lost if the master crashes.
/// Servers that hide CONFIG (some managed services) are given the benefit
/// of the doubt, with a note.
async fn warn_unless_fsynced(c: &mut Connection, at: &str) {
    let get = |name: &'static str| {
        let mut c = c.clone();
        async move {
            let pair: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut c)
                .await
                .ok()?;
            pair.into_iter().nth(1)
        }
    };
    match (get("appendonly").await, get("appendfsync").await) {
        (Some(only), Some(fsync)) if only == "yes" && fsync == "always" => {}
        (Some(only), Some(fsync)) => tracing::warn!(
            "Redis at {at} has appendonly {only}, appendfsync {fsync}: a write ostore \
             acknowledged can be lost if the Redis server crashes (set appendonly yes and \
             appendfsync always to keep every acknowledged write)"
        ),
        _ => tracing::info!(
            "cannot read the Redis configuration at {at}; make sure it fsyncs every write \
             (appendonly yes, appendfsync always) if acknowledged writes must survive a crash"
        ),
    }
}

/// The first line of an error, without Redis's trailing detail.
fn one_line(e: &RedisError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// The Redis key of shard `shard`'s part `part` (`r`, `i`, `d`), followed
/// by `key`.
fn redis_key(shard: &[u8], part: u8, key: &[u8]) -> Vec<u8> {
    let tag = shard_tag(shard);
    let mut out = Vec::with_capacity(4 + tag.len() + key.len());
    out.extend_from_slice(b"o{");
    out.extend_from_slice(tag.as_bytes());
    out.push(b'}');
    out.push(part);
    out.extend_from_slice(key);
    out
}

/// The hash tag of `shard`'s Redis keys.
fn shard_tag(shard: &[u8]) -> String {
    if shard.is_empty() {
        // Damage at rest has no shard; it still needs a hash tag of its own.
        "-".to_string()
    } else {
        hex(shard)
    }
}

/// The ZRANGEBYLEX lower bound of keys starting with `prefix` and after
/// `after`.
fn lex_min(prefix: &[u8], after: Option<&[u8]>) -> Vec<u8> {
    let (bracket, bound) = match after {
        Some(a) if a >= prefix => (b'(', a),
        _ => (b'[', prefix),
    };
    let mut out = vec![bracket];
    out.extend_from_slice(bound);
    out
}

/// The ZRANGEBYLEX upper bound of keys starting with `prefix`: just below
/// the first key past them, or `+` when no key is.
fn lex_max(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            let mut out = vec![b'('];
            out.extend_from_slice(&end);
            return out;
        }
    }
    b"+".to_vec()
}

/// The Redis Cluster hash slot of a hash tag: CRC16 (XMODEM) mod 16384.
fn slot(tag: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in tag {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

impl Backend for RedisBackend {
    fn get<'a>(
        &'a self,
        shard: &'a [u8],
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, BackendError>> {
        Box::pin(async move {
            let mut c = self.link.connection();
            redis::cmd("GET")
                .arg(redis_key(shard, b'r', key))
                .query_async(&mut c)
                .await
                .map_err(|e| self.read_error(&self.link.shard(shard), e))
        })
    }

    /// One `MGET`: a shard's keys share a hash tag, so one node holds them.
    fn get_many<'a>(
        &'a self,
        shard: &'a [u8],
        keys: &'a [Vec<u8>],
    ) -> BoxFuture<'a, Result<Vec<Option<Vec<u8>>>, BackendError>> {
        Box::pin(async move {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let mut c = self.link.connection();
            let mut mget = redis::cmd("MGET");
            for key in keys {
                mget.arg(redis_key(shard, b'r', key));
            }
            mget.query_async(&mut c)
                .await
                .map_err(|e| self.read_error(&self.link.shard(shard), e))
        })
    }

    fn scan<'a>(
        &'a self,
        shards: Shards<'a>,
        prefix: &'a [u8],
        after: Option<&'a [u8]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<Pair>, BackendError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let min = lex_min(prefix, after);
            let max = lex_max(prefix);
            let mut pairs: Vec<Pair> = Vec::new();
            for shard in self.shards(shards).await? {
                let mut c = self.link.connection();
                let flat: Vec<Vec<u8>> = self
                    .scan
                    .key(redis_key(&shard, b'i', b""))
                    .arg(&min)
                    .arg(&max)
                    .arg(limit)
                    .arg(redis_key(&shard, b'r', b""))
                    .invoke_async(&mut c)
                    .await
                    .map_err(|e| self.read_error(&self.link.shard(&shard), e))?;
                let mut flat = flat.into_iter();
                while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
                    pairs.push((k, v));
                }
                // Of several shards only the `limit` smallest keys count.
                if pairs.len() > limit {
                    pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                    pairs.truncate(limit);
                }
            }
            pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            Ok(pairs)
        })
    }

    fn commit(&self, batch: Batch) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            // Where a failure happened, so that only a write there again
            // (or the probe's) says writes work.
            let shard = self.link.shard(&batch.shard);
            let result = match self.register(&batch.shard).await {
                Err(e) => Err((e, self.link.registry())),
                Ok(()) => self.apply(batch).await.map_err(|e| (e, shard.clone())),
            };
            match &result {
                // A conflict is an answer: the server took the script.
                Ok(()) | Err((BackendError::Conflict, _)) => self.link.worked(&shard),
                Err((e, place)) => {
                    if let Some(fault) = e.fault() {
                        self.link.failed(place, fault, e, true);
                    }
                }
            }
            result.map_err(|(e, _)| e)
        })
    }

    /// Whether commits succeed, as the last ones (or the last probe) found,
    /// in every slot where one failed.
    fn health(&self) -> Health {
        self.link.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lex_bounds_cover_exactly_the_prefix() {
        assert_eq!(lex_min(b"p/", None), b"[p/");
        assert_eq!(lex_min(b"p/", Some(b"p/1")), b"(p/1");
        assert_eq!(lex_min(b"p/", Some(b"a")), b"[p/");
        assert_eq!(lex_max(b"p/"), b"(p0");
        assert_eq!(lex_max(b"p\xff"), b"(q");
        assert_eq!(lex_max(b"\xff\xff"), b"+");
        assert_eq!(lex_max(b""), b"+");
    }

    #[test]
    fn slots_are_redis_cluster_slots() {
        // Values from the Redis Cluster specification's examples and
        // `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 0x31c3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
    }
}
