//! Connection state restored after a reconnect: AUTH (password and ACL user),
//! SELECT, CLIENT SETNAME (Pub/Sub subscriptions: `pubsub.rs`).

use redis::AsyncCommands;
use relink::State;
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
