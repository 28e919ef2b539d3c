//! `SyncCursor`: the core's follower position, with `u64`s as `BigInt`s.

use relink_core::sync::{Epoch, ServerPosition};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use wasm_bindgen::prelude::*;

use crate::convert::{from_js, set, to_js, u64_arg, Result, INVALID_ARGUMENT, MAX_SAFE_INTEGER};

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
        to_js(&self.0.offer(epoch, seq), true)
    }

    /// How to resume against `{epoch, first, last}` (BigInts; `first` null when
    /// the log is empty): `{plan: "up_to_date"}`, `{plan: "incremental", after}`
    /// or `{plan: "full_resync", reason}`.
    #[wasm_bindgen(js_name = resumePlan)]
    pub fn resume_plan(&self, server_position: JsValue) -> Result<JsValue> {
        let server: ServerPosition = from_js(server_position, "serverPosition", INVALID_ARGUMENT)?;
        to_js(&self.0.resume_plan(&server), true)
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
        let json = js_sys::Object::new();
        let epoch = self
            .0
            .epoch()
            .map_or(JsValue::NULL, |e| e.0.to_string().into());
        set(&json, "epoch", &epoch);
        set(&json, "seq", &self.0.seq().to_string().into());
        json.into()
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
        let plain: CursorJson = from_js(json, "json", INVALID_ARGUMENT)?;
        // Hand the core its own shape, so its rules (and only its) decide.
        let core_shape = js_sys::Object::new();
        let epoch = plain.epoch.map_or(JsValue::NULL, |e| e.0.into());
        set(&core_shape, "epoch", &epoch);
        set(&core_shape, "seq", &plain.seq.0.into());
        from_js(core_shape.into(), "json", INVALID_ARGUMENT).map(SyncCursor)
    }
}

/// The JSON form of a cursor, before its numbers are checked by the core.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorJson {
    epoch: Option<JsonU64>,
    seq: JsonU64,
}

/// A `u64` written as a decimal string, a BigInt or a safe-integer number.
struct JsonU64(u64);

impl<'de> Deserialize<'de> for JsonU64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> core::result::Result<Self, D::Error> {
        d.deserialize_any(JsonU64Visitor)
    }
}

struct JsonU64Visitor;

impl Visitor<'_> for JsonU64Visitor {
    type Value = JsonU64;

    fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a u64 as a decimal string, a BigInt or a non-negative safe integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> core::result::Result<JsonU64, E> {
        Ok(JsonU64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> core::result::Result<JsonU64, E> {
        u64::try_from(v)
            .map(JsonU64)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> core::result::Result<JsonU64, E> {
        // Integers are visited as i64 up to 2^53 - 1; a float here is a
        // fraction or a number too large to be exact.
        if v >= 0.0 && v <= MAX_SAFE_INTEGER as f64 && v.trunc() == v {
            Ok(JsonU64(v as u64))
        } else {
            Err(E::invalid_value(de::Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> core::result::Result<JsonU64, E> {
        let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
        digits
            .then(|| v.parse().ok())
            .flatten()
            .map(JsonU64)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}
