//! `Client`: the cheap, cloneable handle, its hot path, and the background
//! task that drives the core's [`Supervisor`].
//!
//! **The hot path does not hop through the supervisor task.** A command loads
//! the current connection (an `ArcSwap` swapped on reconnect), clones the
//! `MultiplexedConnection` (a channel sender) and sends. Only a failure is
//! reported to the task, and a reply bumps one atomic timestamp that the task
//! reads as heartbeat evidence, so a busy connection is never pinged.
//!
//! **The task owns every decision's execution, none of its logic**: it turns
//! the supervisor's actions into connects, pings and disconnects, and its
//! events into health updates, the events stream and `tracing` events.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use redis::aio::MultiplexedConnection;
use redis::{RedisError, Value};
use relink_core::supervisor::{Action, AsideVerdict, Event, Input, Output, State, Supervisor};
use relink_core::{
    AttemptFailure, Delivery, Durability, Evidence, FailoverSignal, FailureKind, Timestamp,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cache::ClientCache;
use crate::calls::{
    self, CallOptions, Calls, HandleGuard, Kept, KeptConn, Request, Route, Transport,
};
use crate::classify::{self, failure_kind, is_server_reply, Redirect};
use crate::config::Config;
use crate::connector::{Connection, Connector};
use crate::diagnose::Diagnosis;
use crate::exclusive::{Exclusive, ExclusivePool};
use crate::pubsub::{ClientPubSub, Kind, Subscription};
use crate::Error;
use relink_core::cache::Lookup;

/// The health of a client's connection, as published on [`Client::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The connectivity state.
    pub state: State,
    /// When the state was entered.
    pub since: Instant,
    /// The current or last connection attempt number in this outage.
    pub attempt: u32,
    /// The most recent failure, if any.
    pub last_failure: Option<FailureKind>,
    /// Round-trip time of the last answered heartbeat PING.
    pub rtt: Option<Duration>,
    /// Heartbeat misses in a row on the current connection.
    pub heartbeat_misses: u32,
    /// Since when the connection has been busy: its heartbeat PINGs queue
    /// behind work (a blocking command, a long script, a paused server)
    /// and a check from the side confirmed it alive. `None` once any reply
    /// comes through.
    pub busy_since: Option<Instant>,
    /// The latest failed connection attempt while not Ready: its number,
    /// its cause ([`ConnectCause`](relink_core::ConnectCause)) and the
    /// server's words or the peer's first bytes (`WRONGPASS invalid
    /// username-password pair`, `HTTP/1.1 400 Bad Request`), redacted.
    pub last_attempt_failure: Option<AttemptFailure>,
    /// The latest attempt failed for a cause retrying will not fix by itself
    /// (a wrong password, a peer that is not Redis, an unknown host): the
    /// client keeps trying on a slow schedule, and commands fail at once
    /// with [`Error::Misconfigured`] instead of waiting. Cleared by a fix
    /// ([`Client::update_credentials`]) or any other outcome of an attempt.
    pub misconfigured: bool,
    /// Since when a failover of the master is in progress, as the
    /// sentinels announced it: writes wait (within their deadline) instead
    /// of going to a master that is being replaced, reads go on. `None`
    /// otherwise. See [`Event::FailoverStarted`].
    pub failover_since: Option<Instant>,
    /// Whether the client-side cache answers reads now
    /// ([`Serving`](crate::cache::CacheState::Serving) while the connection
    /// carrying its invalidations is up; suspended, and empty, from the
    /// moment it is lost); `None` when caching is off.
    pub cache: Option<crate::cache::CacheState>,
}

impl calls::HasState for Health {
    fn state(&self) -> State {
        self.state
    }

    fn last_attempt_failure(&self) -> Option<AttemptFailure> {
        self.last_attempt_failure
    }

    fn misconfigured(&self) -> bool {
        self.misconfigured
    }
}

/// Counters of what happened to commands, for dashboards and the outage tour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Commands (or pipelines) that got their reply.
    pub succeeded: u64,
    /// Retries sent (a command retried twice counts two).
    pub retried: u64,
    /// Commands refused without being sent: not connected (fail-fast),
    /// backlog full, no connection within `max_wait`, shut down.
    pub not_sent: u64,
    /// Commands that failed certainly unapplied after being sent (the server
    /// refused them: busy, loading) and were not retried.
    pub not_applied: u64,
    /// Commands whose outcome is unknown: they may have been applied.
    pub unknown: u64,
    /// Commands the server answered with an error (passed on as they are).
    pub rejected: u64,
    /// Calls holding a backlog place right now, waiting for a connection (a
    /// gauge, not a count: [`since`](Self::since) keeps the later value).
    pub queued: u64,
    /// Exclusive connections open now (a gauge).
    pub exclusive_open: u64,
    /// Exclusive connections leased now (a gauge): blocking commands and
    /// [`Client::exclusive`] leases in progress.
    pub exclusive_leased: u64,
    /// Pub/Sub [`Subscription`] handles open now (a gauge).
    pub subscriptions: u64,
    /// Times a subscriber connection was lost: each such gap ends with a
    /// [`Restored`](crate::PubSubItem::Restored) marker to every handle on it.
    pub subscriber_losses: u64,
    /// Pub/Sub messages dropped because a handle's buffer was full (each
    /// hole is marked by a [`Lagged`](crate::PubSubItem::Lagged) item).
    pub messages_dropped: u64,
    /// The client-side cache's figures (hits, misses, invalidations,
    /// flushes at gaps, evictions, entries, bytes); `None` when it is off.
    pub cache: Option<crate::cache::CacheStats>,
}

impl Stats {
    /// The counts accumulated since `earlier`.
    pub fn since(&self, earlier: &Stats) -> Stats {
        Stats {
            succeeded: self.succeeded.saturating_sub(earlier.succeeded),
            retried: self.retried.saturating_sub(earlier.retried),
            not_sent: self.not_sent.saturating_sub(earlier.not_sent),
            not_applied: self.not_applied.saturating_sub(earlier.not_applied),
            unknown: self.unknown.saturating_sub(earlier.unknown),
            rejected: self.rejected.saturating_sub(earlier.rejected),
            queued: self.queued,
            exclusive_open: self.exclusive_open,
            exclusive_leased: self.exclusive_leased,
            subscriptions: self.subscriptions,
            subscriber_losses: self
                .subscriber_losses
                .saturating_sub(earlier.subscriber_losses),
            messages_dropped: self
                .messages_dropped
                .saturating_sub(earlier.messages_dropped),
            cache: match (&self.cache, &earlier.cache) {
                (Some(now), Some(earlier)) => Some(now.since(earlier)),
                (now, _) => *now,
            },
        }
    }
}

/// A connection that is Ready, as the hot path sees it.
struct Live {
    conn: MultiplexedConnection,
    /// The server has `WAITAOF` (Redis 7.2+), asked at connect.
    waitaof: bool,
    /// The server's `CLIENT ID` of this connection, for checks from the side.
    client_id: Option<i64>,
    /// Generation: which connection a failure report is about.
    generation: u64,
    /// Stops the connection's driver task, failing every command still
    /// waiting on it (present when relink opened the socket itself).
    kill: Option<tokio::task::AbortHandle>,
    /// The callers waiting on it (their command queued, written or
    /// awaiting its reply): what the heartbeat tells the core as work
    /// outstanding, and what its writes consult to coalesce the commands
    /// of many callers (when relink opened the socket).
    demand: crate::connector::Demand,
    /// Cancelled when the connection is given up: commands on a connection
    /// without a `kill` handle race against it instead.
    dead: CancellationToken,
    /// Why relink gave the connection up, when it did (its heartbeat got no
    /// answer, the server no longer knew it): what the commands that were
    /// waiting on it are told, rather than the socket error closing it
    /// caused.
    closed_because: std::sync::OnceLock<String>,
    /// Counts the connection in the metrics while it lives.
    _open: crate::metrics::Open,
}

