//! Pub/Sub from C: `relink::Client::subscribe` behind a blocking iterator.
//!
//! A subscription is read with `relink_subscription_next`, which waits (up
//! to the caller's bound) for the next item: a message, a `RESTORED` marker
//! (the subscriber connection was lost and is back: messages published
//! during the gap are gone), or a `LAGGED` count (the consumer fell behind
//! and that many messages were dropped). An iterator rather than a callback
//! so the C program (or Python, over ctypes) reads on its own thread, at its
//! own pace, with relink's bounded buffer between. Reconnecting and
//! restoring are `relink::Client`'s.

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use relink::{PubSubItem, Subscription};

use crate::boundary::*;
use crate::client::{not_in_callback, relink_client};

/// `SUBSCRIBE`: the names are channels.
pub const RELINK_SUBSCRIBE_CHANNELS: u32 = 0;
/// `PSUBSCRIBE`: the names are glob patterns.
pub const RELINK_SUBSCRIBE_PATTERNS: u32 = 1;
/// `SSUBSCRIBE`: the names are shard channels (Redis 7, RESP3).
pub const RELINK_SUBSCRIBE_SHARD_CHANNELS: u32 = 2;

/// A published message: `channel`, `payload`, and `pattern` for a pattern
/// subscription.
pub const RELINK_ITEM_MESSAGE: u32 = 1;
/// The subscriber connection was lost and is back with the subscription
/// restored (or a subscription made without a connection is now in place):
/// messages published during the last `gap_ms` were not received.
pub const RELINK_ITEM_RESTORED: u32 = 2;
/// The consumer fell behind: `missed` messages were dropped here.
pub const RELINK_ITEM_LAGGED: u32 = 3;

/// One item of a subscription. The pointers are the subscription's: valid
/// until the next `relink_subscription_next` or `relink_subscription_free`
/// on it. `channel` and `pattern` are NUL-terminated (and have their length
/// without the NUL); `payload` is binary-safe.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct relink_pubsub_item {
    /// `RELINK_ITEM_MESSAGE`, `RELINK_ITEM_RESTORED` or `RELINK_ITEM_LAGGED`.
    pub kind: u32,
    /// Message: the channel it was published on; else NULL.
    pub channel: *const c_char,
    /// Length of `channel`, without the NUL.
    pub channel_len: usize,
    /// Message from a pattern subscription: the pattern; else NULL.
    pub pattern: *const c_char,
    /// Length of `pattern`, without the NUL.
    pub pattern_len: usize,
    /// Message: the payload; else NULL.
    pub payload: *const u8,
    /// Length of `payload`.
    pub payload_len: usize,
    /// Restored: the length of the gap, in milliseconds; else 0.
    pub gap_ms: u64,
    /// Lagged: how many messages were dropped; else 0.
    pub missed: u64,
}

/// What the item pointers point into.
#[derive(Debug, Default)]
struct Held {
    channel: Vec<u8>,
    pattern: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// A subscription: read it with `relink_subscription_next`, end it with
/// `relink_subscription_unsubscribe` or `relink_subscription_free`. One
/// thread at a time may use it. It may outlive its client: once the client
/// is freed, `relink_subscription_next` returns `RELINK_SHUTDOWN`.
#[derive(Debug)]
pub struct relink_subscription {
    sub: Option<Subscription>,
    runtime: Arc<tokio::runtime::Runtime>,
    held: Held,
}

/// Subscribes `client` to `count` names (`names[i]` NUL-terminated), of
/// `kind` `RELINK_SUBSCRIBE_CHANNELS`, `_PATTERNS` or `_SHARD_CHANNELS`.
/// Returns once the server confirmed it; without a connection, at once (the
/// subscription is in place from the next connection on, with a `RESTORED`
/// item then). Subscriptions run on a connection of their own, RESP2 or
/// RESP3, and are restored after every reconnect. On success `*out` owns
/// the subscription (free it with `relink_subscription_free`).
///
/// No names, a NULL or non-UTF-8 name, or an unknown `kind` is
/// `RELINK_INVALID_ARGUMENT`; shard channels under RESP2 are
/// `RELINK_INVALID_CONFIG`; a refusal by the server (`NOPERM`) is
/// `RELINK_REDIS_ERROR`; a client shut down is `RELINK_SHUTDOWN`.
#[no_mangle]
pub extern "C" fn relink_client_subscribe(
    client: *const relink_client,
    kind: u32,
    names: *const *const c_char,
    count: usize,
    out: *mut *mut relink_subscription,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `client` is NULL or a live client (contract).
        let client = unsafe { try_ref(client, "client") }?;
        not_in_callback()?;
        check_out(out, "out")?;
        if count == 0 {
            return Err(relink_error::invalid(
                "`count` is 0: subscribe needs at least one name",
            ));
        }
        if names.is_null() {
            return Err(relink_error::null("names"));
        }
        let mut owned = Vec::with_capacity(count);
        for i in 0..count {
            // SAFETY: `names` points to `count` readable pointers (contract).
            let name = unsafe { *names.add(i) };
            // SAFETY: each is NULL or a NUL-terminated string (contract).
            owned.push(unsafe { try_str(name, "names[i]") }?.to_owned());
        }
        let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
        let handle = client.client();
        let subscribed = client.runtime().block_on(async {
            match kind {
                RELINK_SUBSCRIBE_CHANNELS => Ok(handle.subscribe(&refs).await),
                RELINK_SUBSCRIBE_PATTERNS => Ok(handle.psubscribe(&refs).await),
                RELINK_SUBSCRIBE_SHARD_CHANNELS => Ok(handle.ssubscribe(&refs).await),
                other => Err(relink_error::invalid(format!(
                    "`kind` is {other}: expected RELINK_SUBSCRIBE_CHANNELS (0), \
                     _PATTERNS (1) or _SHARD_CHANNELS (2)"
                ))),
            }
        })?;
        let sub = subscribed.map_err(|e| subscribe_error(&e))?;
        let handle = into_raw(relink_subscription {
            sub: Some(sub),
            runtime: Arc::clone(client.runtime()),
            held: Held::default(),
        });
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(handle) };
        Ok(())
    })
}

