//! The outage tour (`cargo xtask demo`): a workload runs through a relink
//! `Client` while a real redis-server is killed, paused, blackholed, reset
//! and restarted under it. A live status line shows what happens; a summary
//! table per outage and the invariants checked from the server's side close it.
//!
//! The workload: writers (`INCR`, `SET`), a reader, Pub/Sub, a state-sync
//! publisher and mirror, a job queue (a producer `LPUSH`es numbered jobs, a
//! consumer takes them with `BLPOP`, which relink runs on an exclusive
//! connection) and two tasks incrementing a counter with
//! `WATCH`/`MULTI`/`EXEC` on leased connections (`client.exclusive()`).
//!
//! Everything runs on loopback: the server is spawned by the test support
//! (`relink-testkit`) and reached through its fault-injecting proxy.
//!
//! With `--sentinel` (`cargo xtask demo --sentinel`) the same workload runs
//! against a Sentinel topology (master, replica, three sentinels) instead:
//! the master is killed, the sentinels promote the replica, and the client
//! follows by itself.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::AsyncCommands;
use relink::config::SentinelConfig;
use relink::core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink::core::supervisor::HeartbeatConfig;
use relink::sync::{Publisher, SyncedMap, TopicOptions};
use relink::{Client, Config, Error, Event, Outcome, PubSubItem, State};
use relink_testkit::sentinel::SERVICE;
use relink_testkit::{FaultProxy, RedisServer, SentinelTopology};

const WRITERS: usize = 8;
const JOBS: &str = "tour:jobs";
const TX_COUNTER: &str = "tour:tx-counter";
/// Tasks incrementing `TX_COUNTER` with transactions (so they race).
const TX_TASKS: usize = 2;
/// The consumer's `BLPOP` timeout, in seconds.
const BLPOP_TIMEOUT: f64 = 1.0;

/// A fault to inject: blocking (it sleeps between breaking and mending).
type Fault = Box<dyn Fn() + Send>;

/// Where the workload runs: the connection config, the faults to inject,
/// and a plain connection to the server holding the data (for the invariants).
struct Stage {
    config: Config,
    script: Vec<(&'static str, Fault)>,
    /// Also owns the processes: they live as long as the stage.
    direct: Box<dyn Fn() -> redis::Connection + Send + Sync>,
    /// Writes acknowledged by a master that dies may not have reached its
    /// replica yet (Redis replicates asynchronously): then a lost write is
    /// Redis's, not relink's, and the invariants say so instead of failing.
    async_replication: bool,
}

/// One injected fault and what relink made of it.
#[derive(Debug, Clone)]
struct Outage {
    cause: &'static str,
    injected: Instant,
    detected: Option<Duration>,
    downtime: Option<Duration>,
    attempts: u32,
    before: relink::Stats,
    after: Option<relink::Stats>,
}

#[derive(Default)]
struct Tally {
    acked_incr: AtomicU64,
    unknown_incr: AtomicU64,
    not_applied: AtomicU64,
    reads_checked: AtomicU64,
    stale_reads: AtomicU64,
    messages: AtomicU64,
    restored_markers: AtomicU64,
    pushed: AtomicU64,
    push_unknown: AtomicU64,
    taken: AtomicU64,
    blpop_unknown: AtomicU64,
    tx_acked: AtomicU64,
    tx_unknown: AtomicU64,
    /// Nil `EXEC`s: the counter changed after the `WATCH`; tried again.
    tx_conflicts: AtomicU64,
    /// Refused with `ConnectionReplaced`: the connection was made again
    /// after the `WATCH`, which the server forgot; tried again.
    tx_replaced: AtomicU64,
}

/// What became of one `LPUSH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Push {
    Acked,
    /// It may or may not be in the list.
    Unknown,
    /// Not applied or rejected: it must not be in the list.
    Refused,
}

/// The job queue's records: every push's fate (job `n` at index `n - 1`)
/// and every job the consumer took.
#[derive(Default)]
struct Jobs {
    pushed: Mutex<Vec<Push>>,
    taken: Mutex<Vec<u64>>,
}

#[tokio::main]
async fn main() {
    let code = run().await;
    std::process::exit(code);
}

