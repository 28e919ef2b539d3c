//! Resumable, sequenced state sync over Redis Streams: a [`Publisher`] that
//! applies each change in one atomic server-side step, a [`Follower`] that
//! catches up from its last sequence number (or takes a snapshot when it
//! must), and a [`SyncedMap`] mirror built on it.
//!
//! ```no_run
//! use std::time::Duration;
//! use relink::sync::{Publisher, SyncedMap, TopicOptions};
//! use relink::{Client, Config};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::new("redis://127.0.0.1:6379")?;
//! let client = Client::new(config.clone())?;
//! let publisher = Publisher::new(&client, "prices", TopicOptions::default())?;
//! let published = publisher.set(b"AAPL", b"189.30").await?; // one atomic step: next seq
//!
//! // A local mirror, on a client of its own (its blocking reads hold a connection).
//! let mut prices = SyncedMap::new(Client::new(config)?, "prices", TopicOptions::default())?;
//! prices.wait_for_seq(published.seq, Duration::from_secs(5)).await;
//! assert_eq!(prices.get(b"AAPL").as_deref(), Some(&b"189.30"[..]));
//! println!("mirror at {:?}", prices.version()); // (epoch, seq)
//! # Ok(())
//! # }
//! ```
//!
//! # The topic in Redis
//!
//! A topic `T` is four keys sharing the hash tag `{T}` (so they live in one
//! Cluster slot and one script can touch them all):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `relink:{T}:meta` | hash | `epoch` (random u64, made when the topic is created), `seq` (the watermark) |
//! | `relink:{T}:state` | hash | the replicated key/value state |
//! | `relink:{T}:log` | stream | the change log; entry ID `0-<seq>`, fields `e` (epoch), `op`, `k`, `v` |
//! | `relink:{T}:ids` | sorted set | recent publish ids (score: their seq), for exactly-once retries |
//!
//! A publish is one Lua script (loaded once; redis-rs reloads it after a
//! restart that lost it): if its id was seen, return the sequence number it
//! got; else take the next sequence number, append to the log (trimmed to the
//! retention, approximately), apply to the state, remember the id.
//!
//! # What the follower decides, and what it does not
//!
//! Every decision (apply or not, resume incrementally or take a snapshot, and
//! why) is `relink_core::sync`'s; this module reads Redis and follows the plan.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use futures_util::Stream;
use redis::{Script, Value};
use relink_core::sync::{Epoch, Offer, ResumePlan, ResyncReason, ServerPosition, SyncCursor};
use relink_core::{Backoff, BackoffPolicy};
use tokio::sync::{mpsc, watch};

use crate::{Client, Error};

/// A connection a topic runs on: a [`Client`] or a
/// [`ClusterClient`](crate::cluster::ClusterClient) (a topic's keys share one
/// hash slot, so every script runs on one node).
pub trait SyncConnection: redis::aio::ConnectionLike + Clone + Send + Sync + 'static {
    /// The same connection with every command declared idempotent (safe to
    /// send again after an unknown outcome).
    fn idempotent(&self) -> Self;
}

impl SyncConnection for Client {
    fn idempotent(&self) -> Self {
        Client::idempotent(self)
    }
}

const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[7]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
if ARGV[4] ~= '' then
  local prev = redis.call('ZSCORE', KEYS[4], ARGV[4])
  if prev then return {epoch, tonumber(prev), 1} end
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '0-' .. seq,
  'e', epoch, 'op', ARGV[1], 'k', ARGV[2], 'v', ARGV[3])
if ARGV[1] == 'set' then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
elseif ARGV[1] == 'del' then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[4], seq, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', seq - tonumber(ARGV[6]))
end
return {epoch, seq, 0}
"#;

/// Epoch, watermark and the oldest log entry, in one atomic read.
const POSITION: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if not meta[1] then return false end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first_id = false
if first[1] then first_id = first[1][1] end
return {meta[1], meta[2], first_id}
"#;

/// State, epoch and watermark, in one atomic read.
const SNAPSHOT: &str = r#"
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if not meta[1] then return false end
return {meta[1], meta[2], redis.call('HGETALL', KEYS[2])}
"#;

