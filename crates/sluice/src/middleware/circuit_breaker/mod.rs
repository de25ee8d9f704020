//! The `circuitBreaker` middleware, with the states of Traefik's (oxy's `cbreaker`):
//!
//! - **standby**: requests pass and their outcome is recorded (rolling 10 s of counts, 60 s of
//!   latencies). At most every `checkPeriod` the expression is evaluated; when it holds the
//!   breaker trips and the records are cleared.
//! - **tripped**: for `fallbackDuration` every request gets `responseCode` (503) at once.
//! - **recovering**: for `recoveryDuration` a growing share of requests passes (from none to
//!   half, linearly), the rest get the fallback; if the expression holds again the breaker
//!   trips again, otherwise it returns to standby.
//!
//! Latency is measured until the response headers arrive (oxy measures until the whole body
//! was relayed).

pub mod expression;
pub mod metrics;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{header, HeaderValue, Response, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use sluice_config::GoDuration;

use self::expression::{Expr, Function, Kind};
use self::metrics::Metrics;
use super::errors::parse_spec;
use super::rate_limit::{Clock, SystemClock};
use super::{Answer, Middleware, MiddlewareError, Next};
use crate::dataplane::body::{full, ProxyBody};
use crate::dataplane::request::Connection;
use crate::dataplane::upstream::Outgoing;

/// The functions an expression may use, in the order [`CircuitBreaker::value`] answers them.
const FUNCTIONS: &[Function] = &[
    Function {
        name: "NetworkErrorRatio",
        arity: 0,
        kind: Kind::Number,
    },
    Function {
        name: "ResponseCodeRatio",
        arity: 4,
        kind: Kind::Number,
    },
    Function {
        name: "LatencyAtQuantileMS",
        arity: 1,
        kind: Kind::Number,
    },
    Function {
        name: "RequestThreshold",
        arity: 0,
        kind: Kind::Number,
    },
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    expression: String,
    check_period: Option<GoDuration>,
    fallback_duration: Option<GoDuration>,
    recovery_duration: Option<GoDuration>,
    response_code: Option<u16>,
}

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Standby,
    /// Refusing everything until the given time.
    Tripped {
        until: Duration,
    },
    /// Letting a growing share through, from `since` until `until`.
    Recovering {
        since: Duration,
        until: Duration,
        allowed: u64,
        denied: u64,
    },
}

#[derive(Debug)]
struct Inner {
    state: State,
    metrics: Metrics,
    /// No check before this time.
    next_check: Duration,
}

