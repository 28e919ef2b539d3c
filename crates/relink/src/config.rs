//! Configuration of one logical Redis connection: where it goes (a URL and
//! its overrides) and how relink keeps it alive (backoff, heartbeat,
//! timeouts, outage and retry policies).
//!
//! `Config` is plain data. It is checked when it is made ([`Config::new`],
//! [`Config::build`], deserialization), and it knows nothing of sockets,
//! tasks or the supervisor's state: the client reads it through getters.
//! URLs are parsed by redis-rs; this module only reads their text first, to
//! say in the user's terms what is wrong with one redis-rs would refuse or
//! misread. Accepted: `redis://`, `rediss://` (TLS), `redis+unix://` and
//! `unix://`, and `valkey://` / `valkeys://` (the same as `redis://` /
//! `rediss://`).
//!
//! # Defaults
//!
//! Everything that keeps a connection alive is **on**: reconnect with
//! exponential backoff and equal jitter, a heartbeat after 1 s of silence,
//! a bounded backlog during outages (1024 commands, 5 s each), 3 retries
//! under a retry budget, TCP keepalive after 30 s idle, RESP3. The crate
//! docs' [defaults table](crate#defaults) gives every value (a test checks
//! it against [`Config::new`]'s).
//!
//! # Serde form
//!
//! One table; every field but `url` is optional and defaults as above.
//! Durations are strings (`"250ms"`, `"1.5s"`, `"1h30m"`); unknown fields are
//! rejected; the result is validated, and the error names the field as it is
//! spelled here (`heartbeat.interval`, `outage.capacity`, ...).
//!
//! ```
//! # use std::time::Duration;
//! # use relink::config::{Config, OutagePolicy, Protocol};
//! let config: Config = toml::from_str(r#"
//!     url = "redis://127.0.0.1:6379/0"
//!     client_name = "billing"
//!     password = "s3cret"          # optional; wins over the URL's
//!     protocol = "resp3"           # or "resp2"
//!     connect_timeout = "2s"
//!     backoff_reset_after = "10s"
//!     response_timeout = "2s"     # one attempt
//!     deadline = "10s"             # a whole call, retries included; or false
//!     tcp_keepalive = "30s"        # or false
//!     tcp_nodelay = true           # default: off on loopback, on otherwise
//!     subscription_buffer = 4096   # items a Pub/Sub handle holds
//!     seed = 42                    # optional: fixed backoff jitter
//!
//!     [heartbeat]
//!     interval = "1s"
//!     timeout = "1s"
//!     misses_allowed = 0
//!
//!     [backoff]                    # relink_core::BackoffPolicy's own form
//!     strategy = "exponential"
//!     multiplier = 2.0
//!     initial_delay = "100ms"
//!     max_delay = "5s"
//!     jitter = "equal"
//!
//!     [outage]
//!     policy = "queue"             # or "fail_fast" (then no other field)
//!     capacity = 1024
//!     max_wait = "5s"
//!
//!     [retry]
//!     max_retries = 3
//!     [retry.budget]
//!     max_tokens = 10
//!     token_ratio = 0.1
//!
//!     ## Optional: client-side caching (RESP3; see `relink::cache`).
//!     ## [cache]
//!     ## max_entries = 10000
//!     ## max_bytes = 67108864
//!     ## ttl = "60s"
//!     ## mode = "default"          # or "broadcast", with prefixes = ["user:"]
//!
//!     ## Optional: find the master through Redis Sentinel (see `SentinelConfig`).
//!     ## Then the URL's host and port are not used; its user, password,
//!     ## database and protocol apply to the master the sentinels name.
//!     ## [sentinel]
//!     ## service = "mymaster"
//!     ## nodes = ["127.0.0.1:26379", "127.0.0.1:26380", "[::1]"]   # port 26379 by default
//!     ## username = "sentinel-user"     # optional: the sentinels' own ACL user
//!     ## password = "sentinel-secret"   # optional: the sentinels' own password
//!     ## follow_switch_master = true    # reconnect at once on `+switch-master`
//! "#).unwrap();
//! assert_eq!(config.response_timeout(), Duration::from_secs(2));
//! assert_eq!(config.protocol(), Protocol::Resp3);
//! assert_eq!(config.outage(), OutagePolicy::default());
//! assert!(!format!("{config:?}").contains("s3cret"));
//! ```
//!
//! # Secrets
//!
//! A password (from the URL or the `password` field) never appears in
//! `Debug`, in [`Config::redacted_url`] or in an error relink builds.
//! **Serializing does write it**, in the `password` field only (a password in
//! the URL is moved there, and the URL is written without it), so that a
//! serialized config reads back into the same config: treat serialized
//! output as a secret. Errors about the URL never quote it; but `toml`'s
//! errors about a field quote that line of the input (a mistyped `password`
//! line would be shown).

use std::fmt;
use std::time::Duration;

use redis::io::tcp::TcpSettings;
use redis::{ConnectionInfo, IntoConnectionInfo, ProtocolVersion};
use relink_core::cache::CacheConfig;
use relink_core::call::CallPolicy;
use relink_core::duration::{self, HumanDuration};
use relink_core::supervisor::SupervisorConfig;
use relink_core::{ConfigError, Durability};
use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::tls::RawTls;
pub use crate::tls::TlsConfig;
use crate::Error;

// The core's types that `Config`'s setters take, where their users look.
pub use relink_core::backoff::{BackoffPolicy, Jitter, Strategy};
pub use relink_core::budget::RetryBudgetConfig;
pub use relink_core::supervisor::HeartbeatConfig;

/// What a password is replaced with wherever a config is shown.
const REDACTED: &str = "***";

/// The longest duration any setting accepts: a year. Far beyond any sensible
/// timeout, and far from where `Instant + duration` overflows.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// The largest TCP keepalive idle time: Linux's `TCP_KEEPIDLE` limit, in seconds.
pub const MAX_TCP_KEEPALIVE: Duration = Duration::from_secs(32_767);

const URL_FORMS: &str = "expected `redis://[user[:password]@]host[:port][/db]`, \
    `rediss://...` (TLS), `redis+unix:///path?db=N`, or the same with `valkey://`, \
    `valkeys://`";

/// The wire protocol spoken to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Protocol {
    /// RESP2: every Redis version; no Pub/Sub on the shared connection.
    Resp2,
    /// RESP3 (Redis 6+): push messages, so Pub/Sub shares the multiplexed
    /// connection. The default.
    #[default]
    Resp3,
}

impl Protocol {
    /// The name used in config (`resp2`, `resp3`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Resp2 => "resp2",
            Protocol::Resp3 => "resp3",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Protocol> for ProtocolVersion {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Resp2 => ProtocolVersion::RESP2,
            Protocol::Resp3 => ProtocolVersion::RESP3,
        }
    }
}

/// What a command does while there is no connection.
///
/// Serde form: a table tagged by `policy`:
/// `{ policy = "queue", capacity = 1024, max_wait = "5s" }` (missing fields
/// take the defaults, a missing `policy` is `"queue"`) or
/// `{ policy = "fail_fast" }` (no other field allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawOutage", into = "RawOutage")]
#[non_exhaustive]
pub enum OutagePolicy {
    /// Fail at once with [`Error::NotConnected`]: the command is not sent.
    FailFast,
    /// Wait in a bounded backlog for the connection to come back.
    Queue {
        /// Commands that may wait at once (1..=[`OutagePolicy::MAX_CAPACITY`]);
        /// one more fails with [`Error::BacklogFull`].
        capacity: usize,
        /// How long a command may wait (> 0) before it fails with
        /// [`Error::QueueTimeout`].
        max_wait: Duration,
    },
}

impl OutagePolicy {
    /// Default backlog capacity.
    pub const DEFAULT_CAPACITY: usize = 1024;
    /// Default longest wait in the backlog.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);
    /// The largest backlog capacity accepted (2^20 commands).
    pub const MAX_CAPACITY: usize = 1 << 20;

    /// Checks the fields; the error names the bad one (`outage.capacity`, `outage.max_wait`).
    pub fn validate(&self) -> Result<(), Error> {
        if let OutagePolicy::Queue { capacity, max_wait } = *self {
            if !(1..=Self::MAX_CAPACITY).contains(&capacity) {
                return Err(Error::config(
                    "outage.capacity",
                    format!(
                        "must be between 1 and {}, got {capacity}; use policy \"fail_fast\" for no backlog",
                        Self::MAX_CAPACITY
                    ),
                ));
            }
            check_duration("outage.max_wait", max_wait)?;
        }
        Ok(())
    }
}

impl Default for OutagePolicy {
    /// `Queue { capacity: 1024, max_wait: 5s }`.
    fn default() -> Self {
        OutagePolicy::Queue {
            capacity: Self::DEFAULT_CAPACITY,
            max_wait: Self::DEFAULT_MAX_WAIT,
        }
    }
}

