//! The Kubernetes kinds the provider reads, with the API coordinates a watcher needs.

use kube::discovery::ApiResource;
use sluice_crd::manifest::{LEGACY_TRAEFIK_GROUP, TRAEFIK_GROUP};

/// One watched kind: where it lives in the API and how it is named there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Kind {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// API version inside the group.
    pub version: &'static str,
    /// Kind, as spelled in manifests.
    pub kind: &'static str,
    /// Lower-case plural used in URLs.
    pub plural: &'static str,
    /// Namespaced (every kind here but Node).
    pub namespaced: bool,
}

/// Traefik's kinds, present in both API groups, with their plurals.
const TRAEFIK: [(&str, &str); 10] = [
    ("IngressRoute", "ingressroutes"),
    ("IngressRouteTCP", "ingressroutetcps"),
    ("IngressRouteUDP", "ingressrouteudps"),
    ("Middleware", "middlewares"),
    ("MiddlewareTCP", "middlewaretcps"),
    ("TLSOption", "tlsoptions"),
    ("TLSStore", "tlsstores"),
    ("TraefikService", "traefikservices"),
    ("ServersTransport", "serverstransports"),
    ("ServersTransportTCP", "serverstransporttcps"),
];

/// `v1/Service`.
pub const SERVICE: Kind = core("Service", "services");
/// `discovery.k8s.io/v1/EndpointSlice`.
pub const ENDPOINT_SLICE: Kind = Kind {
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    namespaced: true,
};
/// `v1/Secret`.
pub const SECRET: Kind = core("Secret", "secrets");
/// `v1/ConfigMap`.
pub const CONFIG_MAP: Kind = core("ConfigMap", "configmaps");
/// `v1/Node` (cluster-scoped; watched only when a service uses `nodePortLB`).
pub const NODE: Kind = Kind {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
    namespaced: false,
};
/// `coordination.k8s.io/v1/Lease`, for leader election.
pub const LEASE: Kind = Kind {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    namespaced: true,
};

const fn core(kind: &'static str, plural: &'static str) -> Kind {
    Kind {
        group: "",
        version: "v1",
        kind,
        plural,
        namespaced: true,
    }
}

impl Kind {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// True for Traefik's kinds (either group).
    pub fn is_traefik(&self) -> bool {
        self.group == TRAEFIK_GROUP || self.group == LEGACY_TRAEFIK_GROUP
    }

    /// The resource description kube's dynamic API takes.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_string(),
            version: self.version.to_string(),
            api_version: self.api_version(),
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }
}

/// Every kind the provider watches from the start: Traefik's ten kinds in both API groups,
/// then Service, EndpointSlice, Secret and ConfigMap. Node is added on demand ([`NODE`]).
pub fn watched() -> Vec<Kind> {
    let mut kinds = Vec::with_capacity(24);
    for group in [TRAEFIK_GROUP, LEGACY_TRAEFIK_GROUP] {
        for (kind, plural) in TRAEFIK {
            kinds.push(Kind {
                group,
                version: "v1alpha1",
                kind,
                plural,
                namespaced: true,
            });
        }
    }
    kinds.extend([SERVICE, ENDPOINT_SLICE, SECRET, CONFIG_MAP]);
    kinds
}

/// Every kind known here (watched kinds, Node, Lease): what the fake API server serves.
pub fn all() -> Vec<Kind> {
    let mut kinds = watched();
    kinds.extend([NODE, LEASE]);
    kinds
}

/// The kind with this API version and kind name, if known.
pub fn find(api_version: &str, kind: &str) -> Option<Kind> {
    all()
        .into_iter()
        .find(|k| k.kind == kind && k.api_version() == api_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_groups_and_core_kinds_are_watched() {
        let kinds = watched();
        assert_eq!(kinds.len(), 24);
        assert!(kinds.contains(&find("traefik.containo.us/v1alpha1", "MiddlewareTCP").unwrap()));
        assert_eq!(
            find("discovery.k8s.io/v1", "EndpointSlice")
                .unwrap()
                .api_resource()
                .plural,
            "endpointslices"
        );
        assert_eq!(find("v1", "Node").unwrap().api_version(), "v1");
        assert!(!kinds.contains(&NODE));
    }
}
