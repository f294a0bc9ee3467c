"""Pure parts of the sandbox API server: selectors, patches, schemas, CEL, tables."""

from __future__ import annotations

from typing import Any

import pytest

from jibri_sandbox.apiserver import errors, patch, schema, selectors, tables
from jibri_sandbox.apiserver.store import Event, Store


def obj(name: str = "x", labels: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels or {}}, **body}


# --- selectors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("a in (x, y)", {"a": "y"}, True),
        ("a notin (x,y)", {"a": "y"}, False),
        ("a notin (x,y)", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": "1"}, False),
        ("a,b=c", {"a": "1", "b": "c"}, True),
        ("example.com/role=db,tier in (back)", {"example.com/role": "db", "tier": "back"}, True),
        ("n>3", {"n": "5"}, True),
        ("n<3", {"n": "5"}, False),
        ("", {}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    match = selectors.label_matcher(selector)
    assert (match is None or match(obj(labels=labels))) == expected


@pytest.mark.parametrize("bad", ["a in x", "a in (x", "=b", "a b"])
def test_malformed_label_selectors_are_400(bad: str) -> None:
    with pytest.raises(errors.ApiError) as err:
        selectors.label_matcher(bad)
    assert err.value.code == 400


def test_field_selectors_only_on_declared_fields() -> None:
    match = selectors.field_matcher("metadata.name=x,spec.nodeName!=n2", {"metadata.name", "spec.nodeName"})
    assert match is not None
    assert match(obj("x", spec={"nodeName": "n1"})) and not match(obj("x", spec={"nodeName": "n2"}))
    assert match(obj("x"))  # an absent field is the empty string
    with pytest.raises(errors.ApiError) as err:
        selectors.field_matcher("spec.other=1", {"metadata.name"})
    assert err.value.code == 400 and "field label not supported: spec.other" in err.value.message


def test_selector_from_a_label_selector_object() -> None:
    text = selectors.selector_from_match(
        {
            "matchLabels": {"app": "j"},
            "matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}],
        }
    )
    assert text == "app=j,t in (a,b)"


# --- patches -----------------------------------------------------------------------------------------


def test_merge_patch_is_rfc7386_and_leaves_its_input_alone() -> None:
    original = {"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"}
    result = patch.merge_patch(original, {"a": {"b": None, "d": 3}, "l": [3], "k": None})
    assert result == {"a": {"c": 2, "d": 3}, "l": [3]}
    assert original == {"a": {"b": 1, "c": 2}, "l": [1, 2], "k": "v"}


def test_json_patch_operations() -> None:
    doc = {"spec": {"items": ["a", "b"], "n": 1}, "x/y": {"~": 1}}
    ops = [
        {"op": "add", "path": "/spec/items/-", "value": "c"},
        {"op": "add", "path": "/spec/items/0", "value": "z"},
        {"op": "remove", "path": "/spec/items/1"},
        {"op": "replace", "path": "/spec/n", "value": 2},
        {"op": "copy", "from": "/spec/n", "path": "/spec/m"},
        {"op": "move", "from": "/x~1y/~0", "path": "/spec/moved"},
        {"op": "test", "path": "/spec/n", "value": 2},
    ]
    assert patch.json_patch(doc, ops) == {
        "spec": {"items": ["z", "b", "c"], "n": 2, "m": 2, "moved": 1},
        "x/y": {},
    }
    assert doc["spec"]["items"] == ["a", "b"]
    with pytest.raises(errors.ApiError) as err:
        patch.json_patch(doc, [{"op": "test", "path": "/spec/n", "value": 5}])
    assert err.value.code == 422
    with pytest.raises(errors.ApiError):
        patch.json_patch(doc, [{"op": "remove", "path": "/nope"}])


def test_strategic_merge_patch_merges_lists_by_key_and_honours_directives() -> None:
    pod = {
        "metadata": {"finalizers": ["a"], "labels": {"x": "1"}},
        "spec": {
            "containers": [
                {"name": "app", "image": "v1", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "s"},
            ],
            "tolerations": [{"key": "t1"}],
        },
    }
    smp = {
        "metadata": {"finalizers": ["b"], "labels": {"x": None}},
        "spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
            "containers": [
                {"name": "app", "image": "v2", "env": [{"name": "B", "value": "2"}]},
                {"name": "side", "$patch": "delete"},
            ],
            "tolerations": [{"key": "t2"}],
        },
    }
    result = patch.strategic_merge(pod, smp)
    assert result["metadata"] == {"finalizers": ["a", "b"], "labels": {}}
    assert result["spec"]["containers"] == [
        {"name": "app", "image": "v2", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}
    ]
    assert result["spec"]["tolerations"] == [{"key": "t2"}]  # no merge key: replaced
    assert patch.strategic_merge({"data": {"a": 1, "b": 2}}, {"data": {"$patch": "replace", "c": 3}}) == {
        "data": {"c": 3}
    }
    assert patch.strategic_merge({"m": {"f": [1, 2, 3]}}, {"m": {"$deleteFromPrimitiveList/f": [2]}}) == {
        "m": {"f": [1, 3]}
    }
    assert patch.strategic_merge({"s": {"a": 1, "b": 2}}, {"s": {"$retainKeys": ["b"], "b": 3}}) == {
        "s": {"b": 3}
    }


# --- schemas -------------------------------------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["room"],
            "x-kubernetes-validations": [
                {"rule": "self.replicas <= 5 || self.mode == 'stream'", "message": "too many for file mode"},
                {"rule": "self.room == oldSelf.room", "message": "room is immutable"},
                {
                    "rule": "self.mode.lowerAscii() == self.mode",
                    "messageExpression": "'mode ' + self.mode + ' is not lower case'",
                },
            ],
            "properties": {
                "room": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                "mode": {"type": "string", "enum": ["file", "stream"], "default": "file"},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                "tags": {
                    "type": "array",
                    "maxItems": 2,
                    "items": {"type": "string"},
                    "x-kubernetes-list-type": "set",
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "port": {"x-kubernetes-int-or-string": True},
                "when": {"type": "string", "format": "date-time"},
                "opt": {"type": "string", "nullable": True},
                "nested": {"type": "object", "properties": {"deep": {"type": "integer", "default": 7}}},
            },
        },
    },
}


