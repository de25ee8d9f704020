//! Kubernetes object metadata and small shared value types.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `metadata` of every Kubernetes object (the fields Sluice looks at;
/// anything else, such as `managedFields`, is accepted and ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name; may be empty when `generateName` is used.
    #[serde(default)]
    pub name: String,
    /// Namespace; absent for cluster-scoped objects (and then `default`
    /// for namespaced kinds, as `kubectl apply` would do).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name prefix the API server completes; Traefik uses it when `name`
    /// is empty.
    #[serde(default)]
    pub generate_name: String,
    /// Labels (used by the `labelSelector` option and EndpointSlice lookup).
    #[serde(default, deserialize_with = "crate::types::string_map")]
    pub labels: BTreeMap<String, String>,
    /// Annotations (`kubernetes.io/ingress.class`).
    #[serde(default, deserialize_with = "crate::types::string_map")]
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339 creation time; orders EndpointSlices of one Service.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    /// Object UID.
    #[serde(default)]
    pub uid: Option<String>,
    /// Resource version.
    #[serde(default)]
    pub resource_version: Option<String>,
}

impl ObjectMeta {
    /// The namespace, empty for none.
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

/// Kubernetes `IntOrString`: a port given as a number or as a port name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i64),
    /// A string.
    String(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

impl IntOrString {
    /// True for `0` and `""` (Kubernetes' "unset").
    pub fn is_unset(&self) -> bool {
        match self {
            IntOrString::Int(n) => *n == 0,
            IntOrString::String(s) => s.is_empty(),
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}
