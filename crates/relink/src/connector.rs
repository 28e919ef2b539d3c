//! How a connection is made: one object-safe trait, so that plain TCP, TLS, a
//! Unix socket, Sentinel discovery or a test's proxy all plug into the same
//! supervisor. Every reconnect asks the connector again, so a failover or a
//! changed address is picked up.

use std::fmt;
use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, PushInfo, RedisError};
use tokio::task::AbortHandle;

use crate::coalesce::Coalesce;
pub use crate::coalesce::Demand;
use crate::config::{Config, Protocol};
use crate::diagnose::Diagnosis;
use crate::Error;

/// Receives the server's push messages (Pub/Sub, disconnection) of one connection.
pub type PushHandler = Arc<dyn Fn(PushInfo) + Send + Sync>;

/// A connection a [`Connector`] made.
#[derive(Debug)]
pub struct Connection {
    /// The connection, handshake done.
    pub conn: MultiplexedConnection,
    /// Stops the task that drives the connection's socket, failing every
    /// command still waiting on it at once. Present when relink opened the
    /// socket itself; without it, the client races each command against the
    /// connection being declared dead instead, which costs a little on every
    /// command.
    pub kill: Option<AbortHandle>,
    /// Where the client counts the callers waiting on this connection, when
    /// relink opened the socket itself: its writes then coalesce the
    /// commands of concurrent callers, and each of its reads is stamped as
    /// evidence that the server is alive (see [`Demand`]). A `Demand` a
    /// custom connector makes itself stamps nothing: the client then takes
    /// each reply's time instead.
    pub demand: Option<Demand>,
}

impl From<MultiplexedConnection> for Connection {
    fn from(conn: MultiplexedConnection) -> Self {
        Connection {
            conn,
            kill: None,
            demand: None,
        }
    }
}

/// Makes connections. Called once per connection attempt; the supervisor
/// enforces the connect timeout around it (the future is dropped when it
/// expires).
#[async_trait::async_trait]
pub trait Connector: Send + Sync + fmt::Debug + 'static {
    /// Opens a connection with the handshake done (AUTH/HELLO, SELECT).
    /// `push` must receive the connection's push messages when the protocol
    /// is RESP3.
    async fn connect(&self, config: &Config, push: PushHandler) -> Result<Connection, RedisError>;

    /// Resolves when the connector learns that the connection it made last no
    /// longer reaches the right server (a Sentinel announcing `+switch-master`,
    /// a changed address): the client then replaces it at once instead of
    /// waiting for a timeout. Called after each successful connect; the
    /// default never resolves.
    fn invalidated(&self) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }

    /// Resolves when the connector learns, from now on, that the server
    /// moved (a Sentinel announcing `+switch-master`), whether or not a
    /// connection is up: the client then makes its next attempt at once,
    /// even in the middle of a backoff wait, instead of waiting out a delay
    /// chosen before the new master was known. Asked for whenever no
    /// [`invalidated`](Self::invalidated) is pending; the default never
    /// resolves.
    fn moved(&self) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }

    /// The steps of a failover of the server's master as the connector
    /// hears them (Sentinel's announcements, read by
    /// [`relink_core::failover::sentinel_signal`]), for the core to decide
    /// on (writes wait while one is in progress). `None` (the default):
    /// this connector hears of none.
    fn failover_signals(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<relink_core::FailoverSignal>> {
        None
    }

    /// Opens a short-lived second connection to the server the last
    /// [`connect`](Self::connect) reached, for a check from the side (is
    /// the server still there, does it still know the first connection?).
    /// Must have no effect on the connector's own state. The default is a
    /// plain [`connect`](Self::connect) with no push handler.
    async fn connect_aside(&self, config: &Config) -> Result<Connection, RedisError> {
        self.connect(config, Arc::new(|_| {})).await
    }

    /// Opens a RESP2 connection for Pub/Sub, handshake done. Under RESP2 a
    /// connection in subscribed mode can run nothing else, so subscribers
    /// get one of redis-rs's dedicated Pub/Sub connections rather than a
    /// multiplexed one (under RESP3 they use [`connect`](Self::connect)).
    /// The default refuses: a connector that does not implement it serves
    /// Pub/Sub under RESP3 only.
    async fn connect_pubsub(&self, config: &Config) -> Result<redis::aio::PubSub, RedisError> {
        let _ = config;
        Err(Error::config(
            "protocol",
            "this connector opens no RESP2 Pub/Sub connection: use `resp3`, or implement              `Connector::connect_pubsub`",
        )
        .into_redis())
    }

    /// Why an attempt of [`connect`](Self::connect) failed with `err`, and
    /// the evidence, redacted. The default reads the error alone
    /// ([`diagnose::connect_cause`](crate::diagnose::connect_cause)); a
    /// connector that knows the address it tried may ask the server again
    /// for the words the error dropped ([`diagnose::explain`](crate::diagnose::explain)).
    async fn explain(&self, config: &Config, err: &RedisError) -> Diagnosis {
        let info = config.connection_info();
        crate::diagnose::from_error(err, info.redis_settings().password())
    }
}

