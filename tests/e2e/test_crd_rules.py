"""Every rule in crds/*.yaml refuses a bad object, with a message that names the field; every
default is applied; `kubectl explain` knows every field. On both control planes.

The cases are generated from the CRD files: each schema constraint (required, enum, pattern,
minimum/maximum, minLength/maxLength, minItems/maxItems, list-type set/map) gets a value that
breaks it, put into a valid object; each CEL rule (`x-kubernetes-validations`) must have a
hand-written case in CEL_CASES (a rule has no generic counter-example), and a rule without one
fails `test_every_cel_rule_has_a_case`, so a new rule cannot go untested. Creates and updates are
dry runs (nothing is stored) except where a transition rule needs an object to change.
"""

from __future__ import annotations

import copy
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from operator_fixture import GROUP, ROOT, VERSION, Cluster, Plane, both_planes

pytestmark = pytest.mark.e2e

Path_ = tuple[str | int, ...]
DELETE = object()  # in a change: remove the field


def crds() -> dict[str, dict[str, Any]]:
    """Kind -> CRD, from crds/*.yaml."""
    found = {}
    for path in sorted((ROOT / "crds").glob("*.jibri.dev.yaml")):
        crd = yaml.safe_load(path.read_text())
        found[crd["spec"]["names"]["kind"]] = crd
    return found


CRDS = crds()


