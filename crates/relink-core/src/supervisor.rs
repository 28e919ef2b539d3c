//! The health supervisor: a connectivity state machine fed by connection
//! results and heartbeats, which decides when to connect, when to ping, when
//! to give a connection up for dead and when to try again.
//!
//! States follow gRPC's connectivity model:
//!
//! ```text
//!  Idle ──Start──▶ Connecting ──Connected──▶ Ready
//!                    ▲   │ failed / timed out   │ lost / heartbeat dead
//!                    │   ▼                      ▼
//!                  TransientFailure ◀───────────┘
//!   (any) ──Shutdown / gave up──▶ Shutdown
//! ```
//!
//! # Driving it
//!
//! The supervisor is sans-IO: it never blocks, sleeps or reads a clock. The
//! driver feeds [`Input`]s with a [`Timestamp`] and then drains
//! [`Supervisor::poll_output`] until it returns [`Output::Timeout`] (sleep
//! until then, or until the next input) or [`Output::Idle`] (nothing scheduled).
//! **After every input, drain until `Timeout` or `Idle`.**
//!
//! ```no_run
//! use relink_core::supervisor::{Action, Input, Output, Supervisor, SupervisorConfig};
//! use relink_core::Timestamp;
//!
//! let mut sup = Supervisor::new(SupervisorConfig::default(), 42);
//! let now = Timestamp::from_millis(0);
//! sup.handle_input(now, Input::Start);
//! loop {
//!     match sup.poll_output(now) {
//!         Output::Action(Action::Connect { attempt }) => { /* start connecting */ }
//!         Output::Action(Action::SendPing { id }) => {
//!             /* PING; report Input::Pong { id }, and Input::WorkOutstanding { id }
//!                if commands were in flight when it was sent */
//!         }
//!         Output::Action(Action::CheckAside { id }) => {
//!             /* ask the server from the side; report Input::AsideChecked { id, verdict } */
//!         }
//!         Output::Action(Action::Disconnect) => { /* drop the connection or attempt */ }
//!         Output::Event(event) => { /* tell the user */ }
//!         Output::Timeout(deadline) => { /* sleep until deadline, then poll again */ break }
//!         Output::Idle => break,
//!         _ => {}
//!     }
//! }
//! ```
//!
//! Timers are processed by `poll_output`, so a late or spurious wake-up is
//! harmless, and an input is judged before any deadline that passed at the
//! same instant (a reply that arrives at the heartbeat deadline counts).
//!
//! # Heartbeats
//!
//! Liveness is evidence, not ceremony: any reply on the connection
//! ([`Input::Activity`], a [`Input::Pong`], or an error reply) proves the
//! server alive (evidence told late, stamped before the outstanding PING
//! left, proves it alive then but does not answer that PING). A PING is
//! asked for only after `interval` of silence; if it is
//! not answered within `timeout`, that is a miss, and another PING follows at
//! once. After more than `misses_allowed` misses in a row the connection is
//! declared dead. So a hung server is noticed no later than
//! `last reply + interval + (misses_allowed + 1) × timeout`.
//!
//! # A busy connection
//!
//! A PING queued behind a slow command (a `BLPOP`, a long Lua script,
//! `CLIENT PAUSE`) goes unanswered although the connection is healthy. So the
//! driver, when it sends the PING of [`Action::SendPing`] while commands are
//! in flight on the connection, says so ([`Input::WorkOutstanding`]), and the
//! supervisor asks it to check the connection from the side
//! ([`Action::CheckAside`]: a short-lived second connection asks the server
//! whether it still knows this connection's `CLIENT ID`). The answer
//! ([`Input::AsideChecked`]) decides, within the same PING deadline
//! (`sent + timeout`, which a check never extends):
//!
//! - [`AsideVerdict::Busy`] before the deadline: the connection is alive and
//!   busy. The verdict counts as a sign of life at the time it came (no round
//!   trip is measured), so the next heartbeat follows `interval` later, and
//!   [`Event::BusyConfirmed`] tells the user; [`SupervisorHealth::busy_since`] says
//!   since when, until a reply on the connection itself (a late pong
//!   included) ends the busy spell.
//! - [`AsideVerdict::Gone`]: the server no longer has the connection (it is
//!   half-open): it is lost at once, cause [`FailureKind::Closed`].
//! - [`AsideVerdict::Unreachable`]: the side connection got no answer: a miss
//!   at once, exactly as the deadline would have counted it (and with
//!   `misses_allowed` 0, the connection is declared dead).
//! - No verdict by the deadline (or a `Busy` after it): a miss, as without a
//!   check.
//!
//! A pong that comes first settles the probe as usual, and the verdict is
//! then ignored. So a hung server is still noticed within the bound above,
//! a busy one is never declared dead while its side check answers `Busy` in
//! time, and a half-open connection with work in flight is noticed within
//! `interval + timeout` of its cut.
//!
//! # Reconnecting
//!
//! Reconnect delays come from [`Backoff`]. A Ready connection that breaks
//! is retried at once (no delay before the first attempt), once per stable
//! period; the backoff sequence is reset, and the attempt at once earned
//! again, only when the lost connection had stayed Ready for
//! `backoff_reset_after`, so a server that accepts and then dies at once
//! does not earn instant retries forever. When the backoff policy gives up (max attempts or max elapsed), the
//! supervisor reports [`Event::GaveUp`] and shuts down for good.
//!
//! The steady-state path (one input, one poll) does not allocate: outputs wait
//! in a queue whose capacity is reserved at construction and which one input
//! never overfills.

use alloc::collections::VecDeque;
use core::fmt;
use core::time::Duration;

use crate::backoff::{Backoff, BackoffPolicy};
use crate::cause::{AttemptFailure, ConnectCause, Evidence};
use crate::error::ConfigError;
use crate::failover::FailoverSignal;
use crate::failure::{BusyReason, FailureKind};
use crate::time::{millis, Timestamp};

/// Connectivity states (gRPC's model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum State {
    /// Not started: no connection and no attempt.
    Idle,
    /// A connection attempt is in flight.
    Connecting,
    /// Connected, and the heartbeat says the server is alive.
    Ready,
    /// No connection; the next attempt is scheduled.
    TransientFailure,
    /// Stopped for good (asked to, or the backoff policy gave up).
    Shutdown,
}

impl State {
    /// A short stable name for logs and bindings.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting => "connecting",
            State::Ready => "ready",
            State::TransientFailure => "transient_failure",
            State::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Heartbeat settings: how long a connection may stay silent before it is
/// probed, and how long a probe may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    /// Silence after which a PING is sent.
    #[serde(with = "crate::duration::human")]
    pub interval: Duration,
    /// How long a PING may go unanswered before it counts as a miss.
    #[serde(with = "crate::duration::human")]
    pub timeout: Duration,
    /// Misses in a row tolerated; one more and the connection is declared dead.
    pub misses_allowed: u32,
}

impl Default for HeartbeatConfig {
    /// 1 s interval, 1 s timeout, no miss tolerated: a hung server is noticed
    /// within 2 s of its last reply.
    fn default() -> Self {
        HeartbeatConfig {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            misses_allowed: 0,
        }
    }
}

impl HeartbeatConfig {
    /// The longest a hung connection can go undetected after its last reply:
    /// `interval + (misses_allowed + 1) × timeout`.
    pub fn detection_bound(&self) -> Duration {
        let misses = self.misses_allowed.saturating_add(1);
        self.interval
            .saturating_add(self.timeout.saturating_mul(misses))
    }
}

/// Everything the supervisor needs to decide.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct SupervisorConfig {
    /// Delays between connection attempts.
    pub backoff: BackoffPolicy,
    /// Liveness probing of a Ready connection.
    pub heartbeat: HeartbeatConfig,
    /// How long one connection attempt (including its handshake) may take.
    #[serde(with = "crate::duration::human")]
    pub connect_timeout: Duration,
    /// How long a connection must stay Ready before its loss restarts the
    /// backoff sequence from the initial delay (and earns the attempt at
    /// once after a loss again: see [Reconnecting](self#reconnecting)).
    #[serde(with = "crate::duration::human")]
    pub backoff_reset_after: Duration,
    /// Delays between attempts while the last one failed for a cause that
    /// retrying will not fix ([`ConnectCause::is_misconfiguration`]: a
    /// wrong password, a peer that is not Redis): slower than `backoff`, so
    /// a wrong password does not hammer the server. The longer of the two
    /// delays is waited, and `backoff`'s limits still apply.
    pub misconfigured_backoff: BackoffPolicy,
    /// The longest wait after an attempt that was refused, while the
    /// outage is young: nothing listens on the port (the server is down or
    /// restarting, its host up: a refusal costs one RST), or the server
    /// answered that it is not ready yet (`LOADING` its dataset, `BUSY`
    /// with a script, a replica not yet promoted): the server's return, or
    /// the end of its load, is noticed within this delay however far the
    /// backoff has grown. As the outage ages the cap decays ([`refused_cap`]:
    /// 1/20 of the outage so far, and its square over 200 s once longer), so a
    /// client averages at most 2 attempts a second over a 60 s outage; except
    /// for a server `LOADING` its dataset, which is up and polled at this
    /// steady pace until it is ready. Other failures wait the backoff's
    /// delay.
    #[serde(with = "crate::duration::human")]
    pub refused_max_delay: Duration,
    /// The longest writes are held back on the word of a failover in
    /// progress ([`Input::Failover`]) with no further word of it: a bound
    /// for a failover whose end was never heard (the sentinels'
    /// subscription lost mid-way). Each signal of the failover restarts it.
    /// (Serialized only when it differs from the default.)
    #[serde(
        with = "crate::duration::human",
        skip_serializing_if = "SupervisorConfig::is_default_failover_hold"
    )]
    pub failover_hold: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            backoff: BackoffPolicy::default(),
            heartbeat: HeartbeatConfig::default(),
            connect_timeout: Duration::from_secs(2),
            backoff_reset_after: Duration::from_secs(10),
            misconfigured_backoff: SupervisorConfig::default_misconfigured_backoff(),
            refused_max_delay: Duration::from_millis(100),
            failover_hold: SupervisorConfig::DEFAULT_FAILOVER_HOLD,
        }
    }
}

