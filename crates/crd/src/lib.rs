//! Traefik's Kubernetes CRD provider, reading manifests from files.
//!
//! * [`types`]: serde types of Traefik's CRD kinds (both API groups) and of
//!   the Kubernetes core kinds the provider reads.
//! * [`manifest`]: multi-document YAML parsing with located diagnostics.
//! * [`options`]: the `providers.kubernetesCRD` static options.
//! * [`definition`]: CustomResourceDefinition YAML generated from [`types`].
//! * [`translate`]: manifests -> dynamic configuration, exactly as
//!   Traefik's CRD provider builds it.

mod base64;
pub mod definition;
pub mod manifest;
pub mod types;

pub use manifest::{
    is_manifest_text, manifest_from_json, parse_manifests, Manifest, Object, ParsedFile,
};
mod labels;
pub mod names;
pub mod options;
mod store;
pub mod translate;

pub use definition::{crd_definitions, try_crd_definitions};
pub use labels::{LabelSelector, SelectorError};
pub use options::CrdOptions;
pub use store::{Objects, Revision, Versioned, SERVICE_NAME_LABEL};
pub use translate::{
    translate, translate_refs, CachedTranslation, ObjectRef, Reuse, Translation, TranslationCache,
};
