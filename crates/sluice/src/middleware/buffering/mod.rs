//! The `buffering` middleware: reads the whole request before sending it on (so the origin
//! gets it with a Content-Length, and it can be sent again), reads the whole answer before
//! relaying it, enforces size limits, and replays the request when `retryExpression` says so.
//!
//! - A request larger than `maxRequestBodyBytes` gets 413 (announced sizes are refused before
//!   anything is read); an answer larger than `maxResponseBodyBytes` gets 500.
//! - Up to `memRequestBodyBytes` / `memResponseBodyBytes` (default 1 MiB each) of a body stay
//!   in memory; the rest goes to an unnamed temporary file ([`stored`]) and is streamed back
//!   from it, so memory stays bounded whatever the size. Without a maximum (`0`) a body is
//!   buffered whole however large, on disk, as in Traefik.
//! - `retryExpression` (oxy's language): `Attempts()` (the first attempt counts),
//!   `ResponseCode()`, `IsNetworkError()` (the answer is 502 or 504), e.g.
//!   `IsNetworkError() && Attempts() < 2`. At most 10 attempts, as oxy.

mod stored;

use std::sync::Arc;

use http::{header, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use stored::{store, StoreError, Stored};

use super::circuit_breaker::expression::{self, Expr, Function, Kind};
use super::errors::parse_spec;
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{full, ProxyBody};
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
            let stored = match store(body, self.mem_request, self.max_request).await {
                Ok(Stored::Whole(stored)) => stored,
                Ok(Stored::TooLarge) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE)),
                Err(StoreError::Body(e)) => {
                    return Err(ProxyError::BadRequest(format!(
                        "reading the request body: {e}"
                    )))
                }
                Err(e @ StoreError::Disk(_)) => return Err(ProxyError::Internal(e.to_string())),
            };
            if stored.spilled() {
                tracing::debug!(
                    bytes = stored.len(),
                    "buffering: request body spilled to disk"
                );
            }
            // The origin gets a plain length instead of chunks.
            parts.headers.remove(header::TRANSFER_ENCODING);
            if !stored.is_empty() || parts.headers.contains_key(header::CONTENT_LENGTH) {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(stored.len()));
            }

            let mut attempt = 1;
            loop {
                let request = crate::dataplane::upstream::rebuild(&parts, stored.body());
                let this = Outgoing {
                    request,
                    path_and_query: path_and_query.clone(),
                    host: host.clone(),
                    upgrade: None,
                };
                let response = match next.run(this).await {
                    Ok(response) => response,
                    Err(error) => {
                        if self.wants_retry(attempt, error.status().as_u16()) {
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
                let answer = match store(body, self.mem_response, self.max_response).await {
                    Ok(Stored::Whole(answer)) => answer,
                    Ok(Stored::TooLarge) => return Ok(plain(StatusCode::INTERNAL_SERVER_ERROR)),
                    Err(StoreError::Body(e)) => {
                        return Err(ProxyError::OriginUnreachable {
                            server: String::new(),
                            reason: format!("reading the answer: {e}"),
                        })
                    }
                    Err(e @ StoreError::Disk(_)) => {
                        return Err(ProxyError::Internal(e.to_string()))
                    }
                };
                if self.wants_retry(attempt, head.status.as_u16()) {
                    attempt += 1;
                    continue;
                }
                if !answer.is_empty() || head.headers.contains_key(header::CONTENT_LENGTH) {
                    head.headers.remove(header::TRANSFER_ENCODING);
                    head.headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(answer.len()));
                }
                return Ok(Response::from_parts(head, answer.body()));
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
