//! The `rateLimit` middleware: a token bucket per traffic source, as Traefik's (which uses Go's
//! `golang.org/x/time/rate`): the bucket holds `burst` tokens and refills at
//! `average / period` tokens per second; each request takes one.
//!
//! A request that finds the bucket empty is not refused outright: when its token will be there
//! within a short grace (`1 / (2 × rate)`, at most 500 ms for rates below one per second), it
//! waits for it and goes on, which smooths traffic instead of refusing it. Beyond that it gets
//! `429 Too Many Requests` with `Retry-After` (whole seconds, rounded up) and `X-Retry-In` (the
//! exact wait, in Go's duration notation).
//!
//! Buckets live in memory ([`memory`]), or in Redis ([`redis`]) so that several Sluice
//! instances share one limit.

pub mod memory;
pub mod redis;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::Value;
use sluice_config::GoDuration;

use super::errors::parse_spec;
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{full, ProxyBody};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

/// A monotonic time source, injectable so tests can move time by hand.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time elapsed since an arbitrary fixed origin.
    fn now(&self) -> Duration;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl SystemClock {
    pub fn new() -> Self {
        Self(Instant::now())
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::Mutex<Duration>);

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        if let Ok(mut now) = self.0.lock() {
            *now += by;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        self.0.lock().map(|now| *now).unwrap_or_default()
    }
}

/// The state of one source's bucket: tokens left (negative while requests wait for tokens
/// already promised to them) and when it was last refilled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub last: Duration,
}

/// What the bucket says about one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Go on after waiting this long (zero when a token was there).
    Proceed(Duration),
    /// Refused: a token would only be there after this long.
    Refuse(Duration),
}

/// The limiter's fixed parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Tokens per second; infinite means no limit (`average: 0`).
    pub rate: f64,
    pub burst: f64,
    /// The longest a request may wait for its token instead of being refused.
    pub max_delay: Duration,
}

impl Limits {
    /// Traefik's derivation from the configuration: rate = average / period, and the grace
    /// a request may wait is 1 / (2 × rate) — with the rate truncated to whole requests per
    /// second, as Go's integer duration division does — or 500 ms below one request a second.
    pub fn new(average: u64, period: Duration, burst: u64) -> Self {
        let burst = burst.max(1) as f64;
        if average == 0 {
            return Self {
                rate: f64::INFINITY,
                burst,
                max_delay: Duration::ZERO,
            };
        }
        let rate = average as f64 / period.as_secs_f64();
        let max_delay = if rate < 1.0 {
            Duration::from_millis(500)
        } else {
            Duration::from_nanos(1_000_000_000 / (rate as u64 * 2).max(1))
        };
        Self {
            rate,
            burst,
            max_delay,
        }
    }

    /// How long an idle bucket must be kept: until it would be full again anyway, so that
    /// forgetting it changes nothing (and never less than Traefik's own time to live).
    pub fn idle_ttl(&self) -> Duration {
        if !self.rate.is_finite() {
            return Duration::from_secs(1);
        }
        let traefik = if self.rate >= 1.0 {
            2.0
        } else {
            1.0 + (1.0 / self.rate).floor()
        };
        Duration::from_secs_f64((self.burst / self.rate).max(traefik).min(1e9))
    }
}

impl Bucket {
    /// A full bucket.
    pub fn full(limits: &Limits, now: Duration) -> Self {
        Self {
            tokens: limits.burst,
            last: now,
        }
    }

    /// Refills for the time elapsed, then takes one token, unless the request would have to
    /// wait longer than allowed for it (then the token is left in the bucket).
    pub fn take(&mut self, limits: &Limits, now: Duration) -> Decision {
        if !limits.rate.is_finite() {
            return Decision::Proceed(Duration::ZERO);
        }
        let elapsed = now.saturating_sub(self.last).as_secs_f64();
        let refilled = (self.tokens + elapsed * limits.rate).min(limits.burst);
        self.last = self.last.max(now);
        let after = refilled - 1.0;
        if after >= 0.0 {
            self.tokens = after;
            return Decision::Proceed(Duration::ZERO);
        }
        let wait = Duration::from_secs_f64(-after / limits.rate);
        if wait > limits.max_delay {
            self.tokens = refilled;
            Decision::Refuse(wait)
        } else {
            self.tokens = after;
            Decision::Proceed(wait)
        }
    }

