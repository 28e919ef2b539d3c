//! The cluster soak (`cargo xtask chaos --cluster [--seed N] [--duration 30s]`):
//! a seeded storm of faults against a spawned 3-master + 3-replica Redis
//! Cluster while numbered messages flow through relink's cluster Pub/Sub,
//! with the invariants checked at the end.
//!
//! - Subscriptions, on one `ClusterClient`: a shard channel (`SSUBSCRIBE`)
//!   in the lowest slot of each master (the slots a reshard moves first),
//!   and a classic channel (`SUBSCRIBE`). A publisher on a second client
//!   sends `1`, `2`, ... to every channel (`SPUBLISH`, `PUBLISH`).
//! - Faults, from a schedule that is a pure function of the seed: a master
//!   killed (its replica takes over; the node is restarted and rejoins as a
//!   replica), a reshard of a master's lowest slots to another master, a
//!   master paused (SIGSTOP) for less than the node timeout. After each, the
//!   soak waits for the cluster and the client to be whole again.
//! - At the end: on every channel, every message that never came lies in a
//!   hole next to a gap marker; on the shard channels nothing came twice
//!   (`SPUBLISH` stays within its shard); on the classic channel, a message
//!   twice only right after a marker (nodes relay `PUBLISH` with delays of
//!   their own); every subscription heard messages after the last fault; no
//!   panic. Any violation makes the exit code non-zero. Messages that came
//!   late (after a higher number, once) are counted, not a violation: a
//!   publisher whose slot map is stale sends `SPUBLISH` to a replica, which
//!   relays it to its master over the cluster bus, behind messages the
//!   master ran itself (seen here after a failover).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use relink::cluster::{ClusterClient, ClusterConfig};
use relink::core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink::core::rng::SplitMix64;
use relink::core::supervisor::HeartbeatConfig;
use relink_examples::{begin_soak, blocking, verdict, Numbered};
use relink_testkit::cluster::tag_for_slot;
use relink_testkit::RedisCluster;

/// How near a hole (or a repeat) a marker must be.
const MARKER_WINDOW: Duration = Duration::from_secs(3);
/// How long the cluster and the client may take to be whole after a fault.
const RECOVERY: Duration = Duration::from_secs(30);
/// Between two messages of the publisher.
const PUBLISH_EVERY: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Kill master number `master` (of the current masters, in slot order).
    Kill { master: usize },
    /// Move `slots` of master `from`'s lowest slots to master `to`.
    Reshard { from: usize, to: usize, slots: u16 },
    /// SIGSTOP master `master` for `hold` ms (below the node timeout).
    Pause { master: usize, hold: u64 },
}

fn schedule(seed: u64, count: usize) -> Vec<Fault> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| match rng.next_u64() % 3 {
            0 => Fault::Kill {
                master: (rng.next_u64() % 3) as usize,
            },
            1 => {
                let from = (rng.next_u64() % 3) as usize;
                Fault::Reshard {
                    from,
                    to: (from + 1 + (rng.next_u64() % 2) as usize) % 3,
                    slots: 1 + (rng.next_u64() % 4) as u16,
                }
            }
            _ => Fault::Pause {
                master: (rng.next_u64() % 3) as usize,
                hold: 200 + rng.next_u64() % 500,
            },
        })
        .collect()
}

fn settings(config: ClusterConfig) -> ClusterConfig {
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
        });
    config.with_settings(settings)
}

/// One subscribed channel and what its subscriber saw.
struct Channel {
    name: String,
    shard: bool,
    seen: Arc<Mutex<Numbered>>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (args, panics) = begin_soak("cluster-chaos", Duration::from_secs(30));
    let started = Instant::now();
    let mut cluster = blocking(RedisCluster::start);
    let config = settings(ClusterConfig::new(cluster.urls()).expect("nodes"))
        .build()
        .expect("config");
    let subscriber = ClusterClient::new(config.clone()).expect("client");
    let publisher = ClusterClient::new(config).expect("client");
    for client in [&subscriber, &publisher] {
        client.wait_ready(RECOVERY).await.expect("cluster ready");
    }

    let mut channels = Vec::new();
    for master in blocking(|| cluster.masters()) {
        let slot = blocking(|| cluster.slots_of(master))[0];
        channels.push((format!("orders{}", tag_for_slot(slot)), true));
    }
    channels.push(("news".to_owned(), false));
    let mut subscribed = Vec::new();
    let mut consumers = Vec::new();
    for (name, shard) in channels {
        let sub = if shard {
            subscriber.ssubscribe(&[&name]).await
        } else {
            subscriber.subscribe(&[&name]).await
        };
        let mut sub = sub.expect("subscribe");
        let seen = Arc::new(Mutex::new(Numbered::default()));
        let sink = Arc::clone(&seen);
        consumers.push(tokio::spawn(async move {
            // Ends when the client shuts down.
            while let Some(item) = sub.next_item().await {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .observe(&item);
            }
        }));
        subscribed.push(Channel { name, shard, seen });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let publishing = {
        let (stop, published, client) = (stop.clone(), published.clone(), publisher.clone());
        let targets: Vec<(String, bool)> = subscribed
            .iter()
            .map(|c| (c.name.clone(), c.shard))
            .collect();
        tokio::spawn(async move {
            let mut n = 0u64;
            let mut failed = 0u64;
            // Bounded by `stop`, set after the faults.
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                for (name, shard) in &targets {
                    let mut c = client.clone();
                    let sent: redis::RedisResult<i64> = if *shard {
                        redis::cmd("SPUBLISH")
                            .arg(name)
                            .arg(n)
                            .query_async(&mut c)
                            .await
                    } else {
                        c.publish(name, n).await
                    };
                    failed += u64::from(sent.is_err());
                }
                published.store(n, Ordering::Relaxed);
                tokio::time::sleep(PUBLISH_EVERY).await;
            }
            failed
        })
    };

