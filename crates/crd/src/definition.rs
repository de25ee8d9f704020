//! CustomResourceDefinition manifests for Traefik's CRD kinds, generated
//! from the serde types in [`crate::types`].
//!
//! Each kind's `openAPIV3Schema` is derived with `schemars` from the Rust
//! type and converted into a Kubernetes *structural* schema: every `$ref`
//! inlined, every node typed, `null` alternatives of `Option` dropped,
//! integer-or-string unions written as `x-kubernetes-int-or-string`, and
//! free-form values (`serde_json::Value`, maps of anything) written as
//! `x-kubernetes-preserve-unknown-fields`. Defaults are left out, so the
//! API server stores objects as written.
//!
//! The YAML is emitted by a small writer of its own (block style, keys in
//! a fixed order, strings quoted as JSON when not plain), so the output is
//! the same byte for byte on every run. `deploy/crds/` holds the result;
//! `tests/definitions.rs` keeps it up to date.

use std::fmt;

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::manifest::{LEGACY_TRAEFIK_GROUP, TRAEFIK_GROUP};
use crate::types;

/// The API version of every Traefik CRD kind.
pub const CRD_VERSION: &str = "v1alpha1";

/// The API groups definitions are generated for: `traefik.io` (Traefik v3)
/// and the legacy `traefik.containo.us` (Traefik v2), with the same schema.
pub const CRD_GROUPS: [&str; 2] = [TRAEFIK_GROUP, LEGACY_TRAEFIK_GROUP];

/// Names of one CRD kind, as Traefik registers them.
#[derive(Debug, Clone, Copy)]
pub struct CrdKind {
    /// `kind`, e.g. `IngressRouteTCP`.
    pub kind: &'static str,
    /// `plural`, e.g. `ingressroutetcps` (also the first part of the CRD
    /// name `<plural>.<group>`).
    pub plural: &'static str,
    /// `singular`, e.g. `ingressroutetcp`.
    pub singular: &'static str,
    /// `listKind`, e.g. `IngressRouteTCPList`.
    pub list_kind: &'static str,
    /// `shortNames` (Traefik registers none).
    pub short_names: &'static [&'static str],
    schema: fn(&SchemaSettings) -> Value,
}

fn schema_of<T: JsonSchema>(settings: &SchemaSettings) -> Value {
    let generator = settings.clone().into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

macro_rules! kind {
    ($kind:literal, $plural:literal, $singular:literal, $ty:ty) => {
        CrdKind {
            kind: $kind,
            plural: $plural,
            singular: $singular,
            list_kind: concat!($kind, "List"),
            short_names: &[],
            schema: schema_of::<$ty>,
        }
    };
}

/// Every Traefik CRD kind, in Traefik's order (alphabetical by plural).
pub const CRD_KINDS: [CrdKind; 10] = [
    kind!(
        "IngressRoute",
        "ingressroutes",
        "ingressroute",
        types::IngressRoute
    ),
    kind!(
        "IngressRouteTCP",
        "ingressroutetcps",
        "ingressroutetcp",
        types::IngressRouteTcp
    ),
    kind!(
        "IngressRouteUDP",
        "ingressrouteudps",
        "ingressrouteudp",
        types::IngressRouteUdp
    ),
    kind!("Middleware", "middlewares", "middleware", types::Middleware),
    kind!(
        "MiddlewareTCP",
        "middlewaretcps",
        "middlewaretcp",
        types::MiddlewareTcp
    ),
    kind!(
        "ServersTransport",
        "serverstransports",
        "serverstransport",
        types::ServersTransport
    ),
    kind!(
        "ServersTransportTCP",
        "serverstransporttcps",
        "serverstransporttcp",
        types::ServersTransportTcp
    ),
    kind!("TLSOption", "tlsoptions", "tlsoption", types::TlsOption),
    kind!("TLSStore", "tlsstores", "tlsstore", types::TlsStore),
    kind!(
        "TraefikService",
        "traefikservices",
        "traefikservice",
        types::TraefikService
    ),
];

/// A construct of the derived JSON Schema that has no structural
/// equivalent (a bug in a type's schema, caught by the tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// The kind whose schema failed.
    pub kind: String,
    /// Where in the schema, e.g. `.spec.routes[].port`.
    pub path: String,
    /// What was found.
    pub message: String,
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} schema at {}: {}", self.kind, self.path, self.message)
    }
}

impl std::error::Error for SchemaError {}

