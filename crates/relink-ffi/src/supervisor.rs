//! The core's connectivity supervisor on its own, for a C program that does
//! its own I/O: it feeds what happened (`relink_supervisor_handle_input`)
//! and drains what to do (`relink_supervisor_poll_output`) until a TIMEOUT
//! or IDLE output, exactly as relink's own drivers do.
//!
//! Plain conversion to and from `relink_core::supervisor`'s types: integers
//! that name an enumeration are validated here, every decision is the core's.

use std::ffi::c_char;
use std::mem::size_of;
use std::time::Duration;

use relink_core::failure::{BusyReason, FailureKind};
use relink_core::supervisor::{
    Action, AsideVerdict, Event, HeartbeatConfig, Input, Output, Supervisor, SupervisorConfig,
    SupervisorHealth,
};
use relink_core::{AttemptFailure, Timestamp};

use crate::abi::{self, versioned, write_defaults};
use crate::boundary::*;
use crate::cause::{
    cause_code, evidence_from_c, evidence_to_c, input_cause, RELINK_CAUSE_NONE,
    RELINK_EVIDENCE_SIZE,
};
use crate::client::state_code;
use crate::policy::relink_backoff_policy;

/// No failure (a health that has seen none; not valid as an input).
pub const RELINK_FAILURE_NONE: u32 = 0;
/// The transport failed: refused, unreachable, no address.
pub const RELINK_FAILURE_IO: u32 = 1;
/// The connection was closed (by the peer or the local stack).
pub const RELINK_FAILURE_CLOSED: u32 = 2;
/// No answer in time (connect, handshake, response or heartbeat).
pub const RELINK_FAILURE_TIMEOUT: u32 = 3;
/// Authentication was refused.
pub const RELINK_FAILURE_AUTH: u32 = 4;
/// The bytes on the wire made no sense.
pub const RELINK_FAILURE_PROTOCOL: u32 = 5;
/// The server refused the command itself (`WRONGTYPE`, `ERR ...`).
pub const RELINK_FAILURE_COMMAND: u32 = 6;
/// `-LOADING`: the server is loading its dataset.
pub const RELINK_FAILURE_SERVER_BUSY_LOADING: u32 = 7;
/// `-BUSY`: a script or function is running too long.
pub const RELINK_FAILURE_SERVER_BUSY_BUSY: u32 = 8;
/// `-MASTERDOWN`: a replica lost its master.
pub const RELINK_FAILURE_SERVER_BUSY_MASTER_DOWN: u32 = 9;
/// `-READONLY`: a write reached a replica.
pub const RELINK_FAILURE_SERVER_BUSY_READ_ONLY: u32 = 10;
/// `-TRYAGAIN`, `-CLUSTERDOWN`: not run, try again later.
pub const RELINK_FAILURE_SERVER_BUSY_TRY_AGAIN: u32 = 11;
/// Not the server to talk to: a `-MOVED`/`-ASK` redirect, or a master that
/// moved. Not run.
pub const RELINK_FAILURE_MOVED: u32 = 12;

/// Begin connecting (from IDLE; ignored elsewhere).
pub const RELINK_INPUT_START: u32 = 0;
/// Attempt `attempt` produced a ready connection (handshake done).
pub const RELINK_INPUT_CONNECTED: u32 = 1;
/// Attempt `attempt` failed of `cause` (a `RELINK_CAUSE_*`; or, when that is
/// `RELINK_CAUSE_NONE`, of the cause for `failure`), with `evidence`.
pub const RELINK_INPUT_CONNECT_FAILED: u32 = 2;
/// The PING asked for with `ping_id` was answered.
pub const RELINK_INPUT_PONG: u32 = 3;
/// Some reply arrived on the connection: proof the server is alive.
pub const RELINK_INPUT_ACTIVITY: u32 = 4;
/// A command failed with `failure`.
pub const RELINK_INPUT_COMMAND_FAILED: u32 = 5;
/// The connection broke, with `failure`.
pub const RELINK_INPUT_CONNECTION_LOST: u32 = 6;
/// The server to use moved (e.g. a Sentinel failover): reconnect at once.
pub const RELINK_INPUT_SERVER_MOVED: u32 = 7;
/// Stop for good.
pub const RELINK_INPUT_SHUTDOWN: u32 = 8;
/// The PING asked for with `ping_id` failed with `failure`: an error reply
/// (`-BUSY`, `-LOADING`: the server is alive) or a broken connection.
pub const RELINK_INPUT_PING_FAILED: u32 = 9;
/// Commands were in flight on the connection when the PING asked for with
/// `ping_id` was sent (it may be queued behind them); answered with a
/// CHECK_ASIDE action.
pub const RELINK_INPUT_WORK_OUTSTANDING: u32 = 10;
/// The side check asked for with `ping_id` (CHECK_ASIDE) found `verdict`
/// (a `RELINK_ASIDE_*`; for UNREACHABLE, `failure` says how it failed).
pub const RELINK_INPUT_ASIDE_CHECKED: u32 = 11;
/// The configuration changed (new credentials): an attempt waiting out a
/// delay is made at once, one in flight is abandoned and made again, and the
/// misconfigured flag and its slow backoff are cleared. A READY connection is
/// kept (apply the change to it yourself).
pub const RELINK_INPUT_RECONFIGURED: u32 = 12;

