//! `ClusterClient`: relink's outage, retry and health behaviour around
//! redis-rs's Redis Cluster client.
//!
//! **What redis-rs does, and relink does not redo**: the slot map, routing by
//! key, following `MOVED` (it refreshes its slot map on one), `ASKING`
//! towards the node named by an `ASK` reply, topology refresh, and repairing
//! its connection to each node.
//!
//! **What relink adds**:
//!
//! - *Retries are relink's alone.* redis-rs's own retry loop would send a
//!   command again after its connection dropped, whatever the command, so
//!   an `INCR` could be applied twice. The cluster connection is built with
//!   `retries(0)`: every failure comes back here and is judged by the core
//!   ([`FailureKind::retry_safe`], the [`RetryBudget`], Redis's read-only
//!   command table), exactly as on a [`Client`]. A redirection is answered,
//!   not applied, so it is always followed at once: to the node it names, with
//!   redis-rs's own by-address routing (`ASKING` first for an `ASK`).
//! - *The outage policy.* A command that could not be applied because its
//!   slot is unreachable (no connection, `CLUSTERDOWN`, `TRYAGAIN`, a master
//!   that died) fails fast, or waits in the bounded backlog for at most
//!   `max_wait` and is tried again as the cluster heals (a failover, a
//!   finished migration). Waiting is safe for every command: nothing happened.
//! - *Health per node and overall.* Each node the cluster reports gets a
//!   probe: a [`Client`] of its own on that node (one `MultiplexedConnection`
//!   driven by its own [`relink_core::Supervisor`], so PINGs every heartbeat
//!   interval, a connect timeout and a reconnect backoff per node). A probe
//!   connection rather than `route_command(PING, ByAddress)` on the shared
//!   cluster connection, because the supervisor decides when to connect and
//!   disconnect, which a shared connection it does not own cannot honour, and
//!   a probe measures the node, not redis-rs's routing and reconnect state.
//!   The overall health is Ready when all 16384 slots are served by a master
//!   whose probe is Ready.
//! - *Re-establishing the cluster connection.* When it cannot be made, or is
//!   lost entirely (every node's probe down and the topology unreadable), it
//!   is rebuilt from the configured nodes with the core's [`Backoff`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{
    Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture,
    ServerErrorKind, Value,
};
use relink_core::backoff::Backoff;
use relink_core::{BusyReason, Delivery, FailureKind, Outcome, State};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

// The request type and its read-only test are the native client's.
use crate::budget::{into_values, SharedBudget};
use crate::classify::{failure_kind, is_server_reply};
use crate::client::Request;
use crate::config::{Config, OutagePolicy};
use crate::{Error, Stats};

mod driver;

use driver::Driver;
pub use driver::{ClusterHealth, NodeHealth};

/// Hash slots in a Redis Cluster.
pub const SLOTS: u32 = 16384;

/// Redirections followed for one command before it counts as "try again".
const MAX_REDIRECTS: u32 = 5;

/// Where a cluster is and how relink keeps it reachable.
///
/// `nodes` are the initial nodes (`redis://host:port`, any subset of the
/// cluster); `settings` are the same heartbeat, backoff, timeout, outage and
/// retry settings as a [`Config`], and its username, password, protocol,
/// client name and TCP keepalive. The URL inside `settings` is not used to
/// connect (only `nodes` are); [`ClusterConfig::new`] makes it the first node.
///
/// ```
/// # use std::time::Duration;
/// # use relink::cluster::ClusterConfig;
/// let config = ClusterConfig::new(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])?;
/// let config = ClusterConfig {
///     settings: config.settings.with_response_timeout(Duration::from_secs(1)),
///     ..config
/// }
/// .build()?;
/// assert_eq!(config.nodes.len(), 2);
/// # Ok::<(), relink::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct ClusterConfig {
    /// Initial nodes, `redis://[user[:password]@]host:port` (or `rediss://`).
    pub nodes: Vec<String>,
    /// Everything else, shared with [`Config`].
    pub settings: Config,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| Config::new(n).map_or_else(|_| "<invalid>".into(), |c| c.redacted_url()))
            .collect();
        f.debug_struct("ClusterConfig")
            .field("nodes", &nodes)
            .field("settings", &self.settings)
            .finish()
    }
}

