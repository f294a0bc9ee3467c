"""What the server serves: resource types and the registry that finds them.

A `ResourceType` is one served group/version/resource. Objects are stored once
per group/resource (`storage`), whatever version they were written in, the way
a CRD with `conversion: None` behaves: reading in another version only rewrites
`apiVersion`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Column:
    """An additionalPrinterColumn (or a built-in default column) for Table output."""

    name: str
    type: str
    json_path: str
    description: str = ""
    format: str = ""
    priority: int = 0


@dataclass(frozen=True)
class ScaleSpec:
    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str | None = None


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status: bool = False
    scale: ScaleSpec | None = None
    schema: dict[str, Any] | None = None
    columns: tuple[Column, ...] = ()
    builtin: bool = True
    generation: bool = False
    selectable_fields: tuple[str, ...] = ()
    field_labels: tuple[str, ...] = ()
    return_deleted: bool = True
    name_rule: str = "subdomain"
    store_as: tuple[str, str] | None = None  # another type's storage (events.k8s.io/v1 events)
    to_storage: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    from_storage: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage(self) -> tuple[str, str]:
        return self.store_as or (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def group_version(self) -> str:
        return self.api_version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes' version ordering: GA > beta > alpha, then higher numbers, then others by name."""
    m = _VERSION_RE.match(version)
    if not m:
        return (0, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 3, "beta": 2, "alpha": 1}[stage]
    return (rank, major, minor, "")


class Registry:
    """Served resource types, by group/version/plural and by kind; changes when CRDs do."""

    def __init__(self) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        self._order: dict[str, list[str]] = {}  # group -> versions, preferred first
        self.generation = 0  # bumped on every change; discovery and OpenAPI hashes follow it

    def add(self, rt: ResourceType) -> None:
        self._by_gvr[(rt.group, rt.version, rt.plural)] = rt
        self._reorder(rt.group)

    def remove_storage(self, group: str, plural: str) -> None:
        for key in [k for k in self._by_gvr if k[0] == group and k[2] == plural]:
            del self._by_gvr[key]
        self._reorder(group)

    def _reorder(self, group: str) -> None:
        versions = {v for (g, v, _) in self._by_gvr if g == group}
        if versions:
            self._order[group] = sorted(versions, key=version_priority, reverse=True)
        else:
            self._order.pop(group, None)
        self.generation += 1

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred first; core group is ''."""
        return self._order

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for (g, v, _), rt in self._by_gvr.items() if g == group and v == version]

    def all(self) -> list[ResourceType]:
        return list(self._by_gvr.values())

    def preferred(self, group: str, plural: str) -> ResourceType | None:
        for version in self._order.get(group, []):
            rt = self._by_gvr.get((group, version, plural))
            if rt is not None:
                return rt
        return None

    def by_storage(self, storage: tuple[str, str]) -> ResourceType | None:
        """The preferred served type that stores its objects in `storage` (its own group first)."""
        rt = self.preferred(*storage)
        if rt is not None:
            return rt
        return next((rt for rt in self._by_gvr.values() if rt.storage == storage), None)

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for (g, v, _), rt in self._by_gvr.items():
            if g == group and v == version and rt.kind == kind:
                return rt
        return None

    def storages(self) -> list[tuple[str, str]]:
        return sorted({rt.storage for rt in self._by_gvr.values()})
