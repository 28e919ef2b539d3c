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

use std::cell::RefCell;
use std::sync::{Arc, RwLock};

use redis::{Cmd, PushInfo, PushKind, RedisError, Value};
use relink_core::cache::{Cache, Fence, Lookup, Reservation};
use relink_core::Timestamp;

use crate::calls::Request;

pub use relink_core::cache::{CacheConfig, CacheState, CacheStats, TrackingMode};

/// A client's cache, shared by its handles and its connections' push
/// handlers.
#[derive(Debug)]
pub(crate) struct ClientCache {
    /// Hits take it shared (the core's `get`); everything else exclusively.
    inner: RwLock<Inner>,
    /// How writes on the tracking connection are fenced (the mode's).
    fence: Fence,
}

#[derive(Debug)]
struct Inner {
    /// Values behind an `Arc`: a hit clones the reply outside the lock.
    cache: Cache<Arc<Value>>,
    /// The connection whose invalidations the cache serves on.
    generation: u64,
}

impl ClientCache {
    pub(crate) fn new(config: CacheConfig) -> Result<ClientCache, relink_core::ConfigError> {
        Ok(ClientCache {
            fence: config.fence(),
            inner: RwLock::new(Inner {
                cache: Cache::new(config)?,
                generation: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        // Nothing panics while holding it; if it did, the state is still
        // consistent enough to drop entries (every path below does).
        self.inner
            .write()
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

    /// How writes are fenced.
    pub(crate) fn fence(&self) -> Fence {
        self.fence
    }

    /// The core's answer for `cmd`: a hit under the shared lock if it is
    /// one, else the exclusive lock's answer. A hit's value is cloned out
    /// of the lock.
    pub(crate) fn lookup(&self, now: Timestamp, cmd: &Cmd) -> Lookup<Value> {
        let shared = self
            .inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .cache
            .get(now, crate::calls::args(cmd));
        if let Some(value) = shared {
            return Lookup::Hit(Value::clone(&value));
        }
        let found = self.lock().cache.lookup(now, crate::calls::args(cmd));
        match found {
            Lookup::Hit(value) => Lookup::Hit(Value::clone(&value)),
            Lookup::Miss(reservation) => Lookup::Miss(reservation),
            Lookup::Bypass => Lookup::Bypass,
        }
    }

    /// The reply to a reserved read, with what the probe learned: kept if
    /// the core allows (a server error never is: its reservation is given
    /// back).
    fn fill(&self, reservation: Reservation, value: &Value, probe: Probe) {
        let (Some(read_at), false) = (probe.sent_at, matches!(value, Value::ServerError(_))) else {
            return self.cancel(reservation);
        };
        let bytes = value_bytes(value);
        let value = Arc::new(value.clone());
        let _ = self
            .lock()
            .cache
            .fill(read_at, reservation, value, bytes, &probe.ttls);
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

/// What a missed read learns on its way: the keys to ask `PTTL` of, and,
/// from the attempt that answered, when it was sent and their `PTTL`s.
#[derive(Debug, Default)]
struct Probe {
    keys: Vec<Vec<u8>>,
    sent_at: Option<Timestamp>,
    ttls: Vec<i64>,
}

tokio::task_local! {
    /// The probe of the missed read this task is running, if any: how the
    /// transport, several calls deep, hands the keys' `PTTL`s back without
    /// every layer between carrying them.
    static PROBE: RefCell<Probe>;
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

    /// Runs the read (`call`), its transport sending a `PTTL` of each key
    /// with it ([`send_probed`]); a reply fills the entry, a failure gives
    /// the reservation back (on drop).
    pub(crate) async fn run(
        mut self,
        call: impl std::future::Future<Output = Result<Value, RedisError>>,
    ) -> Result<Value, RedisError> {
        let keys = match &self.reservation {
            Some(r) => r.keys().map(<[u8]>::to_vec).collect(),
            None => Vec::new(),
        };
        let probe = RefCell::new(Probe {
            keys,
            ..Probe::default()
        });
        let (result, probe) = PROBE
            .scope(probe, async {
                let result = call.await;
                (result, PROBE.with(RefCell::take))
            })
            .await;
        if let Ok(value) = &result {
            if let Some(reservation) = self.reservation.take() {
                self.cache.fill(reservation, value, probe);
            }
        }
        result
    }
}

/// Is this task running a missed read (a probe in scope)? Other reads go
/// out as they are.
pub(crate) fn probing() -> bool {
    PROBE.try_with(|_| ()).is_ok()
}

/// Sends a cacheable read; when it is a missed read's (a probe is in
/// scope), with a `PTTL` of each of its keys in the same round trip,
/// recorded in the probe with the time it was sent. Answers with the
/// read's own reply.
pub(crate) async fn send_probed(
    conn: &mut redis::aio::MultiplexedConnection,
    cmd: &Cmd,
    now: Timestamp,
) -> Result<Value, RedisError> {
    let keys = PROBE
        .try_with(|p| p.borrow().keys.clone())
        .unwrap_or_default();
    if keys.is_empty() {
        return conn.send_packed_command(cmd).await;
    }
    let mut pipe = redis::pipe();
    pipe.add_command(cmd.clone());
    for key in &keys {
        pipe.cmd("PTTL").arg(&key[..]);
    }
    let mut values = conn.send_packed_commands(&pipe, 0, 1 + keys.len()).await?;
    let ttls = values
        .drain(1..)
        .map(|v| match v {
            Value::Int(ms) => ms,
            _ => i64::MIN, // not an answer PTTL gives: the core keeps nothing
        })
        .collect();
    let _ = PROBE.try_with(|p| {
        let mut p = p.borrow_mut();
        p.sent_at = Some(now);
        p.ttls = ttls;
    });
    Ok(values.pop().unwrap_or(Value::Nil))
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
///
/// In broadcast mode the server sends invalidations only after running
/// everything it read in one go (the `PING` with it), so there the `PING`
/// goes out once the write's reply is in ([`Fence::AfterReply`]).
pub(crate) async fn send_fenced(
    conn: &mut redis::aio::MultiplexedConnection,
    request: Request<'_>,
    fence: Fence,
) -> Result<Value, RedisError> {
    if fence == Fence::AfterReply {
        let reply = request.send(conn).await?;
        conn.send_packed_command(&redis::cmd("PING")).await?;
        return Ok(reply);
    }
    let (pipe, offset, count) = crate::durable::with_wait(request, false, redis::cmd("PING"));
    let mut values = conn.send_packed_commands(&pipe, offset, count).await?;
    values.pop(); // the fence's PONG
    match request {
        Request::Cmd(_) => Ok(values.pop().unwrap_or(Value::Nil)),
        Request::Pipeline { pipeline, .. } => {
            // Written out as MULTI ... EXEC: an aborted transaction's error
            // is the answer, as redis-rs would give it.
            if pipeline.is_transaction() {
                if let Some(Value::ServerError(e)) = values.last() {
                    return Err(RedisError::from(e.clone()));
                }
            }
            Ok(Value::Array(values))
        }
    }
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
