//! Redis Sentinel: a [`Connector`] that finds the current master through
//! the sentinels on every (re)connect, and follows a failover as soon as the
//! sentinels announce it.
//!
//! - **Discovery** is redis-rs's ([`redis::sentinel::Sentinel`]): the
//!   sentinels are asked in order (one that is down or not a sentinel is
//!   skipped) for the master of the service; a master they flag down is
//!   skipped, and the one named is checked with `ROLE`. For a TLS master
//!   (`rediss://`) relink asks the sentinels itself (`SENTINEL
//!   get-master-addr-by-name`, in order): redis-rs's check connects to the
//!   master on a connection that cannot carry relink's TLS settings (a
//!   private CA, a server name), and the `ROLE` check below is made anyway.
//!   The sentinels are reached over TLS when `SentinelConfig::with_tls` says so.
//! - **The connection** is then made like [`TcpConnector`](crate::connector::TcpConnector)'s
//!   (the config's credentials, database, protocol, timeouts, push messages),
//!   and `ROLE` is asked again on it: a node that is not a master fails the
//!   attempt with a `READONLY` error, and the supervisor's backoff tries again.
//! - **The failover's announcements**: background tasks (watchers, one per
//!   configured sentinel, at most three) each keep a Pub/Sub subscription
//!   on a sentinel to the failover's channels ([`SENTINEL_CHANNELS`]:
//!   `+odown`, `+try-failover`, `+promoted-slave`, the `+failover-state-*`
//!   steps, `+switch-master`, the aborts), started with the client and kept
//!   whether or not the master answers. More than one, since only the
//!   sentinel leading a failover announces its steps, and the others hear
//!   of the switch from it up to seconds later. Each is a connection shape
//!   of its own driven by the core's [`Supervisor`] like the client's
//!   connection: the supervisor decides when to (re)subscribe (each attempt
//!   to the next sentinel in turn, so a dead sentinel is left for the next:
//!   the configured ones, then the others they named when asked `SENTINEL
//!   SENTINELS` at each subscription), the backoff between attempts and
//!   when to give up, the connect timeout, the heartbeat (any message
//!   counts as a reply; a PING after a silence) and when the subscription
//!   is dead; the settings are
//!   [`SentinelConfig::watch_supervisor`](crate::config::SentinelConfig::watch_supervisor).
//!   A watcher that gave up is started again by the next connect. Every
//!   step concerning the service goes to the clients' drivers
//!   ([`Connector::failover_signals`]) for their core, which holds writes
//!   while a failover is in progress. When a failover names a master other
//!   than the one connected, [`Connector::invalidated`] (or, with no
//!   connection up, [`Connector::moved`]) resolves and the client connects
//!   at once, also in the middle of a backoff wait, and straight to the
//!   announced master. After each (re)subscription the task also asks
//!   `SENTINEL get-master-addr-by-name`, so a switch announced while it was
//!   not listening is not missed.
//!
//! A `READONLY` reply from a demoted master needs nothing here: the client
//! classifies it as a connection-killing failure and reconnects, which asks
//! the sentinels again.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ConnectionAddr, ConnectionInfo, Msg, RedisError, Role, TlsMode, Value};
use relink_core::failover::{sentinel_signal, SENTINEL_CHANNELS};
use relink_core::supervisor::{Action, Event, Input, Output, State, Supervisor, SupervisorConfig};
use relink_core::{FailoverSignal, FailureKind, Timestamp};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::classify::failure_kind;
use crate::config::Config;
use crate::connector::{connect_multiplexed, Connection, Connector, PushHandler};
use crate::Error;

/// The Pub/Sub channel on which sentinels announce a new master.
pub const SWITCH_MASTER_CHANNEL: &str = "+switch-master";

/// A `host:port` as the sentinels name it.
type Addr = (String, u16);

/// Failover signals kept for a client that has not read them yet (a
/// failover has about a dozen).
const SIGNALS_KEPT: usize = 64;

/// The most sentinels a watcher takes turns over (configured and learned).
const MAX_SENTINELS: usize = 64;

