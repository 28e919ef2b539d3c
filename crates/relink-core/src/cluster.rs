//! The cluster supervisor: the state machine that keeps a Redis Cluster
//! reachable. It decides when to make (and remake, with backoff) the cluster
//! connection, when to read the topology, which nodes to probe, how the
//! nodes' health adds up to the cluster's, and when the cluster is lost.
//!
//! # What it decides
//!
//! - **The cluster connection.** [`Action::Connect`] on [`Input::Start`];
//!   a failed or timed-out attempt is retried after a [`Backoff`] delay
//!   ([`Event::ReconnectScheduled`]) until the backoff policy gives up
//!   ([`Event::GaveUp`], then [`State::Shutdown`]).
//! - **The topology.** While connected, [`Action::RefreshTopology`] every
//!   `refresh_interval`, and `poke_settle` after an [`Input::Poke`] (a
//!   command met a redirection or an unreachable slot; a burst of pokes makes
//!   one refresh). One read at a time; a read unanswered after
//!   `refresh_timeout` counts as failed, and its late answer is ignored.
//! - **The nodes.** Every node of the topology (masters and replicas) gets a
//!   probe: [`Action::StartProbe`] when it appears, [`Action::StopProbe`]
//!   when it leaves. A node that left is not probed any more and nothing
//!   names it again until it reappears. The driver reports each probe's
//!   connectivity with [`Input::NodeState`].
//! - **The roll-up.** [`State::Ready`] when all 16384 slots are served by a
//!   master whose probe is Ready; [`State::Connecting`] while the cluster
//!   connection is being made, or while every node is still starting (its
//!   probe not yet Ready and not yet failed); [`State::TransientFailure`]
//!   otherwise (some slot without a Ready master, or no connection while a
//!   reconnect is scheduled); [`State::Shutdown`] at the end.
//! - **Cluster lost.** Connected but not Ready, every node down (its probe
//!   failed since it was last Ready) and the topology unreadable
//!   `lost_after` times in a row: the connection is dropped
//!   ([`Action::Disconnect`], [`Event::ClusterLost`]) and remade with backoff.
//! - **The backoff reset.** As for the [`Supervisor`](crate::Supervisor), the
//!   backoff sequence restarts from its initial delay only when the lost
//!   connection had been up, answering topology reads, for
//!   `backoff_reset_after`: a cluster that accepts connections and then
//!   vanishes at once does not earn instant retries forever.
//!
//! # Driving it
//!
//! Like the [`Supervisor`](crate::Supervisor): feed an [`Input`] with a
//! [`Timestamp`], then drain [`ClusterSupervisor::poll_output`] until it
//! returns [`Output::Timeout`] (sleep until then, or until the next input) or
//! [`Output::Idle`].
//!
//! ```
//! use relink_core::cluster::{Action, ClusterSupervisor, ClusterSupervisorConfig, Input, Output};
//! use relink_core::Timestamp;
//!
//! let mut sup = ClusterSupervisor::new(ClusterSupervisorConfig::default(), 42);
//! let now = Timestamp::from_millis(0);
//! sup.handle_input(now, Input::Start);
//! loop {
//!     match sup.poll_output(now) {
//!         Output::Action(Action::Connect { attempt }) => { /* make the cluster connection */ }
//!         Output::Action(Action::RefreshTopology { id }) => { /* CLUSTER SLOTS; Input::Topology { id, .. } */ }
//!         Output::Action(Action::StartProbe { node }) => { /* probe node; Input::NodeState */ }
//!         Output::Action(Action::StopProbe { node }) => { /* stop probing node */ }
//!         Output::Action(Action::Disconnect) => { /* drop the connection or the attempt */ }
//!         Output::Event(event) => { /* tell the user */ }
//!         Output::Timeout(deadline) => { /* sleep until deadline */ break }
//!         Output::Idle => break,
//!         _ => {}
//!     }
//! }
//! ```
//!
//! Timers are processed by `poll_output`, so a late or spurious wake-up is
//! harmless, and an input is judged before any deadline that passed at the
//! same instant. Inputs that make no sense in the current state (a topology
//! read nobody asked for, the state of a node that left) are ignored.
//!
//! A node is named by its `host:port` string. Topology changes allocate;
//! the steady path (a node state that changes nothing, a timer with nothing
//! due, a poke) does not.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::error::ConfigError;
use crate::failure::FailureKind;
use crate::supervisor::{State, SupervisorConfig};
use crate::time::{millis, Timestamp};

/// Hash slots in a Redis Cluster.
pub const SLOTS: u32 = 16384;

/// The highest slot number.
const LAST_SLOT: u16 = 16383;

/// Everything the cluster supervisor needs to decide.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ClusterSupervisorConfig {
    /// Delays between attempts to make the cluster connection.
    pub backoff: BackoffPolicy,
    /// How long one attempt to make the cluster connection may take.
    #[serde(with = "crate::duration::human")]
    pub connect_timeout: Duration,
    /// How long a connection must have been up (answering topology reads)
    /// for its loss to restart the backoff sequence from the initial delay.
    #[serde(with = "crate::duration::human")]
    pub backoff_reset_after: Duration,
    /// Time between topology reads while connected.
    #[serde(with = "crate::duration::human")]
    pub refresh_interval: Duration,
    /// How long a topology read may go unanswered before it counts as failed.
    #[serde(with = "crate::duration::human")]
    pub refresh_timeout: Duration,
    /// How long after a poke the topology is read, so that a burst of pokes
    /// makes one read.
    #[serde(with = "crate::duration::human")]
    pub poke_settle: Duration,
    /// Failed topology reads in a row (with every node down and the cluster
    /// not Ready) after which the cluster is lost and its connection remade.
    pub lost_after: u32,
}

impl Default for ClusterSupervisorConfig {
    /// The default backoff; 2 s connect and topology timeouts; the topology
    /// read every second, 20 ms after a poke; lost after two failed reads;
    /// the backoff reset after 10 s up.
    fn default() -> Self {
        ClusterSupervisorConfig {
            backoff: BackoffPolicy::default(),
            connect_timeout: Duration::from_secs(2),
            backoff_reset_after: Duration::from_secs(10),
            refresh_interval: Duration::from_secs(1),
            refresh_timeout: Duration::from_secs(2),
            poke_settle: Duration::from_millis(20),
            lost_after: 2,
        }
    }
}

