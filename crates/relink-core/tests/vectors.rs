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

use relink_core::{Backoff, BackoffPolicy, Jitter, Strategy};
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
