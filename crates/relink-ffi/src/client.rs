//! The blocking client: `relink::Client` on a tokio runtime of its own,
//! behind synchronous C calls.
//!
//! Each `relink_client` owns a multi-thread runtime with one worker thread
//! ("relink"), where the client's background task and the state-change
//! callback run. A command is `block_on` on the calling thread, so many C
//! threads may send commands through one client at once. Knows nothing of
//! reconnecting or retrying: `relink::Client` decides all that.

use std::cell::Cell;
use std::ffi::{c_char, c_void};
use std::fmt;
use std::mem::size_of;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionLike;
use redis::RedisError;
use relink::cache::{CacheConfig, CacheState, CacheStats, TrackingMode};
use relink::config::{OutagePolicy, RetryPolicy};
use relink::core::supervisor::HeartbeatConfig;
use relink::{Config, Event, Outcome, State};

use crate::abi::{self, versioned, write_defaults};
use crate::boundary::*;
use crate::policy::relink_backoff_policy;
use crate::reply::relink_reply;

/// While there is no connection, a command waits in a bounded backlog
/// (`queue_capacity` commands, `queue_max_wait_ms` each). The default.
pub const RELINK_OUTAGE_QUEUE: u32 = 0;
/// While there is no connection, a command fails at once with
/// `RELINK_NOT_CONNECTED` (not sent).
pub const RELINK_OUTAGE_FAIL_FAST: u32 = 1;

/// `relink_options.cache`: no client-side cache (the default).
pub const RELINK_CACHE_OFF: u32 = 0;
/// `relink_options.cache`: client-side caching of the keys read
/// (`CLIENT TRACKING ON`): the server tells the client when a key it read
/// changes.
pub const RELINK_CACHE_ON: u32 = 1;
/// `relink_options.cache`: client-side caching in broadcast mode
/// (`CLIENT TRACKING ON BCAST`): the server tells every change of a key
/// under `cache_prefixes` (every key without prefixes), and only those keys
/// are cached.
pub const RELINK_CACHE_BROADCAST: u32 = 2;

/// `relink_cache_stats.state`: the client has no cache.
pub const RELINK_CACHE_STATE_OFF: u32 = 0;
/// `relink_cache_stats.state`: no connection with tracking on; every read
/// goes to the server and nothing is kept.
pub const RELINK_CACHE_STATE_SUSPENDED: u32 = 1;
/// `relink_cache_stats.state`: the connection carrying the invalidations
/// is up; reads are answered from the cache when they can be.
pub const RELINK_CACHE_STATE_SERVING: u32 = 2;

/// Not started.
pub const RELINK_STATE_IDLE: u32 = 0;
/// A connection attempt is in flight.
pub const RELINK_STATE_CONNECTING: u32 = 1;
/// Connected, and the heartbeat says the server is alive.
pub const RELINK_STATE_READY: u32 = 2;
/// No connection; the next attempt is scheduled.
pub const RELINK_STATE_TRANSIENT_FAILURE: u32 = 3;
/// Stopped for good (freed, or the backoff policy gave up).
pub const RELINK_STATE_SHUTDOWN: u32 = 4;

