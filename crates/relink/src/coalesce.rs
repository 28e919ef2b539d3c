//! Write coalescing: the commands of concurrent callers leave in one write.
//! And read stamping: each read that brings bytes from the server is the
//! connection's latest sign of life ([`Demand::last_read`]).
//!
//! redis-rs's multiplexed connection runs a driver task that moves queued
//! commands into its write buffer and flushes the buffer (one `writev`) as
//! soon as its queue is momentarily empty, so under a concurrent load it
//! writes a command or two at a time while the callers it has just woken
//! with replies are about to send their next commands. With `TCP_NODELAY`
//! (relink's default across a network: `Config::with_tcp_nodelay`) each of
//! those writes is a segment of its own. redis-rs has no knob for it, so
//! this is written here: a stream wrapper that makes the driver step aside
//! once before each write while callers wait.
//!
//! The first `poll_write` after a write does not write: it wakes its own
//! task and returns `Pending`. tokio runs a task that woke itself after the
//! tasks already waiting (at the back of its worker's queue, and another
//! worker may steal it meanwhile); those are typically the callers the last
//! replies woke, so their next commands join the buffer and the next
//! `poll_write` writes them all. Nothing waits on a timer. The same
//! technique is rueidis' (Go), which yields its writer goroutine before
//! flushing.
//!
//! When it steps aside depends on the socket ([`Demand`] counts the
//! callers waiting on the connection, around each command):
//! - **Each write leaves at once** (`TCP_NODELAY`, a Unix socket): while
//!   more than one caller waits. A lone caller's command is written at
//!   once: there is nobody to wait for, and the self-wake would cost it a
//!   wake-up of an idle worker (about 7 µs on the project's 2-core
//!   machine). Measured there (`bench --load relink 16` with
//!   `RELINK_BENCH_TCP_NODELAY=1`, 2026-11-27): 7–11 commands per `writev`
//!   against 1.3–1.9, 0.78× of redis-rs's defaults against 0.6–0.7×
//!   without it.
//! - **Nagle holds small writes** (relink's default on loopback): while
//!   more than [`STEP_ASIDE_ABOVE`] callers wait. The kernel already holds
//!   a small write while the last is unacknowledged and releases the held
//!   ones at the server's reply, which keeps two batches in flight;
//!   stepping aside on top of it made one convoy of a few dozen callers
//!   (the server idle while the client dispatched a whole batch, then the
//!   client idle). Measured (interleaved `--load`, Nagle on): stepping
//!   aside against not, 0.72–0.74 against 0.77–0.86× of redis-rs's
//!   defaults at 16 tasks, 0.86–0.88× either way at 24, 0.94–0.96 against
//!   0.86–0.87× at 32; at 64 tasks it is worth a fifth (38–54 commands per
//!   `writev` against 4–6).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Under Nagle, more callers than this waiting on one connection make its
/// writes step aside; see the module docs.
pub(crate) const STEP_ASIDE_ABOVE: usize = 16;

/// How many callers wait on one connection (their command queued, written
/// or awaiting its reply), and, when relink opened the socket, when it last
/// read anything from the server: the client counts the callers, the
/// connection's write path reads the count, and its read path stamps each
/// read. A clone counts into the same number.
#[derive(Debug, Clone, Default)]
pub struct Demand(Arc<Wire>);

#[derive(Debug, Default)]
struct Wire {
    waiting: AtomicUsize,
    /// When the socket last gave bytes: nanoseconds after `reads_since`,
    /// plus one (0: not yet).
    read: AtomicU64,
    /// What `read` counts from; `None`: the connection's reads are not
    /// stamped (a custom connector's).
    reads_since: Option<Instant>,
}

impl Demand {
    /// One whose connection's reads are stamped (the [`Coalesce`] stream
    /// around the socket does it).
    fn stamped() -> Demand {
        Demand(Arc::new(Wire {
            reads_since: Some(Instant::now()),
            ..Wire::default()
        }))
    }