/// The bounded set of exclusive connections: blocking commands (`BLPOP`,
/// `XREAD ... BLOCK`, `WAIT`, ...) run there, so they never hold the shared
/// connection, and [`Client::exclusive`](crate::Client::exclusive) leases
/// one for `WATCH`/`MULTI`/`EXEC` and other connection state. Each is
/// supervised like the shared one (reconnect, backoff, heartbeat, restored
/// state); they are opened on demand and closed after `idle_timeout` unused.
///
/// Serde form: `[exclusive] max_connections = 8, idle_timeout = "60s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ExclusiveConfig {
    /// Exclusive connections open at most (1..=1024); a caller that finds
    /// them all in use waits as the outage policy says.
    pub max_connections: usize,
    /// An exclusive connection unused this long is closed (> 0).
    #[serde(with = "duration::human")]
    pub idle_timeout: Duration,
}

impl Default for ExclusiveConfig {
    /// 8 connections, closed after 60 s unused.
    fn default() -> Self {
        ExclusiveConfig {
            max_connections: 8,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl ExclusiveConfig {
    /// The most exclusive connections accepted.
    pub const MAX_CONNECTIONS: usize = 1024;

    /// Sets [`max_connections`](Self::max_connections).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// Checks the fields; the error names the bad one.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=Self::MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(Error::config(
                "exclusive.max_connections",
                format!(
                    "must be between 1 and {}, got {}",
                    Self::MAX_CONNECTIONS,
                    self.max_connections
                ),
            ));
        }
        check_duration("exclusive.idle_timeout", self.idle_timeout)
    }
}

/// When a failed command is sent again.
///
/// Serde form: `{ max_retries = 3, budget = { max_tokens = 10, token_ratio = 0.1 } }`,
/// every field optional.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRetry")]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries of one command at most (0..=[`RetryPolicy::MAX_RETRIES`]); 0
    /// never retries. Only a command that is safe to repeat is retried.
    pub max_retries: u32,
    /// The fleet-wide brake: retries stop while most requests fail.
    pub budget: RetryBudgetConfig,
}

impl RetryPolicy {
    /// Default retries per command.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
    /// The most retries accepted: beyond a handful, retries only add load
    /// (the outage backlog, not retries, is what waits for a reconnect).
    pub const MAX_RETRIES: u32 = 100;

    /// Sets [`max_retries`](Self::max_retries).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// Sets [`budget`](Self::budget).
    pub fn budget(mut self, budget: RetryBudgetConfig) -> Self {
        self.budget = budget;
        self
    }

    /// Checks the fields; the error names the bad one (`retry.max_retries`,
    /// `retry.budget.max_tokens`, ...).
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_retries > Self::MAX_RETRIES {
            return Err(Error::config(
                "retry.max_retries",
                format!(
                    "must be at most {}, got {}",
                    Self::MAX_RETRIES,
                    self.max_retries
                ),
            ));
        }
        self.budget
            .validate()
            .map_err(|e| prefixed("retry.budget.", e))
    }
}

impl Default for RetryPolicy {
    /// 3 retries, gRPC's retry budget (10 tokens, 0.1 per success).
    fn default() -> Self {
        RetryPolicy {
            max_retries: Self::DEFAULT_MAX_RETRIES,
            budget: RetryBudgetConfig::default(),
        }
    }
}

/// A password (or an inline private key): shown as `***`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(pub(crate) String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// One logical Redis connection and how relink keeps it alive.
///
/// Made by [`Config::new`] (or deserialized), adjusted with the by-value
/// `with_*` setters, checked by [`build`](Self::build):
///
/// ```
/// # use std::time::Duration;
/// # use relink::config::{Config, OutagePolicy};
/// let config = Config::new("redis://127.0.0.1:6379/2")?
///     .with_client_name("billing")
///     .with_response_timeout(Duration::from_secs(1))
///     .with_outage(OutagePolicy::FailFast)
///     .build()?;
/// assert_eq!(config.database(), 2);
/// # Ok::<(), relink::Error>(())
/// ```
///
/// Equality compares the URL text and every setting.
#[derive(Clone)]
pub struct Config {
    /// As given; may hold a password. Never shown: see `redacted_url`.
    url: String,
    /// `url` as parsed by redis-rs.
    target: ConnectionInfo,
    username: Option<String>,
    password: Option<Secret>,
    database: Option<i64>,
    client_name: Option<String>,
    protocol: Protocol,
    supervisor: SupervisorConfig,
    response_timeout: Duration,
    deadline: Option<Duration>,
    outage: OutagePolicy,
    retry: RetryPolicy,
    exclusive: ExclusiveConfig,
    tcp_keepalive: Option<Duration>,
    /// `None`: by the target (off on loopback, on otherwise).
    tcp_nodelay: Option<bool>,
    subscription_buffer: usize,
    seed: Option<u64>,
    sentinel: Option<SentinelConfig>,
    tls: Option<TlsConfig>,
    durable: Option<Durability>,
    cache: Option<CacheConfig>,
    /// Where metrics go (the `opentelemetry` feature); `None`: the global
    /// meter provider's. Not data: not serialized, compared or shown.
    #[cfg(feature = "opentelemetry")]
    meter: Option<opentelemetry::metrics::Meter>,
}

impl Config {
    /// Default [`response_timeout`](Self::response_timeout).
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
    /// Default [`deadline`](Self::deadline): a full backlog wait (5 s) and a
    /// full attempt (3 s) fit, with room for a retry.
    pub const DEFAULT_DEADLINE: Duration = CallPolicy::DEFAULT_DEADLINE;
    /// How long a binding that must return (C's `relink_client_free`) waits
    /// for [`Client::shutdown`](crate::Client::shutdown): its task ends
    /// within one step of being told, so this bound is only a safety net.
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
    /// Default [`subscription_buffer`](Self::subscription_buffer).
    pub const DEFAULT_SUBSCRIPTION_BUFFER: usize = 4096;
    /// Largest [`subscription_buffer`](Self::subscription_buffer).
    pub const MAX_SUBSCRIPTION_BUFFER: usize = 1 << 20;
    /// Default [`tcp_keepalive`](Self::tcp_keepalive) idle time.
    pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(30);

    /// A config for `url` with every other setting at its default.
    ///
    /// `url` is `redis://[user[:password]@]host[:port][/db]` (port 6379 by
    /// default), `rediss://...` for TLS (needs the `tls-rustls` feature), or
    /// `redis+unix:///path?db=N` / `unix:///path`; `valkey://` and
    /// `valkeys://` are the same as `redis://` and `rediss://`. A
    /// `?protocol=resp2` in the URL sets the protocol; otherwise it is RESP3.
    ///
    /// A bad URL is an [`Error::Config`] for `url` that says what is wrong
    /// (unknown scheme, port 0 or out of range, a database that is not a
    /// number, a bad percent-escape, no host); a TLS URL without the
    /// `tls-rustls` feature is [`Error::TlsUnavailable`].
    pub fn new(url: &str) -> Result<Config, Error> {
        let (target, url_protocol) = parse_url(url)?;
        let config = Config {
            url: url.to_owned(),
            target,
            username: None,
            password: None,
            database: None,
            client_name: None,
            protocol: url_protocol.unwrap_or_default(),
            supervisor: SupervisorConfig::default(),
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            deadline: Some(Self::DEFAULT_DEADLINE),
            outage: OutagePolicy::default(),
            retry: RetryPolicy::default(),
            exclusive: ExclusiveConfig::default(),
            tcp_keepalive: Some(Self::DEFAULT_TCP_KEEPALIVE),
            tcp_nodelay: None,
            subscription_buffer: Self::DEFAULT_SUBSCRIPTION_BUFFER,
            seed: None,
            sentinel: None,
            tls: None,
            durable: None,
            cache: None,
            #[cfg(feature = "opentelemetry")]
            meter: None,
        };
        config.build()
    }

    // ---- setters ---------------------------------------------------------