/// How a client keeps its connection alive. Fill it with
/// `relink_options_default(&options, sizeof options)`, then change fields
/// (never `struct_size`); checked by
/// `relink_client_connect` (a bad enumeration value is
/// `RELINK_INVALID_ARGUMENT`, a bad value `RELINK_INVALID_CONFIG` naming the
/// field).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct relink_options {
    /// `sizeof(relink_options)` as the program's header defines it, set by
    /// `relink_options_default`: fields added later at the end keep their
    /// defaults for a program built with an older header (see the ABI rule
    /// at the top of this header).
    pub struct_size: usize,
    /// Delays between reconnect attempts.
    pub backoff: relink_backoff_policy,
    /// Silence after which a heartbeat PING is sent (default 1000).
    pub heartbeat_interval_ms: u64,
    /// How long a PING may go unanswered before it counts as a miss (default 1000).
    pub heartbeat_timeout_ms: u64,
    /// Misses in a row tolerated before the connection is declared dead (default 0).
    pub heartbeat_misses_allowed: u32,
    /// How long one connection attempt with its handshake may take (default 2000).
    pub connect_timeout_ms: u64,
    /// How long a connection must stay up for its loss to restart the
    /// backoff from the initial delay (default 10000).
    pub backoff_reset_after_ms: u64,
    /// The longest one attempt waits for its reply (default 3000).
    pub response_timeout_ms: u64,
    /// The longest a whole call may take, queueing, attempts and retries
    /// included (default 10000); 0: no total bound. A call that runs out of
    /// time fails with `RELINK_DEADLINE_EXCEEDED`.
    pub deadline_ms: u64,
    /// `RELINK_OUTAGE_QUEUE` (default) or `RELINK_OUTAGE_FAIL_FAST`.
    pub outage_policy: u32,
    /// Queue only: commands that may wait at once (default 1024).
    pub queue_capacity: usize,
    /// Queue only: how long a command may wait for a connection (default 5000).
    pub queue_max_wait_ms: u64,
    /// Retries of a command that is safe to repeat (default 3).
    pub max_retries: u32,
    /// The name set with CLIENT SETNAME after every (re)connect, or NULL
    /// (default). Copied by `relink_client_connect`.
    pub client_name: *const c_char,
    /// 0 (default): `relink_client_connect` returns at once and the client
    /// connects (and keeps connecting) in the background. 1: it waits for
    /// the first connection and fails without a client, at once with
    /// `RELINK_MISCONFIGURED` when an attempt fails for a cause retrying
    /// will not fix (wrong password, not a Redis server), or with
    /// `RELINK_TIMEOUT` naming the last attempt's cause once `deadline_ms`
    /// passes (0: no bound).
    pub wait_for_connection: u32,
    /// TLS (a `rediss://` URL): the PEM file of the CA certificate(s) to
    /// trust instead of the operating system's roots, or NULL (default).
    /// The TLS fields are read by `relink_client_connect`; their files are
    /// read again at each reconnect.
    pub tls_ca_file: *const c_char,
    /// TLS: the client certificate (chain) PEM file presented to a server
    /// that requires one (mutual TLS), or NULL; needs `tls_key_file`.
    pub tls_cert_file: *const c_char,
    /// TLS: the PEM file of `tls_cert_file`'s private key, or NULL.
    pub tls_key_file: *const c_char,
    /// TLS: the name the server's certificate must carry when it is not
    /// the URL's host, or NULL.
    pub tls_server_name: *const c_char,
    /// TLS, **development only**: 1 accepts any certificate from any
    /// server (no verification at all, as a URL ending in `#insecure`);
    /// 0 (default) verifies.
    pub tls_danger_accept_invalid_certs: u32,
    /// Client-side caching of reads (GET, MGET, HGETALL, ...: relink's
    /// list), kept coherent by the server's invalidations and emptied at
    /// every connection loss: `RELINK_CACHE_OFF` (default), `RELINK_CACHE_ON`
    /// or `RELINK_CACHE_BROADCAST`. Needs RESP3 (the URL's default; not with
    /// `?protocol=resp2`). The other `cache_*` fields are read only when it
    /// is on. Figures: `relink_client_cache_stats`.
    pub cache: u32,
    /// Cache: the most entries kept (default 10000; at least 1).
    pub cache_max_entries: u32,
    /// Cache: the most bytes kept, keys, arguments and values (default
    /// 67108864, 64 MiB; at least 1).
    pub cache_max_bytes: u64,
    /// Cache: how long an entry may be served at most, invalidated or not:
    /// a safety net (default 60000; at least 1).
    pub cache_ttl_ms: u64,
    /// Cache, `RELINK_CACHE_BROADCAST` only: `cache_prefix_count`
    /// NUL-terminated key prefixes tracked and cached, or NULL (default)
    /// with a count of 0 for every key. Copied by `relink_client_connect`.
    pub cache_prefixes: *const *const c_char,
    /// Cache: the number of strings at `cache_prefixes` (default 0; at most 64).
    pub cache_prefix_count: usize,
}

impl relink_options {
    fn defaults() -> FfiResult<relink_options> {
        let config = Config::new("redis://127.0.0.1")
            .map_err(|e| relink_error::new(RELINK_INVALID_CONFIG, e.to_string()))?;
        let supervisor = config.supervisor_config();
        let cache = CacheConfig::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (outage_policy, queue_capacity, queue_max_wait_ms) = match config.outage() {
            OutagePolicy::FailFast => (
                RELINK_OUTAGE_FAIL_FAST,
                OutagePolicy::DEFAULT_CAPACITY,
                ms(OutagePolicy::DEFAULT_MAX_WAIT),
            ),
            OutagePolicy::Queue { capacity, max_wait } => {
                (RELINK_OUTAGE_QUEUE, capacity, ms(max_wait))
            }
            _ => (
                RELINK_OUTAGE_QUEUE,
                OutagePolicy::DEFAULT_CAPACITY,
                ms(OutagePolicy::DEFAULT_MAX_WAIT),
            ),
        };
        Ok(relink_options {
            struct_size: size_of::<relink_options>(),
            backoff: relink_backoff_policy::from_policy(&supervisor.backoff),
            heartbeat_interval_ms: ms(supervisor.heartbeat.interval),
            heartbeat_timeout_ms: ms(supervisor.heartbeat.timeout),
            heartbeat_misses_allowed: supervisor.heartbeat.misses_allowed,
            connect_timeout_ms: ms(supervisor.connect_timeout),
            backoff_reset_after_ms: ms(supervisor.backoff_reset_after),
            response_timeout_ms: ms(config.response_timeout()),
            deadline_ms: config.deadline().map_or(0, ms),
            outage_policy,
            queue_capacity,
            queue_max_wait_ms,
            max_retries: config.retry().max_retries,
            client_name: std::ptr::null(),
            wait_for_connection: 0,
            tls_ca_file: std::ptr::null(),
            tls_cert_file: std::ptr::null(),
            tls_key_file: std::ptr::null(),
            tls_server_name: std::ptr::null(),
            tls_danger_accept_invalid_certs: 0,
            cache: RELINK_CACHE_OFF,
            cache_max_entries: cache.max_entries,
            cache_max_bytes: cache.max_bytes,
            cache_ttl_ms: ms(cache.ttl),
            cache_prefixes: std::ptr::null(),
            cache_prefix_count: 0,
        })
    }

