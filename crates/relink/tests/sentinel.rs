//! Redis Sentinel against real processes (one master, one replica, three
//! sentinels): the client and its Pub/Sub subscription follow a failover
//! with no user action (one gap marker), a state
//! follower converges on the new master, a planned failover is followed on
//! the `+switch-master` announcement (and, with it off, only once the old
//! master refuses), and a bad sentinel config is refused naming the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use redis::AsyncCommands;
use relink::config::{OutagePolicy, SentinelConfig};
use relink::core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink::core::supervisor::HeartbeatConfig;
use relink::sync::{Publisher, SyncedMap, TopicOptions};
use relink::{Client, Config, Error, Event, FailureKind, State};
use relink_testkit::sentinel::SERVICE;
use relink_testkit::SentinelTopology;

const PATIENCE: Duration = Duration::from_secs(30);

/// A sentinel config for `topology`: the URL gives only the database (its
/// host is not used), short heartbeats and backoff, a patient backlog.
fn config(topology: &SentinelTopology, follow_switch_master: bool) -> Config {
    Config::new("redis://mymaster/0")
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
        .with_connect_timeout(Duration::from_secs(2))
        .with_outage(OutagePolicy::Queue {
            capacity: 1024,
            max_wait: PATIENCE,
        })
        .with_seed(7)
        .with_sentinel(
            SentinelConfig::new(SERVICE, topology.sentinel_nodes())
                .with_follow_switch_master(follow_switch_master),
        )
}

async fn ready(config: Config) -> Client {
    let client = Client::new(config).unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    client
}

fn direct(addr: SocketAddr) -> redis::Connection {
    try_direct(addr).unwrap()
}

fn try_direct(addr: SocketAddr) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let conn = client.get_connection_with_timeout(Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(conn)
}

fn server_state(addr: SocketAddr, topic: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    redis::cmd("HGETALL")
        .arg(format!("relink:{{{topic}}}:state"))
        .query(&mut direct(addr))
        .unwrap()
}

fn watermark(addr: SocketAddr, topic: &str) -> u64 {
    let seq: Option<u64> = redis::cmd("HGET")
        .arg(format!("relink:{{{topic}}}:meta"))
        .arg("seq")
        .query(&mut direct(addr))
        .unwrap();
    seq.unwrap_or(0)
}

