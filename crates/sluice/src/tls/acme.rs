//! Certificates from ACME: the static `certificatesResolvers`, each run by a
//! [`sluice_acme::Resolver`], told after every reload which domains the routers need, and whose
//! certificates join the store of the next runtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use serde_json::Value;
use sluice_acme::{Challenges, Domains, FileStorage, Resolver, ResolverHandle, ResolverSettings};
use sluice_config::{Diagnostic, Severity};
use tokio::sync::mpsc;

use super::acceptor::AlpnChallenges;
use super::certificate::Certificate;
use super::settings::Domain;
use super::TlsState;
use crate::dataplane::request;

/// The running resolvers, by name.
#[derive(Debug)]
pub struct AcmeResolvers {
    resolvers: BTreeMap<String, ResolverHandle>,
    challenges: Arc<PendingChallenges>,
}

/// Why the static `certificatesResolvers` section cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("certificatesResolvers.{name}: {reason}")]
pub struct ResolverError {
    pub name: String,
    pub reason: String,
}

impl AcmeResolvers {
    /// Starts one resolver per `certificatesResolvers.NAME.acme` (None when there are none).
    /// Must run inside a Tokio runtime.
    pub fn start(section: Option<&Value>) -> Result<Option<Self>, ResolverError> {
        let Some(Value::Object(section)) = section else {
            return Ok(None);
        };
        let challenges = Challenges::new();
        // Resolvers naming the same storage file share one store (and its lock).
        let mut storages: BTreeMap<std::path::PathBuf, Arc<FileStorage>> = BTreeMap::new();
        let mut resolvers = BTreeMap::new();
        for (name, value) in section {
            let fail = |reason: String| ResolverError {
                name: name.clone(),
                reason,
            };
            let Some(object) = value.as_object() else {
                return Err(fail("must be an object with an `acme` section".into()));
            };
            if let Some(other) = object.keys().find(|k| k.as_str() != "acme") {
                return Err(fail(format!(
                    "`{other}` resolvers are not supported by Sluice (only `acme`)"
                )));
            }
            let acme = object.get("acme").unwrap_or(&Value::Null);
            let settings =
                ResolverSettings::from_traefik(name, acme).map_err(|e| fail(e.to_string()))?;
            let storage = storages
                .entry(settings.storage.clone())
                .or_insert_with(|| Arc::new(FileStorage::new(settings.storage.clone())))
                .clone();
            let handle = Resolver::spawn(settings, challenges.clone(), storage);
            resolvers.insert(name.clone(), handle);
        }
        if resolvers.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            resolvers,
            challenges: Arc::new(PendingChallenges(challenges)),
        }))
    }

    /// What the entry points answer ACME validation requests with.
    pub fn challenges(&self) -> Arc<dyn request::Challenges> {
        self.challenges.clone()
    }

    /// Tells every resolver the domain sets the routers of the new runtime need. Routers naming
    /// a resolver that does not exist are reported.
    pub fn request(&self, wanted: &BTreeMap<String, Vec<Domain>>) -> Vec<Diagnostic> {
        let mut diagnostics = Vec::new();
        for name in wanted.keys() {
            if !self.resolvers.contains_key(name) {
                diagnostics.push(
                    Diagnostic::new(
                        Severity::Error,
                        format!(
                            "certificate resolver `{name}` does not exist (certificatesResolvers); \
                             its routers are served with the certificates at hand"
                        ),
                    )
                    .with_field("tls.certResolver"),
                );
            }
        }
        for (name, handle) in &self.resolvers {
            let domains = wanted
                .get(name)
                .map(|sets| {
                    sets.iter()
                        .map(|d| Domains {
                            main: d.main.clone(),
                            sans: d.sans.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            handle.request(domains);
        }
        diagnostics
    }

    /// The certificates every resolver holds now, parsed (and cached) for the store.
    pub fn certificates(&self, state: &TlsState) -> Vec<Arc<Certificate>> {
        let mut out = Vec::new();
        for (name, handle) in &self.resolvers {
            let current = handle.certificates().borrow().clone();
            for cert in current.iter() {
                match state.cache.get(
                    cert.chain_pem.as_bytes(),
                    cert.key_pem.as_bytes(),
                    &state.sessions.provider,
                ) {
                    Ok(parsed) => out.push(parsed),
                    Err(error) => tracing::error!(
                        resolver = %name, domain = %cert.domains.main, %error,
                        "an ACME certificate cannot be used"
                    ),
                }
            }
        }
        out
    }

    /// Sends on `reload` whenever a resolver publishes new certificates.
    pub fn notify_changes(&self, reload: mpsc::Sender<()>) {
        for handle in self.resolvers.values() {
            let mut changes = handle.certificates();
            let reload = reload.clone();
            tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    if reload.send(()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }
}

/// The resolvers' pending challenges, as the data plane asks for them.
#[derive(Debug)]
struct PendingChallenges(Challenges);

impl AlpnChallenges for PendingChallenges {
    fn certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.0.tls_alpn01(server_name)
    }
}

impl request::Challenges for PendingChallenges {
    fn http01(&self, token: &str) -> Option<String> {
        self.0.http01(token)
    }
}
