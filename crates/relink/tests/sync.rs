//! State sync against real redis-servers: every update exactly once, in
//! order, across link cuts and restarts; full resyncs when the log was
//! trimmed, the topic reset, or the server lost history; publish retries
//! applied once; bad input answered with errors, never a wrong mirror.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use relink::core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink::core::supervisor::HeartbeatConfig;
use relink::core::sync::{Epoch, ResyncReason, SyncCursor};
use relink::sync::{Change, Follower, Publisher, SyncEvent, SyncedMap, TopicOptions};
use relink::{Client, Config, Error};
use relink_testkit::{FaultProxy, RedisServer};

const PATIENCE: Duration = Duration::from_secs(30);

fn config(url: &str) -> Config {
    Config::new(url)
        .unwrap()
        .with_heartbeat(HeartbeatConfig {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(400),
            misses_allowed: 0,
        })
        .with_backoff(
            BackoffPolicy::default()
                .strategy(Strategy::Exponential { multiplier: 2.0 })
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(200))
                .jitter(Jitter::Equal),
        )
        .with_outage(relink::config::OutagePolicy::Queue {
            capacity: 1024,
            max_wait: Duration::from_secs(20),
        })
        .with_seed(11)
}

fn options() -> TopicOptions {
    TopicOptions::default().with_block(Duration::from_millis(100))
}

async fn client(url: &str) -> Client {
    let client = Client::new(config(url)).unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    client
}

/// The server's state of a topic, read directly.
fn server_state(server: &RedisServer, topic: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut conn = server.connection();
    redis::cmd("HGETALL")
        .arg(format!("relink:{{{topic}}}:state"))
        .query(&mut conn)
        .unwrap()
}

fn watermark(server: &RedisServer, topic: &str) -> u64 {
    let mut conn = server.connection();
    redis::cmd("HGET")
        .arg(format!("relink:{{{topic}}}:meta"))
        .arg("seq")
        .query::<Option<u64>>(&mut conn)
        .unwrap()
        .unwrap_or(0)
}

