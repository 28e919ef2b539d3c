//! Exclusive connections: a bounded set of connections that are each used
//! by one caller at a time. Blocking commands (`BLPOP`, `XREAD ... BLOCK`,
//! `WAIT`) are run there automatically, so they never hold the shared
//! multiplexed connection, and [`Client::exclusive`] leases one for
//! `WATCH`/`MULTI`/`EXEC` and anything else that sets connection state.
//!
//! **Same engine.** Each exclusive connection is a [`Client`] of its own,
//! made through the same [`Connector`] with the same config: its own core
//! `Supervisor` (reconnect, backoff, heartbeat, busy-connection liveness),
//! restored state (AUTH, SELECT, CLIENT SETNAME), and the same call policy.
//! This module only hands them out, takes them back and closes idle ones.
//!
//! **Back to the set, or closed.** A lease that leaves a transaction open or
//! keys watched is cleaned (`DISCARD` / `UNWATCH`) before the connection is
//! handed to anyone else; one that changed lasting state (`SELECT`,
//! `CLIENT TRACKING`, `SUBSCRIBE`, ... by
//! [`relink_core::commands::connection_effect`]) is closed instead.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use redis::{RedisError, Value};
use relink_core::call::{Call, CallInput, Decision, FailReason};
use relink_core::commands::{connection_effect, ConnectionEffect};
use relink_core::State;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::calls::{CallOptions, Calls, Kept, Request};
use crate::config::Config;
use crate::connector::Connector;
use crate::{Client, Error};

/// The set of exclusive connections of one client.
pub(crate) struct ExclusivePool {
    /// The client's shutdown: each exclusive connection's is a child of it.
    shutdown: tokio_util::sync::CancellationToken,
    config: Config,
    connector: Arc<dyn Connector>,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<IdleConnection>>,
    /// Exclusive connections open now (idle or leased).
    open: AtomicU64,
    /// The task that closes idle connections, while any is idle.
    reaper: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set when the client shuts down: no lease is given or served.
    closed: AtomicBool,
    /// The parent's live settings, which every exclusive connection shares.
    settings: crate::client::LiveSettings,
    /// With the parent's client-side cache on: waits until the parent's
    /// connection has applied the invalidations of a write made here (see
    /// [`Exclusive::run`]).
    fence: std::sync::OnceLock<Fence>,
}

/// The parent's fence: resolves once its connection has read everything
/// the server sent it before now.
pub(crate) type Fence = Box<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

struct IdleConnection {
    since: Instant,
    client: Client,
}

impl ExclusivePool {
    pub(crate) fn new(
        config: &Config,
        connector: Arc<dyn Connector>,
        shutdown: tokio_util::sync::CancellationToken,
        settings: crate::client::LiveSettings,
    ) -> ExclusivePool {
        ExclusivePool {
            shutdown,
            config: config.clone(),
            connector,
            slots: Arc::new(Semaphore::new(config.exclusive().max_connections)),
            idle: Mutex::new(Vec::new()),
            open: AtomicU64::new(0),
            reaper: Mutex::new(None),
            closed: AtomicBool::new(false),
            settings,
            fence: std::sync::OnceLock::new(),
        }
    }

    /// Sets the parent's cache fence (once, at the client's start).
    pub(crate) fn set_fence(&self, fence: Fence) {
        let _ = self.fence.set(fence);
    }

    /// Closes every idle connection (the credentials changed: the next
    /// lease opens one that logs in with the new ones).
    pub(crate) fn close_idle(&self) {
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        self.open.fetch_sub(idle.len() as u64, Ordering::Relaxed);
        drop(idle);
    }

    /// The client shut down: close every idle connection now, and every
    /// leased one when it comes back; give out none.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.slots.close();
        // After `closed` is set, under the reaper lock: a concurrent
        // `put_back` either saw `closed` or has pushed already.
        let reaper = self
            .reaper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(reaper) = reaper {
            reaper.abort();
        }
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        self.open.fetch_sub(idle.len() as u64, Ordering::Relaxed);
        drop(idle);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Exclusive connections open now, and leased now.
    pub(crate) fn counts(&self) -> (u64, u64) {
        let max = self.config.exclusive().max_connections;
        let leased = max.saturating_sub(self.slots.available_permits()) as u64;
        (self.open.load(Ordering::Relaxed), leased)
    }

