"""/openapi/v2 of the sandbox API server: the document kubectl validates a `kind: List` with,
and gnostic's protobuf encoding of it (what kubectl asks for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from jibri_sandbox.apiserver import builtins, crds, openapiv2
from jibri_sandbox.apiserver.kinds import Registry

ROOT = Path(__file__).resolve().parents[2]


def registry() -> Registry:
    found = Registry()
    for rt in builtins.builtin_types():
        found.add(rt)
    for path in sorted((ROOT / "crds").glob("*.jibri.dev.yaml")):
        for rt in crds.resource_types(yaml.safe_load(path.read_text())):
            found.add(rt)
    return found


def without_zeros(value: Any) -> Any:
    """What proto3 keeps: no zero scalars (a `minimum: 0` is not on the wire)."""
    if isinstance(value, dict):
        return {
            key: sub if key.startswith("x-") else without_zeros(sub)  # extensions travel as YAML, whole
            for key, sub in value.items()
            if not (isinstance(sub, (int, float, str)) and not isinstance(sub, bool) and not sub)
            and sub is not False
        }
    if isinstance(value, list):
        return [without_zeros(item) for item in value]
    return value


def test_custom_resources_are_published_as_kube_apiserver_does() -> None:
    doc = openapiv2.document(registry())
    session = doc["definitions"]["dev.jibri.v1alpha1.RecordingSession"]
    assert session["x-kubernetes-group-version-kind"] == [
        {"group": "jibri.dev", "kind": "RecordingSession", "version": "v1alpha1"}
    ]
    spec = session["properties"]["spec"]
    assert "default" not in spec["properties"]["mode"], "v2 carries no defaults"
    assert spec["properties"]["mode"]["enum"] == ["file", "stream", "sip"]
    assert spec["properties"]["appData"] == {
        "description": spec["properties"]["appData"]["description"],
        "x-kubernetes-preserve-unknown-fields": True,
    }, "a node keeping unknown fields has no type"
    assert (
        session["properties"]["metadata"]["$ref"]
        == "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    )
    assert (
        "managedFields" in doc["definitions"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]
    )
    config_map = doc["definitions"]["io.k8s.api.core.v1.ConfigMap"]
    assert "properties" not in config_map, "built-in kinds are not validated client-side"


def test_protobuf_round_trip() -> None:
    doc = openapiv2.document(registry())
    encoded = openapiv2.to_protobuf(doc)
    decoded = openapiv2.decode(encoded, openapiv2.DOCUMENT)
    assert decoded["swagger"] == "2.0" and decoded["info"] == doc["info"]
    assert decoded["definitions"] == without_zeros(doc["definitions"])


def test_protobuf_wire_format_by_hand() -> None:
    """Field numbers of gnostic's OpenAPIv2.proto: Document.swagger 1, info 2, definitions 9;
    NamedSchema name 1, value 2; Schema description 4, minimum 9 (double), type 22 (TypeItem.value 1)."""
    doc = {"swagger": "2.0", "definitions": {"A": {"description": "d", "minimum": 1, "type": "integer"}}}
    schema = (
        b"\x22\x01d"
        + b"\x49"
        + (1.0).hex().encode()[:0]
        + bytes.fromhex("000000000000f03f")
        + b"\xb2\x01\x09\x0a\x07integer"
    )
    named = b"\x0a\x01A" + b"\x12" + bytes([len(schema)]) + schema
    definitions = b"\x0a" + bytes([len(named)]) + named
    assert openapiv2.to_protobuf(doc) == b"\x0a\x032.0" + b"\x4a" + bytes([len(definitions)]) + definitions
