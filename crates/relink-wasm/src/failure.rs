//! The failure-kind questions: does it kill the connection, may the command be
//! retried, what did it do, what does an error reply's code mean.
//!
//! A kind is the core's serde shape: `"io"`, `"closed"`, `"timeout"`,
//! `"auth"`, `"protocol"`, `"command"`, or `{server_busy: "loading" | "busy" |
//! "master_down" | "read_only" | "try_again"}`. A delivery is `"not_sent"`,
//! `"maybe_sent"` or `"answered"`.

use relink_core::failure::{Delivery, FailureKind};
use wasm_bindgen::prelude::*;

use crate::convert::{bool_arg, error, from_js, to_js, Result, INVALID_ARGUMENT};

fn kind_arg(kind: JsValue) -> Result<FailureKind> {
    from_js(kind, "kind", INVALID_ARGUMENT)
}

fn delivery_arg(delivery: JsValue) -> Result<Delivery> {
    from_js(delivery, "delivery", INVALID_ARGUMENT)
}

/// May a command that met `kind`, having got as far as `delivery`, be sent
/// again? `idempotent`: running it twice is the same as once.
#[wasm_bindgen(js_name = retrySafe)]
pub fn retry_safe(kind: JsValue, delivery: JsValue, idempotent: JsValue) -> Result<bool> {
    let kind = kind_arg(kind)?;
    let delivery = delivery_arg(delivery)?;
    Ok(kind.retry_safe(delivery, bool_arg(&idempotent, "idempotent")?))
}

/// Must the connection `kind` happened on be replaced?
#[wasm_bindgen(js_name = killsConnection)]
pub fn kills_connection(kind: JsValue) -> Result<bool> {
    Ok(kind_arg(kind)?.kills_connection())
}

/// What the failed command may have done: `"not_applied"`, `"unknown"` or `"rejected"`.
#[wasm_bindgen(js_name = failureOutcome)]
pub fn failure_outcome(kind: JsValue, delivery: JsValue) -> Result<JsValue> {
    let kind = kind_arg(kind)?;
    to_js(&kind.outcome(delivery_arg(delivery)?), false)
}

/// A short stable name for logs and metrics (`"io"`, `"server_busy:loading"`, ...).
#[wasm_bindgen(js_name = failureName)]
pub fn failure_name(kind: JsValue) -> Result<String> {
    Ok(kind_arg(kind)?.as_str().into())
}

/// The kind of a server error reply, from its code: the first word of the
/// message (`"LOADING"` of `"LOADING Redis is loading..."`).
#[wasm_bindgen(js_name = classifyErrorCode)]
pub fn classify_error_code(code: JsValue) -> Result<JsValue> {
    let code = code
        .as_string()
        .ok_or_else(|| error(INVALID_ARGUMENT, "code", "invalid `code`: must be a string"))?;
    to_js(&FailureKind::from_error_code(&code), false)
}
