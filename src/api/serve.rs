//! Serving HTTP connections: at most `http.max_connections` at once, each closed when a request
//! head is too slow to arrive or the connection stays idle too long, all drained on shutdown.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::tls::TlsFiles;
use crate::config::HttpConfig;
use crate::node::Node;

/// How many connections may be open and how long they may wait.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// connections open at once; more are answered 503 and closed
    pub max_connections: usize,
    /// how long a request head may take from its first byte
    pub header_read_timeout: Duration,
    /// how long a connection may stay open with no request and no bytes moving
    pub idle_timeout: Duration,
}

impl From<&HttpConfig> for ConnectionLimits {
    fn from(http: &HttpConfig) -> Self {
        ConnectionLimits {
            max_connections: http.max_connections,
            header_read_timeout: Duration::from_millis(http.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(http.idle_timeout_ms),
        }
    }
}

/// Serves the node's API on a bound listener until `shutdown` completes, then waits for the
/// connections open then to finish.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = ConnectionLimits::from(&node.config.http);
    let tls = tls_of(&node)?;
    serve_router(listener, super::router(node), limits, tls, shutdown).await
}

/// The node's TLS files, when `http.tls_cert_file` is set; read again on SIGHUP.
fn tls_of(node: &Node) -> io::Result<Option<Arc<TlsFiles>>> {
    let http = &node.config.http;
    if http.tls_cert_file.is_empty() {
        return Ok(None);
    }
    let files = TlsFiles::open(
        std::path::Path::new(&http.tls_cert_file),
        std::path::Path::new(&http.tls_key_file),
    )
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    crate::tls::reload_on_sighup(&files);
    Ok(Some(files))
}

/// Like [`serve`], with `GET /api/v1/cluster` answering from the cluster view.
pub async fn serve_with_cluster(
    listener: TcpListener,
    node: Arc<Node>,
    cluster: tokio::sync::watch::Receiver<Arc<crate::cluster::ClusterView>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = ConnectionLimits::from(&node.config.http);
    let tls = tls_of(&node)?;
    let app = super::router_with_cluster(node, Some(cluster));
    serve_router(listener, app, limits, tls, shutdown).await
}

