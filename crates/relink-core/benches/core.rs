//! Micro-benchmarks of the core's hot steps (target: ≤ 50 ns, no allocation).
//!
//! `cargo bench -p relink-core` (add `-- --quick` for a short run).

use core::hint::black_box;
use core::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use relink_core::{Backoff, BackoffPolicy, Jitter};

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

criterion_group!(benches, backoff_next_delay);
criterion_main!(benches);
