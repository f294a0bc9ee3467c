"""RecordingSession end to end: the operator process, the sandbox API server,
a real Prosody, and simulated Jibris speaking both dialects."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from operator_fixture import (
    Cluster,
    Environment,
    OperatorProcess,
    Plane,
    both_planes,
    eventually,
    make_environment,
    start_operator,
)
from prometheus_client.parser import text_string_to_metric_families
from sim import JibriFactory, jibri_factory, nickname, occupy, other_controller, stops

from jibri_operator.api.conditions import get_condition
from jibri_operator.api.types import Dialect
from jibri_sandbox.jibri.simulator import SimulatedJibri
from jibri_sandbox.prosody import Prosody

pytestmark = pytest.mark.e2e


def starts(jibri: SimulatedJibri) -> int:
    return len(jibri.starts)


# The dialect is the XMPP side's business: the real control plane repeats the current one.
@pytest.mark.parametrize(
    ("dialect", "plane"),
    [(Dialect.CURRENT, "emulated"), (Dialect.LEGACY, "emulated"), (Dialect.CURRENT, "real")],
    indirect=["plane"],
)
async def test_apply_record_delete(env: Environment, jibris: JibriFactory, dialect: Dialect) -> None:
    (jibri,) = await jibris(1, dialect=dialect)
    env.session("standup")
    session = await env.wait_phase("standup", "Recording")
    status = session["status"]
    assert status["jibri"]["nickname"] == nickname(jibri)
    assert status["jibri"]["dialect"] == dialect.value
    assert status["sessionId"] == session["metadata"]["uid"]
    assert status["attempts"] == 1 and status["startedAt"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Scheduled": "True",
        "Recording": "True",
        "Ready": "True",
    }
    assert all(c["observedGeneration"] == session["metadata"]["generation"] for c in status["conditions"])
    assert jibri.busy
    (start,) = jibri.starts
    assert start.room == session["spec"]["room"]
    if dialect is Dialect.CURRENT:
        assert start.session_id == session["metadata"]["uid"]

    await asyncio.to_thread(env.cluster.delete, "recordingsessions", env.namespace, "standup")
    await env.wait_gone("standup")
    assert stops(jibri) >= 1
    await jibri.wait_until(lambda j: not j.busy, 5)


@both_planes
async def test_stream_mode_hands_the_key_only_to_the_jibri(
    env: Environment, jibris: JibriFactory, operator: OperatorProcess
) -> None:
    (jibri,) = await jibris(1)
    key = f"live-{uuid.uuid4().hex}"
    await asyncio.to_thread(env.cluster.create_secret, env.namespace, "yt", {"streamKey": key})
    env.session("town-hall", mode="stream", streamKeySecretRef={"name": "yt"})
    session = await env.wait_phase("town-hall", "Recording")
    (start,) = jibri.starts
    assert start.stream_key is not None and start.stream_key.reveal() == key
    events = await asyncio.to_thread(env.cluster.events, env.namespace)
    assert events, "the operator records its decisions as Events"
    assert all(key not in (event.message or "") for event in events)
    assert key not in str(session)
    assert key not in operator.log.read_text(errors="replace")
    status, metrics = operator.http_get("/metrics")
    assert status == 200 and "jibri_operator_start_answers_total" in metrics
    assert key not in metrics


async def test_file_mode_has_no_key(env: Environment, jibris: JibriFactory) -> None:
    (jibri,) = await jibris(1)
    env.session("notes", mode="file")
    await env.wait_phase("notes", "Recording")
    (start,) = jibri.starts
    assert start.mode.value == "file" and start.stream_key is None


async def test_busy_jibris_are_skipped(
    env: Environment, jibris: JibriFactory, xmpp_account: Callable[..., tuple[str, str]]
) -> None:
    taken, free = await jibris(2)
    async with other_controller(env.prosody, env.brewery, xmpp_account) as jicofo:
        await occupy(jicofo, taken, f"elsewhere@{env.prosody.muc_domain}")  # busy presence in the brewery
        env.session("skip")
        session = await env.wait_phase("skip", "Recording")
    assert session["status"]["jibri"]["nickname"] == nickname(free)
    assert starts(taken) == 1  # only the other controller's


async def test_retryable_failure_moves_to_another_jibri(env: Environment, jibris: JibriFactory) -> None:
    (flaky,) = await jibris(1)
    (good,) = await jibris(1, healthy=False)  # so the flaky one is certainly tried first
    flaky.faults.start_fails = True
    flaky.faults.start_fails_should_retry = True
    env.session("retry")
    await eventually(lambda: starts(flaky) == 1, 10, "the flaky Jibri to be tried")
    good.set_healthy(True)
    session = await env.wait_phase("retry", "Recording")
    assert session["status"]["jibri"]["nickname"] == nickname(good)
    assert session["status"]["attempts"] == 2


async def test_final_failure_ends_failed(env: Environment, jibris: JibriFactory) -> None:
    (broken,) = await jibris(1)
    broken.faults.start_fails = True
    broken.faults.start_fails_should_retry = False
    env.session("doomed")
    session = await env.wait_phase("doomed", "Failed")
    assert session["status"]["failureReason"] == "error"
    assert starts(broken) == 1


@both_planes
async def test_waits_for_an_idle_jibri_and_starts_when_one_frees_up(
    env: Environment, jibris: JibriFactory
) -> None:
    (jibri,) = await jibris(1)
    env.session("first")
    await env.wait_phase("first", "Recording")
    env.session("second")
    await env.wait_phase("second", "Pending")
    await eventually(
        lambda: any(
            c.get("reason") == "NoIdleJibri"
            for c in (env.get_session("second") or {}).get("status", {}).get("conditions", [])
        ),
        10,
        "a condition saying why the session waits",
    )
    env.cluster.patch("recordingsessions", env.namespace, "first", {"spec": {"stop": True}})
    await env.wait_phase("first", "Completed")
    await env.wait_phase("second", "Recording", timeout=5)
    assert starts(jibri) == 2


async def test_fifty_sessions_on_fifty_jibris(env: Environment, jibris: JibriFactory) -> None:
    fleet = await jibris(50)
    names = [f"s{index:02d}" for index in range(50)]
    await asyncio.gather(*(asyncio.to_thread(env.session, name) for name in names))

    def all_recording() -> bool:
        items = env.cluster.custom.list_namespaced_custom_object(
            "jibri.dev", "v1alpha1", env.namespace, "recordingsessions"
        )["items"]
        return len(items) == 50 and all(item.get("status", {}).get("phase") == "Recording" for item in items)

    await eventually(all_recording, 60, "50 sessions to be Recording")
    assert sorted(starts(j) for j in fleet) == [1] * 50, "no Jibri got two starts"


async def test_a_busy_jibri_without_an_on_report_is_not_cut_at_pending_timeout(
    env: Environment, jibris: JibriFactory
) -> None:
    """No `on` within pendingTimeout, but busy since it took the start: the report may have been
    lost (Jibri never repeats one), and a live recording is not cut for it (issue 15)."""
    (silent,) = await jibris(1)
    silent.faults.never_on = True  # pending (busy) forever, no report
    env.session("patience", pendingTimeout="1s")
    session = await env.wait_phase("patience", "Recording", timeout=15)
    condition = get_condition(session["status"]["conditions"], "Recording")
    assert condition is not None and condition["reason"] == "JibriBusy", condition
    assert "no on report came within 1s" in condition["message"]
    assert stops(silent) == 0 and starts(silent) == 1
    assert "PendingTimeout" not in [e.reason for e in env.cluster.events(env.namespace)]
    await asyncio.to_thread(env.cluster.delete, "recordingsessions", env.namespace, "patience")
    await env.wait_gone("patience", timeout=30)
    assert stops(silent) == 1


async def test_stuck_in_pending_is_stopped_and_retried_elsewhere(
    env: Environment, jibris: JibriFactory
) -> None:
    """A 2016-spec Jibri stuck before recording never says busy: pendingTimeout still stops it
    and records elsewhere."""
    (stuck,) = await jibris(1, dialect=Dialect.LEGACY)  # alone at first: the one tried
    stuck.faults.never_on = True
    env.session("patience", pendingTimeout="1s")
    await eventually(lambda: starts(stuck) == 1, 10, "the stuck Jibri to be tried")
    (good,) = await jibris(1, dialect=Dialect.LEGACY)
    session = await env.wait_phase("patience", "Recording", timeout=15)
    assert session["status"]["jibri"]["nickname"] == nickname(good)
    assert stops(stuck) == 1, "the stuck attempt was stopped"
    await stuck.wait_until(lambda j: not j.busy, 5)


@both_planes
async def test_max_duration_stops_the_recording(env: Environment, jibris: JibriFactory) -> None:
    (jibri,) = await jibris(1)
    env.session("brief", maxDuration="1s")
    await env.wait_phase("brief", "Recording")
    session = await env.wait_phase("brief", "Completed", timeout=10)
    assert stops(jibri) == 1
    assert session["status"]["endedAt"]
    assert {c["type"]: c["status"] for c in session["status"]["conditions"]}["Succeeded"] == "True"


async def test_a_jibri_leaving_mid_session_is_a_retry(env: Environment, jibris: JibriFactory) -> None:
    (vanishing,) = await jibris(1)
    (good,) = await jibris(1, healthy=False)
    vanishing.faults.disconnect_after_on = True
    env.session("resilient", jibriLeaveGrace="1s")
    await vanishing.wait_until(lambda j: j.disconnected, 10)
    good.set_healthy(True)
    session = await env.wait_phase("resilient", "Recording", timeout=15)
    await eventually(
        lambda: (
            (env.get_session("resilient") or {}).get("status", {}).get("jibri", {}).get("nickname")
            == nickname(good)
        ),
        10,
        "the session to move to the good Jibri",
    )
    session = env.get_session("resilient") or {}
    assert session["status"]["attempts"] == 2
    await eventually(
        lambda: "JibriLeft" in {event.reason for event in env.cluster.events(env.namespace)},
        10,
        "a JibriLeft Event",
    )


async def test_a_jibri_cut_off_for_a_moment_is_followed_when_it_comes_back(
    env: Environment, jibris: JibriFactory
) -> None:
    """An XMPP blip: the Jibri leaves the brewery but keeps recording, and comes back busy
    within jibriLeaveGrace. Retrying elsewhere would record the session twice."""
    (blipping,) = await jibris(1)
    (other,) = await jibris(1, healthy=False)
    env.session("steady")
    await env.wait_phase("steady", "Recording")
    other.set_healthy(True)
    blipping.blip(offline=1.0)
    await eventually(
        lambda: "JibriBack" in {event.reason for event in env.cluster.events(env.namespace)}, 15, "JibriBack"
    )
    session = env.get_session("steady") or {}
    assert session["status"]["phase"] == "Recording" and session["status"]["attempts"] == 1
    assert starts(other) == 0 and blipping.recording, "still recorded once, on the same Jibri"


async def test_a_jibri_back_too_late_is_stopped_so_nothing_is_recorded_twice(
    env: Environment, jibris: JibriFactory
) -> None:
    """Gone longer than jibriLeaveGrace: the session moves on; when the old Jibri comes back
    still recording it, the operator stops it."""
    (late,) = await jibris(1)
    (other,) = await jibris(1, healthy=False)
    env.session("moved", jibriLeaveGrace="1s")
    await env.wait_phase("moved", "Recording")
    other.set_healthy(True)
    late.blip(offline=4.0)
    await eventually(lambda: starts(other) == 1, 15, "the session to move on")
    await late.wait_until(lambda j: not j.busy, 15)
    (orphan,) = late.history
    assert orphan.ended_by == "stop", "the orphaned recording was stopped"
    session = env.get_session("moved") or {}
    assert session["status"]["phase"] == "Recording" and session["status"]["jibri"]["nickname"] == nickname(
        other
    )


async def test_an_unanswered_start_is_followed_not_repeated(env: Environment, jibris: JibriFactory) -> None:
    """The answer is lost but the Jibri did start: its `on` report must win, with no second recording."""
    (silent,) = await jibris(1)
    (other,) = await jibris(1, healthy=False)
    silent.faults.lose_start_reply = True
    env.session("lost-answer")
    await eventually(lambda: starts(silent) == 1, 10, "the start to reach the silent Jibri")
    other.set_healthy(True)
    session = await env.wait_phase("lost-answer", "Recording", timeout=20)  # the command timeout is 10 s
    assert session["status"]["jibri"]["nickname"] == nickname(silent)
    assert starts(other) == 0
    await eventually(
        lambda: "StartUnanswered" in {event.reason for event in env.cluster.events(env.namespace)},
        10,
        "a StartUnanswered Event",
    )


async def test_probes_and_metrics(env: Environment, jibris: JibriFactory, operator: OperatorProcess) -> None:
    await jibris(1)
    env.session("measured")
    await env.wait_phase("measured", "Recording")
    assert operator.http_get("/healthz")[0] == 200
    assert operator.http_get("/readyz")[0] == 200
    status, text = operator.http_get("/metrics")
    assert status == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    labels = (("environment", "meet"), ("namespace", env.namespace))
    assert samples[("jibri_operator_brewery_joined", labels)] == 1
    assert samples[("jibri_operator_start_answers_total", (*labels, ("outcome", "accepted")))] == 1
    assert samples[("jibri_operator_waiting_sessions", labels)] == 0
    assert samples[("jibri_operator_jibris", (*labels, ("state", "busy")))] in (
        0,
        1,
    )  # status writes coalesce
    assert samples[("jibri_operator_assign_seconds_count", (("namespace", env.namespace),))] == 1


# --- restarts -------------------------------------------------------------------------


@pytest.fixture
async def restartable(
    kube_plane: Plane,
    cluster: Cluster,
    prosody: Prosody,
    xmpp_account: Callable[..., tuple[str, str]],
    tmp_path: Any,
) -> AsyncIterator[tuple[OperatorProcess, Environment]]:
    """An operator of its own (namespaces ``rs-*``) that the test may kill."""
    process = start_operator(kube_plane, "rs-*", "jibri-operator-restart", tmp_path)
    environment = await make_environment(cluster, prosody, xmpp_account, "rs")
    try:
        yield process, environment
    finally:
        process.stop()


def with_operator_log(process: OperatorProcess, error: BaseException) -> AssertionError:
    lines = int(os.environ.get("OPERATOR_LOG_LINES", "80"))
    return AssertionError(f"{error!r}\noperator log:\n{process.tail(lines)}")


# (variant, phase to kill the operator in). A 2016-spec Jibri is Recording the moment it
# says busy, so it has no Starting worth killing in.
# The real control plane repeats one: the restarted operator resumes as manifests/'s account.
RESTARTS = [
    ("current", "Starting", "emulated"),
    ("current", "Recording", "emulated"),
    ("current", "Recording", "real"),
    ("legacy", "Recording", "emulated"),
    ("legacy-with-reports", "Recording", "emulated"),
]


@pytest.mark.parametrize(("variant", "kill_in", "plane"), RESTARTS, indirect=["plane"])
async def test_operator_restart_never_records_twice(
    restartable: tuple[OperatorProcess, Environment],
    xmpp_account: Callable[..., tuple[str, str]],
    variant: str,
    kill_in: str,
) -> None:
    process, env = restartable
    try:
        await restart_scenario(process, env, xmpp_account, variant, kill_in)
    except (AssertionError, TimeoutError) as error:
        raise with_operator_log(process, error) from error


def variant_settings(variant: str) -> dict[str, Any]:
    """The simulated Jibri's settings for a dialect variant (see jibri_sandbox.jibri.simulator)."""
    if variant == "current":
        return {"dialect": Dialect.CURRENT}
    return {"dialect": Dialect.LEGACY, "legacy_reports": variant == "legacy-with-reports"}


