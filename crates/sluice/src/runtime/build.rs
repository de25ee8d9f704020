//! Compiling a dynamic configuration into a [`Runtime`].
//!
//! The input is a *qualified* configuration: every name and reference already carries its
//! provider (`app@file`). A broken router or service is reported and left out; everything else is
//! built. Services whose configuration and children did not change are taken over from the
//! previous runtime, balancing position included.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sluice_config::dynamic::{Configuration, Service as ServiceConfig};
use sluice_config::{Diagnostic, Severity};
use sluice_rules::{default_priority, Route, RouteTable, Rule, Syntax};

use super::health::{spawn_checks, Health, HealthCheck, HealthCheckConfig, Passive, PassiveConfig};
use super::server::Server;
use super::service::{
    parse_status_ranges, Failover, FailoverErrors, LoadBalancer, Mirroring, Service, Weighted,
};
use super::sticky::StickyCookie;
use super::strategy::{Load, Strategy};
use super::transport::{TransportConfig, Transports};
use super::wrr::Edf;
use super::{Router, Runtime};
use crate::middleware::{self, Middleware};
use crate::tls::certificate::Certificate;
use crate::tls::settings::{Domain, RouterTls, TlsSection};
use crate::tls::{self, TlsRouter, TlsState};

/// What the builder needs from the static configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Every HTTP entry point.
    pub entry_points: Vec<String>,
    /// Entry points of routers that name none: those marked `asDefault`, else all.
    pub default_entry_points: Vec<String>,
    /// `core.defaultRuleSyntax`.
    pub default_rule_syntax: Syntax,
    /// Provider order deciding ties between routers of equal priority (`providers.precedence`);
    /// a provider not listed loses to every listed one.
    pub precedence: Vec<String>,
    /// Entry points' `http` sections (default TLS and middlewares, redirections), by name.
    pub entry_point_http: HashMap<String, EntryPointHttp>,
}

/// An entry point's `http` section: what it adds to every router on it.
#[derive(Debug, Clone, Default)]
pub struct EntryPointHttp {
    /// TLS for routers that have none (`http.tls`).
    pub tls: Option<serde_json::Value>,
    /// Middlewares run before the router's own (`http.middlewares`).
    pub middlewares: Vec<String>,
    /// `http.redirections.entryPoint`.
    pub redirect: Option<Redirection>,
}

/// A redirection of every request on an entry point to another scheme and port.
#[derive(Debug, Clone)]
pub struct Redirection {
    pub scheme: String,
    /// Port to redirect to; None keeps the scheme's default.
    pub port: Option<String>,
    pub permanent: bool,
    pub priority: i64,
}

/// Traefik's default provider precedence.
pub const DEFAULT_PRECEDENCE: &[&str] = &[
    "kubernetesgateway",
    "kubernetescrd",
    "kubernetes",
    "kubernetesingressnginx",
    "swarm",
    "docker",
    "file",
    "redis",
    "knative",
    "consul",
    "consulcatalog",
    "nomad",
    "etcd",
    "ecs",
    "http",
    "zookeeper",
    "rest",
];

impl Settings {
    /// Rank of the provider of a qualified name in the precedence list (lower wins a tie).
    fn rank(&self, name: &str) -> usize {
        let provider = name.rsplit_once('@').map(|(_, p)| p).unwrap_or("");
        self.precedence
            .iter()
            .position(|p| p == provider)
            .unwrap_or(self.precedence.len())
    }
}

