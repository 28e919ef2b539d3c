//! Why a connection attempt failed (relink_core's `ConnectCause`) and its
//! evidence, for C: the `RELINK_CAUSE_*` codes, the fixed-size evidence text,
//! and the core's classifiers (`relink_cause_from_error`,
//! `relink_cause_from_first_bytes`) so that a C driver names a wrong
//! password exactly as the Rust and JavaScript ones do.
//!
//! Plain conversion: every classification is the core's.

use std::ffi::{c_char, CStr};

use relink_core::{ConnectCause, Evidence};

use crate::boundary::*;
use crate::supervisor::failure_kind;

/// No cause (a health or an output without a failed attempt). As an input
/// cause: take `failure` instead.
pub const RELINK_CAUSE_NONE: u32 = 0;
/// Nothing listens on the port (`ECONNREFUSED`).
pub const RELINK_CAUSE_REFUSED: u32 = 1;
/// The connect or the handshake got no answer within the connect timeout.
pub const RELINK_CAUSE_TIMEOUT: u32 = 2;
/// The host name does not resolve (`ENOTFOUND`, `EAI_NONAME`). A misconfiguration.
pub const RELINK_CAUSE_UNKNOWN_HOST: u32 = 3;
/// The resolver failed for now (`EAI_AGAIN`).
pub const RELINK_CAUSE_DNS: u32 = 4;
/// No route to the host (`EHOSTUNREACH`, `ENETUNREACH`).
pub const RELINK_CAUSE_UNREACHABLE: u32 = 5;
/// The TLS handshake failed. A misconfiguration.
pub const RELINK_CAUSE_TLS: u32 = 6;
/// The server refused the credentials (`WRONGPASS`, `NOAUTH`). A misconfiguration.
pub const RELINK_CAUSE_AUTH: u32 = 7;
/// The user may not run a command of the handshake (`NOPERM`). A misconfiguration.
pub const RELINK_CAUSE_NO_PERM: u32 = 8;
/// The server refuses clients by policy (`DENIED`: protected mode). A misconfiguration.
pub const RELINK_CAUSE_DENIED: u32 = 9;
/// The peer answered, but not in Redis's protocol (an HTTP server, an SSH
/// daemon). A misconfiguration.
pub const RELINK_CAUSE_NOT_REDIS: u32 = 10;
/// The server has `maxclients` connections already.
pub const RELINK_CAUSE_SERVER_FULL: u32 = 11;
/// `-LOADING`: the server is loading its dataset.
pub const RELINK_CAUSE_SERVER_BUSY_LOADING: u32 = 12;
/// `-BUSY`: a script or function is running too long.
pub const RELINK_CAUSE_SERVER_BUSY_BUSY: u32 = 13;
/// `-MASTERDOWN`: a replica lost its master.
pub const RELINK_CAUSE_SERVER_BUSY_MASTER_DOWN: u32 = 14;
/// `-READONLY`: the server is a read-only replica.
pub const RELINK_CAUSE_SERVER_BUSY_READ_ONLY: u32 = 15;
/// `-TRYAGAIN`, `-CLUSTERDOWN`: try again later.
pub const RELINK_CAUSE_SERVER_BUSY_TRY_AGAIN: u32 = 16;
/// A handshake command was rejected (`SELECT` of a database the server does
/// not have, `HELLO` on a server too old). A misconfiguration.
pub const RELINK_CAUSE_REJECTED: u32 = 17;
/// The connection closed during the handshake.
pub const RELINK_CAUSE_CLOSED: u32 = 18;
/// Another transport failure.
pub const RELINK_CAUSE_IO: u32 = 19;
/// The bytes on the wire made no sense (but started like Redis's protocol).
pub const RELINK_CAUSE_PROTOCOL: u32 = 20;
/// The server reached is not (yet) the master to use (a failover in
/// progress, a stale Sentinel view): passes once the topology settles.
pub const RELINK_CAUSE_NOT_MASTER: u32 = 21;
/// The server answered the handshake with another error (`MISCONF`, a
/// proxy's error): not known to be the client's config.
pub const RELINK_CAUSE_SERVER_ERROR: u32 = 22;

