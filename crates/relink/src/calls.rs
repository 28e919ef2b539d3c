//! The one execution loop: every command of every handle ([`Client`],
//! [`ClusterClient`]) runs through [`Calls::run`], which executes the core's
//! per-call decisions ([`relink_core::call`]) over a [`Transport`].
//!
//! **It executes, it does not decide.** Whether to send, wait, retry, follow a
//! redirect or give up, and when, are the core's answers; this loop only
//! looks for a connection, sends, classifies the result through
//! [`crate::classify`], holds a backlog slot, waits until the time the core
//! named, and maps the core's failure onto [`Error`]. The handles share it,
//! and with it their counters, their stats, `wait_ready` and `shutdown`.
//!
//! [`Client`]: crate::Client
//! [`ClusterClient`]: crate::ClusterClient

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::{Either, FutureExt, TryFutureExt};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, Pipeline, RedisError, Value};
use relink_core::call::{Call, CallInput, CallPolicy, Decision, FailReason, Failure};
use relink_core::commands::{BadTimeout, Blocking};
use relink_core::{Delivery, Durability, FailureKind, Outcome, State, Timestamp};
use tokio::sync::{watch, Semaphore, SemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::budget::SharedBudget;
use crate::classify::{self, Redirect, Verdict};
use crate::config::{Config, OutagePolicy};
use crate::metrics::{self, Metrics};
use crate::{Error, Stats};

/// Cancels a client's background task when the last user handle is dropped.
pub(crate) struct HandleGuard(pub(crate) CancellationToken);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// How one handle's calls differ from its client's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallOptions {
    /// Every command is declared safe to apply twice.
    pub(crate) idempotent: bool,
    /// The total bound of each call.
    pub(crate) deadline: Option<Duration>,
    /// The connection (by generation) the call must run on, if any: a
    /// lease's WATCH or MULTI lives on one connection, and the server forgets
    /// it when that connection is replaced.
    pub(crate) pinned: Option<u64>,
    /// Every write is acknowledged only once this many replicas confirmed
    /// it (`WAIT` in the same round trip); `None`: on the master's word.
    pub(crate) durable: Option<Durability>,
}

impl CallOptions {
    pub(crate) fn new(config: &Config) -> CallOptions {
        CallOptions {
            idempotent: false,
            deadline: config.deadline(),
            pinned: None,
            durable: config.durable(),
        }
    }
}

/// A health value whose connectivity state the loop can read.
pub(crate) trait HasState {
    fn state(&self) -> State;

    /// The latest failed connection attempt, while not Ready.
    fn last_attempt_failure(&self) -> Option<relink_core::AttemptFailure> {
        None
    }

    /// The core flagged the latest attempt's cause as one retrying will not fix.
    fn misconfigured(&self) -> bool {
        false
    }
}

/// The fields of a handle's shared state the loop reads; written by
/// [`handle!`], the same for every connection shape.
pub(crate) trait Fields: Sync {
    /// A connection (a cheap handle to it).
    type Conn: Send + Sync;
    /// The health published on the handle's `watch`.
    type Health: HasState + Send + Sync;

    /// The connection to send on now, if there is one.
    fn current(&self) -> Option<Self::Conn>;

    /// The health, to wait for a change on.
    fn health(&self) -> watch::Receiver<Self::Health>;
}

/// What the loop needs of a connection shape besides its [`Fields`]: a way
/// to send on a connection, and somewhere to report replies and failures.
pub(crate) trait Transport: Fields {
    /// `MOVED`/`ASK` are followed (a cluster) rather than passed on as the
    /// server's answer (a single server that is not the cluster client).
    const FOLLOWS_REDIRECTS: bool;

    /// Sends `request` on `conn` at `sent_at`, to the node `redirect` names
    /// if any; a write with `durable` is followed by `WAIT` in the same
    /// round trip and acknowledged only as the core's
    /// [`Durability::confirm`] says.
    ///
    /// `kept` is the calling handle's own clone of the connection, where
    /// the shape keeps one ([`KeptConn`]).
    fn send<'a>(
        &'a self,
        conn: &'a Self::Conn,
        kept: &'a mut KeptConn,
        request: Request<'a>,
        redirect: Option<&'a Redirect>,
        sent_at: Timestamp,
        durable: Option<Durability>,
    ) -> impl Future<Output = Result<Value, RedisError>> + Send + 'a;

    /// The supervisor holds writes back now (a failover of the master is in
    /// progress): what [`CallInput::WritesHeld`] tells the core.
    fn writes_held(&self) -> bool {
        false
    }

    /// Evidence for the core: did `conn` deliver anything from the server
    /// (a reply, or part of one), or did the server confirm it busy, after
    /// `since`?
    fn alive_since(&self, conn: &Self::Conn, since: Timestamp) -> bool;

    /// Which connection `conn` is (its generation; 0 where connections are
    /// not replaced one by one).
    fn generation(&self, conn: &Self::Conn) -> u64;

    /// A reply came on `conn` (heartbeat evidence, where the connection
    /// does not stamp its reads already).
    fn replied(&self, conn: &Self::Conn);

    /// An attempt on `conn` failed with `kind`: take the connection out of
    /// service if the core says the failure kills it, tell the supervisor.
    fn failed(&self, conn: &Self::Conn, kind: FailureKind, delivery: Delivery);
}

