//! The `buffering` middleware: reads the whole request before sending it on (so the origin
//! gets it with a Content-Length, and it can be sent again), reads the whole answer before
//! relaying it, enforces size limits, and replays the request when `retryExpression` says so.
//!
//! - A request larger than `maxRequestBodyBytes` gets 413 (announced sizes are refused before
//!   anything is read); an answer larger than `maxResponseBodyBytes` gets 500.
//! - Everything is kept in memory; Sluice never spills to disk. With a maximum set, that is up
//!   to the maximum. Without one (`0`), Traefik would buffer without bound (on disk past the
//!   `mem*BodyBytes` thresholds); Sluice buffers up to the threshold and streams the rest
//!   unbuffered instead — such a request or answer cannot be replayed.
//! - `retryExpression` (oxy's language): `Attempts()` (the first attempt counts),
//!   `ResponseCode()`, `IsNetworkError()` (the answer is 502 or 504), e.g.
//!   `IsNetworkError() && Attempts() < 2`. At most 10 attempts, as oxy.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;
use serde::Deserialize;
use serde_json::Value;

use super::circuit_breaker::expression::{self, Expr, Function, Kind};
use super::errors::parse_spec;
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{boxed, full, ProxyBody, Replay};
use crate::dataplane::error::ProxyError;
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

/// oxy's defaults.
const DEFAULT_MEM_BYTES: u64 = 1024 * 1024;
const MAX_ATTEMPTS: u32 = 10;

const FUNCTIONS: &[Function] = &[
    Function {
        name: "IsNetworkError",
        arity: 0,
        kind: Kind::Bool,
    },
    Function {
        name: "Attempts",
        arity: 0,
        kind: Kind::Number,
    },
    Function {
        name: "ResponseCode",
        arity: 0,
        kind: Kind::Number,
    },
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    max_request_body_bytes: i64,
    #[serde(default)]
    mem_request_body_bytes: i64,
    #[serde(default)]
    max_response_body_bytes: i64,
    #[serde(default)]
    mem_response_body_bytes: i64,
    #[serde(default)]
    retry_expression: String,
}

/// The compiled `buffering` middleware.
#[derive(Debug)]
struct Buffering {
    /// 0: no maximum.
    max_request: u64,
    mem_request: u64,
    max_response: u64,
    mem_response: u64,
    retry: Option<Expr>,
}

/// Compiles `buffering`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let spec: Spec = parse_spec(spec)?;
    let size = |value: i64, default: u64| if value > 0 { value as u64 } else { default };
    let retry = if spec.retry_expression.trim().is_empty() {
        None
    } else {
        Some(
            expression::parse(&spec.retry_expression, FUNCTIONS)
                .map_err(|e| MiddlewareError::new("retryExpression", e.to_string()))?,
        )
    };
    Ok(Arc::new(Buffering {
        max_request: size(spec.max_request_body_bytes, 0),
        mem_request: size(spec.mem_request_body_bytes, DEFAULT_MEM_BYTES),
        max_response: size(spec.max_response_body_bytes, 0),
        mem_response: size(spec.mem_response_body_bytes, DEFAULT_MEM_BYTES),
        retry,
    }))
}

/// How far reading a body got.
enum Read {
    /// The whole body, with its trailers if any.
    Whole(Bytes),
    /// More than the limit: the chunks read and the unread rest.
    Over(Vec<Bytes>, ProxyBody),
}

/// Reads `body` while it stays within `limit` bytes.
async fn read_up_to(
    mut body: ProxyBody,
    limit: u64,
) -> Result<Read, crate::dataplane::body::BoxError> {
    let mut chunks = Vec::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Ok(data) = frame.into_data() {
            total += data.len() as u64;
            chunks.push(data);
            if total > limit {
                return Ok(Read::Over(chunks, body));
            }
        }
    }
    let mut whole = BytesMut::with_capacity(total as usize);
    for chunk in chunks {
        whole.extend_from_slice(&chunk);
    }
    Ok(Read::Whole(whole.freeze()))
}

