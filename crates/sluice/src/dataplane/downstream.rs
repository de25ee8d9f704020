//! HTTP/1.1 toward clients: reading requests off a client connection, handing each to
//! [`super::request::handle`] and writing its answer back, on the connection's own task.
//!
//! This is the mirror of [`super::http1`] on the client side of the proxy. hyper's server runs
//! a dispatcher with its own buffers, a body channel and a timer entry per request; here the
//! request head is parsed in place with httparse (header values share the read buffer), a
//! bodyless request is handled while the socket is watched for the client leaving, and an
//! answer's head goes out in the same write as the body bytes that are ready with it.
//!
//! Message framing follows RFC 9112 section 6 and the choices of Go's server, which Traefik's
//! clients see: a missing Host is a 400, Content-Length and Transfer-Encoding together are a
//! 400, an unknown transfer coding is a 501, an expectation other than `100-continue` is a 417,
//! a head larger than 1 MiB is a 431.

use std::future::{poll_fn, Future};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{oneshot, watch};
use tokio::time::{Instant, Sleep};

use super::body::{empty, BoxError, ProxyBody};
use super::http1::{content_length, poll_fill, tokens, Chunk, Decoded, Outbox, Remaining};
use super::request::{handle, Connection, Shared};
use super::upgrade::{ClientUpgrade, Upgraded};

/// Largest request head accepted: Go's default `MaxHeaderBytes` (1 MiB), as in Traefik.
const MAX_HEAD: usize = 1 << 20;
/// Header fields parsed without allocating; more are parsed into a larger table.
const INLINE_HEADERS: usize = 32;
/// Most header fields accepted in one request head.
const MAX_HEADERS: usize = 512;
/// Bytes read ahead of the request being handled (pipelined requests) before reading pauses.
const MAX_READ_AHEAD: usize = 64 * 1024;
/// Body bytes queued for the client before the body is polled again.
const HIGH_WATER: usize = 64 * 1024;
/// Request body left unread by a handler that is read and dropped to keep the connection
/// (Go's server drains up to 256 KiB the same way).
const MAX_DRAIN: u64 = 256 * 1024;
/// How long draining an unread body, or waiting for a closing client, may take.
const LINGER: Duration = Duration::from_secs(1);
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A client connection's byte stream: TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T> Io for T where T: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

/// The entry point's timeouts (`transport.respondingTimeouts`; None: no limit).
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Time to receive a request's head once it has begun (and the first request's, from
    /// the accept).
    pub read_timeout: Option<Duration>,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout: Option<Duration>,
}

