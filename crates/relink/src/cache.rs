//! Client-side caching on a [`Client`](crate::Client): its settings and
//! figures, and the driver's side of the core's [`relink_core::cache`].
//!
//! Turned on by [`Config::with_cache`](crate::Config::with_cache) (or a
//! `[cache]` table). Every connection the client makes turns tracking on
//! (`CLIENT TRACKING ON`, or `... BCAST PREFIX ...`) before it carries a
//! command; the server's invalidations arrive on that connection as RESP3
//! pushes and drop entries by key. The core decides everything else: what
//! is cacheable, when the cache serves, what a gap empties, what a late
//! reply may still fill. The driver only reports what it sees, in order:
//! the connection up with tracking on, each invalidation, the
//! connection's loss (its socket closing, or relink giving it up),
//! each read and its reply.
//!
//! ```no_run
//! use relink::cache::CacheConfig;
//! use relink::redis::AsyncCommands;
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let config = relink::Config::new("redis://127.0.0.1:6379")?
//!     .with_cache(Some(CacheConfig::default()));
//! let mut client = relink::Client::connect(config).await?;
//! let _: Option<String> = client.get("user:1").await?; // from the server
//! let _: Option<String> = client.get("user:1").await?; // from memory
//! println!("{:?}", client.stats().cache);
//! # Ok(())
//! # }
//! ```

use std::sync::Mutex;

use redis::{Cmd, PushInfo, PushKind, Value};
use relink_core::cache::{Cache, Lookup, Reservation};
use relink_core::Timestamp;

pub use relink_core::cache::{CacheConfig, CacheState, CacheStats, TrackingMode};

/// A client's cache, shared by its handles and its connections' push
/// handlers.
#[derive(Debug)]
pub(crate) struct ClientCache {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    cache: Cache<Value>,
    /// The connection whose invalidations the cache serves on.
    generation: u64,
}

