//! The `compress` middleware: gzip, Brotli or zstd, chosen from the client's Accept-Encoding
//! as Traefik chooses (highest q-value; ties go to the earlier entry of `encodings`; `*` means
//! `defaultEncoding`, else the first of `encodings`; no header means `defaultEncoding`, else no
//! compression). Answers are compressed while they stream: only the first
//! `minResponseBodyBytes` are held back, to learn whether the answer is big enough.
//!
//! Left as they are: HEAD requests, requests whose Content-Type is excluded (`application/grpc`
//! always is), answers already encoded, upgrades and other bodiless answers, answers whose
//! Content-Type is excluded (or not included), and answers smaller than `minResponseBodyBytes`
//! (default 1024). Compressed answers lose Content-Length and Accept-Ranges and gain
//! Content-Encoding; every answer for which an encoding was chosen gets
//! `Vary: Accept-Encoding`.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use hyper::body::Frame;
use serde::Deserialize;
use serde_json::Value;
use tokio_util::io::{ReaderStream, StreamReader};

use super::errors::parse_spec;
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{BoxError, ProxyBody, Replay};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

const DEFAULT_MIN_SIZE: u64 = 1024;

/// An encoding Sluice can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    Brotli,
    Zstd,
}

impl Encoding {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "gzip" => Some(Encoding::Gzip),
            "br" => Some(Encoding::Brotli),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }

    /// The token used in Accept-Encoding and Content-Encoding.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    excluded_content_types: Vec<String>,
    #[serde(default)]
    included_content_types: Vec<String>,
    #[serde(default)]
    min_response_body_bytes: i64,
    encodings: Option<Vec<String>>,
    #[serde(default)]
    default_encoding: String,
}

/// A media type with its parameters, as Go's `mime.ParseMediaType` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MediaType {
    essence: String,
    params: HashMap<String, String>,
}

impl MediaType {
    fn parse(text: &str) -> Option<Self> {
        let mut pieces = text.split(';');
        let essence = pieces.next()?.trim().to_ascii_lowercase();
        let (kind, subtype) = essence.split_once('/')?;
        if kind.is_empty() || subtype.is_empty() || essence.contains(char::is_whitespace) {
            return None;
        }
        let mut params = HashMap::new();
        for piece in pieces {
            let piece = piece.trim();
            if piece.is_empty() {
                continue;
            }
            let (key, value) = piece.split_once('=')?;
            params.insert(
                key.trim().to_ascii_lowercase(),
                value.trim().trim_matches('"').to_owned(),
            );
        }
        Some(Self { essence, params })
    }

    /// Whether `other` is this type: same essence, and the same parameters when this one
    /// names any (Traefik's rule).
    fn matches(&self, other: &MediaType) -> bool {
        self.essence == other.essence && (self.params.is_empty() || self.params == other.params)
    }
}

/// The compiled `compress` middleware.
#[derive(Debug)]
struct Compress {
    excluded: Vec<MediaType>,
    included: Vec<MediaType>,
    min_size: u64,
    encodings: Vec<Encoding>,
    default_encoding: Option<Encoding>,
}