    /// Whether the bucket has refilled completely by `now`.
    pub fn is_full_at(&self, limits: &Limits, now: Duration) -> bool {
        self.tokens + now.saturating_sub(self.last).as_secs_f64() * limits.rate >= limits.burst
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    average: i64,
    period: Option<GoDuration>,
    burst: Option<i64>,
    source_criterion: Option<SourceCriterionSpec>,
    redis: Option<redis::RedisSpec>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SourceCriterionSpec {
    ip_strategy: Option<IpStrategySpec>,
    #[serde(default)]
    request_header_name: String,
    #[serde(default)]
    request_host: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct IpStrategySpec {
    #[serde(default)]
    depth: i64,
    #[serde(default, rename = "excludedIPs")]
    excluded_ips: Vec<String>,
    #[serde(rename = "ipv6Subnet")]
    ipv6_subnet: Option<i64>,
}

/// How requests are grouped into sources sharing one bucket.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// The client's address, or one taken from X-Forwarded-For.
    Ip(IpStrategy),
    /// The value of a request header (requests without it share one bucket).
    Header(HeaderName),
    /// The Host asked for.
    Host,
}

/// Traefik's IP strategies.
#[derive(Debug, Clone)]
pub(crate) enum IpStrategy {
    /// The connection's peer address (optionally grouped by IPv6 prefix).
    Remote { ipv6_subnet: Option<u8> },
    /// The `depth`-th address of X-Forwarded-For counting from the right.
    Depth {
        depth: usize,
        ipv6_subnet: Option<u8>,
    },
    /// The rightmost X-Forwarded-For address outside the excluded networks.
    Excluding(Vec<IpNet>),
}

impl IpStrategy {
    /// Builds the strategy; errors name fields under `prefix`.
    pub(crate) fn compile(spec: &IpStrategySpec, prefix: &str) -> Result<Self, MiddlewareError> {
        let subnet = match spec.ipv6_subnet {
            None => None,
            Some(bits @ 1..=128) => Some(bits as u8),
            Some(other) => {
                return Err(MiddlewareError::new(
                    format!("{prefix}.ipv6Subnet"),
                    format!("{other} is not a prefix length between 1 and 128"),
                ))
            }
        };
        if spec.depth < 0 {
            return Err(MiddlewareError::new(
                format!("{prefix}.depth"),
                "must not be negative",
            ));
        }
        // As Traefik: depth wins over excludedIPs.
        if spec.depth > 0 {
            return Ok(IpStrategy::Depth {
                depth: spec.depth as usize,
                ipv6_subnet: subnet,
            });
        }
        if !spec.excluded_ips.is_empty() {
            let mut networks = Vec::with_capacity(spec.excluded_ips.len());
            for (i, text) in spec.excluded_ips.iter().enumerate() {
                let network = text
                    .parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        MiddlewareError::new(
                            format!("{prefix}.excludedIPs[{i}]"),
                            format!("`{text}` is not an IP address or CIDR range"),
                        )
                    })?;
                networks.push(network);
            }
            return Ok(IpStrategy::Excluding(networks));
        }
        Ok(IpStrategy::Remote {
            ipv6_subnet: subnet,
        })
    }

