//! The native client against real redis-server processes: killed, restarted,
//! paused, and reached through a fault-injecting proxy. One test binary (many
//! modules) to keep link time down; each test spawns the servers it breaks.

mod cache;
mod durable;
mod exclusive;
mod faults;
mod hot_path;
mod misconfig;
mod outage;
mod pubsub;
mod recovery;
mod retry;
mod state;
#[cfg(feature = "tls-rustls")]
mod tls;

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use relink::core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink::core::supervisor::HeartbeatConfig;
use relink::{Client, Config, Error, Event, Outcome, State};

/// Generous upper bound for any condition a test waits on.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A config tuned for tests: a fast heartbeat and fast, capped backoff, so
/// outages are noticed and ridden out quickly. Waits stay condition-based.
pub fn fast_config(url: &str) -> Config {
    Config::new(url)
        .expect("valid url")
        .with_heartbeat(HeartbeatConfig {
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(200),
            misses_allowed: 0,
        })
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
}

/// Starts a client and waits until it is Ready.
pub async fn ready_client(config: Config) -> Client {
    let client = Client::new(config).expect("client");
    client.wait_ready(PATIENCE).await.expect("ready");
    client
}

/// Waits (bounded) until the client's health reaches `state`.
pub async fn wait_state(client: &Client, state: State) {
    let mut health = client.health();
    tokio::time::timeout(PATIENCE, health.wait_for(|h| h.state == state))
        .await
        .unwrap_or_else(|_| panic!("state {state} not reached within {PATIENCE:?}"))
        .expect("health channel open");
}

/// Retries `op` until it succeeds, within [`PATIENCE`]; returns its value.
pub async fn eventually<T, E: std::fmt::Debug, F, Fut>(mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        match op().await {
            Ok(v) => return v,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("did not succeed within {PATIENCE:?}; last error: {last:?}");
}

/// `CLIENT KILL TYPE normal SKIPME yes` through `admin`: every ordinary
/// connection but `admin`'s is closed by the server. Returns how many.
pub fn kill_other_clients(admin: &mut redis::Connection) -> i64 {
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(admin)
        .expect("CLIENT KILL")
}

/// Waits (bounded by [`PATIENCE`]) until `cond` holds, looking every few ms.
pub async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Collects events until `pred` matches one (bounded by [`PATIENCE`]).
pub async fn events_until(
    events: &mut (impl futures_util::Stream<Item = Event> + Unpin),
    pred: impl Fn(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(e) = events.next().await {
            seen.push(e);
            if pred(&e) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(matches!(found, Ok(true)), "event not seen; saw {seen:?}");
    seen
}

/// Six rounds of five `INCR counter` through `client`: `fault(round)` before
/// each round, `heal()` after it. Returns the INCRs acknowledged and those
/// of unknown outcome (a refusal, not sent, counts as neither).
pub async fn incr_rounds(
    client: &mut Client,
    mut fault: impl FnMut(u32),
    mut heal: impl FnMut(),
) -> (i64, i64) {
    use redis::AsyncCommands;
    let (mut acked, mut unknown) = (0i64, 0i64);
    for round in 0..6 {
        fault(round);
        for _ in 0..5 {
            match client.incr::<_, _, i64>("counter", 1).await {
                Ok(_) => acked += 1,
                Err(e) => match Error::outcome_of(&e) {
                    Outcome::Unknown => unknown += 1,
                    Outcome::NotApplied => {}
                    Outcome::Rejected => panic!("unexpected rejection: {e}"),
                },
            }
        }
        heal();
    }
    (acked, unknown)
}

/// The server's `counter` after [`incr_rounds`]: every acknowledged INCR
/// applied, none twice, and the faults did leave some outcomes unknown.
pub fn assert_applied_at_most_once(counter: i64, acked: i64, unknown: i64) {
    assert!(unknown > 0, "the faults produced unknown outcomes");
    assert!(
        counter >= acked,
        "an acknowledged INCR was lost: {counter} < {acked}"
    );
    assert!(
        counter <= acked + unknown,
        "an INCR was applied twice: {counter} > {acked} acked + {unknown} unknown"
    );
}
