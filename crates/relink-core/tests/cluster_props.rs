//! Properties of `relink_core::cluster` under arbitrary input sequences and
//! arbitrary validated configs: no panic, the drain always ends, every
//! deadline lies in the future, state changes follow the allowed edges,
//! probes are started once and stopped only when probed, the node list is
//! exactly the probed nodes, Ready only with every slot served by a Ready
//! master, and nothing happens after shutdown.
//!
//! The driver here is adversarial: its clock jumps back and far ahead, it
//! reports results of attempts and reads that were abandoned or never made,
//! topologies with ranges out of bounds, overlapping or empty, and states of
//! nodes that were never probed.

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use relink_core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink_core::cluster::{
    Action, ClusterSupervisor, ClusterSupervisorConfig, Event, Input, Output, SlotRange, SLOTS,
};
use relink_core::failure::{BusyReason, FailureKind};
use relink_core::{State, Timestamp};

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// Node names the inputs draw from.
const POOL: usize = 8;

fn node(i: usize) -> String {
    format!("127.0.0.1:{}", 7000 + i)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn backoff_policy() -> impl proptest::strategy::Strategy<Value = BackoffPolicy> {
    let strategy = prop_oneof![
        Just(Strategy::Constant),
        (1..=2_000u64).prop_map(|s| Strategy::Linear { step: ms(s) }),
        (0..=3_000u32).prop_map(|k| Strategy::Exponential {
            multiplier: f64::from(1000 + k) / 1000.0
        }),
    ];
    let jitter = prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        (0..=1000u32).prop_map(|k| Jitter::Proportional {
            factor: f64::from(k) / 1000.0
        }),
    ];
    (
        strategy,
        jitter,
        1..=5_000u64,
        0..=60_000u64,
        proptest::option::weighted(0.3, 1..=10u32),
        proptest::option::weighted(0.2, 1..=120_000u64),
    )
        .prop_map(|(strategy, jitter, initial, extra, attempts, elapsed)| {
            BackoffPolicy::default()
                .strategy(strategy)
                .jitter(jitter)
                .initial_delay(ms(initial))
                .max_delay(ms(initial + extra))
                .max_attempts(attempts.and_then(NonZeroU32::new))
                .max_elapsed(elapsed.map(ms))
        })
}

fn positive_duration() -> impl proptest::strategy::Strategy<Value = Duration> {
    prop_oneof![
        4 => (1..=10_000u64).prop_map(ms),
        1 => (1_000..=5_000_000u64).prop_map(Duration::from_micros),
    ]
}

fn config() -> impl proptest::strategy::Strategy<Value = ClusterSupervisorConfig> {
    (
        backoff_policy(),
        positive_duration(),
        (0..=20_000u64).prop_map(ms),
        positive_duration(),
        positive_duration(),
        (0..=100u64).prop_map(ms),
        prop_oneof![4 => 1..=4u32, 1 => Just(u32::MAX)],
    )
        .prop_map(
            |(backoff, connect, reset, interval, timeout, settle, lost_after)| {
                ClusterSupervisorConfig::default()
                    .backoff(backoff)
                    .connect_timeout(connect)
                    .backoff_reset_after(reset)
                    .refresh_interval(interval)
                    .refresh_timeout(timeout)
                    .poke_settle(settle.min(interval))
                    .lost_after(lost_after)
            },
        )
        .prop_filter("validated configs only", |c| c.validate().is_ok())
}

fn failure_kind() -> impl proptest::strategy::Strategy<Value = FailureKind> {
    prop_oneof![
        Just(FailureKind::Io),
        Just(FailureKind::Closed),
        Just(FailureKind::Timeout),
        Just(FailureKind::Auth),
        Just(FailureKind::Protocol),
        Just(FailureKind::Command),
        Just(FailureKind::ServerBusy(BusyReason::Loading)),
        Just(FailureKind::ServerBusy(BusyReason::TryAgain)),
    ]
}