    /// The client IP this strategy picks, as text; `None` when there is none to pick.
    pub(crate) fn client_ip(
        &self,
        connection: &Connection,
        headers: &http::HeaderMap,
    ) -> Option<String> {
        let forwarded = || {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect::<Vec<_>>()
        };
        match self {
            IpStrategy::Remote { ipv6_subnet } => Some(mask(connection.peer.ip(), *ipv6_subnet)),
            IpStrategy::Depth { depth, ipv6_subnet } => {
                let list = forwarded();
                let entry = list.len().checked_sub(*depth).and_then(|i| list.get(i))?;
                if entry.is_empty() {
                    return None;
                }
                Some(match entry.parse::<IpAddr>() {
                    Ok(ip) => mask(ip, *ipv6_subnet),
                    Err(_) => (*entry).to_owned(),
                })
            }
            IpStrategy::Excluding(networks) => forwarded()
                .into_iter()
                .rev()
                .filter(|entry| !entry.is_empty())
                .find(|entry| match entry.parse::<IpAddr>() {
                    Ok(ip) => !networks.iter().any(|n| n.contains(&ip)),
                    Err(_) => true,
                })
                .map(str::to_owned),
        }
    }
}

/// Groups IPv6 addresses by prefix when asked to.
fn mask(ip: IpAddr, ipv6_subnet: Option<u8>) -> String {
    match (ip, ipv6_subnet) {
        (IpAddr::V6(v6), Some(bits)) => ipnet::Ipv6Net::new(v6, bits)
            .map(|n| n.trunc().addr().to_string())
            .unwrap_or_else(|_| v6.to_string()),
        _ => ip.to_string(),
    }
}

impl Source {
    fn compile(spec: Option<SourceCriterionSpec>) -> Result<Self, MiddlewareError> {
        let spec = spec.unwrap_or_default();
        let set = [
            spec.ip_strategy.is_some(),
            !spec.request_header_name.is_empty(),
            spec.request_host,
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(MiddlewareError::new(
                "sourceCriterion",
                "ipStrategy, requestHeaderName and requestHost are mutually exclusive",
            ));
        }
        if let Some(ip) = &spec.ip_strategy {
            return Ok(Source::Ip(IpStrategy::compile(
                ip,
                "sourceCriterion.ipStrategy",
            )?));
        }
        if !spec.request_header_name.is_empty() {
            let name = HeaderName::try_from(spec.request_header_name.as_str()).map_err(|_| {
                MiddlewareError::new(
                    "sourceCriterion.requestHeaderName",
                    format!("`{}` is not a header name", spec.request_header_name),
                )
            })?;
            return Ok(Source::Header(name));
        }
        if spec.request_host {
            return Ok(Source::Host);
        }
        Ok(Source::Ip(IpStrategy::Remote { ipv6_subnet: None }))
    }

    fn extract(&self, connection: &Connection, outgoing: &Outgoing) -> Option<String> {
        let headers = outgoing.request.headers();
        match self {
            Source::Ip(strategy) => strategy.client_ip(connection, headers),
            Source::Header(name) => Some(
                headers
                    .get(name)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default(),
            ),
            Source::Host => Some(String::from_utf8_lossy(outgoing.host.as_bytes()).into_owned()),
        }
    }
}

/// Where the buckets are kept.
#[derive(Debug)]
enum Store {
    Memory(memory::MemoryLimiter),
    Redis(Box<redis::RedisLimiter>),
}

/// The compiled `rateLimit` middleware.
#[derive(Debug)]
pub struct RateLimit {
    source: Source,
    /// Distinguishes this middleware's buckets from other limiters' in a shared store.
    prefix: String,
    store: Store,
}

/// Compiles `rateLimit` for the middleware named `name` (qualified, e.g. `limit@file`).
pub fn compile(name: &str, spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    compile_with_clock(spec, Arc::new(SystemClock::new()), Some(name))
        .map(|m| m as Arc<dyn Middleware>)
}

