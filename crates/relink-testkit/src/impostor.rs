//! A TCP service that is not Redis: it answers every connection with fixed
//! bytes (an HTTP error page, an SSH banner) and closes it, the way a web
//! server or another daemon on a Redis port would. For tests of how a client
//! (or the doctor) tells "not a Redis server" from an outage.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long the impostor waits for the client to speak before it answers
/// anyway (an SSH server speaks first; an HTTP server waits for a request).
const LISTEN_FOR: std::time::Duration = std::time::Duration::from_millis(200);

/// A listener on 127.0.0.1 that answers every connection with `reply` and
/// closes it. Stopped (and its port closed) on drop.
#[derive(Debug)]
pub struct Impostor {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Impostor {
    /// An HTTP server that answers anything with `400 Bad Request`.
    pub fn http() -> Impostor {
        Impostor::start(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request".to_vec(),
        )
    }

    /// Starts one answering every connection with `reply`.
    ///
    /// # Panics
    /// When the listener or its runtime cannot be set up.
    pub fn start(reply: Vec<u8>) -> Impostor {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("set_nonblocking");
        let addr = listener.local_addr().expect("local_addr");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .expect("a tokio runtime for the impostor");
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("impostor-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("register the listener");
                    let serve = async {
                        // Ends when the thread is told to stop.
                        loop {
                            let Ok((mut socket, _)) = listener.accept().await else {
                                continue;
                            };
                            count.fetch_add(1, Ordering::Relaxed);
                            let reply = reply.clone();
                            tokio::spawn(async move {
                                let mut buf = [0u8; 1024];
                                let _ =
                                    tokio::time::timeout(LISTEN_FOR, socket.read(&mut buf)).await;
                                let _ = socket.write_all(&reply).await;
                                let _ = socket.shutdown().await;
                            });
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = serve => {}
                    }
                });
                drop(runtime);
            })
            .expect("spawn the impostor thread");
        Impostor {
            addr,
            accepted,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A `redis://` URL pointing at it.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Connections it has answered so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A port on 127.0.0.1 with nothing listening on it (bound, then closed):
/// connecting to it is refused.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}
