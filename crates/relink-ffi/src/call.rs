//! The core's per-call policy on its own, for a C program that does its own
//! I/O: one `relink_call` per command; the program tells it what it sees
//! (`relink_call_decide`) and does what it answers (send with this timeout,
//! follow the redirect, wait for a connection until T, try again at T, or
//! fail with an outcome and a reason), exactly as relink's own drivers do.
//!
//! Plain conversion to and from `relink_core::call`'s types: integers that
//! name an enumeration are validated here, every decision is the core's.

use std::ffi::{c_char, CStr};
use std::mem::size_of;
use std::time::Duration;

use relink_core::call::{Call, CallInput, CallPolicy, Decision, FailReason};
use relink_core::failure::{Delivery, Outcome};
use relink_core::Timestamp;

use crate::abi::{self, versioned, write_defaults};
use crate::boundary::*;
use crate::policy::relink_backoff_policy;
use crate::supervisor::{failure_code, failure_kind, RELINK_FAILURE_NONE};

/// A connection is there to send on.
pub const RELINK_CALL_INPUT_CONNECTED: u32 = 0;
/// There is no connection (or none to the node the call must reach).
pub const RELINK_CALL_INPUT_NOT_CONNECTED: u32 = 1;
/// After a QUEUE decision: no backlog slot could be had.
pub const RELINK_CALL_INPUT_BACKLOG_FULL: u32 = 2;
/// The attempt failed with `failure`, having got as far as `delivery`.
pub const RELINK_CALL_INPUT_FAILED: u32 = 3;
/// The server answered `-MOVED` or `-ASK`.
pub const RELINK_CALL_INPUT_REDIRECTED: u32 = 4;
/// The client is shutting down.
pub const RELINK_CALL_INPUT_SHUTDOWN: u32 = 5;
/// There is no connection, and the supervisor's health says the last attempt
/// failed for a cause retrying will not fix (`relink_health.misconfigured`):
/// no connection will come by waiting.
pub const RELINK_CALL_INPUT_MISCONFIGURED: u32 = 6;

/// It never left the client: the server cannot have run it.
pub const RELINK_DELIVERY_NOT_SENT: u32 = 0;
/// It was (or may have been) written, and no reply came back.
pub const RELINK_DELIVERY_MAYBE_SENT: u32 = 1;
/// A reply came back: the server's verdict is known.
pub const RELINK_DELIVERY_ANSWERED: u32 = 2;

/// Send (again) on the connection; report FAILED with
/// `RELINK_FAILURE_TIMEOUT` if no reply came within `timeout_ms`.
pub const RELINK_DECISION_SEND: u32 = 0;
/// Send to the node the redirect named, with `timeout_ms`.
pub const RELINK_DECISION_REDIRECT: u32 = 1;
/// Hold a backlog slot (report BACKLOG_FULL if none can be had) and wait for
/// a connection until `at_ms` at the latest; then report CONNECTED or
/// NOT_CONNECTED.
pub const RELINK_DECISION_QUEUE: u32 = 2;
/// Wait until `at_ms` (it may be now), then report CONNECTED or NOT_CONNECTED.
pub const RELINK_DECISION_RETRY_AT: u32 = 3;
/// The call is over without a reply: `outcome`, `reason` and `failure` say
/// why and what the command may have done.
pub const RELINK_DECISION_FAIL: u32 = 4;

