//! Multi-document manifest files: splitting, kind dispatch and decoding
//! with located diagnostics.

use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;
use sluice_config::Diagnostic;

use crate::types::{
    ConfigMap, EndpointSlice, Endpoints, IngressRoute, IngressRouteTcp, IngressRouteUdp,
    Middleware, MiddlewareTcp, Node, ObjectMeta, Secret, ServersTransport, ServersTransportTcp,
    Service, TlsOption, TlsStore, TraefikService,
};

/// The current Traefik CRD API group.
pub const TRAEFIK_GROUP: &str = "traefik.io";
/// The legacy Traefik CRD API group (Traefik v2).
pub const LEGACY_TRAEFIK_GROUP: &str = "traefik.containo.us";

/// One decoded Kubernetes object.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    /// `IngressRoute`.
    IngressRoute(IngressRoute),
    /// `IngressRouteTCP`.
    IngressRouteTcp(IngressRouteTcp),
    /// `IngressRouteUDP`.
    IngressRouteUdp(IngressRouteUdp),
    /// `TraefikService`.
    TraefikService(TraefikService),
    /// `Middleware`.
    Middleware(Middleware),
    /// `MiddlewareTCP`.
    MiddlewareTcp(MiddlewareTcp),
    /// `TLSOption`.
    TlsOption(TlsOption),
    /// `TLSStore`.
    TlsStore(TlsStore),
    /// `ServersTransport`.
    ServersTransport(ServersTransport),
    /// `ServersTransportTCP`.
    ServersTransportTcp(ServersTransportTcp),
    /// `v1/Service`.
    Service(Service),
    /// `discovery.k8s.io/v1/EndpointSlice`.
    EndpointSlice(EndpointSlice),
    /// `v1/Endpoints`.
    Endpoints(Endpoints),
    /// `v1/Secret`.
    Secret(Secret),
    /// `v1/ConfigMap`.
    ConfigMap(ConfigMap),
    /// `v1/Node`.
    Node(Node),
}

impl Object {
    /// The Kubernetes kind, spelled as in manifests.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::IngressRoute(_) => "IngressRoute",
            Object::IngressRouteTcp(_) => "IngressRouteTCP",
            Object::IngressRouteUdp(_) => "IngressRouteUDP",
            Object::TraefikService(_) => "TraefikService",
            Object::Middleware(_) => "Middleware",
            Object::MiddlewareTcp(_) => "MiddlewareTCP",
            Object::TlsOption(_) => "TLSOption",
            Object::TlsStore(_) => "TLSStore",
            Object::ServersTransport(_) => "ServersTransport",
            Object::ServersTransportTcp(_) => "ServersTransportTCP",
            Object::Service(_) => "Service",
            Object::EndpointSlice(_) => "EndpointSlice",
            Object::Endpoints(_) => "Endpoints",
            Object::Secret(_) => "Secret",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Node(_) => "Node",
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::IngressRoute(o) => &o.metadata,
            Object::IngressRouteTcp(o) => &o.metadata,
            Object::IngressRouteUdp(o) => &o.metadata,
            Object::TraefikService(o) => &o.metadata,
            Object::Middleware(o) => &o.metadata,
            Object::MiddlewareTcp(o) => &o.metadata,
            Object::TlsOption(o) => &o.metadata,
            Object::TlsStore(o) => &o.metadata,
            Object::ServersTransport(o) => &o.metadata,
            Object::ServersTransportTcp(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Endpoints(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Node(o) => &o.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::IngressRoute(o) => &mut o.metadata,
            Object::IngressRouteTcp(o) => &mut o.metadata,
            Object::IngressRouteUdp(o) => &mut o.metadata,
            Object::TraefikService(o) => &mut o.metadata,
            Object::Middleware(o) => &mut o.metadata,
            Object::MiddlewareTcp(o) => &mut o.metadata,
            Object::TlsOption(o) => &mut o.metadata,
            Object::TlsStore(o) => &mut o.metadata,
            Object::ServersTransport(o) => &mut o.metadata,
            Object::ServersTransportTcp(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Endpoints(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::Node(o) => &mut o.metadata,
        }
    }

    /// True for Traefik's own kinds (either API group).
    pub fn is_traefik_kind(&self) -> bool {
        !self.is_core_kind()
    }

    /// True for the Kubernetes core kinds.
    pub fn is_core_kind(&self) -> bool {
        matches!(
            self,
            Object::Service(_)
                | Object::EndpointSlice(_)
                | Object::Endpoints(_)
                | Object::Secret(_)
                | Object::ConfigMap(_)
                | Object::Node(_)
        )
    }

    /// True for cluster-scoped kinds (only Node here).
    pub fn is_cluster_scoped(&self) -> bool {
        matches!(self, Object::Node(_))
    }
}

/// One object with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The decoded object.
    pub object: Object,
    /// The file it was read from.
    pub file: PathBuf,
    /// 1-based line where the document starts.
    pub line: usize,
    /// API group (`traefik.io`, `traefik.containo.us`, `""` for core,
    /// `discovery.k8s.io`).
    pub api_group: String,
}

impl Manifest {
    /// `Kind namespace/name` (or `Kind name` when cluster-scoped), the
    /// resource label used in diagnostics.
    pub fn resource(&self) -> String {
        resource_label(self.object.kind(), self.object.meta())
    }
}

pub(crate) fn resource_label(kind: &str, meta: &ObjectMeta) -> String {
    let name = if meta.name.is_empty() {
        &meta.generate_name
    } else {
        &meta.name
    };
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{kind} {ns}/{name}"),
        _ => format!("{kind} {name}"),
    }
}

