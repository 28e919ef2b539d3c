//! Exclusive connections: blocking commands off the shared connection,
//! leases for WATCH/MULTI/EXEC, and bad input.

use redis::AsyncCommands;
use relink::config::{ExclusiveConfig, OutagePolicy};
use std::time::Duration;

use relink::{Client, Config, Error};
use relink_testkit::RedisServer;

use crate::{fast_config, ready_client, PATIENCE};

/// WATCH `counter`, read it, and write it plus one in MULTI/EXEC on the
/// lease: `None` when another client changed it in between.
pub async fn watched_increment(tx: &mut relink::Exclusive) -> Option<(i64,)> {
    redis::cmd("WATCH")
        .arg("counter")
        .exec_async(&mut *tx)
        .await
        .unwrap();
    let n: Option<i64> = tx.get("counter").await.unwrap();
    redis::pipe()
        .atomic()
        .set("counter", n.unwrap_or(0) + 1)
        .ignore()
        .get("counter")
        .query_async(&mut *tx)
        .await
        .unwrap()
}

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
                        let done = watched_increment(&mut tx).await;
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
    assert!(client.stats().exclusive_open <= 8, "{:?}", client.stats());
    // A lease that needs cleaning is returned once its UNWATCH is answered.
    crate::until("every lease returned", || {
        client.stats().exclusive_leased == 0
    })
    .await;
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

/// How many clients the server has blocked in a blocking command.
fn blocked_clients(server: &RedisServer) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("clients")
        .query(&mut server.connection())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(-1)
}

/// A BLPOP with a 5 s timeout on a default client, while 8 tasks run
/// GET/SET on clones: the GETs go on (the BLPOP holds an exclusive
/// connection, not the shared one), the BLPOP outlives the heartbeat's
/// bound (its PINGs queue behind it; the side check says the server is
/// merely blocked) and returns the value pushed later, with no disconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blpop_holds_neither_the_shared_connection_nor_its_own_heartbeat() {
    let server = RedisServer::start();
    let config = Config::new(&server.url()).unwrap();
    let client = Client::new(config).unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    let mut events = client.events();
    let blpop = tokio::spawn({
        let mut c = client.clone();
        async move { c.blpop::<_, Option<(String, String)>>("jobs", 5.0).await }
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let mut c = client.clone();
            let stop = std::sync::Arc::clone(&stop);
            tokio::spawn(async move {
                let mut done = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _: () = c.set(format!("w{i}"), done).await.unwrap();
                    let _: Option<u64> = c.get(format!("w{i}")).await.unwrap();
                    done += 1;
                    assert!(done < 10_000_000, "bounded");
                }
                done
            })
        })
        .collect();
    crate::until("the BLPOP is blocked on the server", || {
        blocked_clients(&server) == 1
    })
    .await;
    // Stay blocked until the heartbeat has checked the BLPOP's connection
    // from the side twice (each check is a new connection to the server):
    // the second comes an interval after the first, past the interval +
    // timeout at which a PING queued behind the BLPOP would have had the
    // connection declared dead without the check.
    let connections = || {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut server.connection())
            .unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|n| n.trim().parse::<i64>().ok())
            .unwrap_or(0)
    };
    // Each look opens one connection of its own: count it out.
    let before = connections();
    let mut looks = 0;
    crate::until("two side checks of the blocked connection", || {
        looks += 1;
        connections() - before - looks >= 2
    })
    .await;
    let ops_during = {
        let before = client.stats().succeeded;
        crate::until("the workers make progress", || {
            client.stats().succeeded > before + 100
        })
        .await;
        client.stats().succeeded - before
    };
    let _: () = redis::cmd("LPUSH")
        .arg("jobs")
        .arg("job-1")
        .query(&mut server.connection())
        .unwrap();
    let popped = tokio::time::timeout(PATIENCE, blpop)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(popped, Some(("jobs".to_owned(), "job-1".to_owned())));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        assert!(w.await.unwrap() > 0);
    }
    assert!(ops_during > 100);
    crate::faults::assert_no_disconnect(&mut events);
    client.shutdown().await;
}