impl Live {
    /// The error of a command that failed on this connection: `err`, or
    /// why relink closed the connection under it.
    fn failure(&self, err: RedisError) -> RedisError {
        match self.closed_because.get() {
            Some(reason) => classify::closed_by_relink(reason),
            None => err,
        }
    }

    /// When the connection last read anything from the server, in whole
    /// milliseconds of `epoch` rounded down (0: not known).
    fn last_read_ms(&self, epoch: Instant) -> u64 {
        self.demand.last_read().map_or(0, |t| {
            u64::try_from(t.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
        })
    }

    /// Gives the connection up: every command still waiting on it fails now
    /// rather than at its response timeout.
    fn close(&self) {
        if let Some(kill) = &self.kill {
            kill.abort();
        }
        self.dead.cancel();
    }
}

/// A failure seen on the hot path, for the supervisor.
#[derive(Debug)]
struct Report {
    generation: u64,
    kind: FailureKind,
}

impl From<(u64, FailureKind)> for Report {
    fn from((generation, kind): (u64, FailureKind)) -> Self {
        Report { generation, kind }
    }
}

/// Credentials set on a live client, used from the next handshake on.
#[derive(Clone)]
pub(crate) struct Credentials {
    username: Option<String>,
    password: String,
}

/// What a client and its exclusive connections share of settings changed
/// on the live client: the credentials they connect with (`None`: the
/// config's), and a count of changes every one of their tasks takes
/// (`Input::Reconfigured`).
#[derive(Clone)]
pub(crate) struct LiveSettings {
    credentials: Arc<arc_swap::ArcSwapOption<Credentials>>,
    changes: Arc<watch::Sender<u64>>,
}

impl LiveSettings {
    /// `config` with the credentials changed since, if any: the config a
    /// connection is made with now.
    pub(crate) fn apply(&self, config: &Config) -> Config {
        let config = config.clone();
        match self.credentials.load_full() {
            Some(credentials) => {
                let config = config.with_password(credentials.password.clone());
                match &credentials.username {
                    Some(username) => config.with_username(username.clone()),
                    None => config,
                }
            }
            None => config,
        }
    }
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            credentials: Arc::default(),
            changes: Arc::new(watch::Sender::new(0)),
        }
    }
}

struct Shared {
    config: Config,
    /// Settings changed on the live client (shared with its exclusive
    /// connections).
    settings: LiveSettings,
    /// The count of changes the task has taken and published the health
    /// of (its sender ends with the task).
    reconfigured: watch::Receiver<u64>,
    epoch: Instant,
    live: ArcSwapOption<Live>,
    health: watch::Sender<Health>,
    events: broadcast::Sender<Event>,
    reports: mpsc::UnboundedSender<Report>,
    /// Milliseconds since `epoch` of the latest reply on the live connection.
    last_reply_ms: AtomicU64,
    /// Milliseconds since `epoch` of the latest time the server confirmed
    /// the connection alive but busy (a check from the side): evidence for
    /// a slow call, not a reply (it does not end "work outstanding").
    last_busy_ms: AtomicU64,
    /// Cancelled by the task as its very last act.
    finished: CancellationToken,
    /// The core holds writes back (a failover is in progress): the health's
    /// `failover_since`, where the hot path reads it without a lock.
    writes_held: AtomicBool,
    /// The exclusive connections (none on an exclusive connection itself).
    exclusive: Option<Arc<ExclusivePool>>,
    pubsub: ClientPubSub,
    calls: Calls,
    /// The client-side cache, when the config turns it on (a client's
    /// shared connection only: never an exclusive one).
    cache: Option<Arc<ClientCache>>,
}

impl Shared {
    fn now(&self) -> Timestamp {
        self.calls.now()
    }

    /// The config a connection is made with now: the client's, with the
    /// credentials changed since, if any.
    fn connect_config(&self) -> Config {
        self.settings.apply(&self.config)
    }

    /// Where one command or pipeline goes: a blocking one to an exclusive
    /// connection (so it never holds the shared one), a cached read to the
    /// cache, anything else through the call loop here.
    ///
    /// A plain function, not an `async fn`: the handle boxes the call
    /// loop's own future for the common case, with no state machine of
    /// this routing around it (which every call would poll through).
    fn route<'a>(&'a self, request: Request<'a>, options: CallOptions) -> Route<'a> {
        let blocking = request.blocking();
        if let (Some(pool), Ok(Some(_))) = (&self.exclusive, &blocking) {
            // WAIT/WAITAOF count this connection's writes: they stay here.
            let own_writes = match request {
                Request::Cmd(cmd) => {
                    relink_core::commands::waits_for_own_writes(crate::calls::args(cmd))
                }
                Request::Pipeline { .. } => false,
            };
            if !own_writes {
                return Route::Other(Box::pin(async move {
                    let lease = pool.lease(&self.calls, options).await;
                    let mut lease = lease.map_err(Error::into_redis)?;
                    lease.run(request).await
                }));
            }
        }
        if self.cache.is_some() && request.breaks_tracking() {
            return Route::refused(Error::InvalidCommand {
                reason: "with the client-side cache on, a command that changes the shared \
                         connection's state (CLIENT TRACKING, SELECT, RESET, HELLO, AUTH, ...) \
                         would silence or confuse its invalidations: run it on a connection of \
                         its own (Client::exclusive)"
                    .to_owned(),
            });
        }
        if let (Some(cache), Request::Cmd(cmd), None) = (&self.cache, request, options.durable) {
            // The core decides: answer from memory, or send and maybe keep
            // the reply (a durable handle's reads go out: it asked for the
            // server's word).
            match cache.lookup(self.now(), cmd) {
                Lookup::Hit(value) => {
                    return Route::Other(Box::pin(async move {
                        // Answered without waiting on anything: spend the
                        // task's cooperative budget, so a loop of hits
                        // yields to the runtime like a loop of round trips
                        // does.
                        tokio::task::consume_budget().await;
                        Ok(value)
                    }));
                }
                Lookup::Miss(reservation) => {
                    return Route::Other(Box::pin(async move {
                        let mut kept = Kept::default();
                        let call = self.calls.run(self, request, options, blocking, &mut kept);
                        crate::cache::Filling::new(cache, reservation)
                            .run(call)
                            .await
                    }));
                }
                Lookup::Bypass => {}
            }
        }
        // (A malformed blocking command is refused by the call loop.)
        Route::Loop(blocking)
    }

    /// Waits until the live connection has read everything the server sent
    /// it before now (a `PING`'s reply comes after it): the invalidations
    /// of a write made on another connection are then applied. If it
    /// cannot tell (the connection fails), the cache is emptied. Bounded by
    /// the connection's life: one the supervisor gives up fails the `PING`.
    async fn fence(&self) {
        let (Some(cache), Some(live)) = (&self.cache, self.live.load_full()) else {
            return; // no connection: the cache is suspended, and empty
        };
        let mut conn = live.conn.clone();
        let ping = redis::cmd("PING");
        let answered = tokio::select! {
            biased;
            // Any reply, an error one too (-BUSY during a script), comes
            // after what the server sent before it.
            r = conn.send_packed_command(&ping) => r.as_ref().map_or_else(is_server_reply, |_| true),
            _ = live.dead.cancelled() => false,
        };
        if !answered {
            cache.lost(Some(live.generation));
        }
    }

    fn stats(&self) -> Stats {
        let mut stats = self.calls.stats();
        if let Some(pool) = &self.exclusive {
            (stats.exclusive_open, stats.exclusive_leased) = pool.counts();
        }
        (
            stats.subscriptions,
            stats.subscriber_losses,
            stats.messages_dropped,
        ) = self.pubsub.hub.counts();
        stats.cache = self.cache.as_ref().map(|c| c.stats());
        stats
    }

