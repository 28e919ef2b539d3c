//! Client-side caching against real servers: invalidations from other
//! clients, the client's own writes, `FLUSHALL`, and gaps (a cut link, a
//! refused reconnect, a killed and restarted server) with writers during
//! the gap. The invariant: once the client is back, it never returns a
//! value older than one written before its return.

use std::sync::{Arc, Mutex};

use redis::AsyncCommands;
use relink::cache::{CacheConfig, CacheState};
use relink::{Client, Config, Error, Event};
use relink_testkit::{FaultProxy, RedisServer};

use crate::{events_until, fast_config, ready_client, wait_state, PATIENCE};

fn cached(config: Config) -> Config {
    config.with_cache(Some(CacheConfig::default()))
}

fn cache_stats(client: &Client) -> relink::cache::CacheStats {
    client.stats().cache.expect("the cache is on")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_served_from_memory_until_another_client_writes() {
    let server = RedisServer::start();
    let mut other = server.connection();
    let mut client = ready_client(cached(fast_config(&server.url()))).await;
    assert_eq!(client.health().borrow().cache, Some(CacheState::Serving));

    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v1")
        .query(&mut other)
        .unwrap();
    let first: String = client.get("k").await.unwrap();
    let second: String = client.get("k").await.unwrap();
    assert_eq!((first.as_str(), second.as_str()), ("v1", "v1"));
    let stats = cache_stats(&client);
    assert_eq!((stats.misses, stats.hits, stats.entries), (1, 1, 1));

    // Another client's write reaches the cache as an invalidation.
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v2")
        .query(&mut other)
        .unwrap();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while seen != "v2" {
        assert!(tokio::time::Instant::now() < deadline, "v2 never read");
        seen = client.get("k").await.unwrap();
    }
    assert!(cache_stats(&client).invalidations >= 1);

    // The client's own writes: read back at once, every time.
    for i in 0..50 {
        let _: () = client.set("k", i).await.unwrap();
        let back: i64 = client.get("k").await.unwrap();
        assert_eq!(back, i, "own write {i} read back stale");
        let again: i64 = client.get("k").await.unwrap();
        assert_eq!(again, i);
    }

    // Many keys and shapes: MGET and HGETALL are cached and invalidated by key.
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("1")
        .query(&mut other)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query(&mut other)
        .unwrap();
    let hits = cache_stats(&client).hits;
    for _ in 0..2 {
        let h: std::collections::HashMap<String, String> = client.hgetall("h").await.unwrap();
        assert_eq!(h["f"], "1");
        let m: Vec<Option<String>> = client.mget(&["a", "nope"]).await.unwrap();
        assert_eq!(m, [Some("1".to_owned()), None]);
    }
    assert_eq!(
        cache_stats(&client).hits,
        hits + 2,
        "the second HGETALL and MGET"
    );
    let _: () = redis::cmd("SET")
        .arg("nope")
        .arg("2")
        .query(&mut other)
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let m: Vec<Option<String>> = client.mget(&["a", "nope"]).await.unwrap();
        if m == [Some("1".to_owned()), Some("2".to_owned())] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "MGET never saw the write"
        );
    }
    assert!(cache_stats(&client).hits > hits);

    // FLUSHALL: the server's null invalidation empties the cache.
    let _: String = client.get("a").await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut other).unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while client
        .get::<_, Option<String>>("a")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "FLUSHALL never seen"
        );
    }
    client.shutdown().await;
}

/// A task reading `k` through the client in a loop, recording when each
/// read started and what it returned (absent key: 0).
struct Reader {
    reads: Arc<Mutex<Vec<(tokio::time::Instant, i64)>>>,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    fn start(client: &Client) -> Reader {
        let reads = Arc::new(Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (mut client, log, stopped) = (client.clone(), Arc::clone(&reads), stop.clone());
        let task = tokio::spawn(async move {
            // Bounded by the test: it stops the reader before returning.
            while !stopped.is_cancelled() {
                let started = tokio::time::Instant::now();
                let read = client.get::<_, Option<i64>>("k");
                match tokio::select! { r = read => Some(r), _ = stopped.cancelled() => None } {
                    Some(Ok(value)) => log.lock().unwrap().push((started, value.unwrap_or(0))),
                    Some(Err(_)) => tokio::task::yield_now().await,
                    None => break,
                }
            }
        });
        Reader { reads, stop, task }
    }

    /// Stops it; checks that no read started after a return (`back`) gave
    /// a value older than the last written before that return.
    async fn check(self, returns: &[(tokio::time::Instant, i64)]) -> usize {
        self.stop.cancel();
        self.task.await.unwrap();
        let reads = self.reads.lock().unwrap();
        for &(started, value) in reads.iter() {
            let newest = returns
                .iter()
                .filter(|(back, _)| *back <= started)
                .map(|(_, written)| *written)
                .max()
                .unwrap_or(0);
            assert!(
                value >= newest,
                "a read after the client's return gave {value}, older than {newest} written \
                 during the gap"
            );
        }
        reads.len()
    }
}

/// Reads `k` until one is answered from the cache.
async fn cache_k(client: &mut Client) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let hits = cache_stats(client).hits;
        if client.get::<_, Option<i64>>("k").await.is_ok() && cache_stats(client).hits > hits {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "k never cached");
    }
}