/// Blocking testkit calls (process control, bounded waits) off the runtime's toes.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_the_master_and_the_client_and_a_follower_follow_the_promoted_replica() {
    let mut topology = blocking(SentinelTopology::start);
    let old = topology.master_addr().unwrap();
    let client = ready(config(&topology, true)).await;
    let topic = "prices";
    let options = TopicOptions::default().with_block(Duration::from_millis(100));
    let publisher = Publisher::new(&client, topic, options).unwrap();
    let mut mirror = SyncedMap::new(
        Client::new(config(&topology, true)).unwrap(),
        topic,
        options,
    )
    .unwrap();
    for i in 0..50u32 {
        publisher
            .set(format!("k{}", i % 10).as_bytes(), i.to_string().as_bytes())
            .await
            .unwrap();
    }
    assert!(
        mirror.wait_for_seq(50, PATIENCE).await,
        "mirror before the failover"
    );

    let mut news = client.subscribe(&["news"]).await.unwrap();
    let killed = blocking(|| topology.kill_master());
    assert_eq!(killed, old);
    let started = Instant::now();
    // Written while the sentinels fail over: each waits in the backlog until
    // the client has found the new master, with no user action. (A SET of a
    // fixed value is idempotent: declared so, one that was written into the
    // dying connection is retried instead of reported as of unknown outcome.)
    let mut acknowledged = Vec::new();
    let mut writer = client.idempotent();
    for i in 0..20u32 {
        let key = format!("after-failover:{i}");
        let () = writer.set(&key, i).await.unwrap();
        acknowledged.push(key);
    }
    let first_success = started.elapsed();
    let new = blocking(|| topology.wait_for_new_master(old, PATIENCE));
    assert_ne!(new, old);
    println!("kill -9 of the master -> first acknowledged write: {first_success:?}");

    // Every acknowledged write is on the new master.
    let mut conn = blocking(|| direct(new));
    for (i, key) in acknowledged.iter().enumerate() {
        let value: Option<u32> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
        assert_eq!(
            value,
            Some(i as u32),
            "{key} is not on the new master {new}"
        );
    }
    assert_eq!(client.health().borrow().state, State::Ready);

    // The subscription follows too: restored on the new master, one marker.
    let mut c = client.clone();
    let deadline = Instant::now() + PATIENCE;
    // Bounded by the deadline: publish until the restored subscription hears it.
    while c.publish::<_, _, i64>("news", "after").await.unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "the subscription was not restored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut markers = 0;
    // Bounded: each item within PATIENCE, and "after" was delivered.
    loop {
        match tokio::time::timeout(PATIENCE, news.next_item()).await {
            Ok(Some(relink::PubSubItem::Restored { .. })) => markers += 1,
            Ok(Some(relink::PubSubItem::Message { payload, .. })) if payload == b"after" => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(markers, 1, "one marker for the failover");

    // The follower converges on the new master's history (incrementally or
    // by a full resync if the replica lagged).
    for i in 50..80u32 {
        publisher
            .set(format!("k{}", i % 10).as_bytes(), i.to_string().as_bytes())
            .await
            .unwrap();
    }
    let target = blocking(|| watermark(new, topic));
    assert!(target >= 30, "the new master's watermark is {target}");
    assert!(
        mirror.wait_for_seq(target, PATIENCE).await,
        "the mirror did not reach seq {target}: at {:?}\n{}",
        mirror.version(),
        topology.log_tails(10)
    );
    let expected = blocking(|| server_state(new, topic));
    let mirrored: BTreeMap<Vec<u8>, Vec<u8>> = mirror.entries().into_iter().collect();
    assert_eq!(mirrored, expected);
    let (applied, resyncs, errors) = mirror.counts();
    println!("mirror: {applied} updates applied, {resyncs} full resyncs, {errors} errors");
    client.shutdown().await;
}

/// Time from now until a write through `client` is served by the new
/// master `new` (see [`first_write_landing_on`]).
async fn first_write_on(client: &Client, new: SocketAddr, label: &str) -> Duration {
    let started = Instant::now();
    first_write_landing_on(client, new, label).await - started
}

/// The clients of the sentinel at `addr` that are subscribed to a channel,
/// each as its `CLIENT LIST` fields (a sentinel has no `PUBSUB NUMSUB`).
fn subscribers(addr: SocketAddr) -> Vec<BTreeMap<String, String>> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut direct(addr))
        .unwrap();
    list.lines()
        .map(|client| {
            client
                .split_whitespace()
                .filter_map(|field| field.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|client| client.get("sub").is_some_and(|n| n != "0"))
        .collect()
}

/// Kills the first sentinel (where the first watcher's subscription
/// starts) and waits (bounded) until that watcher has subscribed on
/// another one: a subscriber there that was not before the kill (discovery
/// does not subscribe: every subscriber there is a watcher; the others'
/// watchers were there all along). Returns that sentinel and the watcher's
/// client id on it.
async fn kill_the_watched_sentinel(topology: &mut SentinelTopology) -> (SocketAddr, String) {
    let sentinels = topology.sentinel_addrs();
    let ids = |s: &SocketAddr| -> Vec<String> {
        subscribers(*s)
            .iter()
            .filter_map(|c| c.get("id").cloned())
            .collect()
    };
    let before: Vec<(SocketAddr, Vec<String>)> =
        blocking(|| sentinels[1..].iter().map(|s| (*s, ids(s))).collect());
    blocking(|| topology.sentinels_mut()[0].kill());
    let started = Instant::now();
    let watcher = || {
        before.iter().find_map(|(s, old)| {
            let id = ids(s).into_iter().find(|id| !old.contains(id))?;
            Some((*s, id))
        })
    };
    // Bounded by PATIENCE.
    loop {
        if let Some(found) = blocking(watcher) {
            return found;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the sentinel subscription did not move to another sentinel\n{}",
            topology.log_tails(10)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The data node that is not `master`.
fn the_replica(topology: &SentinelTopology, master: SocketAddr) -> SocketAddr {
    topology
        .node_addrs()
        .into_iter()
        .find(|a| *a != master)
        .unwrap()
}

/// The events `events` has buffered: what happened since it was taken.
fn events_so_far(events: &mut BoxStream<'static, Event>) -> Vec<Event> {
    let mut seen = Vec::new();
    for _ in 0..1024 {
        match events.next().now_or_never() {
            Some(Some(event)) => seen.push(event),
            _ => break,
        }
    }
    seen
}

/// The causes of the `Disconnected` events in `events`, in order.
fn disconnects(events: &[Event]) -> Vec<FailureKind> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected { cause } => Some(*cause),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_failover_reconnects_on_switch_master_before_the_old_master_refuses() {
    let mut topology = blocking(SentinelTopology::start);
    let old = topology.master_addr().unwrap();
    let new = the_replica(&topology, old);
    // A lenient heartbeat: no reconnect here may come from a slow machine.
    let heartbeat = HeartbeatConfig {
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        misses_allowed: 1,
    };
    let following = ready(config(&topology, true).with_heartbeat(heartbeat)).await;
    let ignoring = ready(config(&topology, false).with_heartbeat(heartbeat)).await;
    // The first sentinel dies: the watchers go on on the others (the
    // ignoring client has none).
    let (watched, watcher_id) = kill_the_watched_sentinel(&mut topology).await;

    let mut following_events = following.events();
    let mut ignoring_events = ignoring.events();
    let from = blocking(|| topology.failover());
    assert_eq!(from, old);
    let (with, without) = tokio::join!(
        first_write_on(&following, new, "follow"),
        first_write_on(&ignoring, new, "ignore"),
    );
    println!("planned SENTINEL FAILOVER -> first write on the new master:");
    println!("  following +switch-master: {with:?}");
    println!("  ignoring +switch-master:  {without:?}");

    // Following: the reconnect to the new master was the announcement's
    // doing (`Moved` comes only from the connector's invalidation), before
    // the old master refused a write or dropped the connection: the
    // sentinels demote it only seconds after announcing the switch.
    let followed = disconnects(&events_so_far(&mut following_events));
    assert_eq!(
        followed.first(),
        Some(&FailureKind::Moved),
        "the following client's disconnects: {followed:?}"
    );
    // Ignoring: it stayed on the old master until that one refused or
    // dropped it, and heard of no announcement.
    let ignored = disconnects(&events_so_far(&mut ignoring_events));
    assert!(
        !ignored.is_empty() && !ignored.contains(&FailureKind::Moved),
        "the ignoring client's disconnects: {ignored:?}"
    );
    // All along (seconds: the ignoring client waited for the demotion),
    // the heartbeat kept the subscription: the same client, PINGed and
    // answered (one declared dead is replaced by a new client).
    let still = blocking(|| subscribers(watched));
    assert!(
        still.iter().any(|c| c.get("id") == Some(&watcher_id)
            && c.get("cmd").map(String::as_str) == Some("ping")),
        "the subscription on {watched} (client {watcher_id}) is gone or was never PINGed: {still:?}"
    );
    assert_eq!(blocking(|| topology.wait_for_master(PATIENCE)), new);
    following.shutdown().await;
    ignoring.shutdown().await;
}

fn field_of(e: &Error) -> &str {
    match e {
        Error::Config { field, .. } => field,
        other => panic!("expected a config error, got {other}"),
    }
}

#[test]
fn bad_sentinel_config_is_refused_naming_the_field() {
    let base = || Config::new("redis://mymaster/0").unwrap();
    let no_nodes = base()
        .with_sentinel(SentinelConfig::new(SERVICE, Vec::<String>::new()))
        .build()
        .unwrap_err();
    assert_eq!(field_of(&no_nodes), "sentinel.nodes", "{no_nodes}");
    let no_service = base()
        .with_sentinel(SentinelConfig::new("", ["127.0.0.1:26379"]))
        .build()
        .unwrap_err();
    assert_eq!(field_of(&no_service), "sentinel.service", "{no_service}");
    let bad_node = base()
        .with_sentinel(SentinelConfig::new(SERVICE, ["127.0.0.1:26379", "a@b:1"]))
        .build()
        .unwrap_err();
    assert_eq!(field_of(&bad_node), "sentinel.nodes[1]", "{bad_node}");
    let bad_port = base()
        .with_sentinel(SentinelConfig::new(SERVICE, ["127.0.0.1:99999"]))
        .build()
        .unwrap_err();
    assert_eq!(field_of(&bad_port), "sentinel.nodes[0]", "{bad_port}");
    let unix = Config::new("redis+unix:///tmp/r.sock")
        .unwrap()
        .with_sentinel(SentinelConfig::new(SERVICE, ["127.0.0.1"]))
        .build()
        .unwrap_err();
    assert_eq!(field_of(&unix), "url", "{unix}");

    // The same in TOML: a missing field is named with its full path.
    let missing_service = toml::from_str::<Config>(
        "url = \"redis://mymaster\"\n[sentinel]\nnodes = [\"127.0.0.1:26379\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        missing_service.contains("sentinel.service"),
        "{missing_service}"
    );
    let empty_nodes = toml::from_str::<Config>(
        "url = \"redis://mymaster\"\n[sentinel]\nservice = \"mymaster\"\nnodes = []\n",
    )
    .unwrap_err()
    .to_string();
    assert!(empty_nodes.contains("sentinel.nodes"), "{empty_nodes}");
    let unknown = toml::from_str::<Config>(
        "url = \"redis://mymaster\"\n[sentinel]\nservice = \"m\"\nnodes = [\"h\"]\nnode = 1\n",
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("node"), "{unknown}");
}

#[test]
fn sentinel_config_reads_from_toml_round_trips_and_hides_its_password() {
    let config: Config = toml::from_str(
        r#"
        url = "redis://mymaster/3"
        password = "master-pw"
        [sentinel]
        service = "mymaster"
        nodes = ["127.0.0.1:26379", "127.0.0.1", "[::1]:26380"]
        username = "watcher"
        password = "sentinel-pw"
        follow_switch_master = false
        "#,
    )
    .unwrap();
    let sentinel = config.sentinel().unwrap();
    assert_eq!(sentinel.service(), "mymaster");
    assert_eq!(sentinel.username(), Some("watcher"));
    assert!(!sentinel.follow_switch_master());
    let infos = sentinel.connection_infos().unwrap();
    assert_eq!(
        infos[1].addr(),
        &redis::ConnectionAddr::Tcp("127.0.0.1".into(), 26379)
    );
    assert_eq!(infos[0].redis_settings().password(), Some("sentinel-pw"));
    assert_eq!(config.database(), 3);
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("sentinel-pw") && !shown.contains("master-pw"),
        "{shown}"
    );
    let json = serde_json::to_string(&config).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    // (JSON: toml's own errors quote the offending line, as config.rs documents.)
    let bad_password = serde_json::from_str::<Config>(
        r#"{"url": "redis://m", "sentinel": {"service": "m", "nodes": ["h"], "password": 12345}}"#,
    )
    .unwrap_err()
    .to_string();
    assert!(
        bad_password.contains("sentinel.password") && !bad_password.contains("12345"),
        "{bad_password}"
    );
}

/// Counters written by the INCR load: what relink acknowledged of each, and
/// how many came back "outcome unknown" (they may or may not be applied).
#[derive(Debug, Default, Clone)]
struct Tally {
    acknowledged: Vec<u64>,
    unknown: Vec<u64>,
    not_applied: u64,
    replicated_short: u64,
}

const COUNTERS: usize = 16;
const WRITERS: usize = 4;

/// `WRITERS` tasks INCRing `COUNTERS` counters named `{prefix}:<i>` through
/// `client` until `stop`; each result is tallied by what relink said.
fn incr_load(
    client: &Client,
    prefix: &str,
    stop: &tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..WRITERS)
        .map(|w| {
            let mut c = client.clone();
            let stop = stop.clone();
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut tally = Tally {
                    acknowledged: vec![0; COUNTERS],
                    unknown: vec![0; COUNTERS],
                    ..Tally::default()
                };
                let mut i = w;
                // Bounded by `stop`, which the test cancels within PATIENCE.
                while !stop.is_cancelled() {
                    let k = i % COUNTERS;
                    i += 1;
                    match c.incr::<_, _, i64>(format!("{prefix}:{k}"), 1).await {
                        Ok(_) => tally.acknowledged[k] += 1,
                        Err(e) => match Error::outcome_of(&e) {
                            relink::Outcome::Unknown => {
                                tally.unknown[k] += 1;
                                if matches!(
                                    Error::from_redis(&e),
                                    Some(Error::NotReplicated { .. })
                                ) {
                                    tally.replicated_short += 1;
                                }
                            }
                            _ => tally.not_applied += 1,
                        },
                    }
                    // A call refused at once never yields: without this, a
                    // writer refused in a loop would hold its worker thread.
                    tokio::task::yield_now().await;
                }
                tally
            })
        })
        .collect()
}

