//! Services as the data plane uses them: load balancers of servers, weighted services and
//! mirroring services, nested to any depth.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::health::{Health, HealthCheck, Passive};
use super::server::Server;
use super::sticky::StickyCookie;
use super::strategy::{self, Load, Strategy};
use super::transport::Transport;
use super::wrr::Edf;

/// A compiled service. Shared by every router that uses it; carried into the next runtime when
/// its configuration and children are unchanged, so its balancing position survives a reload.
#[derive(Debug)]
// Services always live behind an `Arc`, built once per reload: the variants' size difference
// costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum Service {
    LoadBalancer(LoadBalancer),
    Weighted(Weighted),
    Mirroring(Mirroring),
    Failover(Failover),
    /// A service that never forwards (Traefik's `noop@internal`), behind routers whose
    /// middlewares always answer, such as entry point redirections. Reaching it is a 503.
    Noop(String),
}

impl Service {
    /// Qualified name, e.g. `app@file`.
    pub fn name(&self) -> &str {
        match self {
            Service::LoadBalancer(s) => &s.name,
            Service::Weighted(s) => &s.name,
            Service::Mirroring(s) => &s.name,
            Service::Failover(s) => &s.name,
            Service::Noop(name) => name,
        }
    }

    /// Whether this service can take requests now: false when health checks found every server
    /// below it down. Services without health information count as up.
    pub fn is_up(&self) -> bool {
        match self {
            Service::LoadBalancer(lb) => lb.health.any_up(),
            Service::Weighted(w) => w.health.as_ref().is_none_or(|h| h.any_up()),
            Service::Mirroring(m) => m.health.as_ref().is_none_or(|h| h.any_up()),
            Service::Failover(f) => f.health.as_ref().is_none_or(|h| h.any_up()),
            Service::Noop(_) => false,
        }
    }

    /// The health a parent with `healthCheck: {}` registers on, when this service reports one.
    pub(crate) fn reported_health(&self) -> Option<&Arc<Health>> {
        match self {
            Service::LoadBalancer(lb) => lb.check.as_ref().map(|_| &lb.health),
            Service::Weighted(w) => w.health.as_ref(),
            Service::Mirroring(m) => m.health.as_ref(),
            Service::Failover(f) => f.health.as_ref(),
            Service::Noop(_) => None,
        }
    }

    /// Configuration fingerprint used to decide whether a reload may keep this service.
    pub(crate) fn fingerprint(&self) -> &str {
        match self {
            Service::LoadBalancer(s) => &s.fingerprint,
            Service::Weighted(s) => &s.fingerprint,
            Service::Mirroring(s) => &s.fingerprint,
            Service::Failover(s) => &s.fingerprint,
            Service::Noop(name) => name,
        }
    }

    /// Services this one sends requests to.
    pub(crate) fn children(&self) -> Vec<&Arc<Service>> {
        match self {
            Service::LoadBalancer(_) | Service::Noop(_) => Vec::new(),
            Service::Weighted(w) => w.children.iter().collect(),
            Service::Mirroring(m) => std::iter::once(&m.main)
                .chain(m.mirrors.iter().map(|(s, _)| s))
                .collect(),
            Service::Failover(f) => vec![&f.main, &f.fallback],
        }
    }
}

/// A `loadBalancer` service: servers picked by weighted round robin.
#[derive(Debug)]
pub struct LoadBalancer {
    pub name: String,
    pub servers: Vec<Arc<Server>>,
    pub pass_host_header: bool,
    pub transport: Arc<Transport>,
    /// Cookie pinning clients to a server, when `sticky.cookie` is set.
    pub sticky: Option<StickyCookie>,
    /// Up/down state of each server.
    pub health: Arc<Health>,
    /// The active health check, when configured (started once the balancer is in use).
    pub(crate) check: Option<HealthCheck>,
    /// Passive health checking, when configured.
    pub passive: Option<Passive>,
    pub strategy: Strategy,
    /// Requests in flight and response times per server (p2c, leasttime).
    pub load: Arc<Load>,
    pub(crate) weights: Vec<u64>,
    pub(crate) schedule: Mutex<Edf>,
    pub(crate) fingerprint: String,
}