    fn note_busy(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_busy_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// The latest evidence of a reply, in milliseconds of the epoch: a
    /// reply stamped by a caller or the heartbeat, or the live
    /// connection's last read.
    fn reply_ms(&self) -> u64 {
        let read = self
            .live
            .load()
            .as_ref()
            .map_or(0, |live| live.last_read_ms(self.epoch));
        self.last_reply_ms.load(Ordering::Relaxed).max(read)
    }

    fn note_reply(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        // Written at most once a millisecond: under load most replies only
        // read the shared line.
        if now > self.last_reply_ms.load(Ordering::Relaxed) {
            self.last_reply_ms.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// A Redis client that rides out outages. Cheap to clone; every clone shares
/// one connection and one background task.
///
/// It implements [`redis::aio::ConnectionLike`], so `redis::AsyncCommands`,
/// `redis::cmd(..).query_async(&mut client)`, pipelines and transactions work
/// on it unchanged.
///
/// ```no_run
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use relink::redis::AsyncCommands;
/// use relink::{Client, Config, Error, Outcome};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let mut client = Client::new(Config::new("redis://127.0.0.1:6379")?)?;
/// let mut events = client.events(); // connected, lost, reconnected, ...
/// tokio::spawn(async move {
///     while let Some(event) = events.next().await {
///         println!("{event:?}");
///     }
/// });
/// client.wait_ready(Duration::from_secs(5)).await?;
/// match client.incr::<_, _, i64>("visits", 1).await {
///     Ok(n) => println!("visit {n}"),
///     // Sent, and no reply came: it may have run. relink did not retry it.
///     Err(e) if Error::outcome_of(&e) == Outcome::Unknown => println!("unknown: {e}"),
///     Err(e) => return Err(e.into()),
/// }
/// println!("state: {:?}", client.health().borrow().state);
/// client.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
    options: CallOptions,
    kept: Kept,
}

impl Client {
    /// Starts a client for `config` with the default connector (TCP, TLS or
    /// Unix socket from the URL; Sentinel discovery when the config has a
    /// `sentinel` section). Returns at once; the connection is made in
    /// the background (see [`Client::wait_ready`]). Must be called within a
    /// tokio runtime.
    pub fn new(config: Config) -> Result<Client, Error> {
        let connector = crate::connector::for_config(&config)?;
        Client::with_connector(config, connector)
    }

    /// Starts a client that makes its connections through `connector`.
    pub fn with_connector(config: Config, connector: Arc<dyn Connector>) -> Result<Client, Error> {
        Client::start(config, connector, None, LiveSettings::default())
    }

    /// Starts a client and waits for its first connection: the client once
    /// it is Ready; [`Error::Misconfigured`] at once if an attempt fails for
    /// a cause retrying will not fix (a wrong password, a server that is not
    /// Redis: the cause and the server's words are in the error); and
    /// [`Error::NotReady`], naming the last attempt's cause, if the config's
    /// [`deadline`](Config::deadline) passes first (a refused port, a server
    /// still loading). The client is shut down when it fails. With no
    /// deadline, it waits as long as the backoff keeps trying.
    ///
    /// [`Client::new`] starts the same client without waiting: it connects,
    /// and keeps connecting, in the background.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), relink::Error> {
    /// let client = relink::Client::connect(relink::Config::new("redis://127.0.0.1:6379")?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: Config) -> Result<Client, Error> {
        let wait = config.deadline().unwrap_or(Duration::MAX);
        let client = Client::new(config)?;
        match client.wait_ready(wait).await {
            Ok(()) => Ok(client),
            Err(e) => {
                client.shutdown().await;
                Err(e)
            }
        }
    }

    /// Changes the credentials on a live client, for a password rotation
    /// without a restart: the live connection is re-authenticated (`AUTH`)
    /// at once, and every connection made from now on (reconnects,
    /// exclusive connections) uses the new credentials. `username` `None`
    /// keeps the current user. An attempt waiting out a backoff delay (a
    /// client flagged [`misconfigured`](Health::misconfigured) by a wrong
    /// password) is made again at once.
    ///
    /// The live connection checks them first: if the server refuses them
    /// (`WRONGPASS`), nothing changes and that refusal is returned. Without
    /// a live connection they cannot be checked: the next attempt tells (a
    /// wrong password leaves the client misconfigured, in its health and
    /// its errors). Idle exclusive connections are closed (the next lease
    /// opens one with the new credentials); leased ones stay logged in as
    /// they were, and reconnect with the new ones.
    pub async fn update_credentials(
        &self,
        username: Option<&str>,
        password: &str,
    ) -> Result<(), Error> {
        let shared = &self.shared;
        let username = match username {
            Some("") => return Err(Error::config("username", "must not be empty")),
            Some(name) => Some(name.to_owned()),
            None => shared.connect_config().username().map(str::to_owned),
        };
        let new = Arc::new(Credentials {
            username,
            password: password.to_owned(),
        });
        if let Some(live) = shared.live.load_full() {
            let mut auth = redis::cmd("AUTH");
            if let Some(username) = &new.username {
                auth.arg(username);
            }
            auth.arg(&new.password);
            // Straight on the live connection, not through the call loop: a
            // refusal here is about the new password, not the connection
            // (which stays logged in as it was). A connection that hangs is
            // given up by the heartbeat, which fails this too. The new
            // credentials are used by reconnects only once the server has
            // taken them (or the connection went away under AUTH).
            let mut kept = KeptConn::default();
            let sent = Transport::send(
                &**shared,
                &live,
                &mut kept,
                Request::Cmd(&auth),
                None,
                shared.now(),
                None,
            );
            let refusal = match sent.await {
                // (redis-rs hands a server's error reply back as a value.)
                Ok(Value::ServerError(e)) => Some(RedisError::from(e)),
                Err(e) if is_server_reply(&e) => Some(e),
                // Accepted; or the connection went away under AUTH, and the
                // reconnect authenticates with the new credentials.
                Ok(_) | Err(_) => None,
            };
            if let Some(e) = refusal {
                return Err(Error::Redis(e));
            }
        }
        shared.settings.credentials.store(Some(new));
        if let Some(pool) = &shared.exclusive {
            pool.close_idle();
        }
        // Hand the change to the tasks (this client's and its exclusive
        // connections') and wait until this one took it, so that a
        // `wait_ready` from here on sees the misconfiguration cleared.
        let mut asked = 0;
        shared.settings.changes.send_modify(|n| {
            *n += 1;
            asked = *n;
        });
        let mut taken = shared.reconfigured.clone();
        // Ends when the task takes it, or ends (its sender dropped).
        let _ = taken.wait_for(|n| *n >= asked).await;
        Ok(())
    }

    /// One connection of a client's exclusive set: a client of its own that
    /// runs blocking commands itself (it has no exclusive set). It connects
    /// with its parent's live `settings`.
    pub(crate) fn exclusive_connection(
        config: Config,
        connector: Arc<dyn Connector>,
        parent: CancellationToken,
        settings: LiveSettings,
    ) -> Result<Client, Error> {
        Client::start(config, connector, Some(parent), settings)
    }

    fn start(
        config: Config,
        connector: Arc<dyn Connector>,
        parent: Option<CancellationToken>,
        settings: LiveSettings,
    ) -> Result<Client, Error> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "runtime",
                "relink::Client must be created inside a tokio runtime",
            )
        })?;
        let epoch = Instant::now();
        let seed = config.jitter_seed();
        let supervisor = Supervisor::new(config.supervisor_config(), seed);
        let (health, _) = watch::channel(Health {
            state: State::Idle,
            since: epoch,
            attempt: 0,
            last_failure: None,
            rtt: None,
            heartbeat_misses: 0,
            busy_since: None,
            last_attempt_failure: None,
            misconfigured: false,
            failover_since: None,
            // (An exclusive connection, one with a parent, has no cache.)
            cache: (config.cache().is_some() && parent.is_none())
                .then_some(crate::cache::CacheState::Suspended),
        });
        let (events, _) = broadcast::channel(256);
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let reconfigure_rx = settings.changes.subscribe();
        let (reconfigured_tx, reconfigured) = watch::channel(0);
        let calls = Calls::new(&config, epoch, parent.as_ref());
        // A client has an exclusive set; an exclusive connection (one with
        // a parent) has none, and stops with its parent.
        let exclusive = parent.is_none().then(|| {
            Arc::new(ExclusivePool::new(
                &config,
                Arc::clone(&connector),
                calls.shutdown.clone(),
                settings.clone(),
            ))
        });
        let cache = match (config.cache(), &parent) {
            (Some(cache), None) => Some(Arc::new(
                ClientCache::new(cache.clone())
                    .map_err(|e| Error::config(e.field(), e.to_string()))?,
            )),
            _ => None,
        };
        if let Some(cache) = &cache {
            calls.metrics.observe_cache(Arc::downgrade(cache));
        }
        let shutdown = calls.shutdown.clone();
        let options = CallOptions::new(&config);
        let pubsub = {
            let target_connector = Arc::clone(&connector);
            let target_config = config.clone();
            let target_settings = settings.clone();
            let stop = calls.shutdown.clone();
            ClientPubSub::new(
                config.subscription_buffer(),
                Box::new(move |hub| {
                    let config = target_config.clone();
                    let settings = target_settings.clone();
                    crate::pubsub::link::Link::start(
                        hub,
                        crate::pubsub::link::Target {
                            connector: Arc::clone(&target_connector),
                            config: Arc::new(move || settings.apply(&config)),
                            name: target_config.redacted_url(),
                            on_displaced: None,
                            changes: Some(target_settings.changes.subscribe()),
                        },
                        Arc::new(|_, _| true),
                        target_config.supervisor_config(),
                        target_config.jitter_seed(),
                        stop.clone(),
                        true,
                    )
                }),
            )
        };
        let shared = Arc::new(Shared {
            settings,
            reconfigured,
            pubsub,
            calls,
            config,
            epoch,
            live: ArcSwapOption::empty(),
            health,
            events,
            reports,
            last_reply_ms: AtomicU64::new(0),
            last_busy_ms: AtomicU64::new(0),
            finished: CancellationToken::new(),
            writes_held: AtomicBool::new(false),
            exclusive,
            cache,
        });
        if let (Some(pool), Some(_)) = (&shared.exclusive, &shared.cache) {
            let shared = Arc::downgrade(&shared);
            pool.set_fence(Box::new(move || {
                let shared = shared.clone();
                async move {
                    if let Some(shared) = shared.upgrade() {
                        shared.fence().await;
                    }
                }
                .boxed()
            }));
        }
        let signals = connector.failover_signals();
        let driver = Driver {
            shared: Arc::clone(&shared),
            supervisor,
            connector,
            reports: reports_rx,
            generation: 0,
            last_generation: 0,
            fed_reply_ms: 0,
            connecting: None,
            ping: None,
            aside: None,
            invalidated: None,
            signals,
            half_open: false,
            reconfigure: reconfigure_rx,
            reconfigured: reconfigured_tx,
            reconfigured_pending: None,
            outbox: Vec::with_capacity(16),
        };
        // Every event the task logs carries the (redacted) target.
        let span = tracing::info_span!("relink", url = %shared.config.redacted_url());
        let handle = runtime.spawn(tracing::Instrument::instrument(driver.run(), span));
        shared.calls.set_task(handle);
        Ok(Client {
            shared,
            _guard: Arc::new(HandleGuard(shutdown)),
            options,
            kept: Kept::default(),
        })
    }

    /// Leases one of the client's exclusive connections: no one else uses
    /// it until the [`Exclusive`] is dropped. For `WATCH`/`MULTI`/`EXEC`
    /// and anything else that sets connection state. Waiting for one (all
    /// `exclusive.max_connections` in use) follows the outage policy and
    /// this handle's deadline.
    ///
    /// ```no_run
    /// # async fn f(client: relink::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = client.exclusive().await?;
    /// redis::cmd("WATCH").arg("balance").exec_async(&mut tx).await?;
    /// let balance: i64 = redis::cmd("GET").arg("balance").query_async(&mut tx).await?;
    /// let done: Option<(i64,)> = redis::pipe()
    ///     .atomic()
    ///     .set("balance", balance + 10)
    ///     .ignore()
    ///     .get("balance")
    ///     .query_async(&mut tx)
    ///     .await?; // None: someone else changed `balance`; try again
    /// # Ok(()) }
    /// ```
    pub async fn exclusive(&self) -> Result<Exclusive, Error> {
        match &self.shared.exclusive {
            Some(pool) => pool.lease(&self.shared.calls, self.options).await,
            None => Err(Error::config(
                "exclusive",
                "this is itself an exclusive connection: it cannot lease another",
            )),
        }
    }

    /// A handle to the same client whose writes are acknowledged only once
    /// `replicas` replicas confirmed them within `timeout`: each write (or
    /// pipeline, or transaction) goes out followed by `WAIT replicas
    /// timeout` in the same round trip. Confirmed, the write's reply is
    /// passed on; not, the call fails with
    /// [`Error::NotReplicated`] ("outcome unknown: replicated to N of M"):
    /// the write was applied on the master, but a failover may still
    /// discard it, so it is never reported "OK". Such a write is retried
    /// only if declared idempotent. Reads skip the `WAIT`.
    ///
    /// The price: a `WAIT` holds the connection until the replicas answer
    /// (a replication round trip; at most `timeout`), and commands behind
    /// it wait too. `timeout` must be shorter than the response timeout.
    /// The same for every handle: [`Config::with_durable`](crate::Config::with_durable).
    ///
    /// ```no_run
    /// # async fn f(client: relink::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// use redis::AsyncCommands;
    /// use std::time::Duration;
    /// let mut durable = client.durable(1, Duration::from_millis(500))?;
    /// match durable.incr::<_, _, i64>("orders", 1).await {
    ///     Ok(n) => println!("order {n} is on the master and a replica"),
    ///     Err(e) => match relink::Error::from_redis(&e) {
    ///         Some(relink::Error::NotReplicated { replicated, required, .. }) => {
    ///             println!("applied, but only on {replicated} of {required} replicas: unknown")
    ///         }
    ///         _ => println!("{e}"),
    ///     },
    /// }
    /// # Ok(()) }
    /// ```
    pub fn durable(&self, replicas: u32, timeout: Duration) -> Result<Client, Error> {
        self.with_durability(Some(Durability::new(replicas, timeout)))
    }

    /// Like [`durable`](Self::durable) with every setting (`aof`: wait for
    /// the append-only file's fsync too, with `WAITAOF` where the server has
    /// it); `None`: acknowledged on the master's word, whatever the config says.
    pub fn with_durability(&self, durability: Option<Durability>) -> Result<Client, Error> {
        if let Some(durable) = &durability {
            crate::config::check_durable(durable, self.shared.config.response_timeout())?;
        }
        let mut handle = self.clone();
        handle.options.durable = durability;
        Ok(handle)
    }

    /// The generation of the live connection (0: none now).
    pub(crate) fn current_generation(&self) -> u64 {
        self.shared.live.load().as_ref().map_or(0, |l| l.generation)
    }

    /// Runs `request` on this client's own connection.
    pub(crate) fn run_here<'a>(
        &'a self,
        request: Request<'a>,
        options: CallOptions,
        kept: &'a mut Kept,
    ) -> impl std::future::Future<Output = Result<Value, RedisError>> + Send + 'a {
        let blocking = request.blocking();
        self.shared
            .calls
            .run(&*self.shared, request, options, blocking, kept)
    }

    /// The supervisor's events from now on: connected, disconnected (with the
    /// cause), reconnect scheduled (attempt, delay), reconnected (downtime),
    /// heartbeat missed, gave up, and every state change. A receiver that
    /// falls more than 256 events behind skips the oldest. The stream ends
    /// once the client has shut down (or given up) and its last events are out.
    pub fn events(&self) -> futures_util::stream::BoxStream<'static, Event> {
        let rx = self.shared.events.subscribe();
        let finished = self.shared.finished.clone();
        let stream = futures_util::stream::unfold(
            (rx, finished),
            |(mut rx, finished)| async move {
                loop {
                    let received = tokio::select! {
                        biased;
                        received = rx.recv() => received,
                        // The task has ended: hand out what is left, then end.
                        _ = finished.cancelled() => rx.try_recv().map_err(|e| match e {
                            broadcast::error::TryRecvError::Lagged(n) => broadcast::error::RecvError::Lagged(n),
                            _ => broadcast::error::RecvError::Closed,
                        }),
                    };
                    match received {
                        Ok(event) => return Some((event, (rx, finished))),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        );
        futures_util::stream::StreamExt::boxed(stream)
    }

    /// Subscribes to `channels` (`SUBSCRIBE`): a stream of messages that
    /// keeps flowing across reconnects, with a [`Restored`](crate::PubSubItem::Restored)
    /// marker after each gap saying how long it was (Pub/Sub has no replay:
    /// messages published during a gap are gone).
    ///
    /// Subscriptions run on a connection of their own (opened at the first
    /// one, RESP2 or RESP3 as the config says), never on the command
    /// connection. Returns once the server confirmed the subscription; when
    /// there is no connection, at once, with the subscription in place from
    /// the next connection on (and a marker then). Dropping the
    /// [`Subscription`], or [`Subscription::unsubscribe`], unsubscribes every
    /// channel no other handle wants.
    ///
    /// ```no_run
    /// # async fn f(client: relink::Client) -> Result<(), relink::Error> {
    /// use relink::PubSubItem;
    /// let mut news = client.subscribe(&["news"]).await?;
    /// while let Some(item) = news.next_item().await {
    ///     match item {
    ///         PubSubItem::Message { payload, .. } => println!("{}", String::from_utf8_lossy(&payload)),
    ///         PubSubItem::Restored { gap } => println!("messages of the last {gap:?} were missed"),
    ///         PubSubItem::Lagged { missed } => println!("{missed} dropped: this consumer is slow"),
    ///         _ => {}
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&self, channels: &[&str]) -> Result<Subscription, Error> {
        self.subscribe_kind(Kind::Channel, channels).await
    }

    /// Like [`subscribe`](Self::subscribe), for glob patterns (`PSUBSCRIBE`).
    pub async fn psubscribe(&self, patterns: &[&str]) -> Result<Subscription, Error> {
        self.subscribe_kind(Kind::Pattern, patterns).await
    }

    /// Like [`subscribe`](Self::subscribe), for shard channels
    /// (`SSUBSCRIBE`, Redis 7; published with `SPUBLISH`). Needs RESP3.
    pub async fn ssubscribe(&self, channels: &[&str]) -> Result<Subscription, Error> {
        self.subscribe_kind(Kind::Shard, channels).await
    }

    async fn subscribe_kind(&self, kind: Kind, names: &[&str]) -> Result<Subscription, Error> {
        if kind == Kind::Shard && self.shared.config.protocol() != crate::config::Protocol::Resp3 {
            return Err(crate::pubsub::link::shard_needs_resp3());
        }
        if self.shared.calls.shutdown.is_cancelled() {
            return Err(Error::Shutdown);
        }
        let pubsub = &self.shared.pubsub;
        crate::pubsub::subscribe(&pubsub.hub, pubsub.links(), kind, names).await
    }
}

