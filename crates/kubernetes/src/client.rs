//! Connecting to the API server the way Traefik's provider does: in-cluster when the pod's
//! environment says so, else the kubeconfig named by `KUBECONFIG`, else the explicit
//! `endpoint`, `token` and `certAuthFilePath` options. An explicit `endpoint` always wins over
//! the discovered address.

use std::path::PathBuf;

use sluice_crd::CrdOptions;

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `endpoint` is not a URL.
    #[error("providers.kubernetesCRD.endpoint: `{endpoint}` is not a valid URL: {reason}")]
    Endpoint { endpoint: String, reason: String },
    /// In-cluster configuration was detected but is incomplete.
    #[error("in-cluster configuration: {0}")]
    InCluster(#[from] kube::config::InClusterError),
    /// The kubeconfig named by `KUBECONFIG` cannot be used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// The client cannot be built from the configuration (TLS setup).
    #[error("kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// Where the connection settings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// `KUBERNETES_SERVICE_HOST`/`PORT` are set: the pod's service account.
    InCluster,
    /// `KUBECONFIG` is set.
    Kubeconfig,
    /// `endpoint`/`token`/`certAuthFilePath` from the options.
    Explicit,
}

impl Discovery {
    /// What this process's environment and the options select.
    pub fn detect() -> Self {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
        if set("KUBERNETES_SERVICE_HOST") && set("KUBERNETES_SERVICE_PORT") {
            Discovery::InCluster
        } else if set("KUBECONFIG") {
            Discovery::Kubeconfig
        } else {
            Discovery::Explicit
        }
    }
}

/// Whether the options or the environment point at a cluster at all: an `endpoint`, an
/// in-cluster environment or a `KUBECONFIG`.
pub fn cluster_configured(options: &CrdOptions) -> bool {
    options.endpoint.as_deref().is_some_and(|e| !e.is_empty())
        || Discovery::detect() != Discovery::Explicit
}

/// The kube configuration for these options.
pub async fn config(options: &CrdOptions) -> Result<kube::Config, ConnectError> {
    let endpoint = match options.endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(e) => Some(
            e.parse::<http::Uri>()
                .map_err(|error| ConnectError::Endpoint {
                    endpoint: e.to_string(),
                    reason: error.to_string(),
                })?,
        ),
        None => None,
    };
    let mut config = match Discovery::detect() {
        Discovery::InCluster => kube::Config::incluster()?,
        Discovery::Kubeconfig => {
            kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default()).await?
        }
        Discovery::Explicit => kube::Config::new(
            endpoint
                .clone()
                .unwrap_or_else(|| http::Uri::from_static("http://localhost:8080")),
        ),
    };
    if let Some(endpoint) = endpoint {
        config.cluster_url = endpoint;
    }
    if let Some(token) = options.token.as_deref().filter(|t| !t.is_empty()) {
        config.auth_info.token = Some(token.to_string().into());
    }
    if let Some(ca) = options
        .cert_auth_file_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        config.root_cert = None;
        config.root_cert_file = Some(PathBuf::from(ca));
    }
    Ok(config)
}

/// A client for these options.
pub async fn connect(options: &CrdOptions) -> Result<kube::Client, ConnectError> {
    Ok(kube::Client::try_from(config(options).await?)?)
}
