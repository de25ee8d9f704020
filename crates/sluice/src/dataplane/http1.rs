//! HTTP/1.1 toward origins, driven by the task that serves the request.
//!
//! hyper's client gives every connection a task of its own and hands requests, responses and
//! body chunks between tasks over channels: for a small exchange that is several task wake-ups
//! per request on top of the socket events. Here the request's own task writes the request and
//! reads the answer's head, and the answer's body reads the origin's socket when the client side
//! of the proxy polls it. Parsing is httparse's (the parser hyper uses); message framing follows
//! RFC 9112 section 6.
//!
//! Pooling is not this module's concern: [`crate::dataplane::pool`] keeps idle [`Connection`]s
//! and decides when a failed exchange may be sent again.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::body::{BoxError, ProxyBody};
use super::forwarded::Deferred;

/// Largest response head (status line and fields) accepted, as hyper's client default.
const MAX_HEAD: usize = 400 * 1024;
/// Header fields parsed without allocating; more are parsed into a larger table.
const INLINE_HEADERS: usize = 32;
/// Most header fields accepted in a response head or a chunked trailer section.
const MAX_HEADERS: usize = 1024;
/// How much room a read gets at least.
pub(super) const READ_SIZE: usize = 8 * 1024;
/// Longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Buffers handed to one vectored write.
const MAX_IOVECS: usize = 16;

/// Why an exchange with an origin failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the request failed before the origin said anything.
    #[error("writing the request failed")]
    Write(#[source] io::Error),
    /// Reading the answer failed.
    #[error("reading the response failed")]
    Read(#[source] io::Error),
    /// The origin closed the connection without sending a byte of an answer.
    #[error("the origin closed the connection before answering")]
    ClosedBeforeAnswer,
    /// The origin closed the connection in the middle of the answer's head or body.
    #[error("the origin closed the connection in the middle of the response")]
    Truncated,
    /// The answer is not HTTP/1.x.
    #[error("malformed response from the origin: {0}")]
    Malformed(String),
    /// The request body failed (the client went away, a middleware gave up).
    #[error("reading the request body failed")]
    RequestBody(#[source] BoxError),
    /// The request body did not have the length its Content-Length announced.
    #[error("the request body does not have its announced length of {0} bytes")]
    RequestLength(u64),
}

impl Error {
    /// Whether the origin never received the request or never started to answer it: what a
    /// connection closed by the origin while idle in the pool looks like.
    pub fn before_answer(&self) -> bool {
        matches!(self, Error::Write(_) | Error::ClosedBeforeAnswer)
            || matches!(self, Error::Read(e) if e.kind() == io::ErrorKind::ConnectionReset)
    }
}

/// The socket under an origin connection.
#[derive(Debug)]
pub enum Stream {
    /// `http://` origins.
    Tcp(TcpStream),
    /// `https://` origins that chose HTTP/1.1.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An HTTP/1.1 connection to an origin, with the bytes read from it and not used yet.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    read: BytesMut,
    reused: bool,
}

impl Connection {
    /// A fresh connection over `stream`.
    pub fn new(stream: Stream) -> Self {
        Self {
            stream,
            read: BytesMut::new(),
            reused: false,
        }
    }

    /// Whether the connection carried an exchange before this one (so a failure may only mean
    /// the origin closed it while it was idle).
    pub fn reused(&self) -> bool {
        self.reused
    }

    /// Marks the connection as having completed an exchange.
    pub fn set_reused(&mut self) {
        self.reused = true;
    }

    /// Whether an idle connection can take a request: the origin has neither closed it nor sent
    /// anything unasked. Costs a read attempt, so only asked before sending a body (which could
    /// not be sent again).
    pub fn still_open(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        matches!(
            Pin::new(&mut self.stream).poll_read(&mut cx, &mut buf),
            Poll::Pending
        )
    }

    /// How many bytes are read and not used yet.
    pub fn read_buffered(&self) -> usize {
        self.read.len()
    }

    /// The first `n` buffered bytes (at most what is buffered).
    pub fn take_buffered(&mut self, n: usize) -> Bytes {
        self.read.split_to(n.min(self.read.len())).freeze()
    }

    /// The socket and whatever was read past the answer's head (a switched protocol's first
    /// bytes).
    pub fn into_parts(self) -> (Stream, BytesMut) {
        (self.stream, self.read)
    }

    /// Reads what the socket has into the buffer; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(&mut self.stream, &mut self.read, cx)
    }
}

/// Reads what `io` has into `buf`, making room first; `Ok(0)` is the end of the stream. Both
/// sides of the proxy read their sockets this way.
pub(super) fn poll_fill<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < READ_SIZE / 4 {
        buf.reserve(READ_SIZE);
    }
    tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
}

