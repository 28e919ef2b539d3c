//! A subscriber connection: a connection shape of its own, driven by a core
//! [`Supervisor`] like every other relink connection. The supervisor decides
//! when to connect, how long to wait between attempts, when to PING, when
//! the connection is dead and when to give up; this task only executes:
//! it opens the connection (RESP3: a multiplexed connection whose pushes
//! carry the messages; RESP2: redis-rs's dedicated Pub/Sub connection),
//! subscribes it to everything the hub wants *before* reporting it up,
//! carries the hub's subscribe and unsubscribe requests in order, routes
//! messages, and hands out the gap markers when the core says the
//! connection is back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{PushInfo, PushKind, RedisError, Value};
use relink_core::{
    Action, Event, Evidence, FailureKind, Input, Output, State, Supervisor, SupervisorConfig,
    Timestamp,
};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::{Hub, Kind, Links, Outcome, Request};
use crate::classify::{failure_kind, is_server_reply};
use crate::config::{Config, Protocol};
use crate::connector::Connector;
use crate::diagnose::Diagnosis;

/// Which names a subscriber connection serves (all of them on a
/// [`Client`](crate::Client); on a cluster, those of one node).
pub(crate) type Serves = Arc<dyn Fn(Kind, &str) -> bool + Send + Sync>;

/// Where a subscriber connection connects, with what settings.
pub(crate) struct Target {
    pub(crate) connector: Arc<dyn Connector>,
    /// The config of the next attempt (credentials changed on the live
    /// client included).
    pub(crate) config: Arc<dyn Fn() -> Config + Send + Sync>,
    /// What the connection is, for the logs.
    pub(crate) name: String,
    /// Called when the server ends a shard subscription that is still
    /// wanted (its slot moved to another node): the topology is stale.
    pub(crate) on_displaced: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Changes of the settings `config` reads (credentials updated on the
    /// live client): each is told to the supervisor, so an attempt waiting
    /// out a misconfiguration's delay is made again at once.
    pub(crate) changes: Option<tokio::sync::watch::Receiver<u64>>,
}

/// A subscriber connection's task, and the way to its requests.
#[derive(Clone)]
pub(crate) struct Link {
    requests: mpsc::UnboundedSender<Request>,
    lost_at: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Links for Link {
    fn send(&self, request: Request) {
        if let Err(mpsc::error::SendError(request)) = self.requests.send(request) {
            // The task has ended (shut down or gave up): nothing is
            // subscribed any more, so an unsubscribe is done.
            if let Some(done) = request.done {
                let _ = done.send(Outcome::Deferred);
            }
        }
    }
}

impl Link {
    /// Whether its task still runs (it ends when stopped or given up).
    pub(crate) fn is_running(&self) -> bool {
        !self.requests.is_closed()
    }