impl ClientCache {
    pub(crate) fn new(config: CacheConfig) -> Result<ClientCache, relink_core::ConfigError> {
        Ok(ClientCache {
            inner: Mutex::new(Inner {
                cache: Cache::new(config)?,
                generation: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing panics while holding it; if it did, the state is still
        // consistent enough to drop entries (every path below does).
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connection `generation` is up with tracking on: serve on it.
    pub(crate) fn connected(&self, generation: u64) {
        let mut inner = self.lock();
        inner.cache.connected();
        inner.generation = generation;
    }

    /// Connection `generation` is lost (`None`: whichever serves, e.g. at
    /// shutdown). A late word about an older connection changes nothing.
    pub(crate) fn lost(&self, generation: Option<u64>) {
        let mut inner = self.lock();
        if generation.is_none_or(|g| g == inner.generation) {
            inner.cache.lost();
        }
    }

    /// A push message on a tracking connection: an invalidation (a list of
    /// keys, or null after `FLUSHALL`) drops entries; anything else is not
    /// the cache's.
    pub(crate) fn on_push(&self, info: &PushInfo) {
        if info.kind != PushKind::Invalidate {
            return;
        }
        let mut inner = self.lock();
        match info.data.first() {
            Some(Value::Array(keys)) => {
                inner.cache.invalidate(keys.iter().filter_map(|k| match k {
                    Value::BulkString(k) => Some(&k[..]),
                    Value::SimpleString(k) => Some(k.as_bytes()),
                    _ => None,
                }))
            }
            // Null (FLUSHALL, FLUSHDB), or a shape this version does not
            // know: drop everything rather than guess.
            _ => inner.cache.invalidate_all(),
        }
    }

    /// The command that turns tracking on for a new connection.
    pub(crate) fn tracking_command(&self) -> Vec<Vec<u8>> {
        let inner = self.lock();
        let args = inner.cache.config().tracking_command();
        args.into_iter().map(<[u8]>::to_vec).collect()
    }

    pub(crate) fn lookup(&self, now: Timestamp, cmd: &Cmd) -> Lookup<Value> {
        self.lock().cache.lookup(now, crate::calls::args(cmd))
    }

    /// The reply to a reserved read: kept if the core allows (a server
    /// error never is: its reservation is given back).
    pub(crate) fn fill(&self, now: Timestamp, reservation: Reservation, value: &Value) {
        if matches!(value, Value::ServerError(_)) {
            return self.cancel(reservation);
        }
        let bytes = value_bytes(value);
        let _ = self
            .lock()
            .cache
            .fill(now, reservation, value.clone(), bytes);
    }

    /// A reserved read that will not be answered.
    pub(crate) fn cancel(&self, reservation: Reservation) {
        self.lock().cache.cancel(reservation);
    }

    pub(crate) fn stats(&self) -> CacheStats {
        self.lock().cache.stats()
    }

    pub(crate) fn state(&self) -> CacheState {
        self.lock().cache.state()
    }
}

/// A read's reservation while the read runs: given back if the call fails
/// or its caller drops it, so no entry waits for a reply that never comes.
pub(crate) struct Filling<'a> {
    cache: &'a ClientCache,
    reservation: Option<Reservation>,
}

impl<'a> Filling<'a> {
    pub(crate) fn new(cache: &'a ClientCache, reservation: Reservation) -> Self {
        Filling {
            cache,
            reservation: Some(reservation),
        }
    }

    /// The call's result: a reply fills the entry; a failure gives the
    /// reservation back (on drop).
    pub(crate) fn done(mut self, now: Timestamp, result: &Result<Value, redis::RedisError>) {
        if let Ok(value) = result {
            if let Some(reservation) = self.reservation.take() {
                self.cache.fill(now, reservation, value);
            }
        }
    }
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        if let Some(reservation) = self.reservation.take() {
            self.cache.cancel(reservation);
        }
    }
}

/// Sends a write (or a pipeline that is not read-only) followed by a
/// `PING` in the same round trip, and answers with the write's own reply
/// once the `PING`'s has come.
///
/// Why: the server sends the invalidation of a key this very connection
/// wrote *after* the write's reply (Redis 7 defers it to the end of the
/// command), so a caller that reads the key right after its write could
/// be served the value it just replaced. The server sends that
/// invalidation before it runs the next command on the connection, and
/// redis-rs applies pushes in the order they arrive: when the `PING`'s
/// reply is in, the invalidation has been applied. No table of which
/// keys each write touches is needed (scripts, transactions and `RENAME`
/// included).
pub(crate) async fn send_fenced(
    conn: &mut redis::aio::MultiplexedConnection,
    request: crate::calls::Request<'_>,
) -> Result<Value, redis::RedisError> {
    let (pipe, offset, count) = crate::durable::with_wait(request, false, redis::cmd("PING"));
    let mut values = conn.send_packed_commands(&pipe, offset, count).await?;
    values.pop(); // the fence's PONG
    Ok(match request {
        crate::calls::Request::Cmd(_) => values.pop().unwrap_or(Value::Nil),
        crate::calls::Request::Pipeline { .. } => Value::Array(values),
    })
}

/// The memory a reply holds, roughly: its bytes, and a word per element.
fn value_bytes(value: &Value) -> u64 {
    const WORD: u64 = 8;
    match value {
        Value::BulkString(b) => WORD + b.len() as u64,
        Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => WORD + s.len() as u64,
        Value::Array(items) | Value::Set(items) => {
            WORD + items.iter().map(value_bytes).sum::<u64>()
        }
        Value::Map(pairs) => {
            WORD + pairs
                .iter()
                .map(|(k, v)| value_bytes(k) + value_bytes(v))
                .sum::<u64>()
        }
        Value::Attribute { data, attributes } => {
            value_bytes(data)
                + attributes
                    .iter()
                    .map(|(k, v)| value_bytes(k) + value_bytes(v))
                    .sum::<u64>()
        }
        _ => WORD,
    }
}
