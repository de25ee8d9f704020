//! Health endpoints answered by Sluice itself, before routing, on the `ping` entry point.
//!
//! `/ping` is Traefik's liveness check: `200 OK` while the process serves. `/ready` is Sluice's
//! readiness check: `503` until every configured provider has delivered its first complete
//! configuration (for Kubernetes, every watcher has listed once), `200` from then on, so a
//! Service only sends traffic to a replica that knows the routes.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use super::body::{empty, full, ProxyBody};

/// Path of the liveness check.
pub const PING_PATH: &str = "/ping";
/// Path of the readiness check.
pub const READY_PATH: &str = "/ready";

/// Where the health endpoints are served and whether Sluice is ready.
#[derive(Debug)]
pub struct Health {
    /// The entry point answering `/ping` and `/ready` (`ping.entryPoint`, Traefik's default
    /// `traefik`).
    pub entry_point: String,
    ready: AtomicBool,
}

impl Health {
    /// Health endpoints on `entry_point`, ready or not yet.
    pub fn new(entry_point: impl Into<String>, ready: bool) -> Self {
        Health {
            entry_point: entry_point.into(),
            ready: AtomicBool::new(ready),
        }
    }

    /// Marks the first full configuration as loaded.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Whether the first full configuration is loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// The answer to a health request, or `None` for any other request.
pub fn answer<B>(
    health: &Health,
    entry_point: &str,
    request: &Request<B>,
) -> Option<Response<ProxyBody>> {
    if entry_point != health.entry_point
        || !(request.method() == Method::GET || request.method() == Method::HEAD)
    {
        return None;
    }
    let (status, text) = match request.uri().path() {
        PING_PATH => (StatusCode::OK, "OK"),
        READY_PATH if health.is_ready() => (StatusCode::OK, "OK"),
        READY_PATH => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the first configuration",
        ),
        _ => return None,
    };
    let body = if request.method() == Method::HEAD {
        empty()
    } else {
        full(text)
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn ping_always_ready_after_sync() {
        let health = Health::new("traefik", false);
        assert_eq!(
            answer(&health, "traefik", &get("/ping")).unwrap().status(),
            200
        );
        assert_eq!(
            answer(&health, "traefik", &get("/ready")).unwrap().status(),
            503
        );
        health.set_ready();
        assert_eq!(
            answer(&health, "traefik", &get("/ready")).unwrap().status(),
            200
        );
        // Other entry points and paths are routed as usual.
        assert!(answer(&health, "web", &get("/ping")).is_none());
        assert!(answer(&health, "traefik", &get("/pingx")).is_none());
        let post = Request::post("/ping").body(()).unwrap();
        assert!(answer(&health, "traefik", &post).is_none());
    }
}
