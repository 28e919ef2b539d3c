//! Recovery without user action: kill -9 and restart, and a hung server.

use std::time::Duration;

use redis::AsyncCommands;
use relink::config::OutagePolicy;
use relink::core::supervisor::HeartbeatConfig;
use relink::{Error, Event, Outcome, State};
use relink_testkit::RedisServer;

use crate::{events_until, eventually, fast_config, ready_client, until, wait_state, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_is_ridden_out_without_user_action() {
    let mut server = RedisServer::builder().appendonly(true).start();
    let mut client = ready_client(fast_config(&server.url())).await;
    let mut events = client.events();
    let _: () = client.set("before", "1").await.unwrap();

    server.kill();
    let seen = events_until(&mut events, |e| {
        matches!(e, Event::ReconnectScheduled { .. })
    })
    .await;
    assert!(
        seen.iter().any(|e| matches!(e, Event::Disconnected { .. })),
        "the loss was reported: {seen:?}"
    );
    server.restart();
    let seen = events_until(&mut events, |e| matches!(e, Event::Reconnected { .. })).await;
    assert!(seen.iter().any(|e| matches!(
        e,
        Event::StateChanged {
            to: State::Ready,
            ..
        }
    )));

    // Commands after recovery succeed, and the acknowledged write survived
    // the kill (appendfsync always).
    let _: () = client.set("after", "2").await.unwrap();
    let before: String = client.get("before").await.unwrap();
    assert_eq!(before, "1");
    client.shutdown().await;
}

/// A hung server is noticed by the heartbeat; a call made after that does
/// not go to it: it waits in the backlog and ends by `max_wait`, unsent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_is_noticed_and_later_calls_wait_in_the_backlog() {
    let mut server = RedisServer::start();
    let config = fast_config(&server.url()).with_outage(OutagePolicy::Queue {
        capacity: 16,
        max_wait: Duration::from_millis(300),
    });
    let mut client = ready_client(config).await;

    server.pause();
    // Health leaves Ready: heartbeat 100 ms + 200 ms timeout; PATIENCE bounds it.
    let mut health = client.health();
    tokio::time::timeout(PATIENCE, health.wait_for(|h| h.state != State::Ready))
        .await
        .expect("hang noticed")
        .unwrap();
    let err = client.get::<_, Option<String>>("k").await.unwrap_err();
    assert!(
        matches!(Error::from_redis(&err), Some(Error::QueueTimeout { .. })),
        "{err}"
    );
    assert_eq!(Error::outcome_of(&err), Outcome::NotApplied);

    server.resume();
    wait_state(&client, State::Ready).await;
    let _: () = eventually(|| {
        let mut c = client.clone();
        async move { c.set::<_, _, ()>("k", "v").await }
    })
    .await;
    client.shutdown().await;
}

/// A read sent to a hung server is retried (reads are safe to repeat), but
/// only within its deadline: with a 250 ms response timeout and a 300 ms
/// deadline the caller hears "deadline exceeded, may have been applied", not
/// the error of a fourth 250 ms attempt a second later. (The time it takes is
/// `cargo xtask bench`'s to report, not this test's to assert.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_hung_server_ends_by_its_deadline() {
    let mut server = RedisServer::start();
    // A slow heartbeat, so only the call's own deadline can end it.
    let config = fast_config(&server.url())
        .with_heartbeat(HeartbeatConfig {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            misses_allowed: 0,
        })
        .with_response_timeout(Duration::from_millis(250))
        .with_deadline(Some(Duration::from_millis(300)));
    let mut client = ready_client(config).await;
    server.pause();
    let err = client.get::<_, Option<String>>("k").await.unwrap_err();
    match Error::from_redis(&err) {
        Some(Error::DeadlineExceeded {
            deadline, outcome, ..
        }) => {
            assert_eq!(*deadline, Duration::from_millis(300));
            assert_eq!(*outcome, Outcome::Unknown, "it was sent");
        }
        other => panic!("expected DeadlineExceeded, got {other:?} ({err})"),
    }
    assert_eq!(
        client.stats().retried,
        1,
        "one retry fitted in the deadline"
    );
    // A handle with a deadline of its own.
    let mut quick = client.with_deadline(Some(Duration::from_millis(100)));
    let err = quick.get::<_, Option<String>>("k").await.unwrap_err();
    assert!(
        matches!(
            Error::from_redis(&err),
            Some(Error::DeadlineExceeded { deadline, .. }) if *deadline == Duration::from_millis(100)
        ),
        "{err}"
    );
    server.resume();
    let _: () = client.set("k", "v").await.unwrap();
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_queued_commands_and_stops_the_task() {
    let mut server = RedisServer::start();
    let mut client = ready_client(fast_config(&server.url())).await;
    server.kill();
    wait_state(&client, State::TransientFailure).await;
    let queued = tokio::spawn({
        let mut c = client.clone();
        async move { c.get::<_, Option<String>>("k").await }
    });
    until("the call holds a backlog place", || {
        client.stats().queued == 1
    })
    .await;
    client.shutdown().await;
    let result = tokio::time::timeout(PATIENCE, queued)
        .await
        .unwrap()
        .unwrap();
    let err = result.expect_err("queued command fails on shutdown");
    assert!(
        matches!(
            relink::Error::from_redis(&err),
            Some(relink::Error::Shutdown)
        ),
        "{err}"
    );
    assert_eq!(client.health().borrow().state, State::Shutdown);
    let after: redis::RedisResult<()> = client.set("k", "v").await;
    assert!(matches!(
        relink::Error::from_redis(&after.unwrap_err()),
        Some(relink::Error::Shutdown)
    ));
}

