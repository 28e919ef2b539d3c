//! A deterministic simulation of a Redis Cluster, a driver and its node
//! probes around the [`ClusterSupervisor`], on a virtual clock that jumps to
//! the next thing that happens, with every step checked against the
//! supervisor's promises by an independent model (an oracle).
//!
//! The scripted cluster has masters (each serving slot ranges) and replicas
//! on `127.0.0.1:7000`, `:7001`, ... and follows a timeline of [`Op`]s: a node
//! fails or comes back, a replica is promoted (a failover), slots move
//! between masters (a reshard), a node leaves or joins, the whole cluster
//! refuses connections or hangs, a burst of pokes arrives. After the
//! timeline, every node is up and the cluster must be Ready again.
//!
//! The harness plays the driver: it turns actions into future events (a
//! connect result, a topology answer, a probe's state changes) and feeds
//! them back as inputs. Probes are small scripted state machines that follow
//! their node (Connecting, then Ready when the node answers; TransientFailure
//! and periodic retries while it does not).

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use relink_core::backoff::{Backoff, BackoffPolicy, Jitter, Strategy};
use relink_core::cluster::{
    Action, ClusterSupervisor, ClusterSupervisorConfig, Event, Input, Output, SlotRange, SLOTS,
};
use relink_core::failure::FailureKind;
use relink_core::rng::SplitMix64;
use relink_core::{State, Timestamp};

/// Port of node 0; node `i` listens on `BASE_PORT + i`.
pub const BASE_PORT: usize = 7000;

/// At most this many nodes are ever created (joins beyond are ignored).
pub const MAX_NODES: usize = 12;

/// `127.0.0.1:<port>` of node `i`.
pub fn name(i: usize) -> String {
    format!("127.0.0.1:{}", BASE_PORT + i)
}

fn index_of(name: &str) -> Option<usize> {
    name.strip_prefix("127.0.0.1:")?
        .parse::<usize>()
        .ok()?
        .checked_sub(BASE_PORT)
        .filter(|&i| i < MAX_NODES)
}

/// What the whole cluster does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Mode {
    /// Nodes that are up answer.
    Normal,
    /// Every node refuses connections (a network partition that resets).
    Down,
    /// Nothing answers and nothing is refused (a blackhole).
    Hang,
}

/// One change to the scripted cluster. Node choices are relative (the
/// `k`-th of the nodes that qualify, modulo their number), so a random
/// timeline always means something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    /// The `k`-th member node goes down (killed).
    NodeDown(usize),
    /// The `k`-th member node that is down comes back.
    NodeUp(usize),
    /// The `k`-th master's first replica (an up one if any) is promoted: it
    /// takes the master's slots and replicas; the old master becomes its replica.
    Failover(usize),
    /// `count` slots of the `from`-th master's first range move to the `to`-th master.
    Reshard {
        /// Source master (relative).
        from: usize,
        /// Target master (relative).
        to: usize,
        /// Slots moved (at most the range).
        count: u16,
    },
    /// The `k`-th member leaves the cluster (`CLUSTER FORGET`); a master's
    /// slots and replicas move to another master first. Its process keeps
    /// running.
    Remove(usize),
    /// A new node joins: a replica of the `k`-th master, or an empty master.
    Add {
        /// Master to replicate (relative), or none.
        replica_of: Option<usize>,
    },
    /// The whole cluster's mode from now on.
    Mode(Mode),
    /// This many pokes, a few ms apart.
    Pokes(u8),
    /// Everything healthy: every member up, mode normal.
    Heal,
}

/// A whole scenario.
#[derive(Debug, Clone)]
pub struct ClusterScenario {
    /// The config under test.
    pub config: ClusterSupervisorConfig,
    /// Seed of the supervisor's jitter.
    pub seed: u64,
    /// Masters at the start (the slots split evenly among them).
    pub masters: usize,
    /// Replicas at the start (assigned round-robin to the masters).
    pub replicas: usize,
    /// The timeline: `(at ms, op)`, sorted by time.
    pub ops: Vec<(u64, Op)>,
    /// Round-trip time of a connect or a topology read (ms).
    pub rtt_ms: u64,
    /// A probe's state changes lag its node's by up to this (ms, at least 1).
    pub probe_lag_ms: u64,
    /// A down node's probe retries every this much (ms, at least 1).
    pub probe_retry_ms: u64,
    /// Whether late reports of stopped probes reach the supervisor.
    pub stale_reports: bool,
    /// Extra time to run once healed (ms).
    pub tail_ms: u64,
}

impl ClusterScenario {
    /// A scripted scenario: 3 masters, 3 replicas, rtt 1 ms, probes lag 5 ms.
    pub fn scripted(config: ClusterSupervisorConfig, ops: &[(u64, Op)]) -> Self {
        ClusterScenario {
            config,
            seed: 1,
            masters: 3,
            replicas: 3,
            ops: ops.to_vec(),
            rtt_ms: 1,
            probe_lag_ms: 5,
            probe_retry_ms: 200,
            stale_reports: true,
            tail_ms: 0,
        }
    }