impl From<&SupervisorConfig> for ClusterSupervisorConfig {
    /// The same backoff, connect timeout and reset rule as a single
    /// connection's; the topology read every heartbeat interval, given as
    /// long as a connect (routing it may need one); other fields default.
    fn from(c: &SupervisorConfig) -> Self {
        ClusterSupervisorConfig {
            backoff: c.backoff.clone(),
            connect_timeout: c.connect_timeout,
            backoff_reset_after: c.backoff_reset_after,
            refresh_interval: c.heartbeat.interval,
            refresh_timeout: c.connect_timeout,
            ..ClusterSupervisorConfig::default()
        }
    }
}

impl ClusterSupervisorConfig {
    /// Sets [`backoff`](Self::backoff).
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`backoff_reset_after`](Self::backoff_reset_after).
    pub fn backoff_reset_after(mut self, after: Duration) -> Self {
        self.backoff_reset_after = after;
        self
    }

    /// Sets [`refresh_interval`](Self::refresh_interval).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh_interval = interval;
        self
    }

    /// Sets [`refresh_timeout`](Self::refresh_timeout).
    pub fn refresh_timeout(mut self, timeout: Duration) -> Self {
        self.refresh_timeout = timeout;
        self
    }

    /// Sets [`poke_settle`](Self::poke_settle).
    pub fn poke_settle(mut self, settle: Duration) -> Self {
        self.poke_settle = settle;
        self
    }

    /// Sets [`lost_after`](Self::lost_after).
    pub fn lost_after(mut self, reads: u32) -> Self {
        self.lost_after = reads;
        self
    }

    /// Checks every field; the error names the first one that makes no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backoff.validate()?;
        let positive = [
            ("connect_timeout", self.connect_timeout),
            ("refresh_interval", self.refresh_interval),
            ("refresh_timeout", self.refresh_timeout),
        ];
        for (field, d) in positive {
            if d < Duration::from_millis(1) {
                return Err(ConfigError::invalid(field, "must be at least 1ms"));
            }
        }
        if self.poke_settle > self.refresh_interval {
            return Err(ConfigError::invalid(
                "poke_settle",
                "must not be longer than refresh_interval",
            ));
        }
        if self.lost_after == 0 {
            return Err(ConfigError::invalid("lost_after", "must be at least 1"));
        }
        Ok(())
    }

    /// [`validate`](Self::validate)s and returns the config.
    pub fn build(self) -> Result<Self, ConfigError> {
        self.validate().map(|()| self)
    }
}

/// A range of slots and the master that serves it (`host:port`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SlotRange {
    /// First slot, 0..=16383.
    pub start: u16,
    /// Last slot (inclusive), `start..=16383`.
    pub end: u16,
    /// The master serving these slots, `host:port`.
    pub master: String,
}

impl SlotRange {
    /// Slots `start..=end` served by `master`.
    pub fn new(start: u16, end: u16, master: impl Into<String>) -> Self {
        SlotRange {
            start,
            end,
            master: master.into(),
        }
    }

    /// How many slots it holds (0 when `end < start`).
    pub fn len(&self) -> u32 {
        if self.end < self.start {
            0
        } else {
            u32::from(self.end - self.start) + 1
        }
    }

    /// Whether it holds no slot (`end < start`).
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }
}

/// The hash slot of `key`, as Redis Cluster computes it: CRC16 (XMODEM) of
/// the key, or of its hash tag (the part between the first `{` and the next
/// `}`, when not empty), modulo 16384. Written here because the core routes
/// shard channels (`SSUBSCRIBE`) by it, and redis-rs, which computes it for
/// commands, does not expose the number; it is ten lines, a dependency
/// would be more.
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in tagged {
        crc ^= u16::from(byte) << 8;
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

/// The master serving `slot` in `slots` (a slot map as the cluster
/// supervisor keeps it), if any.
pub fn master_of(slots: &[SlotRange], slot: u16) -> Option<&str> {
    slots
        .iter()
        .find(|r| r.start <= slot && slot <= r.end)
        .map(|r| r.master.as_str())
}

/// What the driver reports to the cluster supervisor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Input<'a> {
    /// Begin connecting (from Idle; ignored elsewhere).
    Start,
    /// Attempt `attempt` made the cluster connection.
    Connected {
        /// The attempt number from [`Action::Connect`].
        attempt: u32,
    },
    /// Attempt `attempt` failed.
    ConnectFailed {
        /// The attempt number from [`Action::Connect`].
        attempt: u32,
        /// Why it failed.
        kind: FailureKind,
    },
    /// The topology read asked for by [`Action::RefreshTopology`] with this `id`.
    Topology {
        /// The id from [`Action::RefreshTopology`].
        id: u64,
        /// Slot ranges and their masters (`CLUSTER SLOTS`). Ranges out of
        /// bounds are clipped, overlaps are resolved in favour of the range
        /// that starts first.
        slots: Vec<SlotRange>,
        /// Every node, masters and replicas, `host:port` (a master of `slots`
        /// missing here is added).
        nodes: Vec<String>,
    },
    /// The topology read with this `id` failed.
    TopologyFailed {
        /// The id from [`Action::RefreshTopology`].
        id: u64,
        /// Why it failed.
        kind: FailureKind,
    },
    /// The probe of `node` is now in `state` (ignored for a node not probed).
    NodeState {
        /// The node, as named in [`Action::StartProbe`].
        node: &'a str,
        /// Its probe's connectivity state.
        state: State,
    },
    /// Something suggests the topology changed (a redirection, a slot with
    /// no connection): read it soon.
    Poke,
    /// Stop for good: drop the connection, stop every probe.
    Shutdown,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Make the cluster connection; report [`Input::Connected`] or
    /// [`Input::ConnectFailed`] with this attempt number.
    Connect {
        /// Attempt number within the current outage, from 1.
        attempt: u32,
    },
    /// Read the topology through the cluster connection; report
    /// [`Input::Topology`] or [`Input::TopologyFailed`] with this `id`.
    RefreshTopology {
        /// Identifies this read.
        id: u64,
    },
    /// Start probing this node (`host:port`); report its state changes with
    /// [`Input::NodeState`].
    StartProbe {
        /// The node.
        node: String,
    },
    /// Stop probing this node: it left the topology (or the supervisor shut down).
    StopProbe {
        /// The node.
        node: String,
    },
    /// Drop the cluster connection, or abandon the attempt in flight (a
    /// connection the abandoned attempt still produces must be dropped too).
    Disconnect,
}

