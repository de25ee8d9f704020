//! Entry points: listening sockets that serve HTTP/1.1 ([`super::downstream`]) and HTTP/2
//! (hyper's; h2c with prior knowledge on cleartext, ALPN `h2` on TLS), hand each request to
//! [`super::request::handle`], and drain on shutdown.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::body::boxed;
use super::downstream::{self, Io, Limits};
use super::forwarded::ForwardedPolicy;
use super::http1::READ_SIZE;
use super::request::{handle, Connection, Shared};
use crate::tls::acceptor::{self, TlsInfo};

/// Settings of one entry point, taken from the static configuration.
#[derive(Debug, Clone)]
pub struct EntryPointSettings {
    pub name: String,
    pub address: String,
    pub forwarded: ForwardedPolicy,
    /// Time allowed to receive a request's headers (`respondingTimeouts.readTimeout`; None: no limit).
    pub read_timeout: Option<Duration>,
    /// Time a kept-alive connection may wait for its next request
    /// (`respondingTimeouts.idleTimeout`; None: no limit).
    pub idle_timeout: Option<Duration>,
    /// How long in-flight requests may take to finish after shutdown starts (`lifeCycle.graceTimeOut`).
    pub grace: Duration,
}

/// A bound entry point, ready to serve: one listening socket, for one worker.
pub struct EntryPoint {
    settings: EntryPointSettings,
    listener: std::net::TcpListener,
}

/// Why an entry point could not start.
#[derive(Debug, thiserror::Error)]
#[error("entry point `{name}`: cannot listen on `{address}`: {source}")]
pub struct BindError {
    pub name: String,
    pub address: String,
    #[source]
    pub source: std::io::Error,
}