    /// Sets the ACL username (wins over the URL's).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the password (wins over the URL's).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret(password.into()));
        self
    }

    /// Sets the database number (wins over the URL's).
    pub fn with_database(mut self, db: i64) -> Self {
        self.database = Some(db);
        self
    }

    /// Sets the name given with `CLIENT SETNAME` after every (re)connect:
    /// printable ASCII, no spaces.
    pub fn with_client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// Sets the protocol (wins over the URL's `?protocol=`).
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets the reconnect backoff.
    pub fn with_backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.supervisor = self.supervisor.backoff(backoff);
        self
    }

    /// Sets the heartbeat.
    pub fn with_heartbeat(mut self, heartbeat: HeartbeatConfig) -> Self {
        self.supervisor = self.supervisor.heartbeat(heartbeat);
        self
    }

    /// Sets how long one connection attempt (with its handshake) may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.supervisor = self.supervisor.connect_timeout(timeout);
        self
    }

    /// Sets how long a connection must stay up for its loss to restart the
    /// backoff from the initial delay.
    pub fn with_backoff_reset_after(mut self, after: Duration) -> Self {
        self.supervisor = self.supervisor.backoff_reset_after(after);
        self
    }

    /// Sets the longest any caller waits for a reply.
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Sets the total bound on every call: queueing, attempts and retries
    /// (`None`: no total bound). One handle can have its own:
    /// [`Client::with_deadline`](crate::Client::with_deadline).
    pub fn with_deadline(mut self, deadline: Option<Duration>) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets what commands do while there is no connection.
    pub fn with_outage(mut self, outage: OutagePolicy) -> Self {
        self.outage = outage;
        self
    }

    /// Sets when failed commands are retried.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the exclusive connections' bound and idle time.
    pub fn with_exclusive(mut self, exclusive: ExclusiveConfig) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Sets the TCP keepalive idle time (whole seconds, 1s..=32767s); `None` disables it.
    pub fn with_tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.tcp_keepalive = idle;
        self
    }

    /// Sets `TCP_NODELAY` on the client's sockets. By default it is off
    /// when the configured host is a loopback address (`127.0.0.0/8`,
    /// `::1`, `localhost`; with Sentinel, every sentinel's) and on
    /// otherwise.
    ///
    /// Off, the kernel's Nagle algorithm holds a small write while the last
    /// is unacknowledged and sends the held ones together when the
    /// server's reply acknowledges it: on loopback that hold lasts as long
    /// as the server takes to answer (microseconds) and batches the
    /// commands of concurrent callers better than anything else measured
    /// (the README's Numbers). Across a network it lasts a round trip:
    /// concurrent callers on one multiplexed connection then take turns
    /// waiting for each other's acknowledgements, up to twice the round
    /// trip each, so there each write leaves at once and relink coalesces
    /// concurrent callers' commands into one write itself (`coalesce.rs`).
    pub fn with_tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.tcp_nodelay = Some(nodelay);
        self
    }

    /// Sets how many items each Pub/Sub [`Subscription`](crate::Subscription)
    /// buffers for its consumer (default 4096, at most 2^20). When a slow
    /// consumer's buffer is full, new messages for it are dropped and
    /// counted, and it gets a [`PubSubItem::Lagged`](crate::PubSubItem::Lagged)
    /// with the count where the hole is; the connection never waits for it.
    pub fn with_subscription_buffer(mut self, items: usize) -> Self {
        self.subscription_buffer = items;
        self
    }

    /// Fixes the seed of the backoff jitter (tests); by default each client
    /// draws a random one.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Finds the master through Redis Sentinel: every (re)connect asks the
    /// sentinels where the master of `sentinel.service()` is. The URL's host
    /// and port are then not used; its user, password, database, protocol and
    /// scheme (`rediss` for TLS) apply to the master. [`Client::new`](crate::Client::new)
    /// picks the [`SentinelConnector`](crate::sentinel::SentinelConnector).
    pub fn with_sentinel(mut self, sentinel: SentinelConfig) -> Self {
        self.sentinel = Some(sentinel);
        self
    }

    /// Acknowledges every write only once `durable.replicas` replicas
    /// confirmed it within `durable.timeout` (`WAIT` in the same round
    /// trip; see [`Client::durable`](crate::Client::durable), which does
    /// the same for one handle); `None` (the default): on the master's word.
    ///
    /// Serde form: `[durable] replicas = 1, timeout = "500ms", aof = false`.
    pub fn with_durable(mut self, durable: Option<Durability>) -> Self {
        self.durable = durable;
        self
    }

    /// Turns on client-side caching (`None`, the default: off): the replies
    /// of cacheable reads (`GET`, `MGET`, `HGETALL`, ...: the core's list)
    /// are kept in memory and answered from there while the server tracks
    /// them (`CLIENT TRACKING`), invalidated by key when they change, and
    /// dropped whenever the connection is lost. Needs RESP3.
    ///
    /// Serde form: `[cache] max_entries = 10000, max_bytes = 67108864,
    /// ttl = "60s", mode = "default"` (or `"broadcast"` with `prefixes =
    /// ["user:"]`). See [`relink_core::cache`] for the guarantees.
    pub fn with_cache(mut self, cache: Option<CacheConfig>) -> Self {
        self.cache = cache;
        self
    }

    /// Sets how TLS connections are made: the CA to trust, a client
    /// certificate, the name to verify (see [`TlsConfig`]). The URL must be
    /// `rediss://`; without this, a `rediss://` URL trusts the operating
    /// system's roots and verifies the URL's host. With Sentinel, it applies
    /// to the master.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Records the client's metrics (see [`crate::metrics`]) with `meter`
    /// instead of the global meter provider's `relink` meter.
    ///
    /// ```
    /// # use relink::Config;
    /// use opentelemetry::metrics::MeterProvider;
    /// # let provider = opentelemetry::metrics::noop::NoopMeterProvider::new();
    /// let config = Config::new("redis://127.0.0.1:6379")?.with_meter(provider.meter("relink"));
    /// # Ok::<(), relink::Error>(())
    /// ```
    #[cfg(feature = "opentelemetry")]
    pub fn with_meter(mut self, meter: opentelemetry::metrics::Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Records the client's metrics (see [`crate::metrics`]) through
    /// `provider`, with relink's own scope (`relink` and the crate's
    /// version), instead of through the global meter provider.
    #[cfg(feature = "opentelemetry")]
    pub fn with_meter_provider(
        self,
        provider: &impl opentelemetry::metrics::MeterProvider,
    ) -> Self {
        self.with_meter(provider.meter_with_scope(crate::metrics::scope()))
    }

    /// The meter given to [`with_meter`](Self::with_meter), if any.
    #[cfg(feature = "opentelemetry")]
    pub fn meter(&self) -> Option<&opentelemetry::metrics::Meter> {
        self.meter.as_ref()
    }

    /// This config, recording its metrics where `other` does (a cluster's
    /// node probes record where the cluster does).
    #[cfg_attr(not(feature = "opentelemetry"), allow(unused_mut))]
    pub(crate) fn with_metrics_of(mut self, other: &Config) -> Self {
        #[cfg(feature = "opentelemetry")]
        {
            self.meter = other.meter.clone();
        }
        #[cfg(not(feature = "opentelemetry"))]
        let _ = other;
        self
    }

    // ---- checking ----------------------------------------------------------

    /// Checks every setting; the error names the first bad field as it is
    /// spelled in TOML (`database`, `heartbeat.interval`, `backoff.max_delay`, ...).
    pub fn validate(&self) -> Result<(), Error> {
        if self.database() < 0 {
            let field = if self.database.is_some() {
                "database"
            } else {
                "url"
            };
            return Err(Error::config(
                field,
                format!("database must be 0 or more, got {}", self.database()),
            ));
        }
        if self.username.as_deref() == Some("") {
            return Err(Error::config(
                "username",
                "must not be empty; leave it out for the default user",
            ));
        }
        if matches!(&self.password, Some(Secret(p)) if p.is_empty()) {
            return Err(Error::config(
                "password",
                "must not be empty; leave it out for no password",
            ));
        }
        if let Some(name) = &self.client_name {
            check_client_name(name)?;
        }
        self.supervisor
            .backoff
            .validate()
            .map_err(|e| prefixed("backoff.", e))?;
        self.supervisor.validate().map_err(Error::from)?;
        let durations = [
            ("heartbeat.interval", self.supervisor.heartbeat.interval),
            ("heartbeat.timeout", self.supervisor.heartbeat.timeout),
            ("connect_timeout", self.supervisor.connect_timeout),
            ("response_timeout", self.response_timeout),
        ];
        if let Some(deadline) = self.deadline {
            check_duration("deadline", deadline)?;
        }
        for (field, d) in durations {
            check_duration(field, d)?;
        }
        if self.supervisor.backoff_reset_after > MAX_DURATION {
            return Err(too_long("backoff_reset_after"));
        }
        self.outage.validate()?;
        self.retry.validate()?;
        self.exclusive.validate()?;
        if !(1..=Self::MAX_SUBSCRIPTION_BUFFER).contains(&self.subscription_buffer) {
            return Err(Error::config(
                "subscription_buffer",
                format!(
                    "must be between 1 and {}, got {}",
                    Self::MAX_SUBSCRIPTION_BUFFER,
                    self.subscription_buffer
                ),
            ));
        }
        if let Some(idle) = self.tcp_keepalive {
            if idle < Duration::from_secs(1) || idle > MAX_TCP_KEEPALIVE || idle.subsec_nanos() != 0
            {
                return Err(Error::config(
                    "tcp_keepalive",
                    format!(
                        "must be whole seconds between 1s and {} (the OS counts keepalive \
                         idle time in seconds), got {}; use false (or None) to disable it",
                        HumanDuration(MAX_TCP_KEEPALIVE),
                        HumanDuration(idle)
                    ),
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if !matches!(self.target.addr(), redis::ConnectionAddr::TcpTls { .. }) {
                return Err(Error::config(
                    "tls",
                    "applies to a TLS URL: use `rediss://` (or `valkeys://`) to connect with TLS",
                ));
            }
            tls.validate_as("tls.")?;
        }
        if let Some(durable) = &self.durable {
            check_durable(durable, self.response_timeout)?;
        }
        if let Some(cache) = &self.cache {
            cache.validate().map_err(|e| prefixed("", e))?;
            if self.protocol != Protocol::Resp3 {
                return Err(Error::config(
                    "cache",
                    "client-side caching needs RESP3 (the server pushes its invalidations on \
                     the connection that read the keys): use RESP3, the default (no `protocol = \"resp2\"` \
                     in the config, no `?protocol=resp2` in the URL)",
                ));
            }
        }
        if let Some(sentinel) = &self.sentinel {
            sentinel.validate()?;
            if matches!(self.target.addr(), redis::ConnectionAddr::Unix(_)) {
                return Err(Error::config(
                    "url",
                    "a Unix socket URL cannot be combined with `sentinel`: the sentinels name a \
                     TCP address; use `redis://` (or `rediss://`) for the credentials and database",
                ));
            }
        }
        Ok(())
    }

    /// [`validate`](Self::validate)s and returns the config.
    pub fn build(self) -> Result<Config, Error> {
        self.validate().map(|()| self)
    }

    // ---- getters -------------------------------------------------------------

    /// What redis-rs needs to connect: the URL with the username, password and
    /// database overrides, the protocol, and TCP settings (keepalive, and
    /// `TCP_NODELAY` as configured) applied.
    pub fn connection_info(&self) -> ConnectionInfo {
        let mut redis = self.target.redis_settings().clone();
        if let Some(username) = &self.username {
            redis = redis.set_username(username);
        }
        if let Some(Secret(password)) = &self.password {
            redis = redis.set_password(password);
        }
        if let Some(db) = self.database {
            redis = redis.set_db(db);
        }
        redis = redis.set_protocol(self.protocol.into());
        let mut tcp = TcpSettings::default().set_nodelay(self.tcp_nodelay());
        if let Some(idle) = self.tcp_keepalive {
            tcp = tcp.set_keepalive(socket2::TcpKeepalive::new().with_time(idle));
        }
        self.target
            .clone()
            .set_redis_settings(redis)
            .set_tcp_settings(tcp)
    }

    /// The supervisor's settings: backoff, heartbeat, connect timeout, backoff reset.
    pub fn supervisor_config(&self) -> SupervisorConfig {
        self.supervisor.clone()
    }

    /// The name restored with `CLIENT SETNAME` after each reconnect.
    pub fn client_name(&self) -> Option<&str> {
        self.client_name.as_deref()
    }

    /// The username in force (the override, else the URL's).
    pub fn username(&self) -> Option<&str> {
        self.username
            .as_deref()
            .or_else(|| self.target.redis_settings().username())
    }

    /// The protocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The longest any caller waits for a reply.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// The total bound on a call (queueing, attempts and retries); `None`
    /// bounds a call only by the outage wait, the retries and their timeouts.
    pub fn deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The per-call policy the core applies to every command: the outage
    /// policy, retries, response timeout and deadline of this config.
    pub fn call_policy(&self) -> CallPolicy {
        let queue_wait = match self.outage {
            OutagePolicy::FailFast => None,
            OutagePolicy::Queue { max_wait, .. } => Some(max_wait),
        };
        CallPolicy::default()
            .queue_wait(queue_wait)
            .max_retries(self.retry.max_retries)
            .response_timeout(self.response_timeout)
            .deadline(self.deadline)
    }

    /// The seed of the reconnect jitter: the configured one, else one drawn
    /// from the OS-seeded hasher keys std already has (no extra dependency
    /// for a few random bits).
    pub(crate) fn jitter_seed(&self) -> u64 {
        self.seed.unwrap_or_else(random_seed)
    }

    /// What commands do while there is no connection.
    pub fn outage(&self) -> OutagePolicy {
        self.outage
    }

    /// The exclusive connections' bound and idle time.
    pub fn exclusive(&self) -> ExclusiveConfig {
        self.exclusive
    }

    /// When failed commands are retried.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The TCP keepalive idle time; `None` when disabled.
    pub fn tcp_keepalive(&self) -> Option<Duration> {
        self.tcp_keepalive
    }

    /// Whether `TCP_NODELAY` is set on the client's sockets.
    pub fn tcp_nodelay(&self) -> bool {
        self.tcp_nodelay.unwrap_or_else(|| !self.on_loopback())
    }

    /// Whether `TCP_NODELAY` was set explicitly (`None`: by the target).
    pub fn tcp_nodelay_setting(&self) -> Option<bool> {
        self.tcp_nodelay
    }

    /// The configured host is this machine's loopback: the URL's, or with
    /// Sentinel every sentinel's (the masters they name are found later).
    /// A Unix socket has no TCP settings at all.
    fn on_loopback(&self) -> bool {
        fn loopback(host: &str) -> bool {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        if let Some(sentinel) = &self.sentinel {
            // `host[:port]`, an IPv6 host in brackets.
            let host = |node: &str| match node.rsplit_once(']') {
                Some((host, _)) => host.to_owned(),
                None => node.rsplit_once(':').map_or(node, |(h, _)| h).to_owned(),
            };
            return sentinel.nodes().iter().all(|node| loopback(&host(node)));
        }
        match self.target.addr() {
            redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. } => {
                loopback(host)
            }
            _ => false,
        }
    }

    /// How many items each Pub/Sub subscription buffers.
    pub fn subscription_buffer(&self) -> usize {
        self.subscription_buffer
    }

    /// The fixed backoff seed, if any.
    pub fn seed(&self) -> Option<u64> {
        self.seed
    }

    /// The Sentinel discovery settings, when the master is found through Sentinel.
    pub fn sentinel(&self) -> Option<&SentinelConfig> {
        self.sentinel.as_ref()
    }

    /// The client-side cache's settings, when it is on.
    pub fn cache(&self) -> Option<&CacheConfig> {
        self.cache.as_ref()
    }

    /// The durable acknowledgements every write asks for, if any.
    pub fn durable(&self) -> Option<Durability> {
        self.durable
    }

    /// The TLS settings given with [`with_tls`](Self::with_tls), if any.
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// Whether the URL asks for TLS (`rediss://`, `valkeys://`).
    pub fn is_tls(&self) -> bool {
        matches!(self.target.addr(), redis::ConnectionAddr::TcpTls { .. })
    }

    /// The database in force (the override, else the URL's, else 0).
    pub fn database(&self) -> i64 {
        self.database
            .unwrap_or_else(|| self.target.redis_settings().db())
    }

    /// The URL with any password (userinfo or a Unix URL's `pass=`) replaced
    /// by `***`; safe to log.
    pub fn redacted_url(&self) -> String {
        rewrite_password(&self.url, Some(REDACTED))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.redacted_url())
            .field("username", &self.username)
            .field("password", &self.password)
            .field("database", &self.database)
            .field("client_name", &self.client_name)
            .field("protocol", &self.protocol)
            .field("backoff", &self.supervisor.backoff)
            .field("heartbeat", &self.supervisor.heartbeat)
            .field("connect_timeout", &self.supervisor.connect_timeout)
            .field("backoff_reset_after", &self.supervisor.backoff_reset_after)
            .field("response_timeout", &self.response_timeout)
            .field("deadline", &self.deadline)
            .field("outage", &self.outage)
            .field("retry", &self.retry)
            .field("exclusive", &self.exclusive)
            .field("tcp_keepalive", &self.tcp_keepalive)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("subscription_buffer", &self.subscription_buffer)
            .field("seed", &self.seed)
            .field("sentinel", &self.sentinel)
            .field("tls", &self.tls)
            .field("durable", &self.durable)
            .field("cache", &self.cache)
            .finish()
    }
}

impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        // `target` is a function of `url`.
        self.url == other.url
            && self.username == other.username
            && self.password == other.password
            && self.database == other.database
            && self.client_name == other.client_name
            && self.protocol == other.protocol
            && self.supervisor == other.supervisor
            && self.response_timeout == other.response_timeout
            && self.deadline == other.deadline
            && self.outage == other.outage
            && self.retry == other.retry
            && self.exclusive == other.exclusive
            && self.tcp_keepalive == other.tcp_keepalive
            && self.tcp_nodelay == other.tcp_nodelay
            && self.subscription_buffer == other.subscription_buffer
            && self.seed == other.seed
            && self.sentinel == other.sentinel
            && self.tls == other.tls
            && self.durable == other.durable
            && self.cache == other.cache
    }
}