impl LoadBalancer {
    /// The next server, or None when the balancer has no server to offer (503).
    pub fn pick(&self) -> Option<&Arc<Server>> {
        self.pick_index(None).and_then(|i| self.servers.get(i))
    }

    /// Index of the next server that is up, by the balancer's strategy; `client` is the
    /// client's address (for hrw).
    pub fn pick_index(&self, client: Option<IpAddr>) -> Option<usize> {
        if self.strategy == Strategy::Wrr {
            let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
            return schedule.pick(|i| self.health.is_up(i));
        }
        let candidates: Vec<usize> = (0..self.servers.len())
            .filter(|&i| self.health.is_up(i) && self.weights.get(i).is_some_and(|w| *w > 0))
            .collect();
        match self.strategy {
            Strategy::P2c => strategy::power_of_two(&candidates, &self.load),
            Strategy::Hrw => strategy::highest_random_weight(
                &candidates,
                |i| self.servers.get(i).map_or("", |s| s.url.as_str()),
                &self.weights,
                client,
            ),
            Strategy::LeastTime | Strategy::Wrr => {
                let best = strategy::least_time(&candidates, &self.load, &self.weights);
                let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
                schedule.pick(|i| best.contains(&i))
            }
        }
    }
}

/// A `weighted` service: child services picked by weighted round robin.
#[derive(Debug)]
pub struct Weighted {
    pub name: String,
    pub children: Vec<Arc<Service>>,
    /// Cookie pinning clients to a child, when `sticky.cookie` is set.
    pub sticky: Option<StickyCookie>,
    /// With `healthCheck: {}`: the children's up/down state, so down children are skipped.
    pub health: Option<Arc<Health>>,
    /// For a `highestRandomWeight` service: the child names hashed with the client's address.
    pub hrw: Option<Vec<String>>,
    pub(crate) weights: Vec<u64>,
    pub(crate) schedule: Mutex<Edf>,
    pub(crate) fingerprint: String,
}

impl Weighted {
    /// The next child, or None when every weight is 0.
    pub fn pick(&self) -> Option<&Arc<Service>> {
        self.pick_index(None).and_then(|i| self.children.get(i))
    }

    /// Index of the next child. Children of weight 0 are never picked here (only by cookie);
    /// with `healthCheck: {}`, children that are down are skipped. A `highestRandomWeight`
    /// service picks by the client's address instead of in turn.
    pub fn pick_index(&self, client: Option<IpAddr>) -> Option<usize> {
        if let Some(names) = &self.hrw {
            let candidates: Vec<usize> = (0..self.children.len())
                .filter(|&i| self.is_up(i) && self.weights.get(i).is_some_and(|w| *w > 0))
                .collect();
            return strategy::highest_random_weight(
                &candidates,
                |i| names.get(i).map_or("", String::as_str),
                &self.weights,
                client,
            );
        }
        let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        schedule.pick(|i| self.health.as_ref().is_none_or(|h| h.is_up(i)))
    }

    /// Whether child `index` may be used (for sticky cookies).
    pub fn is_up(&self, index: usize) -> bool {
        self.health.as_ref().is_none_or(|h| h.is_up(index))
    }
}

/// A `mirroring` service: requests go to `main`, and a share of them is copied to each mirror.
#[derive(Debug)]
pub struct Mirroring {
    pub name: String,
    pub main: Arc<Service>,
    /// Mirrors with their percentage (0..=100).
    pub mirrors: Vec<(Arc<Service>, u64)>,
    pub mirror_body: bool,
    /// Largest body copied to mirrors; None = no limit configured.
    pub max_body_size: Option<u64>,
    /// With `healthCheck: {}`: the main service's state, forwarded to parents.
    pub health: Option<Arc<Health>>,
    pub(crate) counter: Mutex<MirrorCounter>,
    pub(crate) fingerprint: String,
}