/// The result of reading one file.
#[derive(Debug, Clone, Default)]
pub struct ParsedFile {
    /// Decoded objects of the supported kinds, in file order.
    pub manifests: Vec<Manifest>,
    /// Documents skipped as not ours (`apiVersion kind at file:line`), for
    /// a debug log.
    pub ignored: Vec<String>,
    /// Documents that could not be decoded.
    pub diagnostics: Vec<Diagnostic>,
}

/// One YAML document of a multi-document file.
struct Document<'a> {
    text: &'a str,
    /// 1-based line of the document's first line.
    line: usize,
}

fn is_separator(line: &str) -> bool {
    let rest = match line.strip_prefix("---") {
        Some(r) => r,
        None => return false,
    };
    rest.is_empty() || rest.starts_with([' ', '\t', '\r', '#'])
}

/// Splits on `---` lines; text after `---` on the marker line is not
/// supported (Kubernetes manifests never use it).
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (idx, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if is_separator(trimmed) {
            docs.push(Document {
                text: &text[start..offset],
                line: start_line,
            });
            start = offset + line.len();
            start_line = idx + 2;
        }
        offset += line.len();
    }
    docs.push(Document {
        text: &text[start..],
        line: start_line,
    });
    docs.retain(|d| !is_blank(d.text));
    docs
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "..."
    })
}

/// Is this text a Kubernetes manifest (its first document has top-level
/// `apiVersion` and `kind`)? Lets the file provider tell manifests from
/// Traefik dynamic-configuration files.
pub fn is_manifest_text(text: &str) -> bool {
    split_documents(text).iter().any(|doc| {
        let mut api = false;
        let mut kind = false;
        for line in doc.text.lines() {
            // Top-level keys only: no indentation.
            if line.starts_with("apiVersion:") {
                api = true;
            } else if line.starts_with("kind:") {
                kind = true;
            }
        }
        api && kind
    })
}

/// Splits a multi-document YAML file and decodes each document by
/// `apiVersion`/`kind`.
///
/// Unknown kinds are skipped and listed in `ignored`. A document that
/// fails to decode gives a diagnostic (file:line, resource, field path,
/// reason) and the other documents still load.
pub fn parse_manifests(path: &Path, text: &str) -> ParsedFile {
    let mut out = ParsedFile::default();
    for doc in split_documents(text) {
        parse_document(path, &doc, &mut out);
    }
    out
}

