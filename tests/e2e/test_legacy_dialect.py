"""RecordingSession on Jibris of the 2016 spec (jibri-spec.xml), which has no status reports:
a plain result accepts, the busy presence means recording, the idle presence means it ended.

Every test runs on both legacy variants: the spec to the letter, and a 2017-era Jibri that
also sends pending/on/off reports (honoured when they come, never required).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from operator_fixture import Environment, eventually
from sim import JibriFactory, nickname, occupy, other_controller, stops

from jibri_operator.api.conditions import get_condition
from jibri_operator.api.types import Dialect
from jibri_sandbox.jibri import Faults

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("reports", [False, True], ids=["legacy", "legacy-with-reports"]),
]


def event_reasons(env: Environment) -> list[str]:
    return [event.reason for event in env.cluster.events(env.namespace)]


async def test_busy_means_recording_and_idle_means_completed(
    env: Environment, jibris: JibriFactory, reports: bool
) -> None:
    """Recording within a second of the busy presence; kept past pendingTimeout with no stop;
    Completed, not retried, when the Jibri goes idle by itself."""
    # The Jibri records from 3 s after the start (when a 2017-era one reports `on`) for 1 s:
    # both ends lie beyond the session's 2 s pendingTimeout.
    (jibri,) = await jibris(
        1, dialect=Dialect.LEGACY, legacy_reports=reports, on_delay=3.0, recording_duration=1.0
    )
    env.session("seed", pendingTimeout="2s")
    await jibri.wait_until(lambda j: j.busy, 15)
    busy_at = time.monotonic()
    await env.wait_phase("seed", "Recording", timeout=10)
    assert time.monotonic() - busy_at < 1.0, "Recording within 1 s of the busy presence"

    session = await env.wait_phase("seed", "Completed", "Failed", "Pending", timeout=20)
    status = session["status"]
    assert status["phase"] == "Completed", status
    assert stops(jibri) == 0, "a recording past pendingTimeout is not stopped"
    assert len(jibri.starts) == 1 and status["attempts"] == 1, "nothing is retried"
    assert status["jibri"]["nickname"] == nickname(jibri)
    succeeded = get_condition(status["conditions"], "Succeeded")
    assert succeeded is not None and succeeded["status"] == "True"
    if not reports:
        assert "gave no reason" in succeeded["message"]
    assert "PendingTimeout" not in event_reasons(env)


@pytest.mark.parametrize("how", ["spec.stop", "deletion"])
async def test_stop(env: Environment, jibris: JibriFactory, reports: bool, how: str) -> None:
    (jibri,) = await jibris(1, dialect=Dialect.LEGACY, legacy_reports=reports)
    env.session("halt")
    await env.wait_phase("halt", "Recording")
    if how == "spec.stop":
        await asyncio.to_thread(
            env.cluster.patch, "recordingsessions", env.namespace, "halt", {"spec": {"stop": True}}
        )
        session = await env.wait_phase("halt", "Completed")
        succeeded = get_condition(session["status"]["conditions"], "Succeeded")
        assert succeeded is not None and succeeded["reason"] == "Stopped"
    else:
        await asyncio.to_thread(env.cluster.delete, "recordingsessions", env.namespace, "halt")
        await env.wait_gone("halt")
    assert stops(jibri) == 1
    await jibri.wait_until(lambda j: not j.busy, 5)
    assert "StopUnconfirmed" not in event_reasons(env), "the plain result confirms the stop"


async def test_loses_the_503_race_and_is_retried_elsewhere(
    env: Environment, jibris: JibriFactory, reports: bool, xmpp_account: Callable[..., tuple[str, str]]
) -> None:
    """Another controller took the Jibri a moment earlier (its busy presence still in flight): the
    503 sends the session elsewhere, without spending an attempt."""
    (taken,) = await jibris(
        1, dialect=Dialect.LEGACY, legacy_reports=reports, faults=Faults(busy_presence_delay=60)
    )
    await eventually(lambda: env.jibri_counts().get("idle") == 1, 15, "the operator to see the Jibri")
    async with other_controller(env.prosody, env.brewery, xmpp_account) as jicofo:
        await occupy(jicofo, taken, f"elsewhere@{env.prosody.muc_domain}")
        env.session("late")
        await eventually(lambda: "BusyRetried" in event_reasons(env), 15, "the operator to lose the race")
        (free,) = await jibris(1, dialect=Dialect.LEGACY, legacy_reports=reports)
        session = await env.wait_phase("late", "Recording", timeout=15)
    assert session["status"]["jibri"]["nickname"] == nickname(free)
    assert session["status"]["attempts"] == 1, "a busy answer is not an attempt"
    assert len(taken.starts) == 1 and taken.refusals >= 1  # only the other controller's start took
