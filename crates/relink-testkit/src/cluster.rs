//! A Redis Cluster on loopback owned by a test: 3 masters + 3 replicas made
//! with `redis-cli --cluster create`, each node a [`RedisServer`] (so a
//! panicking test still reaps every process by PID).
//!
//! Knows how to build the cluster, wait for it to be healthy, kill a node,
//! tell which node serves a slot and move slots with `redis-cli --cluster
//! reshard`; knows nothing about relink. Every wait is bounded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::server::{RedisServer, RedisServerBuilder};

/// How long `redis-cli --cluster ...` may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the cluster may take to report `cluster_state:ok` everywhere.
const OK_TIMEOUT: Duration = Duration::from_secs(30);
/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// A 3-master + 3-replica Redis Cluster on 127.0.0.1.
///
/// Dropping it kills every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts 6 nodes (`--cluster-node-timeout 1000`, no persistence), joins
    /// them with `redis-cli --cluster create --cluster-replicas 1`, and waits
    /// until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    /// When a node does not start, `redis-cli` fails, or the cluster is not
    /// ok in time.
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                RedisServerBuilder::default()
                    .args([
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        "--appendonly",
                        "no",
                    ])
                    .start()
            })
            .collect();
        let mut cluster = RedisCluster { nodes };
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(cluster.nodes.iter().map(|n| n.addr().to_string()));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(str::to_owned));
        cluster.cli(&args);
        cluster.wait_ok();
        // Replicas must know their master before a failover can happen.
        cluster.wait_replicas_synced();
        cluster
    }

    /// Number of nodes (6).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i` (index in start order).
    pub fn node(&mut self, i: usize) -> &mut RedisServer {
        &mut self.nodes[i]
    }

    /// `redis://127.0.0.1:<port>/` of every node, in start order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Index of the node listening on `port`.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// Kills node `i` with SIGKILL (reaped at once).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// Indexes of the nodes still running.
    pub fn alive(&mut self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect()
    }

    /// The node id (`CLUSTER MYID`) of node `i`.
    pub fn node_id(&self, i: usize) -> String {
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut self.nodes[i].connection())
            .expect("CLUSTER MYID")
    }

    /// Slot ranges per master, as seen by a running node: `(start, end, master index)`.
    pub fn slot_ranges(&mut self) -> Vec<(u16, u16, usize)> {
        let alive = self.alive();
        let mut last_err = String::new();
        for i in alive {
            let reply: redis::RedisResult<Vec<redis::Value>> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query(&mut self.nodes[i].connection());
            match reply {
                Ok(ranges) => return self.parse_slots(ranges),
                Err(e) => last_err = e.to_string(),
            }
        }
        panic!("CLUSTER SLOTS failed on every node: {last_err}");
    }

    fn parse_slots(&self, ranges: Vec<redis::Value>) -> Vec<(u16, u16, usize)> {
        let mut out = Vec::new();
        for range in ranges {
            let redis::Value::Array(items) = range else {
                continue;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(n) => *n,
                _ => -1,
            };
            let (start, end) = (int(&items[0]), int(&items[1]));
            let redis::Value::Array(master) = &items[2] else {
                continue;
            };
            let port = int(&master[1]);
            if let Some(i) = u16::try_from(port).ok().and_then(|p| self.index_of_port(p)) {
                out.push((start as u16, end as u16, i));
            }
        }
        out.sort_unstable();
        out
    }

    /// Index of the master serving `slot` (per `CLUSTER SLOTS` of a running node).
    pub fn master_of_slot(&mut self, slot: u16) -> usize {
        self.slot_ranges()
            .into_iter()
            .find(|&(s, e, _)| (s..=e).contains(&slot))
            .map(|(_, _, i)| i)
            .unwrap_or_else(|| panic!("no master serves slot {slot}"))
    }

    /// Indexes of the current masters serving slots, in slot order, deduplicated.
    pub fn masters(&mut self) -> Vec<usize> {
        let mut masters: Vec<usize> = Vec::new();
        for (_, _, i) in self.slot_ranges() {
            if !masters.contains(&i) {
                masters.push(i);
            }
        }
        masters
    }

    /// The slots master `i` serves, ascending.
    pub fn slots_of(&mut self, i: usize) -> Vec<u16> {
        self.slot_ranges()
            .into_iter()
            .filter(|&(_, _, m)| m == i)
            .flat_map(|(s, e, _)| s..=e)
            .collect()
    }

    /// Waits (bounded, 30 s) until every running node reports
    /// `cluster_state:ok` and they all agree on who serves each slot.
    ///
    /// # Panics
    /// On timeout, with the last `CLUSTER INFO` seen.
    pub fn wait_ok(&mut self) {
        let deadline = Instant::now() + OK_TIMEOUT;
        loop {
            let last = match self.check_ok() {
                Ok(()) => return,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                panic!("cluster not ok after {OK_TIMEOUT:?}: {last}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether every running node says `cluster_state:ok` and all agree on
    /// the slot map; the reason when not.
    pub fn check_ok(&mut self) -> Result<(), String> {
        let alive = self.alive();
        let mut views = BTreeMap::new();
        for &i in &alive {
            let mut con = self.nodes[i]
                .client()
                .get_connection_with_timeout(Duration::from_secs(1))
                .map_err(|e| format!("node {i}: {e}"))?;
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut con)
                .map_err(|e| format!("node {i}: {e}"))?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("node {i} not ok:\n{info}"));
            }
            let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query(&mut con)
                .map_err(|e| format!("node {i}: {e}"))?;
            let view = self.parse_slots(slots);
            let covered: u32 = view.iter().map(|&(s, e, _)| u32::from(e - s) + 1).sum();
            if covered != u32::from(SLOTS) {
                return Err(format!("node {i} sees {covered} slots served"));
            }
            views.insert(i, view);
        }
        let mut distinct = views.values().collect::<Vec<_>>();
        distinct.dedup();
        if distinct.len() > 1 {
            return Err(format!("nodes disagree on the slot map: {views:?}"));
        }
        Ok(())
    }

    /// Waits (bounded) until every replica reports `master_link_status:up`.
    pub fn wait_replicas_synced(&self) {
        let deadline = Instant::now() + OK_TIMEOUT;
        for (i, node) in self.nodes.iter().enumerate() {
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut node.connection())
                    .unwrap_or_default();
                if info.contains("role:master") || info.contains("master_link_status:up") {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!("replica {i} not in sync after {OK_TIMEOUT:?}:\n{info}");
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Waits (bounded) until every running master's replicas have
    /// acknowledged its whole replication stream (their offsets equal the
    /// master's), so a write acknowledged before now survives a failover.
    ///
    /// # Panics
    /// On timeout, with the last `INFO replication` seen.
    pub fn wait_replicas_caught_up(&mut self) {
        let deadline = Instant::now() + OK_TIMEOUT;
        for i in self.alive() {
            loop {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut self.nodes[i].connection())
                    .unwrap_or_default();
                if !info.contains("role:master") || replicas_caught_up(&info) {
                    break;
                }
                if Instant::now() >= deadline {
                    panic!("replicas of node {i} not caught up after {OK_TIMEOUT:?}:\n{info}");
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Moves `count` slots from master `from` to master `to` with
    /// `redis-cli --cluster reshard`; returns when it is done (bounded).
    /// redis-cli takes the source's lowest-numbered slots.
    pub fn reshard(&self, from: usize, to: usize, count: u16) {
        let (from_id, to_id) = (self.node_id(from), self.node_id(to));
        self.cli(&[
            "--cluster".to_owned(),
            "reshard".to_owned(),
            self.nodes[to].addr().to_string(),
            "--cluster-from".to_owned(),
            from_id,
            "--cluster-to".to_owned(),
            to_id,
            "--cluster-slots".to_owned(),
            count.to_string(),
            "--cluster-yes".to_owned(),
        ]);
    }

    /// Runs `redis-cli` with `args`, bounded by a timeout.
    ///
    /// # Panics
    /// When it fails or times out, with its output.
    pub fn cli(&self, args: &[String]) -> Output {
        let mut child = Command::new(redis_cli())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `{}` ({e}); it comes with redis-server (Debian: redis-tools)",
                    redis_cli().display()
                )
            });
        // Read the pipes on threads so a chatty redis-cli never blocks on a full pipe.
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let out = thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
            buf
        });
        let err = thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
            buf
        });
        let deadline = Instant::now() + CLI_TIMEOUT;
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let output = Output {
            status: status.unwrap_or_default(),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        };
        let ok = status.is_some_and(|s| s.success());
        if !ok {
            panic!(
                "redis-cli {} {}:\n{}\n{}",
                args.join(" "),
                if status.is_none() {
                    "timed out"
                } else {
                    "failed"
                },
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
    }
}

