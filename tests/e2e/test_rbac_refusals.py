"""One verb missing from the operator's role, on the real control plane: the operator says which
(a log line, an Event on the object concerned, a condition where its status can be written),
keeps running, retries with a growing delay instead of hammering the API server, and carries on
once the verb is granted again.

Each test runs an operator of its own, logged in as a ServiceAccount of its own bound to a copy of
manifests/rbac.yaml's ClusterRole that lacks exactly one verb on one resource. The API server's
audit log (ControlPlane.audit_events) says when it refused the operator what: the gaps between
refusals must grow (the operator backs off), whatever the operator itself reports.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from control_plane_fixture import kubectl
from operator_fixture import (
    OPERATOR_NAMESPACE,
    ROOT,
    Cluster,
    Environment,
    OperatorProcess,
    Plane,
    eventually,
    make_environment,
    start_operator,
)
from sim import jibri_factory

from jibri_operator.api.conditions import get_condition
from jibri_sandbox.controlplane import ControlPlane
from jibri_sandbox.prosody import Prosody

pytestmark = pytest.mark.e2e
# Retries wait 1, 2, 4... s (refusals.py). A daemon restarted by kopf every second, or a tight
# loop, would show gaps of a second or less, and no growth.
FIRST_GAP = 0.8


def shipped_role() -> dict[str, Any]:
    documents = yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text())
    role: dict[str, Any] = next(d for d in documents if d["kind"] == "ClusterRole")
    return role


def without(role: dict[str, Any], verb: str, group: str, resource: str) -> list[dict[str, Any]]:
    """The role's rules minus `verb` on `resource` in `group`, nothing else: a rule naming
    more groups, resources or verbs is split so all the rest stays granted."""
    rules: list[dict[str, Any]] = []
    found = False
    for rule in role["rules"]:
        if group not in rule["apiGroups"] or resource not in rule["resources"] or verb not in rule["verbs"]:
            rules.append(rule)
            continue
        found = True
        others = [g for g in rule["apiGroups"] if g != group]
        if others:
            rules.append({**rule, "apiGroups": others})
        rest = [r for r in rule["resources"] if r != resource]
        if rest:
            rules.append({"apiGroups": [group], "resources": rest, "verbs": rule["verbs"]})
        verbs = [v for v in rule["verbs"] if v != verb]
        if verbs:
            rules.append({"apiGroups": [group], "resources": [resource], "verbs": verbs})
    assert found, f"manifests/rbac.yaml does not grant {verb} on {resource} in {group!r}"
    return rules


class Identity:
    """A ServiceAccount bound to a ClusterRole that can be narrowed and restored at will."""

    def __init__(self, control_plane: ControlPlane, name: str) -> None:
        self.control_plane, self.name = control_plane, name
        self.user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{name}"
        self.role = copy.deepcopy(shipped_role())
        self.role["metadata"] = {"name": name}
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": OPERATOR_NAMESPACE}],
        }
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
        self.apply(account, namespace=OPERATOR_NAMESPACE)
        self.apply(binding)
        self.kubeconfig = control_plane.service_account_kubeconfig(OPERATOR_NAMESPACE, name)

    def apply(self, obj: dict[str, Any], namespace: str | None = None) -> None:
        where = ["-n", namespace] if namespace else []
        kubectl(self.control_plane.kubeconfig, *where, "apply", "-f", "-", stdin=json.dumps(obj))

    def grant(self, rules: list[dict[str, Any]]) -> None:
        self.apply({**self.role, "rules": rules})

    def can(self, verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
        answer = kubectl(
            self.control_plane.kubeconfig, "auth", "can-i", verb, resource, "-n", namespace,
            f"--subresource={subresource}", f"--as={self.user}", check=False,
        )  # fmt: skip
        return answer.strip() == "yes"

    def delete(self) -> None:
        kubectl(self.control_plane.kubeconfig, "delete", "clusterrolebinding,clusterrole", self.name)
        kubectl(
            self.control_plane.kubeconfig, "-n", OPERATOR_NAMESPACE, "delete", "serviceaccount", self.name
        )


def refusals(
    control_plane: ControlPlane, identity: Identity, verb: str, resource: str, subresource: str = ""
) -> list[float]:
    """When the API server refused `identity` `verb` on `resource` (seconds, from its audit log)."""
    times = []
    for event in control_plane.audit_events(identity.user):
        ref = event.get("objectRef") or {}
        if (
            event.get("verb") == verb
            and ref.get("resource") == resource
            and ref.get("subresource", "") == subresource
            and (event.get("responseStatus") or {}).get("code") == 403
        ):
            stamp = event["requestReceivedTimestamp"].replace("Z", "+00:00")
            times.append(datetime.fromisoformat(stamp).timestamp())
    return sorted(times)


def assert_backs_off(times: list[float]) -> None:
    """Three refusals or more, each gap at least FIRST_GAP and growing: no hammering."""
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) >= 2, times
    assert gaps[0] >= FIRST_GAP, f"retried after {gaps[0]:.2f}s: {gaps}"
    assert all(later >= 1.5 * earlier for earlier, later in itertools.pairwise(gaps)), f"no back-off: {gaps}"


def operator_refusals(operator: OperatorProcess) -> dict[tuple[str, str], float]:
    status, text = operator.http_get("/metrics")
    assert status == 200, text
    counted = {}
    for line in text.splitlines():
        if line.startswith("jibri_operator_api_forbidden_total{"):
            labels = dict(p.split("=", 1) for p in line[line.index("{") + 1 : line.index("}")].split(","))
            counted[(labels["verb"].strip('"'), labels["resource"].strip('"'))] = float(
                line.rsplit(" ", 1)[1]
            )
    return counted


def forbidden_events(cluster: Cluster, namespace: str, kind: str) -> list[str]:
    return [
        event.message
        for event in cluster.events(namespace)
        if event.reason == "Forbidden" and event.involved_object.kind == kind
    ]


@pytest.fixture
def narrowed(
    real_plane: Plane, real_control_plane: ControlPlane, tmp_path: Path
) -> Iterator[Callable[[str, str, str, str], tuple[Identity, OperatorProcess]]]:
    """`narrowed(prefix, verb, group, resource)`: an operator for namespaces `prefix-*`, as an
    identity with the shipped rules minus that one verb."""
    started: list[tuple[Identity, OperatorProcess]] = []

    def start(prefix: str, verb: str, group: str, resource: str) -> tuple[Identity, OperatorProcess]:
        identity = Identity(real_control_plane, f"jibri-operator-{prefix}-{uuid.uuid4().hex[:6]}")
        identity.grant(without(identity.role, verb, group, resource))
        plane = Plane("real", real_plane.kubeconfig, identity.kubeconfig)
        operator = start_operator(plane, f"{prefix}-*", f"jibri-operator-{prefix}", tmp_path)
        started.append((identity, operator))
        return identity, operator

    yield start
    for identity, operator in started:
        operator.stop()
        identity.delete()


@pytest.fixture
async def environment_for(
    real_cluster: Cluster, prosody: Prosody, xmpp_account: Callable[..., tuple[str, str]]
) -> AsyncIterator[Callable[[str], Any]]:
    made: list[Environment] = []

    async def make(prefix: str) -> Environment:
        environment = await make_environment(real_cluster, prosody, xmpp_account, prefix)
        made.append(environment)
        return environment

    yield make
    for environment in made:
        await asyncio.to_thread(real_cluster.core.delete_namespace, environment.namespace)


async def test_a_refused_status_write_is_said_on_the_session_and_retried_slowly(
    narrowed: Callable[..., tuple[Identity, OperatorProcess]],
    environment_for: Callable[[str], Any],
    real_control_plane: ControlPlane,
    real_cluster: Cluster,
    xmpp_account: Callable[..., tuple[str, str]],
) -> None:
    identity, operator = narrowed("rbac-status", "patch", "jibri.dev", "recordingsessions/status")
    env: Environment = await environment_for("rbac-status")
    assert not identity.can("patch", "recordingsessions.jibri.dev", env.namespace, "status")
    assert identity.can("update", "recordingsessions.jibri.dev", env.namespace, "status"), (
        "only patch is gone"
    )
    assert identity.can("patch", "recordingsessions.jibri.dev", env.namespace)
    try:
        async with jibri_factory(env.prosody, env.brewery, xmpp_account) as make:
            (jibri,) = await make(1)
            await eventually(
                lambda: env.jibri_counts().get("idle") == 1, 20, "the environment to see the Jibri"
            )
            env.session("unwritable")
            (message,) = await eventually(
                lambda: forbidden_events(real_cluster, env.namespace, "RecordingSession"),
                20,
                "a Forbidden Event",
            )
            assert "RBAC forbids patch recordingsessions.jibri.dev/status" in message
            assert f"in namespace {env.namespace} (unwritable)" in message
            times = await eventually(
                lambda: (
                    (t := refusals(real_control_plane, identity, "patch", "recordingsessions", "status"))
                    and len(t) >= 3
                    and t
                ),
                30,
                "three refused status writes",
            )
            assert_backs_off(times)
            assert operator.process is not None and operator.process.poll() is None, (
                "the operator keeps running"
            )
            assert not jibri.starts, (
                "nothing is started that status cannot name (the write-ahead was refused)"
            )
            assert len(forbidden_events(real_cluster, env.namespace, "RecordingSession")) == 1, "said once"
            log = operator.log.read_text()
            assert log.count("Forbidden: RBAC forbids patch recordingsessions.jibri.dev/status") == 1, log[
                -3000:
            ]
            assert operator_refusals(operator)[("patch", "recordingsessions.jibri.dev/status")] >= 3

            identity.grant(shipped_role()["rules"])  # the verb is back: the next try succeeds
            await env.wait_phase("unwritable", "Recording", timeout=40)
            assert len(jibri.starts) == 1
            assert "the API server now permits what it refused (patch recordingsessions/status)" in (
                operator.log.read_text()
            )
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(f"{error}\noperator log:\n{operator.tail(60)}") from error


async def test_a_secret_the_operator_may_not_read_is_named_in_the_environment_condition(
    narrowed: Callable[..., tuple[Identity, OperatorProcess]],
    environment_for: Callable[[str], Any],
    real_control_plane: ControlPlane,
    real_cluster: Cluster,
) -> None:
    identity, operator = narrowed("rbac-secret", "get", "", "secrets")
    env: Environment = await environment_for("rbac-secret")
    assert not identity.can("get", "secrets", env.namespace)

    def connected() -> dict[str, Any]:
        return (
            get_condition(((env.environment() or {}).get("status") or {}).get("conditions"), "Connected")
            or {}
        )

    try:
        await eventually(
            lambda: connected().get("reason") == "Forbidden", 30, "Connected False, reason Forbidden"
        )
        condition = connected()
        assert condition["status"] == "False"
        assert f"RBAC forbids get secrets in namespace {env.namespace} (meet-login)" in condition["message"]
        (message,) = await eventually(
            lambda: forbidden_events(real_cluster, env.namespace, "XmppEnvironment"), 10, "a Forbidden Event"
        )
        assert message == condition["message"]
        times = await eventually(
            lambda: (t := refusals(real_control_plane, identity, "get", "secrets")) and len(t) >= 3 and t,
            30,
            "three refused Secret reads",
        )
        assert_backs_off(times)
        assert operator.process is not None and operator.process.poll() is None
        assert operator.log.read_text().count("Forbidden: RBAC forbids get secrets") == 1
        assert len(forbidden_events(real_cluster, env.namespace, "XmppEnvironment")) == 1, "said once"

        identity.grant(shipped_role()["rules"])
        await eventually(lambda: connected().get("status") == "True", 40, "the environment to connect")
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(f"{error}\noperator log:\n{operator.tail(60)}") from error


async def test_an_admission_refusal_is_said_on_the_pool_in_the_servers_words(
    narrowed: Callable[..., tuple[Identity, OperatorProcess]],
    environment_for: Callable[[str], Any],
    real_control_plane: ControlPlane,
    real_cluster: Cluster,
) -> None:
    """Without update on jibripools/finalizers, OwnerReferencesPermissionEnforcement refuses the
    pool's Secret and pods (they set blockOwnerDeletion): the pool says so, in the server's words."""
    identity, operator = narrowed("rbac-pool", "update", "jibri.dev", "jibripools/finalizers")
    env: Environment = await environment_for("rbac-pool")
    for name in ("jibri-login", "recorder-login"):
        await asyncio.to_thread(
            real_cluster.create_secret, env.namespace, name, {"username": "u", "password": "p"}
        )
    jibri = {
        "controlLoginSecretRef": {"name": "jibri-login"},
        "callLoginSecretRef": {"name": "recorder-login"},
    }
    await asyncio.to_thread(
        real_cluster.patch, "xmppenvironments", env.namespace, "meet", {"spec": {"jibri": jibri}}
    )
    template = {"spec": {"containers": [{"name": "jibri", "image": "jitsi/jibri:stable"}]}}
    pool = {
        "kind": "JibriPool",
        "metadata": {"name": "recorders"},
        "spec": {"environments": ["meet"], "template": template},
    }
    await asyncio.to_thread(real_cluster.create, "jibripools", env.namespace, pool)

    def ready() -> dict[str, Any]:
        status = (real_cluster.get("jibripools", env.namespace, "recorders") or {}).get("status") or {}
        return get_condition(status.get("conditions"), "Ready") or {}

    try:
        await eventually(lambda: ready().get("reason") == "Forbidden", 30, "Ready False, reason Forbidden")
        message = ready()["message"]
        assert message.startswith(f"the API server forbids create secrets in namespace {env.namespace}"), (
            message
        )
        assert "cannot set blockOwnerDeletion" in message, "the server's own words, not a guess at RBAC"
        (event,) = await eventually(
            lambda: forbidden_events(real_cluster, env.namespace, "JibriPool"), 10, "a Forbidden Event"
        )
        assert event == message
        times = await eventually(
            lambda: (t := refusals(real_control_plane, identity, "create", "secrets")) and len(t) >= 3 and t,
            30,
            "three refused creates",
        )
        assert_backs_off(times)
        assert operator.process is not None and operator.process.poll() is None

        identity.grant(shipped_role()["rules"])
        await eventually(
            lambda: (
                (real_cluster.get("jibripools", env.namespace, "recorders") or {}).get("status") or {}
            ).get("replicas"),
            40,
            "the pool's first pod",
        )
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(f"{error}\noperator log:\n{operator.tail(60)}") from error