def run(
    body: dict[str, Any], old: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[str], list[str]]:
    full = {"apiVersion": "x/v1", "kind": "W", "metadata": {"name": "w", "bogus": 1}, **body}
    unknown, errs = schema.apply_schema(full, SCHEMA, old)
    return full, unknown, [str(e) for e in errs]


def test_pruning_defaulting_and_preserved_fields() -> None:
    full, unknown, errs = run({"spec": {"room": "abc", "colour": "red", "free": {"any": {"thing": 1}}, "nested": {},
                                        "labels": {"a": "b"}, "opt": None, "port": "http"}, "top": 1})  # fmt: skip
    assert errs == []
    assert sorted(unknown) == ["metadata.bogus", "spec.colour", "top"]
    assert full["spec"] == {"room": "abc", "mode": "file", "replicas": 1, "free": {"any": {"thing": 1}},
                            "nested": {"deep": 7}, "labels": {"a": "b"}, "opt": None, "port": "http"}  # fmt: skip
    assert "bogus" not in full["metadata"] and "top" not in full


def test_rules_on_unchanged_values_are_ratcheted() -> None:
    """KEP-4008: a rule without oldSelf that fails on a value the update left as it was is not
    an error (an object stored before the rule existed stays writable); one that uses oldSelf is."""
    stored = {"spec": {"room": "abc", "mode": "file", "replicas": 9}}  # breaks the first rule
    _, _, errs = run({"spec": {"room": "abc", "mode": "file", "replicas": 9}, "status": {"x": 1}}, stored)
    assert errs == []
    _, _, errs = run({"spec": {"room": "abc", "mode": "file", "replicas": 8}}, stored)  # changed: checked
    assert any("too many for file mode" in e for e in errs)
    _, _, errs = run({"spec": {"room": "xyz", "mode": "file", "replicas": 9}}, stored)
    assert any("room is immutable" in e for e in errs) and any("too many for file mode" in e for e in errs)


