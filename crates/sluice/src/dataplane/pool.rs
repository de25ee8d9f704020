//! Keep-alive HTTP/1.1 connections to `http://` origins, one pool per worker and transport.
//!
//! Each connection is a [`Connection`] that the request's own task drives (see
//! [`super::http1`]): no connection task, no channel between the request and its origin. A
//! connection is only ever checked out by the worker that dialled it, so the locks below are
//! never contended.
//!
//! A connection goes back to the pool only once the response body has been read to its end and
//! the connection can take another request; a response that is dropped half-read closes its
//! connection instead. Idle connections are closed after the transport's idle timeout, and a
//! host keeps at most `max_idle` of them (Go's `MaxIdleConnsPerHost`). A request without a body
//! that fails on a reused connection before any answer (the origin closed it while idle) is
//! sent again on a new connection, once, as Go's transport does.
//!
//! `https://` origins go through the same pool with a TLS [`Connector`] when they speak
//! HTTP/1.1, and through an [`H2Pool`] (one shared HTTP/2 connection per host and worker) when
//! ALPN negotiates h2.

use std::collections::{HashMap, VecDeque};
use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::uri::Authority;
use http::{Request, Response};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::body::{self, ProxyBody};
use super::http1::{self, Connection, Delimited, Outgoing, ResponseBody, Stream, Switched};

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
    /// An HTTP/2 connection failed during the exchange.
    Http(hyper::Error),
    /// An HTTP/1.1 exchange failed.
    Exchange(http1::Error),
}

impl std::fmt::Display for PoolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PoolError::Connect(_) => f.write_str("cannot connect"),
            PoolError::Tls(_) => f.write_str("TLS handshake failed"),
            PoolError::Http(_) | PoolError::Exchange(_) => f.write_str("request failed"),
        }
    }
}

impl StdError for PoolError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            PoolError::Connect(e) | PoolError::Tls(e) => Some(e),
            PoolError::Http(e) => Some(e),
            PoolError::Exchange(e) => Some(e),
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

/// One worker's HTTP/1.1 connections of one transport, by origin address.
#[derive(Debug)]
pub struct Pool {
    settings: PoolSettings,
    connector: Connector,
    /// By authority as written in the server's URL (hashed with foldhash: this lookup is on
    /// every request, and SipHash over `Authority`, byte by byte, cost more than the rest of
    /// the checkout).
    hosts: Mutex<HashMap<Box<str>, Arc<Host>, foldhash::fast::RandomState>>,
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
    conn: Connection,
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
    pub async fn send(
        &self,
        authority: &Authority,
        request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, PoolError> {
        let host = self.host(authority);
        let mut outgoing = Outgoing::new(request);
        if let Some(mut conn) = host.checkout(outgoing.has_body()) {
            match http1::exchange(&mut conn, &mut outgoing).await {
                Ok(answer) => return Ok(host.respond(conn, answer)),
                Err(error) if outgoing.replayable(&error) => {
                    tracing::debug!(%error, "pooled connection closed; dialling a new one");
                }
                Err(error) => return Err(PoolError::Exchange(error)),
            }
        }
        let mut conn = self.connect(authority).await?;
        let answer = http1::exchange(&mut conn, &mut outgoing)
            .await
            .map_err(PoolError::Exchange)?;
        Ok(host.respond(conn, answer))
    }

    /// Sends `request` over a connection the caller already opened (a TLS connection whose
    /// ALPN chose HTTP/1.1); the connection joins this pool afterwards.
    pub async fn send_over(
        &self,
        authority: &Authority,
        io: TlsStream<TcpStream>,
        request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, PoolError> {
        let host = self.host(authority);
        let mut conn = Connection::new(Stream::Tls(Box::new(io)));
        let mut outgoing = Outgoing::new(request);
        let answer = http1::exchange(&mut conn, &mut outgoing)
            .await
            .map_err(PoolError::Exchange)?;
        Ok(host.respond(conn, answer))
    }

    fn host(&self, authority: &Authority) -> Arc<Host> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(host) = hosts.get(authority.as_str()) {
            return host.clone();
        }
        let host = Arc::new(Host {
            settings: self.settings,
            state: Mutex::default(),
        });
        hosts.insert(authority.as_str().into(), host.clone());
        host
    }

    /// Opens a connection (TCP, then TLS for `https://`).
    async fn connect(&self, authority: &Authority) -> Result<Connection, PoolError> {
        if let Connector::Broken(reason) = &self.connector {
            return Err(PoolError::Tls(std::io::Error::other(reason.clone())));
        }
        let tcp = dial_tcp(&self.settings, authority, self.connector.default_port()).await?;
        let stream = match &self.connector {
            Connector::Tls(tls) => Stream::Tls(Box::new(tls.handshake(authority, tcp).await?)),
            Connector::Plain | Connector::Broken(_) => Stream::Tcp(tcp),
        };
        Ok(Connection::new(stream))
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
    /// The newest idle connection that can take a request, if any. Before a body (which could
    /// not be sent again) the connection is checked for a close by the origin.
    fn checkout(&self, probe: bool) -> Option<Connection> {
        loop {
            let mut idle = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                state.idle.pop_back()?
            };
            if idle.since.elapsed() >= self.settings.idle_timeout {
                continue;
            }
            if !probe || idle.conn.still_open() {
                return Some(idle.conn);
            }
        }
    }

    /// The response for `answer` read on `conn`: the connection returns to the pool once the
    /// body is read to its end, or becomes the origin side of a tunnel on 101.
    fn respond(
        self: &Arc<Self>,
        mut conn: Connection,
        answer: http1::Answer,
    ) -> Response<ProxyBody> {
        if answer.head.status == http::StatusCode::SWITCHING_PROTOCOLS {
            let mut response = Response::from_parts(answer.head, body::empty());
            response.extensions_mut().insert(Switched::new(conn));
            return response;
        }
        // A small answer read whole with its head: hand the bytes over and the connection back
        // at once (bytes past the answer are a broken origin: its connection is not reused).
        if let Delimited::Length(n) = answer.body {
            if let Ok(n) = usize::try_from(n) {
                if conn.read_buffered() >= n {
                    let data = conn.take_buffered(n);
                    if answer.reusable && conn.read_buffered() == 0 {
                        self.clone().release(conn);
                    }
                    return Response::from_parts(answer.head, body::full(data));
                }
            }
        }
        let host = self.clone();
        let body = ResponseBody::new(conn, &answer, move |conn| host.release(conn));
        Response::from_parts(answer.head, ProxyBody::new(body))
    }

    /// Puts a connection whose exchange is complete back into the pool, if it has room
    /// (`max_idle` 0: never).
    fn release(self: Arc<Self>, mut conn: Connection) {
        // Without a runtime (shutting down) there is no one to reap the connection.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        conn.set_reused();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.idle.len() >= self.settings.max_idle {
            return;
        }
        state.idle.push_back(Idle {
            conn,
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
