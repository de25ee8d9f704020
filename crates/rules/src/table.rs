//! The routes of one entry point, ordered by priority and indexed by host.
//!
//! Lookup must return the first route, in global order (priority descending, then insertion
//! order), whose rule matches. Scanning every route would make the cost grow with the number of
//! routers, so routes whose rule is restricted to literal hosts are indexed: exact hosts in one map,
//! one-label wildcards (`*.example.com`) in another keyed by the parent domain. All other routes sit
//! in a fallback list. A lookup only visits the request host's exact bucket, the bucket of its
//! parent domain, and the fallback list, merging the three (each already sorted by global rank) so
//! the first match is still the globally first one.

use std::collections::HashMap;

use crate::request::RequestInfo;
use crate::Rule;

/// Default priority of a router without an explicit one: the byte length of its rule text.
pub fn default_priority(rule_text: &str) -> i64 {
    i64::try_from(rule_text.len()).unwrap_or(i64::MAX)
}

/// One routing entry.
#[derive(Clone, Debug)]
pub struct Route<T> {
    pub rule: Rule,
    pub priority: i64,
    pub value: T,
}

/// Host -> ranks. Keys come from the configuration, never from requests, so a fast hash is
/// safe here (requests only look up), and SipHash showed in the per-request profile.
type HostIndex = HashMap<String, Vec<u32>, foldhash::fast::RandomState>;

/// Routes of one entry point, ready for lookups.
#[derive(Clone, Debug)]
pub struct RouteTable<T> {
    /// Routes in lookup order; an index into this vector is a route's rank.
    routes: Vec<Route<T>>,
    /// Exact host -> ranks (ascending).
    exact: HostIndex,
    /// Parent domain of a one-label wildcard (`example.com` for `*.example.com`) -> ranks.
    wildcard: HostIndex,
    /// Ranks of routes that cannot be indexed by host (ascending).
    fallback: Vec<u32>,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            routes: Vec::new(),
            exact: HostIndex::default(),
            wildcard: HostIndex::default(),
            fallback: Vec::new(),
        }
    }
}

impl<T> RouteTable<T> {
    /// Orders the routes (priority descending; equal priorities keep the given order) and builds
    /// the host index.
    pub fn new(routes: Vec<Route<T>>) -> Self {
        let mut routes = routes;
        // Stable sort keeps insertion order among equal priorities.
        routes.sort_by_key(|r| std::cmp::Reverse(r.priority));
        let mut table = RouteTable {
            routes: Vec::new(),
            exact: HostIndex::default(),
            wildcard: HostIndex::default(),
            fallback: Vec::new(),
        };
        for (rank, route) in routes.iter().enumerate() {
            // More than u32::MAX routes is not a realistic configuration; treat any excess as
            // unindexable rather than truncating ranks.
            let Ok(rank) = u32::try_from(rank) else {
                break;
            };
            match route.rule.literal_hosts() {
                Some(hosts) => {
                    for host in hosts {
                        let (map, key) = match host.strip_prefix("*.") {
                            Some(parent) => (&mut table.wildcard, parent.to_string()),
                            None => (&mut table.exact, host),
                        };
                        let bucket = map.entry(key).or_default();
                        if bucket.last() != Some(&rank) {
                            bucket.push(rank);
                        }
                    }
                }
                None => table.fallback.push(rank),
            }
        }
        table.routes = routes;
        table
    }

