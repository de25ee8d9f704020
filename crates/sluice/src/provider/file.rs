//! The file provider: a directory (or one file) of configuration, hot reloaded.
//!
//! A file holds either Traefik dynamic configuration (YAML or TOML) or Kubernetes manifests
//! (multi-document YAML with `apiVersion`/`kind`). Dynamic configuration is registered under
//! `@file`; manifests are translated exactly as Traefik's CRD provider translates them from a
//! cluster and registered under `@kubernetescrd`, so references between the two work as they do
//! in Traefik.
//!
//! Every file is parsed on its own. A file that fails to parse is reported with its position and
//! the provider keeps using that file's last good content, so one bad save never takes routes
//! away; a file never parsed successfully contributes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sluice_config::dynamic::Configuration;
use sluice_config::{file as config_file, Diagnostic, Severity};
use sluice_crd::{CrdOptions, Manifest};
use tokio::sync::mpsc;

/// Provider name of dynamic-configuration files (`app@file`).
pub const PROVIDER: &str = "file";
/// Provider name of translated Kubernetes manifests (`default-app-80@kubernetescrd`).
pub const CRD_PROVIDER: &str = "kubernetescrd";

/// The result of reading the provider's files.
#[derive(Debug)]
pub struct Loaded {
    /// Qualified configuration of every provider, merged.
    pub config: Configuration,
    /// Each provider's own output, unqualified, as Traefik's providers produce it.
    pub providers: BTreeMap<String, Configuration>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// Nothing loaded.
    pub fn empty() -> Self {
        Self {
            config: Configuration::default(),
            providers: BTreeMap::new(),
            diagnostics: Vec::new(),
        }
    }
}

/// What one file contributed the last time it parsed.
#[derive(Debug, Clone)]
enum Content {
    Dynamic(Box<Configuration>),
    Manifests(Vec<Manifest>),
}

/// Reads and watches a configuration directory or file.
#[derive(Debug)]
pub struct FileProvider {
    source: PathBuf,
    crd: CrdOptions,
    /// False when the Kubernetes provider owns `@kubernetescrd` (see `provider::kubernetes`).
    read_manifests: bool,
    last_good: HashMap<PathBuf, Content>,
}

impl FileProvider {
    /// A provider over `source`, a directory (read recursively) or a single file; `crd` are the
    /// `providers.kubernetesCRD` options applied to manifests.
    pub fn new(source: impl Into<PathBuf>, crd: CrdOptions) -> Self {
        Self {
            source: source.into(),
            crd,
            read_manifests: true,
            last_good: HashMap::new(),
        }
    }

    /// Ignores manifest files (with a warning each): the Kubernetes provider reads the cluster
    /// and owns `@kubernetescrd`.
    pub fn without_manifests(mut self) -> Self {
        self.read_manifests = false;
        self
    }

    /// The directory or file this provider reads.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Reads every file now.
    pub fn load(&mut self) -> Loaded {
        let mut diagnostics = Vec::new();
        let files = if self.source.is_dir() {
            match config_file::list_files(&self.source) {
                Ok(files) => files,
                Err(error) => {
                    diagnostics.push(io_error(&self.source, &error));
                    Vec::new()
                }
            }
        } else {
            vec![self.source.clone()]
        };

        let mut dynamic = Vec::new();
        let mut manifests = Vec::new();
        let mut seen = Vec::with_capacity(files.len());
        for path in files {
            let content = match std::fs::read_to_string(&path) {
                Ok(text) => self.parse(&path, &text, &mut diagnostics),
                Err(error) => {
                    diagnostics.push(io_error(&path, &error));
                    None
                }
            };
            let content = match content {
                Some(content) => {
                    self.last_good.insert(path.clone(), content.clone());
                    Some(content)
                }
                None => {
                    let previous = self.last_good.get(&path).cloned();
                    if let Some(last) = diagnostics.last_mut() {
                        let note = if previous.is_some() {
                            " (the previous content of this file stays in use)"
                        } else {
                            " (this file is skipped)"
                        };
                        last.message.push_str(note);
                    }
                    previous
                }
            };
            match content {
                Some(Content::Dynamic(config)) => dynamic.push((path.clone(), *config)),
                Some(Content::Manifests(found)) => manifests.extend(found),
                None => {}
            }
            seen.push(path);
        }
        // Forget files that were deleted.
        self.last_good.retain(|path, _| seen.contains(path));

        let (mut file_config, merge_diagnostics) = config_file::merge(dynamic);
        diagnostics.extend(merge_diagnostics);
        config_file::apply_defaults(&mut file_config);
        let mut providers = BTreeMap::new();
        providers.insert(PROVIDER.to_owned(), file_config.clone());
        let mut config = super::qualify(file_config, PROVIDER);
        if !manifests.is_empty() {
            let translation = sluice_crd::translate(&manifests, &self.crd);
            diagnostics.extend(translation.diagnostics);
            providers.insert(CRD_PROVIDER.to_owned(), translation.config.clone());
            super::merge(
                &mut config,
                super::qualify(translation.config, CRD_PROVIDER),
            );
        }
        Loaded {
            config,
            providers,
            diagnostics,
        }
    }