    /// A random scenario from `seed`: a random config and a timeline of up
    /// to a dozen changes over a few seconds.
    pub fn random(seed: u64) -> Self {
        let mut r = SplitMix64::new(seed);
        let mut pick = |lo: u64, hi: u64| r.range_inclusive(lo, hi);
        let ms = Duration::from_millis;
        let initial = ms(pick(1, 200));
        let max = initial + ms(pick(0, 1000));
        let jitter = match pick(0, 4) {
            0 => Jitter::None,
            1 => Jitter::Full,
            2 => Jitter::Equal,
            3 => Jitter::Decorrelated,
            _ => Jitter::Proportional { factor: 0.2 },
        };
        let strategy = match pick(0, 2) {
            0 => Strategy::Constant,
            1 => Strategy::Linear {
                step: ms(pick(1, 300)),
            },
            _ => Strategy::Exponential {
                multiplier: 1.0 + pick(0, 20) as f64 / 10.0,
            },
        };
        let mut backoff = BackoffPolicy::default()
            .strategy(strategy)
            .initial_delay(initial)
            .max_delay(max)
            .jitter(jitter);
        match pick(0, 19) {
            0 | 1 => {
                backoff = backoff.max_attempts(std::num::NonZeroU32::new(pick(1, 6) as u32));
            }
            2 => backoff = backoff.max_elapsed(Some(ms(pick(1, 5000)))),
            _ => {}
        }
        let refresh_interval = ms(pick(30, 1000));
        let config = ClusterSupervisorConfig::default()
            .backoff(backoff)
            .connect_timeout(ms(pick(10, 500)))
            .backoff_reset_after(ms(pick(0, 3000)))
            .refresh_interval(refresh_interval)
            .refresh_timeout(ms(pick(10, 500)))
            .poke_settle(ms(pick(0, 50)).min(refresh_interval))
            .lost_after(pick(1, 3) as u32);
        let masters = pick(1, 4) as usize;
        let replicas = pick(0, 4) as usize;
        let count = pick(0, 12);
        let mut ops: Vec<(u64, Op)> = (0..count)
            .map(|_| {
                let at = pick(0, 5000);
                let k = pick(0, 11) as usize;
                let op = match pick(0, 15) {
                    0..=2 => Op::NodeDown(k),
                    3..=5 => Op::NodeUp(k),
                    6 | 7 => Op::Failover(k),
                    8 => Op::Reshard {
                        from: k,
                        to: pick(0, 11) as usize,
                        count: pick(1, 6000) as u16,
                    },
                    9 => Op::Remove(k),
                    10 => Op::Add {
                        replica_of: (pick(0, 3) > 0).then_some(k),
                    },
                    11 => Op::Mode(Mode::Down),
                    12 => Op::Mode(Mode::Hang),
                    13 => Op::Mode(Mode::Normal),
                    _ => Op::Pokes(pick(1, 5) as u8),
                };
                (at, op)
            })
            .collect();
        ops.sort_by_key(|&(at, _)| at);
        let rtt_ms = if pick(0, 9) == 0 {
            pick(0, 700)
        } else {
            pick(0, 5)
        };
        let probe_lag_ms = pick(1, 200);
        ClusterScenario {
            config,
            seed: pick(0, u64::MAX),
            masters,
            replicas,
            ops,
            rtt_ms,
            probe_lag_ms,
            probe_retry_ms: pick(50, 1000),
            stale_reports: pick(0, 1) == 0,
            tail_ms: 0,
        }
    }

    fn timeline_end(&self) -> u64 {
        self.ops.last().map_or(0, |&(at, _)| at)
    }

    /// Time for the supervisor to certainly be Ready once healed: a hung
    /// attempt or read times out, the cluster may then be declared lost, the
    /// longest backoff delay, a connect and a read, a refresh interval, and
    /// the probes' lag (Connecting, then Ready).
    pub fn recovery_bound(&self) -> u64 {
        let ms = |d: Duration| d.as_millis() as u64;
        let c = &self.config;
        ms(c.connect_timeout)
            + ms(c.refresh_timeout)
            + ms(c.backoff.max_delay)
            + ms(c.connect_timeout)
            + ms(c.refresh_interval)
            + 4 * self.rtt_ms
            + 4 * self.probe_lag_ms
            + 10
    }

    /// Whether the backoff policy can ever give up.
    pub fn may_give_up(&self) -> bool {
        self.config.backoff.max_attempts.is_some() || self.config.backoff.max_elapsed.is_some()
    }

    /// Whether a healed cluster can be seen Ready at all (a round trip
    /// slower than the timeouts never is).
    pub fn healthy_network(&self) -> bool {
        let ms = |d: Duration| d.as_millis() as u64;
        self.rtt_ms < ms(self.config.connect_timeout)
            && self.rtt_ms < ms(self.config.refresh_timeout)
    }
}

/// One node of the scripted cluster.
#[derive(Debug, Clone)]
struct SimNode {
    /// Its process runs and answers.
    up: bool,
    /// It is part of the cluster (not forgotten).
    member: bool,
    /// It is a master (possibly with no slots).
    master: bool,
    /// The master it replicates.
    replica_of: Option<usize>,
}

/// The scripted cluster.
#[derive(Debug, Clone)]
struct Model {
    nodes: Vec<SimNode>,
    /// `(start, end, master)`, disjoint, covering every slot.
    ranges: Vec<(u16, u16, usize)>,
    mode: Mode,
}