/// The most watchers (subscriptions held at once) per connector.
const MAX_WATCHERS: usize = 3;

/// The latest failover announcement: `seq` counts announcements.
#[derive(Debug, Clone, Default)]
struct Announcement {
    seq: u64,
    master: Option<Addr>,
    /// It was a `+switch-master` (not the answer to the watcher's own
    /// question after subscribing).
    switched: bool,
}

/// Connects to the master that Redis Sentinel names; see the module docs.
///
/// [`Client::new`](crate::Client::new) uses it when the config has a
/// `sentinel` section ([`Config::with_sentinel`]).
pub struct SentinelConnector {
    service: String,
    follow: bool,
    /// The sentinels, in order, with their credentials.
    sentinels: Arc<Vec<ConnectionInfo>>,
    /// redis-rs's discovery, with its cached sentinel connections.
    discovery: tokio::sync::Mutex<Sentinel>,
    announced: Arc<watch::Sender<Announcement>>,
    /// The failover's steps as the watcher hears them, for every client on
    /// this connector.
    signals: broadcast::Sender<FailoverSignal>,
    /// The announcement count when the last connect started.
    connect_seq: AtomicU64,
    /// The master of the last successful connect.
    connected: Mutex<Option<Addr>>,
    /// The watchers, one a sentinel at first (at most [`MAX_WATCHERS`]).
    subscription: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
    /// The watcher's supervisor settings, and the seed of its jitter.
    watch: SupervisorConfig,
    seed: u64,
}

impl fmt::Debug for SentinelConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|i| i.addr().to_string())
            .collect();
        f.debug_struct("SentinelConnector")
            .field("service", &self.service)
            .field("sentinels", &sentinels)
            .field("follow_switch_master", &self.follow)
            .field(
                "connected",
                &*self
                    .connected
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            )
            .finish()
    }
}

impl SentinelConnector {
    /// A connector for `config`, which must have a `sentinel` section.
    pub fn new(config: &Config) -> Result<SentinelConnector, Error> {
        config.validate()?;
        let Some(sentinel) = config.sentinel() else {
            return Err(Error::config(
                "sentinel",
                "is required for a SentinelConnector: set `[sentinel]` (service and nodes)",
            ));
        };
        let sentinels = sentinel.connection_infos()?;
        #[cfg(feature = "tls-rustls")]
        if sentinel.tls().is_some() || config.is_tls() {
            // redis-rs's own TLS connections (to the sentinels, and its
            // discovery's) ask rustls for the process's default provider.
            crate::tls::ensure_default_provider();
        }
        let discovery = Sentinel::build(sentinels.clone())
            .map_err(|e| Error::config("sentinel.nodes", e.to_string()))?;
        Ok(SentinelConnector {
            service: sentinel.service().to_owned(),
            follow: sentinel.follow_switch_master(),
            sentinels: Arc::new(sentinels),
            discovery: tokio::sync::Mutex::new(discovery),
            announced: Arc::new(watch::channel(Announcement::default()).0),
            signals: broadcast::channel(SIGNALS_KEPT).0,
            connect_seq: AtomicU64::new(0),
            connected: Mutex::new(None),
            subscription: Mutex::new(Vec::new()),
            stop: CancellationToken::new(),
            watch: sentinel.watch_supervisor(),
            seed: config.jitter_seed(),
        })
    }

