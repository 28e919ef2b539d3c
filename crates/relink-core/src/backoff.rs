//! Reconnect backoff: the policy ([`BackoffPolicy`]) and the delay sequence ([`Backoff`]).
//!
//! Owns how long to wait before the next attempt, given how many attempts
//! were made and how long the outage has lasted. It must not know what an
//! attempt is, when it happens, or what time it is: the caller supplies the
//! elapsed time and sleeps; randomness comes from [`SplitMix64`] seeded by the
//! driver, so the same policy and seed give the same delays on every target.
//!
//! **Delays have millisecond resolution**: every delay is a whole number of
//! milliseconds, at most [`MAX_DELAY_LIMIT`] (2^53 − 1 ms), so C and
//! JavaScript numbers hold it exactly and the golden vectors are in ms. The
//! arithmetic is integer math plus plain `f64` multiplications and casts
//! (IEEE-exact on every target); no `powf`, no allocation per step.
//!
//! # How the supervisor uses it
//!
//! The backoff paces attempts whose failure says nothing about when the
//! server will be back (a timeout, a reset, a lost connection). Three cases
//! are paced otherwise, by the [supervisor](crate::supervisor):
//!
//! - **A Ready connection breaks**: the first attempt goes out at once. Most
//!   such losses (a connection killed by a proxy or an operator, a restart
//!   already over) are mended by connecting again; if not, the backoff takes
//!   over. Once per stable period: a connection lost before it stayed Ready
//!   for `backoff_reset_after` after an attempt at once waits the backoff,
//!   so a flapping server earns one immediate attempt, not a storm.
//! - **An attempt is refused, or the server says it is not ready yet**
//!   (nothing listens; `LOADING`, `BUSY`, a replica not yet promoted): the
//!   wait is cut to `refused_max_delay` (100 ms) while the outage is young,
//!   and by [`refused_cap`](crate::supervisor::refused_cap) once longer
//!   (1/20 of the outage so far, later its square over 200 s: why, at
//!   [`REFUSED_DECAY`](crate::supervisor::REFUSED_DECAY)), jittered anew each time. A refusal costs
//!   the server's host one RST, so a restart is noticed within about that
//!   cap, whatever the backoff has grown to; the decay keeps a long outage
//!   under 2 attempts a second; the fresh jitter keeps clients that lost
//!   the server together from coming back together. A server answering
//!   `LOADING` is not decayed: it is up (its host answers, its event loop
//!   runs between chunks of the load), an attempt costs it a connection and
//!   a `-LOADING` reply, and the end of the load, which nothing else
//!   announces, is noticed within the 100 ms cap (jittered: 75 ms on
//!   average) however long the outage before it.
//! - **A misconfiguration** (a wrong password, a peer that is not Redis):
//!   the longer of this backoff and the slow `misconfigured_backoff` (1 s,
//!   ×2, at most 30 s), until the configuration changes.
//!
//! The golden vectors pin each (`tests/vectors/supervisor.json`).
//!
//! # Serde form
//!
//! One flat table; `multiplier` appears only with `exponential`, `step` only
//! with `linear`, `jitter_factor` only with `proportional`. Durations use
//! [`crate::duration`]'s text form. Unknown fields are rejected, a missing
//! field takes [`BackoffPolicy::default`]'s value (a missing `multiplier` is
//! 2.0, a missing `jitter_factor` 0.2; `step` is required with `linear`), and
//! the result is [validated](BackoffPolicy::validate): an invalid policy
//! cannot be deserialized, and the error message names the field.
//!
//! ```json
//! { "strategy": "exponential", "multiplier": 2.0, "initial_delay": "100ms",
//!   "max_delay": "5s", "jitter": "equal", "max_attempts": null, "max_elapsed": null }
//! ```
//!
//! In TOML a `None` (`max_attempts`, `max_elapsed`) is simply left out.

use core::num::NonZeroU32;
use core::time::Duration;

use alloc::format;

use crate::duration::HumanDuration;
use crate::error::ConfigError;
use crate::rng::SplitMix64;

/// The largest delay (and `max_delay`) allowed: 2^53 − 1 ms, the largest
/// integer a JavaScript number (an IEEE double) holds exactly.
pub const MAX_DELAY_LIMIT: Duration = Duration::from_millis(MAX_MS);

const MAX_MS: u64 = (1 << 53) - 1;