/// How a request's body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upload {
    /// Exactly this many bytes (0: no body at all).
    Length(u64),
    /// Chunked transfer coding: the length is not known in advance.
    Chunked,
}

/// A request turned into bytes for the wire, with its body still to stream.
pub struct Outgoing {
    method: Method,
    head: Bytes,
    upload: Upload,
    body: Option<ProxyBody>,
    idempotent: bool,
}

impl Outgoing {
    /// Encodes the head of `request` (origin-form target, Host set by the caller). The body's
    /// framing comes from the body itself when it knows its size, else from Content-Length,
    /// else chunked.
    pub fn new(request: Request<ProxyBody>) -> Self {
        let (mut parts, body) = request.into_parts();
        let deferred = parts.extensions.remove::<Deferred>();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = Vec::with_capacity(
            64 + target.len()
                + parts
                    .headers
                    .iter()
                    .map(|(n, v)| n.as_str().len() + v.len() + 4)
                    .sum::<usize>()
                + if deferred.is_some() { 256 } else { 0 },
        );
        head.extend_from_slice(parts.method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let mut announced = None;
        for (name, value) in &parts.headers {
            if name == header::CONTENT_LENGTH {
                announced = std::str::from_utf8(value.as_bytes())
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok());
                continue;
            }
            if name == header::TRANSFER_ENCODING {
                continue;
            }
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if let Some(deferred) = &deferred {
            deferred.encode(&mut head);
        }
        let upload = if body.is_end_stream() {
            Upload::Length(0)
        } else if let Some(n) = body.size_hint().exact() {
            Upload::Length(n)
        } else if let Some(n) = announced {
            Upload::Length(n)
        } else {
            Upload::Chunked
        };
        // Go sends `Content-Length: 0` for the methods that normally carry a body; other
        // bodyless requests get the header only if the client sent it.
        let zero_length = announced.is_some()
            || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);

        match upload {
            Upload::Length(0) if !zero_length => {}
            Upload::Length(n) => {
                head.extend_from_slice(b"content-length: ");
                head.extend_from_slice(n.to_string().as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            Upload::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        }
        head.extend_from_slice(b"\r\n");

        let idempotent = matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) || parts.headers.contains_key("idempotency-key")
            || parts.headers.contains_key("x-idempotency-key");
        Self {
            method: parts.method,
            head: Bytes::from(head),
            body: (upload != Upload::Length(0)).then_some(body),
            upload,
            idempotent,
        }
    }

    /// Whether the request has a body to stream (which cannot be sent a second time).
    pub fn has_body(&self) -> bool {
        self.upload != Upload::Length(0)
    }

    /// Whether the request may be sent again on a new connection after `error` on a reused
    /// one, as Go's transport decides: no body, and either it never reached the origin or it
    /// is idempotent and no answer began.
    pub fn replayable(&self, error: &Error) -> bool {
        !self.has_body()
            && (matches!(error, Error::Write(_)) || (self.idempotent && error.before_answer()))
    }
}

/// How the rest of an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delimited {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// Content-Length: this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the origin closes the connection.
    UntilClose,
}

/// An answer's head, read from the origin.
#[derive(Debug)]
pub struct Answer {
    /// Status, version and header fields (hop-by-hop ones included: the caller removes them).
    pub head: http::response::Parts,
    /// How the body that follows is delimited.
    pub body: Delimited,
    /// Whether the connection can carry another exchange once the body is read.
    pub reusable: bool,
}

/// Sends `outgoing` on `conn` and reads the answer's head (skipping 1xx interim answers other
/// than 101). The body, if any, is then read through [`ResponseBody`].
pub async fn exchange(conn: &mut Connection, outgoing: &mut Outgoing) -> Result<Answer, Error> {
    let sent = write_request(conn, outgoing).await?;
    let complete = sent.is_ok();
    let head = read_head(conn, sent.err().flatten()).await?;
    let body = delimit(&outgoing.method, &head)?;
    let reusable = complete && keeps_alive(&head, body);
    Ok(Answer {
        head,
        body,
        reusable,
    })
}