/// Checks durable acknowledgements: the fields (named `durable.*`), and a
/// `WAIT` timeout that fits inside the response timeout of the attempt that
/// carries it.
pub(crate) fn check_durable(durable: &Durability, response_timeout: Duration) -> Result<(), Error> {
    durable.validate().map_err(|e| prefixed("durable.", e))?;
    if durable.timeout >= response_timeout {
        return Err(Error::config(
            "durable.timeout",
            format!(
                "must be shorter than the response timeout ({}), which bounds the write and \
                 its WAIT together; got {}",
                HumanDuration(response_timeout),
                HumanDuration(durable.timeout)
            ),
        ));
    }
    Ok(())
}

/// Where Redis Sentinel finds the master: the sentinels to ask, the name they
/// monitor the master under, and the sentinels' own credentials.
///
/// Serde form (the `[sentinel]` table of a [`Config`]):
/// `{ service = "mymaster", nodes = ["127.0.0.1:26379", "127.0.0.1:26380"], username = "...",
/// password = "...", follow_switch_master = true }`; `service` and `nodes` are
/// required, a node without a port uses 26379. The password is shown as `***`.
///
/// ```
/// # use relink::config::{Config, SentinelConfig};
/// let config = Config::new("redis://:master-secret@mymaster/2")?
///     .with_sentinel(
///         SentinelConfig::new("mymaster", ["127.0.0.1:26379", "127.0.0.1:26380"])
///             .with_password("sentinel-secret"),
///     )
///     .build()?;
/// assert_eq!(config.sentinel().unwrap().service(), "mymaster");
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), relink::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSentinel", into = "RawSentinel")]
pub struct SentinelConfig {
    service: String,
    nodes: Vec<String>,
    username: Option<String>,
    password: Option<Secret>,
    follow_switch_master: bool,
    tls: Option<TlsConfig>,
}

