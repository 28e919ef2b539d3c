//! OpenTelemetry metrics, with the `opentelemetry` feature: what go-redis
//! (`extra/redisotel-native`), redis-py (`redis.observability`) and
//! node-redis record, under OpenTelemetry's database semantic conventions,
//! plus relink's own view of each call (its outcome) and of its connection
//! (retries, state, connect attempts with their cause).
//!
//! | instrument | kind, unit | attributes |
//! | --- | --- | --- |
//! | `db.client.operation.duration` | histogram, `s` | base, `db.operation.name`, `relink.outcome`, `error.type` on failure |
//! | `relink.client.retries` | counter, `{retry}` | base, `db.operation.name` |
//! | `db.client.connection.count` | up-down counter, `{connection}` | base, `db.client.connection.state` (`used`) |
//! | `db.client.connection.pending_requests` | up-down counter, `{request}` | base |
//! | `db.client.connection.create_time` | histogram, `s` | base |
//! | `relink.client.connect_attempts` | counter, `{attempt}` | base, `relink.connect.cause` and `error.type` on failure |
//! | `relink.client.state` | up-down counter, `{client}` | base, `relink.state` |
//! | `relink.client.cache.requests` | observable counter, `{request}` | base, `relink.cache.result` (`hit`, `miss`) |
//! | `relink.client.cache.invalidations` | observable counter, `{key}` | base |
//! | `relink.client.cache.gap_flushes` | observable counter, `{flush}` | base |
//! | `relink.client.cache.evictions` | observable counter, `{entry}` | base |
//! | `relink.client.cache.entries` | observable up-down counter, `{entry}` | base |
//! | `relink.client.cache.size` | observable up-down counter, `By` | base |
//!
//! The base attributes are `db.system.name` (`redis`), `server.address`
//! and `server.port` (from the URL: the host as written, a Unix socket's
//! path with no port; a cluster's first node, a Sentinel's service name)
//! and `db.namespace` (the database index).
//!
//! - `db.client.operation.duration` covers a whole call as the caller saw
//!   it: waiting in the backlog, every attempt and every retry. Its
//!   `db.operation.name` is the command's name in upper case (`GET`), or
//!   `PIPELINE` / `MULTI` for a pipeline / transaction. `relink.outcome` is
//!   `ok`, `rejected` (the server answered with an error), `not_applied`
//!   (certainly not applied: not sent, or refused) or `unknown` (it may
//!   have been applied). `error.type` is relink's failure kind (`command`
//!   for a server's error reply, `timeout`, `closed`, `server_busy:loading`,
//!   ...) or, for a call never sent, why not (`not_connected`,
//!   `misconfigured`, `backlog_full`, `queue_timeout`, `deadline_exceeded`,
//!   `shutdown`, ...).
//! - `db.client.connection.count` counts the connections relink holds: each
//!   client's shared connection (always in use: it is multiplexed), each
//!   exclusive connection, and each cluster node's health probe.
//! - `db.client.connection.pending_requests` is the backlog: calls waiting
//!   for a connection.
//! - `relink.client.connect_attempts` counts every attempt; a failed one
//!   carries its cause as `relink.connect.cause` (`refused`, `timeout`,
//!   `unknown_host`, `tls`, `auth`, `not_redis`, `server_full`,
//!   `server_busy:loading`, ...: [`relink_core::ConnectCause`]) and, as
//!   `error.type`, the failure kind it amounts to. A successful one records
//!   its time (connect, handshake, setup) in `db.client.connection.create_time`.
//! - `relink.client.state` counts clients by connectivity state (`idle`,
//!   `connecting`, `ready`, `transient_failure`); a client that has shut
//!   down is no longer counted. Each exclusive connection and each cluster
//!   node's probe is supervised as a client of its own, and counted (its
//!   connect attempts too) under the address it connects to.
//! - A blocking command (or a lease's call) is recorded once, by the
//!   exclusive connection it ran on.
//! - The `relink.client.cache.*` instruments exist for a client with the
//!   client-side cache on ([`crate::cache`]); they are read from the
//!   cache's own figures ([`crate::cache::CacheStats`]) at each collection.
//!   A read answered from the cache is not an operation: it has no
//!   `db.client.operation.duration` point.
//!
//! The meter is the one given to `Config::with_meter` (or made by
//! `Config::with_meter_provider` with relink's scope), else `relink` (with
//! the crate's version) from the global meter provider
//! as it is when the client is created: install yours with
//! `opentelemetry::global::set_meter_provider` first. The `tracing` events
//! stay as they are.
//!
//! **Recording only**: nothing here decides anything. Without the feature
//! every type here is empty and every call does nothing.

