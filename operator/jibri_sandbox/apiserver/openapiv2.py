"""OpenAPI v2 (`/openapi/v2`), as much as kubectl reads of it, in JSON or in gnostic's protobuf.

kubectl 1.32 fetches `/openapi/v2` for what openapi v3 does not settle: above all the
client-side validation of a `kind: List` file (`kubectl apply -f` of what `kubectl get -o
yaml` writes). It asks only for protobuf (`application/com.github.proto-openapi.spec.v2@v1.0
+protobuf`, gnostic's `openapi_v2.Document`) and cannot read anything else, so that is what
is served for that Accept, JSON otherwise, as kube-apiserver does.

What it holds: the definitions kubectl looks kinds up in (by `x-kubernetes-group-version-kind`),
no paths. A custom resource's definition is what kube-apiserver publishes for it: the CRD's
structural schema made v2-compatible (no defaults; a `x-kubernetes-preserve-unknown-fields`
node loses its type; no allOf/anyOf/oneOf/not), with the standard apiVersion, kind and a
`$ref` to ObjectMeta, so kubectl validates a List's custom resources as it would against a real
cluster (an unknown field is an error). A built-in kind is an object without properties: kubectl
validates nothing in it, as the emulation does not (see README, deliberate differences).
"""

from __future__ import annotations

import struct
from typing import Any

import yaml

from .kinds import Registry, ResourceType
from .openapi import META_REF, schema_name

Obj = dict[str, Any]
PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
# What kube-apiserver answers it with (the `@` is not a valid media type character in a response).
PROTOBUF_RESPONSE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
VERSION = "v1.32.0"

_TIME: Obj = {"type": "string", "format": "date-time"}
_STRING_MAP: Obj = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META: Obj = {
    "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
    "type": "object",
    "properties": {
        "annotations": _STRING_MAP,
        "creationTimestamp": _TIME,
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "deletionTimestamp": _TIME,
        "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set",
                       "x-kubernetes-patch-strategy": "merge"},
        "generateName": {"type": "string"},
        "generation": {"type": "integer", "format": "int64"},
        "labels": _STRING_MAP,
        "managedFields": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "atomic"},
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "ownerReferences": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-map-keys": ["uid"],
                            "x-kubernetes-list-type": "map", "x-kubernetes-patch-merge-key": "uid",
                            "x-kubernetes-patch-strategy": "merge"},
        "resourceVersion": {"type": "string"},
        "selfLink": {"type": "string"},
        "uid": {"type": "string"},
    },
}  # fmt: skip
CONVENTIONS = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
STANDARD_PROPERTIES: Obj = {
    "apiVersion": {
        "description": "APIVersion defines the versioned schema of this representation of an object. Servers should"
        " convert recognized schemas to the latest internal value, and may reject unrecognized values."
        f" More info: {CONVENTIONS}#resources",
        "type": "string",
    },
    "kind": {
        "description": "Kind is a string value representing the REST resource this object represents. Servers may"
        " infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase."
        f" More info: {CONVENTIONS}#types-kinds",
        "type": "string",
    },
    "metadata": {
        "description": f"Standard object's metadata. More info: {CONVENTIONS}#metadata",
        "$ref": f"#/definitions/{META_REF}",
    },
}
_NOT_IN_V2 = ("default", "nullable", "allOf", "anyOf", "oneOf", "not")


def v2_schema(schema: Obj) -> Obj:
    """A structural v3 schema made v2-compatible, as apiextensions-apiserver publishes it."""
    out = {key: value for key, value in schema.items() if key not in _NOT_IN_V2}
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.pop("type", None)  # kubectl would otherwise refuse the unknown fields it keeps
    if "properties" in out:
        out["properties"] = {name: v2_schema(sub) for name, sub in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = v2_schema(out["items"])
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = v2_schema(out["additionalProperties"])
    return out


def kind_definition(rt: ResourceType) -> Obj:
    gvk = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
    if not rt.schema:
        return {
            "description": f"{rt.kind} (built-in kind; its fields are not modelled here)",
            "type": "object",
            "x-kubernetes-group-version-kind": gvk,
        }
    definition = v2_schema(rt.schema)
    definition["properties"] = {**definition.get("properties", {}), **STANDARD_PROPERTIES}
    definition["x-kubernetes-group-version-kind"] = gvk
    return definition


def document(registry: Registry) -> Obj:
    definitions: Obj = {META_REF: OBJECT_META}
    for group, versions in registry.groups().items():
        for version in versions:
            for rt in registry.in_group_version(group, version):
                definitions[schema_name(rt)] = kind_definition(rt)
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": VERSION},
        "paths": {},
        "definitions": dict(sorted(definitions.items())),
    }


# --- gnostic's openapi_v2.Document in protobuf -----------------------------------------------------
#
# Field numbers from github.com/google/gnostic-models openapiv2/OpenAPIv2.proto, for the fields
# `document` writes. A message is {json name: (field number, kind)}; kinds: "string", "bool",
# "double", "int64", "any" (a value as YAML), "strings" (repeated), a message (dict), or
# ("map", message) for gnostic's repeated Named* pairs, ("repeated", message), ("type", None) for
# TypeItem, ("items", None) for ItemsItem, ("additional", None) for AdditionalPropertiesItem,
# "extensions" for the x-* keys (repeated NamedAny).

