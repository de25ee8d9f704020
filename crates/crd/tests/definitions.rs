//! The CustomResourceDefinitions under `deploy/crds/`: generated from the
//! types, kept up to date, structural, and compatible with Traefik's own
//! definitions (names and spec field paths, from `tests/data/`).
//!
//! Regenerate the files with
//! `UPDATE_CRDS=1 cargo test -p sluice-crd --test definitions`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_crd::definition::{crd_definitions, crd_document, CRD_GROUPS, CRD_KINDS};

const REGENERATE: &str = "UPDATE_CRDS=1 cargo test -p sluice-crd --test definitions";

fn crds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
}

fn data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Tab-separated data lines, comments and blank lines skipped.
fn rows(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split('\t').collect())
        .collect()
}

#[test]
fn definitions_are_up_to_date() {
    let dir = crds_dir();
    let files = crd_definitions();
    let update = std::env::var("UPDATE_CRDS").is_ok_and(|v| v == "1");
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let wanted: BTreeSet<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    let mut problems = Vec::new();

    // Stale files (a group or a file layout that no longer exists).
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".yaml") && !wanted.contains(name.as_str()) {
                if update {
                    std::fs::remove_file(&path).unwrap();
                } else {
                    problems.push(format!("{name}: not generated any more"));
                }
            }
        }
    }

    for (name, text) in &files {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(text.as_str()) {
            continue;
        }
        if update {
            std::fs::write(&path, text).unwrap();
            eprintln!("wrote {}", path.display());
        } else if current.is_none() {
            problems.push(format!("{name}: missing"));
        } else {
            problems.push(format!("{name}: differs from the generated text"));
        }
    }
    assert!(
        problems.is_empty(),
        "deploy/crds is out of date with the sluice-crd types:\n  {}\nRegenerate with: {REGENERATE}",
        problems.join("\n  ")
    );
}

/// Generation is deterministic.
#[test]
fn definitions_are_stable() {
    assert_eq!(crd_definitions(), crd_definitions());
}

/// Every generated file reads back (as YAML) to exactly the documents it
/// was written from, each a complete CRD.
#[test]
fn definitions_parse_back() {
    let files = crd_definitions();
    assert_eq!(files.len(), CRD_GROUPS.len());
    for ((name, text), group) in files.iter().zip(CRD_GROUPS) {
        assert_eq!(name, &format!("{group}.yaml"));
        let docs: Vec<Value> = serde_saphyr::from_multiple(text)
            .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
        let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
        assert_eq!(docs.len(), CRD_KINDS.len(), "{name}");
        for (doc, kind) in docs.iter().zip(&CRD_KINDS) {
            assert_eq!(
                doc,
                &crd_document(group, kind).unwrap(),
                "{name}: {}",
                kind.kind
            );
            assert_eq!(doc["apiVersion"], "apiextensions.k8s.io/v1");
            assert_eq!(doc["kind"], "CustomResourceDefinition");
            assert_eq!(
                doc["metadata"]["name"],
                format!("{}.{group}", kind.plural).as_str()
            );
            let spec = &doc["spec"];
            assert_eq!(spec["group"], group);
            assert_eq!(spec["scope"], "Namespaced");
            assert_eq!(spec["names"]["kind"], kind.kind);
            assert_eq!(spec["names"]["plural"], kind.plural);
            assert_eq!(spec["names"]["singular"], kind.singular);
            assert_eq!(
                spec["names"]["listKind"],
                format!("{}List", kind.kind).as_str()
            );
            let versions = spec["versions"].as_array().unwrap();
            assert_eq!(versions.len(), 1);
            assert_eq!(versions[0]["name"], "v1alpha1");
            assert_eq!(versions[0]["served"], true);
            assert_eq!(versions[0]["storage"], true);
            let schema = &versions[0]["schema"]["openAPIV3Schema"];
            assert_eq!(schema["type"], "object");
            for field in ["apiVersion", "kind", "metadata", "spec"] {
                assert!(
                    schema["properties"].get(field).is_some(),
                    "{name}: {} lacks {field}",
                    kind.kind
                );
            }
            assert_eq!(
                schema["properties"]["metadata"],
                serde_json::json!({"type": "object"})
            );
            let mut errors = Vec::new();
            check_structural(schema, kind.kind, &mut errors);
            assert!(
                errors.is_empty(),
                "{name}: not structural:\n{}",
                errors.join("\n")
            );
        }
    }
}

