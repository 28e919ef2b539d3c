//! Simulation of the client-side cache against a model server: random
//! schedules of reads, other clients' writes, `FLUSHALL`, connection gaps
//! and the reordering the driver allows (a reply's fill delayed past later
//! invalidations), checking the invariant: while the cache serves and no
//! invalidation of a key is still in flight, a hit on that key equals the
//! server's value. No read is served across a gap.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use proptest::prelude::*;
use relink_core::cache::{Cache, CacheConfig, CacheState, Lookup, Reservation};
use relink_core::Timestamp;

const KEYS: [&[u8]; 4] = [b"a", b"b", b"c", b"d"];

#[derive(Debug, Clone)]
enum Op {
    /// The client reads `GET key` (or `MGET key other` when `multi`).
    Read {
        key: usize,
        other: usize,
        multi: bool,
    },
    /// The server answers the oldest read sent to it.
    Serve,
    /// Another client writes the key.
    Write(usize),
    /// Another client runs `FLUSHALL`.
    FlushAll,
    /// The oldest message from the server reaches the client's connection.
    Deliver,
    /// A caller whose reply was delivered stores it (as late as it likes).
    Fill(usize),
    /// A caller gives up on its read (dropped, or failed): its reservation goes back.
    GiveUp(usize),
    /// The connection is lost (the driver notices at once).
    Gap,
    /// A new connection with tracking on.
    Reconnect,
    /// Time passes.
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..4usize, any::<bool>())
            .prop_map(|(key, other, multi)| Op::Read { key, other, multi }),
        3 => Just(Op::Serve),
        3 => (0..4usize).prop_map(Op::Write),
        1 => Just(Op::FlushAll),
        4 => Just(Op::Deliver),
        3 => (0..8usize).prop_map(Op::Fill),
        1 => (0..8usize).prop_map(Op::GiveUp),
        1 => Just(Op::Gap),
        1 => Just(Op::Reconnect),
        1 => (1..40u64).prop_map(Op::Tick),
    ]
}

/// From the server to the client, in order on one connection.
#[derive(Debug)]
enum Message {
    Reply(Option<Reservation>, Vec<u64>),
    Invalidate(Option<usize>),
}

struct World {
    cache: Cache<Vec<u64>>,
    /// The server's values.
    values: [u64; 4],
    up: bool,
    /// Keys the server tracks for the client's connection.
    tracked: BTreeSet<usize>,
    /// Reads sent, not yet served: their keys and reservation.
    sent: VecDeque<(Vec<usize>, Option<Reservation>)>,
    /// From the server, not yet read by the client.
    inbound: VecDeque<Message>,
    /// Replies read, not yet given to the cache by their callers.
    delivered: Vec<(Option<Reservation>, Vec<u64>)>,
    hits: u64,
    /// Milliseconds of virtual time.
    now: u64,
    max_entries: u64,
}

impl World {
    fn new(config: CacheConfig) -> World {
        World {
            max_entries: u64::from(config.max_entries),
            cache: Cache::new(config).unwrap(),
            values: [0; 4],
            up: false,
            tracked: BTreeSet::new(),
            sent: VecDeque::new(),
            inbound: VecDeque::new(),
            delivered: Vec::new(),
            hits: 0,
            now: 0,
        }
    }