    /// Leases a connection. Waiting for one (all in use) follows the core's
    /// call policy like waiting for a connection: fail fast, or wait within
    /// the outage wait and the call's deadline.
    pub(crate) async fn lease(
        self: &Arc<Self>,
        calls: &Calls,
        options: CallOptions,
    ) -> Result<Exclusive, Error> {
        if self.is_closed() {
            return Err(Error::Shutdown);
        }
        let started = calls.now();
        let mut call = Call::with_deadline(
            started,
            options.idempotent,
            options.deadline,
            started.as_millis(),
        );
        let policy = calls.policy();
        let max = self.config.exclusive().max_connections;
        let failed = |failure: relink_core::call::Failure| match failure.reason {
            FailReason::Shutdown => Error::Shutdown,
            FailReason::DeadlineExceeded => Error::DeadlineExceeded {
                deadline: options.deadline.unwrap_or_default(),
                outcome: failure.outcome,
                read_only: false,
                last_attempt: None,
            },
            FailReason::QueueTimeout => Error::QueueTimeout {
                waited: calls.now().saturating_since(started),
                last_attempt: None,
            },
            _ => Error::NoExclusiveConnection { max },
        };
        let mut input = CallInput::Connected;
        // Bounded by the core: it answers Queue until the outage wait or
        // the deadline ends, then Fail.
        let permit = loop {
            if calls.shutdown.is_cancelled() {
                input = CallInput::Shutdown;
            }
            match call.decide(policy, calls.now(), input) {
                Decision::Send { .. } | Decision::Redirect { .. } | Decision::RetryAt { .. } => {
                    match Arc::clone(&self.slots).try_acquire_owned() {
                        Ok(permit) => break permit,
                        Err(_) => input = CallInput::NotConnected,
                    }
                }
                Decision::Queue { until } => {
                    let acquire = Arc::clone(&self.slots).acquire_owned();
                    tokio::select! {
                        permit = acquire => match permit {
                            Ok(permit) => break permit,
                            Err(_) => input = CallInput::Shutdown,
                        },
                        _ = calls.shutdown.cancelled() => input = CallInput::Shutdown,
                        _ = tokio::time::sleep_until(calls.instant(until).into()) => {
                            input = CallInput::NotConnected;
                        }
                    }
                }
                Decision::Fail { failure } => return Err(failed(failure)),
                _ => return Err(Error::NoExclusiveConnection { max }),
            }
        };
        let client = self.take_idle().map_or_else(|| self.open_one(), Ok)?;
        // Returned to the set's count if this lease is cancelled or fails
        // before it is handed out.
        let mut pending = Pending {
            pool: self,
            client: Some(client.clone()),
        };
        // A lease is a connection: wait for a new one to be up as for any
        // connection (so a WATCH is pinned to the connection it runs on).
        let mut health = client.health();
        let deadline = call.deadline();
        // Bounded by the core, as above.
        let up = async {
            // A connection being opened for the first time is not an
            // outage: let its first attempt end (the supervisor bounds it
            // by the connect timeout) before the outage policy applies.
            // Within the call's deadline and the client's life.
            let first_attempt = health
                .wait_for(|h| !matches!(h.state, State::Idle | State::Connecting) || h.attempt > 1);
            tokio::select! {
                _ = first_attempt => {}
                _ = calls.shutdown.cancelled() => return Err(Error::Shutdown),
                _ = crate::wait::until(deadline.map(|d| calls.instant(d))) => {}
            }
            while client.current_generation() == 0 {
                let input = if health.borrow().misconfigured {
                    CallInput::Misconfigured
                } else {
                    CallInput::NotConnected
                };
                match call.decide(policy, calls.now(), input) {
                    Decision::Queue { until } => {
                        tokio::select! {
                            _ = health.changed() => {}
                            _ = calls.shutdown.cancelled() => {}
                            _ = tokio::time::sleep_until(calls.instant(until).into()) => {}
                        }
                        if calls.shutdown.is_cancelled() {
                            return Err(Error::Shutdown);
                        }
                    }
                    Decision::Fail { failure } => {
                        let health = client.health();
                        let health = health.borrow();
                        let last_attempt = health.last_attempt_failure.map(Box::new);
                        return Err(match (failure.reason, last_attempt) {
                            (FailReason::Misconfigured, Some(failure)) => {
                                Error::Misconfigured { failure }
                            }
                            (
                                FailReason::NotConnected | FailReason::Misconfigured,
                                last_attempt,
                            ) => Error::NotConnected {
                                state: health.state,
                                last_attempt,
                            },
                            (_, last_attempt) => failed(failure).with_last_attempt(last_attempt),
                        });
                    }
                    _ => return Err(Error::NoExclusiveConnection { max }),
                }
            }
            Ok(())
        };
        up.await?;
        let Some(client) = pending.client.take() else {
            return Err(Error::Shutdown);
        };
        Ok(Exclusive {
            in_call: false,
            client: Some(client),
            pool: Arc::clone(self),
            permit: Some(permit),
            options,
            kept: Kept::default(),
            watching: false,
            in_multi: false,
            lasting: false,
        })
    }

