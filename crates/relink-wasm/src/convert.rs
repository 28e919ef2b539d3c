//! Values across the JavaScript boundary: times, `u64`s, seeds, plain objects
//! in the core's serde shape, and the JS `Error`s that report bad ones.
//!
//! Owns the boundary conventions listed in the crate docs; knows nothing about
//! what the values mean to the engine.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::{JsCast, JsValue};

/// What every fallible export returns; the error is a JS `Error` made by [`error`].
pub type Result<T> = core::result::Result<T, JsValue>;

/// `code` of an `Error` about a configuration object (a backoff policy, a supervisor config).
pub const INVALID_CONFIG: &str = "ERR_RELINK_INVALID_CONFIG";
/// `code` of an `Error` about any other argument (a time, a seed, an input, a `u64`).
pub const INVALID_ARGUMENT: &str = "ERR_RELINK_INVALID_ARGUMENT";
/// `code` of an `Error` about a result that a JS number cannot hold exactly.
pub const OUT_OF_RANGE: &str = "ERR_RELINK_OUT_OF_RANGE";

/// `Number.MAX_SAFE_INTEGER` (2^53 - 1): up to it, a JS number holds every integer exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A JS `Error` with `message`, a `code` and, unless empty, a `field`.
pub fn error(code: &str, field: &str, message: &str) -> JsValue {
    let error = js_sys::Error::new(message);
    set(&error, "code", &JsValue::from_str(code));
    if !field.is_empty() {
        set(&error, "field", &JsValue::from_str(field));
    }
    error.into()
}

/// `target[key] = value` on an object of ours.
pub fn set(target: &JsValue, key: &str, value: &JsValue) {
    // Reflect.set fails only on frozen objects and throwing setters; ours are
    // plain objects just made, so there is nothing to report.
    let _ = js_sys::Reflect::set(target, &JsValue::from_str(key), value);
}

/// A time or duration in whole milliseconds: a JS number from 0 to
/// `Number.MAX_SAFE_INTEGER`; a fraction (as from `performance.now()`) is truncated.
pub fn millis(value: &JsValue, name: &str) -> Result<u64> {
    match value.as_f64() {
        // NaN fails both comparisons.
        Some(ms) if ms >= 0.0 && ms <= MAX_SAFE_INTEGER as f64 => Ok(ms as u64),
        _ => Err(error(
            INVALID_ARGUMENT,
            name,
            &format!(
                "invalid `{name}`: must be a number of milliseconds from 0 to \
                 Number.MAX_SAFE_INTEGER (negative, NaN, non-number values are refused)"
            ),
        )),
    }
}

/// A `u64` from a `BigInt` in `0n..2n**64n`, or from a non-negative safe-integer number.
pub fn u64_arg(value: &JsValue, name: &str) -> Result<u64> {
    exact_u64(value).ok_or_else(|| {
        error(
            INVALID_ARGUMENT,
            name,
            &format!(
                "invalid `{name}`: must be a BigInt from 0n to 2n ** 64n - 1n \
                 (or a non-negative safe-integer number)"
            ),
        )
    })
}

/// The seed of the jitter PRNG, as [`u64_arg`] reads it.
pub fn seed(value: &JsValue) -> Result<u64> {
    exact_u64(value).ok_or_else(|| {
        error(
            INVALID_ARGUMENT,
            "seed",
            "invalid `seed`: must be a BigInt from 0n to 2n ** 64n - 1n (or a non-negative \
             safe-integer number); give every client its own, e.g. \
             crypto.getRandomValues(new BigUint64Array(1))[0]",
        )
    })
}

fn exact_u64(value: &JsValue) -> Option<u64> {
    if value.is_bigint() {
        return u64::try_from(value.clone()).ok();
    }
    let n = value.as_f64()?;
    (n >= 0.0 && n <= MAX_SAFE_INTEGER as f64 && n.trunc() == n).then_some(n as u64)
}

/// A JS boolean (no truthiness: `"false"` or `1` is refused).
pub fn bool_arg(value: &JsValue, name: &str) -> Result<bool> {
    value.as_bool().ok_or_else(|| {
        error(
            INVALID_ARGUMENT,
            name,
            &format!("invalid `{name}`: must be a boolean"),
        )
    })
}