async fn tallied(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
    let mut total = Tally {
        acknowledged: vec![0; COUNTERS],
        unknown: vec![0; COUNTERS],
        ..Tally::default()
    };
    for task in tasks {
        let t = tokio::time::timeout(PATIENCE, task)
            .await
            .expect("a writer stopped")
            .unwrap();
        for k in 0..COUNTERS {
            total.acknowledged[k] += t.acknowledged[k];
            total.unknown[k] += t.unknown[k];
        }
        total.not_applied += t.not_applied;
        total.replicated_short += t.replicated_short;
    }
    total
}

/// The counters `{prefix}:<i>` as the server at `addr` has them.
fn counters(addr: SocketAddr, prefix: &str) -> Vec<u64> {
    let mut conn = direct(addr);
    (0..COUNTERS)
        .map(|k| {
            let v: Option<u64> = redis::cmd("GET")
                .arg(format!("{prefix}:{k}"))
                .query(&mut conn)
                .unwrap();
            v.unwrap_or(0)
        })
        .collect()
}

/// Waits (bounded) until the load has `more` acknowledged writes beyond
/// what the stats said when called.
async fn until_acknowledged(client: &Client, more: u64, what: &str) {
    let from = client.stats().succeeded;
    let started = Instant::now();
    while client.stats().succeeded < from + more {
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: {more} writes were not acknowledged within {PATIENCE:?}: {:?}",
            client.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every acknowledged INCR is on `addr`, and nothing there was not asked
/// for: acknowledged ≤ value ≤ acknowledged + unknown, per counter.
fn assert_no_acknowledged_write_lost(addr: SocketAddr, prefix: &str, tally: &Tally) {
    for (k, value) in counters(addr, prefix).into_iter().enumerate() {
        let (acked, unknown) = (tally.acknowledged[k], tally.unknown[k]);
        assert!(
            acked <= value && value <= acked + unknown,
            "{prefix}:{k} on {addr}: acknowledged {acked}, unknown {unknown}, value {value}\n{tally:?}"
        );
    }
}

/// The plain (not durable) writer's loss: acknowledged INCRs missing from
/// `addr`, summed over the counters (a figure, not asserted).
fn lost(addr: SocketAddr, prefix: &str, tally: &Tally) -> u64 {
    let values = counters(addr, prefix);
    (0..COUNTERS)
        .map(|k| tally.acknowledged[k].saturating_sub(values[k]))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_lose_nothing_acknowledged_across_a_planned_failover() {
    let topology = blocking(SentinelTopology::start);
    let old = topology.master_addr().unwrap();
    let client = ready(config(&topology, true)).await;
    let durable = client.durable(1, Duration::from_millis(300)).unwrap();
    let plain = ready(config(&topology, true)).await;
    let fast = ready(config(&topology, true).with_outage(OutagePolicy::FailFast)).await;
    let mut events = client.events();
    let stop = tokio_util::sync::CancellationToken::new();
    let durable_load = incr_load(&durable, "durable", &stop);
    let plain_load = incr_load(&plain, "plain", &stop);
    // Fail-fast: a write met while the failover is under way is refused at
    // once, not sent (and says why).
    let fast_load = {
        let mut c = fast.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut refused = 0u64;
            // Bounded by `stop`.
            while !stop.is_cancelled() {
                if let Err(e) = c.set::<_, _, ()>("fast", 1).await {
                    if matches!(
                        Error::from_redis(&e),
                        Some(Error::NotApplied {
                            kind: FailureKind::Moved,
                            ..
                        })
                    ) {
                        refused += 1;
                    }
                    // Refused at once, without yielding: let the others run.
                    tokio::task::yield_now().await;
                }
            }
            refused
        })
    };
    until_acknowledged(&durable, 200, "before the failover").await;

    // Led by the last sentinel: only it announces the failover's steps (the
    // watchers listen to every sentinel, not only the first).
    let from = blocking(|| topology.failover_via(2));
    assert_eq!(from, old);
    let new = blocking(|| topology.wait_for_new_master(old, PATIENCE));
    // Load on the new master for a while (the client reconnects there).
    until_acknowledged(&durable, 200, "after the failover").await;
    stop.cancel();
    let durable_tally = tallied(durable_load).await;
    let plain_tally = tallied(plain_load).await;
    let refused = fast_load.await.unwrap();
    assert_eq!(blocking(|| topology.wait_for_master(PATIENCE)), new);
    assert!(
        refused > 0,
        "the fail-fast client never met the hold: {:?}",
        fast.stats()
    );

    assert_no_acknowledged_write_lost(new, "durable", &durable_tally);
    let seen = events_so_far(&mut events);
    println!(
        "planned failover, durable: {} acknowledged, {} unknown ({} replicated short), {} not applied",
        durable_tally.acknowledged.iter().sum::<u64>(),
        durable_tally.unknown.iter().sum::<u64>(),
        durable_tally.replicated_short,
        durable_tally.not_applied,
    );
    println!(
        "planned failover, plain: {} acknowledged, {} lost",
        plain_tally.acknowledged.iter().sum::<u64>(),
        blocking(|| lost(new, "plain", &plain_tally)),
    );
    // The client held writes while the failover was under way and was
    // told the master moved: no READONLY it never got.
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::FailoverStarted { .. })),
        "{seen:?}"
    );
    assert!(seen.contains(&Event::ServerMoved), "{seen:?}");
    assert_eq!(
        disconnects(&seen).first(),
        Some(&FailureKind::Moved),
        "{seen:?}"
    );
    assert!(client.health().borrow().failover_since.is_none());
    client.shutdown().await;
    plain.shutdown().await;
    fast.shutdown().await;
}