    /// The master of the last successful connect, as the sentinels named it.
    pub fn current_master(&self) -> Option<(String, u16)> {
        self.connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The master's address as the first sentinel that knows the service
    /// names it (`SENTINEL get-master-addr-by-name`), asking in order; each
    /// sentinel gets the connect timeout, and the attempt as a whole is
    /// bounded by the supervisor. The error is the last sentinel's.
    async fn ask_for_master(&self, config: &Config) -> Result<Addr, RedisError> {
        let timeout = Some(config.supervisor_config().connect_timeout);
        let settings = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let mut last = None;
        for info in self.sentinels.iter() {
            let asked = async {
                let client = redis::Client::open(info.clone())?;
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&settings)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.service)
                    .query_async::<Option<Addr>>(&mut conn)
                    .await
            };
            match asked.await {
                Ok(Some(master)) => return Ok(master),
                Ok(None) => {
                    last = Some(
                        crate::Error::NotApplied {
                            kind: FailureKind::Moved,
                            detail: format!(
                                "sentinel {} knows no master named `{}`",
                                info.addr(),
                                self.service
                            ),
                        }
                        .into_redis(),
                    )
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            crate::Error::config("sentinel.nodes", "lists no sentinel").into_redis()
        }))
    }

    /// Starts the watchers that do not run: one per configured sentinel (at
    /// most [`MAX_WATCHERS`]), each starting its turns at its own, so every
    /// live sentinel is heard. Only the sentinel leading a failover
    /// announces its steps, and the others learn of the switch from it up
    /// to seconds later: listening to one sentinel would miss both.
    fn ensure_subscription(&self) {
        if !self.follow || self.sentinels.is_empty() {
            return;
        }
        let mut tasks = self
            .subscription
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let wanted = self.sentinels.len().min(MAX_WATCHERS);
        for first in 0..wanted {
            if tasks.get(first).is_some_and(|t| !t.is_finished()) {
                continue;
            }
            let watcher = Watcher {
                service: self.service.clone(),
                sentinels: Arc::clone(&self.sentinels),
                first,
                announced: Arc::clone(&self.announced),
                signals: self.signals.clone(),
                stop: self.stop.clone(),
                settings: self.watch.clone(),
                seed: self.seed ^ (first as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            };
            let task = tokio::spawn(watcher.run());
            match tasks.get_mut(first) {
                Some(slot) => *slot = task,
                None => tasks.push(task),
            }
        }
    }
}

impl Drop for SentinelConnector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl SentinelConnector {
    /// The master the sentinels name, reached with this attempt's
    /// credentials (they may have been updated on the live client since the
    /// connector was made: discovery logs in to the master with them too).
    async fn master_client(&self, config: &Config) -> Result<redis::Client, RedisError> {
        if config.is_tls() {
            // redis-rs's discovery checks the master on a connection of its
            // own, which cannot carry relink's TLS settings (a private CA, a
            // server name): over TLS the sentinels are asked where the
            // master is, and the ROLE check in `connect`, on relink's own
            // verified connection, is the check.
            let master = self.ask_for_master(config).await.inspect_err(|e| {
                tracing::debug!(service = %self.service, error = %e, "sentinel discovery failed");
            })?;
            return client_at(config, master);
        }
        let client = {
            let mut discovery = self.discovery.lock().await;
            discovery
                .async_master_for(&self.service, Some(&master_node(config)))
                .await
                .inspect_err(|e| {
                    tracing::debug!(service = %self.service, error = %e, "sentinel discovery failed");
                })?
        };
        let settings = config.connection_info().redis_settings().clone();
        redis::Client::open(
            client
                .get_connection_info()
                .clone()
                .set_redis_settings(settings),
        )
    }
}

