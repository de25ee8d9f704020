//! Certificates from ACME: the static `certificatesResolvers`, each run by a
//! [`sluice_acme::Resolver`], told after every reload which domains the routers need, and whose
//! certificates join the store of the next runtime.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rustls::sign::CertifiedKey;
use serde_json::Value;
use sluice_acme::{
    ChallengeKind, Challenges, Domains, FileStorage, Resolver, ResolverHandle, ResolverSettings,
};
use sluice_config::{Diagnostic, Severity};
use tokio::sync::mpsc;

use super::acceptor::AlpnChallenges;
use super::certificate::Certificate;
use super::TlsState;
use crate::dataplane::request;
use crate::runtime::ResolverRequest;

/// The running resolvers, by name.
#[derive(Debug)]
pub struct AcmeResolvers {
    resolvers: BTreeMap<String, ResolverHandle>,
    challenges: Arc<PendingChallenges>,
}

/// Storage shared by replicas (a Kubernetes Secret) and the leadership that lets one replica
/// order and renew; replaces the `storage` file of every resolver.
pub struct SharedStorage {
    pub storage: Arc<dyn sluice_acme::Storage>,
    pub leader: tokio::sync::watch::Receiver<bool>,
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
    /// `entry_point_exists` tells whether an `httpChallenge.entryPoint` is configured.
    /// Must run inside a Tokio runtime.
    pub fn start(
        section: Option<&Value>,
        entry_point_exists: impl Fn(&str) -> bool,
        shared: Option<SharedStorage>,
    ) -> Result<Option<Self>, ResolverError> {
        let Some(Value::Object(section)) = section else {
            return Ok(None);
        };
        let challenges = Challenges::new();
        // Resolvers naming the same storage file share one store (and its lock).
        let mut storages: BTreeMap<std::path::PathBuf, Arc<FileStorage>> = BTreeMap::new();
        let mut resolvers = BTreeMap::new();
        let mut http01_entry_points = BTreeSet::new();
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
            if let ChallengeKind::Http01 { entry_point, .. } = &settings.challenge {
                // Not fatal: the resolver still serves what its storage holds.
                if !entry_point_exists(entry_point) {
                    tracing::error!(
                        resolver = %name,
                        "certificatesResolvers.{name}.acme.httpChallenge.entryPoint: entry point \
                         `{entry_point}` does not exist; HTTP-01 challenges cannot be answered"
                    );
                }
                http01_entry_points.insert(entry_point.clone());
            }
            let handle = match &shared {
                Some(shared) => Resolver::spawn_with_leader(
                    settings,
                    challenges.clone(),
                    shared.storage.clone(),
                    Some(shared.leader.clone()),
                ),
                None => {
                    let storage = storages
                        .entry(settings.storage.clone())
                        .or_insert_with(|| Arc::new(FileStorage::new(settings.storage.clone())))
                        .clone();
                    Resolver::spawn(settings, challenges.clone(), storage)
                }
            };
            resolvers.insert(name.clone(), handle);
        }
        if resolvers.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            resolvers,
            challenges: Arc::new(PendingChallenges {
                challenges,
                http01_entry_points,
            }),
        }))
    }

    /// What the entry points answer ACME validation requests with.
    pub fn challenges(&self) -> Arc<dyn request::Challenges> {
        self.challenges.clone()
    }

    /// Tells every resolver the domain sets the routers of the new runtime need. Routers naming
    /// a resolver that does not exist are reported.
    pub fn request(&self, wanted: &BTreeMap<String, ResolverRequest>) -> Vec<Diagnostic> {
        let diagnostics = unknown_resolvers(wanted, |name| self.resolvers.contains_key(name));
        for (name, handle) in &self.resolvers {
            let domains = wanted
                .get(name)
                .map(|request| {
                    request
                        .domains
                        .iter()
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

/// One error per router whose `tls.certResolver` names a resolver for which `exists` is false.
/// Such routers are still served, with the certificates the store has for their names.
pub fn unknown_resolvers(
    wanted: &BTreeMap<String, ResolverRequest>,
    exists: impl Fn(&str) -> bool,
) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for (name, request) in wanted {
        if exists(name) {
            continue;
        }
        for router in &request.routers {
            diagnostics.push(
                Diagnostic::new(
                    Severity::Error,
                    format!(
                        "certificate resolver `{name}` does not exist (no \
                         certificatesResolvers.{name} in the static configuration); the router \
                         is served with the certificates at hand"
                    ),
                )
                .with_resource(format!("router `{router}`"))
                .with_field("tls.certResolver"),
            );
        }
    }
    diagnostics
}

/// The resolvers' pending challenges, as the data plane asks for them.
#[derive(Debug)]
struct PendingChallenges {
    challenges: Challenges,
    /// Entry points named by `httpChallenge.entryPoint`: the only ones answering HTTP-01, as in
    /// Traefik.
    http01_entry_points: BTreeSet<String>,
}

impl AlpnChallenges for PendingChallenges {
    fn certificate(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        self.challenges.tls_alpn01(server_name)
    }
}

impl request::Challenges for PendingChallenges {
    fn http01(&self, entry_point: &str, token: &str) -> Option<String> {
        if !self.http01_entry_points.contains(entry_point) {
            return None;
        }
        self.challenges.http01(token)
    }

    fn serves_http01(&self, entry_point: &str) -> bool {
        self.http01_entry_points.contains(entry_point)
    }
}