/// Something that happened, for the user to see.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The rolled-up state changed.
    StateChanged {
        /// The previous state.
        from: State,
        /// The new state.
        to: State,
    },
    /// The cluster connection is made.
    Connected {
        /// Attempts it took.
        attempts: u32,
    },
    /// An attempt to make the cluster connection failed or timed out.
    ConnectFailed {
        /// Its attempt number.
        attempt: u32,
        /// Why.
        kind: FailureKind,
    },
    /// The next attempt is scheduled.
    ReconnectScheduled {
        /// Its attempt number.
        attempt: u32,
        /// After how long.
        #[serde(with = "millis")]
        delay: Duration,
    },
    /// A topology read changed the slot map.
    TopologyChanged {
        /// Masters serving slots now.
        masters: u32,
        /// Nodes in the topology now.
        nodes: u32,
    },
    /// A topology read failed or timed out.
    TopologyFailed {
        /// Why.
        kind: FailureKind,
        /// Failed reads in a row.
        failures: u32,
    },
    /// A node appeared in the topology (and is now probed).
    NodeAdded {
        /// The node.
        node: String,
    },
    /// A node left the topology (and is no longer probed).
    NodeRemoved {
        /// The node.
        node: String,
    },
    /// Every node down and the topology unreadable: the cluster connection
    /// was dropped and will be remade.
    ClusterLost {
        /// The last topology read's failure.
        cause: FailureKind,
        /// Failed topology reads in a row.
        failures: u32,
    },
    /// The backoff policy ran out of attempts or time; the supervisor stopped.
    GaveUp {
        /// Attempts made in this outage.
        attempts: u32,
        /// Time since the outage began.
        #[serde(with = "millis")]
        elapsed: Duration,
    },
}

/// One thing [`ClusterSupervisor::poll_output`] hands the driver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Output {
    /// Do this.
    Action(Action),
    /// Tell the user this.
    Event(Event),
    /// Drained: call again at this time at the latest.
    Timeout(Timestamp),
    /// Drained, and nothing is scheduled (Idle or Shutdown).
    Idle,
}

/// One node as the cluster supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct NodeHealth {
    /// Whether it serves slots as a master in the latest topology.
    pub master: bool,
    /// Slots it serves as a master.
    pub slots: u32,
    /// Its probe's state, as last reported (Idle before any report).
    pub state: State,
    /// Whether its probe failed since it was last Ready (a node that is down,
    /// as opposed to one still starting).
    pub down: bool,
}

/// A snapshot of the cluster supervisor's view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ClusterHealth {
    /// The rolled-up state.
    pub state: State,
    /// When it was entered.
    pub since: Timestamp,
    /// The current or last attempt to make the cluster connection in this
    /// outage (0 before any).
    pub attempt: u32,
    /// The most recent failure to make the connection or read the topology.
    pub last_failure: Option<FailureKind>,
    /// Slots served by a master whose probe is Ready (16384 when Ready).
    pub slots_ready: u32,
    /// Failed topology reads in a row.
    pub topology_failures: u32,
    /// When the next connection attempt is due (while waiting for it).
    pub next_attempt_at: Option<Timestamp>,
    /// Every node of the topology, by `host:port`.
    pub nodes: BTreeMap<String, NodeHealth>,
}

/// The cluster connection's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    Idle,
    Connecting,
    Up,
    Waiting,
    Shutdown,
}

/// A topology read in flight.
#[derive(Debug, Clone, Copy)]
struct Refresh {
    id: u64,
    deadline: Timestamp,
}

impl NodeHealth {
    fn new() -> Self {
        NodeHealth {
            master: false,
            slots: 0,
            state: State::Idle,
            down: false,
        }
    }

    /// Not Ready, and not failed either: its probe has not made up its mind.
    fn starting(&self) -> bool {
        self.state != State::Ready && !self.down
    }
}

/// Outputs one input queues at most, topology changes aside (each added or
/// removed node adds two).
const OUTPUT_CAPACITY: usize = 16;

/// The cluster's supervisor. See the [module docs](self) for what it decides
/// and the driving loop.
#[derive(Debug, Clone)]
pub struct ClusterSupervisor {
    config: ClusterSupervisorConfig,
    backoff: Backoff,
    conn: Conn,
    state: State,
    since: Timestamp,
    attempt: u32,
    last_failure: Option<FailureKind>,
    /// Connecting: when the attempt in flight times out.
    connect_deadline: Timestamp,
    /// Waiting: when the next attempt starts.
    next_attempt_at: Timestamp,
    /// When the current outage (or the very first connect) began.
    outage_start: Timestamp,
    /// Up: when the connection was made.
    connected_since: Timestamp,
    /// Up: the last successful topology read (`connected_since` before one).
    last_topology_ok: Timestamp,
    refresh: Option<Refresh>,
    /// Up, no read in flight: when the next read starts.
    next_refresh_at: Timestamp,
    /// A poke came while a read was in flight: the next read comes soon.
    poked: bool,
    next_refresh_id: u64,
    topology_failures: u32,
    last_topology_failure: FailureKind,
    /// The slot map: disjoint ranges sorted by start.
    slots: Vec<SlotRange>,
    nodes: BTreeMap<String, NodeHealth>,
    slots_ready: u32,
    out: VecDeque<Output>,
}

