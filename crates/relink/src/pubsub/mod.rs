//! Pub/Sub that survives reconnects, on connections of its own.
//!
//! Subscriptions never share the command connection: a connection in
//! subscribed mode is a Pub/Sub client to the server (`flags=P` in `CLIENT
//! LIST`, its own output-buffer class, `CLIENT KILL TYPE pubsub`), and under
//! RESP2 it can run nothing else. So a [`Client`](crate::Client) opens one
//! *subscriber connection* at its first subscription, RESP2 or RESP3 as the
//! config says, supervised by a core [`Supervisor`](relink_core::Supervisor)
//! of its own with the client's settings (connect timeout, backoff,
//! heartbeat): the same engine as every other connection (`link.rs`).
//!
//! The hub (this module) is the data: which channels, patterns and shard
//! channels are wanted and by how many handles, the [`Subscription`]s'
//! buffers, and the gap markers. It routes each message to every handle
//! that wants it; when the last handle for a name goes (dropped, or
//! [`Subscription::unsubscribe`]), the name is unsubscribed on the server.
//! After each reconnect the subscriber connection restores everything
//! registered *before* it is used, and every affected handle gets one
//! [`PubSubItem::Restored`] marker with the length of the gap: Pub/Sub has
//! no replay, so the user must know a window existed.
//!
//! **A slow consumer** is bounded: each handle buffers at most
//! [`Config::subscription_buffer`](crate::Config::subscription_buffer)
//! items. When its buffer is full, new messages for it are dropped and
//! counted, and the next item it can take is a [`PubSubItem::Lagged`] with
//! the count, placed exactly where the hole is (the buffered messages before
//! it are intact and in order). The subscriber connection never waits for a
//! consumer: one slow handle cannot stall the others, nor fill the server's
//! output buffer for this client until the server disconnects it.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;
use redis::{PushInfo, PushKind, RedisError, Value};
use tokio::sync::{mpsc, oneshot};

use crate::Error;

pub(crate) mod link;

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PubSubItem {
    /// A published message.
    Message {
        /// The channel it was published on.
        channel: String,
        /// The pattern that matched, for pattern subscriptions.
        pattern: Option<String>,
        /// The payload, as published (binary-safe).
        payload: Vec<u8>,
    },
    /// Messages published during a window may not have been received: the
    /// subscriber connection was lost and is back with the subscription
    /// restored, or a subscription that could not be made at once (no
    /// connection) is now in place. `gap` is the window's length.
    Restored {
        /// From the loss of the connection (or the subscribe call) to the
        /// subscription being in place.
        gap: Duration,
    },
    /// The consumer fell behind: `missed` messages were dropped here.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// The three kinds of subscription Redis has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// `SUBSCRIBE`: a channel.
    Channel,
    /// `PSUBSCRIBE`: a glob pattern.
    Pattern,
    /// `SSUBSCRIBE`: a shard channel (Redis 7), owned by its slot's node.
    Shard,
}

impl Kind {
    pub(crate) fn subscribe_command(self) -> &'static str {
        match self {
            Kind::Channel => "SUBSCRIBE",
            Kind::Pattern => "PSUBSCRIBE",
            Kind::Shard => "SSUBSCRIBE",
        }
    }

    pub(crate) fn unsubscribe_command(self) -> &'static str {
        match self {
            Kind::Channel => "UNSUBSCRIBE",
            Kind::Pattern => "PUNSUBSCRIBE",
            Kind::Shard => "SUNSUBSCRIBE",
        }
    }
}

/// Where a handle's subscription stands.
#[derive(Debug, Clone, Copy)]
enum Standing {
    /// Its `subscribe` call is waiting for the server's confirmation.
    Confirming,
    /// Messages may have been missed since `since`: its connection was
    /// lost, its slot moved, or its `subscribe` call returned before the
    /// server confirmed it (there was no connection). The marker goes out
    /// when the subscription is in place again on the subscriber
    /// connection `via` (any, when `None`), and always before that
    /// connection's first message to the handle.
    Pending { since: Instant, via: Option<u64> },
    /// In place; messages flow.
    InPlace,
}

impl Standing {
    /// Whether a marker is owed once connection `link` serves the handle.
    fn owed_on(self, link: u64) -> Option<Instant> {
        match self {
            Standing::Pending { since, via } if via.is_none_or(|v| v == link) => Some(since),
            _ => None,
        }
    }
}