SCHEMA: dict[str, tuple[int, Any]] = {}
SCHEMA.update(
    {
        "$ref": (1, "string"),
        "format": (2, "string"),
        "title": (3, "string"),
        "description": (4, "string"),
        "maximum": (7, "double"),
        "exclusiveMaximum": (8, "bool"),
        "minimum": (9, "double"),
        "exclusiveMinimum": (10, "bool"),
        "maxLength": (11, "int64"),
        "minLength": (12, "int64"),
        "pattern": (13, "string"),
        "maxItems": (14, "int64"),
        "minItems": (15, "int64"),
        "uniqueItems": (16, "bool"),
        "maxProperties": (17, "int64"),
        "minProperties": (18, "int64"),
        "required": (19, "strings"),
        "enum": (20, "anys"),
        "additionalProperties": (21, ("additional", None)),
        "type": (22, ("type", None)),
        "items": (23, ("items", None)),
        "properties": (25, ("map", SCHEMA)),
        "x-": (31, "extensions"),
    }
)
INFO: dict[str, tuple[int, Any]] = {
    "title": (1, "string"),
    "version": (2, "string"),
    "description": (3, "string"),
}
DOCUMENT: dict[str, tuple[int, Any]] = {
    "swagger": (1, "string"),
    "info": (2, INFO),
    "paths": (8, {"x-": (1, "extensions")}),  # paths themselves (field 2) are not served
    "definitions": (9, ("map", SCHEMA)),
}


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _bytes(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def _any(value: Any) -> bytes:
    """gnostic's Any: the value as YAML (field 2)."""
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True)
    text = text.removesuffix("...\n")  # a bare scalar's document end marker
    return _bytes(2, text.encode())


def _named(number: int, name: str, value: bytes) -> bytes:
    return _bytes(number, _bytes(1, name.encode()) + _bytes(2, value))


def encode(message: Obj, fields: dict[str, tuple[int, Any]]) -> bytes:
    out = bytearray()
    extensions = []
    for key, value in message.items():
        if key.startswith("x-"):
            extensions.append((key, value))
            continue
        number, kind = fields[key]
        if kind in ("string", "bool", "double", "int64") and not value:
            continue  # proto3 writes no zero value (so `minimum: 0` is absent, as from kube-apiserver)
        if kind == "string":
            out += _bytes(number, str(value).encode())
        elif kind == "bool":
            out += _field(number, 0, _varint(int(bool(value))))
        elif kind == "double":
            out += _field(number, 1, struct.pack("<d", float(value)))
        elif kind == "int64":
            out += _field(number, 0, _varint(int(value)))
        elif kind == "strings":
            out += b"".join(_bytes(number, str(item).encode()) for item in value)
        elif kind == "anys":
            out += b"".join(_bytes(number, _any(item)) for item in value)
        elif isinstance(kind, dict):
            out += _bytes(number, encode(value, kind))
        elif kind[0] == "map":
            out += _bytes(
                number, b"".join(_named(1, name, encode(sub, kind[1])) for name, sub in value.items())
            )
        elif kind[0] == "type":
            types = value if isinstance(value, list) else [value]
            out += _bytes(number, b"".join(_bytes(1, t.encode()) for t in types))
        elif kind[0] == "items":
            schemas = value if isinstance(value, list) else [value]
            out += _bytes(number, b"".join(_bytes(1, encode(s, SCHEMA)) for s in schemas))
        elif kind[0] == "additional":
            inner = (
                _field(2, 0, _varint(int(value)))
                if isinstance(value, bool)
                else _bytes(1, encode(value, SCHEMA))
            )
            out += _bytes(number, inner)
        else:  # pragma: no cover - the tables above are all there is
            raise TypeError(kind)
    if extensions:
        number = fields["x-"][0]
        out += b"".join(_named(number, key, _any(value)) for key, value in sorted(extensions))
    return bytes(out)


def to_protobuf(doc: Obj) -> bytes:
    return encode(doc, DOCUMENT)


# --- and back, to check the tables against kube-apiserver's own protobuf (tests) ---------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _wire_fields(data: bytes) -> list[tuple[int, Any]]:
    pos, found = 0, []
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _read_varint(data, pos)
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire}")
        found.append((number, value))
    return found


def _read_any(data: bytes) -> Any:
    text = next((value for number, value in _wire_fields(data) if number == 2), b"").decode()
    return yaml.safe_load(text)


def _read_named(data: bytes) -> tuple[str, bytes]:
    fields = dict(_wire_fields(data))
    return fields[1].decode(), fields.get(2, b"")


def decode(data: bytes, fields: dict[str, tuple[int, Any]]) -> Obj:
    """The inverse of `encode`, for the same tables; unknown field numbers are skipped."""
    by_number = {number: (name, kind) for name, (number, kind) in fields.items()}
    out: Obj = {}
    for number, value in _wire_fields(data):
        if number not in by_number:
            continue
        name, kind = by_number[number]
        if kind == "extensions":
            key, raw = _read_named(value)
            out[key] = _read_any(raw)
        elif kind == "string":
            out[name] = value.decode()
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "double":
            number_value = struct.unpack("<d", value)[0]
            out[name] = int(number_value) if number_value.is_integer() else number_value
        elif kind == "int64":
            out[name] = value
        elif kind == "strings":
            out.setdefault(name, []).append(value.decode())
        elif kind == "anys":
            out.setdefault(name, []).append(_read_any(value))
        elif isinstance(kind, dict):
            out[name] = decode(value, kind)
        elif kind[0] == "map":
            out[name] = {
                key: decode(raw, kind[1])
                for key, raw in map(_read_named, (v for _, v in _wire_fields(value)))
            }
        elif kind[0] == "type":
            types = [v.decode() for _, v in _wire_fields(value)]
            out[name] = types[0] if len(types) == 1 else types
        elif kind[0] == "items":
            schemas = [decode(v, SCHEMA) for _, v in _wire_fields(value)]
            out[name] = schemas[0] if len(schemas) == 1 else schemas
        elif kind[0] == "additional":
            ((inner, raw),) = _wire_fields(value)
            out[name] = bool(raw) if inner == 2 else decode(raw, SCHEMA)
    return out
