"""Discovery documents: the legacy ones (/api, /apis, group versions) and the aggregated v2
(`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`) that kubectl 1.32
asks for first. Both are computed from the registry, so CRDs appear as soon as they are
established."""

from __future__ import annotations

from typing import Any

from .kinds import Registry, ResourceType

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
SUB_VERBS = ["get", "patch", "update"]
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-jibri-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}
Obj = dict[str, Any]


def wants_aggregated(accept: str) -> str | None:
    """The aggregated media type the client accepts, if any (v2 preferred)."""
    for part in accept.split(","):
        compact = part.replace(" ", "")
        if "as=APIGroupDiscoveryList" in compact and "g=apidiscovery.k8s.io" in compact:
            return AGGREGATED_V2 if "v=v2;" in compact + ";" else AGGREGATED_V2BETA1
    return None


def _legacy_resources(rt: ResourceType) -> list[Obj]:
    main: Obj = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        main["shortNames"] = list(rt.short_names)
    if rt.categories:
        main["categories"] = list(rt.categories)
    out = [main]
    if rt.status:
        out.append(
            {
                "name": f"{rt.plural}/status",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": SUB_VERBS,
            }
        )
    if rt.builtin and rt.kind == "Pod":
        out.append(
            {
                "name": "pods/binding",
                "singularName": "",
                "namespaced": True,
                "kind": "Binding",
                "verbs": ["create"],
            }
        )
        # kubectl drain looks for exactly this entry (name, kind, group and version) to use evictions
        out.append({"name": "pods/eviction", "singularName": "", "namespaced": True, "group": "policy",
                    "version": "v1", "kind": "Eviction", "verbs": ["create"]})  # fmt: skip
    if rt.scale:
        out.append({"name": f"{rt.plural}/scale", "singularName": "", "namespaced": rt.namespaced, "group": "autoscaling",
                    "version": "v1", "kind": "Scale", "verbs": SUB_VERBS})  # fmt: skip
    return out


def resource_list(registry: Registry, group: str, version: str) -> Obj:
    gv = f"{group}/{version}" if group else version
    resources = [r for rt in registry.in_group_version(group, version) for r in _legacy_resources(rt)]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def core_versions(address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]}  # fmt: skip


def _group(name: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def group_list(registry: Registry) -> Obj:
    groups = [_group(g, vs) for g, vs in registry.groups().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str) -> Obj | None:
    versions = registry.groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _aggregated_resource(rt: ResourceType) -> Obj:
    kind = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    res: Obj = {
        "resource": rt.plural,
        "responseKind": kind,
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": rt.singular,
        "verbs": list(rt.verbs),
    }
    if rt.short_names:
        res["shortNames"] = list(rt.short_names)
    if rt.categories:
        res["categories"] = list(rt.categories)
    subs = []
    if rt.status:
        subs.append({"subresource": "status", "responseKind": kind, "verbs": SUB_VERBS})
    if rt.builtin and rt.kind == "Pod":
        subs.append(
            {
                "subresource": "binding",
                "responseKind": {"group": "", "version": "v1", "kind": "Binding"},
                "verbs": ["create"],
            }
        )
        subs.append({"subresource": "eviction", "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
                     "verbs": ["create"]})  # fmt: skip
    if rt.scale:
        subs.append({"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                     "verbs": SUB_VERBS})  # fmt: skip
    if subs:
        res["subresources"] = subs
    return res


def aggregated(registry: Registry, core: bool, media_type: str) -> Obj:
    items = []
    for name, versions in registry.groups().items():
        if bool(name) == core:
            continue
        items.append(
            {
                "metadata": {"name": name, "creationTimestamp": None},
                "versions": [
                    {"version": v, "resources": [_aggregated_resource(rt) for rt in registry.in_group_version(name, v)],
                     "freshness": "Current"}
                    for v in versions
                ],
            }
        )  # fmt: skip
    api_version = "apidiscovery.k8s.io/v2" if media_type == AGGREGATED_V2 else "apidiscovery.k8s.io/v2beta1"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}
