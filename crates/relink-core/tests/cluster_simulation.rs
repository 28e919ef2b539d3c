//! The cluster supervisor in whole scenarios on a virtual clock: a master
//! killed and its replica promoted, a reshard, a node removed and one added,
//! the whole cluster down, a flapping cluster, and 100,000 random schedules,
//! each checked step by step against an independent model of what the
//! supervisor promises (see `support/cluster_sim.rs`).

#[path = "support/cluster_sim.rs"]
mod cluster_sim;

use std::time::{Duration, Instant};

use cluster_sim::{name, run, ClusterScenario, Mode, Op};
use relink_core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink_core::cluster::{Action, ClusterSupervisorConfig, Event};
use relink_core::State;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Exponential ×2 from 100 ms up to `max_ms`, no jitter: delays are exact.
fn doubling(max_ms: u64) -> BackoffPolicy {
    BackoffPolicy::default()
        .strategy(Strategy::Exponential { multiplier: 2.0 })
        .initial_delay(ms(100))
        .max_delay(ms(max_ms))
        .jitter(Jitter::None)
}

fn config() -> ClusterSupervisorConfig {
    ClusterSupervisorConfig::default()
        .backoff(doubling(1600))
        .refresh_interval(ms(500))
        .refresh_timeout(ms(300))
        .connect_timeout(ms(300))
}

fn ready_at_start(trace: &cluster_sim::ClusterTrace) -> u64 {
    let first = trace.transitions_to(State::Ready);
    assert!(!first.is_empty(), "never Ready");
    assert!(first[0] < 100, "Ready at {} ms", first[0]);
    first[0]
}

#[test]
fn a_killed_master_is_replaced_by_its_promoted_replica() {
    // Node 0 is a master; node 3 its replica.
    let sc = ClusterScenario::scripted(
        config(),
        &[(1000, Op::NodeDown(0)), (1500, Op::Failover(0))],
    );
    let trace = run(&sc).unwrap_or_else(|v| panic!("at {} ms: {}", v.at, v.what));
    ready_at_start(&trace);
    let failed = trace.transitions_to(State::TransientFailure);
    assert!(
        failed.iter().any(|&t| (1000..=1010).contains(&t)),
        "the dead master's slots noticed within the probe's lag: {failed:?}"
    );
    let ready = trace.transitions_to(State::Ready);
    assert!(
        ready.iter().any(|&t| t > 1500 && t <= 2010),
        "Ready again at the first read after the promotion: {ready:?}"
    );
    assert!(
        trace.losses().is_empty(),
        "one node down is no lost cluster"
    );
    let changed = trace
        .events
        .iter()
        .filter(|(t, e)| {
            *t > 1500
                && matches!(
                    e,
                    Event::TopologyChanged {
                        masters: 3,
                        nodes: 6
                    }
                )
        })
        .count();
    assert!(changed >= 1);
}

#[test]
fn a_reshard_moves_slots_without_losing_readiness() {
    let sc = ClusterScenario::scripted(
        config(),
        &[
            (
                1000,
                Op::Reshard {
                    from: 0,
                    to: 1,
                    count: 100,
                },
            ),
            (
                2000,
                Op::Reshard {
                    from: 1,
                    to: 2,
                    count: 6000,
                },
            ),
        ],
    );
    let trace = run(&sc).unwrap_or_else(|v| panic!("at {} ms: {}", v.at, v.what));
    ready_at_start(&trace);
    assert_eq!(trace.readies(), 1, "Ready throughout: {:?}", trace.events);
    let changes: Vec<u64> = trace
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::TopologyChanged { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        changes.len(),
        3,
        "the first read and two reshards: {changes:?}"
    );
}