/// `db.client.operation.duration`: each call, start to end, in seconds.
pub const OPERATION_DURATION: &str = "db.client.operation.duration";
/// `relink.client.retries`: retries sent.
pub const RETRIES: &str = "relink.client.retries";
/// `db.client.connection.count`: connections held.
pub const CONNECTION_COUNT: &str = "db.client.connection.count";
/// `db.client.connection.pending_requests`: calls waiting in the backlog.
pub const PENDING_REQUESTS: &str = "db.client.connection.pending_requests";
/// `db.client.connection.create_time`: time to make a connection, in seconds.
pub const CONNECTION_CREATE_TIME: &str = "db.client.connection.create_time";
/// `relink.client.connect_attempts`: connection attempts, failed ones with their cause.
pub const CONNECT_ATTEMPTS: &str = "relink.client.connect_attempts";
/// `relink.client.state`: clients by connectivity state.
pub const CLIENT_STATE: &str = "relink.client.state";
/// `relink.client.cache.requests`: cacheable reads, by `relink.cache.result` (`hit`, `miss`).
pub const CACHE_REQUESTS: &str = "relink.client.cache.requests";
/// `relink.client.cache.invalidations`: keys the server invalidated.
pub const CACHE_INVALIDATIONS: &str = "relink.client.cache.invalidations";
/// `relink.client.cache.gap_flushes`: times the cache was emptied at a connection loss.
pub const CACHE_GAP_FLUSHES: &str = "relink.client.cache.gap_flushes";
/// `relink.client.cache.evictions`: entries dropped to stay within the bounds.
pub const CACHE_EVICTIONS: &str = "relink.client.cache.evictions";
/// `relink.client.cache.entries`: entries held now.
pub const CACHE_ENTRIES: &str = "relink.client.cache.entries";
/// `relink.client.cache.size`: bytes held now.
pub const CACHE_SIZE: &str = "relink.client.cache.size";

#[cfg(feature = "opentelemetry")]
pub(crate) use recording::{scope, Metrics, Open, Queued};
#[cfg(not(feature = "opentelemetry"))]
pub(crate) use silent::{Metrics, Open, Queued};

/// Without the feature: nothing, at no cost.
#[cfg(not(feature = "opentelemetry"))]
mod silent {

    use crate::calls::Request;
    use crate::config::Config;

    #[derive(Debug)]
    pub(crate) struct Metrics;
    /// A call's place in the backlog.
    pub(crate) struct Queued<'a>(std::marker::PhantomData<&'a ()>);
    /// A connection, counted while it lives.
    pub(crate) struct Open;

    impl Metrics {
        #[inline(always)]
        pub(crate) fn new(_config: &Config) -> Metrics {
            Metrics
        }
        // (No call timer: without the feature `Calls::run` is the loop
        // itself, with no wrapper to time it.)
        #[inline(always)]
        pub(crate) fn retried(&self, _request: Request<'_>) {}
        #[inline(always)]
        pub(crate) fn queued(&self) -> Queued<'_> {
            Queued(std::marker::PhantomData)
        }
        #[inline(always)]
        pub(crate) fn open(&self) -> Open {
            Open
        }
        #[inline(always)]
        pub(crate) fn connecting(&self) {}
        #[inline(always)]
        pub(crate) fn connected(&self) {}
        #[inline(always)]
        pub(crate) fn connect_failed(&self, _cause: relink_core::ConnectCause) {}
        #[inline(always)]
        pub(crate) fn state_changed(&self, _from: relink_core::State, _to: relink_core::State) {}
        #[inline(always)]
        pub(crate) fn observe_cache(&self, _cache: std::sync::Weak<crate::cache::ClientCache>) {}
    }
}

