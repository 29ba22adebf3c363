//! Real Redis servers for the tests: Debian's `redis-server`, started on
//! free loopback ports in a temporary directory, standalone or as a cluster
//! of masters with one replica each, and ended by pid when dropped.
//!
//! Every server keeps an append-only file fsynced on every write
//! (`appendonly yes`, `appendfsync always`), so that the tests can read its
//! bytes, and so that a write ostore acknowledged survives the server's
//! crash.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer after it starts, and a cluster to
/// agree it is up.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How many ports a server tries before giving up: another process may
/// take a port between the check that it is free and the server's bind.
const BIND_ATTEMPTS: usize = 5;

/// One `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    /// Its working directory: the append-only file and the RDB file.
    pub dir: tempfile::TempDir,
    password: Option<String>,
    options: RedisOptions,
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct RedisOptions {
    /// `requirepass`: clients must give this password.
    pub password: Option<String>,
    /// `cluster-enabled yes`.
    pub cluster: bool,
    /// `cluster-node-timeout` in milliseconds (2000 if `None`): how long a
    /// master may be unreachable before its replica is promoted.
    pub cluster_node_timeout: Option<u32>,
}

/// A free loopback port whose cluster bus port (+10000) is free too. Cluster
/// ports must stay at or below 55535; ports are taken from a range below
/// that, starting at a point set by the process id so that test processes
/// running at once rarely meet.
pub fn free_port_pair() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 800) as u16 * 25,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..2_000 {
        let port = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 20_000 + (port - 20_000) % 25_000;
        let free = |p: u16| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free pair of loopback ports between 20000 and 55535");
}