/// Whether a master's `INFO replication` shows at least one replica and
/// every replica at the master's offset.
fn replicas_caught_up(info: &str) -> bool {
    let field = |line: &str, name: &str| {
        line.split([',', ':'])
            .find_map(|kv| kv.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let master = info
        .lines()
        .find_map(|l| l.strip_prefix("master_repl_offset:"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let replicas: Vec<Option<u64>> = info
        .lines()
        .filter(|l| l.starts_with("slave") && l.contains("offset="))
        .map(|l| field(l, "offset="))
        .collect();
    !replicas.is_empty() && replicas.iter().all(|&r| r.is_some() && r == master)
}

/// `redis-cli` next to `REDIS_SERVER` when that is set and has one, else on `PATH`.
pub fn redis_cli() -> PathBuf {
    if let Ok(server) = std::env::var("REDIS_SERVER") {
        if let Some(dir) = PathBuf::from(server).parent() {
            let cli = dir.join("redis-cli");
            if cli.is_file() {
                return cli;
            }
        }
    }
    PathBuf::from("redis-cli")
}

/// The hash slot of `key`: the core's, which routes shard channels by it.
pub use relink_core::cluster::key_slot;

/// A hash tag (`{...}`, to put in a key) whose keys land in `slot`.
pub fn tag_for_slot(slot: u16) -> String {
    // Bounded: 2^20 candidates cover all 16384 slots many times over.
    for n in 0u32..(1 << 20) {
        let tag = format!("{{t{n}}}");
        if key_slot(tag.as_bytes()) == slot {
            return tag;
        }
    }
    panic!("no hash tag found for slot {slot}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_land_in_their_slot() {
        let tag = tag_for_slot(42);
        assert_eq!(key_slot(format!("k{tag}x").as_bytes()), 42);
    }
}
