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
//!   `retries(0)`: every command runs through the same execution loop as a
//!   [`Client`](crate::Client)'s (`calls.rs`), which executes the core's
//!   per-call policy ([`relink_core::call`]): retries only when safe, the
//!   retry budget, the outage policy, refusals (`CLUSTERDOWN`, `TRYAGAIN`)
//!   waited out, the deadline. A redirection is answered, not applied, so it
//!   is followed at once: to the node it names, with redis-rs's own
//!   by-address routing (`ASKING` first for an `ASK`).
//! - *Health per node and overall.* Each node the cluster reports gets a
//!   probe: a [`Client`](crate::Client) of its own on that node (one
//!   `MultiplexedConnection` driven by its own [`relink_core::Supervisor`],
//!   so PINGs every heartbeat interval, a connect timeout and a reconnect
//!   backoff per node). A probe connection rather than `route_command(PING,
//!   ByAddress)` on the shared cluster connection, because the supervisor
//!   decides when to connect and disconnect, which a shared connection it
//!   does not own cannot honour, and a probe measures the node, not
//!   redis-rs's routing and reconnect state. How the nodes add up, which
//!   nodes to probe, when to re-read the topology and when the cluster is
//!   lost are decided by the core's cluster supervisor; the background task
//!   (`driver.rs`) executes it.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisError, Value};
use relink_core::{Delivery, FailureKind, State, Timestamp};
use tokio::sync::{watch, Notify};

use crate::calls::{self, CallOptions, Calls, HandleGuard, Request, Route, Transport};
use crate::classify::Redirect;
use crate::config::{Config, OutagePolicy, RawConfig};
use crate::Error;
use relink_core::commands::Blocking;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod driver;
mod pubsub;

use driver::Driver;
pub use driver::{ClusterHealth, NodeHealth};

/// Hash slots in a Redis Cluster.
pub const SLOTS: u32 = 16384;

