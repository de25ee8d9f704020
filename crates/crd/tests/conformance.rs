//! Traefik's CRD provider test tables, replayed against `translate`.
//!
//! Every `case.json` of the conformance corpus lists fixture files, the
//! provider flags and the configuration Traefik produced. Cases touching
//! only HTTP routers and services must match exactly; the others are
//! reported without failing the test.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_crd::manifest::{Object, TRAEFIK_GROUP};
use sluice_crd::{parse_manifests, translate, CrdOptions, Manifest};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/crd")
}

/// Sections whose members are maps Traefik always allocates (empty maps
/// are placeholders, not content).
const MAP_FIELDS: &[(&str, &[&str])] = &[
    (
        "http",
        &[
            "routers",
            "services",
            "middlewares",
            "serversTransports",
            "models",
        ],
    ),
    (
        "tcp",
        &["routers", "services", "middlewares", "serversTransports"],
    ),
    ("udp", &["routers", "services"]),
    ("tls", &["options", "stores"]),
];

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(|o| o.is_empty())
}

/// Removes placeholder empty maps, then sections left empty.
fn normalise(mut v: Value) -> Value {
    if let Some(top) = v.as_object_mut() {
        for (section, fields) in MAP_FIELDS {
            if let Some(Value::Object(s)) = top.get_mut(*section) {
                for f in *fields {
                    if s.get(*f).is_some_and(is_empty_object) {
                        s.remove(*f);
                    }
                }
            }
        }
        top.retain(|_, v| !is_empty_object(v) && !v.is_null());
    }
    v
}

/// Only `http.routers` / `http.services` content.
fn http_only(expected: &Value) -> bool {
    let Some(top) = expected.as_object() else {
        return true;
    };
    top.iter().all(|(k, v)| {
        k == "http"
            && v.as_object()
                .is_some_and(|h| h.keys().all(|k| k == "routers" || k == "services"))
    })
}

fn options(flags: &Value) -> CrdOptions {
    let b = |k: &str| flags.get(k).and_then(Value::as_bool).unwrap_or(false);
    let list = |k: &str| {
        flags.get(k).and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect::<Vec<_>>()
        })
    };
    CrdOptions {
        namespaces: list("namespaces").unwrap_or_default(),
        ingress_class: flags
            .get("ingressClass")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        allow_cross_namespace: b("allowCrossNamespace"),
        allow_external_name_services: b("allowExternalNameServices"),
        allow_empty_services: b("allowEmptyServices"),
        native_lb_by_default: b("nativeLBByDefault"),
        cross_provider_namespaces: list("crossProviderNamespaces"),
        disable_cluster_scope_resources: b("disableClusterScopeResources"),
        ..CrdOptions::default()
    }
}

/// Kinds the Go harness hands to its fake clients.
fn harness_keeps(m: &Manifest, crd_kinds: &Option<Vec<String>>) -> bool {
    if matches!(m.object, Object::Endpoints(_)) {
        return false;
    }
    match crd_kinds {
        Some(kinds) if m.api_group == TRAEFIK_GROUP => kinds.iter().any(|k| k == m.object.kind()),
        _ => true,
    }
}

/// First difference between two JSON values, as a path and both sides.
fn first_diff(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    None => return Some(format!("{path}.{k}: missing in expected (got {va})")),
                    Some(vb) => {
                        if let Some(d) = first_diff(&format!("{path}.{k}"), va, vb) {
                            return Some(d);
                        }
                    }
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{path}.{k}: missing in output (expected {})", y[k]))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_diff(&format!("{path}[{i}]"), va, vb)),
        _ if a == b => None,
        _ => Some(format!("{path}: got {a}, expected {b}")),
    }
}

#[test]
fn crd_conformance() {
    let dir = corpus_dir();
    if !dir.is_dir() {
        println!("conformance corpus not found at {}, skipped", dir.display());
        return;
    }
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").is_file())
        .collect();
    cases.sort();

    let (mut http_total, mut http_pass, mut other_total, mut other_pass) = (0, 0, 0, 0);
    let mut http_failures = Vec::new();
    let mut other_failures = Vec::new();
    for case_dir in &cases {
        let name = case_dir.file_name().unwrap().to_string_lossy().to_string();
        let case: Value =
            serde_json::from_str(&std::fs::read_to_string(case_dir.join("case.json")).unwrap())
                .unwrap();
        let flags = &case["flags"];
        let crd_kinds = flags.get("crdKinds").and_then(Value::as_array).map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect::<Vec<_>>()
        });
        let mut manifests = Vec::new();
        for f in case["fixtures"].as_array().unwrap() {
            let rel = f.as_str().unwrap();
            let path = dir.join("fixtures").join(rel);
            let text = std::fs::read_to_string(&path).unwrap();
            let parsed = parse_manifests(Path::new(rel), &text);
            assert!(
                parsed.diagnostics.is_empty(),
                "{name}: fixture {rel} does not parse: {:?}",
                parsed.diagnostics
            );
            manifests.extend(
                parsed
                    .manifests
                    .into_iter()
                    .filter(|m| harness_keeps(m, &crd_kinds)),
            );
        }
        let out = translate(&manifests, &options(flags));
        let got = normalise(serde_json::to_value(&out.config).unwrap());
        let expected = normalise(case["expected"].clone());
        let diff = first_diff("", &got, &expected);
        if http_only(&expected) {
            http_total += 1;
            match diff {
                None => http_pass += 1,
                Some(d) => http_failures.push(format!("{name}: {d}")),
            }
        } else {
            other_total += 1;
            match diff {
                None => other_pass += 1,
                Some(d) => other_failures.push(format!("{name}: {}", truncate(&d))),
            }
        }
    }
    for f in &other_failures {
        println!("other case failing: {f}");
    }
    for f in &http_failures {
        println!("HTTP case failing: {f}");
    }
    println!(
        "crd conformance: {http_pass}/{http_total} HTTP cases pass, {other_pass}/{other_total} other cases pass"
    );
    assert!(
        http_failures.is_empty(),
        "{} HTTP case(s) fail",
        http_failures.len()
    );
}

fn truncate(s: &str) -> String {
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}
