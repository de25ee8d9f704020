//! Where a resolver keeps its ACME account and certificates.
//!
//! [`FileStorage`] reads and writes Traefik's `acme.json`: one JSON object keyed by
//! resolver name, each entry holding `Account` and `Certificates`, byte fields in
//! standard base64 as Go's `encoding/json` writes `[]byte`
//! (`pkg/provider/acme/store.go`, `local_store.go`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::certificate::{Certificate, Domains};

/// The stored state of one resolver.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredState {
    /// The ACME account, once registered.
    pub account: Option<StoredAccount>,
    /// Certificates obtained so far.
    pub certificates: Vec<Certificate>,
}

impl StoredState {
    /// This resolver's entry in Traefik's `acme.json` layout (`Account`, `Certificates`), for
    /// storages other than a file (a Kubernetes Secret, say).
    pub fn to_traefik_json(&self) -> Value {
        encode_entry(self)
    }

    /// Reads an entry written by [`StoredState::to_traefik_json`] or by Traefik.
    pub fn from_traefik_json(entry: Value) -> Result<Self, String> {
        decode_entry(entry)
    }
}

/// A registered ACME account, in the shape Traefik stores it.
#[derive(Clone, PartialEq)]
pub struct StoredAccount {
    /// Contact address used at registration.
    pub email: String,
    /// Account URL on the ACME server (`Registration.uri`).
    pub uri: String,
    /// Account object returned by the server (`Registration.body`), kept as is.
    pub body: Value,
    /// DER private key. Sluice writes PKCS#8 P-256; Traefik writes PKCS#1 RSA.
    pub private_key_der: Vec<u8>,
    /// Key type of the certificates (`KeyType`, lego's names such as `P256`, `4096`).
    pub key_type: String,
}

impl std::fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAccount")
            .field("email", &self.email)
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Why stored state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not in Traefik's acme.json format.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is readable by others; Traefik refuses such a file too.
    #[error("{path}: permissions {mode:o} are too open, please use 600")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another backend's failure (such as a Kubernetes API error).
    #[error("{0}")]
    Other(String),
}

/// Persistence of resolvers' state. Several resolvers may share one storage.
#[async_trait]
pub trait Storage: Send + Sync {
    /// The state of resolver `resolver`; empty when nothing is stored yet.
    async fn load(&self, resolver: &str) -> Result<StoredState, StorageError>;
    /// Replaces the state of resolver `resolver`, leaving other resolvers' state alone.
    async fn save(&self, resolver: &str, state: &StoredState) -> Result<(), StorageError>;
}

/// Traefik's `acme.json` file, written with mode 0600.
#[derive(Debug, Clone)]
pub struct FileStorage {
    path: PathBuf,
    lock: Arc<tokio::sync::Mutex<()>>,
}

/// One lock per file for the whole process, so that resolvers sharing a file but
/// holding separate `FileStorage` values still serialize their read-modify-write.
static FILE_LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

impl FileStorage {
    /// Storage in the file at `path` (created on first save).
    pub fn new(path: impl Into<PathBuf>) -> FileStorage {
        let path = path.into();
        let key = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let lock = FILE_LOCKS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default()
            .clone();
        FileStorage { path, lock }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read_document(&self) -> Result<Map<String, Value>, StorageError> {
        let io = |source| StorageError::Io {
            path: self.path.clone(),
            source,
        };
        let bytes = match tokio::fs::read(&self.path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
            Err(e) => return Err(io(e)),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = tokio::fs::metadata(&self.path)
                .await
                .map_err(io)?
                .permissions()
                .mode()
                & 0o777;
            if mode & 0o077 != 0 {
                return Err(StorageError::Permissions {
                    path: self.path.clone(),
                    mode,
                });
            }
        }
        // Traefik's documentation has users create an empty file up front.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Map::new());
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(Value::Null) => Ok(Map::new()),
            Ok(_) => Err(self.format("the top level must be an object keyed by resolver name")),
            Err(e) => Err(self.format(&e.to_string())),
        }
    }

