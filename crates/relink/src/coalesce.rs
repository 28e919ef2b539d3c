//! Write coalescing: the commands of many concurrent callers leave in one
//! write.
//!
//! redis-rs's multiplexed connection runs a driver task that moves queued
//! commands into its write buffer and flushes the buffer (one `writev`) as
//! soon as its queue is momentarily empty, so under a concurrent load it
//! writes a command or two at a time while the callers it has just woken
//! with replies are about to send their next commands. Nagle's algorithm
//! (relink's default, as redis-rs's: `Config::with_tcp_nodelay`) has the
//! kernel hold those small writes while one segment is unacknowledged and
//! send them together when the server's reply acknowledges it. Past a few
//! dozen callers that is not enough: each write is still a syscall and a
//! wake-up of the driver per command or two. redis-rs has no knob for it,
//! so this is written here: a stream wrapper that makes the driver step
//! aside once before each write while many callers wait.
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
//! It steps aside only while more than [`STEP_ASIDE_ABOVE`] callers wait on
//! the connection ([`Demand`], counted by the client around each command).
//! Below that, stepping aside makes one convoy of the callers (the server
//! idles while the client dispatches a whole batch, then the client idles)
//! and costs each command a wake-up (about 7 µs for a lone caller on the
//! project's 2-core machine), where Nagle's hold keeps two batches in
//! flight. Measured there (`bench --load relink N`, interleaved, Nagle on,
//! 2026-11-27), stepping aside against not: 0.72–0.74 against 0.77–0.86×
//! of redis-rs's defaults at 16 tasks, 0.86–0.88× either way at 24,
//! 0.94–0.96 against 0.86–0.87× at 32, and at 64 tasks the step aside is
//! worth a fifth (38–54 commands per `writev` against 4–6).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// More callers than this waiting on one connection make its writes step
/// aside; see the module docs.
pub(crate) const STEP_ASIDE_ABOVE: usize = 16;

/// How many callers wait on one connection (their command queued, written
/// or awaiting its reply): the client counts them, the connection's write
/// path reads the count. A clone counts into the same number.
#[derive(Debug, Clone, Default)]
pub struct Demand(Arc<AtomicUsize>);

impl Demand {
    /// Counts one caller until the guard is dropped.
    pub(crate) fn enter(&self) -> Waiting<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Waiting(&self.0)
    }

    /// How many callers wait now.
    pub(crate) fn waiting(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// More than [`STEP_ASIDE_ABOVE`] callers wait.
    fn crowded(&self) -> bool {
        self.0.load(Ordering::Relaxed) > STEP_ASIDE_ABOVE
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
}

impl<S> Coalesce<S> {
    pub(crate) fn new(inner: S, demand: Demand) -> Coalesce<S> {
        Coalesce {
            inner,
            demand,
            stepped_aside: false,
        }
    }

    /// `Pending` (after waking the task) the first time, then `None`:
    /// write now.
    fn step_aside(&mut self, cx: &mut Context<'_>) -> Option<Poll<io::Result<usize>>> {
        if self.stepped_aside || !self.demand.crowded() {
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
        Pin::new(&mut self.inner).poll_read(cx, buf)
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

    #[test]
    fn a_few_callers_are_written_at_once() {
        let wakes = Arc::new(CountWakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let demand = Demand::default();
        let mut stream = Coalesce::new(Vec::new(), demand.clone());
        let _few: Vec<_> = (0..STEP_ASIDE_ABOVE).map(|_| demand.enter()).collect();
        for _ in 0..3 {
            assert_eq!(write(&mut stream, &mut cx, b"PING"), Poll::Ready(4));
        }
        assert_eq!(stream.inner, b"PINGPINGPING");
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn with_many_callers_each_write_first_steps_aside_once() {
        let wakes = Arc::new(CountWakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let demand = Demand::default();
        let mut stream = Coalesce::new(Vec::new(), demand.clone());
        let _few: Vec<_> = (0..STEP_ASIDE_ABOVE).map(|_| demand.enter()).collect();
        let one_more = demand.enter();
        for round in 1..=2 {
            // Steps aside, and has itself polled again: nothing is lost.
            assert_eq!(write(&mut stream, &mut cx, b"GET a"), Poll::Pending);
            assert_eq!(wakes.0.load(Ordering::Relaxed), round);
            // Polled again, with what the other callers added meanwhile.
            assert_eq!(write(&mut stream, &mut cx, b"GET aGET b"), Poll::Ready(10));
        }
        assert_eq!(stream.inner, b"GET aGET bGET aGET b");
        drop(one_more);
        assert_eq!(write(&mut stream, &mut cx, b"GET c"), Poll::Ready(5));
    }
}
