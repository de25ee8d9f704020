//! Reference resolution between objects (namespaces, `@provider` names).

use crate::names::normalize;
use crate::options::CrdOptions;

use super::error::RefError;

/// The CRD provider's name, as used in `x@kubernetescrd`.
pub const PROVIDER_NAME: &str = "kubernetescrd";

/// `namespace`, or the parent's when empty.
pub fn namespace_or_parent<'a>(namespace: &'a str, parent: &'a str) -> &'a str {
    if namespace.is_empty() {
        parent
    } else {
        namespace
    }
}

/// Same namespace, or cross-namespace references allowed.
pub fn namespace_allowed(allow_cross_namespace: bool, parent: &str, namespace: &str) -> bool {
    allow_cross_namespace || parent == namespace
}

/// May `namespace` use `x@provider` references? `None` = unrestricted.
pub fn cross_provider_allowed(allow: &Option<Vec<String>>, namespace: &str) -> bool {
    match allow {
        None => true,
        Some(list) => list.iter().any(|n| n == namespace),
    }
}

/// Resolves a middleware / TLSOption reference to its configuration name:
/// `x@provider` is kept as written (its namespace ignored), anything else
/// becomes `Normalize(ns-name)`.
pub fn resolve_reference(
    options: &CrdOptions,
    parent_ns: &str,
    ns: &str,
    name: &str,
) -> Result<String, RefError> {
    if name.contains('@') {
        if !options.allow_cross_namespace && name.ends_with(&format!("@{PROVIDER_NAME}")) {
            return Err(RefError::CrdProviderRef);
        }
        if !cross_provider_allowed(&options.cross_provider_namespaces, parent_ns) {
            return Err(RefError::CrossProvider(parent_ns.to_string()));
        }
        return Ok(name.to_string());
    }
    let ns = namespace_or_parent(ns, parent_ns);
    if !namespace_allowed(options.allow_cross_namespace, parent_ns, ns) {
        return Err(RefError::CrossNamespace);
    }
    Ok(normalize(&format!("{ns}-{name}")))
}