impl SupervisorConfig {
    /// How long a TLS handshake may take inside one connect attempt: half
    /// the connect timeout. A handshake that gets no answer at all (TLS
    /// spoken to a plain Redis port, which waits for a line that never
    /// comes) then ends while the attempt still has time to find out why,
    /// so it is told as a TLS misconfiguration and not as a timeout.
    pub fn handshake_timeout(&self) -> Duration {
        self.connect_timeout / 2
    }

    /// Sets the backoff policy.
    pub fn backoff(mut self, policy: BackoffPolicy) -> Self {
        self.backoff = policy;
        self
    }

    /// Sets the heartbeat settings.
    pub fn heartbeat(mut self, heartbeat: HeartbeatConfig) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a connection must stay Ready to reset the backoff.
    pub fn backoff_reset_after(mut self, after: Duration) -> Self {
        self.backoff_reset_after = after;
        self
    }

    /// Sets the backoff used while misconfigured.
    pub fn misconfigured_backoff(mut self, policy: BackoffPolicy) -> Self {
        self.misconfigured_backoff = policy;
        self
    }

    /// Sets the longest wait after a refused attempt.
    pub fn refused_max_delay(mut self, delay: Duration) -> Self {
        self.refused_max_delay = delay;
        self
    }

    /// The default [`failover_hold`](Self::failover_hold): 15 s, longer
    /// than a failover takes with Sentinel's usual settings once it has
    /// begun, far shorter than its `failover-timeout`.
    pub const DEFAULT_FAILOVER_HOLD: Duration = Duration::from_secs(15);

    fn is_default_failover_hold(d: &Duration) -> bool {
        *d == Self::DEFAULT_FAILOVER_HOLD
    }

    /// Sets the longest hold of writes on the word of a failover.
    pub fn failover_hold(mut self, hold: Duration) -> Self {
        self.failover_hold = hold;
        self
    }

    /// The default [`misconfigured_backoff`](Self::misconfigured_backoff):
    /// exponential from 1 s, ×2, at most 30 s, equal jitter, no limit.
    pub fn default_misconfigured_backoff() -> BackoffPolicy {
        BackoffPolicy::default()
            .initial_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(30))
    }

    /// Checks every field; the error names the first one that makes no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.backoff.validate()?;
        self.misconfigured_backoff.validate().map_err(|e| {
            let field = e.field();
            ConfigError::invalid("misconfigured_backoff", alloc::format!("{field}: {e}"))
        })?;
        let positive = [
            ("heartbeat.interval", self.heartbeat.interval),
            ("heartbeat.timeout", self.heartbeat.timeout),
            ("connect_timeout", self.connect_timeout),
            ("refused_max_delay", self.refused_max_delay),
            ("failover_hold", self.failover_hold),
        ];
        for (field, d) in positive {
            if d < Duration::from_millis(1) {
                return Err(ConfigError::invalid(field, "must be at least 1ms"));
            }
        }
        Ok(())
    }

    /// [`validate`](Self::validate)s and returns the config.
    pub fn build(self) -> Result<Self, ConfigError> {
        self.validate().map(|()| self)
    }
}

/// What the driver reports to the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Input {
    /// Begin connecting (from Idle; ignored elsewhere).
    Start,
    /// Attempt `attempt` produced a ready connection (handshake done).
    Connected {
        /// The attempt number from [`Action::Connect`].
        attempt: u32,
    },
    /// Attempt `attempt` failed.
    ConnectFailed {
        /// The attempt number from [`Action::Connect`].
        attempt: u32,
        /// Why it failed ([`ConnectCause::from_error`] reads it from an
        /// error code and message; [`ConnectCause::from_kind`] from a
        /// [`FailureKind`]). Also accepted as `kind` in serde form.
        #[serde(alias = "kind")]
        cause: ConnectCause,
        /// The server's words or the peer's first bytes, redacted; may be
        /// empty. Passed on in [`Event::ConnectAttemptFailed`] and
        /// [`SupervisorHealth::last_attempt_failure`].
        #[serde(default)]
        evidence: Evidence,
    },
    /// The PING asked for by [`Action::SendPing`] with this `id` was answered.
    Pong {
        /// The id from [`Action::SendPing`].
        id: u64,
    },
    /// The PING asked for by [`Action::SendPing`] with this `id` failed:
    /// with an error reply (`-BUSY`, `-LOADING`: the server answered, so it
    /// is alive), or on the connection (which then may be dead). The core
    /// decides what it proves; a PING that simply has no answer yet is
    /// judged by the heartbeat timeout, not reported.
    PingFailed {
        /// The id from [`Action::SendPing`].
        id: u64,
        /// Why it failed.
        kind: FailureKind,
    },
    /// Some reply (or any bytes from the server) arrived on the
    /// connection: proof the server is alive. Give it the time the evidence
    /// came, which may be earlier than now: evidence from before the
    /// outstanding PING was sent does not answer that PING.
    Activity,
    /// A command failed; if the failure kills the connection, it is replaced.
    CommandFailed {
        /// Why it failed.
        kind: FailureKind,
    },
    /// The connection broke (EOF, reset, write error).
    ConnectionLost {
        /// How it broke.
        kind: FailureKind,
    },
    /// The server this connection reaches is no longer the one to use (a
    /// Sentinel announced a new master): reconnect at once, without waiting
    /// a backoff delay, since nothing is wrong with the servers themselves.
    ServerMoved,
    /// A step of a failover of the server's master, as Redis Sentinel
    /// announced it ([`failover::sentinel_signal`](crate::failover::sentinel_signal)).
    /// While a failover is in progress (from the master objectively down or
    /// a failover started, until the switch, an abort, the master back up
    /// before any failover began, or [`SupervisorConfig::failover_hold`]
    /// without further word), writes are held back:
    /// [`SupervisorHealth::failover_since`] says since when, and a call told
    /// so ([`CallInput::WritesHeld`](crate::call::CallInput::WritesHeld))
    /// waits instead of writing to a master that is being replaced.
    Failover {
        /// What the sentinels announced.
        signal: FailoverSignal,
    },
    /// Stop for good: close the connection, schedule nothing more.
    Shutdown,
    /// The configuration changed (new credentials): an attempt waiting out
    /// a backoff delay is made at once, one in flight (with the old
    /// settings) is abandoned and made again, and the misconfiguration
    /// flag and its slow backoff are cleared. A Ready connection is kept
    /// (the driver applies the change to it).
    Reconfigured,
    /// Commands were in flight on the connection when the PING of
    /// [`Action::SendPing`] with this `id` was sent, so the PING may be
    /// queued behind them. Answered with [`Action::CheckAside`]. Only the
    /// current probe, while Ready and before its deadline, is checked; any
    /// other is ignored.
    WorkOutstanding {
        /// The id from [`Action::SendPing`].
        id: u64,
    },
    /// The answer to [`Action::CheckAside`] with this `id`. Ignored unless
    /// that check is the one pending (a pong that came first settles the
    /// probe; a `Busy` after the probe's deadline comes too late).
    AsideChecked {
        /// The id from [`Action::CheckAside`].
        id: u64,
        /// What the side connection found.
        verdict: AsideVerdict,
    },
}

/// What a check from the side ([`Action::CheckAside`]) found out about the
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AsideVerdict {
    /// The server answered and still has the connection: blocked, running a
    /// script, paused. It is alive, only busy. (A side answer of `-BUSY` or
    /// `-LOADING`, a script running, is reported as this.)
    Busy,
    /// The server answered and does not have the connection: it is
    /// half-open, dead.
    Gone,
    /// The side connection failed or got no answer in time: the server may be
    /// hung or unreachable.
    Unreachable {
        /// How the side connection failed; the cause reported if this miss
        /// kills the connection.
        kind: FailureKind,
    },
}

/// Something the driver must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Open a connection; report [`Input::Connected`] or [`Input::ConnectFailed`]
    /// with this attempt number.
    Connect {
        /// Attempt number within the current outage, from 1.
        attempt: u32,
    },
    /// Send a PING on the current connection; report [`Input::Pong`] with `id`.
    SendPing {
        /// Identifies this probe.
        id: u64,
    },
    /// Drop the current connection, or abandon the attempt in flight (a
    /// connection the abandoned attempt still produces must be dropped too).
    Disconnect,
    /// Check the current connection from the side: on a short-lived separate
    /// connection, ask the server whether it still knows this connection
    /// (by its `CLIENT ID`, with `CLIENT LIST ID <id>`), and report
    /// [`Input::AsideChecked`] with `id`. Asked in answer to
    /// [`Input::WorkOutstanding`]; a driver that cannot check may ignore it
    /// (the probe is then judged by its deadline alone).
    CheckAside {
        /// The id of the probe ([`Action::SendPing`]) being checked.
        id: u64,
    },
}