impl ClusterConfig {
    /// A config for these initial nodes with every other setting at its
    /// default (see [`Config`]).
    pub fn new<I, S>(nodes: I) -> Result<ClusterConfig, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        check_nodes(&nodes)?;
        let settings = Config::new(&nodes[0]).map_err(|e| prefixed("nodes[0]", e))?;
        ClusterConfig { nodes, settings }.build()
    }

    /// Replaces the shared settings.
    pub fn with_settings(mut self, settings: Config) -> Self {
        self.settings = settings;
        self
    }

    /// Checks every field; the error names the first bad one (`nodes`,
    /// `nodes[2]`, `settings.heartbeat.interval`, ...).
    pub fn validate(&self) -> Result<(), Error> {
        check_nodes(&self.nodes)?;
        self.settings
            .validate()
            .map_err(|e| prefixed("settings.", e))?;
        if self.settings.database() != 0 {
            return Err(Error::config(
                "settings.database",
                "Redis Cluster has only database 0",
            ));
        }
        Ok(())
    }

    /// [`validate`](Self::validate)s and returns the config.
    pub fn build(self) -> Result<ClusterConfig, Error> {
        self.validate().map(|()| self)
    }

    /// The redis-rs cluster client: the nodes, the settings' credentials,
    /// protocol and timeouts, and no retries of its own (see the module docs).
    fn redis_client(&self) -> Result<redis::cluster::ClusterClient, Error> {
        let s = &self.settings;
        let info = s.connection_info();
        let mut builder =
            redis::cluster::ClusterClientBuilder::new(self.nodes.iter().map(|n| n.as_str()))
                .retries(0)
                .use_protocol(s.protocol().into())
                .connection_timeout(s.supervisor_config().connect_timeout)
                .response_timeout(s.response_timeout())
                .tcp_settings(info.tcp_settings().clone());
        if let Some(user) = info.redis_settings().username() {
            builder = builder.username(user);
        }
        if let Some(password) = info.redis_settings().password() {
            builder = builder.password(password);
        }
        builder
            .build()
            .map_err(|e| Error::config("nodes", e.to_string()))
    }

    /// The config of the health probe of node `host:port`: the settings, aimed
    /// at that node, failing fast (the probe never queues commands).
    fn probe_config(&self, host: &str, port: u16) -> Result<Config, Error> {
        let s = &self.settings;
        let sc = s.supervisor_config();
        let info = s.connection_info();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let mut c = Config::new(&format!("redis://{host}:{port}"))?
            .with_protocol(s.protocol())
            .with_backoff(sc.backoff.clone())
            .with_heartbeat(sc.heartbeat)
            .with_connect_timeout(sc.connect_timeout)
            .with_backoff_reset_after(sc.backoff_reset_after)
            .with_response_timeout(s.response_timeout())
            .with_outage(OutagePolicy::FailFast)
            .with_tcp_keepalive(s.tcp_keepalive());
        if let Some(user) = info.redis_settings().username() {
            c = c.with_username(user);
        }
        if let Some(password) = info.redis_settings().password() {
            c = c.with_password(password);
        }
        if let Some(name) = s.client_name() {
            c = c.with_client_name(name);
        }
        if let Some(seed) = s.seed() {
            c = c.with_seed(seed ^ u64::from(port));
        }
        c.build()
    }
}

fn check_nodes(nodes: &[String]) -> Result<(), Error> {
    if nodes.is_empty() {
        return Err(Error::config(
            "nodes",
            "at least one node is needed, e.g. `redis://127.0.0.1:7000`",
        ));
    }
    for (i, node) in nodes.iter().enumerate() {
        let field = format!("nodes[{i}]");
        // The URL is never quoted: it may hold a password.
        let info = node.as_str().into_connection_info().map_err(|_| {
            Error::config(
                &field,
                "not a node URL; expected `redis://[user[:password]@]host:port` or `rediss://...`",
            )
        })?;
        match info.addr() {
            ConnectionAddr::Tcp(host, _) | ConnectionAddr::TcpTls { host, .. }
                if !host.is_empty() => {}
            ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. } => {
                return Err(Error::config(&field, "the node URL has no host"));
            }
            _ => {
                return Err(Error::config(
                    &field,
                    "cluster nodes are reached over TCP (`redis://host:port`); a Unix socket cannot be a cluster node",
                ));
            }
        }
        if info.redis_settings().db() != 0 {
            return Err(Error::config(&field, "Redis Cluster has only database 0"));
        }
    }
    Ok(())
}