async fn run() -> i32 {
    println!("relink outage tour: a workload through relink::Client while redis-server is broken under it\n");
    let sentinel = std::env::args().skip(1).any(|a| a == "--sentinel");
    let stage = if sentinel {
        sentinel_stage()
    } else {
        single_server_stage()
    };
    let heartbeat = HeartbeatConfig {
        interval: Duration::from_millis(250),
        timeout: Duration::from_millis(250),
        misses_allowed: 0,
    };
    let config = stage
        .config
        .with_client_name("outage-tour")
        .with_heartbeat(heartbeat)
        .with_backoff(
            BackoffPolicy::default()
                .strategy(Strategy::Exponential { multiplier: 2.0 })
                .initial_delay(Duration::from_millis(50))
                .max_delay(Duration::from_millis(800))
                .jitter(Jitter::Equal),
        );
    println!(
        "heartbeat: PING after {:?} of silence, dead after {:?} without an answer; backoff 50 ms x2 up to 800 ms, equal jitter\n",
        heartbeat.interval,
        heartbeat.detection_bound()
    );
    let misconfig_config = config.clone();
    let client = Client::new(config.clone()).expect("valid config");
    if let Err(e) = client.wait_ready(Duration::from_secs(10)).await {
        eprintln!("could not connect: {e}");
        return 1;
    }

    // State sync: a publisher on the workload's client, and a mirror that
    // follows the topic on a client of its own (also through the proxy).
    let publisher = Publisher::new(&client, "tour", TopicOptions::default()).expect("topic");
    publisher.set(b"item:0", b"0").await.expect("first publish");
    let mut mirror = SyncedMap::new(
        Client::new(config).expect("valid config"),
        "tour",
        TopicOptions::default(),
    )
    .expect("topic");
    if !mirror.wait_for_seq(1, Duration::from_secs(10)).await {
        eprintln!("the mirror did not take its first snapshot");
        return 1;
    }
    println!(
        "state sync: publishing to topic `tour`; a SyncedMap mirrors it on its own connection\n"
    );

    let tally = Arc::new(Tally::default());
    let outages: Arc<Mutex<Vec<Outage>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let acked_keys: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();

    let watcher = tokio::spawn(watch_events(client.clone(), Arc::clone(&outages)));
    let mut workers = Vec::new();
    for w in 0..WRITERS {
        workers.push(tokio::spawn(writer(
            client.clone(),
            w,
            Arc::clone(&tally),
            Arc::clone(&acked_keys),
            Arc::clone(&stop),
        )));
    }
    workers.push(tokio::spawn(reader(
        client.clone(),
        Arc::clone(&tally),
        Arc::clone(&acked_keys),
        Arc::clone(&stop),
    )));
    workers.push(tokio::spawn(pubsub(
        client.clone(),
        Arc::clone(&tally),
        Arc::clone(&stop),
    )));
    workers.push(tokio::spawn(publish(publisher.clone(), Arc::clone(&stop))));
    let jobs = Arc::new(Jobs::default());
    workers.push(tokio::spawn(producer(
        client.clone(),
        Arc::clone(&tally),
        Arc::clone(&jobs),
        Arc::clone(&stop),
    )));
    workers.push(tokio::spawn(consumer(
        client.clone(),
        Arc::clone(&tally),
        Arc::clone(&jobs),
        Arc::clone(&stop),
    )));
    for _ in 0..TX_TASKS {
        workers.push(tokio::spawn(incrementer(
            client.clone(),
            Arc::clone(&tally),
            Arc::clone(&stop),
        )));
    }
    let status = tokio::spawn(status_line(
        client.clone(),
        mirror.clone(),
        Arc::clone(&tally),
        Arc::clone(&stop),
    ));

    let script = stage.script;
    let stage_async_replication = stage.async_replication;

    tokio::time::sleep(Duration::from_secs(3)).await;
    for (cause, fault) in script {
        outages.lock().unwrap().push(Outage {
            cause,
            injected: Instant::now(),
            detected: None,
            downtime: None,
            attempts: 0,
            before: client.stats(),
            after: None,
        });
        note(&format!("fault: {cause}"));
        tokio::task::spawn_blocking(fault).await.expect("fault ran");
        // Wait for recovery (bounded), then let the workload run a while.
        let mut health = client.health();
        let _ = tokio::time::timeout(
            Duration::from_secs(20),
            health.wait_for(|h| h.state == State::Ready),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        if let Some(o) = outages.lock().unwrap().last_mut() {
            o.after = Some(client.stats());
        }
    }

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let _ = status.await;
    if std::io::stdout().is_terminal() {
        println!();
    }

    // Invariants, checked from the server's side with a plain connection.
    let mut direct = tokio::task::block_in_place(|| (stage.direct)());
    let counter: u64 = redis::cmd("GET")
        .arg("tour:counter")
        .query::<Option<u64>>(&mut direct)
        .unwrap()
        .unwrap_or(0);
    let acked = tally.acked_incr.load(Ordering::Relaxed);
    let unknown = tally.unknown_incr.load(Ordering::Relaxed);
    let keys = acked_keys.lock().unwrap().clone();
    let mut missing = 0;
    for chunk in keys.chunks(1000) {
        let names: Vec<&String> = chunk.iter().map(|(k, _)| k).collect();
        let values: Vec<Option<u64>> = redis::cmd("MGET").arg(names).query(&mut direct).unwrap();
        for ((_, expected), value) in chunk.iter().zip(values) {
            if value != Some(*expected) {
                missing += 1;
            }
        }
    }
    // The mirror catches up with the last publishes, then must equal the server.
    let watermark: u64 = redis::cmd("HGET")
        .arg("relink:{tour}:meta")
        .arg("seq")
        .query::<Option<u64>>(&mut direct)
        .unwrap()
        .unwrap_or(0);
    mirror
        .wait_for_seq(watermark, Duration::from_secs(20))
        .await;
    let server_state: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = redis::cmd("HGETALL")
        .arg("relink:{tour}:state")
        .query(&mut direct)
        .unwrap();
    let mirror_state: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        mirror.entries().into_iter().collect();
    let (updates, resyncs, _) = mirror.counts();
    let missed = missed_updates(&mirror);
    // Nothing runs any more: what is queued is what the consumer did not take.
    let queued: Vec<u64> = redis::cmd("LRANGE")
        .arg(JOBS)
        .arg(0)
        .arg(-1)
        .query(&mut direct)
        .unwrap();
    let books = queue_books(
        &jobs.pushed.lock().unwrap(),
        &jobs.taken.lock().unwrap(),
        &queued,
    );
    let tx_counter: u64 = redis::cmd("GET")
        .arg(TX_COUNTER)
        .query::<Option<u64>>(&mut direct)
        .unwrap()
        .unwrap_or(0);
    let tx_acked = tally.tx_acked.load(Ordering::Relaxed);
    let tx_unknown = tally.tx_unknown.load(Ordering::Relaxed);
    let blpop_unknown = tally.blpop_unknown.load(Ordering::Relaxed);
    let final_state = client.health().borrow().state;
    let stats = client.stats();
    client.shutdown().await;
    let _ = watcher.await;

    print_summary(&outages.lock().unwrap());
    println!("\nworkload: {} commands succeeded, {} retried transparently, {} failed before being sent, {} of unknown outcome, {} refused with nothing applied",
        stats.succeeded, stats.retried, stats.not_sent, stats.unknown, stats.not_applied);
    println!(
        "pub/sub: {} messages received, {} restored-subscription markers (Pub/Sub has no replay: each marker is a gap the subscriber knows about)",
        tally.messages.load(Ordering::Relaxed),
        tally.restored_markers.load(Ordering::Relaxed)
    );
    println!(
        "job queue: {} LPUSHes acknowledged, {} of unknown outcome; {} jobs taken by the BLPOP consumer, {blpop_unknown} BLPOPs of unknown outcome",
        books.acked,
        tally.push_unknown.load(Ordering::Relaxed),
        books.taken,
    );
    println!(
        "transactions: {tx_acked} EXECs acknowledged, {tx_unknown} of unknown outcome, {} nil (another increment won: tried again), {} refused after a reconnect (the WATCH was gone: tried again)",
        tally.tx_conflicts.load(Ordering::Relaxed),
        tally.tx_replaced.load(Ordering::Relaxed),
    );
    println!("\ninvariants (checked on the server):");
    let mut ok = true;
    ok &= check_durable(
        missing == 0,
        &format!(
            "every acknowledged SET is on the server ({} keys, {missing} missing)",
            keys.len()
        ),
        stage_async_replication,
    );
    ok &= check_durable(
        counter >= acked,
        &format!("no acknowledged INCR lost (counter {counter} >= {acked} acknowledged)"),
        stage_async_replication,
    );
    ok &= check(
        counter <= acked + unknown,
        &format!(
            "no INCR applied twice (counter {counter} <= {acked} acknowledged + {unknown} unknown)"
        ),
    );
    ok &= check_durable(
        tally.stale_reads.load(Ordering::Relaxed) == 0,
        &format!(
            "reads see acknowledged writes ({} reads checked, {} stale)",
            tally.reads_checked.load(Ordering::Relaxed),
            tally.stale_reads.load(Ordering::Relaxed)
        ),
        stage_async_replication,
    );
    ok &= check(
        mirror.version().seq() == watermark && mirror_state == server_state,
        &format!(
            "the mirror equals the server's state at seq {watermark} ({} keys; {updates} updates applied, {resyncs} snapshot(s))",
            server_state.len()
        ),
    );
    ok &= check(
        missed == 0,
        &format!("the follower missed no update and applied none twice (missed: {missed})"),
    );
    ok &= check_durable(
        books.unaccounted <= blpop_unknown,
        &format!(
            "no acknowledged job lost ({} pushed: {} taken, {} queued, {} unaccounted <= {blpop_unknown} BLPOPs of unknown outcome)",
            books.acked, books.taken, books.queued, books.unaccounted
        ),
        stage_async_replication,
    );
    ok &= check_durable(
        books.twice == 0 && books.refused_seen == 0,
        &format!(
            "no job taken twice, none whose push failed ({} twice, {} refused)",
            books.twice, books.refused_seen
        ),
        stage_async_replication,
    );
    ok &= check_durable(
        tx_counter >= tx_acked,
        &format!(
            "no lost update by WATCH/MULTI/EXEC (counter {tx_counter} >= {tx_acked} acknowledged)"
        ),
        stage_async_replication,
    );
    ok &= check(
        tx_counter <= tx_acked + tx_unknown,
        &format!(
            "no EXEC applied twice (counter {tx_counter} <= {tx_acked} acknowledged + {tx_unknown} unknown)"
        ),
    );
    ok &= check(
        final_state == State::Ready,
        &format!("health back to Ready after every fault (final: {final_state})"),
    );
    let recovered = outages.lock().unwrap().iter().all(|o| o.after.is_some());
    ok &= check(recovered, "recovered from every fault with no user action");
    if !sentinel {
        ok &= misconfiguration_stage(misconfig_config, &mut direct).await;
    }
    if ok {
        println!("\nall invariants hold");
        0
    } else {
        println!("\nINVARIANT VIOLATED");
        1
    }
}

/// A misconfiguration is not an outage: a second client with a wrong
/// password is told so (the cause and the server's words, in its events and
/// its errors), fails commands at once instead of queueing them, does not
/// hammer the server, and is fixed live with `update_credentials`.
async fn misconfiguration_stage(config: Config, direct: &mut redis::Connection) -> bool {
    const PASSWORD: &str = "tour-secret";
    println!(
        "\nmisconfiguration: the server now requires a password; a new client has the wrong one"
    );
    let requirepass = |direct: &mut redis::Connection, password: &str| {
        tokio::task::block_in_place(|| {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg(password)
                .exec(direct)
        })
    };
    requirepass(direct, PASSWORD).expect("CONFIG SET requirepass");
    let client = Client::new(config.with_password("not-the-password")).expect("valid config");
    let mut events = client.events();
    let shown = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            match event {
                Event::ConnectAttemptFailed {
                    failure,
                    misconfigured,
                    retry_in,
                } => note(&format!(
                    "relink: attempt {} failed: {failure}{}",
                    failure.attempt,
                    match (misconfigured, retry_in) {
                        (true, Some(d)) => format!(
                            " (misconfigured: next try in {} ms, on the slow schedule)",
                            d.as_millis()
                        ),
                        (_, Some(d)) => format!(" (next try in {} ms)", d.as_millis()),
                        (_, None) => String::new(),
                    }
                )),
                Event::StateChanged { from, to } => note(&format!("relink: {from} -> {to}")),
                Event::Connected { attempts } => {
                    note(&format!("relink: connected after {attempts} attempt(s)"))
                }
                _ => {}
            }
            seen.push(event);
        }
        seen
    });
    let misconfigured = {
        let mut health = client.health();
        let flagged = tokio::time::timeout(
            Duration::from_secs(10),
            health.wait_for(|h| h.misconfigured),
        )
        .await;
        matches!(flagged, Ok(Ok(_)))
    };
    let mut conn = client.clone();
    let started = Instant::now();
    let refused = conn.get::<_, Option<String>>("tour:counter").await;
    let refused_in = started.elapsed();
    if let Err(e) = &refused {
        note(&format!(
            "GET failed at once ({} ms): {e}",
            refused_in.as_millis()
        ));
    }
    let told = matches!(
        refused.as_ref().map_err(Error::from_redis),
        Err(Some(Error::Misconfigured { .. }))
    );
    note("update_credentials(None, \"tour-secret\")");
    let updated = client.update_credentials(None, PASSWORD).await;
    let ready = updated.is_ok() && client.wait_ready(Duration::from_secs(10)).await.is_ok();
    let works = conn.get::<_, Option<String>>("tour:counter").await.is_ok();
    client.shutdown().await;
    let seen = shown.await.unwrap_or_default();
    let _ = requirepass(direct, "");
    let attempts_failed = seen
        .iter()
        .filter(|e| matches!(e, Event::ConnectAttemptFailed { .. }))
        .count();
    let mut ok = check(
        misconfigured && attempts_failed >= 1,
        &format!(
            "a wrong password is a misconfiguration, told with the server's words ({attempts_failed} failed attempt(s) shown)"
        ),
    );
    ok &= check(
        told,
        "a command while misconfigured fails at once, not sent (no queueing for a connection that will not come)",
    );
    ok &= check(
        ready && works,
        "fixed live: update_credentials, and the client connects at once with no restart",
    );
    ok
}

