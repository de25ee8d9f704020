//! Services as the data plane uses them: load balancers of servers, weighted services and
//! mirroring services, nested to any depth.

use std::sync::{Arc, Mutex};

use super::server::Server;
use super::sticky::StickyCookie;
use super::transport::Transport;
use super::wrr::Edf;

/// A compiled service. Shared by every router that uses it; carried into the next runtime when
/// its configuration and children are unchanged, so its balancing position survives a reload.
#[derive(Debug)]
pub enum Service {
    LoadBalancer(LoadBalancer),
    Weighted(Weighted),
    Mirroring(Mirroring),
}

impl Service {
    /// Qualified name, e.g. `app@file`.
    pub fn name(&self) -> &str {
        match self {
            Service::LoadBalancer(s) => &s.name,
            Service::Weighted(s) => &s.name,
            Service::Mirroring(s) => &s.name,
        }
    }

    /// Configuration fingerprint used to decide whether a reload may keep this service.
    pub(crate) fn fingerprint(&self) -> &str {
        match self {
            Service::LoadBalancer(s) => &s.fingerprint,
            Service::Weighted(s) => &s.fingerprint,
            Service::Mirroring(s) => &s.fingerprint,
        }
    }

    /// Services this one sends requests to.
    pub(crate) fn children(&self) -> Vec<&Arc<Service>> {
        match self {
            Service::LoadBalancer(_) => Vec::new(),
            Service::Weighted(w) => w.children.iter().collect(),
            Service::Mirroring(m) => std::iter::once(&m.main)
                .chain(m.mirrors.iter().map(|(s, _)| s))
                .collect(),
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
    pub(crate) schedule: Mutex<Edf>,
    pub(crate) fingerprint: String,
}

impl LoadBalancer {
    /// The next server, or None when the balancer has no server to offer (503).
    pub fn pick(&self) -> Option<&Arc<Server>> {
        self.pick_index().and_then(|i| self.servers.get(i))
    }

    /// Index of the next server.
    pub fn pick_index(&self) -> Option<usize> {
        let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        schedule.pick(|_| true)
    }
}

/// A `weighted` service: child services picked by weighted round robin.
#[derive(Debug)]
pub struct Weighted {
    pub name: String,
    pub children: Vec<Arc<Service>>,
    /// Cookie pinning clients to a child, when `sticky.cookie` is set.
    pub sticky: Option<StickyCookie>,
    pub(crate) schedule: Mutex<Edf>,
    pub(crate) fingerprint: String,
}

impl Weighted {
    /// The next child, or None when every weight is 0.
    pub fn pick(&self) -> Option<&Arc<Service>> {
        self.pick_index().and_then(|i| self.children.get(i))
    }

    /// Index of the next child. Children of weight 0 are never picked here (only by cookie).
    pub fn pick_index(&self) -> Option<usize> {
        let mut schedule = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        schedule.pick(|_| true)
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
    pub(crate) counter: Mutex<MirrorCounter>,
    pub(crate) fingerprint: String,
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