fn state() -> impl proptest::strategy::Strategy<Value = State> {
    prop_oneof![
        1 => Just(State::Idle),
        3 => Just(State::Connecting),
        4 => Just(State::Ready),
        3 => Just(State::TransientFailure),
        1 => Just(State::Shutdown),
    ]
}

/// Which attempt number (or read id) an input names.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Current,
    Older(u8),
    Any(u64),
}

fn pick() -> impl proptest::strategy::Strategy<Value = Pick> {
    prop_oneof![
        6 => Just(Pick::Current),
        2 => (1..=3u8).prop_map(Pick::Older),
        1 => any::<u64>().prop_map(Pick::Any),
    ]
}

impl Pick {
    fn resolve(self, current: u64) -> u64 {
        match self {
            Pick::Current => current,
            Pick::Older(n) => current.wrapping_sub(u64::from(n)),
            Pick::Any(x) => x,
        }
    }
}

/// A slot map: mostly a well-formed split of the slots among a few masters,
/// sometimes arbitrary ranges.
fn slot_map() -> impl proptest::strategy::Strategy<Value = Vec<(u16, u16, usize)>> {
    let well_formed = proptest::collection::vec(0..POOL, 1..=4).prop_map(|masters| {
        let per = SLOTS as usize / masters.len();
        masters
            .iter()
            .enumerate()
            .map(|(k, &m)| {
                let start = k * per;
                let end = if k + 1 == masters.len() {
                    SLOTS as usize - 1
                } else {
                    start + per - 1
                };
                (start as u16, end as u16, m)
            })
            .collect()
    });
    let arbitrary = proptest::collection::vec((any::<u16>(), any::<u16>(), 0..POOL), 0..6);
    prop_oneof![3 => well_formed, 1 => arbitrary]
}

#[derive(Debug, Clone)]
enum InputGen {
    Start,
    Connected(Pick),
    ConnectFailed(Pick, FailureKind),
    Topology(Pick, Vec<(u16, u16, usize)>, Vec<usize>),
    TopologyFailed(Pick, FailureKind),
    NodeState(usize, State),
    Poke,
    Shutdown,
}