/// The snapshot script's reply: epoch, watermark, every key and value.
type SnapshotReply = Option<(String, u64, Vec<(Vec<u8>, Vec<u8>)>)>;

/// An `XREAD` reply: per stream, its entries (id, field/value pairs).
type XreadReply = Option<Vec<(String, Vec<(String, Vec<(String, Value)>)>)>>;

/// The Redis keys of one topic.
#[derive(Debug, Clone)]
struct Keys {
    meta: String,
    state: String,
    log: String,
    ids: String,
}

impl Keys {
    fn new(topic: &str) -> Result<Keys, Error> {
        if topic.is_empty() || topic.contains(['{', '}']) {
            return Err(Error::config(
                "topic",
                "a topic name must be non-empty and contain no `{` or `}`",
            ));
        }
        Ok(Keys {
            meta: format!("relink:{{{topic}}}:meta"),
            state: format!("relink:{{{topic}}}:state"),
            log: format!("relink:{{{topic}}}:log"),
            ids: format!("relink:{{{topic}}}:ids"),
        })
    }
}

/// What a publish did: the topic's epoch and the sequence number it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The topic's epoch.
    pub epoch: Epoch,
    /// The sequence number of this change.
    pub seq: u64,
}

/// One change in a topic's log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// `key` now holds `value`.
    Set {
        /// The key.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
    },
    /// `key` was removed.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// An event that does not touch the state (an opaque payload).
    Message {
        /// The payload, as published.
        payload: Vec<u8>,
    },
}

/// What a [`Follower`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncEvent {
    /// The whole state at `seq` of `epoch`: replace your copy with it.
    Snapshot {
        /// The topic's epoch.
        epoch: Epoch,
        /// The watermark the state reflects.
        seq: u64,
        /// Every key and value.
        entries: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// The next change, in order, exactly once.
    Update {
        /// The topic's epoch.
        epoch: Epoch,
        /// Its sequence number (the previous one plus one).
        seq: u64,
        /// What changed.
        change: Change,
    },
    /// The follower could not continue from the log and takes a snapshot (the
    /// [`SyncEvent::Snapshot`] follows at once).
    Resynced {
        /// Why.
        reason: ResyncReason,
        /// Where the follower was.
        from: SyncCursor,
        /// Where the snapshot puts it.
        to: SyncCursor,
    },
}

impl SyncEvent {
    /// The cursor after this event is applied: store it to resume from here
    /// after a restart of your process.
    pub fn cursor_after(&self) -> Option<SyncCursor> {
        match self {
            SyncEvent::Snapshot { epoch, seq, .. } | SyncEvent::Update { epoch, seq, .. } => {
                Some(SyncCursor::at(*epoch, *seq))
            }
            SyncEvent::Resynced { .. } => None,
        }
    }
}

/// Settings of a topic, shared by its publisher and followers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicOptions {
    /// Log entries kept (approximately: Redis trims whole nodes); a follower
    /// away for longer resyncs from a snapshot.
    pub retention: u64,
    /// How many recent publish ids are remembered for exactly-once retries.
    pub dedup_window: u64,
    /// Entries read per batch by a follower.
    pub batch: usize,
    /// How long one blocking read waits. Keep it well under the client's
    /// heartbeat timeout: a blocked read holds the connection's pings.
    pub block: Duration,
}

impl Default for TopicOptions {
    fn default() -> Self {
        TopicOptions {
            retention: 10_000,
            dedup_window: 100_000,
            batch: 1_000,
            block: Duration::from_millis(400),
        }
    }
}

impl TopicOptions {
    /// Sets the retention (log entries kept).
    pub fn with_retention(mut self, retention: u64) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the follower's batch size.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Sets how long one blocking read waits.
    pub fn with_block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if self.retention == 0 {
            return Err(Error::config("retention", "must be at least 1"));
        }
        if self.dedup_window == 0 {
            return Err(Error::config("dedup_window", "must be at least 1"));
        }
        if self.batch == 0 {
            return Err(Error::config("batch", "must be at least 1"));
        }
        if self.block.as_millis() == 0 {
            return Err(Error::config("block", "must be at least 1ms"));
        }
        Ok(())
    }
}

