//! The per-call policy: the decision half of every command.
//!
//! A driver runs one [`Call`] per command (or pipeline). It tells the call
//! what it sees — a connection is there, none is, the attempt failed with a
//! [`FailureKind`] and a [`Delivery`], the server redirected it, the backlog
//! is full, the client shut down — and the call answers with a [`Decision`]:
//! send now (with the response timeout of this attempt), follow the redirect,
//! wait for a connection until a time, try again at a time, or fail with an
//! [`Outcome`] and a [`FailReason`].
//!
//! It owns every rule about one call and nothing else:
//!
//! - **the outage policy**: with no connection, fail fast, or hold a slot in
//!   the bounded backlog for at most `queue_wait` (counted over the whole
//!   call), looking again at growing steps so a driver that cannot be woken
//!   by a reconnect (a cluster slot that heals inside redis-rs) still sees it;
//! - **refusals** (`LOADING`, `BUSY`, `MASTERDOWN`, `TRYAGAIN`, `CLUSTERDOWN`:
//!   nothing was applied): waited out like an outage under the queue policy,
//!   retried after the `busy_backoff` delay under fail-fast;
//! - **retries** of a failure whose fate may be unknown: only when
//!   [`FailureKind::retry_safe`] allows it (a read, a declared idempotent
//!   write, or a command that certainly was not applied), at most
//!   `max_retries`, and only with the retry budget's consent;
//! - **redirects** (`MOVED`/`ASK`), followed at once up to `max_redirects`;
//! - **the deadline**: a total bound on the call — queueing, attempts,
//!   refusals and retries included. Every attempt's response timeout is the
//!   smaller of `response_timeout` and what is left of the deadline, so no
//!   call outlives its deadline.
//!
//! It knows nothing of connections, sockets, clocks or the shared retry
//! budget: the driver reads its clock, asks the budget and reports the answer.
//! A call does not allocate.
//!
//! ```
//! use relink_core::call::{Call, CallInput, CallPolicy, Decision};
//! use relink_core::{Delivery, FailureKind, Timestamp};
//!
//! let policy = CallPolicy::default();
//! let t = Timestamp::from_millis;
//! let mut call = Call::new(&policy, t(0), false, 7);
//! // A connection is there: send, with the attempt's response timeout.
//! assert!(matches!(call.decide(&policy, t(0), CallInput::Connected), Decision::Send { .. }));
//! // The connection died before the reply of this non-idempotent write.
//! let failed = CallInput::Failed { kind: FailureKind::Closed, delivery: Delivery::MaybeSent, budget_allows: true };
//! assert!(matches!(call.decide(&policy, t(3), failed), Decision::Fail { .. }));
//! ```

use core::fmt;
use core::time::Duration;

use crate::backoff::{Backoff, BackoffPolicy, Jitter, Strategy};
use crate::commands::Blocking;
use crate::error::ConfigError;
use crate::failure::{BusyReason, Delivery, FailureKind, Outcome};
use crate::time::Timestamp;

/// How every call of a client behaves: plain data, validated by
/// [`build`](Self::build).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CallPolicy {
    /// With no connection, how long a call may wait for one (over the whole
    /// call); `None` fails at once (fail-fast).
    #[serde(with = "crate::duration::human_opt")]
    pub queue_wait: Option<Duration>,
    /// Retries of a failed attempt at most; 0 never retries.
    pub max_retries: u32,
    /// `MOVED`/`ASK` redirects followed at most before the call counts as
    /// refused (`TRYAGAIN`).
    pub max_redirects: u32,
    /// How long one attempt may wait for its reply.
    #[serde(with = "crate::duration::human")]
    pub response_timeout: Duration,
    /// The total bound on a call: queueing, attempts and retries. `None`
    /// bounds a call only by `queue_wait`, the retries and their timeouts.
    #[serde(with = "crate::duration::human_opt")]
    pub deadline: Option<Duration>,
    /// The delays between looks at a refusing server (or a missing
    /// connection): the first after the first refusal, growing from there.
    pub busy_backoff: BackoffPolicy,
}

impl Default for CallPolicy {
    /// Queue for at most 5 s, 3 retries, 5 redirects, a 3 s response timeout,
    /// a 10 s deadline, and [`CallPolicy::default_busy_backoff`].
    fn default() -> Self {
        CallPolicy {
            queue_wait: Some(Self::DEFAULT_QUEUE_WAIT),
            max_retries: Self::DEFAULT_MAX_RETRIES,
            max_redirects: Self::DEFAULT_MAX_REDIRECTS,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            deadline: Some(Self::DEFAULT_DEADLINE),
            busy_backoff: Self::default_busy_backoff(),
        }
    }
}

impl CallPolicy {
    /// Default longest wait for a connection.
    pub const DEFAULT_QUEUE_WAIT: Duration = Duration::from_secs(5);
    /// Default retries per call.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
    /// Default redirects per call.
    pub const DEFAULT_MAX_REDIRECTS: u32 = 5;
    /// Default response timeout of one attempt.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default total bound of a call: a full backlog wait plus a full
    /// attempt fit, with room for a retry.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
    /// The most retries accepted.
    pub const MAX_RETRIES: u32 = 100;
    /// The most redirects accepted.
    pub const MAX_REDIRECTS: u32 = 100;

