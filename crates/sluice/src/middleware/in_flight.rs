//! `inFlightReq`: at most `amount` requests of one source at a time; the next gets a 429.
//!
//! A request counts from the moment it passes until its response body has been sent (or the
//! client went away), as in Traefik where the slot is held for the whole handler; an upgraded
//! request (WebSocket) counts until its tunnel closes. The source is
//! the request's Host by default, or a header, or the client IP per `ipStrategy`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use hyper::body::{Body, Frame, SizeHint};
use serde::Deserialize;
use serde_json::Value;

use super::auth::parse_at;
use super::ip_allow_list::IpStrategy;
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{full, BoxError, ProxyBody};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::{Outgoing, TunnelHold};

/// Traefik's `inFlightReq` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Options {
    #[serde(default)]
    amount: i64,
    source_criterion: Option<Value>,
}

/// Traefik's `sourceCriterion` options.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CriterionOptions {
    ip_strategy: Option<Value>,
    request_header_name: Option<String>,
    #[serde(default)]
    request_host: bool,
}

/// What groups requests into one source.
#[derive(Debug, Clone)]
pub enum SourceCriterion {
    /// The client IP per the strategy.
    Ip(IpStrategy),
    /// The first value of a request header (empty when absent: all such requests are one source).
    Header(HeaderName),
    /// The Host the client asked for.
    Host,
}

impl SourceCriterion {
    /// Parses a `sourceCriterion` at `path`; `default` applies when none is set (Traefik's
    /// inFlightReq defaults to the host, rateLimit to the remote address).
    pub fn parse(
        spec: Option<&Value>,
        path: &str,
        default: SourceCriterion,
    ) -> Result<Self, MiddlewareError> {
        let Some(spec) = spec else { return Ok(default) };
        let options: CriterionOptions = parse_at(spec, path)?;
        let header = options.request_header_name.filter(|h| !h.is_empty());
        let set = [
            options.ip_strategy.is_some(),
            header.is_some(),
            options.request_host,
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(MiddlewareError::new(
                path,
                "ipStrategy, requestHeaderName and requestHost are mutually exclusive",
            ));
        }
        if let Some(strategy) = &options.ip_strategy {
            return IpStrategy::parse(Some(strategy), &format!("{path}.ipStrategy"))
                .map(SourceCriterion::Ip);
        }
        if let Some(name) = header {
            return HeaderName::from_bytes(name.as_bytes())
                .map(SourceCriterion::Header)
                .map_err(|_| {
                    MiddlewareError::new(
                        format!("{path}.requestHeaderName"),
                        format!("`{name}` is not a valid header name"),
                    )
                });
        }
        if options.request_host {
            return Ok(SourceCriterion::Host);
        }
        Ok(default)
    }

    /// The source key of a request.
    pub fn key(&self, connection: &Connection, outgoing: &Outgoing) -> String {
        match self {
            SourceCriterion::Ip(strategy) => {
                strategy.client_ip(connection, outgoing.request.headers())
            }
            SourceCriterion::Header(name) => outgoing
                .request
                .headers()
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
            SourceCriterion::Host => String::from_utf8_lossy(outgoing.host.as_bytes()).into_owned(),
        }
    }
}

/// Requests in flight per source.
#[derive(Debug, Default)]
struct Counts {
    by_source: Mutex<HashMap<String, i64>>,
}

impl Counts {
    /// Takes a slot for `key` unless `limit` are taken.
    fn acquire(self: &Arc<Self>, key: String, limit: i64) -> Option<Slot> {
        let mut counts = self.by_source.lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(Slot {
            counts: self.clone(),
            key,
        })
    }
}

/// One taken slot; dropping it gives the slot back.
#[derive(Debug)]
struct Slot {
    counts: Arc<Counts>,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .by_source
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            // Forget idle sources, or the map would grow with every client ever seen.
            if *count <= 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// A response body that holds a slot until it ends or is dropped.
struct HoldingBody {
    inner: ProxyBody,
    slot: Option<Arc<Slot>>,
}

impl Body for HoldingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.slot = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A compiled `inFlightReq`.
#[derive(Debug)]
pub struct InFlightReq {
    amount: i64,
    criterion: SourceCriterion,
    counts: Arc<Counts>,
}

/// Compiles `inFlightReq`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    let options: Options = parse_at(spec, "")?;
    if options.amount < 0 {
        return Err(MiddlewareError::new("amount", "must be 0 or more"));
    }
    let criterion = SourceCriterion::parse(
        options.source_criterion.as_ref(),
        "sourceCriterion",
        SourceCriterion::Host,
    )?;
    Ok(Arc::new(InFlightReq {
        amount: options.amount,
        criterion,
        counts: Arc::default(),
    }))
}

impl Middleware for InFlightReq {
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        mut outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        let key = self.criterion.key(connection, &outgoing);
        let Some(slot) = self.counts.acquire(key, self.amount) else {
            tracing::debug!("inFlightReq: limit reached");
            let amount = self.amount;
            return Box::pin(async move {
                let mut response =
                    Response::new(full(format!("max connections reached: {amount}")));
                *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
                Ok(response)
            });
        };
        let slot = Arc::new(slot);
        if outgoing.upgrade.is_some() {
            // A WebSocket (or other upgrade) counts until its tunnel closes, not just until
            // the 101 answer is out.
            TunnelHold::attach(&mut outgoing.request, slot.clone());
        }
        Box::pin(async move {
            // On error the slot is dropped here; on success it travels with the body.
            let response = next.run(outgoing).await?;
            let (parts, body) = response.into_parts();
            let body = HoldingBody {
                inner: body,
                slot: Some(slot),
            };
            Ok(Response::from_parts(
                parts,
                http_body_util::BodyExt::boxed(body),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slots_are_counted_per_source_and_released_on_drop() {
        let counts = Arc::new(Counts::default());
        let a1 = counts.acquire("a".into(), 2).unwrap();
        let _a2 = counts.acquire("a".into(), 2).unwrap();
        assert!(counts.acquire("a".into(), 2).is_none());
        let _b = counts.acquire("b".into(), 2).unwrap();
        drop(a1);
        assert!(counts.acquire("a".into(), 2).is_some());
        assert!(
            counts.acquire("z".into(), 0).is_none(),
            "amount 0 refuses everything"
        );
        assert!(!counts.by_source.lock().unwrap().contains_key("z"));
    }

    #[test]
    fn criteria_are_exclusive_and_checked() {
        let err = |spec: Value| compile(&spec).unwrap_err().field;
        assert_eq!(err(json!({"amount": -1})), "amount");
        assert_eq!(
            err(
                json!({"amount": 1, "sourceCriterion": {"requestHost": true, "requestHeaderName": "X"}})
            ),
            "sourceCriterion"
        );
        assert_eq!(
            err(json!({"amount": 1, "sourceCriterion": {"ipStrategy": {"depth": -2}}})),
            "sourceCriterion.ipStrategy.depth"
        );
        assert_eq!(
            err(json!({"amount": 1, "sourceCriterion": {"requestHeader": "X"}})),
            "sourceCriterion.requestHeader"
        );
        assert!(compile(&json!({"amount": 3, "sourceCriterion": {"ipStrategy": {}}})).is_ok());
    }
}