/// How the un-jittered delay grows from one attempt to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Strategy {
    /// Every delay is `initial_delay`.
    Constant,
    /// Delay `n` (from 0) is `initial_delay + n * step`, capped at `max_delay`.
    Linear {
        /// Added per attempt; at least 1 ms, whole milliseconds.
        step: Duration,
    },
    /// Delay `n` is `initial_delay * multiplier^n` (computed by repeated
    /// multiplication in `f64` milliseconds, truncated to whole ms), capped at `max_delay`.
    Exponential {
        /// Growth factor per attempt; finite and at least 1.
        multiplier: f64,
    },
}

impl Strategy {
    /// The multiplier a deserialized `exponential` strategy gets when none is given.
    pub const DEFAULT_MULTIPLIER: f64 = 2.0;
}

/// How randomness spreads the delay `d` of the strategy, so that many clients
/// that lost the same server do not all come back at the same instant.
///
/// Formulas from the AWS Architecture Blog ("Exponential Backoff And Jitter")
/// and the gRPC connection-backoff spec; all values in whole ms, bounds inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Jitter {
    /// `d` exactly.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// `ceil(d/2) + rand[0, floor(d/2)]`: uniform in `[ceil(d/2), d]`.
    Equal,
    /// `min(max_delay, rand[initial_delay, 3 * previous])`, `previous`
    /// starting at `initial_delay`. This jitter defines its own growth: the
    /// strategy (and its `multiplier` or `step`) is not consulted.
    Decorrelated,
    /// `d ± floor(d * factor)`, uniform, then capped at `max_delay` (gRPC
    /// lets the jittered value exceed its maximum; here no delay ever does).
    Proportional {
        /// Relative spread, in `[0, 1]`; gRPC uses 0.2.
        factor: f64,
    },
}

impl Jitter {
    /// The factor a deserialized `proportional` jitter gets when none is given (gRPC's).
    pub const DEFAULT_PROPORTIONAL_FACTOR: f64 = 0.2;
}

/// A reconnect backoff policy: plain data, validated by [`build`](Self::build).
///
/// Construct with [`Default`] or a preset and the by-value setters:
///
/// ```
/// # use core::time::Duration;
/// # use relink_core::backoff::{BackoffPolicy, Jitter};
/// let policy = BackoffPolicy::default()
///     .max_delay(Duration::from_secs(10))
///     .jitter(Jitter::Full)
///     .build()
///     .unwrap();
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BackoffPolicy {
    /// How the un-jittered delay grows.
    pub strategy: Strategy,
    /// The first un-jittered delay; at least 1 ms, whole milliseconds.
    pub initial_delay: Duration,
    /// No delay is longer; at least `initial_delay`, at most [`MAX_DELAY_LIMIT`], whole ms.
    pub max_delay: Duration,
    /// How delays are randomized.
    pub jitter: Jitter,
    /// Stop after handing out this many delays since the last reset; `None` never stops.
    pub max_attempts: Option<NonZeroU32>,
    /// Stop once the outage has lasted this long; `None` never stops. Must be non-zero.
    pub max_elapsed: Option<Duration>,
}

impl Default for BackoffPolicy {
    /// The Redis-client default: exponential from 100 ms, ×2, at most 5 s,
    /// equal jitter (the first delay is in `[50, 100]` ms), no attempt or time limit.
    ///
    /// Equal rather than full jitter: full jitter can yield a delay of 0 ms,
    /// and a client that reconnects instantly to a server that is restarting
    /// (or answering `LOADING`) just adds load; equal jitter keeps a floor of
    /// half the delay while still spreading a crowd of clients over the other half.
    fn default() -> Self {
        BackoffPolicy {
            strategy: Strategy::Exponential {
                multiplier: Strategy::DEFAULT_MULTIPLIER,
            },
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            jitter: Jitter::Equal,
            max_attempts: None,
            max_elapsed: None,
        }
    }
}

impl BackoffPolicy {
    /// The gRPC connection-backoff policy: 1 s initial, ×1.6, ±20 % proportional jitter, at most 120 s.
    pub fn grpc() -> Self {
        BackoffPolicy {
            strategy: Strategy::Exponential { multiplier: 1.6 },
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(120),
            jitter: Jitter::Proportional {
                factor: Jitter::DEFAULT_PROPORTIONAL_FACTOR,
            },
            max_attempts: None,
            max_elapsed: None,
        }
    }