#[derive(Default)]
struct Counters {
    succeeded: AtomicU64,
    retried: AtomicU64,
    not_sent: AtomicU64,
    not_applied: AtomicU64,
    unknown: AtomicU64,
    rejected: AtomicU64,
    redirected: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Tells `call` what `request` is (the core's `Call::classify`); `true`.
///
/// A call pinned to a lease's transaction is never sent twice: a second
/// EXEC, or a command queued twice in a MULTI, would not be what the
/// caller wrote.
fn classify(call: &mut Call, request: Request<'_>, options: &CallOptions) -> bool {
    let read_only = request.is_read_only();
    call.classify(
        options.pinned.is_none() && (options.idempotent || read_only),
        read_only,
    );
    true
}

/// What every clone of a handle shares about its calls.
pub(crate) struct Calls {
    policy: CallPolicy,
    epoch: Instant,
    capacity: usize,
    backlog: Semaphore,
    budget: SharedBudget,
    counters: Counters,
    /// OpenTelemetry instruments (nothing without the `opentelemetry` feature).
    pub(crate) metrics: Metrics,
    /// Cancelled to stop the client (and by its task when it ends).
    pub(crate) shutdown: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Calls {
    /// `parent`: the shutdown of the client this one belongs to (an
    /// exclusive connection's), so shutting that down stops this one too.
    pub(crate) fn new(
        config: &Config,
        epoch: Instant,
        parent: Option<&CancellationToken>,
    ) -> Calls {
        let capacity = match config.outage() {
            OutagePolicy::Queue { capacity, .. } => capacity,
            _ => 0,
        };
        Calls {
            policy: config.call_policy(),
            epoch,
            capacity,
            backlog: Semaphore::new(capacity),
            budget: SharedBudget::new(config.retry().budget),
            counters: Counters::default(),
            metrics: Metrics::new(config),
            shutdown: parent.map_or_else(CancellationToken::new, CancellationToken::child_token),
            task: Mutex::new(None),
        }
    }

    /// The per-call policy.
    pub(crate) fn policy(&self) -> &CallPolicy {
        &self.policy
    }

    /// Now, on the clock the core is fed with.
    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The `Instant` of a core timestamp.
    pub(crate) fn instant(&self, t: Timestamp) -> Instant {
        self.epoch + Duration::from_millis(t.as_millis())
    }

    /// A failed reconnect drains the retry budget too: while the server is
    /// unreachable, command retries stop instead of piling onto the outage.
    pub(crate) fn drain_budget(&self) {
        self.budget.drain();
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            succeeded: get(&c.succeeded),
            retried: get(&c.retried),
            not_sent: get(&c.not_sent),
            not_applied: get(&c.not_applied),
            unknown: get(&c.unknown),
            rejected: get(&c.rejected),
            exclusive_open: 0,
            exclusive_leased: 0,
            subscriptions: 0,
            subscriber_losses: 0,
            messages_dropped: 0,
            cache: None,
            queued: self
                .capacity
                .saturating_sub(self.backlog.available_permits()) as u64,
        }
    }

    pub(crate) fn redirects(&self) -> u64 {
        self.counters.redirected.load(Ordering::Relaxed)
    }

    /// Remembers the background task, for [`Calls::shutdown`].
    pub(crate) fn set_task(&self, handle: tokio::task::JoinHandle<()>) {
        *self.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
    }

    /// Stops the client and waits for its task to end.
    pub(crate) async fn shutdown(&self) {
        self.shutdown.cancel();
        let handle = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// Looks for a connection.
    ///
    /// Shutdown is asked only when there is none: a client's task gives up
    /// its connection before it ends (so after `shutdown` returns no call
    /// finds one), and a call racing a shutdown may go out on the
    /// connection still there. (`is_cancelled` takes the token's lock,
    /// which every call would share.)
    fn look<T: Transport>(&self, transport: &T, conn: &mut Option<T::Conn>) -> CallInput {
        *conn = transport.current();
        if conn.is_some() {
            if transport.writes_held() {
                CallInput::WritesHeld
            } else {
                CallInput::Connected
            }
        } else if self.shutdown.is_cancelled() {
            CallInput::Shutdown
        } else if transport.health().borrow().misconfigured() {
            CallInput::Misconfigured
        } else {
            CallInput::NotConnected
        }
    }

    /// Runs one command or pipeline through the core's per-call policy.
    ///
    /// `blocking` is `request.blocking()`, which the caller has already
    /// looked at to route the request.
    ///
    /// Without the `opentelemetry` feature this is the loop's own future:
    /// a wrapper would be one more state machine that every call carries
    /// and polls through.
    #[allow(clippy::manual_async_fn)] // `async` in one build only
    pub(crate) fn run<'a, T: Transport>(
        &'a self,
        transport: &'a T,
        request: Request<'a>,
        options: CallOptions,
        blocking: Result<Option<Blocking>, BadTimeout>,
        kept: &'a mut Kept,
    ) -> impl Future<Output = Result<Value, RedisError>> + Send + 'a {
        #[cfg(not(feature = "opentelemetry"))]
        return self.decide_and_send(transport, request, options, blocking, kept);
        #[cfg(feature = "opentelemetry")]
        async move {
            let started = self.metrics.start();
            let result = self
                .decide_and_send(transport, request, options, blocking, kept)
                .await;
            self.metrics.call_ended(started, request, &result);
            result
        }
    }

    async fn decide_and_send<T: Transport>(
        &self,
        transport: &T,
        request: Request<'_>,
        options: CallOptions,
        blocking: Result<Option<Blocking>, BadTimeout>,
        kept: &mut Kept,
    ) -> Result<Value, RedisError> {
        let Kept {
            timer,
            conn: kept_conn,
        } = kept;
        let started = self.now();
        let seed = started.as_millis();
        let mut now = started;
        let mut first_decision = true;
        // Made unclassified: the command is looked up in the read-only
        // table only when a decision needs it (any input but `Connected`,
        // the core's `Call::classify`), so a call sent on a healthy
        // connection and answered never asks.
        let mut call = match blocking {
            Ok(None) => Call::with_deadline(started, false, options.deadline, seed),
            Ok(Some(blocking)) => Call::blocking(&self.policy, started, false, blocking, seed),
            Err(bad) => {
                bump(&self.counters.not_sent);
                return Err(Error::InvalidCommand {
                    reason: bad.to_string(),
                }
                .into_redis());
            }
        };
        let mut classified = false;
        // Reads skip WAIT: there is nothing of theirs to replicate.
        let durable = match options.durable {
            Some(durable) => {
                classified = classify(&mut call, request, &options);
                (!call.is_read_only()).then_some(durable)
            }
            None => None,
        };
        let mut permit: Option<(SemaphorePermit<'_>, metrics::Queued<'_>)> = None;
        let mut conn = None;
        let mut redirect: Option<Redirect> = None;
        let mut last_error: Option<RedisError> = None;
        let mut input = self.look(transport, &mut conn);
        // A decision the core already gave inside a wait for a reply.
        let mut next: Option<Decision> = None;
        let mut retries_seen = 0;
        // Bounded by the core: every decision either sends (at most
        // max_retries + max_redirects + 1 times, or refusals waited out at
        // growing steps) or waits until a time it named, within the queue
        // wait and the deadline.
        loop {
            // The first decision is at the call's start (one clock read
            // less on the hot path); later ones read the clock.
            if !std::mem::take(&mut first_decision) {
                now = self.now();
            }
            let decision = match next.take() {
                Some(decision) => decision,
                None => {
                    if !classified && input != CallInput::Connected {
                        classified = classify(&mut call, request, &options);
                    }
                    call.decide(&self.policy, now, input)
                }
            };
            if call.retries() > retries_seen {
                retries_seen = call.retries();
                bump(&self.counters.retried);
                self.metrics.retried(request);
            }
            input = match decision {
                Decision::Send { timeout } | Decision::Redirect { timeout } => {
                    let to = if matches!(decision, Decision::Redirect { .. }) {
                        bump(&self.counters.redirected);
                        redirect.as_ref()
                    } else {
                        None
                    };
                    let Some(c) = conn.as_ref() else {
                        // Only a Connected input leads here; look again.
                        input = self.look(transport, &mut conn);
                        continue;
                    };
                    if options.pinned.is_some_and(|g| g != transport.generation(c)) {
                        // The state this call depends on is gone with the
                        // connection it lived on: sending here would run
                        // it unguarded. (Not retried when pinned, so this
                        // is its first send: nothing happened.)
                        bump(&self.counters.not_sent);
                        return Err(Error::ConnectionReplaced.into_redis());
                    }
                    // Out of the backlog: the place is someone else's now.
                    permit = None;
                    // Nothing was awaited since `now` was read.
                    let sent_at = now;
                    // Waits for the reply as long as the core says: past a
                    // timeout, the core hears whether the connection showed
                    // signs of life since, and keeps waiting or gives up.
                    let result = {
                        let mut sent = std::pin::pin!(
                            transport.send(c, kept_conn, request, to, sent_at, durable)
                        );
                        // Each wait ends `limit` after the moment it counts
                        // from (the send, then each decision to keep
                        // waiting), on the core's clock: no clock read to
                        // arm it.
                        let (mut from, mut limit) = (sent_at, timeout);
                        loop {
                            let Some(until) = self.instant(from).checked_add(limit) else {
                                // No end (a blocking command's `Duration::MAX`).
                                break Some(sent.as_mut().await);
                            };
                            if let Some(result) = timer.wait(until, sent.as_mut()).await {
                                break Some(result);
                            }
                            let alive_since_sent = transport.alive_since(c, sent_at);
                            let no_reply = CallInput::NoReply {
                                alive_since_sent,
                                budget_allows: alive_since_sent || self.budget.drain(),
                            };
                            let now = self.now();
                            if !classified {
                                classified = classify(&mut call, request, &options);
                            }
                            match call.decide(&self.policy, now, no_reply) {
                                Decision::KeepWaiting { timeout } => (from, limit) = (now, timeout),
                                other => {
                                    next = Some(other);
                                    break None;
                                }
                            }
                        }
                    };
                    let Some(result) = result else {
                        // Given up: the late reply, if any, is discarded.
                        let waited = self.now().saturating_since(sent_at);
                        last_error = Some(classify::timed_out(waited));
                        continue;
                    };
                    let err = match result {
                        Ok(Value::ServerError(reply)) if !classify::is_verdict(&reply) => {
                            RedisError::from(reply)
                        }
                        Ok(value) => {
                            transport.replied(c);
                            match value {
                                Value::ServerError(_) => bump(&self.counters.rejected),
                                _ => {
                                    bump(&self.counters.succeeded);
                                    self.budget.refill();
                                }
                            }
                            return Ok(value);
                        }
                        Err(err) => err,
                    };
                    let verdict = classify::judge(&err);
                    let next = match verdict {
                        Verdict::Redirect(to) if T::FOLLOWS_REDIRECTS => {
                            transport.replied(c);
                            redirect = Some(to);
                            CallInput::Redirected
                        }
                        Verdict::Redirect(_) => {
                            transport.replied(c);
                            bump(&self.counters.rejected);
                            return Err(err);
                        }
                        Verdict::Failure { kind, delivery } => {
                            transport.failed(c, kind, delivery);
                            if kind == FailureKind::Command {
                                bump(&self.counters.rejected);
                                return Err(err); // the server's verdict, as it is
                            }
                            CallInput::Failed {
                                kind,
                                delivery,
                                budget_allows: self.budget.drain(),
                            }
                        }
                    };
                    last_error = Some(err);
                    next
                }
                Decision::Queue { until } => {
                    if permit.is_none() {
                        match self.backlog.try_acquire() {
                            Ok(p) => permit = Some((p, self.metrics.queued())),
                            Err(_) => {
                                input = CallInput::BacklogFull;
                                continue;
                            }
                        }
                    }
                    let mut health = transport.health();
                    health.borrow_and_update();
                    match self.look(transport, &mut conn) {
                        CallInput::WritesHeld if call.is_read_only() => CallInput::WritesHeld,
                        // (A write waits out a failover like an outage.)
                        CallInput::NotConnected | CallInput::WritesHeld => {
                            // Boxed: an outage's wait, kept out of the
                            // call's state (which every call moves).
                            Box::pin(async {
                                tokio::select! {
                                    _ = self.shutdown.cancelled() => {}
                                    _ = health.changed() => {}
                                    _ = tokio::time::sleep_until(self.instant(until).into()) => {}
                                }
                            })
                            .await;
                            self.look(transport, &mut conn)
                        }
                        seen => seen,
                    }
                }
                Decision::RetryAt { at } => {
                    if at > now {
                        Box::pin(async {
                            tokio::select! {
                                _ = self.shutdown.cancelled() => {}
                                _ = tokio::time::sleep_until(self.instant(at).into()) => {}
                            }
                        })
                        .await;
                    }
                    self.look(transport, &mut conn)
                }
                Decision::Fail { failure } => {
                    // A call refused at once (fail-fast, a full backlog) may
                    // not have awaited anything: spend a unit of tokio's
                    // cooperative budget, so a caller retrying in a loop
                    // still lets the other tasks on its worker run.
                    tokio::task::consume_budget().await;
                    return Err(
                        self.fail(transport, failure, last_error, options, started, request)
                    );
                }
                // A decision this driver does not know (a newer core).
                _ => {
                    return Err(self.fail(
                        transport,
                        Failure {
                            outcome: Outcome::Unknown,
                            reason: FailReason::NotRetrySafe,
                            kind: None,
                        },
                        last_error,
                        options,
                        started,
                        request,
                    ));
                }
            };
        }
    }

    /// Counts a failed call and turns the core's failure into the caller's error.
    fn fail<T: Transport>(
        &self,
        transport: &T,
        failure: Failure,
        last_error: Option<RedisError>,
        options: CallOptions,
        started: Timestamp,
        request: Request<'_>,
    ) -> RedisError {
        let c = &self.counters;
        match (failure.outcome, failure.kind) {
            (Outcome::Rejected, _) => bump(&c.rejected),
            (Outcome::Unknown, _) => bump(&c.unknown),
            (_, None) => bump(&c.not_sent),
            (_, Some(_)) => bump(&c.not_applied),
        }
        let last_error = match last_error {
            // "replicated to N of M", as it is.
            Some(e)
                if failure.outcome == Outcome::Unknown
                    && matches!(Error::from_redis(&e), Some(Error::NotReplicated { .. })) =>
            {
                return e
            }
            other => other,
        };
        let detail = || {
            let reason = failure.reason;
            match &last_error {
                Some(e) => format!("{e}; then {reason}"),
                None => reason.to_string(),
            }
        };
        let read_only = || request.is_read_only();
        let last_attempt = || {
            transport
                .health()
                .borrow()
                .last_attempt_failure()
                .map(Box::new)
        };
        let error = match (failure.reason, failure.outcome) {
            (FailReason::Rejected, _) => {
                if let Some(e) = last_error {
                    return e;
                }
                Error::NotApplied {
                    kind: FailureKind::Command,
                    detail: detail(),
                }
            }
            (FailReason::DeadlineExceeded, outcome) => Error::DeadlineExceeded {
                deadline: options.deadline.unwrap_or_default(),
                outcome,
                read_only: read_only(),
                last_attempt: last_attempt(),
            },
            (_, Outcome::Unknown) => Error::OutcomeUnknown {
                kind: failure.kind.unwrap_or(FailureKind::Closed),
                detail: detail(),
                read_only: read_only(),
            },
            (FailReason::Shutdown, _) => Error::Shutdown,
            (FailReason::NotConnected, _) => {
                let health = transport.health();
                let health = health.borrow();
                Error::NotConnected {
                    state: health.state(),
                    last_attempt: health.last_attempt_failure().map(Box::new),
                }
            }
            (FailReason::Misconfigured, _) => match last_attempt() {
                Some(failure) => Error::Misconfigured { failure },
                None => Error::NotConnected {
                    state: transport.health().borrow().state(),
                    last_attempt: None,
                },
            },
            (FailReason::FailoverInProgress, _) => Error::NotApplied {
                kind: FailureKind::Moved,
                detail: "a failover of the master is in progress (the sentinels announced it) \
                         and the outage policy is fail-fast: the write was not sent"
                    .to_owned(),
            },
            (FailReason::BacklogFull, _) => Error::BacklogFull {
                capacity: self.capacity,
            },
            (FailReason::QueueTimeout, _) => Error::QueueTimeout {
                waited: self.now().saturating_since(started),
                last_attempt: last_attempt(),
            },
            (_, _) => Error::NotApplied {
                kind: failure.kind.unwrap_or(FailureKind::Closed),
                detail: detail(),
            },
        };
        error.into_redis()
    }
}

/// Waits until `health` says Ready, for at most `timeout`; ends at once
/// with [`Error::Misconfigured`] when the core flags the latest attempt's
/// cause as one waiting will not fix.
pub(crate) async fn wait_ready<H: HasState>(
    mut health: watch::Receiver<H>,
    timeout: Duration,
) -> Result<(), Error> {
    let (state, misconfigured) = {
        // The `Ref` that `wait_for` returns is dropped at the end of this
        // block: holding it would block the task's next health update.
        let waited = tokio::time::timeout(
            timeout,
            health.wait_for(|h| {
                matches!(h.state(), State::Ready | State::Shutdown) || h.misconfigured()
            }),
        )
        .await;
        match waited {
            Ok(Ok(h)) => (
                h.state(),
                h.misconfigured()
                    .then(|| h.last_attempt_failure())
                    .flatten()
                    .map(Box::new),
            ),
            Ok(Err(_)) => (State::Shutdown, None),
            Err(_) => (State::Idle, None),
        }
    };
    if let Some(failure) = misconfigured {
        return Err(Error::Misconfigured { failure });
    }
    match state {
        State::Ready => Ok(()),
        State::Shutdown => Err(Error::Shutdown),
        _ => {
            let health = health.borrow();
            Err(Error::NotReady {
                waited: timeout,
                state: health.state(),
                last_attempt: health.last_attempt_failure().map(Box::new),
            })
        }
    }
}

/// `make()`'s future, boxed: the box is allocated first and the future
/// written into it, where `Box::pin(make())` builds the whole future on the
/// stack and then copies all of it (a command's is 3 KB) into the box.
pub(crate) fn boxed<'a, F, T>(make: impl FnOnce() -> F) -> redis::RedisFuture<'a, T>
where
    F: Future<Output = Result<T, RedisError>> + Send + 'a,
{
    let place = Box::<F>::new_uninit();
    let future: Box<F> = Box::write(place, make());
    Box::into_pin(future)
}

/// What a handle keeps from one call to the next: its reply waits' timer
/// and its own clone of the connection. A clone of the handle starts with
/// neither.
#[derive(Default, Clone)]
pub(crate) struct Kept {
    pub(crate) timer: ReplyTimer,
    pub(crate) conn: KeptConn,
}

/// A handle's own clone of a single server's connection, for the
/// connection's generation it was made from.
///
/// Why: redis-rs sends on `&mut MultiplexedConnection`, and a clone made
/// per call (three shared reference counts up, and down again when it is
/// dropped) costs every call six atomic writes to cache lines that every
/// other caller of the connection writes too, which on two cores means
/// moving the lines between them. A handle's clone is reused while the
/// connection is the same generation. It is kept only for a connection
/// relink opened itself: when such a connection is replaced it is closed
/// (its driver task stopped), so a clone an idle handle still holds keeps
/// nothing open but memory; a custom connector's connection ends only
/// when its last clone is dropped, and is cloned per call as before.
#[derive(Default)]
pub(crate) struct KeptConn(Option<(u64, MultiplexedConnection)>);

impl Clone for KeptConn {
    fn clone(&self) -> Self {
        KeptConn(None)
    }
}

impl KeptConn {
    /// The handle's clone of `conn`, generation `generation`, made now if
    /// the one it has is of another generation (or it has none).
    pub(crate) fn of(
        &mut self,
        generation: u64,
        conn: &MultiplexedConnection,
    ) -> &mut MultiplexedConnection {
        if self.0.as_ref().is_some_and(|(g, _)| *g != generation) {
            self.0 = None;
        }
        &mut self.0.get_or_insert_with(|| (generation, conn.clone())).1
    }
}

/// A handle's timer for its calls' reply waits, kept from one call to the
/// next.
///
/// Why not `tokio::time::timeout` per wait: a new timer is put into the
/// runtime's timer wheel on its first poll and taken out when dropped, each
/// under the wheel's lock (callgrind: about 560 instructions of a GET/SET
/// at 16 tasks in tokio's timer code).
///
/// Why not reset it to each wait's end either: a reset converts the end to
/// the wheel's ticks and moves an atomic, and the timer must be polled
/// again afterwards (about 300 instructions a call together). A wait whose
/// end is no earlier than the timer's leaves it alone: the timer may then
/// fire before the wait's end (at most once per response timeout, 3 s by
/// default), and is reset to that end only then. A wait ending earlier
/// resets it at once. And a timer that returned `Pending` to a waker that
/// would wake this same task (in a poll with coop budget: without,
/// tokio's timer registers nothing), and has neither fired nor been reset
/// since, is not polled again: the future's contract is to wake the waker
/// of its last poll.
///
/// A timer belongs to its runtime: it fires only while that runtime runs,
/// and polling it once that runtime has shut down panics. So it is kept
/// for the task that made it (a task never changes runtime), and made anew
/// when the handle's next call runs in another task, or after it fired (a
/// runtime's shutdown fires all of its timers). A call outside any task
/// (`block_on`) waits with a timer of its own, as before. A clone of a
/// handle starts without one. (Inside `spawn_blocking` a task id is the
/// blocking task's: a handle whose calls there run under one runtime's
/// `block_on` and then another's keeps the first runtime's timer, which
/// fires only while that runtime runs. Telling runtimes apart on every
/// call would cost a shared reference count.)
#[derive(Default)]
pub(crate) struct ReplyTimer(Option<KeptTimer>);

struct KeptTimer {
    task: tokio::task::Id,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The waker `sleep` last returned `Pending` to, until it is reset.
    polled_by: Option<std::task::Waker>,
}

impl Clone for ReplyTimer {
    fn clone(&self) -> Self {
        ReplyTimer(None)
    }
}

impl ReplyTimer {
    /// `reply`'s output, or `None` if `until` comes first; what
    /// `tokio::time::timeout_at` does, with this timer.
    pub(crate) fn wait<'s, F: Future + ?Sized>(
        &'s mut self,
        until: Instant,
        mut reply: std::pin::Pin<&'s mut F>,
    ) -> impl Future<Output = Option<F::Output>> + 's {
        use std::task::Poll;
        use tokio::task::coop;
        let until = tokio::time::Instant::from_std(until);
        let Some(task) = tokio::task::try_id() else {
            return Either::Left(tokio::time::timeout_at(until, reply).map(Result::ok));
        };
        let kept = self
            .0
            .take()
            .filter(|k| k.task == task && !k.sleep.is_elapsed());
        let timer = self.0.insert(match kept {
            Some(mut kept) => {
                if kept.sleep.deadline() > until {
                    kept.sleep.as_mut().reset(until);
                    kept.polled_by = None;
                }
                kept
            }
            None => KeptTimer {
                task,
                sleep: Box::pin(tokio::time::sleep_until(until)),
                polled_by: None,
            },
        });
        Either::Right(std::future::poll_fn(move |cx| {
            // As tokio's own `Timeout`: the reply first, and the timer is
            // checked even when the reply's poll spent the task's budget.
            let had_budget = coop::has_budget_remaining();
            if let Poll::Ready(value) = reply.as_mut().poll(cx) {
                return Poll::Ready(Some(value));
            }
            // At most twice: a timer that fires early is reset to `until`,
            // and its next firing is the end.
            for _ in 0..2 {
                let registered = !timer.sleep.is_elapsed()
                    && timer
                        .polled_by
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()));
                if registered {
                    return Poll::Pending;
                }
                let sleep = timer.sleep.as_mut();
                let ended = if had_budget && !coop::has_budget_remaining() {
                    std::pin::pin!(coop::unconstrained(sleep)).poll(cx)
                } else {
                    sleep.poll(cx)
                };
                if ended.is_pending() {
                    // Polled without budget, a timer only has its task
                    // polled again, and registers nothing (a new one is
                    // not even in the wheel yet): it must be polled again.
                    if had_budget {
                        timer.polled_by = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                if timer.sleep.deadline() >= until {
                    return Poll::Ready(None);
                }
                // Fired at an earlier wait's end: on to this one's.
                timer.sleep.as_mut().reset(until);
                timer.polled_by = None;
            }
            Poll::Ready(None)
        }))
    }
}