impl Shared {
    /// A command without `WAIT`: with the cache on, a write returns only
    /// once the server's invalidation of what it wrote has been applied,
    /// and a missed read brings its keys' PTTLs.
    async fn send_plain(
        &self,
        conn: &mut MultiplexedConnection,
        request: Request<'_>,
    ) -> Result<Value, RedisError> {
        match (&self.cache, request) {
            (Some(cache), _) if request.needs_fence() => {
                Box::pin(crate::cache::send_fenced(conn, request, cache.fence())).await
            }
            (Some(_), Request::Cmd(cmd)) if crate::cache::probing() => {
                Box::pin(crate::cache::send_probed(conn, cmd, self.now())).await
            }
            _ => request.send(conn).await,
        }
    }

    /// A durable write, or a command on a connection without a kill handle
    /// (raced against the connection being declared dead instead).
    async fn send_guarded(
        &self,
        live: &Live,
        mut conn: MultiplexedConnection,
        request: Request<'_>,
        durable: Option<Durability>,
    ) -> Result<Value, RedisError> {
        let sent = async {
            let Some(durable) = durable else {
                return self.send_plain(&mut conn, request).await;
            };
            let reply = crate::durable::send(&mut conn, request, durable, live.waitaof).await;
            // The WAIT fences the write in default tracking mode; in
            // broadcast mode the invalidation may follow it (applied,
            // replicated or not).
            if let Some(cache) = &self.cache {
                if cache.fence() == relink_core::cache::Fence::AfterReply && !request.is_read_only()
                {
                    conn.send_packed_command(&redis::cmd("PING")).await?;
                }
            }
            reply
        };
        if live.kill.is_some() {
            // Closing the connection fails this command by itself.
            return sent.await;
        }
        tokio::select! {
            biased;
            result = sent => result,
            _ = live.dead.cancelled() => Err(classify::given_up()),
        }
    }
}

