//! The cluster client's background task: makes (and remakes, with backoff)
//! the cluster connection, reads the topology, runs one probe per node, and
//! publishes the health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::Value;
use relink_core::backoff::Backoff;
use relink_core::{FailureKind, State};

use super::{Shared, SLOTS};
use crate::classify::failure_kind;
use crate::{Client, Error, Health};

/// One node as the cluster client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeHealth {
    /// Whether the node serves slots as a master in the latest topology.
    pub master: bool,
    /// Slots it serves as a master.
    pub slots: u32,
    /// Its probe's health (heartbeat RTT, state, attempts).
    pub health: Health,
}

/// The health of a cluster, as published on [`ClusterClient::health`](super::ClusterClient::health).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterHealth {
    /// Ready when every slot's master is Ready; TransientFailure when some
    /// slot is not served by a Ready master, or the cluster connection is
    /// down; Connecting while it is being made; Shutdown at the end.
    pub state: State,
    /// When the state was entered.
    pub since: Instant,
    /// Attempts to (re)make the cluster connection in the current outage.
    pub attempt: u32,
    /// The most recent failure to make the cluster connection or read its topology.
    pub last_failure: Option<FailureKind>,
    /// Slots served by a master whose probe is Ready (16384 when Ready).
    pub slots_ready: u32,
    /// Every node seen in the topology, by `host:port`.
    pub nodes: BTreeMap<String, NodeHealth>,
}

/// A node's probe: a relink [`Client`] on that node, and the task that
/// pokes the driver when its health changes.
pub(super) struct Probe {
    client: Client,
    forward: tokio::task::JoinHandle<()>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// The background task: makes (and remakes, with backoff) the cluster
/// connection, reads the topology, runs one probe per node, and publishes
/// the health.
pub(super) struct Driver {
    shared: Arc<Shared>,
    redis_client: redis::cluster::ClusterClient,
    backoff: Backoff,
    probes: BTreeMap<String, Probe>,
    /// Slot ranges and the `host:port` of their master.
    topology: Vec<(u16, u16, String)>,
    state: State,
    since: Instant,
    attempt: u32,
    last_failure: Option<FailureKind>,
}

impl Driver {
    pub(super) fn new(
        shared: Arc<Shared>,
        redis_client: redis::cluster::ClusterClient,
        backoff: Backoff,
        now: Instant,
    ) -> Driver {
        Driver {
            shared,
            redis_client,
            backoff,
            probes: BTreeMap::new(),
            topology: Vec::new(),
            state: State::Idle,
            since: now,
            attempt: 0,
            last_failure: None,
        }
    }