impl EntryPoint {
    /// Binds the entry point's address (`:8000` means every interface, as in Traefik) once per
    /// worker. The sockets share the port through SO_REUSEPORT, so the kernel spreads new
    /// connections over the workers and no worker ever hands a connection to another.
    pub fn bind(settings: EntryPointSettings, workers: usize) -> Result<Vec<Self>, BindError> {
        let fail = |source| BindError {
            name: settings.name.clone(),
            address: settings.address.clone(),
            source,
        };
        let written = if settings.address.starts_with(':') {
            format!("0.0.0.0{}", settings.address)
        } else {
            settings.address.clone()
        };
        let mut address: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&written)
            .map_err(fail)?
            .next()
            .ok_or_else(|| {
                fail(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no address",
                ))
            })?;
        let mut bound = Vec::with_capacity(workers);
        for _ in 0..workers.max(1) {
            let listener = listen(address).map_err(fail)?;
            // With port 0 the first socket picks the port; the others join it.
            address = listener.local_addr().map_err(fail)?;
            bound.push(Self {
                settings: settings.clone(),
                listener,
            });
        }
        Ok(bound)
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` turns true, then stops accepting and lets open requests finish
    /// within the grace period.
    pub async fn serve(self, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
        let EntryPoint { settings, listener } = self;
        let name: Arc<str> = Arc::from(settings.name.as_str());
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(entry_point = %name, %error, "cannot serve");
                return;
            }
        };
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new());
        let limits = Limits {
            read_timeout: settings.read_timeout,
            idle_timeout: settings.idle_timeout,
        };
        // Every connection task holds a clone; the drain waits for the count to fall back to one.
        let open = Arc::new(());

        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stopped(&mut shutdown) => break,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(entry_point = %name, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let task = Accepted {
                name: name.clone(),
                peer,
                trusted: settings.forwarded.trusts(peer.ip()),
                hello_timeout: settings.read_timeout.unwrap_or(HELLO_TIMEOUT),
                h2: h2.clone(),
                limits,
                shared: shared.clone(),
                stop: shutdown.clone(),
            };
            let open = open.clone();
            tokio::spawn(async move {
                let _open = open;
                task.serve(stream).await;
            });
        }

        drop(listener);
        tracing::info!(entry_point = %name, "stopped accepting; draining open connections");
        let drained = async {
            while Arc::strong_count(&open) > 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(settings.grace, drained).await.is_err() {
            tracing::warn!(entry_point = %name, grace = ?settings.grace, "grace period over; closing remaining connections");
        }
    }
}

/// How long a new connection may take to send its first bytes (or TLS ClientHello) when the
/// entry point sets no `readTimeout`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// One accepted connection and what serving it needs.
struct Accepted {
    name: Arc<str>,
    peer: SocketAddr,
    trusted: bool,
    hello_timeout: Duration,
    h2: hyper::server::conn::http2::Builder<TokioExecutor>,
    limits: Limits,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

impl Accepted {
    /// Tells TLS from cleartext by the first byte, as Traefik does on every entry point, then
    /// serves HTTP on the plain stream or after the handshake.
    async fn serve(self, stream: TcpStream) {
        let mut first = [0u8; 1];
        let tls = match tokio::time::timeout(self.hello_timeout, stream.peek(&mut first)).await {
            Ok(Ok(1)) => first[0] == TLS_HANDSHAKE_RECORD,
            // Closed before sending anything, an error, or silence: nothing to serve.
            _ => return,
        };
        if !tls {
            let connection = self.connection(None);
            self.serve_http(stream, connection, false).await;
            return;
        }
        let runtime = self.shared.runtime.load_full();
        let challenges = self
            .shared
            .challenges
            .as_deref()
            .map(|c| c as &dyn crate::tls::acceptor::AlpnChallenges);
        let handshake = acceptor::accept(
            stream,
            &runtime.tls,
            &self.name,
            challenges,
            &self.shared.tls.sessions,
        );
        let (stream, info) = match tokio::time::timeout(self.hello_timeout, handshake).await {
            Ok(Ok(done)) => done,
            Ok(Err(error)) => {
                tracing::debug!(entry_point = %self.name, client = %self.peer, %error, "TLS connection not served");
                return;
            }
            Err(_) => {
                tracing::debug!(entry_point = %self.name, client = %self.peer, "TLS handshake timed out");
                return;
            }
        };
        drop(runtime);
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let connection = self.connection(Some(Arc::new(info)));
        // Boxed, like the HTTP/2 path below: every connection's task reserves room for its
        // largest state, and cleartext HTTP/1.1 should not pay for TLS's.
        Box::pin(self.serve_http(stream, connection, h2)).await;
    }

    fn connection(&self, tls: Option<Arc<TlsInfo>>) -> Arc<Connection> {
        Arc::new(Connection {
            entry_point: self.name.clone(),
            peer: self.peer,
            peer_ip: http::HeaderValue::from_str(&self.peer.ip().to_string())
                .unwrap_or(http::HeaderValue::from_static("")),
            trusted: self.trusted,
            tls: tls.is_some(),
            tls_info: tls,
        })
    }

    /// Serves HTTP/1.1 or HTTP/2 on one connection until it ends or shutdown drains it.
    /// Without ALPN's word, HTTP/2 is told by its connection preface.
    async fn serve_http<I: Io>(self, mut io: I, connection: Arc<Connection>, mut h2: bool) {
        let mut read = BytesMut::new();
        if !h2 {
            while read.len() < PREFACE.len() && PREFACE.starts_with(&read) {
                read.reserve(READ_SIZE);
                match tokio::time::timeout(self.hello_timeout, io.read_buf(&mut read)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            }
            h2 = read.starts_with(PREFACE);
        }
        if !h2 {
            downstream::serve(
                io,
                read,
                &self.shared,
                &connection,
                self.limits,
                self.stop.clone(),
            )
            .await;
            return;
        }
        let shared = self.shared.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                let connection = connection.clone();
                async move {
                    let request = request.map(boxed);
                    Ok::<_, Infallible>(handle(&shared, &connection, request, None).await)
                }
            });
        let io = TokioIo::new(Prefixed {
            prefix: read.freeze(),
            io,
        });
        let serving = self.h2.serve_connection(io, service);
        let mut stop = self.stop.clone();
        let mut serving = Box::pin(serving);
        let result = tokio::select! {
            result = serving.as_mut() => result,
            _ = stopped(&mut stop) => {
                // Finish the streams in flight, then close.
                serving.as_mut().graceful_shutdown();
                serving.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, "connection ended with an error");
        }
    }
}

/// What an HTTP/2 client sends first (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream that yields bytes already read from it before reading it further.
struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A non-blocking listening socket with SO_REUSEADDR and SO_REUSEPORT.
fn listen(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Resolves once shutdown has been asked for (or the sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
