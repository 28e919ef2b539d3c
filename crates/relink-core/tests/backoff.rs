//! Properties of `relink_core::backoff`: no panics, bounds, determinism, and
//! the serde form (JSON and TOML round-trips, invalid configs rejected with
//! the field named).

use core::num::NonZeroU32;
use core::time::Duration;

use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use relink_core::backoff::MAX_DELAY_LIMIT;
use relink_core::{Backoff, BackoffPolicy, Jitter, Strategy};

const MAX_MS: u64 = (1 << 53) - 1;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Delays from 1 ms to a few minutes, sometimes anywhere up to the limit.
fn delay_ms() -> impl proptest::strategy::Strategy<Value = u64> {
    prop_oneof![4 => 1..=300_000u64, 1 => 1..=MAX_MS]
}

/// Multipliers and factors are the doubles nearest to 3-decimal numbers (one
/// correctly rounded division): serde_json (without its `float_roundtrip`
/// feature) parses such short decimals exactly, while an arbitrary 17-digit
/// double (even `1.0 + 0.993`) may come back one ULP off.
fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        Just(Strategy::Constant),
        delay_ms().prop_map(|s| Strategy::Linear { step: ms(s) }),
        (0..=9_000u32).prop_map(|k| Strategy::Exponential {
            multiplier: f64::from(1000 + k) / 1000.0
        }),
    ]
}

fn jitter() -> impl proptest::strategy::Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        (0..=1000u32).prop_map(|k| Jitter::Proportional {
            factor: f64::from(k) / 1000.0
        }),
    ]
}

prop_compose! {
    fn valid_policy()(
        strategy in strategy(),
        initial in delay_ms(),
        extra in prop_oneof![Just(0u64), 0..=600_000u64, 0..=MAX_MS],
        jitter in jitter(),
        max_attempts in proptest::option::of(1..=u32::MAX),
        max_elapsed in proptest::option::of((1..=u64::MAX / 4, 0..1_000_000_000u32)
            .prop_map(|(s, n)| Duration::new(s % 1_000_000, n))
            .prop_filter("non-zero", |d| !d.is_zero())),
    ) -> BackoffPolicy {
        let initial = initial.min(MAX_MS);
        BackoffPolicy::default()
            .strategy(strategy)
            .initial_delay(ms(initial))
            .max_delay(ms(initial.saturating_add(extra).min(MAX_MS)))
            .jitter(jitter)
            .max_attempts(max_attempts.and_then(NonZeroU32::new))
            .max_elapsed(max_elapsed)
            .build()
            .expect("the generator makes valid policies")
    }
}

/// Any value at all in every field, including NaN and infinities.
fn any_policy() -> impl proptest::strategy::Strategy<Value = BackoffPolicy> {
    let dur =
        (any::<u64>(), 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s >> (s % 64), n));
    let float = prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        -2.0..3.0f64
    ];
    let strategy = prop_oneof![
        Just(Strategy::Constant),
        dur.clone().prop_map(|step| Strategy::Linear { step }),
        float
            .clone()
            .prop_map(|multiplier| Strategy::Exponential { multiplier }),
    ];
    let jitter = prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
        float.prop_map(|factor| Jitter::Proportional { factor }),
    ];
    (
        strategy,
        dur.clone(),
        dur.clone(),
        jitter,
        any::<Option<NonZeroU32>>(),
        proptest::option::of(dur),
    )
        .prop_map(|(s, i, m, j, a, e)| {
            BackoffPolicy::default()
                .strategy(s)
                .initial_delay(i)
                .max_delay(m)
                .jitter(j)
                .max_attempts(a)
                .max_elapsed(e)
        })
}

/// The smallest delay the policy's jitter can produce (before a `max_elapsed` cut).
fn lower_bound_ms(p: &BackoffPolicy) -> u64 {
    let initial = p.initial_delay.as_millis() as u64;
    match p.jitter {
        Jitter::None | Jitter::Decorrelated => initial,
        Jitter::Full => 0,
        Jitter::Equal => initial - initial / 2,
        Jitter::Proportional { factor } => initial - (initial as f64 * factor) as u64,
        _ => 0,
    }
}