    /// Looks again after 10 ms, ×2, at most 250 ms, equal jitter: a
    /// `LOADING` or a failover is seen within a quarter second of its end,
    /// and a crowd of callers does not look in lockstep.
    pub fn default_busy_backoff() -> BackoffPolicy {
        BackoffPolicy::default()
            .strategy(Strategy::Exponential { multiplier: 2.0 })
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(250))
            .jitter(Jitter::Equal)
    }

    /// Sets [`queue_wait`](Self::queue_wait).
    pub fn queue_wait(mut self, wait: Option<Duration>) -> Self {
        self.queue_wait = wait;
        self
    }

    /// Sets [`max_retries`](Self::max_retries).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Sets [`max_redirects`](Self::max_redirects).
    pub fn max_redirects(mut self, n: u32) -> Self {
        self.max_redirects = n;
        self
    }

    /// Sets [`response_timeout`](Self::response_timeout).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets [`deadline`](Self::deadline).
    pub fn deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets [`busy_backoff`](Self::busy_backoff).
    pub fn busy_backoff(mut self, policy: BackoffPolicy) -> Self {
        self.busy_backoff = policy;
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue_wait.is_some_and(|w| w.as_millis() == 0) {
            return Err(ConfigError::invalid(
                "queue_wait",
                "must be at least 1ms; use none (fail fast) for no waiting",
            ));
        }
        if self.max_retries > Self::MAX_RETRIES {
            return Err(ConfigError::invalid("max_retries", "must be at most 100"));
        }
        if self.max_redirects > Self::MAX_REDIRECTS {
            return Err(ConfigError::invalid("max_redirects", "must be at most 100"));
        }
        if self.response_timeout.as_millis() == 0 {
            return Err(ConfigError::invalid(
                "response_timeout",
                "must be at least 1ms",
            ));
        }
        if self.deadline.is_some_and(|d| d.as_millis() == 0) {
            return Err(ConfigError::invalid(
                "deadline",
                "must be at least 1ms; use none for no total bound",
            ));
        }
        self.busy_backoff
            .validate()
            .map_err(|e| ConfigError::invalid("busy_backoff", alloc::format!("{e}")))
    }

    /// [`validate`](Self::validate)s and returns the policy.
    pub fn build(self) -> Result<Self, ConfigError> {
        self.validate().map(|()| self)
    }
}

/// What the driver saw, for [`Call::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallInput {
    /// A connection is there to send on.
    Connected,
    /// There is no connection (or none to the node this call must reach).
    NotConnected,
    /// There is no connection, and the supervisor's health says the last
    /// attempt failed for a cause retrying will not fix
    /// ([`SupervisorHealth::misconfigured`](crate::supervisor::SupervisorHealth::misconfigured)):
    /// no connection will come by waiting.
    Misconfigured,
    /// The driver could not give the call a backlog slot (after a
    /// [`Decision::Queue`]): the backlog is full.
    BacklogFull,
    /// The attempt failed. `budget_allows` is the retry budget's answer to
    /// this failure (the driver drains the shared budget once per failure).
    Failed {
        /// What went wrong, by the one classification.
        kind: FailureKind,
        /// How far the attempt got.
        delivery: Delivery,
        /// Whether the retry budget allows a retry now.
        budget_allows: bool,
    },
    /// The attempt's timeout (from [`Decision::Send`] or
    /// [`Decision::KeepWaiting`]) passed without its reply. The command is
    /// still in flight: a [`Decision::KeepWaiting`] keeps waiting for the
    /// same reply, anything else gives it up (its late reply is discarded).
    NoReply {
        /// Since the attempt was sent, the connection delivered something
        /// from the server (other replies, or part of this one) or the
        /// server confirmed it busy with it (a side check):
        /// the server is alive, the command slow (a `CLIENT PAUSE`, a long
        /// script), not lost.
        alive_since_sent: bool,
        /// The retry budget's answer, as for [`CallInput::Failed`]; read
        /// only when the reply is given up.
        budget_allows: bool,
    },
    /// The server answered `MOVED` or `ASK`: answered, not applied.
    Redirected,
    /// A connection is there, but the supervisor holds writes back: a
    /// failover of its master is in progress
    /// ([`SupervisorHealth::failover_since`](crate::supervisor::SupervisorHealth::failover_since)).
    /// A read-only call ([`Call::read_only`]) is sent; any other waits
    /// like a call with no connection (within the queue wait and the
    /// deadline), or fails at once, not applied, under fail-fast.
    WritesHeld,
    /// The client is shutting down.
    Shutdown,
}

/// What the driver does next with the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Decision {
    /// Send (again) on the connection; give up waiting for the reply after
    /// `timeout` and report [`CallInput::Failed`] with
    /// [`FailureKind::Timeout`].
    Send {
        /// This attempt's response timeout: the policy's, or less when the
        /// deadline is nearer; for a blocking command, the time to its
        /// deadline, and `Duration::MAX` (no limit) when it blocks forever.
        #[serde(with = "crate::time::millis")]
        timeout: Duration,
    },
    /// Keep waiting for the reply of the attempt in flight, for at most
    /// `timeout` more; then report [`CallInput::NoReply`] again.
    KeepWaiting {
        /// How much longer.
        #[serde(with = "crate::time::millis")]
        timeout: Duration,
    },
    /// Send to the node the redirect named, with this response timeout.
    Redirect {
        /// This attempt's response timeout.
        #[serde(with = "crate::time::millis")]
        timeout: Duration,
    },
    /// Hold a backlog slot (report [`CallInput::BacklogFull`] if none can be
    /// had) and wait for a connection, at most until `until`; then report
    /// what you see ([`CallInput::Connected`] or [`CallInput::NotConnected`]).
    Queue {
        /// When to look again at the latest.
        until: Timestamp,
    },
    /// Wait until `at`, then report what you see ([`CallInput::Connected`]
    /// or [`CallInput::NotConnected`]). `at` may be now: go again at once.
    RetryAt {
        /// When to try again.
        at: Timestamp,
    },
    /// The call is over without a reply to pass on.
    Fail {
        /// Why, and what the command may have done.
        failure: Failure,
    },
}

