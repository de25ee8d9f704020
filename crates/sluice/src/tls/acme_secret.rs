//! ACME state kept in a Kubernetes Secret, so every replica serves the same certificates and
//! only the leader orders new ones (Traefik's open-source edition keeps `acme.json` per pod).
//!
//! The Secret holds one key, `acme.json`, in Traefik's file layout: resolver name → entry.
//! Writes are read-modify-write with the Secret's resourceVersion, retried on conflict, so two
//! resolvers (or two replicas during a leader change) never overwrite each other unknowingly.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sluice_acme::{Storage, StorageError, StoredState};
use sluice_kubernetes::secrets::{SecretError, SecretStore};

/// Key of the Secret holding the document.
const KEY: &str = "acme.json";

/// `certificatesResolvers` storage in a Secret.
pub struct SecretStorage {
    secrets: SecretStore,
    name: String,
}

impl std::fmt::Debug for SecretStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStorage")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl SecretStorage {
    /// State in Secret `name` of the store's namespace.
    pub fn new(secrets: SecretStore, name: impl Into<String>) -> Self {
        Self {
            secrets,
            name: name.into(),
        }
    }

    async fn document(&self) -> Result<(Map<String, Value>, Option<String>), StorageError> {
        let stored = self.secrets.get(&self.name).await.map_err(other)?;
        let Some(stored) = stored else {
            return Ok((Map::new(), None));
        };
        let document = match stored.data.get(KEY) {
            None => Map::new(),
            Some(bytes) if bytes.is_empty() => Map::new(),
            Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(map)) => map,
                Ok(_) | Err(_) => {
                    return Err(StorageError::Other(format!(
                        "secret {}: key {KEY} is not a JSON object in Traefik's acme.json layout",
                        self.name
                    )))
                }
            },
        };
        Ok((document, Some(stored.resource_version)))
    }
}

fn other(error: SecretError) -> StorageError {
    StorageError::Other(error.to_string())
}

#[async_trait]
impl Storage for SecretStorage {
    async fn load(&self, resolver: &str) -> Result<StoredState, StorageError> {
        let (mut document, _) = self.document().await?;
        match document.remove(resolver) {
            None | Some(Value::Null) => Ok(StoredState::default()),
            Some(entry) => StoredState::from_traefik_json(entry).map_err(|reason| {
                StorageError::Other(format!(
                    "secret {}: resolver {resolver}: {reason}",
                    self.name
                ))
            }),
        }
    }

    async fn save(&self, resolver: &str, state: &StoredState) -> Result<(), StorageError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (mut document, version) = self.document().await?;
            document.insert(resolver.to_owned(), state.to_traefik_json());
            let bytes = serde_json::to_vec_pretty(&Value::Object(document))
                .map_err(|e| StorageError::Other(e.to_string()))?;
            let data = BTreeMap::from([(KEY.to_owned(), bytes)]);
            let labels = BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "sluice".to_owned(),
            )]);
            match self
                .secrets
                .put(&self.name, data, labels, version.as_deref())
                .await
            {
                Ok(_) => return Ok(()),
                Err(SecretError::Conflict { .. }) if attempts < 5 => continue,
                Err(error) => return Err(other(error)),
            }
        }
    }
}
