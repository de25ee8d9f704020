//! Servers transports: how Sluice connects to origins, with one connection pool each.
//!
//! A transport is keyed by its configuration, and the set of transports outlives runtime
//! snapshots, so a reload that leaves a transport unchanged keeps its pooled connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use sluice_config::GoDuration;

use crate::dataplane::body::ProxyBody;
use crate::dataplane::pool::{Pool, PoolSettings};
use crate::dataplane::worker;

/// The subset of Traefik's `serversTransports` entry that plain-TCP origins use.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TransportConfig {
    #[serde(default)]
    pub max_idle_conns_per_host: Option<i64>,
    #[serde(default)]
    pub forwarding_timeouts: ForwardingTimeouts,
    #[serde(default)]
    pub disable_http2: bool,
}

/// `forwardingTimeouts` of a servers transport.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ForwardingTimeouts {
    pub dial_timeout: Option<GoDuration>,
    pub response_header_timeout: Option<GoDuration>,
    pub idle_conn_timeout: Option<GoDuration>,
}

/// Connection pools to origins plus the timeouts that apply to requests through them.
#[derive(Debug)]
pub struct Transport {
    /// One pair of pools per worker, so a pooled connection is always used by the thread that
    /// drives it.
    pools: Vec<Pools>,
    /// Time allowed between sending the request and receiving response headers (None: unlimited).
    pub response_header_timeout: Option<Duration>,
}

#[derive(Debug)]
struct Pools {
    /// `http://` origins: Sluice's own HTTP/1.1 pool (see [`Pool`]).
    http1: Pool,
    /// `h2c://` origins: one multiplexed connection per origin, from hyper-util's client.
    h2c: Client<HttpConnector, ProxyBody>,
}

impl Transport {
    fn new(config: &TransportConfig, workers: usize) -> Self {
        let timeouts = &config.forwarding_timeouts;
        let dial = timeouts
            .dial_timeout
            .and_then(|d| d.as_std())
            .unwrap_or(Duration::from_secs(30));
        let idle = timeouts
            .idle_conn_timeout
            .and_then(|d| d.as_std())
            .unwrap_or(Duration::from_secs(90));
        // Traefik's default transport keeps up to 200 idle connections per host.
        let max_idle = match config.max_idle_conns_per_host {
            None | Some(0) => 200,
            Some(n) if n < 0 => 0,
            Some(n) => n as usize,
        };
        // TCP keep-alive probes on idle origin connections, as Go's dialer sends them.
        let tcp_keepalive = Duration::from_secs(30);
        let settings = PoolSettings {
            max_idle,
            idle_timeout: idle,
            dial_timeout: dial,
            tcp_keepalive,
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(dial));
        connector.set_keepalive(Some(tcp_keepalive));
        connector.enforce_http(false);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(max_idle);
        let pools = (0..workers.max(1))
            .map(|_| Pools {
                http1: Pool::new(settings),
                h2c: builder.clone().http2_only(true).build(connector.clone()),
            })
            .collect();
        Self {
            pools,
            response_header_timeout: timeouts.response_header_timeout.and_then(|d| d.as_std()),
        }
    }

    /// The current worker's pools.
    fn pools(&self) -> &Pools {
        &self.pools[worker::current() % self.pools.len()]
    }

    /// The current worker's HTTP/1.1 pool, for `http://` servers.
    pub fn http1(&self) -> &Pool {
        &self.pools().http1
    }

    /// The current worker's h2c client, for `h2c://` servers.
    pub fn h2c(&self) -> &Client<HttpConnector, ProxyBody> {
        &self.pools().h2c
    }
}

/// Every transport in use, keyed by configuration; kept across reloads.
#[derive(Debug, Default)]
pub struct Transports {
    by_config: Mutex<HashMap<String, Arc<Transport>>>,
    workers: usize,
}

impl Transports {
    /// Transports for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Self {
            by_config: Mutex::default(),
            workers,
        }
    }

    /// The transport for this configuration, reusing an existing pool when one matches.
    pub fn get(&self, config: &TransportConfig) -> Arc<Transport> {
        let key = format!("{config:?}");
        let mut map = self.by_config.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key)
            .or_insert_with(|| Arc::new(Transport::new(config, self.workers)))
            .clone()
    }

    /// Drops transports no longer referenced by any runtime (their pools close).
    pub fn prune(&self) {
        let mut map = self.by_config.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, t| Arc::strong_count(t) > 1);
    }
}