impl ClusterSupervisor {
    /// A cluster supervisor in [`State::Idle`]. `seed` drives the backoff
    /// jitter.
    ///
    /// Call [`ClusterSupervisorConfig::validate`] first to reject nonsense
    /// with an error; here, timeouts and the interval below 1 ms are raised
    /// to 1 ms (so every deadline lies in the future and a drain always
    /// ends), `poke_settle` is capped at `refresh_interval` and `lost_after`
    /// raised to 1.
    pub fn new(mut config: ClusterSupervisorConfig, seed: u64) -> Self {
        let at_least_1ms = |d: Duration| d.max(Duration::from_millis(1));
        config.connect_timeout = at_least_1ms(config.connect_timeout);
        config.refresh_interval = at_least_1ms(config.refresh_interval);
        config.refresh_timeout = at_least_1ms(config.refresh_timeout);
        config.poke_settle = config.poke_settle.min(config.refresh_interval);
        config.lost_after = config.lost_after.max(1);
        ClusterSupervisor {
            backoff: Backoff::new(config.backoff.clone(), seed),
            config,
            conn: Conn::Idle,
            state: State::Idle,
            since: Timestamp::ZERO,
            attempt: 0,
            last_failure: None,
            connect_deadline: Timestamp::MAX,
            next_attempt_at: Timestamp::MAX,
            outage_start: Timestamp::ZERO,
            connected_since: Timestamp::ZERO,
            last_topology_ok: Timestamp::ZERO,
            refresh: None,
            next_refresh_at: Timestamp::MAX,
            poked: false,
            next_refresh_id: 1,
            topology_failures: 0,
            last_topology_failure: FailureKind::Io,
            slots: Vec::new(),
            nodes: BTreeMap::new(),
            slots_ready: 0,
            out: VecDeque::with_capacity(OUTPUT_CAPACITY),
        }
    }

    /// The rolled-up state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The config it runs with (after the adjustments of [`new`](Self::new)).
    pub fn config(&self) -> &ClusterSupervisorConfig {
        &self.config
    }

    /// Whether the cluster connection is made (and not since dropped).
    pub fn is_connected(&self) -> bool {
        self.conn == Conn::Up
    }

    /// Slots served by a master whose probe is Ready.
    pub fn slots_ready(&self) -> u32 {
        self.slots_ready
    }

    /// The slot map of the latest topology: disjoint ranges, sorted.
    pub fn slots(&self) -> &[SlotRange] {
        &self.slots
    }

    /// One node of the topology.
    pub fn node(&self, node: &str) -> Option<NodeHealth> {
        self.nodes.get(node).copied()
    }

    /// Every node of the topology (each probed), in address order.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, NodeHealth)> + '_ {
        self.nodes.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// A snapshot of the health (allocates: it copies the node list).
    pub fn health(&self) -> ClusterHealth {
        ClusterHealth {
            state: self.state,
            since: self.since,
            attempt: self.attempt,
            last_failure: self.last_failure,
            slots_ready: self.slots_ready,
            topology_failures: self.topology_failures,
            next_attempt_at: (self.conn == Conn::Waiting).then_some(self.next_attempt_at),
            nodes: self.nodes.clone(),
        }
    }

    /// Feeds one input that happened at `now`. Inputs that make no sense in
    /// the current state are ignored.
    pub fn handle_input(&mut self, now: Timestamp, input: Input<'_>) {
        match (self.conn, input) {
            (Conn::Shutdown, _) => {}
            (_, Input::Shutdown) => self.shut_down(now),
            (Conn::Idle, Input::Start) => {
                self.outage_start = now;
                self.start_attempt(now);
            }
            (Conn::Connecting, Input::Connected { attempt }) if attempt == self.attempt => {
                self.become_up(now);
            }
            (Conn::Connecting, Input::ConnectFailed { attempt, kind })
                if attempt == self.attempt =>
            {
                self.connect_failed(now, kind);
            }
            (Conn::Up, Input::Topology { id, slots, nodes }) if self.is_current(id) => {
                self.apply_topology(now, slots, nodes);
            }
            (Conn::Up, Input::TopologyFailed { id, kind }) if self.is_current(id) => {
                self.topology_failed(now, kind);
            }
            (_, Input::NodeState { node, state }) => self.node_state(now, node, state),
            (Conn::Up, Input::Poke) => match self.refresh {
                Some(_) => self.poked = true,
                None => {
                    let soon = now + self.config.poke_settle;
                    self.next_refresh_at = self.next_refresh_at.min(soon);
                }
            },
            _ => {}
        }
    }

    /// The next thing to do, or [`Output::Timeout`] / [`Output::Idle`] when
    /// drained. Deadlines that have passed by `now` are acted on first.
    #[must_use]
    pub fn poll_output(&mut self, now: Timestamp) -> Output {
        if self.out.is_empty() {
            self.handle_timers(now);
        }
        if let Some(output) = self.out.pop_front() {
            return output;
        }
        match self.next_deadline() {
            Some(deadline) => Output::Timeout(deadline),
            None => Output::Idle,
        }
    }

