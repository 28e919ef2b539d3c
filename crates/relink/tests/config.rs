//! `relink::Config` as a user meets it: URLs, overrides, defaults, TOML and
//! JSON, and the errors that say what is wrong without leaking a password.

use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionAddr, ProtocolVersion};
use relink::config::{Config, OutagePolicy, Protocol, RetryPolicy};
use relink::Error;
use relink_core::backoff::{BackoffPolicy, Jitter, Strategy};
use relink_core::budget::RetryBudgetConfig;
use relink_core::supervisor::HeartbeatConfig;

/// The field a config error names; panics on any other error.
fn field_of(e: &Error) -> &str {
    match e {
        Error::Config { field, .. } => field,
        other => panic!("expected a config error, got {other}"),
    }
}

fn toml_err(text: &str) -> String {
    toml::from_str::<Config>(text)
        .expect_err("config should be rejected")
        .to_string()
}

fn json_err(text: &str) -> String {
    serde_json::from_str::<Config>(text)
        .expect_err("config should be rejected")
        .to_string()
}

// ---- URL forms ------------------------------------------------------------------

#[test]
fn tcp_url_with_user_password_and_db() {
    let config = Config::new("redis://alice:s3cret@127.0.0.1:6380/4").unwrap();
    let info = config.connection_info();
    assert_eq!(info.addr(), &ConnectionAddr::Tcp("127.0.0.1".into(), 6380));
    assert_eq!(info.redis_settings().username(), Some("alice"));
    assert_eq!(info.redis_settings().password(), Some("s3cret"));
    assert_eq!(info.redis_settings().db(), 4);
    assert_eq!(config.database(), 4);
    assert_eq!(config.username(), Some("alice"));
}

#[test]
fn port_defaults_to_6379_and_db_to_0() {
    let config = Config::new("redis://cache.internal").unwrap();
    let info = config.connection_info();
    assert_eq!(
        info.addr(),
        &ConnectionAddr::Tcp("cache.internal".into(), 6379)
    );
    assert_eq!(config.database(), 0);
    assert_eq!(info.redis_settings().password(), None);
}

#[test]
fn ipv6_loopback_is_a_bare_address() {
    let config = Config::new("redis://[::1]:6380").unwrap();
    assert_eq!(
        config.connection_info().addr(),
        &ConnectionAddr::Tcp("::1".into(), 6380)
    );
}

#[test]
fn unix_socket_urls() {
    let config = Config::new("redis+unix:///run/redis/redis.sock?db=3").unwrap();
    assert_eq!(
        config.connection_info().addr(),
        &ConnectionAddr::Unix(PathBuf::from("/run/redis/redis.sock"))
    );
    assert_eq!(config.database(), 3);
    let config = Config::new("unix:///tmp/redis.sock").unwrap();
    assert_eq!(
        config.connection_info().addr(),
        &ConnectionAddr::Unix(PathBuf::from("/tmp/redis.sock"))
    );
}

/// A TLS URL in a build without TLS is its own error (so that the C and
/// Python bindings can word it for their users), naming the scheme; for a
/// Rust user it names the feature to enable.
#[cfg(not(feature = "tls-rustls"))]
#[test]
fn rediss_without_the_tls_feature_says_which_feature_to_enable() {
    for scheme in ["rediss", "valkeys"] {
        let e = Config::new(&format!("{scheme}://:pw@127.0.0.1:6380")).unwrap_err();
        assert!(
            matches!(&e, Error::TlsUnavailable { scheme: s } if s == scheme),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains(&format!("`{scheme}://` needs TLS")), "{text}");
        assert!(text.contains("tls-rustls"), "{text}");
    }
}

#[cfg(feature = "tls-rustls")]
#[test]
fn rediss_with_the_tls_feature_is_a_tls_address() {
    let config = Config::new("rediss://127.0.0.1:6380").unwrap();
    assert!(matches!(
        config.connection_info().addr(),
        ConnectionAddr::TcpTls {
            port: 6380,
            insecure: false,
            ..
        }
    ));
}