/// Not a FAIL decision.
pub const RELINK_FAIL_NONE: u32 = 0;
/// No connection, and the policy is fail-fast.
pub const RELINK_FAIL_NOT_CONNECTED: u32 = 1;
/// No connection, and the backlog was full.
pub const RELINK_FAIL_BACKLOG_FULL: u32 = 2;
/// No connection came within `queue_wait_ms`.
pub const RELINK_FAIL_QUEUE_TIMEOUT: u32 = 3;
/// The call's deadline passed.
pub const RELINK_FAIL_DEADLINE_EXCEEDED: u32 = 4;
/// The client shut down.
pub const RELINK_FAIL_SHUTDOWN: u32 = 5;
/// The server answered with an error: its verdict, to pass on as it is.
pub const RELINK_FAIL_REJECTED: u32 = 6;
/// The command may have been applied and is not idempotent, or the failure
/// is never retried (authentication).
pub const RELINK_FAIL_NOT_RETRY_SAFE: u32 = 7;
/// `max_retries` retries were spent.
pub const RELINK_FAIL_RETRIES_EXHAUSTED: u32 = 8;
/// The retry budget refused a retry.
pub const RELINK_FAIL_BUDGET_EXHAUSTED: u32 = 9;
/// No connection, and the last attempt failed for a cause retrying will not
/// fix (a wrong password, a peer that is not Redis): whatever the outage
/// policy, the call does not wait for a connection that will not come.
pub const RELINK_FAIL_MISCONFIGURED: u32 = 10;

/// How every call behaves (relink_core's `CallPolicy`), in whole
/// milliseconds. Fill it with `relink_call_policy_default`, then change
/// fields. Checked by `relink_call_new`: a bad enumeration value is
/// `RELINK_INVALID_ARGUMENT`, a bad value `RELINK_INVALID_CONFIG` naming the
/// field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct relink_call_policy {
    /// `sizeof` this struct as the program's header defines it, set by
    /// its `_default` function (see the ABI rule at the top of this header).
    pub struct_size: usize,
    /// With no connection, how long a call may wait for one (counted over the
    /// whole call); 0: fail fast.
    pub queue_wait_ms: u64,
    /// Retries of a failed attempt at most (0 to 100).
    pub max_retries: u32,
    /// `-MOVED`/`-ASK` redirects followed at most (0 to 100).
    pub max_redirects: u32,
    /// How long one attempt may wait for its reply; at least 1.
    pub response_timeout_ms: u64,
    /// The total bound on a call: queueing, attempts and retries; 0: none.
    pub deadline_ms: u64,
    /// The delays between looks at a refusing server (or a missing connection).
    pub busy_backoff: relink_backoff_policy,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `None` for 0, whole milliseconds otherwise.
fn nonzero_ms(n: u64) -> Option<Duration> {
    (n > 0).then(|| Duration::from_millis(n))
}

impl relink_call_policy {
    fn from_policy(p: &CallPolicy) -> Self {
        relink_call_policy {
            struct_size: size_of::<relink_call_policy>(),
            queue_wait_ms: p.queue_wait.map_or(0, ms),
            max_retries: p.max_retries,
            max_redirects: p.max_redirects,
            response_timeout_ms: ms(p.response_timeout),
            deadline_ms: p.deadline.map_or(0, ms),
            busy_backoff: relink_backoff_policy::from_policy(&p.busy_backoff),
        }
    }

    /// The core's policy, validated by the core.
    fn to_policy(self) -> FfiResult<CallPolicy> {
        let busy_backoff = self.busy_backoff.to_policy("busy_backoff.")?;
        CallPolicy::default()
            .queue_wait(nonzero_ms(self.queue_wait_ms))
            .max_retries(self.max_retries)
            .max_redirects(self.max_redirects)
            .response_timeout(Duration::from_millis(self.response_timeout_ms))
            .deadline(nonzero_ms(self.deadline_ms))
            .busy_backoff(busy_backoff)
            .build()
            .map_err(|e| {
                relink_error::new(RELINK_INVALID_CONFIG, format!("invalid call policy: {e}"))
            })
    }
}

/// What the program saw, for `relink_call_decide`. Only the fields its
/// `input` names are read; set the others to 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct relink_call_input {
    /// One of `RELINK_CALL_INPUT_*`.
    pub input: u32,
    /// FAILED: one of `RELINK_FAILURE_*` (not `_NONE`).
    pub failure: u32,
    /// FAILED: one of `RELINK_DELIVERY_*`.
    pub delivery: u32,
    /// FAILED: the retry budget's answer to this failure (ask it once per
    /// failure).
    pub budget_allows: bool,
}

