//! Keep-alive HTTP/1.1 connections to `http://` origins, one pool per worker and transport.
//!
//! Each connection is a `hyper::client::conn::http1` sender whose connection task runs on the
//! worker that dialled it, and it is only ever checked out by that worker, so sending a request
//! is a direct hand-over to a task on the same thread (no shared client, no extra task per
//! request). The locks below are never contended: one worker touches its own pool.
//!
//! A connection goes back to the pool only once the response body has been read to its end and
//! the connection can take another request; a response that is dropped half-read closes its
//! connection instead. Idle connections are closed after the transport's idle timeout, and a
//! host keeps at most `max_idle` of them (Go's `MaxIdleConnsPerHost`).

use std::collections::{HashMap, VecDeque};
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::body::ProxyBody;

/// How a pool dials and how long it keeps idle connections.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Idle connections kept per host (0: none, every request dials).
    pub max_idle: usize,
    /// How long a connection may stay idle before it is closed.
    pub idle_timeout: Duration,
    /// Time allowed to open the TCP connection.
    pub dial_timeout: Duration,
    /// TCP keep-alive probe interval on origin connections.
    pub tcp_keepalive: Duration,
}

/// Why a request could not be sent or answered.
#[derive(Debug)]
pub enum PoolError {
    /// The TCP connection could not be opened (a dial timeout is an `io::ErrorKind::TimedOut`).
    Connect(std::io::Error),
    /// The connection failed during the HTTP exchange.
    Http(hyper::Error),
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Connect(_) => f.write_str("cannot connect"),
            PoolError::Http(_) => f.write_str("request failed"),
        }
    }
}

impl StdError for PoolError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PoolError::Connect(e) => Some(e),
            PoolError::Http(e) => Some(e),
        }
    }
}

/// One worker's HTTP/1.1 connections of one transport, by origin address.
#[derive(Debug)]
pub struct Pool {
    settings: PoolSettings,
    hosts: Mutex<HashMap<Authority, Arc<Host>>>,
}

/// Idle connections to one origin address.
#[derive(Debug)]
struct Host {
    settings: PoolSettings,
    state: Mutex<HostState>,
}

#[derive(Debug, Default)]
struct HostState {
    /// Oldest first; checkout takes the newest, which is the least likely to have been closed.
    idle: VecDeque<Idle>,
    /// Whether a task is closing this host's expired connections.
    reaping: bool,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

impl Pool {
    /// An empty pool.
    pub fn new(settings: PoolSettings) -> Self {
        Self {
            settings,
            hosts: Mutex::default(),
        }
    }

    /// Sends `request` (origin-form URI, Host set) to `authority` and returns the response, whose
    /// body hands the connection back to the pool once read to the end.
    ///
    /// A request that a reused connection could not take (the origin closed it while idle, and
    /// nothing was written) is sent again on a new connection, once.
    pub async fn send(
        &self,
        authority: &Authority,
        request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, PoolError> {
        let host = self.host(authority);
        let mut request = request;
        if let Some(mut sender) = host.checkout().await {
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(host.wrap(sender, response)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => {
                        tracing::debug!(error = %error.error(), "pooled connection closed; dialling a new one");
                        request = unsent;
                    }
                    None => return Err(PoolError::Http(error.into_error())),
                },
            }
        }
        let mut sender = self.connect(authority).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(PoolError::Http)?;
        Ok(host.wrap(sender, response))
    }

    fn host(&self, authority: &Authority) -> Arc<Host> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(host) = hosts.get(authority) {
            return host.clone();
        }
        let host = Arc::new(Host {
            settings: self.settings,
            state: Mutex::default(),
        });
        hosts.insert(authority.clone(), host.clone());
        host
    }