proptest! {
    #[test]
    fn nonsense_policies_never_panic_and_stay_in_the_clamped_range(p in any_policy(), seed in any::<u64>(), elapsed in any::<u64>()) {
        let mut b = Backoff::new(p, seed);
        let max = b.policy().max_delay;
        prop_assert!(max <= MAX_DELAY_LIMIT);
        for i in 0..40u64 {
            if let Some(d) = b.next_delay(Duration::from_nanos(elapsed.wrapping_mul(i))) {
                prop_assert!(d <= max);
                prop_assert_eq!(d.subsec_nanos() % 1_000_000, 0);
            }
            if i == 20 {
                b.reset();
            }
        }
    }

    #[test]
    fn delays_stay_within_the_policy_bounds(p in valid_policy(), seed in any::<u64>()) {
        let p = p.max_elapsed(None);
        let lo = lower_bound_ms(&p);
        let hi = p.max_delay.as_millis() as u64;
        let limit = p.max_attempts.map_or(60, |n| n.get().min(60)) as usize;
        let mut b = Backoff::new(p.clone(), seed);
        prop_assert_eq!(b.policy(), &p);
        let delays: Vec<u64> = b.by_ref().take(60).map(|d| d.as_millis() as u64).collect();
        prop_assert_eq!(delays.len(), limit);
        prop_assert_eq!(b.attempts() as usize, limit);
        for d in delays {
            prop_assert!(lo <= d && d <= hi, "{} not in [{}, {}] for {:?}", d, lo, hi, p);
        }
    }

    #[test]
    fn elapsed_budget_is_never_overrun(p in valid_policy(), seed in any::<u64>()) {
        let budget = Duration::from_millis(p.initial_delay.as_millis() as u64 * 5 + 3);
        let p = p.max_attempts(None).max_elapsed(Some(budget));
        let total: Duration = Backoff::new(p, seed).take(10_000).sum();
        prop_assert!(total <= budget);
        prop_assert!(budget - total < ms(1), "stopped early: {:?} of {:?}", total, budget);
    }

    #[test]
    fn same_seed_gives_the_same_delays(p in valid_policy(), seed in any::<u64>()) {
        let a: Vec<_> = Backoff::new(p.clone(), seed).take(30).collect();
        let b: Vec<_> = Backoff::new(p, seed).take(30).collect();
        prop_assert_eq!(a, b);
    }

    /// Every delay of these policies has at least ~20 equally likely values, so
    /// two seeds agree on 12 delays with probability below 20^-12.
    #[test]
    fn different_seeds_give_different_jittered_delays(
        p in valid_policy(),
        jitter in prop_oneof![
            Just(Jitter::Full),
            Just(Jitter::Equal),
            Just(Jitter::Decorrelated),
            (100..=1000u32).prop_map(|k| Jitter::Proportional { factor: f64::from(k) / 1000.0 }),
        ],
        (s1, s2) in (any::<u64>(), any::<u64>()).prop_filter("distinct", |(a, b)| a != b),
    ) {
        // Room for 12 uncapped decorrelated steps (each at most x3): once
        // capped, decorrelated delays sit at max_delay most of the time.
        let initial = p.initial_delay.clamp(ms(100), ms(1_000_000));
        let max_delay = p.max_delay.clamp(initial * 1_000_000, MAX_DELAY_LIMIT);
        let p = p
            .jitter(jitter)
            .initial_delay(initial)
            .max_delay(max_delay)
            .max_attempts(None)
            .max_elapsed(None);
        let a: Vec<_> = Backoff::new(p.clone(), s1).take(12).collect();
        let b: Vec<_> = Backoff::new(p, s2).take(12).collect();
        prop_assert_ne!(a, b);
    }

    #[test]
    fn json_round_trips_exactly(p in valid_policy()) {
        let text = serde_json::to_string(&p).unwrap();
        let back: BackoffPolicy = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn toml_round_trips_exactly(p in valid_policy()) {
        let text = toml::to_string(&p).unwrap();
        let back: BackoffPolicy = toml::from_str(&text).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn multipliers_below_one_are_rejected_naming_the_field(k in 0..1000u32) {
        let json = format!(r#"{{"strategy":"exponential","multiplier":{}}}"#, f64::from(k) / 1000.0);
        let err = serde_json::from_str::<BackoffPolicy>(&json).unwrap_err().to_string();
        prop_assert!(err.contains("invalid `multiplier`"), "{}", err);
    }
}

#[test]
fn default_serializes_to_the_documented_shape() {
    let p = BackoffPolicy::default();
    assert_eq!(
        serde_json::to_string(&p).unwrap(),
        r#"{"strategy":"exponential","multiplier":2.0,"initial_delay":"100ms","max_delay":"5s","jitter":"equal","max_attempts":null,"max_elapsed":null}"#
    );
    assert_eq!(
        toml::to_string(&p).unwrap(),
        "strategy = \"exponential\"\nmultiplier = 2.0\ninitial_delay = \"100ms\"\nmax_delay = \"5s\"\njitter = \"equal\"\n"
    );
    let grpc = BackoffPolicy::grpc()
        .max_attempts(NonZeroU32::new(10))
        .max_elapsed(Some(Duration::from_secs(600)));
    assert_eq!(
        toml::to_string(&grpc).unwrap(),
        "strategy = \"exponential\"\nmultiplier = 1.6\ninitial_delay = \"1s\"\nmax_delay = \"2m\"\n\
         jitter = \"proportional\"\njitter_factor = 0.2\nmax_attempts = 10\nmax_elapsed = \"10m\"\n"
    );
}

#[test]
fn missing_fields_take_the_defaults() {
    let p: BackoffPolicy = serde_json::from_str("{}").unwrap();
    assert_eq!(p, BackoffPolicy::default());
    let p: BackoffPolicy = toml::from_str("max_delay = \"10s\"").unwrap();
    assert_eq!(
        p,
        BackoffPolicy::default().max_delay(Duration::from_secs(10))
    );
    let p: BackoffPolicy = toml::from_str("jitter = \"proportional\"").unwrap();
    assert_eq!(p.jitter, Jitter::Proportional { factor: 0.2 });
    let p: BackoffPolicy = serde_json::from_str(r#"{"strategy":"linear","step":"1.5s"}"#).unwrap();
    assert_eq!(p.strategy, Strategy::Linear { step: ms(1500) });
    let p: BackoffPolicy = toml::from_str("multiplier = 3\nmax_elapsed = \"1h30m\"").unwrap();
    assert_eq!(p.strategy, Strategy::Exponential { multiplier: 3.0 });
    assert_eq!(p.max_elapsed, Some(Duration::from_secs(5400)));
}

/// (JSON, TOML, what the message must contain).
const INVALID: &[(&str, &str, &[&str])] = &[
    (
        r#"{"initial_delay":"-1s"}"#,
        r#"initial_delay = "-1s""#,
        &["initial_delay", "negative durations are not allowed"],
    ),
    (
        r#"{"max_delay":"5parsecs"}"#,
        r#"max_delay = "5parsecs""#,
        &["max_delay", "unknown unit `parsecs`"],
    ),
    (
        r#"{"max_elapsed":"NaN"}"#,
        r#"max_elapsed = "NaN""#,
        &["max_elapsed", "decimal number"],
    ),
    (
        r#"{"max_elapsed":""}"#,
        r#"max_elapsed = """#,
        &["max_elapsed", "empty"],
    ),
    (
        r#"{"max_elapsed":"0s"}"#,
        r#"max_elapsed = "0s""#,
        &["invalid `max_elapsed`", "greater than zero"],
    ),
    (
        r#"{"step":"100"}"#,
        r#"step = "100""#,
        &["step", "missing unit"],
    ),
    (
        r#"{"initial_delay":"99999999999999999999999h"}"#,
        r#"initial_delay = "99999999999999999999999h""#,
        &["initial_delay", "too large"],
    ),
    (
        r#"{"initial_delay":100}"#,
        "initial_delay = 100",
        &["initial_delay", "duration string"],
    ),
    (
        r#"{"initial_delay":"0ms"}"#,
        r#"initial_delay = "0ms""#,
        &["invalid `initial_delay`", "at least 1ms"],
    ),
    (
        r#"{"initial_delay":"1500us"}"#,
        r#"initial_delay = "1500us""#,
        &["invalid `initial_delay`", "whole number of milliseconds"],
    ),
    (
        r#"{"max_delay":"50ms"}"#,
        r#"max_delay = "50ms""#,
        &["invalid `max_delay`", "at least `initial_delay` (100ms)"],
    ),
    (
        r#"{"multiplier":0.5}"#,
        "multiplier = 0.5",
        &["invalid `multiplier`", "at least 1"],
    ),
    (
        r#"{"multiplier":0.999}"#,
        "multiplier = inf",
        &["invalid `multiplier`", "finite"],
    ),
    (
        r#"{"jitter":"proportional","jitter_factor":1.5}"#,
        "jitter = \"proportional\"\njitter_factor = 1.5",
        &["invalid `jitter_factor`", "between 0 and 1"],
    ),
    (
        r#"{"jitter_factor":0.2}"#,
        "jitter_factor = 0.2",
        &["invalid `jitter_factor`", "proportional"],
    ),
    (
        r#"{"strategy":"constant","multiplier":2}"#,
        "strategy = \"constant\"\nmultiplier = 2",
        &["invalid `multiplier`", "exponential"],
    ),
    (
        r#"{"step":"1s"}"#,
        r#"step = "1s""#,
        &["invalid `step`", "linear"],
    ),
    (
        r#"{"strategy":"linear"}"#,
        r#"strategy = "linear""#,
        &["invalid `step`", "required"],
    ),
    (
        r#"{"strategy":"linear","step":"0s"}"#,
        "strategy = \"linear\"\nstep = \"0s\"",
        &["invalid `step`", "constant"],
    ),
    (
        r#"{"max_attempts":0}"#,
        "max_attempts = 0",
        &["invalid `max_attempts`", "between 1 and"],
    ),
    (
        r#"{"max_attempts":-1}"#,
        "max_attempts = -1",
        &["invalid `max_attempts`", "-1"],
    ),
    (
        r#"{"max_attempts":4294967296}"#,
        "max_attempts = 4294967296",
        &["invalid `max_attempts`"],
    ),
    (
        r#"{"jitter":"gaussian"}"#,
        r#"jitter = "gaussian""#,
        &["unknown variant `gaussian`", "decorrelated"],
    ),
    (
        r#"{"strategy":"fibonacci"}"#,
        r#"strategy = "fibonacci""#,
        &["unknown variant `fibonacci`", "exponential"],
    ),
    (
        r#"{"max_dealy":"5s"}"#,
        r#"max_dealy = "5s""#,
        &["unknown field `max_dealy`"],
    ),
];

#[test]
fn invalid_configs_are_rejected_naming_the_field() {
    for (json, toml_text, needles) in INVALID {
        let from_json = serde_json::from_str::<BackoffPolicy>(json)
            .expect_err(json)
            .to_string();
        let from_toml = toml::from_str::<BackoffPolicy>(toml_text)
            .expect_err(toml_text)
            .to_string();
        for needle in *needles {
            assert!(
                from_json.contains(needle),
                "JSON {json}: {from_json:?} lacks {needle:?}"
            );
            assert!(
                from_toml.contains(needle),
                "TOML {toml_text}: {from_toml:?} lacks {needle:?}"
            );
        }
    }
}

#[test]
fn negative_duration_message_reads_well() {
    let err = serde_json::from_str::<BackoffPolicy>(r#"{"initial_delay": "-1s"}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid `initial_delay`: \"-1s\" is not a duration: negative durations are not allowed at line 1 column 23"
    );
}

#[test]
fn human_adapters_work_in_any_struct() {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Config {
        #[serde(with = "relink_core::duration::human")]
        timeout: Duration,
        #[serde(default, with = "relink_core::duration::human_opt")]
        idle: Option<Duration>,
    }
    let c: Config = serde_json::from_str(r#"{"timeout":"1.5s"}"#).unwrap();
    assert_eq!(
        c,
        Config {
            timeout: ms(1500),
            idle: None
        }
    );
    let c: Config = serde_json::from_str(r#"{"timeout":"1h30m","idle":null}"#).unwrap();
    assert_eq!(c.idle, None);
    let c = Config {
        timeout: ms(250),
        idle: Some(Duration::from_micros(100)),
    };
    let json = serde_json::to_string(&c).unwrap();
    assert_eq!(json, r#"{"timeout":"250ms","idle":"100us"}"#);
    assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), c);
    let toml_text = toml::to_string(&Config { idle: None, ..c }).unwrap();
    assert_eq!(toml_text, "timeout = \"250ms\"\n");
    assert_eq!(toml::from_str::<Config>(&toml_text).unwrap().idle, None);
    let err = serde_json::from_str::<Config>(r#"{"timeout":"-1s"}"#)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "invalid duration \"-1s\": negative durations are not allowed at line 1 column 16"
    );
    let err = toml::from_str::<Config>("timeout = \"1s\"\nidle = \"5x\"")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("idle") && err.contains("unknown unit `x`"),
        "{err}"
    );
}
