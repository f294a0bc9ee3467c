"""The three PATCH flavours: JSON merge (RFC 7386), JSON patch (RFC 6902) and strategic merge.

All of them return a new document and leave their input untouched (the input is
a stored object), sharing unchanged subtrees with it.

Strategic merge follows apimachinery's `strategicpatch` for what kubectl sends:
lists merged by their merge key (containers by name, ports by containerPort...),
primitive lists with the merge strategy (finalizers) unioned, and the directives
`$patch` (replace/delete/merge), `$retainKeys`, `$deleteFromPrimitiveList/<f>`
and `$setElementOrder/<f>`. Merge keys come from a small table of the core
types' `patchMergeKey` tags (see `MERGE_KEYS`), since the server has no Go structs.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from . import errors

log = logging.getLogger(__name__)


def clone(value: Any) -> Any:
    """A deep copy for JSON data, several times faster than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


# --- JSON merge patch --------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- JSON patch ---------------------------------------------------------------------------------


def _invalid(message: str) -> errors.ApiError:
    """kube-apiserver says no more than this of a JSON patch that cannot apply (a failed `test`,
    a missing path); `message` is kept for the emulation's log only."""
    log.debug("JSON patch refused: %s", message)
    return errors.ApiError(
        422, "Invalid", "the server rejected our request due to an error in our request", {}
    )


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _invalid(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            if part not in doc:
                raise _invalid(f'doc is missing path: "{path}": missing value')
            doc = doc[part]
        elif isinstance(doc, list):
            doc = doc[_index(doc, part, path, allow_end=False)]
        else:
            raise _invalid(f'doc is missing path: "{path}": missing value')
    return doc


def _index(lst: list[Any], part: str, path: str, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(lst)
    try:
        i = int(part)
    except ValueError:
        raise _invalid(f'invalid array index in "{path}"') from None
    if i < 0 or i > len(lst) or (i == len(lst) and not allow_end):
        raise _invalid(f'unable to access invalid index: {i} in "{path}"')
    return i


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise errors.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = clone(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise _invalid("unexpected kind of operation")
        kind, path = op["op"], op.get("path", "")
        parts = _pointer(path)
        if kind == "test":
            if _walk(doc, parts, path) != op.get("value"):
                raise _invalid(f"testing value {path} failed: test failed")
            continue
        if kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = clone(_walk(doc, src, op.get("from", "")))
            if kind == "move":
                doc = _remove(doc, src, op.get("from", ""))
            doc = _add(doc, parts, value, path)
        elif kind == "add":
            doc = _add(doc, parts, clone(op.get("value")), path)
        elif kind == "remove":
            doc = _remove(doc, parts, path)
        elif kind == "replace":
            _walk(doc, parts, path)  # must exist
            doc = _add(_remove(doc, parts, path), parts, clone(op.get("value")), path, replace=True)
        else:
            raise _invalid(f"unexpected kind of operation: {kind}")
    return doc


def _add(doc: Any, parts: list[str], value: Any, path: str, replace: bool = False) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, allow_end=True), value)
    else:
        raise _invalid(f'doc is missing path: "{path}": missing value')
    return doc


def _remove(doc: Any, parts: list[str], path: str) -> Any:
    if not parts:
        return None
    parent = _walk(doc, parts[:-1], path)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _invalid(f"unable to remove nonexistent key: {last}: missing value")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, path, allow_end=False)]
    else:
        raise _invalid(f'doc is missing path: "{path}": missing value')
    return doc


# --- strategic merge patch -----------------------------------------------------------------------

_CONTAINERS = {"containers", "initContainers", "ephemeralContainers"}
# field name -> merge key ('' means a primitive list merged as a set)
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "ownerReferences": "uid",
    "finalizers": "",
    "conditions": "type",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "secrets": "name",
}


def merge_key(path: tuple[str, ...]) -> str | None:
    """The merge key for the list at `path` (field names only), or None to replace the list."""
    name = path[-1] if path else ""
    if name == "ports":
        return "containerPort" if len(path) >= 2 and path[-2] in _CONTAINERS else "port"
    if name == "finalizers" and path[:1] == ("spec",):
        return None  # a namespace's spec.finalizers is replaced
    return MERGE_KEYS.get(name)


def strategic_merge(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            current = result.get(field)
            if isinstance(current, list):
                result[field] = [v for v in current if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = (*path, key)
        current = result.get(key)
        if isinstance(value, list):
            mkey = merge_key(sub)
            result[key] = _merge_list(current, value, mkey) if mkey is not None else clone(value)
        elif isinstance(value, dict):
            merged = strategic_merge(current, value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(existing: Any, patch: list[Any], key: str) -> list[Any]:
    current: list[Any] = list(existing) if isinstance(existing, list) else []
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [clone(p) for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    if key == "":  # primitive list with merge strategy: a union keeping order
        return current + [clone(p) for p in patch if p not in current]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            current.append(clone(item))
            continue
        index = next(
            (i for i, c in enumerate(current) if isinstance(c, dict) and c.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del current[index]
        elif index is None:
            current.append(strategic_merge({}, item))
        else:
            current[index] = strategic_merge(current[index], item)
    return current


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise errors.bad_request(f"error decoding patch: {exc}") from None
