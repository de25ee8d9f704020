//! A running Sluice: entry points serving from the current runtime, and the reload loop that
//! turns provider changes into new runtimes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderValue;
use sluice_config::dynamic::Configuration;
use sluice_config::static_config::{StaticConfig, INTERNAL_ENTRY_POINT};
use sluice_config::{Diagnostic, Severity};
use sluice_crd::CrdOptions;
use sluice_rules::Syntax;
use tokio::sync::{mpsc, watch};

use crate::dataplane::entrypoint::{BindError, EntryPoint, EntryPointSettings};
use crate::dataplane::forwarded::ForwardedPolicy;
use crate::dataplane::ping::Health;
use crate::dataplane::request::Shared;
use crate::dataplane::worker;
use crate::provider::file::{self, FileProvider, Loaded};
use crate::provider::kubernetes::{self, KubernetesProvider};
use crate::runtime::build::DEFAULT_PRECEDENCE;
use crate::runtime::transport::Transports;
use crate::runtime::{self, EntryPointHttp, Redirection, Runtime, Settings};
use crate::tls::acme::AcmeResolvers;
use crate::tls::TlsState;

/// Errors that stop Sluice from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("entry point `{name}`: {field}: {reason}")]
    EntryPoint {
        name: String,
        field: &'static str,
        reason: String,
    },
    #[error("no entry point is configured (add `entryPoints.NAME.address`)")]
    NoEntryPoint,
    #[error("{field}: {reason}")]
    Provider { field: &'static str, reason: String },
    #[error(transparent)]
    Acme(#[from] crate::tls::acme::ResolverError),
    #[error("cannot start a worker thread: {0}")]
    Worker(std::io::Error),
}

/// Runtime-builder settings derived from the static configuration.
pub fn settings(config: &StaticConfig) -> Result<Settings, StartError> {
    let mut entry_point_http = HashMap::new();
    for (name, ep) in &config.entry_points {
        if let Some(value) = &ep.http {
            entry_point_http.insert(name.clone(), entry_point_model(name, value, config)?);
        }
    }
    let entry_points: Vec<String> = config.entry_points.keys().cloned().collect();
    // Routers without `entryPoints` take the entry points marked `asDefault`, else all of them;
    // never Traefik's internal one, nor UDP ones.
    let any_marked = config.entry_points.values().any(|ep| ep.as_default);
    let default_entry_points = config
        .entry_points
        .iter()
        .filter(|(name, ep)| {
            (!any_marked || ep.as_default)
                && name.as_str() != INTERNAL_ENTRY_POINT
                && !ep.address.ends_with("/udp")
        })
        .map(|(name, _)| name.clone())
        .collect();
    Ok(Settings {
        default_entry_points,
        entry_points,
        default_rule_syntax: config
            .core
            .default_rule_syntax
            .as_deref()
            .map(Syntax::from_name)
            .unwrap_or(Syntax::V3),
        precedence: if config.providers.precedence.is_empty() {
            DEFAULT_PRECEDENCE.iter().map(|p| p.to_string()).collect()
        } else {
            config.providers.precedence.clone()
        },
        entry_point_http,
    })
}

/// `entryPoints.NAME.http` as Traefik's static configuration spells it.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct EntryPointHttpConfig {
    redirections: Option<RedirectionsConfig>,
    middlewares: Vec<String>,
    tls: Option<serde_json::Value>,
    encode_query_semicolons: bool,
    sanitize_path: Option<bool>,
    max_header_bytes: Option<i64>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct RedirectionsConfig {
    entry_point: Option<EntryPointRedirectConfig>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
struct EntryPointRedirectConfig {
    to: String,
    scheme: String,
    permanent: bool,
    priority: i64,
}

impl Default for EntryPointRedirectConfig {
    fn default() -> Self {
        Self {
            to: String::new(),
            scheme: "https".into(),
            permanent: true,
            priority: i64::MAX - 1,
        }
    }
}

fn entry_point_model(
    name: &str,
    value: &serde_json::Value,
    config: &StaticConfig,
) -> Result<EntryPointHttp, StartError> {
    let fail = |field: &'static str, reason: String| StartError::EntryPoint {
        name: name.to_owned(),
        field,
        reason,
    };
    let mut value = value.clone();
    // `--entryPoints.x.http.tls=true` on the command line means TLS with default settings.
    if let Some(tls) = value.get_mut("tls") {
        match tls {
            serde_json::Value::Bool(true) => *tls = serde_json::json!({}),
            serde_json::Value::String(s) if s == "true" => *tls = serde_json::json!({}),
            _ => {}
        }
    }
    let parsed: EntryPointHttpConfig =
        crate::tls::settings::decode(&value).map_err(|e| fail("http", e))?;
    if let Some(tls) = &parsed.tls {
        crate::tls::settings::decode::<crate::tls::settings::RouterTls>(tls)
            .map_err(|e| fail("http.tls", e))?;
    }
    let redirect = match parsed.redirections.and_then(|r| r.entry_point) {
        None => None,
        Some(r) => {
            if r.to.is_empty() {
                return Err(fail(
                    "http.redirections.entryPoint.to",
                    "name the entry point (or `:port`) to redirect to".into(),
                ));
            }
            // `to` is an entry point name, or a port written `:443`.
            let address = match config.entry_points.get(&r.to) {
                Some(target) => target.address.clone(),
                None if r.to.starts_with(':') => r.to.clone(),
                None => {
                    return Err(fail(
                        "http.redirections.entryPoint.to",
                        format!("entry point `{}` does not exist", r.to),
                    ))
                }
            };
            let port = address
                .rsplit_once(':')
                .map(|(_, p)| p.split('/').next().unwrap_or(p).to_owned())
                .filter(|p| !p.is_empty());
            Some(Redirection {
                scheme: r.scheme,
                port,
                permanent: r.permanent,
                priority: r.priority,
            })
        }
    };
    Ok(EntryPointHttp {
        tls: parsed.tls,
        middlewares: parsed.middlewares,
        redirect,
    })
}

/// The file provider's source (directory or file), if the file provider is configured.
pub fn file_source(config: &StaticConfig) -> Option<PathBuf> {
    let file = config.providers.file.as_ref()?;
    file.directory.clone().or_else(|| file.filename.clone())
}

/// The `providers.kubernetesCRD` options (defaults when the section is absent).
pub fn crd_options(config: &StaticConfig) -> Result<CrdOptions, StartError> {
    match &config.providers.kubernetes_crd {
        None | Some(serde_json::Value::Null) => Ok(CrdOptions::default()),
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| StartError::Provider {
            field: "providers.kubernetesCRD",
            reason: e.to_string(),
        }),
    }
}