def schema_of(kind: str) -> dict[str, Any]:
    (version,) = CRDS[kind]["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def plural_of(kind: str) -> str:
    plural: str = CRDS[kind]["spec"]["names"]["plural"]
    return plural


# Valid objects to break, one per kind (the examples' specs), and valid values for what they
# leave out, so a bad value always lands in an otherwise valid object.
BASE: dict[str, dict[str, Any]] = {
    "RecordingSession": {"spec": {"environment": "meet", "room": "standup@conference.meet.example.com"}},
    "XmppEnvironment": next(
        doc
        for doc in yaml.safe_load_all((ROOT / "examples" / "environment.yaml").read_text())
        if doc["kind"] == "XmppEnvironment"
    ),
    "JibriPool": yaml.safe_load((ROOT / "examples" / "pool.yaml").read_text()),
}
CONDITIONS = [{"type": "Ready", "status": "True", "reason": "Fine", "message": "fine"}]
SAMPLES: dict[str, dict[Path_, Any]] = {
    "RecordingSession": {
        ("spec", "streamKeySecretRef"): {"name": "yt"},
        ("status",): {
            "phase": "Pending",
            "jibri": {"nickname": "j", "dialect": "current"},
            "conditions": CONDITIONS,
        },
    },
    "XmppEnvironment": {
        ("spec", "allowedNamespaces"): {
            "matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]
        },
        ("status",): {"conditions": CONDITIONS},
    },
    "JibriPool": {
        ("spec", "configDelivery"): {"mode": "mount", "path": "/etc/jitsi/jibri/jibri.conf"},
        ("spec", "schedule"): [{"start": "55 8-17 * * 1-5", "duration": "10m", "idleTarget": 3}],
        ("status",): {"conditions": CONDITIONS},
    },
}


# What else a sample needs to be valid (a stream key reference is only allowed in stream mode).
ALONG: dict[tuple[str, Path_], dict[Path_, Any]] = {
    ("RecordingSession", ("spec", "streamKeySecretRef")): {("spec", "mode"): "stream"},
}


@dataclass
class Case:
    """A bad object: `change` applied to the kind's valid object (after `before`, stored first, for a
    transition rule); the server must refuse it naming `field`, and saying `message` if given."""

    kind: str
    constraint: str
    field: str
    change: dict[Path_, Any]
    message: str = ""
    before: dict[Path_, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.field}.{self.constraint}"

    @property
    def status(self) -> bool:
        return any(path[0] == "status" for path in self.change)


def render(path: Path_) -> str:
    """`spec.allowedNamespaces.matchExpressions[0].key`, as the API server names a field."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


def walk(schema: dict[str, Any], path: Path_ = ()) -> Iterator[tuple[Path_, dict[str, Any]]]:
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], (*path, 0))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], (*path, "some-key"))


def breaking(path: Path_, node: dict[str, Any]) -> Iterator[tuple[str, Path_, Any]]:
    """(constraint, field path, a value that breaks it) for each constraint on `node`."""
    for name in node.get("required") or []:
        yield "required", (*path, name), DELETE
    if "enum" in node:
        yield "enum", path, "not-" + "-".join(map(str, node["enum"]))
    if "pattern" in node:
        pattern = re.compile(node["pattern"])
        candidates = ["has space", "@", "", "x", "/x/", "bad\tvalue@x@y"]
        value = next(c for c in candidates if not pattern.search(c))
        yield "pattern", path, value
    if "minimum" in node:
        yield "minimum", path, node["minimum"] - 1
    if "maximum" in node:
        yield "maximum", path, node["maximum"] + 1
    if "minLength" in node:
        yield "minLength", path, "x" * (node["minLength"] - 1)
    if "maxLength" in node:
        yield "maxLength", path, "x" * (node["maxLength"] + 1)
    if "minItems" in node:
        yield "minItems", path, []
    if "maxItems" in node:
        yield "maxItems", path, ["x"] * (node["maxItems"] + 1)
    if node.get("x-kubernetes-list-type") == "set":
        yield "list-type set", (*path, 1), "file"  # a duplicate of item 0 (set to the same below)
    if node.get("x-kubernetes-list-type") == "map":
        yield "list-type map", (*path, 1), "same-key"


def constraint_cases() -> list[Case]:
    cases = []
    for kind in CRDS:
        for path, node in walk(schema_of(kind)):
            for constraint, target, value in breaking(path, node):
                change: dict[Path_, Any] = {target: value}
                if constraint == "list-type set":
                    change = {
                        target[:-1]: ["file", "file"] if "enum" in (node.get("items") or {}) else ["a", "a"]
                    }
                    target = (*target[:-1], 1)
                elif constraint == "list-type map":
                    item = {key: "same" for key in node["x-kubernetes-list-map-keys"]}
                    item.update(status="True") if "status" in (node["items"].get("required") or []) else None
                    change = {target[:-1]: [item, dict(item)]}
                cases.append(Case(kind, constraint, render(target), change))
    return cases


# One counter-example per CEL rule: (kind, path of the node carrying it, rule) -> the change, and
# for a transition rule (oldSelf) what is stored first.
CEL_CASES: dict[tuple[str, str, str], tuple[dict[Path_, Any], dict[Path_, Any]]] = {
    ("RecordingSession", "spec", "self.mode != 'stream' || has(self.streamKeySecretRef)"): (
        {("spec", "mode"): "stream"}, {}
    ),
    ("RecordingSession", "spec", "self.mode == 'stream' || !has(self.streamKeySecretRef)"): (
        {("spec", "streamKeySecretRef"): {"name": "yt"}}, {}
    ),
    ("RecordingSession", "spec", "self.mode != 'sip' || has(self.sipAddress)"): ({("spec", "mode"): "sip"}, {}),
    ("RecordingSession", "spec", "self.mode == 'stream' || !has(self.youtubeBroadcastId)"): (
        {("spec", "youtubeBroadcastId"): "abc"}, {}
    ),
    ("RecordingSession", "spec.environment", "self == oldSelf"): ({("spec", "environment"): "other"}, {(): None}),
    ("RecordingSession", "spec.environmentNamespace", "self == oldSelf"): (
        {("spec", "environmentNamespace"): "other"}, {("spec", "environmentNamespace"): "first"}
    ),
    ("RecordingSession", "spec.room", "self == oldSelf"): ({("spec", "room"): "other@conference.x"}, {(): None}),
    ("RecordingSession", "spec.mode", "self == oldSelf"): ({("spec", "mode"): "sip"}, {(): None}),
    ("RecordingSession", "spec.stop", "!oldSelf || self"): ({("spec", "stop"): False}, {("spec", "stop"): True}),
    ("JibriPool", "spec", "self.replicas.min <= self.replicas.max"): (
        {("spec", "replicas"): {"min": 3, "max": 2}, ("spec", "idleTarget"): 1}, {}
    ),
    ("JibriPool", "spec", "self.idleTarget <= self.replicas.max"): ({("spec", "idleTarget"): 9}, {}),
    (
        "JibriPool",
        "spec",
        "!has(self.configDelivery) || !has(self.configDelivery.mode) || self.configDelivery.mode != 'env' || size(self.environments) == 1",
    ): ({("spec", "configDelivery"): {"mode": "env"}, ("spec", "environments"): ["a", "b"]}, {}),
    ("JibriPool", "spec.configDelivery", "!has(self.path) || (has(self.mode) && self.mode == 'mount')"): (
        {("spec", "configDelivery"): {"mode": "officialImage", "path": "/x/jibri.conf"}}, {}
    ),
    (
        "XmppEnvironment",
        "spec.allowedNamespaces.matchExpressions[0]",
        "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
    ): ({("spec", "allowedNamespaces"): {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["a"]}]}}, {}),
    ("XmppEnvironment", "spec.jibri", "has(self.controlLoginSecretRef)"): (
        {("spec", "jibri", "controlLoginSecretRef"): DELETE}, {}
    ),
    ("XmppEnvironment", "spec.jibri", "has(self.callLoginSecretRef)"): ({("spec", "jibri", "callLoginSecretRef"): DELETE}, {}),
    ("XmppEnvironment", "spec.jibri.usageTimeout", "duration(self).getMilliseconds() % 60000 == 0"): (
        {("spec", "jibri", "usageTimeout"): "90s"}, {}
    ),
}  # fmt: skip


def cel_rules() -> list[tuple[str, Path_, dict[str, Any]]]:
    return [
        (kind, path, rule)
        for kind in CRDS
        for path, node in walk(schema_of(kind))
        for rule in node.get("x-kubernetes-validations") or []
    ]


def cel_cases() -> list[Case]:
    cases = []
    for kind, path, rule in cel_rules():
        key = (kind, render(path), rule["rule"])
        if key not in CEL_CASES:
            continue  # test_every_cel_rule_has_a_case fails for it
        change, before = CEL_CASES[key]
        target = render(path) + rule.get("fieldPath", "")
        message = " ".join(rule["message"].split())
        words = "-".join(message.split()[:4])
        cases.append(
            Case(kind, f"cel:{words}", target, change, message, {k: v for k, v in before.items() if k != ()})
        )
        if () in before:  # a transition rule on a field the base already has: store the base first
            cases[-1].before = {("metadata", "labels"): {"stored": "first"}}
    return cases


CASES = constraint_cases() + cel_cases()


def test_every_cel_rule_has_a_case() -> None:
    rules = {(kind, render(path), rule["rule"]) for kind, path, rule in cel_rules()}
    assert rules - CEL_CASES.keys() == set(), "a CEL rule without a case in CEL_CASES"
    assert CEL_CASES.keys() - rules == set(), "a case in CEL_CASES for a rule no CRD has any more"


def test_the_generator_sees_every_kind_of_constraint() -> None:
    kinds = {case.constraint.partition(":")[0] for case in CASES}
    assert {
        "required",
        "enum",
        "pattern",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "minItems",
    } <= kinds
    assert {"list-type set", "list-type map", "cel"} <= kinds
    assert len(CASES) > 60, len(CASES)


# --- building objects ---------------------------------------------------------------------------


def ensure(obj: dict[str, Any], kind: str, path: Path_) -> Any:
    """The container at `path` in `obj`, made from SAMPLES where the base object lacks it."""
    node: Any = obj
    for depth, part in enumerate(path):
        prefix = path[: depth + 1]
        missing = part >= len(node) if isinstance(part, int) else part not in node
        if missing:
            sample = SAMPLES[kind].get(prefix)
            assert sample is not None, f"{kind}: add a valid sample for {render(prefix)} to SAMPLES"
            if isinstance(part, int):
                node.append(copy.deepcopy(sample))
            else:
                node[part] = copy.deepcopy(sample)
            for along, value in ALONG.get((kind, prefix), {}).items():
                ensure(obj, kind, along[:-1])[along[-1]] = value
        node = node[part]
    return node


def apply_change(obj: dict[str, Any], kind: str, change: dict[Path_, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for path, value in change.items():
        parent = ensure(obj, kind, path[:-1])
        if value is DELETE:
            if isinstance(parent, dict):
                parent.pop(path[-1], None)
        elif isinstance(path[-1], int) and path[-1] >= len(parent):
            parent.append(value)
        else:
            parent[path[-1]] = value
    return obj


def base_object(kind: str, name: str) -> dict[str, Any]:
    obj = copy.deepcopy(BASE[kind])
    obj.update(apiVersion=f"{GROUP}/{VERSION}", kind=kind, metadata={"name": name})
    return obj


@pytest.fixture(scope="module")
def namespaces() -> dict[str, str]:
    return {}


@pytest.fixture
def namespace(kube_plane: Plane, cluster: Cluster, namespaces: dict[str, str]) -> str:
    """One namespace per control plane for this module's objects."""
    if kube_plane.kind not in namespaces:
        name = f"crdrules-{uuid.uuid4().hex[:6]}"
        cluster.create_namespace(name)
        namespaces[kube_plane.kind] = name
    return namespaces[kube_plane.kind]


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ApiException) as refused:
        call(*args, **kwargs)
    assert refused.value.status == 422, refused.value.body
    return str(refused.value.body)


