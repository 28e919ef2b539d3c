//! A Redis Sentinel topology owned by a test: one master, one replica
//! (`--replicaof`), three sentinels (`redis-server <conf> --sentinel`) that
//! monitor the master as [`SERVICE`] with quorum 2 and short timeouts
//! (`down-after-milliseconds 1000`, `failover-timeout 3000`), so a failover
//! takes seconds.
//!
//! Every process is a [`RedisServer`] (its own temp dir, log and loopback
//! port; reaped by PID on drop). Every wait is bounded and panics with the
//! tail of every log.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::server::RedisServer;
use crate::tls::{TlsFiles, TlsServer};

/// The name the sentinels monitor the master under.
pub const SERVICE: &str = "mymaster";

/// Timeouts on the sync connections used to ask the processes.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the waits look again.
const POLL: Duration = Duration::from_millis(50);

/// One master, one replica and three sentinels on loopback.
#[derive(Debug)]
pub struct SentinelTopology {
    /// The data nodes: index 0 started as master, 1 as its replica.
    nodes: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    /// Built by [`start_tls`](SentinelTopology::start_tls): the data nodes
    /// and the sentinels are known by their TLS ports.
    tls: bool,
}

impl SentinelTopology {
    /// Starts the five processes and waits (bounded) until every sentinel
    /// names the master, knows the replica and sees the two other sentinels,
    /// so that a failover can be agreed on.
    ///
    /// # Panics
    /// When a process does not start or the sentinels do not agree in 30 s.
    pub fn start() -> SentinelTopology {
        Self::start_with(None)
    }