/// The size of an evidence array in an output or health struct: at most 120
/// bytes of UTF-8 text and the terminating NUL.
pub const RELINK_EVIDENCE_SIZE: usize = 121;

const _: () = assert!(RELINK_EVIDENCE_SIZE == Evidence::CAPACITY + 1);

/// Every cause, indexed by its code minus one: the core's fixed order.
const CAUSES: [ConnectCause; 22] = ConnectCause::ALL;

/// The `RELINK_CAUSE_*` code of `cause`.
pub(crate) fn cause_code(cause: ConnectCause) -> FfiResult<u32> {
    CAUSES
        .iter()
        .position(|&c| c == cause)
        // At most 22: the cast cannot truncate.
        .map(|i| i as u32 + 1)
        .ok_or_else(|| relink_error::invalid(format!("connect cause {cause} has no C form yet")))
}

/// The cause a `RELINK_CAUSE_*` code names (not `_NONE`); `what` names the
/// field in the error.
pub(crate) fn cause_from_code(code: u32, what: &str) -> FfiResult<ConnectCause> {
    code.checked_sub(1)
        .and_then(|i| CAUSES.get(i as usize))
        .copied()
        .ok_or_else(|| {
            relink_error::invalid(format!(
                "`{what}` is {code}: expected RELINK_CAUSE_REFUSED (1) .. \
                 RELINK_CAUSE_SERVER_ERROR (22)"
            ))
        })
}

/// A connect failure's cause from C: `cause` when set, else the cause for
/// the `RELINK_FAILURE_*` in `failure` (for drivers that only know that).
pub(crate) fn input_cause(cause: u32, failure: u32) -> FfiResult<ConnectCause> {
    if cause != RELINK_CAUSE_NONE {
        return cause_from_code(cause, "input.cause");
    }
    failure_kind(failure, "input.failure")
        .map(ConnectCause::from_kind)
        .map_err(|_| {
            relink_error::invalid(format!(
                "`input.cause` is RELINK_CAUSE_NONE and `input.failure` is {failure}: \
                 CONNECT_FAILED needs a RELINK_CAUSE_* (1 .. 22) or, failing that, a \
                 RELINK_FAILURE_* (1 .. 12)"
            ))
        })
}

/// Evidence from an optional C string: NULL is none. Not required to be
/// UTF-8 (it may be a peer's first bytes): invalid sequences become U+FFFD.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string live for the call.
pub(crate) unsafe fn evidence_from_c(p: *const c_char) -> Evidence {
    if p.is_null() {
        return Evidence::EMPTY;
    }
    // SAFETY: not NULL, and NUL-terminated and live by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    Evidence::new(&String::from_utf8_lossy(bytes))
}

/// The NUL-terminated C form of `evidence`. It never holds a NUL of its own
/// (the core shows control characters as spaces) and fits with room for
/// the terminator.
pub(crate) fn evidence_to_c(evidence: &Evidence) -> [c_char; RELINK_EVIDENCE_SIZE] {
    let mut out = [0; RELINK_EVIDENCE_SIZE];
    let text = evidence.as_str().as_bytes();
    let n = text.len().min(RELINK_EVIDENCE_SIZE - 1);
    for (dst, &src) in out.iter_mut().zip(&text[..n]) {
        *dst = src as c_char;
    }
    out
}

