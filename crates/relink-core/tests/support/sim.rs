//! A deterministic simulation of a driver, a network and a Redis server around
//! the [`Supervisor`], on a virtual clock that jumps to the next thing that
//! happens. Whole outage scenarios run in microseconds, and every step is
//! checked against the supervisor's promises.
//!
//! The scripted server follows a timeline of [`Mode`]s: `Up` (accepts, answers
//! after `rtt`), `Down` (refuses connections; a live connection is closed),
//! `Hang` (accepts TCP but answers nothing: the SIGSTOP case). The harness
//! plays the driver: it turns actions into future events (a connect result, a
//! pong), feeds them back as inputs, and sprinkles application replies
//! (`Activity`) over healthy periods.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use relink_core::backoff::BackoffPolicy;
use relink_core::failure::FailureKind;
use relink_core::rng::SplitMix64;
use relink_core::supervisor::{
    Action, Event, HeartbeatConfig, Input, Output, State, Supervisor, SupervisorConfig,
};
use relink_core::Timestamp;

/// What the scripted server does during a segment of the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accepts connections and answers after the rtt.
    Up,
    /// Refuses connections; live connections are closed when it goes down.
    Down,
    /// Accepts TCP but never answers: connects and pings hang.
    Hang,
}

/// One segment of the server's timeline.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    /// What the server does.
    pub mode: Mode,
    /// For how long (ms).
    pub millis: u64,
}

/// A whole scenario: the supervisor's config, the server's timeline, and the
/// network's round-trip time.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Supervisor config under test.
    pub config: SupervisorConfig,
    /// Seed for the supervisor's jitter.
    pub seed: u64,
    /// The server's behaviour over time; `Up` forever after the last segment.
    pub timeline: Vec<Segment>,
    /// Round-trip time of every reply (ms).
    pub rtt_ms: u64,
    /// Mean gap between application replies while connected (ms); 0 = none.
    pub activity_every_ms: u64,
    /// Extra time to run after the timeline ends, with the server up (ms).
    pub tail_ms: u64,
}

impl Scenario {
    /// A random scenario from `seed`: a random policy, heartbeat, rtt, and a
    /// timeline of a few segments of up, down and hang.
    pub fn random(seed: u64) -> Scenario {
        let mut r = SplitMix64::new(seed);
        let mut pick = |lo: u64, hi: u64| r.range_inclusive(lo, hi);
        let initial = Duration::from_millis(pick(1, 200));
        let max = initial + Duration::from_millis(pick(0, 2000));
        let jitter = match pick(0, 4) {
            0 => relink_core::backoff::Jitter::None,
            1 => relink_core::backoff::Jitter::Full,
            2 => relink_core::backoff::Jitter::Equal,
            3 => relink_core::backoff::Jitter::Decorrelated,
            _ => relink_core::backoff::Jitter::Proportional { factor: 0.2 },
        };
        let strategy = match pick(0, 2) {
            0 => relink_core::backoff::Strategy::Constant,
            1 => relink_core::backoff::Strategy::Linear {
                step: Duration::from_millis(pick(1, 300)),
            },
            _ => relink_core::backoff::Strategy::Exponential {
                multiplier: 1.0 + pick(0, 20) as f64 / 10.0,
            },
        };
        let mut backoff = BackoffPolicy::default()
            .strategy(strategy)
            .initial_delay(initial)
            .max_delay(max)
            .jitter(jitter);
        if pick(0, 9) == 0 {
            backoff = backoff.max_attempts(std::num::NonZeroU32::new(pick(1, 6) as u32));
        }
        let heartbeat = HeartbeatConfig {
            interval: Duration::from_millis(pick(10, 1000)),
            timeout: Duration::from_millis(pick(10, 1000)),
            misses_allowed: pick(0, 2) as u32,
        };
        let config = SupervisorConfig::default()
            .backoff(backoff)
            .heartbeat(heartbeat)
            .connect_timeout(Duration::from_millis(pick(10, 1000)))
            .backoff_reset_after(Duration::from_millis(pick(0, 3000)));
        let segments = pick(1, 8);
        let timeline = (0..segments)
            .map(|_| Segment {
                mode: match pick(0, 2) {
                    0 => Mode::Up,
                    1 => Mode::Down,
                    _ => Mode::Hang,
                },
                millis: pick(0, 4000),
            })
            .collect();
        let rtt_ms = if pick(0, 9) == 0 {
            pick(0, 1500)
        } else {
            pick(0, 5)
        };
        let seed = pick(0, u64::MAX);
        let activity_every_ms = if pick(0, 1) == 0 { 0 } else { pick(1, 500) };
        Scenario {
            config,
            seed,
            timeline,
            rtt_ms,
            activity_every_ms,
            tail_ms: 0,
        }
    }