/// Serves HTTP/1.x on `io` until the client closes, a timeout passes, or `stop` turns true
/// (which ends the connection once the request in flight, if any, is answered). `read` holds
/// bytes already read from `io`.
pub async fn serve<I: Io>(
    io: I,
    read: BytesMut,
    shared: &Shared,
    connection: &Connection,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let mut waiter = stop.clone();
    let wait = async move {
        let _ = waiter.wait_for(|stop| *stop).await;
    };
    let mut side = Side::Here(Inbound {
        io,
        read,
        body: Remaining::Done,
        owe_continue: None,
    });
    let mut session = Session {
        limits,
        timer: std::pin::pin!(tokio::time::sleep(limits.read_timeout.unwrap_or(FOREVER))),
        stop: std::pin::pin!(wait),
        signal: stop,
        waiting: false,
        stopped: false,
        first: true,
        out: Outbox::default(),
        head: BytesMut::new(),
    };
    loop {
        let inbound = match &mut side {
            Side::Here(inbound) => inbound,
            // A body still lent out means the handler kept it: the connection cannot go on.
            Side::Lent(_) | Side::Gone => return,
        };
        let head = match session.read_head(inbound).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(Reject(status, reason)) => {
                tracing::debug!(client = %connection.peer, %status, %reason, "malformed request");
                let _ = reject(inbound, status, &reason).await;
                linger(inbound).await;
                return;
            }
        };
        session.first = false;
        let Head {
            parts,
            body,
            mut keep_alive,
            expect_continue,
            upgrade,
        } = head;
        let head_only = parts.method == Method::HEAD;
        let version = parts.version;
        let (upgrade_sender, client_upgrade) = match upgrade {
            true => {
                let (sender, receiver) = oneshot::channel();
                (Some(sender), Some(ClientUpgrade::new(receiver)))
            }
            false => (None, None),
        };

        // A request with a body lends the connection's reading side to that body.
        let request_body = if matches!(body, Remaining::Done) {
            empty()
        } else {
            let Side::Here(mut inbound) = std::mem::replace(&mut side, Side::Gone) else {
                return;
            };
            inbound.body = body;
            inbound.owe_continue = expect_continue.then_some(0);
            let lent = Arc::new(Mutex::new(inbound));
            side = Side::Lent(lent.clone());
            ProxyBody::new(RequestBody(lent))
        };
        let request = Request::from_parts(parts, request_body);

        let answer = {
            let handling = std::pin::pin!(handle(shared, connection, request, client_upgrade));
            match &mut side {
                Side::Here(inbound) => until_client_leaves(inbound, handling).await,
                _ => Some(handling.await),
            }
        };
        // The client went away: dropping the handler logs the 499.
        let Some(response) = answer else { return };

        let status = response.status();
        if status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(sender) = upgrade_sender {
                session.switch(side, response, sender, version).await;
                return;
            }
        }
        // A body the handler did not read to its end is drained (small ones) or ends the
        // connection after this answer.
        if !session.stopped {
            session.stopped = session.stop_requested();
        }
        let unread = side.with(|inbound| inbound.unread()).flatten();
        if unread.is_some_and(|left| left > MAX_DRAIN) {
            keep_alive = false;
        }
        keep_alive &= !session.stopped;
        let framing = match session.encode_head(&response, version, head_only, &mut keep_alive) {
            Ok(framing) => framing,
            Err(reason) => {
                tracing::warn!(client = %connection.peer, %reason, "answer cannot be sent");
                return;
            }
        };
        let head = session.head.split().freeze();
        let (_, body) = response.into_parts();
        if let Err(error) = session.write(&mut side, head, body, framing).await {
            tracing::debug!(client = %connection.peer, %error, "answer not sent whole");
            return;
        }
        side = match side.reclaim() {
            Some(inbound) => Side::Here(inbound),
            None => return,
        };
        let Side::Here(inbound) = &mut side else {
            return;
        };
        if unread.is_some() && keep_alive {
            keep_alive = drain(inbound).await;
        }
        if !keep_alive {
            if unread.is_some() {
                linger(inbound).await;
            } else {
                let _ = inbound.io.shutdown().await;
            }
            return;
        }
    }
}

/// A timeout long enough to mean none.
const FOREVER: Duration = Duration::from_secs(60 * 60 * 24 * 365);

/// The state a connection keeps between requests.
struct Session<'a, S: Future<Output = ()>> {
    limits: Limits,
    /// One timer for the connection's read and idle timeouts, moved only when it fires early.
    timer: Pin<&'a mut Sleep>,
    /// Resolves when shutdown begins; polled once, so that it wakes an idle connection.
    stop: Pin<&'a mut S>,
    /// Whether shutdown began, read without registering anything.
    signal: watch::Receiver<bool>,
    /// Whether `stop` was polled (and will wake the task).
    waiting: bool,
    stopped: bool,
    first: bool,
    out: Outbox,
    /// Where answer heads are encoded (its allocation is reused once a head is written).
    head: BytesMut,
}

/// Why a request is answered by the server itself: status and reason.
#[derive(Debug)]
struct Reject(StatusCode, String);

impl Reject {
    fn bad(reason: impl Into<String>) -> Self {
        Reject(StatusCode::BAD_REQUEST, reason.into())
    }
}

