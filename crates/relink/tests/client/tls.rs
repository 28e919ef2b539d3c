//! TLS the way production runs it, against real TLS redis-servers with a CA
//! and certificates made at test time: a private CA (file or inline PEM),
//! mutual TLS, a server name; every TLS failure told as a misconfiguration
//! with rustls's reason; and the outage story over TLS (kill and restart,
//! SIGSTOP, a blackhole and a reset through the fault proxy, CLIENT KILL)
//! with the same guarantees as plain TCP. (With the `tls-rustls` feature:
//! `cargo test -p relink --features tls-rustls --test client tls::`.)

use std::time::Duration;

use redis::AsyncCommands;
use relink::config::Config;
use relink::tls::TlsConfig;
use relink::{Client, ConnectCause, Error, State};
use relink_testkit::tls::Leaf;
use relink_testkit::{FaultProxy, RedisServer, TlsFiles, TlsServer};

use crate::{
    assert_applied_at_most_once, eventually, fast_config, incr_rounds, ready_client as ready,
    PATIENCE,
};

/// The client tests' fast config, with room for a TLS handshake on a busy
/// machine (half the connect timeout is the handshake's).
fn fast_tls(url: &str) -> Config {
    fast_config(url).with_connect_timeout(Duration::from_secs(2))
}

/// A TLS server with `files`' server certificate.
fn tls_server(files: &TlsFiles) -> RedisServer {
    RedisServer::builder().tls(TlsServer::new(files)).start()
}

/// The fast config for `url`, trusting `files`' CA.
fn trusting(files: &TlsFiles, url: &str) -> Config {
    fast_tls(url).with_tls(TlsConfig::new().with_ca_file(files.ca_cert()))
}

/// Waits (bounded) until the client's state satisfies `want`.
async fn wait_state(client: &Client, want: impl Fn(State) -> bool) {
    let mut health = client.health();
    tokio::time::timeout(PATIENCE, health.wait_for(|h| want(h.state)))
        .await
        .expect("state reached in time")
        .expect("health channel open");
}

/// `Client::connect` refuses: a TLS misconfiguration, and its evidence.
async fn tls_refusal(config: Config) -> String {
    match Client::connect(config).await {
        Err(Error::Misconfigured { failure }) => {
            assert_eq!(failure.cause, ConnectCause::Tls, "{failure}");
            failure.evidence.as_str().to_owned()
        }
        Ok(_) => panic!("connected, but should have been refused"),
        Err(other) => panic!("not a misconfiguration: {other}"),
    }
}

/// Whether the server counts `n` TLS connections of a client named `name`
/// (asked on its plain port).
fn tls_clients_named(server: &RedisServer, name: &str) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut server.connection())
        .unwrap();
    list.lines()
        .filter(|l| l.contains(&format!("name={name} ")))
        .filter(|l| l.contains(&format!("laddr=127.0.0.1:{} ", server.tls_port())))
        .count()
}

