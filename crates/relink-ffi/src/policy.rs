//! The core's policy objects on their own, for a C program that does its
//! own I/O: the backoff delay sequence and a state follower's sync cursor.
//!
//! Plain conversion to and from `relink_core`'s types; integers that name an
//! enumeration are validated here, every rule of a policy is the core's.

use std::num::NonZeroU32;
use std::time::Duration;

use relink_core::backoff::{Backoff, BackoffPolicy, Jitter, Strategy};
use relink_core::sync::{Epoch, Offer, ResumePlan, ResyncReason, ServerPosition, SyncCursor};

use crate::boundary::*;

/// Every delay is `initial_delay_ms`.
pub const RELINK_BACKOFF_CONSTANT: u32 = 0;
/// Delay n (from 0) is `initial_delay_ms + n * step_ms`, capped at `max_delay_ms`.
pub const RELINK_BACKOFF_LINEAR: u32 = 1;
/// Delay n is `initial_delay_ms * multiplier^n`, capped at `max_delay_ms`.
pub const RELINK_BACKOFF_EXPONENTIAL: u32 = 2;

/// The delay exactly.
pub const RELINK_JITTER_NONE: u32 = 0;
/// Uniform in [0, d].
pub const RELINK_JITTER_FULL: u32 = 1;
/// Uniform in [ceil(d/2), d].
pub const RELINK_JITTER_EQUAL: u32 = 2;
/// min(max, uniform in [initial, 3 * previous]); ignores the strategy.
pub const RELINK_JITTER_DECORRELATED: u32 = 3;
/// d ± floor(d * jitter_factor), capped at `max_delay_ms`.
pub const RELINK_JITTER_PROPORTIONAL: u32 = 4;

/// A reconnect backoff policy (relink_core's `BackoffPolicy`), in whole
/// milliseconds. Fill it with `relink_backoff_policy_default` (or `_grpc`),
/// then change fields. Checked where it is used: a bad enumeration value is
/// `RELINK_INVALID_ARGUMENT`, a bad value `RELINK_INVALID_CONFIG` naming the
/// field.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct relink_backoff_policy {
    /// `RELINK_BACKOFF_CONSTANT`, `_LINEAR` or `_EXPONENTIAL`.
    pub strategy: u32,
    /// The first un-jittered delay; at least 1.
    pub initial_delay_ms: u64,
    /// No delay is longer; at least `initial_delay_ms`, at most 2^53 - 1.
    pub max_delay_ms: u64,
    /// Growth factor (exponential only); finite and at least 1.
    pub multiplier: f64,
    /// Added per attempt (linear only); at least 1.
    pub step_ms: u64,
    /// `RELINK_JITTER_NONE`, `_FULL`, `_EQUAL`, `_DECORRELATED` or `_PROPORTIONAL`.
    pub jitter: u32,
    /// Relative spread in [0, 1] (proportional jitter only).
    pub jitter_factor: f64,
    /// Give up after this many delays since the last reset; 0: never.
    pub max_attempts: u32,
    /// Give up once the outage has lasted this long; 0: never.
    pub max_elapsed_ms: u64,
}