impl<S: Future<Output = ()>> Session<'_, S> {
    /// Whether shutdown has begun (polled without waiting).
    fn stop_requested(&mut self) -> bool {
        *self.signal.borrow()
    }

    /// Reads the next request head. None: the client closed, went quiet past a timeout, or
    /// shutdown began while the connection was idle.
    async fn read_head<I: Io>(&mut self, inbound: &mut Inbound<I>) -> Result<Option<Head>, Reject> {
        // When the wait for this head began and its limit: taken the first time a read blocks.
        let mut due: Option<Option<Instant>> = None;
        poll_fn(|cx| loop {
            if !inbound.read.is_empty() {
                if let Some(head) = parse_head(&mut inbound.read)? {
                    return Poll::Ready(Ok(Some(head)));
                }
                if inbound.read.len() > MAX_HEAD {
                    return Poll::Ready(Err(Reject(
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        format!("request head larger than {MAX_HEAD} bytes"),
                    )));
                }
            }
            let idle = inbound.read.is_empty() && !self.first;
            if idle {
                // The first idle wait registers the task with the shutdown signal; later ones
                // only read it.
                let waiting = std::mem::replace(&mut self.waiting, true);
                if self.stopped
                    || self.stop_requested()
                    || (!waiting && self.stop.as_mut().poll(cx).is_ready())
                {
                    self.stopped = true;
                    return Poll::Ready(Ok(None));
                }
            }
            match inbound.poll_fill(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Ok(None)),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => {}
            }
            let limit = if idle {
                self.limits.idle_timeout.or(self.limits.read_timeout)
            } else {
                self.limits.read_timeout
            };
            let due = *due.get_or_insert_with(|| limit.map(|limit| Instant::now() + limit));
            if let Some(due) = due {
                if expired(self.timer.as_mut(), due, cx) {
                    return Poll::Ready(Ok(None));
                }
            }
            return Poll::Pending;
        })
        .await
    }

    /// Encodes the answer's head into `self.head` and decides how its body is framed.
    fn encode_head(
        &mut self,
        response: &http::Response<ProxyBody>,
        version: Version,
        head_only: bool,
        keep_alive: &mut bool,
    ) -> Result<Framing, String> {
        let status = response.status();
        let out = &mut self.head;
        out.reserve(256);
        out.extend_from_slice(match version {
            Version::HTTP_10 => b"HTTP/1.0 ",
            _ => b"HTTP/1.1 ",
        });
        out.extend_from_slice(status.as_str().as_bytes());
        out.extend_from_slice(b" ");
        out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        let (mut declared, mut dated) = (None, false);
        for (name, value) in response.headers() {
            // Framing and this connection's fate are the server's to say.
            if name == header::TRANSFER_ENCODING
                || (name == header::CONNECTION && status != StatusCode::SWITCHING_PROTOCOLS)
            {
                continue;
            }
            if name == header::CONTENT_LENGTH {
                declared = Some(value);
            } else if name == header::DATE {
                dated = true;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let declared = match declared {
            Some(value) => match content_length(value.as_bytes(), None) {
                Ok(length) => length,
                Err(reason) => {
                    out.clear();
                    return Err(reason);
                }
            },
            None => None,
        };
        let bodiless = head_only
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let body = response.body();
        let framing = if bodiless {
            Framing::None
        } else if let Some(n) = declared {
            Framing::Length(n)
        } else if let Some(n) = body.size_hint().exact() {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
            Framing::Length(n)
        } else if version == Version::HTTP_11 {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        } else {
            *keep_alive = false;
            Framing::UntilClose
        };
        if !dated {
            out.extend_from_slice(b"date: ");
            date::now(|text| out.extend_from_slice(text));
            out.extend_from_slice(b"\r\n");
        }
        if !*keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if version == Version::HTTP_10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Ok(framing)
    }

    /// Writes `head` and streams `body` framed as decided. Body bytes that are ready go out
    /// in the same write as the head.
    async fn write<I: Io>(
        &mut self,
        side: &mut Side<I>,
        head: Bytes,
        body: ProxyBody,
        framing: Framing,
    ) -> Result<(), WriteError> {
        let out = &mut self.out;
        out.push(head);
        let mut body = (framing != Framing::None).then_some(body);
        let mut left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        poll_fn(|cx| loop {
            if let Some(stream) = body.as_mut().filter(|_| out.queued() < HIGH_WATER) {
                match Pin::new(stream).poll_frame(cx) {
                    Poll::Ready(None) => {
                        body = None;
                        match framing {
                            Framing::Length(_) if left > 0 => {
                                return Poll::Ready(Err(WriteError::Short(left)))
                            }
                            Framing::Chunked => out.push_last_chunk(None),
                            _ => {}
                        }
                        continue;
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        match frame.into_data() {
                            Ok(data) if data.is_empty() => {}
                            Ok(data) => match framing {
                                Framing::Length(_) => {
                                    let take =
                                        usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                                    left -= take as u64;
                                    out.push(data.slice(..take));
                                    if take < data.len() {
                                        return Poll::Ready(Err(WriteError::Long));
                                    }
                                }
                                Framing::Chunked => out.push_chunk(data),
                                _ => out.push(data),
                            },
                            Err(frame) => {
                                if let (Framing::Chunked, Ok(trailers)) =
                                    (framing, frame.into_trailers())
                                {
                                    out.push_last_chunk(Some(&trailers));
                                    body = None;
                                }
                            }
                        }
                        continue;
                    }
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(WriteError::Body(error)))
                    }
                    Poll::Pending => {}
                }
            }
            if out.is_empty() {
                return match body {
                    None => Poll::Ready(Ok(())),
                    Some(_) => Poll::Pending,
                };
            }
            ready!(side
                .with(|inbound| out.poll_drain(&mut inbound.io, cx))
                .unwrap_or(Poll::Ready(Err(io::ErrorKind::NotConnected.into()))))
            .map_err(WriteError::Io)?;
            ready!(side
                .with(|inbound| Pin::new(&mut inbound.io).poll_flush(cx))
                .unwrap_or(Poll::Ready(Err(io::ErrorKind::NotConnected.into()))))
            .map_err(WriteError::Io)?;
            if body.is_none() {
                return Poll::Ready(Ok(()));
            }
        })
        .await
    }

    /// Answers 101 and hands the connection, with any bytes the client sent past its request,
    /// to the tunnel waiting on `sender`.
    async fn switch<I: Io>(
        &mut self,
        side: Side<I>,
        response: http::Response<ProxyBody>,
        sender: oneshot::Sender<Upgraded>,
        version: Version,
    ) {
        let Some(mut inbound) = side.reclaim() else {
            return;
        };
        let mut keep = true;
        if self
            .encode_head(&response, version, false, &mut keep)
            .is_err()
        {
            return;
        }
        let head = self.head.split().freeze();
        if inbound.io.write_all(&head).await.is_err() || inbound.io.flush().await.is_err() {
            return;
        }
        let Inbound { io, read, .. } = inbound;
        let _ = sender.send(Upgraded {
            io: Box::new(io),
            read_ahead: read.freeze(),
        });
    }
}