    /// The same topology over TLS with `files`' certificates: every process
    /// also listens on a TLS port, replication and the sentinels' links to
    /// the data nodes are TLS (`tls-replication yes`), and the sentinels
    /// monitor and name the data nodes by their TLS ports. The addresses
    /// this type hands out ([`master_addr`](Self::master_addr),
    /// [`sentinel_nodes`](Self::sentinel_nodes), ...) are the TLS ones.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub fn start_tls(files: &TlsFiles) -> SentinelTopology {
        Self::start_with(Some(files))
    }

    fn start_with(files: Option<&TlsFiles>) -> SentinelTopology {
        let builder = || match files {
            Some(files) => RedisServer::builder()
                .tls(TlsServer::new(files))
                .args(["--tls-replication", "yes"]),
            None => RedisServer::builder(),
        };
        let master = builder().start();
        let master_port = if files.is_some() {
            master.tls_port()
        } else {
            master.port()
        };
        let replica = builder()
            .args(["--replicaof", "127.0.0.1"])
            .arg(master_port.to_string())
            .start();
        let conf = format!(
            "sentinel resolve-hostnames no\n\
             sentinel monitor {SERVICE} 127.0.0.1 {port} 2\n\
             sentinel down-after-milliseconds {SERVICE} 1000\n\
             sentinel failover-timeout {SERVICE} 3000\n\
             sentinel parallel-syncs {SERVICE} 1\n",
            port = master_port
        );
        // `port` and `bind 127.0.0.1` come from RedisServer's command line,
        // which wins over the file (and survives the sentinel's rewrites).
        let sentinels = (0..3)
            .map(|_| {
                builder()
                    .config_file(conf.clone())
                    .arg("--sentinel")
                    .start()
            })
            .collect();
        let topology = SentinelTopology {
            nodes: vec![master, replica],
            sentinels,
            tls: files.is_some(),
        };
        topology.wait_until("the replica is in sync", Duration::from_secs(30), || {
            info_field(
                topology.nodes[1].addr(),
                "replication",
                "master_link_status",
            )
            .as_deref()
                == Some("up")
        });
        topology.wait_until(
            "every sentinel knows the master, the replica and the other sentinels",
            Duration::from_secs(30),
            || {
                topology.sentinels.iter().all(|s| {
                    let Some(fields) = sentinel_master(s.addr()) else {
                        return false;
                    };
                    let field = |name| field_of(&fields, name);
                    field("port")
                        == Some(&topology.data_addr(&topology.nodes[0]).port().to_string())
                        && field("num-slaves") == Some("1")
                        && field("num-other-sentinels") == Some("2")
                })
            },
        );
        topology
    }

    /// The sentinels as `127.0.0.1:<port>` strings, in order (the form
    /// relink's `sentinel.nodes` takes).
    pub fn sentinel_nodes(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| self.data_addr(s).to_string())
            .collect()
    }

    /// How a process is reached by clients: its TLS address in a TLS
    /// topology, else its address.
    fn data_addr(&self, server: &RedisServer) -> SocketAddr {
        if self.tls {
            server.tls_addr()
        } else {
            server.addr()
        }
    }

    /// The plain address (for the topology's own questions) of the data
    /// node known as `addr`.
    fn plain_addr(&self, addr: SocketAddr) -> Option<SocketAddr> {
        self.nodes
            .iter()
            .find(|n| self.data_addr(n) == addr)
            .map(RedisServer::addr)
    }

    /// The sentinels' addresses, in order.
    pub fn sentinel_addrs(&self) -> Vec<SocketAddr> {
        self.sentinels.iter().map(|s| self.data_addr(s)).collect()
    }

    /// The sentinel processes (to kill or pause one).
    pub fn sentinels_mut(&mut self) -> &mut [RedisServer] {
        &mut self.sentinels
    }

    /// The data nodes' addresses: the first started as master, the second as replica.
    pub fn node_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| self.data_addr(n)).collect()
    }

    /// The data node at `addr`.
    ///
    /// # Panics
    /// When no data node has that address.
    pub fn node(&self, addr: SocketAddr) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| self.data_addr(n) == addr)
            .unwrap_or_else(|| panic!("no data node at {addr}"))
    }

    /// The data node at `addr`, mutably (to kill, pause or restart it).
    ///
    /// # Panics
    /// When no data node has that address.
    pub fn node_mut(&mut self, addr: SocketAddr) -> &mut RedisServer {
        let tls = self.tls;
        self.nodes
            .iter_mut()
            .find(|n| (if tls { n.tls_addr() } else { n.addr() }) == addr)
            .unwrap_or_else(|| panic!("no data node at {addr}"))
    }

    /// The master's address as the first sentinel that answers names it
    /// (`SENTINEL get-master-addr-by-name`); `None` if none answers.
    pub fn master_addr(&self) -> Option<SocketAddr> {
        self.sentinels
            .iter()
            .find_map(|s| master_addr_from(s.addr()))
    }

    /// Waits until every sentinel that answers names the same master, at
    /// least two answer, and that node says `ROLE` master; returns it.
    ///
    /// # Panics
    /// After `timeout`, with every log's tail.
    pub fn wait_for_master(&self, timeout: Duration) -> SocketAddr {
        self.wait_for(
            "the sentinels agree on a master that says it is one",
            timeout,
            || self.agreed_master(),
        )
    }

    /// Like [`wait_for_master`](Self::wait_for_master), for a master other than `old`.
    ///
    /// # Panics
    /// After `timeout`, with every log's tail.
    pub fn wait_for_new_master(&self, old: SocketAddr, timeout: Duration) -> SocketAddr {
        self.wait_for(
            &format!("the sentinels agree on a master other than {old}"),
            timeout,
            || self.agreed_master().filter(|m| *m != old),
        )
    }

    /// Waits until the data node other than the master is its replica with
    /// the link up (a full resync done) and every sentinel lists it as a
    /// replica that is neither down nor disconnected: what the next failover
    /// needs. After a failover the old master rejoins so (a killed one once
    /// restarted): Sentinel converts it some seconds after it is back.
    /// The master is `master`, or the other node if the sentinels failed
    /// over again on their own meanwhile (a sentinel that had judged the
    /// promoted node down, seen on a loaded 2-core machine): the topology
    /// is whole either way. Returns the replica's address.
    ///
    /// # Panics
    /// After `timeout`, with every log's tail.
    pub fn wait_for_replica(&self, master: SocketAddr, timeout: Duration) -> SocketAddr {
        self.wait_for(
            &format!(
                "the node other than the agreed master ({master}, or the other one after a \
                 failover of the sentinels' own) is its replica in sync, known to every sentinel"
            ),
            timeout,
            || {
                let master = self.agreed_master()?;
                let replica = self.nodes.iter().find(|n| self.data_addr(n) != master)?;
                let addr = self.data_addr(replica);
                let field = |name| info_field(replica.addr(), "replication", name);
                let whole = field("role").as_deref() == Some("slave")
                    && field("master_port") == Some(master.port().to_string())
                    && field("master_link_status").as_deref() == Some("up")
                    && self.sentinels.iter().all(|s| {
                        sentinel_replicas(s.addr()).is_some_and(|replicas| {
                            replicas.iter().any(|fields| {
                                let field = |name| field_of(fields, name);
                                field("port") == Some(&addr.port().to_string())
                                    && field("flags").is_some_and(|flags| {
                                        !flags.split(',').any(|f| {
                                            matches!(f, "s_down" | "o_down" | "disconnected")
                                        })
                                    })
                            })
                        })
                    });
                whole.then_some(addr)
            },
        )
    }

    /// Kills (SIGKILL) the data node the sentinels name as master; returns its address.
    ///
    /// # Panics
    /// When no sentinel names a master.
    pub fn kill_master(&mut self) -> SocketAddr {
        let master = self
            .master_addr()
            .unwrap_or_else(|| self.fail("kill the master: no sentinel names one"));
        self.node_mut(master).kill();
        master
    }

    /// Asks a sentinel for a planned failover (`SENTINEL FAILOVER mymaster`),
    /// retrying (bounded, 10 s) while one is in progress or the replica is
    /// not yet eligible; returns the master it fails over from.
    ///
    /// # Panics
    /// When no sentinel accepts it in time.
    pub fn failover(&self) -> SocketAddr {
        self.failover_through(0..self.sentinels.len())
    }

    /// Like [`failover`](Self::failover), asking only the sentinel at
    /// `index` (the one that then leads the failover and announces its
    /// steps; the others hear of the switch from it).
    ///
    /// # Panics
    /// When it does not accept it in time, or there is no such sentinel.
    pub fn failover_via(&self, index: usize) -> SocketAddr {
        assert!(index < self.sentinels.len(), "no sentinel {index}");
        self.failover_through(index..index + 1)
    }

    fn failover_through(&self, sentinels: std::ops::Range<usize>) -> SocketAddr {
        let old = self
            .master_addr()
            .unwrap_or_else(|| self.fail("failover: no sentinel names a master"));
        let mut last = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            for sentinel in &self.sentinels[sentinels.clone()] {
                match ask::<String>(
                    sentinel.addr(),
                    redis::cmd("SENTINEL").arg("FAILOVER").arg(SERVICE),
                ) {
                    Ok(_) => return old,
                    Err(e) => last = e,
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        self.fail(&format!("SENTINEL FAILOVER refused for 10 s; last: {last}"))
    }

    /// The tail of every process's log, for panic messages.
    pub fn log_tails(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .map(|n| format!("== data node {} ==\n{}", n.addr(), n.log_tail(lines)))
            .chain(
                self.sentinels
                    .iter()
                    .map(|s| format!("== sentinel {} ==\n{}", s.addr(), s.log_tail(lines))),
            )
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn agreed_master(&self) -> Option<SocketAddr> {
        let named: Vec<SocketAddr> = self
            .sentinels
            .iter()
            .filter_map(|s| master_addr_from(s.addr()))
            .collect();
        let first = *named.first()?;
        if named.len() < 2 || named.iter().any(|m| *m != first) {
            return None;
        }
        let role: Vec<redis::Value> = ask(self.plain_addr(first)?, &redis::cmd("ROLE")).ok()?;
        match role.first() {
            Some(redis::Value::BulkString(b)) if b == b"master" => Some(first),
            _ => None,
        }
    }

    fn wait_until(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        self.wait_for(what, timeout, || done().then_some(()));
    }

    fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = probe() {
                return found;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("gave up after {timeout:?} waiting until {what}"));
            }
            thread::sleep(POLL);
        }
    }

    fn fail(&self, why: &str) -> ! {
        panic!("sentinel topology: {why}\n{}", self.log_tails(15));
    }
}