/// Compiles `rateLimit` with the given clock for in-memory buckets (tests). Redis keys start
/// with the middleware's name, so replicas share a limit and two middlewares never do; without
/// a name, a digest of the options stands in.
pub fn compile_with_clock(
    spec: &Value,
    clock: Arc<dyn Clock>,
    name: Option<&str>,
) -> Result<Arc<RateLimit>, MiddlewareError> {
    let parsed: Spec = parse_spec(spec)?;
    if parsed.average < 0 {
        return Err(MiddlewareError::new("average", "must not be negative"));
    }
    let period = match parsed.period {
        None => Duration::from_secs(1),
        Some(p) if p.is_negative() => {
            return Err(MiddlewareError::new(
                "period",
                format!("negative value not valid for period: {p}"),
            ))
        }
        Some(p) if p.is_zero() => Duration::from_secs(1),
        Some(p) => p.as_std().unwrap_or(Duration::from_secs(1)),
    };
    let burst = parsed.burst.unwrap_or(1).max(1) as u64;
    let limits = Limits::new(parsed.average as u64, period, burst);
    let source = Source::compile(parsed.source_criterion)?;
    let prefix = match name {
        Some(name) => name.to_owned(),
        None => {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            spec.to_string().hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        }
    };
    let store = match parsed.redis {
        Some(redis_spec) => Store::Redis(Box::new(redis::RedisLimiter::new(redis_spec, limits)?)),
        None => Store::Memory(memory::MemoryLimiter::new(limits, clock)),
    };
    Ok(Arc::new(RateLimit {
        source,
        prefix,
        store,
    }))
}

impl RateLimit {
    /// Asks the store about one request from `source`.
    pub async fn decide(&self, source: &str) -> Result<Decision, String> {
        match &self.store {
            Store::Memory(memory) => Ok(memory.take(source)),
            Store::Redis(redis) => redis.take(&format!("{}:{source}", self.prefix)).await,
        }
    }
}

impl Middleware for RateLimit {
    fn handle<'a>(
        &'a self,
        connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            let Some(source) = self.source.extract(connection, &outgoing) else {
                tracing::debug!("rate limit: no source could be extracted from the request");
                return Ok(plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "could not extract source of request\n",
                ));
            };
            match self.decide(&source).await {
                Ok(Decision::Proceed(wait)) => {
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                    }
                    next.run(outgoing).await
                }
                Ok(Decision::Refuse(wait)) => Ok(too_many(wait)),
                Err(error) => {
                    tracing::error!(%error, "rate limit: could not insert/update bucket");
                    Ok(plain(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Could not insert/update bucket\n",
                    ))
                }
            }
        })
    }
}

