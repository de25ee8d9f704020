//! The `retry` middleware, with Traefik's semantics:
//!
//! - A **network error** is retried only when the request never reached the origin (the
//!   connection could not be opened). Once the request was sent, the origin may have acted on
//!   it, so a connection it then dropped is answered 502 without a retry — as Traefik, which
//!   stops retrying as soon as the request was written.
//! - An answer whose status is in `status` is retried (idempotent methods only, unless
//!   `retryNonIdempotentMethod`); any other answer ends the retries, whatever its status.
//! - Nothing is ever sent to the client before the final attempt's answer, so a retry can
//!   never follow a partial answer; upgrade requests are not retried.
//! - Between attempts: exponential backoff from `initialInterval` (Traefik's multiplier,
//!   2^(1/(attempts-1)), with ±50 % jitter); none when it is unset. `timeout` stops retrying
//!   once that much time has passed since the first attempt.
//!
//! Request bodies are replayed without being read ahead: the body streams to the origin as
//! usual while its first `maxRequestBodyBytes` (2 MiB by default; `-1` means Sluice's 16 MiB
//! cap) are remembered. A request whose body outgrew that is not retried.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use serde::Deserialize;
use serde_json::Value;
use sluice_config::GoDuration;

use super::errors::{parse_spec, StatusRanges};
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{BoxError, ProxyBody};
use crate::dataplane::error::ProxyError;
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

/// Traefik's default for `maxRequestBodyBytes`.
const DEFAULT_MAX_BODY: u64 = 2 * 1024 * 1024;
/// What `maxRequestBodyBytes: -1` (no limit) means here: remembering bodies without any
/// bound would let one client hold unbounded memory.
const UNLIMITED_CAP: u64 = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    attempts: i64,
    initial_interval: Option<GoDuration>,
    timeout: Option<GoDuration>,
    max_request_body_bytes: Option<i64>,
    #[serde(default)]
    status: Vec<String>,
    #[serde(default)]
    disable_retry_on_network_error: bool,
    #[serde(default)]
    retry_non_idempotent_method: bool,
}

/// The compiled `retry` middleware.
#[derive(Debug)]
pub struct Retry {
    attempts: u32,
    initial_interval: Duration,
    timeout: Option<Duration>,
    max_body: u64,
    statuses: StatusRanges,
    network_errors: bool,
    non_idempotent: bool,
}

/// Compiles `retry`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let spec: Spec = parse_spec(spec)?;
    if spec.attempts <= 0 {
        return Err(MiddlewareError::new(
            "attempts",
            format!("must be at least 1 (got {})", spec.attempts),
        ));
    }
    let statuses = StatusRanges::parse(&spec.status, "status")?;
    if statuses.is_empty() && spec.disable_retry_on_network_error {
        return Err(MiddlewareError::new(
            "disableRetryOnNetworkError",
            "with network errors not retried, `status` must list what to retry",
        ));
    }
    let positive = |value: Option<GoDuration>, field: &str| match value {
        Some(d) if d.is_negative() => Err(MiddlewareError::new(field, "must not be negative")),
        Some(d) => Ok(d.as_std().unwrap_or_default()),
        None => Ok(Duration::ZERO),
    };
    let initial_interval = positive(spec.initial_interval, "initialInterval")?;
    let timeout = Some(positive(spec.timeout, "timeout")?).filter(|t| !t.is_zero());
    let max_body = match spec.max_request_body_bytes {
        None => DEFAULT_MAX_BODY,
        Some(n) if n < 0 => UNLIMITED_CAP,
        Some(n) => n as u64,
    };
    Ok(Arc::new(Retry {
        attempts: spec.attempts.min(1000) as u32,
        initial_interval,
        timeout,
        max_body,
        statuses,
        network_errors: !spec.disable_retry_on_network_error,
        non_idempotent: spec.retry_non_idempotent_method,
    }))
}

/// Whether an error means the request never left Sluice (so replaying it is safe).
pub(crate) fn never_sent(error: &ProxyError) -> bool {
    // Failures to open the connection read `cannot connect` (Sluice's HTTP/1.1 pool, a dial
    // timeout included) or `client error (Connect)` (hyper's client, for h2c); everything else
    // happened after the request may have been written. ProxyError carries no typed flag for
    // this, hence the text.
    let connect = |reason: &str| {
        reason.starts_with("cannot connect") || reason.starts_with("client error (Connect)")
    };
    match error {
        ProxyError::OriginUnreachable { reason, .. } | ProxyError::OriginTimeout { reason, .. } => {
            connect(reason)
        }
        _ => false,
    }
}