/// Buffers waiting to be written, in order.
#[derive(Default)]
pub(super) struct Outbox(VecDeque<Bytes>);

impl Outbox {
    pub(super) fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.0.push_back(bytes);
        }
    }

    /// Queues `data` as one chunk of the chunked transfer coding.
    pub(super) fn push_chunk(&mut self, data: Bytes) {
        self.push(Bytes::from(format!("{:x}\r\n", data.len())));
        self.push(data);
        self.push(Bytes::from_static(b"\r\n"));
    }

    /// Queues the last chunk of the chunked transfer coding, carrying `trailers` if any.
    pub(super) fn push_last_chunk(&mut self, trailers: Option<&HeaderMap>) {
        let Some(trailers) = trailers.filter(|t| !t.is_empty()) else {
            self.push(Bytes::from_static(b"0\r\n\r\n"));
            return;
        };
        let mut last = b"0\r\n".to_vec();
        for (name, value) in trailers {
            last.extend_from_slice(name.as_str().as_bytes());
            last.extend_from_slice(b": ");
            last.extend_from_slice(value.as_bytes());
            last.extend_from_slice(b"\r\n");
        }
        last.extend_from_slice(b"\r\n");
        self.push(Bytes::from(last));
    }

    /// Bytes queued.
    pub(super) fn queued(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// Whether nothing is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes everything queued.
    pub(super) fn poll_drain<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.0.is_empty() {
            let written = {
                let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                for (slot, bytes) in slices.iter_mut().zip(&self.0) {
                    *slot = IoSlice::new(bytes);
                    count += 1;
                }
                ready!(Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..count]))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(written);
        }
        Poll::Ready(Ok(()))
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.0.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.0.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// Writes the head and streams the body. While a body is being sent the origin is watched: an
/// answer that comes before the body is complete (a 413, say) ends the upload, and the
/// connection is then not reused. `Err` inside `Ok` is such an interrupted upload (a write that
/// failed, or the origin answering early).
async fn write_request(
    conn: &mut Connection,
    outgoing: &mut Outgoing,
) -> Result<Result<(), Option<io::Error>>, Error> {
    let mut outbox = Outbox::default();
    outbox.push(outgoing.head.clone());
    let upload = outgoing.upload;
    let mut body = outgoing.body.take();
    let mut sent = 0u64;
    poll_fn(|cx| loop {
        if body.is_some() || (upload != Upload::Length(0) && !outbox.0.is_empty()) {
            match conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Err(None))),
                Poll::Ready(Ok(_)) => match parse_head(&conn.read) {
                    Ok(Some((head, len)))
                        if head.status.is_informational()
                            && head.status != StatusCode::SWITCHING_PROTOCOLS =>
                    {
                        // 100 Continue and friends: the origin wants the rest.
                        conn.read.advance(len);
                        continue;
                    }
                    Ok(None) => continue,
                    Ok(Some(_)) | Err(_) => return Poll::Ready(Ok(Err(None))),
                },
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Read(e))),
                Poll::Pending => {}
            }
        }
        if let Err(e) = ready!(outbox.poll_drain(&mut conn.stream, cx)) {
            return Poll::Ready(if upload == Upload::Length(0) {
                Err(Error::Write(e))
            } else {
                Ok(Err(Some(e)))
            });
        }
        let Some(stream) = body.as_mut() else {
            return Poll::Ready(Ok(Ok(())));
        };
        match ready!(Pin::new(stream).poll_frame(cx)) {
            None => {
                body = None;
                match upload {
                    Upload::Length(n) if sent != n => {
                        return Poll::Ready(Err(Error::RequestLength(n)))
                    }
                    Upload::Length(_) => {}
                    Upload::Chunked => outbox.push_last_chunk(None),
                }
            }
            Some(Err(e)) => return Poll::Ready(Err(Error::RequestBody(e))),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => {}
                Ok(data) => {
                    sent += data.len() as u64;
                    match upload {
                        Upload::Length(n) if sent > n => {
                            return Poll::Ready(Err(Error::RequestLength(n)))
                        }
                        Upload::Length(_) => outbox.push(data),
                        Upload::Chunked => outbox.push_chunk(data),
                    }
                }
                Err(frame) => {
                    // Trailers travel only in the chunked coding's last chunk.
                    if let (Upload::Chunked, Ok(trailers)) = (upload, frame.into_trailers()) {
                        outbox.push_last_chunk(Some(&trailers));
                        body = None;
                    }
                }
            },
        }
    })
    .await
}