impl SentinelConfig {
    /// The port of a sentinel node given without one.
    pub const DEFAULT_PORT: u16 = 26379;

    /// Sentinels at `nodes` (`host[:port]`, asked in this order) monitoring
    /// the master named `service`.
    pub fn new<I, S>(service: impl Into<String>, nodes: I) -> SentinelConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        SentinelConfig {
            service: service.into(),
            nodes: nodes.into_iter().map(Into::into).collect(),
            username: None,
            password: None,
            follow_switch_master: true,
            tls: None,
        }
    }

    /// Sets the ACL username the sentinels require (not the master's).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets the password the sentinels require (not the master's).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Secret(password.into()));
        self
    }

    /// Whether to subscribe to the sentinels' `+switch-master` and reconnect
    /// as soon as a failover is announced (the default). Off, a failover is
    /// noticed only when the old master drops the connection, refuses a
    /// write (`READONLY`) or stops answering heartbeats.
    pub fn with_follow_switch_master(mut self, follow: bool) -> Self {
        self.follow_switch_master = follow;
        self
    }

    /// Reaches the sentinels over TLS with these settings (the CA to trust,
    /// a client certificate; a server name is not supported here: each
    /// sentinel is verified against its address in [`nodes`](Self::nodes)).
    /// The master's TLS is the [`Config`]'s URL (`rediss://`) and
    /// [`Config::with_tls`].
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The TLS settings of the connections to the sentinels, if any.
    pub fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// The name the sentinels monitor the master under.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The sentinel nodes, as given.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// The sentinels' ACL username, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Whether `+switch-master` announcements are followed.
    pub fn follow_switch_master(&self) -> bool {
        self.follow_switch_master
    }

    /// How the `+switch-master` watcher (see
    /// [`SentinelConnector`](crate::sentinel::SentinelConnector)) keeps its
    /// subscription on a sentinel: the settings of the core's supervisor
    /// that decides every (re)subscription, heartbeat and give-up. Each
    /// attempt goes to the next sentinel of [`nodes`](Self::nodes), in turn.
    ///
    /// - **Connect timeout 2 s**: one attempt (connect, `SUBSCRIBE`, then
    ///   `SENTINEL get-master-addr-by-name`) may take this long.
    /// - **Heartbeat**: a PING after 1 s without any message, answered within
    ///   1 s, no miss tolerated: a sentinel that hangs is left within about
    ///   2 s of its last reply.
    /// - **Backoff**: 100 ms, doubling, at most 2 s, no jitter; after 40
    ///   delays in a row without a subscription (about a minute) the watcher
    ///   gives up (with a warning); the client's next connect starts it again.
    /// - **Backoff reset at once**: a subscription that was made, however
    ///   briefly, restarts the sequence from 100 ms and 40 attempts.
    pub fn watch_supervisor(&self) -> SupervisorConfig {
        use relink_core::backoff::{Jitter, Strategy};
        SupervisorConfig::default()
            .connect_timeout(Duration::from_secs(2))
            .heartbeat(HeartbeatConfig {
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                misses_allowed: 0,
            })
            .backoff(
                BackoffPolicy::default()
                    .strategy(Strategy::Exponential { multiplier: 2.0 })
                    .initial_delay(Duration::from_millis(100))
                    .max_delay(Duration::from_secs(2))
                    .jitter(Jitter::None)
                    .max_attempts(std::num::NonZeroU32::new(40))
                    .max_elapsed(None),
            )
            .backoff_reset_after(Duration::ZERO)
    }

    /// Checks the fields; the error names the bad one (`sentinel.service`,
    /// `sentinel.nodes`, `sentinel.nodes[2]`, `sentinel.username`, `sentinel.password`).
    pub fn validate(&self) -> Result<(), Error> {
        if self.service.is_empty() {
            return Err(Error::config(
                "sentinel.service",
                "must not be empty: the name the sentinels monitor the master under \
                 (`sentinel monitor <name> ...`)",
            ));
        }
        if let Some(c) = self.service.chars().find(|c| !matches!(c, '!'..='~')) {
            return Err(Error::config(
                "sentinel.service",
                format!("contains {c:?}; a master name is printable ASCII without spaces"),
            ));
        }
        if self.nodes.is_empty() {
            return Err(Error::config(
                "sentinel.nodes",
                "must list at least one sentinel (`host[:port]`)",
            ));
        }
        if let Some(tls) = &self.tls {
            if !cfg!(feature = "tls-rustls") {
                return Err(Error::config(
                    "sentinel.tls",
                    "needs TLS, and relink was built without TLS support: enable relink's \
                     `tls-rustls` feature",
                ));
            }
            if tls.server_name().is_some() {
                return Err(Error::config(
                    "sentinel.tls.server_name",
                    "is not supported for the sentinels: each is verified against its \
                     address in `sentinel.nodes`",
                ));
            }
            tls.validate_as("sentinel.tls.")?;
        }
        self.connection_infos().map(drop)?;
        if self.username.as_deref() == Some("") {
            return Err(Error::config(
                "sentinel.username",
                "must not be empty; leave it out for the default user",
            ));
        }
        if matches!(&self.password, Some(Secret(p)) if p.is_empty()) {
            return Err(Error::config(
                "sentinel.password",
                "must not be empty; leave it out for no password",
            ));
        }
        Ok(())
    }

    /// What redis-rs needs to reach each sentinel, in order, with the
    /// sentinels' credentials. The error names the first bad node.
    pub fn connection_infos(&self) -> Result<Vec<ConnectionInfo>, Error> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let field = format!("sentinel.nodes[{i}]");
                let mut info = parse_node(node).map_err(|reason| Error::config(&field, reason))?;
                let mut redis = info.redis_settings().clone();
                if let Some(username) = &self.username {
                    redis = redis.set_username(username);
                }
                if let Some(Secret(password)) = &self.password {
                    redis = redis.set_password(password);
                }
                info = info.set_redis_settings(redis);
                #[cfg(feature = "tls-rustls")]
                if let Some(tls) = &self.tls {
                    info = over_tls(info, tls).map_err(|reason| Error::config(&field, reason))?;
                }
                Ok(info)
            })
            .collect()
    }
}

impl fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("service", &self.service)
            .field("nodes", &self.nodes)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("follow_switch_master", &self.follow_switch_master)
            .field("tls", &self.tls)
            .finish()
    }
}

/// `info` (a sentinel's plain TCP address) reached over TLS with `tls`'s
/// CA and client certificate, through redis-rs's own TLS connections.
#[cfg(feature = "tls-rustls")]
fn over_tls(info: ConnectionInfo, tls: &TlsConfig) -> Result<ConnectionInfo, String> {
    let redis::ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
        return Err("a sentinel is reached over TCP".to_owned());
    };
    let addr = redis::ConnectionAddr::TcpTls {
        host,
        port,
        insecure: tls.danger_accept_invalid_certs(),
        tls_params: None,
    };
    let certificates = tls
        .certificates("sentinel.tls.")
        .map_err(|e| e.to_string())?;
    redis::Client::build_with_tls(info.set_addr(addr), certificates)
        .map(|client| client.get_connection_info().clone())
        .map_err(|e| e.to_string())
}