/// The 429 answer, with Traefik's headers.
fn too_many(wait: Duration) -> Response<ProxyBody> {
    let mut response = plain(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    let headers = response.headers_mut();
    let seconds = wait.as_secs_f64().ceil() as u64;
    headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    if let Ok(value) = HeaderValue::from_str(&GoDuration::from_std(wait).to_string()) {
        headers.insert("x-retry-in", value);
    }
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Float arithmetic makes waits off by a few nanoseconds: compare to the microsecond.
    fn about(decision: Decision) -> (bool, u128) {
        match decision {
            Decision::Proceed(d) => (true, (d.as_nanos() + 500) / 1000),
            Decision::Refuse(d) => (false, (d.as_nanos() + 500) / 1000),
        }
    }

    #[test]
    fn traefik_grace_and_defaults() {
        let l = Limits::new(100, Duration::from_secs(1), 0);
        assert_eq!(l.burst, 1.0);
        assert_eq!(l.max_delay, ms(5));
        let l = Limits::new(1, Duration::from_secs(10), 5);
        assert_eq!(l.rate, 0.1);
        assert_eq!(l.max_delay, ms(500));
        assert!(Limits::new(0, Duration::from_secs(1), 1).rate.is_infinite());
    }

    #[test]
    fn burst_then_refill_with_a_manual_clock() {
        // 2 requests per second, burst 3: grace is 250 ms.
        let limits = Limits::new(2, Duration::from_secs(1), 3);
        let mut b = Bucket::full(&limits, Duration::ZERO);
        let now = Duration::from_secs(100);
        for _ in 0..3 {
            assert_eq!(b.take(&limits, now), Decision::Proceed(Duration::ZERO));
        }
        // Empty: the next token is 500 ms away, beyond the 250 ms grace.
        assert_eq!(b.take(&limits, now), Decision::Refuse(ms(500)));
        // A refusal takes nothing: still 500 ms away.
        assert_eq!(b.take(&limits, now), Decision::Refuse(ms(500)));
        // 300 ms later the token is 200 ms away: within grace, the request waits for it.
        assert_eq!(about(b.take(&limits, now + ms(300))), (true, 200_000));
        // That token is promised: the next one is 700 ms away.
        assert_eq!(about(b.take(&limits, now + ms(300))), (false, 700_000));
        // After a long pause the bucket is full again, never more than burst.
        let later = now + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(&limits, later), Decision::Proceed(Duration::ZERO));
        }
        assert!(matches!(b.take(&limits, later), Decision::Refuse(_)));
    }

    #[test]
    fn slow_rates_refill_over_the_period() {
        // 1 request per 10 s.
        let limits = Limits::new(1, Duration::from_secs(10), 1);
        let mut b = Bucket::full(&limits, Duration::ZERO);
        assert_eq!(
            b.take(&limits, Duration::ZERO),
            Decision::Proceed(Duration::ZERO)
        );
        assert_eq!(
            about(b.take(&limits, Duration::from_secs(4))),
            (false, 6_000_000)
        );
        assert_eq!(
            about(b.take(&limits, Duration::from_millis(9_600))),
            (true, 400_000)
        );
    }

    #[test]
    fn retry_headers_follow_traefik() {
        let r = too_many(Duration::from_millis(1500));
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["x-retry-in"], "1.5s");
    }

    #[test]
    fn source_criteria_are_exclusive_and_validated() {
        let e = compile("limit@file", &serde_json::json!({"average": 1, "sourceCriterion": {"requestHost": true, "requestHeaderName": "X"}}))
            .unwrap_err();
        assert_eq!(e.field, "sourceCriterion");
        let e = compile("limit@file", &serde_json::json!({"average": 1, "sourceCriterion": {"ipStrategy": {"excludedIPs": ["10.0.0.0/8", "nope"]}}}))
            .unwrap_err();
        assert_eq!(e.field, "sourceCriterion.ipStrategy.excludedIPs[1]");
        let e = compile(
            "limit@file",
            &serde_json::json!({"average": 1, "perod": "1s"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "perod");
        let e = compile(
            "limit@file",
            &serde_json::json!({"average": 1, "period": "-1s"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "period");
    }

    #[test]
    fn ip_strategies_pick_from_x_forwarded_for() {
        let connection = Connection {
            entry_point: "web".into(),
            peer: "10.0.0.9:1234".parse().unwrap(),
            peer_ip: HeaderValue::from_static("10.0.0.9"),
            trusted: false,
            tls: false,
            tls_info: None,
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 2.2.2.2, 10.0.0.5"),
        );
        let remote = IpStrategy::Remote { ipv6_subnet: None };
        assert_eq!(
            remote.client_ip(&connection, &headers).as_deref(),
            Some("10.0.0.9")
        );
        let depth = IpStrategy::Depth {
            depth: 2,
            ipv6_subnet: None,
        };
        assert_eq!(
            depth.client_ip(&connection, &headers).as_deref(),
            Some("2.2.2.2")
        );
        let too_deep = IpStrategy::Depth {
            depth: 4,
            ipv6_subnet: None,
        };
        assert_eq!(too_deep.client_ip(&connection, &headers), None);
        let excluding = IpStrategy::Excluding(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2.2.2.2/32".parse().unwrap(),
        ]);
        assert_eq!(
            excluding.client_ip(&connection, &headers).as_deref(),
            Some("1.1.1.1")
        );
        assert_eq!(
            mask("2001:db8::1234".parse().unwrap(), Some(64)),
            "2001:db8::"
        );
    }
}
