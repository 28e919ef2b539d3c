//! Golden vectors in `tests/vectors/` (workspace root), shared with the C and
//! JavaScript tests.
//!
//! Each file is generated here from a list of cases and compared with the
//! checked-in copy (rust-analyzer's `ensure_file_contents` pattern): a
//! mismatch fails; with `RELINK_UPDATE_VECTORS=1` the file is rewritten
//! instead. The file is also read back and every case re-run from its own
//! data, so the file is checked both ways.

use std::path::PathBuf;

use core::num::NonZeroU32;
use core::time::Duration;

use relink_core::call::{Call, CallInput, CallPolicy, Decision};
use relink_core::supervisor::{
    AsideVerdict, HeartbeatConfig, Input, Output, Supervisor, SupervisorConfig, SupervisorHealth,
};
use relink_core::{
    Backoff, BackoffPolicy, BusyReason, Delivery, FailureKind, Jitter, Strategy, Timestamp,
};
use serde::{Deserialize, Serialize};

/// The workspace's `tests/vectors/` directory.
fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

/// Makes `tests/vectors/<name>` hold `value` as pretty-printed JSON with a
/// trailing newline: rewrites it when `RELINK_UPDATE_VECTORS=1`, otherwise
/// panics if it differs. Serialized with the value's own field order.
pub fn ensure_vector_file(name: &str, value: &impl Serialize) {
    let path = vectors_dir().join(name);
    let mut expected = serde_json::to_string_pretty(value).expect("vectors serialize");
    expected.push('\n');
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    if actual.replace("\r\n", "\n") == expected {
        return;
    }
    if std::env::var_os("RELINK_UPDATE_VECTORS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(vectors_dir()).expect("create tests/vectors");
        std::fs::write(&path, expected).expect("write vector file");
        eprintln!("updated {}", path.display());
        return;
    }
    panic!(
        "tests/vectors/{name} is stale or missing; run `cargo xtask vectors` \
         (or `RELINK_UPDATE_VECTORS=1 cargo test -p relink-core --test vectors`) and commit"
    );
}

