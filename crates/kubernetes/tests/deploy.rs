//! The manifests under `deploy/` agree with the code: the ClusterRole lets the provider list
//! and watch every kind it watches (and no more verbs than that), and the static configuration
//! shipped in the ConfigMap loads and enables the provider with health checks.
//! (`scripts/validate-deploy.sh` runs them through kubectl.)

use std::path::{Path, PathBuf};

use serde_json::Value;
use sluice_config::static_config::StaticConfig;
use sluice_kubernetes::kinds;

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(name)
}

fn documents(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy(name)).expect("read manifest");
    serde_saphyr::from_multiple(&text).expect("valid YAML")
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn the_cluster_role_reads_every_watched_kind_and_writes_nothing() {
    let docs = documents("rbac.yaml");
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let rules = role["rules"].as_array().expect("rules");
    let mut all = kinds::watched();
    all.push(kinds::NODE);
    for kind in all {
        let covered = rules.iter().any(|r| {
            strings(&r["apiGroups"]).contains(&kind.group)
                && strings(&r["resources"]).contains(&kind.plural)
                && ["get", "list", "watch"]
                    .iter()
                    .all(|v| strings(&r["verbs"]).contains(v))
        });
        assert!(covered, "{} {} not readable", kind.group, kind.plural);
    }
    for rule in rules {
        assert_eq!(strings(&rule["verbs"]), ["get", "list", "watch"], "{rule}");
    }
    // Writes only in Sluice's namespace: Secrets (ACME) and the Lease.
    let namespaced = docs.iter().find(|d| d["kind"] == "Role").expect("a Role");
    assert_eq!(namespaced["metadata"]["namespace"], "sluice");
    let writes: Vec<(Vec<&str>, Vec<&str>)> = namespaced["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| (strings(&r["resources"]), strings(&r["verbs"])))
        .collect();
    assert_eq!(
        writes,
        [
            (vec!["secrets"], vec!["create", "update"]),
            (vec!["leases"], vec!["create", "get", "update"])
        ]
    );
}

#[test]
fn the_shipped_static_configuration_loads() {
    let docs = documents("configmap.yaml");
    let text = docs[0]["data"]["sluice.yaml"]
        .as_str()
        .expect("sluice.yaml");
    let dir = std::env::temp_dir().join(format!("sluice-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("sluice.yaml");
    std::fs::write(&path, text).expect("write");
    let config = StaticConfig::load(Some(&path), &[]).expect("loads");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(config.providers.kubernetes_crd.is_some());
    assert_eq!(config.ping.as_ref().unwrap()["entryPoint"], "traefik");
    assert!(config.entry_points.contains_key("traefik"));
    // The probes and the container ports use the entry points of that configuration.
    for workload in ["deployment.yaml", "daemonset/daemonset.yaml"] {
        let docs = documents(workload);
        let container = &docs[0]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
        assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/ping");
        let ports = container["ports"].as_array().expect("ports");
        for port in ports {
            let name = port["name"].as_str().expect("port name");
            let address = &config.entry_points[name].address;
            assert_eq!(
                address.trim_start_matches(':'),
                port["containerPort"].to_string(),
                "{workload}: {name}"
            );
        }
    }
}
