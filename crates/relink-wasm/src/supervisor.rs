//! `Supervisor`: the core's connectivity state machine.

use relink_core::cause::{AttemptFailure, Evidence};
use relink_core::failover::FailoverSignal;
use relink_core::supervisor::{
    Action, AsideVerdict, Event, HeartbeatConfig, Input, Output, SupervisorConfig, SupervisorHealth,
};
use relink_core::Timestamp;
use wasm_bindgen::prelude::*;

use crate::convert::{
    self, millis, ms, number, or_null, seed, unknown, unknown_variant, Fields, Obj, Result,
    INVALID_ARGUMENT, MAX_SAFE_INTEGER,
};
use crate::shapes::{cause_from_js, cause_to_js, kind_to_js};

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
        let config = convert::config(&config, "config", config_from, SupervisorConfig::validate)?;
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
        let input = input_from(&input)?;
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
        let output =
            |kind, value: JsValue| Ok(Obj::tagged("kind", kind).with("value", value).into());
        match self.0.poll_output(now) {
            Output::Action(action) => output("action", action_to_js(action)?),
            Output::Event(event) => output("event", event_to_js(event)?),
            // Only a config of absurd durations gets a deadline past 2^53 ms
            // (285,000 years); as a number it means the same: never.
            Output::Timeout(t) => output("timeout", number(t.as_millis().min(MAX_SAFE_INTEGER))?),
            Output::Idle => Ok(Obj::tagged("kind", "idle").into()),
            _ => Err(unknown_variant()),
        }
    }

    /// A snapshot: `{state, since, attempt, last_failure, heartbeat_misses, rtt,
    /// next_attempt_at, busy_since, last_attempt_failure, misconfigured}`
    /// (times in ms, `null` when unknown; `busy_since` is set while a Ready
    /// connection is confirmed busy; `last_attempt_failure` is `{attempt,
    /// cause, evidence}` or `null`; `misconfigured`: the last attempt failed
    /// for a cause retrying will not fix, so commands should fail at once).
    pub fn health(&self) -> Result<JsValue> {
        health_to_js(&self.0.health())
    }

    /// The current state: `"idle"`, `"connecting"`, `"ready"`,
    /// `"transient_failure"` or `"shutdown"`.
    #[wasm_bindgen(getter)]
    pub fn state(&self) -> String {
        self.0.state().as_str().into()
    }
}

const TYPE: &str = "type";

/// Reads a supervisor config in the core's serde shape (missing fields: the
/// default's).
fn config_from(f: &Fields) -> Result<SupervisorConfig> {
    f.only(&[
        "backoff",
        "heartbeat",
        "connect_timeout",
        "backoff_reset_after",
        "misconfigured_backoff",
        "refused_max_delay",
        "failover_hold",
    ])?;
    let mut config = SupervisorConfig::default();
    if let Some(backoff) = f.object("backoff")? {
        config.backoff = crate::backoff::policy_from(&backoff)?;
    }
    if let Some(heartbeat) = f.object("heartbeat")? {
        config.heartbeat = heartbeat_from(&heartbeat)?;
    }
    if let Some(timeout) = f.duration("connect_timeout")? {
        config.connect_timeout = timeout;
    }
    if let Some(after) = f.duration("backoff_reset_after")? {
        config.backoff_reset_after = after;
    }
    if let Some(backoff) = f.object("misconfigured_backoff")? {
        config.misconfigured_backoff = crate::backoff::policy_from(&backoff)?;
    }
    if let Some(delay) = f.duration("refused_max_delay")? {
        config.refused_max_delay = delay;
    }
    if let Some(hold) = f.duration("failover_hold")? {
        config.failover_hold = hold;
    }
    Ok(config)
}

/// A failover signal by its serde name (`"master_down"`, `"switched"`, …).
fn signal_from(value: &JsValue, path: &str) -> Result<FailoverSignal> {
    let name = value.as_string().unwrap_or_default();
    FailoverSignal::ALL
        .into_iter()
        .find(|s| s.as_str() == name)
        .ok_or_else(|| {
            unknown(
                INVALID_ARGUMENT,
                path,
                value,
                "one of `master_subjectively_down`, `master_down`, `master_up`, `started`, \
             `ended`, `aborted`, `switched`",
            )
        })
}

