//! `contentType`: sniffs a Content-Type for responses that arrive without one.
//!
//! Traefik v3 never invents a Content-Type by default, and neither does Sluice; this middleware
//! turns detection back on for the routers that use it (`autoDetect: false`, deprecated, makes
//! it a no-op). Detection follows Go's `http.DetectContentType` (the WHATWG sniffing table) on
//! the first bytes of the body, and is skipped, as Go's server skips it, when the response has
//! a Content-Encoding or Transfer-Encoding, a status without a body, or an empty body.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use serde::Deserialize;
use serde_json::Value;

use super::paths::parse;
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{BoxError, ProxyBody};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

/// Go looks at no more than this many bytes.
const SNIFF_LEN: usize = 512;

/// How long to keep collecting after the first chunk before sniffing what arrived; Traefik's
/// proxy flushes (and so sniffs) after its 100 ms flush interval.
const COLLECT_FOR: Duration = Duration::from_millis(100);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ContentTypeConfig {
    /// Deprecated: `false` disables the middleware.
    #[serde(default)]
    auto_detect: Option<bool>,
}

/// Compiles `contentType`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let config: ContentTypeConfig = parse(spec)?;
    if config.auto_detect.is_some() {
        tracing::warn!("contentType: `autoDetect` is deprecated; remove it");
    }
    Ok(Arc::new(ContentType {
        enabled: config.auto_detect != Some(false),
    }))
}

/// The compiled middleware.
#[derive(Debug)]
struct ContentType {
    enabled: bool,
}

impl Middleware for ContentType {
    fn handle<'a>(&'a self, _: &'a Connection, outgoing: Outgoing, next: Next<'a>) -> Answer<'a> {
        if !self.enabled || outgoing.request.method() == Method::HEAD {
            return next.run(outgoing);
        }
        Box::pin(async move {
            let response = next.run(outgoing).await?;
            if !wants_sniffing(&response) {
                return Ok(response);
            }
            let (mut parts, body) = response.into_parts();
            let (body, head) = peek(body).await;
            if !head.is_empty() {
                if let Ok(value) = HeaderValue::from_str(detect(&head)) {
                    parts.headers.insert(header::CONTENT_TYPE, value);
                }
            }
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// Go's server sniffs only when nothing says what the bytes are or how they are wrapped.
fn wants_sniffing(response: &Response<ProxyBody>) -> bool {
    let status = response.status();
    let body_allowed = !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED);
    let headers = response.headers();
    let non_empty = |name| {
        headers
            .get(name)
            .is_some_and(|v: &HeaderValue| !v.is_empty())
    };
    body_allowed
        && !headers.contains_key(header::CONTENT_TYPE)
        && !non_empty(header::CONTENT_ENCODING)
        && !non_empty(header::TRANSFER_ENCODING)
        && !response.body().is_end_stream()
}

/// Reads the start of `body` (up to [`SNIFF_LEN`] bytes, or what arrived within
/// [`COLLECT_FOR`] of the first chunk) and returns a body replaying it, plus those bytes.
async fn peek(mut body: ProxyBody) -> (ProxyBody, Bytes) {
    let mut frames = VecDeque::new();
    let mut head = BytesMut::new();
    let mut error = None;
    let mut ended = false;
    let mut deadline = None;
    while head.len() < SNIFF_LEN {
        let frame = match deadline {
            None => body.frame().await,
            Some(deadline) => match tokio::time::timeout_at(deadline, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => break,
            },
        };
        match frame {
            None => {
                ended = true;
                break;
            }
            Some(Err(e)) => {
                error = Some(e);
                break;
            }
            Some(Ok(frame)) => {
                let Some(data) = frame.data_ref() else {
                    // Trailers end the body.
                    frames.push_back(frame);
                    ended = true;
                    break;
                };
                if !data.is_empty() {
                    head.extend_from_slice(&data[..data.len().min(SNIFF_LEN - head.len())]);
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + COLLECT_FOR);
                }
                frames.push_back(frame);
            }
        }
    }
    let rest = (!ended && error.is_none()).then_some(body);
    let replay = Replayed {
        frames,
        error,
        rest,
    };
    (replay.boxed_unsync_free(), head.freeze())
}

