//! Why a connection attempt failed: the core's classifiers of connect
//! causes, so that a JavaScript driver names a wrong password, a web server
//! on the Redis port or an unknown host exactly as the Rust and C ones do.
//!
//! A cause is the core's serde shape: `"refused"`, `"timeout"`,
//! `"unknown_host"`, `"dns"`, `"unreachable"`, `"tls"`, `"auth"`,
//! `"no_perm"`, `"denied"`, `"not_redis"`, `"server_full"`, `"rejected"`,
//! `"closed"`, `"io"`, `"protocol"` or `{server_busy: "loading" | "busy" |
//! "master_down" | "read_only" | "try_again"}`: what `{type:
//! "connect_failed", attempt, cause, evidence}` takes.

use relink_core::ConnectCause;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::convert::{error, string_arg, Result, INVALID_ARGUMENT};
use crate::shapes::cause_to_js;

/// The cause of a failed connection attempt from an error code and its
/// message: a transport error's `err.code` as Node sets it
/// (`"ECONNREFUSED"` → `"refused"`, `"ENOTFOUND"` → `"unknown_host"`), or a
/// server error reply's first word and the whole reply (`"WRONGPASS"`,
/// `"WRONGPASS invalid username-password pair"` → `"auth"`; `"ERR"`, `"ERR
/// max number of clients reached"` → `"server_full"`). `message` may be
/// omitted. The core's `ConnectCause::from_error` answers.
#[wasm_bindgen(js_name = connectCause)]
pub fn connect_cause(code: JsValue, message: JsValue) -> Result<JsValue> {
    let code = string_arg(&code, "code")?;
    let message = if message.is_undefined() || message.is_null() {
        String::new()
    } else {
        string_arg(&message, "message")?
    };
    Ok(cause_to_js(ConnectCause::from_error(&code, &message)))
}

/// What the first bytes a peer sent say about it (a `Uint8Array`, a
/// `Buffer` will do): an error reply is classified (`-WRONGPASS ...` →
/// `"auth"`), an answer in Redis's protocol (or nothing) says nothing
/// against the peer (`null`), anything else is `"not_redis"` (`HTTP/1.1 400
/// ...`). The core's `ConnectCause::from_first_bytes` answers.
#[wasm_bindgen(js_name = connectCauseFromFirstBytes)]
pub fn connect_cause_from_first_bytes(bytes: JsValue) -> Result<JsValue> {
    let bytes = bytes
        .dyn_ref::<js_sys::Uint8Array>()
        .ok_or_else(|| {
            error(
                INVALID_ARGUMENT,
                "bytes",
                "invalid `bytes`: must be a Uint8Array (a Buffer will do)",
            )
        })?
        .to_vec();
    Ok(ConnectCause::from_first_bytes(&bytes).map_or(JsValue::NULL, cause_to_js))
}
