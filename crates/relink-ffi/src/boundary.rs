//! The boundary itself: result codes, the owned error object, the panic
//! boundary every entry point runs in, and the pointer checks.
//!
//! Knows nothing of Redis: it only turns Rust results and panics into codes
//! and messages, and C pointers into checked Rust references.

use std::any::Any;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A result code: `RELINK_OK` (0) or one of the `RELINK_*` codes below.
/// Codes come in groups: 1–99 about the call itself, 100–199 about a command
/// or a wait that did not succeed.
pub type relink_code = u32;

/// Success.
pub const RELINK_OK: relink_code = 0;
/// A NULL pointer, invalid UTF-8, or an out-of-range enumeration value; the
/// message names the argument.
pub const RELINK_INVALID_ARGUMENT: relink_code = 1;
/// A setting was rejected (a URL relink cannot use, an option or policy
/// value out of range); the message names the field (`url`, ...) and says
/// what is wrong.
pub const RELINK_INVALID_CONFIG: relink_code = 2;
/// relink panicked inside the call (a bug: please report it). The object the
/// call was about should not be used again, except to free it.
pub const RELINK_PANIC: relink_code = 3;
/// A client function was called from inside a state-change callback, which
/// must not call back into the client.
pub const RELINK_REENTRANT_CALL: relink_code = 4;
/// An options struct's `struct_size` is not the size of any layout this
/// library knows (0: the struct was not filled by its `_default` function;
/// larger: the program was built with a newer header). Nothing was read
/// past `struct_size`; the message names the struct and the sizes accepted.
pub const RELINK_STRUCT_SIZE: relink_code = 5;
/// Not connected and the outage policy is fail-fast: the command was not sent.
pub const RELINK_NOT_CONNECTED: relink_code = 100;
/// The outage backlog is full: the command was not sent.
pub const RELINK_BACKLOG_FULL: relink_code = 101;
/// No connection came within the backlog's max wait: the command was not sent.
pub const RELINK_QUEUE_TIMEOUT: relink_code = 102;
/// The command was sent and no reply came: it may have been applied.
pub const RELINK_MAYBE_APPLIED: relink_code = 103;
/// The command failed before it could have been applied.
pub const RELINK_NOT_APPLIED: relink_code = 104;
/// The client is shut down (or its reconnect policy gave up).
pub const RELINK_SHUTDOWN: relink_code = 105;
/// `relink_client_wait_ready` ran out of time.
pub const RELINK_TIMEOUT: relink_code = 106;
/// Another error from the Redis client library (e.g. an unparsable reply).
pub const RELINK_REDIS_ERROR: relink_code = 107;
/// The call's deadline passed; `relink_error_outcome` says whether it may
/// have been applied (it was sent) or certainly not.
pub const RELINK_DEADLINE_EXCEEDED: relink_code = 108;
/// Not connected, and the latest connection attempt failed for a cause that
/// retrying will not fix (a wrong password, a server that is not Redis, an
/// unknown host): the command was not sent. The message names the cause and
/// the server's words; fix the configuration (new credentials:
/// `relink_client_update_credentials`).
pub const RELINK_MISCONFIGURED: relink_code = 109;

/// What a failed command may have done on the server (`relink_error_outcome`).
pub type relink_outcome = u32;
/// The error is not about a command (a bad argument, a connect failure).
pub const RELINK_OUTCOME_NONE: relink_outcome = 0;
/// Certainly not applied: nothing happened.
pub const RELINK_OUTCOME_NOT_APPLIED: relink_outcome = 1;
/// It may have been applied: assume neither.
pub const RELINK_OUTCOME_UNKNOWN: relink_outcome = 2;
/// The server refused it with an error; retrying gives the same error.
pub const RELINK_OUTCOME_REJECTED: relink_outcome = 3;

/// An error: a code, an outcome and a message. Owned by the caller; free it
/// with `relink_error_free`.
#[derive(Debug)]
pub struct relink_error {
    code: relink_code,
    outcome: relink_outcome,
    message: CString,
}

impl relink_error {
    pub(crate) fn new(code: relink_code, message: impl Into<String>) -> Self {
        relink_error {
            code,
            outcome: RELINK_OUTCOME_NONE,
            message: c_string(message.into()),
        }
    }