impl Model {
    fn new(masters: usize, replicas: usize) -> Model {
        let masters = masters.max(1);
        let mut nodes = Vec::new();
        for _ in 0..masters {
            nodes.push(SimNode {
                up: true,
                member: true,
                master: true,
                replica_of: None,
            });
        }
        for i in 0..replicas.min(MAX_NODES - masters) {
            nodes.push(SimNode {
                up: true,
                member: true,
                master: false,
                replica_of: Some(i % masters),
            });
        }
        let per = SLOTS as usize / masters;
        let ranges = (0..masters)
            .map(|m| {
                let start = m * per;
                let end = if m + 1 == masters {
                    SLOTS as usize - 1
                } else {
                    start + per - 1
                };
                (start as u16, end as u16, m)
            })
            .collect();
        Model {
            nodes,
            ranges,
            mode: Mode::Normal,
        }
    }

    fn members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].member)
            .collect()
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].member && self.nodes[i].master)
            .collect()
    }

    fn answers(&self, i: usize) -> bool {
        self.mode == Mode::Normal && self.nodes[i].up
    }

    fn any_member_answers(&self) -> bool {
        (0..self.nodes.len()).any(|i| self.nodes[i].member && self.answers(i))
    }

    fn move_master(&mut self, from: usize, to: usize) {
        for r in &mut self.ranges {
            if r.2 == from {
                r.2 = to;
            }
        }
        for n in &mut self.nodes {
            if n.replica_of == Some(from) {
                n.replica_of = Some(to);
            }
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::NodeDown(k) => {
                let members = self.members();
                let i = members[k % members.len()];
                self.nodes[i].up = false;
            }
            Op::NodeUp(k) => {
                let down: Vec<usize> = self
                    .members()
                    .into_iter()
                    .filter(|&i| !self.nodes[i].up)
                    .collect();
                if !down.is_empty() {
                    let i = down[k % down.len()];
                    self.nodes[i].up = true;
                }
            }
            Op::Failover(k) => {
                let masters = self.masters();
                let m = masters[k % masters.len()];
                let replicas: Vec<usize> = self
                    .members()
                    .into_iter()
                    .filter(|&i| self.nodes[i].replica_of == Some(m))
                    .collect();
                let Some(&r) = replicas
                    .iter()
                    .find(|&&i| self.nodes[i].up)
                    .or(replicas.first())
                else {
                    return;
                };
                self.nodes[r].replica_of = None;
                self.move_master(m, r);
                self.nodes[r].master = true;
                self.nodes[m].master = false;
                self.nodes[m].replica_of = Some(r);
            }
            Op::Reshard { from, to, count } => {
                let masters = self.masters();
                let (f, t) = (masters[from % masters.len()], masters[to % masters.len()]);
                if f == t {
                    return;
                }
                let Some(pos) = self.ranges.iter().position(|r| r.2 == f) else {
                    return;
                };
                let (s, e, _) = self.ranges[pos];
                let len = u32::from(e - s) + 1;
                let n = u32::from(count.max(1)).min(len);
                if n == len {
                    self.ranges[pos].2 = t;
                } else {
                    let split = s + (n as u16);
                    self.ranges[pos] = (s, split - 1, t);
                    self.ranges.insert(pos + 1, (split, e, f));
                }
            }
            Op::Remove(k) => {
                let members = self.members();
                if members.len() <= 1 {
                    return;
                }
                let i = members[k % members.len()];
                if self.nodes[i].master {
                    let Some(&heir) = self.masters().iter().find(|&&m| m != i) else {
                        return;
                    };
                    self.move_master(i, heir);
                    self.nodes[i].master = false;
                }
                self.nodes[i].member = false;
                self.nodes[i].replica_of = None;
                // Replicas of a forgotten replica: none (replicas replicate masters).
            }
            Op::Add { replica_of } => {
                if self.nodes.len() >= MAX_NODES {
                    return;
                }
                let masters = self.masters();
                let node = match replica_of {
                    Some(k) => SimNode {
                        up: true,
                        member: true,
                        master: false,
                        replica_of: Some(masters[k % masters.len()]),
                    },
                    None => SimNode {
                        up: true,
                        member: true,
                        master: true,
                        replica_of: None,
                    },
                };
                self.nodes.push(node);
            }
            Op::Mode(mode) => self.mode = mode,
            Op::Pokes(_) => {}
            Op::Heal => {
                self.mode = Mode::Normal;
                for n in &mut self.nodes {
                    if n.member {
                        n.up = true;
                    }
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SimEvent {
    /// A connect attempt resolves (the cluster's mode then decides how).
    ConnectResolves { attempt: u32, token: u64 },
    /// A topology read is answered (or not) by the cluster.
    TopologyAnswer { id: u64, conn: u64 },
    /// A probe looks at its node and moves one step.
    ProbeTick { node: usize, tick: u64 },
    /// A stopped probe's last report arrives late.
    StaleReport { node: usize },
    /// A poke from a command that met a redirection.
    Poke,
    /// The timeline's op at this index.
    Op(usize),
}

/// Everything observed during a run, for assertions beyond the invariants.
#[derive(Debug, Default, Clone)]
pub struct ClusterTrace {
    /// Every event, with its time (ms).
    pub events: Vec<(u64, Event)>,
    /// Every action, with its time (ms).
    pub actions: Vec<(u64, Action)>,
    /// Inputs fed.
    pub inputs: u64,
}

impl ClusterTrace {
    /// Every reconnect delay scheduled, in ms, in order.
    pub fn reconnect_delays_ms(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::ReconnectScheduled { delay, .. } => Some(delay.as_millis() as u64),
                _ => None,
            })
            .collect()
    }

    /// How many times the cluster became Ready.
    pub fn readies(&self) -> usize {
        self.transitions_to(State::Ready).len()
    }

    /// When the rolled-up state became `to`.
    pub fn transitions_to(&self, to: State) -> Vec<u64> {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::StateChanged { to: t, .. } if *t == to))
            .map(|(at, _)| *at)
            .collect()
    }

    /// Times of the actions naming `node`.
    pub fn actions_naming(&self, node: &str) -> Vec<(u64, Action)> {
        self.actions
            .iter()
            .filter(|(_, a)| match a {
                Action::StartProbe { node: n } | Action::StopProbe { node: n } => n == node,
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Times at which the cluster was declared lost.
    pub fn losses(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter(|(_, e)| matches!(e, Event::ClusterLost { .. }))
            .map(|(at, _)| *at)
            .collect()
    }
}

/// A broken promise, with enough context to replay it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// Virtual time (ms).
    pub at: u64,
    /// What went wrong.
    pub what: String,
}

/// The harness's record of one probe (what it reported).
#[derive(Debug, Clone, Copy)]
struct ProbeRec {
    state: State,
    /// Failed since it was last Ready.
    failed: bool,
    /// Only the latest scheduled tick acts.
    tick: u64,
}

/// Output counts of one drain that are not about nodes; this many at most.
const MAX_PLAIN_OUTPUTS: usize = 12;

struct Harness<'a> {
    sc: &'a ClusterScenario,
    sup: ClusterSupervisor,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64, SimEvent)>>,
    order: u64,
    rng: SplitMix64,
    model: Model,
    names: Vec<String>,
    // The cluster connection, as the driver sees it.
    started: bool,
    /// `(attempt, token, started at)` of the attempt in flight.
    attempt: Option<(u32, u64, u64)>,
    next_token: u64,
    /// Generation of the live connection.
    conn: Option<u64>,
    next_conn: u64,
    last_attempt: u32,
    earliest_attempt: u64,
    connected_since: u64,
    last_ok: u64,
    // Topology reads.
    /// `(id, deadline)` of the read in flight.
    outstanding: Option<(u64, u64)>,
    last_id: u64,
    refresh_due: u64,
    poked: bool,
    failures: u32,
    /// The last topology the supervisor accepted.
    topo_slots: Vec<(u16, u16, usize)>,
    /// Its nodes (listed nodes and masters), sorted.
    topo_nodes: Vec<usize>,
    /// Slots each node serves in it.
    topo_slots_of: [u32; MAX_NODES],
    /// Start/StopProbe are expected in this drain (an accepted topology).
    topology_drain: bool,
    probes: Vec<Option<ProbeRec>>,
    next_tick: u64,
    // The backoff, replayed.
    backoff: Backoff,
    outage_start: u64,
    // What the events said.
    state: State,
    ending: bool,
    gave_up: bool,
    expect_lost: bool,
    trace: ClusterTrace,
}

