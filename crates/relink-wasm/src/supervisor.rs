//! `Supervisor`: the core's connectivity state machine.

use relink_core::supervisor::{Action, Input, Output, SupervisorConfig};
use relink_core::Timestamp;
use wasm_bindgen::prelude::*;

use crate::convert::{
    self, error, from_plain, millis, plain, seed, set, to_js, Result, INVALID_ARGUMENT,
    MAX_SAFE_INTEGER,
};

/// Decides when to connect, ping, give a connection up and try again. Feed it
/// inputs with `handleInput(nowMs, input)`, then drain `pollOutput(nowMs)`
/// until it returns `{kind: "timeout", value: deadlineMs}` or `{kind: "idle"}`.
#[wasm_bindgen]
#[repr(transparent)]
#[derive(Debug)]
pub struct Supervisor(relink_core::Supervisor);

#[wasm_bindgen]
impl Supervisor {
    /// `config`: a plain object in the core's serde shape (`{backoff: {...},
    /// heartbeat: {interval: "1s", timeout: "1s", misses_allowed: 0},
    /// connect_timeout: "2s", backoff_reset_after: "10s",
    /// misconfigured_backoff: {...}}`; missing fields take the defaults,
    /// `undefined` is the default config), validated. `seed`: a
    /// `BigInt` (or a safe-integer number) for the backoff jitter.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue, seed_value: JsValue) -> Result<Supervisor> {
        let config = convert::config(config, "config", SupervisorConfig::validate)?;
        Ok(Supervisor(relink_core::Supervisor::new(
            config,
            seed(&seed_value)?,
        )))
    }

    /// Feeds one input (`{type: "start"}`, `{type: "connected", attempt}`,
    /// `{type: "connect_failed", attempt, cause, evidence}` (`cause` as
    /// `connectCause` names it, also accepted under its old name `kind`;
    /// `evidence`, optional: the server's words or the peer's first bytes,
    /// redacted, kept to 120 bytes), `{type: "pong", id}`,
    /// `{type: "ping_failed", id, kind}`, `{type: "activity"}`,
    /// `{type: "command_failed", kind}`, `{type: "connection_lost", kind}`,
    /// `{type: "server_moved"}`, `{type: "work_outstanding", id}` (commands
    /// were in flight when PING `id` was sent), `{type: "aside_checked", id,
    /// verdict}` with `verdict` one of `{type: "busy"}`, `{type: "gone"}`,
    /// `{type: "unreachable", kind}`, `{type: "reconfigured"}` (new
    /// credentials: retry at once) or `{type: "shutdown"}`) that happened at
    /// `nowMs`.
    #[wasm_bindgen(js_name = handleInput)]
    pub fn handle_input(&mut self, now_ms: JsValue, input: JsValue) -> Result<()> {
        let now = timestamp(&now_ms)?;
        let mut input = plain(input, "input", INVALID_ARGUMENT)?;
        evidence_arg(&mut input)?;
        let input: Input = from_plain(input, "input", INVALID_ARGUMENT)?;
        self.0.handle_input(now, input);
        Ok(())
    }

    /// The next output: `{kind: "action", value: {type: "connect", attempt} |
    /// {type: "send_ping", id: BigInt} | {type: "check_aside", id: BigInt} |
    /// {type: "disconnect"}}`, `{kind: "event", value: {type: ...}}`, `{kind:
    /// "timeout", value: deadlineMs}` or `{kind: "idle"}`. Events include
    /// `{type: "connect_attempt_failed", failure: {attempt, cause, evidence},
    /// misconfigured, retry_in}` (`retry_in` ms, `null` when it gave up).
    #[wasm_bindgen(js_name = pollOutput)]
    pub fn poll_output(&mut self, now_ms: JsValue) -> Result<JsValue> {
        let now = timestamp(&now_ms)?;
        let output = match self.0.poll_output(now) {
            // Only a config of absurd durations gets a deadline past 2^53 ms
            // (285,000 years); as a number it means the same: never.
            Output::Timeout(t) => Output::Timeout(t.min(Timestamp::from_millis(MAX_SAFE_INTEGER))),
            other => other,
        };
        let value = to_js(&output, false)?;
        // A ping id is a u64 identity: a BigInt, like every other one.
        if let Output::Action(Action::SendPing { id } | Action::CheckAside { id }) = output {
            let action = js_sys::Reflect::get(&value, &JsValue::from_str("value"))?;
            set(&action, "id", &JsValue::from(id));
        }
        Ok(value)
    }

    /// A snapshot: `{state, since, attempt, last_failure, heartbeat_misses, rtt,
    /// next_attempt_at, busy_since, last_attempt_failure, misconfigured}`
    /// (times in ms, `null` when unknown; `busy_since` is set while a Ready
    /// connection is confirmed busy; `last_attempt_failure` is `{attempt,
    /// cause, evidence}` or `null`; `misconfigured`: the last attempt failed
    /// for a cause retrying will not fix, so commands should fail at once).
    pub fn health(&self) -> Result<JsValue> {
        to_js(&self.0.health(), false)
    }

    /// The current state: `"idle"`, `"connecting"`, `"ready"`,
    /// `"transient_failure"` or `"shutdown"`.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.0.state().as_str().into()
    }
}

/// A connect failure's `evidence` is optional: `null` (as from
/// `err?.message`) is none. Checked here because serde's tagged enums lose
/// the path to a bad field, and the error must name it.
fn evidence_arg(input: &mut serde_json::Value) -> Result<()> {
    let Some(fields) = input.as_object_mut() else {
        return Ok(());
    };
    if fields.get("type").and_then(serde_json::Value::as_str) != Some("connect_failed") {
        return Ok(());
    }
    match fields.get_mut("evidence") {
        None | Some(serde_json::Value::String(_)) => Ok(()),
        Some(none @ serde_json::Value::Null) => {
            *none = serde_json::Value::String(String::new());
            Ok(())
        }
        Some(_) => Err(error(
            INVALID_ARGUMENT,
            "input.evidence",
            "invalid `input.evidence`: must be a string (the server's words or the peer's \
             first bytes), or null for none",
        )),
    }
}

fn timestamp(now_ms: &JsValue) -> Result<Timestamp> {
    millis(now_ms, "nowMs").map(Timestamp::from_millis)
}