/// Why a call ended without a reply, and what it may have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// What the command may have done on the server.
    pub outcome: Outcome,
    /// Why the call ended.
    pub reason: FailReason,
    /// The failure of the last attempt, if there was one.
    pub kind: Option<FailureKind>,
}

/// Why a call ended without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailReason {
    /// No connection, and the policy is fail-fast.
    NotConnected,
    /// No connection, and the last attempt failed for a cause retrying will
    /// not fix (a wrong password, a peer that is not Redis): whatever the
    /// outage policy, a call does not wait for a connection that will not
    /// come.
    Misconfigured,
    /// No connection, and the backlog was full.
    BacklogFull,
    /// No connection came within `queue_wait`.
    QueueTimeout,
    /// The call's deadline passed.
    DeadlineExceeded,
    /// The client shut down.
    Shutdown,
    /// The server answered with an error: its verdict, passed on as it is.
    Rejected,
    /// The failure may have left the command applied, and it is not
    /// idempotent (or the failure is never retried: authentication).
    NotRetrySafe,
    /// `max_retries` retries were spent.
    RetriesExhausted,
    /// The retry budget refused a retry (most calls are failing).
    BudgetExhausted,
    /// A failover of the master is in progress and the policy is
    /// fail-fast: the write was not sent.
    FailoverInProgress,
}

impl FailReason {
    /// A short stable name for logs, metrics and bindings.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::NotConnected => "not_connected",
            FailReason::Misconfigured => "misconfigured",
            FailReason::BacklogFull => "backlog_full",
            FailReason::QueueTimeout => "queue_timeout",
            FailReason::DeadlineExceeded => "deadline_exceeded",
            FailReason::Shutdown => "shutdown",
            FailReason::Rejected => "rejected",
            FailReason::NotRetrySafe => "not_retry_safe",
            FailReason::RetriesExhausted => "retries_exhausted",
            FailReason::BudgetExhausted => "budget_exhausted",
            FailReason::FailoverInProgress => "failover_in_progress",
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One call's progress through the policy. Small, no allocation; create one
/// per command with [`Call::new`] and feed it with [`Call::decide`].
#[derive(Debug, Clone)]
pub struct Call {
    idempotent: bool,
    deadline: Option<Timestamp>,
    /// When the call first found itself without a connection (or refused).
    waiting_since: Option<Timestamp>,
    retries: u32,
    redirects: u32,
    /// Did an attempt fail in a way that may have left it applied?
    maybe_applied: bool,
    /// The last attempt's failure.
    last: Option<(FailureKind, Delivery)>,
    /// Steps between looks while waiting or refused; made on first need.
    steps: Option<Backoff>,
    seed: u64,
    /// How the call ended, once it has.
    ended: Option<Failure>,
    /// A blocking command: an attempt may take until the deadline.
    blocking: bool,
    /// Reads only: sent even while writes are held back.
    read_only: bool,
}

impl Call {
    /// A call started at `now`. `idempotent`: safe to apply twice (a read, or
    /// a write declared idempotent). `seed` spreads the jitter of waiting
    /// calls; any value will do (the driver's call count, a timestamp).
    /// The deadline is the policy's; see [`Call::with_deadline`].
    pub fn new(policy: &CallPolicy, now: Timestamp, idempotent: bool, seed: u64) -> Call {
        Call::with_deadline(now, idempotent, policy.deadline, seed)
    }

    /// Like [`Call::new`] with a deadline of its own (`None`: no total bound).
    pub fn with_deadline(
        now: Timestamp,
        idempotent: bool,
        deadline: Option<Duration>,
        seed: u64,
    ) -> Call {
        Call {
            idempotent,
            deadline: deadline.map(|d| now.saturating_add(d)),
            waiting_since: None,
            retries: 0,
            redirects: 0,
            maybe_applied: false,
            last: None,
            steps: None,
            seed,
            ended: None,
            blocking: false,
            read_only: false,
        }
    }

    /// A call of a blocking command (`BLPOP q 5`, `XREAD BLOCK 0 ...`, see
    /// [`commands::blocking`](crate::commands::blocking)): its deadline is its
    /// own block timeout plus the response timeout, and so is each attempt's
    /// time on the connection; blocking forever has neither (the
    /// connection's liveness is still checked by the heartbeat). A
    /// per-handle deadline does not apply: the command names its own.
    pub fn blocking(
        policy: &CallPolicy,
        now: Timestamp,
        idempotent: bool,
        blocking: Blocking,
        seed: u64,
    ) -> Call {
        let deadline = match blocking {
            Blocking::Forever => None,
            Blocking::For { timeout } => Some(timeout.saturating_add(policy.response_timeout)),
        };
        Call {
            blocking: true,
            ..Call::with_deadline(now, idempotent, deadline, seed)
        }
    }