    pub(crate) fn with_outcome(mut self, outcome: relink_outcome) -> Self {
        self.outcome = outcome;
        self
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(RELINK_INVALID_ARGUMENT, message)
    }

    pub(crate) fn null(what: &str) -> Self {
        Self::invalid(format!("`{what}` must not be NULL"))
    }

    pub(crate) fn code(&self) -> relink_code {
        self.code
    }
}

/// A C string of `text`; an interior NUL (possible in a server's message)
/// is shown as `\0` rather than cutting the text short.
pub(crate) fn c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let shown = String::from_utf8_lossy(&e.into_vec()).replace('\0', "\\0");
        CString::new(shown).unwrap_or_default()
    })
}

pub(crate) type FfiResult<T = ()> = Result<T, relink_error>;

/// Runs `body` behind the panic boundary; returns its code, and on failure
/// hands the error to the caller through `err` (when not NULL).
pub(crate) fn guard(err: *mut *mut relink_error, body: impl FnOnce() -> FfiResult) -> relink_code {
    let result = catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|p| Err(panicked(&*p)));
    match result {
        Ok(()) => RELINK_OK,
        Err(error) => {
            let code = error.code();
            if !err.is_null() {
                // SAFETY: `err` is not NULL, and the caller passes a pointer
                // valid for writing one `relink_error *` (the API contract).
                unsafe { err.write(Box::into_raw(Box::new(error))) };
            }
            code
        }
    }
}

/// Runs an infallible accessor behind the panic boundary: `fallback` if it panicked.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

fn panicked(payload: &(dyn Any + Send)) -> relink_error {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    relink_error::new(
        RELINK_PANIC,
        format!("relink panicked (a bug, please report it): {what}"),
    )
}

/// A shared reference from a C pointer, or `RELINK_INVALID_ARGUMENT` for NULL.
///
/// # Safety
/// `p` is NULL or points to a live `T` that nothing mutates for `'a`.
pub(crate) unsafe fn try_ref<'a, T>(p: *const T, what: &str) -> FfiResult<&'a T> {
    // SAFETY: forwarded to the caller (see above); `as_ref` checks NULL.
    unsafe { p.as_ref() }.ok_or_else(|| relink_error::null(what))
}

/// An exclusive reference from a C pointer, or `RELINK_INVALID_ARGUMENT` for NULL.
///
/// # Safety
/// `p` is NULL or points to a live `T` that nothing else uses for `'a`.
pub(crate) unsafe fn try_mut<'a, T>(p: *mut T, what: &str) -> FfiResult<&'a mut T> {
    // SAFETY: forwarded to the caller (see above); `as_mut` checks NULL.
    unsafe { p.as_mut() }.ok_or_else(|| relink_error::null(what))
}

/// A `&str` from a NUL-terminated C string; NULL or invalid UTF-8 is
/// `RELINK_INVALID_ARGUMENT`.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn try_str<'a>(p: *const c_char, what: &str) -> FfiResult<&'a str> {
    if p.is_null() {
        return Err(relink_error::null(what));
    }
    // SAFETY: not NULL, and NUL-terminated and live by the caller's contract.
    let text = unsafe { CStr::from_ptr(p) };
    text.to_str()
        .map_err(|e| relink_error::invalid(format!("`{what}` is not valid UTF-8: {e}")))
}

/// Checks that an out-parameter is not NULL before any work is done.
pub(crate) fn check_out<T>(p: *mut T, what: &str) -> FfiResult {
    if p.is_null() {
        Err(relink_error::null(what))
    } else {
        Ok(())
    }
}

/// Moves `value` to the heap and hands it to C.
pub(crate) fn into_raw<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back and drops what [`into_raw`] handed out; NULL is a no-op.
///
/// # Safety
/// `p` is NULL or came from [`into_raw`] for this `T` and is not used again.
pub(crate) unsafe fn free_raw<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: by the caller's contract, `p` came from `Box::into_raw` and
        // this is its one release.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// The code of `err`; `RELINK_OK` for NULL.
#[no_mangle]
pub extern "C" fn relink_error_code(err: *const relink_error) -> relink_code {
    guard_value(RELINK_PANIC, || {
        // SAFETY: `err` is NULL or an error from this library, not yet freed.
        unsafe { err.as_ref() }.map_or(RELINK_OK, |e| e.code)
    })
}