fn prefixed(prefix: &str, e: Error) -> Error {
    match e {
        Error::Config { field, reason } if prefix.ends_with('.') => {
            Error::config(format!("{prefix}{field}"), reason)
        }
        Error::Config { reason, .. } => Error::config(prefix, reason),
        other => other,
    }
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

struct Shared {
    config: ClusterConfig,
    live: ArcSwapOption<ClusterConnection>,
    health: watch::Sender<ClusterHealth>,
    backlog: Semaphore,
    budget: SharedBudget,
    shutdown: CancellationToken,
    /// Wakes the driver: a node's probe changed, or a command saw the
    /// topology change (a redirection) or no connection at all.
    poke: Notify,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    counters: Counters,
}

struct HandleGuard(CancellationToken);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A Redis Cluster client that rides out failovers, migrations and outages.
/// Cheap to clone; every clone shares one cluster connection, one set of node
/// probes and one background task.
///
/// It implements [`redis::aio::ConnectionLike`], so `redis::AsyncCommands`,
/// scripts and single-slot pipelines work on it unchanged. Errors are
/// relink's: recover them with [`Error::from_redis`] / [`Error::outcome_of`].
#[derive(Clone)]
pub struct ClusterClient {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
    idempotent: bool,
}

impl fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterClient")
            .field("config", &self.shared.config)
            .field("state", &self.shared.health.borrow().state)
            .field("idempotent", &self.idempotent)
            .finish()
    }
}