/// Whether `due` has passed, with `timer` set to wake the task at `due` otherwise. The timer is
/// only moved when it would fire late; firing early costs one check and a reset, which is
/// cheaper than resetting it for every request.
fn expired(mut timer: Pin<&mut Sleep>, due: Instant, cx: &mut Context<'_>) -> bool {
    loop {
        if timer.deadline() > due {
            timer.as_mut().reset(due);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if Instant::now() >= due {
            return true;
        }
        timer.as_mut().reset(due);
    }
}

/// How an answer's body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the connection closes (HTTP/1.0 clients, length unknown).
    UntilClose,
}

/// Why an answer could not be written whole.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("writing to the client failed: {0}")]
    Io(#[source] io::Error),
    #[error("the answer's body failed: {0}")]
    Body(#[source] BoxError),
    #[error("the answer's body ended {0} bytes short of its Content-Length")]
    Short(u64),
    #[error("the answer's body is longer than its Content-Length")]
    Long,
}

/// `n` in decimal, written into `buf`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The reading side of a client connection.
struct Inbound<I> {
    io: I,
    /// Bytes read and not used yet.
    read: BytesMut,
    /// What is left of the current request's body.
    body: Remaining,
    /// A `100 Continue` owed to the client, and how much of it is written.
    owe_continue: Option<usize>,
}

impl<I: Io> Inbound<I> {
    /// Reads what the socket has into the buffer; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(&mut self.io, &mut self.read, cx)
    }

    /// How much of the request body is unread (None: all of it was read). A chunked body
    /// counts as `MAX_DRAIN` (its size is unknown).
    fn unread(&self) -> Option<u64> {
        match self.body {
            Remaining::Done => None,
            Remaining::Length(n) => Some(n),
            _ => Some(MAX_DRAIN),
        }
    }

    /// The next frame of the request body.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // The client waits for a go-ahead before it sends the body: give it on first read.
        while let Some(written) = self.owe_continue {
            if written == CONTINUE.len() {
                match ready!(Pin::new(&mut self.io).poll_flush(cx)) {
                    Ok(()) => self.owe_continue = None,
                    Err(e) => return self.fail(e.into()),
                }
                continue;
            }
            match ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[written..])) {
                Ok(0) => return self.fail(io::Error::from(io::ErrorKind::WriteZero).into()),
                Ok(n) => self.owe_continue = Some(written + n),
                Err(e) => return self.fail(e.into()),
            }
        }
        loop {
            match self.body.decode(&mut self.read) {
                Err(e) => return self.fail(e.into()),
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::Frame(frame)) => return Poll::Ready(Some(Ok(frame))),
                Ok(Decoded::NeedMore) => {}
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => {
                    return self.fail(
                        io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the client closed the connection in the middle of the request body",
                        )
                        .into(),
                    )
                }
                Ok(_) => {}
                Err(e) => return self.fail(e.into()),
            }
        }
    }

    fn fail(&mut self, error: BoxError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        // The connection cannot carry another request after a broken body.
        self.body = Remaining::Length(u64::MAX);
        self.owe_continue = None;
        Poll::Ready(Some(Err(error)))
    }
}