fn input() -> impl proptest::strategy::Strategy<Value = InputGen> {
    prop_oneof![
        10 => Just(InputGen::Start),
        30 => pick().prop_map(InputGen::Connected),
        20 => (pick(), failure_kind()).prop_map(|(p, k)| InputGen::ConnectFailed(p, k)),
        30 => (pick(), slot_map(), proptest::collection::vec(0..POOL, 0..POOL))
            .prop_map(|(p, s, n)| InputGen::Topology(p, s, n)),
        20 => (pick(), failure_kind()).prop_map(|(p, k)| InputGen::TopologyFailed(p, k)),
        60 => (0..POOL + 1, state()).prop_map(|(n, s)| InputGen::NodeState(n, s)),
        15 => Just(InputGen::Poke),
        1 => Just(InputGen::Shutdown),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Clock {
    ToDeadline,
    Small(i64),
    Far(u64),
    FarBack(u64),
}

fn clock() -> impl proptest::strategy::Strategy<Value = Clock> {
    prop_oneof![
        6 => Just(Clock::ToDeadline),
        6 => (-2_000..=5_000i64).prop_map(Clock::Small),
        1 => (0..=3 * DAY_MS).prop_map(Clock::Far),
        1 => (0..=3 * DAY_MS).prop_map(Clock::FarBack),
    ]
}

fn steps() -> impl proptest::strategy::Strategy<Value = Vec<(Clock, Option<InputGen>)>> {
    proptest::collection::vec((clock(), proptest::option::weighted(0.8, input())), 0..120)
}

fn allowed(from: State, to: State) -> bool {
    use State::*;
    from != to
        && from != Shutdown
        && to != Idle
        && !(from == Idle && to != Connecting && to != Shutdown)
}

/// The driver's view, checked against every output.
struct Checker {
    sup: ClusterSupervisor,
    now: u64,
    deadline: Option<u64>,
    state: State,
    probed: BTreeSet<String>,
    last_attempt: u32,
    last_read: u64,
    /// A read is in flight (from RefreshTopology until its answer, a
    /// timeout event, or a Disconnect).
    reading: bool,
}

impl Checker {
    fn advance(&mut self, clock: Clock) {
        self.now = match clock {
            Clock::ToDeadline => self.deadline.unwrap_or(self.now),
            Clock::Small(d) => self.now.saturating_add_signed(d),
            Clock::Far(d) => self.now.saturating_add(d),
            Clock::FarBack(d) => self.now.saturating_sub(d),
        };
    }

    fn step(&mut self, clock: Clock, input: Option<InputGen>) -> Result<(), TestCaseError> {
        self.advance(clock);
        let now = Timestamp::from_millis(self.now);
        let Some(input) = input else {
            return self.drain(None);
        };
        let attempt = |p: Pick| p.resolve(u64::from(self.last_attempt)) as u32;
        let mut accepted_topology = None;
        match input {
            InputGen::Start => self.sup.handle_input(now, Input::Start),
            InputGen::Connected(p) => self.sup.handle_input(
                now,
                Input::Connected {
                    attempt: attempt(p),
                },
            ),
            InputGen::ConnectFailed(p, kind) => self.sup.handle_input(
                now,
                Input::ConnectFailed {
                    attempt: attempt(p),
                    kind,
                },
            ),
            InputGen::Topology(p, ranges, nodes) => {
                let id = p.resolve(self.last_read);
                let slots: Vec<SlotRange> = ranges
                    .iter()
                    .map(|&(s, e, m)| SlotRange::new(s, e, node(m)))
                    .collect();
                let names: Vec<String> = nodes.iter().map(|&n| node(n)).collect();
                if self.reading && id == self.last_read && self.sup.is_connected() {
                    let listed: BTreeSet<String> = names.iter().cloned().collect();
                    let mut all = listed.clone();
                    all.extend(slots.iter().map(|r| r.master.clone()));
                    accepted_topology = Some((listed, all));
                    self.reading = false;
                }
                self.sup.handle_input(
                    now,
                    Input::Topology {
                        id,
                        slots,
                        nodes: names,
                    },
                );
            }
            InputGen::TopologyFailed(p, kind) => {
                let id = p.resolve(self.last_read);
                if id == self.last_read {
                    self.reading = false;
                }
                self.sup
                    .handle_input(now, Input::TopologyFailed { id, kind });
            }
            InputGen::NodeState(n, state) => {
                let name = node(n);
                self.sup
                    .handle_input(now, Input::NodeState { node: &name, state });
            }
            InputGen::Poke => self.sup.handle_input(now, Input::Poke),
            InputGen::Shutdown => self.sup.handle_input(now, Input::Shutdown),
        }
        self.drain(accepted_topology)
    }

    fn drain(
        &mut self,
        accepted: Option<(BTreeSet<String>, BTreeSet<String>)>,
    ) -> Result<(), TestCaseError> {
        let now = Timestamp::from_millis(self.now);
        // 16 plain outputs, two per node change, one per node at shutdown.
        for _ in 0..(16 + 5 * POOL) {
            let out = self.sup.poll_output(now);
            if self.state == State::Shutdown {
                prop_assert_eq!(&out, &Output::Idle, "output after Shutdown at {}", self.now);
            }
            match out {
                Output::Timeout(t) => {
                    prop_assert!(t > now, "Timeout({}) at {}: not in the future", t, now);
                    prop_assert!(!matches!(self.state, State::Idle | State::Shutdown));
                    self.deadline = Some(t.as_millis());
                    return self.drained(accepted);
                }
                Output::Idle => {
                    prop_assert!(
                        matches!(self.state, State::Idle | State::Shutdown),
                        "Idle output in state {:?}",
                        self.state
                    );
                    self.deadline = None;
                    return self.drained(accepted);
                }
                Output::Action(Action::Connect { attempt }) => {
                    prop_assert_eq!(self.state, State::Connecting);
                    self.last_attempt = attempt;
                }
                Output::Action(Action::RefreshTopology { id }) => {
                    prop_assert!(self.sup.is_connected());
                    prop_assert!(!self.reading, "two reads at once");
                    prop_assert!(id > self.last_read, "read id {} reused", id);
                    self.last_read = id;
                    self.reading = true;
                }
                Output::Action(Action::StartProbe { node }) => {
                    prop_assert!(self.probed.insert(node.clone()), "{} probed twice", node);
                }
                Output::Action(Action::StopProbe { node }) => {
                    prop_assert!(self.probed.remove(&node), "{} stopped unprobed", node);
                }
                Output::Action(Action::Disconnect) => self.reading = false,
                Output::Event(Event::TopologyFailed {
                    kind: FailureKind::Timeout,
                    ..
                }) => self.reading = false,
                Output::Event(Event::StateChanged { from, to }) => {
                    prop_assert_eq!(from, self.state, "StateChanged from a state it was not in");
                    prop_assert!(allowed(from, to), "forbidden edge {:?} -> {:?}", from, to);
                    self.state = to;
                }
                _ => {}
            }
        }
        Err(TestCaseError::fail(format!(
            "the drain at {} ms did not end",
            self.now
        )))
    }

    fn drained(
        &self,
        accepted: Option<(BTreeSet<String>, BTreeSet<String>)>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(self.sup.state(), self.state);
        prop_assert_eq!(self.sup.health().state, self.state);
        let listed: BTreeSet<String> = self.sup.nodes().map(|(n, _)| n.to_owned()).collect();
        prop_assert_eq!(&listed, &self.probed, "the node list is the probed nodes");
        if let Some((nodes, with_masters)) = accepted {
            prop_assert!(nodes.is_subset(&self.probed), "a listed node is not probed");
            prop_assert!(
                self.probed.is_subset(&with_masters),
                "a node outside the topology is probed"
            );
        }
        // The slot map is disjoint, sorted and in bounds; slots_ready adds up.
        let mut next = 0u32;
        let mut ready = 0u32;
        for r in self.sup.slots() {
            prop_assert!(u32::from(r.start) >= next && r.start <= r.end && r.end < 16384);
            next = u32::from(r.end) + 1;
            if self.sup.node(&r.master).map(|n| n.state) == Some(State::Ready) {
                ready += r.len();
            }
        }
        prop_assert_eq!(self.sup.slots_ready(), ready);
        prop_assert_eq!(
            self.state == State::Ready,
            self.sup.is_connected() && ready == SLOTS
        );
        if self.state == State::Shutdown {
            prop_assert!(self.probed.is_empty(), "probes left after Shutdown");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn arbitrary_inputs_keep_every_promise(
        config in config(),
        seed in any::<u64>(),
        start in prop_oneof![3 => 0..=DAY_MS, 1 => 0..=(1u64 << 53)],
        steps in steps(),
    ) {
        let mut c = Checker {
            sup: ClusterSupervisor::new(config, seed),
            now: start,
            deadline: None,
            state: State::Idle,
            probed: BTreeSet::new(),
            last_attempt: 0,
            last_read: 0,
            reading: false,
        };
        c.step(Clock::Small(0), Some(InputGen::Start))?;
        for (clock, input) in steps {
            c.step(clock, input)?;
        }
        c.step(Clock::Small(1), Some(InputGen::Shutdown))?;
        prop_assert_eq!(c.sup.state(), State::Shutdown);
        prop_assert!(c.probed.is_empty());
        c.step(Clock::Far(DAY_MS), None)?;
    }
}