    /// Since when the connection is down, if it is (it was up before).
    pub(crate) fn lost_at(&self) -> Option<Instant> {
        *self
            .lost_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the task on the current runtime; it ends when `stop` is
    /// cancelled or its supervisor gives up (and then closes the hub when
    /// it `owns_hub`).
    pub(crate) fn start(
        hub: Arc<Hub>,
        target: Target,
        serves: Serves,
        settings: SupervisorConfig,
        seed: u64,
        stop: CancellationToken,
        owns_hub: bool,
    ) -> Link {
        let (requests, rx) = mpsc::unbounded_channel();
        let lost_at = Arc::new(std::sync::Mutex::new(None));
        let task = Task {
            lost_at: Arc::clone(&lost_at),
            hub,
            target,
            serves,
            stop,
            owns_hub,
            requests: rx,
            epoch: Instant::now(),
            supervisor: Supervisor::new(settings, seed),
            generation: 0,
            connecting: None,
            conn: None,
            ping: None,
            running: None,
            queue: VecDeque::new(),
            lost: None,
            activity: Arc::new(AtomicU64::new(0)),
            fed_activity: 0,
        };
        let span = tracing::debug_span!("relink_subscriber", target = %task.target.name);
        tokio::spawn(tracing::Instrument::instrument(task.run(), span));
        Link { requests, lost_at }
    }
}

/// An open subscriber connection.
enum Conn {
    Resp3 {
        conn: MultiplexedConnection,
        kill: Option<AbortHandle>,
    },
    Resp2 {
        sink: PubSubSink,
        stream: PubSubStream,
    },
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Conn::Resp3 {
            kill: Some(kill), ..
        } = self
        {
            kill.abort();
        }
    }
}

impl Conn {
    /// `(P|S)(UN)SUBSCRIBE names`, confirmed by the server.
    fn change(
        &self,
        subscribe: bool,
        kind: Kind,
        names: Vec<String>,
    ) -> BoxFuture<'static, Result<(), RedisError>> {
        let command = if subscribe {
            kind.subscribe_command()
        } else {
            kind.unsubscribe_command()
        };
        match self {
            Conn::Resp3 { conn, .. } => {
                let mut conn = conn.clone();
                async move {
                    match kind {
                        Kind::Channel if subscribe => conn.subscribe(&names).await,
                        Kind::Channel => conn.unsubscribe(&names).await,
                        Kind::Pattern if subscribe => conn.psubscribe(&names).await,
                        Kind::Pattern => conn.punsubscribe(&names).await,
                        // redis-rs's multiplexed connection has no method
                        // for shard channels; one name a command is answered
                        // by exactly one confirmation, which it matches.
                        Kind::Shard => {
                            for name in &names {
                                let reply = redis::cmd(command)
                                    .arg(name)
                                    .query_async::<Value>(&mut conn)
                                    .await?;
                                reply.extract_error()?;
                            }
                            Ok(())
                        }
                    }
                }
                .boxed()
            }
            Conn::Resp2 { sink, .. } => {
                let mut sink = sink.clone();
                async move {
                    match kind {
                        Kind::Channel if subscribe => sink.subscribe(&names).await,
                        Kind::Channel => sink.unsubscribe(&names).await,
                        Kind::Pattern if subscribe => sink.psubscribe(&names).await,
                        Kind::Pattern => sink.punsubscribe(&names).await,
                        Kind::Shard => Err(shard_needs_resp3().into_redis()),
                    }
                }
                .boxed()
            }
        }
    }

    fn ping(&self) -> BoxFuture<'static, Result<Value, RedisError>> {
        match self {
            Conn::Resp3 { conn, .. } => {
                let mut conn = conn.clone();
                async move { redis::cmd("PING").query_async::<Value>(&mut conn).await }.boxed()
            }
            Conn::Resp2 { sink, .. } => {
                let mut sink = sink.clone();
                async move { sink.ping::<Value>().await }.boxed()
            }
        }
    }
}

/// Why a shard channel cannot be subscribed to under RESP2.
pub(crate) fn shard_needs_resp3() -> crate::Error {
    crate::Error::config(
        "protocol",
        "sharded Pub/Sub (SSUBSCRIBE) needs `resp3`: redis-rs's RESP2 Pub/Sub \
         connection has no shard channels",
    )
}

type ConnectResult = Result<Conn, Diagnosis>;
type Pending<T> = Option<BoxFuture<'static, T>>;