/// Publishes changes to a topic. Cheap to clone.
#[derive(Clone)]
pub struct Publisher<C: SyncConnection = Client> {
    client: C,
    keys: Arc<Keys>,
    options: TopicOptions,
    script: Arc<Script>,
    id_prefix: u64,
    counter: Arc<AtomicU64>,
}

impl<C: SyncConnection> fmt::Debug for Publisher<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.keys.meta)
            .finish()
    }
}

impl<C: SyncConnection> Publisher<C> {
    /// A publisher of `topic` through `client`. The topic is created (with a
    /// new random epoch) by the first publish.
    pub fn new(client: &C, topic: &str, options: TopicOptions) -> Result<Publisher<C>, Error> {
        options.validate()?;
        Ok(Publisher {
            // Every publish carries an id checked server-side, so sending it
            // again after an unknown outcome cannot apply it twice.
            client: client.idempotent(),
            keys: Arc::new(Keys::new(topic)?),
            options,
            script: Arc::new(Script::new(PUBLISH)),
            id_prefix: random_u64(),
            counter: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Sets `key` to `value`.
    pub async fn set(&self, key: &[u8], value: &[u8]) -> Result<Published, Error> {
        self.run("set", key, value).await
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &[u8]) -> Result<Published, Error> {
        self.run("del", key, b"").await
    }

    /// Appends an opaque event that does not touch the state.
    pub async fn publish(&self, payload: &[u8]) -> Result<Published, Error> {
        self.run("pub", b"", payload).await
    }

    /// Deletes the topic (state, log, epoch): followers resync to the new
    /// epoch the next publish creates.
    pub async fn reset(&self) -> Result<(), Error> {
        let k = &*self.keys;
        redis::cmd("DEL")
            .arg(&k.meta)
            .arg(&k.state)
            .arg(&k.log)
            .arg(&k.ids)
            .exec_async(&mut self.client.clone())
            .await
            .map_err(Error::from)
    }

    async fn run(&self, op: &str, key: &[u8], value: &[u8]) -> Result<Published, Error> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:016x}-{n:x}", self.id_prefix);
        let k = &*self.keys;
        let reply: (String, u64, u8) = self
            .script
            .key(&k.meta)
            .key(&k.state)
            .key(&k.log)
            .key(&k.ids)
            .arg(op)
            .arg(key)
            .arg(value)
            .arg(&id)
            .arg(self.options.retention)
            .arg(self.options.dedup_window)
            .arg(random_u64().to_string())
            .invoke_async(&mut self.client.clone())
            .await?;
        Ok(Published {
            epoch: parse_epoch(&reply.0)?,
            seq: reply.1,
        })
    }
}

fn parse_epoch(text: &str) -> Result<Epoch, Error> {
    text.parse::<u64>().map(Epoch).map_err(|_| {
        Error::Redis(crate::classify::unexpected_data(
            "the topic's epoch is not a number (someone else wrote to relink's keys)",
            text.to_string(),
        ))
    })
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5EED);
    h.finish()
}

/// Counters of a follower, for dashboards and tests.
#[derive(Debug, Default)]
struct FollowerCounters {
    updates: AtomicU64,
    snapshots: AtomicU64,
    duplicates: AtomicU64,
}