    /// Counts one caller until the guard is dropped.
    pub(crate) fn enter(&self) -> Waiting<'_> {
        self.0.waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(&self.0.waiting)
    }

    /// How many callers wait now.
    pub(crate) fn waiting(&self) -> usize {
        self.0.waiting.load(Ordering::Relaxed)
    }

    /// More than `above` callers wait.
    fn more_than(&self, above: usize) -> bool {
        self.0.waiting.load(Ordering::Relaxed) > above
    }

    /// The connection's reads are stamped: [`last_read`](Self::last_read)
    /// is the evidence of its replies (and its pushes).
    pub(crate) fn stamps_reads(&self) -> bool {
        self.0.reads_since.is_some()
    }

    /// When the connection last read bytes from the server, if it stamps
    /// its reads and has read any.
    pub(crate) fn last_read(&self) -> Option<Instant> {
        let since = self.0.reads_since?;
        match self.0.read.load(Ordering::Relaxed) {
            0 => None,
            n => Some(since + Duration::from_nanos(n - 1)),
        }
    }

    /// The socket just gave bytes. Only the connection's driver task reads
    /// its socket: a plain store keeps the stamps in order.
    fn note_read(&self) {
        if let Some(since) = self.0.reads_since {
            let n = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.0.read.store(n + 1, Ordering::Relaxed);
        }
    }
}

/// One caller counted in a [`Demand`].
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream whose writes step aside once for other ready tasks; see the module docs.
#[derive(Debug)]
pub(crate) struct Coalesce<S> {
    inner: S,
    demand: Demand,
    /// The driver already stepped aside for the data it is writing now.
    stepped_aside: bool,
    /// It steps aside while more callers than this wait.
    above: usize,
}

impl<S> Coalesce<S> {
    /// `inner` wrapped, and the [`Demand`] its client counts its callers
    /// in and reads the time of its last read from. `nagle`: the kernel
    /// holds small writes on this socket (TCP without `TCP_NODELAY`).
    pub(crate) fn new(inner: S, nagle: bool) -> (Coalesce<S>, Demand) {
        let demand = Demand::stamped();
        let stream = Coalesce {
            inner,
            demand: demand.clone(),
            stepped_aside: false,
            above: if nagle { STEP_ASIDE_ABOVE } else { 1 },
        };
        (stream, demand)
    }