    pub(super) async fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let shutdown = shared.calls.shutdown.clone();
        let settings = shared.config.settings.clone();
        let sc = settings.supervisor_config();
        let interval = sc.heartbeat.interval;
        let mut outage_started = Instant::now();
        let mut topology_failures = 0u32;
        // Bounded by shutdown and by the backoff policy's give-up rules.
        'run: loop {
            if shutdown.is_cancelled() {
                break;
            }
            if shared.live.load().is_none() {
                self.attempt += 1;
                self.set_state(State::Connecting);
                self.publish();
                let connect = tokio::time::timeout(
                    sc.connect_timeout,
                    self.redis_client.get_async_connection(),
                );
                let result = tokio::select! {
                    _ = shutdown.cancelled() => break 'run,
                    result = connect => result,
                };
                match result {
                    Ok(Ok(conn)) => {
                        tracing::info!(attempts = self.attempt, "relink cluster connected");
                        shared.live.store(Some(Arc::new(conn)));
                        self.backoff.reset();
                        self.attempt = 0;
                        topology_failures = 0;
                    }
                    failed => {
                        let kind = match &failed {
                            Ok(Err(e)) => failure_kind(e),
                            _ => FailureKind::Timeout,
                        };
                        self.last_failure = Some(kind);
                        shared.calls.drain_budget();
                        let Some(delay) = self.backoff.next_delay(outage_started.elapsed()) else {
                            tracing::error!(
                                attempts = self.attempt,
                                "relink cluster gave up reconnecting"
                            );
                            break 'run;
                        };
                        tracing::info!(
                            attempt = self.attempt,
                            %kind,
                            delay_ms = delay.as_millis() as u64,
                            "relink cluster connection failed; retrying"
                        );
                        self.set_state(State::TransientFailure);
                        self.publish();
                        tokio::select! {
                            _ = shutdown.cancelled() => break 'run,
                            _ = tokio::time::sleep(delay) => {}
                        }
                        continue;
                    }
                }
            }
            match self.refresh_topology().await {
                Ok(()) => topology_failures = 0,
                Err(kind) => {
                    self.last_failure = Some(kind);
                    topology_failures += 1;
                }
            }
            let ready = self.publish();
            let probes_down = !self.probes.is_empty()
                && self.probes.values().all(|p| {
                    matches!(
                        p.client.health().borrow().state,
                        State::TransientFailure | State::Shutdown
                    )
                });
            if !ready && probes_down && topology_failures >= 2 {
                // Lost entirely: make it again from the configured nodes.
                tracing::warn!("relink cluster unreachable; remaking the cluster connection");
                shared.live.store(None);
                outage_started = Instant::now();
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break 'run,
                _ = shared.poke.notified() => {
                    // Let a burst of pokes settle into one refresh.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ = tokio::time::sleep(interval) => {}
            }
        }
        shared.live.store(None);
        for (_, probe) in std::mem::take(&mut self.probes) {
            probe.client.shutdown().await;
        }
        self.set_state(State::Shutdown);
        self.publish();
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            tracing::info!(from = %self.state, to = %state, "relink cluster state changed");
            self.state = state;
            self.since = Instant::now();
        }
    }

    /// Reads `CLUSTER SLOTS` through the cluster connection; starts a probe
    /// for every node not seen before.
    async fn refresh_topology(&mut self) -> Result<(), FailureKind> {
        let Some(conn) = self.shared.live.load_full() else {
            return Err(FailureKind::Closed);
        };
        let mut conn = (*conn).clone();
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let reply = conn
            .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await
            .map_err(|e| failure_kind(&e))?;
        let (ranges, nodes) = parse_slots(reply).ok_or(FailureKind::Protocol)?;
        for (host, port) in nodes {
            let addr = format!("{host}:{port}");
            if self.probes.contains_key(&addr) {
                continue;
            }
            match self.start_probe(&host, port) {
                Ok(probe) => {
                    tracing::info!(node = %addr, "relink cluster probing node");
                    self.probes.insert(addr, probe);
                }
                Err(e) => {
                    tracing::warn!(node = %addr, error = %e, "relink cluster cannot probe node")
                }
            }
        }
        self.topology = ranges;
        Ok(())
    }

    fn start_probe(&self, host: &str, port: u16) -> Result<Probe, Error> {
        let config = self.shared.config.probe_config(host, port)?;
        let client = Client::new(config)?;
        let mut rx = client.health();
        let shared = Arc::downgrade(&self.shared);
        let forward = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                match shared.upgrade() {
                    Some(shared) => shared.poke.notify_one(),
                    None => return,
                }
            }
        });
        Ok(Probe { client, forward })
    }

    /// Computes and publishes the health; true when Ready.
    fn publish(&mut self) -> bool {
        let mut nodes: BTreeMap<String, NodeHealth> = self
            .probes
            .iter()
            .map(|(addr, probe)| {
                let health = probe.client.health().borrow().clone();
                let node = NodeHealth {
                    master: false,
                    slots: 0,
                    health,
                };
                (addr.clone(), node)
            })
            .collect();
        let mut slots_ready = 0;
        for (start, end, master) in &self.topology {
            let count = u32::from(end - start) + 1;
            if let Some(node) = nodes.get_mut(master) {
                node.master = true;
                node.slots += count;
                if node.health.state == State::Ready {
                    slots_ready += count;
                }
            }
        }
        let connected = self.shared.live.load().is_some();
        if connected && !matches!(self.state, State::Shutdown) {
            let state = if slots_ready == SLOTS {
                State::Ready
            } else if nodes
                .values()
                .all(|n| matches!(n.health.state, State::Idle | State::Connecting))
            {
                State::Connecting
            } else {
                State::TransientFailure
            };
            self.set_state(state);
        }
        let next = ClusterHealth {
            state: self.state,
            since: self.since,
            attempt: self.attempt,
            last_failure: self.last_failure,
            slots_ready,
            nodes,
        };
        let ready = next.state == State::Ready;
        self.shared.health.send_if_modified(|current| {
            let changed = *current != next;
            if changed {
                *current = next;
            }
            changed
        });
        ready
    }
}

/// Slot ranges with their master's `host:port`, and every node (masters and
/// replicas), from a `CLUSTER SLOTS` reply.
#[allow(clippy::type_complexity)]
fn parse_slots(reply: Value) -> Option<(Vec<(u16, u16, String)>, Vec<(String, u16)>)> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let int = |v: &Value| match v {
        Value::Int(n) => Some(*n),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let mut slots = Vec::new();
    let mut nodes = Vec::new();
    for range in ranges {
        let Value::Array(items) = range else {
            return None;
        };
        let start = u16::try_from(int(items.first()?)?).ok()?;
        let end = u16::try_from(int(items.get(1)?)?).ok()?;
        for (i, node) in items.iter().skip(2).enumerate() {
            let Value::Array(node) = node else {
                continue;
            };
            let host = text(node.first()?)?;
            let port = u16::try_from(int(node.get(1)?)?).ok()?;
            if host.is_empty() || host == "?" {
                continue;
            }
            if i == 0 {
                slots.push((start, end, format!("{host}:{port}")));
            }
            if !nodes.contains(&(host.clone(), port)) {
                nodes.push((host, port));
            }
        }
    }
    Some((slots, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_reply_is_parsed() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(5460),
            node(7000),
            node(7003),
        ])]);
        let (slots, nodes) = parse_slots(reply).expect("parses");
        assert_eq!(slots, vec![(0, 5460, "127.0.0.1:7000".to_owned())]);
        assert_eq!(nodes.len(), 2);
    }
}