struct Sink {
    kind: Kind,
    names: Vec<String>,
    tx: mpsc::Sender<PubSubItem>,
    missed: u64,
    standing: Standing,
}

#[derive(Default)]
struct Registry {
    /// How many handles want each name.
    wanted: BTreeMap<(Kind, String), usize>,
    sinks: BTreeMap<u64, Sink>,
    next_id: u64,
    closed: bool,
    /// Subscriber connections lost, all told.
    losses: u64,
    /// Messages dropped for full buffers, all told.
    dropped: u64,
}

/// Shared by the client, its subscriber connections and the subscriptions.
pub(crate) struct Hub {
    registry: Mutex<Registry>,
    capacity: usize,
}

/// The names of one kind a connection subscribes to at once.
pub(crate) type Names = Vec<(Kind, Vec<String>)>;

impl Hub {
    pub(crate) fn new(capacity: usize) -> Hub {
        Hub {
            registry: Mutex::default(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new handle for `names`; `Err(Shutdown)` once the client is closed
    /// (checked under the same lock that closes it, so a subscribe racing
    /// a shutdown never gets a stream that does not end).
    pub(crate) fn register(
        &self,
        kind: Kind,
        names: &[String],
    ) -> Result<(u64, mpsc::Receiver<PubSubItem>), Error> {
        let (tx, rx) = mpsc::channel(self.capacity);
        let mut reg = self.lock();
        if reg.closed {
            return Err(Error::Shutdown);
        }
        for name in names {
            *reg.wanted.entry((kind, name.clone())).or_default() += 1;
        }
        reg.next_id += 1;
        let id = reg.next_id;
        reg.sinks.insert(
            id,
            Sink {
                kind,
                names: names.to_vec(),
                tx,
                missed: 0,
                standing: Standing::Confirming,
            },
        );
        Ok((id, rx))
    }

    /// Removes handle `id`; returns the names no handle wants any more (to
    /// unsubscribe on the server).
    pub(crate) fn release(&self, id: u64) -> Option<(Kind, Vec<String>)> {
        let mut reg = self.lock();
        let sink = reg.sinks.remove(&id)?;
        let mut gone = Vec::new();
        for name in sink.names {
            let key = (sink.kind, name);
            if let Some(count) = reg.wanted.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    reg.wanted.remove(&key);
                    gone.push(key.1);
                }
            }
        }
        (!gone.is_empty()).then_some((sink.kind, gone))
    }

    /// Whether any handle wants `name` of `kind`.
    pub(crate) fn wants(&self, kind: Kind, name: &str) -> bool {
        self.lock().wanted.contains_key(&(kind, name.to_owned()))
    }

    /// `names` of `kind` lose their subscription at `since` (their slot
    /// moved) and are subscribed next on connection `to`: the handles on
    /// them get a marker once they are in place there. Messages from other
    /// connections (the old one, until it is off) still reach them plainly.
    pub(crate) fn displaced(&self, kind: Kind, names: &[String], since: Instant, to: Option<u64>) {
        // A move with no destination waits for one: no connection owes it.
        let via = Some(to.unwrap_or(u64::MAX));
        let mut reg = self.lock();
        for sink in reg.sinks.values_mut() {
            if sink.kind != kind || !sink.names.iter().any(|n| names.contains(n)) {
                continue;
            }
            // (A handle still waiting for its first confirmation may get
            // it from the old node: it is owed a marker all the same.)
            sink.standing = match sink.standing {
                Standing::InPlace | Standing::Confirming => Standing::Pending { since, via },
                Standing::Pending { since: earlier, .. } => Standing::Pending {
                    since: earlier.min(since),
                    via,
                },
            };
        }
    }

    /// Connection `link`, serving `serves`, was lost at `since`: every
    /// handle it served owes a marker once it is back.
    pub(crate) fn lost(&self, link: u64, serves: &dyn Fn(Kind, &str) -> bool, since: Instant) {
        let mut reg = self.lock();
        reg.losses += 1;
        for sink in reg.sinks.values_mut() {
            // A handle whose subscribe is in flight may have been confirmed
            // on the lost connection just now: it is owed a marker too.
            if matches!(sink.standing, Standing::InPlace | Standing::Confirming)
                && sink.names.iter().any(|n| serves(sink.kind, n))
            {
                sink.standing = Standing::Pending {
                    since,
                    via: Some(link),
                };
            }
        }
    }

    /// The server confirmed handle `id`'s subscription (unless a loss or
    /// a move since has made it owe a marker).
    pub(crate) fn confirmed(&self, id: u64) {
        if let Some(sink) = self.lock().sinks.get_mut(&id) {
            if matches!(sink.standing, Standing::Confirming) {
                sink.standing = Standing::InPlace;
            }
        }
    }

    /// Handle `id`'s subscribe call returns before the server confirmed it.
    pub(crate) fn pending(&self, id: u64, since: Instant) {
        if let Some(sink) = self.lock().sinks.get_mut(&id) {
            if matches!(sink.standing, Standing::Confirming) {
                sink.standing = Standing::Pending { since, via: None };
            }
        }
    }

    /// Whether the client is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Everything wanted that `serves` accepts, grouped by kind: what a new
    /// connection subscribes to before it is used.
    pub(crate) fn wanted(&self, serves: &dyn Fn(Kind, &str) -> bool) -> Names {
        let reg = self.lock();
        let mut out: Names = Vec::new();
        for (kind, name) in reg.wanted.keys() {
            if !serves(*kind, name) {
                continue;
            }
            match out.last_mut() {
                Some((k, names)) if k == kind => names.push(name.clone()),
                _ => out.push((*kind, vec![name.clone()])),
            }
        }
        out
    }

    /// Connection `link` has the subscriptions `serves` accepts in place
    /// (restored after a (re)connect, or a subscribe confirmed): every
    /// handle among them that owes a marker gets it, with the time since
    /// its gap began. Returns how many markers were given.
    pub(crate) fn in_place(
        &self,
        link: u64,
        serves: &dyn Fn(Kind, &str) -> bool,
        now: Instant,
    ) -> usize {
        let mut guard = self.lock();
        let reg = &mut *guard;
        let mut given = 0;
        for sink in reg.sinks.values_mut() {
            let Some(since) = sink.standing.owed_on(link) else {
                continue;
            };
            if !sink.names.iter().any(|n| serves(sink.kind, n)) {
                continue;
            }
            sink.standing = Standing::InPlace;
            let gap = now.saturating_duration_since(since);
            reg.dropped += deliver(sink, PubSubItem::Restored { gap });
            given += 1;
        }
        given
    }

    /// Routes a message that came on connection `link` to every handle
    /// that wants it; a handle owed a marker by that connection gets the
    /// marker first (the subscription is in place there: the message says so).
    pub(crate) fn route(
        &self,
        link: u64,
        kind: Kind,
        channel: &str,
        pattern: Option<&str>,
        payload: &[u8],
    ) {
        let now = Instant::now();
        let mut guard = self.lock();
        let reg = &mut *guard;
        for sink in reg.sinks.values_mut() {
            if sink.kind != kind {
                continue;
            }
            let matched = pattern.unwrap_or(channel);
            if sink.names.iter().any(|n| n == matched) {
                if let Some(since) = sink.standing.owed_on(link) {
                    sink.standing = Standing::InPlace;
                    let gap = now.saturating_duration_since(since);
                    reg.dropped += deliver(sink, PubSubItem::Restored { gap });
                }
                reg.dropped += deliver(
                    sink,
                    PubSubItem::Message {
                        channel: channel.to_owned(),
                        pattern: pattern.map(str::to_owned),
                        payload: payload.to_vec(),
                    },
                );
            }
        }
    }

    /// Routes a RESP3 push that came on connection `link`; true when it
    /// was a Pub/Sub message.
    pub(crate) fn route_push(&self, link: u64, info: &PushInfo) -> bool {
        let data = &info.data;
        let (kind, pattern, channel, payload) = match info.kind {
            PushKind::Message => (Kind::Channel, None, data.first(), data.get(1)),
            PushKind::SMessage => (Kind::Shard, None, data.first(), data.get(1)),
            PushKind::PMessage => (Kind::Pattern, data.first(), data.get(1), data.get(2)),
            _ => return false,
        };
        let pattern = pattern.and_then(text);
        if let (Some(channel), Some(payload)) = (channel.and_then(text), payload.and_then(bytes)) {
            if pattern.is_some() || kind != Kind::Pattern {
                self.route(link, kind, channel, pattern, payload);
            }
        }
        true
    }

    /// Handles open, connections lost, messages dropped.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        let reg = self.lock();
        (reg.sinks.len() as u64, reg.losses, reg.dropped)
    }