    /// `Pending` (after waking the task) the first time, then `None`:
    /// write now.
    fn step_aside(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<usize>>> {
        if self.stepped_aside || !self.demand.more_than(self.above) {
            return None;
        }
        self.stepped_aside = true;
        cx.waker().wake_by_ref();
        Some(Poll::Pending)
    }

    /// After a write attempt: once some data left, the next write steps
    /// aside again; a write the socket could not take yet (`Pending`) is
    /// retried when it can, without stepping aside once more.
    fn wrote<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stepped_aside = false;
        }
        result
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // One stamp per read, however many replies it brings: the evidence
        // that the server is alive costs a clock read per socket read, not
        // one per command (see `Demand::last_read`).
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.demand.note_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(pending) = self.step_aside(cx) {
            return pending;
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(pending) = self.step_aside(cx) {
            return pending;
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use super::*;

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn write(stream: &mut Coalesce<Vec<u8>>, cx: &mut Context<'_>, data: &[u8]) -> Poll<usize> {
        Pin::new(stream)
            .poll_write(cx, data)
            .map(|r| r.expect("a Vec takes every write"))
    }

    /// How many waiting callers a socket's writes do not step aside for.
    fn few(nagle: bool) -> usize {
        if nagle {
            STEP_ASIDE_ABOVE
        } else {
            1
        }
    }

    /// Runs `check` on a stream of each kind, with as many callers waiting
    /// as it does not step aside for; it counts its task's wakes.
    fn with_few_waiting(
        check: impl Fn(bool, &mut Coalesce<Vec<u8>>, &Demand, &mut Context<'_>, &CountWakes),
    ) {
        for nagle in [false, true] {
            let wakes = Arc::new(CountWakes::default());
            let waker = Waker::from(Arc::clone(&wakes));
            let mut cx = Context::from_waker(&waker);
            let (mut stream, demand) = Coalesce::new(Vec::new(), nagle);
            let _few: Vec<_> = (0..few(nagle)).map(|_| demand.enter()).collect();
            check(nagle, &mut stream, &demand, &mut cx, &wakes);
        }
    }

    #[test]
    fn a_few_callers_are_written_at_once() {
        with_few_waiting(|nagle, stream, _, cx, wakes| {
            for _ in 0..3 {
                assert_eq!(write(stream, cx, b"PING"), Poll::Ready(4));
            }
            assert_eq!(stream.inner, b"PINGPINGPING");
            assert_eq!(wakes.0.load(Ordering::Relaxed), 0, "nagle: {nagle}");
        });
    }

    #[test]
    fn with_more_callers_each_write_first_steps_aside_once() {
        with_few_waiting(|nagle, stream, demand, cx, wakes| {
            let one_more = demand.enter();
            for round in 1..=2 {
                // Steps aside, and has itself polled again: nothing is lost.
                assert_eq!(write(stream, cx, b"GET a"), Poll::Pending);
                assert_eq!(wakes.0.load(Ordering::Relaxed), round, "nagle: {nagle}");
                // Polled again, with what the other callers added meanwhile.
                assert_eq!(write(stream, cx, b"GET aGET b"), Poll::Ready(10));
            }
            assert_eq!(stream.inner, b"GET aGET bGET aGET b");
            drop(one_more);
            assert_eq!(write(stream, cx, b"GET c"), Poll::Ready(5));
        });
    }

    #[test]
    fn each_read_that_brings_bytes_is_stamped_and_only_those() {
        let waker = Waker::from(Arc::new(CountWakes::default()));
        let mut cx = Context::from_waker(&waker);
        let (mut stream, demand) = Coalesce::new(&b"+OK\r\n$1\r\na\r\n"[..], false);
        assert!(demand.stamps_reads());
        assert_eq!(demand.last_read(), None, "nothing read yet");
        let mut read = |stream: &mut Coalesce<&[u8]>, len: usize| {
            let mut bytes = [0u8; 16];
            let mut buf = ReadBuf::new(&mut bytes[..len]);
            let before = Instant::now();
            let result = Pin::new(stream).poll_read(&mut cx, &mut buf);
            assert!(matches!(result, Poll::Ready(Ok(()))));
            (buf.filled().len(), before, Instant::now())
        };
        let (n, before, after) = read(&mut stream, 5);
        assert_eq!(n, 5);
        let first = demand.last_read().expect("stamped");
        assert!(
            before <= first && first <= after,
            "{before:?} {first:?} {after:?}"
        );
        let (n, before, _) = read(&mut stream, 16);
        assert_eq!(n, 7);
        let second = demand.last_read().expect("stamped");
        assert!(second >= before && second >= first);
        // The end of the stream brings nothing: no sign of life.
        let (n, _, _) = read(&mut stream, 16);
        assert_eq!(n, 0);
        assert_eq!(demand.last_read(), Some(second));
    }

    #[test]
    fn a_read_that_must_wait_is_not_stamped() {
        let waker = Waker::from(Arc::new(CountWakes::default()));
        let mut cx = Context::from_waker(&waker);
        let (_server, client) = tokio::io::duplex(64);
        let (mut stream, demand) = Coalesce::new(client, false);
        let mut bytes = [0u8; 16];
        let mut buf = ReadBuf::new(&mut bytes);
        assert!(Pin::new(&mut stream)
            .poll_read(&mut cx, &mut buf)
            .is_pending());
        assert_eq!(demand.last_read(), None, "nothing came");
    }

    #[test]
    fn a_demand_of_a_custom_connection_stamps_nothing() {
        let demand = Demand::default();
        assert!(!demand.stamps_reads());
        demand.note_read();
        assert_eq!(demand.last_read(), None);
    }
}