/// A sentinel node, `host[:port]` (IPv6 in brackets), parsed by redis-rs as
/// the URL `redis://host:port`.
fn parse_node(node: &str) -> Result<ConnectionInfo, String> {
    const FORM: &str = "expected `host[:port]`, e.g. `127.0.0.1:26379` or `[::1]:26379`";
    if node.is_empty() || node.contains(['@', '/', '?', '#', ' ']) {
        return Err(format!("{node:?} is not a sentinel address; {FORM}"));
    }
    let Some(mut url) = redis::parse_redis_url(&format!("redis://{node}")) else {
        return Err(format!("{node:?} is not a sentinel address; {FORM}"));
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{node:?} has no host; {FORM}"));
    }
    if url.port().is_none() && url.set_port(Some(SentinelConfig::DEFAULT_PORT)).is_err() {
        return Err(format!("{node:?} is not a sentinel address; {FORM}"));
    }
    url.into_connection_info()
        .map_err(|e| format!("{node:?} is not a sentinel address ({e}); {FORM}"))
}

/// The serde shape of [`SentinelConfig`]: optional fields, so that a missing
/// one is reported with its full name.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSentinel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_password",
        deserialize_with = "de_sentinel_password"
    )]
    password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    follow_switch_master: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<RawTls>,
}

impl TryFrom<RawSentinel> for SentinelConfig {
    type Error = Error;

    fn try_from(raw: RawSentinel) -> Result<SentinelConfig, Error> {
        let service = raw.service.ok_or_else(|| {
            Error::config(
                "sentinel.service",
                "is required: the name the sentinels monitor the master under",
            )
        })?;
        let nodes = raw.nodes.ok_or_else(|| {
            Error::config(
                "sentinel.nodes",
                "is required: the sentinels to ask, as `host[:port]` strings",
            )
        })?;
        let config = SentinelConfig {
            service,
            nodes,
            username: raw.username,
            password: raw.password,
            follow_switch_master: raw.follow_switch_master.unwrap_or(true),
            tls: raw
                .tls
                .map(|tls| tls.into_config("sentinel.tls."))
                .transpose()?,
        };
        config.validate()?;
        Ok(config)
    }
}

impl From<SentinelConfig> for RawSentinel {
    fn from(c: SentinelConfig) -> RawSentinel {
        RawSentinel {
            service: Some(c.service),
            nodes: Some(c.nodes),
            username: c.username,
            password: c.password,
            follow_switch_master: Some(c.follow_switch_master),
            tls: c.tls.map(RawTls::from),
        }
    }
}

// ---- URL handling (parsing is redis-rs's) -------------------------------------

/// Parses `url` with redis-rs; also returns the protocol if the URL names one.
/// The URL schemes relink accepts (`valkey` ones are the same as `redis`).
const SCHEMES: [&str; 6] = ["redis", "rediss", "valkey", "valkeys", "redis+unix", "unix"];

/// What is wrong with a URL that redis-rs would refuse or misread, said in
/// the user's terms (never redis-rs's internal error kinds, never the
/// password).
fn check_url_text(url: &str) -> Result<(), Error> {
    let bad = |reason: String| Err(Error::config("url", reason));
    let Some((scheme, rest)) = url.split_once("://") else {
        // The text is not echoed: it may hold a password.
        return bad(format!("not a URL (no `scheme://`); {URL_FORMS}"));
    };
    if !SCHEMES.iter().any(|s| scheme.eq_ignore_ascii_case(s)) {
        return bad(format!(
            "unknown scheme `{scheme}://`; relink accepts {}",
            SCHEMES.map(|s| format!("`{s}://`")).join(", ")
        ));
    }
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, query.split('#').next().unwrap_or_default()),
        None => (rest, ""),
    };
    for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
        if key == "protocol" && !["2", "3", "resp2", "resp3"].contains(&value) {
            // The value is not echoed: it may be a misplaced password.
            return bad(
                "the `protocol` in the query is unknown; use `protocol=resp2` or \
                 `protocol=resp3`"
                    .to_owned(),
            );
        }
    }
    if scheme.eq_ignore_ascii_case("redis+unix") || scheme.eq_ignore_ascii_case("unix") {
        if !before_query.starts_with('/') || before_query.trim_end_matches('/').is_empty() {
            return bad(format!(
                "a Unix socket URL needs the socket's path and no host:                  `{scheme}:///path/to/redis.sock`"
            ));
        }
        let db = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find_map(|(k, v)| (k == "db").then_some(v));
        return db.map_or(Ok(()), check_database);
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let bytes = userinfo.as_bytes();
        let bad_escape = bytes.iter().enumerate().any(|(i, b)| {
            *b == b'%'
                && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        });
        if bad_escape {
            return bad(
                "the user or password has a `%` that is not a percent-escape (`%` and two \
                 hex digits); write a literal `%` as `%25`"
                    .to_owned(),
            );
        }
    }
    // A port: what follows the last `:` outside an IPv6 literal.
    let (host, port) = match hostport.rsplit_once(']') {
        Some((_, after)) => (hostport, after.strip_prefix(':')),
        None => match hostport.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        },
    };
    if host.is_empty() {
        return bad(format!("has no host; {URL_FORMS}"));
    }
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        match port.parse::<u32>() {
            Ok(0) => return bad("port 0 is not a port a server listens on".to_owned()),
            Ok(n) if n > 65_535 => {
                return bad(format!("port {n} is out of range (1 to 65535)"));
            }
            Ok(_) => {}
            Err(_) => return bad(format!("port `{port}` is not a number")),
        }
    }
    let db = path
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .trim_start_matches('/');
    if db.is_empty() {
        return Ok(());
    }
    check_database(db)
}

/// A database number from a URL (its path, or a Unix URL's `db=`).
fn check_database(db: &str) -> Result<(), Error> {
    let reason = match db.parse::<i64>() {
        Ok(n) if n < 0 => format!("database {n} is negative; databases are numbered from 0"),
        Ok(n) if u32::try_from(n).is_err() => format!("database {n} is out of range"),
        Ok(_) => return Ok(()),
        Err(_) => format!(
            "database `{}` is not a number (`redis://host:6379/2` selects database 2)",
            shown(db)
        ),
    };
    Err(Error::config("url", reason))
}

/// A piece of a URL for an error message: at most 40 characters.
fn shown(text: &str) -> String {
    text.chars().take(40).collect()
}

fn parse_url(url: &str) -> Result<(ConnectionInfo, Option<Protocol>), Error> {
    check_url_text(url)?;
    let Some(parsed) = redis::parse_redis_url(url) else {
        return Err(Error::config(
            "url",
            format!("not a valid Redis URL; {URL_FORMS}"),
        ));
    };
    if matches!(parsed.scheme(), "rediss" | "valkeys") && !cfg!(feature = "tls-rustls") {
        return Err(Error::TlsUnavailable {
            scheme: parsed.scheme().to_owned(),
        });
    }
    let names_protocol = parsed.query_pairs().any(|(k, _)| k == "protocol");
    // redis-rs reports its errors without the URL, but the password must not
    // leak even if that changes.
    let secrets: Vec<String> = parsed
        .password()
        .map(str::to_owned)
        .into_iter()
        .chain(
            parsed
                .query_pairs()
                .filter(|(k, _)| k == "pass")
                .map(|(_, v)| v.into_owned()),
        )
        .filter(|s| !s.is_empty())
        .collect();
    let target = parsed
        .into_connection_info()
        .map_err(|e| Error::config("url", scrub(redis_reason(&e), &secrets)))?;
    if let redis::ConnectionAddr::Tcp(host, _) | redis::ConnectionAddr::TcpTls { host, .. } =
        target.addr()
    {
        if host.is_empty() {
            return Err(Error::config("url", format!("has no host; {URL_FORMS}")));
        }
    }
    let protocol = names_protocol.then(|| match target.redis_settings().protocol() {
        ProtocolVersion::RESP2 => Protocol::Resp2,
        _ => Protocol::Resp3,
    });
    Ok((target, protocol))
}

/// redis-rs's text for a URL it refused, without its internal error kind
/// (`Missing hostname - InvalidClientConfig` is `Missing hostname`).
fn redis_reason(e: &redis::RedisError) -> String {
    e.to_string().replace(&format!(" - {:?}", e.kind()), "")
}

fn scrub(mut text: String, secrets: &[String]) -> String {
    for secret in secrets {
        text = text.replace(secret.as_str(), REDACTED);
    }
    text
}

