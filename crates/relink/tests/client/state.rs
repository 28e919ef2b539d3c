//! Connection state restored after a reconnect: AUTH (password and ACL user),
//! SELECT, CLIENT SETNAME, and Pub/Sub subscriptions.

use futures_util::StreamExt;
use redis::AsyncCommands;
use relink::{PubSubItem, State};
use relink_testkit::RedisServer;

use crate::{eventually, fast_config, ready_client, wait_state, PATIENCE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_database_and_name_survive_a_restart() {
    let mut server = RedisServer::builder()
        .password("s3cret")
        .appendonly(true)
        .start();
    let url = format!("redis://127.0.0.1:{}", server.port());
    let config = fast_config(&url)
        .with_password("s3cret")
        .with_database(3)
        .with_client_name("billing");
    let mut client = ready_client(config).await;
    let _: () = client.set("k", "in-db-3").await.unwrap();

    server.kill();
    server.restart();
    wait_state(&client, State::Ready).await;
    let value: Option<String> = eventually(|| {
        let mut c = client.clone();
        async move { c.get::<_, Option<String>>("k").await }
    })
    .await;
    assert_eq!(
        value.as_deref(),
        Some("in-db-3"),
        "still SELECTed into db 3"
    );
    let name: Option<String> = redis::cmd("CLIENT")
        .arg("GETNAME")
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("billing"));
    // And db 0 does not have it.
    let mut direct = server.connection();
    let in_db0: Option<String> = redis::cmd("GET").arg("k").query(&mut direct).unwrap();
    assert_eq!(in_db0, None);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_is_authenticated_again_after_a_restart() {
    let mut server = RedisServer::builder()
        .acl_user("alice on >wonderland ~* &* +@all")
        .start();
    let url = format!("redis://alice:wonderland@127.0.0.1:{}", server.port());
    let mut client = ready_client(fast_config(&url)).await;
    let who: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut client)
        .await
        .unwrap();
    assert_eq!(who, "alice");
    server.kill();
    server.restart();
    wait_state(&client, State::Ready).await;
    let who: String = eventually(|| {
        let mut c = client.clone();
        async move {
            redis::cmd("ACL")
                .arg("WHOAMI")
                .query_async::<String>(&mut c)
                .await
        }
    })
    .await;
    assert_eq!(who, "alice");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_as_an_auth_failure() {
    let server = RedisServer::builder().password("right").start();
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let client = relink::Client::new(fast_config(&url)).unwrap();
    let mut health = client.health();
    let h = tokio::time::timeout(PATIENCE, health.wait_for(|h| h.last_failure.is_some()))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(h.last_failure, Some(relink::FailureKind::Auth));
    assert_ne!(h.state, State::Ready);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_survive_a_restart_with_a_gap_marker() {
    let mut server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let mut sub = client.subscribe(&["news"]).await.unwrap();
    let mut psub = client.psubscribe(&["alerts.*"]).await.unwrap();
    let mut publisher = client.clone();

    let _: i64 = publisher.publish("news", "one").await.unwrap();
    let _: i64 = publisher.publish("alerts.disk", "full").await.unwrap();
    let first = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&first, PubSubItem::Message { channel, payload, .. } if channel == "news" && payload == b"one")
    );
    let alert = tokio::time::timeout(PATIENCE, psub.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&alert, PubSubItem::Message { pattern: Some(p), payload, .. } if p == "alerts.*" && payload == b"full")
    );

    server.kill();
    server.restart();
    // The marker comes first after the reconnect.
    let marker = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(marker, PubSubItem::Restored { .. }), "{marker:?}");

    // Publish until one arrives (the first publishes may race the restore).
    let received = eventually(|| {
        let mut p = publisher.clone();
        async move {
            let n = p.publish::<_, _, i64>("news", "two").await?;
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
    assert!(received > 0);
    let next = tokio::time::timeout(PATIENCE, sub.next())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&next, PubSubItem::Message { payload, .. } if payload == b"two"),
        "{next:?}"
    );
    client.shutdown().await;
}
