//! Each fault of the proxy, seen from a plain TCP client speaking RESP, with
//! read timeouts only (bounded waits).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use relink_testkit::{FaultProxy, RedisServer};

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

fn connect(proxy: &FaultProxy) -> TcpStream {
    let stream = TcpStream::connect_timeout(&proxy.addr(), LONG).unwrap();
    stream.set_read_timeout(Some(LONG)).unwrap();
    stream
}

/// Sends `request` and reads one chunk of reply within `timeout`.
fn round_trip(
    stream: &mut TcpStream,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(request)?;
    read_chunk(stream)
}

fn read_chunk(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf)?;
    Ok(buf[..n].to_vec())
}

fn is_timeout(result: &std::io::Result<Vec<u8>>) -> bool {
    matches!(result, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// Polls `cond` for up to 5 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn set(key: &str, value: &str) -> Vec<u8> {
    format!(
        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
        key.len(),
        value.len()
    )
    .into_bytes()
}

fn get(server: &RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.connection())
        .unwrap()
}

fn pong(stream: &mut TcpStream) {
    assert_eq!(round_trip(stream, PING, LONG).unwrap(), b"+PONG\r\n");
}

#[test]
fn pass_forwards_and_counts() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    assert!(proxy.url().starts_with("redis://127.0.0.1:"));
    let mut a = connect(&proxy);
    pong(&mut a);
    let mut con = redis::Client::open(proxy.url())
        .unwrap()
        .get_connection_with_timeout(LONG)
        .unwrap();
    let reply: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(reply, "PONG");
    assert_eq!(proxy.accepted(), 2);
    assert_eq!(proxy.connections(), 2);
    drop(a);
    drop(con);
    eventually("connections to close", || proxy.connections() == 0);
}

#[test]
fn cut_closes_current_connections_with_fin_and_accepts_new_ones() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut a = connect(&proxy);
    pong(&mut a);
    proxy.cut();
    assert_eq!(read_chunk(&mut a).unwrap(), b"", "expected EOF");
    eventually("the cut connection to be gone", || proxy.connections() == 0);
    let mut b = connect(&proxy);
    pong(&mut b);
}

#[test]
fn reset_closes_current_connections_with_rst() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut a = connect(&proxy);
    pong(&mut a);
    proxy.reset();
    let err = read_chunk(&mut a).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "got {err}");
    let mut b = connect(&proxy);
    pong(&mut b);
}

#[test]
fn blackhole_holds_bytes_both_ways_until_pass() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut a = connect(&proxy);
    pong(&mut a);
    proxy.blackhole();
    assert!(is_timeout(&round_trip(&mut a, PING, SHORT)));
    // A new connection is accepted but gets nothing.
    let mut b = connect(&proxy);
    assert!(is_timeout(&round_trip(&mut b, PING, SHORT)));
    assert_eq!(proxy.accepted(), 2);
    assert_eq!(proxy.connections(), 2);

    proxy.pass();
    a.set_read_timeout(Some(LONG)).unwrap();
    b.set_read_timeout(Some(LONG)).unwrap();
    assert_eq!(read_chunk(&mut a).unwrap(), b"+PONG\r\n");
    assert_eq!(read_chunk(&mut b).unwrap(), b"+PONG\r\n");
}

#[test]
fn delay_adds_latency_both_ways() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut a = connect(&proxy);
    pong(&mut a);
    proxy.delay(Duration::from_millis(150));
    let started = Instant::now();
    pong(&mut a);
    // A lower bound only: sleeps never end early, while upper bounds would be
    // flaky on a loaded machine.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    proxy.pass();
    pong(&mut a);
}

#[test]
fn refuse_cuts_current_connections_and_closes_new_ones() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut a = connect(&proxy);
    pong(&mut a);
    proxy.refuse();
    assert_eq!(read_chunk(&mut a).unwrap(), b"", "expected EOF");
    let mut b = connect(&proxy);
    match round_trip(&mut b, PING, LONG) {
        Ok(bytes) => assert_eq!(bytes, b"", "a refused connection got data"),
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "got {e}"
        ),
    }
    proxy.pass();
    let mut c = connect(&proxy);
    pong(&mut c);
}

#[test]
fn drop_replies_applies_commands_but_the_client_never_hears_back() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut a = connect(&proxy);
    pong(&mut a);
    proxy.drop_replies();
    assert!(is_timeout(&round_trip(&mut a, &set("unheard", "1"), SHORT)));
    assert_eq!(get(&server, "unheard").as_deref(), Some("1"));
    proxy.pass();
    pong(&mut a);
}

#[test]
fn cut_after_next_request_forwards_it_then_closes_before_the_reply() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut a = connect(&proxy);
    pong(&mut a);
    proxy.cut_after_next_request();
    assert_eq!(
        round_trip(&mut a, &set("fate", "applied"), LONG).unwrap(),
        b"",
        "expected EOF and no reply"
    );
    eventually("the request to be applied", || {
        get(&server, "fate").as_deref() == Some("applied")
    });
    // Armed for one request only.
    let mut b = connect(&proxy);
    pong(&mut b);
    pong(&mut b);
}

#[test]
fn drop_stops_the_proxy_and_closes_every_connection() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut a = connect(&proxy);
    pong(&mut a);
    proxy.blackhole();
    let mut b = connect(&proxy);
    eventually("two connections", || proxy.connections() == 2);
    let probe = proxy.probe();
    drop(proxy);
    for stream in [&mut a, &mut b] {
        match read_chunk(stream) {
            Ok(bytes) => assert_eq!(bytes, b""),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "got {e}"),
        }
    }
    // Its listener is closed. (Not checked by connecting to its port: the
    // tests of this binary run in parallel, and another test's proxy or
    // server may be given the freed port at once; a connection would then
    // succeed, and disturb that test.)
    assert!(!probe.listening(), "the listener is still open");
    assert_eq!(probe.connections(), 0);
}

#[test]
fn upstream_down_closes_client_connections() {
    let mut server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr());
    let mut a = connect(&proxy);
    pong(&mut a);
    server.kill();
    assert_eq!(read_chunk(&mut a).unwrap(), b"", "expected EOF");
    let mut b = connect(&proxy);
    assert_eq!(read_chunk(&mut b).unwrap(), b"", "expected EOF");
    server.restart();
    let mut c = connect(&proxy);
    pong(&mut c);
}
