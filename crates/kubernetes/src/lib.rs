//! Sluice's Kubernetes provider: Traefik's CRDs read live from the API server.
//!
//! * [`client`]: connecting (in-cluster, `KUBECONFIG`, or `endpoint`/`token`/`certAuthFilePath`).
//! * [`kinds`]: the watched kinds and their API coordinates.
//! * [`watch`]: watchers and reflector stores ([`store`]), translated into [`watch::Snapshot`]s
//!   by the same translation as the file provider, redoing only what changed ([`translator`]).
//! * [`leader`]: leader election through a `coordination.k8s.io/v1` Lease.
//! * [`secrets`]: Secrets as shared storage, with optimistic concurrency.
//! * `fake` (feature `fake`): an in-memory API server for tests.
//!
//! This is the only crate of the workspace that depends on kube and k8s-openapi.

pub mod client;
#[cfg(feature = "fake")]
pub mod fake;
pub mod kinds;
pub mod leader;
pub mod secrets;
pub mod store;
pub mod translator;
pub mod watch;

pub use client::{cluster_configured, connect, ConnectError};
/// The kube client, for the binary's own API calls (leader election, Secret storage).
pub use kube::Client;
pub use translator::Translator;
pub use watch::{Provider, Settings, Snapshot};