/// Builds a runtime; diagnostics list every router and service left out and why.
pub fn build(
    settings: &Settings,
    config: &Configuration,
    previous: Option<&Runtime>,
    transports: &Transports,
    tls_state: &TlsState,
    acme_certificates: &[Arc<Certificate>],
    generation: u64,
) -> (Runtime, Vec<Diagnostic>) {
    let empty = Default::default();
    let http = config.http.as_ref().unwrap_or(&empty);
    let mut builder = Builder {
        configs: &http.services,
        middleware_configs: &http.middlewares,
        middlewares: HashMap::new(),
        transports_config: &http.servers_transports,
        transports,
        previous,
        built: HashMap::new(),
        visiting: HashSet::new(),
        diagnostics: Vec::new(),
    };
    for name in http.services.keys() {
        let _ = builder.service(name);
    }

    // Ties of priority go to the provider earlier in the precedence list, then to the name
    // that sorts first (Traefik leaves the latter unspecified; a stable order is easier to reason about).
    let mut routers: Vec<_> = http.routers.iter().collect();
    routers.sort_by_key(|(name, _)| settings.rank(name));
    let tls_section = match config.tls.as_ref() {
        Some(value) => match tls::settings::decode::<TlsSection>(value) {
            Ok(section) => section,
            Err(reason) => {
                builder.report(
                    Severity::Error,
                    "tls",
                    "",
                    format!("{reason}; no certificate or TLS option of the configuration is used"),
                );
                TlsSection::default()
            }
        },
        None => TlsSection::default(),
    };
    // Routers are compiled first; TLS options are resolved once every TLS router is known.
    let mut pending: Vec<PendingRoute> = Vec::new();
    // Resolver -> (domain sets, routers naming it).
    let mut acme: BTreeMap<String, (BTreeSet<Domain>, BTreeSet<String>)> = BTreeMap::new();
    for (name, router) in routers {
        let resource = format!("router `{name}`");
        let syntax = match router.rule_syntax.as_deref() {
            Some(s) if !s.is_empty() => Syntax::from_name(s),
            _ => settings.default_rule_syntax,
        };
        let rule = match Rule::parse(&router.rule, syntax) {
            Ok(rule) => rule,
            Err(error) => {
                builder.report(
                    Severity::Error,
                    &resource,
                    "rule",
                    format!("{error}\n{}", error.pointer(&router.rule)),
                );
                continue;
            }
        };
        let service = match builder.service(&router.service) {
            Ok(service) => service,
            Err(reason) => {
                builder.report(Severity::Error, &resource, "service", reason);
                continue;
            }
        };
        let provider = name.rsplit_once('@').map(|(_, p)| p).unwrap_or("");
        let priority = if router.priority == 0 {
            default_priority(&router.rule)
        } else {
            router.priority
        };
        let entry_points = if router.entry_points.is_empty() {
            &settings.default_entry_points
        } else {
            &router.entry_points
        };
        // Entry points adding the same things share one compiled router.
        let mut compiled: Vec<CompiledFor<'_>> = Vec::new();
        for entry_point in entry_points {
            if !settings.entry_points.contains(entry_point) {
                builder.report(
                    Severity::Error,
                    &resource,
                    "entryPoints",
                    format!("entry point `{entry_point}` does not exist"),
                );
                continue;
            }
            let model = settings.entry_point_http.get(entry_point);
            let tls_value = router
                .tls
                .as_ref()
                .or_else(|| model.and_then(|m| m.tls.as_ref()));
            let extra: &[String] = model.map(|m| m.middlewares.as_slice()).unwrap_or(&[]);
            let found = compiled
                .iter()
                .find(|(t, e, _)| *t == tls_value && *e == extra)
                .map(|(_, _, r)| r.clone());
            let core = match found {
                Some(core) => core,
                None => {
                    let core = compile_router(
                        &mut builder,
                        name,
                        router,
                        extra,
                        provider,
                        priority,
                        &service,
                    );
                    compiled.push((tls_value, extra, core.clone()));
                    core
                }
            };
            let Some(core) = core else { continue };
            let tls = match tls_value {
                None => None,
                Some(value) => match tls::settings::decode::<RouterTls>(value) {
                    Ok(tls) => Some(tls),
                    Err(reason) => {
                        builder.report(
                            Severity::Error,
                            &resource,
                            "tls",
                            format!("{reason}; the router is disabled"),
                        );
                        continue;
                    }
                },
            };
            let tls = tls.map(|tls| {
                let hosts = rule.hosts();
                let options = match tls.options.as_str() {
                    "" | tls::DEFAULT_OPTIONS => tls::DEFAULT_OPTIONS.to_owned(),
                    other => crate::provider::qualify_name(other, provider),
                };
                if !tls.cert_resolver.is_empty() {
                    let (wanted, routers) = acme.entry(tls.cert_resolver.clone()).or_default();
                    routers.insert(name.clone());
                    if !tls.domains.is_empty() {
                        wanted.extend(tls.domains.iter().cloned());
                    } else if let Some((main, sans)) = hosts.split_first() {
                        wanted.insert(Domain {
                            main: main.clone(),
                            sans: sans.to_vec(),
                        });
                    }
                }
                (options, hosts)
            });
            pending.push(PendingRoute {
                entry_point: entry_point.clone(),
                rule: rule.clone(),
                priority,
                router: core,
                tls,
            });
        }
    }

    // TLS routers naming options that do not exist are disabled (their hosts still map to the
    // missing options, so handshakes for them fail, as in Traefik).
    let mut tls_routers = Vec::new();
    for route in &pending {
        if let Some((options, hosts)) = &route.tls {
            tls_routers.push(TlsRouter {
                name: route.router.name.clone(),
                entry_point: route.entry_point.clone(),
                hosts: hosts.clone(),
                options: options.clone(),
            });
        }
    }
    // `defaultGeneratedCert`: the default store's fallback certificate comes from a resolver.
    if let Some(generated) = tls_section
        .stores
        .get(tls::DEFAULT_OPTIONS)
        .and_then(|s| s.default_generated_cert.as_ref())
    {
        if let Some(domain) = generated.domain.as_ref().filter(|d| !d.main.is_empty()) {
            let (wanted, routers) = acme.entry(generated.resolver.clone()).or_default();
            wanted.insert(domain.clone());
            routers.insert("tls.stores.default.defaultGeneratedCert".into());
        }
    }
    let (tls_runtime, resolved, tls_diagnostics) =
        tls::build(&tls_section, &tls_routers, acme_certificates, tls_state);
    builder.diagnostics.extend(tls_diagnostics);

    let mut http_tables: HashMap<String, Vec<Route<Arc<Router>>>> = HashMap::new();
    let mut https_tables: HashMap<String, Vec<Route<Arc<Router>>>> = HashMap::new();
    for route in pending {
        let (table, router) = match &route.tls {
            None => (&mut http_tables, route.router),
            Some((declared, _)) => {
                if declared != tls::DEFAULT_OPTIONS && tls_runtime.has_options(declared).is_none() {
                    builder.report(
                        Severity::Error,
                        &format!("router `{}`", route.router.name),
                        "tls.options",
                        format!("TLS options `{declared}` do not exist; the router is disabled"),
                    );
                    continue;
                }
                let options = resolved
                    .get(&(route.router.name.clone(), route.entry_point.clone()))
                    .cloned()
                    .unwrap_or_else(|| tls::DEFAULT_OPTIONS.to_owned());
                let router = Arc::new(Router {
                    tls_options: Some(Arc::from(options.as_str())),
                    ..(*route.router).clone()
                });
                (&mut https_tables, router)
            }
        };
        table.entry(route.entry_point).or_default().push(Route {
            rule: route.rule,
            priority: route.priority,
            value: router,
        });
    }

    // Entry point redirections: a catch-all router just below the highest priority.
    for (entry_point, model) in &settings.entry_point_http {
        let Some(redirect) = &model.redirect else {
            continue;
        };
        match redirection_router(&mut builder, entry_point, redirect) {
            Ok(route) => http_tables
                .entry(entry_point.clone())
                .or_default()
                .push(route),
            Err(reason) => builder.report(
                Severity::Error,
                &format!("entry point `{entry_point}`"),
                "http.redirections",
                reason,
            ),
        }
    }

    let tables = |tables: HashMap<String, Vec<Route<Arc<Router>>>>| {
        tables
            .into_iter()
            .map(|(name, routes)| (name, RouteTable::new(routes)))
            .collect()
    };
    let entry_points = tables(http_tables);
    let tls_entry_points = tables(https_tables);
    let services = builder
        .built
        .into_iter()
        .filter_map(|(name, result)| result.ok().map(|s| (name, s)))
        .collect();
    let middlewares = builder
        .middlewares
        .into_iter()
        .filter_map(|(name, result)| {
            let middleware = result.ok()?;
            let config = http.middlewares.get(&name)?;
            Some((name, (config.to_string(), middleware)))
        })
        .collect();
    let runtime = Runtime {
        generation,
        entry_points,
        tls_entry_points,
        services,
        middlewares,
        tls: tls_runtime,
        acme: acme
            .into_iter()
            .map(|(resolver, (domains, routers))| {
                let request = super::ResolverRequest {
                    domains: domains.into_iter().collect(),
                    routers: routers.into_iter().collect(),
                };
                (resolver, request)
            })
            .collect(),
    };
    (runtime, builder.diagnostics)
}

