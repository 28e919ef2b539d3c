//! `ClusterClient` against a real 3-master + 3-replica Redis Cluster on
//! loopback: a master killed and its replica promoted, slots resharded under
//! a workload, a sync topic, and bad configs.
//!
//! One cluster at a time (6 processes): the tests take a shared lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use relink::cluster::{ClusterClient, ClusterConfig};
use relink::core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink::core::supervisor::HeartbeatConfig;
use relink::sync::{Publisher, SyncedMap, TopicOptions};
use relink::{Config, Error, State};
use relink_testkit::cluster::{key_slot, tag_for_slot};
use relink_testkit::RedisCluster;

/// Generous upper bound for any condition a test waits on.
const PATIENCE: Duration = Duration::from_secs(20);

/// One cluster at a time: 6 redis-servers is the most this machine may run.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(cluster: &RedisCluster) -> ClusterConfig {
    let config = ClusterConfig::new(cluster.urls()).expect("valid nodes");
    let settings = config
        .settings()
        .clone()
        .with_heartbeat(HeartbeatConfig {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(300),
            misses_allowed: 0,
        })
        .with_backoff(
            BackoffPolicy::default()
                .strategy(Strategy::Exponential { multiplier: 2.0 })
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(300))
                .jitter(Jitter::Equal),
        )
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_secs(1))
        .with_outage(relink::config::OutagePolicy::Queue {
            capacity: 1024,
            max_wait: Duration::from_secs(15),
        })
        .with_seed(7);
    config
        .with_settings(settings)
        .build()
        .expect("valid config")
}

async fn ready_client(cluster: &RedisCluster) -> ClusterClient {
    let client = ClusterClient::new(config(cluster)).expect("client");
    client.wait_ready(PATIENCE).await.expect("cluster ready");
    client
}

