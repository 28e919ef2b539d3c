//! Redis Sentinel: a [`Connector`] that finds the current master through
//! the sentinels on every (re)connect, and follows a failover as soon as the
//! sentinels announce it.
//!
//! - **Discovery** is redis-rs's ([`redis::sentinel::Sentinel`]): the
//!   sentinels are asked in order (one that is down or not a sentinel is
//!   skipped) for the master of the service; a master they flag down is
//!   skipped, and the one named is checked with `ROLE`.
//! - **The connection** is then made like [`TcpConnector`](crate::connector::TcpConnector)'s
//!   (the config's credentials, database, protocol, timeouts, push messages),
//!   and `ROLE` is asked again on it: a node that is not a master fails the
//!   attempt with a `READONLY` error, and the supervisor's backoff tries again.
//! - **`+switch-master`**: a background task keeps a Pub/Sub subscription on
//!   one sentinel (the next one when it dies or stops answering; bounded
//!   retries with a delay, restarted by the next connect if it gave up). When
//!   a failover of the service names a master other than the one connected,
//!   [`Connector::invalidated`] resolves and the client reconnects at once,
//!   instead of writing to the old master until it is demoted. After each
//!   (re)subscription the task also asks `SENTINEL get-master-addr-by-name`,
//!   so a switch announced while it was not listening is not missed.
//!
//! A `READONLY` reply from a demoted master needs nothing here: the client
//! classifies it as a connection-killing failure and reconnects, which asks
//! the sentinels again.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redis::sentinel::{Sentinel, SentinelNodeConnectionInfo};
use redis::{ConnectionAddr, ConnectionInfo, RedisError, Role, TlsMode};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::connector::{connect_multiplexed, Connection, Connector, PushHandler};
use crate::Error;

/// The Pub/Sub channel on which sentinels announce a new master.
pub const SWITCH_MASTER_CHANNEL: &str = "+switch-master";

/// How long the subscription task waits for one sentinel to connect or answer.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the subscription checks that its sentinel still answers.
const SENTINEL_PING_EVERY: Duration = Duration::from_secs(1);
/// First and longest delay between subscription attempts.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(100);
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(2);
/// Failed subscription attempts in a row before the task gives up (about a
/// minute); the next connect starts it again.
const RESUBSCRIBE_ATTEMPTS: u32 = 40;

/// A `host:port` as the sentinels name it.
type Addr = (String, u16);

/// The latest failover announcement: `seq` counts announcements.
#[derive(Debug, Clone, Default)]
struct Announcement {
    seq: u64,
    master: Option<Addr>,
}

/// Connects to the master that Redis Sentinel names; see the module docs.
///
/// [`Client::new`](crate::Client::new) uses it when the config has a
/// `sentinel` section ([`Config::with_sentinel`]).
pub struct SentinelConnector {
    service: String,
    follow: bool,
    /// The sentinels, in order, with their credentials.
    sentinels: Arc<Vec<ConnectionInfo>>,
    /// How the master is reached (credentials, database, protocol, TCP and TLS).
    node: SentinelNodeConnectionInfo,
    /// redis-rs's discovery, with its cached sentinel connections.
    discovery: tokio::sync::Mutex<Sentinel>,
    announced: Arc<watch::Sender<Announcement>>,
    /// The announcement count when the last connect started.
    connect_seq: AtomicU64,
    /// The master of the last successful connect.
    connected: Mutex<Option<Addr>>,
    subscription: Mutex<Option<JoinHandle<()>>>,
    stop: CancellationToken,
}

impl fmt::Debug for SentinelConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sentinels: Vec<String> = self
            .sentinels
            .iter()
            .map(|i| i.addr().to_string())
            .collect();
        f.debug_struct("SentinelConnector")
            .field("service", &self.service)
            .field("sentinels", &sentinels)
            .field("follow_switch_master", &self.follow)
            .field(
                "connected",
                &*self
                    .connected
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            )
            .finish()
    }
}