/// Something that happened, for the user to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The state changed.
    StateChanged {
        /// The previous state.
        from: State,
        /// The new state.
        to: State,
    },
    /// The first connection is up.
    Connected {
        /// Attempts it took.
        attempts: u32,
    },
    /// A connection is up again after an outage.
    Reconnected {
        /// From the loss of the previous connection to this one being ready.
        #[serde(with = "millis")]
        downtime: Duration,
        /// Attempts it took.
        attempts: u32,
    },
    /// A Ready connection was lost.
    Disconnected {
        /// What killed it.
        cause: FailureKind,
    },
    /// The next connection attempt is scheduled.
    ReconnectScheduled {
        /// Its attempt number.
        attempt: u32,
        /// After how long.
        #[serde(with = "millis")]
        delay: Duration,
    },
    /// A heartbeat PING went unanswered for the heartbeat timeout, or the
    /// side check of a PING found the server unreachable.
    HeartbeatMissed {
        /// Misses in a row so far.
        misses: u32,
    },
    /// A heartbeat PING is queued behind work, and the server confirmed from
    /// the side that it still has the connection: alive, only busy. Once
    /// per confirming check (at most once per heartbeat); the spell ends
    /// with the next reply on the connection, which clears
    /// [`SupervisorHealth::busy_since`].
    BusyConfirmed {
        /// How long the connection has been busy: since the first PING of
        /// this busy spell was sent.
        #[serde(with = "millis")]
        busy_for: Duration,
    },
    /// A connection attempt failed. Every failed attempt is told, the
    /// first connect's as well as a reconnect's, before what follows it
    /// ([`Event::ReconnectScheduled`] or [`Event::GaveUp`]).
    ConnectAttemptFailed {
        /// The attempt, its cause and the evidence.
        failure: AttemptFailure,
        /// The cause is one retrying will not fix
        /// ([`ConnectCause::is_misconfiguration`]): the slow backoff applies.
        misconfigured: bool,
        /// When the next attempt is made (`None`: the policy gave up).
        #[serde(with = "opt_millis")]
        retry_in: Option<Duration>,
    },
    /// The server moved ([`Input::ServerMoved`]: a Sentinel announced a new
    /// master): the connection (or the attempt in flight, or the wait for
    /// the next one) is replaced by an attempt at once. Told before the
    /// [`Event::Disconnected`] (cause [`FailureKind::Moved`]) it leads to
    /// when a connection was up.
    ServerMoved,
    /// The sentinels announced a failover of the master in progress: writes
    /// are held back from now on ([`SupervisorHealth::failover_since`]).
    FailoverStarted {
        /// The announcement that began it.
        signal: FailoverSignal,
    },
    /// Writes are no longer held back: the master moved, the failover was
    /// aborted, the master came back before one began, or no word came for
    /// [`SupervisorConfig::failover_hold`].
    FailoverEnded {
        /// How long writes were held.
        #[serde(with = "millis")]
        held_for: Duration,
        /// The hold ran out without word of the failover's end.
        expired: bool,
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

/// One thing [`Supervisor::poll_output`] hands the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// A snapshot of the supervisor's view of the connection, on the driver's
/// clock. (The native client publishes its own `relink::Health`, with
/// `Instant`s, built from this one.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct SupervisorHealth {
    /// The current state.
    pub state: State,
    /// When it was entered.
    pub since: Timestamp,
    /// The current or last connection attempt number in this outage (0 before any).
    pub attempt: u32,
    /// The most recent failure, if any.
    pub last_failure: Option<FailureKind>,
    /// Heartbeat misses in a row on the current connection.
    pub heartbeat_misses: u32,
    /// Round-trip time of the last answered heartbeat PING.
    #[serde(with = "opt_millis")]
    pub rtt: Option<Duration>,
    /// When the next connection attempt is due (TransientFailure only).
    pub next_attempt_at: Option<Timestamp>,
    /// Ready and busy: heartbeat PINGs are queued behind work that the
    /// server confirms from the side it is still running
    /// ([`Event::BusyConfirmed`]), since the first such PING was sent. `None`
    /// otherwise; the next reply on the connection ends it.
    pub busy_since: Option<Timestamp>,
    /// The latest failed connection attempt of this outage (or of the
    /// first connect), with its cause and evidence; `None` once Ready.
    pub last_attempt_failure: Option<AttemptFailure>,
    /// The latest attempt failed for a cause retrying will not fix
    /// ([`ConnectCause::is_misconfiguration`]): attempts go on, on the slow
    /// [`SupervisorConfig::misconfigured_backoff`], and commands fail at
    /// once instead of waiting. Cleared by [`Input::Reconfigured`] and by
    /// any attempt that fails otherwise or succeeds.
    pub misconfigured: bool,
    /// Since when a failover of the master is in progress and writes are
    /// held back (see [`Input::Failover`]); `None` otherwise. (Serialized
    /// only when set.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_since: Option<Timestamp>,
}

