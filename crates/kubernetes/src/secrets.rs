//! Secrets as shared storage between replicas (ACME accounts and certificates): read one,
//! create or replace it with optimistic concurrency so two replicas never overwrite each
//! other's work unknowingly.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::Api;

/// A Secret's data and the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// `data`, decoded.
    pub data: BTreeMap<String, Vec<u8>>,
    /// `metadata.resourceVersion`, to pass back to [`SecretStore::put`].
    pub resource_version: String,
}

/// What went wrong with a Secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Someone else wrote the Secret since it was read (or created it first).
    #[error("secret {namespace}/{name} was changed by someone else (resourceVersion conflict)")]
    Conflict { namespace: String, name: String },
    /// The API refused or could not be reached.
    #[error("secret {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Reads and writes Secrets of one namespace.
#[derive(Clone)]
pub struct SecretStore {
    api: Api<Secret>,
    namespace: String,
}

impl SecretStore {
    /// Secrets of `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        SecretStore {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
        }
    }

    fn error(&self, name: &str, source: kube::Error) -> SecretError {
        match &source {
            kube::Error::Api(status) if status.code == 409 => SecretError::Conflict {
                namespace: self.namespace.clone(),
                name: name.to_string(),
            },
            _ => SecretError::Api {
                namespace: self.namespace.clone(),
                name: name.to_string(),
                source,
            },
        }
    }

    /// The Secret's data, or `None` when it does not exist.
    pub async fn get(&self, name: &str) -> Result<Option<Stored>, SecretError> {
        let secret = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| self.error(name, e))?;
        Ok(secret.map(|s| Stored {
            data: s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect(),
            resource_version: s.metadata.resource_version.unwrap_or_default(),
        }))
    }

    /// Writes the Secret. `expected` is the resource version last read: `None` creates it
    /// (failing if it exists), `Some` replaces exactly that version (failing if it changed).
    /// Returns the new resource version.
    pub async fn put(
        &self,
        name: &str,
        data: BTreeMap<String, Vec<u8>>,
        labels: BTreeMap<String, String>,
        expected: Option<&str>,
    ) -> Result<String, SecretError> {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.namespace.clone()),
                labels: (!labels.is_empty()).then_some(labels),
                resource_version: expected.map(str::to_string),
                ..ObjectMeta::default()
            },
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            type_: Some("Opaque".to_string()),
            ..Secret::default()
        };
        let params = PostParams::default();
        let written = match expected {
            None => self.api.create(&params, &secret).await,
            Some(_) => self.api.replace(name, &params, &secret).await,
        }
        .map_err(|e| self.error(name, e))?;
        Ok(written.metadata.resource_version.unwrap_or_default())
    }
}
