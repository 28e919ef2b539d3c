//! Values across the JavaScript boundary: times, `u64`s, seeds, plain objects
//! in the core's serde shape, and the JS `Error`s that report bad ones.
//!
//! Owns the boundary conventions listed in the crate docs; knows nothing about
//! what the values mean to the engine.
//!
//! By hand, not through serde: the derived (de)serializers of the core's
//! types, a `serde_json::Value` in between and serde-wasm-bindgen were half
//! of the `.wasm`. A [`Fields`] reads one plain object the way the core's
//! serde form does (unknown fields refused, missing ones absent, the error
//! naming the field by its path; a field set to `undefined` counts as
//! missing, as it does for a JS reader); [`Obj`] writes one.

use core::time::Duration;

use wasm_bindgen::{JsCast as _, JsValue};

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

/// An error about argument (or field) `name`: "invalid `name`: `what`".
pub fn invalid(code: &str, name: &str, what: &str) -> JsValue {
    error(code, name, &format!("invalid `{name}`: {what}"))
}

/// An error about field `name`, whose value `got` is none of those it
/// takes: "invalid `name`: unknown value "got"; expected `expected`".
pub fn unknown(code: &str, name: &str, got: &JsValue, expected: &str) -> JsValue {
    let mut what = String::from("unknown value ");
    match got.as_string() {
        Some(text) => {
            what.push('"');
            what.push_str(&text);
            what.push('"');
        }
        None => what.push_str("of another shape"),
    }
    what.push_str("; expected ");
    what.push_str(expected);
    invalid(code, name, &what)
}

/// `target[key] = value` on an object of ours.
pub fn set(target: &JsValue, key: &str, value: &JsValue) {
    // Reflect.set fails only on frozen objects and throwing setters; ours are
    // plain objects just made, so there is nothing to report.
    let _ = js_sys::Reflect::set(target, &JsValue::from_str(key), value);
}