    fn pending_invalidation(&self, key: usize) -> bool {
        self.inbound.iter().any(|m| {
            matches!(m, Message::Invalidate(None))
                || matches!(m, Message::Invalidate(Some(k)) if *k == key)
        })
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let now = Timestamp::from_millis(self.now);
        match op {
            Op::Tick(ms) => self.now += ms,
            Op::Read { key, other, multi } => {
                let keys: Vec<usize> = if multi && other != key {
                    vec![key, other]
                } else {
                    vec![key]
                };
                let name: &[u8] = if keys.len() > 1 { b"MGET" } else { b"GET" };
                let args: Vec<&[u8]> = std::iter::once(name)
                    .chain(keys.iter().map(|&k| KEYS[k]))
                    .collect();
                match self.cache.lookup(now, args.iter().copied()) {
                    Lookup::Hit(value) => {
                        self.hits += 1;
                        prop_assert!(self.up, "served while the connection is down");
                        prop_assert_eq!(self.cache.state(), CacheState::Serving);
                        for (i, &k) in keys.iter().enumerate() {
                            if !self.pending_invalidation(k) {
                                prop_assert_eq!(
                                    value[i],
                                    self.values[k],
                                    "stale hit on key {} ({:?})",
                                    k,
                                    keys
                                );
                            }
                        }
                    }
                    Lookup::Miss(r) => {
                        prop_assert!(self.up);
                        self.sent.push_back((keys, Some(r)));
                    }
                    Lookup::Bypass => {
                        prop_assert_eq!(self.cache.state(), CacheState::Suspended);
                        if self.up {
                            self.sent.push_back((keys, None));
                        }
                    }
                }
            }
            Op::Serve => {
                if let Some((keys, r)) = self.sent.pop_front() {
                    let value = keys.iter().map(|&k| self.values[k]).collect();
                    self.tracked.extend(keys.iter().copied());
                    self.inbound.push_back(Message::Reply(r, value));
                }
            }
            Op::Write(key) => {
                self.values[key] += 1;
                if self.up && self.tracked.remove(&key) {
                    self.inbound.push_back(Message::Invalidate(Some(key)));
                }
            }
            Op::FlushAll => {
                for v in &mut self.values {
                    *v += 1;
                }
                if self.up {
                    self.tracked.clear();
                    self.inbound.push_back(Message::Invalidate(None));
                }
            }
            Op::Deliver => match self.inbound.pop_front() {
                Some(Message::Reply(r, value)) => self.delivered.push((r, value)),
                Some(Message::Invalidate(Some(k))) => self.cache.invalidate([KEYS[k]]),
                Some(Message::Invalidate(None)) => self.cache.invalidate_all(),
                None => {}
            },
            Op::Fill(i) => {
                if !self.delivered.is_empty() {
                    let (r, value) = self.delivered.remove(i % self.delivered.len());
                    if let Some(r) = r {
                        let bytes = 8 * value.len() as u64;
                        let ttls = vec![-1; value.len()];
                        let _ = self.cache.fill(now, r, value, bytes, &ttls);
                    }
                }
            }
            Op::GiveUp(i) => {
                if !self.delivered.is_empty() {
                    let (r, _) = self.delivered.remove(i % self.delivered.len());
                    if let Some(r) = r {
                        self.cache.cancel(r);
                    }
                }
            }
            Op::Gap => {
                self.up = false;
                self.tracked.clear();
                self.inbound.clear();
                self.cache.lost();
                // The reads in flight fail; their callers give their
                // reservations back (after the loss, or on a later connection).
                for (_, r) in self.sent.drain(..) {
                    if let Some(r) = r {
                        self.cache.cancel(r);
                    }
                }
            }
            Op::Reconnect => {
                if !self.up {
                    self.up = true;
                    self.cache.connected();
                }
            }
        }
        let stats = self.cache.stats();
        prop_assert!(stats.entries <= self.max_entries, "{:?}", stats);
        prop_assert!(stats.bytes <= self.cache.config().max_bytes, "{:?}", stats);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn no_stale_hit_and_nothing_served_across_a_gap(
        ops in prop::collection::vec(op(), 1..300),
        max_entries in 1..6u32,
        max_bytes in 80..400u64,
        ttl_ms in 1..100u64,
    ) {
        let config = CacheConfig::default()
            .with_max_entries(max_entries)
            .with_max_bytes(max_bytes)
            .with_ttl(Duration::from_millis(ttl_ms));
        let mut world = World::new(config);
        for op in ops {
            world.step(op)?;
        }
    }
}

/// The simulation is not vacuous: schedules do hit the cache, across gaps.
#[test]
fn the_simulation_reaches_hits_after_gaps() {
    let mut world = World::new(CacheConfig::default());
    let read = Op::Read {
        key: 0,
        other: 0,
        multi: false,
    };
    let mut by_epoch = BTreeMap::new();
    for _ in 0..3 {
        for op in [
            Op::Reconnect,
            read.clone(),
            Op::Serve,
            Op::Deliver,
            Op::Fill(0),
            read.clone(),
            Op::Write(0),
            Op::Deliver,
            read.clone(),
            Op::Gap,
            Op::Write(0),
        ] {
            world.step(op).unwrap();
        }
        by_epoch.insert(world.cache.epoch(), world.hits);
    }
    assert_eq!(world.hits, 3, "one hit per connection");
    assert_eq!(world.cache.stats().gap_flushes, 3);
    assert_eq!(by_epoch.len(), 3);
}