mod opt_millis {
    use core::time::Duration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => crate::time::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// Writes held back while a failover is in progress.
#[derive(Debug, Clone, Copy)]
struct Hold {
    since: Timestamp,
    /// The last word of the failover: the hold ends `failover_hold` after it.
    last: Timestamp,
    /// A failover step was announced (not only the master objectively down).
    started: bool,
}

/// An outstanding heartbeat PING.
#[derive(Debug, Clone, Copy)]
struct Probe {
    id: u64,
    sent: Timestamp,
    /// A [`Action::CheckAside`] was asked for and its verdict is pending.
    checking: bool,
}

/// How the cap on the wait after a refused attempt decays as an outage of
/// length `a` ages ([`SupervisorConfig::refused_max_delay`]): it is at least
/// `a / REFUSED_DECAY`, and at least `a² /` [`REFUSED_LATE_DECAY`] (see
/// [`refused_cap`]).
///
/// A capped wait is jittered (half the cap plus up to half), so it averages
/// 3/4 of the cap, and a server that comes back is noticed after about 0.37
/// of the cap (median). With the 100 ms floor:
///
/// - up to 2 s of outage the cap is 100 ms (its end noticed within about
///   37 ms, median); at 3 s it is 150 ms (55 ms); at 10 s 500 ms;
/// - the linear term keeps that short-outage pace; from 10 s on the square
///   takes over (2 s at 20 s, 4.5 s at 30 s, then the backoff's own
///   `max_delay`, 5 s by default), so the attempts of a long outage thin
///   out: a 60 s outage costs about 2 / 0.075 + (20 / 0.75)·ln 5 +
///   (200 s / 0.75)·(1/10 s − 1/31.6 s) + 28.4 s / 3.75 s ≈ 95 attempts,
///   1.6 a second, where the linear term alone would cost 117.
pub const REFUSED_DECAY: u32 = 20;

/// See [`REFUSED_DECAY`]: the cap after a refusal is at least `a²` divided
/// by this, `a` the outage so far.
pub const REFUSED_LATE_DECAY: Duration = Duration::from_secs(200);

/// The cap on the wait after a refused attempt, `outage` into an outage:
/// the longest of `floor` ([`SupervisorConfig::refused_max_delay`]),
/// `outage / REFUSED_DECAY` and `outage² / REFUSED_LATE_DECAY`, in whole
/// milliseconds. Why this shape: [`REFUSED_DECAY`].
pub fn refused_cap(floor: Duration, outage: Duration) -> Duration {
    // u64 arithmetic (u128's division is a kilobyte of code in the wasm
    // engine); the square saturates only past 49 days of outage.
    let a = u64::try_from(outage.as_millis()).unwrap_or(u64::MAX);
    let late = u64::try_from(REFUSED_LATE_DECAY.as_millis()).unwrap_or(u64::MAX);
    let linear = a / u64::from(REFUSED_DECAY);
    let square = a.saturating_mul(a) / late;
    floor.max(Duration::from_millis(linear.max(square)))
}

/// The most outputs one input (plus the timers it makes due) can queue:
/// a heartbeat miss that kills the connection queues five.
const OUTPUT_CAPACITY: usize = 10;

/// The connectivity state machine. See the [module docs](self) for the driving loop.
///
/// Methods: getters ([`state`](Self::state), [`health`](Self::health),
/// [`config`](Self::config)); one input ([`handle_input`](Self::handle_input));
/// one output ([`poll_output`](Self::poll_output)).
#[derive(Debug, Clone)]
pub struct Supervisor {
    config: SupervisorConfig,
    backoff: Backoff,
    state: State,
    since: Timestamp,
    attempt: u32,
    last_failure: Option<FailureKind>,
    /// Connecting: when the attempt in flight times out.
    connect_deadline: Timestamp,
    /// TransientFailure: when the next attempt starts.
    next_attempt_at: Timestamp,
    /// When the current outage (or the very first connect) began.
    outage_start: Timestamp,
    /// Whether a connection was ever Ready (tells Connected from Reconnected).
    was_ready: bool,
    ready_since: Timestamp,
    /// The attempt at once after a lost connection was made, and no
    /// connection has stayed Ready for `backoff_reset_after` since: the
    /// next loss waits a backoff delay (a flapping server earns one).
    at_once_spent: bool,
    last_rx: Timestamp,
    probe: Option<Probe>,
    next_probe_id: u64,
    misses: u32,
    rtt: Option<Duration>,
    /// Ready: since when the connection is confirmed busy (see [`SupervisorHealth::busy_since`]).
    busy_since: Option<Timestamp>,
    /// Delays while misconfigured (see [`SupervisorHealth::misconfigured`]).
    misconfigured_backoff: Backoff,
    /// Jitter of the capped wait after a refusal (see [`schedule_attempt`](Self::schedule_attempt)).
    rng: crate::rng::SplitMix64,
    last_attempt_failure: Option<AttemptFailure>,
    misconfigured: bool,
    /// A failover is in progress: writes are held back.
    hold: Option<Hold>,
    out: VecDeque<Output>,
}

impl Supervisor {
    /// A supervisor in [`State::Idle`]. `seed` drives the backoff jitter: give
    /// every client its own (from the OS, `crypto.getRandomValues`, ...), or
    /// a fixed one for reproducible tests.
    ///
    /// Call [`SupervisorConfig::validate`] first to reject nonsense with an
    /// error; here, durations below 1 ms are raised to 1 ms so that every
    /// deadline lies in the future and a driver's drain loop always ends.
    pub fn new(mut config: SupervisorConfig, seed: u64) -> Self {
        let at_least_1ms = |d: Duration| d.max(Duration::from_millis(1));
        config.connect_timeout = at_least_1ms(config.connect_timeout);
        config.heartbeat.interval = at_least_1ms(config.heartbeat.interval);
        config.heartbeat.timeout = at_least_1ms(config.heartbeat.timeout);
        Supervisor {
            backoff: Backoff::new(config.backoff.clone(), seed),
            misconfigured_backoff: Backoff::new(
                config.misconfigured_backoff.clone(),
                seed.rotate_left(32) ^ 0x6d69_7363_6f6e_6667,
            ),
            rng: crate::rng::SplitMix64::new(seed ^ 0x7265_6675_7365_6421),
            last_attempt_failure: None,
            misconfigured: false,
            hold: None,
            config,
            state: State::Idle,
            since: Timestamp::ZERO,
            attempt: 0,
            last_failure: None,
            connect_deadline: Timestamp::MAX,
            next_attempt_at: Timestamp::MAX,
            outage_start: Timestamp::ZERO,
            was_ready: false,
            ready_since: Timestamp::ZERO,
            at_once_spent: false,
            last_rx: Timestamp::ZERO,
            probe: None,
            next_probe_id: 1,
            misses: 0,
            rtt: None,
            busy_since: None,
            out: VecDeque::with_capacity(OUTPUT_CAPACITY),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The config it runs with.
    pub fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    /// A snapshot of the current health.
    pub fn health(&self) -> SupervisorHealth {
        SupervisorHealth {
            state: self.state,
            since: self.since,
            attempt: self.attempt,
            last_failure: self.last_failure,
            heartbeat_misses: self.misses,
            rtt: self.rtt,
            next_attempt_at: (self.state == State::TransientFailure)
                .then_some(self.next_attempt_at),
            busy_since: self.busy_since.filter(|_| self.state == State::Ready),
            last_attempt_failure: self.last_attempt_failure,
            misconfigured: self.misconfigured,
            failover_since: self.hold.map(|h| h.since),
        }
    }

    /// Feeds one input that happened at `now`. Inputs that make no sense in
    /// the current state (a pong while connecting, the result of an attempt
    /// that was abandoned, anything after shutdown) are ignored.
    pub fn handle_input(&mut self, now: Timestamp, input: Input) {
        match (self.state, input) {
            (State::Shutdown, _) => {}
            (_, Input::Shutdown) => {
                if matches!(self.state, State::Connecting | State::Ready) {
                    self.push(Output::Action(Action::Disconnect));
                }
                self.end_hold(now, false);
                self.set_state(now, State::Shutdown);
            }
            (State::Idle, Input::Start) => {
                self.outage_start = now;
                self.start_attempt(now);
            }
            (State::Connecting, Input::Connected { attempt }) if attempt == self.attempt => {
                self.become_ready(now);
            }
            (
                State::Connecting,
                Input::ConnectFailed {
                    attempt,
                    cause,
                    evidence,
                },
            ) if attempt == self.attempt => {
                self.attempt_failed(now, cause, evidence);
            }
            (State::Connecting | State::TransientFailure, Input::Reconfigured) => {
                self.misconfigured = false;
                self.misconfigured_backoff.reset();
                if self.state == State::Connecting {
                    // The attempt in flight uses the old settings.
                    self.push(Output::Action(Action::Disconnect));
                }
                self.attempt_at_once(now);
            }
            (State::Ready, Input::Pong { id }) => {
                if let Some(probe) = self.probe.filter(|p| p.id == id) {
                    self.rtt = Some(now.saturating_since(probe.sent));
                }
                self.alive(now);
            }
            (State::Ready, Input::PingFailed { id, kind }) => {
                if kind.kills_connection() {
                    self.lose_connection(now, kind);
                } else if kind.is_reply() {
                    // An error reply to PING is still a reply.
                    if let Some(probe) = self.probe.filter(|p| p.id == id) {
                        self.rtt = Some(now.saturating_since(probe.sent));
                    }
                    self.alive(now);
                }
            }
            (State::Ready, Input::Activity) => {
                // Evidence is stamped when it came and may be told late (a
                // driver feeds it at its next turn): what came before the
                // outstanding PING left cannot answer it. (In the PING's
                // own millisecond it may have come after: it counts.)
                if self.probe.is_some_and(|p| now < p.sent) {
                    self.last_rx = self.last_rx.max(now);
                } else {
                    self.alive(now);
                }
            }
            (State::Ready, Input::CommandFailed { kind }) => {
                if kind.kills_connection() {
                    self.lose_connection(now, kind);
                } else if kind.is_reply() {
                    // An error reply is a reply: the server is alive.
                    self.alive(now);
                }
            }
            (State::Ready, Input::ConnectionLost { kind }) => self.lose_connection(now, kind),
            (State::Ready, Input::WorkOutstanding { id }) => {
                let deadline = self.probe_deadline();
                if let Some(probe) = self.probe.as_mut() {
                    if probe.id == id && !probe.checking && now < deadline {
                        probe.checking = true;
                        self.push(Output::Action(Action::CheckAside { id }));
                    }
                }
            }
            (State::Ready, Input::AsideChecked { id, verdict }) => {
                let Some(probe) = self.probe.filter(|p| p.id == id && p.checking) else {
                    return;
                };
                match verdict {
                    AsideVerdict::Busy => {
                        // Too late: the deadline has passed, the miss is due.
                        if now <= self.probe_deadline() {
                            self.confirmed_busy(now, probe);
                        }
                    }
                    AsideVerdict::Gone => self.lose_connection(now, FailureKind::Closed),
                    AsideVerdict::Unreachable { kind } => self.miss(now, kind),
                }
            }
            (State::Idle, _) => {}
            (_, Input::Failover { signal }) => self.failover(now, signal),
            (State::Connecting | State::TransientFailure, Input::ServerMoved) => {
                self.push(Output::Event(Event::ServerMoved));
                self.end_hold(now, false);
                if self.state == State::Connecting {
                    // The attempt in flight may be on its way to the old master.
                    self.push(Output::Action(Action::Disconnect));
                }
                // Whatever the backoff said: the new master is known now.
                self.attempt_at_once(now);
            }
            (State::Ready, Input::ServerMoved) => {
                let cause = FailureKind::Moved;
                self.note_ready_lost(now);
                self.push(Output::Event(Event::ServerMoved));
                self.end_hold(now, false);
                self.push(Output::Action(Action::Disconnect));
                self.push(Output::Event(Event::Disconnected { cause }));
                self.last_failure = Some(cause);
                self.probe = None;
                self.misses = 0;
                self.busy_since = None;
                self.attempt = 0;
                self.outage_start = now;
                // The first attempt is immediate and draws no backoff delay;
                // if the new server is not ready yet, the backoff takes over.
                self.attempt_at_once(now);
            }
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
        let hold = self.hold_deadline();
        match (self.state_deadline(), hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When the hold of writes runs out without further word.
    fn hold_deadline(&self) -> Option<Timestamp> {
        self.hold
            .filter(|_| self.state != State::Shutdown)
            .map(|h| h.last + self.config.failover_hold)
    }

    /// The deadline of the connectivity state, if any.
    fn state_deadline(&self) -> Option<Timestamp> {
        match self.state {
            State::Idle | State::Shutdown => None,
            State::Connecting => Some(self.connect_deadline),
            State::TransientFailure => Some(self.next_attempt_at),
            State::Ready => Some(match self.probe {
                None => self.last_rx + self.config.heartbeat.interval,
                Some(_) => self.probe_deadline(),
            }),
        }
    }

    /// When the outstanding probe counts as a miss ([`Timestamp::MAX`]: none outstanding).
    fn probe_deadline(&self) -> Timestamp {
        self.probe.map_or(Timestamp::MAX, |probe| {
            probe.sent + self.config.heartbeat.timeout
        })
    }

    fn handle_timers(&mut self, now: Timestamp) {
        if self.hold_deadline().is_some_and(|d| now >= d) {
            self.end_hold(now, true);
        }
        let Some(deadline) = self.state_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        match self.state {
            State::Connecting => {
                self.push(Output::Action(Action::Disconnect));
                self.attempt_failed(now, ConnectCause::Timeout, Evidence::EMPTY);
            }
            State::TransientFailure => self.start_attempt(now),
            State::Ready => match self.probe {
                None => self.send_probe(now),
                Some(_) => self.miss(now, FailureKind::Timeout),
            },
            State::Idle | State::Shutdown => {}
        }
    }

    /// The outstanding probe failed (unanswered by its deadline, or its side
    /// check found the server unreachable): one more miss, and either the
    /// connection is dead (of `cause`) or another probe goes out at once.
    fn miss(&mut self, now: Timestamp, cause: FailureKind) {
        self.misses = self.misses.saturating_add(1);
        self.push(Output::Event(Event::HeartbeatMissed {
            misses: self.misses,
        }));
        if self.misses > self.config.heartbeat.misses_allowed {
            self.lose_connection(now, cause);
        } else {
            self.send_probe(now);
        }
    }

    fn send_probe(&mut self, now: Timestamp) {
        let id = self.next_probe_id;
        self.next_probe_id = self.next_probe_id.wrapping_add(1);
        self.probe = Some(Probe {
            id,
            sent: now,
            checking: false,
        });
        self.push(Output::Action(Action::SendPing { id }));
    }

    /// Evidence of life on the connection itself: the silence clock restarts,
    /// misses are forgiven, and a busy spell is over.
    fn alive(&mut self, now: Timestamp) {
        self.last_rx = self.last_rx.max(now);
        self.probe = None;
        self.misses = 0;
        self.busy_since = None;
    }

    /// The side check says the probe is queued behind work on a connection
    /// the server still has: a sign of life at `now` (no round trip is
    /// measured), and the connection is busy since the first such probe.
    fn confirmed_busy(&mut self, now: Timestamp, probe: Probe) {
        self.last_rx = self.last_rx.max(now);
        self.probe = None;
        self.misses = 0;
        let since = *self.busy_since.get_or_insert(probe.sent);
        self.push(Output::Event(Event::BusyConfirmed {
            busy_for: now.saturating_since(since),
        }));
    }

    fn start_attempt(&mut self, now: Timestamp) {
        self.attempt = self.attempt.saturating_add(1);
        self.connect_deadline = now + self.config.connect_timeout;
        self.set_state(now, State::Connecting);
        self.push(Output::Action(Action::Connect {
            attempt: self.attempt,
        }));
    }

    /// The attempt in flight failed: tell it, then wait (on the slow
    /// schedule when retrying alone will not fix it) or give up.
    fn attempt_failed(&mut self, now: Timestamp, cause: ConnectCause, evidence: Evidence) {
        self.last_failure = Some(cause.kind());
        let failure = AttemptFailure {
            attempt: self.attempt,
            cause,
            evidence,
        };
        self.last_attempt_failure = Some(failure);
        // A host name that resolved before and does not now (a container
        // restarting, a pod not ready yet) is an outage; at the very first
        // connect, a typo in the URL.
        let vanished = self.was_ready && cause == ConnectCause::UnknownHost;
        self.misconfigured = cause.is_misconfiguration() && !vanished;
        if !self.misconfigured {
            self.misconfigured_backoff.reset();
        }
        // Told first; what follows it (scheduled, or gave up) comes next.
        let at = self.out.len();
        let refused = matches!(
            cause,
            ConnectCause::Refused | ConnectCause::ServerBusy(_) | ConnectCause::NotMaster
        );
        let cap = refused.then(|| {
            if cause == ConnectCause::ServerBusy(BusyReason::Loading) {
                // The server is up and says how it is doing: polled at a
                // steady pace, its load's end is noticed within the cap
                // however long the outage before it.
                return self.config.refused_max_delay;
            }
            refused_cap(
                self.config.refused_max_delay,
                now.saturating_since(self.outage_start),
            )
        });
        let retry_at = self.schedule_attempt(now, cap);
        self.out.insert(
            at,
            Output::Event(Event::ConnectAttemptFailed {
                failure,
                misconfigured: self.misconfigured,
                retry_in: retry_at.map(|t| t.saturating_since(now)),
            }),
        );
    }

    fn become_ready(&mut self, now: Timestamp) {
        self.last_attempt_failure = None;
        self.misconfigured = false;
        self.misconfigured_backoff.reset();
        self.ready_since = now;
        self.last_rx = now;
        self.probe = None;
        self.misses = 0;
        self.busy_since = None;
        self.set_state(now, State::Ready);
        let attempts = self.attempt;
        self.push(Output::Event(if self.was_ready {
            Event::Reconnected {
                downtime: now.saturating_since(self.outage_start),
                attempts,
            }
        } else {
            Event::Connected { attempts }
        }));
        self.was_ready = true;
    }

    fn lose_connection(&mut self, now: Timestamp, cause: FailureKind) {
        self.push(Output::Action(Action::Disconnect));
        self.push(Output::Event(Event::Disconnected { cause }));
        self.note_ready_lost(now);
        self.last_failure = Some(cause);
        self.probe = None;
        self.misses = 0;
        self.busy_since = None;
        self.attempt = 0;
        self.outage_start = now;
        if !core::mem::replace(&mut self.at_once_spent, true) {
            // A Ready connection just broke: most such losses (a
            // connection killed or timed out by a proxy or an operator, a
            // restart that is already over) are mended by connecting again
            // at once, so the first attempt waits no delay; if it fails,
            // the backoff takes over. Once per stable period: a server
            // that keeps accepting and dropping connections earns it once,
            // then waits the growing delays.
            self.attempt_at_once(now);
        } else {
            self.schedule_attempt(now, None);
        }
    }

    /// A Ready connection is lost (broken, or its server moved): if it had
    /// stayed Ready for `backoff_reset_after`, the backoff starts over and
    /// the attempt at once after a loss is earned again.
    fn note_ready_lost(&mut self, now: Timestamp) {
        if now.saturating_since(self.ready_since) >= self.config.backoff_reset_after {
            self.backoff.reset();
            self.at_once_spent = false;
        }
    }

    /// The next attempt is made now, without a backoff delay (nothing is
    /// known to be wrong with the server); the backoff takes over if it fails.
    fn attempt_at_once(&mut self, now: Timestamp) {
        self.next_attempt_at = now;
        self.set_state(now, State::TransientFailure);
        self.push(Output::Event(Event::ReconnectScheduled {
            attempt: self.attempt.saturating_add(1),
            delay: Duration::ZERO,
        }));
    }

    /// After a failure: wait the next backoff delay (the longer of the two
    /// while misconfigured; at most `cap`), or give up. Returns when the
    /// next attempt is due.
    ///
    /// A delay cut to `cap` is jittered anew each time (equal jitter: half
    /// the cap, plus up to half): clients that lost the same server at the
    /// same instant would otherwise keep the phase of their first delay
    /// and arrive together when it is back.
    fn schedule_attempt(&mut self, now: Timestamp, cap: Option<Duration>) -> Option<Timestamp> {
        let elapsed = now.saturating_since(self.outage_start);
        let mut delay = self.backoff.next_delay(elapsed);
        if let (Some(d), Some(cap)) = (delay, cap) {
            if d > cap {
                let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
                let half = cap_ms / 2;
                let jittered = (cap_ms - half) + self.rng.range_inclusive(0, half);
                delay = Some(Duration::from_millis(jittered));
            }
        }
        if self.misconfigured {
            delay = match (delay, self.misconfigured_backoff.next_delay(elapsed)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        match delay {
            Some(delay) => {
                self.next_attempt_at = now + delay;
                self.set_state(now, State::TransientFailure);
                self.push(Output::Event(Event::ReconnectScheduled {
                    attempt: self.attempt.saturating_add(1),
                    delay,
                }));
                Some(self.next_attempt_at)
            }
            None => {
                self.push(Output::Event(Event::GaveUp {
                    attempts: self.attempt,
                    elapsed,
                }));
                self.end_hold(now, false);
                self.set_state(now, State::Shutdown);
                None
            }
        }
    }

    /// One announced step of a failover: hold writes from the master
    /// objectively down or a failover's first step; let them go at the
    /// switch (see [`Input::ServerMoved`]; a switch to the master already
    /// in use comes as [`FailoverSignal::Switched`]), at an abort, or when
    /// the master is back up before any failover began. The end of a
    /// failover keeps holding: the switch follows it, and until then the
    /// old master may still take writes that the promotion discards.
    fn failover(&mut self, now: Timestamp, signal: FailoverSignal) {
        match signal {
            FailoverSignal::MasterDown | FailoverSignal::Started | FailoverSignal::Ended => {
                let started = signal != FailoverSignal::MasterDown;
                match self.hold.as_mut() {
                    Some(hold) => {
                        hold.last = now;
                        hold.started |= started;
                    }
                    None => {
                        self.hold = Some(Hold {
                            since: now,
                            last: now,
                            started,
                        });
                        self.push(Output::Event(Event::FailoverStarted { signal }));
                    }
                }
            }
            FailoverSignal::MasterUp if self.hold.is_some_and(|h| !h.started) => {
                self.end_hold(now, false);
            }
            FailoverSignal::Aborted | FailoverSignal::Switched => self.end_hold(now, false),
            _ => {}
        }
    }

    fn end_hold(&mut self, now: Timestamp, expired: bool) {
        if let Some(hold) = self.hold.take() {
            self.push(Output::Event(Event::FailoverEnded {
                held_for: now.saturating_since(hold.since),
                expired,
            }));
        }
    }

    fn set_state(&mut self, now: Timestamp, to: State) {
        if self.state != to {
            let from = self.state;
            self.state = to;
            self.since = now;
            self.push(Output::Event(Event::StateChanged { from, to }));
        }
    }

    fn push(&mut self, output: Output) {
        self.out.push_back(output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(sup: &mut Supervisor, now: Timestamp) -> alloc::vec::Vec<Output> {
        let mut out = alloc::vec::Vec::new();
        for _ in 0..16 {
            let o = sup.poll_output(now);
            out.push(o);
            if matches!(o, Output::Timeout(_) | Output::Idle) {
                break;
            }
        }
        out
    }

    /// Plays an outage of refused attempts from 15 s (a connection up since
    /// 5 ms is lost) until `until`, each answered when asked for; returns
    /// the wait the supervisor chose after the last one, answered with
    /// `cause` instead, and the attempts made.
    fn wait_after(cause: ConnectCause, until: u64) -> Duration {
        outage(cause, until).0
    }

    fn outage(cause: ConnectCause, until: u64) -> (Duration, u32) {
        let mut sup = Supervisor::new(SupervisorConfig::default(), 3);
        let t = Timestamp::from_millis;
        sup.handle_input(t(0), Input::Start);
        drain(&mut sup, t(0));
        sup.handle_input(t(5), Input::Connected { attempt: 1 });
        drain(&mut sup, t(5));
        sup.handle_input(
            t(15_005),
            Input::ConnectionLost {
                kind: FailureKind::Io,
            },
        );
        let mut now = 15_005;
        let mut attempts = 0;
        // Bounded: one attempt per iteration, each at least 100 ms apart.
        for _ in 0..10_000 {
            let mut out = drain(&mut sup, t(now));
            let asked = out.iter().find_map(|o| match o {
                Output::Action(Action::Connect { attempt }) => Some(*attempt),
                _ => None,
            });
            if let Some(attempt) = asked {
                attempts += 1;
                let last = now >= until;
                let answer = if last { cause } else { ConnectCause::Refused };
                sup.handle_input(
                    t(now),
                    Input::ConnectFailed {
                        attempt,
                        cause: answer,
                        evidence: Evidence::default(),
                    },
                );
                out = drain(&mut sup, t(now));
                let retry_in = out.iter().find_map(|o| match o {
                    Output::Event(Event::ConnectAttemptFailed { retry_in, .. }) => *retry_in,
                    _ => None,
                });
                if last {
                    return (retry_in.expect("a retry is scheduled"), attempts);
                }
            }
            now = match out.last() {
                Some(Output::Timeout(at)) => at.as_millis().max(now + 1),
                _ => now + 1,
            };
        }
        panic!("no attempt after {until} ms");
    }

    #[test]
    fn a_long_outage_costs_at_most_two_attempts_a_second() {
        // A minute of refusals (nothing listening), with the defaults.
        let (_, attempts) = outage(ConnectCause::Refused, 15_005 + 60_000);
        assert!(attempts <= 120, "{attempts} attempts in 60 s");
        // Yet the first seconds are polled fast (a restart is noticed soon).
        let (_, early) = outage(ConnectCause::Refused, 15_005 + 1_000);
        assert!(early >= 8, "{early} attempts in the first second");
    }

    #[test]
    fn a_loading_server_is_polled_steadily_however_old_the_outage() {
        // 20 s into an outage, a refused port is retried on the decayed cap
        // (about 1.3 s, jittered)...
        let refused = wait_after(ConnectCause::Refused, 35_000);
        assert!(refused > Duration::from_millis(500), "{refused:?}");
        // ... but a server that answers LOADING is up: within 100 ms.
        let loading = wait_after(ConnectCause::ServerBusy(BusyReason::Loading), 35_000);
        assert!(loading <= Duration::from_millis(100), "{loading:?}");
    }

    #[test]
    fn a_moved_server_is_reconnected_to_at_once() {
        let mut sup = Supervisor::new(SupervisorConfig::default(), 1);
        let t = Timestamp::from_millis;
        sup.handle_input(t(0), Input::Start);
        drain(&mut sup, t(0));
        sup.handle_input(t(5), Input::Connected { attempt: 1 });
        drain(&mut sup, t(5));
        sup.handle_input(t(100), Input::ServerMoved);
        let out = drain(&mut sup, t(100));
        assert!(out.contains(&Output::Action(Action::Disconnect)));
        assert!(out.contains(&Output::Event(Event::ReconnectScheduled {
            attempt: 1,
            delay: Duration::ZERO
        })));
        // No time passes: the attempt is made in the same drain.
        assert!(
            out.contains(&Output::Action(Action::Connect { attempt: 1 })),
            "{out:?}"
        );
        assert!(out.contains(&Output::Event(Event::ServerMoved)), "{out:?}");
        assert!(out.contains(&Output::Event(Event::Disconnected {
            cause: FailureKind::Moved
        })));
        // While connecting: the attempt in flight (perhaps to the old
        // master) is abandoned and made again at once.
        sup.handle_input(t(101), Input::ServerMoved);
        let out = drain(&mut sup, t(101));
        assert!(out.contains(&Output::Action(Action::Disconnect)), "{out:?}");
        assert!(
            out.contains(&Output::Action(Action::Connect { attempt: 2 })),
            "{out:?}"
        );
        assert_eq!(sup.state(), State::Connecting);
    }

    #[test]
    fn a_move_after_a_stable_period_starts_the_backoff_over() {
        // No jitter, no refusal cap: the delays show the backoff's position.
        let config = SupervisorConfig::default()
            .backoff(
                BackoffPolicy::default()
                    .initial_delay(Duration::from_millis(100))
                    .jitter(crate::backoff::Jitter::None),
            )
            .refused_max_delay(Duration::from_secs(3600));
        let mut sup = Supervisor::new(config, 1);
        let t = Timestamp::from_millis;
        let timeout_failure = |attempt| Input::ConnectFailed {
            attempt,
            cause: ConnectCause::Timeout,
            evidence: Evidence::default(),
        };
        sup.handle_input(t(0), Input::Start);
        drain(&mut sup, t(0));
        // Three failures grow the backoff to 400 ms.
        let mut now = 0;
        for attempt in 1..=3 {
            sup.handle_input(t(now + 1), timeout_failure(attempt));
            drain(&mut sup, t(now + 1));
            now = sup.health().next_attempt_at.expect("scheduled").as_millis();
            drain(&mut sup, t(now));
        }
        sup.handle_input(t(now + 1), Input::Connected { attempt: 4 });
        drain(&mut sup, t(now + 1));
        // Ready for longer than backoff_reset_after (10 s), then moved.
        let moved = now + 20_000;
        sup.handle_input(t(moved), Input::ServerMoved);
        drain(&mut sup, t(moved));
        sup.handle_input(t(moved + 1), timeout_failure(1));
        let out = drain(&mut sup, t(moved + 1));
        assert!(
            out.contains(&Output::Event(Event::ReconnectScheduled {
                attempt: 2,
                delay: Duration::from_millis(100)
            })),
            "the backoff starts over after a stable period: {out:?}"
        );
    }

    #[test]
    fn a_move_announced_in_the_middle_of_a_backoff_wait_is_followed_at_once() {
        let config = SupervisorConfig::default().backoff(
            BackoffPolicy::default()
                .initial_delay(Duration::from_secs(2))
                .max_delay(Duration::from_secs(2))
                .jitter(crate::Jitter::None),
        );
        let mut sup = ready(config);
        let t = Timestamp::from_millis;
        // A master killed: lost, one attempt at once fails, a 2 s wait begins.
        sup.handle_input(
            t(20_000),
            Input::ConnectionLost {
                kind: FailureKind::Closed,
            },
        );
        drain(&mut sup, t(20_000));
        sup.handle_input(
            t(20_001),
            Input::ConnectFailed {
                attempt: 1,
                cause: ConnectCause::Io,
                evidence: Evidence::EMPTY,
            },
        );
        drain(&mut sup, t(20_001));
        assert_eq!(sup.state(), State::TransientFailure);
        assert_eq!(sup.next_deadline(), Some(t(22_001)));
        // The switch is announced 100 ms into the wait: the attempt is made now.
        sup.handle_input(t(20_101), Input::ServerMoved);
        let out = drain(&mut sup, t(20_101));
        assert!(out.contains(&Output::Event(Event::ServerMoved)), "{out:?}");
        assert!(
            out.contains(&Output::Action(Action::Connect { attempt: 2 })),
            "{out:?}"
        );
        // No connection was up: nothing is told as lost.
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Event(Event::Disconnected { .. }))),
            "{out:?}"
        );
    }

    /// A Ready supervisor (connected at 5 ms).
    fn ready(config: SupervisorConfig) -> Supervisor {
        let mut sup = Supervisor::new(config, 1);
        let t = Timestamp::from_millis;
        sup.handle_input(t(0), Input::Start);
        drain(&mut sup, t(0));
        sup.handle_input(t(5), Input::Connected { attempt: 1 });
        drain(&mut sup, t(5));
        sup
    }

    fn signal(sup: &mut Supervisor, at: u64, signal: FailoverSignal) -> alloc::vec::Vec<Output> {
        let t = Timestamp::from_millis(at);
        sup.handle_input(t, Input::Failover { signal });
        drain(sup, t)
    }

    #[test]
    fn writes_are_held_from_a_failovers_start_until_the_switch() {
        let mut sup = ready(SupervisorConfig::default());
        let t = Timestamp::from_millis;
        // One sentinel's view decides nothing.
        signal(&mut sup, 100, FailoverSignal::MasterSubjectivelyDown);
        assert_eq!(sup.health().failover_since, None);
        let out = signal(&mut sup, 200, FailoverSignal::Started);
        assert!(out.contains(&Output::Event(Event::FailoverStarted {
            signal: FailoverSignal::Started
        })));
        assert_eq!(sup.health().failover_since, Some(t(200)));
        // The connection stays: reads still go to it.
        assert_eq!(sup.state(), State::Ready);
        // Its end is not the switch: the old master may still take writes.
        signal(&mut sup, 300, FailoverSignal::Ended);
        assert_eq!(sup.health().failover_since, Some(t(200)));
        // A master back up in the middle of a failover does not end it.
        signal(&mut sup, 350, FailoverSignal::MasterUp);
        assert_eq!(sup.health().failover_since, Some(t(200)));
        sup.handle_input(t(400), Input::ServerMoved);
        let out = drain(&mut sup, t(400));
        assert!(out.contains(&Output::Event(Event::FailoverEnded {
            held_for: Duration::from_millis(200),
            expired: false
        })));
        assert_eq!(sup.health().failover_since, None);
    }

    #[test]
    fn a_hold_ends_at_an_abort_a_master_back_a_switch_in_place_or_its_bound() {
        let hold = Duration::from_secs(3);
        // A quiet heartbeat: the hold's bound is the only timer here.
        let heartbeat = HeartbeatConfig {
            interval: Duration::from_secs(60),
            ..HeartbeatConfig::default()
        };
        let mut sup = ready(
            SupervisorConfig::default()
                .failover_hold(hold)
                .heartbeat(heartbeat),
        );
        let t = Timestamp::from_millis;
        signal(&mut sup, 100, FailoverSignal::MasterDown);
        assert_eq!(sup.health().failover_since, Some(t(100)));
        // Back before any failover began: over.
        signal(&mut sup, 200, FailoverSignal::MasterUp);
        assert_eq!(sup.health().failover_since, None);
        signal(&mut sup, 300, FailoverSignal::Started);
        signal(&mut sup, 400, FailoverSignal::Aborted);
        assert_eq!(sup.health().failover_since, None);
        // A switch to the master already in use.
        signal(&mut sup, 500, FailoverSignal::Started);
        signal(&mut sup, 600, FailoverSignal::Switched);
        assert_eq!(sup.health().failover_since, None);
        // No word after the last step: the hold runs out `hold` after it.
        signal(&mut sup, 1_000, FailoverSignal::Started);
        signal(&mut sup, 2_000, FailoverSignal::Started);
        assert_eq!(sup.health().failover_since, Some(t(1_000)));
        assert!(sup.next_deadline().is_some_and(|d| d <= t(5_000)));
        drain(&mut sup, t(4_999));
        assert_eq!(sup.health().failover_since, Some(t(1_000)));
        let ended = drain(&mut sup, t(5_000));
        assert!(
            ended.contains(&Output::Event(Event::FailoverEnded {
                held_for: Duration::from_millis(4_000),
                expired: true
            })),
            "{ended:?}"
        );
        assert_eq!(sup.health().failover_since, None);
        // Signals before the first connect or after shutdown change nothing.
        let mut idle = Supervisor::new(SupervisorConfig::default(), 1);
        idle.handle_input(
            t(0),
            Input::Failover {
                signal: FailoverSignal::Started,
            },
        );
        assert_eq!(idle.health().failover_since, None);
        sup.handle_input(t(6_000), Input::Shutdown);
        drain(&mut sup, t(6_000));
        signal(&mut sup, 6_001, FailoverSignal::Started);
        assert_eq!(sup.health().failover_since, None);
        assert_eq!(sup.next_deadline(), None);
    }

    #[test]
    fn an_error_reply_to_ping_proves_the_server_alive() {
        let hb = HeartbeatConfig::default();
        let mut sup = Supervisor::new(SupervisorConfig::default(), 1);
        let t = Timestamp::from_millis;
        sup.handle_input(t(0), Input::Start);
        drain(&mut sup, t(0));
        sup.handle_input(t(5), Input::Connected { attempt: 1 });
        drain(&mut sup, t(5));
        // Quiet for the interval: a PING is asked for.
        let at = t(5 + hb.interval.as_millis() as u64);
        let out = drain(&mut sup, at);
        let Some(id) = out.iter().find_map(|o| match o {
            Output::Action(Action::SendPing { id }) => Some(*id),
            _ => None,
        }) else {
            panic!("no ping in {out:?}");
        };
        // A script is running: PING is answered -BUSY. That is an answer.
        let busy = FailureKind::ServerBusy(BusyReason::Busy);
        sup.handle_input(at, Input::PingFailed { id, kind: busy });
        let later = at.saturating_add(hb.timeout + Duration::from_millis(1));
        drain(&mut sup, later);
        assert_eq!(sup.state(), State::Ready, "a -BUSY reply is no miss");
        assert_eq!(sup.health().heartbeat_misses, 0);
        // A broken connection under the PING is lost at once.
        let out = drain(&mut sup, t(10_000));
        let id = out
            .iter()
            .find_map(|o| match o {
                Output::Action(Action::SendPing { id }) => Some(*id),
                _ => None,
            })
            .unwrap_or(id);
        sup.handle_input(
            t(10_000),
            Input::PingFailed {
                id,
                kind: FailureKind::Closed,
            },
        );
        assert_eq!(sup.state(), State::Connecting, "lost, and retried at once");
    }

    // --- liveness of a busy connection -----------------------------------

    const T: fn(u64) -> Timestamp = Timestamp::from_millis;

    /// interval 1000 ms, timeout 500 ms; Ready at 5 ms; `SendPing { id: 1 }`
    /// at 1005 ms.
    fn pinging(misses_allowed: u32) -> Supervisor {
        let config = SupervisorConfig::default().heartbeat(HeartbeatConfig {
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(500),
            misses_allowed,
        });
        let mut sup = Supervisor::new(config, 1);
        sup.handle_input(T(0), Input::Start);
        drain(&mut sup, T(0));
        sup.handle_input(T(5), Input::Connected { attempt: 1 });
        drain(&mut sup, T(5));
        let out = drain(&mut sup, T(1005));
        assert!(
            out.contains(&Output::Action(Action::SendPing { id: 1 })),
            "{out:?}"
        );
        sup
    }

    fn feed(sup: &mut Supervisor, at: u64, input: Input) -> alloc::vec::Vec<Output> {
        sup.handle_input(T(at), input);
        drain(sup, T(at))
    }

    fn checked(id: u64, verdict: AsideVerdict) -> Input {
        Input::AsideChecked { id, verdict }
    }

    #[test]
    fn work_outstanding_asks_for_one_side_check_of_the_current_probe() {
        let mut sup = pinging(0);
        // Not the current probe: ignored.
        assert_eq!(
            feed(&mut sup, 1006, Input::WorkOutstanding { id: 7 }),
            [Output::Timeout(T(1505))]
        );
        let out = feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
        assert_eq!(
            out,
            [
                Output::Action(Action::CheckAside { id: 1 }),
                Output::Timeout(T(1505))
            ],
            "the check does not move the PING's deadline"
        );
        // Asked once per probe.
        assert_eq!(
            feed(&mut sup, 1007, Input::WorkOutstanding { id: 1 }),
            [Output::Timeout(T(1505))]
        );

        // Too late to check: the deadline has come.
        let mut sup = pinging(0);
        let out = feed(&mut sup, 1505, Input::WorkOutstanding { id: 1 });
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Action(Action::CheckAside { .. }))),
            "{out:?}"
        );
        assert_eq!(
            sup.state(),
            State::Connecting,
            "the miss came instead (lost, and retried at once)"
        );

        // No probe outstanding (it was answered), or not Ready: ignored.
        let mut sup = pinging(0);
        feed(&mut sup, 1010, Input::Pong { id: 1 });
        assert_eq!(
            feed(&mut sup, 1011, Input::WorkOutstanding { id: 1 }),
            [Output::Timeout(T(2010))]
        );
        let mut idle = Supervisor::new(SupervisorConfig::default(), 1);
        assert_eq!(
            feed(&mut idle, 1, Input::WorkOutstanding { id: 1 }),
            [Output::Idle]
        );
        idle.handle_input(T(2), Input::Start);
        drain(&mut idle, T(2));
        let out = feed(&mut idle, 3, Input::WorkOutstanding { id: 1 });
        assert_eq!(
            out.len(),
            1,
            "connecting: nothing but the deadline: {out:?}"
        );
    }

    #[test]
    fn busy_before_the_deadline_is_alive_and_no_miss() {
        let mut sup = pinging(0);
        feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
        let out = feed(&mut sup, 1100, checked(1, AsideVerdict::Busy));
        assert_eq!(
            out,
            [
                Output::Event(Event::BusyConfirmed {
                    busy_for: Duration::from_millis(95)
                }),
                // Activity at the verdict: the next heartbeat an interval later.
                Output::Timeout(T(2100)),
            ]
        );
        let h = sup.health();
        assert_eq!(h.busy_since, Some(T(1005)), "since the busy PING was sent");
        assert_eq!(
            (h.heartbeat_misses, h.rtt),
            (0, None),
            "no round trip measured"
        );
        // The PING's deadline passes: no miss.
        assert_eq!(drain(&mut sup, T(1505)), [Output::Timeout(T(2100))]);
        assert_eq!(sup.state(), State::Ready);
        // The next heartbeat, busy again: the spell goes on.
        assert_eq!(
            drain(&mut sup, T(2100)),
            [
                Output::Action(Action::SendPing { id: 2 }),
                Output::Timeout(T(2600))
            ]
        );
        feed(&mut sup, 2100, Input::WorkOutstanding { id: 2 });
        let out = feed(&mut sup, 2600, checked(2, AsideVerdict::Busy));
        assert_eq!(
            out,
            [
                Output::Event(Event::BusyConfirmed {
                    busy_for: Duration::from_millis(1595)
                }),
                Output::Timeout(T(3600)),
            ],
            "a verdict at the deadline itself still counts"
        );
        assert_eq!(sup.health().busy_since, Some(T(1005)));
        // The late pong of the first PING: the work is done, the spell is over.
        assert_eq!(
            feed(&mut sup, 3000, Input::Pong { id: 1 }),
            [Output::Timeout(T(4000))]
        );
        let h = sup.health();
        assert_eq!((h.busy_since, h.rtt, h.state), (None, None, State::Ready));
    }

    #[test]
    fn any_reply_on_the_connection_ends_a_busy_spell() {
        for reply in [
            Input::Activity,
            Input::Pong { id: 99 },
            Input::CommandFailed {
                kind: FailureKind::Command,
            },
        ] {
            let mut sup = pinging(0);
            feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
            feed(&mut sup, 1100, checked(1, AsideVerdict::Busy));
            assert!(sup.health().busy_since.is_some());
            feed(&mut sup, 1200, reply);
            assert_eq!(sup.health().busy_since, None, "{reply:?}");
        }
        // And a lost connection is not busy.
        let mut sup = pinging(0);
        feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
        feed(&mut sup, 1100, checked(1, AsideVerdict::Busy));
        feed(
            &mut sup,
            1200,
            Input::ConnectionLost {
                kind: FailureKind::Io,
            },
        );
        assert_eq!(sup.health().busy_since, None);
    }

    #[test]
    fn gone_loses_the_connection_at_once() {
        let mut sup = pinging(3);
        feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
        let out = feed(&mut sup, 1040, checked(1, AsideVerdict::Gone));
        assert_eq!(out[0], Output::Action(Action::Disconnect));
        assert_eq!(
            out[1],
            Output::Event(Event::Disconnected {
                cause: FailureKind::Closed
            }),
            "misses allowed or not: the server says it is gone"
        );
        assert_eq!(sup.state(), State::Connecting, "lost, and retried at once");
        assert_eq!(sup.health().last_failure, Some(FailureKind::Closed));
    }

    #[test]
    fn evidence_from_before_a_ping_left_does_not_answer_it() {
        // The PING left at 1005 (deadline 1505). A read stamped at 1004,
        // told late, leaves it outstanding: the miss comes at its deadline.
        let mut sup = pinging(1);
        sup.handle_input(T(1004), Input::Activity);
        let out = drain(&mut sup, T(1505));
        assert_eq!(out[0], Output::Event(Event::HeartbeatMissed { misses: 1 }));
        // One stamped after it answers it: no miss.
        let mut sup = pinging(1);
        sup.handle_input(T(1006), Input::Activity);
        let out = drain(&mut sup, T(1505));
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Event(Event::HeartbeatMissed { .. }))),
            "{out:?}"
        );
    }

