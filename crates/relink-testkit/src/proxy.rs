//! A TCP proxy on 127.0.0.1 that sits between a client under test and a
//! redis-server and breaks the link on command: cut, reset, blackhole, delay,
//! refuse, drop replies, cut after the next request.
//!
//! It runs on a thread of its own with a current-thread tokio runtime, so sync
//! and async tests alike can use it, and its controls (plain `&self` methods)
//! take effect on live connections too. It knows bytes and sockets only, not
//! the Redis protocol: a "request" is whatever one read from the client
//! returned.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// Bytes read per chunk in each direction.
const CHUNK: usize = 16 * 1024;
/// How long the proxy waits for the upstream to accept a connection.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many leftover reads are discarded before closing with FIN, so that
/// unread input does not turn the close into an RST.
const DRAIN_READS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Blackhole,
    Delay(Duration),
    Refuse,
    DropReplies,
}

/// What the controls set; connections watch it.
#[derive(Debug, Clone, Copy)]
struct Control {
    mode: Mode,
    /// Bumped by `cut`/`refuse`: connections opened before close with FIN.
    fin_generation: u64,
    /// Bumped by `reset`: connections opened before close with RST.
    rst_generation: u64,
}

#[derive(Debug)]
struct Shared {
    control: watch::Sender<Control>,
    cut_after_next_request: AtomicBool,
    open: AtomicUsize,
    accepted: AtomicU64,
    /// The listening socket is open (cleared once it is closed).
    listening: AtomicBool,
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Fin,
    Rst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// A fault-injecting TCP proxy in front of one upstream address.
///
/// Dropping it stops its thread and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1, forwarding to `upstream`.
    ///
    /// # Panics
    /// When the listener or the runtime cannot be set up.
    pub fn start(upstream: SocketAddr) -> Self {
        assert!(
            upstream.ip().is_loopback(),
            "the fault proxy forwards to loopback addresses only, not {upstream}"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let (control, _) = watch::channel(Control {
            mode: Mode::Pass,
            fin_generation: 0,
            rst_generation: 0,
        });
        let shared = Arc::new(Shared {
            control,
            cut_after_next_request: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            listening: AtomicBool::new(true),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("a tokio runtime for the fault proxy");
        let (stop, stopped) = oneshot::channel();
        let task_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let listening = Arc::clone(&task_shared);
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("register the listener");
                    tokio::select! {
                        _ = stopped => {}
                        () = accept_loop(listener, upstream, task_shared) => {}
                    }
                });
                // The listener was closed with the future that owned it.
                listening.listening.store(false, Ordering::SeqCst);
                // Dropping the runtime drops every connection task, which
                // closes their sockets.
                drop(runtime);
            })
            .expect("spawn the fault proxy thread");
        Self {
            addr,
            upstream,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The proxy's own address; point the client under test here.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `redis://127.0.0.1:<proxy port>/` (without credentials).
    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    /// A view of the proxy's state that outlives it: to check what
    /// dropping it did.
    pub fn probe(&self) -> ProxyProbe {
        ProxyProbe(Arc::clone(&self.shared))
    }

    /// Connections currently open through the proxy.
    pub fn connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start (refused ones included).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Normal forwarding; also disarms [`FaultProxy::cut_after_next_request`].
    /// Bytes held by a blackhole flow again.
    pub fn pass(&self) {
        self.shared
            .cut_after_next_request
            .store(false, Ordering::SeqCst);
        self.set_mode(Mode::Pass);
    }

    /// Closes every current connection with FIN (both sides); the mode is
    /// unchanged, so new connections are still accepted.
    ///
    /// A connection the kernel completed but the proxy has not accepted yet
    /// is not "current": wait for [`FaultProxy::connections`] first.
    pub fn cut(&self) {
        self.shared.control.send_modify(|c| c.fin_generation += 1);
    }

    /// Closes every current connection with RST (`SO_LINGER` 0); the mode is
    /// unchanged.
    pub fn reset(&self) {
        self.shared.control.send_modify(|c| c.rst_generation += 1);
    }

    /// A dead link: connections stay open but no byte flows either way, and
    /// new connections are accepted but get nothing. Held bytes are not lost:
    /// they flow after [`FaultProxy::pass`], as TCP would after the link heals.
    pub fn blackhole(&self) {
        self.set_mode(Mode::Blackhole);
    }

    /// Holds each chunk, both ways, for `latency` after it was read.
    pub fn delay(&self, latency: Duration) {
        self.set_mode(Mode::Delay(latency));
    }

    /// New connections are closed at once; current ones are cut (FIN).
    pub fn refuse(&self) {
        self.shared.control.send_modify(|c| {
            c.mode = Mode::Refuse;
            c.fin_generation += 1;
        });
    }

    /// Client→server bytes are forwarded, server→client bytes are discarded:
    /// the server applies commands and the client never hears back.
    pub fn drop_replies(&self) {
        self.set_mode(Mode::DropReplies);
    }

    /// Forwards the next client→server chunk (on any connection), then closes
    /// that connection before any reply reaches the client: the outcome of
    /// that request is unknown to the client.
    pub fn cut_after_next_request(&self) {
        self.shared
            .cut_after_next_request
            .store(true, Ordering::SeqCst);
    }

    fn set_mode(&self, mode: Mode) {
        self.shared.control.send_modify(|c| c.mode = mode);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What [`FaultProxy::probe`] sees of a proxy, also after it is dropped.
#[derive(Debug, Clone)]
pub struct ProxyProbe(Arc<Shared>);

impl ProxyProbe {
    /// The proxy's listening socket is still open.
    pub fn listening(&self) -> bool {
        self.0.listening.load(Ordering::SeqCst)
    }

    /// Connections open through the proxy.
    pub fn connections(&self) -> usize {
        self.0.open.load(Ordering::SeqCst)
    }
}

/// Counts an open connection for as long as it lives.
struct OpenGuard(Arc<Shared>);

impl OpenGuard {
    fn new(shared: &Arc<Shared>) -> Self {
        shared.open.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(shared))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    // Ends only when the proxy is dropped (the select in `start`).
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // E.g. EMFILE: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let control = *shared.control.borrow();
        if control.mode == Mode::Refuse {
            drop(client);
            continue;
        }
        let guard = OpenGuard::new(&shared);
        tokio::spawn(connection(
            client,
            upstream,
            Arc::clone(&shared),
            control,
            guard,
        ));
    }
}

async fn connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    born: Control,
    _guard: OpenGuard,
) {
    let _ = client.set_nodelay(true);
    let mut killed_rx = shared.control.subscribe();
    let killed = async move {
        let result = killed_rx
            .wait_for(|c| {
                c.fin_generation != born.fin_generation || c.rst_generation != born.rst_generation
            })
            .await
            .map(|c| *c);
        match result {
            Ok(c) if c.rst_generation != born.rst_generation => Ending::Rst,
            _ => Ending::Fin,
        }
    };
    tokio::pin!(killed);

    // A blackholed link gives a new connection nothing, not even an upstream.
    let mut open_rx = shared.control.subscribe();
    let server = tokio::select! {
        ending = &mut killed => { close(client, None, ending).await; return; }
        server = async {
            let _ = open_rx.wait_for(|c| c.mode != Mode::Blackhole).await;
            tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)).await
        } => server,
    };
    let Ok(Ok(mut server)) = server else {
        close(client, None, Ending::Fin).await;
        return;
    };
    let _ = server.set_nodelay(true);

    let ending = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        // Set before the last request is forwarded, so no reply to it (and
        // nothing after it) reaches the client.
        let muted = AtomicBool::new(false);
        let to_server = async {
            let mut rx = shared.control.subscribe();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return Ending::Fin,
                    Ok(n) => n,
                };
                if !gate(&mut rx, Direction::ToServer, Instant::now()).await {
                    continue;
                }
                let last = shared.cut_after_next_request.swap(false, Ordering::SeqCst);
                if last {
                    muted.store(true, Ordering::SeqCst);
                }
                if server_write.write_all(&buf[..n]).await.is_err() {
                    return Ending::Fin;
                }
                if last {
                    let _ = server_write.flush().await;
                    return Ending::Fin;
                }
            }
        };
        let to_client = async {
            let mut rx = shared.control.subscribe();
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = match server_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return Ending::Fin,
                    Ok(n) => n,
                };
                if !gate(&mut rx, Direction::ToClient, Instant::now()).await
                    || muted.load(Ordering::SeqCst)
                {
                    continue;
                }
                if client_write.write_all(&buf[..n]).await.is_err() {
                    return Ending::Fin;
                }
            }
        };
        tokio::select! {
            ending = &mut killed => ending,
            ending = to_server => ending,
            ending = to_client => ending,
        }
    };
    close(client, Some(server), ending).await;
}

/// Waits until a chunk read at `read_at` may be forwarded in `direction`;
/// false when it is to be discarded.
async fn gate(rx: &mut watch::Receiver<Control>, direction: Direction, read_at: Instant) -> bool {
    let mode = match rx.wait_for(|c| c.mode != Mode::Blackhole).await {
        Ok(c) => c.mode,
        Err(_) => return false,
    };
    match mode {
        Mode::Delay(latency) => {
            tokio::time::sleep_until(read_at + latency).await;
            true
        }
        Mode::DropReplies => direction == Direction::ToServer,
        Mode::Pass | Mode::Refuse | Mode::Blackhole => true,
    }
}

async fn close(mut client: TcpStream, server: Option<TcpStream>, ending: Ending) {
    match ending {
        Ending::Rst => {
            let _ = client.set_zero_linger();
            if let Some(server) = &server {
                let _ = server.set_zero_linger();
            }
        }
        Ending::Fin => {
            let _ = client.shutdown().await;
            // Unread input at close() makes Linux send RST instead of FIN.
            let mut buf = [0u8; 4096];
            for _ in 0..DRAIN_READS {
                match client.try_read(&mut buf) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
        }
    }
    drop(server);
    drop(client);
}