struct Builder<'a> {
    configs: &'a BTreeMap<String, ServiceConfig>,
    middleware_configs: &'a BTreeMap<String, serde_json::Value>,
    middlewares: HashMap<String, Result<Arc<dyn Middleware>, String>>,
    transports_config: &'a BTreeMap<String, serde_json::Value>,
    transports: &'a Transports,
    previous: Option<&'a Runtime>,
    built: HashMap<String, Result<Arc<Service>, String>>,
    visiting: HashSet<String>,
    diagnostics: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn report(&mut self, severity: Severity, resource: &str, field: &str, message: String) {
        self.diagnostics.push(Diagnostic {
            severity,
            file: None,
            line: None,
            column: None,
            resource: Some(resource.to_owned()),
            field: Some(field.to_owned()),
            message,
        });
    }

    /// The compiled middleware `name`, building it on first use.
    fn middleware(&mut self, name: &str) -> Result<Arc<dyn Middleware>, String> {
        if let Some(result) = self.middlewares.get(name) {
            return result
                .clone()
                .map_err(|_| format!("middleware `{name}` is invalid"));
        }
        let Some(config) = self.middleware_configs.get(name) else {
            return Err(format!("middleware `{name}` does not exist"));
        };
        let key = format!("middleware {name}");
        if !self.visiting.insert(key.clone()) {
            return Err(format!("middleware `{name}` includes itself"));
        }
        // Keep the previous instance when its configuration is unchanged and it refers to
        // nothing else (chain and errors hold other middlewares and services, which may have
        // changed), so limits and breakers keep their state across reloads.
        let fingerprint = config.to_string();
        let standalone = config.get("chain").is_none() && config.get("errors").is_none();
        if let Some((old, kept)) = self.previous.and_then(|p| p.middlewares.get(name)) {
            if standalone && *old == fingerprint {
                self.visiting.remove(&key);
                self.middlewares.insert(name.to_owned(), Ok(kept.clone()));
                return Ok(kept.clone());
            }
        }
        let provider = name
            .rsplit_once('@')
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default();
        let result = middleware::compile(
            name,
            config,
            &mut Lookups {
                builder: self,
                provider,
            },
        );
        self.visiting.remove(&key);
        let result = result.map_err(|error| {
            self.report(
                Severity::Error,
                &format!("middleware `{name}`"),
                &error.field,
                error.message.clone(),
            );
            error.to_string()
        });
        self.middlewares.insert(name.to_owned(), result.clone());
        result.map_err(|_| format!("middleware `{name}` is invalid"))
    }

    /// The compiled service `name`, building it (and its children) on first use.
    fn service(&mut self, name: &str) -> Result<Arc<Service>, String> {
        if let Some(result) = self.built.get(name) {
            return result
                .clone()
                .map_err(|_| format!("service `{name}` is invalid"));
        }
        let Some(config) = self.configs.get(name) else {
            return Err(format!("service `{name}` does not exist"));
        };
        if !self.visiting.insert(name.to_owned()) {
            return Err(format!(
                "service `{name}` refers to itself through its children"
            ));
        }
        let result = self.compile(name, config);
        self.visiting.remove(name);
        if let Err(reason) = &result {
            self.report(
                Severity::Error,
                &format!("service `{name}`"),
                reason_field(reason),
                reason.clone(),
            );
        }
        self.built.insert(name.to_owned(), result.clone());
        result.map_err(|_| format!("service `{name}` is invalid"))
    }

    fn compile(&mut self, name: &str, config: &ServiceConfig) -> Result<Arc<Service>, String> {
        let fingerprint = serde_json::to_string(config).unwrap_or_default();
        let kinds = [
            config.load_balancer.is_some(),
            config.weighted.is_some(),
            config.mirroring.is_some(),
            config.failover.is_some(),
            config.highest_random_weight.is_some(),
        ];
        match kinds.iter().filter(|k| **k).count() {
            0 => {
                return Err(
                    "type: a service needs one of loadBalancer, weighted, mirroring or failover"
                        .into(),
                )
            }
            1 => {}
            _ => return Err(
                "type: a service may have only one type (loadBalancer, weighted, mirroring, ...)"
                    .into(),
            ),
        }

        let service = if let Some(lb) = &config.load_balancer {
            let transport_config = match &lb.servers_transport {
                Some(t) if !t.is_empty() && !t.starts_with("default@") => {
                    let value = self
                        .transports_config
                        .get(t)
                        .ok_or_else(|| format!("serversTransport: `{t}` does not exist"))?;
                    serde_json::from_value::<TransportConfig>(value.clone())
                        .map_err(|e| format!("serversTransport: `{t}`: {e}"))?
                }
                _ => TransportConfig::default(),
            };
            let mut servers = Vec::with_capacity(lb.servers.len());
            let mut weights = Vec::with_capacity(lb.servers.len());
            for (i, server) in lb.servers.iter().enumerate() {
                let parsed = Server::parse(&server.url, server.preserve_path)
                    .map_err(|e| format!("servers[{i}].url: {e}"))?;
                servers.push(Arc::new(parsed));
                weights
                    .push(weight(server.weight).map_err(|e| format!("servers[{i}].weight: {e}"))?);
            }
            let sticky = lb
                .sticky
                .as_ref()
                .and_then(|s| s.cookie.as_ref())
                .map(|cookie| {
                    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
                    StickyCookie::new(cookie, name, &urls)
                });
            let strategy = Strategy::parse(lb.strategy.as_deref())?;
            let passive = match &lb.passive_health_check {
                Some(value) => {
                    let config: PassiveConfig = serde_json::from_value(value.clone())
                        .map_err(|e| format!("passiveHealthCheck: {e}"))?;
                    Some(Passive::new(&config, servers.len()))
                }
                None => None,
            };
            let check = match &lb.health_check {
                Some(value) => {
                    let config: HealthCheckConfig = serde_json::from_value(value.clone())
                        .map_err(|e| format!("healthCheck: {e}"))?;
                    Some(HealthCheck::new(&config).map_err(|e| format!("healthCheck.{e}"))?)
                }
                None => None,
            };
            Service::LoadBalancer(LoadBalancer {
                name: name.to_owned(),
                sticky,
                health: Health::new(servers.len()),
                check,
                passive,
                strategy,
                load: Load::new(servers.len()),
                weights: weights.clone(),
                servers,
                pass_host_header: lb.pass_host_header.unwrap_or(true),
                transport: self.transports.get(&transport_config),
                schedule: Mutex::new(Edf::new(weights)),
                // A changed transport under the same name must rebuild the balancer too.
                fingerprint: format!("{fingerprint}|{transport_config:?}"),
            })
        } else if let Some(weighted) = &config.weighted {
            let mut children = Vec::with_capacity(weighted.services.len());
            let mut weights = Vec::with_capacity(weighted.services.len());
            for (i, child) in weighted.services.iter().enumerate() {
                children.push(
                    self.service(&child.name)
                        .map_err(|e| format!("services[{i}]: {e}"))?,
                );
                weights
                    .push(weight(child.weight).map_err(|e| format!("services[{i}].weight: {e}"))?);
            }
            let sticky = weighted
                .sticky
                .as_ref()
                .and_then(|s| s.cookie.as_ref())
                .map(|cookie| {
                    let names: Vec<String> = weighted
                        .services
                        .iter()
                        .map(|child| as_written(&child.name, name))
                        .collect();
                    StickyCookie::new(cookie, name, &names)
                });
            let health = match &weighted.health_check {
                Some(_) => Some(watch_children(name, &children)?),
                None => None,
            };
            Service::Weighted(Weighted {
                name: name.to_owned(),
                sticky,
                health,
                hrw: None,
                weights: weights.clone(),
                children,
                schedule: Mutex::new(Edf::new(weights)),
                fingerprint,
            })
        } else if let Some(mirroring) = &config.mirroring {
            let main = self
                .service(&mirroring.service)
                .map_err(|e| format!("service: {e}"))?;
            let mut mirrors = Vec::with_capacity(mirroring.mirrors.len());
            for (i, mirror) in mirroring.mirrors.iter().enumerate() {
                if !(0..=100).contains(&mirror.percent) {
                    return Err(format!(
                        "mirrors[{i}].percent: {} is outside 0..100",
                        mirror.percent
                    ));
                }
                let service = self
                    .service(&mirror.name)
                    .map_err(|e| format!("mirrors[{i}]: {e}"))?;
                mirrors.push((service, mirror.percent as u64));
            }
            let mirror_health = match &mirroring.health_check {
                Some(_) => Some(watch_children(name, std::slice::from_ref(&main))?),
                None => None,
            };
            Service::Mirroring(Mirroring {
                name: name.to_owned(),
                main,
                mirrors,
                mirror_body: mirroring.mirror_body.unwrap_or(true),
                max_body_size: mirroring.max_body_size.and_then(|m| u64::try_from(m).ok()),
                health: mirror_health,
                counter: Mutex::default(),
                fingerprint,
            })
        } else if let Some(failover) = &config.failover {
            let spec: FailoverConfig =
                serde_json::from_value(failover.clone()).map_err(|e| format!("failover: {e}"))?;
            let provider = name.rsplit_once('@').map(|(_, p)| p).unwrap_or("");
            let main = self
                .service(&crate::provider::qualify_name(&spec.service, provider))
                .map_err(|e| format!("failover.service: {e}"))?;
            let fallback = self
                .service(&crate::provider::qualify_name(&spec.fallback, provider))
                .map_err(|e| format!("failover.fallback: {e}"))?;
            let health = match spec.health_check {
                Some(_) => Some(watch_children(name, &[main.clone(), fallback.clone()])?),
                None => None,
            };
            let errors = match spec.errors {
                Some(errors) => Some(FailoverErrors {
                    statuses: parse_status_ranges(&errors.status)
                        .map_err(|e| format!("failover.errors.status: {e}"))?,
                    max_request_body_bytes: errors
                        .max_request_body_bytes
                        .and_then(|n| u64::try_from(n).ok()),
                }),
                None => None,
            };
            Service::Failover(Failover {
                name: name.to_owned(),
                main,
                fallback,
                health,
                errors,
                fingerprint,
            })
        } else if let Some(hrw) = &config.highest_random_weight {
            let spec: HrwConfig = serde_json::from_value(hrw.clone())
                .map_err(|e| format!("highestRandomWeight: {e}"))?;
            let provider = name.rsplit_once('@').map(|(_, p)| p).unwrap_or("");
            let mut children = Vec::with_capacity(spec.services.len());
            let mut weights = Vec::with_capacity(spec.services.len());
            let mut names = Vec::with_capacity(spec.services.len());
            for (i, child) in spec.services.iter().enumerate() {
                let qualified = crate::provider::qualify_name(&child.name, provider);
                children.push(
                    self.service(&qualified)
                        .map_err(|e| format!("highestRandomWeight.services[{i}]: {e}"))?,
                );
                weights.push(
                    weight(child.weight)
                        .map_err(|e| format!("highestRandomWeight.services[{i}].weight: {e}"))?,
                );
                names.push(child.name.clone());
            }
            let health = match spec.health_check {
                Some(_) => Some(watch_children(name, &children)?),
                None => None,
            };
            Service::Weighted(Weighted {
                name: name.to_owned(),
                sticky: None,
                health,
                hrw: Some(names),
                schedule: Mutex::new(Edf::new(weights.clone())),
                weights,
                children,
                fingerprint,
            })
        } else {
            return Err("type: unknown service type".into());
        };
        let service = self.carry_over(service);
        // Checks start only for balancers new in this build: a kept balancer keeps its checks.
        if let Service::LoadBalancer(lb) = &*service {
            if let Some(check) = &lb.check {
                if Arc::strong_count(&service) == 1 {
                    spawn_checks(check.clone(), &lb.servers, &lb.health);
                }
            }
        }
        Ok(service)
    }

    /// Keeps the previous runtime's service when nothing about it changed.
    fn carry_over(&self, fresh: Service) -> Arc<Service> {
        if let Some(old) = self.previous.and_then(|p| p.service(fresh.name())) {
            let same_children = old.children().len() == fresh.children().len()
                && old
                    .children()
                    .iter()
                    .zip(fresh.children())
                    .all(|(a, b)| Arc::ptr_eq(a, b));
            if old.fingerprint() == fresh.fingerprint() && same_children {
                return old.clone();
            }
        }
        Arc::new(fresh)
    }
}