    #[test]
    fn unreachable_is_a_miss_at_once() {
        // No miss allowed: dead at once, of the side connection's failure.
        let mut sup = pinging(0);
        feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
        let kind = FailureKind::Io;
        let out = feed(
            &mut sup,
            1200,
            checked(1, AsideVerdict::Unreachable { kind }),
        );
        assert_eq!(out[0], Output::Event(Event::HeartbeatMissed { misses: 1 }));
        assert_eq!(out[1], Output::Action(Action::Disconnect));
        assert_eq!(out[2], Output::Event(Event::Disconnected { cause: kind }));
        assert_eq!(sup.state(), State::Connecting, "lost, and retried at once");

        // One allowed: a miss, and the next PING at once, with its own deadline.
        let mut sup = pinging(1);
        feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
        let kind = FailureKind::Timeout;
        let out = feed(
            &mut sup,
            1200,
            checked(1, AsideVerdict::Unreachable { kind }),
        );
        assert_eq!(
            out,
            [
                Output::Event(Event::HeartbeatMissed { misses: 1 }),
                Output::Action(Action::SendPing { id: 2 }),
                Output::Timeout(T(1700)),
            ]
        );
        // Nothing more at the first PING's deadline.
        assert_eq!(drain(&mut sup, T(1505)), [Output::Timeout(T(1700))]);
        assert_eq!(sup.health().heartbeat_misses, 1);
    }