/// No verdict (not valid as an input).
pub const RELINK_ASIDE_NONE: u32 = 0;
/// The server answered and still has the connection (blocked, running a
/// script, paused): alive, only busy. A side answer of `-BUSY` or `-LOADING`
/// is this too.
pub const RELINK_ASIDE_BUSY: u32 = 1;
/// The server answered and does not have the connection: it is half-open, dead.
pub const RELINK_ASIDE_GONE: u32 = 2;
/// The side connection failed or got no answer in time; `failure` says how.
pub const RELINK_ASIDE_UNREACHABLE: u32 = 3;

/// Do what `action` says.
pub const RELINK_OUTPUT_ACTION: u32 = 0;
/// Tell the user what `event` says.
pub const RELINK_OUTPUT_EVENT: u32 = 1;
/// Drained: call `relink_supervisor_poll_output` again at `deadline_ms` at the latest.
pub const RELINK_OUTPUT_TIMEOUT: u32 = 2;
/// Drained, and nothing is scheduled (IDLE or SHUTDOWN).
pub const RELINK_OUTPUT_IDLE: u32 = 3;

/// Not an action output.
pub const RELINK_ACTION_NONE: u32 = 0;
/// Open a connection; report CONNECTED or CONNECT_FAILED with `attempt`.
pub const RELINK_ACTION_CONNECT: u32 = 1;
/// Send a PING on the current connection; report PONG with `ping_id`.
pub const RELINK_ACTION_SEND_PING: u32 = 2;
/// Drop the current connection, or abandon the attempt in flight.
pub const RELINK_ACTION_DISCONNECT: u32 = 3;
/// Check the current connection from the side: on a short-lived separate
/// connection, ask the server whether it still knows this connection (`CLIENT
/// LIST ID <its CLIENT ID>`); report ASIDE_CHECKED with `ping_id`.
pub const RELINK_ACTION_CHECK_ASIDE: u32 = 4;

/// Not an event output.
pub const RELINK_EVENT_NONE: u32 = 0;
/// The state changed from `from_state` to `to_state` (`RELINK_STATE_*`).
pub const RELINK_EVENT_STATE_CHANGED: u32 = 1;
/// The first connection is up, after `attempt` attempts.
pub const RELINK_EVENT_CONNECTED: u32 = 2;
/// A connection is up again after `attempt` attempts and `duration_ms` of downtime.
pub const RELINK_EVENT_RECONNECTED: u32 = 3;
/// A READY connection was lost; `failure` says why.
pub const RELINK_EVENT_DISCONNECTED: u32 = 4;
/// Attempt `attempt` is scheduled in `duration_ms`.
pub const RELINK_EVENT_RECONNECT_SCHEDULED: u32 = 5;
/// A heartbeat PING went unanswered; `misses` in a row so far.
pub const RELINK_EVENT_HEARTBEAT_MISSED: u32 = 6;
/// The backoff policy gave up after `attempt` attempts and `duration_ms`;
/// the supervisor stopped.
pub const RELINK_EVENT_GAVE_UP: u32 = 7;
/// A heartbeat PING is queued behind work and the server confirmed from the
/// side that it still has the connection; busy for `duration_ms` so far.
pub const RELINK_EVENT_BUSY_CONFIRMED: u32 = 8;
/// Connection attempt `attempt` failed of `cause` (a `RELINK_CAUSE_*`), with
/// `evidence`; `misconfigured`: retrying alone will not fix it (the slow
/// `misconfigured_backoff` applies). The next attempt is in `duration_ms`
/// when `has_retry_in`, else the policy gave up. Told before the
/// RECONNECT_SCHEDULED or GAVE_UP that follows it.
pub const RELINK_EVENT_CONNECT_ATTEMPT_FAILED: u32 = 9;
/// The server moved (SERVER_MOVED: a Sentinel announced a new master): the
/// connection, the attempt in flight or the wait for the next one is
/// replaced by an attempt at once. Told before the DISCONNECTED (failure
/// MOVED) it leads to when a connection was up.
pub const RELINK_EVENT_SERVER_MOVED: u32 = 10;
/// A failover of the master is in progress, as the sentinels announced it:
/// writes are held back from now on.
pub const RELINK_EVENT_FAILOVER_STARTED: u32 = 11;
/// Writes are no longer held back for a failover, after `duration_ms`.
pub const RELINK_EVENT_FAILOVER_ENDED: u32 = 12;