/// `url` with its password (userinfo, or a Unix URL's `pass=` query pair)
/// replaced by `replacement`, or removed when that is `None`. A URL without
/// a password comes back as it was.
fn rewrite_password(url: &str, replacement: Option<&str>) -> String {
    let Some(mut parsed) = redis::parse_redis_url(url) else {
        // Unreachable for a `Config`'s URL, which was parsed when it was made.
        return String::from("<invalid url>");
    };
    let mut changed = false;
    if parsed.password().is_some() {
        // Fails only for URLs without a host, which have no userinfo either.
        let _ = parsed.set_password(replacement);
        changed = true;
    }
    if parsed.query_pairs().any(|(k, _)| k == "pass") {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .filter_map(|(k, v)| match (&*k, replacement) {
                ("pass", None) => None,
                ("pass", Some(r)) => Some((k.into_owned(), r.to_owned())),
                _ => Some((k.into_owned(), v.into_owned())),
            })
            .collect();
        if pairs.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        changed = true;
    }
    if changed {
        parsed.to_string()
    } else {
        url.to_owned()
    }
}

// ---- checks -----------------------------------------------------------------------

/// Redis accepts client names of printable ASCII without spaces.
fn check_client_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::config(
            "client_name",
            "must not be empty; leave it out for no name",
        ));
    }
    if let Some(c) = name.chars().find(|c| !matches!(c, '!'..='~')) {
        return Err(Error::config(
            "client_name",
            format!(
                "contains {c:?}; Redis client names are printable ASCII without spaces or newlines"
            ),
        ));
    }
    Ok(())
}

/// A timeout-like duration: at least 1 ms, at most [`MAX_DURATION`].
fn check_duration(field: &str, d: Duration) -> Result<(), Error> {
    if d < Duration::from_millis(1) {
        return Err(Error::config(
            field,
            format!("must be at least 1ms, got {}", HumanDuration(d)),
        ));
    }
    if d > MAX_DURATION {
        return Err(too_long(field));
    }
    Ok(())
}

fn too_long(field: &str) -> Error {
    Error::config(
        field,
        format!("must be at most {}", HumanDuration(MAX_DURATION)),
    )
}

/// A core error about a nested field, renamed to its full path.
fn prefixed(prefix: &str, e: ConfigError) -> Error {
    match e {
        ConfigError::Invalid { field, reason } => Error::config(format!("{prefix}{field}"), reason),
        other => Error::config(prefix.trim_end_matches('.'), other.to_string()),
    }
}

// ---- serde ------------------------------------------------------------------------

/// The serde shape of [`Config`]: every field optional but `url`; a missing
/// field takes the default. Plain values first, tables last (TOML's order).
/// A `ClusterConfig`'s `settings` take the same shape without `url`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_password",
        deserialize_with = "de_password"
    )]
    password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    database: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protocol: Option<Protocol>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "duration::human_opt::serialize",
        deserialize_with = "de_connect_timeout"
    )]
    connect_timeout: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "duration::human_opt::serialize",
        deserialize_with = "de_backoff_reset_after"
    )]
    backoff_reset_after: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "duration::human_opt::serialize",
        deserialize_with = "de_response_timeout"
    )]
    response_timeout: Option<Duration>,
    /// `Some(None)`: written `false` (or JSON `null`), keepalive off.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_optional_duration",
        deserialize_with = "de_keepalive"
    )]
    tcp_keepalive: Option<Option<Duration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tcp_nodelay: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subscription_buffer: Option<usize>,
    /// `Some(None)`: written `false` (or JSON `null`), no total bound.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_optional_duration",
        deserialize_with = "de_deadline"
    )]
    deadline: Option<Option<Duration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    heartbeat: Option<RawHeartbeat>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "de_backoff"
    )]
    backoff: Option<BackoffPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outage: Option<OutagePolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exclusive: Option<ExclusiveConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sentinel: Option<SentinelConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<TlsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    durable: Option<Durability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache: Option<CacheConfig>,
}

/// [`HeartbeatConfig`] with errors that name `heartbeat.*`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "duration::human_opt::serialize",
        deserialize_with = "de_heartbeat_interval"
    )]
    interval: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "duration::human_opt::serialize",
        deserialize_with = "de_heartbeat_timeout"
    )]
    timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    misses_allowed: Option<u32>,
}

impl TryFrom<RawConfig> for Config {
    type Error = Error;

    fn try_from(raw: RawConfig) -> Result<Config, Error> {
        if raw.url.is_empty() {
            return Err(Error::config(
                "url",
                "missing; e.g. `url = \"redis://127.0.0.1:6379\"`",
            ));
        }
        let mut config = Config::new(&raw.url)?;
        config.username = raw.username;
        config.password = raw.password;
        config.database = raw.database;
        config.client_name = raw.client_name;
        if let Some(protocol) = raw.protocol {
            config.protocol = protocol;
        }
        if let Some(backoff) = raw.backoff {
            config = config.with_backoff(backoff);
        }
        if let Some(hb) = raw.heartbeat {
            let default = HeartbeatConfig::default();
            config = config.with_heartbeat(HeartbeatConfig {
                interval: hb.interval.unwrap_or(default.interval),
                timeout: hb.timeout.unwrap_or(default.timeout),
                misses_allowed: hb.misses_allowed.unwrap_or(default.misses_allowed),
            });
        }
        if let Some(t) = raw.connect_timeout {
            config = config.with_connect_timeout(t);
        }
        if let Some(t) = raw.backoff_reset_after {
            config = config.with_backoff_reset_after(t);
        }
        if let Some(t) = raw.response_timeout {
            config.response_timeout = t;
        }
        if let Some(outage) = raw.outage {
            config.outage = outage;
        }
        if let Some(exclusive) = raw.exclusive {
            config.exclusive = exclusive;
        }
        if let Some(retry) = raw.retry {
            config.retry = retry;
        }
        if let Some(keepalive) = raw.tcp_keepalive {
            config.tcp_keepalive = keepalive;
        }
        if let Some(nodelay) = raw.tcp_nodelay {
            config.tcp_nodelay = Some(nodelay);
        }
        if let Some(items) = raw.subscription_buffer {
            config.subscription_buffer = items;
        }
        if let Some(deadline) = raw.deadline {
            config.deadline = deadline;
        }
        config.seed = raw.seed;
        config.sentinel = raw.sentinel;
        config.tls = raw.tls;
        config.durable = raw.durable;
        config.cache = raw.cache;
        config.build()
    }
}

impl From<Config> for RawConfig {
    /// Writes every setting; a password in the URL moves to `password`.
    fn from(c: Config) -> RawConfig {
        let url_password = c
            .target
            .redis_settings()
            .password()
            .map(|p| Secret(p.to_owned()));
        let hb = c.supervisor.heartbeat;
        RawConfig {
            url: rewrite_password(&c.url, None),
            username: c.username,
            password: c.password.or(url_password),
            database: c.database,
            client_name: c.client_name,
            protocol: Some(c.protocol),
            connect_timeout: Some(c.supervisor.connect_timeout),
            backoff_reset_after: Some(c.supervisor.backoff_reset_after),
            response_timeout: Some(c.response_timeout),
            tcp_keepalive: Some(c.tcp_keepalive),
            tcp_nodelay: c.tcp_nodelay,
            subscription_buffer: Some(c.subscription_buffer),
            deadline: Some(c.deadline),
            seed: c.seed,
            heartbeat: Some(RawHeartbeat {
                interval: Some(hb.interval),
                timeout: Some(hb.timeout),
                misses_allowed: Some(hb.misses_allowed),
            }),
            backoff: Some(c.supervisor.backoff),
            outage: Some(c.outage),
            retry: Some(c.retry),
            exclusive: Some(c.exclusive),
            sentinel: c.sentinel,
            tls: c.tls,
            durable: c.durable,
            cache: c.cache,
        }
    }
}

impl Serialize for Config {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawConfig::from(self.clone()).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Config, D::Error> {
        let raw = RawConfig::deserialize(deserializer)?;
        Config::try_from(raw).map_err(de::Error::custom)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OutageKind {
    FailFast,
    Queue,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutage {
    #[serde(default = "queue_kind")]
    policy: OutageKind,
    /// Signed, so that `-1` gets a message naming the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capacity: Option<i64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "duration::human_opt::serialize",
        deserialize_with = "de_outage_max_wait"
    )]
    max_wait: Option<Duration>,
}

fn queue_kind() -> OutageKind {
    OutageKind::Queue
}

impl TryFrom<RawOutage> for OutagePolicy {
    type Error = Error;