@both_planes
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_a_bad_object_is_refused_naming_the_field(cluster: Cluster, namespace: str, case: Case) -> None:
    custom, plural = cluster.custom, plural_of(case.kind)
    name = f"bad-{uuid.uuid4().hex[:8]}"
    valid = base_object(case.kind, name)
    if case.status or case.before:
        stored = custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, apply_change(valid, case.kind, case.before)
        )
        try:
            bad = apply_change(stored, case.kind, case.change)
            if case.status:
                bad = {
                    "metadata": {"resourceVersion": stored["metadata"]["resourceVersion"]},
                    "status": bad["status"],
                }
                body = refusal(
                    custom.patch_namespaced_custom_object_status,
                    GROUP, VERSION, namespace, plural, name, bad, dry_run="All",
                )  # fmt: skip
            else:
                body = refusal(
                    custom.replace_namespaced_custom_object,
                    GROUP, VERSION, namespace, plural, name, bad, dry_run="All",
                )  # fmt: skip
        finally:
            custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    else:
        bad = apply_change(valid, case.kind, case.change)
        body = refusal(
            custom.create_namespaced_custom_object, GROUP, VERSION, namespace, plural, bad, dry_run="All"
        )
    text = " ".join(body.replace('\\"', '"').split())
    assert f"{case.field}: " in text, f"{case.field} not named in: {text}"
    assert case.message in text, f"{case.message!r} not in: {text}"