    /// The config for `url` with these options; relink validates it.
    fn config(&self, url: &str) -> FfiResult<Config> {
        let outage = match self.outage_policy {
            RELINK_OUTAGE_QUEUE => OutagePolicy::Queue {
                capacity: self.queue_capacity,
                max_wait: Duration::from_millis(self.queue_max_wait_ms),
            },
            RELINK_OUTAGE_FAIL_FAST => OutagePolicy::FailFast,
            other => {
                return Err(relink_error::invalid(format!(
                    "`outage_policy` is {other}: expected RELINK_OUTAGE_QUEUE (0) or \
                     RELINK_OUTAGE_FAIL_FAST (1)"
                )))
            }
        };
        let backoff = self.backoff.to_policy("backoff.")?;
        let mut config = Config::new(url)
            .map_err(|e| config_error(&e))?
            .with_backoff(backoff)
            .with_heartbeat(HeartbeatConfig {
                interval: Duration::from_millis(self.heartbeat_interval_ms),
                timeout: Duration::from_millis(self.heartbeat_timeout_ms),
                misses_allowed: self.heartbeat_misses_allowed,
            })
            .with_connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .with_backoff_reset_after(Duration::from_millis(self.backoff_reset_after_ms))
            .with_response_timeout(Duration::from_millis(self.response_timeout_ms))
            .with_deadline(Some(Duration::from_millis(self.deadline_ms)).filter(|d| !d.is_zero()))
            .with_outage(outage)
            .with_retry(RetryPolicy::default().max_retries(self.max_retries));
        if !self.client_name.is_null() {
            // SAFETY: not NULL; the caller passes a NUL-terminated string
            // that lives for this call (contract).
            let name = unsafe { try_str(self.client_name, "client_name") }?;
            config = config.with_client_name(name);
        }
        if let Some(tls) = self.tls()? {
            config = config.with_tls(tls);
        }
        config = config.with_cache(self.cache()?);
        config.build().map_err(|e| config_error(&e))
    }

    /// The TLS settings of the `tls_*` fields; `None` when all are unset.
    fn tls(&self) -> FfiResult<Option<relink::tls::TlsConfig>> {
        let text = |ptr: *const c_char, name: &str| -> FfiResult<Option<String>> {
            if ptr.is_null() {
                return Ok(None);
            }
            // SAFETY: not NULL; the caller passes a NUL-terminated string
            // that lives for this call (contract).
            unsafe { try_str(ptr, name) }.map(|s| Some(s.to_owned()))
        };
        let ca = text(self.tls_ca_file, "tls_ca_file")?;
        let cert = text(self.tls_cert_file, "tls_cert_file")?;
        let key = text(self.tls_key_file, "tls_key_file")?;
        let server_name = text(self.tls_server_name, "tls_server_name")?;
        let danger = match self.tls_danger_accept_invalid_certs {
            0 => false,
            1 => true,
            other => {
                return Err(relink_error::invalid(format!(
                    "`tls_danger_accept_invalid_certs` is {other}: expected 0 or 1"
                )))
            }
        };
        if ca.is_none() && cert.is_none() && key.is_none() && server_name.is_none() && !danger {
            return Ok(None);
        }
        let mut tls = relink::tls::TlsConfig::new().with_danger_accept_invalid_certs(danger);
        if let Some(ca) = ca {
            tls = tls.with_ca_file(ca);
        }
        match (cert, key) {
            (Some(cert), Some(key)) => tls = tls.with_client_cert_files(cert, key),
            (None, None) => {}
            (Some(_), None) => return Err(half_a_client_cert("tls_key_file", "tls_cert_file")),
            (None, Some(_)) => return Err(half_a_client_cert("tls_cert_file", "tls_key_file")),
        }
        if let Some(name) = server_name {
            tls = tls.with_server_name(name);
        }
        Ok(Some(tls))
    }

    /// The cache settings of the `cache*` fields; `None` when it is off.
    /// relink validates them.
    fn cache(&self) -> FfiResult<Option<CacheConfig>> {
        let mode = match self.cache {
            RELINK_CACHE_OFF => return Ok(None),
            RELINK_CACHE_ON => TrackingMode::Default,
            RELINK_CACHE_BROADCAST => TrackingMode::Broadcast,
            other => {
                return Err(relink_error::invalid(format!(
                    "`cache` is {other}: expected RELINK_CACHE_OFF (0), RELINK_CACHE_ON (1) or \
                     RELINK_CACHE_BROADCAST (2)"
                )))
            }
        };
        let mut cache = CacheConfig::default();
        cache.mode = mode;
        cache.max_entries = self.cache_max_entries;
        cache.max_bytes = self.cache_max_bytes;
        cache.ttl = Duration::from_millis(self.cache_ttl_ms);
        cache.prefixes = self.cache_prefixes()?;
        Ok(Some(cache))
    }