    fn try_from(raw: RawOutage) -> Result<OutagePolicy, Error> {
        let policy = match raw.policy {
            OutageKind::FailFast => {
                let field = match (raw.capacity, raw.max_wait) {
                    (Some(_), _) => Some("outage.capacity"),
                    (None, Some(_)) => Some("outage.max_wait"),
                    (None, None) => None,
                };
                if let Some(field) = field {
                    return Err(Error::config(field, "applies only to policy \"queue\""));
                }
                OutagePolicy::FailFast
            }
            OutageKind::Queue => OutagePolicy::Queue {
                capacity: match raw.capacity {
                    None => OutagePolicy::DEFAULT_CAPACITY,
                    Some(n) => usize::try_from(n).map_err(|_| {
                        Error::config("outage.capacity", format!("must be at least 1, got {n}"))
                    })?,
                },
                max_wait: raw.max_wait.unwrap_or(OutagePolicy::DEFAULT_MAX_WAIT),
            },
        };
        policy.validate()?;
        Ok(policy)
    }
}

impl From<OutagePolicy> for RawOutage {
    fn from(p: OutagePolicy) -> RawOutage {
        match p {
            OutagePolicy::FailFast => RawOutage {
                policy: OutageKind::FailFast,
                capacity: None,
                max_wait: None,
            },
            OutagePolicy::Queue { capacity, max_wait } => RawOutage {
                policy: OutageKind::Queue,
                capacity: Some(i64::try_from(capacity).unwrap_or(i64::MAX)),
                max_wait: Some(max_wait),
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    /// Signed, so that `-1` gets a message naming the field.
    #[serde(default)]
    max_retries: Option<i64>,
    #[serde(default)]
    budget: Option<RetryBudgetConfig>,
}

impl TryFrom<RawRetry> for RetryPolicy {
    type Error = Error;

    fn try_from(raw: RawRetry) -> Result<RetryPolicy, Error> {
        let max_retries = match raw.max_retries {
            None => RetryPolicy::DEFAULT_MAX_RETRIES,
            Some(n) => u32::try_from(n).map_err(|_| {
                Error::config(
                    "retry.max_retries",
                    format!(
                        "must be between 0 and {}, got {n}",
                        RetryPolicy::MAX_RETRIES
                    ),
                )
            })?,
        };
        let policy = RetryPolicy {
            max_retries,
            budget: raw.budget.unwrap_or_default(),
        };
        policy.validate()?;
        Ok(policy)
    }
}

/// Reads a duration string; errors name `0` (the field's full path).
struct DurationField(&'static str);

impl Visitor<'_> for DurationField {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a duration such as \"250ms\", \"1.5s\" or \"1h30m\" for `{}`",
            self.0
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        duration::parse(v).map_err(|e| {
            E::custom(format_args!(
                "invalid `{}`: {v:?} is not a duration: {e}",
                self.0
            ))
        })
    }
}

macro_rules! duration_fields {
    ($($name:ident => $field:literal),* $(,)?) => {$(
        fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            d.deserialize_str(DurationField($field)).map(Some)
        }
    )*};
}

duration_fields! {
    de_connect_timeout => "connect_timeout",
    de_backoff_reset_after => "backoff_reset_after",
    de_response_timeout => "response_timeout",
    de_heartbeat_interval => "heartbeat.interval",
    de_heartbeat_timeout => "heartbeat.timeout",
    de_outage_max_wait => "outage.max_wait",
}

/// A seed for a jitter, from the OS-seeded hasher keys std already has (no
/// extra dependency for a few random bits).
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::Instant::now().elapsed().as_nanos());
    h.finish()
}

/// A duration that can be switched off (`tcp_keepalive`, `deadline`): a
/// duration string, or `false` / `null` for off; `0` names the field and
/// `1` gives an example.
struct OptionalDurationField(&'static str, &'static str);

impl<'de> Visitor<'de> for OptionalDurationField {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a duration such as \"{}\", or false to disable, for `{}`",
            self.1, self.0
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        DurationField(self.0).visit_str(v).map(Some)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        if v {
            Err(E::custom(format!(
                "invalid `{}`: `true` is not a duration; write one such as \"{}\" \
                 (or leave the field out for the default)",
                self.0, self.1
            )))
        } else {
            Ok(None)
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn de_keepalive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Duration>>, D::Error> {
    d.deserialize_any(OptionalDurationField("tcp_keepalive", "30s"))
        .map(Some)
}

fn de_deadline<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Duration>>, D::Error> {
    d.deserialize_any(OptionalDurationField("deadline", "10s"))
        .map(Some)
}

/// Writes a duration that can be off: the duration, or `false`.
fn ser_optional_duration<S: Serializer>(
    v: &Option<Option<Duration>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(Some(d)) => s.collect_str(&HumanDuration(*d)),
        _ => s.serialize_bool(false),
    }
}

/// Reads a password without ever quoting it in an error; `0` names the field.
struct PasswordField(&'static str);

impl Visitor<'_> for PasswordField {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string for `{}`", self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
        Ok(Secret(v))
    }

    // serde's default messages quote the value; a mistyped password is still
    // a password.
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
        Err(not_a_string(self.0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
        Err(not_a_string(self.0))
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Secret, E> {
        Err(not_a_string(self.0))
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Secret, E> {
        Err(not_a_string(self.0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
        Err(not_a_string(self.0))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
        Err(not_a_string(self.0))
    }
    fn visit_char<E: de::Error>(self, _: char) -> Result<Secret, E> {
        Err(not_a_string(self.0))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Secret, E> {
        Err(not_a_string(self.0))
    }
}

fn not_a_string<E: de::Error>(field: &str) -> E {
    E::custom(format_args!(
        "invalid `{field}`: must be a string (value not shown)"
    ))
}

fn de_password<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    d.deserialize_any(PasswordField("password")).map(Some)
}

fn de_sentinel_password<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    d.deserialize_any(PasswordField("sentinel.password"))
        .map(Some)
}

/// Reads a secret (an inline key) without ever quoting it; `field` names it.
pub(crate) fn de_secret<'de, D: Deserializer<'de>>(
    d: D,
    field: &'static str,
) -> Result<Option<Secret>, D::Error> {
    d.deserialize_any(PasswordField(field)).map(Some)
}

pub(crate) fn ser_password<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(Secret(p)) => s.serialize_str(p),
        None => s.serialize_none(),
    }
}

/// [`BackoffPolicy`]'s own form; its errors are prefixed with `backoff`.
fn de_backoff<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BackoffPolicy>, D::Error> {
    BackoffPolicy::deserialize(d)
        .map(Some)
        .map_err(|e| de::Error::custom(format_args!("in `backoff`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "***");
        assert_eq!(format!("{:?}", Some(Secret("hunter2".into()))), "Some(***)");
    }

    #[test]
    fn rewrite_password_replaces_or_removes_userinfo_and_unix_pass() {
        let url = "redis://user:hunter2@127.0.0.1:6379/1";
        assert_eq!(
            rewrite_password(url, Some(REDACTED)),
            "redis://user:***@127.0.0.1:6379/1"
        );
        assert_eq!(rewrite_password(url, None), "redis://user@127.0.0.1:6379/1");
        let unix = "redis+unix:///tmp/redis.sock?db=2&pass=hunter2";
        assert_eq!(
            rewrite_password(unix, Some(REDACTED)),
            "redis+unix:///tmp/redis.sock?db=2&pass=***"
        );
        assert_eq!(
            rewrite_password(unix, None),
            "redis+unix:///tmp/redis.sock?db=2"
        );
        assert_eq!(
            rewrite_password("unix:///tmp/r.sock?pass=x", None),
            "unix:///tmp/r.sock"
        );
        // Untouched when there is nothing to hide, byte for byte.
        let plain = "redis://127.0.0.1";
        assert_eq!(rewrite_password(plain, Some(REDACTED)), plain);
    }

    #[test]
    fn scrub_hides_every_secret() {
        let text = scrub("bad a1 and b2".into(), &["a1".into(), "b2".into()]);
        assert_eq!(text, "bad *** and ***");
    }

    #[test]
    fn nested_core_errors_get_their_full_path() {
        let e = prefixed(
            "backoff.",
            ConfigError::invalid("max_delay", "must be at least `initial_delay`"),
        );
        assert!(
            matches!(&e, Error::Config { field, .. } if field == "backoff.max_delay"),
            "{e}"
        );
    }

    #[test]
    fn client_names_follow_redis_rules() {
        assert!(check_client_name("billing-worker_1").is_ok());
        for bad in ["", "a b", "a\nb", "caf\u{e9}", "tab\there"] {
            let e = check_client_name(bad).unwrap_err();
            assert!(e.to_string().contains("client_name"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn every_default_spelled_out_is_the_default_config() {
        let text = r#"
            url = "redis://127.0.0.1:6379/0"
            connect_timeout = "2s"
            backoff_reset_after = "10s"
            response_timeout = "3s"
            tcp_keepalive = "30s"
            protocol = "resp3"
            [heartbeat]
            interval = "1s"
            timeout = "1s"
            misses_allowed = 0
            [backoff]
            strategy = "exponential"
            multiplier = 2.0
            initial_delay = "100ms"
            max_delay = "5s"
            jitter = "equal"
            [outage]
            policy = "queue"
            capacity = 1024
            max_wait = "5s"
            [retry]
            max_retries = 3
            [retry.budget]
            max_tokens = 10
            token_ratio = 0.1
        "#;
        let parsed: Config = toml::from_str(text).unwrap();
        assert_eq!(parsed, Config::new("redis://127.0.0.1:6379/0").unwrap());
    }
}