/// Reads until a final answer's head is complete. `write_error` is why the upload stopped, if a
/// write failed: reported when no answer comes either.
async fn read_head(
    conn: &mut Connection,
    mut write_error: Option<io::Error>,
) -> Result<http::response::Parts, Error> {
    let mut received = !conn.read.is_empty();
    poll_fn(|cx| loop {
        if !conn.read.is_empty() {
            match take_head(&mut conn.read)? {
                Some(head) => {
                    if head.status.is_informational()
                        && head.status != StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    return Poll::Ready(Ok(head));
                }
                None if conn.read.len() > MAX_HEAD => {
                    return Poll::Ready(Err(Error::Malformed(format!(
                        "response head larger than {MAX_HEAD} bytes"
                    ))))
                }
                None => {}
            }
        }
        match ready!(conn.poll_fill(cx)) {
            Ok(0) if received => return Poll::Ready(Err(Error::Truncated)),
            Ok(0) => {
                return Poll::Ready(Err(match write_error.take() {
                    Some(e) => Error::Write(e),
                    None => Error::ClosedBeforeAnswer,
                }))
            }
            Ok(_) => received = true,
            Err(e) => return Poll::Ready(Err(Error::Read(e))),
        }
    })
    .await
}

/// Takes a complete answer head off the front of `buf`, None when more bytes are needed. The
/// header values share the buffer's bytes instead of being copied.
fn take_head(buf: &mut BytesMut) -> Result<Option<http::response::Parts>, Error> {
    let mut inline =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; INLINE_HEADERS];
    let mut spans = [((0u32, 0u32), (0u32, 0u32)); INLINE_HEADERS];
    let base = buf.as_ptr() as usize;
    // Heads are at most MAX_HEAD bytes, so offsets fit in u32.
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        (start, start + s.len() as u32)
    };
    let (len, code, version, count) = {
        let mut response = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut inline,
        ) {
            Ok(httparse::Status::Complete(len)) => {
                for (slot, field) in spans.iter_mut().zip(response.headers.iter()) {
                    *slot = (span(field.name.as_bytes()), span(field.value));
                }
                (
                    len,
                    response.code.unwrap_or(0),
                    response.version,
                    response.headers.len(),
                )
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            // Rare: the copying parser has a larger table.
            Err(httparse::Error::TooManyHeaders) => {
                return Ok(parse_head(buf)?.map(|(head, len)| {
                    buf.advance(len);
                    head
                }))
            }
            Err(e) => return Err(Error::Malformed(e.to_string())),
        }
    };
    let bytes = buf.split_to(len).freeze();
    let status =
        StatusCode::from_u16(code).map_err(|_| Error::Malformed(format!("status code {code}")))?;
    let mut head = http::Response::new(()).into_parts().0;
    head.status = status;
    head.version = match version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Room for a header or two that middlewares add.
    head.headers = HeaderMap::with_capacity(count + 2);
    for &((name_start, name_end), (value_start, value_end)) in &spans[..count] {
        let name = HeaderName::from_bytes(&bytes[name_start as usize..name_end as usize])
            .map_err(|_| Error::Malformed("header name".into()))?;
        let value =
            HeaderValue::from_maybe_shared(bytes.slice(value_start as usize..value_end as usize))
                .map_err(|_| Error::Malformed(format!("value of header {name}")))?;
        head.headers.append(name, value);
    }
    Ok(Some(head))
}

/// Parses an answer head at the start of `buf`: the head and its length, or None when more
/// bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<(http::response::Parts, usize)>, Error> {
    let mut inline = [httparse::EMPTY_HEADER; INLINE_HEADERS];
    let mut response = httparse::Response::new(&mut inline);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => return head_from(&response, len).map(Some),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {}
        Err(e) => return Err(Error::Malformed(e.to_string())),
    }
    let mut table = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut table);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => head_from(&response, len).map(Some),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(Error::Malformed(e.to_string())),
    }
}

