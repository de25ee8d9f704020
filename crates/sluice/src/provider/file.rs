//! The file provider: a directory (or one file) of dynamic configuration, hot reloaded.
//!
//! Every file is parsed on its own. A file that fails to parse is reported with its position and
//! the provider keeps using that file's last good content, so one bad save never takes routes
//! away; a file never parsed successfully contributes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sluice_config::dynamic::Configuration;
use sluice_config::{file as config_file, Diagnostic, Severity};
use tokio::sync::mpsc;

/// Name of this provider in qualified names (`app@file`).
pub const PROVIDER: &str = "file";

/// The result of reading the provider's files.
#[derive(Debug)]
pub struct Loaded {
    /// Qualified configuration (`@file` names).
    pub config: Configuration,
    pub diagnostics: Vec<Diagnostic>,
}

/// Reads and watches a configuration directory or file.
#[derive(Debug)]
pub struct FileProvider {
    source: PathBuf,
    last_good: HashMap<PathBuf, Configuration>,
}

impl FileProvider {
    /// A provider over `source`, a directory (read recursively) or a single file.
    pub fn new(source: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            last_good: HashMap::new(),
        }
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

        let mut parsed = Vec::with_capacity(files.len());
        for path in files {
            let result = match std::fs::read_to_string(&path) {
                Ok(text) => config_file::parse_file(&path, &text),
                Err(error) => Err(io_error(&path, &error)),
            };
            match result {
                Ok(config) => {
                    self.last_good.insert(path.clone(), config.clone());
                    parsed.push((path, config));
                }
                Err(mut diagnostic) => {
                    if let Some(previous) = self.last_good.get(&path) {
                        diagnostic.message = format!(
                            "{} (the previous content of this file stays in use)",
                            diagnostic.message
                        );
                        parsed.push((path, previous.clone()));
                    } else {
                        diagnostic.message =
                            format!("{} (this file is skipped)", diagnostic.message);
                    }
                    diagnostics.push(diagnostic);
                }
            }
        }
        // Forget files that were deleted.
        self.last_good
            .retain(|path, _| parsed.iter().any(|(p, _)| p == path));

        let (mut config, merge_diagnostics) = config_file::merge(parsed);
        diagnostics.extend(merge_diagnostics);
        config_file::apply_defaults(&mut config);
        Loaded {
            config: super::qualify(config, PROVIDER),
            diagnostics,
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
