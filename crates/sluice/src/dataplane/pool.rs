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
//!
//! `https://` origins go through the same pool with a TLS [`Connector`] when they speak
//! HTTP/1.1, and through an [`H2Pool`] (one shared HTTP/2 connection per host and worker) when
//! ALPN negotiates h2.

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
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

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
    /// The TLS handshake failed (the rustls error is the source) or timed out.
    Tls(std::io::Error),
    /// The connection failed during the HTTP exchange.
    Http(hyper::Error),
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Connect(_) => f.write_str("cannot connect"),
            PoolError::Tls(_) => f.write_str("TLS handshake failed"),
            PoolError::Http(_) => f.write_str("request failed"),
        }
    }
}

impl StdError for PoolError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PoolError::Connect(e) | PoolError::Tls(e) => Some(e),
            PoolError::Http(e) => Some(e),
        }
    }
}

/// Go's fixed `TLSHandshakeTimeout` of Traefik's transports.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a pool puts on top of the TCP connections it dials.
#[derive(Debug, Clone)]
pub enum Connector {
    /// Cleartext (`http://`).
    Plain,
    /// TLS (`https://`).
    Tls(TlsConnector),
    /// A transport whose TLS configuration could not be built: every dial fails with this.
    Broken(String),
}

impl Connector {
    fn default_port(&self) -> u16 {
        match self {
            Connector::Plain => 80,
            Connector::Tls(_) | Connector::Broken(_) => 443,
        }
    }
}

/// A TLS client configuration and the name to present and verify.
#[derive(Debug, Clone)]
pub struct TlsConnector {
    /// Built once per transport (roots, client certificate, versions, ALPN).
    pub config: Arc<ClientConfig>,
    /// `serverName`; None: the origin's host.
    pub server_name: Option<ServerName<'static>>,
}

impl TlsConnector {
    /// Runs the TLS handshake on `tcp`, bounded by the TLS handshake timeout.
    async fn handshake(
        &self,
        authority: &Authority,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, PoolError> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => {
                crate::runtime::transport::tls::host_server_name(authority.host()).map_err(|e| {
                    PoolError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                })?
            }
        };
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, connector.connect(name, tcp))
            .await
            .map_err(|_| {
                PoolError::Tls(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("TLS handshake timeout ({TLS_HANDSHAKE_TIMEOUT:?})"),
                ))
            })?
            .map_err(PoolError::Tls)
    }
}

/// Opens a TCP connection to `authority` within the dial timeout, with Sluice's socket options.
async fn dial_tcp(
    settings: &PoolSettings,
    authority: &Authority,
    default_port: u16,
) -> Result<TcpStream, PoolError> {
    let stream = tokio::time::timeout(settings.dial_timeout, dial(authority, default_port))
        .await
        .map_err(|_| {
            PoolError::Connect(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("dial timeout ({:?})", settings.dial_timeout),
            ))
        })?
        .map_err(PoolError::Connect)?;
    // Requests are written whole; Nagle would only delay the next small one.
    let _ = stream.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(settings.tcp_keepalive)
        .with_interval(settings.tcp_keepalive);
    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
    Ok(stream)
}

/// Starts an HTTP/1.1 connection over `io`, its connection task on the current worker.
async fn handshake_http1<I>(io: I) -> Result<SendRequest<ProxyBody>, PoolError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
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