    /// The most recently used idle connection that is still usable.
    fn take_idle(&self) -> Option<Client> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(entry) = idle.pop() {
            if entry.client.health().borrow().state != State::Shutdown {
                return Some(entry.client);
            }
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
        None
    }

    fn open_one(&self) -> Result<Client, Error> {
        let client = Client::exclusive_connection(
            self.config.clone(),
            Arc::clone(&self.connector),
            self.shutdown.clone(),
            self.settings.clone(),
        )?;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(client)
    }

    /// Takes a clean connection back; it is closed after the idle timeout
    /// unless it is leased again first. The reaper lock orders this against
    /// `close` and against the reaper deciding to end.
    fn put_back(self: &Arc<Self>, client: Client) {
        let mut reaper = self.reaper.lock().unwrap_or_else(PoisonError::into_inner);
        if self.is_closed() {
            drop(reaper);
            self.discard(client);
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(IdleConnection {
                since: Instant::now(),
                client,
            });
        if reaper.is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // One task per pool closes idle connections as they expire, and
        // ends when none is idle (a return starts it again).
        let pool = Arc::downgrade(self);
        *reaper = Some(runtime.spawn(async move {
            // Bounded: every round closes the expired connections and
            // sleeps until the oldest of the rest expires; no idle one left
            // (or no pool) ends it.
            loop {
                let Some(next) = pool.upgrade().and_then(|pool| pool.close_expired()) else {
                    return;
                };
                tokio::time::sleep_until(next.into()).await;
            }
        }));
    }

    /// Closes the idle connections past the idle timeout; returns when the
    /// oldest of the others expires, or `None` (and the reaper is done)
    /// when none is left.
    fn close_expired(&self) -> Option<Instant> {
        let idle_timeout = self.config.exclusive().idle_timeout;
        let now = Instant::now();
        let mut reaper = self.reaper.lock().unwrap_or_else(PoisonError::into_inner);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let (expired, kept): (Vec<IdleConnection>, Vec<IdleConnection>) =
            std::mem::take(&mut *idle)
                .into_iter()
                .partition(|e| now.duration_since(e.since) >= idle_timeout);
        *idle = kept;
        let next = idle.iter().map(|e| e.since + idle_timeout).min();
        if next.is_none() {
            // Ending: the next return starts a new one.
            *reaper = None;
        }
        drop((idle, reaper));
        self.open.fetch_sub(expired.len() as u64, Ordering::Relaxed);
        // Dropping the last handles stops their tasks.
        drop(expired);
        next
    }

    /// A connection that cannot go back: close it.
    fn discard(&self, client: Client) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        drop(client);
    }
}

/// An exclusive connection taken from the set for a lease that is not yet
/// handed out: discarded (and uncounted) if the lease never is.
struct Pending<'a> {
    pool: &'a ExclusivePool,
    client: Option<Client>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            self.pool.discard(client);
        }
    }
}

/// A connection of the client's exclusive set, leased to one caller until
/// dropped. It implements [`redis::aio::ConnectionLike`], so
/// `redis::AsyncCommands`, pipelines and `redis::transaction`-style
/// `WATCH`/`MULTI`/`EXEC` work on it; every command runs through the same
/// call policy as the client's (with the handle's deadline and idempotency).
///
/// When dropped, an open transaction is discarded and watched keys are
/// unwatched before the connection serves anyone else; after a command
/// that changed lasting connection state (`SELECT`, `CLIENT TRACKING`, ...)
/// the connection is closed instead. If its connection is lost and made
/// again during the lease, the server forgets `WATCH`/`MULTI`: `EXEC` then
/// fails (`EXEC without MULTI`) rather than run unguarded.
pub struct Exclusive {
    /// A command was in flight when the lease was dropped (a cancelled
    /// call): the connection may still be busy with it.
    in_call: bool,
    client: Option<Client>,
    pool: Arc<ExclusivePool>,
    permit: Option<OwnedSemaphorePermit>,
    options: CallOptions,
    /// The reply waits' timer and a clone of the connection, kept across
    /// calls (see [`Kept`]).
    kept: Kept,
    watching: bool,
    in_multi: bool,
    lasting: bool,
}