    // The faults, one after the other, each waited out.
    let mut done: BTreeMap<&'static str, u32> = BTreeMap::new();
    let deadline = Instant::now() + args.duration;
    let mut violations = Vec::new();
    // Bounded by the deadline (and the schedule's length).
    for fault in schedule(args.seed, 1000) {
        if Instant::now() >= deadline {
            break;
        }
        let masters = blocking(|| cluster.masters());
        let at = started.elapsed();
        let name = match fault {
            Fault::Kill { master } => {
                let victim = masters[master % masters.len()];
                println!("  {at:>8.1?} kill master {victim}");
                blocking(|| cluster.kill(victim));
                // Its replica takes over; then it comes back as a replica.
                if let Err(e) = subscriber.wait_ready(RECOVERY).await {
                    let view = blocking(|| cluster.check_ok());
                    violations.push(format!(
                        "not Ready after killing {victim}: {e}; the cluster: {view:?}; {:?}",
                        subscriber.health().borrow()
                    ));
                }
                // A replica with no copy of its master's data cannot take
                // over: the next kill waits for the resync.
                blocking(|| {
                    cluster.node(victim).restart();
                    cluster.wait_ok();
                    cluster.wait_replicas_synced();
                });
                "kill"
            }
            Fault::Reshard { from, to, slots } => {
                let (from, to) = (masters[from % masters.len()], masters[to % masters.len()]);
                println!("  {at:>8.1?} reshard {slots} slots from {from} to {to}");
                blocking(|| {
                    cluster.reshard(from, to, slots);
                    cluster.wait_ok();
                });
                "reshard"
            }
            Fault::Pause { master, hold } => {
                let victim = masters[master % masters.len()];
                println!("  {at:>8.1?} pause master {victim} for {hold} ms");
                blocking(|| cluster.node(victim).pause());
                tokio::time::sleep(Duration::from_millis(hold)).await;
                blocking(|| {
                    cluster.node(victim).resume();
                    cluster.wait_ok();
                });
                "pause"
            }
        };
        *done.entry(name).or_default() += 1;
        if let Err(e) = subscriber.wait_ready(RECOVERY).await {
            let view = blocking(|| cluster.check_ok());
            violations.push(format!(
                "not Ready after a {name}: {e}; the cluster: {view:?}; {:?}",
                subscriber.health().borrow()
            ));
        }
    }

    // Let every channel be heard after the last fault.
    let last_fault = published.load(Ordering::Relaxed);
    let settle = Instant::now() + RECOVERY;
    // Bounded by `settle`.
    while Instant::now() < settle
        && !subscribed.iter().all(|c| {
            let seen = c.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.last() > last_fault + 50
        })
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let publish_failures = publishing.await.unwrap_or(u64::MAX);
    let stats = subscriber.stats();
    subscriber.shutdown().await;
    publisher.shutdown().await;
    for consumer in consumers {
        if tokio::time::timeout(RECOVERY, consumer).await.is_err() {
            violations.push("a subscription stream did not end at shutdown".to_owned());
        }
    }

    println!(
        "\n{} faults ({done:?}) in {:.1?}; {} messages per channel published, {publish_failures} \
         publishes failed; subscriber {stats:?}",
        done.values().sum::<u32>(),
        started.elapsed(),
        published.load(Ordering::Relaxed),
    );
    for c in &subscribed {
        let seen = c.seen.lock().unwrap_or_else(|p| p.into_inner());
        let unmarked = seen.unmarked_holes(MARKER_WINDOW);
        let duplicates_unmarked = seen.unmarked_duplicates(MARKER_WINDOW);
        println!(
            "  {} {}: {} received, {} markers, {} holes ({} never came, {unmarked} unmarked), \
             {} duplicates ({duplicates_unmarked} not right after a marker), {} late, {} lagged",
            if c.shard { "shard channel" } else { "channel" },
            c.name,
            seen.received,
            seen.markers,
            seen.holes.len(),
            seen.missing(),
            seen.duplicates.len(),
            seen.late,
            seen.lagged
        );
        if unmarked > 0 {
            violations.push(format!("{}: {unmarked} holes with no marker", c.name));
        }
        if c.shard && !seen.duplicates.is_empty() {
            violations.push(format!(
                "{}: messages twice: {:?}",
                c.name,
                seen.duplicates.iter().map(|(_, n)| n).collect::<Vec<_>>()
            ));
        }
        if duplicates_unmarked > 0 {
            violations.push(format!("{}: duplicates not right after a marker", c.name));
        }
        if seen.last() <= last_fault {
            violations.push(format!("{}: nothing heard after the last fault", c.name));
        }
    }
    let panicked = panics.load(Ordering::SeqCst);
    if panicked > 0 {
        violations.push(format!("{panicked} panics"));
    }
    drop(cluster);
    std::process::exit(verdict("cluster chaos", args.seed, &violations));
}