    /// The `cache_prefixes`, copied. A count over the core's bound is
    /// refused before anything is read past it.
    fn cache_prefixes(&self) -> FfiResult<Vec<String>> {
        let count = self.cache_prefix_count;
        if count == 0 {
            return Ok(Vec::new());
        }
        if count > CacheConfig::MAX_PREFIXES {
            return Err(relink_error::new(
                RELINK_INVALID_CONFIG,
                format!(
                    "invalid option `cache_prefix_count`: is {count}, at most {} prefixes",
                    CacheConfig::MAX_PREFIXES
                ),
            ));
        }
        if self.cache_prefixes.is_null() {
            return Err(relink_error::invalid(format!(
                "`cache_prefixes` must not be NULL when `cache_prefix_count` is {count}"
            )));
        }
        // SAFETY: not NULL; the caller passes `cache_prefix_count` readable
        // pointers that live for this call (contract).
        let items = unsafe { std::slice::from_raw_parts(self.cache_prefixes, count) };
        items
            .iter()
            .enumerate()
            .map(|(i, &item)| {
                // SAFETY: NULL (refused by `try_str`, naming the element) or
                // a NUL-terminated string that lives for this call (contract).
                unsafe { try_str(item, &format!("cache_prefixes[{i}]")) }.map(str::to_owned)
            })
            .collect()
    }
}

/// A client certificate without its key, or the other way round.
fn half_a_client_cert(missing: &str, given: &str) -> relink_error {
    relink_error::new(
        RELINK_INVALID_CONFIG,
        format!("invalid option `{missing}`: is required with `{given}` (mutual TLS needs both)"),
    )
}

/// A config relink rejected, as `RELINK_INVALID_CONFIG` with relink's
/// message, in a C or Python user's terms: a setting is named as the
/// `relink_options` field that holds it, and a TLS URL in a build without
/// TLS says so, not which Cargo feature a Rust user would enable.
fn config_error(e: &relink::Error) -> relink_error {
    let message = match e {
        relink::Error::TlsUnavailable { scheme } => format!(
            "invalid config `url`: `{scheme}://` needs TLS, and this librelink was built \
             without TLS support; connect with a `redis://` URL (no TLS), or use a librelink \
             built with TLS"
        ),
        relink::Error::Config { field, reason } => match option_name(field) {
            Some(name) => format!("invalid option `{name}`: {reason}"),
            None => e.to_string(),
        },
        other => other.to_string(),
    };
    relink_error::new(RELINK_INVALID_CONFIG, message)
}

/// The `relink_options` field for a config field as relink names it.
fn option_name(field: &str) -> Option<&'static str> {
    Some(match field {
        "heartbeat.interval" => "heartbeat_interval_ms",
        "heartbeat.timeout" => "heartbeat_timeout_ms",
        "heartbeat.misses_allowed" => "heartbeat_misses_allowed",
        "connect_timeout" => "connect_timeout_ms",
        "backoff_reset_after" => "backoff_reset_after_ms",
        "response_timeout" => "response_timeout_ms",
        "deadline" => "deadline_ms",
        "outage.capacity" => "queue_capacity",
        "outage.max_wait" => "queue_max_wait_ms",
        "retry.max_retries" => "max_retries",
        "client_name" => "client_name",
        // Any of them set on a plain URL.
        "tls" => "tls_*",
        "tls.ca_file" => "tls_ca_file",
        "tls.cert_file" => "tls_cert_file",
        "tls.key_file" => "tls_key_file",
        "tls.server_name" => "tls_server_name",
        // On a RESP2 connection.
        "cache" => "cache",
        "cache.max_entries" => "cache_max_entries",
        "cache.max_bytes" => "cache_max_bytes",
        "cache.ttl" => "cache_ttl_ms",
        "cache.prefixes" => "cache_prefixes",
        _ => return None,
    })
}

versioned!(relink_options, last_of_0_1: wait_for_connection: u32, defaults: relink_options::defaults());

/// Fills `*out` with relink's defaults: everything that keeps a connection
/// alive is on (see the field docs for the values). `size` is `sizeof
/// *out` (`relink_options_default(&options, sizeof options)`): at most that
/// many bytes are written, and `struct_size` is set to it. A size this
/// library does not know is `RELINK_STRUCT_SIZE`.
#[no_mangle]
pub extern "C" fn relink_options_default(out: *mut relink_options, size: usize) -> relink_code {
    guard(std::ptr::null_mut(), || write_defaults(out, size))
}

/// Called on every state change with the `user_data` given at
/// registration, the old and the new `RELINK_STATE_*`.
///
/// **Threading:** it runs on relink's own thread, one call at a time, and
/// while it runs the client's background work waits: it must return
/// quickly, must not block, and must not call any `relink_client_*`
/// function (those return `RELINK_REENTRANT_CALL` there). Copy the values
/// out (to an atomic, a pipe, a condition variable) and act elsewhere.
pub type relink_state_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, from: u32, to: u32)>;