    /// The earliest pending deadline, if any.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.conn {
            Conn::Idle | Conn::Shutdown => None,
            Conn::Connecting => Some(self.connect_deadline),
            Conn::Waiting => Some(self.next_attempt_at),
            Conn::Up => Some(match self.refresh {
                Some(refresh) => refresh.deadline,
                None => self.next_refresh_at,
            }),
        }
    }

    /// Acts on the deadline that is due, if any. Each one queues an output
    /// and moves the next deadline past `now` (or acts on it at once).
    fn handle_timers(&mut self, now: Timestamp) {
        match self.next_deadline() {
            Some(deadline) if deadline <= now => {}
            _ => return,
        }
        match self.conn {
            Conn::Connecting => {
                self.push_action(Action::Disconnect);
                self.connect_failed(now, FailureKind::Timeout);
            }
            Conn::Waiting => self.start_attempt(now),
            Conn::Up => match self.refresh {
                Some(_) => self.topology_failed(now, FailureKind::Timeout),
                None => {
                    let id = self.next_refresh_id;
                    self.next_refresh_id = self.next_refresh_id.wrapping_add(1);
                    self.refresh = Some(Refresh {
                        id,
                        deadline: now + self.config.refresh_timeout,
                    });
                    self.push_action(Action::RefreshTopology { id });
                }
            },
            Conn::Idle | Conn::Shutdown => {}
        }
    }

    fn is_current(&self, id: u64) -> bool {
        self.refresh.is_some_and(|r| r.id == id)
    }

    fn start_attempt(&mut self, now: Timestamp) {
        self.attempt = self.attempt.saturating_add(1);
        self.connect_deadline = now + self.config.connect_timeout;
        self.conn = Conn::Connecting;
        self.roll_up(now);
        self.push_action(Action::Connect {
            attempt: self.attempt,
        });
    }

    fn become_up(&mut self, now: Timestamp) {
        self.conn = Conn::Up;
        self.connected_since = now;
        self.last_topology_ok = now;
        self.topology_failures = 0;
        self.refresh = None;
        self.poked = false;
        // The topology is read at once (by the timer, in this very drain).
        self.next_refresh_at = now;
        self.roll_up(now);
        self.push_event(Event::Connected {
            attempts: self.attempt,
        });
    }

    fn connect_failed(&mut self, now: Timestamp, kind: FailureKind) {
        self.last_failure = Some(kind);
        self.push_event(Event::ConnectFailed {
            attempt: self.attempt,
            kind,
        });
        self.schedule_attempt(now);
    }

    /// After a failure: wait the next backoff delay, or give up.
    fn schedule_attempt(&mut self, now: Timestamp) {
        let elapsed = now.saturating_since(self.outage_start);
        match self.backoff.next_delay(elapsed) {
            Some(delay) => {
                self.next_attempt_at = now + delay;
                self.conn = Conn::Waiting;
                self.roll_up(now);
                self.push_event(Event::ReconnectScheduled {
                    attempt: self.attempt.saturating_add(1),
                    delay,
                });
            }
            None => {
                self.push_event(Event::GaveUp {
                    attempts: self.attempt,
                    elapsed,
                });
                self.shut_down(now);
            }
        }
    }

    /// The read in flight is answered (or failed): the next one is due after
    /// the interval, or soon if a poke came meanwhile.
    fn finish_refresh(&mut self, now: Timestamp) {
        self.refresh = None;
        let wait = if self.poked {
            self.config.poke_settle
        } else {
            self.config.refresh_interval
        };
        self.poked = false;
        self.next_refresh_at = now + wait;
    }

    fn apply_topology(
        &mut self,
        now: Timestamp,
        mut slots: Vec<SlotRange>,
        mut nodes: Vec<String>,
    ) {
        self.finish_refresh(now);
        self.topology_failures = 0;
        self.last_topology_ok = now;
        normalize(&mut slots);
        nodes.sort_unstable();
        nodes.dedup();
        for range in &slots {
            if let Err(at) = nodes.binary_search(&range.master) {
                nodes.insert(at, range.master.clone());
            }
        }
        // Nodes that left: no longer probed, never named again.
        if self.nodes.keys().any(|k| nodes.binary_search(k).is_err()) {
            let gone: Vec<String> = self
                .nodes
                .keys()
                .filter(|k| nodes.binary_search(k).is_err())
                .cloned()
                .collect();
            for node in gone {
                self.nodes.remove(&node);
                self.push_action(Action::StopProbe { node: node.clone() });
                self.push_event(Event::NodeRemoved { node });
            }
        }
        // Nodes that appeared: probed from now on.
        let mut changed_nodes = false;
        for node in nodes {
            if !self.nodes.contains_key(&node) {
                changed_nodes = true;
                self.push_action(Action::StartProbe { node: node.clone() });
                self.push_event(Event::NodeAdded { node: node.clone() });
                self.nodes.insert(node, NodeHealth::new());
            }
        }
        if changed_nodes || slots != self.slots {
            for node in self.nodes.values_mut() {
                node.master = false;
                node.slots = 0;
            }
            for range in &slots {
                if let Some(node) = self.nodes.get_mut(&range.master) {
                    node.master = true;
                    node.slots = node.slots.saturating_add(range.len());
                }
            }
        }
        if slots != self.slots {
            self.slots = slots;
            let masters = self.nodes.values().filter(|n| n.master).count();
            self.push_event(Event::TopologyChanged {
                masters: u32::try_from(masters).unwrap_or(u32::MAX),
                nodes: u32::try_from(self.nodes.len()).unwrap_or(u32::MAX),
            });
        }
        self.roll_up(now);
    }

    fn topology_failed(&mut self, now: Timestamp, kind: FailureKind) {
        self.finish_refresh(now);
        self.topology_failures = self.topology_failures.saturating_add(1);
        self.last_failure = Some(kind);
        self.last_topology_failure = kind;
        self.push_event(Event::TopologyFailed {
            kind,
            failures: self.topology_failures,
        });
        self.roll_up(now);
        self.check_lost(now);
    }

    fn node_state(&mut self, now: Timestamp, node: &str, state: State) {
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let down = match state {
            State::Ready => false,
            State::TransientFailure | State::Shutdown => true,
            State::Idle | State::Connecting => n.down,
        };
        if n.state == state && n.down == down {
            return;
        }
        n.state = state;
        n.down = down;
        self.roll_up(now);
        self.check_lost(now);
    }

    /// Connected but not Ready, every node down, and the topology unreadable
    /// `lost_after` times in a row: drop the connection and make it again.
    fn check_lost(&mut self, now: Timestamp) {
        let lost = self.conn == Conn::Up
            && self.state != State::Ready
            && self.topology_failures >= self.config.lost_after
            && self.nodes.values().all(|n| n.down);
        if !lost {
            return;
        }
        let cause = self.last_topology_failure;
        self.push_action(Action::Disconnect);
        self.push_event(Event::ClusterLost {
            cause,
            failures: self.topology_failures,
        });
        let stable = self.last_topology_ok.saturating_since(self.connected_since);
        if stable >= self.config.backoff_reset_after {
            self.backoff.reset();
        }
        self.refresh = None;
        self.poked = false;
        self.topology_failures = 0;
        self.attempt = 0;
        self.outage_start = now;
        self.schedule_attempt(now);
    }

    /// Recomputes the slots served by Ready masters and the rolled-up state.
    fn roll_up(&mut self, now: Timestamp) {
        self.slots_ready = self
            .nodes
            .values()
            .filter(|n| n.master && n.state == State::Ready)
            .fold(0u32, |sum, n| sum.saturating_add(n.slots));
        let to = match self.conn {
            Conn::Idle => State::Idle,
            Conn::Connecting => State::Connecting,
            Conn::Waiting => State::TransientFailure,
            Conn::Shutdown => State::Shutdown,
            Conn::Up if self.slots_ready >= SLOTS => State::Ready,
            Conn::Up if self.nodes.values().all(NodeHealth::starting) => State::Connecting,
            Conn::Up => State::TransientFailure,
        };
        if self.state != to {
            let from = self.state;
            self.state = to;
            self.since = now;
            self.push_event(Event::StateChanged { from, to });
        }
    }

    /// Stops for good: the connection dropped, every probe stopped.
    fn shut_down(&mut self, now: Timestamp) {
        if matches!(self.conn, Conn::Connecting | Conn::Up) {
            self.push_action(Action::Disconnect);
        }
        for (node, _) in core::mem::take(&mut self.nodes) {
            self.push_action(Action::StopProbe { node });
        }
        self.slots.clear();
        self.refresh = None;
        self.conn = Conn::Shutdown;
        self.roll_up(now);
    }

    fn push_action(&mut self, action: Action) {
        self.out.push_back(Output::Action(action));
    }

    fn push_event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }
}

