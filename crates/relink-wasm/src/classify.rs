//! The one classifier of the JavaScript driver: what an error thrown by Node
//! or by node-redis means to the engine. The `relink-redis` npm package
//! hands every error it meets to these functions and acts on the answer
//! alone; it compares no error code, class or message itself (the tidy check
//! looks). Like `crates/relink/src/classify.rs` for redis-rs's errors, this
//! is the place that knows the transport's error shapes; the meaning of each
//! code is the core's (`FailureKind::from_error_code`,
//! `ConnectCause::from_error`).
//!
//! An error is read as three facts: its class names (the prototype chain's
//! constructors: `SimpleError`, `ErrorReply`, `Error`), its `code` (Node's
//! `ECONNRESET`, ...) and its `message` (a server error reply's text).

use relink_core::failure::{Delivery, FailureKind};
use relink_core::supervisor::AsideVerdict;
use relink_core::ConnectCause;
use wasm_bindgen::prelude::*;

use crate::convert::{Obj, Result};
use crate::shapes::{cause_to_js, delivery_to_js, kind_to_js};

/// What a failed command met, and how far it got: `{kind, delivery}` in the
/// core's serde shape, ready for a `Call`'s `{type: "failed", ...}` input.
#[derive(Debug)]
struct Classified {
    kind: FailureKind,
    delivery: Delivery,
}

/// The facts read off a JS error.
struct Facts {
    classes: Vec<String>,
    code: String,
    message: String,
}

impl Facts {
    fn read(error: &JsValue) -> Facts {
        let text = |key: &str| {
            js_sys::Reflect::get(error, &JsValue::from_str(key))
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default()
        };
        let mut classes = Vec::new();
        if error.is_object() {
            let mut proto = js_sys::Object::get_prototype_of(error);
            // A prototype chain is short; the bound keeps a pathological
            // (or cyclic, through a Proxy) one from looping.
            for _ in 0..16 {
                if proto.is_null() || proto.is_undefined() {
                    break;
                }
                let name = js_sys::Reflect::get(&proto, &JsValue::from_str("constructor"))
                    .and_then(|c| js_sys::Reflect::get(&c, &JsValue::from_str("name")))
                    .ok()
                    .and_then(|n| n.as_string());
                classes.extend(name);
                proto = js_sys::Object::get_prototype_of(&proto);
            }
        }
        Facts {
            classes,
            code: text("code"),
            message: if error.is_string() {
                error.as_string().unwrap_or_default()
            } else {
                text("message")
            },
        }
    }

    fn is(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == class)
    }

    /// A reply of the server's (`-ERR ...`, `-LOADING ...`): node-redis's
    /// `ErrorReply` and its subclasses.
    fn is_reply(&self) -> bool {
        self.is("ErrorReply")
    }

    fn classify(&self) -> Classified {
        let (kind, delivery) = if self.is_reply() {
            (
                FailureKind::from_error_code(&self.message),
                Delivery::Answered,
            )
        } else if self.is("ClientOfflineError") || self.is("ClientClosedError") {
            // Refused by node-redis before writing: no connection to write on.
            (FailureKind::Closed, Delivery::NotSent)
        } else if self.is("ConnectionTimeoutError") {
            (FailureKind::Timeout, Delivery::NotSent)
        } else if self.is("TimeoutError") || self.is("SocketTimeoutError") {
            (FailureKind::Timeout, Delivery::MaybeSent)
        } else if self.is("SocketClosedUnexpectedlyError") || self.is("DisconnectsClientError") {
            // In flight (or queued to be written: node-redis does not say
            // which) when the connection ended.
            (FailureKind::Closed, Delivery::MaybeSent)
        } else if let Some(kind) = FailureKind::from_transport_code(&self.code) {
            (kind, Delivery::MaybeSent)
        } else {
            // Nothing known: the connection cannot be trusted, nor the
            // command's fate.
            (FailureKind::Protocol, Delivery::MaybeSent)
        };
        Classified { kind, delivery }
    }

    fn connect_cause(&self) -> ConnectCause {
        if self.is_reply() {
            let code = self.message.split_whitespace().next().unwrap_or("");
            ConnectCause::from_error(code, &self.message)
        } else if !self.code.is_empty() {
            ConnectCause::from_error(&self.code, &self.message)
        } else {
            ConnectCause::from_kind(self.classify().kind)
        }
    }
}

/// What a command's error means: `{kind, delivery}` (`kind` as
/// `classifyError` names it; `delivery` `"not_sent"`, `"maybe_sent"` or
/// `"answered"`). `error`: anything a node-redis command rejected with or a
/// socket emitted: a server error reply (`ErrorReply`: answered, its kind
/// from its code: `LOADING` is a refusal, `ERR` the command's own error), a
/// node-redis connection error (`SocketClosedUnexpectedlyError`: closed,
/// maybe sent; `ClientOfflineError`: not sent) or a Node socket error by
/// its `code` (`ECONNRESET`, `EPIPE`: closed; `ETIMEDOUT`: timeout).
#[wasm_bindgen(js_name = classifyNodeError)]
pub fn classify_node_error(error: JsValue) -> Result<JsValue> {
    let Classified { kind, delivery } = Facts::read(&error).classify();
    Ok(Obj::new()
        .with("kind", kind_to_js(kind))
        .with("delivery", delivery_to_js(delivery))
        .into())
}

/// Why a connection attempt failed, from the error it failed with (a socket
/// error, node-redis's `ConnectionTimeoutError`, or the handshake's error
/// reply such as `WRONGPASS ...`): a cause for `{type: "connect_failed", attempt,
/// cause, evidence}`.
#[wasm_bindgen(js_name = connectCauseOfNodeError)]
pub fn connect_cause_of_node_error(error: JsValue) -> Result<JsValue> {
    Ok(cause_to_js(Facts::read(&error).connect_cause()))
}

/// Is the command whose name is `name` (any case) one that Redis flags
/// read-only, and so safe to run twice? The core's list answers.
#[wasm_bindgen(js_name = isReadOnly)]
pub fn is_read_only(name: &str) -> bool {
    relink_core::commands::is_read_only(name.as_bytes())
}

/// What a check from the side (`{type: "check_aside", id}`) found, when its
/// short-lived connection failed with `error`: `{type: "busy"}` when the
/// server answered that it is busy (`-BUSY`, a script running; `-LOADING`),
/// so it is alive; otherwise `{type: "unreachable", kind}`.
#[wasm_bindgen(js_name = asideVerdictOfNodeError)]
pub fn aside_verdict_of_node_error(error: JsValue) -> Result<JsValue> {
    let classified = Facts::read(&error).classify();
    let verdict = match classified.kind {
        FailureKind::ServerBusy(_) if classified.delivery == Delivery::Answered => {
            AsideVerdict::Busy
        }
        kind => AsideVerdict::Unreachable { kind },
    };
    crate::supervisor::verdict_to_js(verdict)
}
