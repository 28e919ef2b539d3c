//! Saying what is wrong: a failed connection attempt carries its cause and
//! the server's words, a misconfiguration (a wrong password, a peer that is
//! not Redis) is told apart from an outage and fails commands at once,
//! `Client::connect` fails fast with the cause, credentials change on a
//! live client, and errors say why relink closed a connection.

use std::time::Duration;

use redis::AsyncCommands;
use relink::{Client, ConnectCause, Error, Event, State};
use relink_testkit::{closed_port, Impostor, RedisServer};

use crate::{events_until, fast_config, ready_client, wait_state, PATIENCE};

/// The first `ConnectAttemptFailed` event.
async fn first_failed_attempt(
    events: &mut (impl futures_util::Stream<Item = Event> + Unpin),
) -> (relink::AttemptFailure, bool, Option<Duration>) {
    let seen = events_until(events, |e| matches!(e, Event::ConnectAttemptFailed { .. })).await;
    match seen.last() {
        Some(Event::ConnectAttemptFailed {
            failure,
            misconfigured,
            retry_in,
        }) => (*failure, *misconfigured, *retry_in),
        other => panic!("not a failed attempt: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_misconfiguration_until_fixed_live() {
    let server = RedisServer::builder().password("right").start();
    let url = format!("redis://:wrong@127.0.0.1:{}", server.port());
    // Fail fast: Client::connect returns the cause instead of a client.
    match Client::connect(fast_config(&url)).await {
        Err(Error::Misconfigured { failure }) => assert_eq!(failure.cause, ConnectCause::Auth),
        other => panic!("not Misconfigured: {other:?}"),
    }
    let client = Client::new(fast_config(&url)).unwrap();
    let mut events = client.events();

    // The event names the cause and carries the server's own words.
    let (failure, misconfigured, retry_in) = first_failed_attempt(&mut events).await;
    assert_eq!(failure.cause, ConnectCause::Auth);
    assert!(failure.evidence.as_str().contains("WRONGPASS"), "{failure}");
    assert!(
        !failure.evidence.as_str().contains("wrong"),
        "the password leaked: {failure}"
    );
    assert!(misconfigured);
    // Not the 20 ms of the ordinary backoff: the slow schedule (>= 500 ms).
    let retry_in = retry_in.expect("it keeps trying");
    assert!(retry_in >= Duration::from_millis(500), "{retry_in:?}");

    // Health tells it apart from a transient failure.
    let h = client.health().borrow().clone();
    assert!(h.misconfigured, "{h:?}");
    assert_eq!(
        h.last_attempt_failure.map(|f| f.cause),
        Some(ConnectCause::Auth)
    );

    // A command fails at once, naming the cause, instead of queueing.
    let mut conn = client.clone();
    let err = conn.get::<_, Option<String>>("k").await.unwrap_err();
    match Error::from_redis(&err) {
        Some(Error::Misconfigured { failure }) => assert_eq!(failure.cause, ConnectCause::Auth),
        other => panic!("not Misconfigured: {other:?} ({err})"),
    }
    let text = err.to_string();
    assert!(
        text.contains("authentication failed") && text.contains("WRONGPASS"),
        "{text}"
    );
    assert!(text.contains("not sent"), "{text}");
    // So does a blocking command, which runs on an exclusive connection.
    let err = conn
        .blpop::<_, Option<(String, String)>>("q", 5.0)
        .await
        .unwrap_err();
    assert!(
        matches!(Error::from_redis(&err), Some(Error::Misconfigured { .. })),
        "{err}"
    );
    // wait_ready says the same, at once.
    let waited = client.wait_ready(PATIENCE).await.unwrap_err();
    assert!(matches!(waited, Error::Misconfigured { .. }), "{waited}");

    // The fix, live: the next attempt goes out at once and succeeds.
    client.update_credentials(None, "right").await.unwrap();
    client.wait_ready(PATIENCE).await.unwrap();
    let h = client.health().borrow().clone();
    assert!(
        !h.misconfigured && h.last_attempt_failure.is_none(),
        "{h:?}"
    );
    let () = conn.set("k", "v").await.unwrap();
    let v: String = conn.get("k").await.unwrap();
    assert_eq!(v, "v");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_rotation_needs_no_restart() {
    let server = RedisServer::builder()
        .acl_user("alice on >one ~* &* +@all")
        .start();
    let url = format!("redis://alice:one@127.0.0.1:{}", server.port());
    let client = ready_client(fast_config(&url)).await;
    let mut conn = client.clone();
    let mut admin = server.connection();

    // A wrong new password is refused on the live connection: nothing changes.
    let err = client
        .update_credentials(Some("alice"), "nope")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("WRONGPASS"), "{err}");
    let () = conn.set("a", 1).await.unwrap();

    // The rotation: the server accepts both, the client moves to the new
    // one, the old one is removed, and every connection is cut.
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("alice")
        .arg(">two")
        .query(&mut admin)
        .unwrap();
    client
        .update_credentials(Some("alice"), "two")
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("alice")
        .arg("<one")
        .query(&mut admin)
        .unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg("alice")
        .query(&mut admin)
        .unwrap();
    assert!(killed >= 1);
    // The reconnect logs in with the new password.
    let v: i64 = crate::eventually(|| {
        let mut conn = conn.clone();
        async move { conn.incr::<_, _, i64>("a", 1).await }
    })
    .await;
    assert!(v >= 2);
    let who: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(who, "alice");
    assert!(!client.health().borrow().misconfigured);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_on_the_port_is_not_redis() {
    let http = Impostor::http();
    // Fail fast: the cause of the first attempt, with what answered.
    let err = Client::connect(fast_config(&http.url())).await.unwrap_err();
    let Error::Misconfigured { failure } = &err else {
        panic!("not Misconfigured: {err}");
    };
    assert_eq!(failure.cause, ConnectCause::NotRedis);
    assert!(
        failure.evidence.as_str().starts_with("HTTP/1.1 400"),
        "{failure}"
    );
    assert!(
        err.to_string().contains("not a Redis server: HTTP/1.1 400"),
        "{err}"
    );

    // In the background, the same cause in the events.
    let client = Client::new(fast_config(&http.url())).unwrap();
    let mut events = client.events();
    let (failure, misconfigured, _) = first_failed_attempt(&mut events).await;
    assert_eq!(failure.cause, ConnectCause::NotRedis);
    assert!(misconfigured);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_is_named_and_waited_for() {
    let server = RedisServer::builder().args(["--maxclients", "1"]).start();
    let held = server.connection();
    // Client::connect waits a full server out until its deadline, then names it.
    let short = fast_config(&server.url()).with_deadline(Some(Duration::from_secs(3)));
    match Client::connect(short).await {
        Err(Error::NotReady { last_attempt, .. }) => assert_eq!(
            last_attempt.map(|f| f.cause),
            Some(ConnectCause::ServerFull)
        ),
        other => panic!("not NotReady: {other:?}"),
    }
    let client = Client::new(fast_config(&server.url())).unwrap();
    let mut events = client.events();
    let (failure, misconfigured, retry_in) = first_failed_attempt(&mut events).await;
    assert_eq!(failure.cause, ConnectCause::ServerFull, "{failure}");
    assert!(
        failure
            .evidence
            .as_str()
            .contains("max number of clients reached"),
        "{failure}"
    );
    // Not a misconfiguration: it passes when a client leaves.
    assert!(!misconfigured);
    assert!(retry_in.is_some());
    drop(held);
    client.wait_ready(PATIENCE).await.unwrap();
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_port_is_an_outage_named_as_such() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let config = fast_config(&url).with_deadline(Some(Duration::from_secs(2)));
    // Client::connect keeps trying an outage until the deadline, then names
    // the last cause.
    let err = Client::connect(config.clone()).await.unwrap_err();
    match &err {
        Error::NotReady { last_attempt, .. } => {
            assert_eq!(
                last_attempt.as_ref().map(|f| f.cause),
                Some(ConnectCause::Refused)
            )
        }
        other => panic!("not NotReady: {other}"),
    }
    assert!(
        err.to_string().contains("last attempt: connection refused"),
        "{err}"
    );

    // A queued command's error names it too.
    let client = Client::new(config).unwrap();
    let mut events = client.events();
    let (failure, misconfigured, _) = first_failed_attempt(&mut events).await;
    assert_eq!(failure.cause, ConnectCause::Refused);
    assert!(!misconfigured);
    let mut conn = client.clone();
    let err = conn.get::<_, Option<String>>("k").await.unwrap_err();
    assert!(
        err.to_string().contains("last attempt: connection refused"),
        "{err}"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_again_never_blames_good_credentials() {
    use relink::diagnose::explain;
    let server = RedisServer::builder().password("right").start();
    let info = |password: &str| {
        fast_config(&format!("redis://:{password}@127.0.0.1:{}", server.port())).connection_info()
    };
    // A connection dropped during the handshake, the server fine: asking
    // again logs in (a bare PING would get NOAUTH and blame the password).
    let reset = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    let d = explain(&info("right"), &reset, PATIENCE).await;
    assert!(!d.cause.is_misconfiguration(), "{d:?}");
    // redis-rs under RESP2 reports any error reply to AUTH (-BUSY, a full
    // server) as an authentication failure; the same credentials logging
    // in on a second connection clear them.
    let auth = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "failed"));
    let d = explain(&info("right"), &auth, PATIENCE).await;
    assert!(!d.cause.is_misconfiguration(), "{d:?}");
    // A wrong password is one, with the server's words.
    let d = explain(&info("wrong"), &auth, PATIENCE).await;
    assert_eq!(d.cause, ConnectCause::Auth);
    assert!(d.evidence.contains("WRONGPASS"), "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connect_returns_a_ready_client() {
    let server = RedisServer::start();
    let client = Client::connect(fast_config(&server.url())).await.unwrap();
    assert_eq!(client.health().borrow().state, State::Ready);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_relink_gave_up_says_why() {
    let mut server = RedisServer::start();
    let client = ready_client(fast_config(&server.url())).await;
    let mut conn = client.clone();
    let () = conn.set("n", 1).await.unwrap();
    server.pause();
    // A write in flight when the heartbeat gives the connection up: the
    // error says why relink closed it, not the socket error that caused.
    let err = conn.incr::<_, _, i64>("n", 1).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("heartbeat"), "{text}");
    assert!(text.contains("may have been applied"), "{text}");
    assert!(!text.contains("broken pipe"), "{text}");
    // A read speaks of the read, not of anything applied.
    let mut fast = client.with_deadline(Some(Duration::from_millis(300)));
    let err = fast.get::<_, Option<i64>>("n").await.unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("applied"), "{text}");
    server.resume();
    wait_state(&client, State::Ready).await;
    client.shutdown().await;
}
