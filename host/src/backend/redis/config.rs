//! Where the Redis backend connects and what it promises: the URL, the
//! credentials and the durability, from flags or a runtime config file.

use std::fmt;
use std::str::FromStr;

use redis::{ConnectionInfo, IntoConnectionInfo, RedisError};
use serde::Deserialize;

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedisDurability {
    /// Acknowledged once the master has applied it. It survives the
    /// master's crash if the master fsyncs its append-only file on every
    /// write (`appendonly yes`, `appendfsync always`; the host warns at
    /// start when it can see that is not so). A failover may lose it if the
    /// replica had not received it yet.
    #[default]
    Master,
    /// Acknowledged once the master has applied it and at least one replica
    /// has received it (`WAIT 1`): it survives a failover too. A write whose
    /// replica does not confirm within the response timeout is reported as
    /// failed (after 5 s), though it may have landed on the master.
    Replica,
}

impl FromStr for RedisDurability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "master" => Ok(Self::Master),
            "replica" => Ok(Self::Replica),
            other => Err(format!(
                "unknown Redis durability {other:?}; expected master or replica"
            )),
        }
    }
}

/// Where the Redis backend connects, parsed from a URL:
/// `redis://[user:password@]host:port[/db]` for a standalone server,
/// `redis+cluster://[user:password@]host:port,host:port,...` for a cluster,
/// `rediss://` and `rediss+cluster://` for TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub nodes: Vec<(String, u16)>,
    pub cluster: bool,
    pub tls: bool,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub durability: RedisDurability,
}

impl fmt::Debug for RedisConfig {
    /// Shows everything but the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("nodes", &self.nodes)
            .field("cluster", &self.cluster)
            .field("tls", &self.tls)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("durability", &self.durability)
            .finish()
    }
}

/// Why a Redis URL was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bad Redis URL {url:?}: {why}")]
pub struct RedisUrlError {
    url: String,
    why: &'static str,
}

impl FromStr for RedisConfig {
    type Err = RedisUrlError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = |why| RedisUrlError {
            url: redact(url),
            why,
        };
        let (scheme, rest) = url.split_once("://").ok_or(bad("no scheme://"))?;
        let (tls, cluster) = match scheme {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+cluster" => (false, true),
            "rediss+cluster" => (true, true),
            _ => {
                return Err(bad(
                    "the scheme must be redis, rediss, redis+cluster or rediss+cluster",
                ));
            }
        };
        let (credentials, rest) = match rest.rsplit_once('@') {
            Some((c, r)) => (Some(c), r),
            None => (None, rest),
        };
        let (username, password) = match credentials {
            None => (None, None),
            Some(c) => {
                let (user, password) = c.split_once(':').unwrap_or(("", c));
                let user = percent_decode(user).ok_or(bad("the user name is badly encoded"))?;
                let password =
                    percent_decode(password).ok_or(bad("the password is badly encoded"))?;
                (
                    (!user.is_empty()).then_some(user),
                    (!password.is_empty()).then_some(password),
                )
            }
        };
        let (hosts, db) = match rest.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, db)) => (h, db.parse().map_err(|_| bad("the database is no number"))?),
            None => (rest, 0),
        };
        if cluster && db != 0 {
            return Err(bad("a cluster has only database 0"));
        }
        let mut nodes = Vec::new();
        for node in hosts.split(',') {
            let (host, port) = match node.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().map_err(|_| bad("a port is no number"))?),
                None => (node, 6379),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad("a host is empty"));
            }
            nodes.push((host.to_string(), port));
        }
        if !cluster && nodes.len() > 1 {
            return Err(bad(
                "several hosts need redis+cluster:// (a standalone server has one)",
            ));
        }
        Ok(Self {
            nodes,
            cluster,
            tls,
            db,
            username,
            password,
            durability: RedisDurability::default(),
        })
    }
}

impl<'de> Deserialize<'de> for RedisConfig {
    /// A table of the URL, as on the command line, and the durability.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Table {
            url: String,
            #[serde(default)]
            durability: RedisDurability,
        }
        let table = Table::deserialize(d)?;
        let mut config: RedisConfig = table.url.parse().map_err(serde::de::Error::custom)?;
        config.durability = table.durability;
        Ok(config)
    }
}

/// `url` with any password replaced, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, hosts))) => format!("{scheme}://***@{hosts}"),
        _ => url.to_string(),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = char::from(bytes.next()?).to_digit(16)?;
            let lo = char::from(bytes.next()?).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

impl RedisConfig {
    /// The addresses, for messages: `host:port, host:port`.
    pub fn addresses(&self) -> String {
        let all: Vec<_> = self.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        all.join(", ")
    }

    pub(super) fn connection_info(
        &self,
        (host, port): &(String, u16),
    ) -> Result<ConnectionInfo, RedisError> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let info = format!("{scheme}://{host}:{port}/{}", self.db).into_connection_info()?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        Ok(info.set_redis_settings(settings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_what_they_say() {
        let c: RedisConfig = "redis://127.0.0.1:6380".parse().unwrap();
        assert_eq!(c.nodes, [("127.0.0.1".to_string(), 6380)]);
        assert!(!c.cluster && !c.tls && c.password.is_none());
        let c: RedisConfig = "rediss+cluster://app:p%40ss@a:1,b:2,[::1]:3"
            .parse()
            .unwrap();
        assert!(c.cluster && c.tls);
        assert_eq!(c.username.as_deref(), Some("app"));
        assert_eq!(c.password.as_deref(), Some("p@ss"));
        assert_eq!(c.nodes.len(), 3);
        assert_eq!(c.nodes[2], ("::1".to_string(), 3));
        assert!(
            !format!("{c:?}").contains("p@ss"),
            "Debug shows the password"
        );
        let c: RedisConfig = "redis://:secret@h/2".parse().unwrap();
        assert_eq!(
            (c.password.as_deref(), c.db, c.nodes[0].1),
            (Some("secret"), 2, 6379)
        );
        for bad in [
            "http://h:1",
            "redis://h:port",
            "redis://a:1,b:2",
            "redis+cluster://a:1/3",
            "redis://",
            "redis://:%zz@h:1",
        ] {
            let e = bad.parse::<RedisConfig>().unwrap_err().to_string();
            assert!(e.starts_with("bad Redis URL"), "{bad}: {e}");
        }
        let e = "redis://u:hunter2@h:1/x"
            .parse::<RedisConfig>()
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
