//! Route lookup cost as the number of host-indexed routers grows (10 / 1,000 / 10,000).
//! With the host index the per-lookup cost should stay roughly flat.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::HeaderMap;
use sluice_rules::{default_priority, RequestInfo, Route, RouteTable, Rule, Syntax};

fn table(n: usize) -> RouteTable<usize> {
    let mut routes = Vec::with_capacity(n + 3);
    for i in 0..n {
        let text = format!("Host(`svc-{i}.example.com`) && PathPrefix(`/api`)");
        routes.push(Route {
            priority: default_priority(&text),
            rule: Rule::parse(&text, Syntax::V3).unwrap(),
            value: i,
        });
    }
    // A few rules the host index cannot hold, at low priority, as a real entry point would have.
    for (k, text) in [
        "PathPrefix(`/healthz`)",
        r"HostRegexp(`^[a-z]+\.internal\.example\.com$`)",
        "Host(`*`) && Path(`/ping`)",
    ]
    .into_iter()
    .enumerate()
    {
        routes.push(Route {
            priority: 1,
            rule: Rule::parse(text, Syntax::V3).unwrap(),
            value: n + k,
        });
    }
    RouteTable::new(routes)
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    let headers = HeaderMap::new();
    for n in [10usize, 1_000, 10_000] {
        let table = table(n);
        let host = format!("svc-{}.example.com", n / 2);
        let req = RequestInfo {
            method: "GET",
            host: &host,
            raw_host: &host,
            path: "/api/users/42",
            query: "",
            headers: &headers,
            client_ip: None,
        };
        assert_eq!(table.lookup(&req).map(|r| r.value), Some(n / 2));
        group.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
            b.iter(|| table.lookup(std::hint::black_box(req)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_lookup);
criterion_main!(benches);