fn head_from(
    response: &httparse::Response<'_, '_>,
    len: usize,
) -> Result<(http::response::Parts, usize), Error> {
    let code = response.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| Error::Malformed(format!("status code {code}")))?;
    let mut head = http::Response::new(()).into_parts().0;
    head.status = status;
    head.version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    head.headers = fields(response.headers)?;
    Ok((head, len))
}

/// Header fields from httparse into a map.
pub(super) fn fields(parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::with_capacity(parsed.len());
    for field in parsed {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| Error::Malformed(format!("header name {:?}", field.name)))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| Error::Malformed(format!("value of header {name}")))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// How the body of an answer to `method` is delimited (RFC 9112 section 6.3).
fn delimit(method: &Method, head: &http::response::Parts) -> Result<Delimited, Error> {
    let status = head.status;
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Delimited::Empty);
    }
    // One pass over the fields: comparing standard names is cheaper than hashing for lookups.
    let mut chunked = None;
    let mut length = Ok(None);
    for (name, value) in &head.headers {
        if name == header::TRANSFER_ENCODING {
            let last = tokens(value.as_bytes()).last();
            chunked = match last {
                Some(coding) => Some(coding.eq_ignore_ascii_case(b"chunked")),
                None => chunked.or(Some(false)),
            };
        } else if name == header::CONTENT_LENGTH {
            length = length.and_then(|seen| content_length(value.as_bytes(), seen));
        }
    }
    if let Some(chunked) = chunked {
        return Ok(match chunked {
            true => Delimited::Chunked,
            false => Delimited::UntilClose,
        });
    }
    Ok(match length.map_err(Error::Malformed)? {
        Some(0) => Delimited::Empty,
        Some(n) => Delimited::Length(n),
        None => Delimited::UntilClose,
    })
}

/// Adds one Content-Length field to the length seen so far: a list of identical values is one
/// length (RFC 9110 section 8.6); anything else is an error.
pub(super) fn content_length(value: &[u8], seen: Option<u64>) -> Result<Option<u64>, String> {
    // The usual single number first.
    if seen.is_none()
        && !value.is_empty()
        && value.len() <= 19
        && value.iter().all(u8::is_ascii_digit)
    {
        return Ok(Some(
            value
                .iter()
                .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0')),
        ));
    }
    let mut length = seen;
    for item in value.split(|b| *b == b',') {
        let item = item.trim_ascii();
        // Digits only (no sign, no spaces inside), at most 19 of them: fits in u64.
        let n = (!item.is_empty() && item.len() <= 19 && item.iter().all(u8::is_ascii_digit))
            .then(|| {
                item.iter()
                    .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'))
            })
            .ok_or_else(|| format!("Content-Length {:?}", String::from_utf8_lossy(value)))?;
        if length.is_some_and(|seen| seen != n) {
            return Err("conflicting Content-Length values".into());
        }
        length = Some(n);
    }
    Ok(length)
}

