//! The static options of the CRD provider (`providers.kubernetesCRD`).

use serde::Deserialize;
use sluice_config::GoDuration;

/// `providers.kubernetesCRD` of the static configuration, with Traefik's
/// option names. Unknown keys are rejected so that typos surface.
#[derive(Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrdOptions {
    /// Watched namespaces; empty = all. Objects elsewhere are invisible.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Label selector applied to Traefik's kinds.
    #[serde(default)]
    pub label_selector: String,
    /// Ingress class to process; empty = unclassed and `traefik`.
    #[serde(default)]
    pub ingress_class: String,
    /// Allow references across namespaces.
    #[serde(default)]
    pub allow_cross_namespace: bool,
    /// Allow ExternalName services.
    #[serde(default)]
    pub allow_external_name_services: bool,
    /// Keep services without endpoints (clients get 503 instead of 404).
    #[serde(default)]
    pub allow_empty_services: bool,
    /// Use the ClusterIP by default instead of the endpoints.
    #[serde(default, rename = "nativeLBByDefault")]
    pub native_lb_by_default: bool,
    /// Namespaces allowed to use `x@provider` references; `None` = all,
    /// empty = none.
    #[serde(default)]
    pub cross_provider_namespaces: Option<Vec<String>>,
    /// Do not read cluster-scoped objects (Nodes).
    #[serde(default)]
    pub disable_cluster_scope_resources: bool,
    /// Minimum interval between rebuilds.
    #[serde(default)]
    pub throttle_duration: Option<GoDuration>,
    /// API server endpoint (cluster mode only; unused for files).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Bearer token (cluster mode only).
    #[serde(default)]
    pub token: Option<String>,
    /// CA file (cluster mode only).
    #[serde(default)]
    pub cert_auth_file_path: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_traefik_names() {
        let o: CrdOptions = serde_json::from_value(serde_json::json!({
            "namespaces": ["a"], "nativeLBByDefault": true, "allowCrossNamespace": true,
            "crossProviderNamespaces": [], "throttleDuration": "2s"
        }))
        .unwrap();
        assert!(o.native_lb_by_default && o.allow_cross_namespace);
        assert_eq!(o.cross_provider_namespaces, Some(vec![]));
        assert!(serde_json::from_value::<CrdOptions>(serde_json::json!({"nope": 1})).is_err());
    }
}
