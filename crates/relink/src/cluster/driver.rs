//! The cluster client's background task. It executes the core's
//! [`ClusterSupervisor`]: it makes the cluster connection when asked, reads
//! the topology (`CLUSTER SLOTS`) when asked, starts and stops one probe per
//! node when told, drops the connection when told, and feeds back what
//! happened (connect results, topology reads, each probe's state, pokes from
//! the call path). Every decision (when to reconnect and after how long,
//! when to read the topology, which nodes to probe, how the nodes add up,
//! when the cluster is lost, when to give up) is the core's; the task sleeps
//! only until the deadline the core hands out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisError, Value};
use relink_core::cluster::{
    Action, ClusterSupervisor, ClusterSupervisorConfig, Event, Input, Output, SlotRange,
};
use relink_core::{FailureKind, State, Timestamp};
use tokio::sync::{watch, Notify};

use super::Shared;
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
    /// down; Connecting while it is being made, or while every node's probe
    /// is still starting; Shutdown at the end.
    pub state: State,
    /// When the state was entered.
    pub since: Instant,
    /// Attempts to (re)make the cluster connection in the current outage.
    pub attempt: u32,
    /// The most recent failure to make the cluster connection or read its topology.
    pub last_failure: Option<FailureKind>,
    /// Slots served by a master whose probe is Ready (16384 when Ready).
    pub slots_ready: u32,
    /// Every node of the latest topology (each one probed), by `host:port`.
    pub nodes: BTreeMap<String, NodeHealth>,
    /// The latest failed attempt to make the cluster connection, while it
    /// is down: its cause and the server's words (a wrong password, a node
    /// that is not Redis). Each node's own is in its [`NodeHealth`].
    pub last_attempt_failure: Option<relink_core::AttemptFailure>,
}

impl crate::calls::HasState for ClusterHealth {
    fn state(&self) -> State {
        self.state
    }

    fn last_attempt_failure(&self) -> Option<relink_core::AttemptFailure> {
        self.last_attempt_failure
    }
}

/// A node's probe: a relink [`Client`] on that node, and the task that
/// tells the driver when its health changes.
struct Probe {
    client: Client,
    health: watch::Receiver<Health>,
    forward: tokio::task::JoinHandle<()>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.forward.abort();
    }
}

/// The slot map and every node (`host:port`), or why they could not be read.
type TopologyResult = Result<(Vec<SlotRange>, Vec<String>), FailureKind>;

/// The background task: executes the [`ClusterSupervisor`]'s decisions.
pub(super) struct Driver {
    shared: Arc<Shared>,
    redis_client: redis::cluster::ClusterClient,
    sup: ClusterSupervisor,
    probes: BTreeMap<String, Probe>,
    /// Probes stopped in the last drain, to be shut down.
    stopping: Vec<Probe>,
    /// Nodes the core asked to probe whose probe could not be made.
    unprobeable: BTreeMap<String, Instant>,
    /// Notified by the probes' forward tasks.
    probe_changed: Arc<Notify>,
    connecting: Option<(
        u32,
        BoxFuture<'static, Result<ClusterConnection, RedisError>>,
    )>,
    reading: Option<(u64, BoxFuture<'static, TopologyResult>)>,
    /// The latest failed attempt to make the cluster connection.
    last_attempt_failure: Option<relink_core::AttemptFailure>,
}

impl Driver {
    pub(super) fn new(
        shared: Arc<Shared>,
        redis_client: redis::cluster::ClusterClient,
        seed: u64,
    ) -> Driver {
        let config = ClusterSupervisorConfig::from(&shared.config.settings().supervisor_config());
        Driver {
            sup: ClusterSupervisor::new(config, seed),
            shared,
            redis_client,
            probes: BTreeMap::new(),
            stopping: Vec::new(),
            unprobeable: BTreeMap::new(),
            probe_changed: Arc::new(Notify::new()),
            connecting: None,
            reading: None,
            last_attempt_failure: None,
        }
    }

    fn now(&self) -> Timestamp {
        self.shared.calls.now()
    }

    fn input(&mut self, input: Input<'_>) {
        let now = self.now();
        self.sup.handle_input(now, input);
    }

