//! Properties of `relink_core::supervisor` under arbitrary input sequences and
//! arbitrary validated configs: no panic, the drain always ends, every
//! deadline lies in the future, state changes follow the documented edges,
//! nothing happens after shutdown, and never two connection attempts at once.
//!
//! The driver here is adversarial: its clock jumps back and far ahead, and it
//! reports results of attempts that were abandoned or never made, pongs of
//! probes that were never sent, work behind probes that are long settled and
//! side-check verdicts nobody asked for. A side check is asked for only for the
//! current probe, while Ready, once.

use core::num::NonZeroU32;
use core::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use relink_core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink_core::failure::{BusyReason, FailureKind};
use relink_core::supervisor::{
    Action, AsideVerdict, Event, HeartbeatConfig, Input, Output, State, Supervisor,
    SupervisorConfig,
};
use relink_core::{ConnectCause, Evidence, Timestamp};

/// One input queues at most 8 outputs; a drain longer than this never ends.
const MAX_DRAIN: usize = 16;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

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

/// A duration of at least 1 ms, sometimes not a whole number of ms.
fn positive_duration() -> impl proptest::strategy::Strategy<Value = Duration> {
    prop_oneof![
        4 => (1..=10_000u64).prop_map(ms),
        1 => (1_000..=5_000_000u64).prop_map(Duration::from_micros),
    ]
}