// ---- connecting -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_from_a_file_or_inline_pem() {
    let files = TlsFiles::generate();
    let server = tls_server(&files);
    let mut client = ready(trusting(&files, &server.tls_url()).with_client_name("by-file")).await;
    let () = client.set("k", "over tls").await.unwrap();
    let v: String = client.get("k").await.unwrap();
    assert_eq!(v, "over tls");
    assert_eq!(tls_clients_named(&server, "by-file"), 1);
    client.shutdown().await;

    let config = fast_tls(&server.tls_url())
        .with_client_name("inline")
        .with_tls(TlsConfig::new().with_ca_pem(files.ca_pem()));
    let mut client = ready(config).await;
    let v: String = client.get("k").await.unwrap();
    assert_eq!(v, "over tls");
    assert_eq!(tls_clients_named(&server, "inline"), 1);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() {
    let files = TlsFiles::generate();
    let server = RedisServer::builder()
        .tls(TlsServer::new(&files).require_client_cert(true))
        .start();
    let tls = TlsConfig::new()
        .with_ca_file(files.ca_cert())
        .with_client_cert_files(files.client_cert(), files.client_key());
    let mut client = ready(fast_tls(&server.tls_url()).with_tls(tls)).await;
    let n: i64 = client.incr("n", 1).await.unwrap();
    assert_eq!(n, 1);
    client.shutdown().await;

    // The same from inline PEM.
    let cert = std::fs::read_to_string(files.client_cert()).unwrap();
    let key = std::fs::read_to_string(files.client_key()).unwrap();
    let tls = TlsConfig::new()
        .with_ca_pem(files.ca_pem())
        .with_client_cert_pem(cert, key.clone());
    let config = fast_tls(&server.tls_url()).with_tls(tls);
    assert!(
        !format!("{config:?}").contains(key.trim()),
        "the key is never shown"
    );
    let mut client = ready(config).await;
    let n: i64 = client.incr("n", 1).await.unwrap();
    assert_eq!(n, 2);
    client.shutdown().await;

    // No client certificate: the server's refusal, told as TLS.
    let evidence = tls_refusal(trusting(&files, &server.tls_url())).await;
    assert!(
        evidence.to_ascii_lowercase().contains("certificate"),
        "{evidence}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_name_other_than_the_host() {
    let files = TlsFiles::generate();
    let (cert, key) = files.issue("internal", &Leaf::server(&["redis.internal"]));
    let server = RedisServer::builder()
        .tls(TlsServer::new(&files).with_cert(cert, key))
        .start();
    // Reached at 127.0.0.1, which the certificate does not name.
    let evidence = tls_refusal(trusting(&files, &server.tls_url())).await;
    assert!(
        evidence.contains("NotValidForName") || evidence.contains("not valid for name"),
        "{evidence}"
    );
    let tls = TlsConfig::new()
        .with_ca_file(files.ca_cert())
        .with_server_name("redis.internal");
    let mut client = ready(fast_tls(&server.tls_url()).with_tls(tls)).await;
    let () = client.set("k", "v").await.unwrap();
    client.shutdown().await;
}

// ---- TLS failures are misconfigurations ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_failures_are_misconfigurations_with_the_reason() {
    let files = TlsFiles::generate();
    let stranger = TlsFiles::generate_named("some other CA");
    let (expired_cert, expired_key) =
        files.issue("expired", &Leaf::server(&["127.0.0.1"]).expired());
    let server = tls_server(&files);
    let expired = RedisServer::builder()
        .tls(TlsServer::new(&files).with_cert(expired_cert, expired_key))
        .start();

    // A CA that did not sign the server's certificate.
    let evidence = tls_refusal(trusting(&stranger, &server.tls_url())).await;
    assert!(evidence.contains("UnknownIssuer"), "{evidence}");
    // The operating system's roots do not know a private CA either.
    let evidence = tls_refusal(fast_tls(&server.tls_url())).await;
    assert!(evidence.contains("UnknownIssuer"), "{evidence}");
    // An expired certificate.
    let evidence = tls_refusal(trusting(&files, &expired.tls_url())).await;
    assert!(evidence.contains("expired"), "{evidence}");
    // TLS spoken to a plain port.
    let plain = format!("rediss://127.0.0.1:{}/", server.port());
    let evidence = tls_refusal(trusting(&files, &plain)).await;
    assert!(evidence.contains("TLS handshake"), "{evidence}");

    // The events and health of a client that keeps trying say the same.
    let client = Client::new(trusting(&stranger, &server.tls_url())).unwrap();
    let mut health = client.health();
    let h = tokio::time::timeout(PATIENCE, health.wait_for(|h| h.misconfigured))
        .await
        .expect("misconfiguration noticed")
        .unwrap()
        .clone();
    assert_eq!(
        h.last_attempt_failure.map(|f| f.cause),
        Some(ConnectCause::Tls)
    );
    let mut conn = client.clone();
    let err = conn.get::<_, Option<String>>("k").await.unwrap_err();
    assert!(
        matches!(Error::from_redis(&err), Some(Error::Misconfigured { .. })),
        "fails at once, not queued: {err}"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_off_is_explicit_and_connects_to_anyone() {
    let stranger = TlsFiles::generate_named("nobody trusts this CA");
    let server = tls_server(&stranger);
    let tls = TlsConfig::new().with_danger_accept_invalid_certs(true);
    let mut client = ready(fast_tls(&server.tls_url()).with_tls(tls)).await;
    let () = client.set("k", "v").await.unwrap();
    client.shutdown().await;
    // The URL's `#insecure` is the same switch.
    let url = format!("{}#insecure", server.tls_url());
    let mut client = ready(fast_tls(&url)).await;
    let v: String = client.get("k").await.unwrap();
    assert_eq!(v, "v");
    client.shutdown().await;
}

// ---- outages over TLS ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_and_restart_over_tls() {
    let files = TlsFiles::generate();
    let mut server = RedisServer::builder()
        .appendonly(true)
        .tls(TlsServer::new(&files))
        .start();
    let mut client = ready(trusting(&files, &server.tls_url())).await;
    let () = client.set("before", "1").await.unwrap();
    server.kill();
    wait_state(&client, |s| s != State::Ready).await;
    server.restart();
    wait_state(&client, |s| s == State::Ready).await;
    let () = eventually(|| {
        let mut c = client.clone();
        async move { c.set::<_, _, ()>("after", "2").await }
    })
    .await;
    let before: String = client.get("before").await.unwrap();
    assert_eq!(before, "1");
    client.shutdown().await;
}

/// SIGSTOP: a command already waiting on the TLS connection fails when the
/// heartbeat declares it dead, not at its 60 s response timeout, and the
/// client is back once the server resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_tls_server_fails_in_flight_commands_promptly() {
    let files = TlsFiles::generate();
    let mut server = tls_server(&files);
    let config = trusting(&files, &server.tls_url()).with_response_timeout(Duration::from_secs(60));
    let client = ready(config).await;
    server.pause();
    let in_flight = tokio::spawn({
        let mut c = client.clone();
        async move { c.incr::<_, _, i64>("n", 1).await }
    });
    let err = tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("failed long before the 60 s response timeout")
        .unwrap()
        .expect_err("no reply from a stopped server");
    match Error::from_redis(&err) {
        Some(Error::OutcomeUnknown { kind, .. }) => {
            assert_ne!(*kind, relink::FailureKind::Timeout, "{err}");
        }
        other => panic!("expected an unknown outcome, got {other:?} ({err})"),
    }
    server.resume();
    wait_state(&client, |s| s == State::Ready).await;
    let mut c = client.clone();
    let () = eventually(|| {
        let mut c = c.clone();
        async move { c.set::<_, _, ()>("k", "v").await }
    })
    .await;
    let n: i64 = c.get("n").await.unwrap();
    assert!(n <= 1, "applied at most once: {n}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_and_reset_through_the_proxy_over_tls() {
    let files = TlsFiles::generate();
    let server = tls_server(&files);
    let proxy = FaultProxy::start(server.tls_addr());
    let url = format!("rediss://127.0.0.1:{}/", proxy.addr().port());
    let client = ready(trusting(&files, &url)).await;

    proxy.blackhole();
    wait_state(&client, |s| s != State::Ready).await;
    proxy.pass();
    wait_state(&client, |s| s == State::Ready).await;

    proxy.reset();
    wait_state(&client, |s| s != State::Ready).await;
    proxy.pass();
    wait_state(&client, |s| s == State::Ready).await;
    let () = eventually(|| {
        let mut c = client.clone();
        async move { c.set::<_, _, ()>("k", "v").await }
    })
    .await;
    client.shutdown().await;
}

/// An INCR loop while the server keeps killing the client's TLS
/// connections (CLIENT KILL) and the proxy swallows replies: every
/// acknowledged INCR is applied, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incr_through_killed_tls_connections_is_never_applied_twice() {
    let files = TlsFiles::generate();
    let server = tls_server(&files);
    let proxy = FaultProxy::start(server.tls_addr());
    let url = format!("rediss://127.0.0.1:{}/", proxy.addr().port());
    // Short waits: a swallowed reply is given up sooner, and while replies
    // are swallowed no handshake completes, so queued INCRs give up sooner.
    let config = trusting(&files, &url)
        .with_response_timeout(Duration::from_millis(300))
        .with_outage(relink::config::OutagePolicy::Queue {
            capacity: 16,
            max_wait: Duration::from_millis(500),
        });
    let mut client = ready(config).await;
    let mut admin = server.connection();

    let (acked, unknown) = incr_rounds(
        &mut client,
        |round| match round % 3 {
            0 => {
                crate::kill_other_clients(&mut admin);
            }
            1 => proxy.drop_replies(),
            _ => {}
        },
        || proxy.pass(),
    )
    .await;
    let counter: i64 = redis::cmd("GET").arg("counter").query(&mut admin).unwrap();
    assert_applied_at_most_once(counter, acked, unknown);
    // And the client is whole again.
    let () = eventually(|| {
        let mut c = client.clone();
        async move { c.set::<_, _, ()>("k", "v").await }
    })
    .await;
    client.shutdown().await;
}

