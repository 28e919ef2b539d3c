//! Whole outage scenarios on a virtual clock: a flapping server, a long
//! outage, a hung server, and 100,000 random schedules, each checked step by
//! step against the supervisor's promises (see `support/sim.rs`).

mod support;

use std::time::Duration;

use relink_core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink_core::supervisor::{Event, HeartbeatConfig, State, SupervisorConfig};
use support::sim::{run, Mode, Scenario, Segment};

fn scenario(config: SupervisorConfig, timeline: &[(Mode, u64)]) -> Scenario {
    Scenario {
        config,
        seed: 1,
        timeline: timeline
            .iter()
            .map(|&(mode, millis)| Segment { mode, millis })
            .collect(),
        rtt_ms: 1,
        activity_every_ms: 0,
        tail_ms: 0,
    }
}

/// Exponential ×2 from 100 ms up to `max_ms`, no jitter: delays are exact.
fn doubling(max_ms: u64) -> BackoffPolicy {
    BackoffPolicy::default()
        .strategy(Strategy::Exponential { multiplier: 2.0 })
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(max_ms))
        .jitter(Jitter::None)
}

fn fixed_backoff(ms: u64) -> BackoffPolicy {
    BackoffPolicy::default()
        .strategy(Strategy::Constant)
        .initial_delay(Duration::from_millis(ms))
        .max_delay(Duration::from_millis(ms))
        .jitter(Jitter::None)
}

#[test]
fn a_hung_server_is_declared_dead_within_the_heartbeat_bound() {
    let config = SupervisorConfig::default()
        .backoff(fixed_backoff(100))
        .heartbeat(HeartbeatConfig {
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(500),
            misses_allowed: 1,
        });
    // Up for 5 s, then hung for 10 s.
    let trace = run(&scenario(config, &[(Mode::Up, 5000), (Mode::Hang, 10_000)])).unwrap();
    let lost = trace
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::Disconnected { .. }))
        .expect("the hang was noticed");
    // The last pong came at most 1 rtt after a ping sent before 5000 ms;
    // detection within interval + 2 × timeout of it.
    assert!(
        lost.0 > 5000 && lost.0 <= 5000 + 1000 + 2 * 500 + 1,
        "declared dead at {} ms",
        lost.0
    );
    let misses = trace
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::HeartbeatMissed { .. }))
        .count();
    assert_eq!(misses, 2, "one miss tolerated, the second kills");
}

#[test]
fn a_long_outage_keeps_retrying_at_the_capped_delay_and_recovers() {
    let config = SupervisorConfig::default().backoff(doubling(1600));
    let trace = run(&scenario(config, &[(Mode::Up, 1000), (Mode::Down, 60_000)])).unwrap();
    let delays = trace.reconnect_delays_ms();
    assert_eq!(&delays[..6], &[100, 200, 400, 800, 1600, 1600]);
    assert!(
        delays.len() > 35,
        "kept retrying for a minute: {} attempts",
        delays.len()
    );
    assert!(delays.iter().all(|&d| d <= 1600));
    let reconnected = trace
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::Reconnected { .. }));
    assert!(reconnected);
}

#[test]
fn a_flapping_server_does_not_earn_instant_retries() {
    // The server dies within 60 ms of every connection; backoff_reset_after is 10 s,
    // so the delays keep growing instead of restarting at the initial delay.
    let config = SupervisorConfig::default().backoff(doubling(3200));
    // Up for 60 ms, down for 1 ms, for 20 s: every connection dies young.
    let mut flapping = Vec::new();
    let mut t = 0;
    while t < 20_000 {
        flapping.push((Mode::Up, 60));
        flapping.push((Mode::Down, 1));
        t += 61;
    }
    let trace = run(&scenario(config, &flapping)).unwrap();
    let delays = trace.reconnect_delays_ms();
    assert!(delays.len() >= 5, "{delays:?}");
    assert_eq!(
        &delays[..5],
        &[100, 200, 400, 800, 1600],
        "no reset while flapping"
    );
}

#[test]
fn a_policy_with_max_attempts_gives_up_and_says_so() {
    let config = SupervisorConfig::default()
        .backoff(fixed_backoff(100).max_attempts(std::num::NonZeroU32::new(3)));
    let mut sc = scenario(config, &[(Mode::Down, 10_000)]);
    sc.rtt_ms = 1;
    let trace = run(&sc).unwrap();
    let gave_up = trace.events.iter().find_map(|(_, e)| match e {
        Event::GaveUp { attempts, .. } => Some(*attempts),
        _ => None,
    });
    assert_eq!(gave_up, Some(4), "the first attempt plus three retries");
    let last = trace.events.last().unwrap().1;
    assert!(matches!(
        last,
        Event::StateChanged {
            to: State::Shutdown,
            ..
        }
    ));
}

/// The headline property: 100,000 random schedules of up / down / hang under
/// random policies, every step checked. A failure prints its seed; replay it
/// with `RELINK_SIM_SEED=<seed> cargo test -p relink-core --test simulation`.
#[test]
fn random_schedules_keep_every_promise() {
    let (first, count) = match std::env::var("RELINK_SIM_SEED") {
        Ok(seed) => (seed.parse::<u64>().expect("RELINK_SIM_SEED is a u64"), 1),
        Err(_) => (0, 100_000),
    };
    let mut readies = 0;
    for seed in first..first + count {
        let sc = Scenario::random(seed);
        match run(&sc) {
            Ok(trace) => readies += trace.readies(),
            Err(v) => panic!(
                "seed {seed} broke a promise at t={} ms: {}\nscenario: {sc:#?}\nreplay: RELINK_SIM_SEED={seed} cargo test -p relink-core --test simulation",
                v.at, v.what
            ),
        }
    }
    assert!(
        readies as u64 >= count,
        "the schedules exercised recovery ({readies} readies)"
    );
}