/// The supervisor's settings (relink_core's `SupervisorConfig`), in whole
/// milliseconds. Fill it with `relink_supervisor_config_default`, then
/// change fields. Checked by `relink_supervisor_new`: a bad enumeration value
/// is `RELINK_INVALID_ARGUMENT`, a bad value `RELINK_INVALID_CONFIG` naming
/// the field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct relink_supervisor_config {
    /// `sizeof` this struct as the program's header defines it, set by
    /// its `_default` function (see the ABI rule at the top of this header).
    pub struct_size: usize,
    /// Delays between connection attempts.
    pub backoff: relink_backoff_policy,
    /// Silence after which a heartbeat PING is sent; at least 1.
    pub heartbeat_interval_ms: u64,
    /// How long a PING may go unanswered before it counts as a miss; at least 1.
    pub heartbeat_timeout_ms: u64,
    /// Misses in a row tolerated before the connection is declared dead.
    pub heartbeat_misses_allowed: u32,
    /// How long one connection attempt with its handshake may take; at least 1.
    pub connect_timeout_ms: u64,
    /// How long a connection must stay READY for its loss to restart the
    /// backoff from the initial delay.
    pub backoff_reset_after_ms: u64,
    /// Delays between attempts while the last one failed for a cause retrying
    /// will not fix (a wrong password, a peer that is not Redis): slower than
    /// `backoff` (the longer of the two delays is waited; `backoff`'s limits
    /// still apply). Default: exponential from 1 s, x2, at most 30 s, equal
    /// jitter.
    pub misconfigured_backoff: relink_backoff_policy,
    /// The longest wait after a refused attempt (nothing listening: a
    /// restart is noticed within it); at least 1. Default 100.
    pub refused_max_delay_ms: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl relink_supervisor_config {
    fn from_config(c: &SupervisorConfig) -> Self {
        relink_supervisor_config {
            struct_size: size_of::<relink_supervisor_config>(),
            backoff: relink_backoff_policy::from_policy(&c.backoff),
            heartbeat_interval_ms: ms(c.heartbeat.interval),
            heartbeat_timeout_ms: ms(c.heartbeat.timeout),
            heartbeat_misses_allowed: c.heartbeat.misses_allowed,
            connect_timeout_ms: ms(c.connect_timeout),
            backoff_reset_after_ms: ms(c.backoff_reset_after),
            misconfigured_backoff: relink_backoff_policy::from_policy(&c.misconfigured_backoff),
            refused_max_delay_ms: ms(c.refused_max_delay),
        }
    }

    /// The core's config, validated by the core.
    fn to_config(self) -> FfiResult<SupervisorConfig> {
        let backoff = self.backoff.to_policy("backoff.")?;
        let misconfigured_backoff = self
            .misconfigured_backoff
            .to_policy("misconfigured_backoff.")?;
        SupervisorConfig::default()
            .backoff(backoff)
            .misconfigured_backoff(misconfigured_backoff)
            .heartbeat(HeartbeatConfig {
                interval: Duration::from_millis(self.heartbeat_interval_ms),
                timeout: Duration::from_millis(self.heartbeat_timeout_ms),
                misses_allowed: self.heartbeat_misses_allowed,
            })
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .backoff_reset_after(Duration::from_millis(self.backoff_reset_after_ms))
            .refused_max_delay(Duration::from_millis(self.refused_max_delay_ms))
            .build()
            .map_err(|e| {
                relink_error::new(
                    RELINK_INVALID_CONFIG,
                    format!("invalid supervisor config: {e}"),
                )
            })
    }
}

/// One thing that happened, for `relink_supervisor_handle_input`. Only the
/// fields its `input` names are read; set the others to 0 (NULL).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct relink_supervisor_input {
    /// One of `RELINK_INPUT_*`.
    pub input: u32,
    /// CONNECTED, CONNECT_FAILED: the attempt number from the CONNECT action.
    pub attempt: u32,
    /// PING_FAILED, COMMAND_FAILED, CONNECTION_LOST, and ASIDE_CHECKED with
    /// verdict UNREACHABLE: one of `RELINK_FAILURE_*` (not `_NONE`).
    /// CONNECT_FAILED: read only when `cause` is `RELINK_CAUSE_NONE` (for a
    /// driver that knows no finer cause).
    pub failure: u32,
    /// PONG, PING_FAILED, WORK_OUTSTANDING: the id from the SEND_PING action;
    /// ASIDE_CHECKED: the id from the CHECK_ASIDE action.
    pub ping_id: u64,
    /// ASIDE_CHECKED: one of `RELINK_ASIDE_*` (not `_NONE`).
    pub verdict: u32,
    /// CONNECT_FAILED: why, one of `RELINK_CAUSE_*` (`relink_cause_from_error`
    /// and `relink_cause_from_first_bytes` classify); `RELINK_CAUSE_NONE`:
    /// take the cause for `failure`.
    pub cause: u32,
    /// CONNECT_FAILED: the server's words or the peer's first bytes, already
    /// redacted of secrets; NULL for none. A NUL-terminated string, read
    /// during the call only (the supervisor keeps a copy of at most 120
    /// bytes). Need not be UTF-8: invalid sequences become U+FFFD, control
    /// characters spaces.
    pub evidence: *const c_char,
}

impl Default for relink_supervisor_input {
    fn default() -> Self {
        relink_supervisor_input {
            input: RELINK_INPUT_START,
            attempt: 0,
            failure: RELINK_FAILURE_NONE,
            ping_id: 0,
            verdict: RELINK_ASIDE_NONE,
            cause: RELINK_CAUSE_NONE,
            evidence: std::ptr::null(),
        }
    }
}

/// One thing `relink_supervisor_poll_output` hands out. Fields that do not
/// belong to its `output` (and its `action` or `event`) are 0 (`evidence`
/// the empty string).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct relink_supervisor_output {
    /// One of `RELINK_OUTPUT_*`.
    pub output: u32,
    /// ACTION: one of `RELINK_ACTION_*`; else `RELINK_ACTION_NONE`.
    pub action: u32,
    /// EVENT: one of `RELINK_EVENT_*`; else `RELINK_EVENT_NONE`.
    pub event: u32,
    /// Action CONNECT, events RECONNECT_SCHEDULED and CONNECT_ATTEMPT_FAILED:
    /// the attempt number; events CONNECTED, RECONNECTED and GAVE_UP: the
    /// attempts it took.
    pub attempt: u32,
    /// Action SEND_PING: the probe's id, to report back with PONG; action
    /// CHECK_ASIDE: the id to report back with ASIDE_CHECKED.
    pub ping_id: u64,
    /// Event STATE_CHANGED: the previous `RELINK_STATE_*`.
    pub from_state: u32,
    /// Event STATE_CHANGED: the new `RELINK_STATE_*`.
    pub to_state: u32,
    /// Event DISCONNECTED: what killed the connection, a `RELINK_FAILURE_*`.
    pub failure: u32,
    /// Event HEARTBEAT_MISSED: misses in a row so far.
    pub misses: u32,
    /// Event RECONNECT_SCHEDULED: the delay; RECONNECTED: the downtime;
    /// GAVE_UP: the time since the outage began; BUSY_CONFIRMED: how long
    /// the connection has been busy; CONNECT_ATTEMPT_FAILED: when the next
    /// attempt is made (if `has_retry_in`). Whole milliseconds.
    pub duration_ms: u64,
    /// TIMEOUT: when to poll again at the latest, on the caller's clock.
    pub deadline_ms: u64,
    /// Event CONNECT_ATTEMPT_FAILED: why, one of `RELINK_CAUSE_*`.
    pub cause: u32,
    /// Event CONNECT_ATTEMPT_FAILED: retrying alone will not fix the cause;
    /// the slow `misconfigured_backoff` applies.
    pub misconfigured: bool,
    /// Event CONNECT_ATTEMPT_FAILED: another attempt comes, in `duration_ms`;
    /// false: the policy gave up (a GAVE_UP follows).
    pub has_retry_in: bool,
    /// Event CONNECT_ATTEMPT_FAILED: the server's words or the peer's first
    /// bytes (UTF-8, at most 120 bytes, NUL-terminated; may be empty). Part
    /// of the struct: nothing to free.
    pub evidence: [c_char; RELINK_EVIDENCE_SIZE],
}

