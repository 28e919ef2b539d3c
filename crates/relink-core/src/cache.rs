//! Client-side caching that stays coherent across outages.
//!
//! Redis 6+ tracks the keys a connection reads (`CLIENT TRACKING ON`) and
//! pushes an invalidation on that same connection when one of them changes
//! (RESP3), or for every key under a set of prefixes (`BCAST PREFIX`).
//! Invalidations sent while the connection is down are lost, so a cache
//! that keeps its entries across a gap can serve a value that changed
//! during it, for as long as it likes. [`Cache`] makes that impossible:
//!
//! - it serves only while the connection that carries its invalidations is
//!   up with tracking on ([`CacheState::Serving`]); the driver reports the
//!   connection's loss ([`Cache::lost`]) the moment it knows, and the cache
//!   stops serving and drops every entry then;
//! - a new connection ([`Cache::connected`], told only once tracking is on
//!   there) starts a new *epoch*; a read sent before it can never fill the
//!   cache after it, and no entry older than the last gap is ever served;
//! - a read reserves its entry before it is sent ([`Cache::lookup`] returns
//!   a [`Reservation`]); an invalidation of one of its keys arriving before
//!   the reply is delivered drops the reservation, and the reply is then
//!   not kept ([`Cache::fill`] says so). On one connection the server sends
//!   the reply of a read before the invalidation of any write after it, so
//!   a value kept is never older than an invalidation already processed;
//! - the server's null invalidation (`FLUSHALL`, `FLUSHDB`) empties it.
//!
//! What is left is the window before the driver knows the connection is
//! lost: a silent network partition is noticed by the heartbeat (its
//! bound), a closed socket at once.
//!
//! Eviction is least recently used, by entries and by bytes (keys, command
//! arguments and the value's size as the driver counts it). Each entry also
//! expires after [`CacheConfig::ttl`], a safety net for keys the server
//! expires lazily (Redis invalidates an expired key only once it deletes
//! it). Lookups, reservations and fills are `O(log n)`.
//!
//! Written here rather than taken from redis-rs's `cache-aio`: that cache
//! lives inside one redis-rs connection, so its entries, statistics and
//! serving decision cannot outlive or precede the connection (relink stops
//! serving when *it* decides the connection is lost, which may be before
//! redis-rs notices), it bounds entries but not bytes, has no broadcast
//! mode, and sends a `PTTL` with every miss.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use crate::commands::{cacheable, CacheKeys};
use crate::error::ConfigError;
use crate::time::Timestamp;

/// How the server tells the client what changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TrackingMode {
    /// `CLIENT TRACKING ON`: the server remembers the keys this connection
    /// read and tells it when one of them changes (once per read).
    #[default]
    Default,
    /// `CLIENT TRACKING ON BCAST PREFIX ...`: the server tells every change
    /// of a key under the prefixes (every key without prefixes), read or
    /// not. Only keys under the prefixes are cached. Costs the server
    /// nothing per key read; costs the client one message per change.
    Broadcast,
}

/// Client-side cache settings. Plain data; [`validate`](Self::validate)d.
///
/// Serde form: `{ max_entries = 10000, max_bytes = 67108864, ttl = "60s",
/// mode = "default", prefixes = [] }`, every field optional.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The most entries kept (a reservation counts as one).
    pub max_entries: u32,
    /// The most bytes kept: keys, arguments and values.
    pub max_bytes: u64,
    /// How long an entry may be served at most, invalidated or not.
    #[serde(with = "crate::duration::human")]
    pub ttl: Duration,
    /// How the server reports changes.
    pub mode: TrackingMode,
    /// With [`TrackingMode::Broadcast`]: the key prefixes tracked (and
    /// cached). Empty: every key.
    pub prefixes: Vec<String>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 10_000,
            max_bytes: 64 * 1024 * 1024,
            ttl: Duration::from_secs(60),
            mode: TrackingMode::Default,
            prefixes: Vec::new(),
        }
    }
}

impl CacheConfig {
    /// The most prefixes a broadcast cache may track.
    pub const MAX_PREFIXES: usize = 64;

