#!/usr/bin/env python3
"""A Kubernetes API discovery stub on 127.0.0.1 for `kubectl apply --dry-run=client` on
machines without a cluster: kubectl needs the server's group/resource lists to map each
manifest's apiVersion/kind to a resource, even for a client-side dry run. Serves only
discovery (/api, /apis and the group-version resource lists) for the kinds deploy/ uses;
everything else is 404, so kubectl must run with --validate=false (no OpenAPI schemas here).

Usage: kube-discovery-stub.py PORTFILE  (writes the chosen port to PORTFILE, serves until killed)
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# group/version -> [(kind, plural, namespaced)]
RESOURCES = {
    "v1": [
        ("Namespace", "namespaces", False),
        ("ServiceAccount", "serviceaccounts", True),
        ("Service", "services", True),
        ("ConfigMap", "configmaps", True),
        ("Secret", "secrets", True),
    ],
    "apps/v1": [("Deployment", "deployments", True), ("DaemonSet", "daemonsets", True)],
    "rbac.authorization.k8s.io/v1": [
        ("ClusterRole", "clusterroles", False),
        ("ClusterRoleBinding", "clusterrolebindings", False),
        ("Role", "roles", True),
        ("RoleBinding", "rolebindings", True),
    ],
    "apiextensions.k8s.io/v1": [
        ("CustomResourceDefinition", "customresourcedefinitions", False)
    ],
    "coordination.k8s.io/v1": [("Lease", "leases", True)],
}
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def resource_list(group_version):
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {"name": plural, "singularName": kind.lower(), "namespaced": ns, "kind": kind, "verbs": VERBS}
            for kind, plural, ns in RESOURCES[group_version]
        ],
    }


def groups():
    out = []
    for gv in RESOURCES:
        if "/" not in gv:
            continue
        group, version = gv.split("/")
        entry = {"groupVersion": gv, "version": version}
        out.append({"name": group, "versions": [entry], "preferredVersion": entry})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        if path == "/api":
            body = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        elif path == "/apis":
            body = groups()
        elif path == "/api/v1":
            body = resource_list("v1")
        elif path.startswith("/apis/") and path[len("/apis/"):] in RESOURCES:
            body = resource_list(path[len("/apis/"):])
        elif path == "/version":
            body = {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
        else:
            self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":404}')
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()
