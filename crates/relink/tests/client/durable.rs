//! Durable acknowledgements (`Client::durable`): a write is acknowledged
//! only once enough replicas confirmed it (`WAIT` in the same round trip);
//! otherwise the caller hears "outcome unknown: replicated to N of M", and
//! the write was applied on the master all the same.

use std::time::Duration;

use redis::AsyncCommands;
use relink::{Durability, Error, Outcome};
use relink_testkit::RedisServer;

use crate::{fast_config, ready_client, until, PATIENCE};

/// A master and one replica, in sync.
fn master_and_replica() -> (RedisServer, RedisServer) {
    let master = RedisServer::start();
    let replica = RedisServer::builder()
        .args(["--replicaof", "127.0.0.1"])
        .arg(master.port().to_string())
        .start();
    (master, replica)
}

fn replicas_in_sync(master: &RedisServer) -> bool {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut master.connection())
        .unwrap_or_default();
    info.lines()
        .any(|l| l.starts_with("slave0:") && l.contains("state=online"))
}

fn not_replicated(e: &redis::RedisError) -> (u32, u32) {
    match Error::from_redis(e) {
        Some(Error::NotReplicated {
            replicated,
            required,
            ..
        }) => (*replicated, *required),
        other => panic!("expected NotReplicated, got {other:?} ({e})"),
    }
}

#[tokio::test]
async fn a_write_no_replica_confirms_is_outcome_unknown_and_was_applied() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let mut durable = client.durable(1, Duration::from_millis(50)).unwrap();
    let e = durable.incr::<_, _, i64>("n", 1).await.unwrap_err();
    assert_eq!(not_replicated(&e), (0, 1));
    assert_eq!(Error::outcome_of(&e), Outcome::Unknown);
    assert!(e.to_string().contains("replicated to 0 of 1"), "{e}");
    // Not retried (INCR is not idempotent), and applied on the master.
    let n: i64 = redis::cmd("GET")
        .arg("n")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(client.stats().unknown, 1);
    // A transaction and a pipeline alike.
    let e = redis::pipe()
        .atomic()
        .incr("n", 1)
        .incr("n", 1)
        .query_async::<(i64, i64)>(&mut durable)
        .await
        .unwrap_err();
    assert_eq!(not_replicated(&e), (0, 1));
    let e = redis::pipe()
        .incr("n", 1)
        .query_async::<(i64,)>(&mut durable)
        .await
        .unwrap_err();
    assert_eq!(not_replicated(&e), (0, 1));
    let n: i64 = redis::cmd("GET")
        .arg("n")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(n, 4);
    // A leased connection's transaction: its EXEC is what waits.
    let mut tx = durable.exclusive().await.unwrap();
    redis::cmd("MULTI").exec_async(&mut tx).await.unwrap();
    let queued: String = tx.incr("n", 1).await.unwrap();
    assert_eq!(queued, "QUEUED");
    let e = redis::cmd("EXEC")
        .query_async::<(i64,)>(&mut tx)
        .await
        .unwrap_err();
    assert_eq!(not_replicated(&e), (0, 1));
    drop(tx);
    // A read has nothing to replicate: no WAIT, its answer as usual.
    let n: i64 = durable.get("n").await.unwrap();
    assert_eq!(n, 5);
    // The server's verdict on a write is passed on as it is: a wrong type
    // is no question of replication.
    redis::cmd("RPUSH")
        .arg("list")
        .arg("x")
        .exec(&mut server.connection())
        .unwrap();
    let e = durable.incr::<_, _, i64>("list", 1).await.unwrap_err();
    assert_eq!(Error::outcome_of(&e), Outcome::Rejected, "{e}");
    client.shutdown().await;
}

#[tokio::test]
async fn writes_a_replica_confirms_are_acknowledged() {
    let (master, _replica) = master_and_replica();
    until("the replica is in sync", || replicas_in_sync(&master)).await;
    // Generous: the replica's acknowledgement must come in time on a
    // loaded 2-core machine too (a timeout here is a test failure).
    let config = fast_config(&master.url()).with_response_timeout(Duration::from_secs(10));
    let client = ready_client(config).await;
    let mut durable = client.durable(1, Duration::from_secs(5)).unwrap();
    for i in 1..=20 {
        let n: i64 = durable.incr("n", 1).await.unwrap();
        assert_eq!(n, i);
    }
    let (a, b): (i64, i64) = redis::pipe()
        .atomic()
        .incr("n", 1)
        .incr("n", 1)
        .query_async(&mut durable)
        .await
        .unwrap();
    assert_eq!((a, b), (21, 22));
    let (c,): (i64,) = redis::pipe()
        .incr("n", 1)
        .query_async(&mut durable)
        .await
        .unwrap();
    assert_eq!(c, 23);
    // A leased connection: WAIT waits for the transaction's EXEC (inside
    // MULTI it would be queued with the rest).
    let mut tx = durable.exclusive().await.unwrap();
    assert_eq!(
        crate::exclusive::watched_increment(&mut tx).await,
        Some((1,))
    );
    redis::cmd("MULTI").exec_async(&mut tx).await.unwrap();
    let queued: String = tx.incr("counter", 1).await.unwrap();
    assert_eq!(queued, "QUEUED");
    let (n,): (i64,) = redis::cmd("EXEC").query_async(&mut tx).await.unwrap();
    assert_eq!(n, 2);
    drop(tx);
    // aof asked for: Redis 7.0 has no WAITAOF (detected at connect), so the
    // replicas' acknowledgement is what is waited for; a newer server that
    // has it, with appendonly off, cannot confirm the fsync.
    let mut aof = client
        .with_durability(Some(
            Durability::new(1, Duration::from_millis(500)).aof(true),
        ))
        .unwrap();
    match aof.incr::<_, _, i64>("n", 1).await {
        Ok(n) => assert_eq!(n, 24),
        Err(e) => assert_eq!(not_replicated(&e).1, 1),
    }
    assert_eq!(client.stats().unknown, 0, "{:?}", client.stats());
    client.shutdown().await;
}

#[tokio::test]
async fn bad_durable_settings_name_the_field() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let field = |e: Error| match e {
        Error::Config { field, .. } => field,
        other => panic!("expected a config error, got {other}"),
    };
    assert_eq!(
        field(client.durable(0, Duration::from_millis(50)).unwrap_err()),
        "durable.replicas"
    );
    assert_eq!(
        field(client.durable(1, Duration::ZERO).unwrap_err()),
        "durable.timeout"
    );
    // fast_config's response timeout is 1 s: WAIT must fit inside it.
    assert_eq!(
        field(client.durable(1, PATIENCE).unwrap_err()),
        "durable.timeout"
    );
    client.shutdown().await;
}

/// A transaction that did not run (EXECABORT: a command refused while
/// queued) applied nothing: its answer is the server's, not "outcome
/// unknown" for want of replicas.
#[tokio::test]
async fn a_durable_transaction_that_did_not_run_says_so() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let mut durable = client.durable(1, Duration::from_millis(50)).unwrap();
    let e = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("k")
        .arg("v")
        .cmd("INCRBY")
        .arg("k") // wrong arity: refused while queued
        .query_async::<()>(&mut durable)
        .await
        .unwrap_err();
    assert!(
        !matches!(Error::from_redis(&e), Some(Error::NotReplicated { .. })),
        "{e}"
    );
    assert_eq!(
        e.kind(),
        redis::ErrorKind::Server(redis::ServerErrorKind::ExecAbort),
        "{e}"
    );
    let k: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(k, None, "nothing ran");
}