impl Retry {
    /// The pause before attempt number `attempt + 1` (`attempt` ≥ 1).
    fn backoff(&self, attempt: u32) -> Duration {
        if self.initial_interval.is_zero() || self.attempts < 2 {
            return Duration::ZERO;
        }
        let multiplier = 2f64.powf(1.0 / f64::from(self.attempts - 1));
        let base = self.initial_interval.as_secs_f64() * multiplier.powi(attempt as i32 - 1);
        let jitter = 1.0 + (rand::random::<f64>() - 0.5);
        Duration::from_secs_f64((base * jitter).min(60.0))
    }
}

impl Middleware for Retry {
    fn handle<'a>(
        &'a self,
        _connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            if self.attempts == 1 || outgoing.upgrade.is_some() {
                return next.run(outgoing).await;
            }
            let method = outgoing.request.method().clone();
            let idempotent =
                method != Method::POST && method != Method::PATCH && method.as_str() != "LOCK";
            let statuses_apply = !self.statuses.is_empty() && (idempotent || self.non_idempotent);

            let Outgoing {
                request,
                path_and_query,
                host,
                upgrade,
            } = outgoing;
            let (parts, body) = request.into_parts();
            let tape = Tape::new(body, self.max_body);
            let started = Instant::now();
            let mut attempt = 1;
            let mut upgrade = upgrade;
            loop {
                let request = crate::dataplane::upstream::rebuild(&parts, tape.replay().boxed());
                let this = Outgoing {
                    request,
                    path_and_query: path_and_query.clone(),
                    host: host.clone(),
                    upgrade: upgrade.take(),
                };
                let result = next.run(this).await;
                let last = attempt >= self.attempts
                    || self.timeout.is_some_and(|t| started.elapsed() >= t)
                    || !tape.replayable();
                if last {
                    return result;
                }
                let again = match &result {
                    Ok(response) => {
                        statuses_apply && self.statuses.contains(response.status().as_u16())
                    }
                    Err(error) => self.network_errors && never_sent(error),
                };
                if !again {
                    return result;
                }
                // The abandoned answer's body is dropped unread, which closes that exchange.
                drop(result);
                tracing::debug!(attempt, "retrying request");
                let pause = self.backoff(attempt);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                attempt += 1;
            }
        })
    }
}

/// A request body that can be played again: the original streams through once, its chunks
/// remembered up to a limit; each replay gives the remembered chunks, then continues with
/// whatever of the original was not read yet.
#[derive(Clone)]
struct Tape {
    shared: Arc<Mutex<TapeState>>,
}

struct TapeState {
    /// The part of the original body not read yet.
    rest: Option<ProxyBody>,
    /// Whether the original body has ended (then `rest` is spent).
    ended: bool,
    read: Vec<Bytes>,
    read_len: u64,
    limit: u64,
    /// Set when more than `limit` bytes were read: no replay is possible any more.
    overflowed: bool,
    /// Which replay may read; older ones are cut off.
    generation: u64,
}