#[cfg(feature = "opentelemetry")]
mod recording {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};
    use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value as Attr};
    use redis::{RedisError, Value};
    use relink_core::{ConnectCause, FailureKind, Outcome, State};

    use crate::calls::Request;
    use crate::config::Config;
    use crate::Error;

    /// Histogram bounds for durations in seconds, as the semantic
    /// conventions advise (the SDK's default bounds are for milliseconds).
    const SECONDS_BOUNDS: [f64; 14] = [
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ];

    /// The base attributes: system, address, namespace, and the port (absent
    /// for a Unix socket).
    const BASE: usize = 4;

    /// The meter relink uses when the config names none.
    pub(crate) fn default_meter() -> Meter {
        opentelemetry::global::meter_with_scope(scope())
    }

    /// relink's instrumentation scope: the crate's name and version.
    pub(crate) fn scope() -> InstrumentationScope {
        InstrumentationScope::builder("relink")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build()
    }

    /// The instruments of one client, and the attributes all its
    /// measurements share, made once.
    struct Instruments {
        duration: Histogram<f64>,
        retries: Counter<u64>,
        connections: UpDownCounter<i64>,
        pending: UpDownCounter<i64>,
        create_time: Histogram<f64>,
        connect_attempts: Counter<u64>,
        state: UpDownCounter<i64>,
        base: [KeyValue; BASE],
        /// How many of `base` are in use (3 without a port).
        base_len: usize,
    }

    /// Attributes on the stack: the first `.1` of `.0` are in use.
    struct Attrs<const N: usize>([KeyValue; N], usize);

    impl<const N: usize> Attrs<N> {
        fn get(&self) -> &[KeyValue] {
            &self.0[..self.1]
        }
    }

    impl Instruments {
        fn base(&self) -> &[KeyValue] {
            &self.base[..self.base_len]
        }

        /// The base attributes followed by `extra` (`N` is `BASE + M`; the
        /// slots a missing port leaves are filled, and not in use).
        fn with<const M: usize, const N: usize>(&self, extra: [KeyValue; M]) -> Attrs<N> {
            let mut extra = extra.map(Some);
            let len = self.base_len + M;
            let attrs = std::array::from_fn(|i| {
                if i < self.base_len {
                    self.base[i].clone()
                } else {
                    match extra.get_mut(i - self.base_len).and_then(Option::take) {
                        Some(kv) => kv,
                        None => self.base[0].clone(),
                    }
                }
            });
            Attrs(attrs, len)
        }
    }

    /// A client's recorder.
    pub(crate) struct Metrics {
        inst: Arc<Instruments>,
        meter: Meter,
        /// When the attempt in flight started, in nanoseconds since `epoch`.
        connect_started: AtomicU64,
        epoch: Instant,
    }

    impl std::fmt::Debug for Metrics {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Metrics").finish_non_exhaustive()
        }
    }

    /// A call's start.
    pub(crate) struct Timer(Instant);

    /// A call's place in the backlog: counted while held.
    pub(crate) struct Queued<'a>(&'a Instruments);

    impl Drop for Queued<'_> {
        fn drop(&mut self) {
            self.0.pending.add(-1, self.0.base());
        }
    }

    /// A connection, counted while it lives.
    pub(crate) struct Open(Arc<Instruments>);

    impl Drop for Open {
        fn drop(&mut self) {
            let attrs: Attrs<{ BASE + 1 }> = self.0.with([used()]);
            self.0.connections.add(-1, attrs.get());
        }
    }

    /// A text attribute whose clones share it (an owned one's would allocate).
    fn shared(text: String) -> StringValue {
        StringValue::from(Arc::<str>::from(text))
    }

    fn used() -> KeyValue {
        KeyValue::new("db.client.connection.state", "used")
    }

    impl Metrics {
        pub(crate) fn new(config: &Config) -> Metrics {
            let meter = config.meter().cloned().unwrap_or_else(default_meter);
            let seconds = |name: &'static str, description: &'static str| {
                meter
                    .f64_histogram(name)
                    .with_unit("s")
                    .with_description(description)
                    .with_boundaries(SECONDS_BOUNDS.to_vec())
                    .build()
            };
            let info = config.connection_info();
            let (address, port) = match info.addr() {
                redis::ConnectionAddr::Tcp(host, port)
                | redis::ConnectionAddr::TcpTls { host, port, .. } => {
                    (host.clone(), Some(i64::from(*port)))
                }
                redis::ConnectionAddr::Unix(path) => (path.display().to_string(), None),
                _ => (String::new(), None),
            };
            let system = KeyValue::new("db.system.name", "redis");
            let base = [
                system.clone(),
                KeyValue::new("server.address", shared(address)),
                KeyValue::new("db.namespace", shared(config.database().to_string())),
                port.map_or(system, |p| KeyValue::new("server.port", p)),
            ];
            let inst = Instruments {
                duration: seconds(super::OPERATION_DURATION, "Duration of database client operations"),
                retries: meter
                    .u64_counter(super::RETRIES)
                    .with_unit("{retry}")
                    .with_description("Commands sent again after a failed attempt")
                    .build(),
                connections: meter
                    .i64_up_down_counter(super::CONNECTION_COUNT)
                    .with_unit("{connection}")
                    .with_description("The number of connections that are currently in state described by the state attribute")
                    .build(),
                pending: meter
                    .i64_up_down_counter(super::PENDING_REQUESTS)
                    .with_unit("{request}")
                    .with_description("The number of pending requests waiting for a connection")
                    .build(),
                create_time: seconds(
                    super::CONNECTION_CREATE_TIME,
                    "The time it took to create a new connection",
                ),
                connect_attempts: meter
                    .u64_counter(super::CONNECT_ATTEMPTS)
                    .with_unit("{attempt}")
                    .with_description("Connection attempts; a failed one with its cause")
                    .build(),
                state: meter
                    .i64_up_down_counter(super::CLIENT_STATE)
                    .with_unit("{client}")
                    .with_description("Clients in each connectivity state")
                    .build(),
                base,
                base_len: if port.is_some() { BASE } else { BASE - 1 },
            };
            let metrics = Metrics {
                inst: Arc::new(inst),
                meter: meter.clone(),
                connect_started: AtomicU64::new(0),
                epoch: Instant::now(),
            };
            metrics.count_state(State::Idle, 1);
            metrics
        }

        pub(crate) fn start(&self) -> Timer {
            Timer(Instant::now())
        }

        /// A call ended with `result`.
        pub(crate) fn call_ended(
            &self,
            timer: Timer,
            request: Request<'_>,
            result: &Result<Value, RedisError>,
        ) {
            let seconds = timer.0.elapsed().as_secs_f64();
            let name = KeyValue::new("db.operation.name", operation_name(request));
            let (outcome, error) = match result {
                Ok(Value::ServerError(_)) => ("rejected", Some(FailureKind::Command.as_str())),
                Ok(_) => ("ok", None),
                Err(e) => (outcome_name(Error::outcome_of(e)), Some(error_type(e))),
            };
            let outcome = KeyValue::new("relink.outcome", outcome);
            let inst = &*self.inst;
            match error {
                None => {
                    let attrs: Attrs<{ BASE + 2 }> = inst.with([name, outcome]);
                    inst.duration.record(seconds, attrs.get());
                }
                Some(error) => {
                    let error = KeyValue::new("error.type", error);
                    let attrs: Attrs<{ BASE + 3 }> = inst.with([name, outcome, error]);
                    inst.duration.record(seconds, attrs.get());
                }
            }
        }

        /// A retry of `request` is about to be sent.
        pub(crate) fn retried(&self, request: Request<'_>) {
            let name = KeyValue::new("db.operation.name", operation_name(request));
            let attrs: Attrs<{ BASE + 1 }> = self.inst.with([name]);
            self.inst.retries.add(1, attrs.get());
        }

        /// A call takes a place in the backlog.
        pub(crate) fn queued(&self) -> Queued<'_> {
            self.inst.pending.add(1, self.inst.base());
            Queued(&self.inst)
        }

        /// A connection is up.
        pub(crate) fn open(&self) -> Open {
            let attrs: Attrs<{ BASE + 1 }> = self.inst.with([used()]);
            self.inst.connections.add(1, attrs.get());
            Open(Arc::clone(&self.inst))
        }

        /// A connection attempt starts.
        pub(crate) fn connecting(&self) {
            let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.connect_started.store(nanos, Ordering::Relaxed);
        }

        /// The attempt in flight made a connection.
        pub(crate) fn connected(&self) {
            let started = self.connect_started.load(Ordering::Relaxed);
            let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            let seconds = now.saturating_sub(started) as f64 / 1e9;
            self.inst.create_time.record(seconds, self.inst.base());
            self.inst.connect_attempts.add(1, self.inst.base());
        }

        /// The attempt in flight failed: `cause`.
        pub(crate) fn connect_failed(&self, cause: ConnectCause) {
            let attrs: Attrs<{ BASE + 2 }> = self.inst.with([
                KeyValue::new("relink.connect.cause", cause.as_str()),
                KeyValue::new("error.type", cause.kind().as_str()),
            ]);
            self.inst.connect_attempts.add(1, attrs.get());
        }

        /// The client went from `from` to `to`.
        /// Registers the cache's instruments, read from `cache` at each
        /// collection (nothing once the client is gone).
        pub(crate) fn observe_cache(&self, cache: std::sync::Weak<crate::cache::ClientCache>) {
            use crate::cache::CacheStats;
            let base: Arc<[KeyValue]> = self.inst.base().into();
            let counter = |name: &'static str,
                           unit: &'static str,
                           description: &'static str,
                           pick: fn(&CacheStats) -> u64| {
                let (cache, base) = (cache.clone(), Arc::clone(&base));
                self.meter
                    .u64_observable_counter(name)
                    .with_unit(unit)
                    .with_description(description)
                    .with_callback(move |o| {
                        if let Some(cache) = cache.upgrade() {
                            o.observe(pick(&cache.stats()), &base);
                        }
                    })
                    .build();
            };
            counter(
                super::CACHE_INVALIDATIONS,
                "{key}",
                "Keys the server invalidated",
                |s| s.invalidations,
            );
            counter(
                super::CACHE_GAP_FLUSHES,
                "{flush}",
                "Times the cache was emptied because its connection was lost",
                |s| s.gap_flushes,
            );
            counter(
                super::CACHE_EVICTIONS,
                "{entry}",
                "Entries dropped to stay within the bounds",
                |s| s.evictions,
            );
            let gauge = |name: &'static str,
                         unit: &'static str,
                         description: &'static str,
                         pick: fn(&CacheStats) -> u64| {
                let (cache, base) = (cache.clone(), Arc::clone(&base));
                self.meter
                    .i64_observable_up_down_counter(name)
                    .with_unit(unit)
                    .with_description(description)
                    .with_callback(move |o| {
                        if let Some(cache) = cache.upgrade() {
                            let value = i64::try_from(pick(&cache.stats())).unwrap_or(i64::MAX);
                            o.observe(value, &base);
                        }
                    })
                    .build();
            };
            gauge(super::CACHE_ENTRIES, "{entry}", "Entries held", |s| {
                s.entries
            });
            gauge(super::CACHE_SIZE, "By", "Bytes held", |s| s.bytes);
            let with_result = |result: &'static str| -> Vec<KeyValue> {
                let mut attrs = base.to_vec();
                attrs.push(KeyValue::new("relink.cache.result", result));
                attrs
            };
            let (hit, miss) = (with_result("hit"), with_result("miss"));
            self.meter
                .u64_observable_counter(super::CACHE_REQUESTS)
                .with_unit("{request}")
                .with_description("Cacheable reads, answered from the cache (hit) or not (miss)")
                .with_callback(move |o| {
                    if let Some(cache) = cache.upgrade() {
                        let stats = cache.stats();
                        o.observe(stats.hits, &hit);
                        o.observe(stats.misses, &miss);
                    }
                })
                .build();
        }

        pub(crate) fn state_changed(&self, from: State, to: State) {
            self.count_state(from, -1);
            self.count_state(to, 1);
        }

        /// A client in Shutdown is no longer counted: it will not leave it.
        fn count_state(&self, state: State, delta: i64) {
            if state == State::Shutdown {
                return;
            }
            let attrs: Attrs<{ BASE + 1 }> = self
                .inst
                .with([KeyValue::new("relink.state", state.as_str())]);
            self.inst.state.add(delta, attrs.get());
        }
    }

    fn outcome_name(outcome: Outcome) -> &'static str {
        match outcome {
            Outcome::NotApplied => "not_applied",
            Outcome::Unknown => "unknown",
            Outcome::Rejected => "rejected",
        }
    }

    /// `error.type` of a failed call: relink's failure kind, or why the
    /// call was never sent.
    fn error_type(err: &RedisError) -> &'static str {
        match Error::from_redis(err) {
            Some(Error::NotConnected { .. }) => "not_connected",
            Some(Error::Misconfigured { .. }) => "misconfigured",
            Some(Error::BacklogFull { .. }) => "backlog_full",
            Some(Error::QueueTimeout { .. }) => "queue_timeout",
            Some(Error::DeadlineExceeded { .. }) => "deadline_exceeded",
            Some(Error::InvalidCommand { .. }) => "invalid_command",
            Some(Error::NoExclusiveConnection { .. }) => "no_exclusive_connection",
            Some(Error::ConnectionReplaced) => "connection_replaced",
            Some(Error::Shutdown) => "shutdown",
            _ => crate::classify::failure_kind(err).as_str(),
        }
    }

    /// `db.operation.name`: the command's name in upper case, `MULTI` for a
    /// transaction, `PIPELINE` for any other pipeline.
    fn operation_name(request: Request<'_>) -> Attr {
        match request {
            Request::Cmd(cmd) => match crate::calls::args(cmd).next() {
                Some(name) => command_name(name),
                None => Attr::from(""),
            },
            Request::Pipeline { pipeline, .. } if pipeline.is_transaction() => Attr::from("MULTI"),
            Request::Pipeline { .. } => Attr::from("PIPELINE"),
        }
    }

    /// A known command's name without allocating; any other upper-cased.
    fn command_name(name: &[u8]) -> Attr {
        let mut upper = [0u8; 24];
        if let Some(buf) = upper.get_mut(..name.len()) {
            buf.copy_from_slice(name);
            buf.make_ascii_uppercase();
            if let Ok(i) = super::COMMANDS.binary_search_by(|c| c.as_bytes().cmp(buf)) {
                return Attr::from(super::COMMANDS[i]);
            }
        }
        Attr::from(String::from_utf8_lossy(name).to_ascii_uppercase())
    }
}