    #[test]
    fn no_verdict_by_the_deadline_is_a_miss_and_a_late_one_is_ignored() {
        let mut sup = pinging(1);
        feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
        let out = drain(&mut sup, T(1505));
        assert_eq!(
            out,
            [
                Output::Event(Event::HeartbeatMissed { misses: 1 }),
                Output::Action(Action::SendPing { id: 2 }),
                Output::Timeout(T(2005)),
            ]
        );
        for verdict in [
            AsideVerdict::Busy,
            AsideVerdict::Gone,
            AsideVerdict::Unreachable {
                kind: FailureKind::Io,
            },
        ] {
            assert_eq!(
                feed(&mut sup, 1600, checked(1, verdict)),
                [Output::Timeout(T(2005))]
            );
        }
        assert_eq!(sup.health().heartbeat_misses, 1);

        // A Busy that arrives after the deadline, before the driver woke up
        // for it, is too late too; the miss comes.
        let mut sup = pinging(0);
        feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
        let out = feed(&mut sup, 1506, checked(1, AsideVerdict::Busy));
        assert_eq!(
            out[0],
            Output::Event(Event::HeartbeatMissed { misses: 1 }),
            "{out:?}"
        );
        assert_eq!(sup.state(), State::Connecting, "lost, and retried at once");
    }