/// A restarted server answers the handshake while it is still loading its
/// dataset, but -LOADING to everything else: it is not ready. The client
/// keeps queued commands waiting until it is, instead of sending them into
/// -LOADING refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_commands_wait_for_a_server_that_is_still_loading() {
    // key-load-delay (a Redis testing knob, µs per key) makes loading take
    // about two seconds.
    let mut server = RedisServer::builder()
        .appendonly(true)
        .args(["--key-load-delay", "100"])
        .start();
    {
        let mut direct = server.connection();
        let mut pipe = redis::pipe();
        for i in 0..20_000 {
            pipe.set(format!("bulk:{i}"), i).ignore();
        }
        pipe.exec(&mut direct).unwrap();
    }
    let mut client = ready_client(fast_config(&server.url())).await;
    server.kill();
    wait_state(&client, State::TransientFailure).await;
    let queued = tokio::spawn({
        let mut c = client.clone();
        async move { c.set::<_, _, ()>("after", "loading").await }
    });
    // Restart (it returns once loading is over); the client reconnects meanwhile.
    tokio::task::block_in_place(|| server.restart());
    let result = tokio::time::timeout(PATIENCE, queued)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "queued command refused: {result:?}");
    assert_eq!(
        client.stats().not_applied,
        0,
        "nothing was sent into -LOADING"
    );
    let v: String = client.get("after").await.unwrap();
    assert_eq!(v, "loading");
    client.shutdown().await;
}

/// A command already waiting on a connection when the heartbeat declares it
/// dead fails then, not at its (here very long) response timeout: the error
/// says the connection was closed, not that the command timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_in_flight_fails_when_its_connection_is_declared_dead() {
    let mut server = RedisServer::start();
    let config = fast_config(&server.url()).with_response_timeout(Duration::from_secs(60));
    let client = ready_client(config).await;
    server.pause();
    let in_flight = tokio::spawn({
        let mut c = client.clone();
        async move { c.incr::<_, _, i64>("n", 1).await }
    });
    let result = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("failed long before the 60 s response timeout")
        .unwrap();
    let err = result.expect_err("no reply from a stopped server");
    match relink::Error::from_redis(&err) {
        Some(relink::Error::OutcomeUnknown { kind, .. }) => {
            assert_ne!(*kind, relink::FailureKind::Timeout, "{err}");
        }
        other => panic!("expected an unknown outcome, got {other:?} ({err})"),
    }
    server.resume();
    client.shutdown().await;
}

/// No herd: clients that lost one server at the same instant do not come
/// back at the same instant. With relink's defaults, the waits after
/// refusals are jittered anew each time, so 100 clients' connections after
/// the restart (the instants they became Ready again) spread over most of
/// the 100 ms refused cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_lost_a_server_together_do_not_return_together() {
    const CLIENTS: usize = 100;
    let mut server = RedisServer::start();
    // relink's defaults; each client draws its own jitter seed.
    let clients: Vec<relink::Client> = (0..CLIENTS)
        .map(|_| relink::Client::new(relink::Config::new(&server.url()).unwrap()).unwrap())
        .collect();
    for client in &clients {
        client.wait_ready(PATIENCE).await.unwrap();
    }
    server.kill();
    // Every client has been refused a few times.
    until("three refused attempts each", || {
        clients.iter().all(|c| {
            let h = c.health();
            let h = h.borrow();
            h.state != State::Ready && h.attempt >= 3
        })
    })
    .await;
    tokio::task::block_in_place(|| server.restart());
    for client in &clients {
        client.wait_ready(PATIENCE).await.unwrap();
    }
    let ready_at: Vec<std::time::Instant> =
        clients.iter().map(|c| c.health().borrow().since).collect();
    let first = ready_at.iter().min().copied().unwrap();
    let last = ready_at.iter().max().copied().unwrap();
    let spread = last.duration_since(first);
    assert!(
        spread >= Duration::from_millis(80),
        "100 clients came back within {spread:?}"
    );
    for client in &clients {
        client.shutdown().await;
    }
}

/// A Ready connection that breaks is retried at once: the first attempt
/// needs no delay, even on a connection up for well under
/// `backoff_reset_after` (relink's defaults: 10 s). Once per stable period:
/// a second loss right after waits the backoff (a flapping server earns
/// one attempt at once, not a storm).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_ready_connection_is_retried_at_once_once_per_stable_period() {
    let server = RedisServer::start();
    let mut client = ready_client(relink::Config::new(&server.url()).unwrap()).await;
    let mut events = client.events();
    let mut admin = server.connection();
    let mut kill = || assert!(crate::kill_other_clients(&mut admin) >= 1);
    let retried = |e: &Event| matches!(e, Event::ReconnectScheduled { .. });
    kill();
    let seen = events_until(&mut events, retried).await;
    assert!(
        matches!(
            seen.last(),
            Some(Event::ReconnectScheduled { delay, .. }) if delay.is_zero()
        ),
        "the first loss is retried at once: {seen:?}"
    );
    events_until(&mut events, |e| matches!(e, Event::Reconnected { .. })).await;
    let _: () = client.set("k", "v").await.unwrap();
    kill();
    let seen = events_until(&mut events, retried).await;
    assert!(
        matches!(
            seen.last(),
            Some(Event::ReconnectScheduled { delay, .. }) if !delay.is_zero()
        ),
        "a second loss within backoff_reset_after waits the backoff: {seen:?}"
    );
    events_until(&mut events, |e| matches!(e, Event::Reconnected { .. })).await;
    let _: () = client.set("k", "v").await.unwrap();
    client.shutdown().await;
}