/// `value[key]`, `undefined` when absent (or `value` is no object).
pub fn get(value: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(value, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// A time or duration in whole milliseconds: a JS number from 0 to
/// `Number.MAX_SAFE_INTEGER`; a fraction (as from `performance.now()`) is truncated.
pub fn millis(value: &JsValue, name: &str) -> Result<u64> {
    match value.as_f64() {
        // NaN fails both comparisons.
        Some(ms) if ms >= 0.0 && ms <= MAX_SAFE_INTEGER as f64 => Ok(ms as u64),
        _ => Err(invalid(
            INVALID_ARGUMENT,
            name,
            "must be a number of milliseconds from 0 to Number.MAX_SAFE_INTEGER (negative, \
             NaN, non-number values are refused)",
        )),
    }
}

/// A `u64` from a `BigInt` in `0n..2n**64n`, or from a non-negative safe-integer number.
pub fn u64_arg(value: &JsValue, name: &str) -> Result<u64> {
    exact_u64(value).ok_or_else(|| invalid(INVALID_ARGUMENT, name, U64_EXPECTED))
}

const U64_EXPECTED: &str =
    "must be a BigInt from 0n to 2n ** 64n - 1n (or a non-negative safe-integer number)";

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
    value
        .as_bool()
        .ok_or_else(|| invalid(INVALID_ARGUMENT, name, "must be a boolean"))
}

/// A JS string.
pub fn string_arg(value: &JsValue, name: &str) -> Result<String> {
    value
        .as_string()
        .ok_or_else(|| invalid(INVALID_ARGUMENT, name, "must be a string"))
}

/// A configuration object `name` (undefined: the default) read by `read`
/// and checked by its `validate`; an error names the field
/// (`config.heartbeat.interval`).
pub fn config<T: Default>(
    value: &JsValue,
    name: &str,
    read: impl FnOnce(&Fields) -> Result<T>,
    validate: impl FnOnce(&T) -> core::result::Result<(), relink_core::ConfigError>,
) -> Result<T> {
    let config = if value.is_undefined() {
        T::default()
    } else {
        read(&Fields::new(value, name, INVALID_CONFIG)?)?
    };
    validate(&config).map_err(|e| config_error(name, &e))?;
    Ok(config)
}

/// The core's verdict on configuration object `name`: the field is the path
/// to the one at fault (`config.max_tokens`).
pub fn config_error(name: &str, e: &relink_core::ConfigError) -> JsValue {
    let field = dotted(name, e.field());
    error(INVALID_CONFIG, &field, &format!("invalid `{name}`: {e}"))
}

/// `object.field`.
fn dotted(object: &str, field: &str) -> String {
    let mut path = String::from(object);
    path.push('.');
    path.push_str(field);
    path
}

/// One plain object argument read field by field, in the core's serde shape.
#[derive(Debug)]
pub struct Fields {
    value: JsValue,
    path: String,
    code: &'static str,
}

impl Fields {
    /// `value`, argument (or field) `path`, must be an object; every field
    /// is read later by its name.
    pub fn new(value: &JsValue, path: &str, code: &'static str) -> Result<Fields> {
        if !value.is_object() || js_sys::Array::is_array(value) {
            return Err(invalid(code, path, "must be a plain object"));
        }
        Ok(Fields {
            value: value.clone(),
            path: path.into(),
            code,
        })
    }

    /// Refuses a field not in `known` (a misspelling would otherwise pass
    /// unseen), naming it.
    pub fn only(&self, known: &[&str]) -> Result<()> {
        for key in js_sys::Object::keys(self.value.unchecked_ref::<js_sys::Object>()).iter() {
            let key = key.as_string().unwrap_or_default();
            if !known.contains(&key.as_str()) {
                let expected = one_of(known);
                return Err(self.fail(&key, &format!("unknown field, expected {expected}")));
            }
        }
        Ok(())
    }

    /// The path of the object itself (`config.heartbeat`).
    pub fn name(&self) -> &str {
        &self.path
    }

    /// The path of field `key` (`config.heartbeat.interval`).
    pub fn path(&self, key: &str) -> String {
        dotted(&self.path, key)
    }

    /// An error about field `key`.
    pub fn fail(&self, key: &str, what: &str) -> JsValue {
        invalid(self.code, &self.path(key), what)
    }

    /// Field `key`, `None` when absent (or `undefined`).
    pub fn get(&self, key: &str) -> Option<JsValue> {
        Some(get(&self.value, key)).filter(|v| !v.is_undefined())
    }

    /// Field `key`, which must be there.
    pub fn required(&self, key: &str) -> Result<JsValue> {
        self.get(key).ok_or_else(|| self.fail(key, "missing field"))
    }

    /// A nested object.
    pub fn object(&self, key: &str) -> Result<Option<Fields>> {
        self.get(key)
            .map(|v| Fields::new(&v, &self.path(key), self.code))
            .transpose()
    }

    /// A duration in the core's text form (`"250ms"`, `"1.5s"`).
    pub fn duration(&self, key: &str) -> Result<Option<Duration>> {
        self.get(key)
            .map(|v| self.parse_duration(key, &v))
            .transpose()
    }

    /// A duration, or `null` for none (`Some(None)`).
    pub fn opt_duration(&self, key: &str) -> Result<Option<Option<Duration>>> {
        self.get(key)
            .map(|v| {
                if v.is_null() {
                    Ok(None)
                } else {
                    self.parse_duration(key, &v).map(Some)
                }
            })
            .transpose()
    }

    fn parse_duration(&self, key: &str, value: &JsValue) -> Result<Duration> {
        let Some(text) = value.as_string() else {
            return Err(self.fail(
                key,
                "must be a duration string such as \"250ms\", \"1.5s\" or \"1h30m\"",
            ));
        };
        relink_core::duration::parse(&text)
            .map_err(|e| self.fail(key, &format!("\"{text}\" is not a duration: {e}")))
    }

    /// A whole number from 0 to `u32::MAX`.
    pub fn u32(&self, key: &str) -> Result<Option<u32>> {
        self.get(key)
            .map(|v| {
                v.as_f64()
                    .filter(|n| *n >= 0.0 && *n <= f64::from(u32::MAX) && n.trunc() == *n)
                    .map(|n| n as u32)
                    .ok_or_else(|| self.fail(key, "must be a whole number from 0 to 4294967295"))
            })
            .transpose()
    }

    /// A whole number from 0 to `u32::MAX`, which must be there.
    pub fn required_u32(&self, key: &str) -> Result<u32> {
        self.u32(key)?
            .ok_or_else(|| self.fail(key, "missing field"))
    }

    /// A number.
    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| self.fail(key, "must be a number")))
            .transpose()
    }

    /// A string, one of those `names` lists; its position in `names`.
    pub fn choice(&self, key: &str, names: &[&str]) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                let name = v.as_string().unwrap_or_default();
                names
                    .iter()
                    .position(|n| *n == name)
                    .ok_or_else(|| unknown(self.code, &self.path(key), &v, &one_of(names)))
            })
            .transpose()
    }

    /// A `u64`, as [`u64_arg`] reads it.
    pub fn u64(&self, key: &str) -> Result<u64> {
        exact_u64(&self.required(key)?).ok_or_else(|| self.fail(key, U64_EXPECTED))
    }

    /// A failure kind, which must be there.
    pub fn kind(&self, key: &str) -> Result<relink_core::FailureKind> {
        crate::shapes::kind_from_js(&self.required(key)?, &self.path(key), self.code)
    }

    /// A boolean, which must be there.
    pub fn bool(&self, key: &str) -> Result<bool> {
        bool_arg(&self.required(key)?, &self.path(key))
    }
}

