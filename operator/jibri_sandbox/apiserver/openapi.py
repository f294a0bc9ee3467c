"""OpenAPI v3, as much as kubectl reads of it.

- `kubectl explain` finds a kind's schema by `x-kubernetes-group-version-kind`
  in `/openapi/v3/apis/<group>/<version>` and prints its descriptions.
- `kubectl apply/create/replace` checks that PATCH operations take the
  `fieldValidation` query parameter, then leaves validation to the server.
- `kubectl apply` uses a strategic merge patch only where a PATCH operation
  lists that media type: none is listed here, so kubectl falls back to its
  compiled-in types for built-ins (strategic merge) and to JSON merge patches for
  custom resources, which is exactly what it sends a real server.

Built-in kinds get a thin schema (kind, apiVersion, metadata, spec, status);
`/openapi/v2` is openapiv2.py's (kubectl reads it to validate a `kind: List` file).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .kinds import Registry, ResourceType

Obj = dict[str, Any]
META_REF = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]

_OBJECT_META: Obj = {
    "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Name must be unique within a namespace."},
        "namespace": {"type": "string", "description": "Namespace defines the space within which each name must be unique."},
        "labels": {"type": "object", "additionalProperties": {"type": "string"},
                   "description": "Map of string keys and values that can be used to organize and categorize objects."},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "Annotations is an unstructured key value map stored with a resource."},
        "generateName": {"type": "string", "description": "GenerateName is an optional prefix, used by the server, to generate a unique name."},
        "uid": {"type": "string", "description": "UID is the unique in time and space value for this object."},
        "resourceVersion": {"type": "string", "description": "An opaque value that represents the internal version of this object."},
        "generation": {"type": "integer", "format": "int64", "description": "A sequence number representing a specific generation of the desired state."},
        "creationTimestamp": {"type": "string", "format": "date-time", "description": "CreationTimestamp is a timestamp representing the server time when this object was created."},
        "deletionTimestamp": {"type": "string", "format": "date-time", "description": "DeletionTimestamp is RFC 3339 date and time at which this resource will be deleted."},
        "finalizers": {"type": "array", "items": {"type": "string"}, "description": "Must be empty before the object is deleted from the registry."},
        "ownerReferences": {"type": "array", "items": {"type": "object"}, "description": "List of objects depended by this object."},
    },
}  # fmt: skip


def schema_name(rt: ResourceType) -> str:
    if rt.builtin:
        group = rt.group.split(".")[0] if rt.group else "core"
        return f"io.k8s.api.{group}.{rt.version}.{rt.kind}"
    return ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])


def _kind_schema(rt: ResourceType) -> Obj:
    gvk = [{"group": rt.group, "version": rt.version, "kind": rt.kind}]
    base: Obj = (
        dict(rt.schema)
        if rt.schema
        else {"type": "object", "description": f"{rt.kind} (built-in kind; schema not modelled)"}
    )
    props = dict(base.get("properties") or {})
    if not rt.schema:
        props.setdefault(
            "spec",
            {
                "type": "object",
                "description": f"Specification of the desired behavior of the {rt.kind}.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        )
        props.setdefault(
            "status",
            {
                "type": "object",
                "description": f"Most recently observed status of the {rt.kind}.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        )
    props["apiVersion"] = {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object.",
    }
    props["kind"] = {
        "type": "string",
        "description": "Kind is a string value representing the REST resource this object represents.",
    }
    props["metadata"] = {
        "allOf": [{"$ref": f"#/components/schemas/{META_REF}"}],
        "description": "Standard object's metadata.",
    }
    return {**base, "properties": props, "x-kubernetes-group-version-kind": gvk}  # fmt: skip


def _operations(rt: ResourceType) -> dict[str, Obj]:
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    ref = {"$ref": f"#/components/schemas/{schema_name(rt)}"}
    body = {"content": {"application/json": {"schema": ref}}}
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
    params = [
        {"name": n, "in": "query", "schema": {"type": "string"}}
        for n in ("dryRun", "fieldManager", "fieldValidation")
    ]
    name_params = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    if rt.namespaced:
        name_params.append(
            {"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}
        )

    def op(action: str, **extra: Any) -> Obj:
        return {"operationId": f"{action}{rt.kind}", "responses": ok, "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk, **extra}  # fmt: skip

    patch_body = {"content": {t: {"schema": {"type": "object"}} for t in PATCH_TYPES}, "required": True}
    item = {
        "get": op("get"),
        "put": op("put", requestBody=body, parameters=params),
        "patch": op(
            "patch",
            requestBody=patch_body,
            parameters=[*params, {"name": "force", "in": "query", "schema": {"type": "boolean"}}],
        ),
        "delete": op("delete"),
        "parameters": name_params,
    }
    collection = {
        "get": op("list"),
        "post": op("post", requestBody=body, parameters=params),
        "parameters": name_params[1:],
    }
    base = rt.path("{namespace}") if rt.namespaced else rt.path()
    paths = {base: collection, base + "/{name}": item}
    if rt.status:
        paths[base + "/{name}/status"] = {k: item[k] for k in ("get", "put", "patch", "parameters")}
    return paths


def gv_document(registry: Registry, group: str, version: str) -> Obj | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    schemas: Obj = {META_REF: _OBJECT_META}
    paths: Obj = {}
    for rt in types:
        schemas[schema_name(rt)] = _kind_schema(rt)
        paths.update(_operations(rt))
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.0"}, "paths": paths,
            "components": {"schemas": schemas}}  # fmt: skip


def _gv_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index(registry: Registry) -> Obj:
    paths = {}
    for group, versions in registry.groups().items():
        for version in versions:
            doc = gv_document(registry, group, version)
            digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()
            key = _gv_key(group, version)
            paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
    return {"paths": paths}