/// Where a cluster is and how relink keeps it reachable: plain data, checked
/// by [`build`](Self::build).
///
/// The nodes are the initial nodes (`redis://host:port`, any subset of the
/// cluster); the settings are a [`Config`]'s: heartbeat, backoff, timeouts,
/// deadline, outage and retry policies, username, password, protocol, client
/// name, TCP keepalive. The settings' URL is not used to connect (only the
/// nodes are); it is the first node.
///
/// ```
/// # use std::time::Duration;
/// # use relink::cluster::ClusterConfig;
/// let config = ClusterConfig::new(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])?;
/// let settings = config.settings().clone().with_response_timeout(Duration::from_secs(1));
/// let config = config.with_settings(settings).build()?;
/// assert_eq!(config.nodes().len(), 2);
/// # Ok::<(), relink::Error>(())
/// ```
///
/// Serde form: `nodes` and a `settings` table of exactly [`Config`]'s form
/// without `url` (every field optional):
///
/// ```
/// # use relink::cluster::ClusterConfig;
/// let config: ClusterConfig = toml::from_str(r#"
///     nodes = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
///
///     [settings]
///     password = "s3cret"
///     response_timeout = "1s"
///     deadline = "2s"
///
///     [settings.heartbeat]
///     interval = "500ms"
/// "#)?;
/// assert_eq!(config.settings().deadline(), Some(std::time::Duration::from_secs(2)));
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct ClusterConfig {
    /// Initial nodes, `redis://[user[:password]@]host:port` (or `rediss://`).
    nodes: Vec<String>,
    /// Everything else, shared with [`Config`].
    settings: Config,
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

    /// Replaces the shared settings (checked by [`build`](Self::build), and
    /// by [`ClusterClient::new`]).
    pub fn with_settings(mut self, settings: Config) -> Self {
        self.settings = settings;
        self
    }

    /// The initial nodes.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The settings shared with [`Config`].
    pub fn settings(&self) -> &Config {
        &self.settings
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
        if self.settings.sentinel().is_some() {
            return Err(Error::config(
                "settings.sentinel",
                "a cluster finds its nodes itself; Sentinel is for a single master",
            ));
        }
        if self.settings.cache().is_some() {
            return Err(Error::config(
                "settings.cache",
                "client-side caching is not supported by ClusterClient yet (it needs one \
                 supervised tracking connection per node): use it on a Client",
            ));
        }
        if self.settings.durable().is_some_and(|d| d.aof) {
            return Err(Error::config(
                "settings.durable.aof",
                "is not supported by ClusterClient, which waits for replicas with WAIT \
                 (whether each node has WAITAOF is not asked): leave it out",
            ));
        }
        if self
            .settings
            .tls()
            .is_some_and(|tls| tls.server_name().is_some())
        {
            return Err(Error::config(
                "settings.tls.server_name",
                "is not supported by a cluster: each node's certificate is verified against \
                 the address the cluster announces for it",
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
        #[cfg(feature = "tls-rustls")]
        if s.is_tls() {
            // redis-rs's cluster connection makes its own TLS connections.
            crate::tls::ensure_default_provider();
            if let Some(tls) = s.tls() {
                builder = builder.certs(tls.certificates("settings.tls.")?);
                if tls.danger_accept_invalid_certs() {
                    builder = builder.tls(redis::TlsMode::Insecure);
                }
            }
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
        // The node as the cluster is reached: over TLS with the same
        // settings when the nodes are `rediss://`.
        let url = match info.addr() {
            ConnectionAddr::TcpTls { insecure: true, .. } => {
                format!("rediss://{host}:{port}#insecure")
            }
            ConnectionAddr::TcpTls { .. } => format!("rediss://{host}:{port}"),
            _ => format!("redis://{host}:{port}"),
        };
        let mut c = Config::new(&url)?
            .with_protocol(s.protocol())
            .with_backoff(sc.backoff.clone())
            .with_heartbeat(sc.heartbeat)
            .with_connect_timeout(sc.connect_timeout)
            .with_backoff_reset_after(sc.backoff_reset_after)
            .with_response_timeout(s.response_timeout())
            .with_outage(OutagePolicy::FailFast)
            .with_tcp_keepalive(s.tcp_keepalive())
            .with_metrics_of(s);
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
        if let Some(tls) = s.tls() {
            c = c.with_tls(tls.clone());
        }
        c.build()
    }
}

/// The serde shape of [`ClusterConfig`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterConfig {
    nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settings: Option<RawConfig>,
}

impl TryFrom<RawClusterConfig> for ClusterConfig {
    type Error = Error;

    fn try_from(raw: RawClusterConfig) -> Result<ClusterConfig, Error> {
        check_nodes(&raw.nodes)?;
        let settings = match raw.settings {
            Some(settings) if !settings.url.is_empty() => {
                return Err(Error::config(
                    "settings.url",
                    "a cluster is reached through `nodes`; leave `url` out of `settings`",
                ));
            }
            Some(mut settings) => {
                settings.url = raw.nodes[0].clone();
                Config::try_from(settings).map_err(|e| prefixed("settings.", e))?
            }
            None => Config::new(&raw.nodes[0]).map_err(|e| prefixed("nodes[0]", e))?,
        };
        ClusterConfig {
            nodes: raw.nodes,
            settings,
        }
        .build()
    }
}

impl Serialize for ClusterConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut settings = RawConfig::from(self.settings.clone());
        settings.url.clear();
        RawClusterConfig {
            nodes: self.nodes.clone(),
            settings: Some(settings),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ClusterConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ClusterConfig, D::Error> {
        let raw = RawClusterConfig::deserialize(deserializer)?;
        ClusterConfig::try_from(raw).map_err(serde::de::Error::custom)
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

struct Shared {
    config: ClusterConfig,
    live: ArcSwapOption<ClusterConnection>,
    health: watch::Sender<ClusterHealth>,
    /// Wakes the driver: a node's probe changed, or a command saw the
    /// topology change (a redirection) or no connection at all.
    poke: Arc<Notify>,
    pubsub: pubsub::ClusterPubSub,
    calls: Calls,
}

/// A Redis Cluster client that rides out failovers, migrations and outages.
/// Cheap to clone; every clone shares one cluster connection, one set of node
/// probes and one background task.
///
/// It implements [`redis::aio::ConnectionLike`], so `redis::AsyncCommands`,
/// scripts and single-slot pipelines work on it unchanged. Errors are
/// relink's: recover them with [`Error::from_redis`] / [`Error::outcome_of`].
///
/// ```no_run
/// use std::time::Duration;
/// use relink::redis::AsyncCommands;
/// use relink::{ClusterClient, ClusterConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ClusterConfig::new(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])?;
/// let mut cluster = ClusterClient::new(config)?;
/// cluster.wait_ready(Duration::from_secs(5)).await?;
/// let _: () = cluster.set("{user:1}:name", "ada").await?; // routed by slot
/// for (node, health) in &cluster.health().borrow().nodes {
///     println!("{node}: {:?}", health.health.state);
/// }
/// cluster.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ClusterClient {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
    options: CallOptions,
    kept: calls::Kept,
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
            last_attempt_failure: None,
        });
        let settings = &config.settings;
        let seed = settings.jitter_seed();
        let calls = Calls::new(settings, now, None);
        let shutdown = calls.shutdown.clone();
        let options = CallOptions::new(settings);
        let poke = Arc::new(Notify::new());
        let pubsub = pubsub::ClusterPubSub::new(&config, shutdown.clone(), Arc::downgrade(&poke));
        let shared = Arc::new(Shared {
            config,
            live: ArcSwapOption::empty(),
            health,
            poke,
            pubsub,
            calls,
        });
        let driver = Driver::new(Arc::clone(&shared), redis_client, seed);
        let span = tracing::info_span!("relink_cluster", nodes = shared.config.nodes().len());
        let handle = runtime.spawn(tracing::Instrument::instrument(driver.run(), span));
        shared.calls.set_task(handle);
        Ok(ClusterClient {
            shared,
            _guard: Arc::new(HandleGuard(shutdown)),
            options,
            kept: calls::Kept::default(),
        })
    }

    /// A handle whose writes are acknowledged only once `replicas` replicas
    /// of the slot's master confirmed them, as [`Client::durable`](crate::Client::durable):
    /// each write (or pipeline, or transaction) goes out followed by `WAIT
    /// replicas timeout` in one pipeline, which redis-rs routes by the
    /// write's key to its slot's master (or to the node a redirect names),
    /// so the `WAIT` counts that master's replicas. Not confirmed, the call
    /// fails with [`Error::NotReplicated`] (outcome unknown). A command the
    /// cluster runs on many nodes (`FLUSHALL`, `SCRIPT LOAD`, ...) is
    /// refused on such a handle, not sent; a multi-key write must keep its
    /// keys in one slot (hash tags), as in any pipeline on a cluster.
    /// `WAIT` only (no `WAITAOF`). `timeout` must be shorter than the
    /// response timeout.
    pub fn durable(
        &self,
        replicas: u32,
        timeout: std::time::Duration,
    ) -> Result<ClusterClient, Error> {
        self.with_durability(Some(relink_core::Durability::new(replicas, timeout)))
    }

    /// Like [`durable`](Self::durable) with every setting but `aof`, which a
    /// cluster client refuses; `None`: acknowledged on the master's word.
    pub fn with_durability(
        &self,
        durability: Option<relink_core::Durability>,
    ) -> Result<ClusterClient, Error> {
        if let Some(durable) = &durability {
            if durable.aof {
                return Err(Error::config(
                    "durable.aof",
                    "is not supported by ClusterClient, which waits for replicas with WAIT",
                ));
            }
            crate::config::check_durable(
                durable,
                self.shared.config.settings().response_timeout(),
            )?;
        }
        let mut handle = self.clone();
        handle.options.durable = durability;
        Ok(handle)
    }

    /// `MOVED` and `ASK` replies followed so far (each sent the command on
    /// to the node the reply named).
    pub fn redirects(&self) -> u64 {
        self.shared.calls.redirects()
    }

    /// Subscribes to `channels` (`SUBSCRIBE`), as [`Client::subscribe`](crate::Client::subscribe)
    /// does, on the cluster: each channel on a subscriber connection to the
    /// master of its hash slot (every node delivers every `PUBLISH`; hashing
    /// spreads the connections). A node lost or a slot moved gives each
    /// affected handle one [`Restored`](crate::PubSubItem::Restored) marker
    /// once the channel is subscribed again at the slot's new master.
    pub async fn subscribe(&self, channels: &[&str]) -> Result<crate::Subscription, Error> {
        self.subscribe_kind(crate::pubsub::Kind::Channel, channels)
            .await
    }

    /// Like [`subscribe`](Self::subscribe), for glob patterns (`PSUBSCRIBE`).
    pub async fn psubscribe(&self, patterns: &[&str]) -> Result<crate::Subscription, Error> {
        self.subscribe_kind(crate::pubsub::Kind::Pattern, patterns)
            .await
    }

    /// Subscribes to shard channels (`SSUBSCRIBE`, Redis 7; published with
    /// `SPUBLISH`), each at the master that owns its slot, followed through
    /// failovers and reshards (a channel whose slot moved is subscribed at
    /// its new owner, with a marker). Needs RESP3.
    pub async fn ssubscribe(&self, channels: &[&str]) -> Result<crate::Subscription, Error> {
        self.subscribe_kind(crate::pubsub::Kind::Shard, channels)
            .await
    }

    async fn subscribe_kind(
        &self,
        kind: crate::pubsub::Kind,
        names: &[&str],
    ) -> Result<crate::Subscription, Error> {
        let settings = self.shared.config.settings();
        if kind == crate::pubsub::Kind::Shard
            && settings.protocol() != crate::config::Protocol::Resp3
        {
            return Err(crate::pubsub::link::shard_needs_resp3());
        }
        if self.shared.calls.shutdown.is_cancelled() {
            return Err(Error::Shutdown);
        }
        let pubsub = &self.shared.pubsub;
        let router: Arc<dyn crate::pubsub::Links> = Arc::clone(&pubsub.router) as _;
        crate::pubsub::subscribe(&pubsub.hub, router, kind, names).await
    }
}

/// `host` and `port` of a node named `host:port` (IPv6 hosts bracketed or not).
fn host_port(node: &str) -> Result<(String, u16), Error> {
    let (host, port) = node
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .ok_or_else(|| Error::config("nodes", format!("`{node}` is not host:port")))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
        port,
    ))
}

