//! A `redis-server` child process owned by a test: its port, its temp dir
//! (`--dir`, where an AOF lives across restarts) and its log file.
//!
//! Knows how to start, stop, freeze and restart one server; knows nothing about
//! what the test does with it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;

use crate::tls::TlsServer;

/// How long a server may take to answer PING after a (re)start.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful shutdown may take before it turns into SIGKILL.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Spawn attempts when the chosen port turns out to be taken.
const SPAWN_ATTEMPTS: u32 = 10;
/// Timeouts on the sync connections handed to tests, so assertions never hang.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of a [`RedisServer`]; [`RedisServerBuilder::start`] spawns it.
#[derive(Debug, Clone, Default)]
pub struct RedisServerBuilder {
    password: Option<String>,
    acl_users: Vec<String>,
    appendonly: bool,
    extra_args: Vec<String>,
    config_file: Option<String>,
    tls: Option<TlsServer>,
}

impl RedisServerBuilder {
    /// Requires this password of the default user (`requirepass`).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Adds an ACL user, given as the words of a `user` config line after
    /// `user`, e.g. `"alice on >secret ~* &* +@all"`.
    pub fn acl_user(mut self, line: impl Into<String>) -> Self {
        self.acl_users.push(line.into());
        self
    }

    /// Turns on the append-only file with `appendfsync always`, so every
    /// acknowledged write survives a SIGKILL and a [`RedisServer::restart`].
    pub fn appendonly(mut self, on: bool) -> Self {
        self.appendonly = on;
        self
    }

    /// Adds one raw command-line argument (e.g. `"--maxmemory"`, then `"1mb"`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Adds raw command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Also listens for TLS on a port of its own ([`RedisServer::tls_port`]),
    /// with these certificates; the plain port stays open (the testkit's
    /// readiness checks and a test's admin connection use it).
    pub fn tls(mut self, tls: TlsServer) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Starts the server with a config file of this text (written to
    /// `redis.conf` in its dir on first start, then left as the server
    /// rewrites it, as a sentinel does), given before every other argument.
    pub fn config_file(mut self, text: impl Into<String>) -> Self {
        self.config_file = Some(text.into());
        self
    }

    /// Spawns the server on a free loopback port and waits until it answers.
    ///
    /// # Panics
    /// When the binary cannot be run or the server does not become ready; the
    /// message includes the tail of its log.
    pub fn start(self) -> RedisServer {
        let mut dir = TempDir::new();
        let mut last_log = String::new();
        for _ in 0..SPAWN_ATTEMPTS {
            let port = free_port();
            let tls_port = self.tls.as_ref().map(|_| free_port());
            let mut server = RedisServer {
                options: self.clone(),
                dir,
                port,
                tls_port,
                child: None,
                paused: false,
                log_start: 0,
            };
            server.spawn();
            match server.try_wait_ready() {
                Ok(()) => return server,
                Err(Failure::PortTaken) => {
                    last_log = server.log_tail(20);
                    server.reap();
                    dir = server.take_dir();
                }
                Err(Failure::Other(why)) => server.fail(&why),
            }
        }
        panic!("redis-server: no free port after {SPAWN_ATTEMPTS} attempts; last log:\n{last_log}");
    }
}

/// A `redis-server` process on `127.0.0.1:<port>`, owned by the test.
///
/// Dropping it reaps the process (SIGCONT if paused, then SIGKILL and wait),
/// also when the test panics, and removes its temp dir.
#[derive(Debug)]
pub struct RedisServer {
    options: RedisServerBuilder,
    dir: TempDir,
    port: u16,
    tls_port: Option<u16>,
    child: Option<Child>,
    paused: bool,
    log_start: u64,
}

enum Failure {
    PortTaken,
    Other(String),
}

/// What a (re)started server is waited for.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// It answers PING.
    Ready,
    /// It answers PING with `-LOADING`.
    Loading,
}

impl RedisServer {
    /// Starts a server with default options (no password, no persistence).
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Options for a server; finish with [`RedisServerBuilder::start`].
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// The server's address (also after it was killed: restart reuses it).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS port, when the server was built with [`RedisServerBuilder::tls`].
    ///
    /// # Panics
    /// When the server has no TLS port.
    pub fn tls_port(&self) -> u16 {
        self.tls_port.expect("the server was started without TLS")
    }

