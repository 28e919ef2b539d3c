//! A deterministic simulation of a driver, a network and a Redis server around
//! the [`Supervisor`], on a virtual clock that jumps to the next thing that
//! happens. Whole outage scenarios run in microseconds, and every step is
//! checked against the supervisor's promises.
//!
//! The scripted server follows a timeline of [`Mode`]s: `Up` (accepts, answers
//! after `rtt`), `Down` (refuses connections; a live connection is closed),
//! `Hang` (accepts TCP but answers nothing: the SIGSTOP case), `Busy` (alive,
//! but the live connection is blocked behind work: its PINGs queue until the
//! segment ends, while a check from the side finds it) and `Cut` (the live
//! connection is cut half-open at the segment's start: no FIN, nothing more
//! on it, and the server no longer knows it; otherwise as `Up`).
//!
//! The harness plays the driver: it turns actions into future events (a
//! connect result, a pong, a side check's answer), feeds them back as inputs,
//! and sprinkles application replies (`Activity`) over healthy periods. On
//! `SendPing` it reports `WorkOutstanding` when the scripted workload has
//! commands in flight (always while `Busy`); it executes `CheckAside` after
//! the scripted side-connection latency, and reports what the scripted server
//! would answer then: `Busy` while the server is reachable and still has the
//! connection, `Gone` once it was cut, `Unreachable` while hung (or no answer
//! at all, if the scenario says so) or down.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use relink_core::backoff::BackoffPolicy;
use relink_core::failure::FailureKind;
use relink_core::rng::SplitMix64;
use relink_core::supervisor::{
    Action, AsideVerdict, Event, HeartbeatConfig, Input, Output, State, Supervisor,
    SupervisorConfig,
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
    /// Alive, but the live connection is blocked behind a slow command: its
    /// PINGs queue (answered when the segment ends), no replies, and a side
    /// check finds the connection there. New connections are accepted (and
    /// are blocked too).
    Busy,
    /// At the segment's start the live connection is cut half-open: the
    /// client hears nothing (no FIN), nothing more arrives on it, and the
    /// server no longer knows it. Otherwise the server is up.
    Cut,
    /// Up for the connections it has, but a new one fails its handshake
    /// with a wrong password (the server's password changed, the client's
    /// did not). When the segment ends the operator fixes the client's
    /// credentials: the driver reports `Reconfigured`.
    Misconfigured,
}

impl Mode {
    /// Whether a side connection reaches the server and gets an answer.
    fn reachable(self) -> bool {
        matches!(
            self,
            Mode::Up | Mode::Busy | Mode::Cut | Mode::Misconfigured
        )
    }

