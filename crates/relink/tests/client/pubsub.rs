//! Pub/Sub on its own supervised connection, RESP2 and RESP3: restored
//! through restarts and cuts with one gap marker, unsubscribed when the last
//! handle goes, several handles on one channel, a bounded slow consumer,
//! shard channels, and the command connection left a normal client.

use std::time::Duration;

use redis::AsyncCommands;
use relink::{Client, Error, PubSubItem, Subscription};
use relink_testkit::{FaultProxy, RedisServer};

use crate::{eventually, fast_config, ready_client, PATIENCE};

/// The next item, within [`PATIENCE`].
async fn next(sub: &mut Subscription) -> PubSubItem {
    tokio::time::timeout(PATIENCE, sub.next_item())
        .await
        .expect("an item within PATIENCE")
        .expect("the stream is open")
}

/// Publishes `payload` on `channel` (through `publish`, e.g. `PUBLISH` or
/// `SPUBLISH`) until a subscriber hears it, then reads `sub` up to that
/// message: returns the items before it.
pub(crate) async fn publish_until_heard(
    client: &Client,
    sub: &mut Subscription,
    publish: &str,
    channel: &str,
    payload: &str,
) -> Vec<PubSubItem> {
    eventually(|| {
        let mut c = client.clone();
        async move {
            let n: i64 = redis::cmd(publish)
                .arg(channel)
                .arg(payload)
                .query_async(&mut c)
                .await?;
            if n > 0 {
                Ok(n)
            } else {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "no subscriber yet",
                )))
            }
        }
    })
    .await;
    let mut before = Vec::new();
    // Bounded: each `next` is bounded, and the message was delivered.
    for _ in 0..10_000 {
        match next(sub).await {
            PubSubItem::Message { payload: p, .. } if p == payload.as_bytes() => return before,
            other => before.push(other),
        }
    }
    panic!("{payload} never arrived; saw {before:?}");
}

fn markers(items: &[PubSubItem]) -> usize {
    items
        .iter()
        .filter(|i| matches!(i, PubSubItem::Restored { .. }))
        .count()
}

/// `PUBSUB NUMSUB channel` (or `SHARDNUMSUB`) on the server, from the side.
fn numsub(server: &RedisServer, command: &str, channel: &str) -> i64 {
    let mut conn = server.connection();
    let reply: (String, i64) = redis::cmd("PUBSUB")
        .arg(command)
        .arg(channel)
        .query(&mut conn)
        .expect("PUBSUB NUMSUB");
    reply.1
}

async fn until_numsub(server: &RedisServer, command: &str, channel: &str, want: i64) {
    let what = format!("{command} {channel} becomes {want}");
    crate::until(&what, || numsub(server, command, channel) == want).await;
}

