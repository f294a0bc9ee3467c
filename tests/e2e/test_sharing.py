"""Sharing, as the Jibri protocol requires: one Jibri serving two Jitsi deployments, and
two operators (think: two clusters) racing for one brewery. Nothing is recorded twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from operator_fixture import Cluster, Environment, OperatorProcess, eventually, make_environment

from jibri_sandbox.apiserver.testing import RunningApiServer
from jibri_sandbox.prosody import Prosody

pytestmark = pytest.mark.e2e
Accounts = Callable[..., tuple[str, str]]


def scheduled_reason(env: Environment, name: str) -> str | None:
    conditions = ((env.get_session(name) or {}).get("status") or {}).get("conditions") or []
    return next((c.get("reason") for c in conditions if c["type"] == "Scheduled"), None)


async def test_one_jibri_serves_two_deployments(
    operator: OperatorProcess,
    cluster: Cluster,
    prosody: Prosody,
    xmpp_account: Accounts,
    simulated_jibri: Any,
) -> None:
    first = await make_environment(cluster, prosody, xmpp_account, "op")
    other_domain = prosody.domains[1]
    second = await make_environment(
        cluster,
        prosody,
        xmpp_account,
        "op",
        namespace=first.namespace,
        name="other",
        domain=other_domain.domain,
    )
    jibri = await simulated_jibri(first.brewery, second.brewery)  # one Jibri, both breweries
    for env in (first, second):
        await eventually(
            lambda env=env: env.jibri_counts().get("idle") == 1, 20, f"{env.name} to see the Jibri"
        )

    first.session("in-first")
    await first.wait_phase("in-first", "Recording")
    await eventually(lambda: second.jibri_counts().get("busy") == 1, 10, "busy in one means busy in all")

    second.session("in-second")
    await eventually(lambda: scheduled_reason(second, "in-second") == "NoIdleJibri", 10, "the second to wait")
    assert len(jibri.starts) == 1

    first.cluster.patch("recordingsessions", first.namespace, "in-first", {"spec": {"stop": True}})
    await first.wait_phase("in-first", "Completed")
    await second.wait_phase("in-second", "Recording", timeout=10)
    assert [start.environment for start in jibri.starts] == ["env0", "env1"]


async def test_two_operators_race_for_one_brewery(
    apiserver: RunningApiServer,
    cluster: Cluster,
    prosody: Prosody,
    xmpp_account: Accounts,
    simulated_jibri: Any,
    tmp_path: Path,
) -> None:
    operators = [
        OperatorProcess(
            apiserver.kubeconfig, f"c{i}-*", f"jibri-operator-cluster-{i}", tmp_path / f"op{i}.log"
        )
        for i in (1, 2)
    ]
    for process in operators:
        process.start()
    try:
        for process in operators:  # starting up is not what is timed below (it is slow on a busy machine)
            await eventually(
                lambda process=process: process.http_get("/readyz")[0] == 200, 60, "operator ready"
            )
        one = await make_environment(cluster, prosody, xmpp_account, "c1")
        two = await make_environment(cluster, prosody, xmpp_account, "c2", brewery=one.brewery)
        jibri = await simulated_jibri(one.brewery)
        for env in (one, two):
            await eventually(
                lambda env=env: env.jibri_counts().get("idle") == 1, 20, "both operators see it idle"
            )

        await asyncio.gather(asyncio.to_thread(one.session, "mine"), asyncio.to_thread(two.session, "mine"))

        def settled() -> tuple[str | None, str | None] | None:
            phases = (one.phase("mine"), two.phase("mine"))
            return phases if sorted(p or "" for p in phases) == ["Pending", "Recording"] else None

        phases = await eventually(settled, 15, "one session recording, the other waiting")
        assert len(jibri.starts) == 1, "the Jibri settled the race: one recording"
        winner, loser = (one, two) if phases[0] == "Recording" else (two, one)
        await eventually(lambda: scheduled_reason(loser, "mine") == "NoIdleJibri", 10, "the loser to wait")

        winner.cluster.patch("recordingsessions", winner.namespace, "mine", {"spec": {"stop": True}})
        await winner.wait_phase("mine", "Completed")
        await loser.wait_phase("mine", "Recording", timeout=10)
        assert len(jibri.starts) == 2
    except (AssertionError, TimeoutError) as error:
        logs = "\n".join(f"--- {p.log.name}\n{p.tail(40)}" for p in operators)
        raise AssertionError(f"{error!r}\n{logs}") from error
    finally:
        for process in operators:
            process.stop()