impl relink_backoff_policy {
    pub(crate) fn from_policy(p: &BackoffPolicy) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (strategy, multiplier, step_ms) = match p.strategy {
            Strategy::Constant => (RELINK_BACKOFF_CONSTANT, Strategy::DEFAULT_MULTIPLIER, 0),
            Strategy::Linear { step } => (
                RELINK_BACKOFF_LINEAR,
                Strategy::DEFAULT_MULTIPLIER,
                ms(step),
            ),
            Strategy::Exponential { multiplier } => (RELINK_BACKOFF_EXPONENTIAL, multiplier, 0),
            _ => (RELINK_BACKOFF_EXPONENTIAL, Strategy::DEFAULT_MULTIPLIER, 0),
        };
        let default_factor = Jitter::DEFAULT_PROPORTIONAL_FACTOR;
        let (jitter, jitter_factor) = match p.jitter {
            Jitter::None => (RELINK_JITTER_NONE, default_factor),
            Jitter::Full => (RELINK_JITTER_FULL, default_factor),
            Jitter::Equal => (RELINK_JITTER_EQUAL, default_factor),
            Jitter::Decorrelated => (RELINK_JITTER_DECORRELATED, default_factor),
            Jitter::Proportional { factor } => (RELINK_JITTER_PROPORTIONAL, factor),
            _ => (RELINK_JITTER_EQUAL, default_factor),
        };
        relink_backoff_policy {
            strategy,
            initial_delay_ms: ms(p.initial_delay),
            max_delay_ms: ms(p.max_delay),
            multiplier,
            step_ms,
            jitter,
            jitter_factor,
            max_attempts: p.max_attempts.map_or(0, NonZeroU32::get),
            max_elapsed_ms: p.max_elapsed.map_or(0, ms),
        }
    }

    /// The core's policy, validated by the core. `prefix` names where the
    /// policy sits (`backoff.` in client options) in error messages.
    pub(crate) fn to_policy(self, prefix: &str) -> FfiResult<BackoffPolicy> {
        let strategy = match self.strategy {
            RELINK_BACKOFF_CONSTANT => Strategy::Constant,
            RELINK_BACKOFF_LINEAR => Strategy::Linear {
                step: Duration::from_millis(self.step_ms),
            },
            RELINK_BACKOFF_EXPONENTIAL => Strategy::Exponential {
                multiplier: self.multiplier,
            },
            other => {
                return Err(relink_error::invalid(format!(
                    "`{prefix}strategy` is {other}: expected RELINK_BACKOFF_CONSTANT (0), \
                     _LINEAR (1) or _EXPONENTIAL (2)"
                )))
            }
        };
        let jitter = match self.jitter {
            RELINK_JITTER_NONE => Jitter::None,
            RELINK_JITTER_FULL => Jitter::Full,
            RELINK_JITTER_EQUAL => Jitter::Equal,
            RELINK_JITTER_DECORRELATED => Jitter::Decorrelated,
            RELINK_JITTER_PROPORTIONAL => Jitter::Proportional {
                factor: self.jitter_factor,
            },
            other => {
                return Err(relink_error::invalid(format!(
                    "`{prefix}jitter` is {other}: expected RELINK_JITTER_NONE (0) .. \
                     RELINK_JITTER_PROPORTIONAL (4)"
                )))
            }
        };
        BackoffPolicy::default()
            .strategy(strategy)
            .initial_delay(Duration::from_millis(self.initial_delay_ms))
            .max_delay(Duration::from_millis(self.max_delay_ms))
            .jitter(jitter)
            .max_attempts(NonZeroU32::new(self.max_attempts))
            .max_elapsed(
                (self.max_elapsed_ms > 0).then(|| Duration::from_millis(self.max_elapsed_ms)),
            )
            .build()
            .map_err(|e| {
                let place = match prefix.trim_end_matches('.') {
                    "" => String::new(),
                    field => format!(" in `{field}`"),
                };
                relink_error::new(
                    RELINK_INVALID_CONFIG,
                    format!("invalid backoff policy{place}: {e}"),
                )
            })
    }
}

/// Fills `*out` with relink's default policy: exponential from 100 ms, x2, at
/// most 5 s, equal jitter, no limits.
#[no_mangle]
pub extern "C" fn relink_backoff_policy_default(out: *mut relink_backoff_policy) -> relink_code {
    fill_policy(out, BackoffPolicy::default())
}

/// Fills `*out` with gRPC's connection backoff: 1 s, x1.6, ±20 %, at most 120 s.
#[no_mangle]
pub extern "C" fn relink_backoff_policy_grpc(out: *mut relink_backoff_policy) -> relink_code {
    fill_policy(out, BackoffPolicy::grpc())
}

fn fill_policy(out: *mut relink_backoff_policy, policy: BackoffPolicy) -> relink_code {
    guard(std::ptr::null_mut(), || {
        check_out(out, "out")?;
        // SAFETY: `out` is not NULL and points to a writable policy (contract).
        unsafe { out.write(relink_backoff_policy::from_policy(&policy)) };
        Ok(())
    })
}

/// A backoff delay sequence (relink_core's `Backoff`). Not thread-safe: use
/// one from one thread at a time.
#[derive(Debug)]
pub struct relink_backoff {
    inner: Backoff,
}

/// Starts the delay sequence of `*policy`, with jitter drawn from `seed`
/// (the same policy and seed give the same delays on every platform).
/// On success `*out` owns it: free it with `relink_backoff_free`.
#[no_mangle]
pub extern "C" fn relink_backoff_new(
    policy: *const relink_backoff_policy,
    seed: u64,
    out: *mut *mut relink_backoff,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `policy` is NULL or points to a readable policy (contract).
        let policy = unsafe { try_ref(policy, "policy") }?.to_policy("")?;
        check_out(out, "out")?;
        let backoff = into_raw(relink_backoff {
            inner: Backoff::new(policy, seed),
        });
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(backoff) };
        Ok(())
    })
}

