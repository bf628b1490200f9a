//! Connection-level protection, below HTTP: a cap on open connections, a
//! deadline for receiving each request, and the closing of connections
//! idle too long, so neither a flood of connections, a slowloris client
//! that trickles its headers nor clients that connect and go quiet can
//! exhaust the server.
//!
//! One timer per connection serves both deadlines. (poem's own idle
//! timeout watches each connection from a task of its own, woken by every
//! read and write: costly for a server taking tens of thousands of small
//! requests a second; BENCHMARKS.md has the figures.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Accepts at most `max` connections at once; beyond that, new ones wait in
/// the kernel's backlog until one closes.
pub struct GuardedAcceptor<A> {
    inner: A,
    permits: Arc<Semaphore>,
    request_timeout: Duration,
    idle_timeout: Duration,
}

impl<A> GuardedAcceptor<A> {
    pub fn new(
        inner: A,
        max_connections: usize,
        request_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            request_timeout,
            idle_timeout,
        }
    }
}

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = GuardedStream<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("the connection limiter was closed"))?;
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let stream = GuardedStream {
            inner: io,
            _permit: permit,
            timeout: self.request_timeout,
            idle: self.idle_timeout,
            deadline: Box::pin(tokio::time::sleep(self.idle_timeout)),
            armed: false,
        };
        Ok((stream, local, remote, scheme))
    }
}

/// A connection that must deliver each request within `timeout` of its
/// first byte (the clock starts when the client sends something while no
/// answer is pending, and stops when the server writes), and is closed
/// once nothing has been written for `idle` outside a request.
pub struct GuardedStream<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
    timeout: Duration,
    idle: Duration,
    /// The timer, made once per connection: the request's deadline while
    /// `armed`, the idle one otherwise.
    deadline: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> GuardedStream<S> {
    /// The server wrote: a request's answer has begun, so its deadline no
    /// longer applies, and the connection is not idle. The idle deadline is
    /// moved only once half of it has passed, so a long answer written in
    /// many pieces does not reset a timer for each.
    fn wrote(&mut self) {
        let now = tokio::time::Instant::now();
        if self.armed || self.deadline.deadline() < now + self.idle / 2 {
            self.armed = false;
            self.deadline.as_mut().reset(now + self.idle);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                if self.armed {
                    "the request was not received in time"
                } else {
                    "the connection was idle too long"
                },
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before && !self.armed {
            let at = tokio::time::Instant::now() + self.timeout;
            self.deadline.as_mut().reset(at);
            // Register the timer, so a client that goes silent is still caught.
            let _ = self.deadline.as_mut().poll(cx);
            self.armed = true;
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote();
        }
        result
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