impl Shared {
    /// Where one command or pipeline goes: the call loop, or a refusal.
    fn route(&self, request: Request<'_>, options: CallOptions) -> Route<'static> {
        let blocking = request.blocking();
        let refused = match blocking {
            // redis-rs's own per-node response timeout would cut these,
            // leaving the command blocked on the node's shared connection.
            Ok(Some(Blocking::Forever)) => true,
            Ok(Some(Blocking::For { timeout })) => {
                timeout >= self.config.settings().response_timeout()
            }
            _ => false,
        };
        // A durable write goes out with its WAIT in one pipeline, to one
        // node: a command the cluster runs on many nodes cannot be one.
        if options.durable.is_some() && !request.is_read_only() && request.fans_out_on_cluster() {
            return Route::refused(Error::InvalidCommand {
                reason: "a command that a cluster runs on many nodes (FLUSHALL, SCRIPT LOAD, \
                         CONFIG SET, ...) cannot be a durable write, whose WAIT runs on one \
                         node: send it through a handle without durable()"
                    .to_owned(),
            });
        }
        if refused {
            let cluster_response_timeout = self.config.settings().response_timeout();
            return Route::refused(Error::InvalidCommand {
                reason: format!(
                    "a blocking command that may block {cluster_response_timeout:?} or longer \
                     (the response timeout) is not supported on ClusterClient yet; use a \
                     shorter timeout, or a Client on the node"
                ),
            });
        }
        Route::Loop(blocking)
    }

    fn stats(&self) -> crate::Stats {
        let mut stats = self.calls.stats();
        (
            stats.subscriptions,
            stats.subscriber_losses,
            stats.messages_dropped,
        ) = self.pubsub.hub.counts();
        stats
    }
}

/// The cluster connection as the execution loop sees it: redis-rs routes by
/// slot; a redirect is followed by address.
impl Transport for Shared {
    const FOLLOWS_REDIRECTS: bool = true;