/// Kubernetes' structural-schema rules, as far as this generator could
/// break them.
fn check_structural(node: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(o) = node.as_object() else {
        errors.push(format!("{path}: not an object"));
        return;
    };
    const ALLOWED: &[&str] = &[
        "description",
        "type",
        "format",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "properties",
        "additionalProperties",
        "items",
        "required",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
    ];
    for key in o.keys() {
        if !ALLOWED.contains(&key.as_str()) {
            errors.push(format!("{path}: unexpected keyword {key}"));
        }
    }
    let int_or_string = o.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    let preserve = o.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match o.get("type").and_then(Value::as_str) {
        None if int_or_string || preserve => {}
        None => errors.push(format!("{path}: no type")),
        Some(_) if int_or_string => errors.push(format!("{path}: int-or-string with a type")),
        Some("object") => {
            if let Some(props) = o.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    check_structural(v, &format!("{path}.{k}"), errors);
                }
            }
            if let Some(ap) = o.get("additionalProperties") {
                if o.contains_key("properties") {
                    errors.push(format!("{path}: properties and additionalProperties"));
                }
                check_structural(ap, &format!("{path}.*"), errors);
            }
        }
        Some("array") => match o.get("items") {
            Some(items) => check_structural(items, &format!("{path}[]"), errors),
            None => errors.push(format!("{path}: array without items")),
        },
        Some("string" | "integer" | "number" | "boolean") => {}
        Some(t) => errors.push(format!("{path}: bad type {t}")),
    }
}

/// A schema node's type as the data files write it.
fn type_label(node: &Value) -> String {
    if node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return "int-or-string".into();
    }
    node.get("type")
        .and_then(Value::as_str)
        .unwrap_or("any")
        .to_string()
}

/// A node that takes anything below it.
fn is_free_form(node: &Value) -> bool {
    node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
        && node.get("properties").is_none()
        && node.get("items").is_none()
        && node.get("additionalProperties").is_none()
}

/// Field paths below `node` (same syntax as tests/data), with types; and
/// the paths of free-form nodes.
fn walk(
    node: &Value,
    path: &str,
    fields: &mut BTreeMap<String, String>,
    free: &mut BTreeSet<String>,
) {
    if is_free_form(node) {
        free.insert(path.to_string());
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let p = format!("{path}.{k}");
            fields.insert(p.clone(), type_label(v));
            walk(v, &p, fields, free);
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, &format!("{path}[]"), fields, free);
    }
    if let Some(ap) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk(ap, &format!("{path}.*"), fields, free);
    }
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `spec.a[].b` -> (`spec.a[]`, `b`).
fn split_leaf(path: &str) -> (&str, &str) {
    path.rsplit_once('.').unwrap_or(("", path))
}

#[derive(Default)]
struct KindReport {
    traefik: usize,
    matched: usize,
    free_form: usize,
    missing: Vec<String>,
    type_mismatches: Vec<String>,
    extras: Vec<String>,
    typos: Vec<String>,
}

