//! Health: which servers (or child services) of a balancer may receive requests.
//!
//! Every load balancer holds a [`Health`] with one up/down flag per server. Active health checks
//! ([`spawn_checks`]) flip those flags; a parent with `healthCheck: {}` registers on its children
//! and hears when a child's aggregate state flips (some entry up ↔ none up), exactly the events
//! Traefik propagates. A balancer never picks an entry that is down; when none is up it answers
//! 503. Health state lives as long as the balancer, so a reload that keeps a balancer keeps what
//! its checks learned.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde::Deserialize;
use sluice_config::GoDuration;

use super::server::Server;

/// Up/down flags of a balancer's entries, and the parents to tell when the balancer as a whole
/// goes up or down.
#[derive(Debug)]
pub struct Health {
    up: Vec<AtomicBool>,
    /// Parents registered with `healthCheck: {}`, with our index among their entries.
    parents: Mutex<Vec<(Weak<Health>, usize)>>,
}

impl Health {
    /// All `entries` up.
    pub fn new(entries: usize) -> Arc<Self> {
        Arc::new(Self {
            up: (0..entries).map(|_| AtomicBool::new(true)).collect(),
            parents: Mutex::new(Vec::new()),
        })
    }

    /// Whether entry `index` may receive requests.
    pub fn is_up(&self, index: usize) -> bool {
        self.up
            .get(index)
            .is_some_and(|u| u.load(Ordering::Relaxed))
    }

    /// Whether at least one entry is up.
    pub fn any_up(&self) -> bool {
        self.up.iter().any(|u| u.load(Ordering::Relaxed))
    }

    /// Sets entry `index`; when that flips the aggregate, tells every parent.
    pub fn set(&self, index: usize, up: bool) {
        let Some(flag) = self.up.get(index) else {
            return;
        };
        let before = self.any_up();
        flag.store(up, Ordering::Relaxed);
        let after = self.any_up();
        if before != after {
            let parents = self
                .parents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            for (parent, slot) in parents {
                if let Some(parent) = parent.upgrade() {
                    parent.set(slot, after);
                }
            }
        }
    }

    /// Registers `parent`, which sees this balancer as its entry `slot`, and tells it the
    /// current state.
    pub fn register_parent(&self, parent: &Arc<Health>, slot: usize) {
        self.parents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Arc::downgrade(parent), slot));
        parent.set(slot, self.any_up());
    }
}

/// `loadBalancer.healthCheck`, Traefik's fields and defaults.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HealthCheckConfig {
    #[serde(default)]
    pub scheme: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub method: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub interval: Option<GoDuration>,
    #[serde(default)]
    pub unhealthy_interval: Option<GoDuration>,
    #[serde(default)]
    pub timeout: Option<GoDuration>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// A health check ready to run: defaults applied, values checked.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    grpc: bool,
    scheme: Option<String>,
    path: String,
    method: Method,
    status: Option<StatusCode>,
    port: Option<u16>,
    interval: Duration,
    unhealthy_interval: Duration,
    timeout: Duration,
    hostname: Option<HeaderValue>,
    follow_redirects: bool,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl HealthCheck {
    /// Checks the configuration; errors name the field.
    pub fn new(config: &HealthCheckConfig) -> Result<Self, String> {
        let positive = |d: Option<GoDuration>, default: Duration| {
            d.and_then(|d| d.as_std())
                .filter(|d| !d.is_zero())
                .unwrap_or(default)
        };
        let interval = positive(config.interval, Duration::from_secs(30));
        let grpc = match config.mode.to_ascii_lowercase().as_str() {
            "" | "http" => false,
            "grpc" => true,
            other => return Err(format!("mode: `{other}` is neither http nor grpc")),
        };
        if config.path.contains("://") {
            return Err(format!("path: `{}` must be a path, not a URL", config.path));
        }
        let method = if config.method.is_empty() {
            Method::GET
        } else {
            Method::from_bytes(config.method.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("method: `{}` is not a method", config.method))?
        };
        let status = match config.status {
            0 => None,
            code => Some(
                StatusCode::from_u16(code)
                    .map_err(|_| format!("status: {code} is not a status code"))?,
            ),
        };
        let hostname = match config.hostname.as_str() {
            "" => None,
            h => Some(
                HeaderValue::from_str(h).map_err(|_| format!("hostname: `{h}` is not a host"))?,
            ),
        };
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: `{name}` is not a header name"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("headers.{name}: not a header value"))?;
            headers.push((name, value));
        }
        Ok(Self {
            grpc,
            scheme: (!config.scheme.is_empty()).then(|| config.scheme.clone()),
            path: config.path.clone(),
            method,
            status,
            port: (config.port != 0).then_some(config.port),
            interval,
            unhealthy_interval: positive(config.unhealthy_interval, interval),
            timeout: positive(config.timeout, Duration::from_secs(5)),
            hostname,
            follow_redirects: config.follow_redirects,
            headers,
        })
    }

    /// The URL checked for `server`: its address, with scheme/port overrides and the path.
    fn url(&self, server: &Server) -> Option<Uri> {
        let host = server.authority.host();
        let port = self
            .port
            .or_else(|| server.authority.port_u16())
            .unwrap_or(80);
        let scheme = match self.scheme.as_deref() {
            Some("h2c") | None => "http",
            Some(other) => other,
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let path = if self.path.starts_with('/') || self.path.is_empty() {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        format!("{scheme}://{host}:{port}{path}").parse().ok()
    }
}

/// `loadBalancer.passiveHealthCheck` (Traefik v3.6+).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PassiveConfig {
    #[serde(default)]
    pub failure_window: Option<GoDuration>,
    #[serde(default)]
    pub max_failed_attempts: Option<u32>,
}