/// Reads `tests/vectors/<name>` as JSON.
pub fn read_vector_file<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = vectors_dir().join(name);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackoffVectors {
    about: Vec<String>,
    cases: Vec<BackoffCase>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackoffCase {
    name: String,
    policy: BackoffPolicy,
    seed: u64,
    delays_ms: Vec<u64>,
}

/// How many delays a case records when its policy does not stop sooner.
const DELAYS_PER_CASE: usize = 12;

/// The delays the vectors record: iterate `Backoff` (elapsed = sum of the delays so far).
fn delays_ms(policy: &BackoffPolicy, seed: u64) -> Vec<u64> {
    Backoff::new(policy.clone(), seed)
        .take(DELAYS_PER_CASE)
        .map(|d| u64::try_from(d.as_millis()).expect("delays fit u64"))
        .collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy() -> BackoffPolicy {
    BackoffPolicy::default()
}

fn cases() -> Vec<(&'static str, BackoffPolicy, u64)> {
    let exp2 = Strategy::Exponential { multiplier: 2.0 };
    vec![
        ("default", policy(), 1),
        ("default, another seed", policy(), 2),
        ("grpc", BackoffPolicy::grpc(), 1),
        (
            "exponential x2, no jitter",
            policy().jitter(Jitter::None),
            0,
        ),
        (
            "exponential x2, full jitter",
            policy().jitter(Jitter::Full),
            7,
        ),
        (
            "exponential, decorrelated jitter",
            policy().max_delay(ms(10_000)).jitter(Jitter::Decorrelated),
            7,
        ),
        (
            "exponential x1.5, proportional 0.1, max 8 attempts",
            policy()
                .strategy(Strategy::Exponential { multiplier: 1.5 })
                .jitter(Jitter::Proportional { factor: 0.1 })
                .max_attempts(NonZeroU32::new(8)),
            99,
        ),
        (
            "constant 500ms, no jitter, max 5 attempts",
            policy()
                .strategy(Strategy::Constant)
                .initial_delay(ms(500))
                .jitter(Jitter::None)
                .max_attempts(NonZeroU32::new(5)),
            0,
        ),
        (
            "constant 1s, full jitter",
            policy()
                .strategy(Strategy::Constant)
                .initial_delay(ms(1000))
                .jitter(Jitter::Full),
            3,
        ),
        (
            "linear 100ms + 250ms, no jitter, max 2s",
            policy()
                .strategy(Strategy::Linear { step: ms(250) })
                .max_delay(ms(2000))
                .jitter(Jitter::None),
            0,
        ),
        (
            "linear, equal jitter",
            policy().strategy(Strategy::Linear { step: ms(300) }),
            11,
        ),
        (
            "linear, proportional 0.5",
            policy()
                .strategy(Strategy::Linear { step: ms(200) })
                .jitter(Jitter::Proportional { factor: 0.5 }),
            5,
        ),
        (
            "exponential x2, no jitter, max_elapsed 3s (last delay cut)",
            policy()
                .strategy(exp2)
                .jitter(Jitter::None)
                .max_elapsed(Some(ms(3000))),
            0,
        ),
        (
            "default, max_elapsed 2500ms, large seed",
            policy().max_elapsed(Some(ms(2500))),
            (1 << 53) - 1,
        ),
    ]
}

fn generate() -> BackoffVectors {
    let cases = cases()
        .into_iter()
        .map(|(name, policy, seed)| {
            let policy = policy.build().expect("vector policies are valid");
            BackoffCase {
                name: name.into(),
                delays_ms: delays_ms(&policy, seed),
                policy,
                seed,
            }
        })
        .collect();
    BackoffVectors {
        about: [
            "Golden vectors of relink_core::backoff, generated by crates/relink-core/tests/vectors.rs.",
            "For each case: Backoff::new(policy, seed), then next_delay(elapsed) repeatedly with",
            "elapsed = the sum of the delays returned so far (the Iterator), stopping at the first",
            "None or after 12 delays. Delays are whole milliseconds. Seeds are below 2^53 so that",
            "JavaScript numbers hold them exactly; the RNG is SplitMix64 (crate::rng).",
        ]
        .map(String::from)
        .to_vec(),
        cases,
    }
}

#[test]
fn backoff_vectors_are_fresh() {
    ensure_vector_file("backoff.json", &generate());
}

#[test]
fn backoff_vectors_replay_from_the_file() {
    let file: BackoffVectors = read_vector_file("backoff.json");
    assert!(file.cases.len() >= 10, "expected at least 10 cases");
    for case in &file.cases {
        assert!(
            case.seed < 1 << 53,
            "{}: seed not exact in JavaScript",
            case.name
        );
        assert_eq!(
            delays_ms(&case.policy, case.seed),
            case.delays_ms,
            "case {:?}",
            case.name
        );
    }
}

// ---------------------------------------------------------------------------
// Supervisor traces

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisorVectors {
    about: Vec<String>,
    cases: Vec<SupervisorCase>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisorCase {
    name: String,
    config: SupervisorConfig,
    seed: u64,
    steps: Vec<SupervisorStep>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SupervisorStep {
    /// The driver's clock, in ms.
    at: u64,
    /// Fed with `handle_input(at, input)` before draining; `null`: just drain
    /// (a timer woke the driver).
    input: Option<Input>,
    /// Everything `poll_output(at)` returned, up to and including the first
    /// `Timeout` or `Idle`.
    outputs: Vec<Output>,
    /// `health()` once drained.
    health: SupervisorHealth,
}

/// A drain that has not ended after this many outputs is a bug (one input
/// queues at most 8).
const MAX_DRAIN: usize = 16;

/// Runs `inputs` through a fresh supervisor and records every step.
fn trace(
    config: &SupervisorConfig,
    seed: u64,
    inputs: &[(u64, Option<Input>)],
) -> Vec<SupervisorStep> {
    let mut sup = Supervisor::new(config.clone(), seed);
    inputs
        .iter()
        .map(|&(at, input)| {
            let now = Timestamp::from_millis(at);
            if let Some(input) = input {
                sup.handle_input(now, input);
            }
            let mut outputs = Vec::new();
            loop {
                let out = sup.poll_output(now);
                outputs.push(out);
                if matches!(out, Output::Timeout(_) | Output::Idle) {
                    break;
                }
                assert!(outputs.len() < MAX_DRAIN, "drain did not end: {outputs:?}");
            }
            SupervisorStep {
                at,
                input,
                outputs,
                health: sup.health(),
            }
        })
        .collect()
}

/// The steps of an outage of `outage_ms` in which every attempt is refused
/// 1 ms after it is asked for, after a connection Ready from 5 ms to
/// 1005 ms; then the server is back and the next attempt connects. Found by
/// running the supervisor itself (the times of its attempts depend on its
/// jitter), so the vector pins the whole schedule of the refused cap.
fn long_refusal(config: &SupervisorConfig, seed: u64, outage_ms: u64) -> Vec<(u64, Option<Input>)> {
    let refused = |attempt| {
        Some(Input::ConnectFailed {
            attempt,
            cause: relink_core::ConnectCause::Refused,
            evidence: relink_core::Evidence::new("Connection refused (os error 111)"),
        })
    };
    let lost = Some(Input::ConnectionLost {
        kind: FailureKind::Closed,
    });
    let mut steps = vec![
        (0, Some(Input::Start)),
        (5, Some(Input::Connected { attempt: 1 })),
        (1005, lost),
    ];
    let mut sup = Supervisor::new(config.clone(), seed);
    let mut fed = 0;
    // Bounded: one step per attempt or timer, at most a few hundred.
    for _ in 0..10_000 {
        let mut connect = None;
        let mut timer = None;
        for &(at, input) in &steps[fed..] {
            if let Some(input) = input {
                sup.handle_input(Timestamp::from_millis(at), input);
            }
            loop {
                match sup.poll_output(Timestamp::from_millis(at)) {
                    Output::Action(relink_core::supervisor::Action::Connect { attempt }) => {
                        connect = Some((at, attempt));
                    }
                    Output::Timeout(t) => {
                        timer = Some(t.as_millis());
                        break;
                    }
                    Output::Idle => break,
                    _ => {}
                }
            }
        }
        fed = steps.len();
        match (connect, timer) {
            (Some((at, attempt)), _) if at < 1005 + outage_ms => {
                steps.push((at + 1, refused(attempt)))
            }
            (Some((at, attempt)), _) => {
                steps.push((at + 1, Some(Input::Connected { attempt })));
                return steps;
            }
            (None, Some(t)) => steps.push((t, None)),
            (None, None) => panic!("the supervisor stopped: {steps:?}"),
        }
    }
    panic!("no end to the outage");
}

/// The vectors' base config: round numbers, no jitter, so a reader can
/// check every deadline by hand.
fn sup_config() -> SupervisorConfig {
    SupervisorConfig::default()
        .backoff(
            BackoffPolicy::default()
                .strategy(Strategy::Exponential { multiplier: 2.0 })
                .initial_delay(ms(100))
                .max_delay(ms(1000))
                .jitter(Jitter::None),
        )
        .heartbeat(HeartbeatConfig {
            interval: ms(1000),
            timeout: ms(500),
            misses_allowed: 0,
        })
        .connect_timeout(ms(2000))
        .backoff_reset_after(ms(10_000))
}

type SupervisorCaseDef = (
    &'static str,
    SupervisorConfig,
    u64,
    Vec<(u64, Option<Input>)>,
);

fn supervisor_cases() -> Vec<SupervisorCaseDef> {
    use Input::*;
    let connected = |attempt| Some(Connected { attempt });
    let refused = |attempt| {
        Some(ConnectFailed {
            attempt,
            cause: relink_core::ConnectCause::Refused,
            evidence: relink_core::Evidence::new("Connection refused (os error 111)"),
        })
    };
    let loading = |attempt| {
        Some(ConnectFailed {
            attempt,
            cause: relink_core::ConnectCause::ServerBusy(relink_core::BusyReason::Loading),
            evidence: relink_core::Evidence::new("LOADING Redis is loading the dataset in memory"),
        })
    };
    let lost = Some(ConnectionLost {
        kind: FailureKind::Closed,
    });
    let work = |id| Some(WorkOutstanding { id });
    let aside = |id, verdict| Some(AsideChecked { id, verdict });
    let unreachable = |kind| AsideVerdict::Unreachable { kind };
    let misses_allowed = |misses_allowed| {
        sup_config().heartbeat(HeartbeatConfig {
            interval: ms(1000),
            timeout: ms(500),
            misses_allowed,
        })
    };
    vec![
        (
            "first connect succeeds",
            sup_config(),
            1,
            vec![(0, Some(Start)), (5, connected(1))],
        ),
        (
            "refused, backoff, then connected; later lost twice and reconnected",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (3, refused(1)),
                (103, None),
                (110, connected(2)),
                // A Ready connection lost (after 490 ms): retried at once.
                (600, lost),
                (604, connected(1)),
                // Lost again before backoff_reset_after: the attempt at once
                // was spent, so the backoff goes on growing (200 ms), and
                // the attempt count restarts.
                (700, lost),
                (900, None),
                (905, connected(1)),
            ],
        ),
        (
            "wrong password: slow backoff, commands fail fast, fixed live",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (
                    4,
                    Some(ConnectFailed {
                        attempt: 1,
                        cause: relink_core::ConnectCause::Auth,
                        evidence: relink_core::Evidence::new(
                            "WRONGPASS invalid username-password pair or user is disabled.",
                        ),
                    }),
                ),
                // Still waiting out the slow delay (at least 500 ms).
                (400, None),
                // New credentials: the next attempt goes out at once.
                (450, Some(Reconfigured)),
                (460, connected(2)),
            ],
        ),
        (
            "a move announced in a backoff wait, and one while Ready: an attempt at once",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (3, refused(1)),
                // 50 ms into the 100 ms wait: the new master is known.
                (53, Some(ServerMoved)),
                (60, connected(2)),
                (1_000, Some(ServerMoved)),
                (1_004, connected(1)),
            ],
        ),
        (
            "a stable connection lost: the first attempt at once, then the backoff",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                // Ready for 15 s (>= backoff_reset_after): no delay first.
                (15_005, lost),
                (15_006, refused(1)),
                (15_106, None),
                (15_110, connected(2)),
            ],
        ),
        (
            "a loading server is polled at a steady pace, not a growing backoff",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (5, loading(1)),
                (105, None),
                (110, loading(2)),
                (210, None),
                (215, loading(3)),
                (315, None),
                (320, loading(4)),
                (420, None),
                (425, connected(5)),
            ],
        ),
        (
            "connect timeout: no answer, disconnect and retry",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (2000, None),
                (2100, None),
                (2150, connected(2)),
            ],
        ),
        (
            "heartbeat ping answered, rtt measured",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                // A spurious early wake-up does nothing.
                (500, None),
                (1005, None),
                (1012, Some(Pong { id: 1 })),
                (2012, None),
                // An unknown probe id still proves life, but measures nothing.
                (2100, Some(Pong { id: 99 })),
            ],
        ),
        (
            "activity suppresses pings",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                (800, Some(Activity)),
                (1700, Some(Activity)),
                (
                    2700,
                    Some(CommandFailed {
                        kind: FailureKind::Command,
                    }),
                ),
                (3700, None),
            ],
        ),
        (
            "hang declared dead after two misses (misses_allowed 1)",
            sup_config().heartbeat(HeartbeatConfig {
                interval: ms(1000),
                timeout: ms(500),
                misses_allowed: 1,
            }),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                (1005, None),
                (1505, None),
                (2005, None),
                (2105, None),
                (2110, connected(1)),
            ],
        ),
        (
            "lost after a long Ready: backoff reset, recovery with downtime (jittered)",
            sup_config()
                .backoff(BackoffPolicy::default())
                .backoff_reset_after(ms(1000)),
            (1 << 53) - 1,
            vec![
                (0, Some(Start)),
                (1, refused(1)),
                (200, None),
                (210, connected(2)),
                (900, Some(Activity)),
                (1800, Some(Activity)),
                (2500, lost),
                (2600, None),
                (2605, refused(1)),
                (2800, None),
                (2820, connected(2)),
            ],
        ),
        (
            "backoff gives up after max_attempts: GaveUp, then Shutdown",
            sup_config().backoff(
                BackoffPolicy::default()
                    .strategy(Strategy::Constant)
                    .initial_delay(ms(100))
                    .max_delay(ms(100))
                    .jitter(Jitter::None)
                    .max_attempts(NonZeroU32::new(2)),
            ),
            1,
            vec![
                (0, Some(Start)),
                (1, refused(1)),
                (101, None),
                (102, refused(2)),
                (202, None),
                (203, refused(3)),
                // Nothing brings it back.
                (300, Some(Start)),
                (400, None),
            ],
        ),
        (
            "shutdown while Ready",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                (50, Some(Shutdown)),
                (60, Some(Activity)),
                (5000, None),
            ],
        ),
        (
            "busy: a PING queued behind work is confirmed busy from the side; a late pong ends it",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                (1005, None),
                // Commands were in flight when the PING went out: check aside.
                (1005, work(1)),
                // Busy: alive at the verdict, the next heartbeat a second later.
                (1100, aside(1, AsideVerdict::Busy)),
                // The PING's deadline passes: no miss.
                (1505, None),
                (2100, None),
                (2101, work(2)),
                (2150, aside(2, AsideVerdict::Busy)),
                // The work is done: the first PING's pong, late, ends the spell.
                (2500, Some(Pong { id: 1 })),
                (3500, None),
            ],
        ),
        (
            "gone: a half-open connection is lost at once, misses allowed or not",
            misses_allowed(2),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                (1005, None),
                (1005, work(1)),
                (1030, aside(1, AsideVerdict::Gone)),
                (1130, None),
                (1135, connected(1)),
            ],
        ),
        (
            "unreachable: a miss at once; with none allowed, the connection is dead",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                (1005, None),
                (1005, work(1)),
                (1200, aside(1, unreachable(FailureKind::Io))),
                (1300, None),
            ],
        ),
        (
            "unreachable with a miss allowed: the next PING at once, then busy",
            misses_allowed(1),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                (1005, None),
                (1005, work(1)),
                (1200, aside(1, unreachable(FailureKind::Timeout))),
                (1200, work(2)),
                // Busy forgives the miss.
                (1300, aside(2, AsideVerdict::Busy)),
                (2300, None),
            ],
        ),
        (
            "late verdict: none by the deadline is a miss; a late one, or one not asked for, is ignored",
            misses_allowed(1),
            1,
            vec![
                (0, Some(Start)),
                (5, connected(1)),
                (1005, None),
                // No check asked yet; then work behind another probe.
                (1006, aside(1, AsideVerdict::Gone)),
                (1010, work(7)),
                (1010, work(1)),
                // Asked once per probe.
                (1011, work(1)),
                // No verdict by the deadline: a miss, and the next PING.
                (1505, None),
                (1600, aside(1, AsideVerdict::Busy)),
                (1600, aside(1, AsideVerdict::Gone)),
                (1601, work(2)),
                // The pong comes first: the verdict after it changes nothing.
                (1610, Some(Pong { id: 2 })),
                (1700, aside(2, AsideVerdict::Gone)),
                // A Busy after the deadline, before the driver woke for it: too late.
                (2610, None),
                (2610, work(3)),
                (3111, aside(3, AsideVerdict::Busy)),
            ],
        ),
        (
            "a long refusal with the defaults: 100 ms waits, then 1/20 of the outage, then its square over 200 s",
            SupervisorConfig::default(),
            11,
            long_refusal(&SupervisorConfig::default(), 11, 40_000),
        ),
        (
            "stale connect results for an abandoned attempt are ignored",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (2000, None),
                (2100, None),
                (2105, refused(1)),
                (2106, connected(1)),
                (2110, connected(2)),
            ],
        ),
    ]
}

