//! IngressRoute -> HTTP routers (Traefik's `loadIngressRouteConfiguration`).

use serde_json::{json, Map, Value};
use sluice_config::dynamic::{HttpConfiguration, Router, Service};
use sluice_config::Diagnostic;

use crate::names::{make_id, normalize, router_key, service_key};
use crate::store::{Item, Store};
use crate::types::{IngressRoute, RouterObservability};

use super::error::{BuildError, Located};
use super::refs::{namespace_allowed, namespace_or_parent, resolve_reference};
use super::services::{ServiceBuilder, Services};
use super::tls::{certificate_blocks, Certificates};
use super::{class_matches, located_diag};

/// What one IngressRoute contributes to the configuration. It depends on the route and on
/// what the route reads in the store, never on the other routes' output, so it can be kept and
/// reused while those reads find the same objects.
#[derive(Debug, Clone, Default)]
pub struct RouteOutput {
    /// Reported before the route's certificate (the deprecated class annotation).
    early: Vec<Diagnostic>,
    /// `spec.tls.secretName`: loaded when the route is reported, since a certificate loaded
    /// once serves every later route naming the same Secret.
    secret: Option<String>,
    /// Routers by name, sorted, once each (the last of one name wins, as when inserted in
    /// turn). A list, not a map: a map's first node alone holds room for eleven.
    pub routers: Vec<(String, Router)>,
    /// Services likewise.
    pub services: Vec<(String, Service)>,
    /// Reported after the certificate.
    diagnostics: Vec<Diagnostic>,
}

impl RouteOutput {
    /// Whether [`RouteOutput::report`] has anything to do.
    pub fn reports(&self) -> bool {
        !self.early.is_empty() || self.secret.is_some() || !self.diagnostics.is_empty()
    }

    /// Reports the route's diagnostics, loading its certificate into `certs` on the way (with
    /// `load(namespace, secret)` unless already loaded), in the order of a full translation.
    pub fn report(
        &self,
        item: &Item<'_, IngressRoute>,
        certs: &mut Certificates,
        diags: &mut Vec<Diagnostic>,
        load: impl FnOnce(&str, &str) -> Result<(String, String), String>,
    ) {
        diags.extend(self.early.iter().cloned());
        if let Some(secret) = &self.secret {
            let ns = item.obj.metadata.ns();
            if let Err(e) = certs.add_loaded(ns, secret, None, || load(ns, secret)) {
                diags.push(
                    located_diag(
                        item.manifest,
                        "spec.tls.secretName",
                        format!(
                            "error configuring TLS: {e}; routes are kept without this certificate"
                        ),
                    )
                    .with_resource(item.manifest.resource()),
                );
            }
        }
        diags.extend(self.diagnostics.iter().cloned());
    }
}

/// Adds the routers (and their services) of every processed IngressRoute.
pub fn load_ingress_routes(
    store: &Store<'_>,
    options: &crate::options::CrdOptions,
    http: &mut HttpConfiguration,
    certs: &mut Certificates,
    diags: &mut Vec<Diagnostic>,
) {
    for item in &store.ingress_routes {
        let output = translate_route(store, options, item);
        output.report(item, certs, diags, |ns, secret| {
            certificate_blocks(store, ns, secret)
        });
        http.routers.extend(output.routers);
        http.services.extend(output.services);
    }
}

/// The contribution of one IngressRoute (Traefik's `loadIngressRouteConfiguration` for one
/// object).
pub fn translate_route(
    store: &Store<'_>,
    options: &crate::options::CrdOptions,
    item: &Item<'_, IngressRoute>,
) -> RouteOutput {
    let ir = item.obj;
    let mut output = RouteOutput::default();
    if !class_matches(
        options,
        ir.spec.ingress_class_name.as_deref(),
        &ir.metadata.annotations,
        item.manifest,
        &mut output.early,
    ) {
        return output;
    }

    if let Some(tls) = &ir.spec.tls {
        if !tls.secret_name.is_empty() {
            output.secret = Some(tls.secret_name.clone());
        }
    }

    let ingress_name = if ir.metadata.name.is_empty() {
        &ir.metadata.generate_name
    } else {
        &ir.metadata.name
    };

    let parents = match parent_router_names(store, item, options.allow_cross_namespace) {
        Ok(p) => p,
        Err(e) => {
            output.diagnostics.push(
                located_diag(
                    item.manifest,
                    &e.field,
                    format!("{}; the whole IngressRoute is skipped", e.error),
                )
                .with_resource(item.manifest.resource()),
            );
            return output;
        }
    };

    let mut http = HttpConfiguration::default();
    for i in 0..ir.spec.routes.len() {
        if let Err(e) = build_route(
            store,
            options,
            item,
            ingress_name,
            i,
            &parents,
            &mut http,
            &mut output.diagnostics,
        ) {
            output.diagnostics.push(
                located_diag(
                    item.manifest,
                    &e.field,
                    format!("{}; route skipped", e.error),
                )
                .with_resource(item.manifest.resource()),
            );
        }
    }
    output.routers = http.routers.into_iter().collect();
    output.services = http.services.into_iter().collect();
    output
}