/// The cause of a failed connection attempt from an error code and its
/// message (relink_core's `ConnectCause::from_error`): a server error reply
/// (`code` "WRONGPASS", `message` the whole reply) or a transport errno name
/// (`code` "ECONNREFUSED"; `message` may be NULL). Writes a `RELINK_CAUSE_*`
/// (never `_NONE`) to `*out`. `code` and `message` must be UTF-8.
#[no_mangle]
pub extern "C" fn relink_cause_from_error(
    code: *const c_char,
    message: *const c_char,
    out: *mut u32,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        // SAFETY: `code` is NULL or a NUL-terminated string live for the call (contract).
        let code = unsafe { try_str(code, "code") }?;
        let message = if message.is_null() {
            ""
        } else {
            // SAFETY: not NULL, so a NUL-terminated string live for the call (contract).
            unsafe { try_str(message, "message") }?
        };
        check_out(out, "out")?;
        let cause = cause_code(ConnectCause::from_error(code, message))?;
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(cause) };
        Ok(())
    })
}

/// Reads the first `len` bytes a peer sent (relink_core's
/// `ConnectCause::from_first_bytes`): an error reply is classified, an
/// answer in Redis's protocol (or nothing, `len` 0) says nothing against the
/// peer (`RELINK_CAUSE_NONE`), anything else is `RELINK_CAUSE_NOT_REDIS`.
/// Writes the code to `*out`. `bytes` may be NULL only when `len` is 0.
#[no_mangle]
pub extern "C" fn relink_cause_from_first_bytes(
    bytes: *const u8,
    len: usize,
    out: *mut u32,
    err: *mut *mut relink_error,
) -> relink_code {
    guard(err, || {
        let bytes: &[u8] = if len == 0 {
            &[]
        } else if bytes.is_null() {
            return Err(relink_error::null("bytes"));
        } else {
            // SAFETY: not NULL, and `len` readable bytes live for the call (contract).
            unsafe { std::slice::from_raw_parts(bytes, len) }
        };
        check_out(out, "out")?;
        let cause = match ConnectCause::from_first_bytes(bytes) {
            Some(cause) => cause_code(cause)?,
            None => RELINK_CAUSE_NONE,
        };
        // SAFETY: `out` is not NULL and writable (contract).
        unsafe { out.write(cause) };
        Ok(())
    })
}

/// A stable name for a cause code (`"auth"`, `"server_busy:loading"`, as in
/// logs and the other bindings), `"none"` for `RELINK_CAUSE_NONE`, or
/// `"unknown"`: a static string; never free it.
#[no_mangle]
pub extern "C" fn relink_cause_name(cause: u32) -> *const c_char {
    guard_value(c"unknown".as_ptr(), || {
        let name: &'static CStr = match cause_from_code(cause, "cause") {
            Ok(c) => name_of(c),
            Err(_) if cause == RELINK_CAUSE_NONE => c"none",
            Err(_) => c"unknown",
        };
        name.as_ptr()
    })
}

/// Does retrying alone not fix this cause (a wrong password, a peer that is
/// not Redis)? false for `RELINK_CAUSE_NONE` and unknown codes.
#[no_mangle]
pub extern "C" fn relink_cause_is_misconfiguration(cause: u32) -> bool {
    guard_value(false, || {
        cause_from_code(cause, "cause").is_ok_and(ConnectCause::is_misconfiguration)
    })
}