impl ClusterClient {
    /// Starts a cluster client. Returns at once; the connection is made in
    /// the background (see [`ClusterClient::wait_ready`]). Must be called
    /// within a tokio runtime.
    pub fn new(config: ClusterConfig) -> Result<ClusterClient, Error> {
        config.validate()?;
        let redis_client = config.redis_client()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::config(
                "runtime",
                "relink::ClusterClient must be created inside a tokio runtime",
            )
        })?;
        let now = Instant::now();
        let (health, _) = watch::channel(ClusterHealth {
            state: State::Idle,
            since: now,
            attempt: 0,
            last_failure: None,
            slots_ready: 0,
            nodes: BTreeMap::new(),
        });
        let capacity = match config.settings.outage() {
            OutagePolicy::Queue { capacity, .. } => capacity,
            _ => 0,
        };
        let settings = &config.settings;
        let budget = SharedBudget::new(settings.retry().budget);
        let seed = settings.seed().unwrap_or_else(random_seed);
        let backoff = Backoff::new(settings.supervisor_config().backoff, seed);
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared {
            config,
            live: ArcSwapOption::empty(),
            health,
            backlog: Semaphore::new(capacity),
            budget,
            shutdown: shutdown.clone(),
            poke: Notify::new(),
            task: Mutex::new(None),
            counters: Counters::default(),
        });
        let driver = Driver::new(Arc::clone(&shared), redis_client, backoff, now);
        let span = tracing::info_span!("relink_cluster", nodes = shared.config.nodes.len());
        let handle = runtime.spawn(tracing::Instrument::instrument(driver.run(), span));
        *shared.task.lock().expect("task lock") = Some(handle);
        Ok(ClusterClient {
            shared,
            _guard: Arc::new(HandleGuard(shutdown)),
            idempotent: false,
        })
    }

    /// A handle to the same cluster whose commands are all declared
    /// idempotent: safe to retry even when their fate is unknown.
    pub fn idempotent(&self) -> ClusterClient {
        ClusterClient {
            idempotent: true,
            ..self.clone()
        }
    }

    /// The current health (overall and per node), and every change to it.
    pub fn health(&self) -> watch::Receiver<ClusterHealth> {
        self.shared.health.subscribe()
    }

    /// What happened to the commands sent through this client so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            succeeded: get(&c.succeeded),
            retried: get(&c.retried),
            not_sent: get(&c.not_sent),
            not_applied: get(&c.not_applied),
            unknown: get(&c.unknown),
            rejected: get(&c.rejected),
        }
    }

    /// `MOVED` and `ASK` replies followed so far (each sent the command on
    /// to the node the reply named).
    pub fn redirects(&self) -> u64 {
        self.shared.counters.redirected.load(Ordering::Relaxed)
    }

    /// Waits until the cluster is Ready (every slot's master answering), for
    /// at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.health();
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|h| matches!(h.state, State::Ready | State::Shutdown)),
        )
        .await;
        match waited {
            Ok(Ok(h)) if h.state == State::Ready => Ok(()),
            Ok(_) => Err(Error::Shutdown),
            Err(_) => Err(Error::QueueTimeout { waited: timeout }),
        }
    }

    /// Stops the client: fails queued commands with [`Error::Shutdown`],
    /// stops the probes, drops the cluster connection, and waits for the
    /// background task to end.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        let handle = self.shared.task.lock().expect("task lock").take();
        if let Some(handle) = handle {
            let _ = handle.await;
        }
    }

    /// Runs one command or pipeline through the outage and retry policies.
    async fn execute(&self, request: Request<'_>) -> Result<Value, RedisError> {
        let shared = &*self.shared;
        let counters = &shared.counters;
        let idempotent = self.idempotent || request.is_read_only();
        let max_retries = shared.config.settings.retry().max_retries;
        let mut outage = OutageWait::new(shared);
        let (mut retries, mut redirects) = (0, 0);
        let mut redirect = None;
        // Bounded: redirections by MAX_REDIRECTS, retries by max_retries and
        // the budget, outage waits by max_wait.
        loop {
            if shared.shutdown.is_cancelled() {
                bump(&counters.not_sent);
                return Err(Error::Shutdown.into_redis());
            }
            let Some(conn) = shared.live.load_full() else {
                // The whole cluster is out of reach: the outage policy.
                if let Err(e) = outage.wait().await {
                    bump(&counters.not_sent);
                    return Err(e.into_redis());
                }
                continue;
            };
            let mut conn = (*conn).clone();
            let err = match request.send_cluster(&mut conn, redirect.take()).await {
                Ok(Value::ServerError(reply)) => {
                    let err = RedisError::from(reply.clone());
                    if matches!(judge(&err), Verdict::Rejected) {
                        bump(&counters.rejected);
                        return Ok(Value::ServerError(reply)); // as redis-rs would
                    }
                    err
                }
                Ok(value) => {
                    bump(&counters.succeeded);
                    shared.budget.refill();
                    return Ok(value);
                }
                Err(err) => err,
            };
            let (kind, delivery) = match judge(&err) {
                Verdict::Rejected => {
                    bump(&counters.rejected);
                    return Err(err); // the server's verdict, as it is
                }
                Verdict::Redirect(to) if redirects < MAX_REDIRECTS => {
                    // Answered, not applied: follow it at once. redis-rs
                    // refreshes its slot map on a MOVED by itself.
                    redirects += 1;
                    bump(&counters.redirected);
                    redirect = Some(to);
                    continue;
                }
                Verdict::Redirect(_) => (
                    FailureKind::ServerBusy(BusyReason::TryAgain),
                    Delivery::Answered,
                ),
                Verdict::Failure { kind, delivery } => (kind, delivery),
            };
            let budget_allows = shared.budget.drain();
            if delivery == Delivery::NotSent {
                // No connection to the slot's node: let the driver look.
                shared.poke.notify_one();
            }
            let outcome = kind.outcome(delivery);
            let queue = matches!(shared.config.settings.outage(), OutagePolicy::Queue { .. });
            if outcome == Outcome::NotApplied && kind != FailureKind::Auth && queue {
                // Nothing happened and the slot is out of reach for now: wait
                // in the backlog for the cluster to heal, then try again.
                match outage.wait().await {
                    Ok(()) => {
                        redirects = 0;
                        continue;
                    }
                    Err(Error::QueueTimeout { .. }) => {}
                    Err(e) => {
                        bump(&counters.not_sent);
                        return Err(e.into_redis());
                    }
                }
            } else {
                let may_retry =
                    retries < max_retries && kind.retry_safe(delivery, idempotent) && budget_allows;
                if may_retry {
                    retries += 1;
                    bump(&counters.retried);
                    tracing::debug!(%kind, retries, "retrying cluster command");
                    if outcome == Outcome::NotApplied {
                        tokio::time::sleep(Duration::from_millis(50 * u64::from(retries))).await;
                    }
                    continue;
                }
            }
            let detail = err.to_string();
            let error = match outcome {
                Outcome::NotApplied => {
                    bump(&counters.not_applied);
                    Error::NotApplied { kind, detail }
                }
                Outcome::Unknown | Outcome::Rejected => {
                    bump(&counters.unknown);
                    Error::OutcomeUnknown { kind, detail }
                }
            };
            return Err(error.into_redis());
        }
    }
}

