"""Structural OpenAPI v3 schemas, as apiextensions applies them to custom objects.

The order is the real server's: prune unknown fields (reporting them, for
`fieldValidation`), drop non-nullable nulls, apply defaults, then validate
(types, enums, formats, bounds, required, list types, `allOf/anyOf/oneOf/not`)
and evaluate CEL rules (see `cel.py`). Messages are kube-openapi's wording,
wrapped in `field.Error`s exactly as apiextensions converts them.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from . import cel, errors
from .patch import clone

Schema = dict[str, Any]
_MISSING = object()

OBJECT_META_FIELDS = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
}  # fmt: skip


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _preserves(schema: Schema) -> bool:
    return bool(schema.get("x-kubernetes-preserve-unknown-fields"))


# --- pruning, nulls, defaults ----------------------------------------------------------------


def prune(value: Any, schema: Schema | None, path: str, unknown: list[str], root: bool = False) -> Any:
    """Drop fields the schema does not declare (in place); record their paths in `unknown`."""
    if schema is None:
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        additional = schema.get("additionalProperties")
        embedded = root or schema.get("x-kubernetes-embedded-resource")
        for key in list(value):
            sub_path = _join(path, key)
            if embedded and key in ("apiVersion", "kind"):
                continue
            if embedded and key == "metadata":
                if isinstance(value[key], dict):
                    for meta_key in [k for k in value[key] if k not in OBJECT_META_FIELDS]:
                        unknown.append(_join(sub_path, meta_key))
                        del value[key][meta_key]
                continue
            if props is not None and key in props:
                value[key] = prune(value[key], props[key], sub_path, unknown)
            elif isinstance(additional, dict):
                value[key] = prune(value[key], additional, f"{path}[{key}]", unknown)
            elif additional is True or _preserves(schema):
                continue
            else:
                unknown.append(sub_path)
                del value[key]
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            value[i] = prune(item, schema["items"], f"{path}[{i}]", unknown)
    return value


def default(value: Any, schema: Schema | None) -> Any:
    """Fill defaults of absent fields and replace or drop non-nullable nulls (in place)."""
    if schema is None:
        return value
    if isinstance(value, float) and value.is_integer() and schema.get("type") == "integer":
        return int(value)  # JSON has one number type; apimachinery decodes integral numbers as int64
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            current = value.get(key, _MISSING)
            if current is None and not sub.get("nullable"):
                if "default" in sub:
                    value[key] = clone(sub["default"])
                else:
                    del value[key]
            elif current is _MISSING and "default" in sub:
                value[key] = clone(sub["default"])
            if key in value:
                value[key] = default(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in list(value):
                if key not in (schema.get("properties") or {}):
                    value[key] = default(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            value[i] = default(item, schema["items"])
    return value


# --- validation ----------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(value: Any, schema: Schema) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    wanted = schema.get("type")
    if not wanted:
        return True
    actual = _type_name(value)
    if wanted == "integer" and isinstance(value, float):
        return value.is_integer()
    if wanted == "number":
        return actual in ("integer", "number")
    return bool(actual == wanted)


def _format_ok(fmt: str, value: str) -> bool:
    try:
        if fmt == "date-time":
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif fmt == "date":
            datetime.strptime(value, "%Y-%m-%d")
        elif fmt == "uuid":
            uuid.UUID(value)
        elif fmt == "ipv4":
            ipaddress.IPv4Address(value)
        elif fmt == "ipv6":
            ipaddress.IPv6Address(value)
        elif fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
        elif fmt == "byte":
            base64.b64decode(value, validate=True)
        elif fmt == "hostname":
            return bool(
                re.fullmatch(
                    r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*",
                    value,
                )
            )
    except ValueError:
        return False
    return True


_pattern_cache: dict[str, re.Pattern[str]] = {}


def _pattern(pattern: str) -> re.Pattern[str]:
    compiled = _pattern_cache.get(pattern)
    if compiled is None:
        compiled = _pattern_cache[pattern] = re.compile(pattern)
    return compiled


def _num(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


# Errors after which kube-apiserver evaluates no CEL rule at all (apiextensions' hasBlockingErr):
# a rule could not even look at such a value.
BLOCKING = {"Unsupported value", "Required value", "Too long", "Too many"}  # and a wrong type
NOT_CHECKED = "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"


def validate(
    value: Any,
    schema: Schema | None,
    path: str = "",
    old: Any = _MISSING,
    errs: list[errors.FieldError] | None = None,
) -> list[errors.FieldError]:
    """Validate `value` against a structural schema, then its CEL rules (`old` enables transition
    rules), as kube-apiserver does: every OpenAPI error first; then, unless one of them is
    blocking, every rule, a node's before its children's; if one is, no rule, and an error
    saying so where the schema has rules."""
    errs = _check(value, schema, path, old, [] if errs is None else errs)
    if schema is None or not _has_rules(schema):
        return errs
    if any(e.type in BLOCKING or e.reason == "FieldValueTypeInvalid" for e in errs):
        errs.append(errors.FieldError("Invalid value", "<nil>", NOT_CHECKED, None))
    else:
        check_rules(value, schema, path, old, errs)
    return errs


def _has_rules(schema: Any) -> bool:
    if isinstance(schema, dict):
        return bool(schema.get("x-kubernetes-validations")) or any(_has_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_has_rules(v) for v in schema)
    return False


def check_rules(
    value: Any, schema: Schema | None, path: str, old: Any, errs: list[errors.FieldError]
) -> None:
    """The CEL rules of `schema` and of everything under it, on `value`."""
    if schema is None or value is None:
        return
    rules = schema.get("x-kubernetes-validations")
    if rules:
        stype = schema.get("type") or ("object" if isinstance(value, dict) else _type_name(value))
        has_old = old is not _MISSING
        errs.extend(
            cel.check(
                rules,
                value,
                old if has_old else None,
                has_old,
                stype,
                path,
                unchanged=has_old and value == old,
            )
        )
    for child, sub, child_path, child_old in _children(value, schema, path, old):
        check_rules(child, sub, child_path, child_old, errs)


def _children(value: Any, schema: Schema, path: str, old: Any) -> Iterator[tuple[Any, Schema, str, Any]]:
    """The values under ``value`` that a schema describes, with their schema, path and old value
    (a map-list item's old value is the old item with the same keys; _MISSING where none)."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        old_map = old if isinstance(old, dict) else {}
        for key, sub in props.items():
            if key in value:
                yield value[key], sub, _join(path, key), old_map.get(key, _MISSING)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                if key not in props:
                    yield item, additional, f"{path}[{key}]", old_map.get(key, _MISSING)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        old_by_key: dict[Any, Any] = {}
        if schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
            old_by_key = {tuple(o.get(key) for key in keys): o for o in old if isinstance(o, dict)}
        for i, item in enumerate(value):
            item_old = (
                old_by_key.get(tuple(item.get(key) for key in keys), _MISSING)
                if old_by_key and isinstance(item, dict)
                else _MISSING
            )
            yield item, schema["items"], f"{path}[{i}]", item_old


def _check(
    value: Any, schema: Schema | None, path: str, old: Any, errs: list[errors.FieldError]
) -> list[errors.FieldError]:
    """OpenAPI validation only (no CEL)."""
    if schema is None:
        return errs
    name = path or "body"
    if value is None:
        if not schema.get("nullable") and (schema.get("type") or schema.get("x-kubernetes-int-or-string")):
            wanted = schema.get("type") or "string"
            errs.append(errors.type_invalid(path, "null", f'{name} in body must be of type {wanted}: "null"'))
        return errs
    if not _type_ok(value, schema):
        wanted = schema.get("type") or "integer,string"
        actual = _type_name(value)
        errs.append(errors.type_invalid(path, actual, f'{name} in body must be of type {wanted}: "{actual}"'))
        return errs
    if "enum" in schema and value not in schema["enum"]:
        errs.append(errors.not_supported(path, value, schema["enum"]))
    if isinstance(value, str):
        _validate_string(value, schema, path, name, errs)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _validate_number(value, schema, path, name, errs)
    elif isinstance(value, list):
        _validate_array(value, schema, path, name, old, errs)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, name, old, errs)
    _validate_combinators(value, schema, path, errs)
    return errs


