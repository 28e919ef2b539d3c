//! `SyncCursor`: the core's follower position, with `u64`s as `BigInt`s.

use relink_core::sync::{Epoch, Offer, ResumePlan, ServerPosition};
use wasm_bindgen::prelude::*;

use crate::convert::{
    u64_arg, unknown_variant, Fields, Obj, Result, INVALID_ARGUMENT, MAX_SAFE_INTEGER,
};

/// Where a state follower stands: the epoch it follows and the last sequence
/// number it applied.
#[wasm_bindgen]
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncCursor(relink_core::SyncCursor);

#[wasm_bindgen]
impl SyncCursor {
    /// A cursor with no position yet (its first plan is a full resync).
    #[wasm_bindgen(constructor)]
    pub fn new() -> SyncCursor {
        SyncCursor(relink_core::SyncCursor::new())
    }

    /// A cursor that has applied everything up to `seq` of `epoch` (BigInts).
    pub fn at(epoch: JsValue, seq: JsValue) -> Result<SyncCursor> {
        Ok(SyncCursor(relink_core::SyncCursor::at(
            Epoch(u64_arg(&epoch, "epoch")?),
            u64_arg(&seq, "seq")?,
        )))
    }

    /// Judges update `(epoch, seq)`: `{verdict: "apply"}` (the cursor advanced),
    /// `{verdict: "duplicate"}`, `{verdict: "gap", expected, got}` or
    /// `{verdict: "wrong_epoch", expected, got}` (BigInts).
    pub fn offer(&mut self, epoch: JsValue, seq: JsValue) -> Result<JsValue> {
        let epoch = Epoch(u64_arg(&epoch, "epoch")?);
        let seq = u64_arg(&seq, "seq")?;
        let verdict = |tag| Obj::tagged("verdict", tag);
        Ok(match self.0.offer(epoch, seq) {
            Offer::Apply => verdict("apply"),
            Offer::Duplicate => verdict("duplicate"),
            Offer::Gap { expected, got } => {
                verdict("gap").with("expected", expected).with("got", got)
            }
            Offer::WrongEpoch { expected, got } => verdict("wrong_epoch")
                .with("expected", expected.0)
                .with("got", got.0),
            _ => return Err(unknown_variant()),
        }
        .into())
    }

    /// How to resume against `{epoch, first, last}` (BigInts; `first` null when
    /// the log is empty): `{plan: "up_to_date"}`, `{plan: "incremental", after}`
    /// or `{plan: "full_resync", reason}`.
    #[wasm_bindgen(js_name = resumePlan)]
    pub fn resume_plan(&self, server_position: JsValue) -> Result<JsValue> {
        // Other fields are ignored, as the core's serde form does.
        let f = Fields::new(&server_position, "serverPosition", INVALID_ARGUMENT)?;
        let first = match f.get("first").filter(|v| !v.is_null()) {
            None => None,
            Some(_) => Some(f.u64("first")?),
        };
        let server = ServerPosition {
            epoch: Epoch(f.u64("epoch")?),
            first,
            last: f.u64("last")?,
        };
        let plan = |tag| Obj::tagged("plan", tag);
        Ok(match self.0.resume_plan(&server) {
            ResumePlan::UpToDate => plan("up_to_date"),
            ResumePlan::Incremental { after } => plan("incremental").with("after", after),
            ResumePlan::FullResync { reason } => {
                plan("full_resync").with("reason", reason.as_str())
            }
            _ => return Err(unknown_variant()),
        }
        .into())
    }

    /// Moves the cursor to a snapshot's position after a full resync.
    #[wasm_bindgen(js_name = resetTo)]
    pub fn reset_to(&mut self, epoch: JsValue, seq: JsValue) -> Result<()> {
        let epoch = Epoch(u64_arg(&epoch, "epoch")?);
        self.0.reset_to(epoch, u64_arg(&seq, "seq")?);
        Ok(())
    }

    /// The epoch followed (a BigInt), or `undefined` before the first.
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> Option<u64> {
        self.0.epoch().map(|e| e.0)
    }

    /// The last sequence number applied (a BigInt; `0n`: none).
    #[wasm_bindgen(getter)]
    pub fn seq(&self) -> u64 {
        self.0.seq()
    }

    /// `{epoch: "<decimal>" | null, seq: "<decimal>"}`: strings, because
    /// `JSON.stringify` refuses BigInts and a number would lose an epoch's low bits.
    #[wasm_bindgen(js_name = toJSON)]
    pub fn to_json(&self) -> JsValue {
        // Written out by JS's BigInt: no integer formatting in the module.
        let decimal = |n: u64| JsValue::from(js_sys::BigInt::from(n).to_string(10).ok());
        let epoch = self.0.epoch().map_or(JsValue::NULL, |e| decimal(e.0));
        Obj::new()
            .with("epoch", epoch)
            .with("seq", decimal(self.0.seq()))
            .into()
    }

    /// The cursor `toJSON` described, given as that object or its JSON text;
    /// `epoch` and `seq` may be decimal strings, BigInts or safe-integer numbers.
    #[wasm_bindgen(js_name = fromJSON)]
    pub fn from_json(json: JsValue) -> Result<SyncCursor> {
        let json = match json.as_string() {
            Some(text) => js_sys::JSON::parse(&text).map_err(|_| {
                crate::convert::error(INVALID_ARGUMENT, "json", "invalid `json`: not JSON text")
            })?,
            None => json,
        };
        let f = Fields::new(&json, "json", INVALID_ARGUMENT)?;
        f.only(&["epoch", "seq"])?;
        let epoch = match f.get("epoch").filter(|v| !v.is_null()) {
            None => None,
            Some(epoch) => Some(Epoch(json_u64(&f, "epoch", &epoch)?)),
        };
        let seq = json_u64(&f, "seq", &f.required("seq")?)?;
        Ok(SyncCursor(relink_core::SyncCursor::from_parts(epoch, seq)))
    }
}

/// A `u64` of a cursor's JSON: a decimal string, a BigInt or a safe-integer number.
fn json_u64(f: &Fields, key: &str, value: &JsValue) -> Result<u64> {
    let parsed = match value.as_string() {
        Some(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse().ok()
        }
        Some(_) => None,
        None if value.is_bigint() => u64::try_from(value.clone()).ok(),
        None => value
            .as_f64()
            .filter(|n| *n >= 0.0 && *n <= MAX_SAFE_INTEGER as f64 && n.trunc() == *n)
            .map(|n| n as u64),
    };
    parsed.ok_or_else(|| {
        f.fail(
            key,
            "must be a u64 as a decimal string, a BigInt or a non-negative safe integer",
        )
    })
}