    /// Marks the call as reads only (every command in it read-only by
    /// [`commands::is_read_only`](crate::commands::is_read_only)): it is sent
    /// while writes are held back ([`CallInput::WritesHeld`]).
    pub fn read_only(mut self, read_only: bool) -> Call {
        self.read_only = read_only;
        self
    }

    /// Tells the call what its commands are after it was made: `idempotent`
    /// as [`Call::with_deadline`] takes it, `read_only` as
    /// [`Call::read_only`]. For a driver that looks a command up only when
    /// a decision needs it: the decision for [`CallInput::Connected`]
    /// depends on neither, so a call sent on a healthy connection and
    /// answered never asks. It must come before any other input.
    pub fn classify(&mut self, idempotent: bool, read_only: bool) {
        debug_assert!(
            self.retries == 0
                && self.redirects == 0
                && self.last.is_none()
                && self.waiting_since.is_none()
                && self.ended.is_none(),
            "Call::classify after an input other than Connected"
        );
        self.idempotent = idempotent;
        self.read_only = read_only;
    }

    /// Is the call marked reads only ([`Call::read_only`], [`Call::classify`])?
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Retries spent so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Redirects followed so far.
    pub fn redirects(&self) -> u32 {
        self.redirects
    }

    /// The call's deadline, if it has one.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// Has the call ended (a [`Decision::Fail`] was given)? Every later input
    /// answers the same failure again.
    pub fn is_done(&self) -> bool {
        self.ended.is_some()
    }

    /// What to do next, given what the driver saw at `now`. `policy` must be
    /// the one the call was made with.
    pub fn decide(&mut self, policy: &CallPolicy, now: Timestamp, input: CallInput) -> Decision {
        if let Some(failure) = self.ended {
            return Decision::Fail { failure };
        }
        let decision = match input {
            CallInput::Shutdown => self.fail(FailReason::Shutdown),
            CallInput::Connected => self.send(policy, now, false),
            CallInput::WritesHeld if self.read_only => self.send(policy, now, false),
            CallInput::WritesHeld if policy.queue_wait.is_none() => {
                self.fail(FailReason::FailoverInProgress)
            }
            CallInput::WritesHeld => self.wait(policy, now, WaitKind::NoConnection),
            CallInput::NotConnected => self.queue(policy, now),
            CallInput::Misconfigured => self.fail(FailReason::Misconfigured),
            CallInput::BacklogFull => self.fail(FailReason::BacklogFull),
            CallInput::Redirected => {
                if self.redirects < policy.max_redirects {
                    let decision = self.send(policy, now, true);
                    // Only a redirect followed counts; one the deadline
                    // ended was not.
                    if let Decision::Redirect { .. } = decision {
                        self.redirects += 1;
                    }
                    decision
                } else {
                    // A slot that keeps moving: treat as "try again".
                    let kind = FailureKind::ServerBusy(BusyReason::TryAgain);
                    self.failed(policy, now, kind, Delivery::Answered, true)
                }
            }
            CallInput::NoReply {
                alive_since_sent,
                budget_allows,
            } => self.no_reply(policy, now, alive_since_sent, budget_allows),
            CallInput::Failed {
                kind,
                delivery,
                budget_allows,
            } => {
                if kind.outcome(delivery) == Outcome::Unknown {
                    self.maybe_applied = true;
                }
                self.failed(policy, now, kind, delivery, budget_allows)
            }
        };
        if let Decision::Fail { failure } = decision {
            self.ended = Some(failure);
        }
        decision
    }

    fn failed(
        &mut self,
        policy: &CallPolicy,
        now: Timestamp,
        kind: FailureKind,
        delivery: Delivery,
        budget_allows: bool,
    ) -> Decision {
        self.last = Some((kind, delivery));
        let outcome = kind.outcome(delivery);
        if outcome == Outcome::Rejected {
            return self.fail(FailReason::Rejected);
        }
        if !kind.retry_safe(delivery, self.idempotent) {
            return self.fail(FailReason::NotRetrySafe);
        }
        let refusal = outcome == Outcome::NotApplied && !kind.kills_connection();
        if refusal && policy.queue_wait.is_some() {
            // Nothing happened and the server (or the slot) cannot take it
            // now: wait it out like an outage, within the queue wait.
            return self.wait(policy, now, WaitKind::Refused);
        }
        if delivery == Delivery::NotSent && kind != FailureKind::Auth {
            // There was no connection to send it on after all.
            return self.queue(policy, now);
        }
        if self.retries >= policy.max_retries {
            return self.fail(FailReason::RetriesExhausted);
        }
        if !budget_allows {
            return self.fail(FailReason::BudgetExhausted);
        }
        let at = if refusal {
            self.next_step(policy, now)
        } else {
            now
        };
        if self.past_deadline(at) {
            return self.fail(FailReason::DeadlineExceeded);
        }
        self.retries += 1;
        Decision::RetryAt { at }
    }

    /// The attempt's timeout passed without its reply.
    fn no_reply(
        &mut self,
        policy: &CallPolicy,
        now: Timestamp,
        alive_since_sent: bool,
        budget_allows: bool,
    ) -> Decision {
        let left = self.deadline.map(|d| d.saturating_since(now));
        if left.is_some_and(|l| l.is_zero()) {
            self.maybe_applied = true;
            self.last = Some((FailureKind::Timeout, Delivery::MaybeSent));
            return self.fail(FailReason::DeadlineExceeded);
        }
        if alive_since_sent {
            // The server is alive and answering (or confirmed busy with this
            // connection): the command is slow, not lost (a pause, a long
            // script). Waiting is all that is safe; the deadline bounds it,
            // and the heartbeat ends it if the connection dies.
            let timeout = left.map_or(policy.response_timeout, |l| l.min(policy.response_timeout));
            return Decision::KeepWaiting { timeout };
        }
        self.maybe_applied = true;
        let kind = FailureKind::Timeout;
        self.failed(policy, now, kind, Delivery::MaybeSent, budget_allows)
    }