/// Where a handle's command goes, as its shape's `route` decides.
pub(crate) enum Route<'a> {
    /// Through the call loop on the shape's own connections, with
    /// `request.blocking()` as the shape has already looked at it.
    Loop(Result<Option<Blocking>, BadTimeout>),
    /// Answered another way (an exclusive connection, the cache, a
    /// refusal), already boxed.
    Other(redis::RedisFuture<'a, Value>),
}

impl Route<'_> {
    /// Refused before anything is sent.
    pub(crate) fn refused(error: Error) -> Self {
        Route::Other(Box::pin(std::future::ready(Err(error.into_redis()))))
    }
}

/// A command's arguments, its name first (a cursor placeholder reads as empty).
pub(crate) fn args(cmd: &Cmd) -> impl Iterator<Item = &[u8]> + Clone {
    cmd.args_iter().map(|a| match a {
        redis::Arg::Simple(bytes) => bytes,
        _ => &b""[..],
    })
}

/// One command or one slice of a pipeline.
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    Cmd(&'a Cmd),
    Pipeline {
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    },
}

impl<'b> Request<'b> {
    /// Does `f` hold for any command in it?
    fn any(&self, f: impl Fn(&Cmd) -> bool) -> bool {
        match self {
            Request::Cmd(cmd) => f(cmd),
            Request::Pipeline { pipeline, .. } => pipeline.cmd_iter().any(f),
        }
    }