#[test]
fn definitions_match_traefik() {
    let names_text = data("traefik-crd-names.txt");
    let fields_text = data("traefik-crd-fields.txt");

    // Our documents by (group, kind).
    let mut ours = BTreeMap::new();
    for group in CRD_GROUPS {
        for kind in &CRD_KINDS {
            ours.insert(
                (group.to_string(), kind.kind.to_string()),
                crd_document(group, kind).unwrap(),
            );
        }
    }

    let mut failures = Vec::new();
    let mut info = Vec::new();

    // Groups, kinds and names.
    let mut traefik_kinds = BTreeSet::new();
    for row in rows(&names_text) {
        let [group, kind, list_kind, plural, singular, short, scope, versions] = row[..] else {
            panic!("bad names row {row:?}");
        };
        traefik_kinds.insert((group.to_string(), kind.to_string()));
        let Some(doc) = ours.get(&(group.to_string(), kind.to_string())) else {
            failures.push(format!("{group} {kind}: no definition generated"));
            continue;
        };
        let spec = &doc["spec"];
        let ours_versions = spec["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                format!(
                    "{}:{}:{}",
                    v["name"].as_str().unwrap(),
                    if v["served"] == true { "served" } else { "-" },
                    if v["storage"] == true { "storage" } else { "-" }
                )
            })
            .collect::<Vec<_>>()
            .join(",");
        let ours_short = spec["names"]["shortNames"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "-".into());
        let checks = [
            (
                "metadata.name",
                format!("{plural}.{group}"),
                &doc["metadata"]["name"],
            ),
            ("listKind", list_kind.into(), &spec["names"]["listKind"]),
            ("plural", plural.into(), &spec["names"]["plural"]),
            ("singular", singular.into(), &spec["names"]["singular"]),
            ("scope", scope.into(), &spec["scope"]),
        ];
        for (what, want, got) in checks {
            if got.as_str() != Some(want.as_str()) {
                failures.push(format!(
                    "{group} {kind}: {what} is {got}, Traefik's is {want}"
                ));
            }
        }
        if ours_short != short {
            failures.push(format!(
                "{group} {kind}: shortNames {ours_short}, Traefik's {short}"
            ));
        }
        if ours_versions != versions {
            failures.push(format!(
                "{group} {kind}: versions {ours_versions}, Traefik's {versions}"
            ));
        }
    }
    for key in ours.keys() {
        if !traefik_kinds.contains(key) {
            info.push(format!(
                "{} {}: Sluice defines it, Traefik's schema for this group does not",
                key.0, key.1
            ));
        }
    }

    // Field paths.
    let mut traefik_fields: BTreeMap<(String, String), BTreeMap<String, String>> = BTreeMap::new();
    for row in rows(&fields_text) {
        let [group, kind, path, ty] = row[..] else {
            panic!("bad fields row {row:?}");
        };
        traefik_fields
            .entry((group.to_string(), kind.to_string()))
            .or_default()
            .insert(path.to_string(), ty.to_string());
    }
    let mut reports: BTreeMap<(String, String), KindReport> = BTreeMap::new();
    for (key, theirs) in &traefik_fields {
        let report = reports.entry(key.clone()).or_default();
        let Some(doc) = ours.get(key) else {
            failures.push(format!("{} {}: no definition generated", key.0, key.1));
            continue;
        };
        let spec = &doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut mine = BTreeMap::new();
        let mut free = BTreeSet::new();
        walk(spec, "spec", &mut mine, &mut free);
        report.traefik = theirs.len();
        for (path, ty) in theirs {
            if let Some(my_ty) = mine.get(path) {
                report.matched += 1;
                if my_ty != ty && !free.contains(path) {
                    report
                        .type_mismatches
                        .push(format!("{path}: Sluice {my_ty}, Traefik {ty}"));
                }
            } else if free
                .iter()
                .any(|f| path.starts_with(&format!("{f}.")) || path.starts_with(&format!("{f}[")))
            {
                report.free_form += 1;
            } else {
                report.missing.push(path.clone());
            }
        }
        for path in mine.keys() {
            if theirs.contains_key(path) {
                continue;
            }
            report.extras.push(path.clone());
            // A near-miss of a sibling Traefik field is probably a typo.
            let (parent, leaf) = split_leaf(path);
            for other in theirs.keys() {
                let (other_parent, other_leaf) = split_leaf(other);
                if other_parent == parent
                    && other_leaf != leaf
                    && (other_leaf.eq_ignore_ascii_case(leaf) || levenshtein(other_leaf, leaf) <= 2)
                {
                    report
                        .typos
                        .push(format!("{path} (Traefik has {other_leaf})"));
                }
            }
        }
    }

    eprintln!("Traefik spec field paths per kind: matched + covered by free-form / Traefik's");
    for ((group, kind), r) in &reports {
        eprintln!(
            "  {group:<20} {kind:<20} {:>4} + {:>4} / {:>4}{}{}",
            r.matched,
            r.free_form,
            r.traefik,
            if r.missing.is_empty() {
                String::new()
            } else {
                format!("  MISSING {}", r.missing.len())
            },
            match r.extras.len() {
                0 => String::new(),
                1..=8 => format!("  (Sluice extras: {})", r.extras.join(", ")),
                n => format!("  ({n} Sluice extras, from {} on)", r.extras[0]),
            },
        );
        for m in &r.missing {
            failures.push(format!("{group} {kind}: missing field {m}"));
        }
        for m in &r.type_mismatches {
            failures.push(format!("{group} {kind}: type of {m}"));
        }
        for t in &r.typos {
            failures.push(format!("{group} {kind}: probable typo {t}"));
        }
    }
    for i in &info {
        eprintln!("  info: {i}");
    }
    assert!(
        failures.is_empty(),
        "generated CRDs differ from Traefik's:\n  {}",
        failures.join("\n  ")
    );
}