impl SentinelConnector {
    /// A connector for `config`, which must have a `sentinel` section.
    pub fn new(config: &Config) -> Result<SentinelConnector, Error> {
        config.validate()?;
        let Some(sentinel) = config.sentinel() else {
            return Err(Error::config(
                "sentinel",
                "is required for a SentinelConnector: set `[sentinel]` (service and nodes)",
            ));
        };
        let sentinels = sentinel.connection_infos()?;
        let discovery = Sentinel::build(sentinels.clone())
            .map_err(|e| Error::config("sentinel.nodes", e.to_string()))?;
        let target = config.connection_info();
        let mut node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(target.redis_settings().clone())
            .set_tcp_settings(target.tcp_settings().clone());
        if let ConnectionAddr::TcpTls { insecure, .. } = target.addr() {
            node = node.set_tls_mode(if *insecure {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            });
        }
        Ok(SentinelConnector {
            service: sentinel.service().to_owned(),
            follow: sentinel.follow_switch_master(),
            sentinels: Arc::new(sentinels),
            node,
            discovery: tokio::sync::Mutex::new(discovery),
            announced: Arc::new(watch::channel(Announcement::default()).0),
            connect_seq: AtomicU64::new(0),
            connected: Mutex::new(None),
            subscription: Mutex::new(None),
            stop: CancellationToken::new(),
        })
    }

    /// The master of the last successful connect, as the sentinels named it.
    pub fn current_master(&self) -> Option<(String, u16)> {
        self.connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts the `+switch-master` subscription unless it runs.
    fn ensure_subscription(&self) {
        if !self.follow {
            return;
        }
        let mut task = self
            .subscription
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let watcher = Watcher {
            service: self.service.clone(),
            sentinels: Arc::clone(&self.sentinels),
            announced: Arc::clone(&self.announced),
            stop: self.stop.clone(),
        };
        *task = Some(tokio::spawn(watcher.run()));
    }
}

impl Drop for SentinelConnector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[async_trait::async_trait]
impl Connector for SentinelConnector {
    async fn connect(&self, config: &Config, push: PushHandler) -> Result<Connection, RedisError> {
        self.ensure_subscription();
        // Announcements from now on may concern the master found below.
        self.connect_seq
            .store(self.announced.borrow().seq, Ordering::Relaxed);
        let client = {
            let mut discovery = self.discovery.lock().await;
            discovery
                .async_master_for(&self.service, Some(&self.node))
                .await
                .inspect_err(|e| {
                    tracing::debug!(service = %self.service, error = %e, "sentinel discovery failed");
                })?
        };
        let addr = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            other => (other.to_string(), 0),
        };
        let mut connection = connect_multiplexed(&client, config, push).await?;
        // redis-rs checked the role on a connection of its own; this is the
        // one the client will use, and a failover may have happened since.
        let role: Role = redis::cmd("ROLE").query_async(&mut connection.conn).await?;
        if !matches!(role, Role::Primary { .. }) {
            return Err(not_a_master(&self.service, &addr, &role));
        }
        tracing::debug!(service = %self.service, master = %format!("{}:{}", addr.0, addr.1), "sentinel named the master");
        *self
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(addr);
        Ok(connection)
    }

    fn invalidated(&self) -> BoxFuture<'static, ()> {
        if !self.follow {
            return Box::pin(std::future::pending());
        }
        let seen = self.connect_seq.load(Ordering::Relaxed);
        let connected = self
            .connected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut rx = self.announced.subscribe();
        Box::pin(async move {
            // A switch to the master we are already on (announced while we
            // connected to it) is no reason to reconnect.
            let moved = rx
                .wait_for(|a| a.seq > seen && a.master.is_some() && a.master != connected)
                .await
                .is_ok();
            if !moved {
                // The connector is gone; so is the client that used it.
                std::future::pending::<()>().await;
            }
        })
    }
}

/// The attempt's error when the named node is not (or no longer) a master:
/// [`FailureKind::Moved`](relink_core::FailureKind::Moved), not applied.
fn not_a_master(service: &str, addr: &Addr, role: &Role) -> RedisError {
    let role = match role {
        Role::Primary { .. } => "master",
        Role::Replica { .. } => "replica",
        Role::Sentinel { .. } => "sentinel",
        _ => "something else",
    };
    crate::Error::NotApplied {
        kind: relink_core::FailureKind::Moved,
        detail: format!(
            "sentinel named {}:{}, which answers ROLE as {role}, not as the master of \
             `{service}` (a failover is in progress or the sentinels' view is stale); retrying",
            addr.0, addr.1
        ),
    }
    .into_redis()
}

/// The `+switch-master` subscription task.
struct Watcher {
    service: String,
    sentinels: Arc<Vec<ConnectionInfo>>,
    announced: Arc<watch::Sender<Announcement>>,
    stop: CancellationToken,
}