/// What a middleware may refer to while it is compiled: names without a provider are the
/// middleware's own provider's.
struct Lookups<'b, 'a> {
    builder: &'b mut Builder<'a>,
    provider: String,
}

impl middleware::Resolver for Lookups<'_, '_> {
    fn service(&mut self, name: &str) -> Result<Arc<Service>, String> {
        let name = crate::provider::qualify_name(name, &self.provider);
        self.builder.service(&name)
    }

    fn middleware(&mut self, name: &str) -> Result<Arc<dyn Middleware>, String> {
        let name = crate::provider::qualify_name(name, &self.provider);
        self.builder.middleware(&name)
    }
}

/// A child name as its provider wrote it: `app@file` under `canary@file` is `app`, the value
/// Traefik hashes into sticky cookies.
fn as_written(child: &str, parent: &str) -> String {
    let parent_provider = parent.rsplit_once('@').map(|(_, p)| p);
    match child.rsplit_once('@') {
        Some((bare, provider)) if Some(provider) == parent_provider => bare.to_owned(),
        _ => child.to_owned(),
    }
}

/// `highestRandomWeight` of the dynamic configuration.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HrwConfig {
    #[serde(default)]
    services: Vec<HrwChild>,
    #[serde(default)]
    health_check: Option<serde_json::Value>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HrwChild {
    name: String,
    #[serde(default)]
    weight: Option<i64>,
}

