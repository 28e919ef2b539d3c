//! The Sentinel soak (`cargo xtask chaos --sentinel [--seed N] [--duration 60s]`):
//! a seeded schedule of failovers of a spawned Sentinel topology (a master,
//! one replica, three sentinels) while two writers `INCR` counters through
//! relink, one with durable acknowledgements and one without, checked on
//! the final master at the end.
//!
//! - Clients: two `Client`s with relink's defaults, configured with the
//!   sentinels; two, because a durable write's `WAIT` holds the connection
//!   it runs on and the plain writes would queue behind it. The durable
//!   writer writes through `durable(1, 300 ms)`: acknowledged only once the
//!   replica has the write.
//! - Writers: [`TASKS`] tasks each, `INCR`ing [`COUNTERS`] counters and
//!   tallying per counter what relink said: acknowledged, outcome unknown,
//!   not applied.
//! - Faults, from a schedule that is a pure function of the seed: planned
//!   failovers (`SENTINEL FAILOVER` asked of one sentinel, which leads it;
//!   the sentinels take turns) and killed masters (kill -9; the sentinels
//!   promote the replica; the old master is restarted and Sentinel makes it
//!   a replica). The first two faults are one of each, in a seeded order,
//!   however short the duration. After each, the soak waits (bounded) until
//!   the sentinels agree on a master that says it is one, the old master is
//!   back as a replica in sync, and both writers have been acknowledged
//!   again; then the load runs alone for a seeded pause.
//! - At the end, writers stopped, the final master read directly: per
//!   durable counter, acknowledged ≤ value ≤ acknowledged + unknown (no
//!   acknowledged durable write lost, nothing applied that was reported not
//!   applied); per plain counter, value ≤ acknowledged + unknown. The plain
//!   writer's loss (acknowledged `INCR`s missing, summed over its counters)
//!   is a figure, not a violation: replication is asynchronous, and a killed
//!   master takes what it had not passed on with it. Also: every fault
//!   recovered in time, every writer stopped when asked, no panic. Any
//!   violation makes the exit code 1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use relink::config::SentinelConfig;
use relink::core::rng::SplitMix64;
use relink::{Client, Config, Error, Outcome};
use relink_examples::{begin_soak, blocking, verdict};
use relink_testkit::sentinel::SERVICE;
use relink_testkit::SentinelTopology;
use tokio::sync::watch;

/// Counters per writer, named `<writer>:<k>`.
const COUNTERS: usize = 8;
/// Tasks per writer, sharing its client and its counters.
const TASKS: usize = 4;
/// A writer task's pause between two `INCR`s, whatever the outcome (so a
/// call refused at once cannot spin a worker either): it keeps the load
/// within what a shared 2-core machine spares.
const WRITER_PACE: Duration = Duration::from_millis(1);
/// Calls one writer task makes at the most.
const MAX_CALLS: u64 = 50_000_000;
/// The durable writer's `WAIT` timeout (the default response timeout is 3 s).
const DURABLE_WAIT: Duration = Duration::from_millis(300);
/// How long the topology and the clients may take to be whole after a
/// fault (each step of it), and the writers to be acknowledged again.
const RECOVERY: Duration = Duration::from_secs(60);
/// How long the writers may take to stop once asked.
const STOP_BOUND: Duration = Duration::from_secs(30);
/// Acknowledgements each writer gets before the first fault.
const WARM_UP: u64 = 200;
/// A writer unacknowledged for longer than this stalled (reported per fault).
const STALL: Duration = Duration::from_millis(100);
/// Faults the schedule holds (the duration ends the run well before).
const MAX_FAULTS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `SENTINEL FAILOVER` asked of sentinel `via` (which then leads it).
    Planned { via: usize },
    /// kill -9 of the master; restarted once the replica is promoted.
    Kill,
}

/// A fault and the pause of load after it.
struct Step {
    fault: Fault,
    then: Duration,
}