/// Frames already read, then any error met while reading them, then the rest of the body.
struct Replayed {
    frames: VecDeque<Frame<Bytes>>,
    error: Option<BoxError>,
    rest: Option<ProxyBody>,
}

impl Replayed {
    fn boxed_unsync_free(self) -> ProxyBody {
        BodyExt::boxed(self)
    }
}

impl Body for Replayed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = self.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}

// ---------------------------------------------------------------------------------------------
// Go's DetectContentType.

fn is_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

/// Tag-terminating byte.
fn is_tt(b: u8) -> bool {
    b == b' ' || b == b'>'
}

/// Case-insensitive HTML tag at the first non-whitespace byte, followed by a space or `>`.
fn html_tag(data: &[u8], tag: &[u8]) -> bool {
    data.len() > tag.len()
        && data.iter().zip(tag).all(|(&d, &t)| {
            if t.is_ascii_uppercase() {
                d & 0xDF == t
            } else {
                d == t
            }
        })
        && is_tt(data[tag.len()])
}

fn masked(data: &[u8], mask: &[u8], pattern: &[u8]) -> bool {
    data.len() >= pattern.len()
        && data
            .iter()
            .zip(mask.iter().zip(pattern))
            .all(|(&d, (&m, &p))| d & m == p)
}

fn is_mp4(data: &[u8]) -> bool {
    if data.len() < 12 {
        return false;
    }
    let box_size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if data.len() < box_size || !box_size.is_multiple_of(4) || &data[4..8] != b"ftyp" {
        return false;
    }
    (8..box_size)
        .step_by(4)
        .filter(|&at| at != 12) // the minor version, not a brand
        .any(|at| data.get(at..at + 3) == Some(b"mp4"))
}

/// Bytes that mark data as binary rather than text.
fn is_binary(b: u8) -> bool {
    matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F)
}

const HTML_TAGS: &[&[u8]] = &[
    b"<!DOCTYPE HTML",
    b"<HTML",
    b"<HEAD",
    b"<SCRIPT",
    b"<IFRAME",
    b"<H1",
    b"<DIV",
    b"<FONT",
    b"<TABLE",
    b"<A",
    b"<STYLE",
    b"<TITLE",
    b"<B",
    b"<BODY",
    b"<BR",
    b"<P",
    b"<!--",
];

/// Exact leading signatures, in Go's order after the text-like checks.
const EXACT: &[(&[u8], &str)] = &[
    (b"%PDF-", "application/pdf"),
    (b"%!PS-Adobe-", "application/postscript"),
];

const IMAGES: &[(&[u8], &str)] = &[
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"\x00\x00\x02\x00", "image/x-icon"),
    (b"BM", "image/bmp"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
];

const LATER_EXACT: &[(&[u8], &str)] = &[
    (b"\x1A\x45\xDF\xA3", "video/webm"),
    (b"\x00\x01\x00\x00", "font/ttf"),
    (b"OTTO", "font/otf"),
    (b"ttcf", "font/collection"),
    (b"wOFF", "font/woff"),
    (b"wOF2", "font/woff2"),
    (b"\x1F\x8B\x08", "application/x-gzip"),
    (b"PK\x03\x04", "application/zip"),
    (b"Rar!\x1A\x07\x00", "application/x-rar-compressed"),
    (b"Rar!\x1A\x07\x01\x00", "application/x-rar-compressed"),
    (b"\x00\x61\x73\x6D", "application/wasm"),
];

