//! Durations in Traefik's configuration format.
//!
//! Traefik stores durations as `paerser/types.Duration`, a Go `time.Duration`
//! (signed nanoseconds). On input it accepts either a Go duration string
//! (`"100ms"`, `"1m30s"`, `"1.5h"`) or a bare integer, which means *seconds*
//! (`42` and `"42"` are both 42 s). On output it writes Go's
//! `time.Duration.String()` form (`"1m0s"`, `"100ms"`), which is what
//! Traefik's JSON dumps and the conformance expectations contain.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;
const NANOS_PER_MIN: u64 = 60 * NANOS_PER_SEC;
const NANOS_PER_HOUR: u64 = 60 * NANOS_PER_MIN;

/// A signed duration with nanosecond precision, like Go's `time.Duration`.
///
/// Signed because some Traefik settings give a negative value a meaning
/// (`responseForwarding.flushInterval: -1s` = flush after every write).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration {
    nanos: i64,
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl GoDuration {
    /// The zero duration (`"0s"`).
    pub const ZERO: GoDuration = GoDuration { nanos: 0 };

    /// A duration of `nanos` nanoseconds (may be negative).
    pub const fn from_nanos(nanos: i64) -> Self {
        GoDuration { nanos }
    }

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: i64) -> Self {
        GoDuration {
            nanos: millis.saturating_mul(NANOS_PER_MILLI as i64),
        }
    }

    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: i64) -> Self {
        GoDuration {
            nanos: secs.saturating_mul(NANOS_PER_SEC as i64),
        }
    }

    /// Converts a std duration, saturating at Go's maximum (about 292 years).
    pub fn from_std(d: Duration) -> Self {
        GoDuration {
            nanos: i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        }
    }

    /// Signed nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.nanos
    }

    /// The duration as a std `Duration`, or `None` when it is negative.
    pub fn as_std(self) -> Option<Duration> {
        u64::try_from(self.nanos).ok().map(Duration::from_nanos)
    }

    /// True for durations below zero.
    pub const fn is_negative(self) -> bool {
        self.nanos < 0
    }

    /// True for the zero duration; Traefik treats zero as "unset" for most
    /// timeouts (`omitempty` drops it from JSON as well).
    pub const fn is_zero(self) -> bool {
        self.nanos == 0
    }

    /// Parses Traefik's duration input: an integer means seconds, anything
    /// else must be a Go duration string.
    pub fn parse_traefik(s: &str) -> Result<Self, ParseDurationError> {
        let trimmed = s.trim();
        if let Ok(secs) = trimmed.parse::<i64>() {
            return secs
                .checked_mul(NANOS_PER_SEC as i64)
                .map(GoDuration::from_nanos)
                .ok_or_else(|| err(s, "overflow"));
        }
        parse_go(trimmed).map_err(|reason| err(s, reason))
    }

    /// Parses a Go duration string only (`time.ParseDuration` rules).
    pub fn parse_go(s: &str) -> Result<Self, ParseDurationError> {
        parse_go(s).map_err(|reason| err(s, reason))
    }
}

fn err(input: &str, reason: &'static str) -> ParseDurationError {
    ParseDurationError {
        input: input.to_string(),
        reason,
    }
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or `0`.
fn parse_go(s: &str) -> Result<GoDuration, &'static str> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(GoDuration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty duration");
    }
    // Accumulate in u128 so that overflow can be detected once at the end
    // against the i64 range, as Go does (it allows exactly -2^63).
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err("missing number before unit");
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u64 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => NANOS_PER_MICRO,
            "ms" => NANOS_PER_MILLI,
            "s" => NANOS_PER_SEC,
            "m" => NANOS_PER_MIN,
            "h" => NANOS_PER_HOUR,
            "" => return Err("missing unit"),
            _ => return Err("unknown unit"),
        };
        let mut int_value: u128 = 0;
        for b in int_part.bytes() {
            int_value = int_value * 10 + u128::from(b - b'0');
            if int_value > u128::from(u64::MAX) {
                return Err("overflow");
            }
        }
        total += int_value * u128::from(scale);
        // Fractional digits beyond nanosecond resolution are truncated, like Go.
        let mut frac_value: u128 = 0;
        let mut frac_scale: u128 = 1;
        for b in frac_part.bytes() {
            if frac_scale > u128::from(u64::MAX) {
                break;
            }
            frac_value = frac_value * 10 + u128::from(b - b'0');
            frac_scale *= 10;
        }
        total += frac_value * u128::from(scale) / frac_scale;
        if total > 1u128 << 63 {
            return Err("overflow");
        }
    }
    if neg {
        // -2^63 is representable, +2^63 is not.
        let v = i128::try_from(total).map_err(|_| "overflow")?;
        i64::try_from(-v)
            .map(GoDuration::from_nanos)
            .map_err(|_| "overflow")
    } else {
        i64::try_from(total)
            .map(GoDuration::from_nanos)
            .map_err(|_| "overflow")
    }
}