/// A registered callback and its user data.
struct StateCallback {
    call: unsafe extern "C" fn(*mut c_void, u32, u32),
    user_data: *mut c_void,
}

// SAFETY: the callback is called on relink's thread by design; registering
// it is the C caller's promise (documented on `relink_client_on_state_change`)
// that `call` and `user_data` may be used from another thread.
unsafe impl Send for StateCallback {}

thread_local! {
    /// Set while a state callback runs on this thread.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn not_in_callback() -> FfiResult {
    if IN_CALLBACK.get() {
        return Err(relink_error::new(
            RELINK_REENTRANT_CALL,
            "relink_client_* called from inside a state-change callback, which must not call \
             back into the client",
        ));
    }
    Ok(())
}

/// A Redis client that rides out outages. Thread-safe: any number of
/// threads may call `relink_client_command` on one client at once; only
/// `relink_client_free` must not race the other calls.
pub struct relink_client {
    client: relink::Client,
    /// Shared with the client's subscriptions, which may outlive it.
    runtime: Arc<tokio::runtime::Runtime>,
    callback: Arc<Mutex<Option<StateCallback>>>,
}

impl fmt::Debug for relink_client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("relink_client")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl relink_client {
    /// A handle on the client (cheap: it is shared).
    pub(crate) fn client(&self) -> relink::Client {
        self.client.clone()
    }

    /// The client's runtime.
    pub(crate) fn runtime(&self) -> &Arc<tokio::runtime::Runtime> {
        &self.runtime
    }

    fn state(&self) -> u32 {
        state_code(self.client.health().borrow().state)
    }
}

pub(crate) fn state_code(state: State) -> u32 {
    match state {
        State::Idle => RELINK_STATE_IDLE,
        State::Connecting => RELINK_STATE_CONNECTING,
        State::Ready => RELINK_STATE_READY,
        State::TransientFailure => RELINK_STATE_TRANSIENT_FAILURE,
        State::Shutdown => RELINK_STATE_SHUTDOWN,
        _ => RELINK_STATE_TRANSIENT_FAILURE,
    }
}

/// Starts a client for `url` (`redis://[user[:password]@]host[:port][/db]`,
/// `rediss://...` for TLS when the library was built with it, or
/// `redis+unix:///path?db=N`; `valkey://` and `valkeys://` are the same as
/// `redis://` and `rediss://`) with `*options` (NULL: the defaults). Returns
/// at once: the connection is made in the background (see
/// `relink_client_wait_ready`); a server that is down is not an error here.
/// On success `*out` owns the client: free it with `relink_client_free`.
///
/// A NULL or non-UTF-8 `url` is `RELINK_INVALID_ARGUMENT`; a URL relink
/// rejects is `RELINK_INVALID_CONFIG` whose message says what is wrong with
/// it (unknown scheme, port 0 or out of range, a database that is not a
/// number, a bad percent-escape, no host, TLS not built in) without quoting
/// the URL.
#[no_mangle]
pub extern "C" fn relink_client_connect(
    url: *const c_char,
    options: *const relink_options,
    out: *mut *mut relink_client,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `url` is NULL or a NUL-terminated string (contract).
        let url = unsafe { try_str(url, "url") }?;
        let options = if options.is_null() {
            relink_options::defaults()?
        } else {
            // SAFETY: not NULL; options of `struct_size` readable bytes (contract).
            unsafe { abi::read(options, "options") }?
        };
        check_out(out, "out")?;
        let config = options.config(url)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("relink")
            .enable_all()
            .build()
            .map_err(|e| relink_error::new(RELINK_REDIS_ERROR, format!("no runtime: {e}")))?;
        let wait = match options.wait_for_connection {
            0 => None,
            1 => Some(config.deadline().unwrap_or(Duration::MAX)),
            other => {
                return Err(relink_error::invalid(format!(
                    "`wait_for_connection` is {other}: expected 0 or 1"
                )))
            }
        };
        let client = {
            let _entered = runtime.enter();
            relink::Client::new(config).map_err(|e| config_error(&e))?
        };
        if let Some(wait) = wait {
            // What relink::Client::connect does, on this client's runtime.
            if let Err(e) = runtime.block_on(client.wait_ready(wait)) {
                runtime.block_on(client.shutdown());
                return Err(wait_error(e));
            }
        }
        let callback: Arc<Mutex<Option<StateCallback>>> = Arc::default();
        let mut events = client.events();
        let slot = Arc::clone(&callback);
        runtime.spawn(async move {
            while let Some(event) = events.next().await {
                if let Event::StateChanged { from, to } = event {
                    let registered = slot.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(cb) = registered.as_ref() {
                        IN_CALLBACK.set(true);
                        // SAFETY: the C caller registered `call` with this
                        // `user_data` and keeps both valid until it replaces
                        // the callback or frees the client, both of which
                        // wait for this call (they take the same lock).
                        unsafe { (cb.call)(cb.user_data, state_code(from), state_code(to)) };
                        IN_CALLBACK.set(false);
                    }
                }
            }
        });
        let handle = into_raw(relink_client {
            client,
            runtime: Arc::new(runtime),
            callback,
        });
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

/// Sends one command and waits for its reply: `argc` arguments, `argv[i]`
/// pointing to `argvlen[i]` bytes (binary-safe: they may contain NUL). With
/// `argvlen` NULL each `argv[i]` is a NUL-terminated string.
///
/// On success `*out` owns the reply (free it with `relink_reply_free`). A
/// server error reply (`-ERR ...`, `-WRONGTYPE ...`) is a success: a reply
/// of type `RELINK_REPLY_ERROR`. A failure is relink's verdict on what may
/// have happened: `RELINK_NOT_CONNECTED`, `_BACKLOG_FULL`, `_QUEUE_TIMEOUT`,
/// `_SHUTDOWN`, `_NOT_APPLIED` (not applied) or `_MAYBE_APPLIED` (outcome
/// unknown); see `relink_error_outcome`.
#[no_mangle]
pub extern "C" fn relink_client_command(
    client: *const relink_client,
    argc: usize,
    argv: *const *const c_char,
    argvlen: *const usize,
    out: *mut *mut relink_reply,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        let not_sent = |e: relink_error| e.with_outcome(RELINK_OUTCOME_NOT_APPLIED);
        // SAFETY: `client` is NULL or a live client (contract).
        let client = unsafe { try_ref(client, "client") }.map_err(not_sent)?;
        not_in_callback().map_err(not_sent)?;
        check_out(out, "out").map_err(not_sent)?;
        // SAFETY: the caller passes `argc` readable pointers and lengths (contract).
        let cmd = unsafe { command(argc, argv, argvlen) }.map_err(not_sent)?;
        let mut handle = client.client.clone();
        let reply = match client.runtime.block_on(handle.req_packed_command(&cmd)) {
            Ok(value) => relink_reply::from_value(value),
            Err(e) if relink::classify::is_server_reply(&e) => {
                let text = match e.detail() {
                    Some(detail) => format!("{} {detail}", e.code().unwrap_or("ERR")),
                    None => e.code().unwrap_or("ERR").to_owned(),
                };
                relink_reply::error(&text)
            }
            Err(e) => return Err(command_error(&e)),
        };
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(into_raw(reply)) };
        Ok(())
    })
}