impl Watcher {
    async fn run(self) {
        let mut next = 0usize;
        let mut failures = 0u32;
        let mut delay = RESUBSCRIBE_DELAY;
        while failures < RESUBSCRIBE_ATTEMPTS && !self.stop.is_cancelled() {
            let info = &self.sentinels[next % self.sentinels.len()];
            match self.listen(info).await {
                // Listened, then the sentinel went away: try again at once.
                Ok(()) => {
                    failures = 0;
                    delay = RESUBSCRIBE_DELAY;
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(sentinel = %info.addr(), error = %e, "sentinel subscription failed");
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
                }
            }
            next += 1;
        }
        if !self.stop.is_cancelled() {
            tracing::warn!(
                service = %self.service,
                "no sentinel to subscribe to `+switch-master`; failovers are followed on reconnect only until the next connect"
            );
        }
    }

    /// Subscribes on one sentinel and passes its announcements on until it
    /// dies, stops answering, or the connector is dropped. `Ok` once it was
    /// subscribed.
    async fn listen(&self, info: &ConnectionInfo) -> Result<(), RedisError> {
        let client = redis::Client::open(info.clone())?;
        let pubsub = bounded(client.get_async_pubsub()).await?;
        let (mut sink, mut stream) = pubsub.split();
        bounded(sink.subscribe(SWITCH_MASTER_CHANNEL)).await?;
        // Anything announced before we listened: ask where the master is now.
        let mut conn = bounded(client.get_multiplexed_async_connection()).await?;
        let now: Option<Addr> = bounded(
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(&self.service)
                .query_async::<Option<(String, u16)>>(&mut conn),
        )
        .await?;
        drop(conn);
        if let Some(master) = now {
            self.announce(master);
        }
        tracing::debug!(sentinel = %info.addr(), "subscribed to +switch-master");
        let mut ping = tokio::time::interval(SENTINEL_PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return Ok(()),
                msg = stream.next() => {
                    let Some(msg) = msg else { return Ok(()) };
                    let Ok(payload) = msg.get_payload::<String>() else { continue };
                    if let Some(master) = parse_switch(&payload, &self.service) {
                        tracing::info!(service = %self.service, master = %format!("{}:{}", master.0, master.1), "sentinel announced +switch-master");
                        self.announce(master);
                    }
                }
                _ = ping.tick() => {
                    if bounded(sink.ping::<redis::Value>()).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn announce(&self, master: Addr) {
        self.announced.send_modify(|a| {
            a.seq += 1;
            a.master = Some(master);
        });
    }
}

/// `<name> <old-ip> <old-port> <new-ip> <new-port>`: the new master, if
/// `name` is ours.
fn parse_switch(payload: &str, service: &str) -> Option<Addr> {
    let words: Vec<&str> = payload.split_whitespace().collect();
    match words.as_slice() {
        [name, _, _, ip, port] if *name == service => Some(((*ip).to_owned(), port.parse().ok()?)),
        _ => None,
    }
}

async fn bounded<T>(
    fut: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    match tokio::time::timeout(SENTINEL_TIMEOUT, fut).await {
        Ok(result) => result,
        Err(_) => Err(crate::classify::timeout("sentinel did not answer in time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_master_payloads_are_parsed_for_our_service_only() {
        assert_eq!(
            parse_switch("mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            Some(("127.0.0.1".to_owned(), 6380))
        );
        assert_eq!(
            parse_switch("other 127.0.0.1 6379 127.0.0.1 6380", "mymaster"),
            None
        );
        assert_eq!(parse_switch("mymaster 127.0.0.1 6379", "mymaster"), None);
        assert_eq!(parse_switch("mymaster a 1 b notaport", "mymaster"), None);
    }

    #[test]
    fn not_a_master_reads_as_moved() {
        let role = Role::Replica {
            primary_ip: "127.0.0.1".into(),
            primary_port: 1,
            replication_state: "connected".into(),
            data_received: 0,
        };
        let e = not_a_master("mymaster", &("127.0.0.1".into(), 7000), &role);
        assert_eq!(
            crate::classify::failure_kind(&e),
            relink_core::FailureKind::Moved
        );
        assert!(e.to_string().contains("127.0.0.1:7000"), "{e}");
        assert!(e.to_string().contains("replica"), "{e}");
    }
}