    /// Ends every subscription stream (the client shut down or gave up).
    pub(crate) fn close(&self) {
        let mut reg = self.lock();
        reg.closed = true;
        reg.sinks.clear();
        reg.wanted.clear();
    }
}

/// Hands `item` to `sink`, or counts it dropped; returns 1 if dropped.
fn deliver(sink: &mut Sink, item: PubSubItem) -> u64 {
    if sink.missed > 0 {
        let lagged = PubSubItem::Lagged {
            missed: sink.missed,
        };
        if sink.tx.try_send(lagged).is_ok() {
            sink.missed = 0;
        }
    }
    if sink.missed > 0 || sink.tx.try_send(item).is_err() {
        sink.missed += 1;
        return 1;
    }
    0
}

fn text(v: &Value) -> Option<&str> {
    bytes(v).and_then(|b| std::str::from_utf8(b).ok())
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// What a subscriber connection did with a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The server confirmed it.
    Confirmed,
    /// No connection now: it takes effect at the next one.
    Deferred,
    /// The server refused it (its reply).
    Refused(RedisError),
}

/// A change of subscriptions for a subscriber connection.
pub(crate) struct Request {
    pub(crate) subscribe: bool,
    pub(crate) kind: Kind,
    pub(crate) names: Vec<String>,
    pub(crate) done: Option<oneshot::Sender<Outcome>>,
}