/// The schedule, a pure function of the seed: one fault of each kind first
/// (in a seeded order), then either at random; planned failovers are led by
/// the three sentinels in turn, from a seeded one.
fn schedule(seed: u64, count: usize) -> Vec<Step> {
    let mut rng = SplitMix64::new(seed);
    let kill_first = rng.next_u64() % 2 == 0;
    let mut leader = rng.next_u64() % 3;
    (0..count)
        .map(|i| {
            let kill = match i {
                0 => kill_first,
                1 => !kill_first,
                _ => rng.next_u64() % 2 == 0,
            };
            let fault = if kill {
                Fault::Kill
            } else {
                leader += 1;
                Fault::Planned {
                    via: (leader % 3) as usize,
                }
            };
            Step {
                fault,
                then: Duration::from_millis(300 + rng.next_u64() % 1_200),
            }
        })
        .collect()
}

/// What relink said of one writer's `INCR`s.
struct Tally {
    name: &'static str,
    acknowledged: [AtomicU64; COUNTERS],
    unknown: [AtomicU64; COUNTERS],
    /// Of the unknown: the `WAIT` came back short of the replica.
    replicated_short: AtomicU64,
    not_applied: AtomicU64,
    /// When the latest acknowledgement came: the recovery waits watch it.
    last_ack: watch::Sender<Instant>,
    /// Spans longer than [`STALL`] with no acknowledgement: (last before, first after).
    stalls: Mutex<Vec<(Instant, Instant)>>,
}

impl Tally {
    fn new(name: &'static str) -> Tally {
        Tally {
            name,
            acknowledged: std::array::from_fn(|_| AtomicU64::new(0)),
            unknown: std::array::from_fn(|_| AtomicU64::new(0)),
            replicated_short: AtomicU64::new(0),
            not_applied: AtomicU64::new(0),
            last_ack: watch::Sender::new(Instant::now()),
            stalls: Mutex::new(Vec::new()),
        }
    }

    fn key(&self, k: usize) -> String {
        format!("{}:{k}", self.name)
    }

    fn acknowledge(&self, k: usize) {
        self.acknowledged[k].fetch_add(1, Ordering::Relaxed);
        self.last_ack.send_modify(|last| {
            let now = Instant::now();
            if now.saturating_duration_since(*last) > STALL {
                self.stalls
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((*last, now));
            }
            *last = now;
        });
    }

    fn sum(counts: &[AtomicU64]) -> u64 {
        counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Waits (at most `bound`) for an acknowledgement after `since`.
    async fn acknowledged_after(&self, since: Instant, bound: Duration) -> bool {
        let mut last = self.last_ack.subscribe();
        let came = tokio::time::timeout(bound, last.wait_for(|at| *at > since)).await;
        matches!(came, Ok(Ok(_)))
    }

    /// The longest stall that overlaps `from..to`.
    fn longest_stall(&self, from: Instant, to: Instant) -> Duration {
        self.stalls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|&&(before, after)| before < to && after > from)
            .map(|&(before, after)| after - before)
            .max()
            .unwrap_or_default()
    }
}

/// One writer task: `INCR`s of the tally's counters in turn, from `task`'s.
async fn writer(mut client: Client, task: usize, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    // Bounded by `stop` (set within the run's bounds) and by MAX_CALLS.
    for call in 0..MAX_CALLS {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let k = (task + call as usize) % COUNTERS;
        match client.incr::<_, _, i64>(tally.key(k), 1).await {
            Ok(_) => tally.acknowledge(k),
            Err(e) => match Error::outcome_of(&e) {
                Outcome::Unknown => {
                    tally.unknown[k].fetch_add(1, Ordering::Relaxed);
                    if matches!(Error::from_redis(&e), Some(Error::NotReplicated { .. })) {
                        tally.replicated_short.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Not applied, or refused by the server: nothing changed.
                _ => {
                    tally.not_applied.fetch_add(1, Ordering::Relaxed);
                }
            },
        }
        tokio::time::sleep(WRITER_PACE).await;
    }
}

/// What one fault did, for the report.
struct Done {
    fault: Fault,
    at: Duration,
    from: SocketAddr,
    to: SocketAddr,
    /// From the fault until the sentinels agreed on the new master.
    agreed: Duration,
    /// From the fault until the old master was a replica in sync again.
    rejoined: Duration,
    /// The longest stretch without an acknowledgement, plain and durable.
    plain_stall: Duration,
    durable_stall: Duration,
}

impl std::fmt::Display for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.fault {
            Fault::Planned { via } => format!("planned failover via sentinel {via}:"),
            Fault::Kill => "kill -9 of the master:".to_owned(),
        };
        write!(
            f,
            "{:>8.1?} {what} {} -> {}; agreed after {:.1?}, old master a replica again after \
             {:.1?}; longest stall plain {:.0?}, durable {:.0?}",
            self.at,
            self.from,
            self.to,
            self.agreed,
            self.rejoined,
            self.plain_stall,
            self.durable_stall
        )
    }
}