    /// With at most `max_entries` entries.
    pub fn with_max_entries(mut self, max_entries: u32) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// With at most `max_bytes` bytes.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// With entries served for at most `ttl`.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// In broadcast mode ([`TrackingMode::Broadcast`]), tracking (and
    /// caching) the keys under `prefixes` (none: every key).
    pub fn with_broadcast<S: Into<String>>(
        mut self,
        prefixes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.mode = TrackingMode::Broadcast;
        self.prefixes = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_entries == 0 {
            return Err(ConfigError::invalid(
                "cache.max_entries",
                "must be at least 1",
            ));
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::invalid(
                "cache.max_bytes",
                "must be at least 1",
            ));
        }
        if self.ttl < Duration::from_millis(1) {
            return Err(ConfigError::invalid("cache.ttl", "must be at least 1ms"));
        }
        if !self.prefixes.is_empty() && self.mode != TrackingMode::Broadcast {
            return Err(ConfigError::invalid(
                "cache.prefixes",
                "prefixes need `mode = \"broadcast\"` (the default mode tracks the keys read)",
            ));
        }
        if self.prefixes.len() > Self::MAX_PREFIXES {
            return Err(ConfigError::invalid(
                "cache.prefixes",
                "at most 64 prefixes",
            ));
        }
        if self.prefixes.iter().any(String::is_empty) {
            return Err(ConfigError::invalid(
                "cache.prefixes",
                "an empty prefix; leave `prefixes` out to track every key",
            ));
        }
        // The server refuses overlapping prefixes (one a prefix of another).
        for (i, a) in self.prefixes.iter().enumerate() {
            for b in &self.prefixes[i + 1..] {
                if a.starts_with(b.as_str()) || b.starts_with(a.as_str()) {
                    return Err(ConfigError::invalid(
                        "cache.prefixes",
                        "prefixes overlap (one starts with another); keep the shorter",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The arguments of the command that turns tracking on for a new
    /// connection, before anything is read on it: `CLIENT TRACKING ON`,
    /// then `BCAST` and a `PREFIX` per prefix in broadcast mode.
    pub fn tracking_command(&self) -> Vec<&[u8]> {
        let mut args: Vec<&[u8]> = Vec::from([&b"CLIENT"[..], b"TRACKING", b"ON"]);
        if self.mode == TrackingMode::Broadcast {
            args.push(b"BCAST");
            for prefix in &self.prefixes {
                args.push(b"PREFIX");
                args.push(prefix.as_bytes());
            }
        }
        args
    }

    /// How writes on the tracking connection are fenced in this mode.
    pub fn fence(&self) -> Fence {
        match self.mode {
            TrackingMode::Default => Fence::Pipelined,
            TrackingMode::Broadcast => Fence::AfterReply,
        }
    }

    /// Is `key` tracked by the server in this mode?
    fn tracks(&self, key: &[u8]) -> bool {
        self.mode == TrackingMode::Default
            || self.prefixes.is_empty()
            || self.prefixes.iter().any(|p| key.starts_with(p.as_bytes()))
    }
}

/// Does the server at `redis_version` (`INFO server`'s `redis_version`,
/// which Valkey reports too) deliver every invalidation as a push of its
/// own? From Redis 7.0.5 on. Before 7.0, an invalidation caused by the
/// client's own command (a write inside `MULTI`/`EXEC`, a key expired
/// lazily by an `MGET`) was written *inside* that command's reply, where
/// no push handler sees it; before 7.0.5, `FLUSHALL`/`FLUSHDB`/`SWAPDB`
/// inside a transaction did the same. On such a server the cache does not
/// serve (and tracking is not turned on). An unreadable version is
/// treated as too old.
pub fn server_supported(redis_version: &str) -> bool {
    let mut parts = redis_version.trim().split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) => (major, minor, patch) >= (7, 0, 5),
        _ => false,
    }
}

/// Does the command `args` (name first) change its connection's state in
/// a way that silences or confuses the cache's invalidations (`CLIENT
/// TRACKING OFF`, `RESET`, `HELLO 2`, `SELECT`, `AUTH`, ...: every command
/// whose effect is [`ConnectionEffect::Lasting`](crate::commands::ConnectionEffect::Lasting))?
/// On a client whose cache is on, such a command is refused on the shared
/// connection (an exclusive connection takes it).
pub fn breaks_tracking<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> bool {
    crate::commands::connection_effect(args) == crate::commands::ConnectionEffect::Lasting
}

/// Must a write (`args`, name first) on the connection that carries the
/// invalidations wait until the server's invalidation of what it wrote
/// has been read, before it returns (read-your-writes)? Every command but
/// the read-only ones, and `PFCOUNT`, which may rewrite its key.
pub fn needs_fence(name: &[u8]) -> bool {
    !crate::commands::is_read_only(name) || name.eq_ignore_ascii_case(b"PFCOUNT")
}

/// How a write's fence is sent: in default tracking mode the server sends
/// a connection's invalidation of its own write right after the write
/// (before it runs the next command), so a `PING` in the same round trip
/// suffices; in broadcast mode it sends invalidations only once it has
/// run every command it read in one go, so the `PING` must go out after
/// the write's reply came back (one more round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// A `PING` pipelined right behind the write.
    Pipelined,
    /// A `PING` sent once the write's reply is in.
    AfterReply,
}

/// Whether the cache answers reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheState {
    /// No connection with tracking on: every read goes to the server, and
    /// nothing is kept.
    Suspended,
    /// The connection carrying the invalidations is up with tracking on.
    Serving,
}

/// What the cache has done, since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Cacheable reads sent to the server while serving.
    pub misses: u64,
    /// Keys the server invalidated (a null invalidation counts one).
    pub invalidations: u64,
    /// Times the cache was emptied because its connection was lost.
    pub gap_flushes: u64,
    /// Entries dropped to stay within the bounds.
    pub evictions: u64,
    /// Entries now (reservations included).
    pub entries: u64,
    /// Bytes now.
    pub bytes: u64,
}