impl Default for relink_supervisor_output {
    fn default() -> Self {
        relink_supervisor_output {
            output: RELINK_OUTPUT_ACTION,
            action: RELINK_ACTION_NONE,
            event: RELINK_EVENT_NONE,
            attempt: 0,
            ping_id: 0,
            from_state: 0,
            to_state: 0,
            failure: RELINK_FAILURE_NONE,
            misses: 0,
            duration_ms: 0,
            deadline_ms: 0,
            cause: RELINK_CAUSE_NONE,
            misconfigured: false,
            has_retry_in: false,
            evidence: [0; RELINK_EVIDENCE_SIZE],
        }
    }
}

/// A failed connection attempt (relink_core's `AttemptFailure`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct relink_attempt_failure {
    /// The attempt number within the outage, from 1 (0 when `cause` is
    /// `RELINK_CAUSE_NONE`).
    pub attempt: u32,
    /// Why it failed, one of `RELINK_CAUSE_*`; `RELINK_CAUSE_NONE`: no
    /// attempt has failed (or the connection is READY).
    pub cause: u32,
    /// The server's words or the peer's first bytes (UTF-8, at most 120
    /// bytes, NUL-terminated; may be empty).
    pub evidence: [c_char; RELINK_EVIDENCE_SIZE],
}

impl Default for relink_attempt_failure {
    fn default() -> Self {
        relink_attempt_failure {
            attempt: 0,
            cause: RELINK_CAUSE_NONE,
            evidence: [0; RELINK_EVIDENCE_SIZE],
        }
    }
}

impl relink_attempt_failure {
    fn from_failure(f: &AttemptFailure) -> FfiResult<Self> {
        Ok(relink_attempt_failure {
            attempt: f.attempt,
            cause: cause_code(f.cause)?,
            evidence: evidence_to_c(&f.evidence),
        })
    }
}

/// A snapshot of the supervisor's view of the connection.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct relink_health {
    /// The current `RELINK_STATE_*`.
    pub state: u32,
    /// When it was entered.
    pub since_ms: u64,
    /// The current or last connection attempt number in this outage (0 before any).
    pub attempt: u32,
    /// The most recent failure, or `RELINK_FAILURE_NONE`.
    pub last_failure: u32,
    /// Heartbeat misses in a row on the current connection.
    pub heartbeat_misses: u32,
    /// Whether `rtt_ms` holds a value.
    pub has_rtt: bool,
    /// Round-trip time of the last answered heartbeat PING.
    pub rtt_ms: u64,
    /// Whether `next_attempt_at_ms` holds a value (TRANSIENT_FAILURE only).
    pub has_next_attempt: bool,
    /// When the next connection attempt is due.
    pub next_attempt_at_ms: u64,
    /// Whether the connection is busy (READY; heartbeat PINGs queued behind
    /// work the server confirms from the side it is still running), since
    /// `busy_since_ms`.
    pub busy: bool,
    /// When the first PING of the busy spell was sent.
    pub busy_since_ms: u64,
    /// The latest failed connection attempt of this outage (or of the first
    /// connect), its cause `RELINK_CAUSE_NONE` when there is none (READY).
    pub last_attempt_failure: relink_attempt_failure,
    /// The latest attempt failed for a cause retrying will not fix: attempts
    /// go on, on the slow `misconfigured_backoff`, and commands should fail at
    /// once (`RELINK_CALL_INPUT_MISCONFIGURED`) instead of waiting. Cleared by
    /// RECONFIGURED and by an attempt that fails otherwise or succeeds.
    pub misconfigured: bool,
}