fn heartbeat_from(f: &Fields) -> Result<HeartbeatConfig> {
    f.only(&["interval", "timeout", "misses_allowed"])?;
    let mut heartbeat = HeartbeatConfig::default();
    if let Some(interval) = f.duration("interval")? {
        heartbeat.interval = interval;
    }
    if let Some(timeout) = f.duration("timeout")? {
        heartbeat.timeout = timeout;
    }
    if let Some(misses) = f.u32("misses_allowed")? {
        heartbeat.misses_allowed = misses;
    }
    Ok(heartbeat)
}

/// Reads an input in the core's serde shape: `{type: ...}` and the fields
/// of that type (others are ignored, as serde's internally tagged form does).
fn input_from(input: &JsValue) -> Result<Input> {
    let f = Fields::new(input, "input", INVALID_ARGUMENT)?;
    let tag = f.get(TYPE).and_then(|t| t.as_string()).unwrap_or_default();
    Ok(match tag.as_str() {
        "start" => Input::Start,
        "connected" => Input::Connected {
            attempt: f.required_u32("attempt")?,
        },
        "connect_failed" => {
            // `cause`, also accepted under its old name `kind`.
            let (key, cause) = match f.get("cause") {
                Some(cause) => ("cause", cause),
                None => (
                    "kind",
                    f.get("kind")
                        .ok_or_else(|| f.fail("cause", "missing field"))?,
                ),
            };
            let evidence = match f.get("evidence") {
                None => Evidence::default(),
                Some(e) if e.is_null() => Evidence::default(),
                Some(e) => Evidence::new(&e.as_string().ok_or_else(|| {
                    f.fail(
                        "evidence",
                        "must be a string (the server's words or the peer's first bytes), or \
                         null for none",
                    )
                })?),
            };
            Input::ConnectFailed {
                attempt: f.required_u32("attempt")?,
                cause: cause_from_js(&cause, &f.path(key), INVALID_ARGUMENT)?,
                evidence,
            }
        }
        "pong" => Input::Pong { id: f.u64("id")? },
        "ping_failed" => Input::PingFailed {
            id: f.u64("id")?,
            kind: f.kind("kind")?,
        },
        "activity" => Input::Activity,
        "command_failed" => Input::CommandFailed {
            kind: f.kind("kind")?,
        },
        "connection_lost" => Input::ConnectionLost {
            kind: f.kind("kind")?,
        },
        "server_moved" => Input::ServerMoved,
        "failover" => Input::Failover {
            signal: signal_from(&f.required("signal")?, &f.path("signal"))?,
        },
        "shutdown" => Input::Shutdown,
        "reconfigured" => Input::Reconfigured,
        "work_outstanding" => Input::WorkOutstanding { id: f.u64("id")? },
        "aside_checked" => Input::AsideChecked {
            id: f.u64("id")?,
            verdict: verdict_from(&f.required("verdict")?, &f.path("verdict"))?,
        },
        _ => {
            return Err(unknown(
                INVALID_ARGUMENT,
                &f.path(TYPE),
                &f.get(TYPE).unwrap_or_default(),
                "one of `start`, `connected`, `connect_failed`, `pong`, `ping_failed`, \
                 `activity`, `command_failed`, `connection_lost`, `server_moved`, `failover`, `shutdown`, \
                 `reconfigured`, `work_outstanding`, `aside_checked`",
            ))
        }
    })
}

fn verdict_from(value: &JsValue, path: &str) -> Result<AsideVerdict> {
    let f = Fields::new(value, path, INVALID_ARGUMENT)?;
    match f.get(TYPE).and_then(|t| t.as_string()).as_deref() {
        Some("busy") => Ok(AsideVerdict::Busy),
        Some("gone") => Ok(AsideVerdict::Gone),
        Some("unreachable") => Ok(AsideVerdict::Unreachable {
            kind: f.kind("kind")?,
        }),
        _ => Err(unknown(
            INVALID_ARGUMENT,
            &f.path(TYPE),
            &f.get(TYPE).unwrap_or_default(),
            "one of `busy`, `gone`, `unreachable`",
        )),
    }
}

