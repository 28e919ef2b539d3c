//! `CallPolicy` and `Call`: the core's per-call policy, the decision half of
//! every command.

use core::time::Duration;

use relink_core::call::{CallInput, Decision};
use relink_core::Timestamp;
use wasm_bindgen::prelude::*;

use crate::convert::unknown;
use crate::convert::{
    self, bool_arg, get, millis, number, seed, unknown_variant, Fields, Obj, Result,
    INVALID_ARGUMENT, MAX_SAFE_INTEGER,
};
use crate::shapes::{delivery_from_js, kind_from_js, kind_to_js, outcome_to_js};

/// How every call of a client behaves: the outage policy, retries,
/// redirects, the response timeout, the deadline and the busy backoff.
/// Made once from a plain object and shared by every `Call`.
///
/// ```js
/// const policy = new CallPolicy({ queue_wait: '1s', max_retries: 2, deadline: '5s' });
/// ```
#[wasm_bindgen]
#[repr(transparent)]
#[derive(Debug, Clone)]
pub struct CallPolicy(relink_core::CallPolicy);

#[wasm_bindgen]
impl CallPolicy {
    /// `policy`: a plain object in the core's serde shape (`{queue_wait:
    /// "5s" | null, max_retries: 3, max_redirects: 5, response_timeout: "3s",
    /// deadline: "10s" | null, busy_backoff: {...}}`; `queue_wait: null` is
    /// fail-fast; missing fields take the defaults, `undefined` is the
    /// default policy), validated.
    #[wasm_bindgen(constructor)]
    pub fn new(policy: JsValue) -> Result<CallPolicy> {
        let policy = convert::config(
            &policy,
            "policy",
            policy_from,
            relink_core::CallPolicy::validate,
        )?;
        Ok(CallPolicy(policy))
    }
}

/// One command's progress through a `CallPolicy`. Tell it what you see with
/// `decide(policy, nowMs, input)` and do what it answers: `{type: "send",
/// timeout}`, `{type: "redirect", timeout}` (ms), `{type: "queue", until}`,
/// `{type: "retry_at", at}` (ms on your clock) or `{type: "fail", failure:
/// {outcome, reason, kind}}`.
#[wasm_bindgen]
#[repr(transparent)]
#[derive(Debug, Clone)]
pub struct Call(relink_core::Call);

#[wasm_bindgen]
impl Call {
    /// A call started at `nowMs`, under `policy` (and its deadline).
    /// `idempotent`: safe to apply twice (a read, or a write declared
    /// idempotent). `seed`: a `BigInt` (or a safe-integer number) that spreads
    /// the jitter of waiting calls; a call counter will do.
    #[wasm_bindgen(constructor)]
    pub fn new(
        policy: &CallPolicy,
        now_ms: JsValue,
        idempotent: JsValue,
        seed_value: JsValue,
    ) -> Result<Call> {
        Ok(Call(relink_core::Call::new(
            &policy.0,
            timestamp(&now_ms)?,
            bool_arg(&idempotent, "idempotent")?,
            seed(&seed_value)?,
        )))
    }

    /// Like `new Call` with a deadline of its own: `deadlineMs` after `nowMs`,
    /// or `null` (or `undefined`) for no total bound.
    #[wasm_bindgen(js_name = withDeadline)]
    pub fn with_deadline(
        now_ms: JsValue,
        idempotent: JsValue,
        deadline_ms: JsValue,
        seed_value: JsValue,
    ) -> Result<Call> {
        let deadline = if deadline_ms.is_null() || deadline_ms.is_undefined() {
            None
        } else {
            Some(Duration::from_millis(millis(&deadline_ms, "deadlineMs")?))
        };
        Ok(Call(relink_core::Call::with_deadline(
            timestamp(&now_ms)?,
            bool_arg(&idempotent, "idempotent")?,
            deadline,
            seed(&seed_value)?,
        )))
    }

    /// What to do next, given what you saw at `nowMs`: `{type: "connected"}`,
    /// `{type: "not_connected"}`, `{type: "misconfigured"}` (not connected,
    /// and the supervisor's `health().misconfigured`: fails at once),
    /// `{type: "backlog_full"}`, `{type: "failed", kind, delivery,
    /// budget_allows}`, `{type: "no_reply", alive_since_sent, budget_allows}`
    /// (the attempt's timeout passed without its reply; answered with
    /// `{type: "keep_waiting", timeout}` or a give-up), `{type: "redirected"}`
    /// or `{type: "shutdown"}`. `policy` must be the one the call was made with. Once a
    /// `fail` is given, every later input gets the same one.
    pub fn decide(
        &mut self,
        policy: &CallPolicy,
        now_ms: JsValue,
        input: JsValue,
    ) -> Result<JsValue> {
        let now = timestamp(&now_ms)?;
        let input = input_arg(&input)?;
        // Only a policy of absurd durations reaches past 2^53 ms (285,000
        // years); as a number it means the same: never. (Within that bound
        // `as u64` is exact; durations go out in whole ms, rounded down.)
        let timeout = |d: Duration| d.min(MAX_SAFE_DURATION).as_millis() as u64;
        let time = |t: Timestamp| t.min(MAX_SAFE_TIMESTAMP).as_millis();
        let (tag, key, value) = match self.0.decide(&policy.0, now, input) {
            Decision::Send { timeout: t } => ("send", "timeout", timeout(t)),
            Decision::KeepWaiting { timeout: t } => ("keep_waiting", "timeout", timeout(t)),
            Decision::Redirect { timeout: t } => ("redirect", "timeout", timeout(t)),
            Decision::Queue { until } => ("queue", "until", time(until)),
            Decision::RetryAt { at } => ("retry_at", "at", time(at)),
            Decision::Fail { failure } => {
                let failure = Obj::new()
                    .with("outcome", outcome_to_js(failure.outcome))
                    .with("reason", failure.reason.as_str())
                    .with("kind", failure.kind.map_or(JsValue::NULL, kind_to_js));
                return Ok(Obj::tagged(TYPE, "fail").with("failure", failure).into());
            }
            _ => return Err(unknown_variant()),
        };
        Ok(Obj::tagged(TYPE, tag).with(key, number(value)?).into())
    }