pub(crate) fn failure_code(kind: FailureKind) -> FfiResult<u32> {
    Ok(match kind {
        FailureKind::Io => RELINK_FAILURE_IO,
        FailureKind::Closed => RELINK_FAILURE_CLOSED,
        FailureKind::Timeout => RELINK_FAILURE_TIMEOUT,
        FailureKind::Auth => RELINK_FAILURE_AUTH,
        FailureKind::Protocol => RELINK_FAILURE_PROTOCOL,
        FailureKind::Command => RELINK_FAILURE_COMMAND,
        FailureKind::ServerBusy(BusyReason::Loading) => RELINK_FAILURE_SERVER_BUSY_LOADING,
        FailureKind::ServerBusy(BusyReason::Busy) => RELINK_FAILURE_SERVER_BUSY_BUSY,
        FailureKind::ServerBusy(BusyReason::MasterDown) => RELINK_FAILURE_SERVER_BUSY_MASTER_DOWN,
        FailureKind::ServerBusy(BusyReason::ReadOnly) => RELINK_FAILURE_SERVER_BUSY_READ_ONLY,
        FailureKind::ServerBusy(BusyReason::TryAgain) => RELINK_FAILURE_SERVER_BUSY_TRY_AGAIN,
        FailureKind::Moved => RELINK_FAILURE_MOVED,
        other => {
            return Err(relink_error::invalid(format!(
                "failure kind {other} has no C form yet"
            )))
        }
    })
}

pub(crate) fn failure_kind(code: u32, what: &str) -> FfiResult<FailureKind> {
    Ok(match code {
        RELINK_FAILURE_IO => FailureKind::Io,
        RELINK_FAILURE_CLOSED => FailureKind::Closed,
        RELINK_FAILURE_TIMEOUT => FailureKind::Timeout,
        RELINK_FAILURE_AUTH => FailureKind::Auth,
        RELINK_FAILURE_PROTOCOL => FailureKind::Protocol,
        RELINK_FAILURE_COMMAND => FailureKind::Command,
        RELINK_FAILURE_SERVER_BUSY_LOADING => FailureKind::ServerBusy(BusyReason::Loading),
        RELINK_FAILURE_SERVER_BUSY_BUSY => FailureKind::ServerBusy(BusyReason::Busy),
        RELINK_FAILURE_SERVER_BUSY_MASTER_DOWN => FailureKind::ServerBusy(BusyReason::MasterDown),
        RELINK_FAILURE_SERVER_BUSY_READ_ONLY => FailureKind::ServerBusy(BusyReason::ReadOnly),
        RELINK_FAILURE_SERVER_BUSY_TRY_AGAIN => FailureKind::ServerBusy(BusyReason::TryAgain),
        RELINK_FAILURE_MOVED => FailureKind::Moved,
        other => {
            return Err(relink_error::invalid(format!(
                "`{what}` is {other}: expected RELINK_FAILURE_IO (1) .. RELINK_FAILURE_MOVED (12)"
            )))
        }
    })
}

impl relink_supervisor_input {
    fn to_input(self) -> FfiResult<Input> {
        let failure = || failure_kind(self.failure, "input.failure");
        Ok(match self.input {
            RELINK_INPUT_START => Input::Start,
            RELINK_INPUT_CONNECTED => Input::Connected {
                attempt: self.attempt,
            },
            RELINK_INPUT_CONNECT_FAILED => Input::ConnectFailed {
                attempt: self.attempt,
                cause: input_cause(self.cause, self.failure)?,
                // SAFETY: `evidence` is NULL or a NUL-terminated string live
                // for this call (the field's contract).
                evidence: unsafe { evidence_from_c(self.evidence) },
            },
            RELINK_INPUT_RECONFIGURED => Input::Reconfigured,
            RELINK_INPUT_PONG => Input::Pong { id: self.ping_id },
            RELINK_INPUT_PING_FAILED => Input::PingFailed {
                id: self.ping_id,
                kind: failure()?,
            },
            RELINK_INPUT_ACTIVITY => Input::Activity,
            RELINK_INPUT_COMMAND_FAILED => Input::CommandFailed { kind: failure()? },
            RELINK_INPUT_CONNECTION_LOST => Input::ConnectionLost { kind: failure()? },
            RELINK_INPUT_SERVER_MOVED => Input::ServerMoved,
            RELINK_INPUT_SHUTDOWN => Input::Shutdown,
            RELINK_INPUT_WORK_OUTSTANDING => Input::WorkOutstanding { id: self.ping_id },
            RELINK_INPUT_ASIDE_CHECKED => Input::AsideChecked {
                id: self.ping_id,
                verdict: match self.verdict {
                    RELINK_ASIDE_BUSY => AsideVerdict::Busy,
                    RELINK_ASIDE_GONE => AsideVerdict::Gone,
                    RELINK_ASIDE_UNREACHABLE => AsideVerdict::Unreachable { kind: failure()? },
                    other => {
                        return Err(relink_error::invalid(format!(
                            "`input.verdict` is {other}: expected RELINK_ASIDE_BUSY (1) .. \
                             RELINK_ASIDE_UNREACHABLE (3)"
                        )))
                    }
                },
            },
            other => {
                return Err(relink_error::invalid(format!(
                    "`input.input` is {other}: expected RELINK_INPUT_START (0) .. \
                     RELINK_INPUT_RECONFIGURED (12)"
                )))
            }
        })
    }
}

impl relink_supervisor_output {
    fn from_output(output: Output) -> FfiResult<Self> {
        let none = relink_supervisor_output::default();
        Ok(match output {
            Output::Action(action) => {
                let action = match action {
                    Action::Connect { attempt } => relink_supervisor_output {
                        action: RELINK_ACTION_CONNECT,
                        attempt,
                        ..none
                    },
                    Action::SendPing { id } => relink_supervisor_output {
                        action: RELINK_ACTION_SEND_PING,
                        ping_id: id,
                        ..none
                    },
                    Action::Disconnect => relink_supervisor_output {
                        action: RELINK_ACTION_DISCONNECT,
                        ..none
                    },
                    Action::CheckAside { id } => relink_supervisor_output {
                        action: RELINK_ACTION_CHECK_ASIDE,
                        ping_id: id,
                        ..none
                    },
                    other => {
                        return Err(relink_error::invalid(format!(
                            "action {other:?} has no C form yet"
                        )))
                    }
                };
                relink_supervisor_output {
                    output: RELINK_OUTPUT_ACTION,
                    ..action
                }
            }
            Output::Event(event) => relink_supervisor_output {
                output: RELINK_OUTPUT_EVENT,
                ..Self::from_event(event)?
            },
            Output::Timeout(deadline) => relink_supervisor_output {
                output: RELINK_OUTPUT_TIMEOUT,
                deadline_ms: deadline.as_millis(),
                ..none
            },
            Output::Idle => relink_supervisor_output {
                output: RELINK_OUTPUT_IDLE,
                ..none
            },
            other => {
                return Err(relink_error::invalid(format!(
                    "output {other:?} has no C form yet"
                )))
            }
        })
    }