#[test]
fn malformed_urls_are_rejected_naming_url() {
    for url in [
        "",
        "http://x",
        "127.0.0.1:6379",
        "redis://127.0.0.1:99999",
        "redis://127.0.0.1:6379/notadb",
        "redis://127.0.0.1:6379/?protocol=resp9",
        "redis://0.0.0.0:6379",
        "redis://",
    ] {
        let e = Config::new(url).expect_err(url);
        assert_eq!(field_of(&e), "url", "{url:?}: {e}");
        assert!(e.to_string().contains("url"), "{url:?}: {e}");
    }
    let e = Config::new("http://x").unwrap_err();
    assert!(
        e.to_string().contains("redis://"),
        "says what is expected: {e}"
    );
}

#[test]
fn a_negative_database_is_rejected() {
    let e = Config::new("redis://127.0.0.1/-1").unwrap_err();
    assert_eq!(field_of(&e), "url");
    let e = Config::new("redis://127.0.0.1")
        .unwrap()
        .with_database(-2)
        .build()
        .unwrap_err();
    assert_eq!(field_of(&e), "database");
}

// ---- overrides and protocol ---------------------------------------------------------

#[test]
fn explicit_fields_win_over_the_url() {
    let config = Config::new("redis://alice:from-url@127.0.0.1/1")
        .unwrap()
        .with_username("bob")
        .with_password("from-field")
        .with_database(7)
        .build()
        .unwrap();
    let info = config.connection_info();
    assert_eq!(info.redis_settings().username(), Some("bob"));
    assert_eq!(info.redis_settings().password(), Some("from-field"));
    assert_eq!(info.redis_settings().db(), 7);
    assert_eq!(config.database(), 7);
    assert_eq!(config.username(), Some("bob"));

    // A password alone keeps the URL's username.
    let config = Config::new("redis://alice@127.0.0.1")
        .unwrap()
        .with_password("pw");
    let info = config.connection_info();
    assert_eq!(info.redis_settings().username(), Some("alice"));
    assert_eq!(info.redis_settings().password(), Some("pw"));
}

#[test]
fn protocol_is_resp3_unless_the_url_or_the_field_says_otherwise() {
    let config = Config::new("redis://127.0.0.1").unwrap();
    assert_eq!(config.protocol(), Protocol::Resp3);
    assert_eq!(
        config.connection_info().redis_settings().protocol(),
        ProtocolVersion::RESP3
    );

    let config = Config::new("redis://127.0.0.1/?protocol=resp2").unwrap();
    assert_eq!(config.protocol(), Protocol::Resp2);
    assert_eq!(
        config.connection_info().redis_settings().protocol(),
        ProtocolVersion::RESP2
    );

    let config = config.with_protocol(Protocol::Resp3);
    assert_eq!(
        config.connection_info().redis_settings().protocol(),
        ProtocolVersion::RESP3
    );
}

