"""XmppEnvironment: connection status, reasons, reconnection on change, leaving on delete."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import pytest
from operator_fixture import (
    Cluster,
    Environment,
    OperatorProcess,
    both_planes,
    eventually,
    make_environment,
)
from sim import jibri_factory
from xmpp_helpers import TestClient

from jibri_sandbox.prosody import Prosody

pytestmark = pytest.mark.e2e


def condition(env: Environment, type_: str) -> dict[str, Any]:
    status = (env.environment() or {}).get("status", {})
    return next((c for c in status.get("conditions", []) if c["type"] == type_), {})


def event_reasons(env: Environment) -> set[str]:
    return {
        event.reason
        for event in env.cluster.events(env.namespace)
        if event.involved_object.kind == "XmppEnvironment"
    }


@both_planes
async def test_status_counts_jibris_by_state(
    env: Environment, xmpp_account: Callable[..., tuple[str, str]]
) -> None:
    async with jibri_factory(env.prosody, env.brewery, xmpp_account) as make:
        idle, sick = await make(2)
        sick.set_healthy(False)

        def counted() -> bool:
            jibris = (env.environment() or {}).get("status", {}).get("jibris", {})
            return jibris == {"idle": 1, "busy": 0, "unhealthy": 1, "total": 2}

        await eventually(counted, 10, "idle 1, unhealthy 1")
        assert condition(env, "Connected")["status"] == "True"
        assert condition(env, "Ready")["reason"] == "JibrisAvailable"
        del idle


async def test_bad_login_is_reported_and_a_fixed_secret_reconnects(
    operator: OperatorProcess,
    cluster: Cluster,
    prosody: Prosody,
    xmpp_account: Callable[..., tuple[str, str]],
) -> None:
    env = await make_environment(cluster, prosody, xmpp_account, "op")
    good = cluster.core.read_namespaced_secret("meet-login", env.namespace).data
    wrong = {**good, "password": base64.b64encode(b"not-the-password").decode()}
    await asyncio.to_thread(
        cluster.core.patch_namespaced_secret, "meet-login", env.namespace, {"data": wrong}
    )
    await asyncio.to_thread(
        cluster.patch, "xmppenvironments", env.namespace, "meet", {"spec": {"nickname": "again"}}
    )

    await eventually(
        lambda: "authentication failed" in condition(env, "Connected").get("message", ""), 20, "the reason"
    )
    assert condition(env, "Connected")["status"] == "False"
    await eventually(lambda: "Disconnected" in event_reasons(env), 10, "a warning Event")
    assert "not-the-password" not in str(env.environment())

    await asyncio.to_thread(cluster.core.patch_namespaced_secret, "meet-login", env.namespace, {"data": good})
    await eventually(lambda: condition(env, "Connected").get("status") == "True", 30, "reconnection")


@both_planes
async def test_missing_secret_is_named(
    operator: OperatorProcess,
    cluster: Cluster,
    prosody: Prosody,
    xmpp_account: Callable[..., tuple[str, str]],
) -> None:
    env = await make_environment(cluster, prosody, xmpp_account, "op")
    await asyncio.to_thread(cluster.core.delete_namespaced_secret, "xmpp-ca", env.namespace)
    await asyncio.to_thread(
        cluster.patch, "xmppenvironments", env.namespace, "meet", {"spec": {"nickname": "x"}}
    )
    await eventually(
        lambda: condition(env, "Connected").get("reason") == "SecretNotFound", 20, "SecretNotFound"
    )
    assert "xmpp-ca" in condition(env, "Connected")["message"]


@both_planes
async def test_spec_change_reconnects_and_delete_leaves(
    env: Environment, operator: OperatorProcess, xmpp_account: Callable[..., tuple[str, str]]
) -> None:
    moved = f"moved-{env.brewery}"
    jid, password = xmpp_account("observer")
    observer = TestClient(jid, password, env.prosody.ca_file)
    await observer.login(env.prosody.host, env.prosody.port)
    try:
        await observer.join(moved, "observer")
        async with jibri_factory(env.prosody, moved, xmpp_account) as make:
            await make(1)
            env.cluster.patch("xmppenvironments", env.namespace, "meet", {"spec": {"brewery": moved}})

            def sees_new_room() -> bool:
                status = (env.environment() or {}).get("status", {})
                return bool(status.get("connected")) and status.get("jibris", {}).get("idle") == 1

            await eventually(sees_new_room, 20, "the operator in the new brewery")
            operator_occupant = f"{moved}/{operator.nickname}"
            assert any(p.get("from") == operator_occupant for p in observer.presences)

            await asyncio.to_thread(env.cluster.delete, "xmppenvironments", env.namespace, "meet")

            def left() -> bool:
                return any(
                    p.get("from") == operator_occupant and p.get("type") == "unavailable"
                    for p in observer.presences
                )

            await observer.wait_for(left, timeout=15)
    finally:
        await observer.close()