/// "one of `a`, `b`, `c`", for a message.
pub fn one_of(names: &[&str]) -> String {
    let mut list = String::from("one of ");
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            list.push_str(", ");
        }
        list.push('`');
        list.push_str(name);
        list.push('`');
    }
    list
}

/// A plain object being written.
#[derive(Debug)]
pub struct Obj(pub JsValue);

impl Obj {
    /// `{}`.
    pub fn new() -> Obj {
        Obj(js_sys::Object::new().into())
    }

    /// `{type: tag}`, the tag of an internally tagged enum of the core's.
    pub fn tagged(tag_key: &str, tag: &str) -> Obj {
        Obj::new().with(tag_key, tag)
    }

    /// Sets `key`; anything that becomes a `JsValue`.
    pub fn with(self, key: &str, value: impl Into<JsValue>) -> Obj {
        self.with_value(key, value.into())
    }

    // One copy of the setting for every caller (the generic `with` is
    // inlined at each): smaller, and an object is written once per call.
    #[inline(never)]
    fn with_value(self, key: &str, value: JsValue) -> Obj {
        set(&self.0, key, &value);
        self
    }
}

impl Default for Obj {
    fn default() -> Self {
        Obj::new()
    }
}

impl From<Obj> for JsValue {
    fn from(obj: Obj) -> JsValue {
        obj.0
    }
}

/// A `u64` (a count of ms, a timestamp) as a JS number: exact up to
/// `Number.MAX_SAFE_INTEGER`, an [`OUT_OF_RANGE`] error beyond.
pub fn number(n: u64) -> Result<JsValue> {
    if n > MAX_SAFE_INTEGER {
        return Err(error(
            OUT_OF_RANGE,
            "",
            "a number above Number.MAX_SAFE_INTEGER cannot be represented exactly",
        ));
    }
    Ok(JsValue::from_f64(n as f64))
}

/// A duration as whole ms (the core's serde form: rounded down), a JS number.
pub fn ms(d: Duration) -> Result<JsValue> {
    number(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `Some` as its value, `None` as `null`.
pub fn or_null<T>(value: Option<T>, to_js: impl FnOnce(T) -> Result<JsValue>) -> Result<JsValue> {
    value.map_or(Ok(JsValue::NULL), to_js)
}

/// Refused: a variant of a core enum this binding does not write yet. The
/// core's enums are `#[non_exhaustive]`, so the compiler cannot point at a
/// new one here; the golden vectors replayed through the module
/// (`bindings/js/test/vectors.test.mjs`) fail until it is written.
pub fn unknown_variant() -> JsValue {
    error(
        OUT_OF_RANGE,
        "",
        "an answer of the engine that relink-wasm does not write yet",
    )
}