/// The default connector: whatever the config's URL says (TCP, TLS with the
/// `tls-rustls` feature, Unix socket), through redis-rs. Each attempt
/// connects with the config it is handed, so credentials changed on a live
/// client ([`Client::update_credentials`](crate::Client::update_credentials))
/// are used from the next attempt on.
pub struct TcpConnector {
    addr: ConnectionAddr,
}

impl fmt::Debug for TcpConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpConnector")
            .field("addr", &self.addr)
            .finish()
    }
}

impl TcpConnector {
    /// A connector for the config's target.
    pub fn new(config: &Config) -> Result<TcpConnector, Error> {
        let client = redis::Client::open(config.connection_info())
            .map_err(|e| Error::config("url", e.to_string()))?;
        Ok(TcpConnector {
            addr: client.get_connection_info().addr().clone(),
        })
    }
}

#[async_trait::async_trait]
impl Connector for TcpConnector {
    async fn connect(&self, config: &Config, push: PushHandler) -> Result<Connection, RedisError> {
        let client = redis::Client::open(config.connection_info())?;
        connect_multiplexed(&client, config, push).await
    }

    async fn connect_pubsub(&self, config: &Config) -> Result<redis::aio::PubSub, RedisError> {
        connect_pubsub(&redis::Client::open(config.connection_info())?, config).await
    }

    /// Asks the server again, on a raw socket, for what the error hides.
    async fn explain(&self, config: &Config, err: &RedisError) -> Diagnosis {
        let timeout = config.supervisor_config().connect_timeout;
        crate::diagnose::explain(&config.connection_info(), err, timeout).await
    }
}

/// Opens a connection to `client`'s target the way every relink connector
/// does: the config's connect and response timeouts, and the server's push
/// messages handed to `push` when the protocol is RESP3. The handshake
/// (AUTH/HELLO, SELECT) is redis-rs's, from `client`'s connection info.
pub async fn connect_multiplexed(
    client: &redis::Client,
    config: &Config,
    push: PushHandler,
) -> Result<Connection, RedisError> {
    let mut settings = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.supervisor_config().connect_timeout))
        // No response timeout of redis-rs's own: how long a command may
        // wait is the core's call policy (it keeps waiting for a slow reply
        // on a connection that shows signs of life), executed by calls.rs.
        .set_response_timeout(None);
    if config.protocol() == Protocol::Resp3 {
        settings = settings.set_push_sender(move |info: PushInfo| {
            push(info);
            Ok::<(), ()>(())
        });
    }
    let info = client.get_connection_info();
    // relink opens the socket (and TLS over it) and runs the connection's
    // driver task itself (redis-rs's own constructor, its own handshake),
    // only to keep the task's abort handle: aborting it fails every command
    // waiting on a connection declared dead, at no cost per command, for
    // TLS as for plain TCP.
    let stream: Box<dyn Stream> = match info.addr() {
        ConnectionAddr::Tcp(host, port) => Box::new(open_tcp(host, *port, info).await?),
        #[cfg(feature = "tls-rustls")]
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => Box::new(open_tls(host, *port, *insecure, info, config).await?),
        #[cfg(unix)]
        ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        _ => {
            return client
                .get_multiplexed_async_connection_with_config(&settings)
                .await
                .map(Connection::from)
        }
    };
    // Without Nagle (TCP_NODELAY, or a Unix socket) each write leaves at
    // once, and the driver steps aside for a second waiting caller already.
    let nagle = matches!(
        info.addr(),
        ConnectionAddr::Tcp(..) | ConnectionAddr::TcpTls { .. }
    ) && !info.tcp_settings().nodelay();
    let (stream, demand) = Coalesce::new(stream, nagle);
    let (conn, driver) =
        MultiplexedConnection::new_with_config(info.redis_settings(), stream, settings).await?;
    let kill = tokio::spawn(driver).abort_handle();
    Ok(Connection {
        conn,
        kill: Some(kill),
        demand: Some(demand),
    })
}