/// The non-empty items of a comma-separated field value, trimmed.
pub(super) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether the connection stays open after this answer.
fn keeps_alive(head: &http::response::Parts, body: Delimited) -> bool {
    if body == Delimited::UntilClose || head.status == StatusCode::SWITCHING_PROTOCOLS {
        return false;
    }
    let (mut coded, mut sized, mut close, mut keep) = (false, false, false, false);
    for (name, value) in &head.headers {
        if name == header::TRANSFER_ENCODING {
            coded = true;
        } else if name == header::CONTENT_LENGTH {
            sized = true;
        } else if name == header::CONNECTION {
            for token in tokens(value.as_bytes()) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // Both codings and a length: the message is suspect, do not reuse what carried it.
    if coded && sized {
        return false;
    }
    match head.version {
        Version::HTTP_10 => keep,
        _ => !close,
    }
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this much left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// What the body decoder got from the buffered bytes.
#[derive(Debug)]
pub(super) enum Decoded {
    Frame(Frame<Bytes>),
    NeedMore,
    End,
}

/// The state of the body still to read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Remaining {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

impl Remaining {
    pub(super) fn new(delimited: Delimited) -> Self {
        match delimited {
            Delimited::Empty | Delimited::Length(0) => Remaining::Done,
            Delimited::Length(n) => Remaining::Length(n),
            Delimited::Chunked => Remaining::Chunked(Chunk::Size),
            Delimited::UntilClose => Remaining::UntilClose,
        }
    }

    /// Takes the next frame out of `buf`.
    pub(super) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, Error> {
        loop {
            match *self {
                Remaining::Done => return Ok(Decoded::End),
                Remaining::Length(n) => {
                    let Some((data, left)) = take_up_to(buf, n) else {
                        return Ok(Decoded::NeedMore);
                    };
                    *self = if left == 0 {
                        Remaining::Done
                    } else {
                        Remaining::Length(left)
                    };
                    return Ok(Decoded::Frame(Frame::data(data)));
                }
                Remaining::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Frame(Frame::data(buf.split().freeze())));
                }
                Remaining::Chunked(Chunk::Size) => {
                    let Some(end) = find(buf, b"\r\n", MAX_CHUNK_LINE)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&buf[..end])?;
                    buf.advance(end + 2);
                    *self = Remaining::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                Remaining::Chunked(Chunk::Data(n)) => {
                    let Some((data, left)) = take_up_to(buf, n) else {
                        return Ok(Decoded::NeedMore);
                    };
                    *self = Remaining::Chunked(if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Decoded::Frame(Frame::data(data)));
                }
                Remaining::Chunked(Chunk::DataEnd) => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::Malformed("chunk data not followed by CRLF".into()));
                    }
                    buf.advance(2);
                    *self = Remaining::Chunked(Chunk::Size);
                }
                Remaining::Chunked(Chunk::Trailers) => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Remaining::Done;
                        return Ok(Decoded::End);
                    }
                    let Some(end) = find(buf, b"\r\n\r\n", MAX_HEAD)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let section = buf.split_to(end + 4);
                    let mut table = vec![httparse::EMPTY_HEADER; MAX_HEADERS];
                    let trailers = match httparse::parse_headers(&section, &mut table) {
                        Ok(httparse::Status::Complete((_, parsed))) => fields(parsed)?,
                        Ok(httparse::Status::Partial) => {
                            return Err(Error::Malformed("incomplete trailer section".into()))
                        }
                        Err(e) => return Err(Error::Malformed(format!("trailers: {e}"))),
                    };
                    *self = Remaining::Done;
                    return Ok(Decoded::Frame(Frame::trailers(trailers)));
                }
            }
        }
    }
}

/// Up to `n` of the buffered bytes and how many of the `n` are left; None when nothing is
/// buffered.
fn take_up_to(buf: &mut BytesMut, n: u64) -> Option<(Bytes, u64)> {
    if buf.is_empty() {
        return None;
    }
    let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
    Some((buf.split_to(take).freeze(), n - take as u64))
}

/// Position of the first `needle` in `buf`, None when more bytes are needed, an error when it
/// does not come within `limit` bytes.
fn find(buf: &[u8], needle: &[u8], limit: usize) -> Result<Option<usize>, Error> {
    match buf.windows(needle.len()).position(|w| w == needle) {
        Some(at) if at <= limit => Ok(Some(at)),
        Some(_) => Err(Error::Malformed("line too long in chunked body".into())),
        None if buf.len() > limit => Err(Error::Malformed("line too long in chunked body".into())),
        None => Ok(None),
    }
}

/// The size on a chunk-size line (extensions after `;` are ignored).
fn chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 16 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return Err(Error::Malformed(format!(
            "chunk size {:?}",
            String::from_utf8_lossy(line)
        )));
    }
    let text = std::str::from_utf8(digits).map_err(|_| Error::Malformed("chunk size".into()))?;
    u64::from_str_radix(text, 16).map_err(|_| Error::Malformed(format!("chunk size {text:?}")))
}

/// An answer's body, read from the origin's socket as it is polled. Once read to its end the
/// connection goes to `release` (unless it cannot carry another exchange); a body dropped
/// half-read closes its connection.
pub struct ResponseBody<R: FnOnce(Connection) + Send + Sync + Unpin + 'static> {
    conn: Option<Connection>,
    remaining: Remaining,
    reusable: bool,
    release: Option<R>,
}

