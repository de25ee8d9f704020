//! The `grpcWeb` middleware: lets browsers speak to gRPC services. A gRPC-Web request
//! (`application/grpc-web[+proto]`, or the base64 `application/grpc-web-text[+proto]`) is sent
//! on as plain gRPC; the answer goes back as gRPC-Web, its HTTP trailers (`grpc-status`,
//! `grpc-message`, ...) moved into a final body frame flagged `0x80`, as the protocol requires.
//! CORS preflights for gRPC-Web are answered here for the `allowOrigins` (`*` for any).
//!
//! Covered: unary and server-streaming calls, binary and text forms (text is decoded and
//! re-encoded while streaming). Not covered: client streaming (gRPC-Web has none), and the
//! origin must speak HTTP/2 (an `h2c://` server) for trailers to exist at all.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode, Version};
use hyper::body::{Body, Frame};
use serde::Deserialize;
use serde_json::Value;

use super::errors::parse_spec;
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{boxed, empty, BoxError, ProxyBody};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    allow_origins: Vec<String>,
}

/// The compiled `grpcWeb` middleware.
#[derive(Debug)]
struct GrpcWeb {
    any_origin: bool,
    origins: Vec<String>,
}

/// Compiles `grpcWeb`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let spec: Spec = parse_spec(spec)?;
    for (i, origin) in spec.allow_origins.iter().enumerate() {
        if origin.trim().is_empty() {
            return Err(MiddlewareError::new(
                format!("allowOrigins[{i}]"),
                "an origin must not be empty",
            ));
        }
    }
    Ok(Arc::new(GrpcWeb {
        any_origin: spec.allow_origins.iter().any(|o| o == "*"),
        origins: spec
            .allow_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .collect(),
    }))
}

/// Headers a gRPC-Web client needs to read from the answer.
const EXPOSED: &str = "grpc-status, grpc-message, grpc-status-details-bin, content-type";

impl GrpcWeb {
    fn allowed(&self, origin: &HeaderValue) -> bool {
        self.any_origin
            || origin
                .to_str()
                .is_ok_and(|o| self.origins.iter().any(|a| a.eq_ignore_ascii_case(o)))
    }

    fn cors(&self, request: &HeaderMap, answer: &mut HeaderMap) {
        if let Some(origin) = request.get(header::ORIGIN).filter(|o| self.allowed(o)) {
            answer.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            answer.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
            answer.append(header::VARY, HeaderValue::from_static("Origin"));
        }
    }
}

/// The gRPC-Web flavour of a Content-Type: whether it is text, and the gRPC type to send on.
fn grpc_web_type(headers: &HeaderMap) -> Option<(bool, String)> {
    let value = headers
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .trim()
        .to_ascii_lowercase();
    let rest = value.strip_prefix("application/grpc-web")?;
    let (text, suffix) = match rest.strip_prefix("-text") {
        Some(suffix) => (true, suffix),
        None => (false, rest),
    };
    if !(suffix.is_empty() || suffix.starts_with('+') || suffix.starts_with(';')) {
        return None;
    }
    Some((text, format!("application/grpc{suffix}")))
}

impl Middleware for GrpcWeb {
    fn handle<'a>(
        &'a self,
        _connection: &'a Connection,
        mut outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            let headers = outgoing.request.headers().clone();
            // A browser asking whether it may send gRPC-Web.
            if outgoing.request.method() == Method::OPTIONS
                && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
                && headers
                    .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.to_ascii_lowercase().contains("x-grpc-web"))
            {
                let mut response = Response::new(empty());
                *response.status_mut() = StatusCode::NO_CONTENT;
                if let Some(origin) = headers.get(header::ORIGIN).filter(|o| self.allowed(o)) {
                    let h = response.headers_mut();
                    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                    h.insert(
                        header::ACCESS_CONTROL_ALLOW_METHODS,
                        HeaderValue::from_static("POST"),
                    );
                    if let Some(asked) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
                    }
                    h.insert(
                        header::ACCESS_CONTROL_MAX_AGE,
                        HeaderValue::from_static("600"),
                    );
                    h.append(header::VARY, HeaderValue::from_static("Origin"));
                }
                return Ok(response);
            }
            let Some((text, grpc_type)) = grpc_web_type(&headers) else {
                return next.run(outgoing).await;
            };
            let request = &mut outgoing.request;
            let h = request.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_str(&grpc_type)
                    .unwrap_or(HeaderValue::from_static("application/grpc")),
            );
            h.remove(header::CONTENT_LENGTH);
            h.remove("x-grpc-web");
            h.insert(header::TE, HeaderValue::from_static("trailers"));
            *request.version_mut() = Version::HTTP_2;
            if text {
                let body = std::mem::replace(request.body_mut(), empty());
                *request.body_mut() = boxed(Base64Decode::new(body));
            }
            let response = next.run(outgoing).await?;
            let (mut head, body) = response.into_parts();
            let answered_type = head
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("application/grpc"))
                .map(|suffix| {
                    let base = if text {
                        "application/grpc-web-text"
                    } else {
                        "application/grpc-web"
                    };
                    format!("{base}{suffix}")
                });
            if let Some(web_type) = answered_type {
                if let Ok(value) = HeaderValue::from_str(&web_type) {
                    head.headers.insert(header::CONTENT_TYPE, value);
                }
            }
            head.headers.remove(header::CONTENT_LENGTH);
            self.cors(&headers, &mut head.headers);
            let body = boxed(TrailersInBody::new(body, text));
            Ok(Response::from_parts(head, body))
        })
    }
}