impl CacheStats {
    /// The counts accumulated since `earlier`; the sizes (`entries`,
    /// `bytes`) as they are now.
    pub fn since(&self, earlier: &CacheStats) -> CacheStats {
        CacheStats {
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
            invalidations: self.invalidations.saturating_sub(earlier.invalidations),
            gap_flushes: self.gap_flushes.saturating_sub(earlier.gap_flushes),
            evictions: self.evictions.saturating_sub(earlier.evictions),
            entries: self.entries,
            bytes: self.bytes,
        }
    }
}

/// A read's claim on its entry, taken before it is sent; given back to
/// [`Cache::fill`] with the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    key: Arc<[u8]>,
    /// The Redis keys the read depends on, in order.
    keys: Vec<Arc<[u8]>>,
    token: u64,
    epoch: u64,
}

impl Reservation {
    /// The Redis keys the read depends on, in the order the command names
    /// them: the driver sends a `PTTL` for each with the read.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.keys.iter().map(|k| &k[..])
    }
}

/// What to do with a read.
#[derive(Debug)]
pub enum Lookup<V> {
    /// Answer with this value; nothing is sent.
    Hit(V),
    /// Send the read, then give the reply to [`Cache::fill`].
    Miss(Reservation),
    /// Send the read and keep nothing: not a cacheable command, or the
    /// cache is not serving.
    Bypass,
}

/// Why [`Cache::fill`] did not keep a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The connection was lost (or replaced) since the read was reserved.
    Gap,
    /// A key of the read was invalidated (or the entry evicted) since.
    Invalidated,
    /// The entry alone is larger than [`CacheConfig::max_bytes`].
    TooLarge,
    /// The keys' `PTTL`s did not come with the reply (or a key expires at
    /// once): without them, how long the value lives is unknown.
    NoTtl,
}

/// Bytes an entry costs beyond its key and value: its bookkeeping, counted
/// so that many tiny entries are bounded too.
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Debug)]
struct Entry<V> {
    /// Its own key (shared with the maps that name it).
    key: Arc<[u8]>,
    /// `None`: reserved, the read not answered yet.
    value: Option<V>,
    /// The reservation that may fill it.
    token: u64,
    /// Its latest use (a hit sets it under a shared borrow).
    tick: AtomicU64,
    /// The tick it is filed under in the LRU order: its latest use when it
    /// was filed; a use since moves it only when eviction reaches it.
    queued: u64,
    /// The Redis keys it depends on.
    keys: Vec<Arc<[u8]>>,
    bytes: u64,
    expires: Timestamp,
    epoch: u64,
}

/// The client-side cache: the serving decision and the entries. Generic
/// over the value (the driver's reply type).
#[derive(Debug)]
pub struct Cache<V> {
    config: CacheConfig,
    state: CacheState,
    /// Counts the connections the cache served on; entries carry the one
    /// they were read on.
    epoch: u64,
    /// Source of reservation tokens and LRU ticks.
    clock: AtomicU64,
    /// Hits, counted under a shared borrow.
    hits: AtomicU64,
    entries: BTreeMap<Arc<[u8]>, Entry<V>>,
    /// Redis key -> the entries that depend on it.
    by_key: BTreeMap<Arc<[u8]>, Vec<Arc<[u8]>>>,
    /// LRU tick -> entry.
    lru: BTreeMap<u64, Arc<[u8]>>,
    bytes: u64,
    stats: CacheStats,
}

