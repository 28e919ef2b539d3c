//! The steady-state path allocates nothing: after warm-up, feeding one input
//! and draining the supervisor, a backoff step and a sync offer never touch
//! the heap.
//!
//! Counted by `allocation-counter`, whose global allocator counts per thread
//! (so the other tests of this binary, running in parallel, do not disturb the
//! count), and which keeps the `unsafe impl GlobalAlloc` on its side: the
//! workspace denies `unsafe` in our code.

use core::time::Duration;

use relink_core::backoff::{Backoff, BackoffPolicy, Jitter};
use relink_core::failure::FailureKind;
use relink_core::supervisor::{
    Action, AsideVerdict, HeartbeatConfig, Input, Output, State, Supervisor, SupervisorConfig,
};
use relink_core::sync::{Epoch, SyncCursor};
use relink_core::Timestamp;

const ITERATIONS: u64 = 10_000;

/// Asserts that `f` makes no allocation.
fn assert_no_alloc(what: &str, f: impl FnOnce()) {
    let info = allocation_counter::measure(f);
    assert_eq!(
        info.count_total, 0,
        "{what}: {} allocations ({} bytes) in {ITERATIONS} iterations",
        info.count_total, info.bytes_total
    );
}

/// A driver that remembers what the supervisor last asked for; stores
/// nothing on the heap.
struct Driver {
    sup: Supervisor,
    now: u64,
    deadline: u64,
    attempt: u32,
    probe: u64,
    /// The probe of the last `CheckAside`.
    checked: u64,
}

impl Driver {
    /// A supervisor that went through a connect, a ping cycle and a
    /// reconnect, so every path below has run once before measuring.
    fn warmed_up() -> Driver {
        let config = SupervisorConfig::default()
            .backoff(
                BackoffPolicy::default()
                    .initial_delay(Duration::from_millis(10))
                    .max_delay(Duration::from_millis(100)),
            )
            .heartbeat(HeartbeatConfig {
                interval: Duration::from_millis(1000),
                timeout: Duration::from_millis(500),
                misses_allowed: 1,
            });
        let mut d = Driver {
            sup: Supervisor::new(config, 42),
            now: 0,
            deadline: 0,
            attempt: 0,
            probe: 0,
            checked: 0,
        };
        d.input(Input::Start);
        d.connect();
        d.ping_cycle();
        d.lose_and_reconnect();
        d.hang_and_reconnect();
        d.busy_cycle();
        d.gone_and_reconnect();
        d.unreachable_and_reconnect();
        d
    }

    fn input(&mut self, input: Input) {
        self.sup
            .handle_input(Timestamp::from_millis(self.now), input);
        self.drain();
    }

    fn drain(&mut self) {
        let now = Timestamp::from_millis(self.now);
        for _ in 0..16 {
            match self.sup.poll_output(now) {
                Output::Timeout(t) => {
                    self.deadline = t.as_millis();
                    return;
                }
                Output::Idle => return,
                Output::Action(Action::Connect { attempt }) => self.attempt = attempt,
                Output::Action(Action::SendPing { id }) => self.probe = id,
                Output::Action(Action::CheckAside { id }) => self.checked = id,
                _ => {}
            }
        }
        panic!("drain did not end");
    }

    /// Sleeps until the deadline and drains.
    fn wake(&mut self) {
        self.now = self.deadline;
        self.drain();
    }

    /// Waits out the backoff delay, if the loss drew one (the loss of a
    /// stable connection is followed by an attempt at once).
    fn wake_to_connect(&mut self) {
        if self.sup.state() == State::TransientFailure {
            self.wake(); // Connect
        }
        assert_eq!(self.sup.state(), State::Connecting);
    }

    fn connect(&mut self) {
        self.now += 1;
        self.input(Input::Connected {
            attempt: self.attempt,
        });
    }

    fn ping_cycle(&mut self) {
        self.wake(); // SendPing
        self.now += 1;
        self.input(Input::Pong { id: self.probe });
    }

    fn lose_and_reconnect(&mut self) {
        self.now += 1;
        self.input(Input::ConnectionLost {
            kind: FailureKind::Closed,
        });
        self.wake_to_connect();
        self.connect();
    }

    /// A PING queued behind work, confirmed busy from the side; the next one
    /// follows an interval later.
    fn busy_cycle(&mut self) {
        self.wake(); // SendPing
        self.input(Input::WorkOutstanding { id: self.probe });
        assert_eq!(self.checked, self.probe, "CheckAside");
        self.now += 1;
        self.input(Input::AsideChecked {
            id: self.probe,
            verdict: AsideVerdict::Busy,
        });
    }

    /// A half-open connection, found gone from the side.
    fn gone_and_reconnect(&mut self) {
        self.wake(); // SendPing
        self.input(Input::WorkOutstanding { id: self.probe });
        self.now += 1;
        self.input(Input::AsideChecked {
            id: self.probe,
            verdict: AsideVerdict::Gone,
        });
        assert_ne!(self.sup.state(), State::Ready);
        self.wake_to_connect();
        self.connect();
    }