/// Clips ranges to the slot space, sorts them, and resolves overlaps in
/// favour of the range that starts first; does not allocate.
fn normalize(slots: &mut Vec<SlotRange>) {
    slots.retain(|r| r.start <= r.end && r.start <= LAST_SLOT);
    for r in slots.iter_mut() {
        r.end = r.end.min(LAST_SLOT);
    }
    slots.sort_unstable_by(|a, b| (a.start, a.end, &a.master).cmp(&(b.start, b.end, &b.master)));
    let mut next: u32 = 0;
    slots.retain_mut(|r| {
        if u32::from(r.end) < next {
            return false;
        }
        if u32::from(r.start) < next {
            // `next` <= r.end <= 16383 here.
            r.start = u16::try_from(next).unwrap_or(LAST_SLOT);
        }
        next = u32::from(r.end) + 1;
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn key_slots_match_redis() {
        // CLUSTER KEYSLOT on a real server gives these.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b""), 0);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag, or none closed, hashes the whole key.
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_slot(b"foo{bar"), key_slot(b"foo{bar"));
        assert_ne!(key_slot(b"{}foo"), key_slot(b"foo"));
    }

    #[test]
    fn the_master_of_a_slot_is_found_in_the_map() {
        let map = [
            SlotRange::new(0, 99, "a:1"),
            SlotRange::new(100, 16383, "b:2"),
        ];
        assert_eq!(master_of(&map, 0), Some("a:1"));
        assert_eq!(master_of(&map, 99), Some("a:1"));
        assert_eq!(master_of(&map, 100), Some("b:2"));
        assert_eq!(master_of(&map[..1], 100), None);
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn drain(sup: &mut ClusterSupervisor, now: Timestamp) -> Vec<Output> {
        let mut out = Vec::new();
        for _ in 0..64 {
            let o = sup.poll_output(now);
            let end = matches!(o, Output::Timeout(_) | Output::Idle);
            out.push(o);
            if end {
                return out;
            }
        }
        panic!("no end to the drain: {out:?}");
    }

    fn actions(out: &[Output]) -> Vec<Action> {
        out.iter()
            .filter_map(|o| match o {
                Output::Action(a) => Some(a.clone()),
                _ => None,
            })
            .collect()
    }

    fn events(out: &[Output]) -> Vec<Event> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e.clone()),
                _ => None,
            })
            .collect()
    }

    fn refresh_id(out: &[Output]) -> Option<u64> {
        actions(out).iter().find_map(|a| match a {
            Action::RefreshTopology { id } => Some(*id),
            _ => None,
        })
    }

    fn fixed(ms: u64) -> BackoffPolicy {
        BackoffPolicy::default()
            .strategy(crate::backoff::Strategy::Constant)
            .initial_delay(Duration::from_millis(ms))
            .max_delay(Duration::from_millis(ms))
            .jitter(crate::backoff::Jitter::None)
    }

    /// Three masters on :1, :2, :3, each with a replica on :4, :5, :6.
    fn topology(id: u64) -> Input<'static> {
        let slots = vec![
            SlotRange::new(0, 5460, "n:1"),
            SlotRange::new(5461, 10922, "n:2"),
            SlotRange::new(10923, 16383, "n:3"),
        ];
        let nodes = (1..=6).map(|i| alloc::format!("n:{i}")).collect();
        Input::Topology { id, slots, nodes }
    }

    /// Connected, topology read, every node Ready.
    fn ready(config: ClusterSupervisorConfig) -> (ClusterSupervisor, u64) {
        let mut sup = ClusterSupervisor::new(config, 7);
        sup.handle_input(t(0), Input::Start);
        assert_eq!(
            actions(&drain(&mut sup, t(0))),
            vec![Action::Connect { attempt: 1 }]
        );
        sup.handle_input(t(5), Input::Connected { attempt: 1 });
        let id = refresh_id(&drain(&mut sup, t(5))).expect("a read at once");
        sup.handle_input(t(6), topology(id));
        let out = drain(&mut sup, t(6));
        assert_eq!(
            actions(&out).len(),
            6,
            "a probe per node, masters and replicas: {out:?}"
        );
        for i in 1..=6 {
            let node = alloc::format!("n:{i}");
            sup.handle_input(
                t(7),
                Input::NodeState {
                    node: &node,
                    state: State::Ready,
                },
            );
        }
        drain(&mut sup, t(7));
        assert_eq!(sup.state(), State::Ready);
        (sup, 7)
    }

    #[test]
    fn ready_needs_every_slot_served_by_a_ready_master() {
        let (mut sup, now) = ready(ClusterSupervisorConfig::default());
        assert_eq!(sup.slots_ready(), SLOTS);
        // A replica going down changes nothing.
        sup.handle_input(
            t(now),
            Input::NodeState {
                node: "n:4",
                state: State::TransientFailure,
            },
        );
        drain(&mut sup, t(now));
        assert_eq!(sup.state(), State::Ready);
        // A master going down does.
        sup.handle_input(
            t(now),
            Input::NodeState {
                node: "n:2",
                state: State::TransientFailure,
            },
        );
        let out = drain(&mut sup, t(now));
        assert!(events(&out).contains(&Event::StateChanged {
            from: State::Ready,
            to: State::TransientFailure
        }));
        assert_eq!(sup.slots_ready(), SLOTS - 5462);
        let health = sup.health();
        assert_eq!(health.nodes.len(), 6);
        assert!(health.nodes["n:2"].master && health.nodes["n:2"].down);
    }

    #[test]
    fn a_node_that_left_is_no_longer_probed() {
        let (mut sup, _) = ready(ClusterSupervisorConfig::default());
        let now = 1007;
        let id = refresh_id(&drain(&mut sup, t(now))).expect("periodic read");
        // n:6 (a replica) left; n:7 joined.
        let slots = vec![
            SlotRange::new(0, 5460, "n:1"),
            SlotRange::new(5461, 10922, "n:2"),
            SlotRange::new(10923, 16383, "n:3"),
        ];
        let nodes = ["n:1", "n:2", "n:3", "n:4", "n:5", "n:7"]
            .map(String::from)
            .to_vec();
        sup.handle_input(t(now + 1), Input::Topology { id, slots, nodes });
        let out = drain(&mut sup, t(now + 1));
        assert_eq!(
            actions(&out),
            vec![
                Action::StopProbe { node: "n:6".into() },
                Action::StartProbe { node: "n:7".into() }
            ]
        );
        assert!(sup.node("n:6").is_none());
        // Its late report is ignored.
        sup.handle_input(
            t(now + 2),
            Input::NodeState {
                node: "n:6",
                state: State::TransientFailure,
            },
        );
        assert!(actions(&drain(&mut sup, t(now + 2))).is_empty());
        assert!(sup.node("n:6").is_none());
        assert_eq!(sup.state(), State::Ready);
    }

    #[test]
    fn a_failover_moves_the_slots_to_the_promoted_replica() {
        let (mut sup, _) = ready(ClusterSupervisorConfig::default());
        sup.handle_input(
            t(100),
            Input::NodeState {
                node: "n:1",
                state: State::TransientFailure,
            },
        );
        drain(&mut sup, t(100));
        assert_eq!(sup.state(), State::TransientFailure);
        let id = refresh_id(&drain(&mut sup, t(1007))).expect("read");
        let slots = vec![
            SlotRange::new(0, 5460, "n:4"),
            SlotRange::new(5461, 10922, "n:2"),
            SlotRange::new(10923, 16383, "n:3"),
        ];
        let nodes = (1..=6).map(|i| alloc::format!("n:{i}")).collect();
        sup.handle_input(t(1008), Input::Topology { id, slots, nodes });
        let out = drain(&mut sup, t(1008));
        assert!(actions(&out).is_empty(), "{out:?}");
        assert!(events(&out).contains(&Event::TopologyChanged {
            masters: 3,
            nodes: 6
        }));
        assert_eq!(sup.state(), State::Ready);
        assert!(!sup.node("n:1").expect("still listed").master);
    }

    #[test]
    fn pokes_coalesce_into_one_read() {
        let config = ClusterSupervisorConfig::default();
        let (mut sup, _) = ready(config);
        for ms in 100..110 {
            sup.handle_input(t(ms), Input::Poke);
            assert_eq!(drain(&mut sup, t(ms)), vec![Output::Timeout(t(120))]);
        }
        let out = drain(&mut sup, t(120));
        assert_eq!(actions(&out).len(), 1, "{out:?}");
        // A poke during the read brings the next one forward.
        sup.handle_input(t(121), Input::Poke);
        drain(&mut sup, t(121));
        let id = refresh_id(&out).expect("read");
        sup.handle_input(
            t(125),
            Input::TopologyFailed {
                id,
                kind: FailureKind::Io,
            },
        );
        assert_eq!(
            drain(&mut sup, t(125)).last(),
            Some(&Output::Timeout(t(145)))
        );
    }

    #[test]
    fn a_cluster_lost_is_reconnected_with_backoff_not_at_once() {
        let config = ClusterSupervisorConfig::default()
            .backoff(fixed(300))
            .backoff_reset_after(Duration::from_secs(60));
        let (mut sup, _) = ready(config);
        for i in 1..=6 {
            let node = alloc::format!("n:{i}");
            sup.handle_input(
                t(200),
                Input::NodeState {
                    node: &node,
                    state: State::TransientFailure,
                },
            );
        }
        drain(&mut sup, t(200));
        assert_eq!(sup.state(), State::TransientFailure);
        let mut lost = None;
        for now in [1007u64, 2008] {
            let id = refresh_id(&drain(&mut sup, t(now))).expect("read");
            sup.handle_input(
                t(now + 1),
                Input::TopologyFailed {
                    id,
                    kind: FailureKind::Io,
                },
            );
            let out = drain(&mut sup, t(now + 1));
            if actions(&out).contains(&Action::Disconnect) {
                lost = Some(out);
            }
        }
        let out = lost.expect("lost after two failed reads");
        assert!(events(&out).contains(&Event::ClusterLost {
            cause: FailureKind::Io,
            failures: 2
        }));
        assert!(events(&out).contains(&Event::ReconnectScheduled {
            attempt: 1,
            delay: Duration::from_millis(300)
        }));
        // The probes are kept: the nodes are still the best guess.
        assert_eq!(sup.health().nodes.len(), 6);
        assert_eq!(
            drain(&mut sup, t(2009)).last(),
            Some(&Output::Timeout(t(2309)))
        );
        let out = drain(&mut sup, t(2309));
        assert_eq!(actions(&out), vec![Action::Connect { attempt: 1 }]);
    }

    #[test]
    fn the_backoff_resets_only_after_a_stable_connection() {
        // Policy ×2 from 100 ms, no jitter; reset after 5 s.
        let policy = BackoffPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(10))
            .jitter(crate::backoff::Jitter::None);
        let config = ClusterSupervisorConfig::default()
            .backoff(policy)
            .backoff_reset_after(Duration::from_secs(5))
            .lost_after(1);
        let mut sup = ClusterSupervisor::new(config, 1);
        let mut now = 0;
        sup.handle_input(t(now), Input::Start);
        drain(&mut sup, t(now));
        let mut delays = Vec::new();
        // Three short-lived connections (lost after 1 s), then a long one.
        for up_for in [1000u64, 1000, 1000, 6000, 1000] {
            sup.handle_input(t(now), Input::Connected { attempt: 1 });
            let mut id = refresh_id(&drain(&mut sup, t(now))).expect("read");
            let until = now + up_for;
            while now < until {
                sup.handle_input(
                    t(now),
                    Input::Topology {
                        id,
                        slots: vec![],
                        nodes: vec![],
                    },
                );
                drain(&mut sup, t(now));
                now += 1000;
                id = refresh_id(&drain(&mut sup, t(now))).expect("read");
            }
            sup.handle_input(
                t(now),
                Input::TopologyFailed {
                    id,
                    kind: FailureKind::Io,
                },
            );
            let out = drain(&mut sup, t(now));
            delays.extend(events(&out).iter().filter_map(|e| match e {
                Event::ReconnectScheduled { delay, .. } => Some(delay.as_millis() as u64),
                _ => None,
            }));
            let Some(Output::Timeout(at)) = out.last() else {
                panic!("{out:?}")
            };
            now = at.as_millis();
            drain(&mut sup, t(now));
        }
        assert_eq!(delays, vec![100, 200, 400, 100, 200]);
    }

    #[test]
    fn connect_failures_give_up_when_the_policy_says_so() {
        let config = ClusterSupervisorConfig::default()
            .backoff(fixed(10).max_attempts(core::num::NonZeroU32::new(2)));
        let mut sup = ClusterSupervisor::new(config, 1);
        sup.handle_input(t(0), Input::Start);
        drain(&mut sup, t(0));
        sup.handle_input(
            t(1),
            Input::ConnectFailed {
                attempt: 1,
                kind: FailureKind::Io,
            },
        );
        drain(&mut sup, t(1));
        // The connect timeout counts as a failure too.
        drain(&mut sup, t(11));
        let out = drain(&mut sup, t(2011));
        assert!(actions(&out).contains(&Action::Disconnect));
        let out = drain(&mut sup, t(2021));
        sup.handle_input(
            t(2022),
            Input::ConnectFailed {
                attempt: 3,
                kind: FailureKind::Io,
            },
        );
        let out2 = drain(&mut sup, t(2022));
        let all: Vec<Event> = events(&out).into_iter().chain(events(&out2)).collect();
        assert!(all.contains(&Event::GaveUp {
            attempts: 3,
            elapsed: Duration::from_millis(2022)
        }));
        assert_eq!(sup.state(), State::Shutdown);
        assert_eq!(out2.last(), Some(&Output::Idle));
    }

    #[test]
    fn shutdown_stops_every_probe_and_then_nothing_happens() {
        let (mut sup, now) = ready(ClusterSupervisorConfig::default());
        sup.handle_input(t(now), Input::Shutdown);
        let out = drain(&mut sup, t(now));
        let acts = actions(&out);
        assert_eq!(acts[0], Action::Disconnect);
        assert_eq!(acts.len(), 7, "{acts:?}");
        assert_eq!(sup.state(), State::Shutdown);
        sup.handle_input(t(now), Input::Poke);
        sup.handle_input(t(now), topology(1));
        assert_eq!(drain(&mut sup, t(now + 100_000)), vec![Output::Idle]);
    }

    #[test]
    fn stale_and_unasked_answers_are_ignored() {
        let (mut sup, _) = ready(ClusterSupervisorConfig::default());
        let before = sup.health();
        sup.handle_input(t(10), topology(999));
        sup.handle_input(
            t(10),
            Input::TopologyFailed {
                id: 1,
                kind: FailureKind::Io,
            },
        );
        sup.handle_input(t(10), Input::Connected { attempt: 1 });
        sup.handle_input(t(10), Input::Start);
        assert_eq!(drain(&mut sup, t(10)), vec![Output::Timeout(t(1006))]);
        assert_eq!(sup.health(), before);
        // A read that timed out: its late answer is ignored.
        let id = refresh_id(&drain(&mut sup, t(1006))).expect("read");
        let out = drain(&mut sup, t(3006));
        assert!(events(&out).contains(&Event::TopologyFailed {
            kind: FailureKind::Timeout,
            failures: 1
        }));
        sup.handle_input(t(3007), topology(id));
        drain(&mut sup, t(3007));
        assert_eq!(sup.health().topology_failures, 1);
    }

    #[test]
    fn malformed_slot_ranges_are_clipped_and_never_double_count() {
        let mut slots = vec![
            SlotRange::new(100, 50, "x:1"),
            SlotRange::new(0, 10_000, "x:1"),
            SlotRange::new(5_000, 20_000, "x:2"),
            SlotRange::new(20_000, 30_000, "x:3"),
            SlotRange::new(0, 10, "x:3"),
        ];
        normalize(&mut slots);
        assert_eq!(
            slots,
            vec![
                SlotRange::new(0, 10, "x:3"),
                SlotRange::new(11, 10_000, "x:1"),
                SlotRange::new(10_001, 16383, "x:2"),
            ]
        );
        assert_eq!(slots.iter().map(SlotRange::len).sum::<u32>(), SLOTS);
    }

    #[test]
    fn config_reads_and_writes_human_durations() {
        let config = ClusterSupervisorConfig::default().poke_settle(Duration::from_millis(5));
        let json = serde_json::to_string(&config).expect("serializes");
        assert!(json.contains(r#""poke_settle":"5ms""#), "{json}");
        let back: ClusterSupervisorConfig = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, config);
        let partial: ClusterSupervisorConfig =
            serde_json::from_str(r#"{"refresh_interval": "250ms", "lost_after": 3}"#)
                .expect("partial");
        assert_eq!(partial.refresh_interval, Duration::from_millis(250));
        assert_eq!(partial.lost_after, 3);
        assert_eq!(partial.poke_settle, Duration::from_millis(20));
        assert!(serde_json::from_str::<ClusterSupervisorConfig>(r#"{"lost": 3}"#).is_err());
    }

    #[test]
    fn config_errors_name_the_field() {
        let bad = |c: ClusterSupervisorConfig| c.build().map(|_| ()).unwrap_err().field();
        let d = ClusterSupervisorConfig::default;
        assert_eq!(
            bad(d().refresh_interval(Duration::ZERO)),
            "refresh_interval"
        );
        assert_eq!(bad(d().refresh_timeout(Duration::ZERO)), "refresh_timeout");
        assert_eq!(bad(d().connect_timeout(Duration::ZERO)), "connect_timeout");
        assert_eq!(bad(d().lost_after(0)), "lost_after");
        assert_eq!(bad(d().poke_settle(Duration::from_secs(2))), "poke_settle");
        assert!(d().poke_settle(Duration::ZERO).build().is_ok());
        let from = ClusterSupervisorConfig::from(&SupervisorConfig::default());
        assert_eq!(from.refresh_interval, Duration::from_secs(1));
        assert!(from.build().is_ok());
    }
}
