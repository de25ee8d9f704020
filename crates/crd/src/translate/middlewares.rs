//! Middleware and MiddlewareTCP objects (best effort until middlewares are
//! typed): most specs map one-to-one onto the dynamic configuration; the
//! references inside `chain` and `errors` are resolved like Traefik does.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sluice_config::Diagnostic;

use crate::names::{make_id, normalize};
use crate::options::CrdOptions;
use crate::store::Store;
use crate::types::LoadBalancerSpec;

use super::located_diag;
use super::refs::resolve_reference;
use super::services::{ServiceBuilder, Services};

/// Middleware objects -> `http.middlewares` (error-page services go to
/// `services`).
pub fn build_middlewares(
    store: &Store<'_>,
    options: &CrdOptions,
    services: &mut Services,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for item in &store.middlewares {
        let m = item.obj;
        let ns = m.metadata.ns();
        let id = normalize(&make_id(ns, &m.metadata.name));
        let resource = item.manifest.resource();
        let Value::Object(spec) = &m.spec else {
            out.insert(id, json!({}));
            continue;
        };
        let mut spec = spec.clone();
        let mut failed = None;

        if let Some(Value::Object(chain)) = spec.get_mut("chain") {
            let refs: Vec<Value> = chain
                .get("middlewares")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let mut names = Vec::new();
            for (i, r) in refs.iter().enumerate() {
                let name = r.get("name").and_then(Value::as_str).unwrap_or_default();
                let rns = r
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                match resolve_reference(options, ns, rns, name) {
                    Ok(n) => names.push(n),
                    Err(e) => {
                        failed = Some((
                            format!("spec.chain.middlewares[{i}]"),
                            format!("invalid reference to middleware {name}: {e}"),
                        ));
                        break;
                    }
                }
            }
            chain.insert("middlewares".into(), json!(names));
        }

        if failed.is_none() {
            if let Some(Value::Object(plugins)) = spec.get_mut("plugin") {
                for (plugin, conf) in plugins.iter_mut() {
                    if let Err(e) = load_secret_values(store, ns, conf) {
                        failed = Some((format!("spec.plugin.{plugin}"), e));
                        break;
                    }
                }
            }
        }

        if let Some(Value::Object(rl)) = spec.get_mut("rateLimit") {
            // Durations are written back in Go's canonical form.
            if let Some(p) = rl.get("period").cloned() {
                let text = match &p {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s.clone(),
                    _ => String::new(),
                };
                if let Ok(d) = sluice_config::GoDuration::parse_traefik(&text) {
                    rl.insert("period".into(), json!(d.to_string()));
                }
            }
        }

        if failed.is_none() {
            if let Some(Value::Object(errors)) = spec.get_mut("errors") {
                if let Some(svc) = errors.remove("service") {
                    match serde_json::from_value::<LoadBalancerSpec>(svc) {
                        Ok(lb) => {
                            let mut builder = ServiceBuilder {
                                store,
                                options,
                                native_lb_by_default: false,
                                disable_cluster_scope: false,
                                warnings: diags,
                            };
                            match builder.name_and_service(ns, &lb, "spec.errors.service") {
                                Ok((_, Some(service))) => {
                                    let service_name = format!("{id}-errorpage-service");
                                    services.insert(service_name.clone(), service);
                                    errors.insert("service".into(), json!(service_name));
                                }
                                Ok((name, None)) => {
                                    errors.insert("service".into(), json!(name));
                                }
                                Err(e) => failed = Some((e.field, e.error.to_string())),
                            }
                        }
                        Err(e) => failed = Some(("spec.errors.service".into(), e.to_string())),
                    }
                }
            }
        }

        if let Some((field, msg)) = failed {
            diags.push(
                located_diag(item.manifest, &field, format!("{msg}; middleware skipped"))
                    .with_resource(resource),
            );
            continue;
        }
        out.insert(id, Value::Object(spec));
    }
    out
}

/// Replaces `urn:k8s:secret:<name>:<key>` strings of a plugin
/// configuration by the Secret's value.
fn load_secret_values(store: &Store<'_>, ns: &str, v: &mut Value) -> Result<(), String> {
    match v {
        Value::String(s) if s.starts_with("urn:k8s:secret:") => {
            let parts: Vec<&str> = s.split(':').collect();
            if parts.len() != 5 {
                return Err(format!("malformed secret URN {s:?}"));
            }
            let (name, key) = (parts[3], parts[4]);
            let secret = store
                .secret(ns, name)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("secret {ns}/{name} is not found"))?;
            let value = secret
                .value(key)
                .ok_or_else(|| format!("key {key:?} not found in secret {ns}/{name}"))?;
            *v = Value::String(value);
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|i| load_secret_values(store, ns, i)),
        Value::Object(map) => map
            .values_mut()
            .try_for_each(|i| load_secret_values(store, ns, i)),
        _ => Ok(()),
    }
}

/// MiddlewareTCP objects -> `tcp.middlewares`.
pub fn build_middleware_tcps(store: &Store<'_>) -> BTreeMap<String, Value> {
    store
        .middleware_tcps
        .iter()
        .map(|item| {
            let m = item.obj;
            let id = normalize(&make_id(m.metadata.ns(), &m.metadata.name));
            (
                id,
                serde_json::to_value(&m.spec).unwrap_or_else(|_| json!({})),
            )
        })
        .collect()
}