    /// Sets [`strategy`](Self::strategy).
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets [`initial_delay`](Self::initial_delay).
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets [`max_delay`](Self::max_delay).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    pub fn max_attempts(mut self, max: Option<NonZeroU32>) -> Self {
        self.max_attempts = max;
        self
    }

    /// Sets [`max_elapsed`](Self::max_elapsed).
    pub fn max_elapsed(mut self, max: Option<Duration>) -> Self {
        self.max_elapsed = max;
        self
    }

    /// Returns the policy if [`validate`](Self::validate) accepts it.
    pub fn build(self) -> Result<Self, ConfigError> {
        self.validate()?;
        Ok(self)
    }

    /// Checks every field; the error names the first bad one (as spelled in serde).
    ///
    /// Rules: `initial_delay` ≥ 1 ms (a zero delay never grows under
    /// `constant`, `exponential` or `decorrelated`, and an instant reconnect
    /// loop is never what a Redis client wants); `initial_delay`, `max_delay`
    /// and `step` whole milliseconds; `initial_delay` ≤ `max_delay` ≤
    /// [`MAX_DELAY_LIMIT`]; `step` ≥ 1 ms (use `constant` for a fixed delay);
    /// `multiplier` finite and ≥ 1; `jitter_factor` in `[0, 1]`; `max_elapsed`
    /// non-zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        whole_ms("initial_delay", self.initial_delay)?;
        if self.initial_delay < Duration::from_millis(1) {
            return Err(ConfigError::invalid(
                "initial_delay",
                "must be at least 1ms: a zero delay makes a reconnect loop without pause",
            ));
        }
        whole_ms("max_delay", self.max_delay)?;
        if self.max_delay < self.initial_delay {
            return Err(ConfigError::invalid(
                "max_delay",
                format!(
                    "must be at least `initial_delay` ({}), got {}",
                    HumanDuration(self.initial_delay),
                    HumanDuration(self.max_delay)
                ),
            ));
        }
        if self.max_delay > MAX_DELAY_LIMIT {
            return Err(ConfigError::invalid(
                "max_delay",
                format!("must be at most {MAX_MS}ms (2^53-1 ms, exact in every binding)"),
            ));
        }
        match self.strategy {
            Strategy::Constant => {}
            Strategy::Linear { step } => {
                whole_ms("step", step)?;
                if step.is_zero() {
                    return Err(ConfigError::invalid(
                        "step",
                        "must be at least 1ms; use strategy \"constant\" for a fixed delay",
                    ));
                }
            }
            Strategy::Exponential { multiplier } => {
                if !(multiplier.is_finite() && multiplier >= 1.0) {
                    return Err(ConfigError::invalid(
                        "multiplier",
                        "must be a finite number of at least 1",
                    ));
                }
            }
        }
        if let Jitter::Proportional { factor } = self.jitter {
            if !(0.0..=1.0).contains(&factor) {
                return Err(ConfigError::invalid(
                    "jitter_factor",
                    "must be between 0 and 1",
                ));
            }
        }
        if self.max_elapsed == Some(Duration::ZERO) {
            return Err(ConfigError::invalid(
                "max_elapsed",
                "must be greater than zero; leave it out (or null) for no limit",
            ));
        }
        Ok(())
    }

    /// The policy [`Backoff`] actually follows: every field forced into range.
    fn sanitized(&self) -> Self {
        let initial = to_ms(self.initial_delay).max(1);
        let max = to_ms(self.max_delay).max(initial);
        let strategy = match self.strategy {
            Strategy::Constant => Strategy::Constant,
            Strategy::Linear { step } => Strategy::Linear {
                step: Duration::from_millis(to_ms(step)),
            },
            Strategy::Exponential { multiplier } => Strategy::Exponential {
                // NaN and anything below 1 become 1; +inf the largest finite value.
                multiplier: if multiplier >= 1.0 {
                    multiplier.min(f64::MAX)
                } else {
                    1.0
                },
            },
        };
        let jitter = match self.jitter {
            Jitter::Proportional { factor } => Jitter::Proportional {
                // NaN becomes 0.
                factor: if factor > 0.0 { factor.min(1.0) } else { 0.0 },
            },
            other => other,
        };
        BackoffPolicy {
            strategy,
            initial_delay: Duration::from_millis(initial),
            max_delay: Duration::from_millis(max),
            jitter,
            max_attempts: self.max_attempts,
            max_elapsed: self.max_elapsed,
        }
    }
}