#[test]
fn tcp_nodelay_is_off_on_loopback_and_on_across_a_network_unless_set() {
    for (url, nodelay) in [
        ("redis://127.0.0.1", false),
        ("redis://127.0.0.7:6380", false),
        ("redis://localhost", false),
        ("redis://[::1]:6379", false),
        ("redis://10.0.0.5", true),
        ("redis://redis.example.com", true),
        ("redis://[2001:db8::1]:6379", true),
    ] {
        let config = Config::new(url).unwrap();
        assert_eq!(config.tcp_nodelay_setting(), None, "{url}");
        assert_eq!(config.tcp_nodelay(), nodelay, "{url}");
        assert_eq!(
            config.connection_info().tcp_settings().nodelay(),
            nodelay,
            "{url}"
        );
        // Set, it is what it says wherever the server is.
        for set in [false, true] {
            let config = config.clone().with_tcp_nodelay(set);
            assert_eq!(config.tcp_nodelay(), set, "{url}");
            assert_eq!(config.connection_info().tcp_settings().nodelay(), set);
        }
    }
    // With Sentinel, the sentinels' hosts tell (the URL's host is not used).
    let sentinels = |nodes: &[&str]| {
        Config::new("redis://10.0.0.5")
            .unwrap()
            .with_sentinel(relink::config::SentinelConfig::new(
                "mymaster",
                nodes.to_vec(),
            ))
            .tcp_nodelay()
    };
    assert!(!sentinels(&["127.0.0.1:26379", "[::1]:26380", "localhost"]));
    assert!(sentinels(&["127.0.0.1:26379", "10.0.0.6:26379"]));
    let from_toml: Config =
        toml::from_str("url = \"redis://127.0.0.1\"\ntcp_nodelay = true").unwrap();
    assert!(from_toml.tcp_nodelay());
    let text = toml::to_string(&from_toml).unwrap();
    assert!(text.contains("tcp_nodelay = true"), "{text}");
    // Left to the target, it is left out.
    let auto: Config = toml::from_str("url = \"redis://127.0.0.1\"").unwrap();
    let text = toml::to_string(&auto).unwrap();
    assert!(!text.contains("tcp_nodelay"), "{text}");
}

#[test]
fn tcp_keepalive_reaches_the_socket_settings() {
    let config = Config::new("redis://127.0.0.1").unwrap();
    let info = config.connection_info();
    assert!(info.tcp_settings().keepalive().is_some());
    assert!(!info.tcp_settings().nodelay());

    let off = config.with_tcp_keepalive(None).build().unwrap();
    assert!(off.connection_info().tcp_settings().keepalive().is_none());

    for bad in [
        Duration::ZERO,
        Duration::from_millis(1500),
        Duration::from_secs(40_000),
    ] {
        let e = Config::new("redis://127.0.0.1")
            .unwrap()
            .with_tcp_keepalive(Some(bad))
            .build()
            .unwrap_err();
        assert_eq!(field_of(&e), "tcp_keepalive", "{bad:?}");
    }
}

// ---- defaults ---------------------------------------------------------------------

#[test]
fn defaults_keep_the_connection_alive() {
    let config = Config::new("redis://127.0.0.1").unwrap();
    // A bounded backlog, not fail-fast.
    assert_eq!(
        config.outage(),
        OutagePolicy::Queue {
            capacity: 1024,
            max_wait: Duration::from_secs(5)
        }
    );
    // Heartbeat on: a hung server is noticed within 2s of its last reply.
    let sup = config.supervisor_config();
    assert_eq!(sup.heartbeat, HeartbeatConfig::default());
    assert_eq!(sup.heartbeat.interval, Duration::from_secs(1));
    assert_eq!(sup.heartbeat.detection_bound(), Duration::from_secs(2));
    // Reconnect with jittered exponential backoff, no give-up.
    assert_eq!(sup.backoff, BackoffPolicy::default());
    assert_eq!(sup.backoff.jitter, Jitter::Equal);
    assert_eq!(sup.backoff.max_attempts, None);
    assert_eq!(sup.connect_timeout, Duration::from_secs(2));
    assert_eq!(sup.backoff_reset_after, Duration::from_secs(10));
    // TCP keepalive on.
    assert_eq!(config.tcp_keepalive(), Some(Duration::from_secs(30)));
    assert_eq!(config.response_timeout(), Duration::from_secs(3));
    assert_eq!(config.retry().max_retries, 3);
    assert_eq!(config.retry().budget, RetryBudgetConfig::default());
    assert_eq!(config.protocol(), Protocol::Resp3);
    assert_eq!(config.client_name(), None);
    assert_eq!(config.seed(), None);

    // The smallest TOML config is the same config.
    let parsed: Config = toml::from_str(r#"url = "redis://127.0.0.1""#).unwrap();
    assert_eq!(parsed, config);
}

// ---- serde --------------------------------------------------------------------------

fn customised() -> Config {
    Config::new("redis://alice@127.0.0.1:6380/2")
        .unwrap()
        .with_password("s3cret")
        .with_client_name("billing")
        .with_protocol(Protocol::Resp2)
        .with_backoff(
            BackoffPolicy::default()
                .strategy(Strategy::Linear {
                    step: Duration::from_millis(250),
                })
                .initial_delay(Duration::from_millis(50))
                .max_delay(Duration::from_secs(3))
                .jitter(Jitter::Proportional { factor: 0.3 })
                .max_elapsed(Some(Duration::from_secs(90))),
        )
        .with_heartbeat(HeartbeatConfig {
            interval: Duration::from_millis(1500),
            timeout: Duration::from_millis(750),
            misses_allowed: 2,
        })
        .with_connect_timeout(Duration::from_millis(800))
        .with_backoff_reset_after(Duration::from_secs(30))
        .with_response_timeout(Duration::from_millis(2500))
        .with_outage(OutagePolicy::FailFast)
        .with_retry(
            RetryPolicy::default()
                .max_retries(0)
                .budget(RetryBudgetConfig {
                    max_tokens: 20,
                    token_ratio: 0.5,
                }),
        )
        .with_tcp_keepalive(None)
        .with_seed(42)
        .build()
        .unwrap()
}

#[test]
fn toml_round_trip() {
    for config in [customised(), Config::new("redis://127.0.0.1").unwrap()] {
        let text = toml::to_string(&config).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, config, "{text}");
    }
    let text = toml::to_string(&customised()).unwrap();
    assert!(text.contains("policy = \"fail_fast\""), "{text}");
    assert!(text.contains("tcp_keepalive = false"), "{text}");
    assert!(text.contains("interval = \"1500ms\""), "{text}");
}