    fn from_event(event: Event) -> FfiResult<Self> {
        let none = relink_supervisor_output::default();
        Ok(match event {
            Event::StateChanged { from, to } => relink_supervisor_output {
                event: RELINK_EVENT_STATE_CHANGED,
                from_state: state_code(from),
                to_state: state_code(to),
                ..none
            },
            Event::Connected { attempts } => relink_supervisor_output {
                event: RELINK_EVENT_CONNECTED,
                attempt: attempts,
                ..none
            },
            Event::Reconnected { downtime, attempts } => relink_supervisor_output {
                event: RELINK_EVENT_RECONNECTED,
                attempt: attempts,
                duration_ms: ms(downtime),
                ..none
            },
            Event::Disconnected { cause } => relink_supervisor_output {
                event: RELINK_EVENT_DISCONNECTED,
                failure: failure_code(cause)?,
                ..none
            },
            Event::ReconnectScheduled { attempt, delay } => relink_supervisor_output {
                event: RELINK_EVENT_RECONNECT_SCHEDULED,
                attempt,
                duration_ms: ms(delay),
                ..none
            },
            Event::HeartbeatMissed { misses } => relink_supervisor_output {
                event: RELINK_EVENT_HEARTBEAT_MISSED,
                misses,
                ..none
            },
            Event::GaveUp { attempts, elapsed } => relink_supervisor_output {
                event: RELINK_EVENT_GAVE_UP,
                attempt: attempts,
                duration_ms: ms(elapsed),
                ..none
            },
            Event::BusyConfirmed { busy_for } => relink_supervisor_output {
                event: RELINK_EVENT_BUSY_CONFIRMED,
                duration_ms: ms(busy_for),
                ..none
            },
            Event::ConnectAttemptFailed {
                failure,
                misconfigured,
                retry_in,
            } => relink_supervisor_output {
                event: RELINK_EVENT_CONNECT_ATTEMPT_FAILED,
                attempt: failure.attempt,
                cause: cause_code(failure.cause)?,
                evidence: evidence_to_c(&failure.evidence),
                misconfigured,
                has_retry_in: retry_in.is_some(),
                duration_ms: retry_in.map_or(0, ms),
                ..none
            },
            Event::ServerMoved => relink_supervisor_output {
                event: RELINK_EVENT_SERVER_MOVED,
                ..none
            },
            Event::FailoverStarted { .. } => relink_supervisor_output {
                event: RELINK_EVENT_FAILOVER_STARTED,
                ..none
            },
            Event::FailoverEnded { held_for, .. } => relink_supervisor_output {
                event: RELINK_EVENT_FAILOVER_ENDED,
                duration_ms: ms(held_for),
                ..none
            },
            other => {
                return Err(relink_error::invalid(format!(
                    "event {other:?} has no C form yet"
                )))
            }
        })
    }
}

impl relink_health {
    fn from_health(h: &SupervisorHealth) -> FfiResult<Self> {
        Ok(relink_health {
            state: state_code(h.state),
            since_ms: h.since.as_millis(),
            attempt: h.attempt,
            last_failure: h
                .last_failure
                .map_or(Ok(RELINK_FAILURE_NONE), failure_code)?,
            heartbeat_misses: h.heartbeat_misses,
            has_rtt: h.rtt.is_some(),
            rtt_ms: h.rtt.map_or(0, ms),
            has_next_attempt: h.next_attempt_at.is_some(),
            next_attempt_at_ms: h.next_attempt_at.map_or(0, Timestamp::as_millis),
            busy: h.busy_since.is_some(),
            busy_since_ms: h.busy_since.map_or(0, Timestamp::as_millis),
            last_attempt_failure: h.last_attempt_failure.as_ref().map_or(
                Ok(relink_attempt_failure::default()),
                relink_attempt_failure::from_failure,
            )?,
            misconfigured: h.misconfigured,
        })
    }
}

/// Fills `*out` with relink's defaults: the default backoff, a PING after
/// 1 s of silence answered within 1 s, no misses allowed, 2 s per connection
/// attempt, the backoff reset after 10 s READY, and while misconfigured
/// delays from 1 s, x2, at most 30 s, equal jitter. `size` is `sizeof
/// *out`: at most that many bytes are written, and `struct_size` is set to
/// it (`RELINK_STRUCT_SIZE` for a size this library does not know).
#[no_mangle]
pub extern "C" fn relink_supervisor_config_default(
    out: *mut relink_supervisor_config,
    size: usize,
) -> relink_code {
    guard(std::ptr::null_mut(), || write_defaults(out, size))
}

versioned!(relink_supervisor_config, last_of_0_1: refused_max_delay_ms: u64, defaults: Ok(
    relink_supervisor_config::from_config(&SupervisorConfig::default())
));

