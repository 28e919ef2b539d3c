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

use relink_core::supervisor::{
    Health, HeartbeatConfig, Input, Output, Supervisor, SupervisorConfig,
};
use relink_core::{Backoff, BackoffPolicy, FailureKind, Jitter, Strategy, Timestamp};
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
    health: Health,
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
            kind: FailureKind::Io,
        })
    };
    let lost = Some(ConnectionLost {
        kind: FailureKind::Closed,
    });
    vec![
        (
            "first connect succeeds",
            sup_config(),
            1,
            vec![(0, Some(Start)), (5, connected(1))],
        ),
        (
            "refused, backoff, then connected; later lost and reconnected",
            sup_config(),
            1,
            vec![
                (0, Some(Start)),
                (3, refused(1)),
                (103, None),
                (110, connected(2)),
                // Lost after 490 ms Ready (< backoff_reset_after): the backoff
                // goes on growing (200 ms), and the attempt count restarts.
                (600, lost),
                (800, None),
                (805, connected(1)),
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