struct Task {
    lost_at: Arc<std::sync::Mutex<Option<Instant>>>,
    hub: Arc<Hub>,
    target: Target,
    serves: Serves,
    stop: CancellationToken,
    /// Whether this task's end ends the hub's subscriptions (a client's
    /// only subscriber connection; not one node's of a cluster).
    owns_hub: bool,
    requests: mpsc::UnboundedReceiver<Request>,
    epoch: Instant,
    supervisor: Supervisor,
    /// The generation of the connection in `conn` (or being made).
    generation: u64,
    connecting: Pending<(u32, ConnectResult)>,
    conn: Option<Conn>,
    /// Generation, probe id, reply.
    ping: Pending<(u64, u64, Result<Value, RedisError>)>,
    /// The request being carried out (its future gives the server's answer).
    running: Option<(Request, BoxFuture<'static, Result<(), RedisError>>)>,
    queue: VecDeque<Request>,
    /// Told by a RESP3 connection's push handler when it is closed.
    lost: Option<mpsc::UnboundedReceiver<u64>>,
    /// Milliseconds since `epoch` of the latest message (any proves the
    /// connection alive).
    activity: Arc<AtomicU64>,
    fed_activity: u64,
}

impl Task {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    async fn run(mut self) {
        let now = self.now();
        self.supervisor.handle_input(now, Input::Start);
        // Bounded by the supervisor: every iteration handles one input or
        // one of its deadlines; it gives up after its backoff's attempts,
        // and Shutdown is terminal.
        loop {
            let deadline = self.drain();
            if self.supervisor.state() == State::Shutdown {
                break;
            }
            self.next_request();
            let wake = deadline.map(|t| self.epoch + Duration::from_millis(t.as_millis()));
            let input = tokio::select! {
                _ = self.stop.cancelled() => Some(Input::Shutdown),
                (attempt, result) = poll(&mut self.connecting) => match result {
                    Ok(conn) => {
                        self.conn = Some(conn);
                        Some(Input::Connected { attempt })
                    }
                    Err(diagnosis) => Some(Input::ConnectFailed {
                        attempt,
                        cause: diagnosis.cause,
                        evidence: Evidence::new(&diagnosis.evidence),
                    }),
                },
                (generation, id, result) = poll(&mut self.ping) => {
                    // Every result goes to the core as it is: it decides
                    // what an error reply or a broken connection proves.
                    (generation == self.generation).then(|| match result {
                        Ok(_) => Input::Pong { id },
                        Err(e) => Input::PingFailed { id, kind: failure_kind(&e) },
                    })
                }
                (request, result) = poll_running(&mut self.running) => self.finished(request, result),
                Some(request) = self.requests.recv() => {
                    self.queue.push_back(request);
                    None
                }
                message = next_message(&mut self.conn) => match message {
                    Some(msg) => {
                        self.route_resp2(&msg);
                        Some(Input::Activity)
                    }
                    None => Some(Input::ConnectionLost { kind: FailureKind::Closed }),
                },
                Some(()) = changed(&mut self.target.changes) => Some(Input::Reconfigured),
                Some(generation) = recv(&mut self.lost) => {
                    (generation == self.generation)
                        .then_some(Input::ConnectionLost { kind: FailureKind::Closed })
                }
                _ = crate::wait::until(wake) => None,
            };
            if let Some(input) = input {
                let now = self.now();
                self.supervisor.handle_input(now, input);
            }
        }
        // Shut down, or given up: nothing will be delivered any more.
        self.conn = None;
        if self.owns_hub {
            self.hub.close();
        }
        for request in self.queue.drain(..) {
            if let Some(done) = request.done {
                let _ = done.send(Outcome::Deferred);
            }
        }
    }

    /// Feeds message evidence, then handles outputs until drained; returns
    /// the next deadline.
    fn drain(&mut self) -> Option<Timestamp> {
        let activity = self.activity.load(Ordering::Relaxed);
        if activity > self.fed_activity && self.supervisor.state() == State::Ready {
            self.fed_activity = activity;
            self.supervisor
                .handle_input(Timestamp::from_millis(activity), Input::Activity);
        }
        for _ in 0..64 {
            let now = self.now();
            match self.supervisor.poll_output(now) {
                Output::Action(action) => self.act(action),
                Output::Event(event) => self.observe(event),
                Output::Timeout(t) => return Some(t),
                _ => return None,
            }
        }
        // One input never queues this many outputs; poll again at once.
        Some(self.now())
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Connect { attempt } => {
                self.generation += 1;
                let generation = self.generation;
                let connector = Arc::clone(&self.target.connector);
                let config = (self.target.config)();
                let hub = Arc::clone(&self.hub);
                let serves = Arc::clone(&self.serves);
                let activity = Arc::clone(&self.activity);
                let epoch = self.epoch;
                let (lost_tx, lost_rx) = mpsc::unbounded_channel();
                self.lost = Some(lost_rx);
                let push = PushRoute {
                    hub: Arc::clone(&hub),
                    serves: Arc::clone(&serves),
                    activity,
                    epoch,
                    lost: lost_tx,
                    generation,
                    on_displaced: self.target.on_displaced.clone(),
                };
                let fut = async move {
                    let started = Instant::now();
                    let made = open(&*connector, &config, push).await;
                    let result = match made {
                        Ok(conn) => restore(&conn, &hub, &*serves).await.map(|()| conn),
                        Err(e) => Err(e),
                    };
                    let result = match result {
                        Ok(conn) => Ok(conn),
                        Err(e) => {
                            Err(
                                crate::client::explain_within(&*connector, &config, &e, started)
                                    .await,
                            )
                        }
                    };
                    (attempt, result)
                };
                self.connecting = Some(fut.boxed());
                tracing::debug!(attempt, "subscriber connecting");
            }
            Action::SendPing { id } => {
                if let Some(conn) = &self.conn {
                    let generation = self.generation;
                    let ping = conn.ping();
                    self.ping = Some(async move { (generation, id, ping.await) }.boxed());
                }
            }
            Action::Disconnect => {
                self.connecting = None;
                self.conn = None;
                self.ping = None;
                self.lost = None;
                // A request cut off by the loss: a subscribe takes effect
                // at the next connection (the hub has it), an unsubscribe
                // is done (the next connection does not restore it).
                if let Some((request, _)) = self.running.take() {
                    if let Some(done) = request.done {
                        let _ = done.send(Outcome::Deferred);
                    }
                }
            }
            _ => {}
        }
    }