/// The connectivity state machine (relink_core's `Supervisor`): the caller
/// feeds it inputs and executes its actions; it never blocks, reads no clock
/// and does no I/O. Time is milliseconds on a monotonic clock whose epoch the
/// caller picks. Not thread-safe: use one from one thread at a time.
///
/// After every input, and when a TIMEOUT's deadline has come, call
/// `relink_supervisor_poll_output` until it returns a TIMEOUT or IDLE output.
#[derive(Debug)]
pub struct relink_supervisor {
    inner: Supervisor,
}

/// A supervisor in IDLE with `*config`, its backoff jitter drawn from `seed`
/// (the same config, seed and inputs give the same outputs on every
/// platform). On success `*out` owns it: free it with `relink_supervisor_free`.
#[no_mangle]
pub extern "C" fn relink_supervisor_new(
    config: *const relink_supervisor_config,
    seed: u64,
    out: *mut *mut relink_supervisor,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `config` is NULL or a config of `struct_size` readable bytes (contract).
        let config = unsafe { abi::read(config, "config") }?.to_config()?;
        check_out(out, "out")?;
        let supervisor = into_raw(relink_supervisor {
            inner: Supervisor::new(config, seed),
        });
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(supervisor) };
        Ok(())
    })
}

/// Feeds `*input`, which happened at `now_ms`. An input that makes no sense
/// in the current state (the result of an abandoned attempt, a PONG while
/// connecting) is ignored, not an error; an out-of-range `input`, `failure`,
/// `cause` or `verdict` value is `RELINK_INVALID_ARGUMENT` and changes nothing.
#[no_mangle]
pub extern "C" fn relink_supervisor_handle_input(
    supervisor: *mut relink_supervisor,
    now_ms: u64,
    input: *const relink_supervisor_input,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `supervisor` is NULL or a live supervisor used by this thread only (contract).
        let supervisor = unsafe { try_mut(supervisor, "supervisor") }?;
        // SAFETY: `input` is NULL or points to a readable input (contract).
        let input = unsafe { try_ref(input, "input") }?.to_input()?;
        supervisor
            .inner
            .handle_input(Timestamp::from_millis(now_ms), input);
        Ok(())
    })
}

/// Writes the next thing to do at `now_ms` to `*out`: an ACTION or EVENT
/// (call again), or TIMEOUT / IDLE when drained. Deadlines that have passed
/// by `now_ms` are acted on first.
#[no_mangle]
pub extern "C" fn relink_supervisor_poll_output(
    supervisor: *mut relink_supervisor,
    now_ms: u64,
    out: *mut relink_supervisor_output,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `supervisor` is NULL or a live supervisor used by this thread only (contract).
        let supervisor = unsafe { try_mut(supervisor, "supervisor") }?;
        check_out(out, "out")?;
        let output = supervisor.inner.poll_output(Timestamp::from_millis(now_ms));
        let output = relink_supervisor_output::from_output(output)?;
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(output) };
        Ok(())
    })
}

/// Writes a snapshot of the supervisor's health to `*out`.
#[no_mangle]
pub extern "C" fn relink_supervisor_health(
    supervisor: *const relink_supervisor,
    out: *mut relink_health,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `supervisor` is NULL or a live supervisor (contract).
        let supervisor = unsafe { try_ref(supervisor, "supervisor") }?;
        check_out(out, "out")?;
        let health = relink_health::from_health(&supervisor.inner.health())?;
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(health) };
        Ok(())
    })
}