fn config() -> impl proptest::strategy::Strategy<Value = SupervisorConfig> {
    (
        backoff_policy(),
        positive_duration(),
        positive_duration(),
        prop_oneof![4 => 0..=4u32, 1 => Just(u32::MAX)],
        positive_duration(),
        (0..=20_000u64).prop_map(ms),
    )
        .prop_map(
            |(backoff, interval, timeout, misses_allowed, connect, reset)| {
                SupervisorConfig::default()
                    .backoff(backoff)
                    .heartbeat(HeartbeatConfig {
                        interval,
                        timeout,
                        misses_allowed,
                    })
                    .connect_timeout(connect)
                    .backoff_reset_after(reset)
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
        Just(FailureKind::Moved),
        Just(FailureKind::Command),
        Just(FailureKind::ServerBusy(BusyReason::Loading)),
        Just(FailureKind::ServerBusy(BusyReason::Busy)),
        Just(FailureKind::ServerBusy(BusyReason::MasterDown)),
        Just(FailureKind::ServerBusy(BusyReason::ReadOnly)),
        Just(FailureKind::ServerBusy(BusyReason::TryAgain)),
    ]
}

fn connect_cause() -> impl proptest::strategy::Strategy<Value = ConnectCause> {
    prop_oneof![
        3 => failure_kind().prop_map(ConnectCause::from_kind),
        1 => Just(ConnectCause::Refused),
        1 => Just(ConnectCause::UnknownHost),
        1 => Just(ConnectCause::NotRedis),
        1 => Just(ConnectCause::Tls),
        1 => Just(ConnectCause::NoPerm),
        1 => Just(ConnectCause::ServerFull),
    ]
}

fn verdict() -> impl proptest::strategy::Strategy<Value = AsideVerdict> {
    prop_oneof![
        2 => Just(AsideVerdict::Busy),
        1 => Just(AsideVerdict::Gone),
        1 => failure_kind().prop_map(|kind| AsideVerdict::Unreachable { kind }),
    ]
}

/// Which attempt number (or probe id) an input names.
#[derive(Debug, Clone, Copy)]
enum Pick {
    /// The last one the supervisor handed out.
    Current,
    /// That minus `n`: an older (or never made) one.
    Older(u8),
    /// Anything at all.
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

/// An input, with its attempt number or probe id still to resolve.
#[derive(Debug, Clone, Copy)]
enum InputGen {
    Start,
    Connected(Pick),
    ConnectFailed(Pick, ConnectCause),
    Reconfigured,
    Pong(Pick),
    PingFailed(Pick, FailureKind),
    Activity,
    CommandFailed(FailureKind),
    ConnectionLost(FailureKind),
    WorkOutstanding(Pick),
    AsideChecked(Pick, AsideVerdict),
    Shutdown,
}

fn input() -> impl proptest::strategy::Strategy<Value = InputGen> {
    // Shutdown is rare: it ends everything, and the run checks it at the end anyway.
    prop_oneof![
        20 => Just(InputGen::Start),
        60 => pick().prop_map(InputGen::Connected),
        40 => (pick(), connect_cause()).prop_map(|(p, c)| InputGen::ConnectFailed(p, c)),
        5 => Just(InputGen::Reconfigured),
        50 => pick().prop_map(InputGen::Pong),
        20 => (pick(), failure_kind()).prop_map(|(p, k)| InputGen::PingFailed(p, k)),
        50 => Just(InputGen::Activity),
        20 => failure_kind().prop_map(InputGen::CommandFailed),
        20 => failure_kind().prop_map(InputGen::ConnectionLost),
        30 => pick().prop_map(InputGen::WorkOutstanding),
        30 => (pick(), verdict()).prop_map(|(p, v)| InputGen::AsideChecked(p, v)),
        1 => Just(InputGen::Shutdown),
    ]
}

/// How the driver's clock moves before a step.
#[derive(Debug, Clone, Copy)]
enum Clock {
    /// To the last deadline the supervisor gave (a timer wake-up).
    ToDeadline,
    /// By a small amount, possibly backwards.
    Small(i64),
    /// Far ahead (a suspended laptop).
    Far(u64),
    /// Far back (a driver whose clock is not monotonic).
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
    proptest::collection::vec((clock(), proptest::option::weighted(0.7, input())), 0..120)
}

fn allowed(from: State, to: State) -> bool {
    use State::*;
    matches!(
        (from, to),
        (Idle, Connecting)
            | (Connecting, Ready | TransientFailure)
            | (Ready, TransientFailure)
            | (TransientFailure, Connecting)
            | (_, Shutdown)
    )
}

/// The driver's view, checked against every output.
struct Checker {
    sup: Supervisor,
    now: u64,
    deadline: Option<u64>,
    /// The state as told by `StateChanged` events.
    state: State,
    /// The attempt in flight (from `Connect` until its result is fed or a
    /// `Disconnect` abandons it).
    outstanding: Option<u32>,
    last_attempt: u32,
    last_probe: u64,
    /// The probe a side check was last asked for.
    last_checked: Option<u64>,
    /// A failed attempt said when the next comes (`None`: never).
    after_failure: Option<Option<Duration>>,
    /// Ready was reached at least once.
    was_ready: bool,
}

impl Checker {
    fn new(config: SupervisorConfig, seed: u64, start: u64) -> Self {
        Checker {
            sup: Supervisor::new(config, seed),
            now: start,
            deadline: None,
            state: State::Idle,
            outstanding: None,
            last_attempt: 0,
            last_probe: 0,
            last_checked: None,
            after_failure: None,
            was_ready: false,
        }
    }

    fn advance(&mut self, clock: Clock) {
        self.now = match clock {
            Clock::ToDeadline => self.deadline.unwrap_or(self.now),
            Clock::Small(d) => self.now.saturating_add_signed(d),
            Clock::Far(d) => self.now.saturating_add(d),
            Clock::FarBack(d) => self.now.saturating_sub(d),
        };
    }

    fn resolve(&self, input: InputGen) -> Input {
        let attempt = |p: Pick| p.resolve(u64::from(self.last_attempt)) as u32;
        match input {
            InputGen::Start => Input::Start,
            InputGen::Connected(p) => Input::Connected {
                attempt: attempt(p),
            },
            InputGen::ConnectFailed(p, cause) => Input::ConnectFailed {
                attempt: attempt(p),
                cause,
                evidence: Evidence::new("evidence"),
            },
            InputGen::Reconfigured => Input::Reconfigured,
            InputGen::Pong(p) => Input::Pong {
                id: p.resolve(self.last_probe),
            },
            InputGen::PingFailed(p, kind) => Input::PingFailed {
                id: p.resolve(self.last_probe),
                kind,
            },
            InputGen::Activity => Input::Activity,
            InputGen::CommandFailed(kind) => Input::CommandFailed { kind },
            InputGen::ConnectionLost(kind) => Input::ConnectionLost { kind },
            InputGen::WorkOutstanding(p) => Input::WorkOutstanding {
                id: p.resolve(self.last_probe),
            },
            InputGen::AsideChecked(p, verdict) => Input::AsideChecked {
                id: p.resolve(self.last_probe),
                verdict,
            },
            InputGen::Shutdown => Input::Shutdown,
        }
    }

    fn step(&mut self, clock: Clock, input: Option<InputGen>) -> Result<(), TestCaseError> {
        self.advance(clock);
        let now = Timestamp::from_millis(self.now);
        if let Some(input) = input {
            let input = self.resolve(input);
            if let Input::Connected { attempt } | Input::ConnectFailed { attempt, .. } = input {
                if self.outstanding == Some(attempt) {
                    self.outstanding = None;
                }
            }
            self.sup.handle_input(now, input);
        }
        self.drain()
    }

    fn drain(&mut self) -> Result<(), TestCaseError> {
        let now = Timestamp::from_millis(self.now);
        for _ in 0..MAX_DRAIN {
            let out = self.sup.poll_output(now);
            let health = self.sup.health();
            prop_assert_eq!(health.state, self.sup.state());
            if self.state == State::Shutdown {
                prop_assert_eq!(out, Output::Idle, "output after Shutdown at {}", self.now);
            }
            match out {
                Output::Timeout(t) => {
                    prop_assert!(t > now, "Timeout({}) at {}: not in the future", t, now);
                    prop_assert!(
                        !matches!(self.state, State::Idle | State::Shutdown),
                        "a deadline in state {:?}",
                        self.state
                    );
                    self.deadline = Some(t.as_millis());
                    return self.drained();
                }
                Output::Idle => {
                    prop_assert!(
                        matches!(self.state, State::Idle | State::Shutdown),
                        "Idle output in state {:?}",
                        self.state
                    );
                    self.deadline = None;
                    return self.drained();
                }
                Output::Action(Action::Connect { attempt }) => {
                    prop_assert_eq!(
                        self.outstanding,
                        None,
                        "Connect {} while attempt {:?} is outstanding",
                        attempt,
                        self.outstanding
                    );
                    prop_assert_eq!(self.state, State::Connecting);
                    self.outstanding = Some(attempt);
                    self.last_attempt = attempt;
                }
                Output::Action(Action::SendPing { id }) => {
                    prop_assert_eq!(self.state, State::Ready, "a ping outside Ready");
                    self.last_probe = id;
                }
                Output::Action(Action::CheckAside { id }) => {
                    prop_assert_eq!(self.state, State::Ready, "a side check outside Ready");
                    prop_assert_eq!(id, self.last_probe, "a side check of a probe not current");
                    prop_assert_ne!(self.last_checked, Some(id), "probe {} checked twice", id);
                    self.last_checked = Some(id);
                }
                Output::Event(Event::BusyConfirmed { .. }) => {
                    prop_assert_eq!(self.state, State::Ready);
                    prop_assert_eq!(
                        self.last_checked,
                        Some(self.last_probe),
                        "busy confirmed without a check of the current probe"
                    );
                }
                Output::Action(Action::Disconnect) => self.outstanding = None,
                Output::Event(Event::ConnectAttemptFailed {
                    failure,
                    misconfigured,
                    retry_in,
                }) => {
                    let vanished = self.was_ready && failure.cause == ConnectCause::UnknownHost;
                    prop_assert_eq!(
                        misconfigured,
                        failure.cause.is_misconfiguration() && !vanished
                    );
                    prop_assert_eq!(failure.attempt, self.last_attempt);
                    if let (true, Some(delay)) = (misconfigured, retry_in) {
                        // The slow schedule: at least half its first delay
                        // (equal jitter), whatever the ordinary backoff says.
                        let floor = self.sup.config().misconfigured_backoff.initial_delay / 2;
                        prop_assert!(delay >= floor, "misconfigured, retried in {:?}", delay);
                    }
                    // What follows it (scheduled, or gave up) says the same.
                    self.after_failure = Some(retry_in);
                }
                Output::Event(Event::ReconnectScheduled { delay, .. }) => {
                    if let Some(retry_in) = self.after_failure.take() {
                        prop_assert_eq!(retry_in, Some(delay));
                    }
                }
                Output::Event(Event::GaveUp { .. }) => {
                    if let Some(retry_in) = self.after_failure.take() {
                        prop_assert_eq!(retry_in, None);
                    }
                }
                Output::Event(Event::StateChanged { from, to }) => {
                    self.was_ready |= to == State::Ready;
                    prop_assert_eq!(from, self.state, "StateChanged from a state it was not in");
                    prop_assert!(allowed(from, to), "forbidden edge {:?} -> {:?}", from, to);
                    self.state = to;
                }
                _ => {}
            }
        }
        Err(TestCaseError::fail(format!(
            "the drain at {} ms did not end within {MAX_DRAIN} outputs",
            self.now
        )))
    }

    fn drained(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            self.sup.state(),
            self.state,
            "state() disagrees with the events"
        );
        let health = self.sup.health();
        if health.misconfigured {
            prop_assert_ne!(health.state, State::Ready, "misconfigured while Ready");
            prop_assert!(
                health
                    .last_attempt_failure
                    .is_some_and(|f| f.cause.is_misconfiguration()),
                "misconfigured without a misconfigured attempt: {:?}",
                health.last_attempt_failure
            );
        }
        if health.state == State::Ready {
            prop_assert_eq!(
                health.last_attempt_failure,
                None,
                "Ready with a failed attempt"
            );
        }
        if let Some(since) = health.busy_since {
            prop_assert_eq!(health.state, State::Ready, "busy outside Ready");
            prop_assert!(since >= health.since, "busy since before Ready");
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
        let mut c = Checker::new(config, seed, start);
        c.step(Clock::Small(0), Some(InputGen::Start))?;
        for (clock, input) in steps {
            c.step(clock, input)?;
        }
        c.step(Clock::Small(1), Some(InputGen::Shutdown))?;
        prop_assert_eq!(c.sup.state(), State::Shutdown);
        c.step(Clock::Far(DAY_MS), None)?;
    }
}