/// The compiled `circuitBreaker` middleware.
#[derive(Debug)]
pub struct CircuitBreaker {
    condition: Expr,
    check_period: Duration,
    fallback_duration: Duration,
    recovery_duration: Duration,
    response_code: StatusCode,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

/// Compiles `circuitBreaker`.
pub fn compile(spec: &Value) -> Result<Arc<dyn Middleware>, MiddlewareError> {
    compile_with_clock(spec, Arc::new(SystemClock::new())).map(|m| m as Arc<dyn Middleware>)
}

/// Compiles `circuitBreaker` with the given clock (tests).
pub fn compile_with_clock(
    spec: &Value,
    clock: Arc<dyn Clock>,
) -> Result<Arc<CircuitBreaker>, MiddlewareError> {
    let spec: Spec = parse_spec(spec)?;
    if spec.expression.trim().is_empty() {
        return Err(MiddlewareError::new(
            "expression",
            "an expression is required",
        ));
    }
    let condition = expression::parse(&spec.expression, FUNCTIONS)
        .map_err(|e| MiddlewareError::new("expression", e.to_string()))?;
    // Zero or unset durations take the defaults, as Traefik only applies positive ones.
    let duration = |value: Option<GoDuration>, default: Duration, field: &str| match value {
        Some(d) if d.is_negative() => Err(MiddlewareError::new(field, "must not be negative")),
        Some(d) if !d.is_zero() => Ok(d.as_std().unwrap_or(default)),
        _ => Ok(default),
    };
    let check_period = duration(spec.check_period, Duration::from_millis(100), "checkPeriod")?;
    let fallback_duration = duration(
        spec.fallback_duration,
        Duration::from_secs(10),
        "fallbackDuration",
    )?;
    let recovery_duration = duration(
        spec.recovery_duration,
        Duration::from_secs(10),
        "recoveryDuration",
    )?;
    let response_code = match spec.response_code {
        None | Some(0) => StatusCode::SERVICE_UNAVAILABLE,
        Some(code) => StatusCode::from_u16(code)
            .ok()
            .filter(|s| (200..=599).contains(&s.as_u16()))
            .ok_or_else(|| {
                MiddlewareError::new(
                    "responseCode",
                    format!("{code} is not a status code Sluice can answer with"),
                )
            })?,
    };
    let now = clock.now();
    Ok(Arc::new(CircuitBreaker {
        condition,
        check_period,
        fallback_duration,
        recovery_duration,
        response_code,
        inner: Mutex::new(Inner {
            state: State::Standby,
            metrics: Metrics::new(now),
            next_check: Duration::ZERO,
        }),
        clock,
    }))
}

impl CircuitBreaker {
    /// The current state (tests and diagnostics).
    pub fn state(&self) -> State {
        self.lock().state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock means a panic mid-update of plain counters: still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request must get the fallback answer instead of going on.
    pub fn refuse(&self) -> bool {
        let now = self.clock.now();
        let mut inner = self.lock();
        loop {
            match inner.state {
                State::Standby => return false,
                State::Tripped { until } => {
                    if now < until {
                        return true;
                    }
                    inner.state = State::Recovering {
                        since: now,
                        until: now + self.recovery_duration,
                        allowed: 0,
                        denied: 0,
                    };
                }
                State::Recovering {
                    since,
                    until,
                    ref mut allowed,
                    ref mut denied,
                } => {
                    if now > until {
                        inner.state = State::Standby;
                        return false;
                    }
                    // Let a request through while the share let through stays under the
                    // target, which grows from 0 to one half over the recovery duration.
                    let target =
                        0.5 * (now - since).as_secs_f64() / self.recovery_duration.as_secs_f64();
                    let share = (*allowed + 1) as f64 / (*allowed + 1 + *denied) as f64;
                    if share < target {
                        *allowed += 1;
                        return false;
                    }
                    *denied += 1;
                    return true;
                }
            }
        }
    }

    /// Records one outcome, then evaluates the expression if a check is due.
    pub fn record(&self, status: u16, latency: Duration) {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.metrics.record(now, status, latency);
        if now < inner.next_check {
            return;
        }
        inner.next_check = now + self.check_period;
        if matches!(inner.state, State::Tripped { .. }) {
            return;
        }
        let metrics = &mut inner.metrics;
        let tripped = self.condition.eval(&mut |call| value(metrics, now, call));
        if tripped {
            tracing::warn!(expression = ?self.condition, "circuit breaker tripped");
            inner.state = State::Tripped {
                until: now + self.fallback_duration,
            };
            inner.metrics = Metrics::new(now);
        }
    }

    fn fallback(&self) -> Response<ProxyBody> {
        let mut response = Response::new(full(self.response_code.canonical_reason().unwrap_or("")));
        *response.status_mut() = self.response_code;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// One function's value over the recorded outcomes.
fn value(metrics: &mut Metrics, now: Duration, call: &expression::Call) -> f64 {
    let arg = |i: usize| call.args.get(i).copied().unwrap_or(0.0);
    match call.function {
        0 => metrics.network_error_ratio(now),
        1 => metrics.response_code_ratio(now, arg(0), arg(1), arg(2), arg(3)),
        2 => metrics.latency_at_quantile(now, arg(0)).as_millis() as f64,
        _ => metrics.total(now) as f64,
    }
}

impl Middleware for CircuitBreaker {
    fn handle<'a>(
        &'a self,
        _connection: &'a Connection,
        outgoing: Outgoing,
        next: Next<'a>,
    ) -> Answer<'a> {
        Box::pin(async move {
            if self.refuse() {
                return Ok(self.fallback());
            }
            let start = self.clock.now();
            let result = next.run(outgoing).await;
            let status = match &result {
                Ok(response) => response.status().as_u16(),
                Err(error) => error.status().as_u16(),
            };
            self.record(status, self.clock.now().saturating_sub(start));
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::rate_limit::ManualClock;
    use super::*;

    fn breaker(expression: &str) -> (Arc<ManualClock>, Arc<CircuitBreaker>) {
        let clock = Arc::new(ManualClock::default());
        clock.advance(Duration::from_secs(1000));
        let cb = compile_with_clock(
            &serde_json::json!({"expression": expression, "fallbackDuration": "10s", "recoveryDuration": "10s"}),
            clock.clone(),
        )
        .unwrap();
        (clock, cb)
    }

    #[test]
    fn trips_recovers_and_returns_to_standby() {
        let (clock, cb) = breaker("ResponseCodeRatio(500, 600, 0, 600) > 0.5");
        cb.record(200, Duration::from_millis(1));
        assert_eq!(cb.state(), State::Standby);
        // The next check is 100 ms away: failures alone do not trip before it.
        cb.record(500, Duration::from_millis(1));
        cb.record(500, Duration::from_millis(1));
        assert_eq!(cb.state(), State::Standby);
        clock.advance(Duration::from_millis(150));
        cb.record(500, Duration::from_millis(1));
        assert!(matches!(cb.state(), State::Tripped { .. }));
        assert!(cb.refuse());
        clock.advance(Duration::from_secs(9));
        assert!(cb.refuse());
        // Fallback over: recovering starts with nothing let through...
        clock.advance(Duration::from_secs(2));
        assert!(cb.refuse());
        assert!(matches!(cb.state(), State::Recovering { .. }));
        // ...then about a quarter half-way through.
        clock.advance(Duration::from_secs(5));
        let passed = (0..100).filter(|_| !cb.refuse()).count();
        assert!((20..=30).contains(&passed), "{passed}");
        // After the recovery duration, standby.
        clock.advance(Duration::from_secs(6));
        assert!(!cb.refuse());
        assert_eq!(cb.state(), State::Standby);
    }

    #[test]
    fn network_errors_and_latency() {
        let (clock, cb) = breaker("NetworkErrorRatio() >= 0.5 || LatencyAtQuantileMS(50.0) > 100");
        cb.record(502, Duration::from_millis(1));
        assert!(
            matches!(cb.state(), State::Tripped { .. }),
            "one 502 out of one"
        );
        let (clock2, cb2) = breaker("LatencyAtQuantileMS(50.0) > 100");
        cb2.record(200, Duration::from_millis(300));
        assert!(matches!(cb2.state(), State::Tripped { .. }));
        drop((clock, clock2));
    }

    #[test]
    fn configuration_errors() {
        let e = compile(
            &serde_json::json!({"expression": "NetworkErrorRatio() > 0.5 && Latency() > 1"}),
        )
        .unwrap_err();
        assert_eq!(e.field, "expression");
        assert!(e.message.starts_with("column 30:"), "{e}");
        let e = compile(
            &serde_json::json!({"expression": "NetworkErrorRatio() > 0.5", "responseCode": 42}),
        )
        .unwrap_err();
        assert_eq!(e.field, "responseCode");
        let e = compile(&serde_json::json!({"expresion": "x"})).unwrap_err();
        assert_eq!(e.field, "expresion");
    }
}
