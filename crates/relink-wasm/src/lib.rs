//! # relink-wasm: relink-core for JavaScript
//!
//! wasm-bindgen bindings of the sans-IO engine: [`Backoff`], [`Supervisor`],
//! the per-call policy ([`CallPolicy`], [`Call`], [`RetryBudget`]), [`SyncCursor`], the
//! classifier of Node's and node-redis's errors ([`classify_node_error`],
//! [`connect_cause_of_node_error`], [`is_read_only`]) and the
//! failure-kind questions ([`retry_safe`], [`kills_connection`],
//! [`classify_error`], ...) and the connect-cause classifiers
//! ([`connect_cause`], [`connect_cause_from_first_bytes`]). Each exported class is a `#[repr(transparent)]`
//! newtype over the core type (ywasm's style).
//!
//! **Architecture Invariant:** this crate is thin: conversion, ownership and
//! error mapping only. It decides nothing, and it knows nothing of sockets,
//! timers, clocks or randomness: the JavaScript driver passes the time and the
//! seed, exactly as a native driver does. Anything that looks like a decision
//! belongs in `relink-core`.
//!
//! Conventions at the boundary (see [`convert`]):
//!
//! - time is a JS number of milliseconds on the driver's own monotonic clock
//!   (`performance.now()` is fine; a fraction is truncated);
//! - `u64` identities (sequence numbers, epochs, ping ids) leave as `BigInt`
//!   and come in as `BigInt` or as a non-negative safe-integer number, never
//!   through a lossy `f64`;
//! - configuration and inputs are plain objects in the core's serde shape
//!   (snake_case fields, durations as strings such as `"100ms"`);
//! - every error is a JS `Error` with a `code` (`ERR_RELINK_INVALID_CONFIG`,
//!   `ERR_RELINK_INVALID_ARGUMENT`, `ERR_RELINK_OUT_OF_RANGE`) and, where one
//!   is to blame, a `field`; the message names the field too.

mod backoff;
mod budget;
mod call;
mod cause;
mod classify;
pub mod convert;
mod failure;
mod shapes;
mod supervisor;
mod sync;

pub use backoff::Backoff;
pub use budget::RetryBudget;
pub use call::{Call, CallPolicy};
pub use cause::{connect_cause, connect_cause_from_first_bytes};
pub use classify::{
    aside_verdict_of_node_error, classify_node_error, connect_cause_of_node_error, is_read_only,
};
pub use convert::Result;
pub use failure::{
    classify_error, classify_error_code, failure_name, failure_outcome, kills_connection,
    retry_safe,
};
pub use supervisor::Supervisor;
pub use sync::SyncCursor;