    /// A connection is there: send, with what is left of the deadline.
    fn send(&mut self, policy: &CallPolicy, now: Timestamp, redirect: bool) -> Decision {
        let mut timeout = if self.blocking {
            Duration::MAX
        } else {
            policy.response_timeout
        };
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_since(now);
            if left.is_zero() {
                return self.fail(FailReason::DeadlineExceeded);
            }
            timeout = timeout.min(left);
        }
        if redirect {
            Decision::Redirect { timeout }
        } else {
            Decision::Send { timeout }
        }
    }

    /// No connection: the outage policy.
    fn queue(&mut self, policy: &CallPolicy, now: Timestamp) -> Decision {
        if policy.queue_wait.is_none() {
            return self.fail(FailReason::NotConnected);
        }
        self.wait(policy, now, WaitKind::NoConnection)
    }

    fn wait(&mut self, policy: &CallPolicy, now: Timestamp, kind: WaitKind) -> Decision {
        let Some(queue_wait) = policy.queue_wait else {
            return self.fail(FailReason::NotConnected);
        };
        let since = *self.waiting_since.get_or_insert(now);
        let queue_end = since.saturating_add(queue_wait);
        let (end, reason) = match self.deadline {
            Some(deadline) if deadline < queue_end => (deadline, FailReason::DeadlineExceeded),
            _ => (queue_end, FailReason::QueueTimeout),
        };
        if now >= end {
            return self.fail(reason);
        }
        let step = self.next_step(policy, now).min(end);
        match kind {
            WaitKind::NoConnection => Decision::Queue { until: step },
            WaitKind::Refused => Decision::RetryAt { at: step },
        }
    }

    /// The next look after `now`, from the busy backoff; at least 1 ms on.
    fn next_step(&mut self, policy: &CallPolicy, now: Timestamp) -> Timestamp {
        let seed = self.seed;
        let steps = self
            .steps
            .get_or_insert_with(|| Backoff::new(policy.busy_backoff.clone(), seed));
        // The backoff's own limits (attempts, elapsed) do not end a call:
        // the queue wait and the deadline do. Start over when it stops; a
        // `max_elapsed` under 1 ms stops it at once, and caps every delay
        // at the 1 ms floor.
        let delay = steps.next_delay(Duration::ZERO).or_else(|| {
            steps.reset();
            steps.next_delay(Duration::ZERO)
        });
        now.saturating_add(
            delay
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_millis(1)),
        )
    }

    fn past_deadline(&self, at: Timestamp) -> bool {
        self.deadline.is_some_and(|d| at >= d)
    }

    /// Ends the call; the outcome follows from the last attempt.
    fn fail(&mut self, reason: FailReason) -> Decision {
        Decision::Fail {
            failure: self.failure(reason),
        }
    }

    fn failure(&self, reason: FailReason) -> Failure {
        let outcome = if reason == FailReason::Rejected {
            Outcome::Rejected
        } else if self.maybe_applied {
            // An attempt (this one or an earlier, retried because that was
            // safe) may have been applied: the caller must hear it.
            Outcome::Unknown
        } else {
            Outcome::NotApplied
        };
        Failure {
            outcome,
            reason,
            kind: self.last.map(|(k, _)| k),
        }
    }
}

#[derive(Clone, Copy)]
enum WaitKind {
    NoConnection,
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureKind::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn failed(kind: FailureKind, delivery: Delivery) -> CallInput {
        CallInput::Failed {
            kind,
            delivery,
            budget_allows: true,
        }
    }