/// The command from C's `argc` / `argv` / `argvlen`.
///
/// # Safety
/// `argv` is NULL or points to `argc` pointers; `argvlen` is NULL or points
/// to `argc` lengths; each `argv[i]` is NULL or points to `argvlen[i]`
/// readable bytes (or a NUL-terminated string when `argvlen` is NULL).
unsafe fn command(
    argc: usize,
    argv: *const *const c_char,
    argvlen: *const usize,
) -> FfiResult<redis::Cmd> {
    if argc == 0 {
        return Err(relink_error::invalid("`argc` must be at least 1"));
    }
    if argv.is_null() {
        return Err(relink_error::null("argv"));
    }
    // SAFETY: `argv` is not NULL and holds `argc` pointers (contract).
    let args = unsafe { std::slice::from_raw_parts(argv, argc) };
    let lens = if argvlen.is_null() {
        None
    } else {
        // SAFETY: `argvlen` is not NULL and holds `argc` lengths (contract).
        Some(unsafe { std::slice::from_raw_parts(argvlen, argc) })
    };
    let mut cmd = redis::Cmd::new();
    for (i, &arg) in args.iter().enumerate() {
        if arg.is_null() {
            return Err(relink_error::invalid(format!(
                "`argv[{i}]` must not be NULL"
            )));
        }
        let bytes = match lens {
            // SAFETY: `arg` is not NULL and points to `lens[i]` bytes (contract).
            Some(lens) => unsafe { std::slice::from_raw_parts(arg.cast::<u8>(), lens[i]) },
            // SAFETY: `arg` is not NULL and NUL-terminated when there are no lengths (contract).
            None => unsafe { std::ffi::CStr::from_ptr(arg) }.to_bytes(),
        };
        cmd.arg(bytes);
    }
    Ok(cmd)
}

/// relink's verdict on a failed command, as a code, an outcome and a message.
/// The outcome is relink's (`Error::outcome_of`); this only names it.
fn command_error(err: &RedisError) -> relink_error {
    let outcome = relink::Error::outcome_of(err);
    let code = match relink::Error::from_redis(err) {
        Some(relink::Error::NotConnected { .. }) => RELINK_NOT_CONNECTED,
        Some(relink::Error::BacklogFull { .. }) => RELINK_BACKLOG_FULL,
        Some(relink::Error::QueueTimeout { .. }) => RELINK_QUEUE_TIMEOUT,
        Some(relink::Error::DeadlineExceeded { .. }) => RELINK_DEADLINE_EXCEEDED,
        Some(relink::Error::Misconfigured { .. }) => RELINK_MISCONFIGURED,
        Some(relink::Error::OutcomeUnknown { .. }) => RELINK_MAYBE_APPLIED,
        Some(relink::Error::NotApplied { .. }) => RELINK_NOT_APPLIED,
        Some(relink::Error::Shutdown) => RELINK_SHUTDOWN,
        Some(relink::Error::Config { .. }) => RELINK_INVALID_CONFIG,
        _ => match outcome {
            Outcome::Unknown => RELINK_MAYBE_APPLIED,
            Outcome::NotApplied => RELINK_NOT_APPLIED,
            Outcome::Rejected => RELINK_REDIS_ERROR,
        },
    };
    let outcome = match outcome {
        Outcome::NotApplied => RELINK_OUTCOME_NOT_APPLIED,
        Outcome::Unknown => RELINK_OUTCOME_UNKNOWN,
        Outcome::Rejected => RELINK_OUTCOME_REJECTED,
    };
    relink_error::new(code, err.to_string()).with_outcome(outcome)
}