#[async_trait::async_trait]
impl Connector for SentinelConnector {
    async fn connect(&self, config: &Config, push: PushHandler) -> Result<Connection, RedisError> {
        self.ensure_subscription();
        // Announcements from now on may concern the master found below.
        let (seq, announced, switched) = {
            let latest = self.announced.borrow();
            (latest.seq, latest.master.clone(), latest.switched)
        };
        let previous = self.connect_seq.swap(seq, Ordering::Relaxed);
        let client = match announced.filter(|_| seq > previous && switched) {
            // A master announced since the last connect (a `+switch-master`)
            // is reached at once: a sentinel asked now may not know of the
            // switch yet (the others learn it from the leader within
            // seconds). The ROLE check below is the check; if it fails,
            // the next attempt asks the sentinels.
            Some(master) => client_at(config, master)?,
            None => self.master_client(config).await?,
        };
        let addr = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            other => (other.to_string(), 0),
        };
        let mut connection = connect_multiplexed(&client, config, push).await?;
        // redis-rs checked the role on a connection of its own; this is the
        // one the client will use, and a failover may have happened since.
        let role: Role = redis::cmd("ROLE").query_async(&mut connection.conn).await?;
        if !matches!(role, Role::Primary { .. }) {
            return Err(not_a_master(&self.service, &addr, &role));
        }
        tracing::debug!(service = %self.service, master = %format!("{}:{}", addr.0, addr.1), "sentinel named the master");
        *self
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(addr);
        Ok(connection)
    }

    /// A subscriber connection to the master the sentinels name now. (No
    /// `ROLE` check: a replica relays every `PUBLISH` of its master, so a
    /// subscriber on a stale master still hears it until it is moved.)
    async fn connect_pubsub(&self, config: &Config) -> Result<redis::aio::PubSub, RedisError> {
        crate::connector::connect_pubsub(&self.master_client(config).await?, config).await
    }

    /// Straight to the master of the last connect: no discovery, no change
    /// to what the connector remembers.
    async fn connect_aside(&self, config: &Config) -> Result<Connection, RedisError> {
        let master = self
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(master) = master else {
            return Err(crate::Error::NotConnected {
                state: relink_core::State::Connecting,
                last_attempt: None,
            }
            .into_redis());
        };
        let client = client_at(config, master)?;
        connect_multiplexed(&client, config, Arc::new(|_| {})).await
    }

    fn moved(&self) -> BoxFuture<'static, ()> {
        if !self.follow {
            return Box::pin(std::future::pending());
        }
        self.ensure_subscription();
        // From now on, and only a switch: an earlier one, or the master a
        // sentinel named when the watcher subscribed, is what the next
        // attempt connects to anyway.
        self.announced_after(self.announced.borrow().seq, true)
    }

    fn failover_signals(&self) -> Option<broadcast::Receiver<FailoverSignal>> {
        if !self.follow {
            return None;
        }
        // The watcher runs whether or not the master is reachable.
        self.ensure_subscription();
        Some(self.signals.subscribe())
    }

    fn invalidated(&self) -> BoxFuture<'static, ()> {
        if !self.follow {
            return Box::pin(std::future::pending());
        }
        self.announced_after(self.connect_seq.load(Ordering::Relaxed), false)
    }
}

impl SentinelConnector {
    /// Resolves at the first announcement after the `seen`th (a
    /// `+switch-master` only, if `switches`) that names a master other than
    /// the last connect's (a switch to the master we are already on is no
    /// reason to reconnect).
    fn announced_after(&self, seen: u64, switches: bool) -> BoxFuture<'static, ()> {
        let connected = self.current_master();
        let mut rx = self.announced.subscribe();
        Box::pin(async move {
            let moved = rx
                .wait_for(|a| {
                    a.seq > seen
                        && (a.switched || !switches)
                        && a.master.is_some()
                        && a.master != connected
                })
                .await
                .is_ok();
            if !moved {
                // The connector is gone; so is the client that used it.
                std::future::pending::<()>().await;
            }
        })
    }
}

/// A client for the master at `host:port`, with the config's settings and
/// transport (TLS when the URL says so).
fn client_at(config: &Config, (host, port): Addr) -> Result<redis::Client, RedisError> {
    let info = config.connection_info();
    let addr = crate::connector::same_transport_at(info.addr(), host, port);
    redis::Client::open(info.set_addr(addr))
}

/// The attempt's error when the named node is not (or no longer) a master:
/// [`FailureKind::Moved`](relink_core::FailureKind::Moved), not applied.
/// How to reach a master the sentinels name: the config's credentials,
/// database and protocol, TCP settings and TLS mode.
fn master_node(config: &Config) -> SentinelNodeConnectionInfo {
    let target = config.connection_info();
    let mut node = SentinelNodeConnectionInfo::default()
        .set_redis_connection_info(target.redis_settings().clone())
        .set_tcp_settings(target.tcp_settings().clone());
    if let ConnectionAddr::TcpTls { insecure, .. } = target.addr() {
        node = node.set_tls_mode(if *insecure {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        });
    }
    node
}

