//! # relink-core: the sans-IO resilience engine
//!
//! Everything relink decides lives here: how long to wait before reconnecting
//! ([`backoff`]), whether the connection is healthy and what to do next
//! ([`supervisor`]), where a state follower stands and how to resume
//! ([`sync`]), and what an error means ([`failure`]).
//!
//! The core performs no I/O, reads no clock and draws no OS randomness: time
//! comes in as a [`Timestamp`] the driver chooses, randomness from a seed the
//! driver supplies. Same inputs, same outputs, on every target; that is what
//! lets native Rust, C and JavaScript share golden test vectors.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod error;
pub mod rng;
pub mod time;

pub use error::ConfigError;
pub use time::Timestamp;