impl FromStr for GoDuration {
    type Err = ParseDurationError;

    /// Same rules as configuration input (integer = seconds).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GoDuration::parse_traefik(s)
    }
}

impl From<Duration> for GoDuration {
    fn from(d: Duration) -> Self {
        GoDuration::from_std(d)
    }
}

/// Writes `v / 10^prec` with its fractional digits, trailing zeros and a bare
/// decimal point dropped (Go's `fmtFrac` + `fmtInt`).
fn push_frac(out: &mut String, v: u64, prec: u32) {
    let div = 10u64.pow(prec);
    let int = v / div;
    let mut frac = v % div;
    out.push_str(&int.to_string());
    if frac != 0 {
        let mut digits = prec as usize;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        out.push('.');
        out.push_str(&format!("{frac:0digits$}"));
    }
}

impl fmt::Display for GoDuration {
    /// Go's `time.Duration.String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        if self.nanos < 0 {
            out.push('-');
        }
        let u = self.nanos.unsigned_abs();
        if u == 0 {
            return f.write_str("0s");
        }
        if u < NANOS_PER_SEC {
            // Below one second Go switches to the largest fitting sub-unit.
            let (prec, unit) = if u < NANOS_PER_MICRO {
                (0, "ns")
            } else if u < NANOS_PER_MILLI {
                (3, "\u{b5}s")
            } else {
                (6, "ms")
            };
            push_frac(&mut out, u, prec);
            out.push_str(unit);
        } else {
            let secs_nanos = u % NANOS_PER_MIN;
            let total_minutes = u / NANOS_PER_MIN;
            let hours = total_minutes / 60;
            let minutes = total_minutes % 60;
            if hours > 0 {
                out.push_str(&format!("{hours}h{minutes}m"));
            } else if minutes > 0 {
                out.push_str(&format!("{minutes}m"));
            }
            push_frac(&mut out, secs_nanos, 9);
            out.push('s');
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoDuration({self})")
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

struct GoDurationVisitor;

impl Visitor<'_> for GoDurationVisitor {
    type Value = GoDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a duration such as \"10s\", \"1m30s\", \"100ms\", or an integer number of seconds",
        )
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
        v.checked_mul(NANOS_PER_SEC as i64)
            .map(GoDuration::from_nanos)
            .ok_or_else(|| E::custom(format!("duration of {v} seconds is too large")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
        i64::try_from(v)
            .map_err(|_| E::custom(format!("duration of {v} seconds is too large")))
            .and_then(|v| self.visit_i64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoDuration, E> {
        // Traefik rejects fractional numbers; whole ones (e.g. TOML `10.0`)
        // are accepted as seconds.
        if v.fract() == 0.0 && v.abs() < 9.2e9 {
            self.visit_i64(v as i64)
        } else {
            Err(E::invalid_type(de::Unexpected::Float(v), &self))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
        GoDuration::parse_traefik(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(GoDurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> GoDuration {
        GoDuration::parse_traefik(s).unwrap()
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1\u{b5}s"),
            (500_000, "500\u{b5}s"),
            (100 * NANOS_PER_MILLI as i64, "100ms"),
            (2_200_000, "2.2ms"),
            (NANOS_PER_SEC as i64, "1s"),
            (1_500_000_000, "1.5s"),
            (60 * NANOS_PER_SEC as i64, "1m0s"),
            (90 * NANOS_PER_SEC as i64, "1m30s"),
            (3600 * NANOS_PER_SEC as i64, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-(NANOS_PER_SEC as i64), "-1s"),
            (-100 * NANOS_PER_MILLI as i64, "-100ms"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(GoDuration::from_nanos(*nanos).to_string(), *want, "{nanos}");
        }
    }

    #[test]
    fn parses_go_strings() {
        assert_eq!(d("100ms"), GoDuration::from_millis(100));
        assert_eq!(d("1m30s"), GoDuration::from_secs(90));
        assert_eq!(d("1h"), GoDuration::from_secs(3600));
        assert_eq!(d("1.5s"), GoDuration::from_millis(1500));
        assert_eq!(d(".5s"), GoDuration::from_millis(500));
        assert_eq!(d("1.s"), GoDuration::from_secs(1));
        assert_eq!(d("-1s"), GoDuration::from_secs(-1));
        assert_eq!(d("+2s"), GoDuration::from_secs(2));
        assert_eq!(d("0"), GoDuration::ZERO);
        assert_eq!(d("500us"), GoDuration::from_nanos(500_000));
        assert_eq!(d("500\u{b5}s"), GoDuration::from_nanos(500_000));
        assert_eq!(d("500\u{3bc}s"), GoDuration::from_nanos(500_000));
        assert_eq!(
            d("1h2m3s4ms5us6ns"),
            GoDuration::from_nanos(3_723_004_005_006)
        );
        assert_eq!(d("2562047h47m16.854775807s").as_nanos(), i64::MAX);
        assert_eq!(d("-2562047h47m16.854775808s").as_nanos(), i64::MIN);
    }

    #[test]
    fn integers_are_seconds() {
        assert_eq!(d("42"), GoDuration::from_secs(42));
        assert_eq!(d("-1"), GoDuration::from_secs(-1));
        assert_eq!(d("0"), GoDuration::ZERO);
    }

    #[test]
    fn rejects_bad_input() {
        for bad in [
            "",
            "s",
            "1",
            "10x",
            "1.5",
            "ms10",
            "--1s",
            "1h-2m",
            "2562047h47m16.854775808s",
            ".s",
        ] {
            // "1" and "1.5" are only invalid for the pure Go parser.
            assert!(GoDuration::parse_go(bad).is_err(), "{bad:?} should fail");
        }
        assert!(GoDuration::parse_traefik("1.5").is_err());
        assert!(GoDuration::parse_traefik("abc").is_err());
    }

    #[test]
    fn round_trips() {
        for nanos in [
            0,
            1,
            999,
            1_000,
            1_234_567,
            100_000_000,
            1_000_000_000,
            59_999_999_999,
            60_000_000_000,
            90_000_000_000,
            3_600_000_000_000,
            86_400_123_000_000,
            -5,
            -1_500_000_000,
            i64::MAX,
            i64::MIN,
        ] {
            let g = GoDuration::from_nanos(nanos);
            assert_eq!(GoDuration::parse_go(&g.to_string()).unwrap(), g, "{g}");
        }
    }

    #[test]
    fn std_conversions() {
        assert_eq!(GoDuration::from_secs(-1).as_std(), None);
        assert!(GoDuration::from_secs(-1).is_negative());
        assert_eq!(
            GoDuration::from_millis(100).as_std(),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            GoDuration::from_std(Duration::from_secs(90)).to_string(),
            "1m30s"
        );
        assert_eq!(GoDuration::from_std(Duration::MAX).as_nanos(), i64::MAX);
    }

    #[test]
    fn serde_forms() {
        let v: GoDuration = serde_json::from_str("\"1m30s\"").unwrap();
        assert_eq!(v, GoDuration::from_secs(90));
        let v: GoDuration = serde_json::from_str("42").unwrap();
        assert_eq!(v, GoDuration::from_secs(42));
        let v: GoDuration = serde_json::from_str("\"42\"").unwrap();
        assert_eq!(v, GoDuration::from_secs(42));
        assert!(serde_json::from_str::<GoDuration>("1.5").is_err());
        assert!(serde_json::from_str::<GoDuration>("true").is_err());
        assert_eq!(
            serde_json::to_string(&GoDuration::from_secs(60)).unwrap(),
            "\"1m0s\""
        );
    }
}