fn parse_document(path: &Path, doc: &Document<'_>, out: &mut ParsedFile) {
    let located = |d: Diagnostic, line: Option<usize>, column: Option<usize>| {
        let d = d.with_file(path);
        match (line, column) {
            (Some(l), Some(c)) => d.with_position(doc.line + l - 1, c),
            (Some(l), None) => Diagnostic {
                line: Some(doc.line + l - 1),
                ..d
            },
            _ => Diagnostic {
                line: Some(doc.line),
                ..d
            },
        }
    };

    let value: Value = match serde_saphyr::from_str(doc.text) {
        Ok(v) => v,
        Err(e) => {
            let (line, column) = error_position(&e);
            out.diagnostics.push(located(
                Diagnostic::error(format!("invalid YAML: {}", error_message(&e))),
                line,
                column,
            ));
            return;
        }
    };
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        out.ignored.push(format!(
            "document without apiVersion/kind at {}:{}",
            path.display(),
            doc.line
        ));
        return;
    };
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };

    let Some(decoded) = decode_kind(group, version, kind, &YamlText(doc.text)) else {
        return ignore(out, api_version, kind, path, doc);
    };

    match decoded {
        Ok(mut object) => {
            // Namespaced objects without a namespace land in `default`, as
            // `kubectl apply` would put them.
            if !object.is_cluster_scoped() && object.meta().ns().is_empty() {
                object.meta_mut().namespace = Some("default".to_string());
            }
            out.manifests.push(Manifest {
                object,
                file: path.to_path_buf(),
                line: doc.line,
                api_group: group.to_string(),
            });
        }
        Err(failure) => {
            let meta: ObjectMeta = value
                .get("metadata")
                .cloned()
                .and_then(|m| serde_json::from_value(m).ok())
                .unwrap_or_default();
            let mut d =
                Diagnostic::error(failure.message).with_resource(resource_label(kind, &meta));
            if !failure.path.is_empty() {
                d = d.with_field(failure.path);
            }
            out.diagnostics
                .push(located(d, failure.line, failure.column));
        }
    }
}

/// Where a document's typed value is decoded from: YAML text (files) or
/// JSON (the API server).
trait Source {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, Failure>;
}

struct YamlText<'a>(&'a str);

impl Source for YamlText<'_> {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        decode(self.0)
    }
}

struct Json<'a>(&'a Value);

impl Source for Json<'_> {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_path_to_error::deserialize::<_, T>(self.0).map_err(|e| Failure {
            path: e.path().to_string().trim_start_matches('.').to_string(),
            line: None,
            column: None,
            message: e.inner().to_string(),
        })
    }
}

/// Decodes a document of a kind Sluice reads; `None` for other kinds.
fn decode_kind(
    group: &str,
    version: &str,
    kind: &str,
    source: &impl Source,
) -> Option<Result<Object, Failure>> {
    let decoded = match (group, version, kind) {
        (TRAEFIK_GROUP | LEGACY_TRAEFIK_GROUP, "v1alpha1", _) => match kind {
            "IngressRoute" => source.decode().map(Object::IngressRoute),
            "IngressRouteTCP" => source.decode().map(Object::IngressRouteTcp),
            "IngressRouteUDP" => source.decode().map(Object::IngressRouteUdp),
            "TraefikService" => source.decode().map(Object::TraefikService),
            "Middleware" => source.decode().map(Object::Middleware),
            "MiddlewareTCP" => source.decode().map(Object::MiddlewareTcp),
            "TLSOption" => source.decode().map(Object::TlsOption),
            "TLSStore" => source.decode().map(Object::TlsStore),
            "ServersTransport" => source.decode().map(Object::ServersTransport),
            "ServersTransportTCP" => source.decode().map(Object::ServersTransportTcp),
            _ => return None,
        },
        ("", "v1", _) => match kind {
            "Service" => source.decode().map(Object::Service),
            "Endpoints" => source.decode().map(Object::Endpoints),
            "Secret" => source.decode().map(Object::Secret),
            "ConfigMap" => source.decode().map(Object::ConfigMap),
            "Node" => source.decode().map(Object::Node),
            _ => return None,
        },
        ("discovery.k8s.io", "v1", "EndpointSlice") => source.decode().map(Object::EndpointSlice),
        _ => return None,
    };
    Some(decoded)
}