impl Tape {
    fn new(body: ProxyBody, limit: u64) -> Self {
        let ended = body.is_end_stream();
        Self {
            shared: Arc::new(Mutex::new(TapeState {
                rest: Some(body),
                ended,
                read: Vec::new(),
                read_len: 0,
                limit,
                overflowed: false,
                generation: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TapeState> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether another attempt could get the whole body.
    fn replayable(&self) -> bool {
        !self.lock().overflowed
    }

    /// A body for the next attempt; the previous attempt's body stops working.
    fn replay(&self) -> Replay {
        let mut state = self.lock();
        state.generation += 1;
        Replay {
            tape: self.clone(),
            generation: state.generation,
            position: 0,
        }
    }
}

/// One attempt's view of a [`Tape`].
struct Replay {
    tape: Tape,
    generation: u64,
    /// Remembered chunks already given.
    position: usize,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let tape = self.tape.clone();
        let mut state = tape.lock();
        if state.generation != self.generation {
            return Poll::Ready(Some(Err("request body replaced by a retry".into())));
        }
        if let Some(chunk) = state.read.get(self.position).cloned() {
            self.position += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if state.ended {
            return Poll::Ready(None);
        }
        let Some(rest) = state.rest.as_mut() else {
            return Poll::Ready(None);
        };
        match std::pin::Pin::new(rest).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                state.ended = true;
                state.rest = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                // A broken client body cannot be replayed either.
                state.overflowed = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if !state.overflowed {
                        state.read_len += data.len() as u64;
                        if state.read_len > state.limit {
                            state.overflowed = true;
                            state.read.clear();
                        } else {
                            state.read.push(data.clone());
                        }
                    }
                    if !state.overflowed {
                        self.position += 1;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let state = self.tape.lock();
        state.generation == self.generation && state.ended && self.position >= state.read.len()
    }

    fn size_hint(&self) -> SizeHint {
        let state = self.tape.lock();
        match (&state.rest, state.ended) {
            (_, true) => {
                SizeHint::with_exact(state.read_len.saturating_sub(self.replayed_len(&state)))
            }
            (Some(rest), false) => {
                let hint = rest.size_hint();
                let pending = state.read_len.saturating_sub(self.replayed_len(&state));
                let mut total = SizeHint::new();
                total.set_lower(hint.lower() + pending);
                if let Some(upper) = hint.upper() {
                    total.set_upper(upper + pending);
                }
                total
            }
            (None, false) => SizeHint::default(),
        }
    }
}

impl Replay {
    /// Bytes of remembered chunks this replay has already given.
    fn replayed_len(&self, state: &TapeState) -> u64 {
        state
            .read
            .iter()
            .take(self.position)
            .map(|c| c.len() as u64)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::body::full;

    async fn collect(body: Replay) -> Result<Bytes, BoxError> {
        Ok(body.collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn a_partly_read_body_replays_whole() {
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"hello "))),
            Ok(Frame::data(Bytes::from_static(b"world"))),
        ]);
        let tape = Tape::new(http_body_util::StreamBody::new(chunks).boxed(), 1024);
        let mut first = tape.replay();
        // The first attempt reads one chunk and gives up.
        let frame =
            futures_util::future::poll_fn(|cx| std::pin::Pin::new(&mut first).poll_frame(cx)).await;
        assert_eq!(frame.unwrap().unwrap().into_data().unwrap(), "hello ");
        let second = tape.replay();
        assert_eq!(collect(second).await.unwrap(), "hello world");
        // The first attempt's body is cut off.
        assert!(collect(first).await.is_err());
        assert_eq!(collect(tape.replay()).await.unwrap(), "hello world");
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_not_replayable() {
        let tape = Tape::new(full("0123456789"), 4);
        assert_eq!(collect(tape.replay()).await.unwrap(), "0123456789");
        assert!(!tape.replayable());
    }

    #[test]
    fn configuration_rules() {
        assert_eq!(
            compile(&serde_json::json!({"attempts": 0}))
                .unwrap_err()
                .field,
            "attempts"
        );
        assert_eq!(
            compile(&serde_json::json!({"attempts": 2, "disableRetryOnNetworkError": true}))
                .unwrap_err()
                .field,
            "disableRetryOnNetworkError"
        );
        assert_eq!(
            compile(&serde_json::json!({"attempts": 2, "status": ["5xx"]}))
                .unwrap_err()
                .field,
            "status[0]"
        );
        assert_eq!(
            compile(&serde_json::json!({"attemps": 2}))
                .unwrap_err()
                .field,
            "attemps"
        );
    }

    #[test]
    fn connect_failures_only_count_as_unsent() {
        let refused = ProxyError::OriginUnreachable {
            server: "s".into(),
            reason: "client error (Connect): tcp connect error: Connection refused".into(),
        };
        let pooled = ProxyError::OriginUnreachable {
            server: "s".into(),
            reason: "cannot connect: Connection refused (os error 111)".into(),
        };
        assert!(never_sent(&pooled));
        let dropped = ProxyError::OriginUnreachable {
            server: "s".into(),
            reason: "client error (SendRequest): connection closed before message completed".into(),
        };
        assert!(never_sent(&refused));
        assert!(!never_sent(&dropped));
    }
}