/// Runs a scenario to the end and checks every invariant on every step.
pub fn run(sc: &ClusterScenario) -> Result<ClusterTrace, Violation> {
    let model = Model::new(sc.masters, sc.replicas);
    let mut h = Harness {
        sc,
        sup: ClusterSupervisor::new(sc.config.clone(), sc.seed),
        now: 0,
        queue: BinaryHeap::new(),
        order: 0,
        rng: SplitMix64::new(sc.seed ^ 0x5EED),
        model,
        names: (0..MAX_NODES).map(name).collect(),
        started: false,
        attempt: None,
        next_token: 1,
        conn: None,
        next_conn: 1,
        last_attempt: 0,
        earliest_attempt: 0,
        connected_since: 0,
        last_ok: 0,
        outstanding: None,
        last_id: 0,
        refresh_due: u64::MAX,
        poked: false,
        failures: 0,
        topo_slots: Vec::new(),
        topo_nodes: Vec::new(),
        topo_slots_of: [0; MAX_NODES],
        topology_drain: false,
        probes: vec![None; MAX_NODES],
        next_tick: 1,
        backoff: Backoff::new(sc.config.backoff.clone(), sc.seed),
        outage_start: 0,
        state: State::Idle,
        ending: false,
        gave_up: false,
        expect_lost: false,
        trace: ClusterTrace::default(),
    };
    for (i, &(at, _)) in sc.ops.iter().enumerate() {
        h.schedule(at, SimEvent::Op(i));
    }
    let healed_at = sc.timeline_end() + 1;
    h.schedule(healed_at, SimEvent::Op(usize::MAX));
    let end = healed_at + sc.recovery_bound() + sc.tail_ms;
    h.started = true;
    h.input(Input::Start)?;
    h.run_until(end)?;
    if !h.gave_up && sc.healthy_network() && h.sup.state() != State::Ready {
        return Err(h.violation(format!(
            "healed for {} ms but the cluster is {:?} ({:?})",
            end - healed_at,
            h.sup.state(),
            h.sup.health()
        )));
    }
    h.ending = true;
    h.input(Input::Shutdown)?;
    if h.sup.state() != State::Shutdown {
        return Err(h.violation("shutdown did not reach Shutdown".into()));
    }
    if h.conn.is_some() || h.attempt.is_some() {
        return Err(h.violation("shutdown left the connection or an attempt open".into()));
    }
    if h.probes.iter().any(Option::is_some) {
        return Err(h.violation("shutdown left probes running".into()));
    }
    // Nothing, ever after.
    h.input(Input::Poke)?;
    h.now += 1_000_000;
    h.drain()?;
    Ok(h.trace)
}