#[test]
fn a_removed_node_is_no_longer_probed_and_an_added_one_is() {
    // Node 5 is a replica of master 2; node 0 a master whose slots move to
    // master 1 when it leaves; node 6 joins as a replica.
    let sc = ClusterScenario::scripted(
        config(),
        &[
            (1000, Op::Remove(5)),
            (2000, Op::Remove(0)),
            (
                3000,
                Op::Add {
                    replica_of: Some(0),
                },
            ),
        ],
    );
    let trace = run(&sc).unwrap_or_else(|v| panic!("at {} ms: {}", v.at, v.what));
    ready_at_start(&trace);
    for (node, left) in [(5, 1000), (0, 2000)] {
        let named = trace.actions_naming(&name(node));
        // Started, stopped when it left; not even named at shutdown.
        assert_eq!(named.len(), 2, "{named:?}");
        let (at, stop) = &named[1];
        assert_eq!(stop, &Action::StopProbe { node: name(node) });
        assert!(*at > left && *at <= left + 502, "stopped at {at} ms");
    }
    let added = trace.actions_naming(&name(6));
    assert!(
        matches!(&added[..], [(at, Action::StartProbe { .. }), ..] if *at > 3000 && *at <= 3502),
        "{added:?}"
    );
    assert_eq!(trace.readies(), 1, "Ready throughout: {:?}", trace.events);
}

#[test]
fn the_whole_cluster_down_is_lost_and_remade_with_backoff() {
    let config = config()
        .refresh_interval(ms(200))
        .lost_after(2)
        .backoff_reset_after(ms(10_000));
    let sc = ClusterScenario::scripted(
        config,
        &[(1000, Op::Mode(Mode::Down)), (6000, Op::Mode(Mode::Normal))],
    );
    let trace = run(&sc).unwrap_or_else(|v| panic!("at {} ms: {}", v.at, v.what));
    ready_at_start(&trace);
    let losses = trace.losses();
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert!(
        losses[0] > 1000 && losses[0] <= 1000 + 2 * 200 + 200 + 10,
        "lost at {}",
        losses[0]
    );
    let delays = trace.reconnect_delays_ms();
    assert_eq!(&delays[..5], &[100, 200, 400, 800, 1600]);
    assert!(delays.iter().all(|&d| d <= 1600));
    let ready = trace.transitions_to(State::Ready);
    assert_eq!(ready.len(), 2, "{ready:?}");
    assert!(ready[1] > 6000 && ready[1] <= 6000 + 1600 + 20, "{ready:?}");
}

/// Down 1 s, up 2 s, five times: every connection lives less than
/// `backoff_reset_after`, so the backoff never restarts; with a reset after
/// 1 s of stability it does.
#[test]
fn a_flapping_cluster_does_not_earn_instant_retries() {
    let mut ops = Vec::new();
    for i in 0..5 {
        ops.push((1000 + 3000 * i, Op::Mode(Mode::Down)));
        ops.push((2000 + 3000 * i, Op::Mode(Mode::Normal)));
    }
    let config = config()
        .backoff(doubling(3200))
        .refresh_interval(ms(100))
        .lost_after(1);
    let sc = ClusterScenario::scripted(config.clone().backoff_reset_after(ms(10_000)), &ops);
    let trace = run(&sc).unwrap_or_else(|v| panic!("at {} ms: {}", v.at, v.what));
    assert!(trace.losses().len() >= 3, "{:?}", trace.losses());
    let delays = trace.reconnect_delays_ms();
    assert_eq!(
        &delays[..6],
        &[100, 200, 400, 800, 1600, 3200],
        "{delays:?}"
    );

    let sc = ClusterScenario::scripted(config.backoff_reset_after(ms(1000)), &ops);
    let trace = run(&sc).unwrap_or_else(|v| panic!("at {} ms: {}", v.at, v.what));
    let delays = trace.reconnect_delays_ms();
    let restarts = delays.iter().filter(|&&d| d == 100).count();
    assert!(
        restarts >= 3,
        "a stable connection's loss restarts the backoff: {delays:?}"
    );
}

