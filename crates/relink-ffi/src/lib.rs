//! # librelink: relink's C ABI
//!
//! A blocking, thread-safe Redis client that rides out outages
//! (`relink_client_*`, with Pub/Sub: `relink_subscription_*`), and the core's policy objects for programs that do
//! their own I/O (`relink_backoff_*`, `relink_supervisor_*`, `relink_call_*`,
//! `relink_sync_cursor_*`, `relink_cause_*`). The header, `bindings/c/include/relink.h`, is
//! generated from this crate by cbindgen (`cargo xtask codegen`).
//!
//! **This crate is thin**: conversion, ownership and error mapping only.
//! Every decision is made by `relink` and `relink-core`.
//!
//! Conventions, in rustls-ffi's style:
//!
//! - Fallible functions return a `relink_code` (`RELINK_OK` is 0) and write
//!   their outputs through out-parameters **only on success**. On failure, if
//!   the `relink_error **err` argument is not NULL, `*err` receives an owned
//!   error to free with `relink_error_free`; on success `*err` is untouched.
//! - Every owned object has one `_free` function; `x_free(NULL)` is a no-op.
//! - Every buffer comes with its `size_t` length; values are binary-safe.
//! - Enumerations coming in from C are plain integers, validated: an unknown
//!   value is `RELINK_INVALID_ARGUMENT`, never undefined behaviour.
//! - No panic crosses the boundary: each entry point runs inside the
//!   `boundary` module's `catch_unwind` and a panic becomes `RELINK_PANIC`.
//!   The library must be built with `panic = "unwind"` (the default; the
//!   workspace's release profile keeps it).
//! - NULL pointers and invalid UTF-8 give `RELINK_INVALID_ARGUMENT` with a
//!   message naming the argument.
// The C boundary: the one crate with `unsafe`; every block says why it is sound.
#![allow(unsafe_code)]
// C names: `relink_client`, `relink_options`, ...
#![allow(non_camel_case_types)]
// The exported functions take raw pointers from C and check them (NULL is
// an error, never a dereference); marking them `unsafe fn` would change
// nothing for C callers. rustls-ffi makes the same choice.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod boundary;
mod call;
mod cause;
mod client;
mod policy;
mod pubsub;
mod reply;
mod supervisor;

pub use boundary::*;
pub use call::*;
pub use cause::*;
pub use client::*;
pub use policy::*;
pub use pubsub::*;
pub use reply::*;
pub use supervisor::*;

use std::ffi::c_char;

/// The library version (`"0.1.0"`): a static NUL-terminated string; never free it.
#[no_mangle]
pub extern "C" fn relink_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
