//! The harness proof: real redis-servers that tests kill, restart, pause and
//! drop, with bounded waits only.

use std::net::TcpStream;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use relink_testkit::RedisServer;

fn ping(con: &mut redis::Connection) -> redis::RedisResult<String> {
    redis::cmd("PING").query(con)
}

#[test]
fn kill_then_restart_on_the_same_port_keeps_appendonly_data() {
    let mut server = RedisServer::builder().appendonly(true).start();
    let port = server.port();
    let mut con = server.connection();
    assert_eq!(ping(&mut con).unwrap(), "PONG");
    let () = redis::cmd("SET")
        .arg("survivor")
        .arg("42")
        .query(&mut con)
        .unwrap();

    let old_pid = server.pid();
    server.kill();
    assert!(!server.is_running());
    assert_eq!(kill(Pid::from_raw(old_pid as i32), None), Err(Errno::ESRCH));
    assert!(TcpStream::connect_timeout(&server.addr(), Duration::from_secs(1)).is_err());
    assert!(
        ping(&mut con).is_err(),
        "the old connection died with the server"
    );

    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), old_pid);
    let mut con = server.connection();
    assert_eq!(ping(&mut con).unwrap(), "PONG");
    let value: String = redis::cmd("GET").arg("survivor").query(&mut con).unwrap();
    assert_eq!(value, "42");
}

#[test]
fn a_paused_server_times_out_and_answers_after_resume() {
    let mut server = RedisServer::start();
    let mut con = server.connection();
    con.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert_eq!(ping(&mut con).unwrap(), "PONG");

    server.pause();
    assert!(server.is_running(), "a paused server is still alive");
    let err = ping(&mut con).unwrap_err();
    assert!(err.is_timeout(), "expected a timeout, got {err}");

    server.resume();
    let mut con = server.connection();
    assert_eq!(ping(&mut con).unwrap(), "PONG");
}

#[test]
fn drop_reaps_the_process_even_when_paused() {
    let mut server = RedisServer::start();
    let pid = Pid::from_raw(server.pid() as i32);
    let dir = server.dir().to_path_buf();
    server.pause();
    drop(server);
    assert_eq!(kill(pid, None), Err(Errno::ESRCH), "pid {pid} still exists");
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
}

#[test]
fn drop_reaps_the_process_when_a_test_panics() {
    let pid = std::panic::catch_unwind(|| {
        let server = RedisServer::start();
        let pid = server.pid();
        std::panic::panic_any(pid);
    })
    .unwrap_err()
    .downcast::<u32>()
    .unwrap();
    assert_eq!(kill(Pid::from_raw(*pid as i32), None), Err(Errno::ESRCH));
}

#[test]
fn graceful_shutdown_then_restart() {
    let mut server = RedisServer::start();
    server.shutdown();
    assert!(!server.is_running());
    server.restart();
    assert_eq!(ping(&mut server.connection()).unwrap(), "PONG");
}

#[test]
fn password_and_acl_users() {
    let server = RedisServer::builder()
        .password("s3cret")
        .acl_user("alice on >alicepw ~* &* +@all")
        .start();
    assert!(server.url().contains(":s3cret@"));
    assert_eq!(ping(&mut server.connection()).unwrap(), "PONG");

    let alice = redis::Client::open(format!("redis://alice:alicepw@{}/", server.addr())).unwrap();
    let mut con = alice
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    let whoami: String = redis::cmd("ACL").arg("WHOAMI").query(&mut con).unwrap();
    assert_eq!(whoami, "alice");

    let anonymous = redis::Client::open(format!("redis://{}/", server.addr())).unwrap();
    let mut con = anonymous
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    let err = ping(&mut con).unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "got {err}");
}

#[test]
fn extra_args_reach_the_server() {
    let server = RedisServer::builder().args(["--maxmemory", "7mb"]).start();
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(config, ["maxmemory", &(7 * 1024 * 1024).to_string()]);
}