    /// Retries spent so far.
    #[wasm_bindgen(getter)]
    pub fn retries(&self) -> u32 {
        self.0.retries()
    }

    /// Redirects followed so far.
    #[wasm_bindgen(getter)]
    pub fn redirects(&self) -> u32 {
        self.0.redirects()
    }

    /// The call's deadline in ms on your clock, or `undefined` for none.
    #[wasm_bindgen(getter)]
    pub fn deadline(&self) -> Option<f64> {
        self.0
            .deadline()
            .map(|d| d.min(MAX_SAFE_TIMESTAMP).as_millis() as f64)
    }

    /// Has the call ended (a `fail` was given)?
    #[wasm_bindgen(getter, js_name = isDone)]
    pub fn is_done(&self) -> bool {
        self.0.is_done()
    }
}

const TYPE: &str = "type";

const MAX_SAFE_TIMESTAMP: Timestamp = Timestamp::from_millis(MAX_SAFE_INTEGER);
const MAX_SAFE_DURATION: Duration = Duration::from_millis(MAX_SAFE_INTEGER);

fn timestamp(now_ms: &JsValue) -> Result<Timestamp> {
    millis(now_ms, "nowMs").map(Timestamp::from_millis)
}

/// Reads a call policy in the core's serde shape (missing fields: the
/// default's).
fn policy_from(f: &Fields) -> Result<relink_core::CallPolicy> {
    f.only(&[
        "queue_wait",
        "max_retries",
        "max_redirects",
        "response_timeout",
        "deadline",
        "busy_backoff",
    ])?;
    let mut policy = relink_core::CallPolicy::default();
    if let Some(wait) = f.opt_duration("queue_wait")? {
        policy.queue_wait = wait;
    }
    if let Some(n) = f.u32("max_retries")? {
        policy.max_retries = n;
    }
    if let Some(n) = f.u32("max_redirects")? {
        policy.max_redirects = n;
    }
    if let Some(timeout) = f.duration("response_timeout")? {
        policy.response_timeout = timeout;
    }
    if let Some(deadline) = f.opt_duration("deadline")? {
        policy.deadline = deadline;
    }
    if let Some(backoff) = f.object("busy_backoff")? {
        policy.busy_backoff = crate::backoff::policy_from(&backoff)?;
    }
    Ok(policy)
}

/// Reads an input in the core's serde shape: `{type: ...}` and the fields
/// of that type (others are ignored, as serde's internally tagged form does).
fn input_arg(input: &JsValue) -> Result<CallInput> {
    let field = |name: &str| get(input, name);
    let tag = if input.is_object() {
        field("type").as_string()
    } else {
        None
    };
    Ok(match tag.as_deref() {
        Some("connected") => CallInput::Connected,
        Some("not_connected") => CallInput::NotConnected,
        Some("backlog_full") => CallInput::BacklogFull,
        Some("redirected") => CallInput::Redirected,
        Some("shutdown") => CallInput::Shutdown,
        Some("misconfigured") => CallInput::Misconfigured,
        Some("writes_held") => CallInput::WritesHeld,
        Some("no_reply") => CallInput::NoReply {
            alive_since_sent: bool_arg(&field("alive_since_sent"), "input.alive_since_sent")?,
            budget_allows: bool_arg(&field("budget_allows"), "input.budget_allows")?,
        },
        Some("failed") => CallInput::Failed {
            kind: kind_from_js(&field("kind"), "input.kind", INVALID_ARGUMENT)?,
            delivery: delivery_from_js(&field("delivery"), "input.delivery", INVALID_ARGUMENT)?,
            budget_allows: bool_arg(&field("budget_allows"), "input.budget_allows")?,
        },
        _ => {
            return Err(unknown(
                INVALID_ARGUMENT,
                "input.type",
                &field("type"),
                "an object whose `type` is \"connected\", \"not_connected\", \
                 \"misconfigured\", \"backlog_full\", \"failed\", \"no_reply\", \
                 \"writes_held\", \"redirected\" or \"shutdown\"",
            ));
        }
    })
}
