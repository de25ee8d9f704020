//! Serde types of the Kubernetes objects the CRD provider reads.

mod core;
mod meta;
mod traefik;

pub use self::core::*;
pub use self::meta::*;
pub use self::traefik::*;

use serde::{Deserialize, Deserializer};

/// Reads `null` as the type's default (Kubernetes writes `field: null`
/// and `field:` freely for empty lists and maps).
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads a string map where values may be `null` (read as `""`), and the
/// whole map may be `null`.
pub(crate) fn string_map<'de, D>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<std::collections::BTreeMap<String, Option<String>>>::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}