    /// Opens a connection and starts its connection task on the current worker.
    async fn connect(&self, authority: &Authority) -> Result<SendRequest<ProxyBody>, PoolError> {
        let stream = tokio::time::timeout(self.settings.dial_timeout, dial(authority))
            .await
            .map_err(|_| {
                PoolError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("dial timeout ({:?})", self.settings.dial_timeout),
                ))
            })?
            .map_err(PoolError::Connect)?;
        // Requests are written whole; Nagle would only delay the next small one.
        let _ = stream.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(self.settings.tcp_keepalive)
            .with_interval(self.settings.tcp_keepalive);
        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Http)?;
        tokio::spawn(async move {
            // Upgrades: the connection hands its socket over to the 101 response's `OnUpgrade`.
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "origin connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Connects to the first address of `authority` that accepts (port 80 when none is given).
async fn dial(authority: &Authority) -> std::io::Result<TcpStream> {
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host();
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return TcpStream::connect(SocketAddr::new(ip, port)).await;
    }
    let mut last = None;
    for address in tokio::net::lookup_host((host, port)).await? {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("`{host}` has no address"),
        )
    }))
}

impl Host {
    /// The newest idle connection that can take a request, if any.
    async fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        loop {
            let mut idle = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.idle.pop_back()?
            };
            if idle.since.elapsed() >= self.settings.idle_timeout || idle.sender.is_closed() {
                continue;
            }
            if idle.sender.is_ready() || idle.sender.ready().await.is_ok() {
                return Some(idle.sender);
            }
        }
    }

    /// Wraps a response so that reading its body to the end returns `sender` to the pool.
    fn wrap(
        self: &Arc<Self>,
        sender: SendRequest<ProxyBody>,
        response: Response<Incoming>,
    ) -> Response<ProxyBody> {
        // A switched connection belongs to the tunnel now; it is never reused.
        let keep = (response.status() != http::StatusCode::SWITCHING_PROTOCOLS
            && self.settings.max_idle > 0)
            .then(|| (sender, self.clone()));
        let (parts, body) = response.into_parts();
        let body = PooledBody { body, keep };
        Response::from_parts(parts, ProxyBody::new(body))
    }

    /// Puts a connection whose exchange is complete back into the pool.
    fn release(self: Arc<Self>, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        // Without a runtime (shutting down) there is no one to drive or reap the connection.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if sender.is_ready() {
            self.push(sender, &runtime);
        } else {
            // The connection task has not yet seen the end of the exchange (rare: it normally
            // has by the time the body ends). Wait for it off the request path, bounded.
            let limit = self.settings.idle_timeout;
            let task = runtime.clone();
            runtime.spawn(async move {
                let mut sender = sender;
                if let Ok(Ok(())) = tokio::time::timeout(limit, sender.ready()).await {
                    self.push(sender, &task);
                }
            });
        }
    }

    fn push(self: Arc<Self>, sender: SendRequest<ProxyBody>, runtime: &tokio::runtime::Handle) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.idle.len() >= self.settings.max_idle {
            return;
        }
        state.idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
        if !state.reaping {
            state.reaping = true;
            runtime.spawn(reap(Arc::downgrade(&self), self.settings.idle_timeout));
        }
    }
}

/// Closes a host's connections as they pass the idle timeout; ends when none is left idle or the
/// pool is gone.
async fn reap(host: Weak<Host>, idle_timeout: Duration) {
    let mut wake = Instant::now() + idle_timeout;
    loop {
        tokio::time::sleep_until(wake.into()).await;
        let Some(host) = host.upgrade() else { return };
        let mut state = host.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while state
            .idle
            .front()
            .is_some_and(|idle| now.duration_since(idle.since) >= idle_timeout)
        {
            state.idle.pop_front();
        }
        match state.idle.front() {
            Some(oldest) => wake = oldest.since + idle_timeout,
            None => {
                state.reaping = false;
                return;
            }
        }
    }
}

/// A response body that returns its connection to the pool once read to the end.
struct PooledBody {
    body: Incoming,
    /// The connection and its pool, until the body ends (then released) or fails (then dropped).
    keep: Option<(SendRequest<ProxyBody>, Arc<Host>)>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some((sender, host)) = self.keep.take() {
            host.release(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = super::body::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.keep = None,
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Bodies known empty (HEAD, 204, Content-Length: 0) may never be polled.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}