#[test]
fn a_hung_cluster_is_noticed_by_the_read_timeout() {
    let config = config()
        .refresh_interval(ms(200))
        .refresh_timeout(ms(300))
        .lost_after(2);
    let sc = ClusterScenario::scripted(
        config,
        &[(1000, Op::Mode(Mode::Hang)), (4000, Op::Mode(Mode::Normal))],
    );
    let trace = run(&sc).unwrap_or_else(|v| panic!("at {} ms: {}", v.at, v.what));
    let losses = trace.losses();
    assert_eq!(losses.len(), 1, "{losses:?}");
    // Two reads time out (each 300 ms, 200 ms apart), the probes time out too.
    assert!(
        losses[0] > 1000 && losses[0] <= 1000 + 200 + 300 + 200 + 300 + 210,
        "{losses:?}"
    );
    assert_eq!(trace.readies(), 2);
}

/// Totals over many runs, to show the schedules exercised what they should.
#[derive(Debug, Default)]
struct Totals {
    readies: u64,
    losses: u64,
    removed: u64,
    inputs: u64,
}

/// Runs `seeds`; the first failure as `(seed, message)`.
fn run_seeds(seeds: std::ops::Range<u64>) -> Result<Totals, (u64, String)> {
    let mut t = Totals::default();
    for seed in seeds {
        let sc = ClusterScenario::random(seed);
        match run(&sc) {
            Ok(trace) => {
                t.readies += trace.readies() as u64;
                t.losses += trace.losses().len() as u64;
                t.inputs += trace.inputs;
                t.removed += trace
                    .events
                    .iter()
                    .filter(|(_, e)| matches!(e, Event::NodeRemoved { .. }))
                    .count() as u64;
            }
            Err(v) => {
                let what = format!(
                    "seed {seed} broke a promise at t={} ms: {}\nscenario: {sc:#?}",
                    v.at, v.what
                );
                return Err((seed, what));
            }
        }
    }
    Ok(t)
}

/// The headline property: 100,000 random schedules of failures, failovers,
/// reshards, removals, joins, outages and pokes under random configs, every
/// step checked (on every core; each schedule is independent). A failure
/// prints its seed; replay it with
/// `RELINK_CLUSTER_SIM_SEED=<seed> cargo test -p relink-core --test cluster_simulation random`.
#[test]
fn random_schedules_keep_every_promise() {
    let (first, count) = match std::env::var("RELINK_CLUSTER_SIM_SEED") {
        Ok(seed) => (
            seed.parse::<u64>()
                .expect("RELINK_CLUSTER_SIM_SEED is a u64"),
            1,
        ),
        Err(_) => (0, 100_000u64),
    };
    let started = Instant::now();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8) as u64;
    let per = count.div_ceil(threads);
    let results: Vec<Result<Totals, (u64, String)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let from = first + k * per;
                let to = (from + per).min(first + count);
                scope.spawn(move || run_seeds(from..to))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a simulation thread panicked"))
            .collect()
    });
    let mut totals = Totals::default();
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(t) => {
                totals.readies += t.readies;
                totals.losses += t.losses;
                totals.removed += t.removed;
                totals.inputs += t.inputs;
            }
            Err(f) => failures.push(f),
        }
    }
    if let Some((seed, what)) = failures.into_iter().min_by_key(|f| f.0) {
        panic!(
            "{what}\nreplay: RELINK_CLUSTER_SIM_SEED={seed} cargo test -p relink-core --test cluster_simulation random"
        );
    }
    let Totals {
        readies,
        losses,
        removed,
        inputs,
    } = totals;
    println!(
        "{count} cluster schedules on {threads} threads in {:?}: {inputs} inputs, {readies} readies, \
         {losses} clusters lost, {removed} nodes removed",
        started.elapsed()
    );
    if count > 1 {
        assert!(
            readies >= count,
            "the schedules exercised recovery ({readies} readies)"
        );
        assert!(
            losses >= count / 20,
            "the schedules lost clusters ({losses})"
        );
        assert!(
            removed >= count / 20,
            "the schedules removed nodes ({removed})"
        );
    }
}