/// A verdict in the core's serde shape.
pub(crate) fn verdict_to_js(verdict: AsideVerdict) -> Result<JsValue> {
    Ok(match verdict {
        AsideVerdict::Busy => Obj::tagged(TYPE, "busy"),
        AsideVerdict::Gone => Obj::tagged(TYPE, "gone"),
        AsideVerdict::Unreachable { kind } => {
            Obj::tagged(TYPE, "unreachable").with("kind", kind_to_js(kind))
        }
        _ => return Err(unknown_variant()),
    }
    .into())
}

fn action_to_js(action: Action) -> Result<JsValue> {
    Ok(match action {
        Action::Connect { attempt } => Obj::tagged(TYPE, "connect").with("attempt", attempt),
        // A ping id is a u64 identity: a BigInt, like every other one.
        Action::SendPing { id } => Obj::tagged(TYPE, "send_ping").with("id", id),
        Action::Disconnect => Obj::tagged(TYPE, "disconnect"),
        Action::CheckAside { id } => Obj::tagged(TYPE, "check_aside").with("id", id),
        _ => return Err(unknown_variant()),
    }
    .into())
}

fn event_to_js(event: Event) -> Result<JsValue> {
    let tag = |tag| Obj::tagged(TYPE, tag);
    Ok(match event {
        Event::StateChanged { from, to } => tag("state_changed")
            .with("from", from.as_str())
            .with("to", to.as_str()),
        Event::Connected { attempts } => tag("connected").with("attempts", attempts),
        Event::Reconnected { downtime, attempts } => tag("reconnected")
            .with("downtime", ms(downtime)?)
            .with("attempts", attempts),
        Event::Disconnected { cause } => tag("disconnected").with("cause", kind_to_js(cause)),
        Event::ReconnectScheduled { attempt, delay } => tag("reconnect_scheduled")
            .with("attempt", attempt)
            .with("delay", ms(delay)?),
        Event::HeartbeatMissed { misses } => tag("heartbeat_missed").with("misses", misses),
        Event::BusyConfirmed { busy_for } => tag("busy_confirmed").with("busy_for", ms(busy_for)?),
        Event::ConnectAttemptFailed {
            failure,
            misconfigured,
            retry_in,
        } => tag("connect_attempt_failed")
            .with("failure", attempt_failure_to_js(&failure))
            .with("misconfigured", misconfigured)
            .with("retry_in", or_null(retry_in, ms)?),
        Event::ServerMoved => tag("server_moved"),
        Event::FailoverStarted { signal } => {
            tag("failover_started").with("signal", signal.as_str())
        }
        Event::FailoverEnded { held_for, expired } => tag("failover_ended")
            .with("held_for", ms(held_for)?)
            .with("expired", expired),
        Event::GaveUp { attempts, elapsed } => tag("gave_up")
            .with("attempts", attempts)
            .with("elapsed", ms(elapsed)?),
        _ => return Err(unknown_variant()),
    }
    .into())
}

fn attempt_failure_to_js(failure: &AttemptFailure) -> JsValue {
    Obj::new()
        .with("attempt", failure.attempt)
        .with("cause", cause_to_js(failure.cause))
        .with("evidence", failure.evidence.as_str())
        .into()
}

fn health_to_js(health: &SupervisorHealth) -> Result<JsValue> {
    let time = |t: Timestamp| number(t.as_millis());
    let mut out = Obj::new()
        .with("state", health.state.as_str())
        .with("since", time(health.since)?)
        .with("attempt", health.attempt)
        .with(
            "last_failure",
            or_null(health.last_failure, |k| Ok(kind_to_js(k)))?,
        )
        .with("heartbeat_misses", health.heartbeat_misses)
        .with("rtt", or_null(health.rtt, ms)?)
        .with("next_attempt_at", or_null(health.next_attempt_at, time)?)
        .with("busy_since", or_null(health.busy_since, time)?)
        .with(
            "last_attempt_failure",
            or_null(health.last_attempt_failure.as_ref(), |f| {
                Ok(attempt_failure_to_js(f))
            })?,
        )
        .with("misconfigured", health.misconfigured);
    // Only while set, as in the core's serde form.
    if let Some(since) = health.failover_since {
        out = out.with("failover_since", time(since)?);
    }
    Ok(out.into())
}

fn timestamp(now_ms: &JsValue) -> Result<Timestamp> {
    millis(now_ms, "nowMs").map(Timestamp::from_millis)
}