    /// Safe to run twice: every command in it is read-only by the command table.
    pub(crate) fn is_read_only(&self) -> bool {
        !self.any(|cmd| match cmd.args_iter().next() {
            Some(redis::Arg::Simple(name)) => !relink_core::commands::is_read_only(name),
            _ => true,
        })
    }

    /// Must it wait for the cache's invalidations of what it writes
    /// (the core's `cache::needs_fence`: anything but a read)?
    pub(crate) fn needs_fence(&self) -> bool {
        self.any(|cmd| match cmd.args_iter().next() {
            Some(redis::Arg::Simple(name)) => relink_core::cache::needs_fence(name),
            _ => true,
        })
    }

    /// Does any command in it change the connection's state in a way that
    /// silences or confuses the cache's invalidations (the core's
    /// `cache::breaks_tracking`)?
    pub(crate) fn breaks_tracking(&self) -> bool {
        self.any(|cmd| relink_core::cache::breaks_tracking(args(cmd)))
    }

    /// Does a cluster run any command in it on many nodes (`FLUSHALL`, ...)?
    pub(crate) fn fans_out_on_cluster(&self) -> bool {
        self.any(|cmd| relink_core::commands::fans_out_on_cluster(args(cmd)))
    }

    /// Does it block its connection (a blocking command, or a pipeline with
    /// one), and for how long? The longest of a pipeline's.
    pub(crate) fn blocking(&self) -> Result<Option<Blocking>, BadTimeout> {
        let of = |cmd: &Cmd| relink_core::commands::blocking(args(cmd));
        match self {
            Request::Cmd(cmd) => of(cmd),
            Request::Pipeline { pipeline, .. } => {
                let mut longest = None;
                for cmd in pipeline.cmd_iter() {
                    longest = match (longest, of(cmd)?) {
                        (_, Some(Blocking::Forever)) | (Some(Blocking::Forever), _) => {
                            Some(Blocking::Forever)
                        }
                        (
                            Some(Blocking::For { timeout: a }),
                            Some(Blocking::For { timeout: b }),
                        ) => Some(Blocking::For { timeout: a.max(b) }),
                        (a, b) => a.or(b),
                    };
                }
                Ok(longest)
            }
        }
    }

