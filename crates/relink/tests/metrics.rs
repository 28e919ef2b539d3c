//! The `opentelemetry` feature against real redis-server processes: each
//! test gives its clients a meter provider of its own with the SDK's
//! in-memory exporter, runs commands (answered, rejected, retried, queued)
//! and connects (made, refused), and reads back what was recorded: names,
//! units, attributes and counts.
#![cfg(feature = "opentelemetry")]

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::{KeyValue, Value as Attr};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use redis::AsyncCommands;
use relink::config::OutagePolicy;
use relink::core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink::core::ConnectCause;
use relink::{metrics, Client, Config, Error, Outcome, State};
use relink_testkit::{FaultProxy, RedisServer};

/// Generous upper bound for any condition a test waits on.
const PATIENCE: Duration = Duration::from_secs(20);

/// A meter provider whose measurements the test reads back.
struct Recorded {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

/// One data point: its attributes (as text) and its value (a sum, or a
/// histogram's count).
#[derive(Debug, Clone)]
struct Point {
    attrs: BTreeMap<String, String>,
    value: f64,
}

impl Point {
    fn has(&self, key: &str, value: &str) -> bool {
        self.attrs.get(key).map(String::as_str) == Some(value)
    }
}

/// One instrument as exported.
#[derive(Debug, Clone)]
struct Instrument {
    unit: String,
    /// A histogram (its points count measurements) or a sum.
    histogram: bool,
    monotonic: bool,
    points: Vec<Point>,
}

impl Instrument {
    /// The value of the points that carry every `(key, value)` of `with`, added up.
    fn total(&self, with: &[(&str, &str)]) -> f64 {
        self.points
            .iter()
            .filter(|p| with.iter().all(|(k, v)| p.has(k, v)))
            .map(|p| p.value)
            .sum()
    }
}

fn text(kv: &KeyValue) -> (String, String) {
    let value = match &kv.value {
        Attr::String(s) => s.as_str().to_owned(),
        other => other.to_string(),
    };
    (kv.key.as_str().to_owned(), value)
}

fn points<T: Copy + std::fmt::Debug>(
    data: &MetricData<T>,
    float: impl Fn(T) -> f64,
) -> (bool, bool, Vec<Point>) {
    let attrs = |it: &mut dyn Iterator<Item = &KeyValue>| it.map(text).collect();
    match data {
        MetricData::Histogram(h) => (
            true,
            false,
            h.data_points()
                .map(|p| Point {
                    attrs: attrs(&mut p.attributes()),
                    value: p.count() as f64,
                })
                .collect(),
        ),
        MetricData::Sum(s) => (
            false,
            s.is_monotonic(),
            s.data_points()
                .map(|p| Point {
                    attrs: attrs(&mut p.attributes()),
                    value: float(p.value()),
                })
                .collect(),
        ),
        other => panic!("unexpected aggregation {other:?}"),
    }
}

impl Recorded {
    fn new() -> Recorded {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_periodic_exporter(exporter.clone())
            .build();
        Recorded { provider, exporter }
    }

    /// Every instrument by name, as collected now (cumulative).
    fn collect(&self) -> BTreeMap<String, Instrument> {
        self.exporter.reset();
        self.provider.force_flush().expect("flush");
        let exported: Vec<ResourceMetrics> = self.exporter.get_finished_metrics().expect("metrics");
        let last = exported.last().expect("one export");
        let mut all = BTreeMap::new();
        for scope in last.scope_metrics() {
            assert_eq!(scope.scope().name(), "relink");
            for m in scope.metrics() {
                let (histogram, monotonic, points) = match m.data() {
                    AggregatedMetrics::F64(d) => points(d, |v| v),
                    AggregatedMetrics::U64(d) => points(d, |v| v as f64),
                    AggregatedMetrics::I64(d) => points(d, |v| v as f64),
                };
                all.insert(
                    m.name().to_owned(),
                    Instrument {
                        unit: m.unit().to_owned(),
                        histogram,
                        monotonic,
                        points,
                    },
                );
            }
        }
        all
    }