    async fn send<'a>(
        &'a self,
        conn: &'a Arc<ClusterConnection>,
        _kept: &'a mut calls::KeptConn,
        request: Request<'a>,
        redirect: Option<&'a Redirect>,
        _sent_at: Timestamp,
        durable: Option<relink_core::Durability>,
    ) -> Result<Value, RedisError> {
        let mut conn = (**conn).clone();
        match durable {
            // Per shard: the WAIT goes with the write, to its slot's master.
            Some(durable) => {
                crate::durable::send_cluster(&mut conn, request, redirect, durable).await
            }
            None => request.send_cluster(&mut conn, redirect).await,
        }
    }

    fn generation(&self, _conn: &Arc<ClusterConnection>) -> u64 {
        0
    }

    fn replied(&self, _conn: &Arc<ClusterConnection>) {}

    fn alive_since(&self, _conn: &Arc<ClusterConnection>, _since: Timestamp) -> bool {
        // redis-rs's own response timeout ends a cluster attempt first.
        false
    }

    fn failed(&self, _conn: &Arc<ClusterConnection>, _kind: FailureKind, delivery: Delivery) {
        if delivery == Delivery::NotSent {
            // No connection to the slot's node: let the driver look.
            self.poke.notify_one();
        }
    }
}

calls::handle!(
    ClusterClient,
    Shared,
    ClusterConnection,
    ClusterHealth,
    |_client| 0
);