// ---- settings as data ---------------------------------------------------------------

#[test]
fn tls_settings_from_toml_and_back() {
    let files = TlsFiles::generate();
    let text = format!(
        r#"
        url = "rediss://127.0.0.1:6380"
        [tls]
        ca_file = "{}"
        cert_file = "{}"
        key_file = "{}"
        server_name = "redis.internal"
        "#,
        files.ca_cert().display(),
        files.client_cert().display(),
        files.client_key().display()
    );
    let config: Config = toml::from_str(&text).unwrap();
    let tls = config.tls().unwrap();
    assert_eq!(tls.server_name(), Some("redis.internal"));
    assert!(!tls.danger_accept_invalid_certs());
    let back: Config = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);

    // An inline key is a secret: not in Debug, written only to its field.
    let key = std::fs::read_to_string(files.client_key()).unwrap();
    let cert = std::fs::read_to_string(files.client_cert()).unwrap();
    let config = Config::new("rediss://127.0.0.1:6380")
        .unwrap()
        .with_tls(TlsConfig::new().with_client_cert_pem(cert, key.clone()))
        .build()
        .unwrap();
    let shown = format!("{config:?}");
    assert!(
        !shown.contains(key.trim()) && shown.contains("***"),
        "{shown}"
    );
    let json = serde_json::to_string(&config).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
}