/// `CLIENT PAUSE 3000 WRITE` during an INCR loop on a default client: the
/// writes are delayed, not failed (the pause is shorter than the deadline,
/// and the side check confirms the connection alive while its PINGs queue
/// behind the paused INCR); every acknowledged INCR is counted, nothing
/// else; no reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_out_a_client_pause() {
    let server = RedisServer::start();
    let client = Client::new(Config::new(&server.url()).unwrap()).unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    let mut events = client.events();
    // Health shows the connection busy (not dead) while the INCR is paused.
    let mut health = client.health();
    let busy_seen = tokio::spawn(async move {
        tokio::time::timeout(PATIENCE, health.wait_for(|h| h.busy_since.is_some()))
            .await
            .is_ok_and(|r| r.is_ok())
    });
    let mut c = client.clone();
    let mut acked = 0i64;
    let mut paused = false;
    let started = std::time::Instant::now();
    // Bounded: about 5 s of INCRs, a pause of 3 s in the middle.
    while started.elapsed() < Duration::from_secs(5) {
        if !paused && started.elapsed() > Duration::from_millis(500) {
            let _: () = redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(3000)
                .arg("WRITE")
                .query(&mut server.connection())
                .unwrap();
            paused = true;
        }
        let _: i64 = c
            .incr("counter", 1)
            .await
            .expect("an INCR during a pause waits");
        acked += 1;
    }
    let n: i64 = c.get("counter").await.unwrap();
    assert_eq!(n, acked);
    assert!(
        busy_seen.await.unwrap(),
        "health.busy_since was set during the pause"
    );
    crate::faults::assert_no_disconnect(&mut events);
    client.shutdown().await;
}

/// A consumer reading with `XREADGROUP ... BLOCK` rides out a server restart
/// on its own: the blocked read fails with the connection (a read: retried
/// on a new exclusive connection once the server is back), and the entry
/// added after the restart is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_xreadgroup_comes_back_after_a_restart() {
    let mut server = RedisServer::builder().appendonly(true).start();
    let client = ready_client(fast_config(&server.url())).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("s")
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query(&mut server.connection())
        .unwrap();
    let reader = tokio::spawn({
        let mut c = client.clone();
        async move {
            // Bounded: each read blocks at most 1 s; the test ends it.
            for _ in 0..120 {
                let reply: redis::RedisResult<redis::streams::StreamReadReply> =
                    redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg("g")
                        .arg("c")
                        .arg("BLOCK")
                        .arg(1000)
                        .arg("STREAMS")
                        .arg("s")
                        .arg(">")
                        .query_async(&mut c)
                        .await;
                if let Ok(reply) = reply {
                    if let Some(key) = reply.keys.first() {
                        if let Some(id) = key.ids.first() {
                            return Some(id.map.contains_key("after"));
                        }
                    }
                }
            }
            None
        }
    });
    crate::until("the reader is blocked", || blocked_clients(&server) == 1).await;
    server.kill();
    server.restart();
    let _: String = redis::cmd("XADD")
        .arg("s")
        .arg("*")
        .arg("after")
        .arg("restart")
        .query(&mut server.connection())
        .unwrap();
    let got = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        Some(true),
        "the entry added after the restart was read"
    );
    client.shutdown().await;
}

/// A 3 s Lua busy loop sent through a default client, with a low
/// `busy-reply-threshold`: the connection running the script is not torn
/// down (its PINGs queue behind the script; the side check is answered
/// `-BUSY`, which proves the server alive), the script's reply is waited
/// for past the response timeout, and another client's GET, refused with
/// `-BUSY`, is waited out as the outage policy says and then answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_script_is_waited_for_and_others_wait_out_busy() {
    let server = RedisServer::start();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg("100")
        .query(&mut server.connection())
        .unwrap();
    let scripter = Client::new(Config::new(&server.url()).unwrap()).unwrap();
    let reader = Client::new(Config::new(&server.url()).unwrap()).unwrap();
    scripter.wait_ready(PATIENCE).await.unwrap();
    reader.wait_ready(PATIENCE).await.unwrap();
    let mut scripter_events = scripter.events();
    let mut reader_events = reader.events();
    let script = tokio::spawn({
        let mut c = scripter.clone();
        async move {
            redis::cmd("EVAL")
                .arg(
                    "local t0 = redis.call('TIME') \
                     local start = t0[1] * 1000000 + t0[2] \
                     while true do \
                       local t = redis.call('TIME') \
                       if t[1] * 1000000 + t[2] - start > 3000000 then return 1 end \
                     end",
                )
                .arg(0)
                .query_async::<i64>(&mut c)
                .await
        }
    });
    // Once the script is past the threshold, the server answers -BUSY to
    // everyone else: the reader's GET meets it, and waits it out.
    let busy = || {
        redis::cmd("PING")
            .query::<String>(&mut server.connection())
            .is_err_and(|e| e.code() == Some("BUSY"))
    };
    crate::until("the script keeps the server busy", busy).await;
    let mut r = reader.clone();
    let got = r.get::<_, Option<String>>("k").await;
    assert!(
        got.is_ok(),
        "a GET during a script is waited out, not failed: {got:?}"
    );
    assert!(!busy(), "the GET was answered once the script ended");
    assert_eq!(
        tokio::time::timeout(PATIENCE, script)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        1
    );
    for events in [&mut scripter_events, &mut reader_events] {
        crate::faults::assert_no_disconnect(events);
    }
    scripter.shutdown().await;
    reader.shutdown().await;
}

