//! Exclusive connections: blocking commands off the shared connection,
//! leases for WATCH/MULTI/EXEC, and bad input.

use redis::AsyncCommands;
use relink::config::{ExclusiveConfig, OutagePolicy};
use relink::{Config, Error};
use relink_testkit::RedisServer;

use crate::{fast_config, ready_client, PATIENCE};

/// 16 tasks increment one counter with optimistic transactions on leased
/// connections (8 at most), retrying when EXEC answers nil: no update is
/// lost, so the counter equals the number of EXECs that went through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_multi_exec_on_leases_loses_no_update() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    const TASKS: usize = 16;
    const EACH: usize = 25;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut conflicts = 0u32;
                for _ in 0..EACH {
                    // Bounded: a transaction loses only to another that won.
                    for attempt in 0.. {
                        assert!(attempt < 10_000, "no progress");
                        let mut tx = client.exclusive().await.expect("lease");
                        redis::cmd("WATCH")
                            .arg("counter")
                            .exec_async(&mut tx)
                            .await
                            .unwrap();
                        let n: Option<i64> = tx.get("counter").await.unwrap();
                        let done: Option<(i64,)> = redis::pipe()
                            .atomic()
                            .set("counter", n.unwrap_or(0) + 1)
                            .ignore()
                            .get("counter")
                            .query_async(&mut tx)
                            .await
                            .unwrap();
                        if done.is_some() {
                            break;
                        }
                        conflicts += 1;
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += tokio::time::timeout(PATIENCE * 3, t)
            .await
            .unwrap()
            .unwrap();
    }
    let mut c = client.clone();
    let n: i64 = c.get("counter").await.unwrap();
    assert_eq!(
        n,
        (TASKS * EACH) as i64,
        "no lost update ({conflicts} conflicts retried)"
    );
    let stats = client.stats();
    assert!(stats.exclusive_open <= 8, "{stats:?}");
    assert_eq!(stats.exclusive_leased, 0, "every lease returned: {stats:?}");
    client.shutdown().await;
}

/// A lease dropped with a transaction open or keys watched is cleaned before
/// anyone else gets the connection; one that changed lasting state is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_lease_is_clean_or_closed() {
    let server = RedisServer::start();
    let config =
        fast_config(&server.url()).with_exclusive(ExclusiveConfig::default().max_connections(1));
    let client = ready_client(config).await;
    let id = |mut tx: relink::Exclusive| async move {
        let id: i64 = redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut tx)
            .await
            .unwrap();
        (id, tx)
    };
    let (first, mut tx) = id(client.exclusive().await.unwrap()).await;
    redis::cmd("MULTI").exec_async(&mut tx).await.unwrap();
    redis::cmd("SET")
        .arg("k")
        .arg("in-tx")
        .exec_async(&mut tx)
        .await
        .unwrap();
    drop(tx); // transaction left open
    let (second, mut tx) = id(client.exclusive().await.unwrap()).await;
    assert_eq!(first, second, "the same connection, cleaned");
    // Not in a transaction any more: a GET answers at once.
    let v: Option<String> = tx.get("k").await.unwrap();
    assert_eq!(v, None, "the open transaction was discarded");
    redis::cmd("SELECT")
        .arg(1)
        .exec_async(&mut tx)
        .await
        .unwrap();
    drop(tx); // lasting state: closed
    let (third, tx) = id(client.exclusive().await.unwrap()).await;
    assert_ne!(third, first, "a connection with SELECT 1 is not reused");
    drop(tx);
    client.shutdown().await;
}

/// Waiting for an exclusive connection follows the outage policy: with
/// fail-fast and every connection leased, the next caller is told at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_bounded_and_waiting_follows_the_policy() {
    let server = RedisServer::start();
    let config = fast_config(&server.url())
        .with_exclusive(ExclusiveConfig::default().max_connections(2))
        .with_outage(OutagePolicy::FailFast);
    let client = ready_client(config).await;
    let a = client.exclusive().await.unwrap();
    let b = client.exclusive().await.unwrap();
    assert_eq!(client.stats().exclusive_leased, 2);
    match client.exclusive().await {
        Err(Error::NoExclusiveConnection { max: 2 }) => {}
        other => panic!("expected NoExclusiveConnection, got {other:?}"),
    }
    drop(a);
    let c = client
        .exclusive()
        .await
        .expect("a returned one is leased again");
    drop((b, c));
    // With a queue, a waiting caller gets one when it is returned.
    let config =
        fast_config(&server.url()).with_exclusive(ExclusiveConfig::default().max_connections(1));
    let queued = ready_client(config).await;
    let held = queued.exclusive().await.unwrap();
    let waiter = tokio::spawn({
        let queued = queued.clone();
        async move { queued.exclusive().await.map(|_| ()) }
    });
    crate::until("the waiter is waiting", || !waiter.is_finished()).await;
    drop(held);
    tokio::time::timeout(PATIENCE, waiter)
        .await
        .unwrap()
        .unwrap()
        .expect("leased after the return");
    client.shutdown().await;
    queued.shutdown().await;
}

/// Bad input gets errors that name the problem, never a panic or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_blocking_timeouts_and_pool_sizes_are_named() {
    let server = RedisServer::start();
    let mut client = ready_client(fast_config(&server.url())).await;
    for timeout in ["-1", "soon"] {
        let err = redis::cmd("BLPOP")
            .arg("q")
            .arg(timeout)
            .query_async::<Option<(String, String)>>(&mut client)
            .await
            .unwrap_err();
        match Error::from_redis(&err) {
            Some(Error::InvalidCommand { reason }) => {
                assert!(
                    reason.contains("BLPOP") && reason.contains(timeout),
                    "{reason}"
                );
            }
            other => panic!("expected InvalidCommand, got {other:?} ({err})"),
        }
    }
    let e = Config::new(&server.url())
        .unwrap()
        .with_exclusive(ExclusiveConfig::default().max_connections(0))
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, Error::Config { field, .. } if field == "exclusive.max_connections"),
        "{e}"
    );
    // A lease held past shutdown: its commands fail with Shutdown, its drop
    // is harmless, and no new lease is given.
    let mut tx = client.exclusive().await.unwrap();
    client.shutdown().await;
    assert!(matches!(client.exclusive().await, Err(Error::Shutdown)));
    let late = tx.get::<_, Option<String>>("k").await.unwrap_err();
    assert!(
        matches!(Error::from_redis(&late), Some(Error::Shutdown)),
        "{late}"
    );
    drop(tx);
    assert_eq!(client.stats().exclusive_open, 0, "{:?}", client.stats());
}
