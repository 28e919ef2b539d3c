//! The cluster supervisor's steady path allocates nothing: a node state that
//! changes nothing (or flips a replica), a poke, a spurious wake-up, the
//! periodic topology read answered with the same topology or failing, even a
//! cluster lost and remade. Only topology changes allocate.
//!
//! Counted by `allocation-counter` (per thread), as in `no_alloc.rs`.

use core::time::Duration;

use relink_core::backoff::BackoffPolicy;
use relink_core::cluster::{
    Action, ClusterSupervisor, ClusterSupervisorConfig, Input, Output, SlotRange,
};
use relink_core::failure::FailureKind;
use relink_core::{State, Timestamp};

const ITERATIONS: u64 = 2_000;

fn assert_no_alloc(what: &str, f: impl FnOnce()) {
    let info = allocation_counter::measure(f);
    assert_eq!(
        info.count_total, 0,
        "{what}: {} allocations ({} bytes)",
        info.count_total, info.bytes_total
    );
}

fn node(i: usize) -> String {
    format!("127.0.0.1:{}", 7000 + i)
}

/// Three masters (nodes 0, 1, 2) and their replicas (3, 4, 5).
fn topology(id: u64) -> Input<'static> {
    let slots = vec![
        SlotRange::new(0, 5460, node(0)),
        SlotRange::new(5461, 10922, node(1)),
        SlotRange::new(10923, 16383, node(2)),
    ];
    Input::Topology {
        id,
        slots,
        nodes: (0..6).map(node).collect(),
    }
}

struct Driver {
    sup: ClusterSupervisor,
    now: u64,
    deadline: u64,
    attempt: u32,
    read: u64,
    names: Vec<String>,
}

impl Driver {
    /// Connected, topology read, every node Ready; then a lost cluster
    /// remade, so every path below has run once.
    fn warmed_up() -> Driver {
        let config = ClusterSupervisorConfig::default()
            .backoff(
                BackoffPolicy::default()
                    .initial_delay(Duration::from_millis(10))
                    .max_delay(Duration::from_millis(100)),
            )
            .lost_after(1);
        let mut d = Driver {
            sup: ClusterSupervisor::new(config, 42),
            now: 0,
            deadline: 0,
            attempt: 0,
            read: 0,
            names: (0..6).map(node).collect(),
        };
        d.input(Input::Start);
        d.connect();
        d.now += 1;
        d.input(topology(d.read));
        d.all(State::Ready);
        assert_eq!(d.sup.state(), State::Ready);
        d.lose_and_reconnect();
        assert_eq!(d.sup.state(), State::Ready);
        d
    }

    fn input(&mut self, input: Input<'_>) {
        self.sup
            .handle_input(Timestamp::from_millis(self.now), input);
        self.drain();
    }

    fn drain(&mut self) {
        let now = Timestamp::from_millis(self.now);
        for _ in 0..64 {
            match self.sup.poll_output(now) {
                Output::Timeout(t) => {
                    self.deadline = t.as_millis();
                    return;
                }
                Output::Idle => return,
                Output::Action(Action::Connect { attempt }) => self.attempt = attempt,
                Output::Action(Action::RefreshTopology { id }) => self.read = id,
                _ => {}
            }
        }
        panic!("drain did not end");
    }

    fn wake(&mut self) {
        self.now = self.deadline;
        self.drain();
    }

    fn connect(&mut self) {
        self.now += 1;
        self.input(Input::Connected {
            attempt: self.attempt,
        });
    }

    fn all(&mut self, state: State) {
        for i in 0..self.names.len() {
            let name = std::mem::take(&mut self.names[i]);
            self.input(Input::NodeState { node: &name, state });
            self.names[i] = name;
        }
    }

    fn failed_read(&mut self) {
        self.wake(); // RefreshTopology
        self.now += 1;
        self.input(Input::TopologyFailed {
            id: self.read,
            kind: FailureKind::Io,
        });
    }

    /// A failed read, then every node down: lost (`lost_after` is 1).
    fn lose_and_reconnect(&mut self) {
        self.failed_read();
        self.all(State::TransientFailure);
        assert!(!self.sup.is_connected(), "lost");
        self.wake(); // Connect
        self.connect(); // RefreshTopology at once
        self.all(State::Ready);
        self.now += 1;
        self.input(Input::TopologyFailed {
            id: self.read,
            kind: FailureKind::Io,
        });
    }
}

#[test]
fn node_states_pokes_and_wake_ups_allocate_nothing() {
    let mut d = Driver::warmed_up();
    assert_eq!(d.sup.state(), State::Ready);
    let replica = node(4);
    let master = node(1);
    assert_no_alloc("node state, poke, wake-up", || {
        for i in 0..ITERATIONS {
            d.now += 1;
            d.input(Input::NodeState {
                node: &master,
                state: State::Ready,
            });
            let state = if i % 2 == 0 {
                State::TransientFailure
            } else {
                State::Ready
            };
            d.input(Input::NodeState {
                node: &replica,
                state,
            });
            d.input(Input::NodeState {
                node: "127.0.0.1:1",
                state,
            });
            d.input(Input::Poke);
            d.drain(); // a spurious wake-up
        }
    });
}

#[test]
fn periodic_reads_allocate_nothing() {
    let mut d = Driver::warmed_up();
    // The topology inputs are made (by the driver) before measuring.
    let mut answers: Vec<Input<'static>> = (0..ITERATIONS).map(|_| topology(0)).collect();
    assert_no_alloc("read answered with the same topology, read failed", || {
        for _ in 0..ITERATIONS {
            d.wake(); // RefreshTopology
            d.now += 1;
            let Some(Input::Topology { slots, nodes, .. }) = answers.pop() else {
                unreachable!()
            };
            d.input(Input::Topology {
                id: d.read,
                slots,
                nodes,
            });
            d.failed_read();
        }
    });
    assert_eq!(d.sup.state(), State::Ready);
}

#[test]
fn a_lost_cluster_remade_allocates_nothing() {
    let mut d = Driver::warmed_up();
    assert_no_alloc("lost + reconnect", || {
        for _ in 0..ITERATIONS {
            d.lose_and_reconnect();
        }
    });
    assert_eq!(d.sup.state(), State::Ready);
}

#[test]
fn the_counter_counts_and_a_topology_change_allocates() {
    let mut d = Driver::warmed_up();
    d.wake(); // RefreshTopology
    d.now += 1;
    let mut changed = topology(d.read);
    if let Input::Topology { nodes, .. } = &mut changed {
        nodes.push(node(6));
    }
    let info = allocation_counter::measure(|| d.input(changed));
    assert!(info.count_total > 0, "a new node is named in new strings");
    assert!(d.sup.node(&node(6)).is_some());
}