/// `failover` of the dynamic configuration.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FailoverConfig {
    service: String,
    fallback: String,
    #[serde(default)]
    health_check: Option<serde_json::Value>,
    #[serde(default)]
    errors: Option<FailoverErrorsConfig>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FailoverErrorsConfig {
    #[serde(default)]
    status: Vec<String>,
    #[serde(default)]
    max_request_body_bytes: Option<i64>,
}

/// A parent with `healthCheck: {}` follows the up/down state of each child; every child must
/// report one (Traefik refuses the configuration otherwise).
fn watch_children(parent: &str, children: &[Arc<Service>]) -> Result<Arc<Health>, String> {
    let health = Health::new(children.len());
    for (slot, child) in children.iter().enumerate() {
        let reported = child.reported_health().ok_or_else(|| {
            format!(
                "healthCheck: cannot follow the health of `{}` from `{parent}`: that service has no health check",
                child.name()
            )
        })?;
        reported.register_parent(&health, slot);
    }
    Ok(health)
}

/// A router compiled for the entry points adding this TLS block and these middlewares.
type CompiledFor<'a> = (
    Option<&'a serde_json::Value>,
    &'a [String],
    Option<Arc<Router>>,
);

/// A router compiled for some entry points, before TLS options are resolved.
struct PendingRoute {
    entry_point: String,
    rule: Rule,
    priority: i64,
    router: Arc<Router>,
    /// Declared options name and Host names, for TLS routers.
    tls: Option<(String, Vec<String>)>,
}