    fn set_lost_at(&self, at: Option<Instant>) {
        *self
            .lost_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }

    fn observe(&mut self, event: Event) {
        match event {
            Event::Connected { attempts } => {
                self.set_lost_at(None);
                let given = self.hub.in_place(&*self.serves, None, Instant::now());
                tracing::debug!(attempts, markers = given, "subscriber connected");
            }
            Event::Reconnected { downtime, attempts } => {
                self.set_lost_at(None);
                let given = self
                    .hub
                    .in_place(&*self.serves, Some(downtime), Instant::now());
                tracing::info!(
                    attempts,
                    downtime_ms = downtime.as_millis() as u64,
                    markers = given,
                    "relink subscriptions restored"
                );
            }
            Event::Disconnected { cause } => {
                self.hub.lost();
                self.set_lost_at(Some(Instant::now()));
                tracing::warn!(%cause, "relink subscriber connection lost");
            }
            Event::ConnectAttemptFailed {
                failure,
                misconfigured,
                ..
            } => {
                tracing::warn!(
                    attempt = failure.attempt,
                    cause = %failure.cause,
                    evidence = %failure.evidence,
                    misconfigured,
                    "relink subscriber connect attempt failed"
                );
            }
            Event::GaveUp { attempts, .. } => {
                tracing::error!(attempts, "relink subscriber gave up reconnecting");
            }
            _ => {}
        }
    }

    /// Starts the next queued request when the connection is up; answers
    /// them at once while there is none and none is being made.
    fn next_request(&mut self) {
        // Bounded by the queue's length.
        while self.running.is_none() {
            let Some(request) = self.queue.pop_front() else {
                return;
            };
            if let Some(conn) = &self.conn {
                if self.supervisor.state() == State::Ready {
                    let change =
                        conn.change(request.subscribe, request.kind, request.names.clone());
                    self.running = Some((request, change));
                    return;
                }
            }
            if self.connecting.is_some() {
                // The attempt under way restores what the hub had when it
                // began; this request runs on it right after.
                self.queue.push_front(request);
                return;
            }
            if let Some(done) = request.done {
                let _ = done.send(Outcome::Deferred);
            }
        }
    }

    fn finished(&mut self, request: Request, result: Result<(), RedisError>) -> Option<Input> {
        let (outcome, input) = match result {
            Ok(()) => {
                if request.subscribe {
                    // Handles on these names that were waiting for a
                    // connection (or displaced by a slot's move) are in
                    // place now: one marker each.
                    let (kind, names) = (request.kind, &request.names);
                    self.hub.in_place(
                        &|k, n| k == kind && names.iter().any(|m| m == n),
                        None,
                        Instant::now(),
                    );
                }
                (Outcome::Confirmed, Some(Input::Activity))
            }
            Err(e) if is_server_reply(&e) => (Outcome::Refused(e), Some(Input::Activity)),
            Err(e) => (
                Outcome::Deferred,
                Some(Input::CommandFailed {
                    kind: failure_kind(&e),
                }),
            ),
        };
        if let Some(done) = request.done {
            let _ = done.send(outcome);
        }
        input
    }

