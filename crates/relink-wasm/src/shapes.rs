//! The core's small enums in their serde shape, both ways: a failure kind
//! (`"io"`, `{server_busy: "loading"}`), a connect cause, a delivery, an
//! outcome.

use relink_core::failure::{BusyReason, Delivery, FailureKind, Outcome};
use relink_core::ConnectCause;
use wasm_bindgen::{JsCast as _, JsValue};

use crate::convert::{get, invalid, Obj, Result};

/// Every failure kind, for reading one by its name.
const KINDS: [FailureKind; 12] = [
    FailureKind::Io,
    FailureKind::Closed,
    FailureKind::Timeout,
    FailureKind::Auth,
    FailureKind::Protocol,
    FailureKind::ServerBusy(BusyReason::Loading),
    FailureKind::ServerBusy(BusyReason::Busy),
    FailureKind::ServerBusy(BusyReason::MasterDown),
    FailureKind::ServerBusy(BusyReason::ReadOnly),
    FailureKind::ServerBusy(BusyReason::TryAgain),
    FailureKind::Moved,
    FailureKind::Command,
];

const BUSY: &str = "server_busy";

/// A name in the core's `as_str` form (`"io"`, `"server_busy:loading"`) in
/// the serde shape: a string, or `{server_busy: "loading"}`.
fn tagged(name: &'static str) -> JsValue {
    match name.strip_prefix("server_busy:") {
        Some(reason) => Obj::new().with(BUSY, reason).into(),
        None => name.into(),
    }
}

/// The reverse of [`tagged`]: the `as_str` form of a value in serde's shape.
fn untagged(value: &JsValue) -> Option<String> {
    if let Some(name) = value.as_string() {
        return (!name.contains(':')).then_some(name);
    }
    if !value.is_object() {
        return None;
    }
    let keys = js_sys::Object::keys(value.unchecked_ref::<js_sys::Object>());
    if keys.length() != 1 || keys.get(0).as_string().as_deref() != Some(BUSY) {
        return None;
    }
    let reason = get(value, BUSY).as_string()?;
    Some(format!("{BUSY}:{reason}"))
}

/// What a message shows of a value that is not a name.
fn shown(value: &JsValue) -> String {
    match value.as_string() {
        Some(name) => format!("\"{name}\""),
        None => "a value of another shape".into(),
    }
}

const BUSY_REASONS: &str =
    "{server_busy: \"loading\" | \"busy\" | \"master_down\" | \"read_only\" | \"try_again\"}";

/// A failure kind in the serde shape.
pub fn kind_to_js(kind: FailureKind) -> JsValue {
    tagged(kind.as_str())
}

/// Reads a failure kind, argument or field `name`.
pub fn kind_from_js(value: &JsValue, name: &str, code: &str) -> Result<FailureKind> {
    let found = untagged(value).and_then(|n| KINDS.into_iter().find(|k| k.as_str() == n));
    found.ok_or_else(|| {
        invalid(
            code,
            name,
            &format!(
                "unknown failure kind {}; expected \"io\", \"closed\", \"timeout\", \"auth\", \
                 \"protocol\", \"moved\", \"command\" or {BUSY_REASONS}",
                shown(value)
            ),
        )
    })
}

/// A connect cause in the serde shape.
pub fn cause_to_js(cause: ConnectCause) -> JsValue {
    tagged(cause.as_str())
}

/// Reads a connect cause, argument or field `name`.
pub fn cause_from_js(value: &JsValue, name: &str, code: &str) -> Result<ConnectCause> {
    let found = untagged(value).and_then(|n| ConnectCause::parse(&n));
    found.ok_or_else(|| {
        invalid(
            code,
            name,
            &format!(
                "unknown connect cause {}; expected a name as `connectCause` gives it \
                 (\"refused\", \"auth\", ...) or {BUSY_REASONS}",
                shown(value)
            ),
        )
    })
}

const DELIVERIES: [(&str, Delivery); 3] = [
    ("not_sent", Delivery::NotSent),
    ("maybe_sent", Delivery::MaybeSent),
    ("answered", Delivery::Answered),
];

/// A delivery in the serde shape.
pub fn delivery_to_js(delivery: Delivery) -> JsValue {
    let (name, _) = DELIVERIES
        .into_iter()
        .find(|(_, d)| *d == delivery)
        .unwrap_or(DELIVERIES[1]);
    name.into()
}

/// Reads a delivery, argument or field `name`.
pub fn delivery_from_js(value: &JsValue, name: &str, code: &str) -> Result<Delivery> {
    let text = value.as_string();
    DELIVERIES
        .into_iter()
        .find(|(n, _)| text.as_deref() == Some(*n))
        .map(|(_, d)| d)
        .ok_or_else(|| {
            invalid(
                code,
                name,
                &format!(
                    "unknown delivery {}; expected \"not_sent\", \"maybe_sent\" or \"answered\"",
                    shown(value)
                ),
            )
        })
}

/// An outcome in the serde shape.
pub fn outcome_to_js(outcome: Outcome) -> JsValue {
    match outcome {
        Outcome::NotApplied => "not_applied",
        Outcome::Unknown => "unknown",
        Outcome::Rejected => "rejected",
    }
    .into()
}