/// The default tour: one redis-server (AOF, `appendfsync always`) behind the fault proxy.
fn single_server_stage() -> Stage {
    let server = RedisServer::builder().appendonly(true).start();
    let proxy = FaultProxy::start(server.addr());
    println!(
        "redis-server pid {} on {} (appendfsync always), reached through a fault proxy on {}",
        server.pid(),
        server.addr(),
        proxy.addr()
    );
    let config = Config::new(&proxy.url()).expect("loopback url");
    let server = Arc::new(Mutex::new(server));
    let proxy = Arc::new(proxy);
    let script: Vec<(&'static str, Fault)> = vec![
        ("kill -9, restart after 1 s", {
            let s = Arc::clone(&server);
            Box::new(move || {
                s.lock().unwrap().kill();
                std::thread::sleep(Duration::from_secs(1));
                s.lock().unwrap().restart();
            })
        }),
        ("SIGSTOP for 2 s (hung server)", {
            let s = Arc::clone(&server);
            Box::new(move || {
                s.lock().unwrap().pause();
                std::thread::sleep(Duration::from_secs(2));
                s.lock().unwrap().resume();
            })
        }),
        ("link blackholed for 2 s", {
            let p = Arc::clone(&proxy);
            Box::new(move || {
                p.blackhole();
                std::thread::sleep(Duration::from_secs(2));
                p.pass();
            })
        }),
        ("link reset (RST)", {
            let p = Arc::clone(&proxy);
            Box::new(move || p.reset())
        }),
        ("graceful SHUTDOWN + restart", {
            let s = Arc::clone(&server);
            Box::new(move || {
                let mut s = s.lock().unwrap();
                s.shutdown();
                s.restart();
            })
        }),
    ];

    // The proxy must outlive the script's closures: the workload runs through it.
    let direct = Box::new(move || {
        let _proxy = &proxy;
        server.lock().unwrap().connection()
    });
    Stage {
        config,
        script,
        direct,
        async_replication: false,
    }
}