/// Reads events until `pred` holds for one; returns all of them.
async fn until(follower: &mut Follower, pred: impl Fn(&SyncEvent) -> bool) -> Vec<SyncEvent> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(item) = follower.next().await {
            let event = item.expect("no follower error");
            let done = pred(&event);
            seen.push(event);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "condition not met; saw {} events: {:?}",
        seen.len(),
        seen.last()
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_gets_a_snapshot_then_every_update_in_order() {
    let server = RedisServer::start();
    let publisher = Publisher::new(&client(&server.url()).await, "t", options()).unwrap();
    let first = publisher.set(b"a", b"1").await.unwrap();
    assert_eq!(first.seq, 1);
    publisher.set(b"b", b"2").await.unwrap();

    let mut follower = Follower::follow(client(&server.url()).await, "t", None, options()).unwrap();
    let seen = until(&mut follower, |e| matches!(e, SyncEvent::Snapshot { .. })).await;
    assert!(matches!(
        seen[0],
        SyncEvent::Resynced {
            reason: ResyncReason::Initial,
            ..
        }
    ));
    let SyncEvent::Snapshot {
        epoch,
        seq,
        entries,
    } = &seen[1]
    else {
        panic!("{seen:?}")
    };
    assert_eq!((*epoch, *seq), (first.epoch, 2));
    assert_eq!(entries.len(), 2);

    publisher.delete(b"a").await.unwrap();
    publisher.publish(b"hello").await.unwrap();
    let seen = until(&mut follower, |e| {
        matches!(e, SyncEvent::Update { seq: 4, .. })
    })
    .await;
    assert_eq!(
        seen,
        vec![
            SyncEvent::Update {
                epoch: first.epoch,
                seq: 3,
                change: Change::Delete { key: b"a".to_vec() }
            },
            SyncEvent::Update {
                epoch: first.epoch,
                seq: 4,
                change: Change::Message {
                    payload: b"hello".to_vec()
                }
            },
        ]
    );
}

/// The headline proof: 20,000 updates while the follower's link is cut 10
/// times and the server restarted 3 times (AOF, fsync always). Every
/// acknowledged sequence number reaches the follower exactly once, in order,
/// and the mirror ends equal to the server's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_in_order_through_cuts_and_restarts() {
    const UPDATES: u64 = 20_000;
    const PUBLISHERS: u64 = 4;
    let mut server = RedisServer::builder().appendonly(true).start();
    let proxy = FaultProxy::start(server.addr());
    let publisher = Publisher::new(&client(&server.url()).await, "orders", options()).unwrap();
    publisher.set(b"k0", b"first").await.unwrap();
    let mut follower =
        Follower::follow(client(&proxy.url()).await, "orders", None, options()).unwrap();
    // The initial snapshot at seq 1, before the storm begins.
    let mut follower = {
        until(&mut follower, |e| {
            matches!(e, SyncEvent::Snapshot { seq: 1, .. })
        })
        .await;
        follower
    };

    // Publishers: 4 tasks, keys spread over 500 names, values unique.
    let publishing: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let publisher = publisher.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0..UPDATES / PUBLISHERS {
                    let key = format!("k{}", (i * PUBLISHERS + p) % 500);
                    let value = format!("{p}:{i}");
                    if let Ok(published) = publisher.set(key.as_bytes(), value.as_bytes()).await {
                        acked.push(published.seq);
                    }
                }
                acked
            })
        })
        .collect();

    // Follower: records every update; the mirror is applied here too.
    let consumer = tokio::spawn(async move {
        let mut seqs = vec![1];
        let mut mirror = BTreeMap::from([(b"k0".to_vec(), b"first".to_vec())]);
        let mut resyncs = vec![ResyncReason::Initial];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while tokio::time::Instant::now() < deadline {
            let Ok(Some(item)) =
                tokio::time::timeout(Duration::from_secs(5), follower.next()).await
            else {
                break; // quiet for 5 s: the publishers are done
            };
            match item.expect("no follower error") {
                SyncEvent::Update {
                    seq,
                    change: Change::Set { key, value },
                    ..
                } => {
                    seqs.push(seq);
                    mirror.insert(key, value);
                }
                SyncEvent::Update { seq, .. } => seqs.push(seq),
                SyncEvent::Snapshot { entries, seq, .. } => {
                    mirror = entries.into_iter().collect();
                    seqs.push(seq); // the snapshot stands for everything up to seq
                }
                SyncEvent::Resynced { reason, .. } => resyncs.push(reason),
                _ => {}
            }
        }
        (seqs, mirror, resyncs)
    });

    // Faults: 10 cuts of the follower's link, 3 server restarts.
    for round in 0..13 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if round % 4 == 3 {
            tokio::task::block_in_place(|| {
                server.kill();
                server.restart();
            });
        } else {
            proxy.cut();
        }
    }

    let mut acked = Vec::new();
    for p in publishing {
        acked.extend(p.await.unwrap());
    }
    let (seqs, mirror, resyncs) = consumer.await.unwrap();

    assert!(
        acked.len() as u64 >= UPDATES * 9 / 10,
        "most publishes were acknowledged: {}",
        acked.len()
    );
    // After the initial snapshot at seq 1: every number exactly once, in order.
    assert_eq!(
        resyncs,
        vec![ResyncReason::Initial],
        "no resync beyond the initial one"
    );
    let last = watermark(&server, "orders");
    let expected: Vec<u64> = (1..=last).collect();
    assert_eq!(
        seqs.len(),
        expected.len(),
        "as many updates as the watermark says"
    );
    assert_eq!(seqs, expected, "contiguous, in order, no duplicate");
    // Every acknowledged publish is among them (seqs is 1..=last), and no two
    // acknowledged publishes got the same number.
    assert!(acked.iter().all(|seq| (1..=last).contains(seq)));
    let count = acked.len();
    acked.sort_unstable();
    acked.dedup();
    assert_eq!(acked.len(), count, "no two publishes got the same seq");
    assert_eq!(
        mirror,
        server_state(&server, "orders"),
        "the mirror equals the server's state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_away_past_the_retention_resyncs_and_converges() {
    let server = RedisServer::start();
    let opts = options().with_retention(100);
    let publisher = Publisher::new(&client(&server.url()).await, "trim", opts).unwrap();
    publisher.set(b"x", b"0").await.unwrap();
    let mut follower = Follower::follow(client(&server.url()).await, "trim", None, opts).unwrap();
    let seen = until(&mut follower, |e| matches!(e, SyncEvent::Snapshot { .. })).await;
    let cursor = seen.last().unwrap().cursor_after().unwrap();
    drop(follower);

    for i in 0..1000u32 {
        publisher
            .set(format!("k{}", i % 50).as_bytes(), &i.to_be_bytes())
            .await
            .unwrap();
    }
    // Back, from the stored cursor (a plain serde value).
    let stored = serde_json::to_string(&cursor).unwrap();
    let cursor: SyncCursor = serde_json::from_str(&stored).unwrap();
    let mut follower =
        Follower::follow(client(&server.url()).await, "trim", Some(cursor), opts).unwrap();
    let seen = until(&mut follower, |e| matches!(e, SyncEvent::Snapshot { .. })).await;
    assert!(
        matches!(seen[0], SyncEvent::Resynced { reason: ResyncReason::Trimmed, from, .. } if from == cursor),
        "{:?}",
        seen[0]
    );
    let SyncEvent::Snapshot { seq, entries, .. } = seen.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(*seq, 1001);
    let mirror: BTreeMap<_, _> = entries.iter().cloned().collect();
    assert_eq!(mirror, server_state(&server, "trim"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_topic_is_detected_by_its_new_epoch() {
    let server = RedisServer::start();
    let publisher = Publisher::new(&client(&server.url()).await, "reset", options()).unwrap();
    let old = publisher.set(b"a", b"old").await.unwrap();
    let mut map = SyncedMap::new(client(&server.url()).await, "reset", options()).unwrap();
    assert!(map.wait_for_seq(1, PATIENCE).await);
    assert_eq!(map.get(b"a"), Some(b"old".to_vec()));

    publisher.reset().await.unwrap();
    let new = publisher.set(b"b", b"new").await.unwrap();
    assert_ne!(new.epoch, old.epoch, "a reset topic gets a new epoch");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while map.version().epoch() != Some(new.epoch) && tokio::time::Instant::now() < deadline {
        map.changed(Duration::from_millis(200)).await;
    }
    assert_eq!(map.version(), SyncCursor::at(new.epoch, 1));
    assert_eq!(
        map.entries(),
        vec![(b"b".to_vec(), b"new".to_vec())],
        "nothing of the old epoch is left"
    );
    let (_, resyncs, _) = map.counts();
    assert_eq!(resyncs, 2, "initial + epoch changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_lost_history_is_noticed_not_waited_for() {
    // No AOF: after a kill, the server comes back from the RDB saved at seq 50.
    let mut server = RedisServer::start();
    let publisher = Publisher::new(&client(&server.url()).await, "behind", options()).unwrap();
    for i in 0..50u32 {
        publisher
            .set(format!("k{i}").as_bytes(), b"early")
            .await
            .unwrap();
    }
    redis::cmd("SAVE").exec(&mut server.connection()).unwrap();
    for i in 0..50u32 {
        publisher
            .set(format!("k{i}").as_bytes(), b"late")
            .await
            .unwrap();
    }
    let mut follower =
        Follower::follow(client(&server.url()).await, "behind", None, options()).unwrap();
    until(&mut follower, |e| {
        matches!(e, SyncEvent::Snapshot { seq: 100, .. })
    })
    .await;

    tokio::task::block_in_place(|| {
        server.kill();
        server.restart();
    });
    let seen = until(&mut follower, |e| matches!(e, SyncEvent::Snapshot { .. })).await;
    assert!(
        seen.iter().any(|e| matches!(
            e,
            SyncEvent::Resynced {
                reason: ResyncReason::ServerBehind,
                ..
            }
        )),
        "{seen:?}"
    );
    let SyncEvent::Snapshot { seq, entries, .. } = seen.last().unwrap() else {
        unreachable!()
    };
    assert_eq!(*seq, 50);
    assert!(entries.iter().all(|(_, v)| v == b"early"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_cut_mid_flight_is_retried_and_applied_once() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let publisher = Publisher::new(&client(&proxy.url()).await, "retry", options()).unwrap();
    publisher.set(b"warm", b"up").await.unwrap(); // script loaded
    proxy.cut_after_next_request();
    let published = publisher
        .set(b"k", b"v")
        .await
        .expect("retried after the cut");
    assert_eq!(
        published.seq, 2,
        "applied once: no sequence number was skipped"
    );
    assert_eq!(watermark(&server, "retry"), 2);
    let mut conn = server.connection();
    let log_len: u64 = redis::cmd("XLEN")
        .arg("relink:{retry}:log")
        .query(&mut conn)
        .unwrap();
    assert_eq!(log_len, 2);
    assert!(
        proxy.accepted() >= 2,
        "the retry went over a new connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publish_script_is_reloaded_after_a_restart_that_lost_it() {
    let mut server = RedisServer::builder().appendonly(true).start();
    let publisher = Publisher::new(&client(&server.url()).await, "noscript", options()).unwrap();
    publisher.set(b"a", b"1").await.unwrap();
    tokio::task::block_in_place(|| {
        server.kill();
        server.restart(); // scripts are not persisted
    });
    let again = publisher.set(b"b", b"2").await.expect("NOSCRIPT handled");
    assert_eq!(again.seq, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_or_a_resync_never_a_wrong_mirror() {
    let server = RedisServer::start();
    let c = client(&server.url()).await;
    // Topic names that cannot be hash-tagged.
    for bad in ["", "a{b", "c}d"] {
        let err = Publisher::new(&c, bad, options()).unwrap_err();
        assert!(
            matches!(&err, Error::Config { field, .. } if field == "topic"),
            "{err}"
        );
    }
    let err =
        Follower::follow(c.clone(), "x", None, TopicOptions::default().with_batch(0)).unwrap_err();
    assert!(
        matches!(&err, Error::Config { field, .. } if field == "batch"),
        "{err}"
    );

    // Someone else wrote a plain string where the log lives.
    let mut conn = server.connection();
    redis::cmd("HSET")
        .arg("relink:{foreign}:meta")
        .arg("epoch")
        .arg("7")
        .arg("seq")
        .arg("3")
        .exec(&mut conn)
        .unwrap();
    redis::cmd("SET")
        .arg("relink:{foreign}:log")
        .arg("not a stream")
        .exec(&mut conn)
        .unwrap();
    let publisher = Publisher::new(&c, "foreign", options()).unwrap();
    let err = publisher.set(b"k", b"v").await.unwrap_err();
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    let mut follower =
        Follower::follow(client(&server.url()).await, "foreign", None, options()).unwrap();
    let first = tokio::time::timeout(PATIENCE, follower.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        first.is_err(),
        "an error item, not a silent divergence: {first:?}"
    );

    // A cursor from another epoch leads to a resync.
    let good = Publisher::new(&c, "good", options()).unwrap();
    good.set(b"a", b"1").await.unwrap();
    let stale = SyncCursor::at(Epoch(12345), 10);
    let mut follower =
        Follower::follow(client(&server.url()).await, "good", Some(stale), options()).unwrap();
    let seen = until(&mut follower, |e| matches!(e, SyncEvent::Snapshot { .. })).await;
    assert!(
        matches!(
            seen[0],
            SyncEvent::Resynced {
                reason: ResyncReason::EpochChanged,
                ..
            }
        ),
        "{seen:?}"
    );

    // An unknown topic: the follower waits, yielding nothing wrong.
    let mut follower =
        Follower::follow(client(&server.url()).await, "nobody", None, options()).unwrap();
    let nothing = tokio::time::timeout(Duration::from_millis(500), follower.next()).await;
    assert!(
        nothing.is_err(),
        "no event for a topic that does not exist: {nothing:?}"
    );
}