/// Compiles `compress`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let spec: Spec = parse_spec(spec)?;
    if !spec.excluded_content_types.is_empty() && !spec.included_content_types.is_empty() {
        return Err(MiddlewareError::new(
            "includedContentTypes",
            "excludedContentTypes and includedContentTypes are mutually exclusive",
        ));
    }
    let media = |list: &[String], field: &str| {
        list.iter()
            .enumerate()
            .map(|(i, text)| {
                MediaType::parse(text).ok_or_else(|| {
                    MiddlewareError::new(
                        format!("{field}[{i}]"),
                        format!("`{text}` is not a media type"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut excluded = vec![MediaType {
        essence: "application/grpc".into(),
        params: HashMap::new(),
    }];
    excluded.extend(media(&spec.excluded_content_types, "excludedContentTypes")?);
    let included = media(&spec.included_content_types, "includedContentTypes")?;
    if spec.min_response_body_bytes < 0 {
        return Err(MiddlewareError::new(
            "minResponseBodyBytes",
            "must not be negative",
        ));
    }
    let min_size = if spec.min_response_body_bytes > 0 {
        spec.min_response_body_bytes as u64
    } else {
        DEFAULT_MIN_SIZE
    };
    let names = spec
        .encodings
        .unwrap_or_else(|| vec!["gzip".into(), "br".into(), "zstd".into()]);
    if names.is_empty() {
        return Err(MiddlewareError::new(
            "encodings",
            "at least one encoding must be specified",
        ));
    }
    let mut encodings = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let encoding = Encoding::parse(name).ok_or_else(|| {
            MiddlewareError::new(
                format!("encodings[{i}]"),
                format!("unsupported encoding `{name}` (gzip, br, zstd)"),
            )
        })?;
        encodings.push(encoding);
    }
    let default_encoding = if spec.default_encoding.is_empty() {
        None
    } else {
        let found = Encoding::parse(&spec.default_encoding).filter(|e| encodings.contains(e));
        Some(found.ok_or_else(|| {
            MiddlewareError::new(
                "defaultEncoding",
                format!(
                    "`{}` is not one of the configured encodings",
                    spec.default_encoding
                ),
            )
        })?)
    };
    Ok(Arc::new(Compress {
        excluded,
        included,
        min_size,
        encodings,
        default_encoding,
    }))
}

/// The result of reading Accept-Encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice {
    Encode(Encoding),
    /// `identity` preferred, or nothing acceptable: leave the answer as it is.
    Leave,
}

impl Compress {
    /// Picks the encoding for a request with these headers; `None` when there is no
    /// Accept-Encoding and no default encoding.
    fn choose(&self, headers: &HeaderMap) -> Option<Choice> {
        let values: Vec<&str> = headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if values.is_empty() {
            return self.default_encoding.map(Choice::Encode);
        }
        if values.len() == 1 && values[0].trim().is_empty() {
            return Some(Choice::Leave);
        }
        // Rank: configured order for encodings, identity after them, `*` before them all.
        let rank = |name: &str| -> Option<i64> {
            match name {
                "*" => Some(-1),
                "identity" => Some(self.encodings.len() as i64),
                other => Encoding::parse(other)
                    .and_then(|e| self.encodings.iter().position(|c| *c == e))
                    .map(|p| p as i64),
            }
        };
        let mut best: Option<(f64, i64, String)> = None;
        for value in values {
            for item in value.split(',') {
                let item: String = item.chars().filter(|c| *c != ' ').collect();
                let mut parts = item.splitn(2, ';');
                let name = parts.next().unwrap_or("");
                let Some(order) = rank(name) else { continue };
                let mut weight = 1.0;
                if let Some(q) = parts.next().and_then(|p| p.strip_prefix("q=")) {
                    // As Traefik: an unreadable weight counts as 0, and 0 means "not acceptable".
                    weight = q.parse::<f64>().unwrap_or(0.0);
                    if weight == 0.0 {
                        continue;
                    }
                }
                let better = match &best {
                    None => true,
                    Some((w, o, _)) => weight > *w || (weight == *w && order < *o),
                };
                if better {
                    best = Some((weight, order, name.to_owned()));
                }
            }
        }
        let Some((_, _, name)) = best else {
            return Some(Choice::Leave);
        };
        if name == "*" {
            return Some(Choice::Encode(
                self.default_encoding.unwrap_or(self.encodings[0]),
            ));
        }
        Some(Encoding::parse(&name).map_or(Choice::Leave, Choice::Encode))
    }

    /// Whether the answer's Content-Type allows compression.
    fn type_allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return true;
        };
        let Some(media) = value.to_str().ok().and_then(MediaType::parse) else {
            return false;
        };
        if !self.included.is_empty() && !self.included.iter().any(|i| i.matches(&media)) {
            return false;
        }
        !self.excluded.iter().any(|e| e.matches(&media))
    }
}

impl Middleware for Compress {
    fn handle<'a>(
        &'a self,
        _connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            let headers = outgoing.request.headers();
            let skip_request = outgoing.request.method() == Method::HEAD
                || outgoing.upgrade.is_some()
                || headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(MediaType::parse)
                    .is_some_and(|m| self.excluded.iter().any(|e| e.essence == m.essence));
            if skip_request {
                return next.run(outgoing).await;
            }
            let Some(choice) = self.choose(headers) else {
                return next.run(outgoing).await;
            };
            let Choice::Encode(encoding) = choice else {
                return next.run(outgoing).await;
            };
            let mut response = next.run(outgoing).await?;
            add_vary(response.headers_mut());
            let status = response.status();
            if status.is_informational()
                || status == StatusCode::NO_CONTENT
                || status == StatusCode::NOT_MODIFIED
                || response.headers().contains_key(header::CONTENT_ENCODING)
                || !self.type_allows(response.headers())
            {
                return Ok(response);
            }
            let announced = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if announced.is_some_and(|n| n < self.min_size) {
                return Ok(response);
            }
            // Hold back the start of the body until it is clear the answer is big enough.
            let (mut head, mut body) = response.into_parts();
            let mut held = Vec::new();
            let mut held_len = 0u64;
            while held_len < self.min_size {
                match body.frame().await {
                    None => {
                        // Ended small: relay it as it was.
                        let replay = Replay::new(held, None);
                        return Ok(Response::from_parts(
                            head,
                            crate::dataplane::body::boxed(replay),
                        ));
                    }
                    Some(Err(error)) => {
                        return Err(crate::dataplane::error::ProxyError::OriginUnreachable {
                            server: String::new(),
                            reason: format!("reading the answer: {error}"),
                        })
                    }
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            held_len += data.len() as u64;
                            held.push(data);
                        }
                    }
                }
            }
            head.headers.remove(header::CONTENT_LENGTH);
            head.headers.remove(header::ACCEPT_RANGES);
            head.headers.insert(
                header::CONTENT_ENCODING,
                HeaderValue::from_static(encoding.token()),
            );
            let rest = crate::dataplane::body::boxed(Replay::new(held, Some(body)));
            Ok(Response::from_parts(head, encode(rest, encoding)))
        })
    }
}

