//! The file provider's parsing: one file to a [`Configuration`], Traefik's
//! decoder defaults, directory listing and merging of several files.
//!
//! Watching for changes is not done here (the binary owns the watcher and
//! calls these functions on every change).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::diagnostic::Diagnostic;
use crate::dynamic::{
    Configuration, HttpConfiguration, ResponseForwarding, DEFAULT_FLUSH_INTERVAL,
};
use crate::parse::{self, DisplayPath, Format, Segment};

/// Parses one dynamic configuration file; the format comes from the
/// extension (`.yaml`/`.yml` or `.toml`; anything else is read as YAML).
///
/// A file that is empty or holds only comments is an empty configuration.
/// No defaults are applied: call [`apply_defaults`] afterwards.
///
/// The diagnostic names the file, the 1-based line and column, the element
/// (e.g. ``router `web` ``) and the field path inside it.
// The error is one Diagnostic by design: every layer reports the same type,
// and parse failures are rare enough that its size does not matter.
#[allow(clippy::result_large_err)]
pub fn parse_file(path: &Path, text: &str) -> Result<Configuration, Diagnostic> {
    let format = Format::from_path(path).unwrap_or(Format::Yaml);
    parse::decode::<Configuration>(format, text).map_err(|f| {
        let mut d = Diagnostic::error(f.message).with_file(path);
        d.line = f.line;
        d.column = f.column;
        let (resource, field) = describe_path(&f.path);
        d.resource = resource;
        d.field = field;
        d
    })
}

/// Splits a key path into the element it belongs to and the field inside
/// it: `http.routers.web.rule` -> (``router `web` ``, `rule`). Paths outside
/// named elements come back whole as the field.
fn describe_path(path: &[Segment]) -> (Option<String>, Option<String>) {
    if let [Segment::Key(section), Segment::Key(group), Segment::Key(name), rest @ ..] = path {
        if let Some(kind) = element_kind(section, group) {
            let field = (!rest.is_empty()).then(|| DisplayPath(rest).to_string());
            return (Some(format!("{kind} `{name}`")), field);
        }
    }
    let field = (!path.is_empty()).then(|| DisplayPath(path).to_string());
    (None, field)
}

/// Human name of the elements under `section.group`, in Traefik's words.
fn element_kind(section: &str, group: &str) -> Option<&'static str> {
    Some(match (section, group) {
        ("http", "routers") => "router",
        ("http", "services") => "service",
        ("http", "middlewares") => "middleware",
        ("http", "models") => "model",
        ("http", "serversTransports") => "serversTransport",
        ("tcp", "routers") => "TCP router",
        ("tcp", "services") => "TCP service",
        ("tcp", "middlewares") => "TCP middleware",
        ("tcp", "serversTransports") => "TCP serversTransport",
        ("udp", "routers") => "UDP router",
        ("udp", "services") => "UDP service",
        ("tls", "options") => "TLS options",
        ("tls", "stores") => "TLS store",
        _ => return None,
    })
}

