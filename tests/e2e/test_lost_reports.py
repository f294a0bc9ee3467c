"""A start accepted just before the operator dies, or loses its brewery connection: the Jibri's
`on` report goes to nobody (Jibri never repeats one). The session must still be Recording
within seconds, stop at its maxDuration counted from the accepted start, and be started once.

The Jibri sends `on` two seconds after accepting (its Chrome and ffmpeg "starting"), which
opens the window; each test checks that the report really was lost, so none passes by luck.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from netcut import Cuttable
from operator_fixture import Environment, OperatorProcess, eventually
from sim import jibri_factory, stops
from test_sessions import restartable, starts, with_operator_log  # noqa: F401 - the fixture

from jibri_operator.api.conditions import get_condition
from jibri_operator.api.types import RecordingStatus
from jibri_sandbox.jibri.simulator import SimulatedJibri

pytestmark = pytest.mark.e2e

ON_DELAY = 2.0  # from the Jibri's accepting the start to its `on` report
MAX_DURATION = 12.0  # longer than an operator restart on a loaded machine (6 s seen)


def on_sent(jibri: SimulatedJibri) -> bool:
    return any(report.update.status is RecordingStatus.ON for report in jibri.reports)


def on_acknowledged(jibri: SimulatedJibri) -> bool:
    return any(r.update.status is RecordingStatus.ON and r.acknowledged for r in jibri.reports)


def accepted(env: Environment, name: str) -> bool:
    return bool(((env.get_session(name) or {}).get("status") or {}).get("jibri", {}).get("acceptedAt"))


def recording_condition(session: dict[str, Any]) -> dict[str, Any]:
    condition = get_condition(session["status"]["conditions"], "Recording")
    assert condition is not None and condition["status"] == "True", session["status"]
    return condition


async def check_stopped_at_max_duration(env: Environment, name: str, jibri: SimulatedJibri) -> None:
    """Completed by the operator's stop, about maxDuration after the Jibri accepted the start."""
    session = await env.wait_phase(name, "Completed", "Failed", timeout=MAX_DURATION + 15)
    assert session["status"]["phase"] == "Completed", session["status"]
    assert stops(jibri) == 1, "stopped by the operator, once"
    (recorded,) = jibri.history
    assert recorded.ended is not None and recorded.ended_by == "stop"
    recorded_for = recorded.ended - recorded.started
    # Counted from the accepted start (its time as written, to the millisecond), not from
    # the restart or the reconnect, which came seconds later.
    assert MAX_DURATION - 0.5 <= recorded_for <= MAX_DURATION + 2.0, f"recorded {recorded_for:.2f}s"
    assert session["status"]["attempts"] == 1


async def test_operator_killed_between_the_accepted_start_and_the_on_report(
    restartable: tuple[OperatorProcess, Environment],
    xmpp_account: Callable[..., tuple[str, str]],
) -> None:
    process, env = restartable
    try:
        async with jibri_factory(env.prosody, env.brewery, xmpp_account) as make:
            (jibri,) = await make(1, on_delay=ON_DELAY)
            await eventually(
                lambda: (env.environment() or {}).get("status", {}).get("connected"), 20, "brewery joined"
            )
            env.session("killed", maxDuration=f"{MAX_DURATION:g}s")
            await eventually(lambda: accepted(env, "killed"), 10, "the accepted start written")
            process.kill()
            assert not on_sent(jibri), "killed before the on report"
            await jibri.wait_until(on_sent, ON_DELAY + 5)
            assert not on_acknowledged(jibri), "the on report reached nobody"
            assert jibri.busy

            process.start()
            restarted = time.monotonic()
            session = await env.wait_phase("killed", "Recording", "Completed", "Failed", timeout=20)
            assert session["status"]["phase"] == "Recording", session["status"]
            assert time.monotonic() - restarted < 10, "Recording within seconds of the restart"
            condition = recording_condition(session)
            assert condition["reason"] == "AdoptedAfterRestart" and "adopted" in condition["message"]

            await check_stopped_at_max_duration(env, "killed", jibri)
            assert starts(jibri) == 1, "started exactly once"
            assert "PendingTimeout" not in [e.reason for e in env.cluster.events(env.namespace)]
    except (AssertionError, TimeoutError) as error:
        raise with_operator_log(process, error) from error


