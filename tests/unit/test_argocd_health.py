"""The Argo CD health scripts (charts/jibri-operator/docs/argocd-health.yaml), run by Debian's
Lua 5.1 (the dialect of gopher-lua, which Argo CD embeds) and Lua 5.4 against example objects
of each kind: the statuses the controllers write today, and kstatus' Ready condition."""

from __future__ import annotations

import math
import subprocess
from typing import Any

import pytest
import yaml
from deploy import CHART, tool

from jibri_operator.api.conditions import set_condition
from jibri_operator.api.constants import API_VERSION, KIND_ENVIRONMENT, KIND_POOL, KIND_SESSION

HEALTH = CHART / "docs" / "argocd-health.yaml"
LUAS = ("lua5.1", "lua5.4")
NOW = "2025-01-01T00:00:00Z"


def scripts() -> dict[str, str]:
    data = yaml.safe_load(HEALTH.read_text())["data"]
    prefix = "resource.customizations.health."
    return {key.removeprefix(prefix).partition("_")[2]: value for key, value in data.items()}


def lua_literal(value: Any) -> str:
    """A Lua table constructor for JSON-like ``value``, as Argo CD hands the object to the script."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        assert math.isfinite(value)
        return repr(value)
    if isinstance(value, str):
        # Printable ASCII as is; every other byte (UTF-8 included) as a three-digit \ddd escape.
        escaped = "".join(
            chr(byte) if 32 <= byte < 127 and chr(byte) not in '"\\' else f"\\{byte:03d}"
            for byte in value.encode()
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    if isinstance(value, dict):
        items = (f"[{lua_literal(str(key))}] = {lua_literal(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(type(value))


def health(lua: str, kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the kind's script returns for ``obj``."""
    program = (
        f"obj = {lua_literal(obj)}\n"
        f"local hs = (function()\n{scripts()[kind]}\nend)()\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    result = subprocess.run([tool(lua), "-"], input=program, capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\n")
    return status, message


def obj(kind: str, status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
        "spec": {},
    }
    if status is not None:
        body["status"] = status
    return body


def conditions(*entries: tuple[str, str, str, str], generation: int = 1) -> list[dict[str, Any]]:
    """Conditions as the controllers write them (api.conditions.set_condition)."""
    result: list[dict[str, Any]] = []
    for type_, status, reason, message in entries:
        result = set_condition(result, type_, status, reason, message, generation, now=NOW)  # type: ignore[arg-type]  # a str, not the Literal
    return result


def environment(*entries: tuple[str, str, str, str], connected: bool, generation: int = 1) -> dict[str, Any]:
    return obj(
        KIND_ENVIRONMENT,
        {
            "connected": connected,
            "jibris": {"idle": 1, "busy": 0, "unhealthy": 0, "total": 1},
            "observedGeneration": generation,
            "conditions": conditions(*entries, generation=generation),
        },
        generation,
    )


def pool(*entries: tuple[str, str, str, str], generation: int = 1) -> dict[str, Any]:
    return obj(
        KIND_POOL,
        {
            "replicas": 2,
            "idle": 1,
            "busy": 1,
            "observedGeneration": generation,
            "conditions": conditions(*entries, generation=generation),
        },
        generation,
    )


def session(phase: str, *entries: tuple[str, str, str, str], **fields: Any) -> dict[str, Any]:
    generation = fields.pop("generation", 1)
    status = {"phase": phase, "observedGeneration": fields.pop("observed", generation), **fields}
    status["conditions"] = conditions(*entries, generation=generation)
    return obj(KIND_SESSION, status, generation)