/// The `openAPIV3Schema` of one kind: a structural schema derived from its
/// Rust type.
pub fn openapi_schema(kind: &CrdKind) -> Result<Value, SchemaError> {
    let mut settings = SchemaSettings::draft2020_12();
    settings.inline_subschemas = true;
    settings.contract = schemars::generate::Contract::Deserialize;
    let raw = (kind.schema)(&settings);
    let defs = raw
        .get("$defs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let conv = Converter {
        kind: kind.kind,
        defs: &defs,
    };
    let root = conv.convert(&raw, "", 0)?;
    let Value::Object(mut root) = root else {
        return Err(conv.error("", "the root schema is not an object schema"));
    };
    // The API server owns `apiVersion`, `kind` and `metadata`: a CRD may
    // say no more about metadata than that it is an object.
    let mut props = match root.remove("properties") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    props.insert(
        "apiVersion".into(),
        json!({
            "description": "Versioned schema of this object (group/version).",
            "type": "string",
        }),
    );
    props.insert(
        "kind".into(),
        json!({
            "description": "Kind of this object, in CamelCase.",
            "type": "string",
        }),
    );
    props.insert("metadata".into(), json!({ "type": "object" }));
    root.insert("properties".into(), Value::Object(props));
    root.insert("type".into(), json!("object"));
    Ok(sort_keys(Value::Object(root)))
}

/// One CustomResourceDefinition object (`apiextensions.k8s.io/v1`).
pub fn crd_document(group: &str, kind: &CrdKind) -> Result<Value, SchemaError> {
    let schema = openapi_schema(kind)?;
    let mut names = Map::new();
    names.insert("kind".into(), json!(kind.kind));
    names.insert("listKind".into(), json!(kind.list_kind));
    names.insert("plural".into(), json!(kind.plural));
    if !kind.short_names.is_empty() {
        names.insert("shortNames".into(), json!(kind.short_names));
    }
    names.insert("singular".into(), json!(kind.singular));
    Ok(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": format!("{}.{}", kind.plural, group),
        },
        "spec": {
            "group": group,
            "names": Value::Object(names),
            "scope": "Namespaced",
            "versions": [{
                "name": CRD_VERSION,
                "schema": { "openAPIV3Schema": schema },
                "served": true,
                "storage": true,
            }],
        },
    }))
}

/// The definition files for `deploy/crds/`: one multi-document YAML file
/// per API group (`traefik.io.yaml`, `traefik.containo.us.yaml`), each
/// with the ten kinds. Returns `(file name, YAML text)` pairs.
pub fn try_crd_definitions() -> Result<Vec<(String, String)>, SchemaError> {
    let mut files = Vec::new();
    for group in CRD_GROUPS {
        let mut text = String::new();
        text.push_str(&format!(
            "# Traefik CustomResourceDefinitions of the {group} API group, for Sluice.\n\
             # Generated from the types of the sluice-crd crate: do not edit.\n\
             # Regenerate: UPDATE_CRDS=1 cargo test -p sluice-crd --test definitions\n"
        ));
        for kind in &CRD_KINDS {
            let doc = crd_document(group, kind)?;
            text.push_str("---\n");
            write_yaml(&doc, 0, &mut text);
        }
        files.push((format!("{group}.yaml"), text));
    }
    Ok(files)
}

/// [`try_crd_definitions`] for callers that treat a schema error as the
/// bug it is (the schemas come from Sluice's own types, and
/// `tests/definitions.rs` converts all of them).
pub fn crd_definitions() -> Vec<(String, String)> {
    match try_crd_definitions() {
        Ok(files) => files,
        Err(e) => panic!("CRD schema derived from sluice-crd's types is not structural: {e}"),
    }
}

/// Deepest nesting followed through `$ref`s before giving up (the CRD
/// types are not recursive; this only guards against a future mistake).
const MAX_DEPTH: usize = 64;

struct Converter<'a> {
    kind: &'a str,
    defs: &'a Map<String, Value>,
}