    async fn write_document(&self, document: &Map<String, Value>) -> Result<(), StorageError> {
        let io = |source| StorageError::Io {
            path: self.path.clone(),
            source,
        };
        let text = serde_json::to_vec_pretty(document).map_err(|e| self.format(&e.to_string()))?;
        // Write beside the target and rename, so a crash never leaves half a file.
        let mut tmp_name = self.path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(".tmp");
        let tmp = self.path.with_file_name(tmp_name);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut file = options.open(&tmp).await.map_err(io)?;
        #[cfg(unix)]
        {
            // `mode` applies only to new files; a stale temp file keeps its bits.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .await
                .map_err(io)?;
        }
        tokio::io::AsyncWriteExt::write_all(&mut file, &text)
            .await
            .map_err(io)?;
        file.sync_all().await.map_err(io)?;
        drop(file);
        tokio::fs::rename(&tmp, &self.path).await.map_err(io)
    }

    fn format(&self, reason: &str) -> StorageError {
        StorageError::Format {
            path: self.path.clone(),
            reason: reason.to_owned(),
        }
    }
}

#[async_trait]
impl Storage for FileStorage {
    async fn load(&self, resolver: &str) -> Result<StoredState, StorageError> {
        let _guard = self.lock.lock().await;
        let mut document = self.read_document().await?;
        match document.remove(resolver) {
            None | Some(Value::Null) => Ok(StoredState::default()),
            Some(entry) => decode_entry(entry)
                .map_err(|reason| self.format(&format!("resolver {resolver:?}: {reason}"))),
        }
    }

    async fn save(&self, resolver: &str, state: &StoredState) -> Result<(), StorageError> {
        let _guard = self.lock.lock().await;
        let mut document = self.read_document().await?;
        document.insert(resolver.to_owned(), encode_entry(state));
        self.write_document(&document).await
    }
}

#[derive(Serialize, Deserialize, Default)]
struct EntryJson {
    #[serde(rename = "Account", default)]
    account: Option<AccountJson>,
    #[serde(rename = "Certificates", default)]
    certificates: Option<Vec<CertificateJson>>,
}

#[derive(Serialize, Deserialize)]
struct AccountJson {
    #[serde(rename = "Email", default)]
    email: String,
    #[serde(rename = "Registration", default)]
    registration: Option<RegistrationJson>,
    #[serde(rename = "PrivateKey", default)]
    private_key: Option<String>,
    #[serde(rename = "KeyType", default)]
    key_type: String,
}

#[derive(Serialize, Deserialize)]
struct RegistrationJson {
    #[serde(default)]
    body: Value,
    #[serde(default)]
    uri: String,
}

#[derive(Serialize, Deserialize)]
struct CertificateJson {
    #[serde(default)]
    domain: Domains,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(rename = "Store", default)]
    store: String,
}

fn decode_entry(entry: Value) -> Result<StoredState, String> {
    let entry: EntryJson = serde_json::from_value(entry).map_err(|e| e.to_string())?;
    let account = match entry.account {
        Some(AccountJson {
            email,
            registration: Some(registration),
            private_key: Some(key),
            key_type,
        }) if !registration.uri.is_empty() => Some(StoredAccount {
            email,
            uri: registration.uri,
            body: registration.body,
            private_key_der: STANDARD
                .decode(key.trim())
                .map_err(|e| format!("Account.PrivateKey: {e}"))?,
            key_type,
        }),
        // An account that never finished registering is registered again.
        _ => None,
    };
    let mut certificates = Vec::new();
    for (i, stored) in entry
        .certificates
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let names = stored.domain.names().join(",");
        // Like Traefik, entries without data are dropped; unreadable ones are
        // reported and skipped so one bad entry does not hide the others.
        let (Some(chain), Some(key)) = (stored.certificate, stored.key) else {
            tracing::debug!(index = i, domains = %names, "skipping empty stored certificate");
            continue;
        };
        let decoded = decode_text(&chain)
            .and_then(|chain| Ok((chain, decode_text(&key)?)))
            .and_then(|(chain, key)| {
                Certificate::from_pem(stored.domain, chain, key).map_err(|e| e.to_string())
            });
        match decoded {
            Ok(cert) => certificates.push(cert),
            Err(reason) => {
                tracing::warn!(index = i, domains = %names, %reason, "skipping unreadable stored certificate")
            }
        }
    }
    Ok(StoredState {
        account,
        certificates,
    })
}

fn decode_text(b64: &str) -> Result<String, String> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "not UTF-8 PEM text".to_owned())
}