fn whole_ms(field: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.subsec_nanos() % 1_000_000 != 0 {
        return Err(ConfigError::invalid(
            field,
            format!(
                "must be a whole number of milliseconds (delays have millisecond resolution), got {}",
                HumanDuration(d)
            ),
        ));
    }
    Ok(())
}

/// Whole milliseconds (rounded down), at most `MAX_MS`.
fn to_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).map_or(MAX_MS, |ms| ms.min(MAX_MS))
}

/// The delay sequence of one [`BackoffPolicy`] from one seed.
///
/// The supervisor asks [`next_delay`](Self::next_delay) after each failed
/// attempt and calls [`reset`](Self::reset) once connected. As an
/// [`Iterator`], the elapsed time is taken to be the sum of the delays handed
/// out since the last reset (attempts themselves take no time).
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    rng: SplitMix64,
    initial_ms: u64,
    max_ms: u64,
    /// The un-jittered delay of the next step, in ms (exact: below 2^53).
    base_ms: f64,
    /// The previous delay, for decorrelated jitter.
    prev_ms: u64,
    attempts: u32,
    handed_out_ms: u64,
}

impl Backoff {
    /// A fresh sequence for `policy`, drawing randomness from `seed`.
    ///
    /// Never panics: a policy that [`BackoffPolicy::validate`] would reject is
    /// clamped instead (delays rounded down to whole ms; `initial_delay` at
    /// least 1 ms; `max_delay` at least `initial_delay` and at most
    /// [`MAX_DELAY_LIMIT`]; a NaN or below-1 `multiplier` becomes 1; a NaN
    /// `jitter_factor` 0, others clamped to `[0, 1]`). [`policy`](Self::policy)
    /// returns the clamped policy.
    pub fn new(policy: BackoffPolicy, seed: u64) -> Backoff {
        let policy = policy.sanitized();
        let initial_ms = to_ms(policy.initial_delay);
        let max_ms = to_ms(policy.max_delay);
        Backoff {
            policy,
            rng: SplitMix64::new(seed),
            initial_ms,
            max_ms,
            base_ms: initial_ms as f64,
            prev_ms: initial_ms,
            attempts: 0,
            handed_out_ms: 0,
        }
    }

    /// The delay before the next attempt, or `None` to give up.
    ///
    /// `elapsed` is the time since the first failure of the current outage,
    /// as measured by the caller. Returns `None` (without advancing) when
    /// `max_attempts` delays were already handed out since the last reset, or
    /// when `elapsed` has reached `max_elapsed`, or when less than 1 ms of
    /// `max_elapsed` remains. A delay that would overrun `max_elapsed` is
    /// **shortened** to the whole milliseconds remaining, so the last attempt
    /// happens when the budget runs out, never after; the next call then
    /// returns `None`. A `None` for the time budget is not sticky: a call with
    /// a smaller `elapsed` may succeed again.
    pub fn next_delay(&mut self, elapsed: Duration) -> Option<Duration> {
        if let Some(max) = self.policy.max_attempts {
            if self.attempts >= max.get() {
                return None;
            }
        }
        let remaining_ms = match self.policy.max_elapsed {
            Some(budget) => {
                let remaining = to_ms(budget.saturating_sub(elapsed));
                if remaining == 0 {
                    return None;
                }
                remaining
            }
            None => u64::MAX,
        };
        let delay = self.step().min(remaining_ms);
        self.attempts = self.attempts.saturating_add(1);
        self.handed_out_ms = self.handed_out_ms.saturating_add(delay);
        Some(Duration::from_millis(delay))
    }

