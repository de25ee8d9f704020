//! Load-balancing strategies of a `loadBalancer`, as Traefik names them.
//!
//! - `wrr` (default): weighted round robin, earliest deadline first (see [`super::wrr`]).
//! - `p2c`: power of two choices — two random servers, the one with fewer requests in flight.
//!   This is the "least connections" strategy of Traefik's overview.
//! - `hrw`: highest random weight — the client's IP hashed with each server's URL; the same
//!   client always reaches the same server while it is up. This is the "IP hash" strategy.
//! - `leasttime`: the lowest average time to first byte × (1 + in-flight) / weight.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

/// A load balancer's strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Wrr,
    P2c,
    Hrw,
    LeastTime,
}

impl Strategy {
    /// Parses `strategy` (absent or empty = wrr; Traefik's deprecated `RoundRobin` = wrr).
    pub fn parse(name: Option<&str>) -> Result<Self, String> {
        match name.unwrap_or("").to_ascii_lowercase().as_str() {
            "" | "wrr" | "roundrobin" => Ok(Strategy::Wrr),
            "p2c" => Ok(Strategy::P2c),
            "hrw" => Ok(Strategy::Hrw),
            "leasttime" => Ok(Strategy::LeastTime),
            other => Err(format!(
                "strategy: `{other}` is not supported (wrr, p2c, hrw or leasttime)"
            )),
        }
    }

    /// Whether picks depend on requests in flight or response times.
    pub fn tracks_load(self) -> bool {
        matches!(self, Strategy::P2c | Strategy::LeastTime)
    }
}

/// Requests in flight and recent time-to-first-byte of each server.
#[derive(Debug)]
pub struct Load {
    in_flight: Vec<AtomicUsize>,
    /// Average time to first byte in microseconds (exponentially weighted), 0 = no sample yet.
    ttfb_micros: Vec<AtomicU64>,
}

impl Load {
    pub fn new(servers: usize) -> Arc<Self> {
        Arc::new(Self {
            in_flight: (0..servers).map(|_| AtomicUsize::new(0)).collect(),
            ttfb_micros: (0..servers).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    fn in_flight(&self, i: usize) -> usize {
        self.in_flight
            .get(i)
            .map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Counts a request to server `i` until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>, i: usize) -> InFlight {
        if let Some(n) = self.in_flight.get(i) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        InFlight {
            load: self.clone(),
            index: i,
        }
    }

    /// Records a time to first byte for server `i`.
    pub fn record_ttfb(&self, i: usize, ttfb: Duration) {
        let Some(avg) = self.ttfb_micros.get(i) else {
            return;
        };
        let sample = ttfb.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = avg.load(Ordering::Relaxed);
        // A moving average over roughly the last 100 samples, like Traefik's window.
        let new = if old == 0 {
            sample.max(1)
        } else {
            (old * 99 + sample) / 100
        };
        avg.store(new.max(1), Ordering::Relaxed);
    }
}

/// One request in flight to a server; dropping it ends the count.
#[derive(Debug)]
pub struct InFlight {
    load: Arc<Load>,
    index: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.load.in_flight.get(self.index) {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A response body that keeps its request counted as in flight until it is fully sent.
pub struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(body: B, in_flight: InFlight) -> Self {
        Self {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// p2c among `candidates`: two random ones, fewer in flight wins (ties to the first drawn).
pub fn power_of_two(candidates: &[usize], load: &Load) -> Option<usize> {
    match candidates.len() {
        0 => None,
        1 => Some(candidates[0]),
        n => {
            let mut rng = rand::rng();
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n);
            if b == a {
                b = (b + 1) % n;
            }
            let (a, b) = (candidates[a], candidates[b]);
            Some(if load.in_flight(b) < load.in_flight(a) {
                b
            } else {
                a
            })
        }
    }
}

/// hrw among `candidates`: highest `weight / -ln(hash(client + name) / 2^64)`.
pub fn highest_random_weight<'n>(
    candidates: &[usize],
    name: impl Fn(usize) -> &'n str,
    weights: &[u64],
    client: Option<IpAddr>,
) -> Option<usize> {
    let key = client.map(|ip| ip.to_string()).unwrap_or_default();
    candidates
        .iter()
        .copied()
        .map(|i| {
            let mut hash = fnv1a(key.as_bytes(), 0xcbf2_9ce4_8422_2325);
            hash = fnv1a(name(i).as_bytes(), hash);
            // Map the hash into (0, 1): never 0, so the logarithm stays finite.
            let unit = (hash as f64 + 1.0) / (u64::MAX as f64 + 2.0);
            let weight = weights.get(i).copied().unwrap_or(1) as f64;
            (i, weight / -unit.ln())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i)
}

/// leasttime among `candidates`: the indexes with the lowest score (several when tied).
pub fn least_time(candidates: &[usize], load: &Load, weights: &[u64]) -> Vec<usize> {
    let score = |i: usize| {
        let ttfb = load
            .ttfb_micros
            .get(i)
            .map_or(0, |t| t.load(Ordering::Relaxed)) as f64;
        let weight = weights.get(i).copied().unwrap_or(1).max(1) as f64;
        ttfb * (1.0 + load.in_flight(i) as f64) / weight
    };
    let best = candidates
        .iter()
        .map(|&i| score(i))
        .fold(f64::INFINITY, f64::min);
    candidates
        .iter()
        .copied()
        .filter(|&i| score(i) <= best)
        .collect()
}

fn fnv1a(data: &[u8], mut hash: u64) -> u64 {
    for byte in data {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_traefik_names() {
        assert_eq!(Strategy::parse(None), Ok(Strategy::Wrr));
        assert_eq!(Strategy::parse(Some("RoundRobin")), Ok(Strategy::Wrr));
        assert_eq!(Strategy::parse(Some("p2c")), Ok(Strategy::P2c));
        assert!(Strategy::parse(Some("random"))
            .unwrap_err()
            .starts_with("strategy"));
    }

    #[test]
    fn p2c_prefers_the_less_busy_server() {
        let load = Load::new(2);
        let _busy: Vec<_> = (0..5).map(|_| load.begin(0)).collect();
        for _ in 0..50 {
            assert_eq!(power_of_two(&[0, 1], &load), Some(1));
        }
    }

    #[test]
    fn hrw_is_stable_per_client_and_spreads_clients() {
        let names: Vec<String> = (0..3).map(|i| format!("http://10.0.0.{i}:80")).collect();
        let weights = [1, 1, 1];
        let all = [0, 1, 2];
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let first = highest_random_weight(&all, |i| &names[i], &weights, Some(client));
        for _ in 0..10 {
            assert_eq!(
                highest_random_weight(&all, |i| &names[i], &weights, Some(client)),
                first
            );
        }
        let mut seen = std::collections::HashSet::new();
        for last in 0..50u8 {
            let ip: IpAddr = format!("198.51.100.{last}").parse().unwrap();
            seen.insert(highest_random_weight(
                &all,
                |i| &names[i],
                &weights,
                Some(ip),
            ));
        }
        assert_eq!(seen.len(), 3, "clients spread over every server");
    }

    #[test]
    fn least_time_prefers_faster_servers() {
        let load = Load::new(2);
        load.record_ttfb(0, Duration::from_millis(60));
        load.record_ttfb(1, Duration::from_millis(10));
        assert_eq!(least_time(&[0, 1], &load, &[1, 1]), vec![1]);
    }
}