fn not_a_master(service: &str, addr: &Addr, role: &Role) -> RedisError {
    let role = match role {
        Role::Primary { .. } => "master",
        Role::Replica { .. } => "replica",
        Role::Sentinel { .. } => "sentinel",
        _ => "something else",
    };
    crate::Error::NotApplied {
        kind: relink_core::FailureKind::Moved,
        detail: format!(
            "sentinel named {}:{}, which answers ROLE as {role}, not as the master of \
             `{service}` (a failover is in progress or the sentinels' view is stale); retrying",
            addr.0, addr.1
        ),
    }
    .into_redis()
}

/// A watcher of the failover's announcements: a connection shape of its own
/// (a Pub/Sub subscription on one sentinel at a time) driven by the core's
/// [`Supervisor`], which decides when to (re)subscribe, how long to wait
/// between attempts, when to give up, when to PING and when the subscription
/// is dead. This task only executes: it opens the connection, subscribes,
/// asks where the master is, passes announcements on, sends the PINGs it is
/// asked for, and drops the connection when told to.
struct Watcher {
    service: String,
    sentinels: Arc<Vec<ConnectionInfo>>,
    /// The sentinel of its first attempt (an index): watchers start apart.
    first: usize,
    announced: Arc<watch::Sender<Announcement>>,
    signals: broadcast::Sender<FailoverSignal>,
    stop: CancellationToken,
    /// The supervisor's settings ([`SentinelConfig::watch_supervisor`](crate::config::SentinelConfig::watch_supervisor)).
    settings: SupervisorConfig,
    seed: u64,
}

/// A subscription attempt in flight: attempt number, the sentinel, its result.
type PendingSubscribe = (
    u32,
    String,
    BoxFuture<'static, Result<Subscribed, RedisError>>,
);