async def restart_scenario(
    process: OperatorProcess,
    env: Environment,
    xmpp_account: Callable[..., tuple[str, str]],
    variant: str,
    kill_in: str,
) -> None:
    async with jibri_factory(env.prosody, env.brewery, xmpp_account) as make:
        fleet = await make(3, on_delay=3.0 if kill_in == "Starting" else 0.05, **variant_settings(variant))
        await eventually(
            lambda: (env.environment() or {}).get("status", {}).get("connected"), 20, "brewery joined"
        )
        # A legacy Jibri's recording must outlive a short pendingTimeout across the restart too.
        # (A current one killed in Starting may be started again, and then needs its 3 s to `on`.)
        env.session("survivor", **({"pendingTimeout": "2s"} if variant != "current" else {}))
        await env.wait_phase("survivor", kill_in)
        process.kill()
        process.start()
        session = await env.wait_phase("survivor", "Recording", timeout=30)
        assert sum(starts(j) for j in fleet) == 1, "exactly one start for one session"
        (recording,) = [j for j in fleet if j.busy]
        assert session["status"]["jibri"]["nickname"] == nickname(recording)

        await asyncio.to_thread(env.cluster.delete, "recordingsessions", env.namespace, "survivor")
        await env.wait_gone("survivor", timeout=30)
        await recording.wait_until(lambda j: not j.busy, 10)
        assert not any(j.busy for j in fleet), "no orphan recording"


@pytest.mark.parametrize("variant", ["legacy", "legacy-with-reports", "current"])
async def test_a_recording_that_ended_while_the_operator_was_away_is_completed(
    restartable: tuple[OperatorProcess, Environment],
    xmpp_account: Callable[..., tuple[str, str]],
    variant: str,
) -> None:
    """Back from a restart, a session whose Jibri is idle again concludes, and never starts again."""
    process, env = restartable
    try:
        async with jibri_factory(env.prosody, env.brewery, xmpp_account) as make:
            (jibri,) = await make(1, recording_duration=3.0, **variant_settings(variant))
            await eventually(
                lambda: (env.environment() or {}).get("status", {}).get("connected"), 20, "brewery joined"
            )
            env.session("away")
            await env.wait_phase("away", "Recording")
            process.kill()
            await jibri.wait_until(lambda j: j.starts and not j.busy, 15)
            process.start()
            session = await env.wait_phase("away", "Completed", timeout=30)
            assert starts(jibri) == 1 and stops(jibri) == 0
            assert session["status"]["attempts"] == 1
    except (AssertionError, TimeoutError) as error:
        raise with_operator_log(process, error) from error
