//! # relink: a Redis client that rides out outages
//!
//! `relink::Client` keeps one Redis connection alive for your program:
//! automatic reconnect with a tunable backoff, heartbeats that notice a hung
//! server in about a heartbeat interval, honest behaviour during outages
//! (fail fast or a bounded backlog; a command whose fate is unknown is retried
//! only when that is safe), and connection state restored after a reconnect.
//! Every decision is made by [`relink_core`]; this crate owns the I/O.
//!
//! ```no_run
//! use std::time::Duration;
//! use relink::redis::AsyncCommands; // the redis-rs relink was built with
//! use relink::{Client, Config};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::new("redis://127.0.0.1:6379/0")?.with_client_name("billing");
//! let mut client = Client::new(config)?; // connects in the background
//! client.wait_ready(Duration::from_secs(5)).await?;
//! let _: () = client.set("greeting", "hello").await?; // plain redis-rs commands
//! let visits: i64 = client.incr("visits", 1).await?;
//! println!("visit {visits}");
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! A failed command's error says what may have happened on the server
//! ([`Error::outcome_of`]: not applied, unknown, or rejected by the server);
//! [`Client::health`] and [`Client::events`] say how the connection is
//! doing. [`ClusterClient`] does the same for a Redis Cluster, and [`sync`]
//! keeps a resumable, sequenced replica of a key/value state.
//!
//! # One redis-rs
//!
//! relink is built on redis-rs and re-exports the version it was built with
//! as [`relink::redis`](redis). Use that path (`use relink::redis::AsyncCommands;`)
//! instead of a `redis` dependency of your own, or pin your own to the same
//! version: two versions of redis-rs in one program have two distinct
//! `AsyncCommands` traits, and the compiler then reports methods missing on
//! `Client` that are plainly there.
//!
//! # Defaults
//!
//! [`Config::new`] turns on everything that keeps a connection alive
//! (checked against the values below by a test, and the same table is in the
//! README):
//!
//! | setting | default | what it does |
//! | --- | --- | --- |
//! | `backoff` | exponential from 100 ms, ×2, at most 5 s, equal jitter, no limit | delay between reconnect attempts |
//! | `refused_max_delay` | 100 ms, or 1/20 of the outage so far if longer, or its square over 200 s (each wait jittered: half of it plus up to half) | the longest wait after a refused attempt (nothing listening): a restart is noticed within it however far the backoff has grown (about 37 ms median up to 2 s of outage, 55 ms at 3 s), and a 60 s outage still costs under 2 attempts a second |
//! | `backoff_reset_after` | 10 s | a connection up this long is stable: its loss restarts the backoff and earns the next loss an attempt at once again (a Ready connection's loss is retried at once, once per stable period: a flapping server gets it once) |
//! | `connect_timeout` | 2 s | one connection attempt, handshake included |
//! | `heartbeat` | PING after 1 s of silence, dead after 1 s without an answer, 0 misses allowed | a hung server is noticed within 2 s of its last reply; any reply (an error reply too) proves it alive |
//! | `response_timeout` | 3 s | one attempt's wait for its reply, unless the connection shows signs of life (then up to the deadline) |
//! | `deadline` | 10 s (`false`: none) | a whole call: queueing, attempts, retries |
//! | `outage` | queue: 1,024 calls, each waiting at most 5 s (`fail_fast`: none) | what a call does with no connection |
//! | `exclusive` | 8 connections, closed after 60 s unused | blocking commands and `client.exclusive()` leases |
//! | `retry.max_retries` | 3 | retries of one call; only reads, calls declared idempotent, or calls certainly not applied |
//! | `retry.budget` | 10 tokens, 0.1 refilled per success | retries stop while most calls fail (gRPC A6) |
//! | refusals (`LOADING`, `BUSY`, `TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`) | waited out within the outage wait, looking again after 10 ms, ×2, at most 250 ms | nothing was applied, so waiting is safe for every command |
//! | redirects (`MOVED`, `ASK`) | followed, at most 5 per call | `ClusterClient` only |
//! | `tcp_keepalive` | 30 s | the OS's own probe of an idle socket |
//! | `tcp_nodelay` | off on loopback, on otherwise | off: Nagle holds a small write while the last is unacknowledged, which on loopback batches concurrent callers best (see Numbers); on: each write leaves at once (across a network Nagle's hold is a round trip), and relink coalesces concurrent callers' commands into one write itself |
//!
//! Cargo features, all off by default:
//!
//! - `tls-rustls`: `rediss://` URLs, through redis-rs's rustls support.
//! - `opentelemetry`: OpenTelemetry metrics under the database semantic
//!   conventions (`db.client.operation.duration` and friends), recorded
//!   through the global meter provider or the one given to
//!   `Config::with_meter_provider`; see [`metrics`] for every instrument.
// Published: every public item says what it is for (rustdoc -D warnings in `cargo xtask test`).
#![warn(missing_docs)]

mod budget;
pub mod cache;
mod calls;
pub mod classify;
mod client;
pub mod cluster;
mod coalesce;
pub mod config;
pub mod connector;
pub mod diagnose;
mod durable;
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
    self as core, AttemptFailure, ConnectCause, Durability, Event, FailoverSignal, FailureKind,
    Outcome, State,
};

/// The redis-rs this crate was built with: use it through this path (or pin
/// your own `redis` dependency to the same version) so that one program has
/// one `AsyncCommands` trait and one `ConnectionLike` (see [One
/// redis-rs](crate#one-redis-rs)).
pub use redis;

pub use config::HeartbeatConfig;
