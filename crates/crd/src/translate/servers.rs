//! Servers of a Kubernetes Service (Traefik's `loadServers`): ExternalName,
//! ClusterIP (nativeLB), NodePort (nodePortLB) or the endpoints.

use std::collections::HashSet;

use sluice_config::dynamic::Server;
use sluice_config::Diagnostic;

use crate::types::{IntOrString, LoadBalancerSpec, Service, ServicePort};

use super::error::{BuildError, Located};
use super::services::{join, ServiceBuilder};

/// The servers for `spec` (namespace already resolved).
pub fn load_servers(
    b: &mut ServiceBuilder<'_, '_>,
    spec: &LoadBalancerSpec,
    field: &str,
) -> Result<Vec<Server>, Located> {
    let id = format!("{}/{}", spec.namespace, spec.name);
    let at = |sub: &str, e: BuildError| Located::new(join(field, sub), e);
    let service = b
        .store
        .service(&spec.namespace, &spec.name)
        .map_err(|e| at("name", e.into()))?
        .ok_or_else(|| at("name", BuildError::ServiceNotFound(id.clone())))?;

    let port = service_port(service, &spec.port, b.warnings, &join(field, "port"))
        .map_err(|e| at("port", e))?;
    let external = service.spec.type_ == "ExternalName";

    if !external && spec.health_check.is_some() {
        return Err(at(
            "healthCheck",
            BuildError::HealthCheckNotExternalName(id),
        ));
    }
    let scheme =
        || service_protocol(&spec.scheme, &port.name, port.port).map_err(|e| at("scheme", e));

    if external {
        if !b.options.allow_external_name_services {
            return Err(at("name", BuildError::ExternalNameNotAllowed(id)));
        }
        let scheme = scheme()?;
        return Ok(vec![server(format!(
            "{scheme}://{}",
            join_host_port(&service.spec.external_name, port.port)
        ))]);
    }

    if spec.native_lb.unwrap_or(b.native_lb_by_default) {
        let ip = service.spec.cluster_ip.as_str();
        if ip == "None" {
            return Err(at("nativeLB", BuildError::HeadlessService(id)));
        }
        if ip.is_empty() {
            return Err(at("nativeLB", BuildError::NoClusterIp(id)));
        }
        let scheme = scheme()?;
        return Ok(vec![server(format!(
            "{scheme}://{}",
            join_host_port(ip, port.port)
        ))]);
    }

    if service.spec.type_ == "NodePort" && spec.node_port_lb {
        if b.disable_cluster_scope {
            return Err(at("nodePortLB", BuildError::NodesLookupDisabled));
        }
        let nodes = b.store.nodes();
        if nodes.is_empty() {
            return Err(at("nodePortLB", BuildError::NoNodes(id)));
        }
        let scheme = scheme()?;
        let servers: Vec<Server> = nodes
            .iter()
            .flat_map(|n| n.status.addresses.iter())
            .filter(|a| a.type_ == "InternalIP")
            .map(|a| {
                server(format!(
                    "{scheme}://{}",
                    join_host_port(&a.address, port.node_port)
                ))
            })
            .collect();
        if servers.is_empty() {
            return Err(at(
                "nodePortLB",
                BuildError::NoNodeServers(spec.name.clone()),
            ));
        }
        return Ok(servers);
    }

    let slices = b
        .store
        .endpoint_slices(&spec.namespace, &spec.name)
        .map_err(|e| at("name", e.into()))?;
    let mut servers = Vec::new();
    let mut seen = HashSet::new();
    for slice in &slices {
        // The slice port carrying the Service port's name; unnamed slice
        // ports and unset numbers never match.
        let slice_port = slice
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(port.name.as_str()))
            .and_then(|p| p.port)
            .unwrap_or(0);
        if slice_port == 0 {
            continue;
        }
        let scheme = scheme()?;
        for endpoint in &slice.endpoints {
            // Serving covers ready and terminating-but-ready pods; unset
            // means serving.
            if !endpoint.conditions.serving.unwrap_or(true) {
                continue;
            }
            for address in &endpoint.addresses {
                if !seen.insert(address.clone()) {
                    continue;
                }
                servers.push(Server {
                    url: format!("{scheme}://{}", join_host_port(address, slice_port)),
                    fenced: endpoint.conditions.terminating.unwrap_or(false),
                    ..Server::default()
                });
            }
        }
    }

    // Fallback for manifests written for Traefik v2: a Service without any
    // EndpointSlice uses its legacy Endpoints object (ready addresses only).
    if slices.is_empty() {
        if let Some(eps) = b.store.endpoints(&spec.namespace, &spec.name) {
            for subset in &eps.subsets {
                let subset_port = subset
                    .ports
                    .iter()
                    .find(|p| p.name.as_deref().unwrap_or("") == port.name)
                    .and_then(|p| p.port)
                    .unwrap_or(0);
                if subset_port == 0 {
                    continue;
                }
                let scheme = scheme()?;
                for address in &subset.addresses {
                    if seen.insert(address.ip.clone()) {
                        servers.push(server(format!(
                            "{scheme}://{}",
                            join_host_port(&address.ip, subset_port)
                        )));
                    }
                }
            }
        }
    }

    if servers.is_empty() && !b.options.allow_empty_services {
        return Err(at("name", BuildError::NoServers(id)));
    }
    Ok(servers)
}

