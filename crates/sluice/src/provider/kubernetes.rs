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
use sluice_kubernetes::leader::{Candidate, Election};
use sluice_kubernetes::secrets::SecretStore;
use sluice_kubernetes::{Provider, Settings, Snapshot};

use crate::tls::acme::SharedStorage;
use crate::tls::acme_secret::SecretStorage;

/// Name of the Secret holding ACME state and of the Lease electing the ACME leader.
const ACME_NAME: &str = "sluice-acme";
use tokio::sync::watch;

/// Provider name of objects read from the cluster.
pub const PROVIDER: &str = "kubernetescrd";

/// Whether the static configuration runs the Kubernetes provider against a cluster.
pub fn enabled(config: &StaticConfig, options: &CrdOptions) -> bool {
    config.providers.kubernetes_crd.is_some() && sluice_kubernetes::cluster_configured(options)
}

/// A running Kubernetes provider.
pub struct KubernetesProvider {
    provider: Provider,
    client: sluice_kubernetes::Client,
    /// Campaigning for the ACME leadership, once ACME storage was asked for.
    candidate: Option<Candidate>,
}

impl std::fmt::Debug for KubernetesProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesProvider")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
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
            provider: Provider::start(client.clone(), settings),
            client,
            candidate: None,
        })
    }

    /// ACME storage shared by every replica: the Secret `sluice-acme` of this pod's namespace
    /// (`POD_NAMESPACE`, else the client's default), and a Lease `sluice-acme` electing the one
    /// replica that orders and renews. Every replica serves what the Secret holds.
    pub fn acme_storage(&mut self) -> SharedStorage {
        let namespace = std::env::var("POD_NAMESPACE")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.client.default_namespace().to_owned());
        let identity = std::env::var("POD_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .or_else(|| hostname::get().ok().and_then(|h| h.into_string().ok()))
            .unwrap_or_else(|| "sluice".into());
        let identity = format!("{identity}-{}", std::process::id());
        tracing::info!(%namespace, %identity, "ACME state in Secret sluice-acme; leader elected through Lease sluice-acme");
        let candidate = Candidate::start(
            self.client.clone(),
            Election::new(&namespace, ACME_NAME, &identity),
        );
        let leader = candidate.subscribe();
        self.candidate = Some(candidate);
        SharedStorage {
            storage: Arc::new(SecretStorage::new(
                SecretStore::new(self.client.clone(), &namespace),
                ACME_NAME,
            )),
            leader,
        }
    }

    /// Snapshots as they are published (`None` until the first full sync).
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.provider.subscribe()
    }
}

/// A snapshot's configuration with every name qualified `@kubernetescrd`.
pub fn qualified(snapshot: &Snapshot) -> Configuration {
    super::qualify(Configuration::clone(&snapshot.config), PROVIDER)
}