/// Where the reading side of the connection is.
enum Side<I> {
    /// With the connection loop.
    Here(Inbound<I>),
    /// Shared with the body of the request being handled.
    Lent(Arc<Mutex<Inbound<I>>>),
    /// Closed.
    Gone,
}

impl<I> Side<I> {
    /// Runs `f` on the reading side wherever it is; None once the connection is closed.
    fn with<R>(&mut self, f: impl FnOnce(&mut Inbound<I>) -> R) -> Option<R> {
        match self {
            Side::Here(inbound) => Some(f(inbound)),
            Side::Lent(shared) => Some(f(&mut shared
                .lock()
                .unwrap_or_else(PoisonError::into_inner))),
            Side::Gone => None,
        }
    }

    /// The reading side back from the request's body, if the handler let go of it.
    fn reclaim(self) -> Option<Inbound<I>> {
        match self {
            Side::Here(inbound) => Some(inbound),
            Side::Lent(shared) => Arc::try_unwrap(shared)
                .ok()
                .map(|m| m.into_inner().unwrap_or_else(PoisonError::into_inner)),
            Side::Gone => None,
        }
    }
}

/// A request body read from the client connection as it is polled.
struct RequestBody<I>(Arc<Mutex<Inbound<I>>>);

impl<I: Io> Body for RequestBody<I> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .poll_body(cx)
    }

    fn is_end_stream(&self) -> bool {
        matches!(
            self.0.lock().unwrap_or_else(PoisonError::into_inner).body,
            Remaining::Done
        )
    }

    fn size_hint(&self) -> SizeHint {
        match self.0.lock().unwrap_or_else(PoisonError::into_inner).body {
            Remaining::Done => SizeHint::with_exact(0),
            Remaining::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// Awaits the handler while watching the client: a client that closes its side before the
/// answer ends the request (None). Bytes it sends meanwhile (the next pipelined request, a
/// WebSocket's first frames) are kept.
async fn until_client_leaves<I: Io, F: Future>(
    inbound: &mut Inbound<I>,
    mut handling: Pin<&mut F>,
) -> Option<F::Output> {
    let mut watching = true;
    poll_fn(|cx| {
        if let Poll::Ready(answer) = handling.as_mut().poll(cx) {
            return Poll::Ready(Some(answer));
        }
        while watching {
            match inbound.poll_fill(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => watching = inbound.read.len() < MAX_READ_AHEAD,
                Poll::Pending => break,
            }
        }
        Poll::Pending
    })
    .await
}

/// Reads and drops the rest of a request body the handler left unread, when it is small and
/// comes quickly. Whether the connection can carry another request.
async fn drain<I: Io>(inbound: &mut Inbound<I>) -> bool {
    inbound.owe_continue = None;
    if inbound.unread().is_some_and(|left| left > MAX_DRAIN) {
        return false;
    }
    let mut budget = MAX_DRAIN;
    let draining = poll_fn(|cx| loop {
        match ready!(inbound.poll_body(cx)) {
            None => return Poll::Ready(true),
            Some(Err(_)) => return Poll::Ready(false),
            Some(Ok(frame)) => {
                let size = frame.data_ref().map_or(0, |d| d.len() as u64);
                if size > budget {
                    return Poll::Ready(false);
                }
                budget -= size;
            }
        }
    });
    tokio::time::timeout(LINGER, draining)
        .await
        .unwrap_or(false)
}

/// Closes after an answer sent while the client may still be sending: stop writing, then read
/// and drop what comes for a moment, so that closing does not reset the connection (and lose
/// the answer) while unread bytes are in flight.
async fn linger<I: Io>(inbound: &mut Inbound<I>) {
    let _ = inbound.io.shutdown().await;
    let mut budget = MAX_DRAIN as usize;
    let reading = poll_fn(|cx| loop {
        inbound.read.clear();
        match ready!(inbound.poll_fill(cx)) {
            Ok(n) if n > 0 && n <= budget => budget -= n,
            _ => return Poll::Ready(()),
        }
    });
    let _ = tokio::time::timeout(LINGER, reading).await;
}

/// Answers a request the server refuses before routing, and closes.
async fn reject<I: Io>(
    inbound: &mut Inbound<I>,
    status: StatusCode,
    reason: &str,
) -> io::Result<()> {
    let body = format!(
        "{} {}: {reason}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    inbound.io.write_all(head.as_bytes()).await?;
    inbound.io.write_all(body.as_bytes()).await?;
    inbound.io.flush().await
}

/// A parsed request head and what the server needs to know about its message.
struct Head {
    parts: http::request::Parts,
    body: Remaining,
    keep_alive: bool,
    expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` protocol.
    upgrade: bool,
}

/// Where a header field lies in the read buffer (heads are at most `MAX_HEAD` bytes, so
/// offsets fit in u32).
#[derive(Debug, Clone, Copy, Default)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

/// Where a parsed head's pieces lie in the read buffer.
struct Layout {
    len: usize,
    method: (u32, u32),
    target: (u32, u32),
    version: u8,
    fields: usize,
}

/// Parses a request head at the start of `read` and takes it out of the buffer; None when
/// more bytes are needed.
fn parse_head(read: &mut BytesMut) -> Result<Option<Head>, Reject> {
    // Bare line breaks before a request line are tolerated (RFC 9112 section 2.2).
    while read.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
        let _ = read.split_to(1);
    }
    if read.is_empty() {
        return Ok(None);
    }
    let mut inline = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; INLINE_HEADERS];
    let mut fields = [Field::default(); INLINE_HEADERS];
    match locate(read, &mut inline, &mut fields) {
        Ok(Some(layout)) => build(read, layout, &fields).map(Some),
        Ok(None) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            let mut table = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS];
            let mut fields = vec![Field::default(); MAX_HEADERS];
            match locate(read, &mut table, &mut fields) {
                Ok(Some(layout)) => build(read, layout, &fields).map(Some),
                Ok(None) => Ok(None),
                Err(httparse::Error::TooManyHeaders) => Err(Reject(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("more than {MAX_HEADERS} header fields"),
                )),
                Err(e) => Err(Reject::bad(e.to_string())),
            }
        }
        Err(e) => Err(Reject::bad(e.to_string())),
    }
}

/// Runs httparse over `buf` and records where everything is.
fn locate<'b>(
    buf: &'b [u8],
    table: &mut [MaybeUninit<httparse::Header<'b>>],
    fields: &mut [Field],
) -> Result<Option<Layout>, httparse::Error> {
    let base = buf.as_ptr() as usize;
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        (start, start + s.len() as u32)
    };
    let mut request = httparse::Request::new(&mut []);
    let len = match request.parse_with_uninit_headers(buf, table)? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    for (slot, header) in fields.iter_mut().zip(request.headers.iter()) {
        *slot = Field {
            name: span(header.name.as_bytes()),
            value: span(header.value),
        };
    }
    Ok(Some(Layout {
        len,
        method: span(request.method.unwrap_or_default().as_bytes()),
        target: span(request.path.unwrap_or_default().as_bytes()),
        version: request.version.unwrap_or(1),
        fields: request.headers.len(),
    }))
}

/// Takes the head out of `read` and builds the request's parts from it; header values and the
/// target share its bytes.
fn build(read: &mut BytesMut, layout: Layout, fields: &[Field]) -> Result<Head, Reject> {
    let head = read.split_to(layout.len).freeze();
    let range = |(start, end): (u32, u32)| start as usize..end as usize;
    let method = Method::from_bytes(&head[range(layout.method)])
        .map_err(|_| Reject::bad("invalid method"))?;
    let uri = Uri::from_maybe_shared(head.slice(range(layout.target)))
        .map_err(|e| Reject::bad(format!("invalid request target: {e}")))?;
    let version = match layout.version {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Room for the forwarded headers the proxy adds, so that adding them does not grow the map.
    let mut headers = HeaderMap::with_capacity(layout.fields + 8);
    let mut facts = Facts::default();
    for field in &fields[..layout.fields] {
        let name = HeaderName::from_bytes(&head[range(field.name)])
            .map_err(|_| Reject::bad("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(range(field.value)))
            .map_err(|_| Reject::bad(format!("invalid value of header {name}")))?;
        facts.note(&name, &value);
        headers.append(name, value);
    }

    match facts.hosts {
        0 if version == Version::HTTP_11 => {
            return Err(Reject::bad("missing required Host header"))
        }
        0 | 1 => {}
        _ => return Err(Reject::bad("too many Host headers")),
    }
    let body = match facts.chunked {
        Some(_) if facts.sized => {
            return Err(Reject::bad(
                "both Transfer-Encoding and Content-Length are set",
            ))
        }
        Some(true) => Remaining::Chunked(Chunk::Size),
        Some(false) => {
            return Err(Reject(
                StatusCode::NOT_IMPLEMENTED,
                "unsupported transfer encoding".into(),
            ))
        }
        None => match facts.length {
            Err(reason) => return Err(Reject::bad(reason)),
            Ok(None | Some(0)) => Remaining::Done,
            Ok(Some(n)) => Remaining::Length(n),
        },
    };
    let keep_alive = match version {
        Version::HTTP_10 => facts.keep_alive,
        _ => !facts.close,
    };
    let expect_continue = match facts.expect {
        None => false,
        Some(true) => version == Version::HTTP_11 && !matches!(body, Remaining::Done),
        Some(false) => {
            return Err(Reject(
                StatusCode::EXPECTATION_FAILED,
                "unsupported expectation".into(),
            ))
        }
    };

    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    Ok(Head {
        parts,
        body,
        keep_alive,
        expect_continue,
        upgrade: facts.upgrade && facts.connection_upgrade,
    })
}

/// What the server needs from a request's fields, gathered in the pass that builds the map
/// (comparing standard names costs less than hashing them again for lookups).
#[derive(Debug)]
struct Facts {
    hosts: usize,
    /// Whether the last transfer coding is chunked; None without Transfer-Encoding.
    chunked: Option<bool>,
    /// The Content-Length (RFC 9110 section 8.6: a list of identical values is one length).
    length: Result<Option<u64>, String>,
    /// Whether a Content-Length field is present, valid or not.
    sized: bool,
    close: bool,
    keep_alive: bool,
    connection_upgrade: bool,
    upgrade: bool,
    /// Whether the expectation is `100-continue`; None without Expect.
    expect: Option<bool>,
}

impl Default for Facts {
    fn default() -> Self {
        Self {
            hosts: 0,
            chunked: None,
            length: Ok(None),
            sized: false,
            close: false,
            keep_alive: false,
            connection_upgrade: false,
            upgrade: false,
            expect: None,
        }
    }
}

impl Facts {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        let bytes = value.as_bytes();
        if name == header::HOST {
            self.hosts += 1;
        } else if name == header::TRANSFER_ENCODING {
            self.chunked = match tokens(bytes).last() {
                Some(coding) => Some(coding.eq_ignore_ascii_case(b"chunked")),
                None => self.chunked.or(Some(false)),
            };
        } else if name == header::CONTENT_LENGTH {
            self.sized = true;
            let seen = std::mem::replace(&mut self.length, Ok(None));
            self.length = seen.and_then(|seen| content_length(bytes, seen));
        } else if name == header::CONNECTION {
            for token in tokens(bytes) {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                self.connection_upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            }
        } else if name == header::UPGRADE {
            self.upgrade = true;
        } else if name == header::EXPECT {
            self.expect = Some(bytes.eq_ignore_ascii_case(b"100-continue"));
        }
    }
}

/// The `Date` header's value, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    /// Calls `f` with the current date in IMF-fixdate form.
    pub fn now(f: impl FnOnce(&[u8])) {
        let now = SystemTime::now();
        let second = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        CACHED.with(|cached| {
            let mut cached = cached.borrow_mut();
            if cached.0 != second || cached.1.is_empty() {
                *cached = (second, httpdate::fmt_http_date(now));
            }
            f(cached.1.as_bytes());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(wire: &[u8]) -> (Result<Option<Head>, Reject>, BytesMut) {
        let mut read = BytesMut::from(wire);
        let parsed = parse_head(&mut read);
        (parsed, read)
    }

    #[test]
    fn a_head_is_taken_off_the_buffer_and_what_follows_stays() {
        let (head, rest) = parse(
            b"\r\nPOST /up?x=1 HTTP/1.1\r\nHost: a.local\r\nContent-Length: 4\r\n\r\nbodyGET /next",
        );
        let head = head.unwrap().unwrap();
        assert_eq!(head.parts.method, Method::POST);
        assert_eq!(head.parts.uri, "/up?x=1");
        assert_eq!(head.parts.headers["host"], "a.local");
        assert!(matches!(head.body, Remaining::Length(4)));
        assert!(head.keep_alive);
        assert_eq!(&rest[..], b"bodyGET /next");
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        let wire = b"GET / HTTP/1.1\r\nHost: a.lo";
        let (head, rest) = parse(wire);
        assert!(head.unwrap().is_none());
        assert_eq!(&rest[..], wire, "nothing is taken");
    }

    #[test]
    fn connection_tokens_decide_keep_alive_and_upgrades() {
        let head = |wire: &[u8]| parse(wire).0.unwrap().unwrap();
        assert!(
            !head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n").keep_alive
        );
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        let upgrade = head(
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert!(upgrade.upgrade);
        assert!(!head(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade);
        let chunked =
            head(b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nExpect: 100-Continue\r\n\r\n");
        assert!(matches!(chunked.body, Remaining::Chunked(Chunk::Size)));
        assert!(chunked.expect_continue);
    }

    #[test]
    fn malformed_heads_are_refused_with_a_status() {
        let status = |wire: &[u8]| match parse(wire).0 {
            Err(Reject(status, _)) => status.as_u16(),
            Ok(_) => 0,
        };
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: br\r\n\r\n"),
            501
        );
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n"),
            417
        );
        assert_eq!(status(b"GET / HTTP/1.7\r\nHost: a\r\n\r\n"), 400);
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(status(&many), 431);
    }

    #[test]
    fn heads_with_more_fields_than_the_inline_table_parse() {
        let mut wire = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..(INLINE_HEADERS * 2) {
            wire.extend_from_slice(format!("x-{i}: {i}\r\n").as_bytes());
        }
        wire.extend_from_slice(b"\r\n");
        let head = parse(&wire).0.unwrap().unwrap();
        assert_eq!(head.parts.headers.len(), INLINE_HEADERS * 2 + 1);
        assert_eq!(head.parts.headers["x-63"], "63");
    }

    #[test]
    fn numbers_print_in_decimal() {
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(itoa(1234567, &mut [0; 20]), b"1234567");
        assert_eq!(itoa(u64::MAX, &mut [0; 20]), b"18446744073709551615");
    }
}