/// The shared multiplexed connection as the execution loop sees it.
impl Transport for Shared {
    const FOLLOWS_REDIRECTS: bool = false;

    async fn send<'a>(
        &'a self,
        live: &'a Arc<Live>,
        kept: &'a mut KeptConn,
        request: Request<'a>,
        _redirect: Option<&'a Redirect>,
        _sent_at: Timestamp,
        durable: Option<Durability>,
    ) -> Result<Value, RedisError> {
        let _waiting = live.demand.enter();
        // The plain command's path is awaited in place, on the handle's
        // own clone of the connection; a durable write (a WAIT in the same
        // round trip) and a connection without a kill handle (a custom
        // connector's) run boxed: each adds a future that every call would
        // otherwise carry and move.
        let result = match (durable, &live.kill, &self.cache) {
            (None, Some(_), None) => request.send(kept.of(live.generation, &live.conn)).await,
            (None, Some(_), Some(_)) => {
                self.send_plain(kept.of(live.generation, &live.conn), request)
                    .await
            }
            _ => Box::pin(self.send_guarded(live, live.conn.clone(), request, durable)).await,
        };
        result.map_err(|e| live.failure(e))
    }

    fn writes_held(&self) -> bool {
        self.writes_held.load(Ordering::Relaxed)
    }

    fn generation(&self, live: &Arc<Live>) -> u64 {
        live.generation
    }

    fn replied(&self, live: &Arc<Live>) {
        // The reply's own time, not its command's send: a reply to a
        // command sent before a waiting call still shows the connection
        // alive after that call was sent. A connection relink opened has
        // stamped it already, when its socket read it: one clock read per
        // socket read rather than per reply.
        if !live.demand.stamps_reads() {
            self.note_reply();
        }
    }

    fn alive_since(&self, live: &Arc<Live>, since: Timestamp) -> bool {
        // Any sign of life after the send: a reply (a heartbeat PONG too) or
        // the server confirming the connection busy. Whole milliseconds, so
        // a reply in the very millisecond of the send does not count.
        let since = since.as_millis();
        self.last_reply_ms.load(Ordering::Relaxed) > since
            || live.last_read_ms(self.epoch) > since
            || self.last_busy_ms.load(Ordering::Relaxed) > since
    }

    fn failed(&self, live: &Arc<Live>, kind: FailureKind, delivery: Delivery) {
        if delivery == Delivery::Answered {
            self.note_reply();
        }
        if kind.kills_connection() {
            // Stop using this connection at once (the core has classified
            // the failure as fatal to it): later commands then follow the
            // outage policy instead of failing on it again and again until
            // the supervisor task gets to run. The supervisor, told here,
            // decides what happens next.
            let current = self.live.load();
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, live)) {
                self.live.compare_and_swap(&current, None);
            }
            if let Some(cache) = &self.cache {
                cache.lost(Some(live.generation));
            }
            live.close();
            let _ = self.reports.send(Report {
                generation: live.generation,
                kind,
            });
        }
    }
}

