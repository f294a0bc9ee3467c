"""`meta.k8s.io/v1` Table output, which `kubectl get` asks for.

Custom resources print `Name` plus their `additionalPrinterColumns` (or `Age`
when none are declared), evaluated with the simple JSONPath subset CRDs allow;
built-ins print the columns of `builtins.TABLES`, or Name/Age. Dates are turned
into ages on the server, as apiextensions' table convertor does.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from . import builtins
from .kinds import ResourceType
from .meta import parse_time

Obj = dict[str, Any]
NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources may "
    "allow a client to request the generation of an appropriate name automatically. Name is primarily intended "
    "for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = hours // 24 % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def human_age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        return human_duration((datetime.now(UTC) - parse_time(timestamp)).total_seconds())
    except ValueError:
        return "<invalid>"


_SEGMENT = re.compile(
    r"""\.([A-Za-z0-9_\-$]+)|\[['"]([^'"]+)['"]\]|\[(\d+|\*)\]|\[\?\(@\.([\w.\-]+)\s*==\s*['"]?([^'")]*)['"]?\)\]"""
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Evaluate `.a.b[0]`, `.a['b.c']`, `.a[*].b` and `.a[?(@.k=="v")].b`; all results."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    current = [obj]
    pos = 0
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if not m:
            return []
        pos = m.end()
        name, quoted, index, fkey, fval = m.groups()
        nxt: list[Any] = []
        for value in current:
            if name is not None or quoted is not None:
                if isinstance(value, dict) and (name or quoted) in value:
                    nxt.append(value[name or quoted])
            elif index is not None:
                if isinstance(value, list):
                    if index == "*":
                        nxt.extend(value)
                    elif int(index) < len(value):
                        nxt.append(value[int(index)])
                elif isinstance(value, dict) and index == "*":
                    nxt.extend(value.values())
            elif isinstance(value, list):
                for item in value:
                    found = jsonpath(item, "." + fkey) if isinstance(item, dict) else []
                    if found and str(found[0]) == fval:
                        nxt.append(item)
        current = nxt
    return current


def _go_print(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _cell(col_type: str, value: Any) -> Any:
    if value is None:
        return None
    if col_type == "string":
        return _go_print(value)
    if col_type == "integer":
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if col_type == "number":
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
    if col_type == "boolean":
        return value if isinstance(value, bool) else None
    if col_type == "date":
        return human_age(value) if isinstance(value, str) else None
    return None


def column_definitions(rt: ResourceType) -> list[Obj]:
    if rt.builtin:
        cols, _ = builtins.TABLES.get(rt.kind, ([builtins._NAME, builtins._AGE], None))
        return [
            {
                "name": n,
                "type": t,
                "format": f,
                "description": NAME_DESCRIPTION if f == "name" else n,
                "priority": p,
            }
            for n, t, f, p in cols
        ]
    defs = [
        {"name": "Name", "type": "string", "format": "name", "description": NAME_DESCRIPTION, "priority": 0}
    ]
    defs += [
        {
            "name": c.name,
            "type": c.type,
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        }
        for c in rt.columns
    ]
    return defs


def cells(rt: ResourceType, obj: Obj) -> list[Any]:
    if rt.builtin:
        _, compute = builtins.TABLES.get(rt.kind, (None, None))
        if compute is None:
            return [obj["metadata"]["name"], human_age(obj["metadata"].get("creationTimestamp"))]
        return compute(obj)
    row: list[Any] = [obj["metadata"]["name"]]
    for col in rt.columns:
        found = jsonpath(obj, col.json_path)
        row.append(_cell(col.type, found[0]) if found else None)
    return row


def row(rt: ResourceType, obj: Obj, include: str) -> Obj:
    out: Obj = {"cells": cells(rt, obj)}
    if include == "Object":
        out["object"] = obj
    elif include != "None":
        out["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }
    return out


def table(rt: ResourceType, objs: list[Obj], list_meta: Obj, include: str, headers: bool = True) -> Obj:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(rt) if headers else [],
        "rows": [row(rt, o, include) for o in objs],
    }