/// Compiles a router's middlewares (an entry point's first) around its service; None when a
/// middleware is missing or broken (reported).
fn compile_router(
    builder: &mut Builder<'_>,
    name: &str,
    router: &sluice_config::dynamic::Router,
    extra: &[String],
    provider: &str,
    priority: i64,
    service: &Arc<Service>,
) -> Option<Arc<Router>> {
    let resource = format!("router `{name}`");
    let names = extra
        .iter()
        .map(|m| (true, crate::provider::qualify_name(m, provider)))
        .chain(router.middlewares.iter().map(|m| (false, m.clone())));
    let mut middlewares = Vec::with_capacity(router.middlewares.len() + extra.len());
    let mut own = 0;
    for (from_entry_point, middleware) in names {
        match builder.middleware(&middleware) {
            Ok(m) => middlewares.push(m),
            Err(reason) => {
                let field = if from_entry_point {
                    "entryPoint http.middlewares".to_owned()
                } else {
                    format!("middlewares[{own}]")
                };
                builder.report(
                    Severity::Error,
                    &resource,
                    &field,
                    format!("{reason}; the router is disabled"),
                );
                return None;
            }
        }
        if !from_entry_point {
            own += 1;
        }
    }
    Some(Arc::new(Router {
        name: name.to_owned(),
        rule: router.rule.clone(),
        priority,
        middlewares,
        service: service.clone(),
        tls_options: None,
    }))
}

