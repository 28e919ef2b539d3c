//! The doctor binary against real servers (and things that are not): each
//! test spawns `relink-doctor` and checks the lines it prints, its
//! diagnosis and its exit code. Every server is the test's own and stopped
//! when the test ends; every run of the doctor is bounded.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use relink_testkit::sentinel::SERVICE;
use relink_testkit::{closed_port, Impostor, RedisCluster, RedisServer, SentinelTopology};

/// The longest one run of the doctor may take: its own steps are bounded
/// by `--timeout 2s` each.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What one run printed, and its exit code.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    out: String,
    err: String,
}

impl Run {
    /// Asserts the exit code and that stdout contains each of `texts`.
    fn expect(&self, code: i32, texts: &[&str]) {
        assert_eq!(self.code, Some(code), "exit code; {self}");
        for text in texts {
            assert!(self.out.contains(text), "`{text}` not printed; {self}");
        }
    }

    /// The lines of the checks that did not pass.
    fn not_ok(&self) -> Vec<&str> {
        self.out
            .lines()
            .filter(|l| l.starts_with("warn") || l.starts_with("FAIL"))
            .collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.out, self.err
        )
    }
}

/// Runs the doctor with `args` (and `--timeout 2s`), bounded by [`RUN_LIMIT`].
fn doctor(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_relink-doctor"))
        .args(["--timeout", "2s"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn relink-doctor");
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (tx, rx) = mpsc::channel();
    // Both pipes end when the doctor exits.
    std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((out, err));
    });
    let Ok((out, err)) = rx.recv_timeout(RUN_LIMIT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("relink-doctor {args:?} still running after {RUN_LIMIT:?}");
    };
    let status = child.wait().expect("wait for relink-doctor");
    let run = Run {
        code: status.code(),
        out,
        err,
    };
    // Shown with --nocapture: the sample outputs of the README.
    println!("$ relink-doctor {}\n{run}", args.join(" "));
    run
}

#[test]
fn a_healthy_server_is_usable() {
    let server = RedisServer::start();
    let run = doctor(&[&server.url()]);
    run.expect(
        0,
        &[
            "ok    url: ",
            "ok    tcp: connected to 127.0.0.1:",
            "ok    handshake: done in",
            "ok    ping: PONG; round trip min",
            "ok    loading: no",
            "ok    server: Redis ",
            "ok    role: master",
            "ok    clients: ",
            "of maxclients",
            "diagnosis: usable: ",
            "next step: none",
        ],
    );
    assert!(run.not_ok().is_empty(), "{run}");
}

#[test]
fn a_wrong_password_is_a_misconfiguration_with_the_servers_words() {
    let server = RedisServer::builder().password("right-secret").start();
    // RESP3 (HELLO ... AUTH) and RESP2 (AUTH), where redis-rs drops the
    // server's words and relink asks again.
    for query in ["", "?protocol=resp2"] {
        let url = format!("redis://:wrong-secret@127.0.0.1:{}/{query}", server.port());
        let run = doctor(&[&url]);
        run.expect(
            1,
            &[
                "FAIL  handshake: authentication failed: WRONGPASS",
                "(for user default)",
                "diagnosis: misconfiguration (auth; retrying will not fix it)",
                "next step: fix the credentials in the URL",
            ],
        );
        assert!(!run.out.contains("wrong-secret"), "password printed: {run}");
    }
}

#[test]
fn an_http_server_on_the_port_is_not_redis() {
    let http = Impostor::http();
    let run = doctor(&[&http.url()]);
    run.expect(
        1,
        &[
            "ok    tcp: connected to",
            "FAIL  handshake: not a Redis server: port open, but it answered `HTTP/1.1 400 Bad Request`",
            "diagnosis: misconfiguration (not_redis",
            "next step: something other than Redis listens on",
        ],
    );
}

#[test]
fn a_stopped_port_is_refused() {
    let port = closed_port();
    let run = doctor(&[&format!("redis://127.0.0.1:{port}")]);
    run.expect(
        1,
        &[
            "FAIL  tcp: connection refused",
            &format!(
                "nothing listens on 127.0.0.1:{port}: is the server running, is the port right?"
            ),
            "diagnosis: not usable now (refused; a client would keep retrying)",
            "next step: start the server",
        ],
    );
}

