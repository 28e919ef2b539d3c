//! # relink-core: the sans-IO resilience engine
//!
//! Everything relink decides lives here: how long to wait before reconnecting
//! ([`backoff`]), whether the connection is healthy and what to do next
//! ([`supervisor`]), how a Redis Cluster's nodes add up and when it is lost
//! ([`cluster`]), where a state follower stands and how to resume
//! ([`sync`]), what an error means ([`failure`]), and what a client-side
//! cache may serve, never across a connection gap ([`cache`]).
//!
//! The core performs no I/O, reads no clock and draws no OS randomness: time
//! comes in as a [`Timestamp`] the driver chooses, randomness from a seed the
//! driver supplies. Same inputs, same outputs, on every target; that is what
//! lets native Rust, C and JavaScript share golden test vectors.
// Published: every public item says what it is for (rustdoc -D warnings in `cargo xtask test`).
#![warn(missing_docs)]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod backoff;
pub mod budget;
pub mod cache;
pub mod call;
pub mod cause;
pub mod cluster;
pub mod commands;
pub mod durable;
pub mod duration;
pub mod error;
pub mod failover;
pub mod failure;
pub mod rng;
pub mod supervisor;
pub mod sync;
pub mod time;

pub use backoff::{Backoff, BackoffPolicy, Jitter, Strategy};
pub use call::{Call, CallInput, CallPolicy, Decision, FailReason};
pub use cause::{AttemptFailure, ConnectCause, Evidence};
pub use cluster::{ClusterSupervisor, ClusterSupervisorConfig};
pub use durable::{Confirmation, Durability};
pub use error::ConfigError;
pub use failover::FailoverSignal;
pub use failure::{BusyReason, Delivery, FailureKind, Outcome};
pub use supervisor::{
    Action, AsideVerdict, Event, Input, Output, State, Supervisor, SupervisorConfig,
    SupervisorHealth,
};
pub use sync::{Epoch, Offer, ResumePlan, ResyncReason, ServerPosition, SyncCursor};
pub use time::Timestamp;
