//! `Backoff`: the core's reconnect delay sequence.

use core::time::Duration;

use relink_core::time::ceil_millis;
use relink_core::BackoffPolicy;
use wasm_bindgen::prelude::*;

use crate::convert::{from_js, millis, seed, Result, INVALID_CONFIG};

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
            from_js(policy, "policy", INVALID_CONFIG)?
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