/// Decodes a base64 request body as it streams (gRPC-Web text may be several padded
/// base64 runs one after the other, so each complete 4-character group is decoded alone).
struct Base64Decode {
    inner: ProxyBody,
    pending: Vec<u8>,
}

impl Base64Decode {
    fn new(inner: ProxyBody) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }
}

fn decode_groups(input: &[u8]) -> Result<Bytes, BoxError> {
    let mut out = BytesMut::with_capacity(input.len() / 4 * 3);
    for group in input.chunks(4) {
        let decoded = base64::engine::general_purpose::STANDARD.decode(group)?;
        out.extend_from_slice(&decoded);
    }
    Ok(out.freeze())
}

impl Body for Base64Decode {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => {
                    if self.pending.is_empty() {
                        return Poll::Ready(None);
                    }
                    let rest = std::mem::take(&mut self.pending);
                    return Poll::Ready(Some(decode_groups(&rest).map(Frame::data)));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let this = &mut *self;
                    this.pending
                        .extend(data.iter().filter(|b| !b.is_ascii_whitespace()));
                    let whole = this.pending.len() / 4 * 4;
                    if whole == 0 {
                        continue;
                    }
                    let ready: Vec<u8> = this.pending.drain(..whole).collect();
                    return Poll::Ready(Some(decode_groups(&ready).map(Frame::data)));
                }
            }
        }
    }
}

/// The answer body as gRPC-Web: data as it comes (base64 for text, padded only at the end),
/// then the trailers as a final frame.
struct TrailersInBody {
    inner: ProxyBody,
    text: bool,
    /// Bytes not yet base64-encoded (fewer than 3).
    carry: Vec<u8>,
    queued: VecDeque<Bytes>,
    done: bool,
}

impl TrailersInBody {
    fn new(inner: ProxyBody, text: bool) -> Self {
        Self {
            inner,
            text,
            carry: Vec::new(),
            queued: VecDeque::new(),
            done: false,
        }
    }

    /// Encodes for the client: as is, or base64 keeping incomplete triples for later.
    fn emit(&mut self, data: &[u8], last: bool) {
        if !self.text {
            if !data.is_empty() {
                self.queued.push_back(Bytes::copy_from_slice(data));
            }
            return;
        }
        self.carry.extend_from_slice(data);
        let whole = if last {
            self.carry.len()
        } else {
            self.carry.len() / 3 * 3
        };
        if whole == 0 {
            return;
        }
        let ready: Vec<u8> = self.carry.drain(..whole).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(ready);
        self.queued.push_back(Bytes::from(encoded));
    }
}

/// The trailer frame: flag 0x80, big-endian length, then `name: value\r\n` lines.
pub fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let mut lines = BytesMut::new();
    for (name, value) in trailers {
        lines.put_slice(name.as_str().as_bytes());
        lines.put_slice(b": ");
        lines.put_slice(value.as_bytes());
        lines.put_slice(b"\r\n");
    }
    let mut frame = BytesMut::with_capacity(5 + lines.len());
    frame.put_u8(0x80);
    frame.put_u32(lines.len() as u32);
    frame.put_slice(&lines);
    frame.freeze()
}

impl Body for TrailersInBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(chunk) = self.queued.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => {
                    self.done = true;
                    self.emit(&[], true);
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => self.emit(&data, false),
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            let encoded = trailer_frame(&trailers);
                            self.emit(&encoded, false);
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc-web+proto"),
        );
        assert_eq!(
            grpc_web_type(&h),
            Some((false, "application/grpc+proto".into()))
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc-web-text"),
        );
        assert_eq!(grpc_web_type(&h), Some((true, "application/grpc".into())));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        assert_eq!(grpc_web_type(&h), None);
    }

    #[test]
    fn trailer_frame_layout() {
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        let frame = trailer_frame(&t);
        assert_eq!(&frame[..], b"\x80\x00\x00\x00\x10grpc-status: 0\r\n");
    }

    #[tokio::test]
    async fn text_round_trip() {
        let encoded = base64::engine::general_purpose::STANDARD.encode(b"\x00\x00\x00\x00\x02hi");
        // Split mid-group to exercise the carry.
        let stream = futures_util::stream::iter(vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from(encoded[..3].to_owned()))),
            Ok(Frame::data(Bytes::from(encoded[3..].to_owned()))),
        ]);
        let body = Base64Decode::new(http_body_util::StreamBody::new(stream).boxed());
        let decoded = body.collect().await.unwrap().to_bytes();
        assert_eq!(&decoded[..], b"\x00\x00\x00\x00\x02hi");
    }
}