def _validate_string(value: str, schema: Schema, path: str, name: str, errs: list[errors.FieldError]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errs.append(errors.too_long(path, schema["maxLength"]))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errs.append(
            errors.invalid(path, value, f"{name} in body should be at least {schema['minLength']} chars long")
        )
    if "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        errs.append(errors.invalid(path, value, f"{name} in body should match '{schema['pattern']}'"))
    fmt = schema.get("format")
    if fmt and not _format_ok(fmt, value):
        errs.append(errors.invalid(path, value, f'{name} in body must be of type {fmt}: "{value}"'))


def _validate_number(
    value: float, schema: Schema, path: str, name: str, errs: list[errors.FieldError]
) -> None:
    if "maximum" in schema:
        bound = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= bound:
            errs.append(errors.invalid(path, value, f"{name} in body should be less than {_num(bound)}"))
        elif value > bound:
            errs.append(
                errors.invalid(path, value, f"{name} in body should be less than or equal to {_num(bound)}")
            )
    if "minimum" in schema:
        bound = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= bound:
            errs.append(errors.invalid(path, value, f"{name} in body should be greater than {_num(bound)}"))
        elif value < bound:
            errs.append(
                errors.invalid(
                    path, value, f"{name} in body should be greater than or equal to {_num(bound)}"
                )
            )
    step = schema.get("multipleOf")
    if step and (value / step) != int(value / step):
        errs.append(errors.invalid(path, value, f"{name} in body should be a multiple of {_num(step)}"))


def _validate_array(
    value: list[Any], schema: Schema, path: str, name: str, old: Any, errs: list[errors.FieldError]
) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errs.append(errors.too_many(path, len(value), schema["maxItems"]))
    if "minItems" in schema and len(value) < schema["minItems"]:
        errs.append(
            errors.invalid(
                path, len(value), f"{name} in body should have at least {schema['minItems']} items"
            )
        )
    list_type = schema.get("x-kubernetes-list-type")
    if schema.get("uniqueItems") or list_type == "set":
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                errs.append(errors.duplicate(f"{path}[{i}]", item))
            seen.append(item)
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: set[Any] = set()
        for i, item in enumerate(value):
            if isinstance(item, dict):
                k = tuple(item.get(key) for key in keys)
                if k in seen_keys:
                    errs.append(errors.duplicate(f"{path}[{i}]", {key: item.get(key) for key in keys}))
                seen_keys.add(k)
    for child, sub, child_path, child_old in _children(value, schema, path, old):
        _check(child, sub, child_path, child_old, errs)


def _validate_object(
    value: dict[str, Any], schema: Schema, path: str, name: str, old: Any, errs: list[errors.FieldError]
) -> None:
    for req in schema.get("required") or ():
        if req not in value:
            errs.append(errors.required(_join(path, req)))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errs.append(errors.too_many(path, len(value), schema["maxProperties"]))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errs.append(
            errors.invalid(
                path, len(value), f"{name} in body should have at least {schema['minProperties']} properties"
            )
        )
    for child, sub, child_path, child_old in _children(value, schema, path, old):
        _check(child, sub, child_path, child_old, errs)


def _validate_combinators(value: Any, schema: Schema, path: str, errs: list[errors.FieldError]) -> None:
    for sub in schema.get("allOf") or ():
        _check(value, sub, path, _MISSING, errs)
    shown = value if not isinstance(value, dict | list) else _type_name(value)
    if "anyOf" in schema and not any(not _check(value, sub, path, _MISSING, []) for sub in schema["anyOf"]):
        errs.append(errors.invalid(path, shown, "must validate at least one schema (anyOf)"))
    if (
        "oneOf" in schema
        and sum(1 for sub in schema["oneOf"] if not _check(value, sub, path, _MISSING, [])) != 1
    ):
        errs.append(errors.invalid(path, shown, "must validate one and only one schema (oneOf)"))
    if "not" in schema and not _check(value, schema["not"], path, _MISSING, []):
        errs.append(errors.invalid(path, shown, "must not validate the schema (not)"))


def apply_schema(
    obj: dict[str, Any], schema: Schema | None, old: dict[str, Any] | None
) -> tuple[list[str], list[errors.FieldError]]:
    """Prune, default and validate a whole custom object in place: (unknown fields, errors)."""
    unknown: list[str] = []
    if schema is None:
        return unknown, []
    prune(obj, schema, "", unknown, root=True)
    default(obj, schema)
    # apiVersion/kind/metadata are the server's business, not the schema's.
    body_schema = {k: v for k, v in schema.items() if k != "required"}
    body_schema["required"] = [
        r for r in schema.get("required") or () if r not in ("apiVersion", "kind", "metadata")
    ]
    props = dict(schema.get("properties") or {})
    for meta_key in ("apiVersion", "kind", "metadata"):
        props.pop(meta_key, None)
    body_schema["properties"] = props
    errs = validate(obj, body_schema, "", _MISSING if old is None else old)
    return unknown, errs