impl RedisServer {
    /// Starts a server and waits until it answers.
    /// A port found free may be taken (by any process's outgoing
    /// connection, say) before the server binds it: then another is tried.
    pub fn start(options: &RedisOptions) -> RedisServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = RedisServer {
            child: None,
            port: free_port_pair(),
            dir,
            password: options.password.clone(),
            options: options.clone(),
        };
        for _ in 0..BIND_ATTEMPTS {
            match server.try_spawn() {
                Ok(()) => return server,
                Err(taken) => {
                    eprintln!("{taken}; trying another port");
                    server.port = free_port_pair();
                }
            }
        }
        panic!("redis-server found no free port in {BIND_ATTEMPTS} attempts");
    }

    /// Starts the server again (killing it first if it runs) on the same
    /// port and directory, so that it reads its append-only file back, and
    /// waits until it answers.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    fn spawn(&mut self) {
        if let Err(taken) = self.try_spawn() {
            panic!("{taken}");
        }
    }

    /// Starts the server on its port and waits until it answers; `Err` if
    /// the port was taken (the server exits at once, saying so).
    fn try_spawn(&mut self) -> Result<(), String> {
        let options = &self.options;
        let dir = self.dir.path();
        let mut command = Command::new("redis-server");
        command
            .current_dir(dir)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &dir.display().to_string()])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .args(["--save", "", "--rdbcompression", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .args(["--logfile", "redis.log"]);
        if let Some(password) = &options.password {
            command.args(["--requirepass", password, "--masterauth", password]);
        }
        if options.cluster {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-config-file", "nodes.conf"])
                .args([
                    "--cluster-node-timeout",
                    &options.cluster_node_timeout.unwrap_or(2000).to_string(),
                ]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server (Debian package redis-server)");
        self.child = Some(child);
        // Until the server says it listens, its port may be another
        // process's, which a PING must not reach.
        let deadline = Instant::now() + START_PATIENCE;
        let log =
            |s: &Self| std::fs::read_to_string(s.dir.path().join("redis.log")).unwrap_or_default();
        while !log(self).contains("Ready to accept connections") {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() {
                let log = log(self);
                if log.contains("Address already in use") {
                    self.child = None;
                    return Err(format!("port {} was taken", self.port));
                }
                panic!("redis-server on port {} exited; its log:\n{log}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} not ready after {START_PATIENCE:?}; its log:\n{}",
                self.port,
                log(self)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait_until(START_PATIENCE, |s| s.cli(&["PING"]).trim() == "PONG");
        Ok(())
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `redis-cli` against this server and returns what it printed
    /// (errors included: `redis-cli` prints them on stdout).
    pub fn cli(&self, args: &[&str]) -> String {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            command.env("REDISCLI_AUTH", password);
        }
        let out = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Like [`cli`](Self::cli), for binary output (`--no-raw` is not used).
    pub fn cli_bytes(&self, args: &[&str]) -> Vec<u8> {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            command.env("REDISCLI_AUTH", password);
        }
        command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli")
            .stdout
    }

    /// Waits (at most `patience`) until `ready` holds.
    pub fn wait_until(&self, patience: Duration, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + patience;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} not ready after {patience:?}; its log:\n{}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every file the server wrote (append-only files, RDB), read whole.
    pub fn files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.file_name().is_some_and(|n| n != "redis.log")
                    && let Ok(bytes) = std::fs::read(&path)
                {
                    out.push((path, bytes));
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), &mut out);
        out
    }

    /// Ends the server with SIGKILL, as a crash would, and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster: `masters` masters with one replica each (or more),
/// made with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the servers, makes them a cluster, and waits until every
    /// node says the cluster is up.
    pub fn start(masters: usize, options: &RedisOptions) -> RedisCluster {
        Self::start_with_replicas(masters, 1, options)
    }

    /// Like [`start`](Self::start), with `replicas` replicas per master: with
    /// two, a master that failed over still has a replica, so that writes
    /// which wait for one (`--redis-durability replica`) go on.
    pub fn start_with_replicas(
        masters: usize,
        replicas: usize,
        options: &RedisOptions,
    ) -> RedisCluster {
        let options = RedisOptions {
            cluster: true,
            ..options.clone()
        };
        let nodes: Vec<_> = (0..masters * (1 + replicas))
            .map(|_| RedisServer::start(&options))
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new("redis-cli");
        create
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        if let Some(password) = &options.password {
            create.env("REDISCLI_AUTH", password);
        }
        let out = create
            .stdin(Stdio::null())
            .output()
            .expect("running redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        for node in &cluster.nodes {
            node.wait_until(START_PATIENCE, |n| {
                let info = n.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:")
            });
        }
        // Replicas must have synced before a test relies on them.
        cluster.wait_for_replicas();
        cluster
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...` (every node).
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// The nodes that are masters now, by index.
    pub fn masters(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].is_running()
                    && self.nodes[i]
                        .cli(&["ROLE"])
                        .lines()
                        .next()
                        .is_some_and(|l| l.trim() == "master")
            })
            .collect()
    }

    /// Waits until every running replica reports its link to its master up.
    pub fn wait_for_replicas(&self) {
        for node in &self.nodes {
            node.wait_until(START_PATIENCE, |n| {
                let info = n.cli(&["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            });
        }
    }

    /// Waits until every running node sees the cluster up (after a
    /// failover).
    pub fn wait_until_ok(&mut self, patience: Duration) {
        let deadline = Instant::now() + patience;
        loop {
            let running: Vec<&RedisServer> = self
                .nodes
                .iter_mut()
                .filter_map(|n| n.is_running().then_some(&*n))
                .collect();
            if running
                .iter()
                .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster is not ok {patience:?} after a failover"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port taken between the check and the bind is told apart from a
    /// server that fails, so that `start` can try another.
    #[test]
    fn a_server_whose_port_is_taken_says_so() {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a port");
        let port = taken.local_addr().expect("its address").port();
        let mut server = RedisServer {
            child: None,
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
            password: None,
            options: RedisOptions::default(),
        };
        assert_eq!(server.try_spawn(), Err(format!("port {port} was taken")));
        drop(taken);
        // And once it is free again, the same server starts on it.
        server.try_spawn().expect("the server starts");
        assert_eq!(server.cli(&["PING"]).trim(), "PONG");
    }
}
