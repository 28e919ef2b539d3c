//! Whole outage scenarios on a virtual clock: a flapping server, a long
//! outage, a hung server, a busy one, a half-open connection, and 100,000
//! random schedules, each checked step by step against the supervisor's
//! promises (see `support/sim.rs`).

mod support;

use std::time::Duration;

use relink_core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink_core::failure::FailureKind;
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
        work_in_flight: false,
        side_ms: 0,
        hang_verdicts: false,
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
    // (The scripted server refuses while down; refusals are not capped
    // here, so the backoff's own growth shows.)
    let config = SupervisorConfig::default()
        .backoff(doubling(1600))
        .refused_max_delay(Duration::from_secs(60));
    let trace = run(&scenario(config, &[(Mode::Up, 1000), (Mode::Down, 60_000)])).unwrap();
    let delays = trace.reconnect_delays_ms();
    // The Ready connection's loss is retried at once, then the backoff.
    assert_eq!(&delays[..7], &[0, 100, 200, 400, 800, 1600, 1600]);
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
fn a_wrong_password_is_retried_slowly_and_fixed_at_once() {
    // The same minute as the outage above, but the server answers with
    // WRONGPASS: the slow schedule (1 s, 2 s, 4 s ... at most 30 s) instead
    // of the ordinary backoff's 1.6 s cap, and the fix connects at once.
    let config = SupervisorConfig::default().backoff(doubling(1600));
    let trace = run(&scenario(
        config,
        &[
            (Mode::Up, 1000),
            (Mode::Misconfigured, 1),
            (Mode::Down, 1),
            (Mode::Misconfigured, 60_000),
        ],
    ))
    .unwrap();
    let failed: Vec<u64> = trace
        .events
        .iter()
        .filter_map(|(at, e)| match e {
            Event::ConnectAttemptFailed {
                misconfigured: true,
                ..
            } => Some(*at),
            _ => None,
        })
        .collect();
    assert!(
        (4..=8).contains(&failed.len()),
        "a wrong password tried {} times in a minute: {failed:?}",
        failed.len()
    );
    let fixed_at = 1000 + 1 + 1 + 60_000;
    let connect_at_fix = trace
        .actions
        .iter()
        .any(|(at, a)| *at == fixed_at && matches!(a, relink_core::Action::Connect { .. }));
    assert!(connect_at_fix, "no attempt at the fix ({fixed_at} ms)");
    let ready_after = trace.events.iter().any(|(at, e)| {
        *at >= fixed_at
            && matches!(
                e,
                Event::StateChanged {
                    to: State::Ready,
                    ..
                }
            )
    });
    assert!(ready_after);
}

#[test]
fn a_restart_is_noticed_fast_and_a_long_outage_is_not_hammered() {
    // Refusals while the outage is young are retried within 100 ms (or
    // the decayed cap, `refused_cap`), whatever the backoff has grown to.
    for outage in [300, 1000, 3000] {
        let trace = run(&scenario(
            SupervisorConfig::default(),
            &[(Mode::Up, 1000), (Mode::Down, outage)],
        ))
        .unwrap();
        let back = 1000 + outage;
        let ready = trace
            .events
            .iter()
            .find(|(at, e)| {
                *at >= back
                    && matches!(
                        e,
                        Event::StateChanged {
                            to: State::Ready,
                            ..
                        }
                    )
            })
            .map(|(at, _)| *at)
            .expect("ready again");
        let cap = relink_core::supervisor::refused_cap(
            Duration::from_millis(100),
            Duration::from_millis(outage),
        );
        let bound = cap.as_millis() as u64 + 2;
        assert!(
            ready - back <= bound,
            "{outage} ms outage: ready {} ms after the server was back (bound {bound})",
            ready - back
        );
    }
    // A minute of refusals: at most 2 attempts a second on average.
    let trace = run(&scenario(
        SupervisorConfig::default(),
        &[(Mode::Up, 1000), (Mode::Down, 60_000)],
    ))
    .unwrap();
    let attempts = trace
        .actions
        .iter()
        .filter(|(at, a)| {
            (1000..61_000).contains(at) && matches!(a, relink_core::Action::Connect { .. })
        })
        .count();
    assert!(attempts <= 120, "{attempts} attempts in a 60 s outage");
}