/// `--sentinel`: a master, a replica and three sentinels; the client finds
/// the master through the sentinels and follows each failover.
fn sentinel_stage() -> Stage {
    let topology = SentinelTopology::start();
    let master = topology.master_addr().expect("the sentinels name a master");
    println!(
        "sentinel topology: master {master}, replica {}, sentinels {} (service `{SERVICE}`)",
        topology
            .node_addrs()
            .iter()
            .find(|a| **a != master)
            .expect("a replica"),
        topology.sentinel_nodes().join(", ")
    );
    let config = Config::new(&format!("redis://{SERVICE}/0"))
        .expect("valid url")
        .with_sentinel(SentinelConfig::new(SERVICE, topology.sentinel_nodes()));
    let topology = Arc::new(Mutex::new(topology));
    let patience = Duration::from_secs(30);
    let script: Vec<(&'static str, Fault)> = vec![("kill -9 of the master (failover)", {
        let t = Arc::clone(&topology);
        Box::new(move || {
            let old = t.lock().unwrap().kill_master();
            let new = t.lock().unwrap().wait_for_new_master(old, patience);
            note(&format!("sentinels promoted the replica {new}"));
        })
    })];
    let direct = Box::new(move || {
        let t = topology.lock().unwrap();
        t.node(t.wait_for_master(patience)).connection()
    });
    Stage {
        config,
        script,
        direct,
        async_replication: true,
    }
}

