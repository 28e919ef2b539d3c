//! `Backoff`: the core's reconnect delay sequence.

use core::time::Duration;

use core::num::NonZeroU32;

use relink_core::backoff::{Jitter, Strategy};
use relink_core::time::ceil_millis;
use relink_core::BackoffPolicy;
use wasm_bindgen::prelude::*;

use crate::convert::{millis, seed, Fields, Result, INVALID_CONFIG};

/// The delays before successive reconnect attempts, from one policy and one seed.
///
/// ```js
/// const b = new Backoff({ initial_delay: "100ms", max_delay: "5s", jitter: "full" }, seed);
/// b.nextDelay(elapsedMs); // a number of ms, or undefined: give up
/// ```
#[wasm_bindgen]
#[repr(transparent)]
#[derive(Debug)]
pub struct Backoff(relink_core::Backoff);

#[wasm_bindgen]
impl Backoff {
    /// `policy`: a plain object in the core's serde shape (missing fields take
    /// the defaults; `undefined` is the default policy). `seed`: a `BigInt`
    /// (or a safe-integer number) for the jitter.
    #[wasm_bindgen(constructor)]
    pub fn new(policy: JsValue, seed_value: JsValue) -> Result<Backoff> {
        let policy = if policy.is_undefined() {
            BackoffPolicy::default()
        } else {
            policy_from(&Fields::new(&policy, "policy", INVALID_CONFIG)?)?
        };
        Ok(Backoff(relink_core::Backoff::new(
            policy,
            seed(&seed_value)?,
        )))
    }

    /// The delay in ms before the next attempt, or `undefined` to give up.
    /// `elapsedMs` is the time since the outage began; when omitted, the sum
    /// of the delays handed out since the last reset is taken.
    #[wasm_bindgen(js_name = nextDelay)]
    pub fn next_delay(&mut self, elapsed_ms: JsValue) -> Result<Option<f64>> {
        let delay = if elapsed_ms.is_undefined() {
            self.0.next()
        } else {
            let elapsed = Duration::from_millis(millis(&elapsed_ms, "elapsedMs")?);
            self.0.next_delay(elapsed)
        };
        // Whole ms and at most 2^53 - 1 (the core's MAX_DELAY_LIMIT): exact as a number.
        Ok(delay.map(|d| ceil_millis(d) as f64))
    }

    /// Starts over from the initial delay (the random sequence continues).
    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// Delays handed out since creation or the last reset.
    #[wasm_bindgen(getter)]
    pub fn attempts(&self) -> u32 {
        self.0.attempts()
    }
}

/// Reads a backoff policy in the core's flat serde shape (see
/// `relink_core::backoff`): missing fields take `BackoffPolicy::default()`'s
/// values, `multiplier` goes only with `exponential`, `step` only (and
/// always) with `linear`, `jitter_factor` only with `proportional`; the
/// result is validated, and an error names the field by its path.
pub(crate) fn policy_from(f: &Fields) -> Result<BackoffPolicy> {
    const STRATEGIES: [&str; 3] = ["constant", "linear", "exponential"];
    const JITTERS: [&str; 5] = ["none", "full", "equal", "decorrelated", "proportional"];
    f.only(&[
        "strategy",
        "multiplier",
        "step",
        "initial_delay",
        "max_delay",
        "jitter",
        "jitter_factor",
        "max_attempts",
        "max_elapsed",
    ])?;
    let default = BackoffPolicy::default();
    let multiplier = f.f64("multiplier")?;
    let step = f.opt_duration("step")?.flatten();
    let only_with = |field: &str, what: &str| f.fail(field, &format!("applies only to {what}"));
    // Positions in STRATEGIES and JITTERS; missing: exponential, equal.
    let strategy = match f.choice("strategy", &STRATEGIES)?.unwrap_or(2) {
        0 | 1 if multiplier.is_some() => {
            return Err(only_with("multiplier", "strategy \"exponential\""));
        }
        0 | 2 if step.is_some() => return Err(only_with("step", "strategy \"linear\"")),
        0 => Strategy::Constant,
        1 => Strategy::Linear {
            step: step.ok_or_else(|| f.fail("step", "is required with strategy \"linear\""))?,
        },
        _ => Strategy::Exponential {
            multiplier: multiplier.unwrap_or(Strategy::DEFAULT_MULTIPLIER),
        },
    };
    let factor = f.f64("jitter_factor")?;
    let jitter = match f.choice("jitter", &JITTERS)?.unwrap_or(2) {
        4 => Jitter::Proportional {
            factor: factor.unwrap_or(Jitter::DEFAULT_PROPORTIONAL_FACTOR),
        },
        _ if factor.is_some() => {
            return Err(only_with("jitter_factor", "jitter \"proportional\""));
        }
        0 => Jitter::None,
        1 => Jitter::Full,
        3 => Jitter::Decorrelated,
        _ => Jitter::Equal,
    };
    let max_attempts = match f.get("max_attempts").filter(|v| !v.is_null()) {
        None => None,
        Some(n) => Some(
            n.as_f64()
                .filter(|n| n.trunc() == *n && *n >= 1.0 && *n <= f64::from(u32::MAX))
                .and_then(|n| NonZeroU32::new(n as u32))
                .ok_or_else(|| {
                    f.fail(
                        "max_attempts",
                        "must be a whole number between 1 and 4294967295; leave it out (or \
                         null) for no limit",
                    )
                })?,
        ),
    };
    let initial_delay = f
        .duration("initial_delay")?
        .unwrap_or(default.initial_delay);
    let max_delay = f.duration("max_delay")?.unwrap_or(default.max_delay);
    default
        .strategy(strategy)
        .initial_delay(initial_delay)
        .max_delay(max_delay)
        .jitter(jitter)
        .max_attempts(max_attempts)
        .max_elapsed(f.opt_duration("max_elapsed")?.flatten())
        .build()
        .map_err(|e| crate::convert::config_error(f.name(), &e))
}