/// The file provider of a static configuration, if one is configured. When the Kubernetes
/// provider reads a cluster, it owns `@kubernetescrd` and the file provider skips manifests.
pub fn file_provider(config: &StaticConfig) -> Result<Option<FileProvider>, StartError> {
    let crd = crd_options(config)?;
    let cluster = kubernetes::enabled(config, &crd);
    Ok(file_source(config).map(|source| {
        let provider = FileProvider::new(source, crd);
        if cluster {
            provider.without_manifests()
        } else {
            provider
        }
    }))
}

/// The `ping` entry point, when `ping` is enabled (Traefik's default: `traefik`).
pub fn ping_entry_point(config: &StaticConfig) -> Option<String> {
    let ping = config.ping.as_ref()?;
    Some(
        ping.get("entryPoint")
            .and_then(|v| v.as_str())
            .filter(|name| !name.is_empty())
            .unwrap_or(INTERNAL_ENTRY_POINT)
            .to_owned(),
    )
}

/// The latest output of every configured provider.
struct Sources {
    file: Option<FileProvider>,
    files: Loaded,
    kubernetes: Option<watch::Receiver<Option<Arc<sluice_kubernetes::Snapshot>>>>,
}

impl Sources {
    /// Reads the files again.
    fn reload_files(&mut self) {
        if let Some(provider) = self.file.as_mut() {
            self.files = provider.load();
        }
    }

    /// Whether every provider has delivered its first complete configuration.
    fn ready(&self) -> bool {
        self.kubernetes
            .as_ref()
            .is_none_or(|rx| rx.borrow().is_some())
    }

    /// Every provider's qualified configuration merged, with their diagnostics.
    fn combined(&self) -> (Configuration, Vec<Diagnostic>) {
        let mut config = self.files.config.clone();
        let mut diagnostics = self.files.diagnostics.clone();
        if let Some(rx) = &self.kubernetes {
            if let Some(snapshot) = rx.borrow().as_ref() {
                crate::provider::merge(&mut config, kubernetes::qualified(snapshot));
                diagnostics.extend(snapshot.diagnostics.iter().cloned());
            }
        }
        (config, diagnostics)
    }
}