impl<V: Clone> Cache<V> {
    /// An empty, suspended cache.
    pub fn new(config: CacheConfig) -> Result<Cache<V>, ConfigError> {
        config.validate()?;
        Ok(Cache {
            config,
            state: CacheState::Suspended,
            epoch: 0,
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            entries: BTreeMap::new(),
            by_key: BTreeMap::new(),
            lru: BTreeMap::new(),
            bytes: 0,
            stats: CacheStats::default(),
        })
    }

    /// Its settings.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// Serving or suspended.
    pub fn state(&self) -> CacheState {
        self.state
    }

    /// The epoch: how many connections the cache has served on.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Counters and sizes.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            entries: self.entries.len() as u64,
            bytes: self.bytes,
            ..self.stats
        }
    }

    /// A new connection is up and tracking is on there: start a new epoch,
    /// empty, and serve.
    pub fn connected(&mut self) {
        self.clear();
        self.epoch += 1;
        self.state = CacheState::Serving;
    }

    /// The connection carrying the invalidations is lost (closed, declared
    /// dead, replaced, or the client is shutting down): stop serving and
    /// drop everything, at once.
    pub fn lost(&mut self) {
        if self.state == CacheState::Serving {
            self.stats.gap_flushes += 1;
        }
        self.state = CacheState::Suspended;
        self.clear();
    }

    /// The value of the command `args` (name first) at `now`, if the cache
    /// holds a fresh one: a hit. Needs only a shared borrow, so that
    /// concurrent hits need not wait for each other (the driver holds a
    /// read lock); `None` means: ask [`lookup`](Self::lookup).
    pub fn get<'a, I>(&self, now: Timestamp, args: I) -> Option<V>
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: Clone,
    {
        let args = args.into_iter();
        if self.state != CacheState::Serving || args.clone().next().and_then(cacheable).is_none() {
            return None;
        }
        let value = with_encoded(args, |key| {
            let entry = self.entries.get(key)?;
            let fresh = entry.expires > now && entry.epoch == self.epoch;
            let value = entry.value.as_ref().filter(|_| fresh)?;
            let tick = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
            entry.tick.store(tick, Ordering::Relaxed);
            Some(value.clone())
        })?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(value)
    }

    /// What to do with the command `args` (name first) at `now`: a hit
    /// (as [`get`](Self::get)), or a miss and its reservation, or bypass.
    pub fn lookup<'a, I>(&mut self, now: Timestamp, args: I) -> Lookup<V>
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: Clone,
    {
        let args = args.into_iter();
        let Some(spec) = args.clone().next().and_then(cacheable) else {
            return Lookup::Bypass;
        };
        if self.state != CacheState::Serving {
            return Lookup::Bypass;
        }
        if let Some(value) = self.get(now, args.clone()) {
            return Lookup::Hit(value);
        }
        let keys: Vec<&[u8]> = match spec {
            CacheKeys::First => args.clone().skip(1).take(1).collect(),
            CacheKeys::All => args.clone().skip(1).collect(),
        };
        if keys.is_empty() || !keys.iter().all(|k| self.config.tracks(k)) {
            return Lookup::Bypass;
        }
        let key = encode(args);
        let tick = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(entry) = self.entries.get_mut(&key[..]) {
            if entry.value.is_none() && entry.epoch == self.epoch {
                // Another read of the same command is in flight: this one
                // takes the reservation over (either reply is as fresh).
                entry.tick.store(tick, Ordering::Relaxed);
                entry.token = tick;
                self.stats.misses += 1;
                return Lookup::Miss(Reservation {
                    key: Arc::clone(&entry.key),
                    keys: entry.keys.clone(),
                    token: tick,
                    epoch: self.epoch,
                });
            }
            // Expired (or, never, of an older epoch).
            self.remove(&key[..]);
        }
        let key: Arc<[u8]> = Arc::from(key);
        let keys: Vec<Arc<[u8]>> = keys.into_iter().map(Arc::from).collect();
        let bytes =
            ENTRY_OVERHEAD + key.len() as u64 + keys.iter().map(|k| k.len() as u64).sum::<u64>();
        for k in &keys {
            self.by_key
                .entry(Arc::clone(k))
                .or_default()
                .push(Arc::clone(&key));
        }
        self.entries.insert(
            Arc::clone(&key),
            Entry {
                key: Arc::clone(&key),
                value: None,
                token: tick,
                tick: AtomicU64::new(tick),
                queued: tick,
                keys,
                bytes,
                expires: Timestamp::MAX,
                epoch: self.epoch,
            },
        );
        self.lru.insert(tick, Arc::clone(&key));
        self.bytes += bytes;
        self.stats.misses += 1;
        self.evict(Some(&key));
        let keys = match self.entries.get(&key) {
            Some(entry) => entry.keys.clone(),
            None => Vec::new(), // evicted at once: max_bytes below one entry
        };
        Lookup::Miss(Reservation {
            key,
            keys,
            token: tick,
            epoch: self.epoch,
        })
    }

    /// The reply to a reserved read, `value_bytes` its size, read at
    /// `read_at` (when it was sent) together with the `PTTL` of each of its
    /// keys, in order (`key_ttls_ms`: -1 no expiry, -2 no key). Kept unless
    /// the connection or one of its keys changed since the reservation,
    /// until the earliest of `read_at + ttl` and the keys' own expiry: a
    /// key the server expires is then never served past its expiry, even
    /// when the server deletes it (and invalidates it) late.
    pub fn fill(
        &mut self,
        read_at: Timestamp,
        reservation: Reservation,
        value: V,
        value_bytes: u64,
        key_ttls_ms: &[i64],
    ) -> Result<(), Refused> {
        if self.state != CacheState::Serving || reservation.epoch != self.epoch {
            return Err(Refused::Gap);
        }
        if key_ttls_ms.len() != reservation.keys.len() {
            self.cancel(reservation);
            return Err(Refused::NoTtl);
        }
        let mut lifetime = self.config.ttl;
        for &ms in key_ttls_ms {
            match ms {
                -2 | -1 => {}
                ms if ms > 0 => lifetime = lifetime.min(Duration::from_millis(ms as u64)),
                // Expiring now (0), or an answer PTTL never gives.
                _ => {
                    self.cancel(reservation);
                    return Err(Refused::NoTtl);
                }
            }
        }
        let max_bytes = self.config.max_bytes;
        let expires = read_at.saturating_add(lifetime);
        let Some(entry) = self.entries.get_mut(&reservation.key) else {
            return Err(Refused::Invalidated);
        };
        if entry.token != reservation.token || entry.value.is_some() {
            return Err(Refused::Invalidated);
        }
        if entry.bytes.saturating_add(value_bytes) > max_bytes {
            self.remove(&reservation.key);
            return Err(Refused::TooLarge);
        }
        entry.value = Some(value);
        entry.bytes += value_bytes;
        entry.expires = expires;
        self.bytes += value_bytes;
        self.evict(Some(&reservation.key));
        Ok(())
    }

    /// A reserved read will not be answered (it failed, or its caller gave
    /// up): its entry goes, unless another read has taken it over since.
    pub fn cancel(&mut self, reservation: Reservation) {
        let pending = self.entries.get(&reservation.key).is_some_and(|e| {
            e.token == reservation.token && e.value.is_none() && e.epoch == reservation.epoch
        });
        if pending {
            self.remove(&reservation.key);
        }
    }

    /// The server invalidated `keys`.
    pub fn invalidate<'a>(&mut self, keys: impl IntoIterator<Item = &'a [u8]>) {
        for key in keys {
            self.stats.invalidations += 1;
            if let Some(dependents) = self.by_key.remove(key) {
                for entry in dependents {
                    self.remove(&entry);
                }
            }
        }
    }

    /// The server invalidated everything (its null invalidation, after
    /// `FLUSHALL` / `FLUSHDB`).
    pub fn invalidate_all(&mut self) {
        self.stats.invalidations += 1;
        self.clear();
    }

    fn remove(&mut self, key: &[u8]) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        self.lru.remove(&entry.queued);
        self.bytes -= entry.bytes;
        for k in &entry.keys {
            if let Some(list) = self.by_key.get_mut(k) {
                list.retain(|e| &e[..] != key);
                if list.is_empty() {
                    self.by_key.remove(k);
                }
            }
        }
    }

    /// Drops least recently used entries until within both bounds, sparing
    /// `keep` (the entry just touched) while others remain. An entry used
    /// since it was filed is filed again under its latest use when the
    /// scan reaches it (so a hit costs no reordering).
    fn evict(&mut self, keep: Option<&Arc<[u8]>>) {
        // Bounded: each turn removes an entry or refiles one under a later
        // tick than any it had, at most once per entry per call (a refiled
        // entry's filing is its latest use), so within 2 × entries + 1 turns.
        let turns = 2 * self.entries.len() + 1;
        for _ in 0..turns {
            let over = self.entries.len() as u64 > u64::from(self.config.max_entries)
                || self.bytes > self.config.max_bytes;
            if !over {
                break;
            }
            let first = self
                .lru
                .iter()
                .find(|(_, k)| keep.is_none_or(|keep| !Arc::ptr_eq(k, keep)))
                .or_else(|| self.lru.iter().next())
                .map(|(t, k)| (*t, Arc::clone(k)));
            let Some((queued, victim)) = first else { break };
            let used = self
                .entries
                .get(&victim)
                .map(|e| e.tick.load(Ordering::Relaxed));
            match used {
                Some(used) if used > queued => {
                    self.lru.remove(&queued);
                    self.lru.insert(used, Arc::clone(&victim));
                    if let Some(entry) = self.entries.get_mut(&victim) {
                        entry.queued = used;
                    }
                }
                _ => {
                    self.remove(&victim);
                    self.stats.evictions += 1;
                }
            }
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.by_key.clear();
        self.lru.clear();
        self.bytes = 0;
    }
}

