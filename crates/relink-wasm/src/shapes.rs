//! The core's small enums in their serde shape, both ways: a failure kind
//! (`"io"`, `{server_busy: "loading"}`), a connect cause, a delivery, an
//! outcome.

use relink_core::failure::{BusyReason, Delivery, FailureKind, Outcome};
use relink_core::ConnectCause;
use wasm_bindgen::JsValue;

use crate::convert::{unknown, Fields, Obj, Result, INVALID_ARGUMENT};

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
    let busy = Fields::new(value, BUSY, INVALID_ARGUMENT).ok()?;
    busy.only(&[BUSY]).ok()?;
    let mut name = String::from("server_busy:");
    name.push_str(&busy.get(BUSY)?.as_string()?);
    Some(name)
}

const KIND_NAMES: &str = "a failure kind: \"io\", \"closed\", \"timeout\", \"auth\", \
    \"protocol\", \"moved\", \"command\" or {server_busy: \"loading\" | \"busy\" | \
    \"master_down\" | \"read_only\" | \"try_again\"}";

const CAUSE_NAMES: &str = "a connect cause as `connectCause` names it (\"refused\", \"auth\", \
    ...) or {server_busy: \"loading\" | \"busy\" | \"master_down\" | \"read_only\" | \
    \"try_again\"}";

/// A failure kind in the serde shape.
pub fn kind_to_js(kind: FailureKind) -> JsValue {
    tagged(kind.as_str())
}

/// Reads a failure kind, argument or field `name`.
pub fn kind_from_js(value: &JsValue, name: &str, code: &str) -> Result<FailureKind> {
    let found = untagged(value).and_then(|n| KINDS.into_iter().find(|k| k.as_str() == n));
    found.ok_or_else(|| unknown(code, name, value, KIND_NAMES))
}

/// A connect cause in the serde shape.
pub fn cause_to_js(cause: ConnectCause) -> JsValue {
    tagged(cause.as_str())
}

/// Reads a connect cause, argument or field `name`.
pub fn cause_from_js(value: &JsValue, name: &str, code: &str) -> Result<ConnectCause> {
    let found = untagged(value).and_then(|n| ConnectCause::parse(&n));
    found.ok_or_else(|| unknown(code, name, value, CAUSE_NAMES))
}

const DELIVERY_NAMES: &str = "\"not_sent\", \"maybe_sent\" or \"answered\"";

const DELIVERIES: [(&str, Delivery); 3] = [
    ("not_sent", Delivery::NotSent),
    ("maybe_sent", Delivery::MaybeSent),
    ("answered", Delivery::Answered),
];

/// A delivery in the serde shape.
pub fn delivery_to_js(delivery: Delivery) -> JsValue {
    match delivery {
        Delivery::NotSent => "not_sent",
        Delivery::MaybeSent => "maybe_sent",
        Delivery::Answered => "answered",
    }
    .into()
}

/// Reads a delivery, argument or field `name`.
pub fn delivery_from_js(value: &JsValue, name: &str, code: &str) -> Result<Delivery> {
    let text = value.as_string();
    DELIVERIES
        .into_iter()
        .find(|(n, _)| text.as_deref() == Some(*n))
        .map(|(_, d)| d)
        .ok_or_else(|| unknown(code, name, value, DELIVERY_NAMES))
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
