//! `sluice whoami`: a small demo origin in the spirit of traefik/whoami.
//!
//! It answers every request with its name, the request line, the headers and the client address,
//! so a person (or a test) can see exactly what the proxy forwarded. A few paths do more:
//!
//! - `/echo` upgrades to a WebSocket and echoes every message back;
//! - `/data?size=N` streams N bytes without holding them in memory;
//! - `/health` answers with the status last set by `POST /health` (body: a status code), 200 at first;
//! - any request with a body has it read as a stream and counted (`Body-Bytes: N`), never buffered;
//! - `?wait=DURATION` (e.g. `2s`, `150ms`) delays the answer, to play a slow origin.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

type Body = BoxBody<Bytes, std::io::Error>;

/// The state of one whoami origin.
#[derive(Debug)]
pub struct Whoami {
    name: String,
    health: AtomicU16,
    requests: AtomicU64,
    body_bytes: AtomicU64,
}

impl Whoami {
    /// A whoami origin answering under `name`.
    pub fn new(name: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            health: AtomicU16::new(200),
            requests: AtomicU64::new(0),
            body_bytes: AtomicU64::new(0),
        })
    }

    /// How many requests this origin has answered (health checks included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Request body bytes received so far, over all requests.
    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }

    /// Serves on `listener` until the task is dropped; dropping it also closes every open
    /// connection, so a test can kill an origin for real.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let mut connections = tokio::task::JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "whoami: accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            let builder = builder.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.answer(req, peer).await) }
                });
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn answer(&self, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let query = req.uri().query().unwrap_or("").to_owned();
        if let Some(wait) = query_value(&query, "wait").and_then(parse_wait) {
            tokio::time::sleep(wait).await;
        }
        match req.uri().path() {
            "/echo" if is_websocket(&req) => return self.echo(&mut req),
            "/health" => return self.health(req).await,
            "/data" => {
                let size = query_value(&query, "size")
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0);
                return data_response(size);
            }
            _ => {}
        }

        let mut text = String::with_capacity(512);
        let _ = writeln!(text, "Name: {}", self.name);
        let _ = writeln!(text, "RemoteAddr: {peer}");
        let _ = writeln!(
            text,
            "{} {} {:?}",
            req.method(),
            req.uri()
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("/"),
            req.version()
        );
        if req.headers().get(header::HOST).is_none() {
            if let Some(authority) = req.uri().authority() {
                let _ = writeln!(text, "Host: {authority}");
            }
        }
        for (name, value) in req.headers() {
            let _ = writeln!(
                text,
                "{}: {}",
                canonical_name(name.as_str()),
                String::from_utf8_lossy(value.as_bytes())
            );
        }
        let mut received: u64 = 0;
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        received += data.len() as u64;
                    }
                }
                Err(_) => break,
            }
        }
        if received > 0 {
            self.body_bytes.fetch_add(received, Ordering::Relaxed);
            let _ = writeln!(text, "Body-Bytes: {received}");
        }
        let mut response = Response::new(full(text));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }

    async fn health(&self, req: Request<Incoming>) -> Response<Body> {
        if req.method() == http::Method::POST {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let code = std::str::from_utf8(&body)
                .ok()
                .and_then(|s| s.trim().parse::<u16>().ok())
                .filter(|c| StatusCode::from_u16(*c).is_ok());
            return match code {
                Some(code) => {
                    self.health.store(code, Ordering::Relaxed);
                    Response::new(full(format!("health set to {code}\n")))
                }
                None => status_response(StatusCode::BAD_REQUEST, "body must be a status code\n"),
            };
        }
        let code =
            StatusCode::from_u16(self.health.load(Ordering::Relaxed)).unwrap_or(StatusCode::OK);
        status_response(code, &format!("{}\n", self.name))
    }

    fn echo(&self, req: &mut Request<Incoming>) -> Response<Body> {
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
            return status_response(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let upgrade = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() {
                    break;
                }
                if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                    break;
                }
            }
        });
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(
            header::CONNECTION,
            header::HeaderValue::from_static("Upgrade"),
        );
        headers.insert(
            header::UPGRADE,
            header::HeaderValue::from_static("websocket"),
        );
        if let Ok(value) = header::HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
        }
        response
    }
}

fn is_websocket<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Streams `size` bytes in 64 KiB chunks.
fn data_response(size: u64) -> Response<Body> {
    const CHUNK: u64 = 64 * 1024;
    let block = Bytes::from(vec![b'x'; CHUNK as usize]);
    let stream = futures_util::stream::unfold(size, move |left| {
        let block = block.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(CHUNK);
            Some((
                Ok::<_, std::io::Error>(Frame::data(block.slice(..n as usize))),
                left - n,
            ))
        }
    });
    let mut response = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    if let Ok(value) = header::HeaderValue::from_str(&size.to_string()) {
        response.headers_mut().insert(header::CONTENT_LENGTH, value);
    }
    response
}

fn status_response(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(full(text.to_owned()));
    *response.status_mut() = status;
    response
}

fn full(text: String) -> Body {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Parses `2s`, `150ms` or a bare number of seconds.
fn parse_wait(text: &str) -> Option<Duration> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse::<u64>().ok().map(Duration::from_millis);
    }
    let secs = text.strip_suffix('s').unwrap_or(text);
    secs.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// `x-forwarded-for` -> `X-Forwarded-For`, as Go prints header names.
fn canonical_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_print_in_canonical_form() {
        assert_eq!(canonical_name("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_name("host"), "Host");
    }

    #[test]
    fn wait_accepts_seconds_and_milliseconds() {
        assert_eq!(parse_wait("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_wait("150ms"), Some(Duration::from_millis(150)));
        assert_eq!(parse_wait("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_wait("soon"), None);
    }
}
