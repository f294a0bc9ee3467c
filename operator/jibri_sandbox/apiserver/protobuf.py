"""Decode the protobuf bodies kubectl's typed commands send (`kubectl create namespace/configmap/secret/...`).

client-go's typed clients always write protobuf (`application/vnd.kubernetes.protobuf`)
and accept JSON back, so the server must read protobuf but never writes it. Only
the kinds kubectl's imperative `create` subcommands produce are mapped (field numbers
from k8s.io/api's generated.proto): Namespace, ConfigMap, Secret, ServiceAccount,
Service, Pod (the fields `kubectl run` sets), PodDisruptionBudget (`kubectl create pdb`), the
Eviction `kubectl drain` posts, and the reviews `kubectl auth can-i/whoami` send. Others get 415,
as a server without that type's protobuf would answer.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from . import errors

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

# A schema maps field number -> (json name, type); type is a primitive name, a nested
# schema dict, or ("repeated"|"map", element type). "int!" and "bool!" are Go pointers:
# sent only when set, so kept even when zero (DeleteOptions.gracePeriodSeconds: 0).
Schema = dict[int, tuple[str, Any]]
TIME: Schema = {1: ("seconds", "int"), 2: ("nanos", "int")}
OWNER_REF: Schema = {5: ("apiVersion", "string"), 1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                     6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")}  # fmt: skip
OBJECT_META: Schema = {
    1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"), 5: ("uid", "string"),
    6: ("resourceVersion", "string"), 7: ("generation", "int"), 8: ("creationTimestamp", "time"),
    9: ("deletionTimestamp", "time"), 10: ("deletionGracePeriodSeconds", "int"), 11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")), 13: ("ownerReferences", ("repeated", OWNER_REF)),
    14: ("finalizers", ("repeated", "string")),
}  # fmt: skip
INT_OR_STRING: Schema = {1: ("type", "int"), 2: ("intVal", "int"), 3: ("strVal", "string")}
SERVICE_PORT: Schema = {1: ("name", "string"), 2: ("protocol", "string"), 3: ("port", "int"),
                        4: ("targetPort", INT_OR_STRING), 5: ("nodePort", "int")}  # fmt: skip
RESOURCE_ATTRIBUTES: Schema = {1: ("namespace", "string"), 2: ("verb", "string"), 3: ("group", "string"),
                               4: ("version", "string"), 5: ("resource", "string"), 6: ("subresource", "string"),
                               7: ("name", "string")}  # fmt: skip
ACCESS_SPEC: Schema = {1: ("resourceAttributes", RESOURCE_ATTRIBUTES),
                       2: ("nonResourceAttributes", {1: ("path", "string"), 2: ("verb", "string")})}  # fmt: skip
REVIEWS: dict[str, Schema] = {
    "SelfSubjectAccessReview": {1: ("metadata", OBJECT_META), 2: ("spec", ACCESS_SPEC)},
    "SelfSubjectRulesReview": {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("namespace", "string")})},
    "SelfSubjectReview": {1: ("metadata", OBJECT_META)},
}
CONTAINER: Schema = {
    1: ("name", "string"), 2: ("image", "string"), 3: ("command", ("repeated", "string")),
    4: ("args", ("repeated", "string")), 5: ("workingDir", "string"),
    6: ("ports", ("repeated", {1: ("name", "string"), 2: ("hostPort", "int"), 3: ("containerPort", "int"),
                               4: ("protocol", "string")})),
    7: ("env", ("repeated", {1: ("name", "string"), 2: ("value", "string")})),
    8: ("resources", {}), 14: ("imagePullPolicy", "string"), 16: ("stdin", "bool"), 18: ("tty", "bool"),
}  # fmt: skip
POD_SPEC: Schema = {
    2: ("containers", ("repeated", CONTAINER)), 3: ("restartPolicy", "string"),
    4: ("terminationGracePeriodSeconds", "int"), 6: ("dnsPolicy", "string"), 7: ("nodeSelector", ("map", "string")),
    8: ("serviceAccountName", "string"), 10: ("nodeName", "string"), 19: ("schedulerName", "string"),
}  # fmt: skip
LABEL_SELECTOR: Schema = {
    1: ("matchLabels", ("map", "string")),
    2: ("matchExpressions", ("repeated", {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", ("repeated", "string"))})),
}  # fmt: skip
PRECONDITIONS: Schema = {1: ("uid", "string"), 2: ("resourceVersion", "string")}
DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int!"), 2: ("preconditions", PRECONDITIONS), 3: ("orphanDependents", "bool!"),
    4: ("propagationPolicy", "string"), 5: ("dryRun", ("repeated", "string")),
}  # fmt: skip
POLICY_KINDS: dict[str, Schema] = {
    "PodDisruptionBudget": {1: ("metadata", OBJECT_META),
                            2: ("spec", {1: ("minAvailable", INT_OR_STRING), 2: ("selector", LABEL_SELECTOR),
                                         3: ("maxUnavailable", INT_OR_STRING), 4: ("unhealthyPodEvictionPolicy", "string")})},
    "Eviction": {1: ("metadata", OBJECT_META), 2: ("deleteOptions", DELETE_OPTIONS)},
}  # fmt: skip
KINDS: dict[str, Schema] = {
    "Pod": {1: ("metadata", OBJECT_META), 2: ("spec", POD_SPEC)},
    "Namespace": {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", ("repeated", "string"))}),
                  3: ("status", {1: ("phase", "string")})},
    "ConfigMap": {1: ("metadata", OBJECT_META), 2: ("data", ("map", "string")), 3: ("binaryData", ("map", "bytes")),
                  4: ("immutable", "bool")},
    "Secret": {1: ("metadata", OBJECT_META), 2: ("data", ("map", "bytes")), 3: ("type", "string"),
               4: ("stringData", ("map", "string")), 5: ("immutable", "bool")},
    "ServiceAccount": {1: ("metadata", OBJECT_META), 4: ("automountServiceAccountToken", "bool")},
    "Service": {1: ("metadata", OBJECT_META),
                2: ("spec", {1: ("ports", ("repeated", SERVICE_PORT)), 2: ("selector", ("map", "string")),
                             3: ("clusterIP", "string"), 4: ("type", "string"), 7: ("externalName", "string")})},
}  # fmt: skip


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, Any]]:
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.append((number, value))
    return out


def _scalar(kind: Any, raw: Any) -> Any:
    if kind == "string":
        return bytes(raw).decode()
    if kind == "bytes":
        return base64.b64encode(bytes(raw)).decode()
    if kind == "bool":
        return bool(raw)
    if kind in ("int", "int!"):
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if kind == "bool!":
        return bool(raw)
    if kind == "time":
        seconds = decode_message(raw, TIME).get("seconds", 0)
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(kind, dict):
        return decode_message(raw, kind)
    raise ValueError(kind)


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for number, raw in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "repeated":
            obj.setdefault(name, []).append(_scalar(kind[1], raw))
        elif isinstance(kind, tuple) and kind[0] == "map":
            entry = dict(_fields(raw))
            obj.setdefault(name, {})[bytes(entry.get(1, b"")).decode()] = _scalar(kind[1], entry.get(2, b""))
        else:
            value = _scalar(kind, raw)
            if value not in ("", 0, False) or isinstance(kind, dict) or kind in ("int!", "bool!"):
                # Go's omitempty: zero values are absent, but a set pointer (int!, bool!) is kept
                obj[name] = value
    if schema is INT_OR_STRING:
        return obj.get("strVal") if obj.get("type") == 1 else obj.get("intVal", 0)  # type: ignore[return-value]
    return obj


def decode(body: bytes) -> dict[str, Any]:
    """A k8s protobuf envelope (magic + runtime.Unknown) to the JSON form of the object."""
    if not body.startswith(MAGIC):
        raise errors.bad_request("protobuf body without the k8s envelope")
    try:
        envelope = dict(_fields(body[len(MAGIC) :]))
        type_meta = decode_message(envelope.get(1, b""), {1: ("apiVersion", "string"), 2: ("kind", "string")})
        api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
        schema = (
            KINDS.get(kind)
            if api_version == "v1"
            else REVIEWS.get(kind)
            if api_version.startswith("auth")
            else POLICY_KINDS.get(kind)
            if api_version in ("policy/v1", "policy/v1beta1")
            else None
        )
        if schema is None:
            raise errors.unsupported_media_type(PROTOBUF, ["application/json", "application/yaml"])
        obj = decode_message(envelope.get(2, b""), schema)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"error decoding protobuf body: {exc}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}