    /// Whether the live connection (not cut) gets its replies.
    fn answers(self) -> bool {
        matches!(self, Mode::Up | Mode::Cut | Mode::Misconfigured)
    }
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
    /// Whether the application keeps commands in flight on the connection
    /// (then every PING is reported with `WorkOutstanding`; while `Busy` it
    /// always is).
    pub work_in_flight: bool,
    /// How long a check from the side takes to answer (ms).
    pub side_ms: u64,
    /// Whether a side check against a hung server reports `Unreachable`
    /// (after `side_ms`); if not, it never reports at all.
    pub hang_verdicts: bool,
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
                mode: match pick(0, 5) {
                    0 => Mode::Up,
                    1 => Mode::Down,
                    2 => Mode::Hang,
                    3 => Mode::Busy,
                    4 => Mode::Cut,
                    _ => Mode::Misconfigured,
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
        let timeout_ms = heartbeat.timeout.as_millis() as u64;
        // Mostly in time for the PING's deadline; sometimes late.
        let side_ms = if pick(0, 4) == 0 {
            pick(0, 2 * timeout_ms + 100)
        } else {
            pick(0, timeout_ms)
        };
        Scenario {
            config,
            seed,
            timeline,
            rtt_ms,
            activity_every_ms,
            tail_ms: 0,
            work_in_flight: pick(0, 1) == 1,
            side_ms,
            hang_verdicts: pick(0, 1) == 1,
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

    /// Whether the server's mode satisfies `ok` at every instant of `from..=to` (ms).
    pub fn modes_in(&self, from: u64, to: u64, ok: impl Fn(Mode) -> bool) -> bool {
        let mut start = 0;
        for seg in &self.timeline {
            let end = start + seg.millis; // the segment covers start..end
            if seg.millis > 0 && end > from && start <= to && !ok(seg.mode) {
                return false;
            }
            start = end;
        }
        // Up forever after the timeline.
        to < start || ok(Mode::Up)
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
    /// The driver reports that commands were in flight when PING `id` was sent.
    WorkReported { id: u64, conn: u64 },
    /// A side check of connection `conn` for probe `id` answers.
    SideCheckAnswers { id: u64, conn: u64 },
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
    /// Verdicts reported: busy, gone, unreachable.
    pub verdicts: [u64; 3],
    /// `BusyConfirmed` events.
    pub busy_confirmed: u64,
    /// Connections lost because a side check found them gone.
    pub gone_kills: u64,
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

/// The harness's own view of the outstanding heartbeat PING.
#[derive(Debug, Clone, Copy)]
struct ProbeView {
    id: u64,
    sent: u64,
    /// `WorkOutstanding` was fed for it.
    reported: bool,
    /// `CheckAside` was asked for it.
    checking: bool,
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
    /// When the live connection was cut half-open, if it was.
    live_cut: Option<u64>,
    /// PINGs of the live connection queued behind its work (Busy).
    queued_pings: Vec<u64>,
    /// The outstanding PING, as the harness sees it.
    probe: Option<ProbeView>,
    /// A heartbeat miss was reported in the current drain.
    missed_in_drain: bool,
    /// The connection dropped last had been cut half-open.
    dropped_cut: bool,
    next_conn: u64,
    /// Last time the supervisor was given evidence of life on the live connection.
    last_evidence: u64,
    /// The earliest time the next Connect may come (from ReconnectScheduled).
    earliest_attempt: u64,
    gave_up: bool,
    shut_down: bool,
    /// The server's mode as of the last mode change.
    mode: Mode,
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
        live_cut: None,
        queued_pings: Vec::new(),
        probe: None,
        missed_in_drain: false,
        dropped_cut: false,
        next_conn: 1,
        last_evidence: 0,
        earliest_attempt: 0,
        gave_up: false,
        shut_down: false,
        mode: sc.mode_at(0),
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
        self.missed_in_drain = false;
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
                let mode = self.sc.mode_at(self.now);
                let work = mode == Mode::Busy || self.sc.work_in_flight;
                self.probe = Some(ProbeView {
                    id,
                    sent: self.now,
                    reported: work,
                    checking: false,
                });
                if work {
                    // Fed right after this drain, as a driver does once its
                    // PING is on the wire.
                    self.schedule(self.now, SimEvent::WorkReported { id, conn });
                }
                if self.live_cut.is_none() {
                    match mode {
                        Mode::Up | Mode::Cut | Mode::Misconfigured => {
                            let at = self.now + self.sc.rtt_ms;
                            self.schedule(at, SimEvent::PongArrives { id, conn });
                        }
                        Mode::Busy => self.queued_pings.push(id),
                        Mode::Hang | Mode::Down => {}
                    }
                }
            }
            Action::CheckAside { id } => {
                let Some(conn) = self.live else {
                    return Err(self.violation("side check without a connection".into()));
                };
                match self.probe {
                    Some(ref mut p) if p.id == id && p.reported && !p.checking => p.checking = true,
                    other => {
                        return Err(self.violation(format!(
                            "CheckAside {{ id: {id} }} not asked for (outstanding: {other:?})"
                        )))
                    }
                }
                let at = self.now + self.sc.side_ms;
                self.schedule(at, SimEvent::SideCheckAnswers { id, conn });
            }
            Action::Disconnect => {
                self.drop_live();
                self.attempt_in_flight = None;
            }
            _ => {}
        }
        Ok(())
    }

    fn observe(&mut self, e: Event) -> Result<(), Violation> {
        match e {
            Event::ConnectAttemptFailed {
                failure,
                misconfigured,
                retry_in,
            } => {
                if misconfigured != failure.cause.is_misconfiguration() {
                    return Err(self.violation(format!("{failure:?} flagged {misconfigured}")));
                }
                let slow = &self.sc.config.misconfigured_backoff;
                // Equal jitter: at least half the slow schedule's first delay.
                if let (true, Some(delay)) = (misconfigured, retry_in) {
                    if delay < slow.initial_delay / 2 {
                        return Err(self.violation(format!(
                            "a wrong password retried in {delay:?}: faster than the slow schedule"
                        )));
                    }
                }
            }
            Event::ReconnectScheduled { delay, .. } => {
                let mut max = self.sc.config.backoff.max_delay;
                if self.sup.health().misconfigured {
                    max = max.max(self.sc.config.misconfigured_backoff.max_delay);
                }
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
            Event::BusyConfirmed { .. } => self.trace.busy_confirmed += 1,
            Event::HeartbeatMissed { .. } => {
                let Some(p) = self.probe else {
                    return Err(self.violation("a heartbeat miss with no PING outstanding".into()));
                };
                if self.busy_safe(p) {
                    return Err(self.violation(format!(
                        "PING {} sent at {} while the server was busy-alive, its side check \
                         answering Busy within the timeout, counted as a miss",
                        p.id, p.sent
                    )));
                }
                self.missed_in_drain = true;
            }
            Event::Disconnected { cause } => {
                // (The Disconnect action came first and dropped the connection.)
                let busy_alive = self.sc.mode_at(self.now) == Mode::Busy && !self.dropped_cut;
                if busy_alive && !self.missed_in_drain {
                    return Err(self.violation(format!(
                        "a busy-alive connection declared dead ({cause:?}) without a miss"
                    )));
                }
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
            if let Some(cut) = self.live_cut {
                let hb = self.sc.config.heartbeat;
                let bound = (hb.interval + hb.timeout).as_millis() as u64;
                // With work in flight every PING is checked from the side, and a
                // reachable server answers Gone within the PING's deadline.
                let checked_in_time = self.sc.work_in_flight
                    && self.sc.side_ms <= hb.timeout.as_millis() as u64
                    && self.sc.modes_in(cut, cut + bound, Mode::reachable);
                if checked_in_time && self.now > cut + bound {
                    return Err(self.violation(format!(
                        "a half-open connection still Ready {} ms after its cut (bound \
                         interval + timeout = {bound} ms)",
                        self.now - cut
                    )));
                }
            }
            if let Some(since) = self.sup.health().busy_since {
                if since.as_millis() > self.now {
                    return Err(self.violation(format!("busy since {since}, in the future")));
                }
            }
        } else if self.sup.health().busy_since.is_some() {
            return Err(self.violation(format!("busy_since set in {state:?}")));
        }
        Ok(())
    }

    /// Whether probe `p` was sent to a busy-alive server whose side check
    /// answers `Busy` before the PING's deadline: such a probe is never a miss.
    fn busy_safe(&self, p: ProbeView) -> bool {
        let timeout = self.sc.config.heartbeat.timeout.as_millis() as u64;
        p.reported
            && self.live_cut.is_none()
            && self.sc.side_ms <= timeout
            && self
                .sc
                .modes_in(p.sent, p.sent + self.sc.side_ms, |m| m == Mode::Busy)
    }

    /// The live connection is gone (closed, or dropped by the supervisor).
    fn drop_live(&mut self) {
        self.dropped_cut = self.live.is_some() && self.live_cut.is_some();
        self.live = None;
        self.live_cut = None;
        self.queued_pings.clear();
        self.probe = None;
    }

    /// Evidence of life is about to be fed: the probe is settled.
    fn evidence(&mut self) {
        self.last_evidence = self.now;
        self.probe = None;
    }

    /// After a reply on the connection itself: a busy spell is over.
    fn not_busy(&self) -> Result<(), Violation> {
        if self.sup.health().busy_since.is_some() {
            return Err(self.violation("still busy after a reply on the connection".into()));
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
        // Whether the server answers on the live connection `conn` now.
        let answers =
            |d: &Self, conn: u64| d.live == Some(conn) && d.live_cut.is_none() && mode.answers();
        match ev {
            SimEvent::ConnectResolves { attempt, token } => {
                if self.attempt_in_flight != Some((attempt, token)) {
                    return Ok(()); // abandoned by a Disconnect
                }
                match mode {
                    Mode::Misconfigured => {
                        self.attempt_in_flight = None;
                        self.input(Input::ConnectFailed {
                            attempt,
                            cause: relink_core::ConnectCause::Auth,
                            evidence: relink_core::Evidence::new("WRONGPASS invalid password"),
                        })?;
                        let health = self.sup.health();
                        if self.sup.state() == State::Ready || !health.misconfigured {
                            return Err(self.violation(format!(
                                "a wrong password not taken as a misconfiguration: {health:?}"
                            )));
                        }
                    }
                    Mode::Up | Mode::Busy | Mode::Cut => {
                        self.attempt_in_flight = None;
                        let conn = self.next_conn;
                        self.next_conn += 1;
                        self.drop_live();
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
                            cause: relink_core::ConnectCause::Refused,
                            evidence: relink_core::Evidence::EMPTY,
                        })?;
                    }
                    Mode::Hang => {} // the connect timeout must catch it
                }
            }
            SimEvent::PongArrives { id, conn } => {
                if answers(self, conn) {
                    self.evidence();
                    self.input(Input::Pong { id })?;
                    self.not_busy()?;
                } else if self.live == Some(conn) && self.live_cut.is_none() && mode == Mode::Busy {
                    // The server turned busy before answering: it waits its turn.
                    self.queued_pings.push(id);
                }
            }
            SimEvent::ActivityArrives { conn } => {
                if answers(self, conn) {
                    self.evidence();
                    self.input(Input::Activity)?;
                    self.not_busy()?;
                    self.schedule_activity(conn);
                }
            }
            SimEvent::WorkReported { id, conn } => {
                if self.live != Some(conn) {
                    return Ok(());
                }
                let timeout = self.sc.config.heartbeat.timeout.as_millis() as u64;
                let expect_check = self.sup.state() == State::Ready
                    && self
                        .probe
                        .is_some_and(|p| p.id == id && self.now < p.sent + timeout);
                self.input(Input::WorkOutstanding { id })?;
                let asked = self.probe.is_some_and(|p| p.id == id && p.checking);
                if expect_check && !asked {
                    return Err(self.violation(format!(
                        "WorkOutstanding {{ id: {id} }} for the PING outstanding got no CheckAside"
                    )));
                }
            }
            SimEvent::SideCheckAnswers { id, conn } => {
                // What the scripted server answers the side connection now.
                let known = self.live == Some(conn) && self.live_cut.is_none();
                let verdict = match mode {
                    Mode::Hang if !self.sc.hang_verdicts => return Ok(()),
                    Mode::Hang => AsideVerdict::Unreachable {
                        kind: FailureKind::Timeout,
                    },
                    Mode::Down => AsideVerdict::Unreachable {
                        kind: FailureKind::Io,
                    },
                    Mode::Up | Mode::Busy | Mode::Cut | Mode::Misconfigured if known => {
                        AsideVerdict::Busy
                    }
                    Mode::Up | Mode::Busy | Mode::Cut | Mode::Misconfigured => AsideVerdict::Gone,
                };
                self.trace.verdicts[match verdict {
                    AsideVerdict::Busy => 0,
                    AsideVerdict::Gone => 1,
                    _ => 2,
                }] += 1;
                let timeout = self.sc.config.heartbeat.timeout.as_millis() as u64;
                let pending = self.sup.state() == State::Ready
                    && self.probe.is_some_and(|p| p.id == id && p.checking);
                let in_time = self.probe.is_some_and(|p| self.now <= p.sent + timeout);
                let confirms = pending && in_time && verdict == AsideVerdict::Busy;
                let busy_events = self.trace.busy_confirmed;
                if confirms {
                    // A sign of life, though not on the connection itself.
                    self.evidence();
                }
                self.input(Input::AsideChecked { id, verdict })?;
                if confirms {
                    if self.trace.busy_confirmed != busy_events + 1
                        || self.sup.health().busy_since.is_none()
                    {
                        return Err(self.violation(format!(
                            "a Busy verdict in time for PING {id} was not taken as busy"
                        )));
                    }
                } else if self.trace.busy_confirmed != busy_events {
                    return Err(self.violation(format!(
                        "{verdict:?} for PING {id} confirmed busy, though not pending in time"
                    )));
                }
                if pending
                    && matches!(verdict, AsideVerdict::Unreachable { .. })
                    && !self.missed_in_drain
                {
                    return Err(self.violation(format!(
                        "{verdict:?} for the pending check of PING {id} was no miss"
                    )));
                }
                if pending && verdict == AsideVerdict::Gone {
                    if self.sup.state() == State::Ready {
                        return Err(self.violation("still Ready after a Gone verdict".into()));
                    }
                    self.trace.gone_kills += 1;
                }
            }
            SimEvent::ModeChange => {
                let was = std::mem::replace(&mut self.mode, mode);
                if was == Mode::Misconfigured && mode != Mode::Misconfigured {
                    // The operator fixed the credentials: an attempt
                    // waiting out the slow schedule goes out at once.
                    let waiting = self.sup.state() == State::TransientFailure;
                    let connects = self.trace.actions.len();
                    self.input(Input::Reconfigured)?;
                    let made = self.trace.actions[connects..]
                        .iter()
                        .any(|(_, a)| matches!(a, Action::Connect { .. }));
                    if waiting && !made && !self.gave_up {
                        return Err(self.violation(
                            "credentials fixed while waiting, but no attempt at once".into(),
                        ));
                    }
                    let health = self.sup.health();
                    if health.misconfigured && !self.gave_up {
                        return Err(self
                            .violation(format!("still misconfigured after the fix: {health:?}")));
                    }
                }
                if mode == Mode::Down && self.live.is_some() && self.live_cut.is_none() {
                    self.drop_live();
                    self.input(Input::ConnectionLost {
                        kind: FailureKind::Closed,
                    })?;
                    if self.sup.state() == State::Ready {
                        return Err(
                            self.violation("still Ready after the connection was lost".into())
                        );
                    }
                }
                if mode == Mode::Cut && self.live.is_some() && self.live_cut.is_none() {
                    // Half-open: the client hears nothing of it.
                    self.live_cut = Some(self.now);
                    self.queued_pings.clear();
                }
                if matches!(mode, Mode::Hang | Mode::Down) {
                    self.queued_pings.clear();
                }
                if let Some(conn) = self.live.filter(|_| self.live_cut.is_none()) {
                    if mode.answers() {
                        // The work is done: the queued PINGs are answered.
                        for id in std::mem::take(&mut self.queued_pings) {
                            let at = self.now + self.sc.rtt_ms;
                            self.schedule(at, SimEvent::PongArrives { id, conn });
                        }
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
