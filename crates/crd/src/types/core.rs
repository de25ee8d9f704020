//! The Kubernetes core kinds the CRD provider reads: Service,
//! EndpointSlice, Endpoints, Secret, ConfigMap and Node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::meta::{IntOrString, ObjectMeta};
use super::null_default;

/// `v1/Service`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Specification.
    #[serde(default)]
    pub spec: ServiceSpec,
}

/// `Service.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(default, rename = "type")]
    pub type_: String,
    /// Ports.
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<ServicePort>,
    /// Pod selector.
    #[serde(default, deserialize_with = "null_default")]
    pub selector: BTreeMap<String, String>,
    /// Cluster IP; `None` = headless.
    #[serde(default, rename = "clusterIP")]
    pub cluster_ip: String,
    /// Cluster IPs (dual stack).
    #[serde(default, rename = "clusterIPs", deserialize_with = "null_default")]
    pub cluster_ips: Vec<String>,
    /// DNS name of an ExternalName service.
    #[serde(default)]
    pub external_name: String,
    /// External IPs.
    #[serde(default, rename = "externalIPs", deserialize_with = "null_default")]
    pub external_ips: Vec<String>,
    /// Session affinity (ignored).
    #[serde(default)]
    pub session_affinity: String,
    /// Load balancer IP (ignored).
    #[serde(default, rename = "loadBalancerIP")]
    pub load_balancer_ip: String,
    /// IP families (ignored).
    #[serde(default, deserialize_with = "null_default")]
    pub ip_families: Vec<String>,
}

/// A Service port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name (`""` when the Service has a single unnamed port).
    #[serde(default)]
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    #[serde(default)]
    pub protocol: String,
    /// Application protocol hint.
    #[serde(default)]
    pub app_protocol: Option<String>,
    /// Service port number.
    #[serde(default)]
    pub port: i64,
    /// Target port on the pods.
    #[serde(default)]
    pub target_port: Option<IntOrString>,
    /// Node port (NodePort / LoadBalancer services).
    #[serde(default)]
    pub node_port: i64,
}

/// `discovery.k8s.io/v1/EndpointSlice`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Object metadata (`kubernetes.io/service-name` label links it to its
    /// Service).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    #[serde(default)]
    pub address_type: String,
    /// Endpoints.
    #[serde(default, deserialize_with = "null_default")]
    pub endpoints: Vec<Endpoint>,
    /// Ports.
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<EndpointPort>,
}

/// One endpoint of a slice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Addresses (all of one pod).
    #[serde(default, deserialize_with = "null_default")]
    pub addresses: Vec<String>,
    /// Readiness conditions.
    #[serde(default)]
    pub conditions: EndpointConditions,
    /// Hostname.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Node name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Target reference (pod).
    #[serde(default)]
    pub target_ref: Option<Value>,
}

/// `conditions` of an endpoint; unset values have Kubernetes' meanings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Ready (unset = unknown, treated as not ready by TCP/UDP).
    #[serde(default)]
    pub ready: Option<bool>,
    /// Serving (unset = true).
    #[serde(default)]
    pub serving: Option<bool>,
    /// Terminating (unset = false).
    #[serde(default)]
    pub terminating: Option<bool>,
}

/// A port of an EndpointSlice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    /// Name, matching the Service port name.
    #[serde(default)]
    pub name: Option<String>,
    /// Port number on the endpoints.
    #[serde(default)]
    pub port: Option<i64>,
    /// Protocol.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Application protocol.
    #[serde(default)]
    pub app_protocol: Option<String>,
}

/// `v1/Endpoints` (legacy; used only when a Service has no EndpointSlice).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Object metadata (same name as the Service).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Subsets.
    #[serde(default, deserialize_with = "null_default")]
    pub subsets: Vec<EndpointSubset>,
}

/// One subset of an Endpoints object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSubset {
    /// Ready addresses.
    #[serde(default, deserialize_with = "null_default")]
    pub addresses: Vec<EndpointAddress>,
    /// Not-ready addresses (never used).
    #[serde(default, deserialize_with = "null_default")]
    pub not_ready_addresses: Vec<EndpointAddress>,
    /// Ports.
    #[serde(default, deserialize_with = "null_default")]
    pub ports: Vec<EndpointPort>,
}

/// An address of an Endpoints subset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointAddress {
    /// IP address.
    #[serde(default)]
    pub ip: String,
    /// Hostname.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Node name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Target reference.
    #[serde(default)]
    pub target_ref: Option<Value>,
}

/// `v1/Secret`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Secret type.
    #[serde(default, rename = "type")]
    pub type_: String,
    /// Base64-encoded values.
    #[serde(default, deserialize_with = "crate::types::string_map")]
    pub data: BTreeMap<String, String>,
    /// Plain values (merged into `data` by the API server; here by us).
    #[serde(default, deserialize_with = "crate::types::string_map")]
    pub string_data: BTreeMap<String, String>,
}

impl Secret {
    /// The decoded value of `key`: `stringData` wins (as it does on the API
    /// server), else `data` base64-decoded. `None` when absent or not
    /// valid base64 text.
    pub fn value(&self, key: &str) -> Option<String> {
        if let Some(v) = self.string_data.get(key) {
            return Some(v.clone());
        }
        let raw = self.data.get(key)?;
        let bytes = crate::base64::decode(raw)?;
        String::from_utf8(bytes).ok()
    }
}

/// `v1/ConfigMap`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Values.
    #[serde(default, deserialize_with = "crate::types::string_map")]
    pub data: BTreeMap<String, String>,
    /// Binary values (base64).
    #[serde(default, deserialize_with = "crate::types::string_map")]
    pub binary_data: BTreeMap<String, String>,
}

/// `v1/Node` (cluster-scoped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Status with addresses.
    #[serde(default)]
    pub status: NodeStatus,
}

/// `Node.status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Addresses.
    #[serde(default, deserialize_with = "null_default")]
    pub addresses: Vec<NodeAddress>,
}

/// A node address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, ...
    #[serde(default, rename = "type")]
    pub type_: String,
    /// The address.
    #[serde(default)]
    pub address: String,
}