impl Request<'_> {
    /// Sends on the cluster connection, or to the node a redirect named.
    async fn send_cluster(
        &self,
        conn: &mut ClusterConnection,
        redirect: Option<&Redirect>,
    ) -> Result<Value, RedisError> {
        let node = |to: &Redirect| SingleNodeRoutingInfo::ByAddress {
            host: to.host.clone(),
            port: to.port,
        };
        match (redirect, *self) {
            (Some(to), Request::Cmd(cmd)) if to.ask => {
                let mut pipe = redis::pipe();
                pipe.add_command(redis::cmd("ASKING"))
                    .add_command(cmd.clone());
                let mut values = conn.route_pipeline(pipe, 1, 1, node(to)).await?;
                values
                    .pop()
                    .ok_or_else(|| crate::classify::protocol_error("no reply after ASKING"))
            }
            (Some(to), Request::Cmd(cmd)) => {
                conn.route_command(cmd.clone(), RoutingInfo::SingleNode(node(to)))
                    .await
            }
            // A pipeline is sent again where the slot is now.
            (
                Some(to),
                Request::Pipeline {
                    pipeline,
                    offset,
                    count,
                },
            ) if !to.ask => conn
                .route_pipeline(pipeline.clone(), offset, count, node(to))
                .await
                .map(Value::Array),
            // No redirect, or an ASK for a pipeline (which ends when the
            // migration does): where redis-rs routes it by slot.
            (_, Request::Cmd(cmd)) => conn.req_packed_command(cmd).await,
            (
                _,
                Request::Pipeline {
                    pipeline,
                    offset,
                    count,
                },
            ) => conn
                .req_packed_commands(pipeline, offset, count)
                .await
                .map(Value::Array),
        }
    }
}

impl crate::sync::SyncConnection for ClusterClient {
    fn idempotent(&self) -> Self {
        ClusterClient::idempotent(self)
    }
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