impl Harness<'_> {
    fn violation(&self, what: String) -> Violation {
        Violation { at: self.now, what }
    }

    fn schedule(&mut self, at: u64, ev: SimEvent) {
        self.order += 1;
        self.queue.push(Reverse((at, self.order, ev)));
    }

    fn ts(&self) -> Timestamp {
        Timestamp::from_millis(self.now)
    }

    fn ms(d: Duration) -> u64 {
        relink_core::time::ceil_millis(d)
    }

    fn input(&mut self, input: Input<'_>) -> Result<(), Violation> {
        self.trace.inputs += 1;
        let now = self.ts();
        self.sup.handle_input(now, input);
        self.drain()
    }

    fn drain(&mut self) -> Result<(), Violation> {
        let (mut plain, mut node_outputs) = (0usize, 0usize);
        let node_bound = 4 * MAX_NODES;
        for _ in 0..(MAX_PLAIN_OUTPUTS + node_bound + 1) {
            let out = self.sup.poll_output(self.ts());
            if self.state == State::Shutdown && out != Output::Idle {
                return Err(self.violation(format!("{out:?} after Shutdown")));
            }
            match out {
                Output::Timeout(t) => {
                    if t.as_millis() <= self.now {
                        return Err(self.violation(format!("deadline {t} is not in the future")));
                    }
                    if Some(t) != self.sup.next_deadline() {
                        return Err(self.violation("Timeout is not next_deadline()".into()));
                    }
                    self.topology_drain = false;
                    return self.check();
                }
                Output::Idle => {
                    if !matches!(self.state, State::Idle | State::Shutdown) {
                        return Err(
                            self.violation(format!("Idle output in state {:?}", self.state))
                        );
                    }
                    self.topology_drain = false;
                    return self.check();
                }
                Output::Action(a) => {
                    match a {
                        Action::StartProbe { .. } | Action::StopProbe { .. } => node_outputs += 1,
                        _ => plain += 1,
                    }
                    self.trace.actions.push((self.now, a.clone()));
                    self.act(a)?;
                }
                Output::Event(e) => {
                    match e {
                        Event::NodeAdded { .. } | Event::NodeRemoved { .. } => node_outputs += 1,
                        _ => plain += 1,
                    }
                    self.trace.events.push((self.now, e.clone()));
                    self.observe(e)?;
                }
                other => return Err(self.violation(format!("unknown output {other:?}"))),
            }
            if plain > MAX_PLAIN_OUTPUTS || node_outputs > node_bound {
                return Err(self.violation(format!(
                    "one input made {plain} outputs plus {node_outputs} about nodes"
                )));
            }
        }
        Err(self.violation("the drain did not end".into()))
    }

    fn act(&mut self, a: Action) -> Result<(), Violation> {
        match a {
            Action::Connect { attempt } => {
                if self.ending {
                    return Err(self.violation("Connect while shutting down".into()));
                }
                if self.attempt.is_some() || self.conn.is_some() {
                    return Err(self.violation("Connect while connected or connecting".into()));
                }
                if self.now < self.earliest_attempt {
                    return Err(self.violation(format!(
                        "attempt before its backoff delay ended at {}",
                        self.earliest_attempt
                    )));
                }
                if attempt != self.last_attempt + 1 {
                    return Err(self.violation(format!(
                        "attempt {attempt} after attempt {}",
                        self.last_attempt
                    )));
                }
                self.last_attempt = attempt;
                let token = self.next_token;
                self.next_token += 1;
                self.attempt = Some((attempt, token, self.now));
                self.schedule(
                    self.now + self.sc.rtt_ms,
                    SimEvent::ConnectResolves { attempt, token },
                );
            }
            Action::RefreshTopology { id } => {
                let Some(conn) = self.conn else {
                    return Err(self.violation("RefreshTopology without a connection".into()));
                };
                if self.outstanding.is_some() {
                    return Err(self.violation("two topology reads at once".into()));
                }
                if self.now < self.refresh_due {
                    return Err(self.violation(format!(
                        "topology read before it was due at {}",
                        self.refresh_due
                    )));
                }
                if id <= self.last_id {
                    return Err(self.violation(format!("read id {id} reused")));
                }
                self.last_id = id;
                let deadline = self.now + Self::ms(self.sc.config.refresh_timeout);
                self.outstanding = Some((id, deadline));
                self.schedule(
                    self.now + self.sc.rtt_ms,
                    SimEvent::TopologyAnswer { id, conn },
                );
            }
            Action::StartProbe { node } => {
                let Some(i) = index_of(&node) else {
                    return Err(self.violation(format!("StartProbe of unknown node {node}")));
                };
                if !self.topology_drain {
                    return Err(self.violation(format!("StartProbe {node} without a new topology")));
                }
                if self.probes[i].is_some() {
                    return Err(self.violation(format!("StartProbe {node}: already probed")));
                }
                if self.topo_nodes.binary_search(&i).is_err() {
                    return Err(self.violation(format!("StartProbe {node}: not in the topology")));
                }
                let tick = self.next_tick;
                self.next_tick += 1;
                self.probes[i] = Some(ProbeRec {
                    state: State::Idle,
                    failed: false,
                    tick,
                });
                let lag = self.rng.range_inclusive(0, self.sc.probe_lag_ms);
                self.schedule(self.now + lag, SimEvent::ProbeTick { node: i, tick });
            }
            Action::StopProbe { node } => {
                let Some(i) = index_of(&node) else {
                    return Err(self.violation(format!("StopProbe of unknown node {node}")));
                };
                if self.probes[i].is_none() {
                    return Err(self.violation(format!("StopProbe {node}: not probed")));
                }
                let left = self.topology_drain && self.topo_nodes.binary_search(&i).is_err();
                if !left && !self.ending {
                    return Err(self.violation(format!("StopProbe {node}: still in the topology")));
                }
                self.probes[i] = None;
                if self.sc.stale_reports && self.rng.range_inclusive(0, 2) == 0 {
                    let lag = self.rng.range_inclusive(0, self.sc.probe_lag_ms);
                    self.schedule(self.now + lag, SimEvent::StaleReport { node: i });
                }
            }
            Action::Disconnect => {
                if let Some((_, _, started)) = self.attempt {
                    let deadline = started + Self::ms(self.sc.config.connect_timeout);
                    if !self.ending && self.now < deadline {
                        return Err(self.violation(format!(
                            "attempt abandoned before its timeout at {deadline}"
                        )));
                    }
                }
                if self.conn.is_some() && !self.ending {
                    // The cluster is lost: was it?
                    if self.state == State::Ready {
                        return Err(self.violation("lost while Ready".into()));
                    }
                    if self.failures < self.sc.config.lost_after {
                        return Err(self.violation(format!(
                            "lost after {} failed reads (lost_after {})",
                            self.failures, self.sc.config.lost_after
                        )));
                    }
                    if let Some(i) = self.up_probe() {
                        return Err(self.violation(format!("lost while {} is not down", name(i))));
                    }
                    self.expect_lost = true;
                }
                self.attempt = None;
                self.conn = None;
                self.outstanding = None;
                self.poked = false;
            }
            other => return Err(self.violation(format!("unknown action {other:?}"))),
        }
        Ok(())
    }

    fn observe(&mut self, e: Event) -> Result<(), Violation> {
        match e {
            Event::StateChanged { from, to } => {
                if from != self.state || from == to {
                    return Err(self.violation(format!(
                        "StateChanged {from:?} -> {to:?} while in {:?}",
                        self.state
                    )));
                }
                if to == State::Shutdown {
                    if !self.ending {
                        return Err(self.violation("Shutdown unasked".into()));
                    }
                    self.topo_slots.clear();
                    self.topo_nodes.clear();
                    self.topo_slots_of = [0; MAX_NODES];
                }
                self.state = to;
            }
            Event::Connected { attempts } => {
                if attempts != self.last_attempt || self.conn.is_none() {
                    return Err(self.violation(format!("Connected after {attempts} attempts")));
                }
            }
            Event::ConnectFailed { kind, .. } => {
                if kind == FailureKind::Timeout && self.attempt.is_some() {
                    return Err(self.violation("a timed-out attempt was not abandoned".into()));
                }
            }
            Event::ReconnectScheduled { attempt, delay } => {
                let elapsed = Duration::from_millis(self.now - self.outage_start);
                let expected = self.backoff.next_delay(elapsed);
                if expected != Some(delay) {
                    return Err(self.violation(format!(
                        "delay {delay:?}, the backoff policy says {expected:?}"
                    )));
                }
                if attempt != self.last_attempt + 1 {
                    return Err(self.violation(format!("attempt {attempt} scheduled")));
                }
                self.earliest_attempt = self.now + delay.as_millis() as u64;
            }
            Event::GaveUp { attempts, elapsed } => {
                let expected = self.backoff.next_delay(elapsed);
                if expected.is_some() || !self.sc.may_give_up() {
                    return Err(self.violation(format!(
                        "gave up after {attempts} attempts, {elapsed:?}; the policy says {expected:?}"
                    )));
                }
                if elapsed != Duration::from_millis(self.now - self.outage_start) {
                    return Err(self.violation("GaveUp with the wrong elapsed time".into()));
                }
                self.ending = true;
                self.gave_up = true;
            }
            Event::ClusterLost { failures, .. } => {
                if !self.expect_lost {
                    return Err(self.violation("ClusterLost without a Disconnect".into()));
                }
                if failures != self.failures {
                    return Err(self.violation(format!(
                        "ClusterLost after {failures} failures; counted {}",
                        self.failures
                    )));
                }
                self.expect_lost = false;
                let stable = self.last_ok.saturating_sub(self.connected_since);
                if stable >= Self::ms(self.sc.config.backoff_reset_after) {
                    self.backoff.reset();
                }
                self.outage_start = self.now;
                self.last_attempt = 0;
                self.failures = 0;
            }
            Event::TopologyFailed { kind, failures } => {
                if kind == FailureKind::Timeout {
                    let Some((_, deadline)) = self.outstanding else {
                        return Err(self.violation("read timed out with none in flight".into()));
                    };
                    if self.now < deadline {
                        return Err(self.violation("read timed out early".into()));
                    }
                    self.read_done(false);
                }
                if failures != self.failures {
                    return Err(self.violation(format!(
                        "{failures} failed reads in a row; counted {}",
                        self.failures
                    )));
                }
            }
            Event::NodeAdded { .. } | Event::NodeRemoved { .. } | Event::TopologyChanged { .. } => {
            }
            other => return Err(self.violation(format!("unknown event {other:?}"))),
        }
        Ok(())
    }

    /// A read ended (answered, failed or timed out): when the next is due.
    fn read_done(&mut self, ok: bool) {
        self.outstanding = None;
        let wait = if self.poked {
            self.sc.config.poke_settle
        } else {
            self.sc.config.refresh_interval
        };
        self.poked = false;
        self.refresh_due = self.now + Self::ms(wait);
        if ok {
            self.failures = 0;
            self.last_ok = self.now;
        } else {
            self.failures += 1;
        }
    }

    /// A probed node that is not down, if any.
    fn up_probe(&self) -> Option<usize> {
        (0..MAX_NODES).find(|&i| self.probes[i].is_some_and(|p| !p.failed))
    }

    fn slots_ready(&self) -> u32 {
        self.topo_slots
            .iter()
            .filter(|&&(_, _, m)| self.probes[m].is_some_and(|p| p.state == State::Ready))
            .map(|&(s, e, _)| u32::from(e - s) + 1)
            .sum()
    }

    fn expected_state(&self) -> State {
        if self.ending {
            State::Shutdown
        } else if !self.started {
            State::Idle
        } else if self.attempt.is_some() {
            State::Connecting
        } else if self.conn.is_none() {
            State::TransientFailure
        } else if self.slots_ready() == SLOTS {
            State::Ready
        } else if self
            .probes
            .iter()
            .flatten()
            .all(|p| p.state != State::Ready && !p.failed)
        {
            State::Connecting
        } else {
            State::TransientFailure
        }
    }

    /// The invariants that hold whenever the supervisor is drained.
    fn check(&self) -> Result<(), Violation> {
        let state = self.sup.state();
        if state != self.state {
            return Err(self.violation(format!(
                "state() is {state:?}, the events say {:?}",
                self.state
            )));
        }
        let expected = self.expected_state();
        if state != expected {
            return Err(self.violation(format!(
                "rolled-up state {state:?}, expected {expected:?} (slots ready {} of {SLOTS})",
                self.slots_ready()
            )));
        }
        if state != State::Shutdown && self.sup.slots_ready() != self.slots_ready() {
            return Err(self.violation(format!(
                "slots_ready {} but {} are served by Ready masters",
                self.sup.slots_ready(),
                self.slots_ready()
            )));
        }
        // The supervisor's nodes are exactly the probed ones, as reported.
        let mut listed = 0;
        for (node, health) in self.sup.nodes() {
            listed += 1;
            let Some((i, p)) = index_of(node).and_then(|i| Some((i, self.probes[i]?))) else {
                return Err(self.violation(format!("{node} listed but not probed")));
            };
            if health.state != p.state || health.down != p.failed {
                return Err(self.violation(format!("{node} is {health:?}, its probe said {p:?}")));
            }
            let slots = self.topo_slots_of[i];
            if health.slots != slots || health.master != (slots > 0) {
                return Err(
                    self.violation(format!("{node} is {health:?}; it serves {slots} slots"))
                );
            }
        }
        let probed = self.probes.iter().flatten().count();
        if listed != probed {
            return Err(self.violation(format!("{listed} nodes listed, {probed} probed")));
        }
        // Timers the supervisor must not have missed.
        if let Some((_, _, started)) = self.attempt {
            if self.now >= started + Self::ms(self.sc.config.connect_timeout) {
                return Err(self.violation("the connect timeout was missed".into()));
            }
        }
        if self.conn.is_some() {
            match self.outstanding {
                Some((_, deadline)) if self.now >= deadline => {
                    return Err(self.violation("the read timeout was missed".into()));
                }
                None if self.now >= self.refresh_due => {
                    return Err(self.violation(format!(
                        "the topology read due at {} did not happen",
                        self.refresh_due
                    )));
                }
                _ => {}
            }
        }
        if self.started
            && !self.ending
            && self.conn.is_none()
            && self.attempt.is_none()
            && self.now >= self.earliest_attempt
        {
            return Err(self.violation(format!(
                "the attempt due at {} did not happen",
                self.earliest_attempt
            )));
        }
        if self.expect_lost {
            return Err(self.violation("a Disconnect without ClusterLost".into()));
        }
        if self.conn.is_some()
            && self.state != State::Ready
            && self.failures >= self.sc.config.lost_after
            && self.up_probe().is_none()
        {
            return Err(self.violation(format!(
                "every node down and {} failed reads, but the cluster is not lost",
                self.failures
            )));
        }
        Ok(())
    }

    fn run_until(&mut self, end: u64) -> Result<(), Violation> {
        // Bounded: every iteration advances time or consumes a queued event.
        for _ in 0..2_000_000 {
            let deadline = self.sup.next_deadline().map_or(u64::MAX, |t| t.as_millis());
            let next_event = self.queue.peek().map_or(u64::MAX, |Reverse((t, _, _))| *t);
            let next = deadline.min(next_event);
            if next > end {
                self.now = end;
                return self.check();
            }
            self.now = self.now.max(next);
            if next_event <= deadline {
                if let Some(Reverse((_, _, ev))) = self.queue.pop() {
                    self.deliver(ev)?;
                }
            } else {
                self.drain()?;
            }
        }
        Err(self.violation("the simulation did not finish in 2,000,000 steps".into()))
    }

    fn deliver(&mut self, ev: SimEvent) -> Result<(), Violation> {
        match ev {
            SimEvent::ConnectResolves { attempt, token } => {
                if self.attempt.map(|(a, t, _)| (a, t)) != Some((attempt, token)) {
                    return Ok(()); // abandoned: the driver dropped it
                }
                match self.model.mode {
                    Mode::Hang => Ok(()), // the connect timeout must catch it
                    _ if self.model.any_member_answers() => {
                        self.attempt = None;
                        self.conn = Some(self.next_conn);
                        self.next_conn += 1;
                        self.connected_since = self.now;
                        self.last_ok = self.now;
                        self.failures = 0;
                        self.refresh_due = self.now;
                        self.poked = false;
                        self.input(Input::Connected { attempt })
                    }
                    _ => {
                        self.attempt = None;
                        self.input(Input::ConnectFailed {
                            attempt,
                            kind: FailureKind::Io,
                        })
                    }
                }
            }
            SimEvent::TopologyAnswer { id, conn } => {
                if self.model.mode == Mode::Hang {
                    return Ok(()); // the read timeout must catch it
                }
                let accepted =
                    self.conn == Some(conn) && self.outstanding.is_some_and(|(o, _)| o == id);
                if !self.model.any_member_answers() {
                    if accepted {
                        self.read_done(false);
                    }
                    return self.input(Input::TopologyFailed {
                        id,
                        kind: FailureKind::Io,
                    });
                }
                let slots: Vec<SlotRange> = self
                    .model
                    .ranges
                    .iter()
                    .map(|&(s, e, m)| SlotRange::new(s, e, self.names[m].clone()))
                    .collect();
                let mut nodes: Vec<String> = self
                    .model
                    .members()
                    .into_iter()
                    .map(|i| self.names[i].clone())
                    .collect();
                if id % 3 == 0 {
                    nodes.reverse(); // any order will do
                }
                if accepted {
                    self.read_done(true);
                    self.topo_slots.clone_from(&self.model.ranges);
                    self.topo_nodes = self.model.members();
                    self.topo_slots_of = [0; MAX_NODES];
                    for &(s, e, m) in &self.topo_slots {
                        self.topo_slots_of[m] += u32::from(e - s) + 1;
                    }
                    self.topology_drain = true;
                }
                self.input(Input::Topology { id, slots, nodes })?;
                if accepted {
                    // After an accepted topology, exactly its nodes are probed.
                    for i in 0..MAX_NODES {
                        let listed = self.topo_nodes.binary_search(&i).is_ok();
                        if listed != self.probes[i].is_some() {
                            return Err(self.violation(format!(
                                "{} is {} the topology but {} probed",
                                name(i),
                                if listed { "in" } else { "not in" },
                                if listed { "not" } else { "still" }
                            )));
                        }
                    }
                }
                Ok(())
            }
            SimEvent::ProbeTick { node, tick } => {
                let Some(mut p) = self.probes[node].filter(|p| p.tick == tick) else {
                    return Ok(());
                };
                let answers = self.model.answers(node);
                let (to, next) = match (answers, p.state) {
                    (true, State::Ready) => return Ok(()),
                    (true, State::Connecting) => (State::Ready, None),
                    (true, _) => (State::Connecting, Some(self.sc.probe_lag_ms)),
                    (false, State::Idle) | (false, State::TransientFailure) => {
                        (State::Connecting, Some(self.sc.probe_lag_ms))
                    }
                    (false, _) => (State::TransientFailure, Some(self.sc.probe_retry_ms)),
                };
                p.state = to;
                match to {
                    State::Ready => p.failed = false,
                    State::TransientFailure => p.failed = true,
                    _ => {}
                }
                if let Some(gap) = next {
                    p.tick = self.next_tick;
                    self.next_tick += 1;
                    let lag = self.rng.range_inclusive(1, gap.max(1));
                    self.schedule(self.now + lag, SimEvent::ProbeTick { node, tick: p.tick });
                }
                self.probes[node] = Some(p);
                let name = self.names[node].clone();
                self.input(Input::NodeState {
                    node: &name,
                    state: to,
                })
            }
            SimEvent::StaleReport { node } => {
                if self.probes[node].is_some() {
                    return Ok(()); // probed again: not stale any more
                }
                let name = self.names[node].clone();
                self.input(Input::NodeState {
                    node: &name,
                    state: State::TransientFailure,
                })
            }
            SimEvent::Poke => {
                if self.conn.is_some() {
                    if self.outstanding.is_some() {
                        self.poked = true;
                    } else {
                        let soon = self.now + Self::ms(self.sc.config.poke_settle);
                        self.refresh_due = self.refresh_due.min(soon);
                    }
                }
                self.input(Input::Poke)
            }
            SimEvent::Op(i) => {
                let op = self.sc.ops.get(i).map_or(Op::Heal, |&(_, op)| op);
                if let Op::Pokes(n) = op {
                    for _ in 0..n {
                        let gap = self.rng.range_inclusive(0, 10);
                        self.schedule(self.now + gap, SimEvent::Poke);
                    }
                    return Ok(());
                }
                self.model.apply(op);
                // Every probe looks at its node again, after its lag.
                for node in 0..MAX_NODES {
                    if let Some(p) = self.probes[node].as_mut() {
                        p.tick = self.next_tick;
                        self.next_tick += 1;
                        let tick = p.tick;
                        let lag = self.rng.range_inclusive(0, self.sc.probe_lag_ms);
                        self.schedule(self.now + lag, SimEvent::ProbeTick { node, tick });
                    }
                }
                Ok(())
            }
        }
    }
}