/// A check of durability: with asynchronous replication (Sentinel), writes a
/// killed master acknowledged but had not yet replicated are lost by Redis.
fn check_durable(pass: bool, what: &str, async_replication: bool) -> bool {
    if pass || !async_replication {
        return check(pass, what);
    }
    println!("  NOTE {what}");
    println!("       lost with the killed master: Redis replicates asynchronously, so writes it acknowledged");
    println!("       but had not yet sent to its replica are gone after the failover (Redis's, not relink's)");
    true
}

fn check(pass: bool, what: &str) -> bool {
    println!("  {} {what}", if pass { "PASS" } else { "FAIL" });
    pass
}

fn note(line: &str) {
    if std::io::stdout().is_terminal() {
        print!("\r\x1b[2K");
    }
    println!("  >> {line}");
}

async fn watch_events(client: Client, outages: Arc<Mutex<Vec<Outage>>>) {
    let mut events = client.events();
    while let Some(event) = events.next().await {
        let mut outages = outages.lock().unwrap();
        let Some(current) = outages.last_mut() else {
            continue;
        };
        match event {
            Event::Disconnected { cause } => {
                if current.detected.is_none() {
                    current.detected = Some(current.injected.elapsed());
                }
                note(&format!("relink: connection lost ({cause})"));
            }
            Event::ReconnectScheduled { attempt, delay } => {
                note(&format!(
                    "relink: reconnect attempt {attempt} in {} ms",
                    delay.as_millis()
                ));
            }
            Event::Reconnected { downtime, attempts } => {
                current.downtime = Some(downtime);
                current.attempts = attempts;
                note(&format!(
                    "relink: reconnected after {} ms, {attempts} attempt(s); state restored",
                    downtime.as_millis()
                ));
            }
            Event::HeartbeatMissed { misses } => {
                note(&format!("relink: heartbeat missed ({misses})"))
            }
            _ => {}
        }
    }
}