JOINED = ("Connected", "True", "Joined", "in brewery jibribrewery@internal.auth.meet.example as op")
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # -- XmppEnvironment
    (
        "env ready",
        environment(JOINED, ("Ready", "True", "JibrisAvailable", "2 idle Jibri(s)"), connected=True),
        "Healthy",
        "2 idle Jibri(s)",
    ),
    (
        "env joined, every Jibri busy",
        environment(JOINED, ("Ready", "False", "NoIdleJibri", "3 Jibri(s), none idle"), connected=True),
        "Healthy",
        "none idle",
    ),
    (
        "env kstatus Ready only",
        environment(("Ready", "True", "Connected", "in the brewery"), connected=True),
        "Healthy",
        "in the brewery",
    ),
    ("env no status yet", obj(KIND_ENVIRONMENT, None), "Progressing", "Waiting for the operator"),
    (
        "env connecting",
        environment(
            ("Connected", "False", "Connecting", "connecting to the XMPP server"),
            ("Ready", "False", "NotConnected", "the brewery is not joined"),
            connected=False,
        ),
        "Progressing",
        "Connecting",
    ),
    (
        "env spec changed, not yet seen",
        {
            **environment(JOINED, ("Ready", "True", "JibrisAvailable", "1 idle"), connected=True),
            "metadata": {"name": "x", "namespace": "ns", "generation": 2},
        },
        "Progressing",
        "generation 2",
    ),
    (
        "env login Secret missing",
        environment(
            ("Connected", "False", "SecretNotFound", "Secret ns/login not found"),
            ("Ready", "False", "NotConnected", "the brewery is not joined"),
            connected=False,
        ),
        "Degraded",
        "SecretNotFound: Secret ns/login not found",
    ),
    (
        "env disconnected",
        environment(
            ("Connected", "False", "Disconnected", "not-authorized"),
            ("Ready", "False", "NotConnected", "the brewery is not joined"),
            connected=False,
        ),
        "Degraded",
        "Disconnected",
    ),
    # -- JibriPool
    (
        "pool headroom met",
        pool(("Ready", "True", "HeadroomMet", "2 idle Jibri(s), 1 wanted")),
        "Healthy",
        "2 idle",
    ),
    (
        "pool scaling up",
        pool(
            ("Ready", "False", "ScalingUp", "0 idle Jibri(s), 1 wanted"),
            ("ScalingLimited", "False", "WithinBounds", "scale up"),
        ),
        "Progressing",
        "ScalingUp",
    ),
    ("pool no status yet", obj(KIND_POOL, None), "Progressing", "Waiting for the operator"),
    (
        "pool spec changed, not yet seen",
        pool(("Ready", "True", "HeadroomMet", "1 idle"), generation=1) | {"metadata": {"generation": 3}},
        "Progressing",
        "generation 3",
    ),
    (
        "pool at its maximum",
        pool(
            ("Ready", "False", "ScalingUp", "0 idle Jibri(s), 2 wanted"),
            ("ScalingLimited", "True", "AtMaximum", "more Jibris are wanted than replicas.max allows"),
        ),
        "Degraded",
        "replicas.max",
    ),
    (
        "pool cannot reconcile (conditions written alone, top-level observedGeneration behind)",
        pool(("Ready", "False", "ReconcileFailed", "pods are forbidden"), generation=2)
        | {"metadata": {"generation": 2}},
        "Degraded",
        "pods are forbidden",
    ),
    # -- RecordingSession
    ("session no status yet", obj(KIND_SESSION, None), "Progressing", "Waiting for the operator"),
    (
        "session waiting for a Jibri",
        session("Pending", ("Scheduled", "False", "NoIdleJibri", "no idle Jibri in environment meet")),
        "Progressing",
        "NoIdleJibri",
    ),
    (
        "session retrying",
        session("Pending", ("Scheduled", "False", "Retrying", "retrying after error")),
        "Progressing",
        "Retrying",
    ),
    (
        "session starting",
        session("Starting", ("Scheduled", "True", "JibriSelected", "selected jibri-1")),
        "Progressing",
        "Starting",
    ),
    (
        "session recording",
        session(
            "Recording",
            ("Scheduled", "True", "JibriSelected", "selected jibri-1"),
            ("Recording", "True", "On", "jibri-1 records"),
            jibri={"occupant": "brewery@conf/jibri-1", "nickname": "jibri-1", "dialect": "current"},
        ),
        "Healthy",
        "Recording on Jibri jibri-1",
    ),
    ("session stopping", session("Stopping"), "Progressing", "Stopping"),
    (
        "session completed",
        session(
            "Completed",
            ("Recording", "False", "Stopped", "stopped on request"),
            ("Succeeded", "True", "Stopped", "stopped on request"),
        ),
        "Healthy",
        "Completed: stopped on request",
    ),
    (
        "session completed, spec edited afterwards",
        session("Completed", ("Succeeded", "True", "Stopped", "done"), generation=2, observed=1),
        "Healthy",
        "Completed",
    ),
    (
        "session stop requested, not yet seen",
        session("Recording", ("Recording", "True", "On", "on"), generation=2, observed=1),
        "Progressing",
        "generation 2",
    ),
    (
        "session failed",
        session(
            "Failed",
            ("Succeeded", "False", "MaxAttemptsReached", "5 Jibris failed to record this session"),
            failureReason="MaxAttemptsReached",
        ),
        "Degraded",
        "Failed: MaxAttemptsReached: 5 Jibris failed",
    ),
    (
        "session stream key missing",
        session("Pending", ("Scheduled", "False", "StreamKeyMissing", "Secret ns/yt not found")),
        "Degraded",
        "StreamKeyMissing",
    ),
    (
        "session environment missing",
        session(
            "Pending", ("Scheduled", "False", "EnvironmentNotFound", "XmppEnvironment meet is not connected")
        ),
        "Degraded",
        "EnvironmentNotFound",
    ),
    (
        "session kstatus Succeeded without a phase",
        obj(
            KIND_SESSION,
            {"observedGeneration": 1, "conditions": conditions(("Succeeded", "False", "Boom", "x"))},
        ),
        "Degraded",
        "Boom",
    ),
]


def test_there_is_a_script_per_kind() -> None:
    assert scripts().keys() == {KIND_ENVIRONMENT, KIND_POOL, KIND_SESSION}


def test_every_kind_has_examples_of_each_health() -> None:
    seen = {(case[1]["kind"], case[2]) for case in CASES}
    for kind in (KIND_ENVIRONMENT, KIND_POOL, KIND_SESSION):
        for status in ("Healthy", "Progressing", "Degraded"):
            assert (kind, status) in seen, (kind, status)


@pytest.mark.parametrize("lua", LUAS)
@pytest.mark.parametrize(("name", "body", "expected", "message"), CASES, ids=[case[0] for case in CASES])
def test_health(lua: str, name: str, body: dict[str, Any], expected: str, message: str) -> None:
    status, said = health(lua, body["kind"], body)
    assert (status, message in said) == (expected, True), f"{name}: {status}: {said}"


def test_the_literal_survives_quotes_escapes_and_unicode() -> None:
    tricky = {"a": 'say "hi"\\ \n1 ünïcode', "b": [1, 2.5, True]}
    program = f'local t = {lua_literal(tricky)}\nio.write(t.a, "|", #t.b, "|", tostring(t.b[3]))'
    for lua in LUAS:
        result = subprocess.run([tool(lua), "-"], input=program, capture_output=True, text=True, timeout=10)
        assert result.stdout == f"{tricky['a']}|3|true", lua