/// The counters `<name>:<k>` on the server at `addr`.
fn read_counters(addr: SocketAddr, name: &str) -> Result<Vec<u64>, String> {
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    (0..COUNTERS)
        .map(|k| {
            redis::cmd("GET")
                .arg(format!("{name}:{k}"))
                .query::<Option<u64>>(&mut conn)
                .map(Option::unwrap_or_default)
                .map_err(|e| format!("GET {name}:{k} on {addr}: {e}"))
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (args, panics) = begin_soak("sentinel-chaos", Duration::from_secs(60));
    let started = Instant::now();
    // Owned here: dropped (every process stopped by its PID) on every way
    // out, a panic's unwinding included; explicitly before `exit`.
    let mut topology = blocking(SentinelTopology::start);
    let first = topology.wait_for_master(RECOVERY);
    println!(
        "  master {first}, replica {}, sentinels {}",
        topology.wait_for_replica(first, RECOVERY),
        topology.sentinel_nodes().join(", ")
    );
    let config = Config::new(&format!("redis://{SERVICE}/0"))
        .expect("config")
        .with_sentinel(SentinelConfig::new(SERVICE, topology.sentinel_nodes()));
    let plain_client = Client::new(config.clone()).expect("client");
    let durable_client = Client::new(config).expect("client");
    for client in [&plain_client, &durable_client] {
        client.wait_ready(RECOVERY).await.expect("client ready");
    }
    let durable = durable_client
        .durable(1, DURABLE_WAIT)
        .expect("durable handle");

    let stop = Arc::new(AtomicBool::new(false));
    let plain_tally = Arc::new(Tally::new("plain"));
    let durable_tally = Arc::new(Tally::new("durable"));
    let mut writers = Vec::new();
    for (client, tally) in [(&plain_client, &plain_tally), (&durable, &durable_tally)] {
        for task in 0..TASKS {
            writers.push(tokio::spawn(writer(
                client.clone(),
                task,
                Arc::clone(tally),
                Arc::clone(&stop),
            )));
        }
    }
    let mut violations = Vec::new();
    for tally in [&plain_tally, &durable_tally] {
        let mut last = tally.last_ack.subscribe();
        let warm = tokio::time::timeout(
            RECOVERY,
            last.wait_for(|_| Tally::sum(&tally.acknowledged) >= WARM_UP),
        )
        .await;
        if !matches!(warm, Ok(Ok(_))) {
            violations.push(format!(
                "the {} writer had no {WARM_UP} acknowledgements within {RECOVERY:?}",
                tally.name
            ));
        }
    }

    // The faults, one after the other, each waited out.
    let deadline = Instant::now() + args.duration;
    let mut done = Vec::new();
    // Bounded by the deadline (after the first two) and the schedule's length.
    for (n, step) in schedule(args.seed, MAX_FAULTS).into_iter().enumerate() {
        if !violations.is_empty() || (n >= 2 && Instant::now() >= deadline) {
            break;
        }
        let t0 = Instant::now();
        let from = match step.fault {
            Fault::Planned { via } => blocking(|| topology.failover_via(via)),
            Fault::Kill => blocking(|| topology.kill_master()),
        };
        let to = blocking(|| topology.wait_for_new_master(from, RECOVERY));
        let agreed = t0.elapsed();
        if step.fault == Fault::Kill {
            blocking(|| topology.node_mut(from).restart());
        }
        blocking(|| topology.wait_for_replica(to, RECOVERY));
        let rejoined = t0.elapsed();
        // Both writers acknowledged by the new master (the durable one
        // with the old master as the replica that confirmed).
        let since = Instant::now();
        for tally in [&plain_tally, &durable_tally] {
            if !tally.acknowledged_after(since, RECOVERY).await {
                violations.push(format!(
                    "fault #{n} ({:?}): the {} writer not acknowledged within {RECOVERY:?} \
                     after the topology was whole",
                    step.fault, tally.name
                ));
            }
        }
        for (name, client) in [("plain", &plain_client), ("durable", &durable_client)] {
            if let Err(e) = client.wait_ready(RECOVERY).await {
                violations.push(format!(
                    "fault #{n} ({:?}): the {name} client not Ready: {e}",
                    step.fault
                ));
            }
        }
        let now = Instant::now();
        let record = Done {
            fault: step.fault,
            at: t0.duration_since(started),
            from,
            to,
            agreed,
            rejoined,
            plain_stall: plain_tally.longest_stall(t0, now),
            durable_stall: durable_tally.longest_stall(t0, now),
        };
        println!("  {record}");
        done.push(record);
        // Pacing between faults, not a wait for a condition.
        tokio::time::sleep(step.then).await;
    }

    stop.store(true, Ordering::Relaxed);
    for task in writers {
        let abort = task.abort_handle();
        match tokio::time::timeout(STOP_BOUND, task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => violations.push(format!("a writer task failed: {e}")),
            Err(_) => {
                abort.abort();
                violations.push(format!("a writer did not stop within {STOP_BOUND:?}"));
            }
        }
    }
    // Said now: the wait below panics (with every log's tail) when the
    // topology has no master left, and these would not be printed.
    for v in &violations {
        println!("  so far: {v}");
    }
    let master = blocking(|| topology.wait_for_master(RECOVERY));
    let planned = done
        .iter()
        .filter(|d| matches!(d.fault, Fault::Planned { .. }))
        .count();
    println!(
        "\n{} faults (planned failover {planned}, killed master {}) in {:.1?}; final master {master}",
        done.len(),
        done.len() - planned,
        started.elapsed()
    );
    for tally in [&durable_tally, &plain_tally] {
        let values = match blocking(|| read_counters(master, tally.name)) {
            Ok(values) => values,
            Err(e) => {
                violations.push(format!("reading the {} counters: {e}", tally.name));
                continue;
            }
        };
        let durable = tally.name == "durable";
        println!(
            "  {}{}: {} acknowledged, {} unknown ({} replicated short), {} not applied",
            tally.name,
            if durable {
                format!(" (WAIT 1 replica, {DURABLE_WAIT:?})")
            } else {
                String::new()
            },
            Tally::sum(&tally.acknowledged),
            Tally::sum(&tally.unknown),
            tally.replicated_short.load(Ordering::Relaxed),
            tally.not_applied.load(Ordering::Relaxed),
        );
        let (mut lost, mut applied_unknown) = (0, 0);
        let mut lines = Vec::new();
        for (k, value) in values.into_iter().enumerate() {
            let acked = tally.acknowledged[k].load(Ordering::Relaxed);
            let unknown = tally.unknown[k].load(Ordering::Relaxed);
            lost += acked.saturating_sub(value);
            applied_unknown += value.saturating_sub(acked);
            let ok = if durable {
                acked <= value && value <= acked + unknown
            } else {
                value <= acked + unknown
            };
            lines.push(format!(
                "{} {}: {acked} acknowledged, value {value}, {unknown} unknown",
                if ok { "ok  " } else { "FAIL" },
                tally.key(k)
            ));
            if !ok {
                violations.push(format!(
                    "{} on {master}: acknowledged {acked}, unknown {unknown}, value {value} \
                     (want {})",
                    tally.key(k),
                    if durable {
                        "acknowledged <= value <= acknowledged + unknown"
                    } else {
                        "value <= acknowledged + unknown"
                    }
                ));
            }
        }
        for line in lines {
            println!("    {line}");
        }
        println!(
            "    {applied_unknown} of the unknown were applied (values above acknowledged, summed)"
        );
        if durable {
            println!(
                "    acknowledged <= value <= acknowledged + unknown checked on every counter"
            );
        } else {
            println!(
                "    plain loss: {lost} acknowledged INCRs missing on the final master (a figure, \
                 not a failure)"
            );
        }
    }
    for client in [&plain_client, &durable_client] {
        if tokio::time::timeout(STOP_BOUND, client.shutdown())
            .await
            .is_err()
        {
            violations.push(format!("a client did not shut down within {STOP_BOUND:?}"));
        }
    }
    let panicked = panics.load(Ordering::SeqCst);
    if panicked > 0 {
        violations.push(format!("{panicked} panics"));
    }
    drop(topology);
    std::process::exit(verdict("sentinel chaos", args.seed, &violations));
}