    /// A hung server, whose side checks fail: two misses at once (one allowed).
    fn unreachable_and_reconnect(&mut self) {
        self.wake(); // SendPing
        for _ in 0..2 {
            // The second time round, the PING sent at once after the first miss.
            self.input(Input::WorkOutstanding { id: self.probe });
            assert_eq!(self.checked, self.probe, "CheckAside");
            self.now += 1;
            self.input(Input::AsideChecked {
                id: self.probe,
                verdict: AsideVerdict::Unreachable {
                    kind: FailureKind::Timeout,
                },
            });
        }
        assert_ne!(self.sup.state(), State::Ready);
        self.wake_to_connect();
        self.connect();
    }

    fn hang_and_reconnect(&mut self) {
        self.wake(); // SendPing
        self.wake(); // HeartbeatMissed, SendPing
        self.wake(); // HeartbeatMissed, Disconnect, Disconnected, ... (dead)
        self.wake_to_connect();
        self.connect();
    }
}

#[test]
fn the_counter_counts() {
    let info = allocation_counter::measure(|| {
        std::hint::black_box(Vec::<u64>::with_capacity(4));
    });
    assert_eq!(
        info.count_total, 1,
        "the counting allocator is not in place"
    );
}

#[test]
fn activity_allocates_nothing() {
    let mut d = Driver::warmed_up();
    assert_no_alloc("activity", || {
        for _ in 0..ITERATIONS {
            d.now += 1;
            d.input(Input::Activity);
        }
    });
}

#[test]
fn pongs_allocate_nothing() {
    let mut d = Driver::warmed_up();
    assert_no_alloc("pong", || {
        for _ in 0..ITERATIONS {
            d.now += 1;
            d.input(Input::Pong { id: d.probe });
        }
    });
}

#[test]
fn heartbeat_ping_cycles_allocate_nothing() {
    let mut d = Driver::warmed_up();
    let first = d.probe;
    assert_no_alloc("ping cycle", || {
        for _ in 0..ITERATIONS {
            d.ping_cycle();
        }
    });
    assert_eq!(d.probe, first + ITERATIONS, "one ping per cycle");
    assert_eq!(d.sup.health().rtt, Some(Duration::from_millis(1)));
}

#[test]
fn reconnect_cycles_allocate_nothing() {
    let mut d = Driver::warmed_up();
    assert_no_alloc("lost + reconnect", || {
        for _ in 0..ITERATIONS {
            d.lose_and_reconnect();
        }
    });
    assert_eq!(d.sup.state(), State::Ready);
    assert_no_alloc("hang declared dead + reconnect", || {
        for _ in 0..ITERATIONS {
            d.hang_and_reconnect();
        }
    });
    assert_eq!(d.sup.state(), State::Ready);
}

#[test]
fn busy_heartbeats_allocate_nothing() {
    let mut d = Driver::warmed_up();
    let first = d.probe;
    assert_no_alloc("busy cycle", || {
        for _ in 0..ITERATIONS {
            d.busy_cycle();
        }
    });
    assert_eq!(d.probe, first + ITERATIONS, "one ping per cycle");
    assert_eq!(d.sup.state(), State::Ready);
    assert!(d.sup.health().busy_since.is_some());
    assert_no_alloc("gone + reconnect", || {
        for _ in 0..ITERATIONS {
            d.gone_and_reconnect();
        }
    });
    assert_no_alloc("unreachable, declared dead + reconnect", || {
        for _ in 0..ITERATIONS {
            d.unreachable_and_reconnect();
        }
    });
    assert_eq!(d.sup.state(), State::Ready);
}

#[test]
fn backoff_steps_allocate_nothing() {
    for jitter in [Jitter::Equal, Jitter::Decorrelated, Jitter::Full] {
        let mut backoff = Backoff::new(BackoffPolicy::default().jitter(jitter), 7);
        assert_no_alloc("Backoff::next_delay", || {
            for i in 0..ITERATIONS {
                std::hint::black_box(backoff.next_delay(Duration::from_millis(i)));
            }
        });
    }
}

#[test]
fn sync_offers_allocate_nothing() {
    let mut cursor = SyncCursor::new();
    let e = Epoch(7);
    assert_no_alloc("SyncCursor::offer", || {
        for seq in 1..=ITERATIONS {
            std::hint::black_box(cursor.offer(e, seq)); // apply
            std::hint::black_box(cursor.offer(e, seq)); // duplicate
            std::hint::black_box(cursor.offer(e, seq + 2)); // gap
            std::hint::black_box(cursor.offer(Epoch(8), seq + 1)); // wrong epoch
        }
    });
    assert_eq!(cursor.seq(), ITERATIONS);
}