/// Injects the defaults Traefik's file decoder sets, each only when its
/// enclosing object is present (spec 2.10):
///
/// * `loadBalancer`: `passHostHeader: true`, `strategy: wrr`,
///   `responseForwarding.flushInterval: 100ms`;
/// * `mirroring`: `mirrorBody: true`, `maxBodySize: -1`;
/// * children of `weighted` (and `highestRandomWeight`): `weight: 1`;
/// * `sticky.cookie`: `path: /`.
///
/// Health-check defaults are not injected: health checks are still opaque
/// values in the model.
pub fn apply_defaults(cfg: &mut Configuration) {
    let Some(http) = cfg.http.as_mut() else {
        return;
    };
    for service in http.services.values_mut() {
        if let Some(lb) = service.load_balancer.as_mut() {
            lb.pass_host_header.get_or_insert(true);
            lb.strategy.get_or_insert_with(|| "wrr".to_string());
            // Traefik creates responseForwarding with its default before
            // decoding, so a present-but-empty one also gets 100ms.
            let rf = lb
                .response_forwarding
                .get_or_insert_with(ResponseForwarding::default);
            rf.flush_interval.get_or_insert(DEFAULT_FLUSH_INTERVAL);
            if let Some(cookie) = lb.sticky.as_mut().and_then(|s| s.cookie.as_mut()) {
                cookie.path.get_or_insert_with(|| "/".to_string());
            }
        }
        if let Some(wrr) = service.weighted.as_mut() {
            for child in &mut wrr.services {
                child.weight.get_or_insert(1);
            }
            if let Some(cookie) = wrr.sticky.as_mut().and_then(|s| s.cookie.as_mut()) {
                cookie.path.get_or_insert_with(|| "/".to_string());
            }
        }
        if let Some(m) = service.mirroring.as_mut() {
            m.mirror_body.get_or_insert(true);
            m.max_body_size.get_or_insert(-1);
        }
        if let Some(Value::Object(hrw)) = service.highest_random_weight.as_mut() {
            if let Some(Value::Array(children)) = hrw.get_mut("services") {
                for child in children {
                    if let Value::Object(child) = child {
                        child.entry("weight").or_insert(Value::from(1));
                    }
                }
            }
        }
    }
}

/// Merges files in the given order (callers pass them sorted by path, as
/// [`list_files`] returns them). An element name defined in several files
/// is kept from the first file; each later definition is skipped with a
/// warning, as Traefik's file provider does in directory mode.
///
/// TLS certificates are concatenated; everything keyed by name (routers,
/// services, middlewares, transports, TLS options and stores, TCP/UDP
/// elements) follows the first-wins rule.
pub fn merge(files: Vec<(PathBuf, Configuration)>) -> (Configuration, Vec<Diagnostic>) {
    let mut out = Configuration::default();
    let mut diags = Vec::new();
    // Where each (kind, name) was first defined, for the warning text.
    let mut origin: BTreeMap<(&'static str, String), PathBuf> = BTreeMap::new();

    for (path, cfg) in files {
        if let Some(http) = cfg.http {
            let dst = out.http.get_or_insert_with(HttpConfiguration::default);
            let mut ctx = MergeCtx {
                path: &path,
                origin: &mut origin,
                diags: &mut diags,
            };
            ctx.map("HTTP router", &mut dst.routers, http.routers);
            ctx.map("HTTP service", &mut dst.services, http.services);
            ctx.map("HTTP middleware", &mut dst.middlewares, http.middlewares);
            ctx.map("HTTP model", &mut dst.models, http.models);
            ctx.map(
                "HTTP servers transport",
                &mut dst.servers_transports,
                http.servers_transports,
            );
        }
        let mut ctx = MergeCtx {
            path: &path,
            origin: &mut origin,
            diags: &mut diags,
        };
        if let Some(tcp) = cfg.tcp {
            ctx.value_section(
                &mut out.tcp,
                tcp,
                &[
                    ("routers", "TCP router"),
                    ("services", "TCP service"),
                    ("middlewares", "TCP middleware"),
                    ("serversTransports", "TCP servers transport"),
                ],
                &[],
            );
        }
        if let Some(udp) = cfg.udp {
            ctx.value_section(
                &mut out.udp,
                udp,
                &[("routers", "UDP router"), ("services", "UDP service")],
                &[],
            );
        }
        if let Some(tls) = cfg.tls {
            ctx.value_section(
                &mut out.tls,
                tls,
                &[("options", "TLS options"), ("stores", "TLS store")],
                &["certificates"],
            );
        }
    }
    (out, diags)
}

struct MergeCtx<'a> {
    path: &'a Path,
    origin: &'a mut BTreeMap<(&'static str, String), PathBuf>,
    diags: &'a mut Vec<Diagnostic>,
}