/// The delay before the next attempt, `elapsed_ms` after the outage began.
/// Returns true and writes `*delay_ms`, or returns false when the policy
/// gives up (max attempts or max elapsed reached) or an argument is NULL.
#[no_mangle]
pub extern "C" fn relink_backoff_next_delay(
    backoff: *mut relink_backoff,
    elapsed_ms: u64,
    delay_ms: *mut u64,
) -> bool {
    guard_value(false, || {
        // SAFETY: `backoff` is NULL or a live backoff used by this thread only (contract).
        let Ok(backoff) = (unsafe { try_mut(backoff, "backoff") }) else {
            return false;
        };
        if delay_ms.is_null() {
            return false;
        }
        match backoff.inner.next_delay(Duration::from_millis(elapsed_ms)) {
            Some(delay) => {
                // SAFETY: `delay_ms` is not NULL and writable (contract).
                unsafe { delay_ms.write(delay.as_millis() as u64) };
                true
            }
            None => false,
        }
    })
}

/// Delays handed out since creation or the last reset (0 for NULL).
#[no_mangle]
pub extern "C" fn relink_backoff_attempts(backoff: *const relink_backoff) -> u32 {
    guard_value(0, || {
        // SAFETY: `backoff` is NULL or a live backoff (contract).
        unsafe { backoff.as_ref() }.map_or(0, |b| b.inner.attempts())
    })
}

/// Starts over from the initial delay (after a successful connection).
/// NULL is a no-op.
#[no_mangle]
pub extern "C" fn relink_backoff_reset(backoff: *mut relink_backoff) {
    guard_value((), || {
        // SAFETY: `backoff` is NULL or a live backoff used by this thread only (contract).
        if let Some(b) = unsafe { backoff.as_mut() } {
            b.inner.reset();
        }
    })
}

/// Frees a backoff. NULL is a no-op.
#[no_mangle]
pub extern "C" fn relink_backoff_free(backoff: *mut relink_backoff) {
    guard_value((), || {
        // SAFETY: `backoff` is NULL or came from relink_backoff_new, freed once.
        unsafe { free_raw(backoff) }
    })
}

/// Apply the update: it is the next one. The cursor moved to it.
pub const RELINK_OFFER_APPLY: u32 = 0;
/// Already applied (a sequence number at or below the cursor's): skip it.
pub const RELINK_OFFER_DUPLICATE: u32 = 1;
/// Updates are missing between the cursor and this one: resume instead.
pub const RELINK_OFFER_GAP: u32 = 2;
/// The update is from another history (epoch): resync instead.
pub const RELINK_OFFER_WRONG_EPOCH: u32 = 3;

/// The verdict on one update offered to a sync cursor.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct relink_offer {
    /// One of `RELINK_OFFER_*`.
    pub verdict: u32,
    /// GAP: the sequence number expected; WRONG_EPOCH: the epoch expected; else 0.
    pub expected: u64,
    /// GAP: the sequence number offered; WRONG_EPOCH: the epoch offered; else 0.
    pub got: u64,
}

/// Nothing to fetch.
pub const RELINK_PLAN_UP_TO_DATE: u32 = 0;
/// Fetch the log entries after `after`.
pub const RELINK_PLAN_INCREMENTAL: u32 = 1;
/// Take a full snapshot; `reason` says why.
pub const RELINK_PLAN_FULL_RESYNC: u32 = 2;

/// Not a full resync.
pub const RELINK_RESYNC_NONE: u32 = 0;
/// The cursor has never applied anything.
pub const RELINK_RESYNC_INITIAL: u32 = 1;
/// The log no longer reaches back to the cursor.
pub const RELINK_RESYNC_TRIMMED: u32 = 2;
/// The server's history was reset (another epoch).
pub const RELINK_RESYNC_EPOCH_CHANGED: u32 = 3;
/// The server is behind the cursor (it lost writes).
pub const RELINK_RESYNC_SERVER_BEHIND: u32 = 4;