    /// The server's mode at `t` (ms).
    pub fn mode_at(&self, t: u64) -> Mode {
        let mut start = 0;
        for seg in &self.timeline {
            if t < start + seg.millis {
                return seg.mode;
            }
            start += seg.millis;
        }
        Mode::Up
    }

    fn timeline_end(&self) -> u64 {
        self.timeline.iter().map(|s| s.millis).sum()
    }

    /// Time for a supervisor to certainly be Ready again once the server is
    /// up for good: a probe lost in a hang just before may still be declared
    /// a miss (heartbeat bound), then the longest backoff delay (delays never
    /// exceed `max_delay`, which the backoff tests check), a connect, the rtt.
    fn recovery_bound(&self) -> u64 {
        let ms = |d: Duration| d.as_millis() as u64;
        ms(self.config.heartbeat.detection_bound())
            + ms(self.config.connect_timeout)
            + ms(self.config.backoff.max_delay)
            + ms(self.config.connect_timeout)
            + self.rtt_ms
            + 2
    }

    /// Whether the policy can ever give up.
    pub fn may_give_up(&self) -> bool {
        self.config.backoff.max_attempts.is_some() || self.config.backoff.max_elapsed.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SimEvent {
    /// A connect attempt resolves (the server's mode then decides how).
    ConnectResolves { attempt: u32, token: u64 },
    /// A pong reaches the client.
    PongArrives { id: u64, conn: u64 },
    /// An application reply reaches the client.
    ActivityArrives { conn: u64 },
    /// The server's mode changes.
    ModeChange,
}

/// Everything observed during a run, for assertions beyond the invariants.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// Every event the supervisor emitted, with its time (ms).
    pub events: Vec<(u64, Event)>,
    /// Every action, with its time (ms).
    pub actions: Vec<(u64, Action)>,
    /// Outputs handled.
    pub steps: u64,
}

impl Trace {
    /// Every reconnect delay the supervisor scheduled, in ms, in order.
    pub fn reconnect_delays_ms(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::ReconnectScheduled { delay, .. } => Some(delay.as_millis() as u64),
                _ => None,
            })
            .collect()
    }

    /// How many times the supervisor reached Ready.
    pub fn readies(&self) -> usize {
        self.events
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e,
                    Event::StateChanged {
                        to: State::Ready,
                        ..
                    }
                )
            })
            .count()
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

struct Driver<'a> {
    sc: &'a Scenario,
    sup: Supervisor,
    now: u64,
    queue: BinaryHeap<Reverse<(u64, u64, SimEvent)>>,
    order: u64,
    rng: SplitMix64,
    /// Token of the attempt in flight (None: no attempt in flight).
    attempt_in_flight: Option<(u32, u64)>,
    next_token: u64,
    /// Generation of the live connection (None: none).
    live: Option<u64>,
    next_conn: u64,
    /// Last time the supervisor was given evidence of life on the live connection.
    last_evidence: u64,
    /// The earliest time the next Connect may come (from ReconnectScheduled).
    earliest_attempt: u64,
    gave_up: bool,
    shut_down: bool,
    trace: Trace,
}

