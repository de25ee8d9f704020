//! Translation behaviour beyond the conformance corpus: both API groups,
//! located diagnostics for broken resources.

use std::path::Path;

use serde_json::json;
use sluice_crd::{parse_manifests, translate, CrdOptions};

const SERVICES: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: whoami
  namespace: default
spec:
  ports:
    - name: web
      port: 80
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: whoami-abc
  namespace: default
  labels:
    kubernetes.io/service-name: whoami
ports:
  - name: web
    port: 8080
endpoints:
  - addresses: [10.0.0.1]
  - addresses: [10.0.0.2]
    conditions: {serving: true, terminating: true}
  - addresses: [10.0.0.3]
    conditions: {serving: false}
";

fn route(group: &str, name: &str, rule: &str, port: &str) -> String {
    format!(
        "apiVersion: {group}/v1alpha1
kind: IngressRoute
metadata:
  name: {name}
  namespace: default
spec:
  entryPoints: [web]
  routes:
    - match: {rule}
      kind: Rule
      services:
        - name: whoami
          port: {port}
"
    )
}

#[test]
fn both_api_groups_are_accepted() {
    let text = format!(
        "{SERVICES}---\n{}---\n{}",
        route("traefik.io", "new", "Host(`new`)", "80"),
        route("traefik.containo.us", "old", "Host(`old`)", "web")
    );
    let parsed = parse_manifests(Path::new("m.yaml"), &text);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let out = translate(&parsed.manifests, &CrdOptions::default());
    let http = out.config.http.unwrap();
    assert_eq!(http.routers.len(), 2);
    let key = sluice_crd::names::router_key("default", "old", "Host(`old`)");
    let svc = serde_json::to_value(&http.services[&key]).unwrap();
    assert_eq!(
        svc,
        json!({"loadBalancer": {
            "servers": [{"url": "http://10.0.0.1:8080"}, {"url": "http://10.0.0.2:8080", "fenced": true}],
            "strategy": "wrr", "passHostHeader": true,
            "responseForwarding": {"flushInterval": "100ms"}}})
    );
}

#[test]
fn current_group_shadows_legacy_one() {
    let text = format!(
        "{SERVICES}---\n{}---\n{}",
        route("traefik.containo.us", "app", "Host(`old`)", "80"),
        route("traefik.io", "app", "Host(`new`)", "80")
    );
    let parsed = parse_manifests(Path::new("m.yaml"), &text);
    let out = translate(&parsed.manifests, &CrdOptions::default());
    let http = out.config.http.unwrap();
    assert_eq!(http.routers.len(), 1);
    assert_eq!(http.routers.values().next().unwrap().rule, "Host(`new`)");
    assert_eq!(out.diagnostics.len(), 1);
    assert!(
        out.diagnostics[0].message.contains("traefik.io"),
        "{}",
        out.diagnostics[0]
    );
}

#[test]
fn broken_route_is_skipped_with_a_located_diagnostic() {
    let text = format!(
        "{SERVICES}---\n{}---\n{}",
        route("traefik.io", "good", "Host(`good`)", "80"),
        route("traefik.io", "app", "Host(`bad`)", "81")
    );
    let parsed = parse_manifests(Path::new("apps.yaml"), &text);
    let out = translate(&parsed.manifests, &CrdOptions::default());
    let http = out.config.http.unwrap();
    assert_eq!(http.routers.len(), 1);
    assert_eq!(out.diagnostics.len(), 1);
    assert_eq!(
        out.diagnostics[0].to_string(),
        "apps.yaml:42: error: IngressRoute default/app: field `spec.routes[0].services[0].port`: \
         service port not found: 81; route skipped"
    );
}

#[test]
fn undecodable_document_does_not_stop_the_others() {
    let bad = route("traefik.io", "app", "Host(`bad`)", "[1, 2]");
    let text = format!(
        "{SERVICES}---\n{bad}---\n{}",
        route("traefik.io", "good", "Host(`good`)", "80")
    );
    let parsed = parse_manifests(Path::new("apps.yaml"), &text);
    assert_eq!(parsed.manifests.len(), 3);
    assert_eq!(parsed.diagnostics.len(), 1);
    let d = &parsed.diagnostics[0];
    assert_eq!(d.resource.as_deref(), Some("IngressRoute default/app"));
    assert_eq!(d.field.as_deref(), Some("spec.routes[0].services[0].port"));
    // The document starts on line 28 (after 26 lines of services and `---`); `port` is its 13th line.
    assert_eq!(d.line, Some(40));
}

#[test]
fn namespaces_option_hides_other_namespaces() {
    let text = format!(
        "{SERVICES}---\n{}",
        route("traefik.io", "good", "Host(`good`)", "80")
    );
    let parsed = parse_manifests(Path::new("m.yaml"), &text);
    let opts = CrdOptions {
        namespaces: vec!["other".into()],
        ..CrdOptions::default()
    };
    let out = translate(&parsed.manifests, &opts);
    assert!(out.config.http.unwrap().routers.is_empty());
    assert!(out.diagnostics.is_empty());
}