fn set_k(conn: &mut redis::Connection, value: i64) {
    let _: () = redis::cmd("SET").arg("k").arg(value).query(conn).unwrap();
}

/// Lets the client back through `proxy`, waits for its return, notes it
/// (with `written`, the last value written before it), and reads `k`.
async fn let_back(
    proxy: &FaultProxy,
    events: &mut (impl futures_util::Stream<Item = Event> + Unpin),
    client: &mut Client,
    returns: &mut Vec<(tokio::time::Instant, i64)>,
    written: i64,
) -> i64 {
    proxy.pass();
    events_until(events, |e| matches!(e, Event::Reconnected { .. })).await;
    returns.push((tokio::time::Instant::now(), written));
    client.get("k").await.unwrap()
}

/// A seed for the rounds' random choices, printed so a failure can be replayed.
fn seed() -> u64 {
    let seed = std::env::var("RELINK_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("RELINK_TEST_SEED={seed}");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_a_cut_link_with_writes_during_the_cut() {
    const ROUNDS: i64 = 16;
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut other = server.connection();
    let mut client = ready_client(cached(fast_config(&proxy.url()))).await;
    let mut events = client.events();
    let mut rng = relink::core::rng::SplitMix64::new(seed());
    let reader = Reader::start(&client);
    let mut returns = Vec::new();
    let mut value = 0i64;
    for round in 0..ROUNDS {
        set_k(&mut other, value);
        cache_k(&mut client).await;
        // The gap: a closed link (FIN or RST) with reconnects refused, a
        // dead one the heartbeat must find, or the server's `CLIENT KILL`.
        let kind = rng.next_u64() % 4;
        match kind {
            0 => proxy.refuse(),
            1 => {
                proxy.reset();
                proxy.refuse();
            }
            2 => {
                proxy.blackhole();
                wait_state(&client, relink::State::TransientFailure).await;
            }
            _ => {
                // Killed and written in one transaction: the write comes
                // after the kill and before any reconnect can be accepted.
                value += 1;
                let _: (i64, ()) = redis::pipe()
                    .atomic()
                    .cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("normal")
                    .arg("SKIPME")
                    .arg("yes")
                    .set("k", value)
                    .query(&mut other)
                    .unwrap();
            }
        }
        // Other writers during the gap, a random number of them (the
        // killed client may be back already: none then).
        for _ in 0..(if kind == 3 { 0 } else { 1 + rng.next_u64() % 4 }) {
            value += 1;
            set_k(&mut other, value);
        }
        let read = let_back(&proxy, &mut events, &mut client, &mut returns, value).await;
        assert_eq!(
            read, value,
            "round {round} (gap kind {kind}): stale after the return"
        );
        value += 1;
    }
    let reads = reader.check(&returns).await;
    let stats = cache_stats(&client);
    assert!(stats.gap_flushes >= ROUNDS as u64, "{stats:?}");
    assert!(stats.hits > 0 && reads > 0, "{stats:?}, {reads} reads");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stale_read_after_a_server_restart_with_writes_before_the_return() {
    const ROUNDS: i64 = 5;
    let mut server = RedisServer::builder().appendonly(true).start();
    // The proxy only keeps the client away until the writes are done, so
    // that they certainly fall in the gap; the loss is the server's kill.
    let proxy = FaultProxy::start(server.addr());
    let mut client = ready_client(cached(fast_config(&proxy.url()))).await;
    let mut events = client.events();
    let reader = Reader::start(&client);
    let mut returns = Vec::new();
    let mut value = 0i64;
    for round in 0..ROUNDS {
        {
            let mut other = server.connection();
            set_k(&mut other, value);
        }
        cache_k(&mut client).await;
        server.kill();
        events_until(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
        proxy.refuse();
        server.restart();
        value += 1;
        let mut other = server.connection();
        set_k(&mut other, value);
        let read = let_back(&proxy, &mut events, &mut client, &mut returns, value).await;
        assert_eq!(read, value, "round {round}: stale after the restart");
        value += 1;
    }
    reader.check(&returns).await;
    assert!(cache_stats(&client).gap_flushes >= ROUNDS as u64);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_lease_or_a_blocking_command_are_read_back_at_once() {
    let server = RedisServer::start();
    let mut client = ready_client(cached(fast_config(&server.url()))).await;
    for i in 0..20i64 {
        let _: i64 = client
            .get::<_, Option<i64>>("k")
            .await
            .unwrap()
            .unwrap_or(0);
        let _: i64 = client
            .get::<_, Option<i64>>("k")
            .await
            .unwrap()
            .unwrap_or(0);
        // A transaction on an exclusive connection.
        let mut lease = client.exclusive().await.unwrap();
        let (): () = redis::pipe()
            .atomic()
            .set("k", i)
            .ignore()
            .query_async(&mut lease)
            .await
            .unwrap();
        drop(lease);
        let back: i64 = client.get("k").await.unwrap();
        assert_eq!(back, i, "the transaction's write was read back stale");

        // A blocking pop (run on an exclusive connection) changes a cached list.
        let _: () = client.rpush("list", &[1, 2]).await.unwrap();
        let before: Vec<i64> = client.lrange("list", 0, -1).await.unwrap();
        let again: Vec<i64> = client.lrange("list", 0, -1).await.unwrap();
        assert_eq!(before, again);
        let popped: Option<(String, i64)> = client.blpop("list", 1.0).await.unwrap();
        assert!(popped.is_some());
        let after: Vec<i64> = client.lrange("list", 0, -1).await.unwrap();
        assert_eq!(after.len(), before.len() - 1, "the pop was read back stale");
    }
    assert!(cache_stats(&client).hits >= 40);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_not_served_past_its_expiry_even_when_the_server_deletes_it_late() {
    // The server's active expiry off: an expired key is deleted (and
    // invalidated) only when something touches it.
    let server = RedisServer::builder()
        .args(["--enable-debug-command", "yes"])
        .start();
    let mut admin = server.connection();
    let _: () = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query(&mut admin)
        .unwrap();
    let mut client = ready_client(cached(fast_config(&server.url()))).await;
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("PX")
        .arg(1500)
        .query(&mut admin)
        .unwrap();
    // Read until one read is answered from memory (or the key is gone).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let hits = cache_stats(&client).hits;
        let v: Option<String> = client.get("k").await.unwrap();
        if v.is_none() || cache_stats(&client).hits > hits {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never cached");
    }
    // Served no longer than the key lives: then the read goes to the server,
    // which expires the key on that very read.
    while client
        .get::<_, Option<String>>("k")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "served past the key's expiry"
        );
        tokio::task::yield_now().await;
    }
    // (That read expired it on the server, which then invalidated it: the
    // only word the server ever sent about it.)
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_mode_caches_only_its_prefixes_and_reads_own_writes_back() {
    let server = RedisServer::start();
    let mut other = server.connection();
    let config = fast_config(&server.url())
        .with_cache(Some(CacheConfig::default().with_broadcast(["user:"])));
    let mut client = ready_client(config).await;
    for key in ["user:1", "other:1"] {
        for _ in 0..2 {
            let _: Option<String> = client.get(key).await.unwrap();
        }
    }
    let stats = cache_stats(&client);
    assert_eq!((stats.hits, stats.misses), (1, 1), "other:1 is not cached");

    let _: () = redis::cmd("SET")
        .arg("user:1")
        .arg("b")
        .query(&mut other)
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while client
        .get::<_, Option<String>>("user:1")
        .await
        .unwrap()
        .as_deref()
        != Some("b")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the write was never seen"
        );
    }
    for i in 0..50i64 {
        let _: () = client.set("user:1", i).await.unwrap();
        let back: i64 = client.get("user:1").await.unwrap();
        assert_eq!(back, i, "own write {i} read back stale");
        let _: i64 = client.get("user:1").await.unwrap();
    }
    assert!(cache_stats(&client).hits > 1);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_would_silence_the_invalidations_are_refused() {
    let server = RedisServer::start();
    let mut client = ready_client(cached(fast_config(&server.url()))).await;
    for args in [
        &["CLIENT", "TRACKING", "OFF"][..],
        &["SELECT", "1"],
        &["RESET"],
    ] {
        let mut cmd = redis::Cmd::new();
        for a in args {
            cmd.arg(*a);
        }
        let err = cmd
            .query_async::<redis::Value>(&mut client)
            .await
            .unwrap_err();
        assert!(
            matches!(Error::from_redis(&err), Some(Error::InvalidCommand { .. })),
            "{args:?}: {err}"
        );
    }
    // The same on a connection of its own is fine.
    let mut lease = client.exclusive().await.unwrap();
    let _: () = redis::cmd("SELECT")
        .arg(1)
        .query_async(&mut lease)
        .await
        .unwrap();
    drop(lease);
    assert_eq!(client.health().borrow().cache, Some(CacheState::Serving));
    client.shutdown().await;
}
