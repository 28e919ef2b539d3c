//! Micro-benchmarks of the core's hot steps (target: ≤ 50 ns, no allocation).
//!
//! `cargo bench -p relink-core` (add `-- --quick` for a short run).

use core::hint::black_box;
use core::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use relink_core::supervisor::{Action, Input, Output, Supervisor, SupervisorConfig};
use relink_core::{Backoff, BackoffPolicy, Epoch, Jitter, SyncCursor, Timestamp};

/// One `Backoff::next_delay` step; the policies have no limit, so every
/// iteration does the full computation (at the `max_delay` plateau after a
/// few steps, which costs the same as growing).
fn backoff_next_delay(c: &mut Criterion) {
    let mut group = c.benchmark_group("backoff/next_delay");
    let policies = [
        ("default", BackoffPolicy::default()),
        (
            "decorrelated",
            BackoffPolicy::default().jitter(Jitter::Decorrelated),
        ),
        ("grpc", BackoffPolicy::grpc()),
    ];
    for (name, policy) in policies {
        let mut backoff = Backoff::new(policy, 0x5EED);
        group.bench_function(name, |b| {
            b.iter(|| backoff.next_delay(black_box(Duration::ZERO)))
        });
    }
    group.finish();
}

/// Drains `sup` at `now`; returns the last probe id asked for (or `probe`).
fn drain(sup: &mut Supervisor, now: Timestamp, mut probe: u64) -> (u64, Option<Timestamp>) {
    loop {
        match sup.poll_output(now) {
            Output::Timeout(t) => return (probe, Some(t)),
            Output::Idle => return (probe, None),
            Output::Action(Action::SendPing { id }) => probe = id,
            _ => {}
        }
    }
}

/// A supervisor that is Ready at t = 1 ms (default config).
fn ready_supervisor() -> Supervisor {
    let mut sup = Supervisor::new(SupervisorConfig::default(), 0x5EED);
    sup.handle_input(Timestamp::ZERO, Input::Start);
    drain(&mut sup, Timestamp::ZERO, 0);
    let now = Timestamp::from_millis(1);
    sup.handle_input(now, Input::Connected { attempt: 1 });
    drain(&mut sup, now, 0);
    sup
}

/// The per-input cost of the supervisor's steady state.
fn supervisor(c: &mut Criterion) {
    let mut group = c.benchmark_group("supervisor");

    // One Activity input + drain while Ready (the clock advances 1 ms per
    // reply, far below the heartbeat interval, so no ping is ever due).
    let mut sup = ready_supervisor();
    let mut now = 1;
    group.bench_function("activity", |b| {
        b.iter(|| {
            now += 1;
            let t = Timestamp::from_millis(now);
            sup.handle_input(t, black_box(Input::Activity));
            drain(&mut sup, t, 0)
        })
    });

    // A whole heartbeat cycle: wake at the deadline → SendPing, then the Pong
    // 1 ms later → drain.
    let mut sup = ready_supervisor();
    let (_, mut deadline) = drain(&mut sup, Timestamp::from_millis(1), 0);
    group.bench_function("ping_cycle", |b| {
        b.iter(|| {
            let at = deadline.expect("Ready has a deadline");
            let (probe, _) = drain(&mut sup, at, 0);
            let t = Timestamp::from_millis(at.as_millis() + 1);
            sup.handle_input(t, black_box(Input::Pong { id: probe }));
            deadline = drain(&mut sup, t, probe).1;
        })
    });
    group.finish();
}

/// One `SyncCursor::offer`: an in-order update, applied.
fn sync_offer(c: &mut Criterion) {
    let mut cursor = SyncCursor::new();
    let mut seq = 0u64;
    c.bench_function("sync/offer", |b| {
        b.iter(|| {
            seq += 1;
            cursor.offer(black_box(Epoch(7)), black_box(seq))
        })
    });
}

criterion_group!(benches, backoff_next_delay, supervisor, sync_offer);
criterion_main!(benches);
