//! The runtime: a dynamic configuration compiled for the request path.
//!
//! A [`Runtime`] is immutable once built. The data plane reads the current one from an
//! [`arc_swap::ArcSwap`] at the start of each request and keeps that snapshot until the response
//! is done, so a reload never changes the routing of a request in flight.

pub mod build;
pub mod health;
pub mod server;
pub mod service;
pub mod sticky;
pub mod strategy;
pub mod transport;
pub mod wrr;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sluice_rules::RouteTable;

use crate::middleware::Middleware;
use crate::tls::settings::Domain;
use crate::tls::TlsRuntime;

pub use build::{build, EntryPointHttp, Redirection, Settings};
pub use service::Service;

/// A router as the data plane uses it.
#[derive(Debug, Clone)]
pub struct Router {
    /// Qualified name, e.g. `web@file`.
    pub name: String,
    pub rule: String,
    pub priority: i64,
    /// Middlewares applied in order before the service.
    pub middlewares: Vec<Arc<dyn Middleware>>,
    pub service: Arc<Service>,
    /// For TLS routers: the TLS options they resolved to. A request whose handshake used other
    /// options is answered 421 (domain fronting across options).
    pub tls_options: Option<Arc<str>>,
}

/// Route tables by entry point name, looked up on every request (a fast hash: the names come
/// from the configuration).
pub type EntryPointTables = HashMap<String, RouteTable<Arc<Router>>, foldhash::fast::RandomState>;

/// One compiled snapshot of the routing.
#[derive(Debug, Default)]
pub struct Runtime {
    /// Increases with every build; shown in logs and `explain`.
    pub generation: u64,
    /// Routers served on cleartext connections, per entry point.
    entry_points: EntryPointTables,
    /// Routers served on TLS connections, per entry point.
    tls_entry_points: EntryPointTables,
    services: HashMap<String, Arc<Service>>,
    /// Middlewares by name, with the configuration they were built from, so a reload can keep
    /// the ones that did not change (and their counters: rate-limit buckets, breaker state).
    middlewares: HashMap<String, (String, Arc<dyn Middleware>)>,
    /// Certificates and TLS options.
    pub tls: TlsRuntime,
    /// What the routers ask of each ACME resolver, by resolver name.
    pub acme: BTreeMap<String, ResolverRequest>,
}

/// What the routers naming one certificate resolver (`tls.certResolver`) ask of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolverRequest {
    /// Domain sets it must hold certificates for.
    pub domains: Vec<Domain>,
    /// The routers naming it (to point at them when it does not exist).
    pub routers: Vec<String>,
}

impl Runtime {
    /// The routing table of an entry point for cleartext (`tls` false) or TLS connections
    /// (None when no router uses it).
    pub fn routes(&self, entry_point: &str, tls: bool) -> Option<&RouteTable<Arc<Router>>> {
        if tls {
            self.tls_entry_points.get(entry_point)
        } else {
            self.entry_points.get(entry_point)
        }
    }

    /// A service by qualified name.
    pub fn service(&self, name: &str) -> Option<&Arc<Service>> {
        self.services.get(name)
    }

    /// Number of routers served, summed over entry points.
    pub fn router_count(&self) -> usize {
        self.entry_points
            .values()
            .chain(self.tls_entry_points.values())
            .map(|t| t.len())
            .sum()
    }
}