/// Follows a topic: a stream of [`SyncEvent`]s in which every update
/// appears exactly once, in order, across reconnects, restarts and resets.
///
/// It runs on its own [`Client`] (a blocking read holds its connection; don't
/// share it with latency-sensitive commands). Errors that do not stop it
/// (a server answering with the wrong type at the topic's keys) are yielded
/// as `Err` items, and it keeps trying.
#[derive(Debug)]
pub struct Follower {
    rx: mpsc::Receiver<Result<SyncEvent, Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    /// Follows `topic` from `from` (None: from a snapshot). A cursor from
    /// another epoch leads to a resync, never to a wrong state.
    pub fn follow<C: SyncConnection>(
        client: C,
        topic: &str,
        from: Option<SyncCursor>,
        options: TopicOptions,
    ) -> Result<Follower, Error> {
        options.validate()?;
        let keys = Keys::new(topic)?;
        let (tx, rx) = mpsc::channel(options.batch.clamp(16, 4096));
        let reader = Reader {
            // Everything the follower sends only reads (its scripts too), so
            // it may be sent again after an unknown outcome.
            client: client.idempotent(),
            keys,
            options,
            cursor: from.unwrap_or_default(),
            tx,
            counters: Arc::default(),
            // The pause after a failed step: the core's backoff, with the
            // defaults of a reconnect (the outage itself is ridden out by
            // the client's call policy; this only paces the retries).
            pause: Backoff::new(BackoffPolicy::default(), crate::config::random_seed()),
        };
        let task = tokio::spawn(reader.run());
        Ok(Follower { rx, task })
    }