fn generate_supervisor() -> SupervisorVectors {
    let cases = supervisor_cases()
        .into_iter()
        .map(|(name, config, seed, inputs)| {
            config.validate().expect("vector configs are valid");
            SupervisorCase {
                name: name.into(),
                steps: trace(&config, seed, &inputs),
                config,
                seed,
            }
        })
        .collect();
    SupervisorVectors {
        about: [
            "Golden vectors of relink_core::supervisor, generated by crates/relink-core/tests/vectors.rs.",
            "For each case: Supervisor::new(config, seed); then for each step, handle_input(at, input)",
            "unless input is null, then poll_output(at) repeatedly until it returns a timeout or idle",
            "(included as the last output); `health` is health() after that. Times are ms on the",
            "driver's clock; durations in events are whole ms. Seeds are below 2^53.",
        ]
        .map(String::from)
        .to_vec(),
        cases,
    }
}

#[test]
fn supervisor_vectors_are_fresh() {
    ensure_vector_file("supervisor.json", &generate_supervisor());
}

#[test]
fn supervisor_vectors_replay_from_the_file() {
    let file: SupervisorVectors = read_vector_file("supervisor.json");
    assert!(file.cases.len() >= 8, "expected at least 8 cases");
    for case in &file.cases {
        assert!(
            case.seed < 1 << 53,
            "{}: seed not exact in JavaScript",
            case.name
        );
        case.config
            .validate()
            .unwrap_or_else(|e| panic!("{}: invalid config: {e}", case.name));
        let inputs: Vec<_> = case.steps.iter().map(|s| (s.at, s.input)).collect();
        let replayed = trace(&case.config, case.seed, &inputs);
        for (i, (got, want)) in replayed.iter().zip(&case.steps).enumerate() {
            assert!(
                want.at < 1 << 53,
                "{}: step {i}: time not exact in JavaScript",
                case.name
            );
            assert_eq!(got, want, "case {:?}, step {i}", case.name);
        }
    }
}