/// The router Traefik adds for `http.redirections.entryPoint`: every request on the entry point
/// is redirected, whatever its host.
fn redirection_router(
    builder: &mut Builder<'_>,
    entry_point: &str,
    redirect: &Redirection,
) -> Result<Route<Arc<Router>>, String> {
    let name = format!("{entry_point}-to-{}@internal", redirect.scheme);
    let mut spec = serde_json::json!({"scheme": redirect.scheme, "permanent": redirect.permanent});
    if let Some(port) = &redirect.port {
        spec["port"] = serde_json::Value::String(port.clone());
    }
    let middleware = middleware::compile(
        &format!("redirect-{name}"),
        &serde_json::json!({ "redirectScheme": spec }),
        &mut Lookups {
            builder,
            provider: "internal".into(),
        },
    )
    .map_err(|e| e.to_string())?;
    let rule_text = "HostRegexp(`^.+$`)";
    let rule = Rule::parse(rule_text, Syntax::V3).map_err(|e| e.to_string())?;
    let service = Arc::new(Service::Noop(name.clone()));
    Ok(Route {
        rule,
        priority: redirect.priority,
        value: Arc::new(Router {
            name,
            rule: rule_text.to_owned(),
            priority: redirect.priority,
            middlewares: vec![middleware],
            service,
            tls_options: None,
        }),
    })
}

/// The field a service error is about: the text before the first `:`.
fn reason_field(reason: &str) -> &str {
    reason.split(':').next().unwrap_or("")
}

fn weight(weight: Option<i64>) -> Result<u64, String> {
    match weight {
        None => Ok(1),
        Some(w) if w < 0 => Err(format!("{w} is negative")),
        Some(w) => Ok(w as u64),
    }
}