#[test]
fn a_flapping_server_does_not_earn_instant_retries() {
    // The server dies within 60 ms of every connection; backoff_reset_after is 10 s,
    // so the delays keep growing instead of restarting at the initial delay,
    // and only the first loss is retried at once.
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
    assert!(delays.len() >= 6, "{delays:?}");
    assert_eq!(
        &delays[..6],
        &[0, 100, 200, 400, 800, 1600],
        "one attempt at once, then no reset while flapping"
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

fn busy_config(misses_allowed: u32) -> SupervisorConfig {
    SupervisorConfig::default()
        .backoff(fixed_backoff(100))
        .heartbeat(HeartbeatConfig {
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(500),
            misses_allowed,
        })
}

fn lost_at(trace: &support::sim::Trace, after: u64) -> Option<(u64, FailureKind)> {
    trace.events.iter().find_map(|&(t, e)| match e {
        Event::Disconnected { cause } if t > after => Some((t, cause)),
        _ => None,
    })
}

#[test]
fn a_busy_connection_is_never_declared_dead() {
    // Up for 2 s, then 30 s blocked behind a slow command: every PING queues,
    // the side check (50 ms) says the server still has the connection.
    let mut sc = scenario(busy_config(0), &[(Mode::Up, 2000), (Mode::Busy, 30_000)]);
    sc.side_ms = 50;
    let trace = run(&sc).unwrap();
    assert_eq!(lost_at(&trace, 0), None, "declared dead while busy");
    let busy: Vec<_> = trace
        .events
        .iter()
        .filter_map(|&(t, e)| match e {
            Event::BusyConfirmed { busy_for } => Some((t, busy_for.as_millis() as u64)),
            _ => None,
        })
        .collect();
    // One heartbeat every interval + side check.
    assert!(busy.len() >= 27, "{} busy confirmations", busy.len());
    let first_ping = busy[0].0 - busy[0].1;
    assert!((2000..=3000).contains(&first_ping), "{busy:?}");
    for &(t, busy_for) in &busy {
        assert_eq!(t - busy_for, first_ping, "one spell, from its first PING");
    }
    assert_eq!(trace.verdicts, [busy.len() as u64, 0, 0]);
    // The side check too late for the PING's deadline: the busy connection
    // is declared dead, as without a check.
    sc.side_ms = 501;
    let trace = run(&sc).unwrap();
    let (at, cause) = lost_at(&trace, 0).expect("a late check does not save it");
    assert!(at <= 2000 + 1000 + 500 + 1, "{at}");
    assert_eq!(cause, FailureKind::Timeout);
}

#[test]
fn a_half_open_connection_is_noticed_within_interval_plus_timeout() {
    // Cut half-open at 3 s: no FIN, the server forgets it. With commands in
    // flight, the first PING after the cut is checked from the side: Gone.
    let timeline = [(Mode::Up, 3000), (Mode::Cut, 10_000)];
    let mut sc = scenario(busy_config(2), &timeline);
    sc.activity_every_ms = 100;
    sc.work_in_flight = true;
    sc.side_ms = 20;
    let trace = run(&sc).unwrap();
    let (at, cause) = lost_at(&trace, 3000).expect("the cut was noticed");
    assert!(at <= 3000 + 1000 + 500, "noticed at {at} ms");
    assert_eq!(cause, FailureKind::Closed);
    assert_eq!(trace.gone_kills, 1);
    // Idle, nothing is checked: the heartbeat bound, two misses allowed.
    sc.work_in_flight = false;
    let trace = run(&sc).unwrap();
    let (at, cause) = lost_at(&trace, 3000).expect("the cut was noticed");
    assert!(
        at > 3000 + 1500 && at <= 3000 + 1000 + 3 * 500,
        "noticed at {at} ms"
    );
    assert_eq!(cause, FailureKind::Timeout);
}

#[test]
fn a_hung_server_is_noticed_within_the_bound_whatever_the_side_check_says() {
    // Busy for 10 s, then hung: the last sign of life is the last Busy
    // verdict, and the bound runs from it.
    let timeline = [(Mode::Up, 1000), (Mode::Busy, 10_000), (Mode::Hang, 10_000)];
    for (hang_verdicts, side_ms) in [(true, 100), (false, 100), (true, 499)] {
        let mut sc = scenario(busy_config(1), &timeline);
        sc.work_in_flight = true;
        sc.hang_verdicts = hang_verdicts;
        sc.side_ms = side_ms;
        let trace = run(&sc).unwrap();
        let (last_busy, _) = trace
            .events
            .iter()
            .rev()
            .find(|(_, e)| matches!(e, Event::BusyConfirmed { .. }))
            .unwrap();
        let (at, _) = lost_at(&trace, 0).expect("the hang was noticed");
        let bound = last_busy + 1000 + 2 * 500;
        assert!(
            at > 11_000 && at <= bound,
            "{hang_verdicts} {side_ms}: {at} > {bound}"
        );
        if hang_verdicts {
            // Each PING's side check fails before its deadline: misses come early.
            assert!(at <= bound - 2 * (500 - side_ms), "{side_ms}: {at}");
        }
    }
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
    let (mut verdicts, mut busy, mut gone_kills) = ([0; 3], 0, 0);
    for seed in first..first + count {
        let sc = Scenario::random(seed);
        match run(&sc) {
            Ok(trace) => {
                readies += trace.readies();
                busy += trace.busy_confirmed;
                gone_kills += trace.gone_kills;
                for (sum, n) in verdicts.iter_mut().zip(trace.verdicts) {
                    *sum += n;
                }
            }
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
    println!(
        "{count} schedules: {readies} readies, verdicts (busy, gone, unreachable) {verdicts:?}, \
         {busy} busy confirmed, {gone_kills} connections found gone"
    );
    if count > 1 {
        // Every kind of verdict came, and busy and half-open connections were
        // judged by them.
        assert!(
            verdicts.iter().all(|&n| n >= count / 10) && busy >= count && gone_kills >= count / 20,
            "verdicts (busy, gone, unreachable) {verdicts:?}, {busy} busy confirmed, \
             {gone_kills} connections found gone"
        );
    }
}