async def test_brewery_cut_between_the_accepted_start_and_the_on_report(
    restartable: tuple[OperatorProcess, Environment],
    xmpp_account: Callable[..., tuple[str, str]],
) -> None:
    """The operator's own connection to Prosody is cut (the Jibri's stays up) and kept out until
    the Jibri has sent its `on`; then let back in."""
    process, env = restartable
    proxy = await Cuttable(env.prosody.host, env.prosody.port).start()
    try:
        async with jibri_factory(env.prosody, env.brewery, xmpp_account) as make:
            (jibri,) = await make(1, on_delay=ON_DELAY)
            server = {"host": "127.0.0.1", "port": proxy.port}
            await asyncio.to_thread(
                env.cluster.patch, "xmppenvironments", env.namespace, env.name, {"spec": {"server": server}}
            )
            await eventually(
                lambda: (
                    proxy.open_connections and (env.environment() or {}).get("status", {}).get("connected")
                ),
                30,
                "the brewery joined through the proxy",
            )
            await eventually(lambda: env.jibri_counts().get("idle") == 1, 15, "the Jibri seen idle")
            env.session("cut", maxDuration=f"{MAX_DURATION:g}s")
            await eventually(lambda: accepted(env, "cut"), 10, "the accepted start written")
            proxy.cut(refuse=True)
            assert not on_sent(jibri), "cut before the on report"
            await jibri.wait_until(on_sent, ON_DELAY + 5)
            assert not on_acknowledged(jibri), "the on report reached nobody"

            proxy.allow()
            back = time.monotonic()
            session = await env.wait_phase("cut", "Recording", "Completed", "Failed", timeout=20)
            assert session["status"]["phase"] == "Recording", session["status"]
            assert time.monotonic() - back < 10, "Recording within seconds of the reconnect"
            assert recording_condition(session)["reason"] == "AdoptedAfterReconnect"

            await check_stopped_at_max_duration(env, "cut", jibri)
            assert starts(jibri) == 1, "started exactly once"
    except (AssertionError, TimeoutError) as error:
        raise with_operator_log(process, error) from error
    finally:
        await proxy.close()


async def test_a_start_that_ended_unseen_is_never_started_again(
    restartable: tuple[OperatorProcess, Environment],
    xmpp_account: Callable[..., tuple[str, str]],
) -> None:
    """Killed after the accepted start; the Jibri records a second and goes idle before the
    operator is back. Status says it accepted: it may have recorded, so the session fails
    (OutcomeUnknown) rather than be recorded twice."""
    process, env = restartable
    try:
        async with jibri_factory(env.prosody, env.brewery, xmpp_account) as make:
            jibri, spare = await make(2, on_delay=ON_DELAY, recording_duration=1.0)
            await eventually(
                lambda: (env.environment() or {}).get("status", {}).get("connected"), 20, "brewery joined"
            )
            env.session("unseen")
            await eventually(lambda: accepted(env, "unseen"), 10, "the accepted start written")
            process.kill()
            ran = jibri if jibri.starts else spare
            await ran.wait_until(lambda j: j.history and j.history[-1].ended, ON_DELAY + 10)
            assert not on_acknowledged(ran), "its reports reached nobody"

            process.start()
            session = await env.wait_phase("unseen", "Recording", "Completed", "Failed", timeout=20)
            assert session["status"]["phase"] == "Failed", session["status"]
            assert session["status"]["failureReason"] == "OutcomeUnknown"
            assert starts(jibri) + starts(spare) == 1, "never started twice"
    except (AssertionError, TimeoutError) as error:
        raise with_operator_log(process, error) from error
