#!/usr/bin/env python3
"""Extracts facts from Traefik's CRD definitions for tests/definitions.rs.

Usage: extract-traefik-crd.py NAMES_OUT FIELDS_OUT SOURCE:GROUP... 

Each SOURCE is a multi-document CustomResourceDefinition YAML file (such as
docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml
in Traefik's repository); only the CRDs of GROUP are taken from it. The
outputs list names (group, kind, listKind, plural, singular, scope,
versions) and spec field paths with their schema type, one per line,
tab-separated. Add the provenance header by hand.

Path syntax: `.name` for a property, `[]` for array items, `.*` for the
values of a map; types are the schema `type`, `int-or-string`, or `any`.
"""
import sys

import yaml


def node_type(node):
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    return node.get("type", "any")


def walk(node, path, out):
    for name, sub in sorted(node.get("properties", {}).items()):
        p = f"{path}.{name}"
        out[p] = node_type(sub)
        walk(sub, p, out)
    if isinstance(node.get("items"), dict):
        walk(node["items"], path + "[]", out)
    if isinstance(node.get("additionalProperties"), dict):
        walk(node["additionalProperties"], path + ".*", out)


def main():
    names_out, fields_out, *sources = sys.argv[1:]
    names, fields = [], []
    for source in sources:
        file, group = source.rsplit(":", 1)
        with open(file) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for d in docs:
            spec = d["spec"]
            if spec["group"] != group:
                continue
            n = spec["names"]
            versions = ",".join(
                f"{v['name']}:{'served' if v.get('served') else '-'}:{'storage' if v.get('storage') else '-'}"
                for v in spec["versions"]
            )
            short = ",".join(n.get("shortNames", [])) or "-"
            names.append([group, n["kind"], n["listKind"], n["plural"], n["singular"], short, spec["scope"], versions])
            for v in spec["versions"]:
                out = {}
                walk(v["schema"]["openAPIV3Schema"]["properties"]["spec"], "spec", out)
                fields.extend([group, n["kind"], p, t] for p, t in out.items())
    with open(names_out, "w") as f:
        for row in sorted(names):
            f.write("\t".join(row) + "\n")
    with open(fields_out, "w") as f:
        for row in sorted(fields):
            f.write("\t".join(row) + "\n")


if __name__ == "__main__":
    main()