// ---------------------------------------------------------------------------
// Per-call decisions

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallVectors {
    about: Vec<String>,
    cases: Vec<CallCase>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallCase {
    name: String,
    policy: CallPolicy,
    /// Safe to apply twice (a read, or a write declared idempotent).
    idempotent: bool,
    /// `null`: `Call::new` (the policy's deadline); a number of ms:
    /// `Call::with_deadline` with that deadline of the call's own.
    own_deadline_ms: Option<u64>,
    seed: u64,
    /// When the call starts, on the driver's clock (ms).
    start_ms: u64,
    steps: Vec<CallStep>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallStep {
    /// The driver's clock, in ms.
    at_ms: u64,
    /// Fed with `decide(policy, at_ms, input)`.
    input: CallInput,
    /// What `decide` answered.
    decision: Decision,
}

fn start_call(
    policy: &CallPolicy,
    idempotent: bool,
    own_deadline_ms: Option<u64>,
    seed: u64,
    start_ms: u64,
) -> Call {
    let start = Timestamp::from_millis(start_ms);
    match own_deadline_ms {
        None => Call::new(policy, start, idempotent, seed),
        Some(own) => Call::with_deadline(start, idempotent, Some(ms(own)), seed),
    }
}

/// Feeds `inputs` to `call` and records every decision.
fn call_trace(policy: &CallPolicy, mut call: Call, inputs: &[(u64, CallInput)]) -> Vec<CallStep> {
    inputs
        .iter()
        .map(|&(at_ms, input)| CallStep {
            at_ms,
            input,
            decision: call.decide(policy, Timestamp::from_millis(at_ms), input),
        })
        .collect()
}

/// When a scripted input comes.
#[derive(Debug, Clone, Copy)]
enum When {
    /// At this time on the driver's clock.
    At(u64),
    /// When the last decision said: a `Queue`'s `until`, a `RetryAt`'s `at`,
    /// or the end of a `Send`'s (or `Redirect`'s) timeout.
    Asked,
    /// This many ms after the last input.
    After(u64),
}

/// A call's script: inputs at times that may depend on the decisions.
#[derive(Debug, Clone, Copy)]
enum Script {
    Once(When, CallInput),
    /// The input at the time asked, again and again, until the call fails.
    UntilFail(CallInput),
}

/// Plays `script` the way a driver would, checking that it never acts later
/// than a decision allows; returns the inputs with their times.
fn play(
    policy: &CallPolicy,
    mut call: Call,
    start_ms: u64,
    script: &[Script],
) -> Vec<(u64, CallInput)> {
    let mut now = start_ms;
    let mut last: Option<Decision> = None;
    let mut inputs = Vec::new();
    let asked = |now: u64, last: Option<Decision>| match last {
        Some(Decision::Queue { until: t } | Decision::RetryAt { at: t }) => t.as_millis(),
        Some(Decision::Send { timeout } | Decision::Redirect { timeout }) => {
            now + u64::try_from(timeout.as_millis()).expect("timeouts fit u64")
        }
        _ => now,
    };
    let mut feed = |at: u64, input: CallInput, now: &mut u64, last: &mut Option<Decision>| {
        assert!(at >= *now, "script goes back in time: {at} < {now}");
        if matches!(last, Some(Decision::Fail { .. })) {
            // After the end a driver may report anything, any time.
        } else {
            let latest = asked(*now, *last);
            assert!(
                last.is_none() || at <= latest,
                "{input:?} at {at}: later than {latest}"
            );
        }
        *now = at;
        let decision = call.decide(policy, Timestamp::from_millis(at), input);
        inputs.push((at, input));
        *last = Some(decision);
        decision
    };
    for &item in script {
        match item {
            Script::Once(when, input) => {
                let at = match when {
                    When::At(at) => at,
                    When::Asked => asked(now, last),
                    When::After(d) => now + d,
                };
                feed(at, input, &mut now, &mut last);
            }
            Script::UntilFail(input) => {
                for n in 0.. {
                    assert!(n < 1_000, "the call did not end");
                    let at = asked(now, last);
                    if let Decision::Fail { .. } = feed(at, input, &mut now, &mut last) {
                        break;
                    }
                }
            }
        }
    }
    inputs
}

type CallCaseDef = (
    &'static str,
    CallPolicy,
    bool,
    Option<u64>,
    u64,
    u64,
    Vec<Script>,
);

/// The vectors' base policy: the defaults but for a busy backoff without
/// jitter, so most times can be checked by hand; cases about jitter put it back.
fn call_policy() -> CallPolicy {
    CallPolicy::default().busy_backoff(
        CallPolicy::default_busy_backoff()
            .jitter(Jitter::None)
            .max_delay(ms(200)),
    )
}

fn call_cases() -> Vec<CallCaseDef> {
    use CallInput::*;
    use Script::*;
    use When::*;
    let failed = |kind, delivery| Failed {
        kind,
        delivery,
        budget_allows: true,
    };
    let timeout = failed(FailureKind::Timeout, Delivery::MaybeSent);
    let closed = failed(FailureKind::Closed, Delivery::MaybeSent);
    let busy = |reason| failed(FailureKind::ServerBusy(reason), Delivery::Answered);
    let fail_fast = || call_policy().queue_wait(None);
    let jittered = || call_policy().busy_backoff(CallPolicy::default_busy_backoff());
    vec![
        (
            "a read to a hung server: 250ms response timeout, 300ms deadline",
            call_policy()
                .response_timeout(ms(250))
                .deadline(Some(ms(300))),
            true,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                // No reply by the timeout: a read is retried at once, with
                // what is left of the deadline.
                Once(Asked, timeout),
                Once(Asked, Connected),
                Once(Asked, timeout),
                // Over: every later input gets the same answer.
                Once(After(1), Connected),
            ],
        ),
        (
            "a write of unknown fate is not retried",
            call_policy(),
            false,
            None,
            1,
            1_000,
            vec![Once(At(1_000), Connected), Once(After(5), closed)],
        ),
        (
            "a declared idempotent write of unknown fate is retried; its retry times out queued",
            call_policy().queue_wait(Some(ms(1_000))),
            true,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(5), closed),
                Once(Asked, NotConnected),
                UntilFail(NotConnected),
            ],
        ),
        (
            "fail-fast: no connection fails at once, not sent",
            fail_fast(),
            false,
            None,
            1,
            0,
            vec![Once(At(0), NotConnected)],
        ),
        (
            "fail-fast: an attempt that never left the client fails not connected",
            fail_fast(),
            false,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(1), failed(FailureKind::Io, Delivery::NotSent)),
            ],
        ),
        (
            "queued, then misconfigured: fails at once, not sent",
            call_policy(),
            false,
            None,
            1,
            0,
            vec![Once(At(0), NotConnected), Once(After(4), Misconfigured)],
        ),
        (
            "a full backlog",
            call_policy(),
            false,
            None,
            1,
            0,
            vec![Once(At(0), NotConnected), Once(After(0), BacklogFull)],
        ),
        (
            "a queue wait timing out",
            call_policy().queue_wait(Some(ms(1_000))).deadline(None),
            false,
            None,
            1,
            0,
            vec![Once(At(0), NotConnected), UntilFail(NotConnected)],
        ),
        (
            "the connection comes back during the queue wait: sent with what is left of the deadline",
            call_policy().deadline(Some(ms(3_000))),
            false,
            None,
            1,
            0,
            vec![
                Once(At(0), NotConnected),
                Once(Asked, NotConnected),
                Once(Asked, NotConnected),
                Once(Asked, NotConnected),
                Once(After(5), Connected),
            ],
        ),
        (
            "an attempt that never left the client goes back to the queue: not a retry",
            call_policy().max_retries(0),
            false,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(1), failed(FailureKind::Io, Delivery::NotSent)),
                Once(Asked, Connected),
            ],
        ),
        (
            "the deadline shorter than the queue wait",
            call_policy().deadline(Some(ms(800))),
            false,
            None,
            1,
            100,
            vec![Once(At(100), NotConnected), UntilFail(NotConnected)],
        ),
        (
            "an own deadline shorter than the response timeout",
            call_policy(),
            true,
            Some(2_000),
            1,
            0,
            vec![Once(At(0), Connected), Once(Asked, timeout)],
        ),
        (
            "refusals waited out under the queue policy, jittered busy backoff (LOADING)",
            jittered().deadline(None),
            false,
            None,
            7,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(1), busy(BusyReason::Loading)),
                Once(Asked, Connected),
                Once(After(1), busy(BusyReason::Loading)),
                Once(Asked, Connected),
                Once(After(1), busy(BusyReason::Loading)),
                Once(Asked, Connected),
                Once(After(1), busy(BusyReason::Loading)),
                Once(Asked, Connected),
                Once(After(1), busy(BusyReason::Loading)),
                Once(Asked, Connected),
                Once(After(1), busy(BusyReason::Loading)),
                Once(Asked, Connected),
                // The server answers at last: no more input.
            ],
        ),
        (
            "refusals retried under fail-fast, jittered busy backoff, until the retries are spent (BUSY)",
            jittered().queue_wait(None).max_retries(3),
            false,
            None,
            (1 << 53) - 1,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(2), busy(BusyReason::Busy)),
                Once(Asked, Connected),
                Once(After(2), busy(BusyReason::Busy)),
                Once(Asked, Connected),
                Once(After(2), busy(BusyReason::Busy)),
                Once(Asked, Connected),
                Once(After(2), busy(BusyReason::Busy)),
            ],
        ),
        (
            "a failed-over master (READONLY): not applied, retried at once on a new connection",
            call_policy(),
            false,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(1), busy(BusyReason::ReadOnly)),
                Once(Asked, NotConnected),
                Once(Asked, Connected),
            ],
        ),
        (
            "the budget refuses a retry",
            call_policy(),
            true,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(
                    After(2),
                    Failed {
                        kind: FailureKind::Io,
                        delivery: Delivery::MaybeSent,
                        budget_allows: false,
                    },
                ),
            ],
        ),
        (
            "a rejected command (WRONGTYPE)",
            call_policy(),
            true,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(1), failed(FailureKind::Command, Delivery::Answered)),
            ],
        ),
        (
            "a rejected retry after an attempt of unknown fate",
            call_policy(),
            true,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(Asked, timeout),
                Once(Asked, Connected),
                Once(After(1), failed(FailureKind::Command, Delivery::Answered)),
            ],
        ),
        (
            "authentication refused: never retried, not applied",
            call_policy(),
            true,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(1), failed(FailureKind::Auth, Delivery::Answered)),
            ],
        ),
        (
            "redirects past the limit count as TRYAGAIN: waited out when queueing",
            jittered().max_redirects(2),
            false,
            None,
            3,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(1), Redirected),
                Once(After(1), Redirected),
                Once(After(1), Redirected),
                Once(Asked, Connected),
                Once(After(1), Redirected),
            ],
        ),
        (
            "redirects past the limit under fail-fast: retried, then the retries are spent",
            call_policy().queue_wait(None).max_redirects(1).max_retries(1),
            false,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(1), Redirected),
                Once(After(1), Redirected),
                Once(Asked, Connected),
                Once(After(1), Redirected),
            ],
        ),
        (
            "shutdown while queued",
            call_policy(),
            false,
            None,
            1,
            0,
            vec![
                Once(At(0), NotConnected),
                Once(After(3), Shutdown),
                Once(After(100), Connected),
            ],
        ),
        (
            "shutdown after an attempt of unknown fate: the caller hears unknown",
            call_policy(),
            true,
            None,
            1,
            0,
            vec![
                Once(At(0), Connected),
                Once(After(40), closed),
                Once(Asked, NotConnected),
                Once(After(2), Shutdown),
            ],
        ),
    ]
}