calls::handle!(Client, Shared, Live, Health, |client| client
    .shared
    .config
    .database());

/// A made connection and its `CLIENT ID` (none when the server refuses to
/// tell, e.g. an ACL user without `CLIENT`: no side checks then), or why
/// the attempt failed.
type ConnectResult = Result<(Connection, Setup), Diagnosis>;

/// What a new connection's setup found out.
struct Setup {
    /// Its `CLIENT ID` (none when the server refuses to tell).
    client_id: Option<i64>,
    /// The server has `WAITAOF`.
    waitaof: bool,
    /// The cache's tracking is on (the server is one the core supports).
    tracking: bool,
}

/// A connection attempt in flight: attempt number, the generation its
/// connection will have, the connection.
type PendingConnect = (u32, u64, BoxFuture<'static, ConnectResult>);

/// A heartbeat PING in flight: probe id, connection generation, the reply.
type PendingPing = (u64, u64, BoxFuture<'static, Result<Value, RedisError>>);

/// A check from the side in flight: probe id, connection generation, the verdict.
type PendingAside = (u64, u64, BoxFuture<'static, AsideVerdict>);

/// The background task: drives the supervisor and executes its actions. It
/// ends when the supervisor reaches Shutdown: asked by [`Client::shutdown`],
/// by the last handle being dropped, or by the backoff policy giving up.
struct Driver {
    shared: Arc<Shared>,
    supervisor: Supervisor,
    connector: Arc<dyn Connector>,
    reports: mpsc::UnboundedReceiver<Report>,
    /// Generation of the live connection (0: none yet).
    generation: u64,
    /// The last generation handed to a connection attempt. Every attempt gets
    /// its own, so a report from an abandoned attempt's connection can never
    /// be taken for one about the connection that replaced it.
    last_generation: u64,
    fed_reply_ms: u64,
    connecting: Option<PendingConnect>,
    ping: Option<PendingPing>,
    aside: Option<PendingAside>,
    /// Resolves when the connector says the server moved: the live
    /// connection is stale ([`Connector::invalidated`]), or, with none up,
    /// the next attempt must not wait its backoff delay ([`Connector::moved`]).
    invalidated: Option<BoxFuture<'static, ()>>,
    /// The connector's news of a failover in progress (Sentinel), for the core.
    signals: Option<broadcast::Receiver<FailoverSignal>>,
    /// The side check just found the live connection gone from the server.
    half_open: bool,
    /// Configuration changes asked for ([`Client::update_credentials`]).
    reconfigure: watch::Receiver<u64>,
    /// Tells the asker a change was taken, once its health is published.
    reconfigured: watch::Sender<u64>,
    reconfigured_pending: Option<u64>,
    /// Events of the drain in progress, sent after its health is published.
    outbox: Vec<Event>,
}

impl Driver {
    async fn run(mut self) {
        let shutdown = self.shared.calls.shutdown.clone();
        let now = self.shared.now();
        self.supervisor.handle_input(now, Input::Start);
        // Followed whatever the state: a move announced in the middle of a
        // backoff wait is acted on at once.
        self.invalidated = Some(self.connector.moved());
        // Bounded by the supervisor: every iteration handles one input or one
        // deadline, and Shutdown is terminal.
        loop {
            let deadline = self.drain();
            if let Some(taken) = self.reconfigured_pending.take() {
                self.reconfigured.send_replace(taken);
            }
            if self.supervisor.state() == State::Shutdown {
                break;
            }
            let epoch = self.shared.epoch;
            let sleep_until = deadline.map(|t| epoch + Duration::from_millis(t.as_millis()));
            let input = tokio::select! {
                _ = shutdown.cancelled() => Some(Input::Shutdown),
                result = poll_connect(&mut self.connecting) => match result {
                    (attempt, generation, Ok(conn)) => {
                        self.shared.calls.metrics.connected();
                        self.install(conn, generation);
                        self.invalidated = Some(self.connector.invalidated());
                        Some(Input::Connected { attempt })
                    }
                    (attempt, _, Err(diagnosis)) => {
                        // (The core tells it, with what follows, as an event.)
                        self.shared.calls.metrics.connect_failed(diagnosis.cause);
                        self.shared.calls.drain_budget();
                        Some(Input::ConnectFailed {
                            attempt,
                            cause: diagnosis.cause,
                            evidence: Evidence::new(&diagnosis.evidence),
                        })
                    }
                },
                (id, generation, result) = poll_ping(&mut self.ping) => {
                    self.ping = None;
                    match result {
                        // Every result goes to the core as it is: it decides
                        // what an error reply or a broken connection proves.
                        Ok(_) if generation == self.generation => {
                            self.shared.note_reply();
                            Some(Input::Pong { id })
                        }
                        Err(err) if generation == self.generation => {
                            Some(Input::PingFailed { id, kind: failure_kind(&err) })
                        }
                        _ => None,
                    }
                }
                (id, generation, verdict) = poll_aside(&mut self.aside) => {
                    self.aside = None;
                    if generation == self.generation {
                        if verdict == AsideVerdict::Busy {
                            self.shared.note_busy();
                        }
                        // If the core gives the connection up now, this is why.
                        self.half_open = verdict == AsideVerdict::Gone;
                        Some(Input::AsideChecked { id, verdict })
                    } else {
                        None
                    }
                }
                Ok(()) = self.reconfigure.changed() => {
                    self.reconfigured_pending = Some(*self.reconfigure.borrow_and_update());
                    Some(Input::Reconfigured)
                }
                _ = poll_invalidated(&mut self.invalidated) => {
                    self.invalidated = Some(self.connector.moved());
                    tracing::info!("relink connector reports the server moved; reconnecting");
                    // The server we talk to is no longer the one to talk to:
                    // reconnect at once (the core skips the backoff delay).
                    Some(Input::ServerMoved)
                }
                Some(signal) = poll_signals(&mut self.signals) => {
                    if signal == FailoverSignal::Switched
                        && self.invalidated.as_mut().and_then(FutureExt::now_or_never).is_some()
                    {
                        // The switch moved the master away from the live
                        // connection: the core hears of the move first, so
                        // the end of the hold never lets a write through to
                        // the old master.
                        self.invalidated = Some(self.connector.moved());
                        self.supervisor.handle_input(self.shared.now(), Input::ServerMoved);
                    }
                    Some(Input::Failover { signal })
                }
                Some(report) = self.reports.recv() => {
                    (report.generation == self.generation).then_some(Input::CommandFailed { kind: report.kind })
                }
                _ = crate::wait::until(sleep_until) => None,
            };
            if let Some(input) = input {
                // The reads since the last turn first: a side check's
                // verdict is judged with every sign of life already known
                // (a PING queued behind a reply whose bytes are flowing is
                // not in doubt). Not before a PING's own answer: its bytes
                // are among those reads, and told first they would close
                // the PING before the core measured its round trip.
                if !matches!(input, Input::Pong { .. } | Input::PingFailed { .. }) {
                    self.feed_evidence();
                }
                let now = self.shared.now();
                self.supervisor.handle_input(now, input);
            }
        }
        // However it ended, leave nothing behind: no connection, no stream
        // waiting for messages, every queued command told.
        if let Some(cache) = &self.shared.cache {
            cache.lost(None);
        }
        if let Some(live) = self.shared.live.swap(None) {
            live.close();
        }
        self.shared.pubsub.hub.close();
        if let Some(pool) = &self.shared.exclusive {
            pool.close();
        }
        self.shared.calls.shutdown.cancel();
        self.publish_health();
        self.shared.finished.cancel();
    }

    /// Tells the core of the replies (and reads) on the live connection
    /// since it last heard.
    fn feed_evidence(&mut self) {
        let reply_ms = self.shared.reply_ms();
        if reply_ms > self.fed_reply_ms && self.supervisor.state() == State::Ready {
            self.fed_reply_ms = reply_ms;
            self.supervisor
                .handle_input(Timestamp::from_millis(reply_ms), Input::Activity);
        }
    }

    /// Feeds reply evidence, then handles outputs until drained; returns the
    /// next deadline.
    fn drain(&mut self) -> Option<Timestamp> {
        let shared = Arc::clone(&self.shared);
        self.feed_evidence();
        let mut deadline = None;
        for _ in 0..64 {
            match self.supervisor.poll_output(shared.now()) {
                Output::Action(action) => self.act(&shared, action),
                Output::Event(event) => self.observe(&shared, event),
                Output::Timeout(t) => {
                    deadline = Some(t);
                    break;
                }
                _ => break,
            }
        }
        self.publish_health();
        for event in self.outbox.drain(..) {
            let _ = shared.events.send(event);
        }
        deadline
    }

    fn act(&mut self, shared: &Arc<Shared>, action: Action) {
        match action {
            Action::Connect { attempt } => {
                let connector = Arc::clone(&self.connector);
                let config = shared.connect_config();
                let reports = shared.reports.clone();
                self.last_generation += 1;
                let generation = self.last_generation;
                let started = Instant::now();
                let cache = shared.cache.clone();
                let tracking = cache.as_ref().map(|c| c.tracking_command());
                let attempt_fut = async move {
                    // The command connection subscribes to nothing: its
                    // pushes of interest are its own loss, reported at
                    // once, and the cache's invalidations, applied in the
                    // order they arrive (before any later reply is read).
                    let push: crate::connector::PushHandler =
                        Arc::new(move |info: redis::PushInfo| {
                            if let Some(cache) = &cache {
                                if info.kind == redis::PushKind::Disconnection {
                                    cache.lost(Some(generation));
                                }
                                cache.on_push(&info);
                            }
                            if info.kind == redis::PushKind::Disconnection {
                                let _ = reports.send(Report {
                                    generation,
                                    kind: FailureKind::Closed,
                                });
                            }
                        });
                    let made = connector.connect(&config, push).await;
                    let mut connection = match made {
                        Ok(connection) => connection,
                        Err(e) => {
                            return Err(explain_within(&*connector, &config, &e, started).await)
                        }
                    };
                    let conn = &mut connection.conn;
                    let setup = async {
                        // A server still loading its dataset accepts the
                        // handshake but answers -LOADING to PING: it is not
                        // ready, so the attempt fails and the backoff waits
                        // for it, while queued commands keep waiting.
                        redis::cmd("PING").exec_async(&mut *conn).await?;
                        // Who this connection is to the server, for checks
                        // from the side while it is busy.
                        let id = match redis::cmd("CLIENT").arg("ID").query_async(&mut *conn).await
                        {
                            Ok(id) => Some(id),
                            Err(e) if is_server_reply(&e) => None,
                            Err(e) => return Err(e),
                        };
                        if let Some(name) = config.client_name() {
                            redis::cmd("CLIENT")
                                .arg("SETNAME")
                                .arg(name)
                                .exec_async(&mut *conn)
                                .await?;
                        }
                        // Whether durable writes can wait for the AOF
                        // fsync (Redis 7.2+): asked, never assumed.
                        let info = redis::cmd("COMMAND")
                            .arg("INFO")
                            .arg("WAITAOF")
                            .query_async::<Value>(&mut *conn)
                            .await;
                        let waitaof = match info {
                            Ok(info) => crate::durable::has_waitaof(&info),
                            Err(e) if is_server_reply(&e) => false,
                            Err(e) => return Err(e),
                        };
                        if !waitaof && config.durable().is_some_and(|d| d.aof) {
                            tracing::warn!(
                                "durable.aof: the server has no WAITAOF (Redis 7.2+): durable \
                                 writes wait for the replicas' acknowledgement (WAIT) only"
                            );
                        }
                        // The cache's tracking, before the connection
                        // carries a single read, on a server the core
                        // says delivers every invalidation as a push.
                        let mut tracking_on = false;
                        if let Some(tracking) = &tracking {
                            let info: String = redis::cmd("INFO")
                                .arg("server")
                                .query_async(&mut *conn)
                                .await?;
                            let version = info
                                .lines()
                                .find_map(|l| l.strip_prefix("redis_version:"))
                                .unwrap_or("");
                            if relink_core::cache::server_supported(version) {
                                let mut cmd = redis::Cmd::new();
                                for arg in tracking {
                                    cmd.arg(&arg[..]);
                                }
                                cmd.exec_async(&mut *conn).await?;
                                tracking_on = true;
                            } else {
                                tracing::warn!(
                                    version,
                                    "client-side cache not serving: the server (redis_version \
                                     {version}) may send invalidations inside replies (before \
                                     Redis 7.0.5); every read goes to the server"
                                );
                            }
                        }
                        Ok(Setup {
                            client_id: id,
                            waitaof,
                            tracking: tracking_on,
                        })
                    };
                    match setup.await {
                        Ok(setup) => Ok((connection, setup)),
                        Err(e) => {
                            if let Some(kill) = &connection.kill {
                                kill.abort();
                            }
                            Err(explain_within(&*connector, &config, &e, started).await)
                        }
                    }
                };
                self.connecting = Some((attempt, generation, attempt_fut.boxed()));
                shared.calls.metrics.connecting();
                tracing::debug!(attempt, "connecting");
            }
            Action::SendPing { id } => {
                if let Some(live) = shared.live.load_full() {
                    // A PING still unanswered on this connection is queued
                    // behind the same work: keep it (its PONG still counts)
                    // rather than pile another behind it.
                    let pending = self
                        .ping
                        .as_ref()
                        .is_some_and(|(_, generation, _)| *generation == live.generation);
                    if !pending {
                        let mut conn = live.conn.clone();
                        let fut =
                            async move { redis::cmd("PING").query_async::<Value>(&mut conn).await };
                        self.ping = Some((id, live.generation, fut.boxed()));
                    }
                    // A fact for the core: commands are in flight, so this
                    // PING may queue behind them.
                    if live.demand.waiting() > 0 {
                        self.supervisor
                            .handle_input(shared.now(), Input::WorkOutstanding { id });
                    }
                }
            }
            Action::CheckAside { id } => {
                let Some(live) = shared.live.load_full() else {
                    return;
                };
                let Some(client_id) = live.client_id else {
                    return; // the server would not say who we are
                };
                let connector = Arc::clone(&self.connector);
                let config = shared.connect_config();
                let fut = async move {
                    let list = async {
                        let mut aside = connector.connect_aside(&config).await?;
                        let listed: String = redis::cmd("CLIENT")
                            .arg("LIST")
                            .arg("ID")
                            .arg(client_id)
                            .query_async(&mut aside.conn)
                            .await?;
                        if let Some(kill) = &aside.kill {
                            kill.abort();
                        }
                        Ok::<_, RedisError>(listed)
                    };
                    match list.await {
                        Ok(listed) if listed.trim().is_empty() => AsideVerdict::Gone,
                        Ok(_) => AsideVerdict::Busy,
                        // The server answered (-BUSY: a script runs; or it
                        // refuses CLIENT LIST to this user): it is alive.
                        Err(e) if is_server_reply(&e) => AsideVerdict::Busy,
                        Err(e) => AsideVerdict::Unreachable {
                            kind: failure_kind(&e),
                        },
                    }
                };
                self.aside = Some((id, live.generation, fut.boxed()));
            }
            Action::Disconnect => {
                self.connecting = None;
                self.ping = None;
                self.aside = None;
                self.invalidated = Some(self.connector.moved());
                let half_open = std::mem::take(&mut self.half_open);
                if let Some(live) = shared.live.swap(None) {
                    if let Some(cache) = &shared.cache {
                        cache.lost(Some(live.generation));
                    }
                    if let Some(reason) = self.loss_reason(shared, half_open) {
                        let _ = live.closed_because.set(reason);
                    }
                    live.close();
                }
            }
            _ => {}
        }
    }

    fn observe(&mut self, shared: &Arc<Shared>, event: Event) {
        match event {
            Event::StateChanged { from, to } => {
                shared.calls.metrics.state_changed(from, to);
                tracing::info!(%from, %to, "relink state changed");
            }
            Event::Disconnected { cause } => tracing::warn!(%cause, "relink connection lost"),
            Event::ReconnectScheduled { attempt, delay } => {
                tracing::info!(
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "relink reconnect scheduled"
                );
            }
            Event::Reconnected { downtime, attempts } => {
                tracing::info!(
                    downtime_ms = downtime.as_millis() as u64,
                    attempts,
                    "relink reconnected"
                );
            }
            Event::Connected { attempts } => tracing::info!(attempts, "relink connected"),
            Event::ConnectAttemptFailed {
                failure,
                misconfigured,
                retry_in,
            } => {
                let retry_in_ms = retry_in.map(|d| d.as_millis() as u64);
                let hint = if misconfigured {
                    "; retrying will not fix this, the configuration must change"
                } else {
                    ""
                };
                tracing::warn!(
                    attempt = failure.attempt,
                    cause = %failure.cause,
                    evidence = %failure.evidence,
                    misconfigured,
                    retry_in_ms,
                    "relink connection attempt failed: {failure}{hint}"
                );
            }
            Event::HeartbeatMissed { misses } => tracing::warn!(misses, "relink heartbeat missed"),
            Event::ServerMoved => {
                tracing::info!(
                    "relink: the master moved (announced by the sentinels); reconnecting at once"
                );
            }
            Event::FailoverStarted { signal } => {
                tracing::warn!(%signal, "relink: a failover of the master is in progress; writes wait");
            }
            Event::FailoverEnded { held_for, expired } => {
                tracing::info!(
                    held_for_ms = held_for.as_millis() as u64,
                    expired,
                    "relink: writes no longer held for a failover"
                );
            }
            Event::GaveUp { attempts, elapsed } => {
                tracing::error!(
                    attempts,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "relink gave up reconnecting"
                );
            }
            _ => {}
        }
        // Sent once the drain has published the health they lead to, so
        // whoever reads the health on an event sees it.
        self.outbox.push(event);
    }

    /// Why the core gave the live connection up, in words for the commands
    /// that were waiting on it (`None`: the socket error they get is the
    /// truth already). Read off the core's health, which holds the cause by
    /// the time its `Disconnect` is drained.
    fn loss_reason(&self, shared: &Shared, half_open: bool) -> Option<String> {
        let health = self.supervisor.health();
        if health.state == State::Shutdown {
            return Some("relink closed the connection: the client was shut down".into());
        }
        if half_open {
            return Some(
                "relink closed the connection: the server no longer had it \
                 (checked from the side; it was half-open)"
                    .into(),
            );
        }
        match health.last_failure {
            Some(FailureKind::Timeout) => {
                let heartbeat = shared.config.supervisor_config().heartbeat;
                Some(format!(
                    "relink closed the connection: no reply to its heartbeat PING within {:?} \
                     (the server is unresponsive: hung, paused, or cut off)",
                    heartbeat.timeout
                ))
            }
            Some(FailureKind::Moved) => Some(
                "relink closed the connection: the server is no longer the master \
                 (a failover was announced)"
                    .into(),
            ),
            _ => None,
        }
    }

    /// A new connection is up: make it the one the hot path uses.
    fn install(&mut self, (connection, setup): (Connection, Setup), generation: u64) {
        self.generation = generation;
        let live = Live {
            conn: connection.conn,
            waitaof: setup.waitaof,
            client_id: setup.client_id,
            kill: connection.kill,
            demand: connection.demand.unwrap_or_default(),
            generation: self.generation,
            dead: CancellationToken::new(),
            closed_because: std::sync::OnceLock::new(),
            _open: self.shared.calls.metrics.open(),
        };
        // Tracking is on there (the setup turned it on): the cache starts
        // anew on it, before any call can see the connection. Without it
        // (a server too old), the cache stays suspended, and empty.
        if let Some(cache) = &self.shared.cache {
            if setup.tracking {
                cache.connected(generation);
            } else {
                cache.lost(None);
            }
        }
        if let Some(old) = self.shared.live.swap(Some(Arc::new(live))) {
            old.close();
        }
        self.fed_reply_ms = self.shared.reply_ms();
    }

    fn publish_health(&self) {
        let shared = &self.shared;
        let h = self.supervisor.health();
        let since = shared.epoch + Duration::from_millis(h.since.as_millis());
        shared.health.send_if_modified(|current| {
            let next = Health {
                state: h.state,
                since,
                attempt: h.attempt,
                last_failure: h.last_failure,
                rtt: h.rtt,
                heartbeat_misses: h.heartbeat_misses,
                busy_since: h
                    .busy_since
                    .map(|t| shared.epoch + Duration::from_millis(t.as_millis())),
                last_attempt_failure: h.last_attempt_failure,
                misconfigured: h.misconfigured,
                failover_since: h
                    .failover_since
                    .map(|t| shared.epoch + Duration::from_millis(t.as_millis())),
                cache: shared.cache.as_ref().map(|c| c.state()),
            };
            // Before the health that wakes the queued calls goes out.
            shared
                .writes_held
                .store(h.failover_since.is_some(), Ordering::Relaxed);
            let changed = *current != next;
            if changed {
                *current = next;
            }
            changed
        });
    }
}

/// The connector's explanation of a failed attempt that began at
/// `started`, within what is left of the attempt's connect timeout (the
/// core gives the attempt up at its end); past it, what the error alone says.
pub(crate) async fn explain_within(
    connector: &dyn Connector,
    config: &Config,
    err: &RedisError,
    started: Instant,
) -> Diagnosis {
    let left = config
        .supervisor_config()
        .connect_timeout
        .saturating_sub(started.elapsed());
    match tokio::time::timeout(left, connector.explain(config, err)).await {
        Ok(diagnosis) => diagnosis,
        Err(_) => {
            crate::diagnose::from_error(err, config.connection_info().redis_settings().password())
        }
    }
}

async fn poll_connect(connecting: &mut Option<PendingConnect>) -> (u32, u64, ConnectResult) {
    match connecting {
        Some((attempt, generation, fut)) => {
            let result = fut.await;
            let (attempt, generation) = (*attempt, *generation);
            *connecting = None;
            (attempt, generation, result)
        }
        None => std::future::pending().await,
    }
}

async fn poll_aside(aside: &mut Option<PendingAside>) -> (u64, u64, AsideVerdict) {
    match aside {
        Some((id, generation, fut)) => (*id, *generation, fut.await),
        None => std::future::pending().await,
    }
}

async fn poll_invalidated(invalidated: &mut Option<BoxFuture<'static, ()>>) {
    match invalidated {
        Some(fut) => fut.await,
        None => std::future::pending().await,
    }
}

/// The next failover signal; pending forever once the connector has none
/// (a receiver that fell behind skips to the oldest kept).
async fn poll_signals(
    signals: &mut Option<broadcast::Receiver<FailoverSignal>>,
) -> Option<FailoverSignal> {
    let Some(rx) = signals else {
        return std::future::pending().await;
    };
    // Bounded: a lagged receiver is moved to the oldest kept message.
    loop {
        match rx.recv().await {
            Ok(signal) => return Some(signal),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => {
                *signals = None;
                return None;
            }
        }
    }
}

async fn poll_ping(ping: &mut Option<PendingPing>) -> (u64, u64, Result<Value, RedisError>) {
    match ping {
        Some((id, generation, fut)) => (*id, *generation, fut.await),
        None => std::future::pending().await,
    }
}