/// Loads the dynamic configuration once and builds a runtime from it (for `explain`/`check`).
pub fn load_once(config: &StaticConfig) -> Result<(Runtime, Loaded, Vec<Diagnostic>), StartError> {
    let loaded = match file_provider(config)? {
        Some(mut provider) => provider.load(),
        None => Loaded::empty(),
    };
    let (runtime, diagnostics) = runtime::build(
        &settings(config)?,
        &loaded.config,
        None,
        &Transports::default(),
        &TlsState::default(),
        &[],
        1,
    );
    Ok((runtime, loaded, diagnostics))
}

/// A started Sluice.
pub struct Proxy {
    shared: Arc<Shared>,
    addresses: Vec<(String, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    workers: Vec<std::thread::JoinHandle<()>>,
    reload: mpsc::Sender<()>,
    _watcher: Option<notify::RecommendedWatcher>,
    _kubernetes: Option<KubernetesProvider>,
}

impl Proxy {
    /// Binds every entry point, builds the first runtime and starts serving and watching.
    pub async fn start(config: &StaticConfig) -> Result<Self, StartError> {
        if config.entry_points.is_empty() {
            return Err(StartError::NoEntryPoint);
        }
        let workers = worker::count();
        let settings = settings(config)?;
        let transports = Arc::new(Transports::new(workers));
        let tls = Arc::new(TlsState::default());
        let crd = crd_options(config)?;
        let mut kube = if kubernetes::enabled(config, &crd) {
            Some(KubernetesProvider::start(config, crd).await.map_err(|e| {
                StartError::Provider {
                    field: "providers.kubernetesCRD",
                    reason: e.to_string(),
                }
            })?)
        } else {
            None
        };
        // With a cluster, ACME state lives in a Secret and one elected replica orders.
        let shared_storage = match (&mut kube, &config.certificates_resolvers) {
            (Some(kube), Some(_)) => Some(kube.acme_storage()),
            _ => None,
        };
        let acme = AcmeResolvers::start(
            config.certificates_resolvers.as_ref(),
            |name| config.entry_points.contains_key(name),
            shared_storage,
        )?
        .map(Arc::new);
        let mut sources = Sources {
            file: file_provider(config)?,
            files: Loaded::empty(),
            kubernetes: kube.as_ref().map(KubernetesProvider::subscribe),
        };
        sources.reload_files();
        let health = ping_entry_point(config).map(|name| {
            if !config.entry_points.contains_key(&name) {
                tracing::warn!(entry_point = %name, "ping: no such entry point; /ping and /ready are not served");
            }
            Health::new(name, sources.ready())
        });
        let first = build_next(
            &settings,
            &sources,
            None,
            &transports,
            &tls,
            acme.as_deref(),
            1,
        );
        // Listen only once the first runtime is built: a connection accepted from now on is
        // served with the configuration as it was read at startup.
        // bound[i] holds entry point i's socket of every worker.
        let mut bound = Vec::new();
        for (name, ep) in &config.entry_points {
            let forwarded = ForwardedPolicy::new(
                ep.forwarded_headers.insecure,
                &ep.forwarded_headers.trusted_ips,
            )
            .map_err(|reason| StartError::EntryPoint {
                name: name.clone(),
                field: "forwardedHeaders.trustedIPs",
                reason,
            })?;
            let timeouts = &ep.transport.responding_timeouts;
            let settings = EntryPointSettings {
                name: name.clone(),
                address: ep.address.clone(),
                forwarded,
                read_timeout: timeouts.read_timeout.as_std().filter(|d| !d.is_zero()),
                idle_timeout: timeouts.idle_timeout.as_std().filter(|d| !d.is_zero()),
                grace: ep
                    .transport
                    .life_cycle
                    .grace_time_out
                    .as_std()
                    .unwrap_or(Duration::from_secs(10)),
            };
            bound.push(EntryPoint::bind(settings, workers)?);
        }

        let shared = Arc::new(Shared {
            runtime: ArcSwap::from_pointee(first),
            server_name: server_name(),
            tls: tls.clone(),
            challenges: acme.as_ref().map(|a| a.challenges()),
            health,
        });

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut addresses = Vec::new();
        for (sockets, name) in bound.iter().zip(config.entry_points.keys()) {
            if let Some(addr) = sockets.first().and_then(|s| s.local_addr().ok()) {
                tracing::info!(entry_point = %name, address = %addr, workers, "listening");
                addresses.push((name.clone(), addr));
            }
        }
        // Deal the sockets out: worker w serves socket w of every entry point.
        let mut per_worker: Vec<Vec<EntryPoint>> = (0..workers).map(|_| Vec::new()).collect();
        for sockets in bound {
            for (w, socket) in sockets.into_iter().enumerate() {
                per_worker[w].push(socket);
            }
        }
        let mut worker_threads = Vec::with_capacity(workers);
        for (index, entry_points) in per_worker.into_iter().enumerate() {
            let handle = worker::spawn(index, entry_points, shared.clone(), shutdown_rx.clone())
                .map_err(StartError::Worker)?;
            worker_threads.push(handle);
        }

        // Reloads come from the file watcher and from `reload()` (SIGHUP).
        let (reload, mut reload_rx) = mpsc::channel::<()>(4);
        if let Some(acme) = &acme {
            acme.notify_changes(reload.clone());
        }
        let watch_enabled = config.providers.file.as_ref().is_some_and(|f| f.watch);
        let (watcher, mut changes) = match sources
            .file
            .as_ref()
            .filter(|_| watch_enabled)
            .map(|p| p.watch())
        {
            Some(Ok((watcher, changes))) => (Some(watcher), Some(changes)),
            Some(Err(error)) => {
                tracing::error!(%error, "cannot watch the configuration; reload with SIGHUP");
                (None, None)
            }
            None => (None, None),
        };
        // Kubernetes snapshots come debounced by the provider itself.
        let mut kube_changes = sources.kubernetes.clone();
        let loop_shared = shared.clone();
        tokio::spawn(async move {
            let mut generation = 1;
            loop {
                let files = tokio::select! {
                    got = reload_rx.recv() => match got {
                        Some(()) => true,
                        None => break,
                    },
                    changed = async {
                        match changes.as_mut() {
                            Some(rx) => file::debounce(rx, Duration::from_millis(50), Duration::from_millis(300)).await,
                            None => std::future::pending().await,
                        }
                    } => if changed { true } else { break },
                    changed = async {
                        match kube_changes.as_mut() {
                            Some(rx) => rx.changed().await,
                            None => std::future::pending().await,
                        }
                    } => if changed.is_ok() { false } else { break },
                };
                if files {
                    sources.reload_files();
                }
                generation += 1;
                let previous = loop_shared.runtime.load_full();
                let next = build_next(
                    &settings,
                    &sources,
                    Some(&previous),
                    &transports,
                    &tls,
                    acme.as_deref(),
                    generation,
                );
                loop_shared.runtime.store(Arc::new(next));
                transports.prune();
                if sources.ready() {
                    if let Some(health) = &loop_shared.health {
                        health.set_ready();
                    }
                }
            }
        });

        Ok(Self {
            shared,
            addresses,
            shutdown,
            workers: worker_threads,
            reload,
            _watcher: watcher,
            _kubernetes: kube,
        })
    }