/// A RESP2 Pub/Sub connection to `client`'s target (redis-rs's dedicated
/// `aio::PubSub`), over TLS with the config's TLS settings when the target
/// is TLS, like [`connect_multiplexed`]'s.
pub async fn connect_pubsub(
    client: &redis::Client,
    config: &Config,
) -> Result<redis::aio::PubSub, RedisError> {
    let info = client.get_connection_info();
    match info.addr() {
        #[cfg(feature = "tls-rustls")]
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure,
            ..
        } => {
            let stream = open_tls(host, *port, *insecure, info, config).await?;
            redis::aio::PubSub::new(info.redis_settings(), stream).await
        }
        _ => {
            let _ = config;
            client.get_async_pubsub().await
        }
    }
}

/// TLS to `host:port` with the config's TLS settings, the handshake bounded
/// by the core's share of the connect timeout.
#[cfg(feature = "tls-rustls")]
async fn open_tls(
    host: &str,
    port: u16,
    insecure: bool,
    info: &redis::ConnectionInfo,
    config: &Config,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, RedisError> {
    let socket = open_tcp(host, port, info).await?;
    let tls = config.tls().cloned().unwrap_or_default();
    let handshake = crate::tls::connect(&tls, host, port, insecure, socket);
    let bound = config.supervisor_config().handshake_timeout();
    match tokio::time::timeout(bound, handshake).await {
        Ok(stream) => stream,
        Err(_) => Err(crate::classify::tls_handshake_timed_out()),
    }
}

/// A TCP connection to `host:port` with the config's TCP settings
/// (`TCP_NODELAY`, keepalive).
async fn open_tcp(
    host: &str,
    port: u16,
    info: &redis::ConnectionInfo,
) -> Result<tokio::net::TcpStream, RedisError> {
    let socket = tokio::net::TcpStream::connect((host, port)).await?;
    let tcp = info.tcp_settings();
    socket.set_nodelay(tcp.nodelay())?;
    if let Some(keepalive) = tcp.keepalive() {
        socket2::SockRef::from(&socket).set_tcp_keepalive(keepalive)?;
    }
    Ok(socket)
}

/// `host:port` reached the way `base` is: over TLS with the same settings
/// when `base` is TLS, else plain TCP. For a master that Sentinel names.
pub fn same_transport_at(base: &ConnectionAddr, host: String, port: u16) -> ConnectionAddr {
    match base {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    }
}

/// A socket a connection can run on.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// The connector a config asks for: a [`SentinelConnector`](crate::sentinel::SentinelConnector)
/// when it has a `sentinel` section, else a [`TcpConnector`] for its URL.
/// What [`Client::new`](crate::Client::new) uses.
pub fn for_config(config: &Config) -> Result<Arc<dyn Connector>, Error> {
    Ok(match config.sentinel() {
        Some(_) => Arc::new(crate::sentinel::SentinelConnector::new(config)?),
        None => Arc::new(TcpConnector::new(config)?),
    })
}