/// Frees a supervisor. NULL is a no-op.
#[no_mangle]
pub extern "C" fn relink_supervisor_free(supervisor: *mut relink_supervisor) {
    guard_value((), || {
        // SAFETY: `supervisor` is NULL or came from relink_supervisor_new, freed once.
        unsafe { free_raw(supervisor) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    fn new_supervisor() -> *mut relink_supervisor {
        let mut config = relink_supervisor_config::from_config(&SupervisorConfig::default());
        assert_eq!(
            relink_supervisor_config_default(&mut config, size_of::<relink_supervisor_config>()),
            RELINK_OK
        );
        let mut sup = ptr::null_mut();
        assert_eq!(
            relink_supervisor_new(&config, 1, &mut sup, ptr::null_mut()),
            RELINK_OK
        );
        sup
    }

    fn drain(sup: *mut relink_supervisor, now: u64) -> Vec<relink_supervisor_output> {
        let mut outs = Vec::new();
        loop {
            let mut out = relink_supervisor_output::default();
            assert_eq!(
                relink_supervisor_poll_output(sup, now, &mut out, ptr::null_mut()),
                RELINK_OK
            );
            outs.push(out);
            if matches!(out.output, RELINK_OUTPUT_TIMEOUT | RELINK_OUTPUT_IDLE) {
                return outs;
            }
            assert!(outs.len() < 16, "drain did not end");
        }
    }

    #[test]
    fn the_default_config_round_trips() {
        let c = relink_supervisor_config::from_config(&SupervisorConfig::default());
        assert_eq!(c.to_config().unwrap(), SupervisorConfig::default());
    }

    #[test]
    fn bad_configs_and_inputs_are_refused() {
        let mut c = relink_supervisor_config::from_config(&SupervisorConfig::default());
        c.heartbeat_interval_ms = 0;
        let err = c.to_config().unwrap_err();
        assert_eq!(err.code(), RELINK_INVALID_CONFIG);
        c.heartbeat_interval_ms = 1000;
        c.backoff.jitter = 42;
        assert_eq!(c.to_config().unwrap_err().code(), RELINK_INVALID_ARGUMENT);

        let sup = new_supervisor();
        for input in [
            relink_supervisor_input {
                input: 99,
                ..Default::default()
            },
            relink_supervisor_input {
                input: RELINK_INPUT_CONNECTION_LOST,
                failure: RELINK_FAILURE_NONE,
                ..Default::default()
            },
            relink_supervisor_input {
                input: RELINK_INPUT_CONNECT_FAILED,
                attempt: 1,
                failure: 13,
                ..Default::default()
            },
            relink_supervisor_input {
                input: RELINK_INPUT_ASIDE_CHECKED,
                verdict: RELINK_ASIDE_NONE,
                ..Default::default()
            },
            relink_supervisor_input {
                input: RELINK_INPUT_ASIDE_CHECKED,
                verdict: RELINK_ASIDE_UNREACHABLE + 1,
                ..Default::default()
            },
            relink_supervisor_input {
                input: RELINK_INPUT_ASIDE_CHECKED,
                verdict: RELINK_ASIDE_UNREACHABLE,
                failure: RELINK_FAILURE_NONE,
                ..Default::default()
            },
        ] {
            assert_eq!(
                relink_supervisor_handle_input(sup, 0, &input, ptr::null_mut()),
                RELINK_INVALID_ARGUMENT,
                "{input:?}"
            );
        }
        let start = relink_supervisor_input::default();
        assert_eq!(
            relink_supervisor_handle_input(ptr::null_mut(), 0, &start, ptr::null_mut()),
            RELINK_INVALID_ARGUMENT
        );
        assert_eq!(
            relink_supervisor_handle_input(sup, 0, ptr::null(), ptr::null_mut()),
            RELINK_INVALID_ARGUMENT
        );
        let mut health = relink_health::default();
        assert_eq!(
            relink_supervisor_health(sup, &mut health, ptr::null_mut()),
            RELINK_OK
        );
        assert_eq!(
            health.state,
            crate::client::RELINK_STATE_IDLE,
            "nothing changed"
        );
        relink_supervisor_free(sup);
        relink_supervisor_free(ptr::null_mut());
    }

    #[test]
    fn every_failure_code_round_trips() {
        for code in RELINK_FAILURE_IO..=RELINK_FAILURE_MOVED {
            let kind = failure_kind(code, "failure").unwrap();
            assert_eq!(failure_code(kind).unwrap(), code, "{kind}");
        }
    }

    #[test]
    fn start_connect_and_ready_follow_the_core() {
        let sup = new_supervisor();
        let start = relink_supervisor_input::default();
        assert_eq!(
            relink_supervisor_handle_input(sup, 0, &start, ptr::null_mut()),
            RELINK_OK
        );
        let outs = drain(sup, 0);
        assert_eq!(outs[0].event, RELINK_EVENT_STATE_CHANGED);
        assert_eq!(outs[1].action, RELINK_ACTION_CONNECT);
        assert_eq!(outs[1].attempt, 1);
        assert_eq!(outs[2].output, RELINK_OUTPUT_TIMEOUT);
        assert_eq!(outs[2].deadline_ms, 2000, "the default connect timeout");
        let connected = relink_supervisor_input {
            input: RELINK_INPUT_CONNECTED,
            attempt: 1,
            ..Default::default()
        };
        assert_eq!(
            relink_supervisor_handle_input(sup, 5, &connected, ptr::null_mut()),
            RELINK_OK
        );
        drain(sup, 5);
        let mut health = relink_health::default();
        assert_eq!(
            relink_supervisor_health(sup, &mut health, ptr::null_mut()),
            RELINK_OK
        );
        assert_eq!(health.state, crate::client::RELINK_STATE_READY);
        assert_eq!(health.since_ms, 5);
        assert!(!health.has_rtt && !health.has_next_attempt);
        relink_supervisor_free(sup);
    }

    #[test]
    fn a_busy_connection_round_trips_through_c() {
        let sup = new_supervisor();
        let feed = |now, input: relink_supervisor_input| {
            assert_eq!(
                relink_supervisor_handle_input(sup, now, &input, ptr::null_mut()),
                RELINK_OK
            );
            drain(sup, now)
        };
        feed(0, relink_supervisor_input::default());
        feed(
            5,
            relink_supervisor_input {
                input: RELINK_INPUT_CONNECTED,
                attempt: 1,
                ..Default::default()
            },
        );
        let ping = drain(sup, 1005);
        assert_eq!(
            (ping[0].action, ping[0].ping_id),
            (RELINK_ACTION_SEND_PING, 1)
        );
        let check = feed(
            1005,
            relink_supervisor_input {
                input: RELINK_INPUT_WORK_OUTSTANDING,
                ping_id: 1,
                ..Default::default()
            },
        );
        assert_eq!(check[0].output, RELINK_OUTPUT_ACTION);
        assert_eq!(
            (check[0].action, check[0].ping_id),
            (RELINK_ACTION_CHECK_ASIDE, 1)
        );
        let busy = feed(
            1100,
            relink_supervisor_input {
                input: RELINK_INPUT_ASIDE_CHECKED,
                ping_id: 1,
                verdict: RELINK_ASIDE_BUSY,
                ..Default::default()
            },
        );
        assert_eq!(busy[0].event, RELINK_EVENT_BUSY_CONFIRMED);
        assert_eq!(busy[0].duration_ms, 95);
        let mut health = relink_health::default();
        assert_eq!(
            relink_supervisor_health(sup, &mut health, ptr::null_mut()),
            RELINK_OK
        );
        assert!(health.busy);
        assert_eq!(health.busy_since_ms, 1005);
        relink_supervisor_free(sup);
    }
}
