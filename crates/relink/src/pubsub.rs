//! Pub/Sub that survives reconnects.
//!
//! The hub remembers every channel and pattern a [`Subscription`] asked for,
//! subscribes a new connection to all of them before it is handed to the hot
//! path, routes each pushed message to the subscriptions that want it, and,
//! after each reconnect, gives every subscription a [`PubSubItem::Restored`]
//! marker with the length of the gap: Pub/Sub has no replay, so the user must
//! know a window existed.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, RedisError, Value};
use relink_core::FailureKind;
use tokio::sync::mpsc;

/// Messages a subscription may hold before it is counted as lagging; beyond
/// that, messages are dropped (and counted) rather than buffered without bound.
const SUBSCRIPTION_BUFFER: usize = 4096;

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
    /// The connection was lost and is back, and the subscriptions are
    /// restored; messages published during the gap were not received.
    Restored {
        /// From the loss of the connection to the subscriptions being back.
        gap: Duration,
    },
    /// The consumer fell behind and `missed` messages were dropped.
    Lagged {
        /// How many.
        missed: u64,
    },
}

struct Sink {
    names: Vec<String>,
    patterns: bool,
    tx: mpsc::Sender<PubSubItem>,
    missed: u64,
}

#[derive(Default)]
struct Registry {
    channels: BTreeSet<String>,
    patterns: BTreeSet<String>,
    sinks: Vec<Sink>,
    closed: bool,
}

/// Shared by the client, its connections' push handlers, and the subscriptions.
#[derive(Default)]
pub(crate) struct PubSubHub {
    registry: Mutex<Registry>,
}

impl PubSubHub {
    pub(crate) fn register(&self, names: &[String], patterns: bool) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
        let mut reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let set = if patterns {
            &mut reg.patterns
        } else {
            &mut reg.channels
        };
        set.extend(names.iter().cloned());
        reg.sinks.push(Sink {
            names: names.to_vec(),
            patterns,
            tx,
            missed: 0,
        });
        Subscription { rx }
    }

    /// Subscribes a fresh connection to everything registered.
    pub(crate) async fn restore(&self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        let (channels, patterns): (Vec<String>, Vec<String>) = {
            let reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            (
                reg.channels.iter().cloned().collect(),
                reg.patterns.iter().cloned().collect(),
            )
        };
        if !channels.is_empty() {
            conn.subscribe(&channels).await?;
        }
        if !patterns.is_empty() {
            conn.psubscribe(&patterns).await?;
        }
        Ok(())
    }

    /// A push handler for connection `generation`: routes messages, and
    /// reports the connection's loss to the supervisor at once.
    pub(crate) fn push_sender<R>(
        self: &Arc<Self>,
        reports: mpsc::UnboundedSender<R>,
        generation: u64,
    ) -> crate::connector::PushHandler
    where
        R: From<(u64, FailureKind)> + Send + 'static,
    {
        let hub = Arc::clone(self);
        Arc::new(move |info: PushInfo| match info.kind {
            PushKind::Disconnection => {
                let _ = reports.send(R::from((generation, FailureKind::Closed)));
            }
            PushKind::Message | PushKind::PMessage => hub.route(info),
            _ => {}
        })
    }

    fn route(&self, info: PushInfo) {
        let mut data = info.data.into_iter();
        let (pattern, channel, payload) = match info.kind {
            PushKind::PMessage => (
                data.next().and_then(text),
                data.next().and_then(text),
                data.next(),
            ),
            _ => (None, data.next().and_then(text), data.next()),
        };
        let (Some(channel), Some(payload)) = (channel, payload.and_then(bytes)) else {
            return;
        };
        let mut reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        reg.sinks.retain(|s| !s.tx.is_closed());
        for sink in &mut reg.sinks {
            let wanted = match &pattern {
                Some(p) => sink.patterns && sink.names.contains(p),
                None => !sink.patterns && sink.names.contains(&channel),
            };
            if wanted {
                deliver(
                    sink,
                    PubSubItem::Message {
                        channel: channel.clone(),
                        pattern: pattern.clone(),
                        payload: payload.clone(),
                    },
                );
            }
        }
    }

    /// Tells every subscription its messages flow again after `gap`.
    pub(crate) fn restored(&self, gap: Duration) {
        let mut reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        for sink in &mut reg.sinks {
            deliver(sink, PubSubItem::Restored { gap });
        }
    }

    /// Ends every subscription stream (the client shut down).
    pub(crate) fn close(&self) {
        let mut reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        reg.closed = true;
        reg.sinks.clear();
    }
}

fn deliver(sink: &mut Sink, item: PubSubItem) {
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
    }
}

fn text(v: Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

/// A stream of [`PubSubItem`]s that keeps flowing across reconnects. It ends
/// when the client shuts down. Dropping it stops delivery to it (the server
/// subscription stays for the client's lifetime).
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<PubSubItem>,
}

impl Subscription {
    /// The next item; `None` once the client has shut down.
    pub async fn next_item(&mut self) -> Option<PubSubItem> {
        self.rx.recv().await
    }
}

impl Stream for Subscription {
    type Item = PubSubItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PubSubItem>> {
        self.rx.poll_recv(cx)
    }
}