/// Where the server's log stands.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct relink_server_position {
    /// The topic's epoch.
    pub epoch: u64,
    /// The oldest sequence number still in the log; 0 when the log is empty
    /// (sequence numbers start at 1).
    pub first: u64,
    /// The latest sequence number (0: nothing published yet).
    pub last: u64,
}

/// How a follower resumes.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct relink_resume_plan {
    /// One of `RELINK_PLAN_*`.
    pub plan: u32,
    /// INCREMENTAL: fetch the entries after this sequence number; else 0.
    pub after: u64,
    /// FULL_RESYNC: one of `RELINK_RESYNC_*`; else `RELINK_RESYNC_NONE`.
    pub reason: u32,
}

/// A state follower's position (relink_core's `SyncCursor`): the epoch and
/// the last sequence number applied. Not thread-safe.
#[derive(Debug)]
pub struct relink_sync_cursor {
    inner: SyncCursor,
}

/// A cursor that has applied nothing. Free it with `relink_sync_cursor_free`.
#[no_mangle]
pub extern "C" fn relink_sync_cursor_new(
    out: *mut *mut relink_sync_cursor,
    err: *mut *mut relink_error,
) -> relink_code {
    new_cursor(SyncCursor::new(), out, err)
}

/// A cursor at `seq` of `epoch` (e.g. restored from disk).
#[no_mangle]
pub extern "C" fn relink_sync_cursor_at(
    epoch: u64,
    seq: u64,
    out: *mut *mut relink_sync_cursor,
    err: *mut *mut relink_error,
) -> relink_code {
    new_cursor(SyncCursor::at(Epoch(epoch), seq), out, err)
}

fn new_cursor(
    cursor: SyncCursor,
    out: *mut *mut relink_sync_cursor,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        check_out(out, "out")?;
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(into_raw(relink_sync_cursor { inner: cursor })) };
        Ok(())
    })
}

/// Offers update `seq` of `epoch`; writes the verdict to `*out`. Only an
/// APPLY verdict moves the cursor.
#[no_mangle]
pub extern "C" fn relink_sync_cursor_offer(
    cursor: *mut relink_sync_cursor,
    epoch: u64,
    seq: u64,
    out: *mut relink_offer,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `cursor` is NULL or a live cursor used by this thread only (contract).
        let cursor = unsafe { try_mut(cursor, "cursor") }?;
        check_out(out, "out")?;
        let offer = match cursor.inner.offer(Epoch(epoch), seq) {
            Offer::Apply => relink_offer::default(),
            Offer::Duplicate => relink_offer {
                verdict: RELINK_OFFER_DUPLICATE,
                ..Default::default()
            },
            Offer::Gap { expected, got } => relink_offer {
                verdict: RELINK_OFFER_GAP,
                expected,
                got,
            },
            Offer::WrongEpoch { expected, got } => relink_offer {
                verdict: RELINK_OFFER_WRONG_EPOCH,
                expected: expected.0,
                got: got.0,
            },
            other => {
                return Err(relink_error::invalid(format!(
                    "offer verdict {other:?} has no C form"
                )))
            }
        };
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(offer) };
        Ok(())
    })
}

/// How to resume from `*server`; writes the plan to `*out`.
#[no_mangle]
pub extern "C" fn relink_sync_cursor_resume_plan(
    cursor: *const relink_sync_cursor,
    server: *const relink_server_position,
    out: *mut relink_resume_plan,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `cursor` is NULL or a live cursor (contract).
        let cursor = unsafe { try_ref(cursor, "cursor") }?;
        // SAFETY: `server` is NULL or points to a readable position (contract).
        let server = unsafe { try_ref(server, "server") }?;
        check_out(out, "out")?;
        let position = ServerPosition {
            epoch: Epoch(server.epoch),
            first: (server.first > 0).then_some(server.first),
            last: server.last,
        };
        let plan = match cursor.inner.resume_plan(&position) {
            ResumePlan::UpToDate => relink_resume_plan::default(),
            ResumePlan::Incremental { after } => relink_resume_plan {
                plan: RELINK_PLAN_INCREMENTAL,
                after,
                reason: RELINK_RESYNC_NONE,
            },
            ResumePlan::FullResync { reason } => relink_resume_plan {
                plan: RELINK_PLAN_FULL_RESYNC,
                after: 0,
                reason: match reason {
                    ResyncReason::Initial => RELINK_RESYNC_INITIAL,
                    ResyncReason::Trimmed => RELINK_RESYNC_TRIMMED,
                    ResyncReason::EpochChanged => RELINK_RESYNC_EPOCH_CHANGED,
                    ResyncReason::ServerBehind => RELINK_RESYNC_SERVER_BEHIND,
                    _ => RELINK_RESYNC_INITIAL,
                },
            },
            other => {
                return Err(relink_error::invalid(format!(
                    "resume plan {other:?} has no C form"
                )))
            }
        };
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(plan) };
        Ok(())
    })
}