async fn writer(
    mut client: Client,
    id: usize,
    tally: Arc<Tally>,
    acked: Arc<Mutex<Vec<(String, u64)>>>,
    stop: Arc<AtomicBool>,
) {
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        match client.incr::<_, _, i64>("tour:counter", 1).await {
            Ok(_) => {
                tally.acked_incr.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                match Error::outcome_of(&e) {
                    Outcome::Unknown => tally.unknown_incr.fetch_add(1, Ordering::Relaxed),
                    _ => tally.not_applied.fetch_add(1, Ordering::Relaxed),
                };
                // A real service would back off too rather than spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let key = format!("tour:key:{id}:{i}");
        // A SET of a unique key is idempotent: declared so, relink may retry it.
        if client.idempotent().set::<_, _, ()>(&key, i).await.is_ok() {
            acked.lock().unwrap().push((key, i));
        }
    }
}

async fn reader(
    mut client: Client,
    tally: Arc<Tally>,
    acked: Arc<Mutex<Vec<(String, u64)>>>,
    stop: Arc<AtomicBool>,
) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let probe = {
            let acked = acked.lock().unwrap();
            let len = acked.len().max(1);
            acked.get((n as usize).wrapping_mul(7919) % len).cloned()
        };
        match probe {
            Some((key, expected)) => match client.get::<_, Option<u64>>(&key).await {
                Ok(value) => {
                    tally.reads_checked.fetch_add(1, Ordering::Relaxed);
                    if value != Some(expected) {
                        tally.stale_reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            None => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn pubsub(client: Client, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let Ok(mut sub) = client.subscribe(&["tour:news"]).await else {
        return;
    };
    let publisher = tokio::spawn({
        let mut client = client.clone();
        let stop = Arc::clone(&stop);
        async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = client.publish::<_, _, i64>("tour:news", "tick").await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
            Ok(Some(PubSubItem::Message { .. })) => {
                tally.messages.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(PubSubItem::Restored { gap })) => {
                tally.restored_markers.fetch_add(1, Ordering::Relaxed);
                note(&format!(
                    "pub/sub: subscriptions restored after a {} ms gap",
                    gap.as_millis()
                ));
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => break,
        }
    }
    let _ = publisher.await;
}

/// Pushes numbered jobs with `LPUSH`, recording each push's fate.
async fn producer(mut client: Client, tally: Arc<Tally>, jobs: Arc<Jobs>, stop: Arc<AtomicBool>) {
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let push = match client.lpush::<_, _, i64>(JOBS, n).await {
            Ok(_) => {
                tally.pushed.fetch_add(1, Ordering::Relaxed);
                Push::Acked
            }
            Err(e) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                match Error::outcome_of(&e) {
                    Outcome::Unknown => {
                        tally.push_unknown.fetch_add(1, Ordering::Relaxed);
                        Push::Unknown
                    }
                    _ => Push::Refused,
                }
            }
        };
        jobs.pushed.lock().unwrap().push(push);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Takes jobs with `BLPOP` on the same client: relink runs it on an
/// exclusive connection, so it holds up no one, and a `BLPOP` blocked longer
/// than the heartbeat is not taken for a dead server.
async fn consumer(mut client: Client, tally: Arc<Tally>, jobs: Arc<Jobs>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match client
            .blpop::<_, Option<(String, u64)>>(JOBS, BLPOP_TIMEOUT)
            .await
        {
            Ok(Some((_, job))) => {
                tally.taken.fetch_add(1, Ordering::Relaxed);
                jobs.taken.lock().unwrap().push(job);
            }
            Ok(None) => {}
            Err(e) => {
                // Unknown: it may have taken a job whose reply was lost.
                if Error::outcome_of(&e) == Outcome::Unknown {
                    tally.blpop_unknown.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Increments a counter with optimistic transactions on a leased
/// connection: `WATCH`, `GET`, then `MULTI`/`SET n+1`/`EXEC`, again after a
/// nil `EXEC` (another increment won) or a refusal.
async fn incrementer(client: Client, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let replaced = |e: &redis::RedisError| {
        if matches!(Error::from_redis(e), Some(Error::ConnectionReplaced)) {
            tally.tx_replaced.fetch_add(1, Ordering::Relaxed);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let Ok(mut tx) = client.exclusive().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let read = async {
            redis::cmd("WATCH")
                .arg(TX_COUNTER)
                .exec_async(&mut tx)
                .await?;
            tx.get::<_, Option<u64>>(TX_COUNTER).await
        }
        .await;
        let n = match read {
            Ok(n) => n.unwrap_or(0),
            Err(e) => {
                replaced(&e); // nothing written: start again
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let exec: redis::RedisResult<Option<(u64,)>> = redis::pipe()
            .atomic()
            .set(TX_COUNTER, n + 1)
            .ignore()
            .get(TX_COUNTER)
            .query_async(&mut tx)
            .await;
        match exec {
            Ok(Some(_)) => {
                tally.tx_acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {
                tally.tx_conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                replaced(&e);
                if Error::outcome_of(&e) == Outcome::Unknown {
                    tally.tx_unknown.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The job queue's books: every push's fate against what the consumer took
/// and what is still queued.
#[derive(Debug, Default)]
struct QueueBooks {
    acked: u64,
    taken: u64,
    queued: u64,
    /// Acknowledged pushes neither taken nor queued.
    unaccounted: u64,
    /// Jobs seen more than once (taken twice, or taken and queued).
    twice: u64,
    /// Jobs seen whose push failed (or was never made).
    refused_seen: u64,
}

fn queue_books(pushed: &[Push], taken: &[u64], queued: &[u64]) -> QueueBooks {
    let mut seen = vec![0u32; pushed.len()];
    let mut books = QueueBooks {
        taken: taken.len() as u64,
        queued: queued.len() as u64,
        ..QueueBooks::default()
    };
    for &job in taken.iter().chain(queued) {
        match job.checked_sub(1).and_then(|i| seen.get_mut(i as usize)) {
            Some(count) => *count += 1,
            None => books.refused_seen += 1,
        }
    }
    for (fate, &count) in pushed.iter().zip(&seen) {
        books.twice += u64::from(count > 1);
        match fate {
            Push::Acked => {
                books.acked += 1;
                books.unaccounted += u64::from(count == 0);
            }
            Push::Refused => books.refused_seen += u64::from(count > 0),
            Push::Unknown => {}
        }
    }
    books
}

/// Updates the follower should have applied but did not: everything after
/// its first snapshot (seq 1) arrives as exactly one update each.
fn missed_updates(mirror: &SyncedMap) -> u64 {
    let (updates, resyncs, _) = mirror.counts();
    if resyncs > 1 {
        return 0; // a later snapshot covers what it skipped (and says why)
    }
    mirror
        .version()
        .seq()
        .saturating_sub(1)
        .saturating_sub(updates)
}

async fn publish(publisher: Publisher, stop: Arc<AtomicBool>) {
    let mut i: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("item:{}", i % 100);
        if publisher
            .set(key.as_bytes(), i.to_string().as_bytes())
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn status_line(client: Client, mirror: SyncedMap, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let tty = std::io::stdout().is_terminal();
    let started = Instant::now();
    let mut last = client.stats();
    let mut last_at = Instant::now();
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tick += 1;
        let now = client.stats();
        let rate = (now.succeeded - last.succeeded) as f64 / last_at.elapsed().as_secs_f64();
        last = now;
        last_at = Instant::now();
        let health = client.health().borrow().clone();
        let line = format!(
            "[{:>5.1}s] {:<17} {:>8.0} ops/s | ok {:>8} | retried {:>5} | not sent {:>5} | unknown {:>4} | msgs {:>6} | jobs pushed {:>5} taken {:>5} | EXECs {:>5} | mirror v{} missed {}",
            started.elapsed().as_secs_f64(),
            health.state.to_string(),
            rate,
            now.succeeded,
            now.retried,
            now.not_sent,
            now.unknown,
            tally.messages.load(Ordering::Relaxed),
            tally.pushed.load(Ordering::Relaxed),
            tally.taken.load(Ordering::Relaxed),
            tally.tx_acked.load(Ordering::Relaxed),
            mirror.version().seq(),
            missed_updates(&mirror),
        );
        if tty {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
        } else if tick % 5 == 0 {
            println!("{line}");
        }
    }
}

fn print_summary(outages: &[Outage]) {
    println!("\noutages:");
    println!(
        "  {:<2} {:<30} {:>10} {:>10} {:>9} {:>9} {:>8} {:>8}",
        "#", "fault", "detected", "downtime", "attempts", "not sent", "unknown", "retried"
    );
    for (i, o) in outages.iter().enumerate() {
        let ms =
            |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
        let delta = o.after.map(|a| a.since(&o.before)).unwrap_or_default();
        println!(
            "  {:<2} {:<30} {:>10} {:>10} {:>9} {:>9} {:>8} {:>8}",
            i + 1,
            o.cause,
            ms(o.detected),
            ms(o.downtime),
            o.attempts,
            delta.not_sent,
            delta.unknown,
            delta.retried
        );
    }
    println!("  (detected: from the fault to relink declaring the connection lost; a fault that never broke the connection shows '-')");
}