/// A heartbeat PING in flight: probe id, the reply.
type PendingPing = (u64, BoxFuture<'static, Result<Value, RedisError>>);

/// A subscription that is up: the sentinel's address, its Pub/Sub halves.
struct Listening {
    sentinel: String,
    sink: PubSubSink,
    stream: PubSubStream,
}

/// What a successful attempt produced: the subscription, and the master the
/// sentinel named right after subscribing.
struct Subscribed {
    sink: PubSubSink,
    stream: PubSubStream,
    master: Option<Addr>,
    /// The other sentinels this one named, reached like it.
    others: Vec<ConnectionInfo>,
}

/// The watcher's state while it runs: the supervisor and what it asked for.
struct WatchLoop {
    epoch: Instant,
    supervisor: Supervisor,
    /// The sentinel the next attempt goes to (an index, taken modulo their number).
    next: usize,
    /// The sentinels in turn: the configured ones, then those they named
    /// (`SENTINEL SENTINELS`), so a watcher whose configured sentinels died
    /// still finds the others.
    sentinels: Vec<ConnectionInfo>,
    subscribing: Option<PendingSubscribe>,
    listening: Option<Listening>,
    ping: Option<PendingPing>,
}

impl Watcher {
    async fn run(self) {
        let mut state = WatchLoop {
            epoch: Instant::now(),
            supervisor: Supervisor::new(self.settings.clone(), self.seed),
            next: self.first,
            sentinels: self.sentinels.to_vec(),
            subscribing: None,
            listening: None,
            ping: None,
        };
        let now = state.now();
        state.supervisor.handle_input(now, Input::Start);
        // Bounded by the supervisor: every iteration handles one input or
        // one of its deadlines, it gives up after its backoff's attempts, and
        // Shutdown (asked for when the connector is dropped) is terminal.
        loop {
            let deadline = self.drain(&mut state);
            if state.supervisor.state() == State::Shutdown {
                break;
            }
            let wake = deadline.map(|t| state.instant_of(t));
            let input = tokio::select! {
                _ = self.stop.cancelled() => Some(Input::Shutdown),
                (attempt, sentinel, result) = poll_subscribe(&mut state.subscribing) => match result {
                    Ok(subscribed) => {
                        if let Some(master) = subscribed.master {
                            self.announce(master, false);
                        }
                        learn(&mut state.sentinels, subscribed.others);
                        state.listening = Some(Listening {
                            sentinel,
                            sink: subscribed.sink,
                            stream: subscribed.stream,
                        });
                        Some(Input::Connected { attempt })
                    }
                    Err(e) => {
                        tracing::debug!(%sentinel, attempt, error = %e, "sentinel subscription failed");
                        Some(Input::ConnectFailed {
                            attempt,
                            cause: crate::diagnose::connect_cause(&e),
                            evidence: relink_core::Evidence::new(&e.to_string()),
                        })
                    }
                },
                message = next_message(&mut state.listening) => match message {
                    Some(msg) => {
                        self.hear(&msg);
                        // Any message proves the sentinel alive.
                        Some(Input::Activity)
                    }
                    // The sentinel closed the subscription.
                    None => Some(Input::ConnectionLost { kind: FailureKind::Closed }),
                },
                (id, result) = poll_ping(&mut state.ping) => {
                    state.ping = None;
                    // Every result goes to the core as it is: it decides what
                    // an error reply or a broken connection proves.
                    Some(match result {
                        Ok(_) => Input::Pong { id },
                        Err(e) => Input::PingFailed { id, kind: failure_kind(&e) },
                    })
                }
                _ = crate::wait::until(wake) => None,
            };
            if let Some(input) = input {
                let now = state.now();
                state.supervisor.handle_input(now, input);
            }
        }
    }

    /// Handles the supervisor's outputs until drained; returns its next deadline.
    fn drain(&self, state: &mut WatchLoop) -> Option<Timestamp> {
        for _ in 0..64 {
            match state.supervisor.poll_output(state.now()) {
                Output::Action(action) => self.act(state, action),
                Output::Event(event) => self.observe(state, event),
                Output::Timeout(t) => return Some(t),
                _ => return None,
            }
        }
        // One input never queues this many outputs; poll again at once.
        Some(state.now())
    }

    fn act(&self, state: &mut WatchLoop, action: Action) {
        match action {
            Action::Connect { attempt } => {
                // The sentinels in turn. (There is at least one: the config
                // is validated; with none, the attempt times out.)
                let count = state.sentinels.len().max(1);
                let Some(info) = state.sentinels.get(state.next % count) else {
                    return;
                };
                state.next = state.next.wrapping_add(1);
                let subscribe = subscribe(info.clone(), self.service.clone());
                state.subscribing = Some((attempt, info.addr().to_string(), subscribe.boxed()));
            }
            Action::SendPing { id } => {
                if let Some(listening) = &state.listening {
                    let mut sink = listening.sink.clone();
                    let ping = async move { sink.ping::<Value>().await };
                    state.ping = Some((id, ping.boxed()));
                }
            }
            Action::Disconnect => {
                if let Some((attempt, sentinel, _)) = state.subscribing.take() {
                    tracing::debug!(%sentinel, attempt, "sentinel subscription attempt abandoned");
                }
                state.ping = None;
                state.listening = None;
            }
            _ => {}
        }
    }

    fn observe(&self, state: &WatchLoop, event: Event) {
        let sentinel = state.listening.as_ref().map(|l| l.sentinel.as_str());
        match event {
            Event::Connected { attempts } | Event::Reconnected { attempts, .. } => {
                tracing::debug!(sentinel, attempts, "subscribed to +switch-master");
            }
            Event::Disconnected { cause } => {
                tracing::debug!(%cause, "sentinel subscription lost");
            }
            Event::ReconnectScheduled { attempt, delay } => {
                tracing::debug!(
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "sentinel subscription: next attempt scheduled"
                );
            }
            Event::HeartbeatMissed { misses } => {
                tracing::debug!(sentinel, misses, "sentinel subscription: PING unanswered");
            }
            Event::GaveUp { attempts, elapsed } => {
                tracing::warn!(
                    service = %self.service,
                    attempts,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "no sentinel to subscribe to `+switch-master`; failovers are followed on reconnect only until the next connect"
                );
            }
            _ => {}
        }
    }

    /// One announcement of a sentinel: a switch moves the connector's
    /// master first, then every step goes to the clients for their core.
    fn hear(&self, msg: &Msg) {
        let channel = msg.get_channel_name();
        let Ok(payload) = msg.get_payload::<String>() else {
            return;
        };
        let Some(signal) = sentinel_signal(channel, &payload, &self.service) else {
            return;
        };
        tracing::debug!(service = %self.service, %channel, %payload, %signal, "sentinel announcement");
        if signal == FailoverSignal::Switched {
            if let Some(master) = parse_switch(&payload, &self.service) {
                tracing::info!(service = %self.service, master = %format!("{}:{}", master.0, master.1), "sentinel announced +switch-master");
                self.announce(master, true);
            }
        }
        // (No client listening is no error.)
        let _ = self.signals.send(signal);
    }

    /// Tells the connector where the master is, unless it knew (every
    /// watcher hears the same switch, and asks the same question). A
    /// sentinel's answer never overrides a `+switch-master`: a sentinel that
    /// has not heard of the switch yet still names the old master (which
    /// answers `ROLE` as a master until Sentinel demotes it), and following
    /// it would put writes on a master about to lose them.
    fn announce(&self, master: Addr, switched: bool) {
        self.announced.send_if_modified(|a| {
            if !switched && a.switched {
                return false;
            }
            if a.master.as_ref() == Some(&master) && (a.switched || !switched) {
                return false;
            }
            a.seq += 1;
            a.switched = switched;
            a.master = Some(master);
            true
        });
    }
}

impl WatchLoop {
    /// The core's time: milliseconds since the watcher started.
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The instant of one of the core's timestamps.
    fn instant_of(&self, t: Timestamp) -> Instant {
        self.epoch + Duration::from_millis(t.as_millis())
    }
}

/// One subscription attempt on the sentinel `info`: connect, `SUBSCRIBE
/// +switch-master`, then ask where the master is now, so that a switch
/// announced while nobody listened is not missed. Its time is bounded by
/// the supervisor (its connect timeout abandons it).
async fn subscribe(info: ConnectionInfo, service: String) -> Result<Subscribed, RedisError> {
    let client = redis::Client::open(info.clone())?;
    let (pubsub, mut conn) = futures_util::future::try_join(
        client.get_async_pubsub(),
        client.get_multiplexed_async_connection(),
    )
    .await?;
    let (mut sink, stream) = pubsub.split();
    sink.subscribe(SENTINEL_CHANNELS).await?;
    let master: Option<Addr> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(&service)
        .query_async(&mut conn)
        .await?;
    // The other sentinels of the service, as this one knows them (an
    // answer it cannot give costs the subscription nothing).
    let others: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
        .arg("SENTINELS")
        .arg(&service)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    let others = others
        .iter()
        .filter_map(|s| Some((s.get("ip")?.clone(), s.get("port")?.parse().ok()?)))
        .map(|(host, port)| {
            let addr = crate::connector::same_transport_at(info.addr(), host, port);
            info.clone().set_addr(addr)
        })
        .collect();
    Ok(Subscribed {
        sink,
        stream,
        master,
        others,
    })
}

/// Adds the sentinels in `others` that `known` lacks (by address), to be
/// tried after the ones before them.
fn learn(known: &mut Vec<ConnectionInfo>, others: Vec<ConnectionInfo>) {
    for other in others {
        if known.len() >= MAX_SENTINELS {
            return;
        }
        if !known.iter().any(|k| k.addr() == other.addr()) {
            tracing::debug!(sentinel = %other.addr(), "sentinel learned from another");
            known.push(other);
        }
    }
}

async fn poll_subscribe(
    subscribing: &mut Option<PendingSubscribe>,
) -> (u32, String, Result<Subscribed, RedisError>) {
    match subscribing {
        Some((attempt, sentinel, fut)) => {
            let result = fut.await;
            let done = (*attempt, std::mem::take(sentinel), result);
            *subscribing = None;
            done
        }
        None => std::future::pending().await,
    }
}

/// The next message of the subscription; `None` when the sentinel closed it.
async fn next_message(listening: &mut Option<Listening>) -> Option<Msg> {
    match listening {
        Some(listening) => listening.stream.next().await,
        None => std::future::pending().await,
    }
}

async fn poll_ping(ping: &mut Option<PendingPing>) -> (u64, Result<Value, RedisError>) {
    match ping {
        Some((id, fut)) => (*id, fut.await),
        None => std::future::pending().await,
    }
}

/// `<name> <old-ip> <old-port> <new-ip> <new-port>`: the new master, if
/// `name` is ours.
fn parse_switch(payload: &str, service: &str) -> Option<Addr> {
    let words: Vec<&str> = payload.split_whitespace().collect();
    match words.as_slice() {
        [name, _, _, ip, port] if *name == service => Some(((*ip).to_owned(), port.parse().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_master_payloads_are_parsed_for_our_service_only() {
        assert_eq!(
            parse_switch("mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            Some(("127.0.0.1".to_owned(), 6380))
        );
        assert_eq!(
            parse_switch("other 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            None
        );
        assert_eq!(parse_switch("mymaster 127.0.0.1 6379", "mymaster"), None);
        assert_eq!(parse_switch("mymaster a 1 b notaport", "mymaster"), None);
    }

    #[test]
    fn the_watchers_defaults_are_valid_and_bounded() {
        let settings =
            crate::config::SentinelConfig::new("mymaster", ["127.0.0.1"]).watch_supervisor();
        settings.validate().unwrap();
        assert_eq!(settings.backoff.max_attempts.map(|n| n.get()), Some(40));
        assert_eq!(settings.heartbeat.interval, Duration::from_secs(1));
    }

    /// A loopback port nobody listens on.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    fn watcher(settings: SupervisorConfig) -> (Watcher, watch::Receiver<Announcement>) {
        let info = redis::IntoConnectionInfo::into_connection_info(format!(
            "redis://127.0.0.1:{}",
            closed_port()
        ))
        .unwrap();
        let announced = Arc::new(watch::channel(Announcement::default()).0);
        let rx = announced.subscribe();
        let watcher = Watcher {
            service: "mymaster".into(),
            sentinels: Arc::new(vec![info.clone(), info]),
            first: 0,
            announced,
            signals: broadcast::channel(SIGNALS_KEPT).0,
            stop: CancellationToken::new(),
            settings,
            seed: 1,
        };
        (watcher, rx)
    }

    #[tokio::test]
    async fn the_watcher_gives_up_when_its_backoff_says_so() {
        let policy = relink_core::BackoffPolicy::default()
            .strategy(relink_core::Strategy::Constant)
            .initial_delay(Duration::from_millis(5))
            .max_delay(Duration::from_millis(5))
            .max_attempts(std::num::NonZeroU32::new(3));
        let (watcher, rx) = watcher(SupervisorConfig::default().backoff(policy));
        tokio::time::timeout(Duration::from_secs(30), watcher.run())
            .await
            .expect("the watcher gave up");
        assert_eq!(rx.borrow().seq, 0, "nothing was announced");
    }

    #[tokio::test]
    async fn the_watcher_stops_when_the_connector_is_dropped() {
        let settings =
            crate::config::SentinelConfig::new("mymaster", ["127.0.0.1"]).watch_supervisor();
        let (watcher, _rx) = watcher(settings);
        let stop = watcher.stop.clone();
        let task = tokio::spawn(watcher.run());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !task.is_finished(),
            "it keeps trying (40 attempts, about a minute)"
        );
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the watcher stopped")
            .unwrap();
    }

    #[test]
    fn not_a_master_reads_as_moved() {
        let role = Role::Replica {
            primary_ip: "127.0.0.1".into(),
            primary_port: 1,
            replication_state: "connected".into(),
            data_received: 0,
        };
        let e = not_a_master("mymaster", &("127.0.0.1".into(), 7000), &role);
        assert_eq!(
            crate::classify::failure_kind(&e),
            relink_core::FailureKind::Moved
        );
        assert!(e.to_string().contains("127.0.0.1:7000"), "{e}");
        assert!(e.to_string().contains("replica"), "{e}");
    }
}