/// The current `RELINK_STATE_*` (`RELINK_STATE_SHUTDOWN` for NULL).
#[no_mangle]
pub extern "C" fn relink_client_state(client: *const relink_client) -> u32 {
    guard_value(RELINK_STATE_SHUTDOWN, || {
        // SAFETY: `client` is NULL or a live client (contract).
        unsafe { client.as_ref() }.map_or(RELINK_STATE_SHUTDOWN, relink_client::state)
    })
}

/// Waits until the client is READY, for at most `timeout_ms`:
/// `RELINK_OK`, `RELINK_TIMEOUT` or `RELINK_SHUTDOWN`.
#[no_mangle]
pub extern "C" fn relink_client_wait_ready(
    client: *const relink_client,
    timeout_ms: u64,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `client` is NULL or a live client (contract).
        let client = unsafe { try_ref(client, "client") }?;
        not_in_callback()?;
        let timeout = Duration::from_millis(timeout_ms);
        client
            .runtime
            .block_on(client.client.wait_ready(timeout))
            .map_err(wait_error)
    })
}

/// Why waiting for READY ended without it, as a code and relink's message
/// (which names the last attempt's cause and the server's words).
fn wait_error(e: relink::Error) -> relink_error {
    match e {
        relink::Error::Shutdown => relink_error::new(
            RELINK_SHUTDOWN,
            "the client is shut down (or its reconnect policy gave up)",
        ),
        e @ relink::Error::Misconfigured { .. } => {
            relink_error::new(RELINK_MISCONFIGURED, e.to_string())
        }
        // relink's own text says how long it waited, in what state, and why
        // the last attempt failed.
        e => relink_error::new(RELINK_TIMEOUT, e.to_string()),
    }
}

/// The client-side cache's figures (`relink_client_cache_stats`), counted
/// since the client was made; `entries` and `bytes` as they are now.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct relink_cache_stats {
    /// `RELINK_CACHE_STATE_OFF` (no cache: every figure is 0),
    /// `RELINK_CACHE_STATE_SUSPENDED` or `RELINK_CACHE_STATE_SERVING`.
    pub state: u32,
    /// Reads answered from the cache.
    pub hits: u64,
    /// Cacheable reads sent to the server while serving.
    pub misses: u64,
    /// Keys the server invalidated (a FLUSHALL or FLUSHDB counts one).
    pub invalidations: u64,
    /// Times the cache was emptied because its connection was lost.
    pub gap_flushes: u64,
    /// Entries dropped to stay within `cache_max_entries` / `cache_max_bytes`.
    pub evictions: u64,
    /// Entries now.
    pub entries: u64,
    /// Bytes now.
    pub bytes: u64,
}

impl relink_cache_stats {
    fn new(state: Option<CacheState>, stats: Option<CacheStats>) -> Self {
        let (Some(state), Some(stats)) = (state, stats) else {
            return relink_cache_stats::default();
        };
        relink_cache_stats {
            state: match state {
                CacheState::Suspended => RELINK_CACHE_STATE_SUSPENDED,
                CacheState::Serving => RELINK_CACHE_STATE_SERVING,
            },
            hits: stats.hits,
            misses: stats.misses,
            invalidations: stats.invalidations,
            gap_flushes: stats.gap_flushes,
            evictions: stats.evictions,
            entries: stats.entries,
            bytes: stats.bytes,
        }
    }
}

/// Writes the client-side cache's state and figures to `*out`; a client
/// without a cache (`relink_options.cache` off) gets `RELINK_CACHE_STATE_OFF`
/// and zeros.
#[no_mangle]
pub extern "C" fn relink_client_cache_stats(
    client: *const relink_client,
    out: *mut relink_cache_stats,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `client` is NULL or a live client (contract).
        let client = unsafe { try_ref(client, "client") }?;
        check_out(out, "out")?;
        let state = client.client.health().borrow().cache;
        let stats = relink_cache_stats::new(state, client.client.stats().cache);
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(stats) };
        Ok(())
    })
}