fn encode_entry(state: &StoredState) -> Value {
    let entry = EntryJson {
        account: state.account.as_ref().map(|a| AccountJson {
            email: a.email.clone(),
            registration: Some(RegistrationJson {
                body: a.body.clone(),
                uri: a.uri.clone(),
            }),
            private_key: Some(STANDARD.encode(&a.private_key_der)),
            key_type: a.key_type.clone(),
        }),
        certificates: Some(
            state
                .certificates
                .iter()
                .map(|c| CertificateJson {
                    domain: c.domains.clone(),
                    certificate: Some(STANDARD.encode(&c.chain_pem)),
                    key: Some(STANDARD.encode(&c.key_pem)),
                    // ACME certificates always go to Traefik's default TLS store.
                    store: "default".to_owned(),
                })
                .collect(),
        ),
    };
    serde_json::to_value(entry).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// An acme.json as Traefik writes it (by hand, in Traefik's field names):
    /// an RSA account key, an empty certificate entry Traefik would drop, and a
    /// second resolver's entry.
    fn traefik_file(chain: &str, key: &str) -> String {
        serde_json::json!({
            "le": {
                "Account": {
                    "Email": "ops@example.com",
                    "Registration": {
                        "body": {"status": "valid", "contact": ["mailto:ops@example.com"]},
                        "uri": "https://acme-v02.api.letsencrypt.org/acme/acct/123"
                    },
                    "PrivateKey": STANDARD.encode(b"\x30\x82pkcs1-rsa-bytes"),
                    "KeyType": "4096"
                },
                "Certificates": [
                    {
                        "domain": {"main": "www.example.com", "sans": ["example.com"]},
                        "certificate": STANDARD.encode(chain),
                        "key": STANDARD.encode(key),
                        "Store": "default"
                    },
                    {"domain": {"main": "empty.example.com"}, "certificate": null, "key": null, "Store": "default"}
                ]
            },
            "other": {"Account": null, "Certificates": null}
        })
        .to_string()
    }

    #[tokio::test]
    async fn loads_traefik_file_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.json");
        let (chain, key) = self_signed("www.example.com");
        std::fs::write(&path, traefik_file(&chain, &key)).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }

        let storage = FileStorage::new(&path);
        let state = storage.load("le").await.unwrap();
        let account = state.account.as_ref().unwrap();
        assert_eq!(account.email, "ops@example.com");
        assert_eq!(
            account.uri,
            "https://acme-v02.api.letsencrypt.org/acme/acct/123"
        );
        assert_eq!(account.key_type, "4096");
        assert_eq!(account.private_key_der, b"\x30\x82pkcs1-rsa-bytes");
        assert_eq!(state.certificates.len(), 1);
        let cert = &state.certificates[0];
        assert_eq!(cert.domains.main, "www.example.com");
        assert_eq!(cert.domains.sans, vec!["example.com"]);
        assert_eq!(cert.chain_pem, chain);
        assert_eq!(cert.key_pem, key);
        assert!(storage.load("missing").await.unwrap() == StoredState::default());

        // A second resolver saves into the same file; the first is untouched.
        let (chain2, key2) = self_signed("api.example.com");
        let other = StoredState {
            account: None,
            certificates: vec![Certificate::from_pem(
                Domains::new("api.example.com"),
                chain2,
                key2,
            )
            .unwrap()],
        };
        FileStorage::new(&path).save("other", &other).await.unwrap();
        storage.save("le", &state).await.unwrap();
        assert_eq!(storage.load("le").await.unwrap(), state);
        assert_eq!(storage.load("other").await.unwrap(), other);

        let raw: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let stored = &raw["le"]["Certificates"][0];
        assert_eq!(stored["Store"], "default");
        assert_eq!(stored["domain"]["main"], "www.example.com");
        assert_eq!(
            STANDARD
                .decode(stored["certificate"].as_str().unwrap())
                .unwrap(),
            chain.as_bytes()
        );
        assert_eq!(
            raw["le"]["Account"]["Registration"]["body"]["status"],
            "valid"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[tokio::test]
    async fn empty_missing_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acme.json");
        let storage = FileStorage::new(&path);
        assert_eq!(storage.load("le").await.unwrap(), StoredState::default());
        std::fs::write(&path, "").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let err = storage.load("le").await.unwrap_err().to_string();
            assert!(err.contains("are too open, please use 600"), "{err}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert_eq!(storage.load("le").await.unwrap(), StoredState::default());
        std::fs::write(&path, "[1]").unwrap();
        let err = storage.load("le").await.unwrap_err().to_string();
        assert!(err.contains("keyed by resolver name"), "{err}");
        std::fs::write(&path, r#"{"le": {"Certificates": 5}}"#).unwrap();
        let err = storage.load("le").await.unwrap_err().to_string();
        assert!(err.contains("resolver \"le\""), "{err}");
    }
}