impl relink_call_input {
    fn to_input(self) -> FfiResult<CallInput> {
        Ok(match self.input {
            RELINK_CALL_INPUT_CONNECTED => CallInput::Connected,
            RELINK_CALL_INPUT_NOT_CONNECTED => CallInput::NotConnected,
            RELINK_CALL_INPUT_BACKLOG_FULL => CallInput::BacklogFull,
            RELINK_CALL_INPUT_FAILED => CallInput::Failed {
                kind: failure_kind(self.failure, "input.failure")?,
                delivery: match self.delivery {
                    RELINK_DELIVERY_NOT_SENT => Delivery::NotSent,
                    RELINK_DELIVERY_MAYBE_SENT => Delivery::MaybeSent,
                    RELINK_DELIVERY_ANSWERED => Delivery::Answered,
                    other => {
                        return Err(relink_error::invalid(format!(
                            "`input.delivery` is {other}: expected RELINK_DELIVERY_NOT_SENT (0), \
                             _MAYBE_SENT (1) or _ANSWERED (2)"
                        )))
                    }
                },
                budget_allows: self.budget_allows,
            },
            RELINK_CALL_INPUT_REDIRECTED => CallInput::Redirected,
            RELINK_CALL_INPUT_SHUTDOWN => CallInput::Shutdown,
            RELINK_CALL_INPUT_MISCONFIGURED => CallInput::Misconfigured,
            other => {
                return Err(relink_error::invalid(format!(
                    "`input.input` is {other}: expected RELINK_CALL_INPUT_CONNECTED (0) .. \
                     RELINK_CALL_INPUT_MISCONFIGURED (6)"
                )))
            }
        })
    }
}

/// What to do next with a call. Fields that do not belong to its `decision`
/// are 0 (`_NONE`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct relink_decision {
    /// One of `RELINK_DECISION_*`.
    pub decision: u32,
    /// SEND, REDIRECT: this attempt's response timeout: the policy's, or less
    /// when the deadline is nearer.
    pub timeout_ms: u64,
    /// QUEUE: wait for a connection until then at the latest; RETRY_AT: try
    /// again then. On the caller's clock.
    pub at_ms: u64,
    /// FAIL: what the command may have done (`RELINK_OUTCOME_*`).
    pub outcome: relink_outcome,
    /// FAIL: why the call ended (`RELINK_FAIL_*`).
    pub reason: u32,
    /// FAIL: the last attempt's failure (`RELINK_FAILURE_*`), or
    /// `RELINK_FAILURE_NONE` when no attempt failed.
    pub failure: u32,
}

impl relink_decision {
    fn from_decision(decision: Decision) -> FfiResult<Self> {
        Ok(match decision {
            Decision::Send { timeout } => relink_decision {
                decision: RELINK_DECISION_SEND,
                timeout_ms: ms(timeout),
                ..Default::default()
            },
            Decision::Redirect { timeout } => relink_decision {
                decision: RELINK_DECISION_REDIRECT,
                timeout_ms: ms(timeout),
                ..Default::default()
            },
            Decision::Queue { until } => relink_decision {
                decision: RELINK_DECISION_QUEUE,
                at_ms: until.as_millis(),
                ..Default::default()
            },
            Decision::RetryAt { at } => relink_decision {
                decision: RELINK_DECISION_RETRY_AT,
                at_ms: at.as_millis(),
                ..Default::default()
            },
            Decision::Fail { failure } => relink_decision {
                decision: RELINK_DECISION_FAIL,
                outcome: match failure.outcome {
                    Outcome::NotApplied => RELINK_OUTCOME_NOT_APPLIED,
                    Outcome::Unknown => RELINK_OUTCOME_UNKNOWN,
                    Outcome::Rejected => RELINK_OUTCOME_REJECTED,
                },
                reason: reason_code(failure.reason)?,
                failure: failure.kind.map_or(Ok(RELINK_FAILURE_NONE), failure_code)?,
                ..Default::default()
            },
            other => {
                return Err(relink_error::invalid(format!(
                    "decision {other:?} has no C form yet"
                )))
            }
        })
    }
}

