"""Recording methods (what each Jibri can do, learnt and shown) and tenancy (which namespaces
may use an XmppEnvironment), on real Prosody and the sandbox API server."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from operator_fixture import Cluster, Environment, eventually
from sim import JibriFactory, nickname

from jibri_operator.api.conditions import get_condition
from jibri_operator.api.types import RecordingMode

pytestmark = pytest.mark.e2e
FILE_ONLY = (RecordingMode.FILE,)


def scheduled(env: Environment, name: str, namespace: str | None = None) -> dict[str, str]:
    session = env.cluster.get("recordingsessions", namespace or env.namespace, name) or {}
    return get_condition((session.get("status") or {}).get("conditions"), "Scheduled") or {}


def reasons(cluster: Cluster, namespace: str) -> set[str]:
    return {event.reason for event in cluster.events(namespace)}


async def stream_key(env: Environment, namespace: str | None = None, name: str = "yt") -> str:
    key = f"live-{uuid.uuid4().hex}"
    await asyncio.to_thread(env.cluster.create_secret, namespace or env.namespace, name, {"streamKey": key})
    return key


async def test_a_refused_mode_is_learnt_and_the_session_lands_elsewhere(
    env: Environment, jibris: JibriFactory
) -> None:
    (file_only,) = await jibris(1, recording_modes=FILE_ONLY)
    (both,) = await jibris(1, healthy=False)  # so the file-only one is asked first
    await stream_key(env)
    env.session("live", mode="stream", streamKeySecretRef={"name": "yt"})
    await file_only.wait_until(lambda j: j.refusals == 1, 15)
    both.set_healthy(True)
    session = await env.wait_phase("live", "Recording", timeout=15)
    assert session["status"]["jibri"]["nickname"] == nickname(both)
    assert session["status"]["attempts"] == 1, "a refused mode is not a failed attempt"
    assert file_only.refusals == 1 and not file_only.starts, "never asked for stream again"

    def shows_the_mark() -> bool:
        status = (env.environment() or {}).get("status") or {}
        unable = {entry["nickname"]: entry["modes"] for entry in status.get("unableJibris") or []}
        stream = (status.get("methods") or {}).get("stream") or {}
        return unable == {nickname(file_only): ["stream"]} and stream.get("unable") == 1

    await eventually(shows_the_mark, 10, "the environment's status to show the refusal")
    await eventually(lambda: "ModeRefused" in reasons(env.cluster, env.namespace), 10, "a ModeRefused Event")


async def test_a_session_no_jibri_can_serve_waits_and_says_why(
    env: Environment, jibris: JibriFactory
) -> None:
    (file_only,) = await jibris(1, recording_modes=FILE_ONLY)
    await stream_key(env)
    env.session("waiting", mode="stream", streamKeySecretRef={"name": "yt"})
    await eventually(
        lambda: scheduled(env, "waiting").get("reason") == "NoJibriForMode", 15, "NoJibriForMode"
    )
    assert env.phase("waiting") == "Pending", "it waits; it does not fail"
    await eventually(
        lambda: "NoJibriForMode" in reasons(env.cluster, env.namespace), 10, "a NoJibriForMode Event"
    )

    def methods() -> dict[str, dict[str, int]]:
        return dict(((env.environment() or {}).get("status") or {}).get("methods") or {})

    await eventually(
        lambda: (
            methods().get("stream") == {"idle": 0, "busy": 0, "unable": 1}
            and methods().get("file") == {"idle": 1, "busy": 0, "unable": 0}
        ),
        10,
        "per-method counts in the environment's status",
    )

    (able,) = await jibris(1)
    session = await env.wait_phase("waiting", "Recording", timeout=15)
    assert session["status"]["jibri"]["nickname"] == nickname(able)
    assert file_only.refusals == 1


async def test_environments_are_shared_across_namespaces_only_where_allowed(
    env: Environment, jibris: JibriFactory
) -> None:
    (jibri,) = await jibris(1)
    tenant = f"{env.namespace}-tenant"
    stranger = f"{env.namespace}-stranger"
    core = env.cluster.core
    for name, labels in ((tenant, {"jibri.dev/recordings": "meet"}), (stranger, {})):
        await asyncio.to_thread(core.create_namespace, {"metadata": {"name": name, "labels": labels}})
    allowed = {"allowedNamespaces": {"matchLabels": {"jibri.dev/recordings": "meet"}}}
    await asyncio.to_thread(env.cluster.patch, "xmppenvironments", env.namespace, "meet", {"spec": allowed})
    # The same Secret name in the environment's namespace: it must never be the one read.
    await stream_key(env)
    key = await stream_key(env, tenant)

    def create(namespace: str, name: str, **spec: object) -> None:
        body = {
            "kind": "RecordingSession",
            "metadata": {"name": name},
            "spec": {
                "environment": "meet",
                "environmentNamespace": env.namespace,
                "room": f"{name}@{env.muc_domain}",
                **spec,
            },
        }
        env.cluster.create("recordingsessions", namespace, body)

    await asyncio.to_thread(create, stranger, "gatecrash")
    await eventually(
        lambda: scheduled(env, "gatecrash", stranger).get("reason") == "EnvironmentNotAllowed",
        15,
        "the stranger's session to be refused",
    )
    message = scheduled(env, "gatecrash", stranger)["message"]
    assert "spec.allowedNamespaces" in message and stranger in message
    await eventually(  # kopf posts Events in the background
        lambda: "EnvironmentNotAllowed" in reasons(env.cluster, stranger),
        10,
        "an EnvironmentNotAllowed Event",
    )
    assert not jibri.starts

    await asyncio.to_thread(create, tenant, "guest", mode="stream", streamKeySecretRef={"name": "yt"})
    await eventually(
        lambda: (
            (env.cluster.get("recordingsessions", tenant, "guest") or {}).get("status", {}).get("phase")
            == "Recording"
        ),
        15,
        "the tenant's session to record",
    )
    (start,) = jibri.starts
    assert start.stream_key is not None and start.stream_key.reveal() == key, "the tenant's own Secret"
    assert scheduled(env, "gatecrash", stranger).get("reason") == "EnvironmentNotAllowed"


async def test_sip_sessions_go_only_to_the_sip_brewery(env: Environment, jibris: JibriFactory) -> None:
    """Jicofo's split: SIP gateway Jibris in the SIP brewery, recorders in the recording one."""
    sip_brewery = f"sip-{uuid.uuid4().hex[:8]}@{env.muc_domain}"
    await asyncio.to_thread(
        env.cluster.patch, "xmppenvironments", env.namespace, "meet", {"spec": {"sipBrewery": sip_brewery}}
    )
    every_mode = (RecordingMode.FILE, RecordingMode.STREAM, RecordingMode.SIP)
    (recorder,) = await jibris(1, recording_modes=every_mode)  # could, but sits in the wrong brewery
    await eventually(lambda: env.jibri_counts().get("idle") == 1, 15, "the recorder to be seen")
    env.session("dial-in", mode="sip", sipAddress="sip:board@pbx.example.com", displayName="Board room")
    await eventually(
        lambda: scheduled(env, "dial-in").get("reason") == "NoJibriForMode", 15, "NoJibriForMode"
    )

    (gateway,) = await jibris(1, recording_modes=every_mode, sip_brewery=sip_brewery)
    session = await env.wait_phase("dial-in", "Recording", timeout=15)
    assert session["status"]["jibri"]["nickname"] == nickname(gateway)
    assert session["status"]["jibri"]["occupant"].startswith(f"{sip_brewery}/")
    (start,) = gateway.starts
    assert start.mode is RecordingMode.SIP and not recorder.starts
    methods = ((env.environment() or {}).get("status") or {}).get("methods") or {}
    assert "sip" in methods

    await asyncio.to_thread(
        env.cluster.patch, "recordingsessions", env.namespace, "dial-in", {"spec": {"stop": True}}
    )
    await env.wait_phase("dial-in", "Completed")
    await gateway.wait_until(lambda j: not j.busy, 5)