    pub(super) async fn run(mut self) {
        let shared = Arc::clone(&self.shared);
        let shutdown = shared.calls.shutdown.clone();
        let probe_changed = Arc::clone(&self.probe_changed);
        self.input(Input::Start);
        // Bounded by the core: every iteration handles one input or one
        // deadline, and Shutdown (asked for, or the backoff giving up) is terminal.
        loop {
            let deadline = self.drain();
            self.retire_stopped();
            self.publish();
            if self.sup.state() == State::Shutdown {
                break;
            }
            let sleep_until = deadline.map(|t| shared.calls.instant(t));
            tokio::select! {
                _ = shutdown.cancelled() => self.input(Input::Shutdown),
                (attempt, result) = poll_connect(&mut self.connecting) => match result {
                    Ok(conn) => {
                        shared.calls.metrics.connected();
                        shared.live.store(Some(Arc::new(conn)));
                        self.input(Input::Connected { attempt });
                    }
                    Err(err) => {
                        let kind = failure_kind(&err);
                        let cause = crate::diagnose::connect_cause(&err);
                        shared.calls.metrics.connect_failed(cause);
                        let info = shared.config.settings().connection_info();
                        let password = info.redis_settings().password();
                        let evidence = crate::diagnose::redact(&err.to_string(), password);
                        self.last_attempt_failure = Some(relink_core::AttemptFailure::new(
                            attempt,
                            cause,
                            relink_core::Evidence::new(&evidence),
                        ));
                        // While the cluster is out of reach, command retries
                        // stop instead of piling onto the outage.
                        shared.calls.drain_budget();
                        tracing::debug!(attempt, %kind, error = %err, "cluster connection attempt failed");
                        self.input(Input::ConnectFailed { attempt, kind });
                    }
                },
                (id, result) = poll_read(&mut self.reading) => match result {
                    Ok((slots, nodes)) => {
                        self.input(Input::Topology { id, slots, nodes });
                        // Subscriptions follow the slot map the core keeps.
                        shared.pubsub.router.topology(self.sup.slots());
                    }
                    Err(kind) => self.input(Input::TopologyFailed { id, kind }),
                },
                _ = probe_changed.notified() => self.feed_node_states(),
                _ = shared.poke.notified() => self.input(Input::Poke),
                _ = crate::wait::until(sleep_until) => {}
            }
        }
        // However it ended, leave nothing behind.
        self.connecting = None;
        self.reading = None;
        shared.live.store(None);
        shared.calls.shutdown.cancel();
        shared.pubsub.hub.close();
        let probes = std::mem::take(&mut self.probes);
        for probe in self.stopping.drain(..).chain(probes.into_values()) {
            probe.client.shutdown().await;
        }
        self.publish();
    }

    /// Handles outputs until drained; returns the next deadline.
    fn drain(&mut self) -> Option<Timestamp> {
        // One input queues a bounded number of outputs (a few, plus two per
        // node that joined or left); 4096 is far beyond any cluster.
        for _ in 0..4096 {
            let now = self.now();
            match self.sup.poll_output(now) {
                Output::Action(action) => self.act(action),
                Output::Event(event) => observe(&self.shared.calls.metrics, &event),
                Output::Timeout(t) => return Some(t),
                _ => return None,
            }
        }
        Some(self.now())
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect { attempt } => {
                let client = self.redis_client.clone();
                let connect = async move { client.get_async_connection().await };
                self.connecting = Some((attempt, connect.boxed()));
                self.shared.calls.metrics.connecting();
            }
            Action::RefreshTopology { id } => {
                let read = match self.shared.live.load_full() {
                    Some(conn) => read_topology((*conn).clone()).boxed(),
                    None => std::future::ready(Err(FailureKind::Closed)).boxed(),
                };
                self.reading = Some((id, read));
            }
            Action::StartProbe { node } => match self.start_probe(&node) {
                Ok(probe) => {
                    self.probes.insert(node, probe);
                    // Its first state, and any change that raced the insert.
                    self.probe_changed.notify_one();
                }
                Err(e) => {
                    tracing::warn!(%node, error = %e, "relink cluster cannot probe node");
                    let now = Instant::now();
                    self.unprobeable.insert(node.clone(), now);
                    // A node that cannot be probed is down, not starting.
                    let at = self.now();
                    self.sup.handle_input(
                        at,
                        Input::NodeState {
                            node: &node,
                            state: State::Shutdown,
                        },
                    );
                }
            },
            Action::StopProbe { node } => {
                self.unprobeable.remove(&node);
                if let Some(probe) = self.probes.remove(&node) {
                    self.stopping.push(probe);
                }
            }
            Action::Disconnect => {
                self.connecting = None;
                self.reading = None;
                self.shared.live.store(None);
            }
            _ => {}
        }
    }

    /// Feeds every probe's current state (the core ignores the unchanged).
    fn feed_node_states(&mut self) {
        let now = self.now();
        for (node, probe) in &self.probes {
            let state = probe.health.borrow().state;
            self.sup.handle_input(now, Input::NodeState { node, state });
        }
    }

    /// Stops the probes of nodes that left, in the background.
    fn retire_stopped(&mut self) {
        for probe in self.stopping.drain(..) {
            tokio::spawn(async move { probe.client.shutdown().await });
        }
    }