    /// Addresses the entry points listen on, by name.
    pub fn addresses(&self) -> &[(String, SocketAddr)] {
        &self.addresses
    }

    /// The runtime currently serving.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    /// Asks for a reload now (what SIGHUP does).
    pub fn reload(&self) {
        let _ = self.reload.try_send(());
    }

    /// Stops accepting, lets in-flight requests finish within each entry point's grace period,
    /// and returns when every entry point has stopped.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let workers = self.workers;
        let _ = tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await;
    }
}

/// Builds the next runtime from the providers' latest output, logging what went wrong.
fn build_next(
    settings: &Settings,
    sources: &Sources,
    previous: Option<&Runtime>,
    transports: &Transports,
    tls: &TlsState,
    acme: Option<&AcmeResolvers>,
    generation: u64,
) -> Runtime {
    let (config, provided) = sources.combined();
    let acme_certificates = acme.map(|a| a.certificates(tls)).unwrap_or_default();
    let (runtime, mut diagnostics) = runtime::build(
        settings,
        &config,
        previous,
        transports,
        tls,
        &acme_certificates,
        generation,
    );
    match acme {
        Some(acme) => diagnostics.extend(acme.request(&runtime.acme)),
        None => diagnostics.extend(crate::tls::acme::unknown_resolvers(&runtime.acme, |_| {
            false
        })),
    }
    for diagnostic in provided.iter().chain(&diagnostics) {
        match diagnostic.severity {
            Severity::Error => tracing::error!("{diagnostic}"),
            Severity::Warning => tracing::warn!("{diagnostic}"),
        }
    }
    tracing::info!(
        generation,
        routers = runtime.router_count(),
        "configuration loaded"
    );
    runtime
}

fn server_name() -> HeaderValue {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .and_then(|h| HeaderValue::from_str(&h).ok())
        .unwrap_or(HeaderValue::from_static("sluice"))
}