impl<R: FnOnce(Connection) + Send + Sync + Unpin + 'static> ResponseBody<R> {
    /// The body of `answer` read from `conn`; `release` takes the connection back afterwards.
    pub fn new(conn: Connection, answer: &Answer, release: R) -> Self {
        let mut body = Self {
            conn: Some(conn),
            remaining: Remaining::new(answer.body),
            reusable: answer.reusable,
            release: Some(release),
        };
        if matches!(body.remaining, Remaining::Done) {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        self.remaining = Remaining::Done;
        let (Some(conn), Some(release)) = (self.conn.take(), self.release.take()) else {
            return;
        };
        // Bytes past the end of the answer are a broken origin: do not reuse what sent them.
        if self.reusable && conn.read.is_empty() {
            release(conn);
        }
    }

    fn fail(&mut self, error: Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        self.remaining = Remaining::Done;
        Poll::Ready(Some(Err(error.into())))
    }
}

impl<R: FnOnce(Connection) + Send + Sync + Unpin + 'static> Body for ResponseBody<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.remaining.decode(&mut conn.read) {
                Err(e) => return this.fail(e),
                Ok(Decoded::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::Frame(frame)) => {
                    if matches!(this.remaining, Remaining::Done) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Ok(Decoded::NeedMore) => {}
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.remaining, Remaining::UntilClose) => {
                    this.conn = None;
                    this.remaining = Remaining::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(Error::Truncated),
                Ok(_) => {}
                Err(e) => return this.fail(Error::Read(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.remaining, Remaining::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Remaining::Done => SizeHint::with_exact(0),
            Remaining::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

/// The origin side of a switched protocol (101), carried from the pool to the tunnel in the
/// answer's extensions.
#[derive(Clone)]
pub struct Switched(Arc<Mutex<Option<Connection>>>);

impl Switched {
    /// Wraps the connection that answered 101.
    pub fn new(conn: Connection) -> Self {
        Self(Arc::new(Mutex::new(Some(conn))))
    }

    /// The connection, once.
    pub fn take(&self) -> Option<Connection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(
        delimited: Delimited,
        wire: &[u8],
    ) -> Result<(Vec<u8>, Option<HeaderMap>), Error> {
        let mut remaining = Remaining::new(delimited);
        let mut buf = BytesMut::from(wire);
        let (mut data, mut trailers) = (Vec::new(), None);
        loop {
            match remaining.decode(&mut buf)? {
                Decoded::Frame(frame) => match frame.into_data() {
                    Ok(d) => data.extend_from_slice(&d),
                    Err(frame) => trailers = frame.into_trailers().ok(),
                },
                Decoded::End => return Ok((data, trailers)),
                Decoded::NeedMore => return Err(Error::Truncated),
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let wire =
            b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Sum: 9\r\n\r\n";
        let (data, trailers) = decode_all(Delimited::Chunked, wire).unwrap();
        assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.");
        assert_eq!(trailers.unwrap()["x-sum"], "9");
        let (data, trailers) =
            decode_all(Delimited::Chunked, b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
        assert_eq!(data, b"0123456789");
        assert!(trailers.is_none());
    }

    #[test]
    fn chunked_bodies_decode_one_byte_at_a_time() {
        let wire = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut remaining = Remaining::new(Delimited::Chunked);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut ended = false;
        for &byte in wire {
            buf.extend_from_slice(&[byte]);
            loop {
                match remaining.decode(&mut buf).unwrap() {
                    Decoded::Frame(f) => data.extend_from_slice(&f.into_data().unwrap()),
                    Decoded::NeedMore => break,
                    Decoded::End => {
                        ended = true;
                        break;
                    }
                }
            }
        }
        assert!(ended);
        assert_eq!(data, b"abcde");
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"\r\n",
        ] {
            assert!(
                matches!(
                    decode_all(Delimited::Chunked, wire),
                    Err(Error::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let endless = vec![b'1'; MAX_CHUNK_LINE + 10];
        assert!(matches!(
            decode_all(Delimited::Chunked, &endless),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn fixed_length_bodies_stop_at_their_length() {
        let mut remaining = Remaining::new(Delimited::Length(5));
        let mut buf = BytesMut::from(&b"hel"[..]);
        let Decoded::Frame(f) = remaining.decode(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(f.into_data().unwrap(), "hel");
        assert!(matches!(
            remaining.decode(&mut buf).unwrap(),
            Decoded::NeedMore
        ));
        buf.extend_from_slice(b"loEXTRA");
        let Decoded::Frame(f) = remaining.decode(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(f.into_data().unwrap(), "lo");
        assert!(matches!(remaining.decode(&mut buf).unwrap(), Decoded::End));
        assert_eq!(&buf[..], b"EXTRA");
    }

    fn head(wire: &str) -> http::response::Parts {
        parse_head(wire.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn answers_are_delimited_as_rfc_9112_says() {
        let get = Method::GET;
        let ok = |extra: &str| head(&format!("HTTP/1.1 200 OK\r\n{extra}\r\n"));
        assert_eq!(
            delimit(&get, &ok("content-length: 12\r\n")).unwrap(),
            Delimited::Length(12)
        );
        assert_eq!(
            delimit(&get, &ok("content-length: 7, 7\r\n")).unwrap(),
            Delimited::Length(7)
        );
        assert!(delimit(&get, &ok("content-length: 7\r\ncontent-length: 8\r\n")).is_err());
        assert!(delimit(&get, &ok("content-length: -1\r\n")).is_err());
        assert_eq!(
            delimit(
                &get,
                &ok("transfer-encoding: gzip, chunked\r\ncontent-length: 3\r\n")
            )
            .unwrap(),
            Delimited::Chunked
        );
        assert_eq!(
            delimit(&get, &ok("transfer-encoding: gzip\r\n")).unwrap(),
            Delimited::UntilClose
        );
        assert_eq!(delimit(&get, &ok("")).unwrap(), Delimited::UntilClose);
        assert_eq!(
            delimit(&Method::HEAD, &ok("content-length: 12\r\n")).unwrap(),
            Delimited::Empty
        );
        let no_content = head("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(delimit(&get, &no_content).unwrap(), Delimited::Empty);
        let not_modified = head("HTTP/1.1 304 Not Modified\r\ncontent-length: 40\r\n\r\n");
        assert_eq!(delimit(&get, &not_modified).unwrap(), Delimited::Empty);
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let reuse = |wire: &str| {
            let h = head(wire);
            keeps_alive(&h, delimit(&Method::GET, &h).unwrap())
        };
        assert!(reuse("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!reuse(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!reuse("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(reuse(
            "HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!reuse("HTTP/1.1 200 OK\r\n\r\n"));
    }

    #[test]
    fn heads_parse_or_fail_cleanly() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nx: y\r\n")
            .unwrap()
            .is_none());
        assert!(matches!(
            parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            parse_head(b"HTTP/1.1 099 Low\r\n\r\n"),
            Err(Error::Malformed(_))
        ));
        let many: String = (0..200).map(|i| format!("x-{i}: {i}\r\n")).collect();
        let (h, _) = parse_head(format!("HTTP/1.1 200 OK\r\n{many}\r\n").as_bytes())
            .unwrap()
            .unwrap();
        assert_eq!(h.headers.len(), 200);
    }

    fn request(method: Method, headers: &[(&str, &str)], body: ProxyBody) -> Outgoing {
        let mut builder = Request::builder().method(method).uri("/p?q=1");
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        Outgoing::new(builder.body(body).unwrap())
    }

    #[test]
    fn requests_are_framed_from_their_body() {
        use super::super::body;
        let get = request(Method::GET, &[("host", "a")], body::empty());
        assert_eq!(&get.head[..], b"GET /p?q=1 HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(!get.has_body());
        let post = request(Method::POST, &[("host", "a")], body::empty());
        assert!(post.head.ends_with(b"content-length: 0\r\n\r\n"));
        let full = request(
            Method::PUT,
            &[("content-length", "99"), ("transfer-encoding", "chunked")],
            body::full("abc"),
        );
        assert_eq!(
            &full.head[..],
            b"PUT /p?q=1 HTTP/1.1\r\ncontent-length: 3\r\n\r\n"
        );
        let stream =
            http_body_util::StreamBody::new(futures_util::stream::iter(vec![Ok::<_, BoxError>(
                Frame::data(Bytes::from_static(b"x")),
            )]));
        let chunked = request(Method::POST, &[], body::boxed(stream));
        assert!(chunked
            .head
            .ends_with(b"transfer-encoding: chunked\r\n\r\n"));
        assert!(chunked.has_body());
    }
}