impl std::fmt::Debug for Exclusive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exclusive")
            .field("watching", &self.watching)
            .field("in_multi", &self.in_multi)
            .field("lasting", &self.lasting)
            .finish()
    }
}

impl Exclusive {
    fn note(&mut self, request: Request<'_>) {
        let mut apply = |cmd: &redis::Cmd| match connection_effect(crate::calls::args(cmd)) {
            ConnectionEffect::Watch => self.watching = true,
            ConnectionEffect::Multi => self.in_multi = true,
            ConnectionEffect::EndTransaction => {
                self.in_multi = false;
                self.watching = false;
            }
            ConnectionEffect::Unwatch => self.watching = false,
            ConnectionEffect::Lasting => self.lasting = true,
            ConnectionEffect::None => {}
        };
        match request {
            Request::Cmd(cmd) => apply(cmd),
            Request::Pipeline { pipeline, .. } => {
                pipeline.cmd_iter().for_each(&mut apply);
                if pipeline.is_transaction() {
                    // redis-rs wraps it in MULTI ... EXEC when it sends it:
                    // the transaction, and any WATCH before it, ends there.
                    self.in_multi = false;
                    self.watching = false;
                }
            }
        }
    }

    pub(crate) async fn run(&mut self, request: Request<'_>) -> Result<Value, RedisError> {
        let Some(client) = self.client.clone().filter(|_| !self.pool.is_closed()) else {
            return Err(Error::Shutdown.into_redis());
        };
        let had_state = self.watching || self.in_multi;
        self.note(request);
        let pin_after = !had_state && (self.watching || self.in_multi);
        if pin_after {
            // The WATCH/MULTI lives on this connection: pin the lease to it
            // (when it is down right now, to the one the command runs on).
            let now = client.current_generation();
            self.options.pinned = (now != 0).then_some(now);
        }
        // Durable acknowledgements wait for a transaction's EXEC: a WAIT
        // sent inside MULTI would be queued as one of its commands.
        let mut options = self.options;
        if self.watching || self.in_multi {
            options.durable = None;
        }
        self.in_call = true;
        // Taken out for the call: a call dropped midway loses only these.
        let mut kept = std::mem::take(&mut self.kept);
        let result = client.run_here(request, options, &mut kept).await;
        self.kept = kept;
        // Read-your-writes with the parent's cache: the server sent the
        // parent's connection its invalidations while running the write
        // (inside a transaction: at EXEC); once that connection has
        // answered a PING, they are applied.
        if let Some(fence) = self.pool.fence.get() {
            if !self.in_multi && !request.is_read_only() {
                fence().await;
            }
        }
        self.in_call = false;
        let replaced = result
            .as_ref()
            .is_err_and(|e| matches!(Error::from_redis(e), Some(Error::ConnectionReplaced)));
        if pin_after && self.options.pinned.is_none() && result.is_ok() {
            self.options.pinned = Some(client.current_generation());
        }
        if replaced || !(self.watching || self.in_multi) {
            // Ended (EXEC, DISCARD, UNWATCH), or forgotten by the server.
            self.watching = false;
            self.in_multi = false;
            self.options.pinned = None;
        }
        result
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let permit = self.permit.take();
        let usable = !self.lasting
            && !self.in_call
            && !self.pool.is_closed()
            && client.health().borrow().state == State::Ready;
        if !usable {
            self.pool.discard(client);
            return;
        }
        if !self.in_multi && !self.watching {
            self.pool.put_back(client);
            drop(permit);
            return;
        }
        // Clean it first: DISCARD ends a transaction and its watches;
        // UNWATCH ends watches alone. The slot stays taken until it is clean.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.pool.discard(client);
            return;
        };
        let pool = Arc::clone(&self.pool);
        let reset = if self.in_multi { "DISCARD" } else { "UNWATCH" };
        runtime.spawn(async move {
            let mut conn = client.clone();
            match redis::cmd(reset).query_async::<Value>(&mut conn).await {
                Ok(_) => pool.put_back(client),
                Err(_) => pool.discard(client),
            }
            drop(permit);
        });
    }
}

impl redis::aio::ConnectionLike for Exclusive {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        crate::calls::boxed(|| self.run(Request::Cmd(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        crate::calls::boxed(|| async move {
            self.run(Request::Pipeline {
                pipeline,
                offset,
                count,
            })
            .await
            .map(crate::budget::into_values)
        })
    }

    fn get_db(&self) -> i64 {
        self.pool.config.database()
    }
}