/// The MIME type of `data` as Go's `http.DetectContentType` names it.
pub fn detect(data: &[u8]) -> &'static str {
    let data = &data[..data.len().min(SNIFF_LEN)];
    let first = data.iter().position(|&b| !is_ws(b)).unwrap_or(data.len());
    let trimmed = &data[first..];

    if HTML_TAGS.iter().any(|tag| html_tag(trimmed, tag)) {
        return "text/html; charset=utf-8";
    }
    if trimmed.starts_with(b"<?xml") {
        return "text/xml; charset=utf-8";
    }
    for (signature, kind) in EXACT {
        if data.starts_with(signature) {
            return kind;
        }
    }
    if data.len() >= 4 {
        if data.starts_with(b"\xFE\xFF") {
            return "text/plain; charset=utf-16be";
        }
        if data.starts_with(b"\xFF\xFE") {
            return "text/plain; charset=utf-16le";
        }
        if data.starts_with(b"\xEF\xBB\xBF") {
            return "text/plain; charset=utf-8";
        }
    }
    for (signature, kind) in IMAGES {
        if data.starts_with(signature) {
            return kind;
        }
    }
    let riff = b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF";
    if masked(
        data,
        b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF\xFF\xFF",
        b"RIFF\x00\x00\x00\x00WEBPVP",
    ) {
        return "image/webp";
    }
    if data.starts_with(b"\x89PNG\x0D\x0A\x1A\x0A") {
        return "image/png";
    }
    if data.starts_with(b"\xFF\xD8\xFF") {
        return "image/jpeg";
    }
    if masked(data, riff, b"FORM\x00\x00\x00\x00AIFF") {
        return "audio/aiff";
    }
    if data.starts_with(b"ID3") {
        return "audio/mpeg";
    }
    if data.starts_with(b"OggS\x00") {
        return "application/ogg";
    }
    if data.starts_with(b"MThd\x00\x00\x00\x06") {
        return "audio/midi";
    }
    if masked(data, riff, b"RIFF\x00\x00\x00\x00AVI ") {
        return "video/avi";
    }
    if masked(data, riff, b"RIFF\x00\x00\x00\x00WAVE") {
        return "audio/wave";
    }
    if is_mp4(data) {
        return "video/mp4";
    }
    for (signature, kind) in &LATER_EXACT[..1] {
        if data.starts_with(signature) {
            return kind;
        }
    }
    // Embedded OpenType: "LP" at offset 34.
    if data.len() >= 36 && &data[34..36] == b"LP" {
        return "application/vnd.ms-fontobject";
    }
    for (signature, kind) in &LATER_EXACT[1..] {
        if data.starts_with(signature) {
            return kind;
        }
    }
    if !trimmed.iter().any(|&b| is_binary(b)) {
        return "text/plain; charset=utf-8";
    }
    "application/octet-stream"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_like_go() {
        assert_eq!(detect(b"  <!doctype html><p>x"), "text/html; charset=utf-8");
        assert_eq!(detect(b"<HtMl>"), "text/html; charset=utf-8");
        // A tag must be terminated by a space or `>`.
        assert_eq!(detect(b"<htmlx"), "text/plain; charset=utf-8");
        assert_eq!(
            detect(b"\n<?xml version=\"1.0\"?>"),
            "text/xml; charset=utf-8"
        );
        assert_eq!(detect(b"{\"a\": 1}"), "text/plain; charset=utf-8");
        assert_eq!(detect(b"\x89PNG\x0D\x0A\x1A\x0A\0\0"), "image/png");
        assert_eq!(detect(b"\xFF\xD8\xFF\xE0"), "image/jpeg");
        assert_eq!(detect(b"GIF89a..."), "image/gif");
        assert_eq!(detect(b"RIFF\x10\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(detect(b"%PDF-1.7"), "application/pdf");
        assert_eq!(detect(b"\x1F\x8B\x08\0"), "application/x-gzip");
        assert_eq!(detect(b"\0\x01\x02binary"), "application/octet-stream");
        assert_eq!(detect(b"\xEF\xBB\xBFhi"), "text/plain; charset=utf-8");
        assert_eq!(detect(b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom"), "video/mp4");
    }
}