/// The instant a `+switch-master` for the service is heard on `sentinel`.
async fn switch_master_heard(sentinel: SocketAddr) -> tokio::task::JoinHandle<Instant> {
    let client = redis::Client::open(format!("redis://{sentinel}/")).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("+switch-master").await.unwrap();
    tokio::spawn(async move {
        let mut messages = pubsub.into_on_message();
        // Bounded: the test waits for it with a timeout.
        loop {
            let msg = messages.next().await.expect("the sentinel closed");
            let payload: String = msg.get_payload().unwrap();
            if payload.starts_with(SERVICE) {
                return Instant::now();
            }
        }
    })
}

/// The instant a write through `client` is first served by `new`. The write
/// and `INFO server` run in one MULTI/EXEC, so the reply says which server
/// applied it (a write to the old master reaches the replica too, until it
/// is promoted: its presence there proves nothing).
async fn first_write_landing_on(client: &Client, new: SocketAddr, label: &str) -> Instant {
    let started = Instant::now();
    let mut c = client.clone();
    let port = format!("tcp_port:{}", new.port());
    // Bounded by PATIENCE.
    for i in 0u64.. {
        assert!(
            started.elapsed() < PATIENCE,
            "{label}: no write reached the new master {new} in {PATIENCE:?}"
        );
        let written: Result<((), String), _> = redis::pipe()
            .atomic()
            .set(format!("planned:{label}:{i}"), i)
            .cmd("INFO")
            .arg("server")
            .query_async(&mut c)
            .await;
        if let Ok(((), info)) = written {
            if info.lines().any(|line| line.trim() == port) {
                return Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_writes_survive_a_killed_master_and_a_dead_sentinel_and_the_switch_is_followed_at_once(
) {
    let mut topology = blocking(SentinelTopology::start);
    let old = topology.master_addr().unwrap();
    let new = the_replica(&topology, old);
    // relink's defaults (backoff, heartbeat), as a new user has them; a
    // patient backlog.
    let defaults = Config::new("redis://mymaster/0")
        .unwrap()
        .with_outage(OutagePolicy::Queue {
            capacity: 1024,
            max_wait: PATIENCE,
        })
        .with_deadline(Some(PATIENCE))
        .with_sentinel(SentinelConfig::new(SERVICE, topology.sentinel_nodes()));
    let client = ready(defaults.clone()).await;
    let durable = client.durable(1, Duration::from_millis(200)).unwrap();
    // The first write on the new master is timed on a client of its own:
    // on the durable load's connection it would queue behind WAITs that
    // the new master (with no replica left) lets run out.
    let probe = ready(defaults.clone()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let load = incr_load(&durable, "durable", &stop);
    until_acknowledged(&durable, 200, "before the kill").await;

    // The sentinel the watcher listens to dies in the middle of the run:
    // it moves on to another.
    let (watched, _) = kill_the_watched_sentinel(&mut topology).await;
    let switched = switch_master_heard(watched).await;
    until_acknowledged(&durable, 100, "with a sentinel down").await;

    let killed = blocking(|| topology.kill_master());
    assert_eq!(killed, old);
    let landed = first_write_landing_on(&probe, new, "kill").await;
    let switched = tokio::time::timeout(PATIENCE, switched)
        .await
        .expect("no +switch-master heard")
        .unwrap();
    let after_switch = landed.saturating_duration_since(switched);
    println!("kill -9 of the master: first write on the new master {after_switch:?} after +switch-master");
    // Asserted generously (the bench measures it): not a backoff step.
    assert!(
        after_switch < Duration::from_secs(2),
        "first write on the new master {after_switch:?} after +switch-master"
    );
    // A few more writes reach the new master (unconfirmed there: it has no
    // replica left), then the load stops.
    let tried = client.stats();
    let started = Instant::now();
    while client.stats().unknown + client.stats().succeeded < tried.unknown + tried.succeeded + 20 {
        assert!(
            started.elapsed() < PATIENCE,
            "the load stalled: {:?}",
            client.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    let tally = tallied(load).await;
    assert_eq!(blocking(|| topology.wait_for_master(PATIENCE)), new);
    assert_no_acknowledged_write_lost(new, "durable", &tally);
    println!(
        "killed master, durable: {} acknowledged, {} unknown ({} replicated short), {} not applied",
        tally.acknowledged.iter().sum::<u64>(),
        tally.unknown.iter().sum::<u64>(),
        tally.replicated_short,
        tally.not_applied,
    );
    client.shutdown().await;
    probe.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_whose_only_configured_sentinel_dies_moves_to_the_ones_it_named() {
    let mut topology = blocking(SentinelTopology::start);
    let old = topology.master_addr().unwrap();
    let new = the_replica(&topology, old);
    // One sentinel configured: the watcher learns the two others from it.
    let first = topology.sentinel_nodes()[0].clone();
    let client =
        ready(config(&topology, true).with_sentinel(SentinelConfig::new(SERVICE, [first]))).await;
    let (watched, _) = kill_the_watched_sentinel(&mut topology).await;
    let switched = switch_master_heard(watched).await;
    let mut events = client.events();
    let from = blocking(|| topology.failover());
    assert_eq!(from, old);
    // Followed on the announcement (discovery, which asks the configured
    // sentinel only, would find none): the switch reaches the client.
    let landed = first_write_landing_on(&client, new, "learned").await;
    let switched = tokio::time::timeout(PATIENCE, switched)
        .await
        .expect("no +switch-master heard")
        .unwrap();
    println!(
        "learned sentinel: first write on the new master {:?} after +switch-master",
        landed.saturating_duration_since(switched)
    );
    let seen = events_so_far(&mut events);
    assert!(seen.contains(&Event::ServerMoved), "{seen:?}");
    client.shutdown().await;
}

/// Waits (bounded) until `addr` calls itself a master.
fn wait_until_master(addr: SocketAddr) {
    let started = Instant::now();
    loop {
        let role: Result<Vec<redis::Value>, _> = redis::cmd("ROLE").query(&mut direct(addr));
        if let Ok(role) = role {
            if role.first() == Some(&redis::Value::BulkString(b"master".to_vec())) {
                return;
            }
        }
        assert!(started.elapsed() < PATIENCE, "{addr} never became master");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_client_serves_nothing_older_than_the_switch_after_a_planned_failover() {
    use relink::cache::CacheConfig;
    const WRITES: i64 = 200;
    let topology = blocking(SentinelTopology::start);
    let old = topology.master_addr().unwrap();
    let new = the_replica(&topology, old);
    let mut client = ready(config(&topology, true).with_cache(Some(CacheConfig::default()))).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg(0)
        .query(&mut direct(old))
        .unwrap();
    // Cached: a read answered from memory.
    let deadline = Instant::now() + PATIENCE;
    while client.stats().cache.unwrap().hits == 0 {
        let _: i64 = client.get("k").await.unwrap();
        assert!(Instant::now() < deadline, "k never cached");
    }
    let mut events = client.events();
    // Another client writes the new master from its promotion on; the old
    // master (kept up, demoted seconds later) never sees these writes, and
    // the client's connection to it stays open until the switch is heard.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = {
        let acked = std::sync::Arc::clone(&acked);
        std::thread::spawn(move || {
            wait_until_master(new);
            let mut conn: Option<redis::Connection> = None;
            for value in 1..=WRITES {
                // Sentinel disconnects the promoted replica's clients
                // (CLIENT KILL TYPE normal) around its promotion: a write
                // on a connection reset then is made again on a new one,
                // and counted as acknowledged only once it is.
                let started = Instant::now();
                let set = |c: &mut redis::Connection| {
                    redis::cmd("SET").arg("k").arg(value).query::<()>(c)
                };
                // Bounded by PATIENCE.
                loop {
                    let written = conn
                        .take()
                        .map_or_else(|| try_direct(new), Ok)
                        .and_then(|mut c| set(&mut c).map(|()| c));
                    match written {
                        Ok(c) => {
                            conn = Some(c);
                            break;
                        }
                        Err(e) => {
                            assert!(
                                e.is_io_error() || e.is_connection_dropped(),
                                "SET {value}: {e}"
                            );
                            // The next attempt's connect is the wait:
                            // the reset comes once, at the promotion.
                            assert!(started.elapsed() < PATIENCE, "SET {value}: {e}");
                        }
                    }
                }
                acked.lock().unwrap().push((Instant::now(), value));
            }
        })
    };
    assert_eq!(blocking(|| topology.failover()), old);
    let seen = tokio::time::timeout(PATIENCE, async {
        // Bounded by the timeout.
        while let Some(event) = events.next().await {
            if matches!(event, Event::Reconnected { .. }) {
                return;
            }
        }
    })
    .await;
    assert!(
        seen.is_ok(),
        "the client never came back after the failover"
    );
    let back = Instant::now();
    let read: i64 = client.get("k").await.unwrap();
    let newest_before = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(at, _)| *at <= back)
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(0);
    assert!(
        read >= newest_before,
        "read {read} after the switch, older than {newest_before} acknowledged before it"
    );
    blocking(|| writer.join().unwrap());
    // And the last write is seen (an invalidation, or a miss), within bounds.
    let deadline = Instant::now() + PATIENCE;
    while client.get::<_, i64>("k").await.unwrap() != WRITES {
        assert!(Instant::now() < deadline, "the last write was never read");
    }
    let stats = client.stats().cache.unwrap();
    assert!(stats.gap_flushes >= 1, "{stats:?}");
    client.shutdown().await;
}