/// Who carries a hub's requests to the server: the connection (or, on a
/// cluster, the connections) serving each name.
pub(crate) trait Links: Send + Sync + 'static {
    /// Hands `request` to the connection serving its names.
    fn send(&self, request: Request);
}

/// Subscribes handle `names` of `kind` through `links`, waiting for the
/// server's confirmation while a connection is up or being made; returns at
/// once, with the subscription registered, when there is none.
pub(crate) async fn subscribe(
    hub: &Arc<Hub>,
    links: Arc<dyn Links>,
    kind: Kind,
    names: &[&str],
) -> Result<Subscription, Error> {
    if names.is_empty() {
        return Err(Error::config(
            "channels",
            "subscribe needs at least one channel or pattern",
        ));
    }
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    let (id, rx) = hub.register(kind, &names)?;
    // From here on, dropping the handle (also when this future is dropped)
    // releases the names.
    let subscription = Subscription {
        rx,
        id,
        kind,
        names: names.clone(),
        hub: Arc::clone(hub),
        links: Arc::clone(&links),
    };
    let (done, outcome) = oneshot::channel();
    links.send(Request {
        subscribe: true,
        kind,
        names,
        done: Some(done),
    });
    match outcome.await {
        Ok(Outcome::Confirmed) => hub.confirmed(id),
        Ok(Outcome::Deferred) => hub.pending(id, Instant::now()),
        Ok(Outcome::Refused(e)) => return Err(Error::Redis(e)),
        // The subscriber connection's task ended: the client shut down or
        // gave up (then the hub is closed), or one node's connection of a
        // cluster did (the subscription is restored on its successor).
        Err(_) if hub.is_closed() => return Err(Error::Shutdown),
        Err(_) => hub.pending(id, Instant::now()),
    }
    Ok(subscription)
}

/// A [`Client`](crate::Client)'s Pub/Sub: its hub, and its subscriber
/// connection, started at the first subscription.
pub(crate) struct ClientPubSub {
    pub(crate) hub: Arc<Hub>,
    link: std::sync::OnceLock<Arc<dyn Links>>,
    start: Box<dyn Fn(Arc<Hub>) -> link::Link + Send + Sync>,
}

impl ClientPubSub {
    /// `start` starts the subscriber connection for the hub.
    pub(crate) fn new(
        capacity: usize,
        start: Box<dyn Fn(Arc<Hub>) -> link::Link + Send + Sync>,
    ) -> ClientPubSub {
        ClientPubSub {
            hub: Arc::new(Hub::new(capacity)),
            link: std::sync::OnceLock::new(),
            start,
        }
    }

    /// The subscriber connection, started now if it was not.
    pub(crate) fn links(&self) -> Arc<dyn Links> {
        Arc::clone(
            self.link
                .get_or_init(|| Arc::new((self.start)(Arc::clone(&self.hub)))),
        )
    }
}