/// The core's name of a cause as a C string, made once per cause for the
/// process's life (C wants NUL-terminated statics; the names are the core's).
fn name_of(cause: ConnectCause) -> &'static CStr {
    static NAMES: std::sync::OnceLock<Vec<std::ffi::CString>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        CAUSES
            .iter()
            .map(|c| std::ffi::CString::new(c.as_str()).unwrap_or_default())
            .collect()
    });
    CAUSES
        .iter()
        .position(|&c| c == cause)
        .and_then(|i| names.get(i))
        .map_or(c"unknown", |name| name.as_c_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ptr;

    #[test]
    fn every_cause_code_round_trips_and_is_named_as_the_core_names_it() {
        for code in RELINK_CAUSE_REFUSED..=RELINK_CAUSE_SERVER_ERROR {
            let cause = cause_from_code(code, "cause").unwrap();
            assert_eq!(cause_code(cause).unwrap(), code);
            // SAFETY: a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(relink_cause_name(code)) };
            assert_eq!(name.to_str().unwrap(), cause.as_str());
            assert_eq!(
                relink_cause_is_misconfiguration(code),
                cause.is_misconfiguration()
            );
        }
        for bad in [RELINK_CAUSE_NONE, RELINK_CAUSE_SERVER_ERROR + 1, u32::MAX] {
            let e = cause_from_code(bad, "input.cause").unwrap_err();
            assert_eq!(e.code(), RELINK_INVALID_ARGUMENT);
        }
    }

    #[test]
    fn the_input_cause_falls_back_to_the_failure_kind() {
        assert_eq!(
            input_cause(RELINK_CAUSE_AUTH, 0).unwrap(),
            ConnectCause::Auth
        );
        assert_eq!(
            input_cause(RELINK_CAUSE_NONE, crate::supervisor::RELINK_FAILURE_IO).unwrap(),
            ConnectCause::Io
        );
        assert_eq!(
            input_cause(0, 0).unwrap_err().code(),
            RELINK_INVALID_ARGUMENT
        );
        assert_eq!(
            input_cause(99, 1).unwrap_err().code(),
            RELINK_INVALID_ARGUMENT
        );
    }

    #[test]
    fn evidence_crosses_as_a_nul_terminated_copy() {
        // SAFETY: NULL, and static NUL-terminated strings.
        let (none, text, binary) = unsafe {
            (
                evidence_from_c(ptr::null()),
                evidence_from_c(c"WRONGPASS nope".as_ptr()),
                evidence_from_c(c"\x16\x03\x01\xff".as_ptr()),
            )
        };
        assert!(none.is_empty());
        assert_eq!(text.as_str(), "WRONGPASS nope");
        assert!(binary.as_str().contains('\u{fffd}'));
        let long = Evidence::new(&"x".repeat(500));
        let c = evidence_to_c(&long);
        assert_eq!(c[RELINK_EVIDENCE_SIZE - 1], 0);
        // SAFETY: NUL-terminated: the last byte is 0.
        let back = unsafe { CStr::from_ptr(c.as_ptr()) };
        assert_eq!(back.to_str().unwrap(), long.as_str());
    }

    #[test]
    fn the_classifiers_are_the_cores() {
        let mut out = 0;
        assert_eq!(
            relink_cause_from_error(
                c"WRONGPASS".as_ptr(),
                c"WRONGPASS invalid username-password pair".as_ptr(),
                &mut out,
                ptr::null_mut()
            ),
            RELINK_OK
        );
        assert_eq!(out, RELINK_CAUSE_AUTH);
        assert_eq!(
            relink_cause_from_error(
                c"ECONNREFUSED".as_ptr(),
                ptr::null(),
                &mut out,
                ptr::null_mut()
            ),
            RELINK_OK
        );
        assert_eq!(out, RELINK_CAUSE_REFUSED);
        assert_eq!(
            relink_cause_from_error(ptr::null(), ptr::null(), &mut out, ptr::null_mut()),
            RELINK_INVALID_ARGUMENT
        );
        let http = b"HTTP/1.1 400 Bad Request\r\n";
        assert_eq!(
            relink_cause_from_first_bytes(http.as_ptr(), http.len(), &mut out, ptr::null_mut()),
            RELINK_OK
        );
        assert_eq!(out, RELINK_CAUSE_NOT_REDIS);
        assert_eq!(
            relink_cause_from_first_bytes(ptr::null(), 0, &mut out, ptr::null_mut()),
            RELINK_OK
        );
        assert_eq!(out, RELINK_CAUSE_NONE);
        assert_eq!(
            relink_cause_from_first_bytes(ptr::null(), 3, &mut out, ptr::null_mut()),
            RELINK_INVALID_ARGUMENT
        );
    }
}
