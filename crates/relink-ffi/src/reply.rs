//! Replies: an owned tree converted once from redis-rs's `Value`, read
//! through accessors. RESP3's many shapes fold into a few C types.

use std::ffi::c_char;

use redis::Value;

use crate::boundary::*;

/// Nil (a missing key, a null).
pub const RELINK_REPLY_NIL: u32 = 0;
/// An integer: `relink_reply_integer`.
pub const RELINK_REPLY_INTEGER: u32 = 1;
/// A double: `relink_reply_double`.
pub const RELINK_REPLY_DOUBLE: u32 = 2;
/// A binary-safe string (bulk, verbatim, big number as decimal text): `relink_reply_bytes`.
pub const RELINK_REPLY_STRING: u32 = 3;
/// A status such as `OK` or `PONG`: `relink_reply_bytes`.
pub const RELINK_REPLY_STATUS: u32 = 4;
/// The server refused the command: `relink_reply_bytes` is its error text
/// (`"ERR unknown command ..."`, `"WRONGTYPE ..."`).
pub const RELINK_REPLY_ERROR: u32 = 5;
/// An array (also a RESP3 set or push): `relink_reply_len`, `relink_reply_element`.
pub const RELINK_REPLY_ARRAY: u32 = 6;
/// A RESP3 map: `relink_reply_len` elements alternating key, value.
pub const RELINK_REPLY_MAP: u32 = 7;
/// A RESP3 boolean: `relink_reply_integer` is 0 or 1.
pub const RELINK_REPLY_BOOLEAN: u32 = 8;

/// A reply. The top-level reply is owned by the caller (free it with
/// `relink_reply_free`); elements are borrowed from their parent.
#[derive(Debug)]
pub struct relink_reply {
    kind: u32,
    integer: i64,
    double: f64,
    /// The bytes of a string, status or error, plus a trailing NUL that
    /// `len` does not count (handy for printing text replies).
    bytes: Vec<u8>,
    elements: Vec<relink_reply>,
}

impl relink_reply {
    fn new(kind: u32) -> Self {
        relink_reply {
            kind,
            integer: 0,
            double: 0.0,
            bytes: Vec::new(),
            elements: Vec::new(),
        }
    }

    fn bytes(kind: u32, bytes: &[u8]) -> Self {
        let mut stored = Vec::with_capacity(bytes.len() + 1);
        stored.extend_from_slice(bytes);
        stored.push(0);
        relink_reply {
            bytes: stored,
            ..Self::new(kind)
        }
    }

    fn list(kind: u32, elements: Vec<relink_reply>) -> Self {
        relink_reply {
            elements,
            ..Self::new(kind)
        }
    }

    /// A server error reply, as the server wrote it (`CODE detail`).
    pub(crate) fn error(text: &str) -> Self {
        Self::bytes(RELINK_REPLY_ERROR, text.as_bytes())
    }

    pub(crate) fn from_value(value: Value) -> Self {
        match value {
            Value::Nil => Self::new(RELINK_REPLY_NIL),
            Value::Int(i) => relink_reply {
                integer: i,
                ..Self::new(RELINK_REPLY_INTEGER)
            },
            Value::Double(d) => relink_reply {
                double: d,
                ..Self::new(RELINK_REPLY_DOUBLE)
            },
            Value::Boolean(b) => relink_reply {
                integer: i64::from(b),
                ..Self::new(RELINK_REPLY_BOOLEAN)
            },
            Value::BulkString(b) => Self::bytes(RELINK_REPLY_STRING, &b),
            Value::VerbatimString { text, .. } => Self::bytes(RELINK_REPLY_STRING, text.as_bytes()),
            // Without redis-rs's `num-bigint` feature, the decimal digits as sent.
            Value::BigNumber(n) => Self::bytes(RELINK_REPLY_STRING, &n),
            Value::SimpleString(s) => Self::bytes(RELINK_REPLY_STATUS, s.as_bytes()),
            Value::Okay => Self::bytes(RELINK_REPLY_STATUS, b"OK"),
            Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
                Self::list(
                    RELINK_REPLY_ARRAY,
                    items.into_iter().map(Self::from_value).collect(),
                )
            }
            Value::Map(pairs) => Self::list(
                RELINK_REPLY_MAP,
                pairs
                    .into_iter()
                    .flat_map(|(k, v)| [Self::from_value(k), Self::from_value(v)])
                    .collect(),
            ),
            Value::Attribute { data, .. } => Self::from_value(*data),
            Value::ServerError(e) => match e.details() {
                Some(detail) => Self::error(&format!("{} {detail}", e.code())),
                None => Self::error(e.code()),
            },
            other => Self::bytes(RELINK_REPLY_STRING, format!("{other:?}").as_bytes()),
        }
    }
}