    /// Sends on a multiplexed connection. (Not an `async fn`: a command's
    /// future is redis-rs's own, with no state machine of ours around it.)
    pub(crate) fn send<'a>(
        self,
        conn: &'a mut MultiplexedConnection,
    ) -> impl Future<Output = Result<Value, RedisError>> + Send + 'a
    where
        'b: 'a,
    {
        match self {
            Request::Cmd(cmd) => Either::Left(conn.send_packed_command(cmd)),
            Request::Pipeline {
                pipeline,
                offset,
                count,
            } => Either::Right(
                conn.send_packed_commands(pipeline, offset, count)
                    .map_ok(Value::Array),
            ),
        }
    }
}

/// What both handles have in common, written once: `Debug`, the fields of
/// their `Shared` that the loop reads (`live`, `health`), the public
/// methods about calls (`idempotent`, `with_deadline`, `health`, `stats`,
/// `wait_ready`, `shutdown`), and `redis::aio::ConnectionLike`.
///
/// `$handle` has fields `shared: Arc<$shared>`, `options: CallOptions` and
/// `kept: Kept`,
/// `$shared` methods `route(request, options)` (a [`Route`]) and `stats()`;
/// `$shared` has `config` (whose `Debug` shows no secret), `live:
/// ArcSwapOption<$conn>`, `health: watch::Sender<$health>` and `calls: Calls`, and implements the rest of [`Transport`] (its own
/// `send`, `replied` and `failed`); `$health` has a `state` field.
macro_rules! handle {
    ($handle:ident, $shared:ty, $conn:ty, $health:ty, |$this:ident| $db:expr) => {
        impl $crate::calls::Fields for $shared {
            type Conn = std::sync::Arc<$conn>;
            type Health = $health;

            fn current(&self) -> Option<std::sync::Arc<$conn>> {
                self.live.load_full()
            }

            fn health(&self) -> tokio::sync::watch::Receiver<$health> {
                self.health.subscribe()
            }
        }

        impl std::fmt::Debug for $handle {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // The config's own Debug shows no secret.
                f.debug_struct(stringify!($handle))
                    .field("config", &self.shared.config)
                    .field("state", &self.shared.health.borrow().state)
                    .field("idempotent", &self.options.idempotent)
                    .field("deadline", &self.options.deadline)
                    .finish()
            }
        }

        impl $handle {
            /// A handle to the same client whose commands are all declared
            /// idempotent: safe to retry even when their fate is unknown. Use
            /// it for writes that are (`SET k v`, `HSET`, `DEL`), never for
            /// `INCR` or `LPUSH`.
            pub fn idempotent(&self) -> $handle {
                let mut handle = self.clone();
                handle.options.idempotent = true;
                handle
            }

            /// A handle to the same client whose calls each end by
            /// `deadline` (`None`: no total bound): queueing, attempts and
            /// retries included, each attempt's response timeout cut to what
            /// is left. A call that runs out of time fails with
            /// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded),
            /// which says whether the command may have been applied. The
            /// client's default is [`Config::deadline`](crate::Config::deadline).
            ///
            /// ```no_run
            /// # async fn f(client: relink::Client) -> redis::RedisResult<()> {
            /// use redis::AsyncCommands;
            /// use std::time::Duration;
            /// let mut fast = client.with_deadline(Some(Duration::from_millis(300)));
            /// let _: Option<String> = fast.get("key").await?; // within 300 ms, or an error
            /// # Ok(()) }
            /// ```
            pub fn with_deadline(&self, deadline: Option<std::time::Duration>) -> $handle {
                let mut handle = self.clone();
                handle.options.deadline = deadline;
                handle
            }

            /// The current health, and every change to it.
            ///
            /// Copy what you need out of a `borrow()` (or the `Ref` that
            /// `wait_for` returns) and drop it: while it is held, relink's
            /// task cannot publish the next change, and a second `borrow()`
            /// of the same channel waiting behind that update would deadlock.
            pub fn health(&self) -> tokio::sync::watch::Receiver<$health> {
                self.shared.health.subscribe()
            }

            /// What happened to the commands sent through this client so far.
            pub fn stats(&self) -> $crate::Stats {
                self.shared.stats()
            }

            /// Waits until the client is Ready, for at most `timeout`; fails
            /// with [`Error::NotReady`](crate::Error::NotReady) (no command
            /// is involved) or [`Error::Shutdown`](crate::Error::Shutdown).
            pub async fn wait_ready(
                &self,
                timeout: std::time::Duration,
            ) -> Result<(), $crate::Error> {
                $crate::calls::wait_ready(self.health(), timeout).await
            }

            /// Stops the client: fails pending and queued commands with
            /// [`Error::Shutdown`](crate::Error::Shutdown), closes its
            /// connections, and waits for the background task to end.
            pub async fn shutdown(&self) {
                self.shared.calls.shutdown().await;
            }

            /// Runs one command or pipeline where the shape routes it: the
            /// call loop's own future, boxed, in the common case.
            fn execute<'a>(
                &'a mut self,
                request: $crate::calls::Request<'a>,
            ) -> redis::RedisFuture<'a, redis::Value> {
                let (shared, options, kept) = (&*self.shared, self.options, &mut self.kept);
                match shared.route(request, options) {
                    $crate::calls::Route::Loop(blocking) => $crate::calls::boxed(|| {
                        shared.calls.run(shared, request, options, blocking, kept)
                    }),
                    $crate::calls::Route::Other(future) => future,
                }
            }
        }

        impl redis::aio::ConnectionLike for $handle {
            fn req_packed_command<'a>(
                &'a mut self,
                cmd: &'a redis::Cmd,
            ) -> redis::RedisFuture<'a, redis::Value> {
                self.execute($crate::calls::Request::Cmd(cmd))
            }

            fn req_packed_commands<'a>(
                &'a mut self,
                pipeline: &'a redis::Pipeline,
                offset: usize,
                count: usize,
            ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
                let request = $crate::calls::Request::Pipeline {
                    pipeline,
                    offset,
                    count,
                };
                let (shared, options, kept) = (&*self.shared, self.options, &mut self.kept);
                match shared.route(request, options) {
                    $crate::calls::Route::Loop(blocking) => $crate::calls::boxed(|| async move {
                        shared
                            .calls
                            .run(shared, request, options, blocking, kept)
                            .await
                            .map($crate::budget::into_values)
                    }),
                    $crate::calls::Route::Other(future) => {
                        Box::pin(async move { future.await.map($crate::budget::into_values) })
                    }
                }
            }

            fn get_db(&self) -> i64 {
                let $this = self;
                $db
            }
        }
    };
}
pub(crate) use handle;