/// Redis's commands, upper case and sorted: their names are recorded
/// without allocating.
#[cfg(feature = "opentelemetry")]
const COMMANDS: &[&str] = &[
    "ACL",
    "APPEND",
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "BITCOUNT",
    "BITFIELD",
    "BITFIELD_RO",
    "BITOP",
    "BITPOS",
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "COPY",
    "DBSIZE",
    "DECR",
    "DECRBY",
    "DEL",
    "DISCARD",
    "DUMP",
    "ECHO",
    "EVAL",
    "EVALSHA",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXEC",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "FCALL",
    "FCALL_RO",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HELLO",
    "HEXISTS",
    "HEXPIRE",
    "HGET",
    "HGETALL",
    "HGETDEL",
    "HGETEX",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HPERSIST",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETEX",
    "HSETNX",
    "HSTRLEN",
    "HTTL",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LATENCY",
    "LCS",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LMPOP",
    "LOLWUT",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MEMORY",
    "MGET",
    "MIGRATE",
    "MONITOR",
    "MOVE",
    "MSET",
    "MSETNX",
    "MULTI",
    "OBJECT",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PEXPIRETIME",
    "PFADD",
    "PFCOUNT",
    "PFMERGE",
    "PING",
    "PSETEX",
    "PSUBSCRIBE",
    "PTTL",
    "PUBLISH",
    "PUBSUB",
    "PUNSUBSCRIBE",
    "QUIT",
    "RANDOMKEY",
    "READWRITE",
    "RENAME",
    "RENAMENX",
    "REPLICAOF",
    "RESET",
    "RESTORE",
    "ROLE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SAVE",
    "SCAN",
    "SCARD",
    "SCRIPT",
    "SDIFF",
    "SDIFFSTORE",
    "SELECT",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SHUTDOWN",
    "SINTER",
    "SINTERCARD",
    "SINTERSTORE",
    "SISMEMBER",
    "SLOWLOG",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SORT_RO",
    "SPOP",
    "SPUBLISH",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "SSUBSCRIBE",
    "STRLEN",
    "SUBSCRIBE",
    "SUNION",
    "SUNIONSTORE",
    "SUNSUBSCRIBE",
    "SWAPDB",
    "TIME",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "UNSUBSCRIBE",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
    "WATCH",
    "XACK",
    "XADD",
    "XAUTOCLAIM",
    "XCLAIM",
    "XDEL",
    "XGROUP",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREADGROUP",
    "XREVRANGE",
    "XSETID",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZDIFFSTORE",
    "ZINCRBY",
    "ZINTER",
    "ZINTERCARD",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMPOP",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
    "ZUNIONSTORE",
];

#[cfg(all(test, feature = "opentelemetry"))]
mod tests {
    #[test]
    fn commands_are_sorted_and_upper_case() {
        for pair in super::COMMANDS.windows(2) {
            assert!(pair[0] < pair[1], "{} before {}", pair[0], pair[1]);
        }
        for c in super::COMMANDS {
            assert_eq!(*c, c.to_ascii_uppercase());
            assert!(c.len() <= 24, "{c} is longer than the name buffer");
        }
    }
}