/// The outage policy for one command: a backlog permit held while it waits,
/// and the deadline.
struct OutageWait<'a> {
    shared: &'a Shared,
    started: Instant,
    permit: Option<tokio::sync::SemaphorePermit<'a>>,
    waits: u32,
}

impl<'a> OutageWait<'a> {
    fn new(shared: &'a Shared) -> Self {
        OutageWait {
            shared,
            started: Instant::now(),
            permit: None,
            waits: 0,
        }
    }

    /// Waits until the health changes or a short step passes (a step that
    /// grows from 10 ms to 250 ms), within `max_wait` of the first wait.
    async fn wait(&mut self) -> Result<(), Error> {
        let shared = self.shared;
        let state = shared.health.borrow().state;
        if state == State::Shutdown || shared.shutdown.is_cancelled() {
            return Err(Error::Shutdown);
        }
        let (capacity, max_wait) = match shared.config.settings.outage() {
            OutagePolicy::Queue { capacity, max_wait } => (capacity, max_wait),
            _ => return Err(Error::NotConnected { state }),
        };
        if self.permit.is_none() {
            self.started = Instant::now();
            let permit = shared
                .backlog
                .try_acquire()
                .map_err(|_| Error::BacklogFull { capacity })?;
            self.permit = Some(permit);
        }
        let waited = self.started.elapsed();
        let Some(remaining) = max_wait.checked_sub(waited).filter(|r| !r.is_zero()) else {
            return Err(Error::QueueTimeout { waited });
        };
        let step = Duration::from_millis(10 << self.waits.min(5))
            .min(Duration::from_millis(250))
            .min(remaining);
        self.waits += 1;
        let mut health = shared.health.subscribe();
        health.borrow_and_update();
        tokio::select! {
            _ = shared.shutdown.cancelled() => Err(Error::Shutdown),
            _ = health.changed() => Ok(()),
            _ = tokio::time::sleep(step) => Ok(()),
        }
    }
}

/// Where a redirection sends a command: host, port, and whether `ASKING`
/// must go first.
#[derive(Debug, Clone)]
struct Redirect {
    host: String,
    port: u16,
    ask: bool,
}

enum Verdict {
    /// `MOVED` or `ASK`: answered, not applied, go there.
    Redirect(Redirect),
    /// The server's verdict on the command: passed on as it is.
    Rejected,
    /// Anything else, classified by the core's terms.
    Failure {
        kind: FailureKind,
        delivery: Delivery,
    },
}

