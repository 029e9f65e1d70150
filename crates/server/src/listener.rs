//! The accept loop. Each connection: a place among its network's (an IPv4 address or an
//! IPv6 `/64`, [`connections`](super::connections)) and a permit of the connection limit;
//! when either is full, the longest-idle keep-alive connection of that network (or of the
//! network holding the most) is closed to make room, and the newcomer waits for it up to
//! `header_timeout` (then it is closed). Then an optional TLS handshake under
//! `header_timeout`, HTTP/1.1 with a header read timeout, and writes that must keep up a
//! minimum rate ([`ConnectionIo`]). On shutdown the listener closes, idle connections
//! close, requests in flight get `shutdown_deadline` to finish, and the loop returns.

use crate::Limits;
use crate::connections::{Connection, Registry, Slot};
use crate::errors::Result;
use axum::Router;
use axum::body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown` completes.
pub async fn run<F>(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: &Limits,
    shutdown: F,
) -> Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let acceptor = tls.map(TlsAcceptor::from);
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // connections accepted and waiting for a place (bounded like the places themselves)
    let waiting = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, tls = acceptor.is_some(), "blindsight server listening");
    }
    let registry = Registry::new(limits.max_connections_per_address);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // out of descriptors, say: back off instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(waiting) = waiting.clone().try_acquire_owned() else {
            tracing::info!(%peer, "too many connections waiting for a place; closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let conn = Accepted {
            stream,
            peer,
            app: app.clone(),
            http: http.clone(),
            acceptor: acceptor.clone(),
            limits: limits.clone(),
            registry: registry.clone(),
            connections: connections.clone(),
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let Some((slot, permit)) = conn.place().await else {
                return;
            };
            drop(waiting);
            conn.serve(slot, permit, watcher).await;
        });
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "shutting down: finishing requests in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_deadline) => {
            tracing::warn!(deadline_s = limits.shutdown_deadline.as_secs_f64(), "shutdown deadline passed; dropping the remaining connections");
        }
    }
    Ok(())
}

/// A connection accepted and not yet served.
struct Accepted {
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    http: http1::Builder,
    acceptor: Option<TlsAcceptor>,
    limits: Limits,
    registry: Registry,
    connections: Arc<Semaphore>,
}

/// How often a connection waiting for a place looks again.
const PLACE_POLL: Duration = Duration::from_millis(20);

impl Accepted {
    /// A place among its network's and a permit of the connection limit, evicting idle
    /// connections to make room; `None` (the connection is closed) if none came within
    /// `header_timeout`.
    async fn place(&self) -> Option<(Slot, OwnedSemaphorePermit)> {
        let ip: IpAddr = self.peer.ip();
        let deadline = tokio::time::Instant::now() + self.limits.header_timeout;
        // one idle connection is asked to go per place waited for; it closes within a poll
        let mut asked = false;
        let slot = loop {
            if let Some(slot) = self.registry.admit(ip) {
                break slot;
            }
            if !asked {
                if !self.registry.evict_for(ip, false) {
                    tracing::info!(peer = %self.peer, "too many busy connections from this network; closed");
                    return None;
                }
                asked = true;
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(PLACE_POLL).await;
        };
        let mut asked = false;
        let permit = loop {
            if let Ok(p) = self.connections.clone().try_acquire_owned() {
                break p;
            }
            if !asked {
                asked = self.registry.evict_for(ip, true);
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::info!(peer = %self.peer, "connection limit reached and nothing idle to close; closed");
                return None;
            }
            tokio::time::sleep(PLACE_POLL).await;
        };
        Some((slot, permit))
    }

    /// Serves HTTP/1.1 on the connection (after TLS, if any) until it closes.
    async fn serve(
        self,
        slot: Slot,
        permit: OwnedSemaphorePermit,
        watcher: hyper_util::server::graceful::Watcher,
    ) {
        let _held = permit;
        let peer = self.peer;
        let connection = slot.connection().clone();
        // every request marks the connection busy until its response body is sent
        let app = self.app;
        let tracked = connection.clone();
        let service = tower::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = tracked.request();
            let app = app.clone();
            async move {
                let response = app.oneshot(req).await?;
                Ok::<_, std::convert::Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        });
        let service = TowerToHyperService::new(service);
        let limits = &self.limits;
        let stream: Box<dyn Transport> = match self.acceptor {
            None => Box::new(self.stream),
            Some(acceptor) => {
                match tokio::time::timeout(limits.header_timeout, acceptor.accept(self.stream))
                    .await
                {
                    Ok(Ok(tls)) => Box::new(tls),
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%peer, "TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        let io = ConnectionIo::new(
            stream,
            limits.write_timeout,
            limits.min_write_rate,
            Some(connection),
        );
        let served = watcher
            .watch(self.http.serve_connection(TokioIo::new(io), service))
            .await;
        if let Err(e) = served {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
        drop(slot);
    }
}

/// A connection's byte stream: plain TCP or TLS over it.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// A connection whose writes must keep up a rolling minimum rate once they first block:
/// the time its writes spend blocked (the client not reading) may not pass
/// `grace + written / min_rate`, where `written` counts the bytes written since the first
/// block (what filled the socket buffers before it earns nothing). So a client that stops
/// reading loses its connection after `grace`, and one that reads a few bytes now and then
/// (a trickling reader) soon after, once its rate is below `min_rate`; either would
/// otherwise hold the connection and its response buffer for as long as it likes. Time
/// spent idle between requests is not blocked time.
///
/// Its reads end (EOF) once its [`Connection`] is asked to go while idle, so that the HTTP
/// layer closes it as if the client had; its blocked writes mark the connection busy.
struct ConnectionIo<S> {
    inner: S,
    grace: Duration,
    min_rate: u64,
    /// Whether a write has blocked yet.
    ever_blocked: bool,
    /// Bytes written since the first block.
    written: u64,
    /// Time writes spent blocked, not counting the current block.
    blocked: Duration,
    /// The current block: when it started, and when it fails.
    stalled: Option<(tokio::time::Instant, Pin<Box<tokio::time::Sleep>>)>,
    /// The connection's place in the registry (none in tests of the rate alone).
    connection: Option<Arc<Connection>>,
}

impl<S> ConnectionIo<S> {
    fn new(inner: S, grace: Duration, min_rate: u64, connection: Option<Arc<Connection>>) -> Self {
        Self {
            inner,
            grace,
            min_rate: min_rate.max(1),
            ever_blocked: false,
            written: 0,
            blocked: Duration::ZERO,
            stalled: None,
            connection,
        }
    }

    /// The blocked time the bytes written so far allow.
    fn allowed(&self) -> Duration {
        self.grace.saturating_add(Duration::from_secs_f64(
            self.written as f64 / self.min_rate as f64,
        ))
    }

    /// Turns a pending write into an error once the connection's blocked time passes what
    /// its bytes allow.
    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Some(c) = &self.connection {
            c.set_write_blocked(r.is_pending());
        }
        if r.is_ready() {
            if let Some((since, _)) = self.stalled.take() {
                self.blocked = self.blocked.saturating_add(since.elapsed());
            }
            return r;
        }
        self.ever_blocked = true;
        let left = self.allowed().saturating_sub(self.blocked);
        let (_, sleep) = self.stalled.get_or_insert_with(|| {
            let now = tokio::time::Instant::now();
            (now, Box::pin(tokio::time::sleep_until(now + left)))
        });
        if sleep.as_mut().poll(cx).is_ready() {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read its response slower than the minimum rate",
            )))
        } else {
            Poll::Pending
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnectionIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        // evicted while waiting for input: the input ends
        match &this.connection {
            Some(c) if r.is_pending() && c.evicted(cx.waker()) => Poll::Ready(Ok(())),
            _ => r,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ConnectionIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && this.ever_blocked
        {
            this.written = this.written.saturating_add(n as u64);
        }
        this.check(cx, r)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes `total` bytes through a [`ConnectionIo`] (grace 200 ms, 1 MiB/s) into a pipe
    /// of 64 KiB that a reader empties `chunk` bytes every `every` (or never); returns
    /// whether the writes failed, and after how long.
    async fn write_to_reader(
        chunk: Option<usize>,
        every: Duration,
        total: usize,
    ) -> (bool, Duration) {
        let (server, mut client) = tokio::io::duplex(64 << 10);
        let mut w = ConnectionIo::new(server, Duration::from_millis(200), 1 << 20, None);
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; chunk.unwrap_or(1)];
            if chunk.is_none() {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            loop {
                match client.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => tokio::time::sleep(every).await,
                }
            }
        });
        let started = tokio::time::Instant::now();
        let data = vec![7u8; 16 << 10];
        let mut failed = false;
        let mut sent = 0;
        while sent < total {
            if w.write_all(&data).await.is_err() {
                failed = true;
                break;
            }
            sent += data.len();
        }
        reader.abort();
        (failed, started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_below_the_minimum_rate_is_cut_off_and_one_above_is_not() {
        // 4 KiB every 10 ms (400 KiB/s, always some progress): cut off, soon
        let (failed, took) =
            write_to_reader(Some(4 << 10), Duration::from_millis(10), 64 << 20).await;
        assert!(failed && took < Duration::from_secs(2), "{failed} {took:?}");
        // a reader that stops: cut off after the grace
        let (failed, took) = write_to_reader(None, Duration::ZERO, 64 << 20).await;
        assert!(failed && took < Duration::from_secs(1), "{failed} {took:?}");
        // 64 KiB every 10 ms (6.4 MiB/s): served in full
        let (failed, took) =
            write_to_reader(Some(64 << 10), Duration::from_millis(10), 8 << 20).await;
        assert!(!failed, "{took:?}");
    }
}