    fn route_resp2(&self, msg: &redis::Msg) {
        let channel = msg.get_channel_name();
        let pattern = msg.get_pattern::<String>().ok();
        let kind = if pattern.is_some() {
            Kind::Pattern
        } else {
            Kind::Channel
        };
        self.hub
            .route(kind, channel, pattern.as_deref(), msg.get_payload_bytes());
    }
}

/// Where a RESP3 subscriber connection's pushes go.
struct PushRoute {
    hub: Arc<Hub>,
    serves: Serves,
    activity: Arc<AtomicU64>,
    epoch: Instant,
    lost: mpsc::UnboundedSender<u64>,
    generation: u64,
    on_displaced: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl PushRoute {
    fn handle(&self, info: PushInfo) {
        match info.kind {
            PushKind::Disconnection => {
                let _ = self.lost.send(self.generation);
            }
            // The server ended a shard subscription we still want: its
            // slot moved. (Our own SUNSUBSCRIBEs concern names no longer
            // wanted.)
            PushKind::SUnsubscribe => {
                let wanted = info
                    .data
                    .first()
                    .and_then(|v| match v {
                        Value::BulkString(b) => std::str::from_utf8(b).ok(),
                        _ => None,
                    })
                    .is_some_and(|name| {
                        (self.serves)(Kind::Shard, name) && self.hub.wants(Kind::Shard, name)
                    });
                if let (true, Some(displaced)) = (wanted, &self.on_displaced) {
                    displaced();
                }
            }
            _ => {
                if self.hub.route_push(&info) {
                    let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                    self.activity.fetch_max(ms, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Opens a subscriber connection the way the config says.
async fn open(
    connector: &dyn Connector,
    config: &Config,
    push: PushRoute,
) -> Result<Conn, RedisError> {
    if config.protocol() == Protocol::Resp2 {
        let pubsub = connector.connect_pubsub(config).await?;
        let (mut sink, stream) = pubsub.split();
        // A server still loading its dataset answers -LOADING: not ready.
        sink.ping::<Value>().await?;
        return Ok(Conn::Resp2 { sink, stream });
    }
    let mut connection = connector
        .connect(config, Arc::new(move |info| push.handle(info)))
        .await?;
    let kill = connection.kill.take();
    let mut conn = Conn::Resp3 {
        conn: connection.conn,
        kill,
    };
    if let Conn::Resp3 { conn, .. } = &mut conn {
        redis::cmd("PING").exec_async(conn).await?;
    }
    Ok(conn)
}

/// Subscribes a new connection to everything the hub wants that it serves.
async fn restore(
    conn: &Conn,
    hub: &Hub,
    serves: &(dyn Fn(Kind, &str) -> bool + Send + Sync),
) -> Result<(), RedisError> {
    for (kind, names) in hub.wanted(serves) {
        conn.change(true, kind, names).await?;
    }
    Ok(())
}

/// The next message of a RESP2 connection; `None` when it closed. (A RESP3
/// connection's messages arrive through its push handler.)
async fn next_message(conn: &mut Option<Conn>) -> Option<redis::Msg> {
    match conn {
        Some(Conn::Resp2 { stream, .. }) => stream.next().await,
        _ => std::future::pending().await,
    }
}

async fn poll<T>(pending: &mut Pending<T>) -> T {
    match pending {
        Some(fut) => {
            let out = fut.await;
            *pending = None;
            out
        }
        None => std::future::pending().await,
    }
}

async fn poll_running(
    running: &mut Option<(Request, BoxFuture<'static, Result<(), RedisError>>)>,
) -> (Request, Result<(), RedisError>) {
    match running {
        Some((_, fut)) => {
            let result = fut.await;
            match running.take() {
                Some((request, _)) => (request, result),
                None => std::future::pending().await,
            }
        }
        None => std::future::pending().await,
    }
}

async fn changed(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match changes {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

async fn recv(rx: &mut Option<mpsc::UnboundedReceiver<u64>>) -> Option<u64> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
