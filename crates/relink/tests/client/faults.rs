//! Broken links through the fault-injecting proxy: each fault is survived.

use std::time::Duration;

use redis::AsyncCommands;
use relink::State;
use relink_testkit::{FaultProxy, RedisServer};

use crate::{eventually, fast_config, ready_client, wait_state};

async fn survives(fault: impl Fn(&FaultProxy), expect_outage: bool) {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut client = ready_client(fast_config(&proxy.url())).await;
    let _: () = client.set("k", "before").await.unwrap();
    fault(&proxy);
    if expect_outage {
        let mut health = client.health();
        tokio::time::timeout(
            crate::PATIENCE,
            health.wait_for(|h| h.state != State::Ready),
        )
        .await
        .expect("fault noticed")
        .unwrap();
    }
    proxy.pass();
    wait_state(&client, State::Ready).await;
    let value: String = eventually(|| {
        let mut c = client.clone();
        async move { c.get::<_, String>("k").await }
    })
    .await;
    assert_eq!(value, "before");
    let _: () = client.set("k", "after").await.unwrap();
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_link_is_survived() {
    survives(|p| p.cut(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_is_survived() {
    survives(|p| p.reset(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_is_noticed_by_the_heartbeat_and_survived() {
    // No FIN, no RST: only the heartbeat can tell.
    survives(|p| p.blackhole(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_latency_below_the_timeouts_is_not_an_outage() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut client = ready_client(fast_config(&proxy.url())).await;
    proxy.delay(Duration::from_millis(50));
    let mut events = client.events();
    for i in 0..20 {
        let _: () = client.set("k", i).await.unwrap();
    }
    let v: i64 = client.get("k").await.unwrap();
    assert_eq!(v, 19);
    // Slow is not dead: no disconnect happened.
    let pending = futures_util::FutureExt::now_or_never(futures_util::StreamExt::next(&mut events));
    assert!(
        !matches!(pending, Some(Some(relink::Event::Disconnected { .. }))),
        "{pending:?}"
    );
    assert_eq!(client.health().borrow().state, State::Ready);
    client.shutdown().await;
}
