//! The Kubernetes provider in the binary: starts `sluice-kubernetes` watching the API server and
//! hands its snapshots to the reload loop, names qualified `@kubernetescrd`.
//!
//! Who owns `@kubernetescrd`: when the static configuration has `providers.kubernetesCRD` and a
//! cluster to talk to (an `endpoint`, an in-cluster service account, or `KUBECONFIG`), this
//! provider does, and the file provider then ignores manifest files (it says so) and reads only
//! dynamic-configuration files (`@file`). Without a cluster, the file provider translates
//! manifest files under `@kubernetescrd` as before. The two never publish the same names.

use std::sync::Arc;
use std::time::Duration;

use sluice_config::dynamic::Configuration;
use sluice_config::static_config::StaticConfig;
use sluice_crd::CrdOptions;
use sluice_kubernetes::{Provider, Settings, Snapshot};
use tokio::sync::watch;

/// Provider name of objects read from the cluster.
pub const PROVIDER: &str = "kubernetescrd";

/// Whether the static configuration runs the Kubernetes provider against a cluster.
pub fn enabled(config: &StaticConfig, options: &CrdOptions) -> bool {
    config.providers.kubernetes_crd.is_some() && sluice_kubernetes::cluster_configured(options)
}

/// A running Kubernetes provider.
#[derive(Debug)]
pub struct KubernetesProvider {
    provider: Provider,
}

impl KubernetesProvider {
    /// Connects and starts watching. Fails only on a configuration that cannot work (a bad
    /// endpoint, an unreadable kubeconfig); an unreachable API server is retried.
    pub async fn start(
        config: &StaticConfig,
        options: CrdOptions,
    ) -> Result<Self, sluice_kubernetes::ConnectError> {
        let client = sluice_kubernetes::connect(&options).await?;
        let fallback = config
            .providers
            .providers_throttle_duration
            .as_ref()
            .and_then(|d| d.as_std());
        let settings = Settings::new(options, fallback.or(Some(Duration::from_secs(2))));
        tracing::info!(throttle = ?settings.throttle, "kubernetes provider: watching the API server");
        Ok(KubernetesProvider {
            provider: Provider::start(client, settings),
        })
    }

    /// Snapshots as they are published (`None` until the first full sync).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.provider.subscribe()
    }
}

/// A snapshot's configuration with every name qualified `@kubernetescrd`.
pub fn qualified(snapshot: &Snapshot) -> Configuration {
    super::qualify(snapshot.config.clone(), PROVIDER)
}