fn reason_code(reason: FailReason) -> FfiResult<u32> {
    Ok(match reason {
        FailReason::NotConnected => RELINK_FAIL_NOT_CONNECTED,
        FailReason::BacklogFull => RELINK_FAIL_BACKLOG_FULL,
        FailReason::QueueTimeout => RELINK_FAIL_QUEUE_TIMEOUT,
        FailReason::DeadlineExceeded => RELINK_FAIL_DEADLINE_EXCEEDED,
        FailReason::Shutdown => RELINK_FAIL_SHUTDOWN,
        FailReason::Rejected => RELINK_FAIL_REJECTED,
        FailReason::NotRetrySafe => RELINK_FAIL_NOT_RETRY_SAFE,
        FailReason::RetriesExhausted => RELINK_FAIL_RETRIES_EXHAUSTED,
        FailReason::BudgetExhausted => RELINK_FAIL_BUDGET_EXHAUSTED,
        FailReason::Misconfigured => RELINK_FAIL_MISCONFIGURED,
        other => {
            return Err(relink_error::invalid(format!(
                "fail reason {other} has no C form yet"
            )))
        }
    })
}

/// Fills `*out` with relink's defaults: queue for at most 5 s, 3 retries,
/// 5 redirects, a 3 s response timeout, a 10 s deadline, and a busy backoff
/// from 10 ms, x2, at most 250 ms, equal jitter.
/// `size` is `sizeof *out`: at most that many bytes are written, and
/// `struct_size` is set to it (`RELINK_STRUCT_SIZE` for a size this library
/// does not know).
#[no_mangle]
pub extern "C" fn relink_call_policy_default(
    out: *mut relink_call_policy,
    size: usize,
) -> relink_code {
    guard(std::ptr::null_mut(), || write_defaults(out, size))
}

versioned!(relink_call_policy, last_of_0_1: busy_backoff: relink_backoff_policy, defaults: Ok(
    relink_call_policy::from_policy(&CallPolicy::default())
));

/// One command's progress through its policy (relink_core's `Call`): the
/// caller tells it what it sees and executes its decisions; it never blocks,
/// reads no clock and does no I/O. Time is milliseconds on a monotonic clock
/// whose epoch the caller picks. Holds a copy of its policy. Not
/// thread-safe: use one from one thread at a time.
#[derive(Debug)]
pub struct relink_call {
    inner: Call,
    policy: CallPolicy,
}

/// A call started at `now_ms` under `*policy` and its deadline.
/// `idempotent`: safe to apply twice (a read, or a write declared
/// idempotent). `seed` spreads the jitter of waiting calls (a call counter
/// will do; the same policy, seed and inputs give the same decisions on
/// every platform). On success `*out` owns it: free it with `relink_call_free`.
#[no_mangle]
pub extern "C" fn relink_call_new(
    policy: *const relink_call_policy,
    now_ms: u64,
    idempotent: bool,
    seed: u64,
    out: *mut *mut relink_call,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || start(policy, now_ms, idempotent, None, seed, out))
}

/// Like `relink_call_new` with a deadline of the call's own instead of the
/// policy's: `deadline_ms` after `now_ms`; 0: no total bound.
#[no_mangle]
pub extern "C" fn relink_call_new_with_deadline(
    policy: *const relink_call_policy,
    now_ms: u64,
    idempotent: bool,
    deadline_ms: u64,
    seed: u64,
    out: *mut *mut relink_call,
    err: *mut *mut relink_error,
) -> relink_code {
    let deadline = Some(nonzero_ms(deadline_ms));
    guard(err, || {
        start(policy, now_ms, idempotent, deadline, seed, out)
    })
}

/// A call under `*policy` into `*out`, with `deadline` (`None`: the
/// policy's) — both constructors.
fn start(
    policy: *const relink_call_policy,
    now_ms: u64,
    idempotent: bool,
    deadline: Option<Option<Duration>>,
    seed: u64,
    out: *mut *mut relink_call,
) -> FfiResult<()> {
    // SAFETY: `policy` is NULL or a policy of `struct_size` readable bytes (contract).
    let policy = unsafe { abi::read(policy, "policy") }?.to_policy()?;
    check_out(out, "out")?;
    let deadline = deadline.unwrap_or(policy.deadline);
    let call = into_raw(relink_call {
        inner: Call::with_deadline(Timestamp::from_millis(now_ms), idempotent, deadline, seed),
        policy,
    });
    // SAFETY: `out` is not NULL and writable (contract).
    unsafe { out.write(call) };
    Ok(())
}