fn subscribe_error(e: &relink::Error) -> relink_error {
    match e {
        relink::Error::Shutdown => relink_error::new(RELINK_SHUTDOWN, e.to_string()),
        relink::Error::Config { .. } => relink_error::new(RELINK_INVALID_CONFIG, e.to_string()),
        _ => relink_error::new(RELINK_REDIS_ERROR, e.to_string()),
    }
}

/// Waits up to `timeout_ms` for the subscription's next item and writes it
/// to `*out` (its pointers stay valid until the next call on `sub`).
/// `RELINK_TIMEOUT` when none came in time (nothing is lost: call again);
/// `RELINK_SHUTDOWN` once the subscription has ended (unsubscribed, or its
/// client freed or given up).
#[no_mangle]
pub extern "C" fn relink_subscription_next(
    sub: *mut relink_subscription,
    timeout_ms: u64,
    out: *mut relink_pubsub_item,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `sub` is NULL or a live subscription used by one thread
        // at a time (contract).
        let sub = unsafe { try_mut(sub, "sub") }?;
        not_in_callback()?;
        check_out(out, "out")?;
        let Some(stream) = sub.sub.as_mut() else {
            return Err(ended());
        };
        let wait = Duration::from_millis(timeout_ms);
        let next = sub
            .runtime
            .block_on(async { tokio::time::timeout(wait, stream.next_item()).await });
        let item = match next {
            Ok(Some(item)) => item,
            Ok(None) => {
                sub.sub = None;
                return Err(ended());
            }
            Err(_) => {
                return Err(relink_error::new(
                    RELINK_TIMEOUT,
                    format!("no item within {timeout_ms} ms"),
                ))
            }
        };
        let mut c = relink_pubsub_item {
            kind: 0,
            channel: std::ptr::null(),
            channel_len: 0,
            pattern: std::ptr::null(),
            pattern_len: 0,
            payload: std::ptr::null(),
            payload_len: 0,
            gap_ms: 0,
            missed: 0,
        };
        match item {
            PubSubItem::Message {
                channel,
                pattern,
                payload,
            } => {
                c.kind = RELINK_ITEM_MESSAGE;
                sub.held = Held {
                    channel: nul_terminated(channel),
                    pattern: pattern.map(nul_terminated),
                    payload,
                };
                c.channel = sub.held.channel.as_ptr().cast();
                c.channel_len = sub.held.channel.len() - 1;
                if let Some(pattern) = &sub.held.pattern {
                    c.pattern = pattern.as_ptr().cast();
                    c.pattern_len = pattern.len() - 1;
                }
                c.payload = sub.held.payload.as_ptr();
                c.payload_len = sub.held.payload.len();
            }
            PubSubItem::Restored { gap } => {
                c.kind = RELINK_ITEM_RESTORED;
                c.gap_ms = u64::try_from(gap.as_millis()).unwrap_or(u64::MAX);
            }
            PubSubItem::Lagged { missed } => {
                c.kind = RELINK_ITEM_LAGGED;
                c.missed = missed;
            }
            other => {
                return Err(relink_error::new(
                    RELINK_REDIS_ERROR,
                    format!("an item this library does not know: {other:?}"),
                ))
            }
        }
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(c) };
        Ok(())
    })
}

fn nul_terminated(text: String) -> Vec<u8> {
    let mut bytes = text.into_bytes();
    bytes.push(0);
    bytes
}

fn ended() -> relink_error {
    relink_error::new(
        RELINK_SHUTDOWN,
        "the subscription has ended (unsubscribed, or its client was freed or gave up)",
    )
}

/// Ends the subscription and waits until the server confirmed the
/// unsubscribe of every name no other subscription of the client wants (at
/// once without a connection: nothing is restored for them). `sub` must
/// still be freed; its `relink_subscription_next` returns `RELINK_SHUTDOWN`
/// from now on.
#[no_mangle]
pub extern "C" fn relink_subscription_unsubscribe(
    sub: *mut relink_subscription,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `sub` is NULL or a live subscription used by one thread
        // at a time (contract).
        let sub = unsafe { try_mut(sub, "sub") }?;
        not_in_callback()?;
        let Some(stream) = sub.sub.take() else {
            return Ok(());
        };
        sub.runtime
            .block_on(stream.unsubscribe())
            .map_err(|e| subscribe_error(&e))
    })
}

/// Frees a subscription, unsubscribing (without waiting) every name no
/// other subscription of the client wants. NULL is a no-op.
#[no_mangle]
pub extern "C" fn relink_subscription_free(sub: *mut relink_subscription) {
    guard_value((), || {
        if sub.is_null() {
            return;
        }
        // SAFETY: `sub` came from relink_client_subscribe and is freed once
        // (contract).
        let sub = unsafe { Box::from_raw(sub) };
        let relink_subscription { sub, runtime, .. } = *sub;
        // The unsubscribe is sent from the runtime's thread.
        let _entered = runtime.enter();
        drop(sub);
    })
}