    /// The next event; `None` once the follower stopped (its client shut down).
    pub async fn next_event(&mut self) -> Option<Result<SyncEvent, Error>> {
        self.rx.recv().await
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for Follower {
    type Item = Result<SyncEvent, Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

struct Reader<C> {
    client: C,
    keys: Keys,
    options: TopicOptions,
    cursor: SyncCursor,
    tx: mpsc::Sender<Result<SyncEvent, Error>>,
    counters: Arc<FollowerCounters>,
    pause: Backoff,
}

/// Why the read loop stopped and the plan must be made again.
enum Replan {
    /// Something changed (a gap, another epoch, an empty read): look again.
    Again,
    /// The consumer is gone.
    Stop,
}

impl<C: SyncConnection> Reader<C> {
    async fn run(mut self) {
        let position = Script::new(POSITION);
        // Bounded by the consumer: the loop ends when the Follower is dropped
        // (send fails) or the client shuts down.
        loop {
            if self.tx.is_closed() {
                return;
            }
            let pos = match self.position(&position).await {
                Ok(pos) => pos,
                Err(e) => {
                    if self.stopped(&e) {
                        return;
                    }
                    if self.report(e).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Some(pos) = pos else {
                // The topic does not exist (yet, or any more): wait for its
                // log to appear, on the server (a blocking read of the
                // stream from its end), for at most one read's block time.
                if let Err(e) = self.await_log().await {
                    if self.stopped(&e) || self.report(e).await.is_err() {
                        return;
                    }
                }
                continue;
            };
            let step = match self.cursor.resume_plan(&pos) {
                ResumePlan::FullResync { reason } => self.resync(reason).await,
                _ => self.read_log(pos.epoch).await,
            };
            match step {
                Ok(Replan::Again) => self.pause.reset(),
                Ok(Replan::Stop) => return,
                Err(e) => {
                    if self.stopped(&e) || self.report(e).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    fn stopped(&self, e: &Error) -> bool {
        matches!(e, Error::Shutdown)
    }

    /// Pauses before trying again; an error the server gave (not a passing
    /// outage, which the client rides out) is handed to the consumer too.
    async fn report(&mut self, e: Error) -> Result<(), ()> {
        let from_server = match &e {
            Error::Redis(r) => Error::outcome_of(r) == relink_core::Outcome::Rejected,
            _ => false,
        };
        if from_server {
            tracing::warn!(error = %e, topic = %self.keys.meta, "relink follower error; retrying");
            self.tx.send(Err(e)).await.map_err(|_| ())?;
        } else {
            tracing::debug!(error = %e, topic = %self.keys.meta, "relink follower read failed; retrying");
        }
        // The delay is the core's; the backoff never gives up (no limits).
        let delay = self.pause.next_delay(Duration::ZERO).unwrap_or_default();
        let until = tokio::time::Instant::now() + delay;
        tokio::time::sleep_until(until).await;
        Ok(())
    }

    /// Waits on the server, at most `block`, for the topic's log to get an
    /// entry (the first publish creates it).
    async fn await_log(&mut self) -> Result<(), Error> {
        let _: redis::Value = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(u64::try_from(self.options.block.as_millis()).unwrap_or(u64::MAX))
            .arg("STREAMS")
            .arg(&self.keys.log)
            .arg("$")
            .query_async(&mut self.client)
            .await?;
        Ok(())
    }

    async fn position(&mut self, script: &Script) -> Result<Option<ServerPosition>, Error> {
        let reply: Option<(String, u64, Option<String>)> = script
            .key(&self.keys.meta)
            .key(&self.keys.log)
            .invoke_async(&mut self.client)
            .await?;
        let Some((epoch, last, first)) = reply else {
            return Ok(None);
        };
        let first = first.map(|id| parse_seq(&id)).transpose()?;
        Ok(Some(ServerPosition {
            epoch: parse_epoch(&epoch)?,
            first,
            last,
        }))
    }

    async fn resync(&mut self, reason: ResyncReason) -> Result<Replan, Error> {
        let reply: SnapshotReply = Script::new(SNAPSHOT)
            .key(&self.keys.meta)
            .key(&self.keys.state)
            .invoke_async(&mut self.client)
            .await?;
        let Some((epoch, seq, entries)) = reply else {
            return Ok(Replan::Again); // deleted in between: look again
        };
        let epoch = parse_epoch(&epoch)?;
        let from = self.cursor;
        self.cursor.reset_to(epoch, seq);
        self.counters.snapshots.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%reason, %epoch, seq, topic = %self.keys.meta, "relink follower resynced from a snapshot");
        let to = self.cursor;
        if self
            .tx
            .send(Ok(SyncEvent::Resynced { reason, from, to }))
            .await
            .is_err()
            || self
                .tx
                .send(Ok(SyncEvent::Snapshot {
                    epoch,
                    seq,
                    entries,
                }))
                .await
                .is_err()
        {
            return Ok(Replan::Stop);
        }
        Ok(Replan::Again)
    }

    /// Reads the log after the cursor until something calls for a new plan.
    async fn read_log(&mut self, epoch: Epoch) -> Result<Replan, Error> {
        // Bounded: returns on the first empty read, gap, epoch change or error.
        loop {
            let after = format!("0-{}", self.cursor.seq());
            let reply: XreadReply = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(self.options.batch)
                .arg("BLOCK")
                .arg(self.options.block.as_millis() as u64)
                .arg("STREAMS")
                .arg(&self.keys.log)
                .arg(&after)
                .query_async(&mut self.client)
                .await?;
            let entries = reply
                .and_then(|streams| streams.into_iter().next())
                .map(|(_, entries)| entries)
                .unwrap_or_default();
            if entries.is_empty() {
                // Quiet: check the topic is still what we follow (reset,
                // server restarted without its history, trimmed).
                return Ok(Replan::Again);
            }
            for (id, fields) in entries {
                let seq = parse_seq(&id)?;
                let (entry_epoch, change) = parse_entry(fields, epoch)?;
                match self.cursor.offer(entry_epoch, seq) {
                    Offer::Apply => {
                        self.counters.updates.fetch_add(1, Ordering::Relaxed);
                        let event = SyncEvent::Update {
                            epoch: entry_epoch,
                            seq,
                            change,
                        };
                        if self.tx.send(Ok(event)).await.is_err() {
                            return Ok(Replan::Stop);
                        }
                    }
                    Offer::Duplicate => {
                        self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => return Ok(Replan::Again),
                }
            }
        }
    }
}

fn parse_seq(id: &str) -> Result<u64, Error> {
    id.strip_prefix("0-")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| foreign(&format!("log entry id `{id}` is not relink's `0-<seq>`")))
}

fn parse_entry(fields: Vec<(String, Value)>, epoch: Epoch) -> Result<(Epoch, Change), Error> {
    let mut e = None;
    let (mut op, mut key, mut value) = (None, Vec::new(), Vec::new());
    for (name, v) in fields {
        let bytes: Vec<u8> = redis::FromRedisValue::from_redis_value(v)
            .map_err(|e| foreign(&format!("log entry field `{name}`: {e}")))?;
        match name.as_str() {
            "e" => {
                e = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .map(Epoch)
            }
            "op" => op = Some(bytes),
            "k" => key = bytes,
            "v" => value = bytes,
            _ => {}
        }
    }
    let change = match op.as_deref() {
        Some(b"set") => Change::Set { key, value },
        Some(b"del") => Change::Delete { key },
        Some(b"pub") => Change::Message { payload: value },
        _ => return Err(foreign("log entry without a known `op`")),
    };
    Ok((e.unwrap_or(epoch), change))
}

fn foreign(what: &str) -> Error {
    Error::Redis(crate::classify::unexpected_data(
        "unexpected data at a relink topic's keys (someone else wrote there)",
        what.to_string(),
    ))
}

/// A local mirror of a topic's state, kept in step by a [`Follower`].
///
/// Reads are local and never wait on Redis. [`SyncedMap::changed`] waits for
/// the next version.
#[derive(Clone)]
pub struct SyncedMap {
    inner: Arc<MapInner>,
    version: watch::Receiver<SyncCursor>,
}

struct MapInner {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
    resyncs: AtomicU64,
    updates: AtomicU64,
    errors: AtomicU64,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MapInner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for SyncedMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncedMap")
            .field("version", &*self.version.borrow())
            .field("len", &self.len())
            .finish()
    }
}

impl SyncedMap {
    /// Mirrors `topic`, following it on `client` (give it a client of its own).
    pub fn new<C: SyncConnection>(
        client: C,
        topic: &str,
        options: TopicOptions,
    ) -> Result<SyncedMap, Error> {
        let mut follower = Follower::follow(client, topic, None, options)?;
        let (version_tx, version) = watch::channel(SyncCursor::new());
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<MapInner>| {
            let weak = weak.clone();
            let task = tokio::spawn(async move {
                while let Some(item) = follower.next_event().await {
                    let Some(inner) = weak.upgrade() else { return };
                    inner.apply(item, &version_tx);
                }
            });
            MapInner {
                map: RwLock::default(),
                resyncs: AtomicU64::new(0),
                updates: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                task,
            }
        });
        Ok(SyncedMap { inner, version })
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the mirror is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of every key and value, in key order.
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let map = self
            .inner
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// The (epoch, seq) the mirror reflects.
    pub fn version(&self) -> SyncCursor {
        *self.version.borrow()
    }

    /// Waits until the version changes (bounded by `timeout`); false on timeout.
    pub async fn changed(&mut self, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.version.changed()).await,
            Ok(Ok(()))
        )
    }

    /// Waits until the mirror reflects at least `seq` (bounded by `timeout`).
    pub async fn wait_for_seq(&mut self, seq: u64, timeout: Duration) -> bool {
        matches!(
            tokio::time::timeout(timeout, self.version.wait_for(|v| v.seq() >= seq)).await,
            Ok(Ok(_))
        )
    }

    /// Updates applied, full resyncs taken, errors seen so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (
            get(&self.inner.updates),
            get(&self.inner.resyncs),
            get(&self.inner.errors),
        )
    }
}

impl MapInner {
    fn apply(&self, item: Result<SyncEvent, Error>, version: &watch::Sender<SyncCursor>) {
        let event = match item {
            Ok(event) => event,
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        {
            let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
            match &event {
                SyncEvent::Snapshot { entries, .. } => {
                    map.clear();
                    map.extend(entries.iter().cloned());
                }
                SyncEvent::Update { change, .. } => {
                    self.updates.fetch_add(1, Ordering::Relaxed);
                    match change {
                        Change::Set { key, value } => {
                            map.insert(key.clone(), value.clone());
                        }
                        Change::Delete { key } => {
                            map.remove(key);
                        }
                        Change::Message { .. } => {}
                    }
                }
                SyncEvent::Resynced { .. } => {
                    self.resyncs.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(cursor) = event.cursor_after() {
            version.send_replace(cursor);
        }
    }
}