#[allow(clippy::too_many_arguments)]
fn build_route(
    store: &Store<'_>,
    options: &crate::options::CrdOptions,
    item: &Item<'_, IngressRoute>,
    ingress_name: &str,
    index: usize,
    parents: &[String],
    http: &mut HttpConfiguration,
    diags: &mut Vec<Diagnostic>,
) -> Result<(), Located> {
    let ir = item.obj;
    let ns = ir.metadata.ns();
    let route = &ir.spec.routes[index];
    let field = format!("spec.routes[{index}]");
    if !route.kind.is_empty() && route.kind != "Rule" {
        return Err(Located::new(
            format!("{field}.kind"),
            BuildError::UnsupportedMatchKind(route.kind.clone()),
        ));
    }
    if route.match_.is_empty() {
        return Err(Located::new(
            format!("{field}.match"),
            BuildError::EmptyMatch,
        ));
    }

    let mut middlewares = Vec::new();
    for (j, m) in route.middlewares.iter().enumerate() {
        let name = resolve_reference(options, ns, &m.namespace, &m.name).map_err(|cause| {
            Located::new(
                format!("{field}.middlewares[{j}]"),
                BuildError::MiddlewareRef {
                    name: m.name.clone(),
                    cause,
                },
            )
        })?;
        middlewares.push(name);
    }

    let key = normalize(&make_id(ns, &service_key(&route.match_, ingress_name)));
    let mut service_name = key.clone();
    let mut builder = ServiceBuilder {
        store,
        options,
        native_lb_by_default: options.native_lb_by_default,
        disable_cluster_scope: options.disable_cluster_scope_resources,
        warnings: diags,
    };
    let services: &mut Services = &mut http.services;
    match route.services.len() {
        0 => service_name.clear(),
        1 => {
            let (full, lb) = builder.name_and_service(
                ns,
                &route.services[0],
                &format!("{field}.services[0]"),
            )?;
            match lb {
                Some(lb) => {
                    services.insert(service_name.clone(), lb);
                }
                None => service_name = full,
            }
        }
        _ => builder.build_weighted(
            ns,
            &route.services,
            None,
            &service_name,
            services,
            &format!("{field}.services"),
        )?,
    }

    let mut router = Router {
        entry_points: ir.spec.entry_points.clone(),
        middlewares,
        service: service_name,
        rule: route.match_.clone(),
        parent_refs: parents.to_vec(),
        rule_syntax: (!route.syntax.is_empty()).then(|| route.syntax.clone()),
        priority: route.priority,
        tls: None,
        observability: route.observability.as_ref().map(observability),
    };

    if let Some(tls) = &ir.spec.tls {
        let mut t = Map::new();
        if let Some(opt) = tls.options.as_ref().filter(|o| !o.name.is_empty()) {
            let name =
                resolve_reference(options, ns, &opt.namespace, &opt.name).map_err(|cause| {
                    Located::new(
                        "spec.tls.options",
                        BuildError::TlsOptionRef {
                            name: opt.name.clone(),
                            cause,
                        },
                    )
                })?;
            t.insert("options".into(), json!(name));
        }
        if !tls.cert_resolver.is_empty() {
            t.insert("certResolver".into(), json!(tls.cert_resolver));
        }
        if !tls.domains.is_empty() {
            t.insert("domains".into(), json!(tls.domains));
        }
        router.tls = Some(Value::Object(t));
    }

    http.routers.insert(key, router);
    Ok(())
}

fn observability(o: &RouterObservability) -> Value {
    // Serialises with omitempty semantics (only the switches written).
    serde_json::to_value(o).unwrap_or(Value::Null)
}

/// Router names of every route of every parent IngressRoute.
fn parent_router_names(
    store: &Store<'_>,
    item: &Item<'_, IngressRoute>,
    allow_cross_namespace: bool,
) -> Result<Vec<String>, Located> {
    let ir = item.obj;
    let ns = ir.metadata.ns();
    let mut names = Vec::new();
    for (i, parent) in ir.spec.parent_refs.iter().enumerate() {
        let field = format!("spec.parentRefs[{i}]");
        let parent_ns = namespace_or_parent(&parent.namespace, ns);
        let id = format!("{parent_ns}/{}", parent.name);
        if !namespace_allowed(allow_cross_namespace, ns, parent_ns) {
            return Err(Located::new(field, BuildError::ParentCrossNamespace(id)));
        }
        let found = store
            .ingress_route(parent_ns, &parent.name)
            .ok_or_else(|| Located::new(field.clone(), BuildError::ParentMissing(id)))?;
        for route in &found.obj.spec.routes {
            names.push(router_key(
                found.obj.metadata.ns(),
                &found.obj.metadata.name,
                &route.match_,
            ));
        }
    }
    Ok(names)
}