/// Keys in one slot of each master: `per_master` keys each.
fn keys_on_every_master(cluster: &mut RedisCluster, per_master: usize) -> Vec<(usize, String)> {
    let mut keys = Vec::new();
    for master in cluster.masters() {
        let slot = cluster.slots_of(master)[7];
        let tag = tag_for_slot(slot);
        keys.extend((0..per_master).map(|i| (master, format!("k{tag}:{i}"))));
    }
    keys
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_without_user_action() {
    let _one = ONE_CLUSTER.lock().await;
    let started = Instant::now();
    let mut cluster = blocking(RedisCluster::start);
    let client = ready_client(&cluster).await;
    let writer = client.idempotent();
    let keys = blocking(|| keys_on_every_master(&mut cluster, 20));
    assert_eq!(
        keys.iter()
            .map(|(m, _)| m)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );
    for (_, key) in &keys {
        let () = writer
            .clone()
            .set(key, format!("v1-{key}"))
            .await
            .expect("set");
    }
    // Acknowledged and replicated: Redis Cluster's replication is
    // asynchronous, so only a replicated write can survive a SIGKILL.
    blocking(|| cluster.wait_replicas_caught_up());

    let victim = keys[0].0;
    let victim_keys: Vec<&String> = keys
        .iter()
        .filter(|(m, _)| *m == victim)
        .map(|(_, k)| k)
        .collect();
    let killed_at = Instant::now();
    blocking(|| cluster.kill(victim));

    // The first command on the dead master's slot waits in the backlog and
    // succeeds once the replica is promoted: no error, no user action.
    let () = writer
        .clone()
        .set(victim_keys[0], format!("v2-{}", victim_keys[0]))
        .await
        .expect("first write after the kill");
    let first_success = killed_at.elapsed();

    // Every key, on all three masters' slots, reads back; every write works.
    for (_, key) in &keys {
        let expected = if key == victim_keys[0] {
            format!("v2-{key}")
        } else {
            format!("v1-{key}")
        };
        let got: Option<String> = client.clone().get(key).await.expect("get");
        assert_eq!(got.as_deref(), Some(expected.as_str()), "key {key}");
        let () = writer
            .clone()
            .set(key, format!("v3-{key}"))
            .await
            .expect("set after failover");
    }
    let n: i64 = client.clone().incr("k{counter}", 1).await.expect("incr");
    assert_eq!(n, 1);

    // Health: Ready again (the promoted replica serves the slots). Once the
    // failover is done, CLUSTER SLOTS no longer lists the dead node (a
    // failed node is left out), so it is no longer probed nor listed.
    let dead_addr = format!("127.0.0.1:{}", cluster.node(victim).port());
    let mut health = client.health();
    let h = tokio::time::timeout(
        PATIENCE,
        health.wait_for(|h| h.state == State::Ready && !h.nodes.contains_key(&dead_addr)),
    )
    .await
    .expect("ready again, without the dead node")
    .expect("health open")
    .clone();
    let ready_again = killed_at.elapsed();
    assert_eq!(h.nodes.len(), 5, "{h:#?}");
    assert_eq!(h.nodes.values().filter(|n| n.master).count(), 3, "{h:#?}");
    let stats = client.stats();
    println!(
        "failover: first success {first_success:?} after the kill, health Ready after {ready_again:?}; \
         {stats:?}; redirects {}; test {:?}",
        client.redirects(),
        started.elapsed()
    );
    assert_eq!(stats.unknown, 0, "{stats:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_and_ask_during_a_reshard_are_transparent() {
    let _one = ONE_CLUSTER.lock().await;
    let started = Instant::now();
    let mut cluster = blocking(RedisCluster::start);
    let client = ready_client(&cluster).await;
    let masters = blocking(|| cluster.masters());
    let (from, to) = (masters[0], masters[1]);
    const MOVING: usize = 20;
    let moving: Vec<u16> = blocking(|| cluster.slots_of(from))[..MOVING].to_vec();
    let keys: Vec<String> = moving
        .iter()
        .flat_map(|&slot| {
            let tag = tag_for_slot(slot);
            (0..30).map(move |i| format!("m{tag}:{i}"))
        })
        .collect();
    assert!(keys
        .iter()
        .all(|k| moving.contains(&key_slot(k.as_bytes()))));
    let writer = client.idempotent();
    for key in &keys {
        let () = writer.clone().set(key, 0).await.expect("populate");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let workload = {
        let (stop, ops, writer, keys) = (stop.clone(), ops.clone(), writer.clone(), keys.clone());
        tokio::spawn(async move {
            let mut relink_errors = Vec::new();
            let mut round = 0u64;
            // Bounded by `stop` and by PATIENCE.
            let deadline = Instant::now() + PATIENCE * 3;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                round += 1;
                for key in &keys {
                    let mut con = writer.clone();
                    let set: redis::RedisResult<()> = con.set(key, round).await;
                    let get: redis::RedisResult<u64> = match set {
                        Ok(()) => con.get(key).await,
                        Err(e) => Err(e),
                    };
                    match get {
                        Ok(v) => assert_eq!(v, round, "read after write of {key}"),
                        Err(e) => match Error::from_redis(&e) {
                            Some(ours) => relink_errors.push(ours.to_string()),
                            None => panic!("an unclassified error surfaced: {e}"),
                        },
                    }
                    ops.fetch_add(2, Ordering::Relaxed);
                }
            }
            relink_errors
        })
    };
    // Let the workload warm up, then move the slots under it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resharding = Instant::now();
    blocking(|| cluster.reshard(from, to, MOVING as u16));
    let reshard_took = resharding.elapsed();
    // A few more rounds on the new owner.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let relink_errors = workload.await.expect("workload");
    for &slot in &moving {
        assert_eq!(
            blocking(|| cluster.master_of_slot(slot)),
            to,
            "slot {slot} moved"
        );
    }
    let redirects = client.redirects();
    println!(
        "reshard of {MOVING} slots took {reshard_took:?}; {} ops, {redirects} redirects followed, \
         {} relink errors {:?}; {:?}; test {:?}",
        ops.load(Ordering::Relaxed),
        relink_errors.len(),
        relink_errors.first(),
        client.stats(),
        started.elapsed()
    );
    assert!(redirects > 0, "the workload never met a MOVED or ASK");
    assert!(relink_errors.is_empty(), "{relink_errors:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_topic_works_on_the_cluster_across_a_failover() {
    let _one = ONE_CLUSTER.lock().await;
    let started = Instant::now();
    let mut cluster = blocking(RedisCluster::start);
    let client = ready_client(&cluster).await;
    let options = TopicOptions::default().with_block(Duration::from_millis(200));
    let publisher = Publisher::new(&client, "prices", options).expect("publisher");
    // The follower's blocking reads get a client of their own.
    let mut map = SyncedMap::new(ready_client(&cluster).await, "prices", options).expect("map");
    for i in 0..50u32 {
        let p = publisher
            .set(
                format!("k{}", i % 10).as_bytes(),
                format!("v{i}").as_bytes(),
            )
            .await
            .expect("publish");
        assert_eq!(p.seq, u64::from(i) + 1);
    }
    assert!(map.wait_for_seq(50, PATIENCE).await, "{:?}", map.version());
    assert_eq!(map.get(b"k9").as_deref(), Some(&b"v49"[..]));

    // Kill the master of the topic's slot; the topic carries on.
    let slot = key_slot(b"relink:{prices}:meta");
    blocking(|| cluster.wait_replicas_caught_up());
    let victim = blocking(|| cluster.master_of_slot(slot));
    blocking(|| cluster.kill(victim));
    for i in 50..100u32 {
        publisher
            .set(
                format!("k{}", i % 10).as_bytes(),
                format!("v{i}").as_bytes(),
            )
            .await
            .expect("publish after the failover");
    }
    assert!(map.wait_for_seq(100, PATIENCE).await, "{:?}", map.version());
    let state: Vec<(Vec<u8>, Vec<u8>)> = client
        .clone()
        .hgetall("relink:{prices}:state")
        .await
        .expect("state");
    let mut state = state;
    state.sort();
    assert_eq!(map.entries(), state);
    assert_eq!(map.get(b"k9").as_deref(), Some(&b"v99"[..]));
    println!(
        "sync on the cluster: {:?}; test {:?}",
        map.counts(),
        started.elapsed()
    );
    client.shutdown().await;
}

/// `calls` of a command in `INFO commandstats` (`cmdstat_<name>:calls=N,...`).
fn command_calls(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{name}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Connections to a node from clients named `name` (`CLIENT LIST`).
fn named_clients(con: &mut redis::Connection, name: &str) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(con)
        .expect("CLIENT LIST");
    let field = format!(" name={name} ");
    list.lines().filter(|l| l.contains(&field)).count()
}

/// A replica that leaves the cluster (`CLUSTER FORGET` everywhere, then
/// `CLUSTER RESET` on it) is no longer probed: it disappears from the
/// health, its probe's connection is closed, and no PING or connection
/// reaches it any more while the client keeps reading the topology.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_the_cluster_is_no_longer_probed() {
    let _one = ONE_CLUSTER.lock().await;
    let started = Instant::now();
    let mut cluster = blocking(RedisCluster::start);
    const NAME: &str = "relink-probe-test";
    let config = config(&cluster);
    let settings = config.settings().clone().with_client_name(NAME);
    let client = ClusterClient::new(config.with_settings(settings)).expect("client");
    client.wait_ready(PATIENCE).await.expect("cluster ready");
    let masters = blocking(|| cluster.masters());
    let leaving = (0..cluster.len())
        .find(|i| !masters.contains(i))
        .expect("a replica");
    let addr = format!("127.0.0.1:{}", cluster.node(leaving).port());
    let mut health = client.health();
    tokio::time::timeout(
        PATIENCE,
        health.wait_for(|h| {
            h.nodes.len() == 6
                && h.nodes
                    .get(&addr)
                    .is_some_and(|n| n.health.state == State::Ready)
        }),
    )
    .await
    .expect("every node probed")
    .expect("health open");
    // One connection to the leaving node for the whole test: our own
    // commands must not count as connections.
    let mut watch = cluster.node(leaving).connection();
    assert_eq!(
        blocking(|| named_clients(&mut watch, NAME)),
        1,
        "the probe is connected"
    );

    // Leave: forgotten by every other node, and forgetting them.
    let id = cluster.node_id(leaving);
    for i in (0..cluster.len()).filter(|&i| i != leaving) {
        let () = redis::cmd("CLUSTER")
            .arg("FORGET")
            .arg(&id)
            .query(&mut cluster.node(i).connection())
            .expect("CLUSTER FORGET");
    }
    let () = redis::cmd("CLUSTER")
        .arg("RESET")
        .arg("SOFT")
        .query(&mut watch)
        .expect("CLUSTER RESET");
    let left = Instant::now();

    // One topology read may come from a node whose view is still settling
    // (a replica briefly unlisted): wait for the five that stay.
    let h = tokio::time::timeout(
        PATIENCE,
        health.wait_for(|h| !h.nodes.contains_key(&addr) && h.nodes.len() == 5),
    )
    .await
    .expect("the node that left is no longer listed, and the five others are")
    .expect("health open")
    .clone();
    let unlisted = left.elapsed();
    assert_eq!(
        h.state,
        State::Ready,
        "a replica leaving changes nothing: {h:#?}"
    );
    // Its probe is stopped: its connection closes.
    let deadline = Instant::now() + PATIENCE;
    while blocking(|| named_clients(&mut watch, NAME)) > 0 {
        assert!(
            Instant::now() < deadline,
            "the probe's connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // From now on nothing reaches it, while the client goes on reading the
    // topology of the others (each read is one CLUSTER SLOTS on some node).
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut watch)
        .expect("INFO stats");
    let connections = |info: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix("total_connections_received:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("total_connections_received")
    };
    let connections_before = connections(&info);
    let pings_before = blocking(|| command_calls(&mut watch, "ping"));
    let others: Vec<usize> = (0..cluster.len()).filter(|&i| i != leaving).collect();
    let mut others_con: Vec<redis::Connection> = others
        .iter()
        .map(|&i| cluster.node(i).connection())
        .collect();
    let mut reads = || -> u64 {
        others_con
            .iter_mut()
            .map(|con| command_calls(con, "cluster|slots"))
            .sum()
    };
    let reads_before = blocking(&mut reads);
    let deadline = Instant::now() + PATIENCE;
    // Ten topology reads: two seconds at the test's 200 ms interval, many
    // times the probe's heartbeat interval and reconnect delays.
    while blocking(&mut reads) < reads_before + 10 {
        assert!(
            Instant::now() < deadline,
            "the client stopped reading the topology"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut watch)
        .expect("INFO stats");
    assert_eq!(
        connections(&info),
        connections_before,
        "a connection reached the node that left"
    );
    assert_eq!(
        blocking(|| command_calls(&mut watch, "ping")),
        pings_before,
        "a PING reached the node that left"
    );
    assert_eq!(client.health().borrow().state, State::Ready);
    println!(
        "node left: unlisted after {unlisted:?}; test {:?}",
        started.elapsed()
    );
    client.shutdown().await;
}

#[test]
fn bad_cluster_config_names_the_field() {
    let field = |r: Result<ClusterConfig, Error>| match r {
        Err(Error::Config { field, reason }) => {
            assert!(!reason.contains("s3cret"), "{reason}");
            field
        }
        other => panic!("not a config error: {other:?}"),
    };
    let none: Vec<String> = Vec::new();
    assert_eq!(field(ClusterConfig::new(none)), "nodes");
    assert_eq!(field(ClusterConfig::new(["127.0.0.1:7000"])), "nodes[0]");
    assert_eq!(
        field(ClusterConfig::new([
            "redis://127.0.0.1:7000",
            "http://:s3cret@127.0.0.1:7001"
        ])),
        "nodes[1]"
    );
    assert_eq!(field(ClusterConfig::new(["redis://"])), "nodes[0]");
    assert_eq!(
        field(ClusterConfig::new(["redis+unix:///tmp/r.sock"])),
        "nodes[0]"
    );
    assert_eq!(
        field(ClusterConfig::new(["redis://127.0.0.1:7000/2"])),
        "nodes[0]"
    );
    let ok = ClusterConfig::new(["redis://:s3cret@127.0.0.1:7000"]).expect("valid");
    assert!(!format!("{ok:?}").contains("s3cret"));
    let settings = Config::new("redis://127.0.0.1:7000")
        .expect("url")
        .with_database(3);
    assert_eq!(
        field(ok.clone().with_settings(settings).build()),
        "settings.database"
    );
    let no_sentinel = Config::new("redis://127.0.0.1:7000")
        .expect("url")
        .with_sentinel(relink::config::SentinelConfig::new(
            "mymaster",
            ["127.0.0.1:26379"],
        ));
    assert_eq!(
        field(ok.with_settings(no_sentinel).build()),
        "settings.sentinel"
    );
}

/// The serde form: `nodes` and a `settings` table of `Config`'s own form
/// without `url`; errors name the field; a round trip keeps everything and
/// shows no secret.
#[test]
fn cluster_config_reads_and_writes_toml() {
    let text = r#"
        nodes = ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        [settings]
        password = "s3cret"
        deadline = "2s"
        [settings.outage]
        policy = "fail_fast"
    "#;
    let config: ClusterConfig = toml::from_str(text).expect("parses");
    assert_eq!(config.nodes().len(), 2);
    assert_eq!(config.settings().deadline(), Some(Duration::from_secs(2)));
    assert_eq!(
        config.settings().outage(),
        relink::config::OutagePolicy::FailFast
    );
    assert!(!format!("{config:?}").contains("s3cret"));
    let written = toml::to_string(&config).expect("writes");
    assert!(!written.contains("url"), "{written}");
    let back: ClusterConfig = toml::from_str(&written).expect("reads back");
    assert_eq!(back, config);
    // Only nodes: every setting at its default.
    let bare: ClusterConfig = toml::from_str(r#"nodes = ["redis://127.0.0.1:7000"]"#).unwrap();
    assert_eq!(
        bare.settings().deadline(),
        Config::new("redis://x").unwrap().deadline()
    );
    let bad = |text: &str| {
        toml::from_str::<ClusterConfig>(text)
            .unwrap_err()
            .to_string()
    };
    assert!(
        bad("nodes = []").contains("`nodes`"),
        "{}",
        bad("nodes = []")
    );
    let e = bad("nodes = [\"redis://127.0.0.1:7000\"]\n[settings]\nurl = \"redis://x\"");
    assert!(e.contains("settings.url"), "{e}");
    let e = bad("nodes = [\"redis://127.0.0.1:7000\"]\n[settings.heartbeat]\ninterval = \"0s\"");
    assert!(e.contains("settings.heartbeat.interval"), "{e}");
    let e = bad("nodes = [\"redis://127.0.0.1:7000\"]\nnode = 1");
    assert!(e.contains("node"), "{e}");
}

/// Reads `sub` until a message numbered above `after` has come after at
/// least `want_markers` markers. No message may come twice, except, when
/// `repeats_after_marker`, right after a marker (a classic channel moved to
/// another node may hear again what the lost node had delivered: nodes
/// relay PUBLISH with delays of their own). A message may come late (once,
/// after a higher number): a publish that reached a replica is relayed to
/// its master over the cluster bus. Returns the markers seen, the highest
/// number, and the repeats.
async fn follow(
    sub: &mut relink::Subscription,
    heard: &mut std::collections::BTreeSet<u64>,
    after: u64,
    want_markers: usize,
    repeats_after_marker: bool,
) -> (usize, usize) {
    let (mut markers, mut repeats, mut repeating) = (0, 0, false);
    let mut seen: Vec<String> = Vec::new();
    // Bounded: each item within PATIENCE, and the publisher keeps going.
    for _ in 0..1_000_000 {
        let item = tokio::time::timeout(PATIENCE, sub.next_item())
            .await
            .unwrap_or_else(|_| panic!("nothing within {PATIENCE:?}; saw {seen:?}"))
            .expect("stream open");
        match item {
            relink::PubSubItem::Message { payload, .. } => {
                let n: u64 = String::from_utf8(payload).unwrap().parse().unwrap();
                seen.push(n.to_string());
                if !heard.insert(n) {
                    assert!(repeating, "#{n} delivered twice; saw {seen:?}");
                    repeats += 1;
                    continue;
                }
                repeating = false;
                if n > after && markers >= want_markers {
                    return (markers, repeats);
                }
            }
            relink::PubSubItem::Restored { .. } => {
                seen.push("marker".into());
                markers += 1;
                repeating = repeats_after_marker;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("never got past #{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_a_reshard_and_failovers_with_one_marker_each() {
    let _one = ONE_CLUSTER.lock().await;
    let started = Instant::now();
    let mut cluster = blocking(RedisCluster::start);
    let client = ready_client(&cluster).await;
    let masters = blocking(|| cluster.masters());
    let (from, to) = (masters[0], masters[1]);
    // Both channels in the first slot of `from`: the one a reshard of one
    // slot moves.
    let slot = blocking(|| cluster.slots_of(from))[0];
    let tag = tag_for_slot(slot);
    let (orders, news) = (format!("orders{tag}"), format!("news{tag}"));
    let mut shard_sub = client.ssubscribe(&[&orders]).await.expect("ssubscribe");
    let mut classic_sub = client.subscribe(&[&news]).await.expect("subscribe");

    // Numbered messages on both, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (stop, published, client) = (stop.clone(), published.clone(), client.clone());
        let (orders, news) = (orders.clone(), news.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + PATIENCE * 4;
            let mut n = 0u64;
            // Bounded by `stop` and the deadline.
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                n += 1;
                let mut c = client.clone();
                let _: redis::RedisResult<i64> = redis::cmd("SPUBLISH")
                    .arg(&orders)
                    .arg(n)
                    .query_async(&mut c)
                    .await;
                let _: redis::RedisResult<i64> = c.publish(&news, n).await;
                published.store(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let (mut shard_heard, mut classic_heard) = Default::default();
    let (markers, _) = follow(&mut shard_sub, &mut shard_heard, 1, 0, false).await;
    assert_eq!(markers, 0);
    let (markers, _) = follow(&mut classic_sub, &mut classic_heard, 1, 0, false).await;
    assert_eq!(markers, 0);

    // The channels' slot moves to `to`: the server drops the shard
    // subscription, relink re-reads the slot map and subscribes it at the
    // new owner, with one marker. The classic channel stays where it is
    // (every node delivers it): no marker, nothing missed.
    blocking(|| cluster.reshard(from, to, 1));
    assert_eq!(blocking(|| cluster.master_of_slot(slot)), to);
    let after = published.load(Ordering::Relaxed) + 20;
    let (markers, _) = follow(&mut shard_sub, &mut shard_heard, after, 1, false).await;
    assert_eq!(markers, 1, "one marker for the reshard (shard channel)");
    let (markers, _) = follow(&mut classic_sub, &mut classic_heard, after, 0, false).await;
    assert_eq!(markers, 0, "a classic channel does not move with its slot");

    // The shard channel's new owner dies; its replica takes over.
    blocking(|| cluster.kill(to));
    let after = published.load(Ordering::Relaxed) + 20;
    let (markers, _) = follow(&mut shard_sub, &mut shard_heard, after, 1, false).await;
    assert_eq!(markers, 1, "one marker for the failover (shard channel)");
    assert_ne!(blocking(|| cluster.master_of_slot(slot)), to);
    let (markers, _) = follow(&mut classic_sub, &mut classic_heard, after, 0, false).await;
    assert_eq!(markers, 0, "the classic channel's node is alive");

    // The classic channel's node dies: it moves to a live master.
    blocking(|| cluster.kill(from));
    let after = published.load(Ordering::Relaxed) + 20;
    let (markers, repeats) = follow(&mut classic_sub, &mut classic_heard, after, 1, true).await;
    assert_eq!(markers, 1, "one marker for the failover (channel)");
    let (markers, _) = follow(&mut shard_sub, &mut shard_heard, after, 0, false).await;
    assert_eq!(markers, 0, "the shard channel's node is alive");

    // And no marker more: the subscriptions stay put.
    let after = published.load(Ordering::Relaxed) + 50;
    let (markers, _) = follow(&mut shard_sub, &mut shard_heard, after, 0, false).await;
    assert_eq!(markers, 0);
    stop.store(true, Ordering::Relaxed);
    publisher.await.expect("publisher");
    let stats = client.stats();
    println!(
        "cluster Pub/Sub through a reshard and two failovers: {} published, {repeats} \
         repeated after the classic channel's marker, {stats:?}, test {:?}",
        published.load(Ordering::Relaxed),
        started.elapsed()
    );
    assert_eq!(stats.subscriptions, 2);
    client.shutdown().await;
    assert_eq!(shard_sub.next_item().await, None, "streams end at shutdown");
}

/// What one durable writer saw, per key.
#[derive(Default)]
struct Tally {
    acknowledged: Vec<u64>,
    unknown: Vec<u64>,
}

/// Durable acknowledgements per shard: every write's `WAIT` runs on its
/// slot's master, so a master killed under an INCR load loses none of the
/// writes it acknowledged (acknowledged ≤ value ≤ acknowledged + unknown,
/// per key); a write to the promoted master, which has no replica left, is
/// reported unknown ("replicated to 0 of 1"), never OK. A command the
/// cluster runs on every master cannot carry a `WAIT`: refused, not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_survive_a_killed_master() {
    let _one = ONE_CLUSTER.lock().await;
    let mut cluster = blocking(RedisCluster::start);
    let client = ready_client(&cluster).await;
    let durable = client.durable(1, Duration::from_millis(300)).unwrap();
    let err = redis::cmd("FLUSHALL")
        .query_async::<()>(&mut durable.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(Error::from_redis(&err), Some(Error::InvalidCommand { .. })),
        "{err}"
    );

    let keys = blocking(|| keys_on_every_master(&mut cluster, 4));
    let victim = keys[0].0;
    let on_victim: Vec<bool> = keys.iter().map(|(m, _)| *m == victim).collect();
    let names: Arc<Vec<String>> = Arc::new(keys.iter().map(|(_, k)| k.clone()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let acked_elsewhere = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let mut c = durable.clone();
            let names = Arc::clone(&names);
            let stop = Arc::clone(&stop);
            let on_victim = on_victim.clone();
            let acked_elsewhere = Arc::clone(&acked_elsewhere);
            tokio::spawn(async move {
                let mut tally = Tally {
                    acknowledged: vec![0; names.len()],
                    unknown: vec![0; names.len()],
                };
                let mut i = w;
                // Bounded by `stop`, which the test sets within PATIENCE.
                while !stop.load(Ordering::Relaxed) {
                    let k = i % names.len();
                    i += 1;
                    match c.incr::<_, _, i64>(&names[k], 1).await {
                        Ok(_) => {
                            tally.acknowledged[k] += 1;
                            if !on_victim[k] {
                                acked_elsewhere.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(e) => {
                            if Error::outcome_of(&e) == relink::Outcome::Unknown {
                                tally.unknown[k] += 1;
                            }
                            // A refusal may not have yielded: let the others run.
                            tokio::task::yield_now().await;
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let acked_at_least = |n: u64| {
        let acked = Arc::clone(&acked_elsewhere);
        async move {
            tokio::time::timeout(PATIENCE, async {
                // Bounded by the timeout around it.
                while acked.load(Ordering::Relaxed) < n {
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("{n} durable writes not acknowledged within {PATIENCE:?}"));
        }
    };
    acked_at_least(200).await;
    blocking(|| cluster.kill(victim));
    let after_kill = acked_elsewhere.load(Ordering::Relaxed);
    // (Slow: each write to the promoted master, which has no replica left,
    // waits out its WAIT.)
    acked_at_least(after_kill + 40).await;
    // The victim's slots are served again (by the promoted replica).
    let mut plain = client.clone();
    let _: i64 = plain.incr("k{probe}", 1).await.unwrap();
    blocking(|| cluster.wait_ok());
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally {
        acknowledged: vec![0; names.len()],
        unknown: vec![0; names.len()],
    };
    for writer in writers {
        let tally = writer.await.unwrap();
        for k in 0..names.len() {
            total.acknowledged[k] += tally.acknowledged[k];
            total.unknown[k] += tally.unknown[k];
        }
    }
    for (k, name) in names.iter().enumerate() {
        let value: i64 = plain.get(name).await.unwrap_or(0);
        let value = u64::try_from(value).unwrap();
        let (acked, unknown) = (total.acknowledged[k], total.unknown[k]);
        assert!(
            acked <= value && value <= acked + unknown,
            "{name} (on the killed master: {}): acknowledged {acked}, unknown {unknown}, value {value}",
            on_victim[k]
        );
    }
    let victim_acked: u64 = (0..names.len())
        .filter(|&k| on_victim[k])
        .map(|k| total.acknowledged[k])
        .sum();
    assert!(
        victim_acked > 0,
        "no write on the killed master's slots was acknowledged"
    );
    client.shutdown().await;
}