/// Serves a router on a bound listener with the given limits (over TLS when `tls` is given)
/// until `shutdown` completes.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<TlsFiles>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    // one permit per open connection; all of them back means every connection has ended
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own timer would start when the connection waits for a request, which makes it
    // an idle timeout too; the watchdog below starts it at the head's first byte instead
    builder.header_read_timeout(None);
    let refusal = full_answer();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = ACCEPT_BACKOFF_MIN;
                a
            }
            Err(e) => {
                // out of file descriptors and the like: wait for some to free up
                tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "cannot accept a connection");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, max = limits.max_connections, "connection refused: too many open");
            // a new socket's send buffer is empty: the short answer fits without waiting
            let _ = stream.try_write(&refusal);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            app: app.clone(),
            builder: builder.clone(),
            limits,
            peer,
            stop_seen: stop_seen.clone(),
        };
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            match acceptor {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    // the handshake gets the time a request head gets
                    let shaken =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream))
                            .await;
                    match shaken {
                        Ok(Ok(tls)) => connection.serve(tls).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls handshake failed"),
                        Err(_) => tracing::debug!(%peer, "tls handshake too slow"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// What serving one connection needs.
struct Connection {
    app: Router,
    builder: hyper::server::conn::http1::Builder,
    limits: ConnectionLimits,
    peer: std::net::SocketAddr,
    stop_seen: tokio::sync::watch::Receiver<bool>,
}

impl Connection {
    /// Serves requests on `stream` until it closes, expires or the server stops.
    async fn serve<T>(mut self, stream: T)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (peer, limits) = (self.peer, self.limits);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            activity: Arc::clone(&activity),
        });
        let service = Tracked {
            inner: TowerToHyperService::new(self.app),
            activity: Arc::clone(&activity),
            peer,
        };
        let connection = self.builder.serve_connection(io, service);
        tokio::pin!(connection);
        let mut stopping = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    break;
                }
                why = activity.expired(limits) => {
                    tracing::debug!(%peer, why, "connection closed");
                    break;
                }
                _ = self.stop_seen.wait_for(|s| *s), if !stopping => {
                    // finish the request in progress, take no other
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// First pause after a failed accept; doubled on each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after a failed accept.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The whole answer to a connection over the limit: 503, JSON, close.
fn full_answer() -> Vec<u8> {
    let body = serde_json::json!({
        "error": "the node has as many connections open as it may (http.max_connections); retry later"
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What one connection is doing, shared by its socket, its service and its watchdog.
#[derive(Debug)]
struct Activity {
    /// when the connection opened; the times below are milliseconds since
    opened: Instant,
    /// requests being answered now
    busy: AtomicUsize,
    /// when bytes were last written or a request last ended (the opening at first)
    last_active_ms: AtomicU64,
    /// when the first byte of the next request head came, plus one; 0 while none came
    head_started_ms: AtomicU64,
    /// wakes the watchdog when a head starts, whose deadline is nearer than the idle one
    head_began: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            busy: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(0),
            head_began: tokio::sync::Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    /// Bytes came: between requests they start the next head.
    fn read(&self) {
        if self.busy.load(Ordering::Acquire) == 0 {
            let now = self.now_ms() + 1;
            let began = self
                .head_started_ms
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            if began {
                self.head_began.notify_one();
            }
        }
    }

    fn wrote(&self) {
        self.last_active_ms.store(self.now_ms(), Ordering::Release);
    }

    /// A request's head is complete and its answer begins.
    fn begin(&self) {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Release);
    }

    /// A request's answer is made.
    fn end(&self) {
        self.last_active_ms.store(self.now_ms(), Ordering::Release);
        self.busy.fetch_sub(1, Ordering::AcqRel);
    }

    /// Resolves once the connection has waited too long for a request head, or sat idle.
    async fn expired(&self, limits: ConnectionLimits) -> &'static str {
        let header = limits.header_read_timeout.as_millis() as u64;
        let idle = limits.idle_timeout.as_millis() as u64;
        loop {
            let now = self.now_ms();
            let (deadline, why) = if self.busy.load(Ordering::Acquire) > 0 {
                // a request being answered: its body has its own timeout; look again later
                (now + header.min(idle), None)
            } else {
                match self.head_started_ms.load(Ordering::Acquire) {
                    0 => (
                        self.last_active_ms.load(Ordering::Acquire) + idle,
                        Some("idle too long"),
                    ),
                    started => (started - 1 + header, Some("request head too slow")),
                }
            };
            match why {
                Some(why) if now >= deadline => return why,
                _ => {
                    let wait = Duration::from_millis(deadline.saturating_sub(now).max(1));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.head_began.notified() => {}
                    }
                }
            }
        }
    }
}

/// Ends a request's answer when dropped, whether it finished or was abandoned.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The router's service, counting the requests being answered on its connection.
struct Tracked<S> {
    /// the router as a hyper service
    inner: S,
    /// the connection's activity
    activity: Arc<Activity>,
    /// the caller's address, given to every request as `ConnectInfo`
    peer: std::net::SocketAddr,
}

impl<S, B> hyper::service::Service<hyper::Request<B>> for Tracked<S>
where
    S: hyper::service::Service<hyper::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, mut request: hyper::Request<B>) -> Self::Future {
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        self.activity.begin();
        let busy = Busy(Arc::clone(&self.activity));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let result = answer.await;
            drop(busy);
            result
        })
    }
}

/// A socket that tells its connection's [`Activity`] when bytes move.
struct Watched<T> {
    /// the accepted socket (or its TLS session)
    inner: T,
    /// the connection's activity
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(header_ms: u64, idle_ms: u64) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 1,
            header_read_timeout: Duration::from_millis(header_ms),
            idle_timeout: Duration::from_millis(idle_ms),
        }
    }

    #[tokio::test]
    async fn idle_and_slow_heads_expire_busy_connections_do_not() {
        let a = Activity::new();
        assert_eq!(a.expired(limits(50, 300)).await, "idle too long");
        assert!(a.opened.elapsed() >= Duration::from_millis(300));

        let a = Activity::new();
        a.read();
        assert_eq!(a.expired(limits(50, 300)).await, "request head too slow");
        assert!(a.opened.elapsed() < Duration::from_millis(300));

        let a = Arc::new(Activity::new());
        a.read();
        a.begin();
        let watch = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.expired(limits(50, 300)).await }
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!watch.is_finished(), "a request being answered is not idle");
        a.end();
        assert_eq!(watch.await.unwrap(), "idle too long");
    }
}