    #[test]
    fn a_pong_first_settles_the_probe_and_the_verdict_is_ignored() {
        let mut sup = pinging(0);
        feed(&mut sup, 1006, Input::WorkOutstanding { id: 1 });
        feed(&mut sup, 1010, Input::Pong { id: 1 });
        assert_eq!(sup.health().rtt, Some(Duration::from_millis(5)));
        for verdict in [
            AsideVerdict::Gone,
            AsideVerdict::Busy,
            AsideVerdict::Unreachable {
                kind: FailureKind::Timeout,
            },
        ] {
            assert_eq!(
                feed(&mut sup, 1040, checked(1, verdict)),
                [Output::Timeout(T(2010))]
            );
        }
        let h = sup.health();
        assert_eq!(
            (h.state, h.busy_since, h.heartbeat_misses),
            (State::Ready, None, 0)
        );
    }

    #[test]
    fn a_verdict_nobody_asked_for_is_ignored() {
        let mut sup = pinging(0);
        // The probe is current, but no check was asked for it.
        for verdict in [
            AsideVerdict::Gone,
            AsideVerdict::Busy,
            AsideVerdict::Unreachable {
                kind: FailureKind::Io,
            },
        ] {
            assert_eq!(
                feed(&mut sup, 1100, checked(1, verdict)),
                [Output::Timeout(T(1505))]
            );
        }
        // A check is pending, but for another id.
        feed(&mut sup, 1101, Input::WorkOutstanding { id: 1 });
        assert_eq!(
            feed(&mut sup, 1102, checked(2, AsideVerdict::Gone)),
            [Output::Timeout(T(1505))]
        );
        assert_eq!(sup.state(), State::Ready);
        // After the connection is gone, a verdict changes nothing.
        feed(
            &mut sup,
            1103,
            Input::ConnectionLost {
                kind: FailureKind::Io,
            },
        );
        let before = sup.health();
        feed(&mut sup, 1104, checked(1, AsideVerdict::Gone));
        assert_eq!(sup.health(), before);
    }

    #[test]
    fn the_new_shapes_in_serde() {
        let input = Input::AsideChecked {
            id: 3,
            verdict: AsideVerdict::Unreachable {
                kind: FailureKind::Timeout,
            },
        };
        let json = serde_json::to_string(&input).unwrap();
        assert_eq!(
            json,
            r#"{"type":"aside_checked","id":3,"verdict":{"type":"unreachable","kind":"timeout"}}"#
        );
        assert_eq!(serde_json::from_str::<Input>(&json).unwrap(), input);
        assert_eq!(
            serde_json::to_string(&Input::WorkOutstanding { id: 3 }).unwrap(),
            r#"{"type":"work_outstanding","id":3}"#
        );
        assert_eq!(
            serde_json::to_string(&AsideVerdict::Busy).unwrap(),
            r#"{"type":"busy"}"#
        );
        assert_eq!(
            serde_json::to_string(&Action::CheckAside { id: 3 }).unwrap(),
            r#"{"type":"check_aside","id":3}"#
        );
        assert_eq!(
            serde_json::to_string(&Event::BusyConfirmed {
                busy_for: Duration::from_millis(1500)
            })
            .unwrap(),
            r#"{"type":"busy_confirmed","busy_for":1500}"#
        );
    }
}