/// Passive health checking: servers that fail real requests are taken out of rotation.
///
/// A request fails when the server could not be reached or answered 5xx; any success clears the
/// server's failures. `maxFailedAttempts` failures within `failureWindow` take the server down;
/// without an active check it comes back after `failureWindow`, with one the active check
/// decides when.
#[derive(Debug)]
pub struct Passive {
    window: Duration,
    max_failures: usize,
    failures: Vec<Mutex<Vec<tokio::time::Instant>>>,
}

impl Passive {
    pub fn new(config: &PassiveConfig, servers: usize) -> Self {
        Self {
            window: config
                .failure_window
                .and_then(|d| d.as_std())
                .filter(|d| !d.is_zero())
                .unwrap_or(Duration::from_secs(10)),
            max_failures: config.max_failed_attempts.unwrap_or(1).max(1) as usize,
            failures: (0..servers).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// Records the outcome of a request to server `index`.
    pub fn record(&self, index: usize, failed: bool, health: &Arc<Health>, active: bool) {
        let Some(list) = self.failures.get(index) else {
            return;
        };
        let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
        if !failed {
            list.clear();
            return;
        }
        let now = tokio::time::Instant::now();
        list.retain(|t| now.duration_since(*t) < self.window);
        list.push(now);
        if list.len() >= self.max_failures && health.is_up(index) {
            list.clear();
            health.set(index, false);
            tracing::warn!(
                server = index,
                "passive health check: server taken out of rotation"
            );
            if !active {
                let weak = Arc::downgrade(health);
                let window = self.window;
                tokio::spawn(async move {
                    tokio::time::sleep(window).await;
                    if let Some(health) = weak.upgrade() {
                        health.set(index, true);
                    }
                });
            }
        }
    }
}

type CheckClient = Client<HttpConnector, Empty<Bytes>>;

/// Starts checking every server of a balancer; the checks stop when the balancer is dropped.
pub fn spawn_checks(check: HealthCheck, servers: &[Arc<Server>], health: &Arc<Health>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(check.timeout));
    connector.set_nodelay(true);
    let client: CheckClient = Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_only(check.grpc)
        .build(connector);
    for (index, server) in servers.iter().enumerate() {
        let weak = Arc::downgrade(health);
        let server = server.clone();
        let check = check.clone();
        let client = client.clone();
        runtime.spawn(async move {
            let mut up = true;
            loop {
                // The first check comes one interval after start, as in Traefik.
                tokio::time::sleep(if up { check.interval } else { check.unhealthy_interval }).await;
                let Some(health) = weak.upgrade() else { return };
                let result = tokio::time::timeout(check.timeout, probe(&client, &check, &server)).await;
                let healthy = matches!(result, Ok(Ok(())));
                if let Ok(Err(reason)) | Err(reason) = result.map_err(|_| "timed out".to_owned()) {
                    if up {
                        tracing::warn!(server = %server.url, %reason, "health check failed; server taken out of rotation");
                    }
                } else if !up {
                    tracing::info!(server = %server.url, "health check passed; server back in rotation");
                }
                up = healthy;
                health.set(index, healthy);
            }
        });
    }
}

/// One check of one server.
async fn probe(client: &CheckClient, check: &HealthCheck, server: &Server) -> Result<(), String> {
    let mut url = check.url(server).ok_or("cannot build the check URL")?;
    if check.grpc {
        return probe_grpc(check, server).await;
    }
    for _ in 0..10 {
        let mut request = Request::builder()
            .method(check.method.clone())
            .uri(url.clone());
        if let Some(host) = &check.hostname {
            request = request.header(http::header::HOST, host.clone());
        }
        for (name, value) in &check.headers {
            request = request.header(name.clone(), value.clone());
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let location = response.headers().get(http::header::LOCATION).cloned();
        let _ = response.into_body().collect().await;
        if status.is_redirection() && check.follow_redirects {
            if let Some(next) = location.and_then(|l| resolve(&url, l.to_str().ok()?)) {
                url = next;
                continue;
            }
        }
        return match check.status {
            Some(expected) if status == expected => Ok(()),
            Some(expected) => Err(format!("status {status}, expected {expected}")),
            None if (200..400).contains(&status.as_u16()) => Ok(()),
            None => Err(format!("status {status}")),
        };
    }
    Err("too many redirects".into())
}

fn resolve(base: &Uri, location: &str) -> Option<Uri> {
    if location.contains("://") {
        return location.parse().ok();
    }
    let authority = base.authority()?;
    let scheme = base.scheme_str().unwrap_or("http");
    format!("{scheme}://{authority}{location}").parse().ok()
}

/// `grpc.health.v1.Health/Check` with an empty service name over h2c; healthy only when the
/// answer is SERVING.
async fn probe_grpc(check: &HealthCheck, server: &Server) -> Result<(), String> {
    let host = server.authority.host();
    let port = check
        .port
        .or_else(|| server.authority.port_u16())
        .unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    // A gRPC message: no compression, length 0 (an empty HealthCheckRequest).
    let body = http_body_util::Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
    let request = Request::post(format!(
        "http://{}/grpc.health.v1.Health/Check",
        server.authority
    ))
    .header(http::header::CONTENT_TYPE, "application/grpc")
    .header("te", "trailers")
    .body(body)
    .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let trailers_ok = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .is_none_or(|s| s == "0");
    let data = collected.to_bytes();
    // HealthCheckResponse { status: SERVING (1) } is the protobuf bytes 08 01 after the 5-byte prefix.
    if trailers_ok && data.len() >= 7 && data[5] == 0x08 && data[6] == 0x01 {
        Ok(())
    } else {
        Err("gRPC health: not SERVING".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_flips_propagate_to_parents() {
        let child = Health::new(2);
        let parent = Health::new(2);
        child.register_parent(&parent, 1);
        assert!(parent.is_up(1));
        child.set(0, false);
        assert!(parent.is_up(1), "one server still up");
        child.set(1, false);
        assert!(
            !parent.is_up(1),
            "no server up: the child is down for its parent"
        );
        assert!(parent.any_up(), "the parent's other child is up");
        child.set(0, true);
        assert!(parent.is_up(1));
    }

    #[test]
    fn defaults_and_urls() {
        let config: HealthCheckConfig =
            serde_json::from_value(serde_json::json!({"path": "/health", "port": 9000})).unwrap();
        let check = HealthCheck::new(&config).unwrap();
        assert_eq!(check.interval, Duration::from_secs(30));
        assert_eq!(check.unhealthy_interval, Duration::from_secs(30));
        assert_eq!(check.timeout, Duration::from_secs(5));
        let server = Server::parse("http://127.0.0.1:8080/base", false).unwrap();
        assert_eq!(
            check.url(&server).unwrap().to_string(),
            "http://127.0.0.1:9000/health"
        );
        let bad: HealthCheckConfig =
            serde_json::from_value(serde_json::json!({"mode": "tcp"})).unwrap();
        assert!(HealthCheck::new(&bad).unwrap_err().starts_with("mode"));
    }
}