/// One command on a fresh connection with short timeouts.
fn ask<T: redis::FromRedisValue>(addr: SocketAddr, cmd: &redis::Cmd) -> Result<T, String> {
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_connection_with_timeout(ASK_TIMEOUT)
        .map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(ASK_TIMEOUT))
        .map_err(|e| e.to_string())?;
    conn.set_write_timeout(Some(ASK_TIMEOUT))
        .map_err(|e| e.to_string())?;
    cmd.query(&mut conn).map_err(|e| e.to_string())
}

fn master_addr_from(sentinel: SocketAddr) -> Option<SocketAddr> {
    let (ip, port): (String, u16) = ask(
        sentinel,
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(SERVICE),
    )
    .ok()?;
    format!("{ip}:{port}").parse().ok()
}

/// `SENTINEL MASTER mymaster` as field/value pairs.
fn sentinel_master(sentinel: SocketAddr) -> Option<Vec<(String, String)>> {
    let flat: Vec<String> =
        ask(sentinel, redis::cmd("SENTINEL").arg("MASTER").arg(SERVICE)).ok()?;
    Some(
        flat.chunks_exact(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect(),
    )
}

/// `SENTINEL REPLICAS mymaster`: each replica as field/value pairs.
fn sentinel_replicas(sentinel: SocketAddr) -> Option<Vec<Vec<(String, String)>>> {
    let replicas: Vec<Vec<String>> = ask(
        sentinel,
        redis::cmd("SENTINEL").arg("REPLICAS").arg(SERVICE),
    )
    .ok()?;
    Some(
        replicas
            .iter()
            .map(|flat| {
                flat.chunks_exact(2)
                    .map(|kv| (kv[0].clone(), kv[1].clone()))
                    .collect()
            })
            .collect(),
    )
}

/// The value of `name` in a sentinel's field/value answer.
fn field_of<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// One `field:value` line of `INFO <section>`.
fn info_field(addr: SocketAddr, section: &str, field: &str) -> Option<String> {
    let info: String = ask(addr, redis::cmd("INFO").arg(section)).ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}