    /// The TLS port's address (see [`tls_port`](Self::tls_port)).
    pub fn tls_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tls_port()))
    }

    /// `rediss://127.0.0.1:<tls port>/`, with the password when one is set.
    pub fn tls_url(&self) -> String {
        match &self.options.password {
            Some(pw) => format!("rediss://:{pw}@127.0.0.1:{}/", self.tls_port()),
            None => format!("rediss://127.0.0.1:{}/", self.tls_port()),
        }
    }

    /// `redis://127.0.0.1:<port>/`, with the password when one is set.
    pub fn url(&self) -> String {
        match &self.options.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// The process id of the current child.
    ///
    /// # Panics
    /// When the server was killed or shut down and not restarted.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("redis-server is not running")
    }

    /// The server's working directory (`--dir`).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Whether the process is alive (a paused process counts as alive).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits (bounded) until the server answers PING: retries on connection
    /// refused and on `-LOADING`.
    ///
    /// # Panics
    /// On timeout or when the process exits, with the tail of the server log.
    pub fn wait_ready(&mut self) {
        if let Err(failure) = self.try_wait_ready() {
            let why = match failure {
                Failure::PortTaken => format!("port {} is taken", self.port),
                Failure::Other(why) => why,
            };
            self.fail(&why);
        }
    }

    /// SIGKILL, then wait for the process to be reaped.
    pub fn kill(&mut self) {
        self.reap();
    }

    /// Graceful stop: SIGTERM, then wait (bounded; SIGKILL after
    /// 10 s). A paused server is resumed first so it can handle the signal.
    pub fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = to_pid(child.id());
        if self.paused {
            let _ = send_signal(pid, Signal::SIGCONT);
            self.paused = false;
        }
        let _ = send_signal(pid, Signal::SIGTERM);
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the server again on the same port and in the same dir (so an
    /// AOF survives), then waits until ready. A running server is shut down
    /// gracefully first. Retries (bounded) while the port is briefly busy.
    ///
    /// # Panics
    /// When the server cannot be brought back.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.shutdown();
        }
        self.reap();
        for _ in 0..SPAWN_ATTEMPTS {
            self.spawn();
            match self.try_wait_ready() {
                Ok(()) => return,
                Err(Failure::PortTaken) => {
                    self.reap();
                    thread::sleep(Duration::from_millis(200));
                }
                Err(Failure::Other(why)) => self.fail(&why),
            }
        }
        self.fail(&format!(
            "port {} still busy after {SPAWN_ATTEMPTS} restart attempts",
            self.port
        ));
    }

    /// Starts the server again (same port and dir, like [`restart`](Self::restart))
    /// and returns as soon as it answers PING with `-LOADING`: while it is
    /// still loading its dataset. The dataset must take long enough to
    /// load: give the server `--key-load-delay` (µs per key) and a small
    /// `--loading-process-events-interval-bytes` (so it answers while it
    /// loads), and a few thousand keys saved with `SAVE`.
    ///
    /// # Panics
    /// When the server never answers `-LOADING` in time (it finished
    /// loading first, or did not start), with the tail of its log.
    pub fn restart_loading(&mut self) {
        if self.is_running() {
            self.shutdown();
        }
        self.reap();
        for _ in 0..SPAWN_ATTEMPTS {
            self.spawn();
            match self.try_wait(Until::Loading) {
                Ok(()) => return,
                Err(Failure::PortTaken) => {
                    self.reap();
                    thread::sleep(Duration::from_millis(200));
                }
                Err(Failure::Other(why)) => self.fail(&why),
            }
        }
        self.fail(&format!(
            "port {} still busy after {SPAWN_ATTEMPTS} restart attempts",
            self.port
        ));
    }

    /// Freezes the process (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&mut self) {
        if !self.paused {
            let _ = send_signal(to_pid(self.pid()), Signal::SIGSTOP);
            self.paused = true;
        }
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&mut self) {
        if self.paused {
            let _ = send_signal(to_pid(self.pid()), Signal::SIGCONT);
            self.paused = false;
        }
    }

    /// A client for this server (with the password, if any).
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("a valid redis URL")
    }

    /// A sync connection for assertions, with 5 s connect/read/write timeouts.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub fn connection(&self) -> redis::Connection {
        let con = self
            .client()
            .get_connection_with_timeout(IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to redis-server at {}: {e}", self.addr()));
        con.set_read_timeout(Some(IO_TIMEOUT))
            .expect("set read timeout");
        con.set_write_timeout(Some(IO_TIMEOUT))
            .expect("set write timeout");
        con
    }

    /// The last `lines` lines of the server's log (and of its stdout/stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for path in [self.log_path(), self.stdio_path()] {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out.push_str(&format!("--- {} ---\n", path.display()));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join("redis.log")
    }

    fn stdio_path(&self) -> PathBuf {
        self.dir.0.join("stdio.log")
    }

    fn binary() -> String {
        std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
    }

    fn spawn(&mut self) {
        let o = &self.options;
        let mut cmd = Command::new(Self::binary());
        if let Some(text) = &o.config_file {
            // redis-server reads a config file only as its first argument.
            let path = self.dir.0.join("redis.conf");
            if !path.exists() {
                fs::write(&path, text).expect("write the server's config file");
            }
            cmd.arg(path);
        }
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--logfile")
            .arg(self.log_path())
            .arg("--dir")
            .arg(&self.dir.0);
        if o.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if let Some(pw) = &o.password {
            cmd.arg("--requirepass").arg(pw);
        }
        for line in &o.acl_users {
            cmd.arg("--user").args(line.split_whitespace());
        }
        if let (Some(tls), Some(tls_port)) = (&o.tls, self.tls_port) {
            cmd.arg("--tls-port")
                .arg(tls_port.to_string())
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .arg("--tls-auth-clients")
                .arg(if tls.require_client_cert { "yes" } else { "no" });
        }
        cmd.args(&o.extra_args);
        let stdio = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(self.stdio_path())
            .expect("open the server's stdio log");
        let stderr = stdio.try_clone().expect("clone a file handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(stdio))
            .stderr(Stdio::from(stderr));
        // Where this run's log starts, for telling a port clash apart.
        self.log_start = fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run `{}` ({e}); install redis-server or set REDIS_SERVER=/path/to/redis-server \
                 (`cargo xtask test` does this for you)",
                Self::binary()
            )
        });
        self.child = Some(child);
        self.paused = false;
    }

    fn try_wait_ready(&mut self) -> Result<(), Failure> {
        self.try_wait(Until::Ready)
    }

    fn try_wait(&mut self, until: Until) -> Result<(), Failure> {
        let log_start = self.log_start;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = read_from(&self.log_path(), log_start)
                        + &fs::read_to_string(self.stdio_path()).unwrap_or_default();
                    if log.contains("Address already in use") {
                        return Err(Failure::PortTaken);
                    }
                    return Err(Failure::Other(format!("redis-server exited: {status}")));
                }
            } else {
                return Err(Failure::Other("redis-server is not running".into()));
            }
            let last =
                match (ping(self.addr(), self.options.password.as_deref()), until) {
                    (Ok(()), Until::Ready) => return Ok(()),
                    (Ok(()), Until::Loading) => return Err(Failure::Other(
                        "answered PING before it was seen loading: save more keys or give it a \
                         longer --key-load-delay"
                            .into(),
                    )),
                    (Err(why), Until::Loading) if why.contains("-LOADING") => return Ok(()),
                    (Err(why), _) => why,
                };
            if Instant::now() >= deadline {
                return Err(Failure::Other(format!(
                    "not ready after {READY_TIMEOUT:?}; last attempt: {last}"
                )));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        let log = self.log_tail(30);
        self.reap();
        panic!("redis-server on port {}: {why}\n{log}", self.port);
    }

    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.paused {
                let _ = send_signal(to_pid(child.id()), Signal::SIGCONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    fn take_dir(&mut self) -> TempDir {
        std::mem::replace(&mut self.dir, TempDir(PathBuf::new()))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.reap();
    }
}

/// One PING over a fresh connection (after AUTH when a password is set).
fn ping(addr: SocketAddr, password: Option<&str>) -> Result<(), String> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut request = Vec::new();
    if let Some(pw) = password {
        request
            .extend_from_slice(format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pw}\r\n", pw.len()).as_bytes());
    }
    request.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    stream.write_all(&request).map_err(|e| e.to_string())?;
    // Both replies are short simple strings or errors; read until PING's.
    let expected_lines = if password.is_some() { 2 } else { 1 };
    let mut reply = Vec::new();
    let mut buf = [0u8; 256];
    while reply.iter().filter(|&&b| b == b'\n').count() < expected_lines && reply.len() < 4096 {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        reply.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&reply);
    if text.lines().last() == Some("+PONG") {
        Ok(())
    } else {
        Err(format!("reply: {}", text.trim()))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn to_pid(id: u32) -> Pid {
    Pid::from_raw(i32::try_from(id).expect("a pid fits in i32"))
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let mut bytes = Vec::new();
        let _ = file.read_to_end(&mut bytes);
        let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
        text = String::from_utf8_lossy(&bytes[start..]).into_owned();
    }
    text
}

/// A fresh directory under the system temp dir, removed on drop. Hand-rolled
/// rather than `tempfile` to keep the dependency tree small.
#[derive(Debug)]
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("relink-testkit-{}-{n}-{nanos}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return Self(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("create temp dir {}: {e}", path.display()),
            }
        }
        panic!("no fresh temp dir after 100 attempts");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}