/// Writes what to do next to `*out`, given `*input`, seen at `now_ms`. Once
/// a FAIL decision is given, every later input gets the same one. An
/// out-of-range `input`, `failure` or `delivery` value is
/// `RELINK_INVALID_ARGUMENT` and changes nothing.
#[no_mangle]
pub extern "C" fn relink_call_decide(
    call: *mut relink_call,
    now_ms: u64,
    input: *const relink_call_input,
    out: *mut relink_decision,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `call` is NULL or a live call used by this thread only (contract).
        let call = unsafe { try_mut(call, "call") }?;
        // SAFETY: `input` is NULL or points to a readable input (contract).
        let input = unsafe { try_ref(input, "input") }?.to_input()?;
        check_out(out, "out")?;
        let decision = call
            .inner
            .decide(&call.policy, Timestamp::from_millis(now_ms), input);
        let decision = relink_decision::from_decision(decision)?;
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(decision) };
        Ok(())
    })
}

/// Retries spent so far (0 for NULL).
#[no_mangle]
pub extern "C" fn relink_call_retries(call: *const relink_call) -> u32 {
    guard_value(0, || {
        // SAFETY: `call` is NULL or a live call (contract).
        unsafe { call.as_ref() }.map_or(0, |c| c.inner.retries())
    })
}

/// Redirects followed so far (0 for NULL).
#[no_mangle]
pub extern "C" fn relink_call_redirects(call: *const relink_call) -> u32 {
    guard_value(0, || {
        // SAFETY: `call` is NULL or a live call (contract).
        unsafe { call.as_ref() }.map_or(0, |c| c.inner.redirects())
    })
}

/// Writes the call's deadline (ms on the caller's clock) to `*deadline_ms`
/// and returns true; false when it has none or an argument is NULL.
#[no_mangle]
pub extern "C" fn relink_call_deadline(call: *const relink_call, deadline_ms: *mut u64) -> bool {
    guard_value(false, || {
        // SAFETY: `call` is NULL or a live call (contract).
        let Some(call) = (unsafe { call.as_ref() }) else {
            return false;
        };
        match call.inner.deadline() {
            Some(d) if !deadline_ms.is_null() => {
                // SAFETY: `deadline_ms` is not NULL and writable (contract).
                unsafe { deadline_ms.write(d.as_millis()) };
                true
            }
            _ => false,
        }
    })
}

/// Has the call ended (a FAIL decision was given)? False for NULL.
#[no_mangle]
pub extern "C" fn relink_call_is_done(call: *const relink_call) -> bool {
    guard_value(false, || {
        // SAFETY: `call` is NULL or a live call (contract).
        unsafe { call.as_ref() }.is_some_and(|c| c.inner.is_done())
    })
}

/// Frees a call. NULL is a no-op.
#[no_mangle]
pub extern "C" fn relink_call_free(call: *mut relink_call) {
    guard_value((), || {
        // SAFETY: `call` is NULL or came from relink_call_new(_with_deadline), freed once.
        unsafe { free_raw(call) }
    })
}

