"""RBAC refusals: a 403 becomes a Forbidden naming verb and resource; each is said once in a
while, and retried with a growing delay, never in a tight loop."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from jibri_operator import metrics
from jibri_operator.controllers import refusals as refusals_module
from jibri_operator.controllers.refusals import REPORT_EVERY, RETRY_FIRST, RETRY_MAX, Refusals
from jibri_operator.kube.client import Forbidden, Kube, forbidden_or


def api_error(status: int) -> ApiException:
    return ApiException(status=status, reason="Forbidden" if status == 403 else "Other")


def test_a_403_names_verb_resource_group_and_place() -> None:
    error = forbidden_or(
        api_error(403), "patch", "recordingsessions/status", "jibri.dev", "team-a", "standup"
    )
    assert isinstance(error, Forbidden) and isinstance(error, PermissionError)
    assert error.key == ("patch", "jibri.dev", "recordingsessions/status")
    assert error.qualified_resource == "recordingsessions.jibri.dev/status"
    message = str(error)
    assert "RBAC forbids patch recordingsessions.jibri.dev/status in namespace team-a (standup)" in message
    assert 'verb "patch" on resource "recordingsessions/status" in API group "jibri.dev"' in message
    core = forbidden_or(api_error(403), "get", "secrets", "", "team-a", "login")
    assert str(core).startswith("RBAC forbids get secrets in namespace team-a (login):")
    assert 'in API group ""' in str(core)


def test_an_admission_refusal_is_told_in_the_servers_words() -> None:
    """A 403 not from RBAC (here the OwnerReferencesPermissionEnforcement admission plugin) must
    not be blamed on the verb the role does grant."""
    said = (
        'secrets "recorders-jibri-conf" is forbidden: cannot set blockOwnerDeletion if an ownerReference'
        " refers to a resource you can't set finalizers on: , <nil>"
    )
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps({"kind": "Status", "message": said, "code": 403})
    refused = forbidden_or(error, "create", "secrets", "", "pool-a", "recorders-jibri-conf")
    assert isinstance(refused, Forbidden) and not refused.by_rbac
    assert (
        str(refused)
        == f"the API server forbids create secrets in namespace pool-a (recorders-jibri-conf): {said}"
    )
    rbac = ApiException(status=403, reason="Forbidden")
    rbac.body = json.dumps(
        {"message": 'secrets "x" is forbidden: User "u" cannot get resource "secrets" in ...'}
    )
    assert str(forbidden_or(rbac, "get", "secrets", "", "ns", "x")).startswith("RBAC forbids get secrets")


def test_other_errors_pass_through() -> None:
    error = api_error(500)
    assert forbidden_or(error, "get", "secrets") is error


def test_the_client_raises_forbidden_for_its_own_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = Kube(kubernetes.client.ApiClient(kubernetes.client.Configuration()))

    def refuse(*_: Any, **__: Any) -> Any:
        raise api_error(403)

    monkeypatch.setattr(kube.core, "read_namespaced_secret", refuse)
    monkeypatch.setattr(kube.core, "create_namespaced_pod", refuse)
    monkeypatch.setattr(kube.custom, "patch_namespaced_custom_object_status", refuse)

    async def calls() -> list[Forbidden]:
        refused = []
        for call in (
            kube.read_secret("ns", "login", "password"),
            kube.create_pod("ns", {}),
            kube.patch_status("jibripools", "ns", "recorders", {}),
            kube.ensure_secret("ns", "recorders-jibri-conf", {}, {}, {}),
        ):
            with pytest.raises(Forbidden) as caught:
                await call
            refused.append(caught.value)
        return refused

    refused = asyncio.run(calls())
    kube.close()
    assert [(f.verb, f.resource, f.name) for f in refused] == [
        ("get", "secrets", "login"),
        ("create", "pods", ""),
        ("patch", "jibripools/status", "recorders"),
        ("get", "secrets", "recorders-jibri-conf"),
    ]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reported_once_in_a_while_and_retried_with_a_growing_delay(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[tuple[str, str]] = []
    monkeypatch.setattr(
        refusals_module.kopf, "warn", lambda _body, reason, message: events.append((reason, message))
    )
    clock = Clock()
    refusals = Refusals({"metadata": {"name": "x"}}, logging.getLogger("test.refusals"), clock)
    error = Forbidden("get", "secrets", "", "ns", "login")
    counted = metrics.API_FORBIDDEN.labels("get", "secrets")
    before = counted._value.get()
    with caplog.at_level(logging.WARNING, "test.refusals"):
        delays = [refusals.refused(error) for _ in range(9)]
    assert delays == [min(RETRY_MAX, RETRY_FIRST * 2**i) for i in range(9)]
    assert delays[-1] == RETRY_MAX and delays[0] < delays[1] < delays[2]
    assert counted._value.get() - before == 9
    assert events == [("Forbidden", str(error))], "one Event for nine refusals"
    assert [r.getMessage() for r in caplog.records] == [f"Forbidden: {error}"]
    other = Forbidden("create", "pods", "", "ns")
    refusals.refused(other, event=False)  # another verb: its own report (the caller posts the Event)
    assert len(events) == 1 and len(caplog.records) == 2
    clock.now += REPORT_EVERY
    refusals.refused(error)
    assert len(events) == 2, "said again once REPORT_EVERY has passed"
    assert refusals.active
    with caplog.at_level(logging.INFO, "test.refusals"):
        refusals.cleared()
    assert not refusals.active and refusals.delay == 0
    assert "now permits what it refused (create pods, get secrets)" in caplog.records[-1].getMessage()
    assert refusals.refused(error) == RETRY_FIRST, "the back-off starts over"
    assert len(events) == 3