    /// Parses one file; None when it cannot be used at all (the reason is in `diagnostics`).
    fn parse(&self, path: &Path, text: &str, diagnostics: &mut Vec<Diagnostic>) -> Option<Content> {
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if yaml && sluice_crd::is_manifest_text(text) {
            if !self.read_manifests {
                diagnostics.push(
                    Diagnostic::warning(
                        "Kubernetes manifests are read from the cluster (providers.kubernetesCRD); this file is ignored",
                    )
                    .with_file(path),
                );
                return Some(Content::Manifests(Vec::new()));
            }
            let parsed = sluice_crd::parse_manifests(path, text);
            for kind in &parsed.ignored {
                tracing::debug!(file = %path.display(), "ignoring {kind}: not a kind Sluice reads");
            }
            let failed = parsed.manifests.is_empty()
                && parsed
                    .diagnostics
                    .iter()
                    .any(|d| d.severity == Severity::Error);
            diagnostics.extend(parsed.diagnostics);
            return (!failed).then_some(Content::Manifests(parsed.manifests));
        }
        match config_file::parse_file(path, text) {
            Ok(config) => Some(Content::Dynamic(Box::new(config))),
            Err(diagnostic) => {
                diagnostics.push(diagnostic);
                None
            }
        }
    }

    /// Starts watching; each message on the returned channel means "something changed".
    /// Events are debounced by the receiver (see [`debounce`]). Keep the watcher alive.
    pub fn watch(&self) -> Result<(notify::RecommendedWatcher, mpsc::Receiver<()>), notify::Error> {
        let (tx, rx) = mpsc::channel(16);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if !event.kind.is_access() {
                        let _ = tx.try_send(());
                    }
                }
            })?;
        // Watch the directory holding a single file: editors save by renaming a new file over it.
        let target = if self.source.is_dir() {
            self.source.clone()
        } else {
            self.source
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        };
        watcher.watch(&target, RecursiveMode::Recursive)?;
        Ok((watcher, rx))
    }
}

/// Waits for the first change, then until `quiet` passes without another one (at most
/// `max_wait` after the first), so a burst of writes leads to one reload while a steady stream
/// of writes still reloads regularly. Returns false when the channel closed.
pub async fn debounce(
    changes: &mut mpsc::Receiver<()>,
    quiet: Duration,
    max_wait: Duration,
) -> bool {
    if changes.recv().await.is_none() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + max_wait;
    loop {
        let wait = quiet.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        if wait.is_zero() {
            return true;
        }
        match tokio::time::timeout(wait, changes.recv()).await {
            Ok(Some(())) => continue,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

fn io_error(path: &Path, error: &std::io::Error) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: Some(path.to_path_buf()),
        line: None,
        column: None,
        resource: None,
        field: None,
        message: format!("cannot read: {error}"),
    }
}
