//! Sluice: an edge router that speaks Traefik's configuration language.
//!
//! The pipeline, one module per stage:
//! [`provider`] (configuration sources) → [`runtime`] (compiled, swapped atomically) →
//! [`dataplane`] (entry points and the request path). [`proxy`] wires them together;
//! [`explain`] and [`whoami`] are tools around them.

pub mod dataplane;
pub mod explain;
pub mod middleware;
pub mod provider;
pub mod proxy;
pub mod runtime;
pub mod tls;
pub mod whoami;