# --- defaults -------------------------------------------------------------------------------------


def default_cases() -> list[tuple[str, Path_, Any]]:
    return [
        (kind, path, node["default"])
        for kind in CRDS
        for path, node in walk(schema_of(kind))
        if "default" in node
    ]


@both_planes
@pytest.mark.parametrize(
    ("kind", "path", "default"), default_cases(), ids=lambda v: render(v) if isinstance(v, tuple) else None
)
def test_defaults_are_applied(cluster: Cluster, namespace: str, kind: str, path: Path_, default: Any) -> None:
    """The field left out of an object whose parent exists comes back with its default."""
    obj = apply_change(base_object(kind, f"defaults-{uuid.uuid4().hex[:8]}"), kind, {path: DELETE})
    ensure(obj, kind, path[:-1])
    created = cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural_of(kind), obj, dry_run="All"
    )
    node: Any = created
    for part in path:
        node = node[part]
    expected = default
    if isinstance(default, dict):  # an object default is itself defaulted inside
        assert isinstance(node, dict) and default.items() <= node.items(), node
    else:
        assert node == expected


# --- explain -------------------------------------------------------------------------------------


@both_planes
@pytest.mark.parametrize("kind", list(CRDS))
def test_kubectl_explain_knows_every_field(
    kube_plane: Plane, cluster: Cluster, kind: str, tmp_path: Path
) -> None:
    def explain(*args: str) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(kube_plane.kubeconfig), "--cache-dir", str(tmp_path), "explain", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return " ".join(done.stdout.split())

    schema = schema_of(kind)
    top = explain(kind.lower())
    assert " ".join(schema["description"].split()) in top
    spec = explain(f"{kind.lower()}.spec")
    assert " ".join(schema["properties"]["spec"]["description"].split()) in spec
    recursive = explain(kind.lower(), "--recursive")
    for path, _ in walk(schema):
        names = [part for part in path if isinstance(part, str) and part != "some-key"]
        if names and path[0] in ("spec", "status"):
            assert f" {names[-1]} " in f" {recursive} ", f"{render(path)} missing from explain --recursive"