/// Changes the credentials of a live client, for a password rotation
/// without a restart: the live connection is re-authenticated (AUTH) at
/// once and every connection made from now on uses them; a client waiting
/// out a wrong password (`RELINK_MISCONFIGURED`) tries again at once.
/// `username` NULL keeps the current user; `password` must not be NULL.
/// If the server refuses them on the live connection, nothing changes and
/// the result is `RELINK_REDIS_ERROR` with the server's words (`WRONGPASS
/// ...`). The strings are copied.
#[no_mangle]
pub extern "C" fn relink_client_update_credentials(
    client: *const relink_client,
    username: *const c_char,
    password: *const c_char,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `client` is NULL or a live client (contract).
        let client = unsafe { try_ref(client, "client") }?;
        not_in_callback()?;
        let username = if username.is_null() {
            None
        } else {
            // SAFETY: not NULL; a NUL-terminated string (contract).
            Some(unsafe { try_str(username, "username") }?)
        };
        // SAFETY: `password` is NULL or a NUL-terminated string (contract).
        let password = unsafe { try_str(password, "password") }?;
        client
            .runtime
            .block_on(client.client.update_credentials(username, password))
            .map_err(|e| match e {
                relink::Error::Config { .. } => config_error(&e),
                e => relink_error::new(RELINK_REDIS_ERROR, e.to_string()),
            })
    })
}

/// Registers `callback` (NULL: none) to be called with `user_data` on every
/// state change from now on, replacing any earlier one. When this returns,
/// an earlier callback is not running and will not be called again.
///
/// The callback runs on relink's thread: `user_data` must be usable from
/// there, and the callback must not block nor call into the client (see
/// `relink_state_callback`). Calling this from a callback fails with
/// `RELINK_REENTRANT_CALL`.
#[no_mangle]
pub extern "C" fn relink_client_on_state_change(
    client: *const relink_client,
    callback: relink_state_callback,
    user_data: *mut c_void,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `client` is NULL or a live client (contract).
        let client = unsafe { try_ref(client, "client") }?;
        not_in_callback()?;
        let next = callback.map(|call| StateCallback { call, user_data });
        *client
            .callback
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    })
}

/// Shuts the client down and frees it: the state callback is unregistered
/// first (it is not called for the shutdown), waiting commands fail with
/// `RELINK_SHUTDOWN`, the connection is closed and relink's thread joined.
/// NULL is a no-op. Must not race other calls on the same client; called
/// from a state callback it does nothing (the client stays alive).
#[no_mangle]
pub extern "C" fn relink_client_free(client: *mut relink_client) {
    guard_value((), || {
        if client.is_null() || not_in_callback().is_err() {
            return;
        }
        // SAFETY: `client` came from relink_client_connect and is freed once
        // (contract), so the box is ours from here on.
        let client = unsafe { Box::from_raw(client) };
        *client
            .callback
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let relink_client {
            client, runtime, ..
        } = *client;
        runtime.block_on(async {
            // Bounded: the background task ends within one step of being told.
            let _ = tokio::time::timeout(relink::Config::SHUTDOWN_GRACE, client.shutdown()).await;
        });
        drop(client);
        // Dropping the runtime stops its tasks and joins its thread (once
        // the client's subscriptions, which share it, are freed too).
        drop(runtime);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLS URL in a library built without TLS is said in a C user's
    /// words (the C tests run against a library with TLS).
    #[cfg(not(feature = "tls-rustls"))]
    #[test]
    fn a_tls_url_without_tls_says_so_in_c_terms() {
        for scheme in ["rediss", "valkeys"] {
            let url = format!("{scheme}://:s3cret@127.0.0.1:6379");
            let e = relink_options::defaults()
                .and_then(|o| o.config(&url))
                .unwrap_err();
            assert_eq!(e.code(), RELINK_INVALID_CONFIG);
            let text = format!("{e:?}");
            assert!(
                text.contains(&format!(
                    "`{scheme}://` needs TLS, and this librelink was built without TLS"
                )),
                "{text}"
            );
            for never in ["Cargo", "cargo", "feature", "tls-rustls", "s3cr"] {
                assert!(!text.contains(never), "{text}");
            }
        }
    }

    #[test]
    fn cache_options_become_relinks_cache_config() {
        let mut options = relink_options::defaults().unwrap();
        let url = "redis://127.0.0.1:6379";
        assert_eq!(options.config(url).unwrap().cache(), None);
        let prefixes = [c"user:".as_ptr(), c"item:".as_ptr()];
        options.cache = RELINK_CACHE_BROADCAST;
        options.cache_max_entries = 5;
        options.cache_ttl_ms = 1500;
        options.cache_prefixes = prefixes.as_ptr();
        options.cache_prefix_count = prefixes.len();
        let config = options.config(url).unwrap();
        let cache = config.cache().unwrap();
        assert_eq!(cache.mode, TrackingMode::Broadcast);
        assert_eq!(cache.max_entries, 5);
        assert_eq!(cache.max_bytes, CacheConfig::default().max_bytes);
        assert_eq!(cache.ttl, Duration::from_millis(1500));
        assert_eq!(cache.prefixes, ["user:", "item:"]);
    }

    #[test]
    fn tls_options_on_a_plain_url_are_named() {
        let mut options = relink_options::defaults().unwrap();
        options.tls_server_name = c"redis.internal".as_ptr();
        let e = options.config("redis://127.0.0.1:6379").unwrap_err();
        assert_eq!(e.code(), RELINK_INVALID_CONFIG);
        assert!(format!("{e:?}").contains("invalid option `tls_*`"), "{e:?}");
    }
}