/// Classifies a cluster command's error: the cluster's own replies and
/// redis-rs's cluster errors first, then [`failure_kind`] like a [`Client`].
fn judge(err: &RedisError) -> Verdict {
    match err.kind() {
        ErrorKind::Server(ServerErrorKind::Moved | ServerErrorKind::Ask) => {
            let ask = err.kind() == ErrorKind::Server(ServerErrorKind::Ask);
            let target = err.redirect_node().and_then(|(addr, _slot)| {
                let (host, port) = addr.rsplit_once(':')?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some((host.to_owned(), port.parse().ok()?))
            });
            match target {
                Some((host, port)) => Verdict::Redirect(Redirect { host, port, ask }),
                None => Verdict::Failure {
                    kind: FailureKind::ServerBusy(BusyReason::TryAgain),
                    delivery: Delivery::Answered,
                },
            }
        }
        // The cluster (or this slot) is down for now: refused, not applied.
        ErrorKind::Server(ServerErrorKind::ClusterDown) => Verdict::Failure {
            kind: FailureKind::ServerBusy(BusyReason::TryAgain),
            delivery: Delivery::Answered,
        },
        ErrorKind::Server(ServerErrorKind::MasterDown) => Verdict::Failure {
            kind: FailureKind::ServerBusy(BusyReason::MasterDown),
            delivery: Delivery::Answered,
        },
        // redis-rs had no connection to send it on.
        ErrorKind::ClusterConnectionNotFound => Verdict::Failure {
            kind: FailureKind::Io,
            delivery: Delivery::NotSent,
        },
        _ if err.is_connection_refusal() => Verdict::Failure {
            kind: FailureKind::Io,
            delivery: Delivery::NotSent,
        },
        _ => {
            let kind = failure_kind(err);
            if kind == FailureKind::Command {
                return Verdict::Rejected;
            }
            let delivery = if is_server_reply(err) {
                Delivery::Answered
            } else if matches!(
                Error::from_redis(err),
                Some(Error::NotApplied { .. } | Error::NotConnected { .. })
            ) {
                Delivery::NotSent
            } else {
                Delivery::MaybeSent
            };
            Verdict::Failure { kind, delivery }
        }
    }
}

impl Request<'_> {
    /// Sends on the cluster connection, or to the node a redirect named.
    async fn send_cluster(
        &self,
        conn: &mut ClusterConnection,
        redirect: Option<Redirect>,
    ) -> Result<Value, RedisError> {
        let Some(to) = redirect else {
            return match *self {
                Request::Cmd(cmd) => conn.req_packed_command(cmd).await,
                Request::Pipeline {
                    pipeline,
                    offset,
                    count,
                } => conn
                    .req_packed_commands(pipeline, offset, count)
                    .await
                    .map(Value::Array),
            };
        };
        let node = SingleNodeRoutingInfo::ByAddress {
            host: to.host,
            port: to.port,
        };
        match *self {
            Request::Cmd(cmd) if to.ask => {
                let mut pipe = redis::pipe();
                pipe.add_command(redis::cmd("ASKING"))
                    .add_command(cmd.clone());
                let mut values = conn.route_pipeline(pipe, 1, 1, node).await?;
                values.pop().ok_or_else(|| {
                    RedisError::from((ErrorKind::UnexpectedReturnType, "no reply after ASKING"))
                })
            }
            Request::Cmd(cmd) => {
                conn.route_command(cmd.clone(), RoutingInfo::SingleNode(node))
                    .await
            }
            // A pipeline is sent again where the slot is now (an ASK for a
            // pipeline ends when the migration does).
            Request::Pipeline {
                pipeline,
                offset,
                count,
            } if !to.ask => conn
                .route_pipeline(pipeline.clone(), offset, count, node)
                .await
                .map(Value::Array),
            Request::Pipeline {
                pipeline,
                offset,
                count,
            } => conn
                .req_packed_commands(pipeline, offset, count)
                .await
                .map(Value::Array),
        }
    }
}

impl ConnectionLike for ClusterClient {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.execute(Request::Cmd(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.execute(Request::Pipeline {
                pipeline,
                offset,
                count,
            })
            .await
            .map(into_values)
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}

impl crate::sync::SyncConnection for ClusterClient {
    fn idempotent(&self) -> Self {
        ClusterClient::idempotent(self)
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: Error) -> String {
        match e {
            Error::Config { field, .. } => field,
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn bad_nodes_are_named() {
        let no: [&str; 0] = [];
        assert_eq!(field_of(ClusterConfig::new(no).unwrap_err()), "nodes");
        let e = ClusterConfig::new(["redis://127.0.0.1:7000", "nonsense"]).unwrap_err();
        assert_eq!(field_of(e), "nodes[1]");
        let e = ClusterConfig::new(["redis+unix:///tmp/redis.sock"]).unwrap_err();
        assert_eq!(field_of(e), "nodes[0]");
        let e = ClusterConfig::new(["redis://127.0.0.1:7000/3"]).unwrap_err();
        assert_eq!(field_of(e), "nodes[0]");
    }
}