/// One unambiguous byte string for a command: each argument's length (4
/// bytes, little-endian) then its bytes, the name in upper case (`get k`
/// and `GET k` are one entry).
fn encode<'a>(args: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let mut out = alloc::vec![0; encoded_len(args.clone())];
    write_encoded(args, &mut out);
    out
}

/// The length of the [`encode`]d command.
fn encoded_len<'a>(args: impl Iterator<Item = &'a [u8]>) -> usize {
    args.map(|a| 4 + a.len()).sum()
}

/// Writes the [`encode`]d command at the start of `out` (at least
/// [`encoded_len`] long); returns its length.
fn write_encoded<'a>(args: impl Iterator<Item = &'a [u8]>, out: &mut [u8]) -> usize {
    let mut at = 0;
    for (i, arg) in args.enumerate() {
        out[at..at + 4].copy_from_slice(&(arg.len() as u32).to_le_bytes());
        at += 4;
        let part = &mut out[at..at + arg.len()];
        part.copy_from_slice(arg);
        if i == 0 {
            part.make_ascii_uppercase();
        }
        at += arg.len();
    }
    at
}

/// Calls `f` with the [`encode`]d command, built on the stack when it is
/// short (the hit path then allocates nothing).
fn with_encoded<'a, R>(
    args: impl Iterator<Item = &'a [u8]> + Clone,
    f: impl FnOnce(&[u8]) -> R,
) -> R {
    const INLINE: usize = 256;
    if encoded_len(args.clone()) > INLINE {
        return f(&encode(args));
    }
    let mut buf = [0u8; INLINE];
    let len = write_encoded(args, &mut buf);
    f(&buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn serving() -> Cache<&'static str> {
        let mut cache = Cache::new(CacheConfig::default()).unwrap();
        cache.connected();
        cache
    }

    fn miss(cache: &mut Cache<&'static str>, args: &[&[u8]]) -> Reservation {
        match cache.lookup(at(0), args.iter().copied()) {
            Lookup::Miss(r) => r,
            other => panic!("expected a miss, got {other:?}"),
        }
    }

    #[test]
    fn a_filled_read_is_served_until_its_key_is_invalidated() {
        let mut cache = serving();
        let r = miss(&mut cache, &[b"GET", b"k"]);
        cache.fill(at(1), r, "v1", 2, &[-1]).unwrap();
        assert!(matches!(
            cache.lookup(at(2), [&b"get"[..], b"k"]),
            Lookup::Hit("v1")
        ));
        cache.invalidate([&b"k"[..]]);
        let r = miss(&mut cache, &[b"GET", b"k"]);
        assert_eq!(cache.stats().hits, 1);
        assert_eq!(cache.stats().misses, 2);
        cache.fill(at(3), r, "v2", 2, &[-1]).unwrap();
        assert!(matches!(
            cache.lookup(at(4), [&b"GET"[..], b"k"]),
            Lookup::Hit("v2")
        ));
    }

    #[test]
    fn an_invalidation_before_the_reply_drops_the_reservation() {
        let mut cache = serving();
        let r = miss(&mut cache, &[b"MGET", b"a", b"b"]);
        cache.invalidate([&b"b"[..]]);
        assert_eq!(
            cache.fill(at(1), r, "old", 3, &[-1, -1]),
            Err(Refused::Invalidated)
        );
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn a_read_reserved_before_a_gap_never_fills_after_it() {
        let mut cache = serving();
        let r = miss(&mut cache, &[b"GET", b"k"]);
        cache.lost();
        assert!(matches!(
            cache.lookup(at(1), [&b"GET"[..], b"k"]),
            Lookup::Bypass
        ));
        cache.connected();
        assert_eq!(cache.fill(at(2), r, "old", 3, &[-1]), Err(Refused::Gap));
        assert_eq!(cache.stats().gap_flushes, 1);
    }

    #[test]
    fn entries_are_dropped_at_a_gap_and_expire_after_the_ttl() {
        let mut cache = serving();
        let r = miss(&mut cache, &[b"GET", b"k"]);
        cache.fill(at(0), r, "v", 1, &[-1]).unwrap();
        cache.lost();
        cache.connected();
        miss(&mut cache, &[b"GET", b"k"]);
        let r = miss(&mut cache, &[b"GET", b"j"]);
        cache.fill(at(0), r, "v", 1, &[-1]).unwrap();
        assert!(matches!(
            cache.lookup(at(59_999), [&b"GET"[..], b"j"]),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            cache.lookup(at(60_000), [&b"GET"[..], b"j"]),
            Lookup::Miss(_)
        ));
    }

    #[test]
    fn writes_keyless_reads_and_untracked_prefixes_bypass() {
        let mut cache = serving();
        for args in [&[&b"SET"[..], b"k", b"v"][..], &[b"GET"], &[b"TTL", b"k"]] {
            assert!(matches!(
                cache.lookup(at(0), args.iter().copied()),
                Lookup::Bypass
            ));
        }
        let config = CacheConfig {
            mode: TrackingMode::Broadcast,
            prefixes: Vec::from([String::from("user:")]),
            ..CacheConfig::default()
        };
        let mut cache: Cache<&str> = Cache::new(config).unwrap();
        cache.connected();
        assert!(matches!(
            cache.lookup(at(0), [&b"GET"[..], b"order:1"]),
            Lookup::Bypass
        ));
        assert!(matches!(
            cache.lookup(at(0), [&b"GET"[..], b"user:1"]),
            Lookup::Miss(_)
        ));
        assert!(matches!(
            cache.lookup(at(0), [&b"MGET"[..], b"user:1", b"order:1"]),
            Lookup::Bypass
        ));
    }

    #[test]
    fn the_bounds_evict_the_least_recently_used() {
        let config = CacheConfig {
            max_entries: 2,
            ..CacheConfig::default()
        };
        let mut cache: Cache<&str> = Cache::new(config).unwrap();
        cache.connected();
        for k in [&b"a"[..], b"b"] {
            let r = miss(&mut cache, &[b"GET", k]);
            cache.fill(at(0), r, "v", 1, &[-1]).unwrap();
        }
        assert!(matches!(
            cache.lookup(at(0), [&b"GET"[..], b"a"]),
            Lookup::Hit(_)
        ));
        let r = miss(&mut cache, &[b"GET", b"c"]);
        cache.fill(at(0), r, "v", 1, &[-1]).unwrap();
        assert!(matches!(
            cache.lookup(at(0), [&b"GET"[..], b"a"]),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            cache.lookup(at(0), [&b"GET"[..], b"b"]),
            Lookup::Miss(_)
        ));
        assert_eq!(cache.stats().evictions, 2);

        let config = CacheConfig {
            max_bytes: 200,
            ..CacheConfig::default()
        };
        let mut cache: Cache<&str> = Cache::new(config).unwrap();
        cache.connected();
        let r = miss(&mut cache, &[b"GET", b"k"]);
        assert_eq!(
            cache.fill(at(0), r, "huge", 1_000, &[-1]),
            Err(Refused::TooLarge)
        );
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn a_cancelled_reservation_goes_unless_taken_over() {
        let mut cache = serving();
        let first = miss(&mut cache, &[b"GET", b"k"]);
        cache.cancel(first.clone());
        assert_eq!(cache.stats().entries, 0);
        let second = miss(&mut cache, &[b"GET", b"k"]);
        let third = miss(&mut cache, &[b"GET", b"k"]);
        cache.cancel(second);
        assert_eq!(cache.stats().entries, 1, "taken over by the third");
        cache.fill(at(0), third, "v", 1, &[-1]).unwrap();
        cache.cancel(first);
        assert!(matches!(
            cache.lookup(at(1), [&b"GET"[..], b"k"]),
            Lookup::Hit("v")
        ));
    }

    #[test]
    fn an_entry_lives_no_longer_than_its_keys() {
        let mut cache = serving();
        let r = miss(&mut cache, &[b"MGET", b"a", b"b"]);
        assert_eq!(r.keys().collect::<Vec<_>>(), [&b"a"[..], b"b"]);
        // b expires 500 ms after the read was sent; a never does.
        cache.fill(at(100), r, "v", 1, &[-1, 500]).unwrap();
        fn get(cache: &mut Cache<&'static str>, t: u64) -> Lookup<&'static str> {
            cache.lookup(at(t), [&b"MGET"[..], b"a", b"b"])
        }
        assert!(matches!(get(&mut cache, 599), Lookup::Hit(_)));
        assert!(matches!(get(&mut cache, 600), Lookup::Miss(_)));
        // Without the keys' PTTLs (or with one expiring now), nothing is kept.
        let r = miss(&mut cache, &[b"GET", b"k"]);
        assert_eq!(cache.fill(at(0), r, "v", 1, &[]), Err(Refused::NoTtl));
        let r = miss(&mut cache, &[b"GET", b"k"]);
        assert_eq!(cache.fill(at(0), r, "v", 1, &[0]), Err(Refused::NoTtl));
        assert!(matches!(get(&mut cache, 700), Lookup::Miss(_)));
        assert_eq!(cache.stats().entries, 1, "only the MGET's new reservation");
    }

    #[test]
    fn servers_before_7_0_5_are_not_served_and_state_changes_are_named() {
        for ok in ["7.0.5", "7.0.15", "7.2.4", "8.0.0", "10.1.2 "] {
            assert!(server_supported(ok), "{ok}");
        }
        for old in ["7.0.4", "6.2.14", "6.0.0", "", "7", "x.y.z", "7.0"] {
            assert!(!server_supported(old), "{old}");
        }
        let args = |s: &'static str| s.split(' ').map(str::as_bytes);
        for breaks in [
            "CLIENT TRACKING OFF",
            "SELECT 2",
            "RESET",
            "HELLO 2",
            "AUTH p",
        ] {
            assert!(breaks_tracking(args(breaks)), "{breaks}");
        }
        for fine in ["GET k", "CLIENT ID", "SET k v", "MULTI"] {
            assert!(!breaks_tracking(args(fine)), "{fine}");
        }
        assert!(needs_fence(b"SET") && needs_fence(b"pfcount") && needs_fence(b"EVAL"));
        assert!(!needs_fence(b"GET") && !needs_fence(b"MGET"));
        let broadcast = CacheConfig {
            mode: TrackingMode::Broadcast,
            ..CacheConfig::default()
        };
        assert_eq!(broadcast.fence(), Fence::AfterReply);
        assert_eq!(CacheConfig::default().fence(), Fence::Pipelined);
    }

    #[test]
    fn flushall_empties_the_cache() {
        let mut cache = serving();
        let r = miss(&mut cache, &[b"GET", b"k"]);
        cache.fill(at(0), r, "v", 1, &[-1]).unwrap();
        cache.invalidate_all();
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(cache.state(), CacheState::Serving);
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = |c: CacheConfig| c.validate().unwrap_err().field();
        let d = CacheConfig::default;
        assert_eq!(
            bad(CacheConfig {
                max_entries: 0,
                ..d()
            }),
            "cache.max_entries"
        );
        assert_eq!(
            bad(CacheConfig {
                max_bytes: 0,
                ..d()
            }),
            "cache.max_bytes"
        );
        assert_eq!(
            bad(CacheConfig {
                ttl: Duration::ZERO,
                ..d()
            }),
            "cache.ttl"
        );
        let prefixes = |p: &[&str]| p.iter().map(|s| String::from(*s)).collect();
        assert_eq!(
            bad(CacheConfig {
                prefixes: prefixes(&["a"]),
                ..d()
            }),
            "cache.prefixes"
        );
        let broadcast = |p: &[&str]| CacheConfig {
            mode: TrackingMode::Broadcast,
            prefixes: prefixes(p),
            ..d()
        };
        assert_eq!(bad(broadcast(&["user:", "us"])), "cache.prefixes");
        assert_eq!(bad(broadcast(&[""])), "cache.prefixes");
        assert!(broadcast(&["user:", "order:"]).validate().is_ok());
        assert_eq!(
            broadcast(&["a"]).tracking_command(),
            [
                &b"CLIENT"[..],
                b"TRACKING",
                b"ON",
                b"BCAST",
                b"PREFIX",
                b"a"
            ]
        );
    }
}