/// Decodes one object as the Kubernetes API serves it (JSON with
/// `apiVersion`, `kind`, `metadata`). `origin` stands in for the file in
/// diagnostics (the manifest has no line). `None` for kinds Sluice does not
/// read; an error names the resource, the field and the reason.
pub fn manifest_from_json(value: &Value, origin: &Path) -> Option<Result<Manifest, Diagnostic>> {
    let api_version = value.get("apiVersion").and_then(Value::as_str)?;
    let kind = value.get("kind").and_then(Value::as_str)?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let decoded = decode_kind(group, version, kind, &Json(value))?;
    Some(match decoded {
        Ok(object) => Ok(Manifest {
            object,
            file: origin.to_path_buf(),
            line: 0,
            api_group: group.to_string(),
        }),
        Err(failure) => {
            let meta: ObjectMeta = value
                .get("metadata")
                .and_then(|m| ObjectMeta::deserialize(m).ok())
                .unwrap_or_default();
            let mut d = Diagnostic::error(failure.message)
                .with_resource(resource_label(kind, &meta))
                .with_file(origin);
            if !failure.path.is_empty() {
                d = d.with_field(failure.path);
            }
            Err(d)
        }
    })
}

fn ignore(out: &mut ParsedFile, api_version: &str, kind: &str, path: &Path, doc: &Document<'_>) {
    out.ignored.push(format!(
        "{api_version} {kind} at {}:{}",
        path.display(),
        doc.line
    ));
}

/// A typed decoding failure, positions relative to the document.
struct Failure {
    path: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, Failure> {
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let (line, column) = error_position(&e);
        let path = match line {
            Some(l) => field_path_at(text, l, column.unwrap_or(1)),
            None => String::new(),
        };
        Failure {
            path,
            line,
            column,
            message: error_message(&e),
        }
    })
}

fn error_position(e: &serde_saphyr::Error) -> (Option<usize>, Option<usize>) {
    let loc = e.location();
    let line = loc.map(|l| l.line() as usize).filter(|l| *l > 0);
    let column = loc.map(|l| l.column() as usize).filter(|c| *c > 0);
    (line, column)
}

/// The error text without serde-saphyr's own location suffix (we report
/// the location separately, relative to the whole file).
fn error_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let mut first = full.lines().next().unwrap_or_default();
    first = first.strip_prefix("error: ").unwrap_or(first);
    // "line N column M: reason"
    if let Some(rest) = first.strip_prefix("line ") {
        if let Some((pos, reason)) = rest.split_once(": ") {
            if pos.contains("column") {
                first = reason;
            }
        }
    }
    match first.rfind(" at line ") {
        Some(i) if first[i..].contains("column") => first[..i].to_string(),
        _ => first.to_string(),
    }
}

/// A YAML node tree with positions, used only to turn an error position
/// into a key path such as `spec.routes[0].services[1].port`.
enum Tree {
    Map(Vec<(String, Spanned<Tree>)>),
    Seq(Vec<Spanned<Tree>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

macro_rules! leaf {
    ($($name:ident: $t:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $t) -> Result<Tree, E> { Ok(Tree::Leaf) })*
    };
}

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    leaf!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64, visit_str: &str,
          visit_i128: i128, visit_u128: u128);

    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Leaf)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Tree::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Value>()? {
            let key = match key {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let value = map.next_value::<Spanned<Tree>>()?;
            entries.push((key, value));
        }
        Ok(Tree::Map(entries))
    }
}