    /// Computes the next delay in ms and advances the growth state.
    fn step(&mut self) -> u64 {
        let base = self.base_ms as u64;
        let delay = match self.policy.jitter {
            Jitter::None => base,
            Jitter::Full => self.rng.range_inclusive(0, base),
            Jitter::Equal => (base - base / 2) + self.rng.range_inclusive(0, base / 2),
            Jitter::Decorrelated => {
                let hi = self.prev_ms.saturating_mul(3);
                let d = self
                    .rng
                    .range_inclusive(self.initial_ms, hi)
                    .min(self.max_ms);
                self.prev_ms = d;
                d
            }
            Jitter::Proportional { factor } => {
                // factor <= 1, so spread <= base and nothing underflows; the
                // sum stays below 2^55, far from overflow.
                let spread = (base as f64 * factor) as u64;
                (base - spread + self.rng.range_inclusive(0, 2 * spread)).min(self.max_ms)
            }
        };
        let max = self.max_ms as f64;
        self.base_ms = match self.policy.strategy {
            Strategy::Constant => self.base_ms,
            // Both operands are below 2^53; a sum that rounds lands above max anyway.
            Strategy::Linear { step } => (self.base_ms + to_ms(step) as f64).min(max),
            Strategy::Exponential { multiplier } => (self.base_ms * multiplier).min(max),
        };
        delay
    }

    /// Starts over: the next delay is computed from `initial_delay` again and
    /// the attempt count is zero. The random sequence continues (it is not re-seeded).
    pub fn reset(&mut self) {
        self.base_ms = self.initial_ms as f64;
        self.prev_ms = self.initial_ms;
        self.attempts = 0;
        self.handed_out_ms = 0;
    }

    /// How many delays were handed out since creation or the last [`reset`](Self::reset).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The policy in force (after the clamping described in [`new`](Self::new)).
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    /// [`next_delay`](Backoff::next_delay) with `elapsed` = the sum of the delays handed out since the last reset.
    fn next(&mut self) -> Option<Duration> {
        self.next_delay(Duration::from_millis(self.handed_out_ms))
    }
}

mod serde_form {
    //! The flat serde shape of [`BackoffPolicy`] (see the module docs).