impl Converter<'_> {
    fn error(&self, path: &str, message: impl Into<String>) -> SchemaError {
        SchemaError {
            kind: self.kind.to_string(),
            path: if path.is_empty() {
                ".".into()
            } else {
                path.into()
            },
            message: message.into(),
        }
    }

    /// JSON Schema node -> structural schema node.
    fn convert(&self, node: &Value, path: &str, depth: usize) -> Result<Value, SchemaError> {
        if depth > MAX_DEPTH {
            return Err(self.error(path, "schema nested too deeply (recursive type?)"));
        }
        let obj = match node {
            Value::Bool(true) => return Ok(free_form(None)),
            Value::Object(o) => o,
            _ => return Err(self.error(path, format!("unsupported schema {node}"))),
        };
        let description = obj
            .get("description")
            .and_then(Value::as_str)
            .map(clean_description);

        // A reference (or a one-element allOf, schemars' way to attach a
        // description to one): the target, with the local description.
        let target = match (obj.get("$ref"), obj.get("allOf")) {
            (Some(Value::String(r)), _) => Some(self.resolve(r, path)?),
            (None, Some(Value::Array(all))) if all.len() == 1 => Some(&all[0]),
            (None, Some(_)) => return Err(self.error(path, "allOf with several schemas")),
            _ => None,
        };
        if let Some(target) = target {
            let converted = self.convert(target, path, depth + 1)?;
            return Ok(with_description(converted, description));
        }

        // Unions: `Option`'s null alternative goes (absent and null are
        // the same to every type here); integer|string is IntOrString.
        if let Some(Value::Array(alts)) = obj.get("anyOf").or_else(|| obj.get("oneOf")) {
            let mut kept = Vec::new();
            for alt in alts {
                if alt.get("type").and_then(Value::as_str) == Some("null") {
                    continue;
                }
                kept.push(self.convert(alt, path, depth + 1)?);
            }
            let converted = match kept.as_slice() {
                [one] => one.clone(),
                [a, b] if is_int_or_string_pair(a, b) => {
                    json!({ "x-kubernetes-int-or-string": true })
                }
                _ => return Err(self.error(path, "union other than T|null or integer|string")),
            };
            return Ok(with_description(converted, description));
        }

        let ty = match obj.get("type") {
            None => None,
            Some(Value::String(t)) => Some(t.as_str()),
            Some(Value::Array(ts)) => {
                let non_null: Vec<&str> = ts
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|t| *t != "null")
                    .collect();
                match non_null.as_slice() {
                    [one] => Some(*one),
                    _ => return Err(self.error(path, format!("several types {non_null:?}"))),
                }
            }
            Some(other) => return Err(self.error(path, format!("bad type {other}"))),
        };

        let mut out = Map::new();
        if let Some(d) = &description {
            out.insert("description".into(), json!(d));
        }
        match ty {
            // No type at all: anything (serde_json::Value).
            None => return Ok(free_form(description)),
            Some("object") => {
                out.insert("type".into(), json!("object"));
                let mut props = Map::new();
                if let Some(Value::Object(p)) = obj.get("properties") {
                    let mut names: Vec<&String> = p.keys().collect();
                    names.sort();
                    for name in names {
                        let sub = self.convert(&p[name], &format!("{path}.{name}"), depth + 1)?;
                        props.insert(name.clone(), sub);
                    }
                }
                let has_props = !props.is_empty();
                if has_props {
                    out.insert("properties".into(), Value::Object(props));
                }
                match obj.get("additionalProperties") {
                    // A map of anything, or an object with no declared
                    // fields: keep whatever is written.
                    Some(Value::Bool(true)) => {
                        out.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
                    }
                    Some(Value::Object(ap)) if ap.is_empty() => {
                        out.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
                    }
                    Some(ap @ Value::Object(_)) => {
                        if has_props {
                            return Err(
                                self.error(path, "both properties and additionalProperties")
                            );
                        }
                        let sub = self.convert(ap, &format!("{path}.*"), depth + 1)?;
                        out.insert("additionalProperties".into(), sub);
                    }
                    Some(Value::Bool(false)) | None => {
                        if !has_props && obj.get("properties").is_none() {
                            out.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
                        }
                    }
                    Some(other) => {
                        return Err(self.error(path, format!("bad additionalProperties {other}")))
                    }
                }
                if let Some(Value::Array(req)) = obj.get("required") {
                    let mut req: Vec<&str> = req.iter().filter_map(Value::as_str).collect();
                    req.sort_unstable();
                    if !req.is_empty() {
                        out.insert("required".into(), json!(req));
                    }
                }
            }
            Some("array") => {
                out.insert("type".into(), json!("array"));
                let items = match obj.get("items") {
                    Some(items) => self.convert(items, &format!("{path}[]"), depth + 1)?,
                    None => free_form(None),
                };
                out.insert("items".into(), items);
            }
            Some(t @ ("string" | "integer" | "number" | "boolean")) => {
                out.insert("type".into(), json!(t));
                if let Some(Value::String(f)) = obj.get("format") {
                    if matches!(f.as_str(), "int32" | "int64" | "float" | "double") {
                        out.insert("format".into(), json!(f));
                    }
                }
                for key in [
                    "enum",
                    "minimum",
                    "maximum",
                    "minLength",
                    "maxLength",
                    "pattern",
                ] {
                    if let Some(v) = obj.get(key) {
                        out.insert(key.into(), v.clone());
                    }
                }
            }
            Some(other) => return Err(self.error(path, format!("unsupported type {other}"))),
        }
        Ok(Value::Object(out))
    }

    fn resolve(&self, reference: &str, path: &str) -> Result<&Value, SchemaError> {
        reference
            .strip_prefix("#/$defs/")
            .and_then(|name| self.defs.get(name))
            .ok_or_else(|| self.error(path, format!("unresolved $ref {reference}")))
    }
}

