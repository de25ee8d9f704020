//! How a key written with no value (`routers:` in YAML = null) reads.
//!
//! Traefik's decoder treats such a key as empty rather than as an error:
//! an empty collection, and for the sections it tags `allowEmpty`
//! (`tls`, `sticky`, `cookie`, `healthCheck: {}`, `api`, ...) a present,
//! empty section, which is what turns the feature on.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `null` reads as `T::default()` (empty map, list or default struct).
pub(crate) fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// `null` reads as a present, default section.
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(|v| Some(v.unwrap_or_default()))
}

/// `null` reads as a present, empty object (for untyped sections).
pub(crate) fn present_object<'de, D>(d: D) -> Result<Option<Value>, D::Error>
where
    D: Deserializer<'de>,
{
    Value::deserialize(d).map(|v| match v {
        Value::Null => Some(Value::Object(serde_json::Map::new())),
        v => Some(v),
    })
}