#[cfg(test)]
mod tests {
    use std::future::{pending, ready, Future};
    use std::pin::pin;
    use std::task::{Context, Waker};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::ReplyTimer;

    /// Runs `check` in a task (a handle keeps its timer only there), on
    /// tokio's paused clock: time moves only when every task waits, so the
    /// times checked below are exact, whatever the machine's speed.
    async fn in_a_task<F: Future<Output = ()> + Send + 'static>(check: F) {
        tokio::spawn(check).await.expect("the check panicked");
    }

    /// `ms` milliseconds after `start`, as a wait takes its end.
    fn at(start: Instant, ms: u64) -> std::time::Instant {
        (start + Duration::from_millis(ms)).into_std()
    }

    /// A wait whose reply is there at once: it leaves the handle a timer
    /// ending at `until`, never polled.
    async fn answered_at_once(timer: &mut ReplyTimer, until: std::time::Instant) {
        let mut one = pin!(ready(1));
        assert_eq!(timer.wait(until, one.as_mut()).await, Some(1));
    }

    /// Awaits `wait` (for a reply that never comes): it must time out, and
    /// before `bound` has passed since `start` (an outer timeout at 10 s
    /// would end it too, late).
    async fn times_out_by(wait: impl Future<Output = Option<()>>, start: Instant, bound: u64) {
        let ended = tokio::time::timeout(Duration::from_secs(10), wait).await;
        assert_eq!(ended, Ok(None));
        let waited = Instant::now() - start;
        assert!(
            waited < Duration::from_millis(bound),
            "ended after {waited:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_left_at_an_earlier_end_does_not_end_a_later_wait() {
        in_a_task(async {
            let start = Instant::now();
            let mut timer = ReplyTimer::default();
            answered_at_once(&mut timer, at(start, 100)).await;
            // The timer still ends at the first wait's end: it fires there,
            // and this wait goes on to its own end.
            let mut never = pin!(pending::<()>());
            assert_eq!(timer.wait(at(start, 1_000), never.as_mut()).await, None);
            let end = start + Duration::from_secs(1);
            assert!(
                Instant::now() >= end,
                "ended {:?} early",
                end - Instant::now()
            );
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ending_before_the_timer_does_ends_on_time() {
        in_a_task(async {
            let start = Instant::now();
            let mut timer = ReplyTimer::default();
            answered_at_once(&mut timer, at(start, 5_000)).await;
            let mut never = pin!(pending::<()>());
            // Its end is 100 ms: no more than 10 ms late.
            times_out_by(timer.wait(at(start, 100), never.as_mut()), start, 110).await;
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_first_polled_without_budget_still_ends() {
        in_a_task(async {
            let start = Instant::now();
            let mut timer = ReplyTimer::default();
            let mut never = pin!(pending::<()>());
            let mut wait = pin!(timer.wait(at(start, 100), never.as_mut()));
            // A task that spent its cooperative budget (a busy channel
            // drained), then polls the wait once: its timer cannot register.
            std::future::poll_fn(|cx| {
                for _ in 0..1_000 {
                    if pin!(tokio::task::consume_budget()).poll(cx).is_pending() {
                        break;
                    }
                }
                assert!(wait.as_mut().poll(cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
            times_out_by(wait, start, 1_000).await;
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_polled_by_another_waker_still_ends() {
        in_a_task(async {
            let start = Instant::now();
            let mut timer = ReplyTimer::default();
            {
                // Polled once by another waker (a future in a
                // `FuturesUnordered` is), then given up.
                let mut never = pin!(pending::<()>());
                let wait = timer.wait(at(start, 100), never.as_mut());
                let mut cx = Context::from_waker(Waker::noop());
                assert!(pin!(wait).poll(&mut cx).is_pending());
            }
            // The timer last saw the other waker: this task's must be
            // registered, or its firing would wake nobody.
            let mut never = pin!(pending::<()>());
            times_out_by(timer.wait(at(start, 200), never.as_mut()), start, 1_000).await;
        })
        .await;
    }
}