#[test]
fn a_loading_server_is_not_usable_yet_and_says_how_far_it_got() {
    // 20,000 keys at 500 µs each load in about 10 s; the server answers
    // between every KiB it reads.
    let mut server = RedisServer::builder()
        .args([
            "--key-load-delay",
            "500",
            "--loading-process-events-interval-bytes",
            "1024",
        ])
        .start();
    {
        let mut direct = server.connection();
        let mut pipe = redis::pipe();
        for i in 0..20_000 {
            pipe.set(format!("bulk:{i}"), i).ignore();
        }
        pipe.exec(&mut direct).unwrap();
        redis::cmd("SAVE").exec(&mut direct).unwrap();
    }
    server.restart_loading();
    let run = doctor(&[&server.url()]);
    run.expect(
        1,
        &[
            "ok    handshake: done",
            "FAIL  ping: the server is loading its dataset: LOADING",
            "FAIL  loading: loading, ",
            "diagnosis: not usable yet: the server is loading, ",
            "next step: wait until the dataset is loaded",
        ],
    );
    let line = run
        .out
        .lines()
        .find(|l| l.starts_with("FAIL  loading: loading, "))
        .unwrap();
    let percent = line["FAIL  loading: loading, ".len()..]
        .split(" %")
        .next()
        .unwrap();
    let percent: u32 = percent
        .parse()
        .unwrap_or_else(|_| panic!("a percentage in `{line}`"));
    assert!(percent <= 100, "{line}");
}

#[test]
fn a_full_server_says_so() {
    let server = RedisServer::builder().args(["--maxclients", "1"]).start();
    let _only_slot = server.connection();
    let run = doctor(&[&server.url()]);
    run.expect(
        1,
        &[
            "FAIL  handshake: the server has reached maxclients: ERR max number of clients reached",
            "next step: the server has maxclients connections",
        ],
    );
}

#[test]
fn a_bad_url_or_invocation_is_exit_code_2() {
    let run = doctor(&["http://127.0.0.1:6379"]);
    run.expect(
        2,
        &[
            "FAIL  url: ",
            "unknown scheme",
            "diagnosis: the URL is not valid",
            "next step: fix the URL",
        ],
    );
    let run = doctor(&["redis://127.0.0.1:0"]);
    run.expect(2, &["FAIL  url: ", "port"]);
    let run = doctor(&[]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(
        run.err.contains("no URL given") && run.err.contains("usage:"),
        "{run}"
    );
    let run = doctor(&["--frobnicate", "redis://127.0.0.1"]);
    assert_eq!(run.code, Some(2), "{run}");
}

#[test]
fn a_sentinel_names_a_master_that_is_usable() {
    let topology = SentinelTopology::start();
    let sentinel = format!("redis://{}", topology.sentinel_nodes()[0]);
    let run = doctor(&["--sentinel", SERVICE, &sentinel]);
    run.expect(
        0,
        &[
            "ok    handshake (sentinel): done",
            &format!("ok    sentinel: `{SERVICE}` is at 127.0.0.1:"),
            "ok    handshake (master): done",
            "ok    role: master, 1 connected replicas",
            "diagnosis: usable: ",
            "(via Sentinel)",
        ],
    );
    // The sentinel's URL without --sentinel: the doctor says what it is.
    let run = doctor(&[&sentinel]);
    run.expect(
        1,
        &[
            "(sentinel)",
            &format!("FAIL  role: a Sentinel, not a data server; it monitors: {SERVICE}"),
            &format!("next step: check the master it names: relink-doctor --sentinel {SERVICE} "),
        ],
    );
    let run = doctor(&["--sentinel", "nosuchservice", &sentinel]);
    run.expect(
        1,
        &["FAIL  sentinel: no master named `nosuchservice`; it monitors: mymaster"],
    );
}

#[test]
fn a_cluster_node_shows_the_clusters_state() {
    let cluster = RedisCluster::start();
    let run = doctor(&[&cluster.urls()[0]]);
    run.expect(
        0,
        &[
            "ok    server: Redis ",
            "(cluster)",
            "ok    cluster: state ok, 16384/16384 slots assigned, 16384 ok",
            "6 known nodes",
            "next step: none: connect with relink::ClusterClient",
        ],
    );
    // --cluster against a standalone server.
    let server = RedisServer::start();
    let run = doctor(&["--cluster", &server.url()]);
    run.expect(
        1,
        &["FAIL  cluster: --cluster given, but the server is not in cluster mode"],
    );
}