    fn failure(d: Decision) -> Failure {
        match d {
            Decision::Fail { failure } => failure,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_call_classified_after_its_first_send_decides_as_one_classified_at_once() {
        let p = CallPolicy::default().deadline(Some(ms(1_000)));
        let next = [
            CallInput::Connected,
            CallInput::NotConnected,
            CallInput::Misconfigured,
            CallInput::BacklogFull,
            failed(Timeout, Delivery::MaybeSent),
            failed(Closed, Delivery::NotSent),
            failed(Io, Delivery::MaybeSent),
            failed(Command, Delivery::Answered),
            CallInput::NoReply {
                alive_since_sent: false,
                budget_allows: true,
            },
            CallInput::Redirected,
            CallInput::WritesHeld,
            CallInput::Shutdown,
        ];
        for (idempotent, read_only) in [(false, false), (true, false), (true, true), (false, true)]
        {
            for input in next {
                let mut early = Call::new(&p, t(0), idempotent, 7).read_only(read_only);
                let mut late = Call::new(&p, t(0), false, 7);
                assert_eq!(
                    early.decide(&p, t(0), CallInput::Connected),
                    late.decide(&p, t(0), CallInput::Connected),
                    "the first send asks neither"
                );
                late.classify(idempotent, read_only);
                assert_eq!(
                    early.decide(&p, t(20), input),
                    late.decide(&p, t(20), input),
                    "{input:?}, idempotent {idempotent}, read-only {read_only}"
                );
                assert_eq!(late.is_read_only(), read_only);
            }
        }
        // And the classification is what decides: a write of unknown fate
        // is retried only once it is known to be safe to.
        let mut write = Call::new(&p, t(0), false, 7);
        write.decide(&p, t(0), CallInput::Connected);
        let mut read = write.clone();
        read.classify(true, true);
        assert!(matches!(
            write.decide(&p, t(20), failed(Timeout, Delivery::MaybeSent)),
            Decision::Fail { .. }
        ));
        assert!(!matches!(
            read.decide(&p, t(20), failed(Timeout, Delivery::MaybeSent)),
            Decision::Fail { .. }
        ));
    }

    #[test]
    fn writes_wait_out_a_failover_and_reads_go_on() {
        let p = CallPolicy::default().deadline(Some(ms(1_000)));
        let mut write = Call::new(&p, t(0), false, 1);
        let Decision::Queue { until } = write.decide(&p, t(0), CallInput::WritesHeld) else {
            panic!("a write waits while a failover is in progress");
        };
        assert!(until > t(0) && until <= t(1_000));
        // The switch: a connection to the new master, and the write goes.
        assert_eq!(
            write.decide(&p, t(400), CallInput::Connected),
            Decision::Send { timeout: ms(600) }
        );
        let mut read = Call::new(&p, t(0), true, 1).read_only(true);
        assert!(matches!(
            read.decide(&p, t(0), CallInput::WritesHeld),
            Decision::Send { .. }
        ));
        // Within its deadline only: not applied.
        let mut late = Call::new(&p, t(0), false, 1);
        let mut now = 0;
        let ended = loop {
            match late.decide(&p, t(now), CallInput::WritesHeld) {
                Decision::Queue { until } => now = until.as_millis(),
                Decision::Fail { failure } => break failure,
                other => panic!("{other:?}"),
            }
            assert!(now <= 1_000);
        };
        assert_eq!(ended.reason, FailReason::DeadlineExceeded);
        assert_eq!(ended.outcome, Outcome::NotApplied);
        // Fail-fast: at once, not applied.
        let fast = CallPolicy::default().queue_wait(None);
        let mut write = Call::new(&fast, t(0), false, 1);
        let refused = failure(write.decide(&fast, t(0), CallInput::WritesHeld));
        assert_eq!(refused.reason, FailReason::FailoverInProgress);
        assert_eq!(refused.outcome, Outcome::NotApplied);
    }

    #[test]
    fn a_read_to_a_hung_server_ends_at_its_deadline() {
        let p = CallPolicy::default()
            .response_timeout(ms(250))
            .deadline(Some(ms(300)));
        let mut call = Call::new(&p, t(0), true, 1);
        assert_eq!(
            call.decide(&p, t(0), CallInput::Connected),
            Decision::Send { timeout: ms(250) }
        );
        // Reads are retried, but only within what is left of the deadline.
        assert_eq!(
            call.decide(&p, t(250), failed(Timeout, Delivery::MaybeSent)),
            Decision::RetryAt { at: t(250) }
        );
        assert_eq!(
            call.decide(&p, t(250), CallInput::Connected),
            Decision::Send { timeout: ms(50) }
        );
        let f = failure(call.decide(&p, t(300), failed(Timeout, Delivery::MaybeSent)));
        assert_eq!(f.reason, FailReason::DeadlineExceeded);
        assert_eq!(f.outcome, Outcome::Unknown);
        assert_eq!(f.kind, Some(Timeout));
        // Whatever comes later, the call stays over.
        assert_eq!(
            call.decide(&p, t(301), CallInput::Connected),
            Decision::Fail { failure: f }
        );
    }

    #[test]
    fn a_write_of_unknown_fate_is_not_retried_unless_idempotent() {
        let p = CallPolicy::default();
        let mut write = Call::new(&p, t(0), false, 1);
        write.decide(&p, t(0), CallInput::Connected);
        let f = failure(write.decide(&p, t(5), failed(Closed, Delivery::MaybeSent)));
        assert_eq!(
            (f.outcome, f.reason),
            (Outcome::Unknown, FailReason::NotRetrySafe)
        );
        let mut set = Call::new(&p, t(0), true, 1);
        set.decide(&p, t(0), CallInput::Connected);
        assert_eq!(
            set.decide(&p, t(5), failed(Closed, Delivery::MaybeSent)),
            Decision::RetryAt { at: t(5) }
        );
        // The retry finds no connection: it waits like any other call, and
        // if it then runs out of time the caller hears the first attempt
        // may have been applied.
        assert!(matches!(
            set.decide(&p, t(5), CallInput::NotConnected),
            Decision::Queue { .. }
        ));
        let f = failure(set.decide(&p, t(5_005), CallInput::NotConnected));
        assert_eq!(
            (f.outcome, f.reason),
            (Outcome::Unknown, FailReason::QueueTimeout)
        );
    }

    #[test]
    fn a_misconfigured_client_fails_calls_at_once_even_when_queueing() {
        let p = CallPolicy::default();
        let mut call = Call::new(&p, t(0), false, 1);
        // Queued while the first attempt was in flight...
        assert!(matches!(
            call.decide(&p, t(0), CallInput::NotConnected),
            Decision::Queue { .. }
        ));
        // ...and told at once when it failed with a wrong password.
        let f = failure(call.decide(&p, t(7), CallInput::Misconfigured));
        assert_eq!(
            (f.outcome, f.reason),
            (Outcome::NotApplied, FailReason::Misconfigured)
        );
    }

    #[test]
    fn fail_fast_and_a_full_backlog_fail_at_once_unsent() {
        let p = CallPolicy::default().queue_wait(None);
        let mut call = Call::new(&p, t(0), false, 1);
        let f = failure(call.decide(&p, t(0), CallInput::NotConnected));
        assert_eq!(
            (f.outcome, f.reason, f.kind),
            (Outcome::NotApplied, FailReason::NotConnected, None)
        );
        let p = CallPolicy::default();
        let mut call = Call::new(&p, t(0), false, 1);
        assert!(matches!(
            call.decide(&p, t(0), CallInput::NotConnected),
            Decision::Queue { .. }
        ));
        let f = failure(call.decide(&p, t(0), CallInput::BacklogFull));
        assert_eq!(
            (f.outcome, f.reason),
            (Outcome::NotApplied, FailReason::BacklogFull)
        );
    }

    #[test]
    fn a_queued_call_looks_again_in_growing_steps_until_its_wait_ends() {
        let p = CallPolicy::default().deadline(None);
        let mut call = Call::new(&p, t(0), false, 9);
        let mut now = t(0);
        let mut steps = 0;
        loop {
            match call.decide(&p, now, CallInput::NotConnected) {
                Decision::Queue { until } => {
                    assert!(until > now && until <= t(5_000), "{until:?}");
                    now = until;
                    steps += 1;
                    assert!(steps < 100, "bounded");
                }
                Decision::Fail { failure } => {
                    assert_eq!(failure.reason, FailReason::QueueTimeout);
                    assert_eq!(failure.outcome, Outcome::NotApplied);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(now, t(5_000));
        assert!(steps >= 20, "looks every 250 ms at most: {steps}");
    }

    #[test]
    fn the_deadline_bounds_the_queue_wait() {
        let p = CallPolicy::default().deadline(Some(ms(800)));
        let mut call = Call::new(&p, t(100), false, 1);
        let mut now = t(100);
        let f = loop {
            match call.decide(&p, now, CallInput::NotConnected) {
                Decision::Queue { until } => now = until,
                d => break failure(d),
            }
        };
        assert_eq!(now, t(900));
        assert_eq!(f.reason, FailReason::DeadlineExceeded);
    }

    #[test]
    fn refusals_are_waited_out_when_queueing_and_retried_when_failing_fast() {
        let busy = failed(ServerBusy(BusyReason::Loading), Delivery::Answered);
        let p = CallPolicy::default().deadline(None);
        let mut call = Call::new(&p, t(0), false, 3);
        let mut now = t(0);
        for _ in 0..10 {
            match call.decide(&p, now, busy) {
                Decision::RetryAt { at } => now = at,
                other => panic!("{other:?}"),
            }
            assert!(matches!(
                call.decide(&p, now, CallInput::Connected),
                Decision::Send { .. }
            ));
        }
        assert_eq!(call.retries(), 0, "waiting out a refusal is not a retry");
        let p = CallPolicy::default().queue_wait(None).max_retries(2);
        let mut call = Call::new(&p, t(0), false, 3);
        let mut now = t(0);
        for _ in 0..2 {
            match call.decide(&p, now, busy) {
                Decision::RetryAt { at } => {
                    assert!(at > now, "a refusal is not hammered");
                    now = at;
                }
                other => panic!("{other:?}"),
            }
        }
        let f = failure(call.decide(&p, now, busy));
        assert_eq!(
            (f.outcome, f.reason),
            (Outcome::NotApplied, FailReason::RetriesExhausted)
        );
    }

    #[test]
    fn the_budget_and_the_server_have_the_last_word() {
        let p = CallPolicy::default();
        let mut call = Call::new(&p, t(0), true, 1);
        let no_budget = CallInput::Failed {
            kind: Io,
            delivery: Delivery::MaybeSent,
            budget_allows: false,
        };
        let f = failure(call.decide(&p, t(1), no_budget));
        assert_eq!(f.reason, FailReason::BudgetExhausted);
        let mut call = Call::new(&p, t(0), true, 1);
        let f = failure(call.decide(&p, t(1), failed(Command, Delivery::Answered)));
        assert_eq!(
            (f.outcome, f.reason),
            (Outcome::Rejected, FailReason::Rejected)
        );
        let mut call = Call::new(&p, t(0), true, 1);
        let f = failure(call.decide(&p, t(1), failed(Auth, Delivery::Answered)));
        assert_eq!(
            (f.outcome, f.reason),
            (Outcome::NotApplied, FailReason::NotRetrySafe)
        );
    }

    #[test]
    fn redirects_are_followed_then_count_as_try_again() {
        let p = CallPolicy::default()
            .max_redirects(2)
            .queue_wait(None)
            .max_retries(0);
        let mut call = Call::new(&p, t(0), false, 1);
        call.decide(&p, t(0), CallInput::Connected);
        for _ in 0..2 {
            assert!(matches!(
                call.decide(&p, t(1), CallInput::Redirected),
                Decision::Redirect { .. }
            ));
        }
        let f = failure(call.decide(&p, t(1), CallInput::Redirected));
        assert_eq!(f.kind, Some(ServerBusy(BusyReason::TryAgain)));
        assert_eq!(f.outcome, Outcome::NotApplied);
    }

    #[test]
    fn a_busy_backoff_that_stops_at_once_still_spaces_the_retries() {
        // `max_elapsed` under 1 ms: the backoff gives no delay at all. That
        // is no deadline: the refusal is retried 1 ms on.
        let busy = CallPolicy::default_busy_backoff().max_elapsed(Some(Duration::from_micros(1)));
        let p = CallPolicy::default()
            .queue_wait(None)
            .deadline(None)
            .busy_backoff(busy.clone());
        let mut call = Call::new(&p, t(0), false, 1);
        assert_eq!(
            call.decide(
                &p,
                t(0),
                failed(ServerBusy(BusyReason::Loading), Delivery::Answered)
            ),
            Decision::RetryAt { at: t(1) }
        );
        let p = p.queue_wait(Some(ms(100)));
        let mut call = Call::new(&p, t(0), false, 1);
        assert_eq!(
            call.decide(&p, t(0), CallInput::NotConnected),
            Decision::Queue { until: t(1) }
        );
    }

    #[test]
    fn a_redirect_the_deadline_ends_is_not_counted_as_followed() {
        let p = CallPolicy::default().deadline(Some(ms(100)));
        let mut call = Call::new(&p, t(0), false, 1);
        call.decide(&p, t(0), CallInput::Connected);
        let f = failure(call.decide(&p, t(100), CallInput::Redirected));
        assert_eq!(f.reason, FailReason::DeadlineExceeded);
        assert_eq!(call.redirects(), 0);
    }

    #[test]
    fn shutdown_ends_a_call_unsent() {
        let p = CallPolicy::default();
        let mut call = Call::new(&p, t(0), false, 1);
        let f = failure(call.decide(&p, t(0), CallInput::Shutdown));
        assert_eq!(
            (f.outcome, f.reason),
            (Outcome::NotApplied, FailReason::Shutdown)
        );
    }

    #[test]
    fn bad_policies_name_the_field() {
        let bad = [
            (
                CallPolicy::default().queue_wait(Some(Duration::ZERO)),
                "queue_wait",
            ),
            (CallPolicy::default().max_retries(101), "max_retries"),
            (CallPolicy::default().max_redirects(101), "max_redirects"),
            (
                CallPolicy::default().response_timeout(Duration::ZERO),
                "response_timeout",
            ),
            (
                CallPolicy::default().deadline(Some(Duration::ZERO)),
                "deadline",
            ),
        ];
        for (policy, field) in bad {
            assert_eq!(policy.build().unwrap_err().field(), field);
        }
        assert!(CallPolicy::default().build().is_ok());
    }

    #[test]
    fn a_slow_reply_on_a_live_connection_is_waited_for_until_the_deadline() {
        let p = CallPolicy::default()
            .response_timeout(ms(1_000))
            .deadline(Some(ms(2_500)));
        let mut incr = Call::new(&p, t(0), false, 1);
        assert_eq!(
            incr.decide(&p, t(0), CallInput::Connected),
            Decision::Send { timeout: ms(1_000) }
        );
        // A CLIENT PAUSE WRITE: the PINGs are answered, the INCR is not.
        let alive = CallInput::NoReply {
            alive_since_sent: true,
            budget_allows: true,
        };
        assert_eq!(
            incr.decide(&p, t(1_000), alive),
            Decision::KeepWaiting { timeout: ms(1_000) }
        );
        assert_eq!(
            incr.decide(&p, t(2_000), alive),
            Decision::KeepWaiting { timeout: ms(500) }
        );
        let f = failure(incr.decide(&p, t(2_500), alive));
        assert_eq!(
            (f.outcome, f.reason),
            (Outcome::Unknown, FailReason::DeadlineExceeded)
        );
        // No sign of life: the attempt is over (a write of unknown fate).
        let mut incr = Call::new(&p, t(0), false, 1);
        incr.decide(&p, t(0), CallInput::Connected);
        let silent = CallInput::NoReply {
            alive_since_sent: false,
            budget_allows: true,
        };
        let f = failure(incr.decide(&p, t(1_000), silent));
        assert_eq!(
            (f.outcome, f.reason, f.kind),
            (Outcome::Unknown, FailReason::NotRetrySafe, Some(Timeout))
        );
        // A read is retried.
        let mut get = Call::new(&p, t(0), true, 1);
        get.decide(&p, t(0), CallInput::Connected);
        assert_eq!(
            get.decide(&p, t(1_000), silent),
            Decision::RetryAt { at: t(1_000) }
        );
    }

    #[test]
    fn a_blocking_call_has_its_own_deadline() {
        let p = CallPolicy::default().response_timeout(ms(3_000));
        let five = Blocking::For {
            timeout: Duration::from_secs(5),
        };
        let mut blpop = Call::blocking(&p, t(100), false, five, 1);
        assert_eq!(blpop.deadline(), Some(t(8_100)));
        assert_eq!(
            blpop.decide(&p, t(100), CallInput::Connected),
            Decision::Send { timeout: ms(8_000) }
        );
        let mut forever = Call::blocking(&p, t(100), false, Blocking::Forever, 1);
        assert_eq!(forever.deadline(), None);
        assert_eq!(
            forever.decide(&p, t(100), CallInput::Connected),
            Decision::Send {
                timeout: Duration::MAX
            }
        );
        // Waiting for a connection follows the outage policy all the same.
        let mut queued = Call::blocking(&p, t(0), false, Blocking::Forever, 1);
        assert!(matches!(
            queued.decide(&p, t(0), CallInput::NotConnected),
            Decision::Queue { .. }
        ));
    }
}