impl MergeCtx<'_> {
    /// First-wins insertion of every element of `src` into `dst`.
    fn map<T>(
        &mut self,
        kind: &'static str,
        dst: &mut BTreeMap<String, T>,
        src: BTreeMap<String, T>,
    ) {
        for (name, element) in src {
            match dst.entry(name) {
                std::collections::btree_map::Entry::Occupied(e) => self.duplicate(kind, e.key()),
                std::collections::btree_map::Entry::Vacant(e) => {
                    self.origin
                        .insert((kind, e.key().clone()), self.path.to_path_buf());
                    e.insert(element);
                }
            }
        }
    }

    fn duplicate(&mut self, kind: &'static str, name: &str) {
        let first = self
            .origin
            .get(&(kind, name.to_string()))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        self.diags.push(
            Diagnostic::warning(format!(
                "{kind} `{name}` already configured in {first}, skipping the one in {}",
                self.path.display()
            ))
            .with_file(self.path),
        );
    }

    /// Merges an opaque section (`tcp`, `udp`, `tls`): `keyed` sub-maps
    /// element by element (first wins), `listed` sub-lists concatenated,
    /// any other key first wins as a whole.
    fn value_section(
        &mut self,
        dst: &mut Option<Value>,
        src: Value,
        keyed: &[(&str, &'static str)],
        listed: &[&str],
    ) {
        let Value::Object(src) = src else {
            // A non-object section (e.g. `tcp:` left empty) adds nothing,
            // but its presence is kept like Traefik keeps an empty section.
            dst.get_or_insert(src);
            return;
        };
        let dst = dst.get_or_insert_with(|| Value::Object(serde_json::Map::new()));
        if !dst.is_object() {
            *dst = Value::Object(serde_json::Map::new());
        }
        let Value::Object(dst) = dst else {
            return;
        };
        for (key, value) in src {
            if let Some((_, kind)) = keyed.iter().find(|(k, _)| *k == key) {
                let slot = dst
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                match (slot, value) {
                    (Value::Object(d), Value::Object(s)) => {
                        for (name, element) in s {
                            if d.contains_key(&name) {
                                self.duplicate(kind, &name);
                            } else {
                                self.origin
                                    .insert((kind, name.clone()), self.path.to_path_buf());
                                d.insert(name, element);
                            }
                        }
                    }
                    (slot, value) => {
                        if slot.as_object().is_some_and(serde_json::Map::is_empty) {
                            *slot = value;
                        }
                    }
                }
            } else if listed.contains(&key.as_str()) {
                let slot = dst.entry(key).or_insert_with(|| Value::Array(Vec::new()));
                match (slot, value) {
                    (Value::Array(d), Value::Array(s)) => d.extend(s),
                    (slot, value) => {
                        if slot.as_array().is_some_and(Vec::is_empty) {
                            *slot = value;
                        }
                    }
                }
            } else {
                dst.entry(key).or_insert(value);
            }
        }
    }
}

/// Lists the configuration files of a directory for the file provider:
/// `.yml`, `.yaml` and `.toml` files, recursively, sorted by path (which is
/// Traefik's order: file names sorted, sub-directories visited in place).
///
/// Hidden entries (name starting with `.`) and editor leftovers (`~`
/// suffix, `.swp`/`.swx`) are skipped so that saving from an editor does
/// not load half-written files.
pub fn list_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    collect(dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let path = entry.path();
        // Follow symlinks (Kubernetes ConfigMap mounts are symlinks).
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            collect(&path, out)?;
        } else if meta.is_file() && Format::from_path(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_paths() {
        let p = |v: &[&str]| -> Vec<Segment> {
            v.iter().map(|s| Segment::Key(s.to_string())).collect()
        };
        assert_eq!(
            describe_path(&p(&["http", "routers", "web", "rule"])),
            (Some("router `web`".into()), Some("rule".into()))
        );
        assert_eq!(
            describe_path(&p(&["http", "services", "app"])),
            (Some("service `app`".into()), None)
        );
        let mut deep = p(&["http", "services", "app", "loadBalancer", "servers"]);
        deep.push(Segment::Index(1));
        deep.push(Segment::Key("url".into()));
        assert_eq!(
            describe_path(&deep),
            (
                Some("service `app`".into()),
                Some("loadBalancer.servers[1].url".into())
            )
        );
        assert_eq!(
            describe_path(&p(&["http", "routerz"])),
            (None, Some("http.routerz".into()))
        );
        assert_eq!(describe_path(&[]), (None, None));
    }
}