fn generate_call() -> CallVectors {
    let cases = call_cases()
        .into_iter()
        .map(
            |(name, policy, idempotent, own_deadline_ms, seed, start_ms, script)| {
                let policy = policy.build().expect("vector policies are valid");
                let new = || start_call(&policy, idempotent, own_deadline_ms, seed, start_ms);
                let inputs = play(&policy, new(), start_ms, &script);
                CallCase {
                    name: name.into(),
                    steps: call_trace(&policy, new(), &inputs),
                    policy,
                    idempotent,
                    own_deadline_ms,
                    seed,
                    start_ms,
                }
            },
        )
        .collect();
    CallVectors {
        about: [
            "Golden vectors of relink_core::call, generated by crates/relink-core/tests/vectors.rs.",
            "For each case: Call::new(policy, start_ms, idempotent, seed), or when own_deadline_ms is",
            "not null Call::with_deadline(start_ms, idempotent, own_deadline_ms, seed); then for each",
            "step, decide(policy, at_ms, input) must answer `decision`. Times are ms on the driver's",
            "clock, timeouts whole ms; each step comes no later than the previous decision allows.",
            "Seeds are below 2^53.",
        ]
        .map(String::from)
        .to_vec(),
        cases,
    }
}

#[test]
fn call_vectors_are_fresh() {
    ensure_vector_file("call.json", &generate_call());
}

#[test]
fn call_vectors_replay_from_the_file() {
    let file: CallVectors = read_vector_file("call.json");
    assert!(file.cases.len() >= 12, "expected at least 12 cases");
    for case in &file.cases {
        assert!(
            case.seed < 1 << 53,
            "{}: seed not exact in JavaScript",
            case.name
        );
        case.policy
            .validate()
            .unwrap_or_else(|e| panic!("{}: invalid policy: {e}", case.name));
        let call = start_call(
            &case.policy,
            case.idempotent,
            case.own_deadline_ms,
            case.seed,
            case.start_ms,
        );
        let inputs: Vec<_> = case.steps.iter().map(|s| (s.at_ms, s.input)).collect();
        let replayed = call_trace(&case.policy, call, &inputs);
        for (i, (got, want)) in replayed.iter().zip(&case.steps).enumerate() {
            assert!(
                want.at_ms < 1 << 53,
                "{}: step {i}: time not exact in JavaScript",
                case.name
            );
            assert_eq!(got, want, "case {:?}, step {i}", case.name);
        }
    }
}