/// A short stable name for a `RELINK_FAIL_*` reason, for logs and metrics
/// (`"deadline_exceeded"`), or `"none"` / `"unknown"`: a static string;
/// never free it.
#[no_mangle]
pub extern "C" fn relink_fail_reason_name(reason: u32) -> *const c_char {
    let name: &'static CStr = match reason {
        RELINK_FAIL_NONE => c"none",
        RELINK_FAIL_NOT_CONNECTED => c"not_connected",
        RELINK_FAIL_BACKLOG_FULL => c"backlog_full",
        RELINK_FAIL_QUEUE_TIMEOUT => c"queue_timeout",
        RELINK_FAIL_DEADLINE_EXCEEDED => c"deadline_exceeded",
        RELINK_FAIL_SHUTDOWN => c"shutdown",
        RELINK_FAIL_REJECTED => c"rejected",
        RELINK_FAIL_NOT_RETRY_SAFE => c"not_retry_safe",
        RELINK_FAIL_RETRIES_EXHAUSTED => c"retries_exhausted",
        RELINK_FAIL_BUDGET_EXHAUSTED => c"budget_exhausted",
        RELINK_FAIL_MISCONFIGURED => c"misconfigured",
        _ => c"unknown",
    };
    name.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::{RELINK_FAILURE_IO, RELINK_FAILURE_TIMEOUT};
    use relink_core::failure::FailureKind;
    use std::ptr;

    #[test]
    fn the_default_policy_round_trips() {
        let c = relink_call_policy::from_policy(&CallPolicy::default());
        assert_eq!(c.to_policy().unwrap(), CallPolicy::default());
        let fail_fast = CallPolicy::default().queue_wait(None).deadline(None);
        let c = relink_call_policy::from_policy(&fail_fast);
        assert_eq!((c.queue_wait_ms, c.deadline_ms), (0, 0));
        assert_eq!(c.to_policy().unwrap(), fail_fast);
    }

    #[test]
    fn bad_values_name_the_field() {
        let mut c = relink_call_policy::from_policy(&CallPolicy::default());
        c.response_timeout_ms = 0;
        let e = c.to_policy().unwrap_err();
        assert_eq!(e.code(), RELINK_INVALID_CONFIG);
        assert!(format!("{e:?}").contains("response_timeout"), "{e:?}");
        let mut c = relink_call_policy::from_policy(&CallPolicy::default());
        c.busy_backoff.max_delay_ms = 1;
        let e = c.to_policy().unwrap_err();
        assert!(format!("{e:?}").contains("busy_backoff"), "{e:?}");
        c.busy_backoff.jitter = 99;
        assert_eq!(c.to_policy().unwrap_err().code(), RELINK_INVALID_ARGUMENT);
        let input = relink_call_input {
            input: RELINK_CALL_INPUT_FAILED,
            failure: RELINK_FAILURE_IO,
            delivery: 3,
            budget_allows: true,
        };
        assert_eq!(
            input.to_input().unwrap_err().code(),
            RELINK_INVALID_ARGUMENT
        );
    }

    #[test]
    fn the_call_follows_the_core() {
        let policy = CallPolicy::default()
            .response_timeout(Duration::from_millis(250))
            .deadline(Some(Duration::from_millis(300)));
        let c = relink_call_policy::from_policy(&policy);
        let mut call = ptr::null_mut();
        assert_eq!(
            relink_call_new(&c, 0, true, 1, &mut call, ptr::null_mut()),
            RELINK_OK
        );
        let mut core = Call::new(&policy, Timestamp::from_millis(0), true, 1);
        let connected = relink_call_input::default();
        let hung = relink_call_input {
            input: RELINK_CALL_INPUT_FAILED,
            failure: RELINK_FAILURE_TIMEOUT,
            delivery: RELINK_DELIVERY_MAYBE_SENT,
            budget_allows: true,
        };
        let core_hung = CallInput::Failed {
            kind: FailureKind::Timeout,
            delivery: Delivery::MaybeSent,
            budget_allows: true,
        };
        let script = [
            (0, connected, CallInput::Connected),
            (250, hung, core_hung),
            (250, connected, CallInput::Connected),
            (300, hung, core_hung),
        ];
        for (at, input, core_input) in script {
            let mut got = relink_decision::default();
            assert_eq!(
                relink_call_decide(call, at, &input, &mut got, ptr::null_mut()),
                RELINK_OK
            );
            let want = core.decide(&policy, Timestamp::from_millis(at), core_input);
            assert_eq!(got, relink_decision::from_decision(want).unwrap());
        }
        assert!(relink_call_is_done(call));
        assert_eq!(relink_call_retries(call), 1);
        let mut deadline = 0;
        assert!(relink_call_deadline(call, &mut deadline));
        assert_eq!(deadline, 300);
        relink_call_free(call);
        relink_call_free(ptr::null_mut());
    }
}