/// A `failover` service: everything to `main` while it is up, to `fallback` while it is down.
#[derive(Debug)]
pub struct Failover {
    pub name: String,
    pub main: Arc<Service>,
    pub fallback: Arc<Service>,
    /// With `healthCheck: {}`: up while main or fallback is up, forwarded to parents.
    pub health: Option<Arc<Health>>,
    /// With `errors`: main answers in these statuses are replaced by the fallback's.
    pub errors: Option<FailoverErrors>,
    pub(crate) fingerprint: String,
}

/// `failover.errors`: fail over on the main service's status, not only on its health.
#[derive(Debug, Clone)]
pub struct FailoverErrors {
    /// Inclusive status ranges.
    pub statuses: Vec<(u16, u16)>,
    /// Largest request body kept for a second attempt (None: no limit); larger bodies get 413.
    pub max_request_body_bytes: Option<u64>,
}

impl FailoverErrors {
    /// Whether `status` triggers the fallback.
    pub fn matches(&self, status: u16) -> bool {
        self.statuses
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&status))
    }
}

/// Parses Traefik status lists: `500`, `500-599`.
pub fn parse_status_ranges(items: &[String]) -> Result<Vec<(u16, u16)>, String> {
    items
        .iter()
        .map(|item| {
            let (low, high) = item.split_once('-').unwrap_or((item, item));
            let low: u16 = low
                .trim()
                .parse()
                .map_err(|_| format!("`{item}` is not a status or range"))?;
            let high: u16 = high
                .trim()
                .parse()
                .map_err(|_| format!("`{item}` is not a status or range"))?;
            if low > high || !(100..=599).contains(&low) || high > 599 {
                return Err(format!("`{item}` is not a valid status range"));
            }
            Ok((low, high))
        })
        .collect()
}

impl Failover {
    /// The service to use now, or None when both are down.
    pub fn pick(&self) -> Option<&Arc<Service>> {
        if self.main.is_up() {
            Some(&self.main)
        } else if self.fallback.is_up() {
            Some(&self.fallback)
        } else {
            None
        }
    }
}

/// Traefik's deterministic mirroring counter.
#[derive(Debug, Default)]
pub struct MirrorCounter {
    total: u64,
    mirrored: Vec<u64>,
}

impl Mirroring {
    /// Counts one request and returns the indexes of the mirrors that get a copy of it.
    ///
    /// A mirror with percent `p` takes request `n` when `mirrored * 100 < n * p`: 10% mirrors
    /// requests 1, 11, 21, ...; 50% mirrors 1, 3, 5, ...
    pub fn select(&self) -> Vec<usize> {
        let mut counter = self.counter.lock().unwrap_or_else(|p| p.into_inner());
        counter.mirrored.resize(self.mirrors.len(), 0);
        counter.total += 1;
        let total = counter.total;
        let mut chosen = Vec::new();
        for (i, (_, percent)) in self.mirrors.iter().enumerate() {
            if counter.mirrored[i] * 100 < total * percent {
                counter.mirrored[i] += 1;
                chosen.push(i);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::transport::{TransportConfig, Transports};

    fn lb(name: &str) -> Arc<Service> {
        Arc::new(Service::LoadBalancer(LoadBalancer {
            name: name.into(),
            servers: vec![],
            pass_host_header: true,
            transport: Transports::default().get(&TransportConfig::default()),
            sticky: None,
            health: Health::new(0),
            check: None,
            passive: None,
            strategy: Strategy::Wrr,
            load: Load::new(0),
            weights: Vec::new(),
            schedule: Mutex::new(Edf::new([])),
            fingerprint: String::new(),
        }))
    }

    #[tokio::test]
    async fn mirroring_counts_like_traefik() {
        let m = Mirroring {
            name: "m".into(),
            main: lb("main"),
            mirrors: vec![(lb("ten"), 10), (lb("fifty"), 50)],
            mirror_body: true,
            max_body_size: None,
            health: None,
            counter: Mutex::default(),
            fingerprint: String::new(),
        };
        let mut counts = [0; 2];
        for _ in 0..10 {
            for i in m.select() {
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [1, 5]);
        for _ in 0..990 {
            for i in m.select() {
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [100, 500]);
    }
}