/// The key path of the last node starting at or before (line, column).
fn field_path_at(text: &str, line: usize, column: usize) -> String {
    let Ok(tree) = serde_saphyr::from_str::<Tree>(text) else {
        return String::new();
    };
    let target = (line as u64, column as u64);
    let mut best = String::new();
    walk(&tree, &mut String::new(), target, &mut best);
    best
}

fn walk(tree: &Tree, prefix: &mut String, target: (u64, u64), best: &mut String) {
    let visit = |child: &Spanned<Tree>, path: String, best: &mut String| {
        let loc = child.referenced;
        if (loc.line(), loc.column()) <= target {
            *best = path.clone();
            let mut p = path;
            walk(&child.value, &mut p, target, best);
        }
    };
    match tree {
        Tree::Map(entries) => {
            for (key, child) in entries {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                visit(child, path, best);
            }
        }
        Tree::Seq(items) => {
            for (i, child) in items.iter().enumerate() {
                visit(child, format!("{prefix}[{i}]"), best);
            }
        }
        Tree::Leaf => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_locates() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\n# c\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: x\n";
        let parsed = parse_manifests(Path::new("f.yml"), text);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        assert_eq!(parsed.manifests.len(), 2);
        assert_eq!(parsed.manifests[0].line, 1);
        assert_eq!(parsed.manifests[0].object.meta().ns(), "default");
        assert_eq!(parsed.manifests[1].line, 8);
        assert_eq!(parsed.manifests[1].resource(), "Secret x/s");
    }

    #[test]
    fn bad_field_gives_path() {
        let text = "apiVersion: traefik.io/v1alpha1\nkind: IngressRoute\nmetadata:\n  name: app\n  namespace: default\nspec:\n  routes:\n  - match: Host(`a`)\n    services:\n    - name: a\n      port: 80\n    - name: b\n      port: [1]\n";
        let parsed = parse_manifests(Path::new("f.yml"), text);
        assert_eq!(parsed.manifests.len(), 0);
        let d = &parsed.diagnostics[0];
        assert_eq!(d.resource.as_deref(), Some("IngressRoute default/app"));
        assert_eq!(d.field.as_deref(), Some("spec.routes[0].services[1].port"));
        assert_eq!(d.line, Some(13));
    }

    #[test]
    fn json_objects_decode_like_yaml() {
        let value = serde_json::json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"name": "app", "namespace": "prod"},
            "spec": {"routes": [{"match": "Host(`a`)", "services": [{"name": "a", "port": 80}]}]}
        });
        let m = manifest_from_json(&value, Path::new("kubernetes"))
            .expect("a kind Sluice reads")
            .expect("decodes");
        assert_eq!(m.resource(), "IngressRoute prod/app");
        assert_eq!(m.api_group, "traefik.io");
        let bad = serde_json::json!({
            "apiVersion": "traefik.io/v1alpha1", "kind": "IngressRoute",
            "metadata": {"name": "app", "namespace": "prod"},
            "spec": {"routes": [{"match": "Host(`a`)", "services": [{"name": "a", "port": [1]}]}]}
        });
        let d = manifest_from_json(&bad, Path::new("kubernetes"))
            .expect("a kind Sluice reads")
            .expect_err("port is not a list");
        assert_eq!(d.resource.as_deref(), Some("IngressRoute prod/app"));
        assert_eq!(d.field.as_deref(), Some("spec.routes[0].services[0].port"));
        let other = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        assert!(manifest_from_json(&other, Path::new("kubernetes")).is_none());
    }

    #[test]
    fn manifest_detection() {
        assert!(is_manifest_text("apiVersion: v1\nkind: Service\n"));
        assert!(!is_manifest_text("http:\n  routers: {}\n"));
    }
}
