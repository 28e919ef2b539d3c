//! # relink: a Redis client that rides out outages
//!
//! `relink::Client` keeps one Redis connection alive for your program:
//! automatic reconnect with a tunable backoff, heartbeats that notice a hung
//! server in about a heartbeat interval, honest behaviour during outages
//! (fail fast or a bounded backlog; a command whose fate is unknown is retried
//! only when that is safe), and connection state restored after a reconnect.
//! Every decision is made by [`relink_core`]; this crate owns the I/O.
//!
//! Cargo features, all off by default:
//!
//! - `tls-rustls`: `rediss://` URLs, through redis-rs's rustls support.
//! - `opentelemetry`: OpenTelemetry metrics under the database semantic
//!   conventions (`db.client.operation.duration` and friends), recorded
//!   through the global meter provider or the one given to
//!   `Config::with_meter_provider`; see [`metrics`] for every instrument.

mod budget;
mod calls;
pub mod classify;
mod client;
pub mod cluster;
pub mod config;
pub mod connector;
pub mod diagnose;
pub mod error;
pub mod exclusive;
pub mod metrics;
pub mod pubsub;
pub mod sentinel;
pub mod sync;
pub mod tls;
mod wait;

pub use client::{Client, Health, Stats};
pub use cluster::{ClusterClient, ClusterConfig};
pub use config::Config;
pub use error::Error;
pub use exclusive::Exclusive;
pub use pubsub::{PubSubItem, Subscription};
pub use relink_core::{
    self as core, AttemptFailure, ConnectCause, Event, FailureKind, Outcome, State,
};