/// The reply's type: one of `RELINK_REPLY_*` (`RELINK_REPLY_NIL` for NULL).
#[no_mangle]
pub extern "C" fn relink_reply_type(reply: *const relink_reply) -> u32 {
    guard_value(RELINK_REPLY_NIL, || {
        // SAFETY: `reply` is NULL or a live reply (contract).
        unsafe { reply.as_ref() }.map_or(RELINK_REPLY_NIL, |r| r.kind)
    })
}

/// The value of an INTEGER reply, 0 or 1 for a BOOLEAN; 0 otherwise.
#[no_mangle]
pub extern "C" fn relink_reply_integer(reply: *const relink_reply) -> i64 {
    guard_value(0, || {
        // SAFETY: `reply` is NULL or a live reply (contract).
        unsafe { reply.as_ref() }.map_or(0, |r| r.integer)
    })
}

/// The value of a DOUBLE reply; 0.0 otherwise.
#[no_mangle]
pub extern "C" fn relink_reply_double(reply: *const relink_reply) -> f64 {
    guard_value(0.0, || {
        // SAFETY: `reply` is NULL or a live reply (contract).
        unsafe { reply.as_ref() }.map_or(0.0, |r| r.double)
    })
}

/// The bytes of a STRING, STATUS or ERROR reply, borrowed from the reply
/// (valid until the top-level reply is freed), with their length in `*len`
/// (when `len` is not NULL). The bytes may contain NUL; a NUL that `*len`
/// does not count follows them, so text replies print as C strings. For
/// other types (and NULL): NULL, and `*len` is 0.
#[no_mangle]
pub extern "C" fn relink_reply_bytes(reply: *const relink_reply, len: *mut usize) -> *const c_char {
    guard_value(std::ptr::null(), || {
        // SAFETY: `reply` is NULL or a live reply (contract).
        let (ptr, n) = match unsafe { reply.as_ref() } {
            Some(r) if !r.bytes.is_empty() => (r.bytes.as_ptr().cast(), r.bytes.len() - 1),
            _ => (std::ptr::null(), 0),
        };
        if !len.is_null() {
            // SAFETY: `len` is not NULL and writable (contract).
            unsafe { len.write(n) };
        }
        ptr
    })
}

/// The number of elements of an ARRAY or MAP reply (a map counts keys and
/// values: twice its entries); 0 otherwise.
#[no_mangle]
pub extern "C" fn relink_reply_len(reply: *const relink_reply) -> usize {
    guard_value(0, || {
        // SAFETY: `reply` is NULL or a live reply (contract).
        unsafe { reply.as_ref() }.map_or(0, |r| r.elements.len())
    })
}

/// Element `index` of an ARRAY or MAP reply, borrowed from it (do not free
/// it); NULL when out of range.
#[no_mangle]
pub extern "C" fn relink_reply_element(
    reply: *const relink_reply,
    index: usize,
) -> *const relink_reply {
    guard_value(std::ptr::null(), || {
        // SAFETY: `reply` is NULL or a live reply (contract).
        unsafe { reply.as_ref() }
            .and_then(|r| r.elements.get(index))
            .map_or(std::ptr::null(), |e| e as *const relink_reply)
    })
}

/// Frees a reply returned by `relink_client_command`, with all its
/// elements. NULL is a no-op; never free an element.
#[no_mangle]
pub extern "C" fn relink_reply_free(reply: *mut relink_reply) {
    guard_value((), || {
        // SAFETY: `reply` is NULL or a top-level reply from this library, freed once.
        unsafe { free_raw(reply) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fold_into_c_types() {
        let r = relink_reply::from_value(Value::Map(vec![(
            Value::SimpleString("k".into()),
            Value::BulkString(b"a\0b".to_vec()),
        )]));
        assert_eq!(relink_reply_type(&r), RELINK_REPLY_MAP);
        assert_eq!(relink_reply_len(&r), 2);
        let v = relink_reply_element(&r, 1);
        let mut len = 99;
        let p = relink_reply_bytes(v, &mut len);
        assert_eq!(len, 3);
        // SAFETY: `p` points to `len` bytes borrowed from `r`, alive here.
        assert_eq!(
            unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) },
            b"a\0b"
        );
        assert!(relink_reply_element(&r, 2).is_null());
        assert_eq!(relink_reply_integer(relink_reply_element(&r, 0)), 0);
    }
}
