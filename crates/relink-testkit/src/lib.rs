//! Test support for relink: real `redis-server` processes and a fault-injecting
//! TCP proxy, so integration tests break real connections instead of mocking
//! Redis.
//!
//! Everything here binds loopback only (127.0.0.1), and every wait is bounded
//! in count and in time: a test that goes wrong fails with a message (including
//! the tail of the server log) instead of hanging.
//!
//! **Invariant:** this crate is for tests only (`publish = false`); nothing in
//! relink's libraries depends on it. It knows nothing about relink itself.
//!
//! ```no_run
//! use relink_testkit::{FaultProxy, RedisServer};
//!
//! let mut server = RedisServer::builder().appendonly(true).start();
//! let proxy = FaultProxy::start(server.addr());
//! // point the client under test at proxy.url(), then:
//! proxy.blackhole(); // ... and later proxy.pass();
//! server.kill();
//! server.restart();
//! ```

pub mod cluster;
mod impostor;
mod proxy;
pub mod sentinel;
mod server;
pub mod tls;

pub use cluster::RedisCluster;
pub use impostor::{closed_port, Impostor};
pub use proxy::{FaultProxy, ProxyProbe};
pub use sentinel::SentinelTopology;
pub use server::{RedisServer, RedisServerBuilder};
pub use tls::{TlsFiles, TlsServer};