/// The error of a config that TOML text makes.
fn toml_error(text: &str) -> String {
    toml::from_str::<Config>(text).unwrap_err().to_string()
}

#[test]
fn bad_tls_settings_name_the_field() {
    let files = TlsFiles::generate();
    let other = TlsFiles::generate();
    let base = || Config::new("rediss://127.0.0.1:6380").unwrap();
    let field_of = |config: Config| match config.build() {
        Err(Error::Config { field, reason }) => format!("{field}: {reason}"),
        other => panic!("not a config error: {other:?}"),
    };

    let e = field_of(base().with_tls(TlsConfig::new().with_ca_file("/nonexistent/ca.pem")));
    assert!(
        e.starts_with("tls.ca_file: cannot read `/nonexistent/ca.pem`"),
        "{e}"
    );
    // A key is not a certificate.
    let e = field_of(base().with_tls(TlsConfig::new().with_ca_file(files.client_key())));
    assert!(
        e.starts_with("tls.ca_file: holds no PEM certificate"),
        "{e}"
    );
    let e = field_of(base().with_tls(TlsConfig::new().with_ca_pem("not pem at all")));
    assert!(e.starts_with("tls.ca_pem: holds no PEM certificate"), "{e}");
    // A certificate is not a key.
    let e = field_of(base().with_tls(
        TlsConfig::new().with_client_cert_files(files.client_cert(), files.client_cert()),
    ));
    assert!(
        e.starts_with("tls.key_file: holds no PEM private key"),
        "{e}"
    );
    // Someone else's key.
    let e = field_of(base().with_tls(
        TlsConfig::new().with_client_cert_files(files.client_cert(), other.client_key()),
    ));
    assert!(
        e.starts_with("tls.key_file: does not match the certificate of `tls.cert_file`"),
        "{e}"
    );
    // TLS settings on a plain URL.
    let e = field_of(
        Config::new("redis://127.0.0.1:6379")
            .unwrap()
            .with_tls(TlsConfig::new()),
    );
    assert!(e.starts_with("tls: applies to a TLS URL"), "{e}");

    let e = toml_error(
        r#"
        url = "rediss://127.0.0.1:6380"
        [tls]
        ca_file = "/a"
        ca_pem = "b"
        "#,
    );
    assert!(e.contains("tls.ca_pem") && e.contains("not both"), "{e}");
    let e = toml_error(
        r#"
        url = "rediss://127.0.0.1:6380"
        [tls]
        cert_file = "/a"
        "#,
    );
    assert!(e.contains("tls.key_file"), "{e}");
    // The sentinels' own TLS, named as such.
    let sentinel_tls = |line: &str| {
        toml_error(&format!(
            r#"
            url = "rediss://mymaster"
            [sentinel]
            service = "mymaster"
            nodes = ["127.0.0.1:26379"]
            [sentinel.tls]
            {line}
            "#
        ))
    };
    let e = sentinel_tls(r#"ca_file = "/nonexistent/ca.pem""#);
    assert!(e.contains("`sentinel.tls.ca_file`: cannot read"), "{e}");
    let e = sentinel_tls(r#"server_name = "sentinel.internal""#);
    assert!(
        e.contains("`sentinel.tls.server_name`: is not supported"),
        "{e}"
    );
    let e = toml_error(
        r#"
        url = "rediss://127.0.0.1:6380"
        [tls]
        key_pem = 5
        "#,
    );
    // (toml quotes the line itself; relink's own words never quote the value.)
    assert!(
        e.contains("invalid `tls.key_pem`: must be a string (value not shown)"),
        "{e}"
    );
}

// ---- Sentinel over TLS ---------------------------------------------------------------

/// A TLS-only deployment behind Sentinel: the sentinels are reached over
/// TLS, they name the master by its TLS port, relink connects to it with
/// the private CA, and follows a failover to the replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls_follows_a_failover() {
    use relink::config::SentinelConfig;
    use relink_testkit::sentinel::{SentinelTopology, SERVICE};

    let files = TlsFiles::generate();
    let topology = tokio::task::block_in_place(|| SentinelTopology::start_tls(&files));
    let old = topology.master_addr().expect("a master");
    let trust = || TlsConfig::new().with_ca_file(files.ca_cert());
    let config = fast_tls(&format!("rediss://{SERVICE}/"))
        .with_tls(trust())
        .with_sentinel(SentinelConfig::new(SERVICE, topology.sentinel_nodes()).with_tls(trust()));
    let mut client = ready(config).await;
    let () = client.set("before", "1").await.unwrap();

    let from = tokio::task::block_in_place(|| topology.failover());
    assert_eq!(from, old);
    let new = tokio::task::block_in_place(|| topology.wait_for_new_master(old, PATIENCE));
    // Writes reach the new master (the old one is a replica by now, or
    // about to be: a write there fails READONLY and the client moves).
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let _ = client.set::<_, _, ()>("after", "2").await;
        let on_new: Option<String> = redis::cmd("GET")
            .arg("after")
            .query(&mut topology.node(new).connection())
            .unwrap();
        if on_new.as_deref() == Some("2") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no write reached the new master {new} within {PATIENCE:?}\n{}",
            topology.log_tails(10)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before: String = client.get("before").await.unwrap();
    assert_eq!(before, "1", "replicated before the failover");
    client.shutdown().await;
}

/// Pub/Sub over TLS, on its own subscriber connection: RESP3 (a multiplexed
/// connection) and RESP2 (redis-rs's dedicated Pub/Sub connection), both
/// opened by relink over TLS with the private CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_over_tls_in_resp2_and_resp3() {
    use relink::config::Protocol;

    let files = TlsFiles::generate();
    let server = tls_server(&files);
    for protocol in [Protocol::Resp2, Protocol::Resp3] {
        let config = trusting(&files, &server.tls_url()).with_protocol(protocol);
        let client = ready(config).await;
        let mut news = client.subscribe(&["news"]).await.unwrap();
        crate::pubsub::publish_until_heard(&client, &mut news, "PUBLISH", "news", "hi").await;
        client.shutdown().await;
    }
}