    /// The first route, in lookup order, whose rule matches the request.
    pub fn lookup(&self, req: &RequestInfo<'_>) -> Option<&Route<T>> {
        let host = req.host.strip_suffix('.').unwrap_or(req.host);
        // The index holds lower-case keys; canonical hosts already are, so this rarely allocates.
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let empty: &[u32] = &[];
        let exact = self.exact.get(host).map_or(empty, Vec::as_slice);
        let wildcard = match host.find('.') {
            Some(dot) => self
                .wildcard
                .get(&host[dot + 1..])
                .map_or(empty, Vec::as_slice),
            None => empty,
        };
        let mut lists = [exact, wildcard, self.fallback.as_slice()];
        let mut last_tried = None;
        loop {
            // Take the smallest head among the three sorted lists.
            let mut best: Option<(usize, u32)> = None;
            for (i, list) in lists.iter().enumerate() {
                if let Some(&rank) = list.first() {
                    if best.is_none_or(|(_, r)| rank < r) {
                        best = Some((i, rank));
                    }
                }
            }
            let (i, rank) = best?;
            lists[i] = &lists[i][1..];
            // A route listed in both the exact and the wildcard bucket is tried once.
            if last_tried == Some(rank) {
                continue;
            }
            last_tried = Some(rank);
            let route = &self.routes[rank as usize];
            if route.rule.matches(req) {
                return Some(route);
            }
        }
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// Whether the table has no routes.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Routes in lookup order.
    pub fn iter(&self) -> impl Iterator<Item = &Route<T>> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Syntax;
    use http::HeaderMap;

    fn route(text: &str, priority: i64, value: usize) -> Route<usize> {
        Route {
            rule: Rule::parse(text, Syntax::V3).unwrap(),
            priority,
            value,
        }
    }

    fn req<'a>(host: &'a str, path: &'a str, headers: &'a HeaderMap) -> RequestInfo<'a> {
        RequestInfo {
            method: "GET",
            host,
            raw_host: host,
            path,
            query: "",
            headers,
            client_ip: None,
        }
    }

    #[test]
    fn default_priority_is_byte_length() {
        assert_eq!(
            default_priority("Host(`foo.com`) && PathPrefix(`/bar`)"),
            37
        );
        assert_eq!(default_priority("PathPrefix(`/api`)"), 18);
        assert_eq!(default_priority("Host(`é`)"), 10);
    }

    #[test]
    fn priority_and_ties() {
        let h = HeaderMap::new();
        let t = RouteTable::new(vec![
            route("PathPrefix(`/`)", 1, 0),
            route("PathPrefix(`/a`)", 5, 1),
            route("PathPrefix(`/a`)", 5, 2),
            route("Host(`x.com`)", -3, 3),
            route("Host(`x.com`) && Path(`/a/b`)", 5, 4),
        ]);
        let order: Vec<usize> = t.iter().map(|r| r.value).collect();
        assert_eq!(order, vec![1, 2, 4, 0, 3]);
        assert_eq!(t.lookup(&req("x.com", "/a/b", &h)).unwrap().value, 1);
        assert_eq!(t.lookup(&req("x.com", "/b", &h)).unwrap().value, 0);
        assert_eq!(t.len(), 5);
        assert!(!t.is_empty());
        let empty: RouteTable<usize> = RouteTable::default();
        assert!(empty.is_empty());
        assert!(empty.lookup(&req("x.com", "/", &h)).is_none());
    }

    #[test]
    fn host_index() {
        let h = HeaderMap::new();
        let t = RouteTable::new(vec![
            route("Host(`a.com`)", 10, 0),
            route("Host(`*.a.com`)", 9, 1),
            route("Host(`b.com`) || Host(`*.a.com`)", 8, 2),
            route("HostRegexp(`^c`)", 7, 3),
            route("Host(`x.a.com`) || Host(`*.a.com`)", 20, 4),
        ]);
        let v = |host| t.lookup(&req(host, "/", &h)).map(|r| r.value);
        assert_eq!(v("a.com"), Some(0));
        assert_eq!(v("A.COM"), Some(0));
        assert_eq!(v("a.com."), Some(0));
        assert_eq!(v("x.a.com"), Some(4));
        assert_eq!(v("y.a.com"), Some(4));
        assert_eq!(v("b.com"), Some(2));
        assert_eq!(v("c.com"), Some(3));
        assert_eq!(v("d.com"), None);
        assert_eq!(v(""), None);
    }

    /// Tiny deterministic generator so the property test needs no extra dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: usize) -> usize {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as usize) % n
        }
    }

    #[test]
    fn index_agrees_with_linear_scan() {
        let hosts = ["a.com", "b.com", "x.a.com", "y.b.com", "c", "x.y.a.com"];
        let host_pats = [
            "a.com",
            "b.com",
            "*.a.com",
            "*.b.com",
            "c",
            "*",
            "x.a.com",
            "*.y.a.com",
        ];
        let paths = ["/", "/api", "/api/v1", "/web"];
        let mut rng = Lcg(42);
        let h = HeaderMap::new();
        for _ in 0..200 {
            let n = 1 + rng.next(30);
            let mut routes = Vec::new();
            for i in 0..n {
                let leaf = |rng: &mut Lcg| match rng.next(5) {
                    0 | 1 => format!("Host(`{}`)", host_pats[rng.next(host_pats.len())]),
                    2 => format!("PathPrefix(`{}`)", paths[rng.next(paths.len())]),
                    3 => format!("HostRegexp(`{}`)", ["^a", "b", "com$"][rng.next(3)]),
                    _ => format!("Path(`{}`)", paths[rng.next(paths.len())]),
                };
                let a = leaf(&mut rng);
                let b = leaf(&mut rng);
                let text = match rng.next(5) {
                    0 => a,
                    1 => format!("{a} && {b}"),
                    2 => format!("{a} || {b}"),
                    3 => format!("!{a} && {b}"),
                    _ => format!("!({a} || {b})"),
                };
                let priority = rng.next(5) as i64 - 2;
                routes.push(route(&text, priority, i));
            }
            let mut sorted: Vec<&Route<usize>> = routes.iter().collect();
            sorted.sort_by_key(|r| std::cmp::Reverse(r.priority));
            let table = RouteTable::new(routes.clone());
            for host in hosts {
                for path in paths {
                    let r = req(host, path, &h);
                    let expected = sorted
                        .iter()
                        .find(|rt| rt.rule.matches(&r))
                        .map(|rt| rt.value);
                    let got = table.lookup(&r).map(|rt| rt.value);
                    assert_eq!(
                        got,
                        expected,
                        "host {host} path {path} routes {:?}",
                        routes
                            .iter()
                            .map(|r| (r.rule.text(), r.priority))
                            .collect::<Vec<_>>()
                    );
                }
            }
        }
    }
}