    use super::*;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum StrategyKind {
        Constant,
        Linear,
        Exponential,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum JitterKind {
        None,
        Full,
        Equal,
        Decorrelated,
        Proportional,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Form {
        strategy: StrategyKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        multiplier: Option<f64>,
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "crate::duration::human_opt::serialize",
            deserialize_with = "de_step"
        )]
        step: Option<Duration>,
        #[serde(
            serialize_with = "crate::duration::human::serialize",
            deserialize_with = "de_initial_delay"
        )]
        initial_delay: Duration,
        #[serde(
            serialize_with = "crate::duration::human::serialize",
            deserialize_with = "de_max_delay"
        )]
        max_delay: Duration,
        jitter: JitterKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        jitter_factor: Option<f64>,
        /// Signed so that `-1` gets our message naming the field, not serde's.
        max_attempts: Option<i64>,
        #[serde(
            serialize_with = "crate::duration::human_opt::serialize",
            deserialize_with = "de_max_elapsed"
        )]
        max_elapsed: Option<Duration>,
    }

    fn de_step<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        crate::duration::deserialize_opt_field(d, "step")
    }
    fn de_initial_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        crate::duration::deserialize_field(d, "initial_delay")
    }
    fn de_max_delay<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        crate::duration::deserialize_field(d, "max_delay")
    }
    fn de_max_elapsed<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        crate::duration::deserialize_opt_field(d, "max_elapsed")
    }

    impl Default for Form {
        /// Missing fields: those of `BackoffPolicy::default()`, with the
        /// variant-specific ones absent so they are filled in per variant.
        fn default() -> Self {
            let p = BackoffPolicy::default();
            Form {
                strategy: StrategyKind::Exponential,
                multiplier: None,
                step: None,
                initial_delay: p.initial_delay,
                max_delay: p.max_delay,
                jitter: JitterKind::Equal,
                jitter_factor: None,
                max_attempts: None,
                max_elapsed: None,
            }
        }
    }

    impl From<&BackoffPolicy> for Form {
        fn from(p: &BackoffPolicy) -> Self {
            let (strategy, multiplier, step) = match p.strategy {
                Strategy::Constant => (StrategyKind::Constant, None, None),
                Strategy::Linear { step } => (StrategyKind::Linear, None, Some(step)),
                Strategy::Exponential { multiplier } => {
                    (StrategyKind::Exponential, Some(multiplier), None)
                }
            };
            let (jitter, jitter_factor) = match p.jitter {
                Jitter::None => (JitterKind::None, None),
                Jitter::Full => (JitterKind::Full, None),
                Jitter::Equal => (JitterKind::Equal, None),
                Jitter::Decorrelated => (JitterKind::Decorrelated, None),
                Jitter::Proportional { factor } => (JitterKind::Proportional, Some(factor)),
            };
            Form {
                strategy,
                multiplier,
                step,
                initial_delay: p.initial_delay,
                max_delay: p.max_delay,
                jitter,
                jitter_factor,
                max_attempts: p.max_attempts.map(|n| i64::from(n.get())),
                max_elapsed: p.max_elapsed,
            }
        }
    }

    impl TryFrom<Form> for BackoffPolicy {
        type Error = ConfigError;

        fn try_from(f: Form) -> Result<Self, ConfigError> {
            let only_with = |field: &'static str, what: &str| {
                ConfigError::invalid(field, format!("applies only to {what}"))
            };
            let strategy = match f.strategy {
                StrategyKind::Constant | StrategyKind::Linear if f.multiplier.is_some() => {
                    return Err(only_with("multiplier", "strategy \"exponential\""));
                }
                StrategyKind::Constant | StrategyKind::Exponential if f.step.is_some() => {
                    return Err(only_with("step", "strategy \"linear\""));
                }
                StrategyKind::Constant => Strategy::Constant,
                StrategyKind::Linear => Strategy::Linear {
                    step: f.step.ok_or_else(|| {
                        ConfigError::invalid("step", "is required with strategy \"linear\"")
                    })?,
                },
                StrategyKind::Exponential => Strategy::Exponential {
                    multiplier: f.multiplier.unwrap_or(Strategy::DEFAULT_MULTIPLIER),
                },
            };
            let jitter = match f.jitter {
                JitterKind::Proportional => Jitter::Proportional {
                    factor: f
                        .jitter_factor
                        .unwrap_or(Jitter::DEFAULT_PROPORTIONAL_FACTOR),
                },
                _ if f.jitter_factor.is_some() => {
                    return Err(only_with("jitter_factor", "jitter \"proportional\""));
                }
                JitterKind::None => Jitter::None,
                JitterKind::Full => Jitter::Full,
                JitterKind::Equal => Jitter::Equal,
                JitterKind::Decorrelated => Jitter::Decorrelated,
            };
            let max_attempts = match f.max_attempts {
                None => None,
                Some(n) => Some(
                    u32::try_from(n)
                        .ok()
                        .and_then(NonZeroU32::new)
                        .ok_or_else(|| {
                            ConfigError::invalid(
                                "max_attempts",
                                format!(
                                    "must be between 1 and {}, got {n}; leave it out (or null) for no limit",
                                    u32::MAX
                                ),
                            )
                        })?,
                ),
            };
            BackoffPolicy {
                strategy,
                initial_delay: f.initial_delay,
                max_delay: f.max_delay,
                jitter,
                max_attempts,
                max_elapsed: f.max_elapsed,
            }
            .build()
        }
    }

    impl Serialize for BackoffPolicy {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Form::from(self).serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for BackoffPolicy {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            BackoffPolicy::try_from(Form::deserialize(d)?).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn take(policy: BackoffPolicy, seed: u64, n: usize) -> Vec<u64> {
        Backoff::new(policy, seed)
            .take(n)
            .map(|d| d.as_millis() as u64)
            .collect()
    }

    fn plain(strategy: Strategy) -> BackoffPolicy {
        BackoffPolicy::default()
            .strategy(strategy)
            .jitter(Jitter::None)
    }

    #[test]
    fn default_is_the_redis_client_policy() {
        let p = BackoffPolicy::default();
        assert_eq!(p.strategy, Strategy::Exponential { multiplier: 2.0 });
        assert_eq!((p.initial_delay, p.max_delay), (ms(100), ms(5000)));
        assert_eq!(p.jitter, Jitter::Equal);
        assert_eq!((p.max_attempts, p.max_elapsed), (None, None));
        assert_eq!(p.validate(), Ok(()));
        for seed in 0..1000 {
            let d = take(p.clone(), seed, 8);
            assert!((50..=100).contains(&d[0]), "{d:?}");
            assert!((100..=200).contains(&d[1]), "{d:?}");
            assert!((1600..=3200).contains(&d[5]), "{d:?}");
            assert!((2500..=5000).contains(&d[7]), "{d:?}");
        }
    }

    #[test]
    fn grpc_preset_follows_the_connection_backoff_spec() {
        let p = BackoffPolicy::grpc();
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(p.jitter, Jitter::Proportional { factor: 0.2 });
        let unjittered = take(p.clone().jitter(Jitter::None), 0, 14);
        assert_eq!(
            unjittered,
            [
                1000, 1600, 2560, 4096, 6553, 10485, 16777, 26843, 42949, 68719, 109951, 120000,
                120000, 120000
            ]
        );
        for seed in 0..1000 {
            let d = take(p.clone(), seed, 14);
            assert!((800..=1200).contains(&d[0]), "{d:?}");
            assert!((1280..=1920).contains(&d[1]), "{d:?}");
            assert!((96_000..=120_000).contains(&d[13]), "{d:?}");
        }
    }

    #[test]
    fn strategies_grow_as_documented_and_stop_at_max_delay() {
        assert_eq!(take(plain(Strategy::Constant), 0, 3), [100, 100, 100]);
        let linear = plain(Strategy::Linear { step: ms(1500) });
        assert_eq!(take(linear, 0, 5), [100, 1600, 3100, 4600, 5000]);
        let exp = plain(Strategy::Exponential { multiplier: 1.5 }).max_delay(ms(1000));
        assert_eq!(take(exp, 0, 8), [100, 150, 225, 337, 506, 759, 1000, 1000]);
        let flat = plain(Strategy::Exponential { multiplier: 1.0 });
        assert_eq!(take(flat, 0, 3), [100, 100, 100]);
    }

    #[test]
    fn jitters_stay_within_their_formulas() {
        let base = plain(Strategy::Constant)
            .initial_delay(ms(1000))
            .max_delay(ms(10_000));
        let mut seen_low = [false; 4];
        let mut b = [
            Backoff::new(base.clone().jitter(Jitter::Full), 1),
            Backoff::new(base.clone().jitter(Jitter::Equal), 1),
            Backoff::new(base.clone().jitter(Jitter::Proportional { factor: 0.5 }), 1),
            Backoff::new(base.clone().jitter(Jitter::Decorrelated), 1),
        ];
        for _ in 0..2000 {
            let d: Vec<u64> = b
                .iter_mut()
                .map(|b| b.next().unwrap().as_millis() as u64)
                .collect();
            assert!(d[0] <= 1000);
            assert!((500..=1000).contains(&d[1]));
            assert!((500..=1500).contains(&d[2]));
            assert!((1000..=10_000).contains(&d[3]));
            seen_low[0] |= d[0] < 100;
            seen_low[1] |= d[1] < 550;
            seen_low[2] |= d[2] < 550;
            seen_low[3] |= d[3] < 1100;
        }
        assert_eq!(seen_low, [true; 4]);
    }

    #[test]
    fn decorrelated_grows_from_the_previous_delay() {
        let p = plain(Strategy::Constant)
            .jitter(Jitter::Decorrelated)
            .max_delay(ms(1_000_000));
        let mut b = Backoff::new(p, 3);
        let mut prev = 100;
        for _ in 0..30 {
            let d = b.next().unwrap().as_millis() as u64;
            assert!((100..=prev * 3).contains(&d), "{d} after {prev}");
            prev = d;
        }
    }

    #[test]
    fn max_attempts_stops_the_sequence_until_reset() {
        let p = plain(Strategy::Constant).max_attempts(NonZeroU32::new(3));
        let mut b = Backoff::new(p, 0);
        assert_eq!(b.by_ref().count(), 3);
        assert_eq!(b.attempts(), 3);
        assert_eq!(b.next_delay(Duration::ZERO), None);
        assert_eq!(b.attempts(), 3);
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay(Duration::ZERO), Some(ms(100)));
    }

    #[test]
    fn max_elapsed_shortens_the_last_delay_then_stops() {
        let p = plain(Strategy::Constant)
            .initial_delay(ms(400))
            .max_elapsed(Some(ms(1000)));
        assert_eq!(take(p.clone(), 0, 10), [400, 400, 200]);
        let mut b = Backoff::new(p, 0);
        assert_eq!(b.next_delay(ms(999)), Some(ms(1)));
        assert_eq!(b.next_delay(ms(1000)), None);
        assert_eq!(b.next_delay(ms(5000)), None);
        // Less than a whole millisecond left: give up rather than return 0 ms.
        assert_eq!(b.next_delay(Duration::from_micros(999_500)), None);
        // Not sticky: the caller's clock decides.
        assert_eq!(b.next_delay(ms(100)), Some(ms(400)));
        assert_eq!(b.attempts(), 2);
    }

    #[test]
    fn reset_restarts_growth_but_continues_the_random_sequence() {
        let mut b = Backoff::new(BackoffPolicy::default().jitter(Jitter::Full), 9);
        let first: Vec<_> = b.by_ref().take(4).collect();
        b.reset();
        let again: Vec<_> = b.by_ref().take(4).collect();
        assert!(again[0] <= ms(100));
        assert_ne!(first, again);
        let mut unjittered = Backoff::new(plain(Strategy::Exponential { multiplier: 2.0 }), 9);
        unjittered.by_ref().take(5).for_each(drop);
        unjittered.reset();
        assert_eq!(unjittered.next(), Some(ms(100)));
    }

    #[test]
    fn same_seed_same_delays() {
        let p = BackoffPolicy::default().jitter(Jitter::Decorrelated);
        assert_eq!(take(p.clone(), 42, 50), take(p.clone(), 42, 50));
        assert_ne!(take(p.clone(), 42, 50), take(p, 43, 50));
    }

    #[test]
    fn validate_names_the_field() {
        let d = BackoffPolicy::default;
        let field = |p: BackoffPolicy| p.validate().unwrap_err().field();
        assert_eq!(field(d().initial_delay(Duration::ZERO)), "initial_delay");
        assert_eq!(
            field(d().initial_delay(Duration::from_micros(1500))),
            "initial_delay"
        );
        assert_eq!(field(d().max_delay(ms(50))), "max_delay");
        assert_eq!(
            field(d().max_delay(Duration::from_secs(u64::MAX))),
            "max_delay"
        );
        for m in [0.5, f64::NAN, f64::INFINITY, -2.0] {
            let p = d().strategy(Strategy::Exponential { multiplier: m });
            assert_eq!(field(p), "multiplier");
        }
        assert_eq!(
            field(d().strategy(Strategy::Linear {
                step: Duration::ZERO
            })),
            "step"
        );
        for f in [-0.1, 1.5, f64::NAN] {
            assert_eq!(
                field(d().jitter(Jitter::Proportional { factor: f })),
                "jitter_factor"
            );
        }
        assert_eq!(field(d().max_elapsed(Some(Duration::ZERO))), "max_elapsed");
        let err = d().max_delay(ms(50)).build().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid `max_delay`: must be at least `initial_delay` (100ms), got 50ms"
        );
        assert!(d()
            .strategy(Strategy::Linear { step: ms(1) })
            .build()
            .is_ok());
        assert!(d()
            .jitter(Jitter::Proportional { factor: 0.0 })
            .build()
            .is_ok());
        assert!(d()
            .jitter(Jitter::Proportional { factor: 1.0 })
            .build()
            .is_ok());
    }

    #[test]
    fn new_clamps_nonsense_instead_of_panicking() {
        let p = BackoffPolicy::default()
            .strategy(Strategy::Exponential {
                multiplier: f64::NAN,
            })
            .initial_delay(Duration::ZERO)
            .max_delay(Duration::ZERO)
            .jitter(Jitter::Proportional {
                factor: f64::INFINITY,
            });
        let b = Backoff::new(p, 0);
        assert_eq!(b.policy().initial_delay, ms(1));
        assert_eq!(b.policy().max_delay, ms(1));
        assert_eq!(
            b.policy().strategy,
            Strategy::Exponential { multiplier: 1.0 }
        );
        assert_eq!(b.policy().jitter, Jitter::Proportional { factor: 1.0 });
        assert!(b.take(100).all(|d| d <= ms(1)));

        let huge = BackoffPolicy::default()
            .strategy(Strategy::Exponential {
                multiplier: f64::INFINITY,
            })
            .initial_delay(Duration::MAX)
            .max_delay(Duration::MAX)
            .jitter(Jitter::Decorrelated);
        let b = Backoff::new(huge, 0);
        assert_eq!(b.policy().max_delay, MAX_DELAY_LIMIT);
        assert!(b.take(100).all(|d| d == MAX_DELAY_LIMIT));

        let linear = BackoffPolicy::default()
            .strategy(Strategy::Linear {
                step: Duration::MAX,
            })
            .max_delay(Duration::MAX)
            .jitter(Jitter::Proportional { factor: 1.0 });
        assert!(Backoff::new(linear, 5)
            .take(100)
            .all(|d| d <= MAX_DELAY_LIMIT));
    }
}