/// A node accepting any value, kept as written.
fn free_form(description: Option<String>) -> Value {
    let mut out = Map::new();
    if let Some(d) = description {
        out.insert("description".into(), json!(d));
    }
    out.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
    Value::Object(out)
}

fn with_description(mut node: Value, description: Option<String>) -> Value {
    if let (Some(d), Value::Object(o)) = (description, &mut node) {
        o.insert("description".into(), json!(d));
    }
    node
}

fn is_int_or_string_pair(a: &Value, b: &Value) -> bool {
    let ty = |v: &Value| v.get("type").and_then(Value::as_str).map(str::to_owned);
    let mut types = [ty(a), ty(b)];
    types.sort();
    types == [Some("integer".to_owned()), Some("string".to_owned())]
}

/// Doc comments as one line of text.
fn clean_description(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The same value with every object's keys in byte order.
fn sort_keys(v: Value) -> Value {
    match v {
        Value::Object(o) => {
            let mut entries: Vec<(String, Value)> = o.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sort_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(sort_keys).collect()),
        other => other,
    }
}

/// Block-style YAML for a JSON value (`indent` spaces before each line of
/// a mapping or sequence). Strings that could read as anything but
/// themselves are written as JSON strings, which YAML reads the same.
pub(crate) fn write_yaml(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) if !o.is_empty() => {
            for (k, val) in o {
                out.push_str(&pad);
                out.push_str(&yaml_string(k));
                out.push(':');
                write_nested(val, indent, out);
            }
        }
        Value::Array(a) if !a.is_empty() => {
            for item in a {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Value::Object(o) if !o.is_empty() => {
                        // First key on the dash line, the rest aligned.
                        let mut first = String::new();
                        write_yaml(item, indent + 2, &mut first);
                        out.push(' ');
                        out.push_str(first.trim_start_matches(' '));
                    }
                    _ => write_nested(item, indent, out),
                }
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

/// The value after `key:` or `-`: inline when scalar or empty, else on
/// the following lines, indented.
fn write_nested(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(o) if !o.is_empty() => {
            out.push('\n');
            write_yaml(v, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_yaml(v, indent + 2, out);
        }
        scalar => {
            out.push(' ');
            out.push_str(&yaml_scalar(scalar));
            out.push('\n');
        }
    }
}

fn yaml_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => yaml_string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// `s` plain when it is unambiguously a string in YAML 1.1 and 1.2, else
/// JSON-quoted.
fn yaml_string(s: &str) -> String {
    const RESERVED: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && !s.ends_with(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '/' | '-' | '_'))
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_strings() {
        assert_eq!(yaml_string("IngressRoute"), "IngressRoute");
        assert_eq!(
            yaml_string("apiextensions.k8s.io/v1"),
            "apiextensions.k8s.io/v1"
        );
        assert_eq!(
            yaml_string("x-kubernetes-int-or-string"),
            "x-kubernetes-int-or-string"
        );
        assert_eq!(yaml_string("no"), "\"no\"");
        assert_eq!(yaml_string("On"), "\"On\"");
        assert_eq!(yaml_string(""), "\"\"");
        assert_eq!(yaml_string("a: b"), "\"a: b\"");
        assert_eq!(yaml_string("`x` #y"), "\"`x` #y\"");
        assert_eq!(yaml_string("1.0"), "\"1.0\"");
    }

    #[test]
    fn yaml_layout() {
        let v = json!({
            "a": {"b": [1, {"c": "d", "e": []}, ["x"]], "f": {}},
            "g": "h i",
        });
        let mut out = String::new();
        write_yaml(&v, 0, &mut out);
        assert_eq!(
            out,
            "a:\n  b:\n    - 1\n    - c: d\n      e: []\n    -\n      - x\n  f: {}\ng: h i\n"
        );
    }

    #[test]
    fn int_or_string_and_options() {
        let kind = &CRD_KINDS[0];
        let s = openapi_schema(kind).unwrap();
        let svc = &s["properties"]["spec"]["properties"]["routes"]["items"]["properties"]
            ["services"]["items"]["properties"];
        assert_eq!(svc["port"]["x-kubernetes-int-or-string"], json!(true));
        assert!(svc["port"].get("type").is_none());
        assert_eq!(svc["nativeLB"]["type"], json!("boolean"));
        assert!(svc["name"].get("default").is_none());
    }
}