    fn start_probe(&self, node: &str) -> Result<Probe, Error> {
        let (host, port) = super::host_port(node)?;
        let config = self.shared.config.probe_config(&host, port)?;
        let client = Client::new(config)?;
        let health = client.health();
        let mut rx = client.health();
        let changed = Arc::downgrade(&self.probe_changed);
        let forward = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                match changed.upgrade() {
                    Some(changed) => changed.notify_one(),
                    None => return,
                }
            }
        });
        Ok(Probe {
            client,
            health,
            forward,
        })
    }

    /// Publishes the core's health, with each node's probe health.
    fn publish(&self) {
        let h = self.sup.health();
        let calls = &self.shared.calls;
        let nodes = h
            .nodes
            .iter()
            .map(|(addr, node)| {
                let health = match self.probes.get(addr) {
                    Some(probe) => probe.health.borrow().clone(),
                    None => Health {
                        state: node.state,
                        since: self
                            .unprobeable
                            .get(addr)
                            .copied()
                            .unwrap_or_else(|| calls.instant(h.since)),
                        attempt: 0,
                        last_failure: None,
                        rtt: None,
                        heartbeat_misses: 0,
                        busy_since: None,
                        last_attempt_failure: None,
                        misconfigured: false,
                        failover_since: None,
                        cache: None,
                    },
                };
                let node = NodeHealth {
                    master: node.master,
                    slots: node.slots,
                    health,
                };
                (addr.clone(), node)
            })
            .collect();
        let next = ClusterHealth {
            state: h.state,
            since: calls.instant(h.since),
            attempt: h.attempt,
            last_failure: h.last_failure,
            slots_ready: h.slots_ready,
            nodes,
            last_attempt_failure: self
                .last_attempt_failure
                .filter(|_| h.state != State::Ready),
        };
        self.shared.health.send_if_modified(|current| {
            let changed = *current != next;
            if changed {
                *current = next;
            }
            changed
        });
    }
}

/// Tells the user what the core decided.
fn observe(metrics: &crate::metrics::Metrics, event: &Event) {
    match event {
        Event::StateChanged { from, to } => {
            metrics.state_changed(*from, *to);
            tracing::info!(%from, %to, "relink cluster state changed");
        }
        Event::Connected { attempts } => {
            tracing::info!(attempts, "relink cluster connected");
        }
        Event::ConnectFailed { attempt, kind } => {
            tracing::info!(attempt, %kind, "relink cluster connection failed");
        }
        Event::ReconnectScheduled { attempt, delay } => {
            tracing::info!(
                attempt,
                delay_ms = delay.as_millis() as u64,
                "relink cluster reconnect scheduled"
            );
        }
        Event::TopologyChanged { masters, nodes } => {
            tracing::info!(masters, nodes, "relink cluster topology changed");
        }
        Event::TopologyFailed { kind, failures } => {
            tracing::debug!(%kind, failures, "relink cluster topology read failed");
        }
        Event::NodeAdded { node } => tracing::info!(%node, "relink cluster probing node"),
        Event::NodeRemoved { node } => {
            tracing::info!(%node, "relink cluster node left; no longer probed");
        }
        Event::ClusterLost { cause, failures } => {
            tracing::warn!(%cause, failures, "relink cluster unreachable; remaking the cluster connection");
        }
        Event::GaveUp { attempts, elapsed } => {
            tracing::error!(
                attempts,
                elapsed_ms = elapsed.as_millis() as u64,
                "relink cluster gave up reconnecting"
            );
        }
        _ => {}
    }
}

/// Reads `CLUSTER SLOTS` through the cluster connection.
async fn read_topology(mut conn: ClusterConnection) -> TopologyResult {
    let mut cmd = redis::cmd("CLUSTER");
    cmd.arg("SLOTS");
    let reply = conn
        .route_command(cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
        .await
        .map_err(|e| failure_kind(&e))?;
    let (ranges, nodes) = parse_slots(reply).ok_or(FailureKind::Protocol)?;
    let slots = ranges
        .into_iter()
        .map(|(start, end, master)| SlotRange::new(start, end, master))
        .collect();
    let nodes = nodes
        .into_iter()
        .map(|(host, port)| format!("{host}:{port}"))
        .collect();
    Ok((slots, nodes))
}

async fn poll_connect(
    connecting: &mut Option<(
        u32,
        BoxFuture<'static, Result<ClusterConnection, RedisError>>,
    )>,
) -> (u32, Result<ClusterConnection, RedisError>) {
    match connecting {
        Some((attempt, fut)) => {
            let result = fut.await;
            let attempt = *attempt;
            *connecting = None;
            (attempt, result)
        }
        None => std::future::pending().await,
    }
}

async fn poll_read(
    reading: &mut Option<(u64, BoxFuture<'static, TopologyResult>)>,
) -> (u64, TopologyResult) {
    match reading {
        Some((id, fut)) => {
            let result = fut.await;
            let id = *id;
            *reading = None;
            (id, result)
        }
        None => std::future::pending().await,
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