/// A configuration object `name` (undefined: the default) read in the core's
/// serde shape and checked by its `validate`; an error names the field
/// (`config.heartbeat.interval`).
pub fn config<T: DeserializeOwned + Default>(
    value: JsValue,
    name: &str,
    validate: impl FnOnce(&T) -> core::result::Result<(), relink_core::ConfigError>,
) -> Result<T> {
    let config = if value.is_undefined() {
        T::default()
    } else {
        from_js(value, name, INVALID_CONFIG)?
    };
    validate(&config).map_err(|e| {
        let field = format!("{name}.{}", e.field());
        error(INVALID_CONFIG, &field, &format!("invalid `{name}`: {e}"))
    })?;
    Ok(config)
}

/// Reads argument `name` in the core's serde shape. The error's `field` is the
/// path to the offending value (`config.heartbeat.interval`), and the message
/// starts with it.
///
/// The value goes through a [`serde_json::Value`] first: serde-wasm-bindgen
/// reads a struct by looking up its known fields, so an unknown (misspelled)
/// field would pass unseen; from a `Value` map the core's
/// `deny_unknown_fields` sees every key. BigInts arrive as exact integers.
pub fn from_js<T: DeserializeOwned>(value: JsValue, name: &str, code: &str) -> Result<T> {
    from_plain(plain(value, name, code)?, name, code)
}

/// The first half of [`from_js`]: argument `name` as a [`serde_json::Value`],
/// for a caller that looks at it before the core's serde does.
pub fn plain(value: JsValue, name: &str, code: &str) -> Result<serde_json::Value> {
    serde_wasm_bindgen::from_value(value).map_err(|e| {
        let reason = js_error_message(e.into());
        error(code, name, &format!("invalid `{name}`: {reason}"))
    })
}

/// The second half of [`from_js`]: the core's serde reads `value`. On an
/// error, the field to blame is found by leaving fields out (`blame`).
pub fn from_plain<T: DeserializeOwned>(
    value: serde_json::Value,
    name: &str,
    code: &str,
) -> Result<T> {
    T::deserialize(&value).map_err(|e| {
        let path = blame::<T>(&value);
        let field = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{name}.{path}")
        };
        error(code, &field, &format!("invalid `{field}`: {e}"))
    })
}

/// The path (`heartbeat.interval`) to the field of `root` that keeps it from
/// reading as a `T`: the field without which it reads (every field of the
/// core's configurations has a default) or only misses that field, looked for again inside that
/// field's own object; empty when no one field is to blame (a missing
/// field, a bad tag: the serde message names those). Only run on an error,
/// so the common path pays nothing; it replaces a path-tracking
/// deserializer, which doubled every type's deserialization code in the
/// `.wasm`.
fn blame<T: DeserializeOwned>(root: &serde_json::Value) -> String {
    let mut path: Vec<String> = Vec::new();
    while let Some(serde_json::Value::Object(here)) = lookup(root, &path) {
        let culprit = here.keys().find(|key| {
            let mut probe = root.clone();
            if let Some(serde_json::Value::Object(parent)) = lookup_mut(&mut probe, &path) {
                parent.remove(key.as_str());
            }
            // Fixed by leaving the field out, or only missing it then (a
            // required field): either way, the value there is the fault.
            T::deserialize(&probe).map_or_else(
                |e| e.to_string() == format!("missing field `{key}`"),
                |_| true,
            )
        });
        match culprit {
            Some(key) => path.push(key.clone()),
            None => break,
        }
    }
    path.join(".")
}

fn lookup<'v>(root: &'v serde_json::Value, path: &[String]) -> Option<&'v serde_json::Value> {
    path.iter().try_fold(root, |value, key| value.get(key))
}

fn lookup_mut<'v>(
    root: &'v mut serde_json::Value,
    path: &[String],
) -> Option<&'v mut serde_json::Value> {
    path.iter().try_fold(root, |value, key| value.get_mut(key))
}

fn js_error_message(error: JsValue) -> String {
    error
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .unwrap_or_default()
}

/// Writes `value` in the core's serde shape as plain objects, `None` as
/// `null`; `u64`s become `BigInt`s when `bigints`, numbers otherwise (and an
/// [`OUT_OF_RANGE`] error if one exceeds `Number.MAX_SAFE_INTEGER`).
pub fn to_js<T: Serialize>(value: &T, bigints: bool) -> Result<JsValue> {
    let serializer = serde_wasm_bindgen::Serializer::new()
        .serialize_missing_as_null(true)
        .serialize_large_number_types_as_bigints(bigints);
    value
        .serialize(&serializer)
        .map_err(|e| error(OUT_OF_RANGE, "", &js_error_message(e.into())))
}