/// One worker's HTTP/1.1 connections of one transport, by origin address.
#[derive(Debug)]
pub struct Pool {
    settings: PoolSettings,
    connector: Connector,
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
    /// An empty pool whose connections are opened with `connector`.
    pub fn new(settings: PoolSettings, connector: Connector) -> Self {
        Self {
            settings,
            connector,
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

    /// Sends `request` over a connection the caller already opened (a TLS connection whose
    /// ALPN chose HTTP/1.1); the connection joins this pool afterwards.
    pub async fn send_over<I>(
        &self,
        authority: &Authority,
        io: I,
        request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, PoolError>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let host = self.host(authority);
        let mut sender = handshake_http1(io).await?;
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
        if let Connector::Broken(reason) = &self.connector {
            return Err(PoolError::Tls(std::io::Error::other(reason.clone())));
        }
        let tcp = dial_tcp(&self.settings, authority, self.connector.default_port()).await?;
        match &self.connector {
            Connector::Tls(tls) => handshake_http1(tls.handshake(authority, tcp).await?).await,
            Connector::Plain | Connector::Broken(_) => handshake_http1(tcp).await,
        }
    }
}

/// Connects to the first address of `authority` that accepts (`default_port` when none is
/// given).
async fn dial(authority: &Authority, default_port: u16) -> std::io::Result<TcpStream> {
    let port = authority.port_u16().unwrap_or(default_port);
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

/// HTTP/2 keep-alive of origin connections (`readIdleTimeout`, `pingTimeout`).
#[derive(Debug, Clone, Copy)]
pub struct H2Settings {
    /// Ping a connection that received nothing for this long (None: never).
    pub keep_alive_interval: Option<Duration>,
    /// Close the connection when a ping is not answered within this time.
    pub keep_alive_timeout: Duration,
}

/// One worker's `https://` connections of one transport that may negotiate HTTP/2.
///
/// The first request to a host dials with ALPN `h2, http/1.1`. If the origin picks h2, that
/// connection is kept and shared by every later request (HTTP/2 multiplexes); if it picks
/// HTTP/1.1, the request goes over that connection through the HTTP/1.1 pool, and the host is
/// remembered as HTTP/1.1-only so later requests go straight to that pool.
#[derive(Debug)]
pub struct H2Pool {
    settings: PoolSettings,
    h2: H2Settings,
    tls: TlsConnector,
    hosts: Mutex<HashMap<Authority, H2Host>>,
}

#[derive(Debug, Clone)]
enum H2Host {
    Http2(http2::SendRequest<ProxyBody>),
    /// ALPN chose HTTP/1.1 at this time; asked again after the idle timeout.
    Http1(Instant),
}

impl H2Pool {
    /// An empty pool dialling with `tls` (whose ALPN must offer h2).
    pub fn new(settings: PoolSettings, h2: H2Settings, tls: TlsConnector) -> Self {
        Self {
            settings,
            h2,
            tls,
            hosts: Mutex::default(),
        }
    }

    /// Sends `request` (origin-form URI, Host set) to `authority`, over HTTP/2 when the origin
    /// negotiates it, else over HTTP/1.1 through `http1` (a pool of this transport dialling TLS
    /// with ALPN `http/1.1`).
    pub async fn send(
        &self,
        authority: &Authority,
        http1: &Pool,
        request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, PoolError> {
        let known = {
            let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            hosts.get(authority).cloned()
        };
        match known {
            Some(H2Host::Http2(sender)) if !sender.is_closed() => {
                return send_h2(sender, authority, request).await;
            }
            Some(H2Host::Http1(since)) if since.elapsed() < self.settings.idle_timeout => {
                return http1.send(authority, request).await;
            }
            _ => {}
        }
        let tcp = dial_tcp(&self.settings, authority, 443).await?;
        let stream = self.tls.handshake(authority, tcp).await?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
            self.remember(authority, H2Host::Http1(Instant::now()));
            return http1.send_over(authority, stream, request).await;
        }
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(self.h2.keep_alive_interval)
            .keep_alive_timeout(self.h2.keep_alive_timeout);
        let (sender, connection) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Http)?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "origin HTTP/2 connection ended with an error");
            }
        });
        // Concurrent first requests may each dial; the last connection stored is the one
        // shared afterwards, the others close once their request is done.
        self.remember(authority, H2Host::Http2(sender.clone()));
        send_h2(sender, authority, request).await
    }

    fn remember(&self, authority: &Authority, host: H2Host) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.insert(authority.clone(), host);
    }
}

/// Sends a request on an HTTP/2 connection: absolute URI (`:scheme`, `:authority`) whose
/// authority is the Host the request carries, as Go's HTTP/2 transport does with `req.Host`.
async fn send_h2(
    mut sender: http2::SendRequest<ProxyBody>,
    authority: &Authority,
    mut request: Request<ProxyBody>,
) -> Result<Response<ProxyBody>, PoolError> {
    let host = request
        .headers_mut()
        .remove(http::header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .unwrap_or_else(|| authority.clone());
    let mut parts = request.uri().clone().into_parts();
    parts.scheme = Some(http::uri::Scheme::HTTPS);
    parts.authority = Some(host);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|e| {
        PoolError::Connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    })?;
    *request.version_mut() = http::Version::HTTP_2;
    let response = sender
        .send_request(request)
        .await
        .map_err(PoolError::Http)?;
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(parts, super::body::boxed(body)))
}