/// A lease's connection lost between WATCH and EXEC: the server forgot the
/// WATCH, so relink refuses to send the rest of the transaction (it would
/// run unguarded and could lose an update); the caller starts again on the
/// same lease, and that transaction goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_lost_with_its_connection_is_not_run_unguarded() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let mut tx = client.exclusive().await.unwrap();
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut tx)
        .await
        .unwrap();
    redis::cmd("WATCH")
        .arg("counter")
        .exec_async(&mut tx)
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut server.connection())
        .unwrap();
    // Bounded: the lease's connection is replaced within PATIENCE.
    let refused = tokio::time::timeout(PATIENCE, async {
        loop {
            match tx.get::<_, Option<i64>>("counter").await {
                Err(e) if matches!(Error::from_redis(&e), Some(Error::ConnectionReplaced)) => {
                    break e;
                }
                // Before the reconnect: a read of the dead connection fails
                // or is retried; go on until the replacement is seen.
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await
    .expect("the replaced connection is noticed");
    assert_eq!(Error::outcome_of(&refused), relink::Outcome::NotApplied);
    // Start again on the same lease: WATCH, read, transaction.
    let done = watched_increment(&mut tx).await;
    assert_eq!(done, Some((1,)));
    drop(tx);
    client.shutdown().await;
}

/// An exclusive connection unused for `idle_timeout` is closed; the task
/// that closes them ends when none is idle, and shutdown leaves none open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_exclusive_connections_are_closed() {
    let server = RedisServer::start();
    let config = fast_config(&server.url()).with_exclusive(
        ExclusiveConfig::default().idle_timeout(std::time::Duration::from_millis(200)),
    );
    let client = ready_client(config).await;
    for _ in 0..3 {
        let a = client.exclusive().await.unwrap();
        let b = client.exclusive().await.unwrap();
        drop((a, b));
    }
    assert_eq!(client.stats().exclusive_open, 2);
    crate::until("idle connections closed", || {
        client.stats().exclusive_open == 0
    })
    .await;
    let clients = || {
        redis::cmd("CLIENT")
            .arg("LIST")
            .query::<String>(&mut server.connection())
            .map(|l| l.lines().count())
            .unwrap_or(0)
    };
    // The shared connection and the listing one remain.
    crate::until("their sockets closed", || clients() == 2).await;
    client.shutdown().await;
}

/// A blocking call cancelled by its caller (dropped future): its connection
/// may still be blocked on the server, so it is closed, not handed to the
/// next caller; a job pushed afterwards goes to the next BLPOP, not into a
/// reply nobody reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_blocking_call_does_not_leave_its_connection_blocked() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let mut c = client.clone();
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        c.blpop::<_, Option<(String, String)>>("jobs", 0.0),
    )
    .await;
    assert!(cancelled.is_err(), "still blocked when cancelled");
    crate::until("the cancelled BLPOP's connection is closed", || {
        blocked_clients(&server) == 0
    })
    .await;
    let _: () = redis::cmd("LPUSH")
        .arg("jobs")
        .arg("job-1")
        .query(&mut server.connection())
        .unwrap();
    let got: Option<(String, String)> = c.blpop("jobs", 5.0).await.unwrap();
    assert_eq!(got, Some(("jobs".to_owned(), "job-1".to_owned())));
    client.shutdown().await;
}

/// Shutting the client down ends a blocking call on an exclusive
/// connection too: its connection stops with the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_blocking_call_in_flight() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let blpop = tokio::spawn({
        let mut c = client.clone();
        async move { c.blpop::<_, Option<(String, String)>>("jobs", 0.0).await }
    });
    crate::until("the BLPOP is blocked", || blocked_clients(&server) == 1).await;
    client.shutdown().await;
    let result = tokio::time::timeout(PATIENCE, blpop)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_err(), "{result:?}");
    crate::until("its connection is gone", || blocked_clients(&server) == 0).await;
}