/// The last sequence number applied (0 for a fresh cursor, or NULL).
#[no_mangle]
pub extern "C" fn relink_sync_cursor_seq(cursor: *const relink_sync_cursor) -> u64 {
    guard_value(0, || {
        // SAFETY: `cursor` is NULL or a live cursor (contract).
        unsafe { cursor.as_ref() }.map_or(0, |c| c.inner.seq())
    })
}

/// Writes the cursor's epoch to `*epoch` and returns true; false when it
/// has none yet (fresh) or an argument is NULL.
#[no_mangle]
pub extern "C" fn relink_sync_cursor_epoch(
    cursor: *const relink_sync_cursor,
    epoch: *mut u64,
) -> bool {
    guard_value(false, || {
        // SAFETY: `cursor` is NULL or a live cursor (contract).
        let Some(cursor) = (unsafe { cursor.as_ref() }) else {
            return false;
        };
        match cursor.inner.epoch() {
            Some(e) if !epoch.is_null() => {
                // SAFETY: `epoch` is not NULL and writable (contract).
                unsafe { epoch.write(e.0) };
                true
            }
            _ => false,
        }
    })
}

/// Moves the cursor to `seq` of `epoch` (after a full snapshot). NULL is a no-op.
#[no_mangle]
pub extern "C" fn relink_sync_cursor_reset_to(
    cursor: *mut relink_sync_cursor,
    epoch: u64,
    seq: u64,
) {
    guard_value((), || {
        // SAFETY: `cursor` is NULL or a live cursor used by this thread only (contract).
        if let Some(c) = unsafe { cursor.as_mut() } {
            c.inner.reset_to(Epoch(epoch), seq);
        }
    })
}

/// Frees a cursor. NULL is a no-op.
#[no_mangle]
pub extern "C" fn relink_sync_cursor_free(cursor: *mut relink_sync_cursor) {
    guard_value((), || {
        // SAFETY: `cursor` is NULL or came from relink_sync_cursor_new/_at, freed once.
        unsafe { free_raw(cursor) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    #[test]
    fn the_default_policy_round_trips() {
        let c = relink_backoff_policy::from_policy(&BackoffPolicy::default());
        assert_eq!(c.to_policy("").unwrap(), BackoffPolicy::default());
        let g = relink_backoff_policy::from_policy(&BackoffPolicy::grpc());
        assert_eq!(g.to_policy("").unwrap(), BackoffPolicy::grpc());
    }

    #[test]
    fn out_of_range_enums_are_invalid_arguments() {
        let mut c = relink_backoff_policy::from_policy(&BackoffPolicy::default());
        c.jitter = 99;
        assert_eq!(c.to_policy("").unwrap_err().code(), RELINK_INVALID_ARGUMENT);
        c.jitter = RELINK_JITTER_NONE;
        c.strategy = u32::MAX;
        assert_eq!(c.to_policy("").unwrap_err().code(), RELINK_INVALID_ARGUMENT);
        c.strategy = RELINK_BACKOFF_CONSTANT;
        c.initial_delay_ms = 0;
        assert_eq!(c.to_policy("").unwrap_err().code(), RELINK_INVALID_CONFIG);
    }

    #[test]
    fn the_backoff_follows_the_core() {
        let policy = relink_backoff_policy::from_policy(&BackoffPolicy::default());
        let mut b = ptr::null_mut();
        assert_eq!(
            relink_backoff_new(&policy, 1, &mut b, ptr::null_mut()),
            RELINK_OK
        );
        let mut core = Backoff::new(BackoffPolicy::default(), 1);
        let mut elapsed = 0;
        for _ in 0..12 {
            let mut d = 0;
            assert!(relink_backoff_next_delay(b, elapsed, &mut d));
            assert_eq!(Some(Duration::from_millis(d)), core.next());
            elapsed += d;
        }
        assert_eq!(relink_backoff_attempts(b), 12);
        relink_backoff_free(b);
    }
}