def test_validation_messages_are_kubernetes_wording() -> None:
    _, _, errs = run(
        {"spec": {"mode": "foo", "replicas": 20, "tags": ["a", "a", "b"], "port": 1.5, "when": "nope"}}
    )
    assert "spec.room: Required value" in errs
    assert 'spec.mode: Unsupported value: "foo": supported values: "file", "stream"' in errs
    assert (
        "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10" in errs
    )
    assert "spec.tags: Too many: 3: must have at most 2 items" in errs
    assert 'spec.tags[1]: Duplicate value: "a"' in errs
    assert (
        'spec.port: Invalid value: "number": spec.port in body must be of type integer,string: "number"'
        in errs
    )
    assert 'spec.when: Invalid value: "nope": spec.when in body must be of type date-time: "nope"' in errs
    _, _, errs = run({"spec": {"room": "TOOLONG", "replicas": "3"}})
    assert "spec.room: Too long: may not be longer than 5" in errs
    assert "spec.room: Invalid value: \"TOOLONG\": spec.room in body should match '^[a-z]+$'" in errs
    assert (
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"'
        in errs
    )


def test_cel_rules_with_transition_rules_and_message_expressions() -> None:
    _, _, errs = run({"spec": {"room": "abc", "replicas": 7}})
    assert errs == ['spec: Invalid value: "object": too many for file mode']
    full, _, errs = run({"spec": {"room": "abc", "replicas": 7.0, "mode": "stream"}})
    assert errs == [] and type(full["spec"]["replicas"]) is int
    schema_with_upper = {
        **SCHEMA["properties"]["spec"],
        "properties": {**SCHEMA["properties"]["spec"]["properties"], "mode": {"type": "string"}},
    }
    errs_upper = [
        str(e)
        for e in schema.validate({"room": "abc", "mode": "File", "replicas": 1}, schema_with_upper, "spec")
    ]
    assert errs_upper == ['spec: Invalid value: "object": mode File is not lower case']
    old = {"spec": {"room": "old", "mode": "file", "replicas": 1}}
    _, _, errs = run({"spec": {"room": "new"}}, old=old)
    assert errs == ['spec: Invalid value: "object": room is immutable']


def test_invalid_status_message_aggregates_like_the_real_server() -> None:
    err = errors.invalid_object(
        "Widget", "test.example.com", "w", [errors.required("spec.room"), errors.required("spec.x")]
    )
    status = err.status()
    assert (
        status["message"]
        == 'Widget.test.example.com "w" is invalid: [spec.room: Required value, spec.x: Required value]'
    )
    assert status["details"]["causes"][0] == {
        "reason": "FieldValueRequired",
        "message": "Required value",
        "field": "spec.room",
    }
    assert status["code"] == 422 and status["reason"] == "Invalid"


# --- tables and store ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 60, "3h1m"), (50 * 3600, "2d2h")],
)
def test_human_durations(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_simple_jsonpath() -> None:
    o = {
        "status": {"conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]},
        "m": {"a.b": 1},
    }
    assert tables.jsonpath(o, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert tables.jsonpath(o, ".status.conditions[0].type") == ["A"]
    assert tables.jsonpath(o, ".m['a.b']") == [1]
    assert tables.jsonpath(o, ".missing.x") == []


def test_store_history_snapshots_and_expiry() -> None:
    store = Store(history_size=3)
    key = ("g", "things")
    a = store.put(key, obj("a"))
    rv_after_a = store.rv
    store.put(key, {**obj("a"), "spec": 2})
    store.put(key, obj("b"))
    assert store.snapshot(key, rv_after_a) == {("ns", "a"): a}
    store.remove(key, store.get(key, "ns", "b"))  # type: ignore[arg-type]
    with pytest.raises(errors.ApiError) as err:
        store.events_since(key, rv_after_a - 1)
    assert err.value.code == 410
    assert [e.type for e in store.events_since(key, store.rv - 2)] == ["ADDED", "DELETED"]
    assert isinstance(store.history[-1], Event) and store.history[-1].obj["metadata"][
        "resourceVersion"
    ] == str(store.rv)