#[test]
fn json_round_trip() {
    let queue = customised().with_outage(OutagePolicy::Queue {
        capacity: 10,
        max_wait: Duration::from_millis(300),
    });
    for config in [
        customised(),
        queue,
        Config::new("redis://127.0.0.1").unwrap(),
    ] {
        let text = serde_json::to_string(&config).unwrap();
        let back: Config = serde_json::from_str(&text).unwrap();
        assert_eq!(back, config, "{text}");
    }
    let v = serde_json::to_value(customised()).unwrap();
    assert_eq!(v["outage"], serde_json::json!({ "policy": "fail_fast" }));
    assert_eq!(v["response_timeout"], "2500ms");
    // JSON may also write `null` for "keepalive off".
    let config: Config =
        serde_json::from_str(r#"{"url": "redis://127.0.0.1", "tcp_keepalive": null}"#).unwrap();
    assert_eq!(config.tcp_keepalive(), None);
}

#[test]
fn a_password_in_the_url_is_serialized_only_in_the_password_field() {
    let config = Config::new("redis://alice:hunter2@127.0.0.1:6379/1").unwrap();
    let text = toml::to_string(&config).unwrap();
    assert_eq!(text.matches("hunter2").count(), 1, "{text}");
    assert!(text.contains("password = \"hunter2\""), "{text}");
    assert!(
        text.contains("url = \"redis://alice@127.0.0.1:6379/1\""),
        "{text}"
    );
    let back: Config = toml::from_str(&text).unwrap();
    let (a, b) = (config.connection_info(), back.connection_info());
    assert_eq!(a.addr(), b.addr());
    assert_eq!(a.redis_settings().password(), b.redis_settings().password());
    assert_eq!(a.redis_settings().username(), b.redis_settings().username());
    assert_eq!(a.redis_settings().db(), b.redis_settings().db());
}

#[test]
fn outage_policy_forms() {
    let parse = |t: &str| toml::from_str::<Config>(&format!("url = \"redis://h\"\n{t}"));
    let c = parse("[outage]\npolicy = \"fail_fast\"").unwrap();
    assert_eq!(c.outage(), OutagePolicy::FailFast);
    // Missing fields take the defaults; a missing policy is "queue".
    let c = parse("[outage]\ncapacity = 8").unwrap();
    assert_eq!(
        c.outage(),
        OutagePolicy::Queue {
            capacity: 8,
            max_wait: Duration::from_secs(5)
        }
    );
    let e = parse("[outage]\npolicy = \"fail_fast\"\ncapacity = 8")
        .unwrap_err()
        .to_string();
    assert!(e.contains("outage.capacity"), "{e}");
    let e = parse("[outage]\npolicy = \"drop\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("drop") && e.contains("fail_fast"), "{e}");
}

// ---- rejected input -------------------------------------------------------------------

#[test]
fn zero_durations_are_rejected_by_name() {
    let base = || Config::new("redis://127.0.0.1").unwrap();
    let hb = |interval, timeout| HeartbeatConfig {
        interval,
        timeout,
        misses_allowed: 0,
    };
    let one = Duration::from_secs(1);
    let cases = [
        (
            base().with_heartbeat(hb(Duration::ZERO, one)),
            "heartbeat.interval",
        ),
        (
            base().with_heartbeat(hb(one, Duration::ZERO)),
            "heartbeat.timeout",
        ),
        (
            base().with_connect_timeout(Duration::ZERO),
            "connect_timeout",
        ),
        (
            base().with_response_timeout(Duration::ZERO),
            "response_timeout",
        ),
        (
            base().with_outage(OutagePolicy::Queue {
                capacity: 1,
                max_wait: Duration::ZERO,
            }),
            "outage.max_wait",
        ),
    ];
    for (config, field) in cases {
        let e = config.build().unwrap_err();
        assert_eq!(field_of(&e), field, "{e}");
    }

    let e = toml_err("url = \"redis://h\"\n[heartbeat]\ninterval = \"0s\"");
    assert!(e.contains("heartbeat.interval"), "{e}");
}

#[test]
fn absurdly_long_durations_are_rejected() {
    let e = Config::new("redis://127.0.0.1")
        .unwrap()
        .with_response_timeout(Duration::from_secs(400 * 24 * 3600))
        .build()
        .unwrap_err();
    assert_eq!(field_of(&e), "response_timeout");
}

#[test]
fn negative_and_unitless_durations_name_the_field() {
    let e = toml_err("url = \"redis://h\"\n[heartbeat]\ninterval = \"-1s\"");
    assert!(
        e.contains("heartbeat.interval") && e.contains("negative"),
        "{e}"
    );
    let e = json_err(r#"{"url": "redis://h", "heartbeat": {"timeout": "-1s"}}"#);
    assert!(
        e.contains("heartbeat.timeout") && e.contains("negative"),
        "{e}"
    );
    let e = json_err(r#"{"url": "redis://h", "response_timeout": "5 parsecs"}"#);
    assert!(e.contains("response_timeout") && e.contains("unit"), "{e}");
    let e = json_err(r#"{"url": "redis://h", "outage": {"max_wait": "5parsecs"}}"#);
    assert!(
        e.contains("outage.max_wait") && e.contains("parsecs"),
        "{e}"
    );
    let e = json_err(r#"{"url": "redis://h", "connect_timeout": 5}"#);
    assert!(e.contains("connect_timeout"), "{e}");
    let e = json_err(r#"{"url": "redis://h", "tcp_keepalive": true}"#);
    assert!(e.contains("tcp_keepalive"), "{e}");
    let e = toml_err("url = \"redis://h\"\ntcp_keepalive = \"500ms\"");
    assert!(e.contains("tcp_keepalive"), "{e}");
    let e = toml_err("url = \"redis://h\"\n[backoff]\ninitial_delay = \"-1s\"");
    assert!(e.contains("backoff") && e.contains("initial_delay"), "{e}");
    let e =
        toml_err("url = \"redis://h\"\n[backoff]\ninitial_delay = \"1s\"\nmax_delay = \"10ms\"");
    assert!(e.contains("backoff") && e.contains("max_delay"), "{e}");
}

#[test]
fn unknown_fields_are_named() {
    let e = toml_err("url = \"redis://h\"\nresponse_timeuot = \"1s\"");
    assert!(e.contains("response_timeuot"), "{e}");
    let e = toml_err("url = \"redis://h\"\n[heartbeat]\nintervall = \"1s\"");
    assert!(e.contains("intervall"), "{e}");
    let e = toml_err("url = \"redis://h\"\n[outage]\ncapacty = 3");
    assert!(e.contains("capacty"), "{e}");
    let e = toml_err("url = \"redis://h\"\n[retry]\nretries = 3");
    assert!(e.contains("retries"), "{e}");
    let e = toml_err("url = \"redis://h\"\n[retry.budget]\ntokens = 3");
    assert!(e.contains("tokens"), "{e}");
    let e = json_err(r#"{"url": "redis://h", "backoff": {"colour": "red"}}"#);
    assert!(e.contains("colour"), "{e}");
    let e = toml_err("client_name = \"x\"");
    assert!(e.contains("`url`: missing"), "{e}");
}

#[test]
fn out_of_range_numbers_are_named() {
    let e = Config::new("redis://h")
        .unwrap()
        .with_outage(OutagePolicy::Queue {
            capacity: 0,
            max_wait: Duration::from_secs(1),
        })
        .build()
        .unwrap_err();
    assert_eq!(field_of(&e), "outage.capacity");
    for t in ["capacity = 0", "capacity = -1", "capacity = 99999999"] {
        let e = toml_err(&format!("url = \"redis://h\"\n[outage]\n{t}"));
        assert!(e.contains("outage.capacity"), "{t}: {e}");
    }

    let e = Config::new("redis://h")
        .unwrap()
        .with_retry(RetryPolicy::default().max_retries(101))
        .build()
        .unwrap_err();
    assert_eq!(field_of(&e), "retry.max_retries");
    for t in ["max_retries = -1", "max_retries = 101"] {
        let e = toml_err(&format!("url = \"redis://h\"\n[retry]\n{t}"));
        assert!(e.contains("retry.max_retries"), "{t}: {e}");
    }
    let e = toml_err("url = \"redis://h\"\n[retry.budget]\nmax_tokens = 0");
    assert!(e.contains("retry.budget.max_tokens"), "{e}");
}

#[test]
fn client_names_with_spaces_are_rejected() {
    for name in ["billing worker", "line\nbreak", ""] {
        let e = Config::new("redis://h")
            .unwrap()
            .with_client_name(name)
            .build()
            .unwrap_err();
        assert_eq!(field_of(&e), "client_name", "{name:?}");
    }
    let e = toml_err("url = \"redis://h\"\nclient_name = \"two words\"");
    assert!(e.contains("client_name"), "{e}");
}

#[test]
fn bad_urls_in_toml_name_the_url() {
    let e = toml_err("url = \"http://x\"");
    assert!(e.contains("`url`"), "{e}");
}

// ---- secrets ------------------------------------------------------------------------

#[test]
fn debug_and_redacted_url_hide_the_password() {
    let config = Config::new("redis://alice:hunter2@127.0.0.1:6379/1")
        .unwrap()
        .with_password("correct-horse");
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("correct-horse"),
        "{debug}"
    );
    assert!(debug.contains("***"), "{debug}");
    assert_eq!(config.redacted_url(), "redis://alice:***@127.0.0.1:6379/1");
    let pretty = format!("{config:#?}");
    assert!(!pretty.contains("hunter2"), "{pretty}");

    let unix = Config::new("redis+unix:///tmp/r.sock?db=1&pass=hunter2").unwrap();
    assert!(
        !unix.redacted_url().contains("hunter2"),
        "{}",
        unix.redacted_url()
    );
    assert!(!format!("{unix:?}").contains("hunter2"));

    let plain = Config::new("redis://127.0.0.1:6379").unwrap();
    assert_eq!(plain.redacted_url(), "redis://127.0.0.1:6379");
}

#[test]
fn errors_never_echo_the_password() {
    let e = Config::new("redis://:hunter2@127.0.0.1:notaport").unwrap_err();
    assert_eq!(field_of(&e), "url");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");

    for url in [
        "redis://:hunter2@127.0.0.1:6379/notadb",
        "redis://:hunter2@127.0.0.1:6379/?protocol=hunter2",
        "redis+unix:///tmp/r.sock?pass=hunter2&db=x",
        "rediss://:hunter2@127.0.0.1:6379/#hunter2",
    ] {
        if let Err(e) = Config::new(url) {
            assert!(!e.to_string().contains("hunter2"), "{url}: {e}");
        }
    }

    let e = toml_err("url = \"redis://:hunter2@127.0.0.1:notaport\"");
    assert!(e.contains("`url`") && !e.contains("hunter2"), "{e}");

    let e = Config::new("redis://:hunter2@127.0.0.1")
        .unwrap()
        .with_client_name("a b")
        .build()
        .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");

    // A mistyped password is not quoted back either.
    let e = json_err(r#"{"url": "redis://h", "password": 12345678}"#);
    assert!(e.contains("password") && !e.contains("12345678"), "{e}");
}

/// Each kind of bad URL gets its own message, in the user's terms: never
/// redis-rs's internal error kinds, never the password.
#[test]
fn bad_urls_say_what_is_wrong() {
    let cases = [
        ("http://127.0.0.1:6379", "unknown scheme `http://`"),
        ("tcp://127.0.0.1:6379", "unknown scheme `tcp://`"),
        ("127.0.0.1:6379", "not a URL"),
        ("redis://127.0.0.1:0", "port 0"),
        ("redis://127.0.0.1:99999", "port 99999 is out of range"),
        ("redis://127.0.0.1:port", "port `port` is not a number"),
        (
            "redis://127.0.0.1:6379/abc",
            "database `abc` is not a number",
        ),
        ("redis://:s3cr%zzet@127.0.0.1:6379", "percent-escape"),
        ("redis://127.0.0.1:6379/-1", "database -1 is negative"),
        (
            "redis://127.0.0.1:6379/99999999999",
            "database 99999999999 is out of range",
        ),
        ("redis://", "has no host"),
        ("redis://:s3cret@:6379", "has no host"),
        ("valkey://127.0.0.1:0", "port 0"),
        (
            "redis://127.0.0.1:6379?protocol=resp9",
            "the `protocol` in the query is unknown",
        ),
        ("unix://", "needs the socket's path"),
        (
            "redis+unix://host/tmp/redis.sock",
            "needs the socket's path",
        ),
        (
            "redis+unix:///tmp/redis.sock?db=abc&pass=s3cret",
            "database `abc` is not a number",
        ),
        ("redis://0.0.0.0:6379", "wildcard address"),
    ];
    for (url, expected) in cases {
        let e = Config::new(url).unwrap_err().to_string();
        assert!(e.contains(expected), "{url}: {e}");
        assert!(!e.contains("s3cr"), "{url}: the password leaked: {e}");
        assert!(!e.contains("InvalidClientConfig"), "{url}: {e}");
        assert!(!e.contains("s3cret"), "{url}: the password leaked: {e}");
    }
    // The accepted forms still parse, valkey:// included, and a query
    // after the database is not taken for it.
    for ok in [
        "redis://127.0.0.1",
        "redis://127.0.0.1:6379/2?protocol=resp2",
        "valkey://127.0.0.1:6379",
        "redis://:p%40ss@127.0.0.1:6379",
        "redis://[::1]:6379",
        "redis+unix:///tmp/redis.sock?db=1",
    ] {
        Config::new(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn durable_acknowledgements_in_toml_validated_naming_the_field() {
    let config: Config = toml::from_str(
        "url = \"redis://127.0.0.1\"\n[durable]\nreplicas = 2\ntimeout = \"250ms\"\n",
    )
    .unwrap();
    let durable = config.durable().unwrap();
    assert_eq!(durable.replicas, 2);
    assert_eq!(durable.timeout, Duration::from_millis(250));
    assert!(!durable.aof);
    let back: Config = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    assert_eq!(Config::new("redis://127.0.0.1").unwrap().durable(), None);

    let zero = toml_err("url = \"redis://h\"\n[durable]\nreplicas = 0\ntimeout = \"1s\"\n");
    assert!(zero.contains("durable.replicas"), "{zero}");
    let forever = toml_err("url = \"redis://h\"\n[durable]\nreplicas = 1\ntimeout = \"0ms\"\n");
    assert!(forever.contains("durable.timeout"), "{forever}");
    // WAIT must fit inside the response timeout of the attempt that carries it.
    let too_long = toml_err(
        "url = \"redis://h\"\nresponse_timeout = \"1s\"\n[durable]\nreplicas = 1\ntimeout = \"2s\"\n",
    );
    assert!(too_long.contains("durable.timeout"), "{too_long}");
    let missing = toml_err("url = \"redis://h\"\n[durable]\ntimeout = \"1s\"\n");
    assert!(missing.contains("replicas"), "{missing}");
    let unknown =
        toml_err("url = \"redis://h\"\n[durable]\nreplicas = 1\ntimeout = \"1s\"\nfsync = 1\n");
    assert!(unknown.contains("fsync"), "{unknown}");

    // On a cluster: WAIT per shard, so `aof` (WAITAOF) is refused, by name.
    let cluster = relink::ClusterConfig::new(["redis://127.0.0.1:7000"])
        .unwrap()
        .with_settings(config.clone());
    cluster
        .clone()
        .build()
        .expect("durable writes on a cluster");
    let aof: Config = toml::from_str(
        "url = \"redis://127.0.0.1\"\n[durable]\nreplicas = 1\ntimeout = \"250ms\"\naof = true\n",
    )
    .unwrap();
    let refused = cluster.with_settings(aof).build().unwrap_err();
    assert_eq!(field_of(&refused), "settings.durable.aof", "{refused}");
}

// ---- client-side cache ---------------------------------------------------------------

#[test]
fn the_cache_table_round_trips_and_bad_values_are_named() {
    use relink::cache::{CacheConfig, TrackingMode};
    let config: Config = toml::from_str(
        r#"
        url = "redis://127.0.0.1:6379"
        [cache]
        max_entries = 500
        ttl = "5s"
        mode = "broadcast"
        prefixes = ["user:", "order:"]
        "#,
    )
    .unwrap();
    let cache = config.cache().unwrap();
    assert_eq!(cache.max_entries, 500);
    assert_eq!(cache.ttl, Duration::from_secs(5));
    assert_eq!(cache.mode, TrackingMode::Broadcast);
    assert_eq!(cache.max_bytes, CacheConfig::default().max_bytes);
    let again: Config = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);
    assert!(Config::new("redis://127.0.0.1").unwrap().cache().is_none());

    let bad = |table: &str| toml_err(&format!("url = \"redis://127.0.0.1\"\n[cache]\n{table}"));
    assert!(bad("max_entries = 0").contains("cache.max_entries"));
    assert!(bad("max_bytes = 0").contains("cache.max_bytes"));
    assert!(bad("ttl = \"0s\"").contains("cache.ttl"));
    assert!(bad("prefixes = [\"a\"]").contains("cache.prefixes"));
    assert!(bad("mode = \"broadcast\"\nprefixes = [\"a\", \"ab\"]").contains("overlap"));
    assert!(
        bad("size = 3").contains("size"),
        "unknown fields are refused"
    );

    let resp2 = Config::new("redis://127.0.0.1/?protocol=resp2")
        .unwrap()
        .with_cache(Some(CacheConfig::default()))
        .build()
        .unwrap_err();
    assert_eq!(field_of(&resp2), "cache");
    assert!(resp2.to_string().contains("RESP3"), "{resp2}");

    // Not on a cluster yet: refused by name rather than ignored.
    let refused = relink::ClusterConfig::new(["redis://127.0.0.1:7000"])
        .unwrap()
        .with_settings(config)
        .build()
        .unwrap_err();
    assert_eq!(field_of(&refused), "settings.cache", "{refused}");
}
