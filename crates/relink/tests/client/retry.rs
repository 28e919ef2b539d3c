//! Retry safety: a write of unknown fate is never applied twice by relink;
//! reads are retried transparently.

use redis::AsyncCommands;
use relink::{Error, Outcome};
use relink_testkit::{FaultProxy, RedisServer};

use crate::{assert_applied_at_most_once, fast_config, incr_rounds, ready_client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incr_through_lost_replies_is_never_applied_twice() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut client = ready_client(fast_config(&proxy.url())).await;
    let mut direct = server.connection();

    let (acked, unknown) = incr_rounds(
        &mut client,
        |round| {
            // Every third round the replies are swallowed: the server
            // applies the INCR, the client never hears back.
            if round % 3 == 1 {
                proxy.drop_replies();
            }
        },
        || proxy.pass(),
    )
    .await;
    let counter: i64 = redis::cmd("GET").arg("counter").query(&mut direct).unwrap();
    assert_applied_at_most_once(counter, acked, unknown);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_cut_mid_flight_is_retried_transparently() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut client = ready_client(fast_config(&proxy.url())).await;
    let _: () = client.set("k", "v").await.unwrap();
    proxy.cut_after_next_request();
    let v: String = client
        .get("k")
        .await
        .expect("GET retried on the new connection");
    assert_eq!(v, "v");
    assert!(
        proxy.accepted() >= 2,
        "a second connection carried the retry"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_mid_flight_reports_an_unknown_outcome() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut client = ready_client(fast_config(&proxy.url())).await;
    proxy.cut_after_next_request();
    let err = client
        .incr::<_, _, i64>("n", 1)
        .await
        .expect_err("no reply came");
    assert_eq!(Error::outcome_of(&err), Outcome::Unknown, "{err}");
    assert!(err.to_string().contains("outcome unknown"), "{err}");
    // The server did apply it; relink did not apply it again.
    let n: i64 = redis::cmd("GET")
        .arg("n")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(n, 1);
    // A write declared idempotent is retried instead.
    proxy.cut_after_next_request();
    let _: () = client
        .idempotent()
        .set("s", "x")
        .await
        .expect("idempotent write retried");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readonly_reply_is_a_refusal_not_a_command_error() {
    // The server the client talks to is demoted to a replica (as in a
    // failover): its READONLY reply means "not applied", and the client
    // replaces the connection instead of passing the reply on as a plain error.
    let server = RedisServer::start();
    let other = RedisServer::start();
    let mut client = ready_client(fast_config(&server.url())).await;
    let mut direct = server.connection();
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(other.port())
        .exec(&mut direct)
        .unwrap();
    let err = client.set::<_, _, ()>("k", "v").await.unwrap_err();
    assert_eq!(Error::outcome_of(&err), Outcome::NotApplied, "{err}");
    assert!(
        matches!(
            Error::from_redis(&err),
            Some(Error::NotApplied {
                kind: relink::FailureKind::ServerBusy(relink::core::BusyReason::ReadOnly),
                ..
            })
        ),
        "{err}"
    );
    assert!(
        client.stats().retried >= 1,
        "a refused write is safe to retry"
    );
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .exec(&mut direct)
        .unwrap();
    let _: () = crate::eventually(|| {
        let mut c = client.clone();
        async move { c.set::<_, _, ()>("k", "v").await }
    })
    .await;
    client.shutdown().await;
}