/// Runs a scenario to the end and checks every invariant on every step.
pub fn run(sc: &Scenario) -> Result<Trace, Violation> {
    let mut d = Driver {
        sc,
        sup: Supervisor::new(sc.config.clone(), sc.seed),
        now: 0,
        queue: BinaryHeap::new(),
        order: 0,
        rng: SplitMix64::new(sc.seed ^ 0xA5A5),
        attempt_in_flight: None,
        next_token: 1,
        live: None,
        next_conn: 1,
        last_evidence: 0,
        earliest_attempt: 0,
        gave_up: false,
        shut_down: false,
        trace: Trace::default(),
    };
    let mut t = 0;
    for seg in &sc.timeline {
        t += seg.millis;
        d.schedule(t, SimEvent::ModeChange);
    }
    let end = sc.timeline_end() + sc.recovery_bound() + sc.tail_ms;
    d.input(Input::Start)?;
    d.run_until(end)?;
    // Recovery: with the server up since the timeline ended, the supervisor
    // must be Ready (unless its policy gave up).
    // (A server slower than the connect or heartbeat timeout is, rightly,
    // never considered healthy.)
    let healthy = sc.rtt_ms < sc.config.connect_timeout.as_millis() as u64
        && sc.rtt_ms < sc.config.heartbeat.timeout.as_millis() as u64;
    if !d.gave_up && healthy && d.sup.state() != State::Ready {
        return Err(d.violation(format!(
            "server up for {} ms but supervisor is {:?}",
            sc.recovery_bound() + sc.tail_ms,
            d.sup.state()
        )));
    }
    d.input(Input::Shutdown)?;
    if d.sup.state() != State::Shutdown {
        return Err(d.violation("shutdown did not reach Shutdown".into()));
    }
    if d.live.is_some() || d.attempt_in_flight.is_some() {
        return Err(d.violation("shutdown left a connection or attempt open".into()));
    }
    Ok(d.trace)
}