/// A stream of [`PubSubItem`]s that keeps flowing across reconnects. It ends
/// when the client shuts down (or gives up). Dropping it, or
/// [`unsubscribe`](Self::unsubscribe), ends the server-side subscription of
/// every name no other handle wants. Several handles on one name each get
/// every message.
pub struct Subscription {
    rx: mpsc::Receiver<PubSubItem>,
    id: u64,
    kind: Kind,
    names: Vec<String>,
    hub: Arc<Hub>,
    links: Arc<dyn Links>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("kind", &self.kind)
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The next item; `None` once the client has shut down.
    pub async fn next_item(&mut self) -> Option<PubSubItem> {
        self.rx.recv().await
    }

    /// The channels (or patterns) this handle subscribed to.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Ends this handle, and waits until the server confirmed the
    /// unsubscribe of every name no other handle wants (at once when there
    /// is no connection: a reconnect does not restore them). Messages still
    /// buffered for this handle are dropped with it.
    pub async fn unsubscribe(mut self) -> Result<(), Error> {
        let released = self.hub.release(self.id);
        self.id = 0;
        let Some((kind, names)) = released else {
            return Ok(());
        };
        let (done, outcome) = oneshot::channel();
        self.links.send(Request {
            subscribe: false,
            kind,
            names,
            done: Some(done),
        });
        match outcome.await {
            Ok(Outcome::Refused(e)) => Err(Error::Redis(e)),
            _ => Ok(()),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.id == 0 {
            return;
        }
        if let Some((kind, names)) = self.hub.release(self.id) {
            self.links.send(Request {
                subscribe: false,
                kind,
                names,
                done: None,
            });
        }
    }
}

impl Stream for Subscription {
    type Item = PubSubItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PubSubItem>> {
        self.rx.poll_recv(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: Kind, _: &str) -> bool {
        true
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_last_handle_for_a_name_releases_it() {
        let hub = Hub::new(8);
        let (a, _ra) = hub.register(Kind::Channel, &names(&["x", "y"])).unwrap();
        let (b, _rb) = hub.register(Kind::Channel, &names(&["x"])).unwrap();
        assert_eq!(hub.release(a), Some((Kind::Channel, names(&["y"]))));
        assert_eq!(hub.wanted(&all), vec![(Kind::Channel, names(&["x"]))]);
        assert_eq!(hub.release(b), Some((Kind::Channel, names(&["x"]))));
        assert_eq!(hub.release(b), None, "released once");
        assert!(hub.wanted(&all).is_empty());
    }

    #[test]
    fn every_handle_on_a_name_gets_every_message_and_kinds_do_not_mix() {
        let hub = Hub::new(8);
        let (_, mut a) = hub.register(Kind::Channel, &names(&["x"])).unwrap();
        let (_, mut b) = hub.register(Kind::Channel, &names(&["x"])).unwrap();
        let (_, mut s) = hub.register(Kind::Shard, &names(&["x"])).unwrap();
        let (_, mut p) = hub.register(Kind::Pattern, &names(&["x*"])).unwrap();
        hub.route(1, Kind::Channel, "x", None, b"1");
        hub.route(1, Kind::Pattern, "xa", Some("x*"), b"2");
        for rx in [&mut a, &mut b] {
            assert!(
                matches!(rx.try_recv(), Ok(PubSubItem::Message { payload, .. }) if payload == b"1")
            );
            assert!(rx.try_recv().is_err());
        }
        assert!(s.try_recv().is_err());
        assert!(
            matches!(p.try_recv(), Ok(PubSubItem::Message { channel, pattern: Some(_), .. }) if channel == "xa")
        );
    }

    #[test]
    fn a_full_buffer_drops_new_messages_and_says_where() {
        let hub = Hub::new(2);
        let (_, mut rx) = hub.register(Kind::Channel, &names(&["x"])).unwrap();
        for i in 0..5u8 {
            hub.route(1, Kind::Channel, "x", None, &[i]);
        }
        let payload = |item| match item {
            Ok(PubSubItem::Message { payload, .. }) => payload,
            other => panic!("{other:?}"),
        };
        assert_eq!(payload(rx.try_recv()), [0]);
        assert_eq!(payload(rx.try_recv()), [1]);
        assert!(rx.try_recv().is_err());
        hub.route(1, Kind::Channel, "x", None, &[5]);
        assert_eq!(rx.try_recv(), Ok(PubSubItem::Lagged { missed: 3 }));
        assert_eq!(payload(rx.try_recv()), [5]);
    }

    #[test]
    fn markers_go_once_to_the_handles_a_gap_concerns() {
        let hub = Hub::new(8);
        let t0 = Instant::now();
        let (a, mut ra) = hub.register(Kind::Channel, &names(&["x"])).unwrap();
        hub.confirmed(a);
        let (b, mut rb) = hub.register(Kind::Channel, &names(&["y"])).unwrap();
        hub.pending(b, t0);
        let (_c, mut rc) = hub.register(Kind::Channel, &names(&["z"])).unwrap();
        // The first connection: only the handle that returned early.
        assert_eq!(hub.in_place(1, &all, t0 + Duration::from_millis(7)), 1);
        assert!(ra.try_recv().is_err());
        assert_eq!(
            rb.try_recv(),
            Ok(PubSubItem::Restored {
                gap: Duration::from_millis(7)
            })
        );
        assert!(rc.try_recv().is_err(), "its own request follows");
        // Lost, then back: every handle it served, once (the one still
        // waiting for its confirmation too: it may have come just before).
        hub.lost(1, &all, t0);
        let gap = Duration::from_millis(30);
        assert_eq!(hub.in_place(1, &all, t0 + gap), 3);
        assert_eq!(hub.in_place(1, &all, t0 + gap), 0, "once");
        for rx in [&mut ra, &mut rb, &mut rc] {
            assert_eq!(rx.try_recv(), Ok(PubSubItem::Restored { gap }));
            assert!(rx.try_recv().is_err());
        }
    }

    #[test]
    fn the_marker_comes_before_the_first_message_of_the_connection_that_ends_the_gap() {
        let hub = Hub::new(8);
        let t0 = Instant::now();
        let (a, mut ra) = hub.register(Kind::Shard, &names(&["s"])).unwrap();
        hub.confirmed(a);
        // Moving from connection 1 to connection 2.
        hub.displaced(Kind::Shard, &names(&["s"]), t0, Some(2));
        // The old connection still delivers: plainly.
        hub.route(1, Kind::Shard, "s", None, b"old");
        assert!(
            matches!(ra.try_recv(), Ok(PubSubItem::Message { payload, .. }) if payload == b"old")
        );
        // The new one's first message: the marker first.
        hub.route(2, Kind::Shard, "s", None, b"new");
        assert!(matches!(ra.try_recv(), Ok(PubSubItem::Restored { .. })));
        assert!(
            matches!(ra.try_recv(), Ok(PubSubItem::Message { payload, .. }) if payload == b"new")
        );
        // Its confirmation afterwards owes nothing more.
        assert_eq!(hub.in_place(2, &all, t0), 0);
    }

    #[test]
    fn a_loss_while_a_subscribe_is_confirmed_still_owes_a_marker() {
        let hub = Hub::new(8);
        let t0 = Instant::now();
        let (a, mut ra) = hub.register(Kind::Channel, &names(&["x"])).unwrap();
        // Confirmed by the server, then the connection is lost before the
        // subscribe call took the confirmation.
        hub.lost(1, &all, t0);
        hub.confirmed(a);
        assert_eq!(hub.in_place(1, &all, t0 + Duration::from_millis(5)), 1);
        assert!(matches!(ra.try_recv(), Ok(PubSubItem::Restored { .. })));
    }

    #[test]
    fn a_closed_hub_takes_no_handle() {
        let hub = Hub::new(8);
        let (_, mut rx) = hub.register(Kind::Channel, &names(&["x"])).unwrap();
        hub.close();
        assert!(matches!(
            hub.register(Kind::Channel, &names(&["x"])),
            Err(Error::Shutdown)
        ));
        assert_eq!(rx.try_recv(), Err(mpsc::error::TryRecvError::Disconnected));
    }

    #[test]
    fn pushes_are_routed_by_kind() {
        let hub = Hub::new(8);
        let (_, mut rx) = hub.register(Kind::Shard, &names(&["s"])).unwrap();
        let push = PushInfo {
            kind: PushKind::SMessage,
            data: vec![
                Value::BulkString(b"s".to_vec()),
                Value::BulkString(b"hi".to_vec()),
            ],
        };
        assert!(hub.route_push(1, &push));
        assert!(
            matches!(rx.try_recv(), Ok(PubSubItem::Message { payload, .. }) if payload == b"hi")
        );
        let other = PushInfo {
            kind: PushKind::Invalidate,
            data: vec![],
        };
        assert!(!hub.route_push(1, &other));
    }
}