/// What the failed command may have done: `RELINK_OUTCOME_NOT_APPLIED`,
/// `RELINK_OUTCOME_UNKNOWN`, `RELINK_OUTCOME_REJECTED`, or
/// `RELINK_OUTCOME_NONE` when the error is not about a command (and for NULL).
#[no_mangle]
pub extern "C" fn relink_error_outcome(err: *const relink_error) -> relink_outcome {
    guard_value(RELINK_OUTCOME_NONE, || {
        // SAFETY: `err` is NULL or an error from this library, not yet freed.
        unsafe { err.as_ref() }.map_or(RELINK_OUTCOME_NONE, |e| e.outcome)
    })
}

/// The message of `err`: a NUL-terminated UTF-8 string **borrowed** from
/// `err`, valid until `relink_error_free(err)`. Never NULL (`""` for NULL).
#[no_mangle]
pub extern "C" fn relink_error_message(err: *const relink_error) -> *const c_char {
    guard_value(c"".as_ptr(), || {
        // SAFETY: `err` is NULL or an error from this library, not yet freed.
        match unsafe { err.as_ref() } {
            Some(e) => e.message.as_ptr(),
            None => c"".as_ptr(),
        }
    })
}

/// Frees an error. NULL is a no-op.
#[no_mangle]
pub extern "C" fn relink_error_free(err: *mut relink_error) {
    guard_value((), || {
        // SAFETY: `err` is NULL or an error from this library, freed once.
        unsafe { free_raw(err) }
    })
}

/// A stable name for a code (`"RELINK_TIMEOUT"`), or `"RELINK_UNKNOWN_CODE"`:
/// a static string; never free it.
#[no_mangle]
pub extern "C" fn relink_code_name(code: relink_code) -> *const c_char {
    let name: &'static CStr = match code {
        RELINK_OK => c"RELINK_OK",
        RELINK_INVALID_ARGUMENT => c"RELINK_INVALID_ARGUMENT",
        RELINK_INVALID_CONFIG => c"RELINK_INVALID_CONFIG",
        RELINK_PANIC => c"RELINK_PANIC",
        RELINK_REENTRANT_CALL => c"RELINK_REENTRANT_CALL",
        RELINK_STRUCT_SIZE => c"RELINK_STRUCT_SIZE",
        RELINK_NOT_CONNECTED => c"RELINK_NOT_CONNECTED",
        RELINK_BACKLOG_FULL => c"RELINK_BACKLOG_FULL",
        RELINK_QUEUE_TIMEOUT => c"RELINK_QUEUE_TIMEOUT",
        RELINK_MAYBE_APPLIED => c"RELINK_MAYBE_APPLIED",
        RELINK_NOT_APPLIED => c"RELINK_NOT_APPLIED",
        RELINK_SHUTDOWN => c"RELINK_SHUTDOWN",
        RELINK_TIMEOUT => c"RELINK_TIMEOUT",
        RELINK_REDIS_ERROR => c"RELINK_REDIS_ERROR",
        RELINK_DEADLINE_EXCEEDED => c"RELINK_DEADLINE_EXCEEDED",
        RELINK_MISCONFIGURED => c"RELINK_MISCONFIGURED",
        _ => c"RELINK_UNKNOWN_CODE",
    };
    name.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        let mut err: *mut relink_error = ptr::null_mut();
        let code = guard(&mut err, || panic!("boom"));
        assert_eq!(code, RELINK_PANIC);
        assert_eq!(relink_error_code(err), RELINK_PANIC);
        // SAFETY: the message is a live NUL-terminated string until the free below.
        let message = unsafe { CStr::from_ptr(relink_error_message(err)) };
        assert!(message.to_str().unwrap().contains("boom"));
        relink_error_free(err);
        // A NULL `err` is allowed: the code alone is returned.
        assert_eq!(guard(ptr::null_mut(), || panic!("again")), RELINK_PANIC);
    }

    #[test]
    fn interior_nul_is_shown_not_truncated() {
        assert_eq!(c_string("a\0b".into()).to_str().unwrap(), "a\\0b");
    }

    #[test]
    fn null_errors_read_as_nothing() {
        assert_eq!(relink_error_code(ptr::null()), RELINK_OK);
        assert_eq!(relink_error_outcome(ptr::null()), RELINK_OUTCOME_NONE);
        relink_error_free(ptr::null_mut());
    }
}