async fn restart_with_one_marker(protocol: &str) {
    let mut server = RedisServer::start();
    let url = format!("{}?protocol={protocol}", server.url());
    let client = ready_client(fast_config(&url)).await;
    let mut news = client.subscribe(&["news"]).await.unwrap();
    let mut alerts = client.psubscribe(&["alerts.*"]).await.unwrap();

    // Confirmed by the server before `subscribe` returned: the first
    // publish is heard, with no marker.
    let mut publisher = client.clone();
    let heard: i64 = publisher.publish("news", "one").await.unwrap();
    assert_eq!(heard, 1);
    assert!(
        matches!(next(&mut news).await, PubSubItem::Message { channel, payload, pattern: None } if channel == "news" && payload == b"one")
    );
    let _: i64 = publisher.publish("alerts.disk", "full").await.unwrap();
    assert!(
        matches!(next(&mut alerts).await, PubSubItem::Message { channel, pattern: Some(p), payload } if channel == "alerts.disk" && p == "alerts.*" && payload == b"full")
    );

    server.kill();
    server.restart();
    let before = publish_until_heard(&client, &mut news, "PUBLISH", "news", "two").await;
    assert_eq!(
        markers(&before),
        1,
        "one marker per subscription and gap: {before:?}"
    );
    assert!(matches!(before[0], PubSubItem::Restored { gap } if gap > Duration::ZERO));
    let before = publish_until_heard(&client, &mut alerts, "PUBLISH", "alerts.cpu", "hot").await;
    assert_eq!(markers(&before), 1, "{before:?}");
    client.shutdown().await;
    assert_eq!(news.next_item().await, None, "the stream ends at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_subscriptions_survive_a_restart_with_one_marker() {
    restart_with_one_marker("resp3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp2_subscriptions_survive_a_restart_with_one_marker() {
    restart_with_one_marker("resp2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscriber_connection_is_declared_dead_and_restored() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let client = ready_client(fast_config(&proxy.url())).await;
    let mut news = client.subscribe(&["news"]).await.unwrap();
    // No FIN, no RST: only the subscriber connection's heartbeat can tell.
    proxy.blackhole();
    crate::until("the subscriber connection is declared dead", || {
        client.stats().subscriber_losses >= 1
    })
    .await;
    proxy.pass();
    let before = publish_until_heard(&client, &mut news, "PUBLISH", "news", "back").await;
    assert_eq!(markers(&before), 1, "{before:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_last_handle_unsubscribes_on_the_server() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let a = client.subscribe(&["jobs"]).await.unwrap();
    let mut b = client.subscribe(&["jobs"]).await.unwrap();
    assert_eq!(
        numsub(&server, "NUMSUB", "jobs"),
        1,
        "one server subscription"
    );

    // Two handles: each gets every message.
    let mut a = a;
    let mut publisher = client.clone();
    let _: i64 = publisher.publish("jobs", "1").await.unwrap();
    for sub in [&mut a, &mut b] {
        assert!(matches!(next(sub).await, PubSubItem::Message { payload, .. } if payload == b"1"));
    }

    assert_eq!(client.stats().subscriptions, 2);
    // One handle gone: the other keeps the subscription.
    drop(a);
    let _: i64 = publisher.publish("jobs", "2").await.unwrap();
    assert!(matches!(next(&mut b).await, PubSubItem::Message { payload, .. } if payload == b"2"));
    assert_eq!(numsub(&server, "NUMSUB", "jobs"), 1);

    // The last one gone: unsubscribed on the server.
    drop(b);
    until_numsub(&server, "NUMSUB", "jobs", 0).await;

    // `unsubscribe` waits for the server's confirmation.
    let p = client.psubscribe(&["jobs.*"]).await.unwrap();
    let n: i64 = publisher.publish("jobs.x", "3").await.unwrap();
    assert_eq!(n, 1);
    p.unsubscribe().await.unwrap();
    let n: i64 = publisher.publish("jobs.x", "4").await.unwrap();
    assert_eq!(n, 0, "nobody hears it after unsubscribe returned");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_bounded_and_told_where_it_lagged() {
    let server = RedisServer::start();
    let config = fast_config(&server.url()).with_subscription_buffer(4);
    let client = ready_client(config).await;
    let mut slow = client.subscribe(&["firehose"]).await.unwrap();
    let mut sync = client.subscribe(&["sync"]).await.unwrap();
    let mut publisher = client.clone();
    let mut pipe = redis::pipe();
    for i in 0..20 {
        pipe.publish("firehose", i).ignore();
    }
    pipe.publish("sync", "done").ignore();
    let () = pipe.query_async(&mut publisher).await.unwrap();
    // Delivered in publish order on one connection: once `sync` is heard,
    // all twenty were routed, and only four fit.
    assert!(matches!(next(&mut sync).await, PubSubItem::Message { .. }));
    for i in 0..4 {
        let want = i.to_string();
        assert!(
            matches!(next(&mut slow).await, PubSubItem::Message { payload, .. } if payload == want.as_bytes())
        );
    }
    let _: i64 = publisher.publish("firehose", "after").await.unwrap();
    assert_eq!(next(&mut slow).await, PubSubItem::Lagged { missed: 16 });
    assert_eq!(client.stats().messages_dropped, 16);
    assert!(
        matches!(next(&mut slow).await, PubSubItem::Message { payload, .. } if payload == b"after")
    );
    // The fast handle was never held back.
    let _: i64 = publisher.publish("sync", "again").await.unwrap();
    assert!(
        matches!(next(&mut sync).await, PubSubItem::Message { payload, .. } if payload == b"again")
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_connection_stays_a_normal_client() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url()).with_client_name("app")).await;
    let _news = client.subscribe(&["news"]).await.unwrap();
    let _shards = client.ssubscribe(&["orders"]).await.unwrap();
    let mut c = client.clone();
    let id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut c)
        .await
        .unwrap();
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut c)
        .await
        .unwrap();
    let line = |pred: &dyn Fn(&str) -> bool| list.lines().filter(|l| pred(l)).count();
    let ours = list
        .lines()
        .find(|l| l.starts_with(&format!("id={id} ")))
        .expect("the command connection is listed");
    assert!(ours.contains(" flags=N "), "{ours}");
    assert_eq!(
        line(&|l: &str| l.contains(" flags=P ") && l.contains(" sub=1 ") && l.contains(" ssub=1")),
        1,
        "one subscriber connection, with the channel and the shard channel:\n{list}"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_channels_are_restored_and_refused_under_resp2() {
    let mut server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let mut orders = client.ssubscribe(&["orders"]).await.unwrap();
    assert_eq!(numsub(&server, "SHARDNUMSUB", "orders"), 1);
    let before = publish_until_heard(&client, &mut orders, "SPUBLISH", "orders", "1").await;
    assert!(before.is_empty(), "{before:?}");
    server.kill();
    server.restart();
    let before = publish_until_heard(&client, &mut orders, "SPUBLISH", "orders", "2").await;
    assert_eq!(markers(&before), 1, "{before:?}");
    drop(orders);
    until_numsub(&server, "SHARDNUMSUB", "orders", 0).await;
    client.shutdown().await;

    let url = format!("{}?protocol=resp2", server.url());
    let client = ready_client(fast_config(&url)).await;
    match client.ssubscribe(&["orders"]).await {
        Err(Error::Config { field, .. }) => assert_eq!(field, "protocol"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_made_during_an_outage_is_in_place_with_a_marker() {
    let mut server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    server.kill();
    // No connection: `subscribe` returns at once, the subscription pending.
    let mut late = tokio::time::timeout(PATIENCE, client.subscribe(&["late"]))
        .await
        .expect("subscribe returns while the server is down")
        .unwrap();
    server.restart();
    let before = publish_until_heard(&client, &mut late, "PUBLISH", "late", "hi").await;
    assert_eq!(markers(&before), 1, "{before:?}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscribe_racing_shutdown_ends_either_way() {
    let server = RedisServer::start();
    for round in 0..20 {
        let client = ready_client(fast_config(&server.url())).await;
        let racer = {
            let client = client.clone();
            tokio::spawn(async move { client.subscribe(&[&format!("race{round}")]).await })
        };
        client.shutdown().await;
        match racer.await.unwrap() {
            Err(Error::Shutdown) => {}
            Ok(mut sub) => {
                // Whatever it got must end.
                let ended = tokio::time::timeout(PATIENCE, async {
                    // Bounded: the stream ends.
                    while sub.next_item().await.is_some() {}
                })
                .await;
                assert!(ended.is_ok(), "round {round}: a stream that never ends");
            }
            Err(other) => panic!("round {round}: {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_subscriptions_are_refused_clearly() {
    let server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    assert!(matches!(
        client.subscribe(&[]).await,
        Err(Error::Config { field, .. }) if field == "channels"
    ));
    assert!(matches!(
        relink::Config::new(&server.url()).unwrap().with_subscription_buffer(0).validate(),
        Err(Error::Config { field, .. }) if field == "subscription_buffer"
    ));
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_waits_out_a_wrong_password_until_credentials_are_updated() {
    let server = RedisServer::builder().password("right").start();
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let client = Client::new(fast_config(&url)).unwrap();
    // Refused (WRONGPASS): it returns, pending.
    let mut news = tokio::time::timeout(PATIENCE, client.subscribe(&["news"]))
        .await
        .expect("subscribe returns while the password is wrong")
        .unwrap();
    client.update_credentials(None, "right").await.unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    let before = publish_until_heard(&client, &mut news, "PUBLISH", "news", "in").await;
    assert_eq!(markers(&before), 1, "{before:?}");
    client.shutdown().await;
}
