//! Broken links through the fault-injecting proxy: each fault is survived.

use std::time::Duration;

use redis::AsyncCommands;
use relink::core::supervisor::HeartbeatConfig;
use relink::{Event, State};
use relink_testkit::{FaultProxy, RedisServer};

use crate::{eventually, fast_config, ready_client, wait_state};

async fn survives(fault: impl Fn(&FaultProxy), expect_outage: bool) {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut client = ready_client(fast_config(&proxy.url())).await;
    let _: () = client.set("k", "before").await.unwrap();
    fault(&proxy);
    if expect_outage {
        let mut health = client.health();
        tokio::time::timeout(
            crate::PATIENCE,
            health.wait_for(|h| h.state != State::Ready),
        )
        .await
        .expect("fault noticed")
        .unwrap();
    }
    proxy.pass();
    wait_state(&client, State::Ready).await;
    let value: String = eventually(|| {
        let mut c = client.clone();
        async move { c.get::<_, String>("k").await }
    })
    .await;
    assert_eq!(value, "before");
    let _: () = client.set("k", "after").await.unwrap();
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_link_is_survived() {
    survives(|p| p.cut(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_is_survived() {
    survives(|p| p.reset(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_is_noticed_by_the_heartbeat_and_survived() {
    // No FIN, no RST: only the heartbeat can tell.
    survives(|p| p.blackhole(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_latency_below_the_timeouts_is_not_an_outage() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut client = ready_client(fast_config(&proxy.url())).await;
    proxy.delay(Duration::from_millis(50));
    let mut events = client.events();
    for i in 0..20 {
        let _: () = client.set("k", i).await.unwrap();
    }
    let v: i64 = client.get("k").await.unwrap();
    assert_eq!(v, 19);
    // Slow is not dead: no disconnect happened.
    let pending = futures_util::FutureExt::now_or_never(futures_util::StreamExt::next(&mut events));
    assert!(
        !matches!(pending, Some(Some(relink::Event::Disconnected { .. }))),
        "{pending:?}"
    );
    assert_eq!(client.health().borrow().state, State::Ready);
    client.shutdown().await;
}

/// A large reply that takes longer than the response timeout to arrive is
/// waited for while its bytes keep coming: each socket read is evidence
/// that the server is alive, for the call (it keeps waiting instead of
/// giving the attempt up and sending it again) and for the heartbeat (no
/// PING queued behind the reply, declared lost). Replies only counted once
/// whole would show neither any sign of life for over a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_arriving_slower_than_the_response_timeout_is_waited_for_while_its_bytes_flow() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    // 512 KiB: 32 of the proxy's 16 KiB chunks, each held 40 ms, so the
    // reply takes at least 1.28 s to arrive, four response timeouts.
    let big = "x".repeat(512 * 1024);
    let mut direct = server.connection();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut direct)
        .unwrap();
    // A PING after 50 ms of silence: the first comes while the GET waits
    // for its first bytes (80 ms through the proxy), so the heartbeat must
    // take the reads that follow as the answer to its doubt.
    let config = fast_config(&proxy.url())
        .with_response_timeout(Duration::from_millis(300))
        .with_heartbeat(HeartbeatConfig {
            interval: Duration::from_millis(50),
            timeout: Duration::from_millis(200),
            misses_allowed: 0,
        });
    let mut client = ready_client(config).await;
    let mut events = client.events();
    proxy.delay(Duration::from_millis(40));
    let started = std::time::Instant::now();
    let value: String = client.get("big").await.expect("the whole reply");
    assert!(
        started.elapsed() >= Duration::from_millis(1280),
        "the proxy held the reply for less than it should: {:?}",
        started.elapsed()
    );
    assert_eq!(value, big);
    assert_eq!(client.stats().retried, 0, "sent once");
    assert_eq!(client.health().borrow().state, State::Ready);
    // The heartbeat had its evidence from the reads too: no PING went
    // unanswered, none needed the side check to confirm the server busy.
    let doubted: Vec<_> = drain_ready(&mut events)
        .into_iter()
        .filter(|e| {
            matches!(
                e,
                Event::HeartbeatMissed { .. }
                    | Event::BusyConfirmed { .. }
                    | Event::Disconnected { .. }
            )
        })
        .collect();
    assert!(doubted.is_empty(), "{doubted:?}");
    client.shutdown().await;
}

/// An idle connection's heartbeat measures the round trip of its PINGs
/// (`Health::rtt`): the PONG is told to the core as the answer to its PING,
/// not first as any read on the connection, which would close the PING
/// unmeasured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connections_heartbeat_measures_its_round_trip() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let mut health = client.health();
    let measured = tokio::time::timeout(crate::PATIENCE, health.wait_for(|h| h.rtt.is_some()))
        .await
        .expect("a round trip measured within PATIENCE (a PING after 100 ms of silence)")
        .expect("health channel open")
        .rtt;
    assert!(
        measured.is_some_and(|rtt| rtt < crate::PATIENCE),
        "{measured:?}"
    );
    client.shutdown().await;
}

/// A server busy running a long script answers PING with `-BUSY`: that is an
/// answer, so the heartbeat keeps the connection (the core decides what a
/// PING's error proves; the driver passes every result on). Without that,
/// the idle connection would be declared dead at interval + timeout (300 ms)
/// while the server was merely busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_answered_busy_keeps_the_connection() {
    let server = RedisServer::start();
    let mut client = ready_client(fast_config(&server.url())).await;
    let id_before: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut client)
        .await
        .unwrap();
    let mut events = client.events();
    let mut direct = server.connection();
    // Scripts past this threshold get -BUSY answers to everyone else.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg("50")
        .query(&mut direct)
        .unwrap();
    // A script that keeps the server busy for 1.5 s (5 heartbeat periods).
    let script = tokio::task::spawn_blocking(move || {
        redis::cmd("EVAL")
            .arg(
                "local t0 = redis.call('TIME') \
                 local start = t0[1] * 1000000 + t0[2] \
                 while true do \
                   local t = redis.call('TIME') \
                   if t[1] * 1000000 + t[2] - start > 1500000 then return 1 end \
                 end",
            )
            .arg(0)
            .query::<i64>(&mut direct)
    });
    // Meanwhile the idle connection's heartbeat PINGs meet -BUSY.
    assert_eq!(script.await.unwrap().unwrap(), 1);
    let id_after: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(id_before, id_after, "the same connection throughout");
    assert_no_disconnect(&mut events);
    client.shutdown().await;
}

/// The events already delivered, without waiting for more.
pub(crate) fn drain_ready(
    events: &mut (impl futures_util::Stream<Item = Event> + Unpin),
) -> Vec<Event> {
    use futures_util::FutureExt;
    use futures_util::StreamExt;
    let mut seen = Vec::new();
    while let Some(Some(e)) = events.next().now_or_never() {
        seen.push(e);
    }
    seen
}

/// Asserts that none of the events delivered so far is a disconnect.
pub(crate) fn assert_no_disconnect(events: &mut (impl futures_util::Stream<Item = Event> + Unpin)) {
    let seen = drain_ready(events);
    assert!(
        !seen.iter().any(|e| matches!(e, Event::Disconnected { .. })),
        "no disconnect expected: {seen:?}"
    );
}
