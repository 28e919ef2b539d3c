//! The failure-kind questions: does it kill the connection, may the command be
//! retried, what did it do, what does an error's code mean.
//!
//! A kind is the core's serde shape: `"io"`, `"closed"`, `"timeout"`,
//! `"auth"`, `"protocol"`, `"moved"`, `"command"`, or `{server_busy: "loading" |
//! "busy" | "master_down" | "read_only" | "try_again"}`. A delivery is `"not_sent"`,
//! `"maybe_sent"` or `"answered"`.

use relink_core::failure::{Delivery, FailureKind};
use wasm_bindgen::prelude::*;

use crate::convert::{bool_arg, string_arg, Result, INVALID_ARGUMENT};
use crate::shapes::{delivery_from_js, kind_from_js, kind_to_js, outcome_to_js};

fn kind_arg(kind: JsValue) -> Result<FailureKind> {
    kind_from_js(&kind, "kind", INVALID_ARGUMENT)
}

fn delivery_arg(delivery: JsValue) -> Result<Delivery> {
    delivery_from_js(&delivery, "delivery", INVALID_ARGUMENT)
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
    Ok(outcome_to_js(kind.outcome(delivery_arg(delivery)?)))
}

/// A short stable name for logs and metrics (`"io"`, `"server_busy:loading"`, ...).
#[wasm_bindgen(js_name = failureName)]
pub fn failure_name(kind: JsValue) -> Result<String> {
    Ok(kind_arg(kind)?.as_str().into())
}

/// The kind of an error, from its code: a transport error's `err.code` as
/// Node sets it (`"ECONNRESET"` → `"closed"`, `"ECONNREFUSED"` → `"io"`,
/// `"ETIMEDOUT"` → `"timeout"`), or a server error reply's message or its
/// first word (`"LOADING Redis is loading..."` → `{server_busy: "loading"}`).
/// The core's `FailureKind::from_error_code` answers.
#[wasm_bindgen(js_name = classifyError)]
pub fn classify_error(code_or_message: JsValue) -> Result<JsValue> {
    classify(code_or_message, "codeOrMessage")
}

/// The same answer as [`classify_error`], under its first name.
#[wasm_bindgen(js_name = classifyErrorCode)]
pub fn classify_error_code(code: JsValue) -> Result<JsValue> {
    classify(code, "code")
}

fn classify(code: JsValue, name: &str) -> Result<JsValue> {
    let code = string_arg(&code, name)?;
    Ok(kind_to_js(FailureKind::from_error_code(&code)))
}