impl Driver<'_> {
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

    fn input(&mut self, input: Input) -> Result<(), Violation> {
        if matches!(input, Input::Shutdown) {
            self.shut_down = true;
        }
        let now = self.ts();
        self.sup.handle_input(now, input);
        self.drain()
    }

    /// Drains outputs, acting on each; returns the next deadline.
    fn drain(&mut self) -> Result<(), Violation> {
        for _ in 0..64 {
            let out = self.sup.poll_output(self.ts());
            self.trace.steps += 1;
            match out {
                Output::Timeout(t) => {
                    if t.as_millis() <= self.now {
                        return Err(self.violation(format!("deadline {t} is not in the future")));
                    }
                    return self.check();
                }
                Output::Idle => {
                    if !matches!(self.sup.state(), State::Idle | State::Shutdown) {
                        return Err(
                            self.violation(format!("Idle output in state {:?}", self.sup.state()))
                        );
                    }
                    return self.check();
                }
                Output::Action(a) => {
                    self.trace.actions.push((self.now, a));
                    self.act(a)?;
                }
                Output::Event(e) => {
                    self.trace.events.push((self.now, e));
                    self.observe(e)?;
                }
                _ => {}
            }
        }
        Err(self.violation("poll_output did not drain within 64 outputs".into()))
    }

    fn act(&mut self, a: Action) -> Result<(), Violation> {
        match a {
            Action::Connect { attempt } => {
                if self.attempt_in_flight.is_some() {
                    return Err(self.violation("two connection attempts at once".into()));
                }
                if self.live.is_some() {
                    return Err(self.violation("connect while a connection is live".into()));
                }
                if self.now < self.earliest_attempt {
                    return Err(self.violation(format!(
                        "attempt at {} before its backoff delay ended at {}",
                        self.now, self.earliest_attempt
                    )));
                }
                let token = self.next_token;
                self.next_token += 1;
                self.attempt_in_flight = Some((attempt, token));
                let at = self.now + self.sc.rtt_ms;
                self.schedule(at, SimEvent::ConnectResolves { attempt, token });
            }
            Action::SendPing { id } => {
                let Some(conn) = self.live else {
                    return Err(self.violation("ping without a connection".into()));
                };
                if self.sc.mode_at(self.now) == Mode::Up {
                    let at = self.now + self.sc.rtt_ms;
                    self.schedule(at, SimEvent::PongArrives { id, conn });
                }
            }
            Action::Disconnect => {
                self.live = None;
                self.attempt_in_flight = None;
            }
            _ => {}
        }
        Ok(())
    }

    fn observe(&mut self, e: Event) -> Result<(), Violation> {
        match e {
            Event::ReconnectScheduled { delay, .. } => {
                let max = self.sc.config.backoff.max_delay;
                if delay > max {
                    return Err(self.violation(format!("delay {delay:?} above max_delay {max:?}")));
                }
                self.earliest_attempt = self.now + delay.as_millis() as u64;
            }
            Event::GaveUp { .. } => {
                if !self.sc.may_give_up() {
                    return Err(self.violation("gave up under a policy without limits".into()));
                }
                self.gave_up = true;
            }
            Event::StateChanged {
                to: State::Ready, ..
            } => {
                self.last_evidence = self.now;
            }
            Event::StateChanged {
                to: State::Shutdown,
                ..
            } if !self.gave_up && !self.shut_down => {
                return Err(self.violation("shut down without being asked or giving up".into()));
            }
            _ => {}
        }
        Ok(())
    }

    /// The invariants that must hold whenever the supervisor is drained.
    fn check(&self) -> Result<(), Violation> {
        let state = self.sup.state();
        if state == State::Ready && self.live.is_none() {
            return Err(self.violation("Ready without a live connection".into()));
        }
        if state == State::Connecting && self.attempt_in_flight.is_none() {
            return Err(self.violation("Connecting with no attempt in flight".into()));
        }
        if state == State::TransientFailure && self.sup.next_deadline().is_none() {
            return Err(self.violation("TransientFailure with no next attempt scheduled".into()));
        }
        if state == State::Ready {
            let bound = self.sc.config.heartbeat.detection_bound().as_millis() as u64;
            if self.now > self.last_evidence + bound {
                return Err(self.violation(format!(
                    "still Ready {} ms after the last sign of life (bound {bound} ms)",
                    self.now - self.last_evidence
                )));
            }
        }
        Ok(())
    }

    fn run_until(&mut self, end: u64) -> Result<(), Violation> {
        // Bounded: every iteration advances time or consumes a queued event.
        for _ in 0..1_000_000 {
            let deadline = self
                .sup
                .next_deadline()
                .map(|t| t.as_millis())
                .unwrap_or(u64::MAX);
            let next_event = self
                .queue
                .peek()
                .map(|Reverse((t, _, _))| *t)
                .unwrap_or(u64::MAX);
            let next = deadline.min(next_event);
            if next > end {
                self.now = end;
                return self.check();
            }
            self.now = self.now.max(next);
            if next_event <= deadline {
                let Reverse((_, _, ev)) = self.queue.pop().expect("peeked");
                self.deliver(ev)?;
            } else {
                self.drain()?;
            }
        }
        Err(self.violation("simulation did not finish in 1,000,000 steps".into()))
    }

    fn deliver(&mut self, ev: SimEvent) -> Result<(), Violation> {
        let mode = self.sc.mode_at(self.now);
        match ev {
            SimEvent::ConnectResolves { attempt, token } => {
                if self.attempt_in_flight != Some((attempt, token)) {
                    return Ok(()); // abandoned by a Disconnect
                }
                match mode {
                    Mode::Up => {
                        self.attempt_in_flight = None;
                        let conn = self.next_conn;
                        self.next_conn += 1;
                        self.live = Some(conn);
                        self.last_evidence = self.now;
                        self.schedule_activity(conn);
                        self.input(Input::Connected { attempt })?;
                        if self.sup.state() != State::Ready {
                            return Err(self.violation("Connected did not make it Ready".into()));
                        }
                    }
                    Mode::Down => {
                        self.attempt_in_flight = None;
                        self.input(Input::ConnectFailed {
                            attempt,
                            kind: FailureKind::Io,
                        })?;
                    }
                    Mode::Hang => {} // the connect timeout must catch it
                }
            }
            SimEvent::PongArrives { id, conn } => {
                if self.live == Some(conn) && mode == Mode::Up {
                    self.last_evidence = self.now;
                    self.input(Input::Pong { id })?;
                }
            }
            SimEvent::ActivityArrives { conn } => {
                if self.live == Some(conn) && mode == Mode::Up {
                    self.last_evidence = self.now;
                    self.input(Input::Activity)?;
                    self.schedule_activity(conn);
                }
            }
            SimEvent::ModeChange => {
                if mode == Mode::Down && self.live.is_some() {
                    self.live = None;
                    self.input(Input::ConnectionLost {
                        kind: FailureKind::Closed,
                    })?;
                    if self.sup.state() == State::Ready {
                        return Err(
                            self.violation("still Ready after the connection was lost".into())
                        );
                    }
                }
                if mode == Mode::Up {
                    if let Some(conn) = self.live {
                        self.schedule_activity(conn);
                    }
                }
            }
        }
        Ok(())
    }

    fn schedule_activity(&mut self, conn: u64) {
        if self.sc.activity_every_ms > 0 {
            let gap = self.rng.range_inclusive(1, 2 * self.sc.activity_every_ms);
            self.schedule(self.now + gap, SimEvent::ActivityArrives { conn });
        }
    }
}