fn server(url: String) -> Server {
    Server {
        url,
        ..Server::default()
    }
}

/// Go's `net.JoinHostPort`: brackets around IPv6 literals.
pub fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The Service port a reference designates (Traefik's `getServicePort`).
/// An ExternalName Service accepts any numeric port (with a warning when
/// it declares other ports).
pub fn service_port(
    service: &Service,
    port: &IntOrString,
    warnings: &mut Vec<Diagnostic>,
    field: &str,
) -> Result<ServicePort, BuildError> {
    if port.is_unset() {
        return Err(BuildError::PortNotDefined);
    }
    let mut has_valid_port = false;
    for p in &service.spec.ports {
        let hit = match port {
            IntOrString::Int(n) => *n == p.port,
            IntOrString::String(s) => *s == p.name,
        };
        if hit {
            return Ok(p.clone());
        }
        if p.port != 0 {
            has_valid_port = true;
        }
    }
    match port {
        IntOrString::Int(n) if service.spec.type_ == "ExternalName" => {
            if has_valid_port {
                warnings.push(
                    Diagnostic::warning(format!(
                        "port {n} does not match the ports of ExternalName service {}/{}; using {n}",
                        service.metadata.ns(),
                        service.metadata.name
                    ))
                    .with_field(field),
                );
            }
            Ok(ServicePort {
                port: *n,
                ..ServicePort::default()
            })
        }
        _ => Err(BuildError::PortNotFound(port.to_string())),
    }
}

/// The backend scheme (Traefik's `parseServiceProtocol`): explicit
/// http/https/h2c, else `https` for port 443 or a port name starting with
/// `https`, else `http`.
pub fn service_protocol(scheme: &str, port_name: &str, port: i64) -> Result<String, BuildError> {
    match scheme {
        "http" | "https" | "h2c" => Ok(scheme.to_string()),
        "" if port == 443 || port_name.starts_with("https") => Ok("https".to_string()),
        "" => Ok("http".to_string()),
        other => Err(BuildError::InvalidScheme(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_inference() {
        assert_eq!(service_protocol("", "web", 80).unwrap(), "http");
        assert_eq!(service_protocol("", "https-x", 80).unwrap(), "https");
        assert_eq!(service_protocol("", "web-https", 80).unwrap(), "http");
        assert_eq!(service_protocol("", "", 443).unwrap(), "https");
        assert_eq!(service_protocol("h2c", "", 443).unwrap(), "h2c");
        assert!(service_protocol("foo", "", 80).is_err());
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
    }
}