/// Adds `Vary: Accept-Encoding` unless the answer already varies on it.
fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .map(|s| {
                s.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*")
            })
            .unwrap_or(false)
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Compresses `body` as it streams. Trailers are dropped (compressed answers carry none in
/// practice: gRPC is never compressed).
pub fn encode(body: ProxyBody, encoding: Encoding) -> ProxyBody {
    let input = BodyDataStream::new(body).map_err(io::Error::other);
    let reader = StreamReader::new(input);
    let output: ByteStream = match encoding {
        Encoding::Gzip => Box::pin(ReaderStream::new(GzipEncoder::new(reader))),
        Encoding::Brotli => Box::pin(ReaderStream::new(BrotliEncoder::new(reader))),
        Encoding::Zstd => Box::pin(ReaderStream::new(ZstdEncoder::new(reader))),
    };
    let frames =
        Exclusive(Mutex::new(output)).map(|chunk| chunk.map(Frame::data).map_err(BoxError::from));
    BodyExt::boxed(StreamBody::new(frames))
}

/// Makes a `Send` stream `Sync` (bodies must be both) by polling it under a lock that only
/// its single reader ever takes.
struct Exclusive(Mutex<ByteStream>);

impl Stream for Exclusive {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let stream = this.0.get_mut().unwrap_or_else(|p| p.into_inner());
        stream.as_mut().poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn middleware() -> Compress {
        Compress {
            excluded: vec![],
            included: vec![],
            min_size: 1024,
            encodings: vec![Encoding::Gzip, Encoding::Brotli, Encoding::Zstd],
            default_encoding: None,
        }
    }

    fn choose(c: &Compress, accept: Option<&str>) -> Option<Choice> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(a).unwrap());
        }
        c.choose(&headers)
    }

    #[test]
    fn accept_encoding_as_traefik() {
        let c = middleware();
        use Choice::*;
        use Encoding::*;
        assert_eq!(choose(&c, None), None);
        assert_eq!(choose(&c, Some("")), Some(Leave));
        assert_eq!(choose(&c, Some("gzip, br, zstd")), Some(Encode(Gzip)));
        assert_eq!(choose(&c, Some("zstd, br")), Some(Encode(Brotli)));
        assert_eq!(
            choose(&c, Some("gzip;q=0.5, br;q=0.9")),
            Some(Encode(Brotli))
        );
        assert_eq!(choose(&c, Some("gzip;q=0, deflate")), Some(Leave));
        assert_eq!(choose(&c, Some("*")), Some(Encode(Gzip)));
        assert_eq!(choose(&c, Some("identity, gzip;q=0.5")), Some(Leave));
        assert_eq!(choose(&c, Some("*;q=0.1, zstd;q=0.2")), Some(Encode(Zstd)));
        let c = Compress {
            default_encoding: Some(Zstd),
            encodings: vec![Zstd, Brotli],
            ..middleware()
        };
        assert_eq!(choose(&c, None), Some(Encode(Zstd)));
        assert_eq!(choose(&c, Some("gzip, br")), Some(Encode(Brotli)));
        assert_eq!(choose(&c, Some("gzip")), Some(Leave));
    }

    #[test]
    fn media_types_match_with_parameters() {
        let plain = MediaType::parse("text/plain").unwrap();
        let utf8 = MediaType::parse("text/plain; charset=UTF-8").unwrap();
        assert!(plain.matches(&utf8));
        assert!(!utf8.matches(&plain));
        assert!(utf8.matches(&MediaType::parse("Text/Plain;charset=\"UTF-8\"").unwrap()));
        assert!(MediaType::parse("nonsense").is_none());
    }

    #[test]
    fn configuration_errors() {
        let e = compile(
            &serde_json::json!({"excludedContentTypes": ["a/b"], "includedContentTypes": ["c/d"]}),
        )
        .unwrap_err();
        assert_eq!(e.field, "includedContentTypes");
        let e = compile(&serde_json::json!({"encodings": ["gzip", "deflate"]})).unwrap_err();
        assert_eq!(e.field, "encodings[1]");
        let e = compile(&serde_json::json!({"encodings": ["gzip"], "defaultEncoding": "br"}))
            .unwrap_err();
        assert_eq!(e.field, "defaultEncoding");
        let e = compile(&serde_json::json!({"excludedContentTypes": ["nope"]})).unwrap_err();
        assert_eq!(e.field, "excludedContentTypes[0]");
    }
}