    fn instrument(&self, name: &str) -> Instrument {
        let all = self.collect();
        all.get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not recorded; recorded: {:?}", all.keys()))
    }
}

/// A config tuned for tests: fast backoff (the default heartbeat: no
/// reconnect a busy test machine would cause), recording with `recorded`.
fn config(url: &str, recorded: &Recorded) -> Config {
    Config::new(url)
        .expect("valid url")
        .with_backoff(
            BackoffPolicy::default()
                .strategy(Strategy::Exponential { multiplier: 2.0 })
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_millis(200))
                .jitter(Jitter::Equal),
        )
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_secs(1))
        .with_seed(7)
        .with_meter_provider(&recorded.provider)
}

async fn ready_client(config: Config) -> Client {
    let client = Client::new(config).expect("client");
    client.wait_ready(PATIENCE).await.expect("ready");
    client
}

/// A loopback port nothing listens on.
fn refused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Waits (bounded) until `cond` holds, letting the runtime's other tasks run.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_recorded_by_command_outcome_and_error() {
    let recorded = Recorded::new();
    let server = RedisServer::start();
    let port = server.port().to_string();
    let mut client = ready_client(config(&server.url(), &recorded)).await;

    let _: () = client.set("k", "v").await.expect("SET");
    let v: String = client.get("k").await.expect("GET");
    assert_eq!(v, "v");
    let err = client
        .lpush::<_, _, i64>("k", "x")
        .await
        .expect_err("LPUSH on a string");
    assert_eq!(Error::outcome_of(&err), Outcome::Rejected, "{err}");
    let (a, b): (String, String) = redis::pipe()
        .get("k")
        .get("k")
        .query_async(&mut client)
        .await
        .expect("pipeline");
    assert_eq!((a.as_str(), b.as_str()), ("v", "v"));

    let duration = recorded.instrument(metrics::OPERATION_DURATION);
    assert_eq!(duration.unit, "s");
    assert!(duration.histogram);
    let base = [
        ("db.system.name", "redis"),
        ("server.address", "127.0.0.1"),
        ("server.port", port.as_str()),
        ("db.namespace", "0"),
    ];
    let calls = |name: &str, outcome: &str| {
        let mut with = base.to_vec();
        with.extend([("db.operation.name", name), ("relink.outcome", outcome)]);
        duration.total(&with)
    };
    assert_eq!(calls("SET", "ok"), 1.0, "{duration:#?}");
    assert_eq!(calls("GET", "ok"), 1.0, "{duration:#?}");
    assert_eq!(calls("PIPELINE", "ok"), 1.0, "{duration:#?}");
    assert_eq!(calls("LPUSH", "rejected"), 1.0, "{duration:#?}");
    assert_eq!(
        duration.total(&[("db.operation.name", "LPUSH"), ("error.type", "command")]),
        1.0,
        "a rejection carries its error type: {duration:#?}"
    );
    assert!(
        duration
            .points
            .iter()
            .filter(|p| p.has("relink.outcome", "ok"))
            .all(|p| !p.attrs.contains_key("error.type")),
        "a success has no error type: {duration:#?}"
    );

    let connections = recorded.instrument(metrics::CONNECTION_COUNT);
    assert_eq!(connections.unit, "{connection}");
    assert!(!connections.histogram && !connections.monotonic);
    let mut used = base.to_vec();
    used.push(("db.client.connection.state", "used"));
    assert_eq!(connections.total(&used), 1.0, "{connections:#?}");

    let attempts = recorded.instrument(metrics::CONNECT_ATTEMPTS);
    assert_eq!(attempts.unit, "{attempt}");
    assert!(attempts.monotonic);
    assert!(attempts.total(&base) >= 1.0, "{attempts:#?}");
    assert!(
        attempts
            .points
            .iter()
            .all(|p| !p.attrs.contains_key("relink.connect.cause")),
        "the attempt succeeded: {attempts:#?}"
    );

    let create = recorded.instrument(metrics::CONNECTION_CREATE_TIME);
    assert_eq!(create.unit, "s");
    assert!(create.histogram);
    assert_eq!(
        create.total(&base),
        attempts.total(&base),
        "every attempt made a connection: {create:#?}"
    );

    let states = recorded.instrument(metrics::CLIENT_STATE);
    assert_eq!(states.unit, "{client}");
    assert!(!states.monotonic);
    let in_state = |state: &str| {
        let mut with = base.to_vec();
        with.push(("relink.state", state));
        states.total(&with)
    };
    assert_eq!(in_state(State::Ready.as_str()), 1.0, "{states:#?}");
    assert_eq!(in_state(State::Idle.as_str()), 0.0, "{states:#?}");
    assert_eq!(in_state(State::Connecting.as_str()), 0.0, "{states:#?}");

    client.shutdown().await;
    let states = recorded.instrument(metrics::CLIENT_STATE);
    assert_eq!(
        states.total(&base),
        0.0,
        "a client shut down is not counted: {states:#?}"
    );
    let connections = recorded.instrument(metrics::CONNECTION_COUNT);
    assert_eq!(
        connections.total(&base),
        0.0,
        "its connection is closed: {connections:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_cut_mid_flight_counts_a_retry() {
    let recorded = Recorded::new();
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut client = ready_client(config(&proxy.url(), &recorded)).await;
    let _: () = client.set("k", "v").await.expect("SET");
    proxy.cut_after_next_request();
    let v: String = client.get("k").await.expect("GET retried");
    assert_eq!(v, "v");

    let retries = recorded.instrument(metrics::RETRIES);
    assert_eq!(retries.unit, "{retry}");
    assert!(retries.monotonic);
    assert!(
        retries.total(&[("db.operation.name", "GET")]) >= 1.0,
        "{retries:#?}"
    );
    let duration = recorded.instrument(metrics::OPERATION_DURATION);
    assert_eq!(
        duration.total(&[("db.operation.name", "GET"), ("relink.outcome", "ok")]),
        1.0,
        "one call, however many attempts: {duration:#?}"
    );
    let attempts = recorded.instrument(metrics::CONNECT_ATTEMPTS);
    assert!(attempts.total(&[]) >= 2.0, "a reconnect: {attempts:#?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_port_counts_failed_connect_attempts_with_their_cause() {
    let recorded = Recorded::new();
    let port = refused_port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut client =
        Client::new(config(&url, &recorded).with_outage(OutagePolicy::FailFast)).expect("client");
    let mut health = client.health();
    let failure = tokio::time::timeout(
        PATIENCE,
        health.wait_for(|h| h.attempt >= 2 && h.last_attempt_failure.is_some()),
    )
    .await
    .expect("attempts fail within PATIENCE")
    .expect("health open")
    .last_attempt_failure
    .expect("a failure");
    assert_eq!(failure.cause, ConnectCause::Refused, "{failure}");
    let err = client
        .get::<_, Option<String>>("k")
        .await
        .expect_err("not connected");
    assert_eq!(Error::outcome_of(&err), Outcome::NotApplied, "{err}");

    let port = port.to_string();
    let attempts = recorded.instrument(metrics::CONNECT_ATTEMPTS);
    let failed = attempts.total(&[
        ("server.port", port.as_str()),
        ("relink.connect.cause", "refused"),
        ("error.type", ConnectCause::Refused.kind().as_str()),
    ]);
    assert!(failed >= 1.0, "{attempts:#?}");
    assert_eq!(
        failed,
        attempts.total(&[("server.port", port.as_str())]),
        "every attempt failed, with its cause: {attempts:#?}"
    );
    assert!(
        recorded
            .collect()
            .get(metrics::CONNECTION_CREATE_TIME)
            .is_none_or(|c| c.total(&[]) == 0.0),
        "no connection was made"
    );

    let duration = recorded.instrument(metrics::OPERATION_DURATION);
    assert_eq!(
        duration.total(&[
            ("db.operation.name", "GET"),
            ("relink.outcome", "not_applied"),
            ("error.type", "not_connected"),
        ]),
        1.0,
        "{duration:#?}"
    );
    let states = recorded.instrument(metrics::CLIENT_STATE);
    assert_eq!(
        states.total(&[("relink.state", "ready")]),
        0.0,
        "{states:#?}"
    );
    assert_eq!(
        states.total(&[]),
        1.0,
        "one client, in one state: {states:#?}"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_call_is_a_pending_request_until_it_ends() {
    let recorded = Recorded::new();
    let url = format!("redis://127.0.0.1:{}", refused_port());
    let outage = OutagePolicy::Queue {
        capacity: 4,
        max_wait: PATIENCE * 2,
    };
    let client = Client::new(
        config(&url, &recorded)
            .with_outage(outage)
            .with_deadline(None),
    )
    .expect("client");
    let mut queued = client.clone();
    let call = tokio::spawn(async move { queued.get::<_, Option<String>>("k").await });
    until("the call is queued", || client.stats().queued == 1).await;

    let pending = recorded.instrument(metrics::PENDING_REQUESTS);
    assert_eq!(pending.unit, "{request}");
    assert!(!pending.monotonic);
    assert_eq!(
        pending.total(&[("db.system.name", "redis")]),
        1.0,
        "{pending:#?}"
    );

    client.shutdown().await;
    let err = call.await.expect("task").expect_err("shut down");
    assert_eq!(Error::outcome_of(&err), Outcome::NotApplied, "{err}");
    let pending = recorded.instrument(metrics::PENDING_REQUESTS);
    assert_eq!(pending.total(&[]), 0.0, "{pending:#?}");
    let duration = recorded.instrument(metrics::OPERATION_DURATION);
    assert_eq!(
        duration.total(&[
            ("relink.outcome", "not_applied"),
            ("error.type", "shutdown")
        ]),
        1.0,
        "{duration:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_misconfiguration_with_its_cause() {
    let recorded = Recorded::new();
    let server = RedisServer::builder().password("right").start();
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let mut client = Client::new(config(&url, &recorded)).expect("client");
    let mut health = client.health();
    tokio::time::timeout(PATIENCE, health.wait_for(|h| h.misconfigured))
        .await
        .expect("misconfigured within PATIENCE")
        .expect("health open");
    let err = client
        .get::<_, Option<String>>("k")
        .await
        .expect_err("misconfigured");
    assert_eq!(Error::outcome_of(&err), Outcome::NotApplied, "{err}");

    let attempts = recorded.instrument(metrics::CONNECT_ATTEMPTS);
    assert!(
        attempts.total(&[
            ("relink.connect.cause", "auth"),
            ("error.type", ConnectCause::Auth.kind().as_str()),
        ]) >= 1.0,
        "{attempts:#?}"
    );
    let duration = recorded.instrument(metrics::OPERATION_DURATION);
    assert_eq!(
        duration.total(&[
            ("db.operation.name", "GET"),
            ("relink.outcome", "not_applied"),
            ("error.type", "misconfigured"),
        ]),
        1.0,
        "{duration:#?}"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_reports_hits_misses_invalidations_and_its_size() {
    let recorded = Recorded::new();
    let server = RedisServer::start();
    let mut client = ready_client(
        config(&server.url(), &recorded).with_cache(Some(relink::cache::CacheConfig::default())),
    )
    .await;
    for _ in 0..3 {
        let _: Option<String> = client.get("k").await.unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut server.connection())
        .unwrap();
    until("the invalidation", || {
        client.stats().cache.unwrap().invalidations == 1
    })
    .await;

    let requests = recorded.instrument(metrics::CACHE_REQUESTS);
    assert_eq!(requests.unit, "{request}");
    assert!(requests.monotonic);
    assert_eq!(requests.total(&[("relink.cache.result", "hit")]), 2.0);
    assert_eq!(
        requests.total(&[("relink.cache.result", "miss"), ("db.system.name", "redis")]),
        1.0
    );
    let invalidations = recorded.instrument(metrics::CACHE_INVALIDATIONS);
    assert_eq!(invalidations.total(&[]), 1.0, "{invalidations:#?}");
    assert_eq!(recorded.instrument(metrics::CACHE_ENTRIES).total(&[]), 0.0);
    let _: Option<String> = client.get("k").await.unwrap();
    let size = recorded.instrument(metrics::CACHE_SIZE);
    assert_eq!(size.unit, "By");
    assert!(size.total(&[]) > 0.0, "{size:#?}");
    assert_eq!(
        recorded.instrument(metrics::CACHE_GAP_FLUSHES).total(&[]),
        0.0
    );
    client.shutdown().await;
    assert_eq!(
        recorded.instrument(metrics::CACHE_GAP_FLUSHES).total(&[]),
        1.0,
        "the shutdown dropped the connection and emptied the cache"
    );
}
