//! Outage policies: fail fast, or a bounded backlog that drains on recovery.

use std::time::Duration;

use redis::AsyncCommands;
use relink::config::OutagePolicy;
use relink::{Client, Error, State};
use relink_testkit::RedisServer;

use crate::{fast_config, ready_client, until, wait_state, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_errors_at_once_and_says_nothing_happened() {
    let mut server = RedisServer::start();
    let config = fast_config(&server.url()).with_outage(OutagePolicy::FailFast);
    let mut client = ready_client(config).await;
    server.kill();
    let mut health = client.health();
    tokio::time::timeout(PATIENCE, health.wait_for(|h| h.state != State::Ready))
        .await
        .unwrap()
        .unwrap();
    // NotConnected is only ever returned without waiting: fail-fast has no
    // queue (timing is the benchmark's business, not an assertion's).
    let err = client.set::<_, _, ()>("k", "v").await.unwrap_err();
    let relink_err = Error::from_redis(&err).expect("relink's own error");
    assert!(matches!(relink_err, Error::NotConnected { .. }), "{err}");
    assert_eq!(relink_err.outcome(), Some(relink::Outcome::NotApplied));
    server.restart();
    wait_state(&client, State::Ready).await;
    let _: () = client.set("k", "v").await.unwrap();
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_is_bounded_and_drains_after_recovery() {
    let mut server = RedisServer::start();
    let config = fast_config(&server.url()).with_outage(OutagePolicy::Queue {
        capacity: 8,
        max_wait: Duration::from_secs(30),
    });
    let mut client = ready_client(config).await;
    server.kill();
    wait_state(&client, State::TransientFailure).await;

    let queued: Vec<_> = (0..8)
        .map(|i| {
            let mut c = client.clone();
            tokio::spawn(async move { c.set::<_, _, ()>(format!("q{i}"), i).await })
        })
        .collect();
    until("all eight hold a backlog place", || {
        client.stats().queued == 8
    })
    .await;
    let err = client.set::<_, _, ()>("overflow", 1).await.unwrap_err();
    assert!(
        matches!(
            Error::from_redis(&err),
            Some(Error::BacklogFull { capacity: 8 })
        ),
        "{err}"
    );
    // BacklogFull is decided before any wait (the ninth finds no place).

    server.restart();
    for q in queued {
        tokio::time::timeout(PATIENCE, q)
            .await
            .unwrap()
            .unwrap()
            .expect("queued command completes");
    }
    let values: Vec<Option<i64>> = redis::cmd("MGET")
        .arg((0..8).map(|i| format!("q{i}")).collect::<Vec<_>>())
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(values, (0..8).map(Some).collect::<Vec<_>>());
    let overflow: Option<i64> = client.get("overflow").await.unwrap();
    assert_eq!(overflow, None, "the refused command was not applied");
    client.shutdown().await;
}

/// `wait_ready` giving up is about readiness, not a command: its error says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_ready_timing_out_names_readiness() {
    let mut server = RedisServer::start();
    server.pause();
    let client = Client::new(fast_config(&server.url())).expect("client");
    let err = client
        .wait_ready(Duration::from_millis(300))
        .await
        .expect_err("a stopped server never gets Ready");
    match &err {
        Error::NotReady { waited, state, .. } => {
            assert_eq!(*waited, Duration::from_millis(300));
            assert_ne!(*state, State::Ready);
        }
        other => panic!("expected NotReady, got {other:?}"),
    }
    assert!(err.to_string().starts_with("not ready within"), "{err}");
    assert_eq!(err.outcome(), None, "no command was involved");
    server.resume();
    client
        .wait_ready(PATIENCE)
        .await
        .expect("ready once resumed");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_command_waits_at_most_max_wait() {
    let mut server = RedisServer::start();
    let config = fast_config(&server.url()).with_outage(OutagePolicy::Queue {
        capacity: 4,
        max_wait: Duration::from_millis(300),
    });
    let mut client = ready_client(config).await;
    server.kill();
    wait_state(&client, State::TransientFailure).await;
    let err = client.get::<_, Option<String>>("k").await.unwrap_err();
    assert!(
        matches!(Error::from_redis(&err), Some(Error::QueueTimeout { .. })),
        "{err}"
    );
    client.shutdown().await;
}

/// A call refused at once (fail-fast, nothing listening) still lets the
/// other tasks on its thread run: a caller retrying in a tight loop does
/// not starve them (relink spends tokio's cooperative budget on a refusal).
#[tokio::test(flavor = "current_thread")]
async fn a_caller_refused_in_a_loop_does_not_starve_other_tasks() {
    let server = RedisServer::start();
    let url = server.url();
    drop(server); // nothing listens there now
    let mut client = Client::new(fast_config(&url).with_outage(OutagePolicy::FailFast)).unwrap();
    let other_ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = tokio::spawn({
        let other_ran = std::sync::Arc::clone(&other_ran);
        async move { other_ran.store(true, std::sync::atomic::Ordering::SeqCst) }
    });
    let mut refused = 0u32;
    // Bounded: far more than tokio's budget of 128 operations.
    while refused < 10_000 && !other_ran.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(client.get::<_, Option<String>>("k").await.is_err());
        refused += 1;
    }
    assert!(
        other_ran.load(std::sync::atomic::Ordering::SeqCst),
        "the other task never ran in {refused} refusals"
    );
    other.await.unwrap();
    client.shutdown().await;
}