fn plain(status: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(full(status.canonical_reason().unwrap_or("")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

impl Buffering {
    fn wants_retry(&self, attempt: u32, status: u16) -> bool {
        let Some(retry) = &self.retry else {
            return false;
        };
        attempt < MAX_ATTEMPTS
            && retry.eval(&mut |call| match call.function {
                0 => f64::from(u8::from(status == 502 || status == 504)),
                1 => f64::from(attempt),
                _ => f64::from(status),
            })
    }
}

impl Middleware for Buffering {
    fn handle<'a>(
        &'a self,
        _connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            let Outgoing {
                request,
                path_and_query,
                host,
                upgrade,
            } = outgoing;
            if upgrade.is_some() {
                let outgoing = Outgoing {
                    request,
                    path_and_query,
                    host,
                    upgrade,
                };
                return next.run(outgoing).await;
            }
            let (mut parts, body) = request.into_parts();
            if self.max_request > 0 {
                let announced = parts
                    .headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                if announced.is_some_and(|n| n > self.max_request) {
                    return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE));
                }
            }
            let limit = if self.max_request > 0 {
                self.max_request
            } else {
                self.mem_request
            };
            let read = read_up_to(body, limit)
                .await
                .map_err(|e| ProxyError::BadRequest(format!("reading the request body: {e}")))?;
            // Either the whole body (replayable), or a stream that can be sent only once.
            let (whole, mut once) = match read {
                Read::Whole(bytes) => (Some(bytes), None),
                Read::Over(_, _) if self.max_request > 0 => {
                    return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE))
                }
                Read::Over(chunks, rest) => (None, Some(boxed(Replay::new(chunks, Some(rest))))),
            };
            if let Some(bytes) = &whole {
                // The origin gets a plain length instead of chunks.
                parts.headers.remove(header::TRANSFER_ENCODING);
                if bytes.is_empty() && !parts.headers.contains_key(header::CONTENT_LENGTH) {
                    // Nothing to announce for a request that had no body.
                } else {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                }
            }

            let mut attempt = 1;
            loop {
                let body = match (&whole, once.take()) {
                    (Some(bytes), _) => full(bytes.clone()),
                    (None, Some(stream)) => stream,
                    // Unreachable: a stream-once request never loops.
                    (None, None) => full(Bytes::new()),
                };
                let request = crate::dataplane::upstream::rebuild(&parts, body);
                let this = Outgoing {
                    request,
                    path_and_query: path_and_query.clone(),
                    host: host.clone(),
                    upgrade: None,
                };
                let replayable = whole.is_some();
                let response = match next.run(this).await {
                    Ok(response) => response,
                    Err(error) => {
                        if replayable && self.wants_retry(attempt, error.status().as_u16()) {
                            attempt += 1;
                            continue;
                        }
                        return Err(error);
                    }
                };
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return Ok(response);
                }
                let (mut head, body) = response.into_parts();
                let limit = if self.max_response > 0 {
                    self.max_response
                } else {
                    self.mem_response
                };
                let read =
                    read_up_to(body, limit)
                        .await
                        .map_err(|e| ProxyError::OriginUnreachable {
                            server: String::new(),
                            reason: format!("reading the answer: {e}"),
                        })?;
                let bytes = match read {
                    Read::Over(_, _) if self.max_response > 0 => {
                        return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR))
                    }
                    Read::Over(chunks, rest) => {
                        return Ok(Response::from_parts(
                            head,
                            boxed(Replay::new(chunks, Some(rest))),
                        ));
                    }
                    Read::Whole(bytes) => bytes,
                };
                if replayable && self.wants_retry(attempt, head.status.as_u16()) {
                    attempt += 1;
                    continue;
                }
                if !bytes.is_empty() || head.headers.contains_key(header::CONTENT_LENGTH) {
                    head.headers.remove(header::TRANSFER_ENCODING);
                    head.headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                }
                let body = full(bytes);
                debug_assert!(body.is_end_stream() || body.size_hint().exact().is_some());
                return Ok(Response::from_parts(head, body));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_expression_functions() {
        let Ok(m) =
            compile(&serde_json::json!({"retryExpression": "IsNetworkError() && Attempts() < 2"}))
        else {
            panic!("valid expression refused");
        };
        drop(m);
        let b = Buffering {
            max_request: 0,
            mem_request: 1,
            max_response: 0,
            mem_response: 1,
            retry: Some(
                expression::parse("IsNetworkError() && Attempts() < 2", FUNCTIONS).unwrap(),
            ),
        };
        assert!(b.wants_retry(1, 502));
        assert!(!b.wants_retry(2, 502));
        assert!(!b.wants_retry(1, 500));
        let b = Buffering {
            retry: Some(expression::parse("ResponseCode() == 503", FUNCTIONS).unwrap()),
            ..b
        };
        assert!(b.wants_retry(9, 503));
        assert!(!b.wants_retry(10, 503), "at most 10 attempts");
    }

    #[test]
    fn errors_name_the_field() {
        let e =
            compile(&serde_json::json!({"retryExpression": "IsNetworkError() &&"})).unwrap_err();
        assert_eq!(e.field, "retryExpression");
        assert!(e.message.starts_with("column 20:"), "{e}");
        let e = compile(&serde_json::json!({"maxRequestBodyByte": 1})).unwrap_err();
        assert_eq!(e.field, "maxRequestBodyByte");
    }
}
