//! `sluice explain`: which router a request would match and where it would be sent.
//!
//! The request goes through the same steps as on the data plane (path sanitising, routing path,
//! canonical host, route table) against a runtime built from the configuration, and the service
//! tree is walked the way the first request after a start would walk it.

use std::net::IpAddr;

use http::{HeaderMap, Method, Uri};
use serde::Serialize;
use sluice_rules::{canonical_host, RequestInfo};

use crate::dataplane::request::target;
use crate::runtime::{Runtime, Service};

/// The answer to "where would this request go?".
#[derive(Debug, Serialize, PartialEq)]
pub struct Explanation {
    #[serde(rename = "entryPoint")]
    pub entry_point: String,
    /// Qualified router name, or None when no router matches (404).
    pub router: Option<String>,
    pub rule: Option<String>,
    pub priority: Option<i64>,
    /// The router's service.
    pub service: Option<String>,
    /// Every service passed through, from the router's down to the load balancer.
    pub path: Vec<String>,
    /// The server that would receive the request.
    pub server: Option<String>,
    /// Mirrors that would get a copy of this request.
    pub mirrors: Vec<String>,
    /// The status Sluice itself would answer with, when it would not reach a server.
    pub status: Option<u16>,
    pub reason: Option<String>,
}

/// A request to explain.
#[derive(Debug)]
pub struct Question<'a> {
    pub entry_point: &'a str,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub client_ip: Option<IpAddr>,
}

/// Explains `question` against `runtime`.
pub fn explain(runtime: &Runtime, question: &Question<'_>) -> Explanation {
    let mut answer = Explanation {
        entry_point: question.entry_point.to_owned(),
        router: None,
        rule: None,
        priority: None,
        service: None,
        path: Vec::new(),
        server: None,
        mirrors: Vec::new(),
        status: None,
        reason: None,
    };
    let target = match target(&question.uri, &question.headers) {
        Ok(target) => target,
        Err(error) => {
            answer.status = Some(error.status().as_u16());
            answer.reason = Some(error.to_string());
            return answer;
        }
    };
    let host = canonical_host(target.raw_host());
    let info = RequestInfo {
        method: question.method.as_str(),
        host: &host,
        raw_host: target.raw_host(),
        path: &target.routed_path,
        query: question.uri.query().unwrap_or(""),
        headers: &question.headers,
        client_ip: question.client_ip,
    };
    // An `https://` URL asks about the routers served on TLS connections.
    let tls = question.uri.scheme_str() == Some("https");
    let Some(route) = runtime
        .routes(question.entry_point, tls)
        .and_then(|t| t.lookup(&info))
    else {
        answer.status = Some(404);
        answer.reason = Some("no router matches".into());
        return answer;
    };
    let router = &route.value;
    answer.router = Some(router.name.clone());
    answer.rule = Some(router.rule.clone());
    answer.priority = Some(router.priority);
    answer.service = Some(router.service.name().to_owned());

    let mut current = router.service.clone();
    loop {
        answer.path.push(current.name().to_owned());
        let next = match &*current {
            Service::LoadBalancer(lb) => {
                match lb.pick() {
                    Some(server) => answer.server = Some(server.url.clone()),
                    None => {
                        answer.status = Some(503);
                        answer.reason =
                            Some(format!("service `{}` has no available server", lb.name));
                    }
                }
                break;
            }
            Service::Weighted(weighted) => weighted.pick().cloned(),
            Service::Failover(failover) => failover.pick().cloned(),
            Service::Noop(name) => {
                answer.status = Some(503);
                answer.reason = Some(format!("service `{name}` never forwards"));
                break;
            }
            Service::Mirroring(mirroring) => {
                answer.mirrors = mirroring
                    .select()
                    .into_iter()
                    .filter_map(|i| mirroring.mirrors.get(i).map(|(s, _)| s.name().to_owned()))
                    .collect();
                Some(mirroring.main.clone())
            }
        };
        match next {
            Some(service) => current = service,
            None => {
                answer.status = Some(503);
                answer.reason = Some(format!("service `{}` has no child to pick", current.name()));
                break;
            }
        }
    }
    answer
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "entry point: {}", self.entry_point)?;
        match &self.router {
            None => writeln!(f, "router:      none matches -> 404")?,
            Some(router) => {
                writeln!(
                    f,
                    "router:      {router} (priority {})",
                    self.priority.unwrap_or(0)
                )?;
                writeln!(f, "rule:        {}", self.rule.as_deref().unwrap_or(""))?;
                writeln!(f, "service:     {}", self.path.join(" -> "))?;
                match &self.server {
                    Some(server) => writeln!(f, "server:      {server}")?,
                    None => writeln!(f, "server:      none")?,
                }
                if !self.mirrors.is_empty() {
                    writeln!(f, "mirrored to: {}", self.mirrors.join(", "))?;
                }
            }
        }
        if let (Some(status), Some(reason)) = (self.status, &self.reason) {
            writeln!(f, "answer:      {status} ({reason})")?;
        }
        Ok(())
    }
}
