"""CustomResourceDefinitions: validating them, their status, and the resource types they serve.

A CRD is accepted, then its controller (here: right after the create, as a
separate write, so watchers see ADDED then MODIFIED like on a real cluster)
sets `NamesAccepted` and `Established`. Deleting one marks it Terminating; the
instances are deleted by the collector (gc.py) before the CRD itself goes.
"""

from __future__ import annotations

from typing import Any

from . import errors, meta
from .kinds import Column, ResourceType, ScaleSpec

CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
Obj = dict[str, Any]


def check(crd: Obj) -> list[errors.FieldError]:
    found: list[errors.FieldError] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural = spec.get("group") or "", names.get("plural") or ""
    for path, value in (
        ("spec.group", group),
        ("spec.names.plural", plural),
        ("spec.names.kind", names.get("kind")),
    ):
        if not value:
            found.append(errors.required(path))
    if group and plural and crd["metadata"].get("name") != f"{plural}.{group}":
        found.append(
            errors.invalid(
                "metadata.name", crd["metadata"].get("name"), 'must be spec.names.plural+"."+spec.group'
            )
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        found.append(errors.not_supported("spec.scope", spec.get("scope", ""), ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions or sum(1 for v in versions if v.get("storage")) != 1:
        found.append(
            errors.invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    for i, version in enumerate(versions):
        if not version.get("name"):
            found.append(errors.required(f"spec.versions[{i}].name"))
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            found.append(
                errors.required(f"spec.versions[{i}].schema.openAPIV3Schema", "schemas are required")
            )
        elif schema.get("type") != "object":
            found.append(
                errors.invalid(
                    f"spec.versions[{i}].schema.openAPIV3Schema.type",
                    schema.get("type", ""),
                    "must be object at the root",
                )
            )
    return found


def established_status(crd: Obj) -> Obj:
    names = dict((crd.get("spec") or {}).get("names") or {})
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", names.get("kind", "") + "List")
    now = meta.now()
    storage = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
    stored = list((crd.get("status") or {}).get("storedVersions") or [])
    return {
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found",
             "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": stored + [v for v in storage if v not in stored],
    }  # fmt: skip


def terminating_status(crd: Obj) -> Obj:
    status = dict(crd.get("status") or {})
    conditions = [c for c in status.get("conditions") or () if c.get("type") != "Terminating"]
    conditions.append(
        {"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
         "message": "CustomResource deletion is in progress", "lastTransitionTime": meta.now()}
    )  # fmt: skip
    status["conditions"] = conditions
    return status


def _columns(version: Obj) -> tuple[Column, ...]:
    cols = version.get("additionalPrinterColumns")
    if not cols:
        return (Column("Age", "date", ".metadata.creationTimestamp"),)
    return tuple(
        Column(
            c["name"],
            c.get("type", "string"),
            c.get("jsonPath", ""),
            c.get("description")
            or f"Custom resource definition column (in JSONPath format): {c.get('jsonPath', '')}",
            c.get("format", ""),
            int(c.get("priority", 0)),
        )
        for c in cols
    )


def resource_types(crd: Obj) -> list[ResourceType]:
    spec = crd["spec"]
    names = spec["names"]
    storage_version = next((v["name"] for v in spec["versions"] if v.get("storage")), "")
    types = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        sub = version.get("subresources") or {}
        scale = sub.get("scale")
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in sub,
                scale=ScaleSpec(
                    scale["specReplicasPath"], scale["statusReplicasPath"], scale.get("labelSelectorPath")
                )
                if isinstance(scale, dict)
                else None,
                schema=(version.get("schema") or {}).get("openAPIV3Schema"),
                columns=_columns(version),
                builtin=False,
                generation=True,
                selectable_fields=tuple(
                    f["jsonPath"].lstrip(".") for f in version.get("selectableFields") or ()
                ),
                field_labels=("metadata.name", "metadata.namespace"),
                extra={"storage_version": storage_version, "crd": crd["metadata"]["name"]},
            )
        )
    return types
