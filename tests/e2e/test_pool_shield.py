"""JibriPool, second step: anticipation (schedule, learned profile) wired to a real pool,
recordings shielded from Kubernetes itself (state labels, annotations, a PodDisruptionBudget,
cordon before removal), a changed jibri.conf rolled out, and restarts mid-scale-up.

Same world as test_pools.py: its own API server, a kubelet running real simulated Jibris,
the operator as a process, a real Prosody.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
from operator_fixture import both_planes, eventually
from sim import other_controller
from test_pools import World, pool_body, world  # noqa: F401 - the fixture

from jibri_operator.api.types import Dialect, RecordingMode
from jibri_operator.fleet.profile import ArrivalProfile
from jibri_operator.xmpp.stanzas import StartRequest

pytestmark = pytest.mark.e2e
STATE = "jibri.dev/state"


def labels(world: World) -> dict[str, str]:
    return {name: (pod.metadata.labels or {}).get(STATE, "") for name, pod in world.pods().items()}


def reasons(world: World) -> list[str]:
    return [event.reason for event in world.cluster.events(world.env.namespace)]


def explain(world: World, error: BaseException) -> AssertionError:
    return AssertionError(f"{error!r}\nstatus: {world.status()}\noperator log:\n{world.operator.tail(60)}")


async def create_pool(world: World, **spec: Any) -> None:
    await asyncio.to_thread(world.cluster.create, "jibripools", world.env.namespace, pool_body(**spec))


async def test_pods_carry_their_state_and_recording_pods_are_shielded(world: World) -> None:
    env = world.env
    await create_pool(world, replicas={"min": 1, "max": 2})
    try:
        await eventually(lambda: list(labels(world).values()) == ["idle"], 30, "an idle pod labelled idle")
        (idle,) = world.pods()
        annotations = world.pods()[idle].metadata.annotations or {}
        assert annotations.get("controller.kubernetes.io/pod-deletion-cost") == "-100"
        env.session("shielded")
        session = await env.wait_phase("shielded", "Recording", timeout=30)
        busy = session["status"]["jibri"]["nickname"]
        await eventually(lambda: labels(world).get(busy) == "busy", 10, "the recording pod labelled busy")
        annotations = world.pods()[busy].metadata.annotations or {}
        assert annotations.get("cluster-autoscaler.kubernetes.io/safe-to-evict") == "false"
        budget = world.cluster.policy.read_namespaced_pod_disruption_budget(
            "recorders-recording", env.namespace
        )
        assert budget.spec.min_available == 4  # more than the pool can ever run: none may go
        assert budget.spec.selector.match_labels == {"jibri.dev/pool": "recorders", STATE: "busy"}
        assert budget.metadata.owner_references[0].kind == "JibriPool"
    except Exception as error:
        raise explain(world, error) from error


async def test_a_warm_window_grows_the_pool_and_says_why(world: World) -> None:
    """A window open all hour: three idle Jibris instead of one, and the breakdown explains it."""
    window = {"start": "0 * * * *", "duration": "60m", "idleTarget": 3}
    await create_pool(world, replicas={"min": 1, "max": 5}, schedule=[window], timeZone="Europe/Berlin")
    try:
        await eventually(lambda: world.status().get("idle") == 3, 40, "three warm Jibris")
        breakdown = world.status()["desiredBreakdown"]
        assert breakdown["idleTarget"] == 1 and breakdown["scheduled"] == 2
        assert "warm window" in breakdown["reason"] and world.status()["desired"] == 3
        await eventually(lambda: "Anticipating" in reasons(world), 10, "an Event saying why")
        table = await asyncio.to_thread(world.kubectl, "get", "jibripool", "recorders", "-o", "wide")
        assert "warm window" in table and "SCHEDULED" in table
    except Exception as error:
        raise explain(world, error) from error


async def test_a_learned_profile_survives_in_its_config_map_and_warms_the_pool(world: World) -> None:
    """Three weeks of a burst of 6 sessions at this time of the week, as a restarted operator
    finds them in the pool's ConfigMap: the pool pre-warms for it."""
    now = time.time()
    profile = ArrivalProfile(time_zone="UTC")
    week = 7 * 86400
    for weeks_ago in (3, 2, 1):
        start = now - weeks_ago * week
        profile.advance(start - 600)
        for index in range(6):
            profile.record_arrival(start + 20 + index)
        profile.advance(start + 900)
    profile.advance(now - 60)
    body = {
        "metadata": {"name": "recorders-arrivals"},
        "data": {"profile.json": json.dumps(profile.to_dict())},
    }
    await asyncio.to_thread(world.cluster.core.create_namespaced_config_map, world.env.namespace, body)
    await create_pool(world, replicas={"min": 1, "max": 8}, timeZone="UTC")
    try:
        await eventually(
            lambda: (world.status().get("desiredBreakdown") or {}).get("learned", 0) > 0, 30, "learned"
        )
        assert "learned" in world.status()["desiredBreakdown"]["reason"]
        await eventually(lambda: world.status().get("replicas", 0) > 1, 30, "pre-warmed pods")
    except Exception as error:
        raise explain(world, error) from error


async def test_a_pod_taken_while_being_removed_is_kept(
    world: World, xmpp_account: Callable[..., tuple[str, str]]
) -> None:
    """Cordon, re-check, then delete: another controller starting a recording on a pod the pool
    has just chosen to remove keeps that pod."""
    env = world.env
    await create_pool(world, replicas={"min": 0, "max": 2}, scaleDownDelay="0s", idleTarget=1)
    try:
        env.session("first")
        await env.wait_phase("first", "Recording", timeout=30)
        await eventually(lambda: world.status().get("idle") == 1, 30, "a second, warm pod")
        async with other_controller(env.prosody, env.brewery, xmpp_account) as jicofo:
            await asyncio.to_thread(
                env.cluster.patch, "recordingsessions", env.namespace, "first", {"spec": {"stop": True}}
            )
            # Two idle, one wanted, no delay: one is chosen, labelled draining, and re-checked.
            draining = await eventually(
                lambda: next((n for n, s in labels(world).items() if s == "draining"), None),
                15,
                "a draining pod",
            )
            request = StartRequest(f"taken@{env.muc_domain}", RecordingMode.FILE, "jicofo-1")
            await jicofo.start_recording(f"{env.brewery}/{draining}", request, Dialect.CURRENT)
            await eventually(lambda: "RemovalCancelled" in reasons(world), 10, "the removal to be cancelled")
            assert draining in world.pods()
            await eventually(lambda: labels(world).get(draining) == "busy", 10, "labelled busy again")
    except Exception as error:
        raise explain(world, error) from error


async def test_a_changed_jibri_conf_is_rolled_out_without_touching_a_recording(world: World) -> None:
    env = world.env
    await create_pool(world, replicas={"min": 1, "max": 3}, idleTarget=1)
    try:
        await eventually(lambda: world.status().get("idle") == 1, 30, "one warm Jibri")
        env.session("long")
        recording = (await env.wait_phase("long", "Recording", timeout=30))["status"]["jibri"]["nickname"]
        await eventually(lambda: world.status().get("idle") == 1 and len(world.pods()) == 2, 30, "a warm one")
        (old_idle,) = [name for name in world.pods() if name != recording]
        patch = {"spec": {"environments": ["meet"], "singleUse": False, "template": {"spec": {
            "terminationGracePeriodSeconds": 6,
            "containers": [{"name": "jibri", "image": "jitsi/jibri:stable", "env": [{"name": "TZ", "value": "UTC"}]}],
        }}}}  # fmt: skip
        await asyncio.to_thread(world.cluster.patch, "jibripools", env.namespace, "recorders", patch)
        await eventually(lambda: old_idle not in world.pods(), 40, "the outdated idle pod replaced")
        assert recording in world.pods() and env.phase("long") == "Recording", "the recording is untouched"
        await asyncio.to_thread(
            env.cluster.patch, "recordingsessions", env.namespace, "long", {"spec": {"stop": True}}
        )
        await eventually(lambda: recording not in world.pods(), 40, "the outdated pod replaced once idle")

        def all_current() -> bool:
            pods = world.pods()
            hashes = {(p.metadata.annotations or {}).get("jibri.dev/config-hash") for p in pods.values()}
            return len(hashes) == 1 and world.status().get("idle", 0) >= 1

        await eventually(all_current, 40, "every pod made from the new template")
    except Exception as error:
        raise explain(world, error) from error


async def test_a_restart_mid_scale_up_makes_no_duplicates_and_no_orphans(world: World) -> None:
    await create_pool(world, replicas={"min": 4, "max": 6})
    try:
        await eventually(lambda: len(world.pods()) >= 1, 30, "the scale-up to begin")
        world.operator.kill()
        world.operator.start()
        await eventually(lambda: world.status().get("idle") == 4, 60, "four warm Jibris")
        pods = world.pods()
        assert len(pods) == 4, f"no duplicates: {sorted(pods)}"
        owned = [
            p
            for p in pods.values()
            if p.metadata.owner_references and p.metadata.owner_references[0].kind == "JibriPool"
        ]
        assert len(owned) == 4, "no orphans"
    except Exception as error:
        raise explain(world, error) from error


def evict(world: World, name: str) -> int:
    """POST an Eviction; the HTTP status the API server answered."""
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": world.env.namespace},
    }
    try:
        world.cluster.core.create_namespaced_pod_eviction(name, world.env.namespace, body)
    except kubernetes.client.exceptions.ApiException as error:
        return int(error.status)
    return 201


@both_planes
async def test_evicting_a_recording_pod_is_refused_and_an_idle_one_allowed(world: World) -> None:
    """A drain or the cluster autoscaler evicts: the pool's PodDisruptionBudget lets the idle
    pod go (the pool replaces it) and refuses the recording one with 429. On the real control
    plane, kube-apiserver answers and kube-controller-manager keeps the budget's status."""
    env = world.env
    await create_pool(world, replicas={"min": 2, "max": 3}, idleTarget=1)
    try:
        env.session("kept")
        busy = (await env.wait_phase("kept", "Recording", timeout=30))["status"]["jibri"]["nickname"]
        await eventually(lambda: labels(world).get(busy) == "busy", 10, "the recording pod labelled busy")
        await eventually(
            lambda: (
                world.cluster.policy.read_namespaced_pod_disruption_budget(
                    "recorders-recording", env.namespace
                ).status.current_healthy
                == 1
            ),
            15,
            "the budget to count the recording pod",
        )
        assert await asyncio.to_thread(evict, world, busy) == 429
        idle = await eventually(
            lambda: next((name for name, state in labels(world).items() if state == "idle"), None),
            15,
            "an idle pod",
        )
        assert await asyncio.to_thread(evict, world, idle) == 201
        await eventually(
            lambda: idle not in world.pods() and world.status().get("idle") == 1, 30, "a replacement"
        )
        assert env.phase("kept") == "Recording" and busy in world.pods()
        if world.emulated:  # the emulation's audit log of pod removals
            outcomes = {
                (r["name"], r["verb"]): r["code"] for r in world.server.audit() if r["verb"] == "evict"
            }
            assert outcomes == {(busy, "evict"): 429, (idle, "evict"): 201}
    except Exception as error:
        raise explain(world, error) from error


async def test_a_burst_of_thirty_is_served_and_no_recording_pod_is_ever_removed(world: World) -> None:
    """30 sessions at once on a pool of min 1, idleTarget 2: every one records and completes,
    the pool shrinks after its delay, and the API server's audit log shows no deletion or
    eviction of a pod labelled busy."""
    env = world.env
    await create_pool(world, replicas={"min": 1, "max": 32}, idleTarget=2, scaleDownDelay="3s")
    try:
        await eventually(lambda: world.status().get("idle") == 2, 30, "two warm Jibris")
        names = [f"burst-{index:02d}" for index in range(30)]
        await asyncio.gather(
            *(
                asyncio.to_thread(env.session, name, maxDuration=f"{4 + index % 5}s")
                for index, name in enumerate(names)
            )
        )

        def completed() -> bool:
            items = env.cluster.custom.list_namespaced_custom_object(
                "jibri.dev", "v1alpha1", env.namespace, "recordingsessions"
            )["items"]
            return len(items) == 30 and all(
                (i.get("status") or {}).get("phase") == "Completed" for i in items
            )

        await eventually(completed, 180, "all 30 sessions to record and complete")
        for name in names:
            status = (env.get_session(name) or {})["status"]
            assert status["attempts"] == 1 and status["startedAt"], (name, status)
        await eventually(  # replicas leaves out draining pods: wait for the pods themselves to go
            lambda: world.status().get("replicas") == 2 and len(world.pods()) == 2,
            90,
            "the pool to shrink back",
        )
        removals = [r for r in world.server.audit() if r["verb"] in ("delete", "evict")]
        assert removals, "the pool removed pods"
        assert all((r.get("labels") or {}).get(STATE) != "busy" for r in removals), removals
    except Exception as error:
        raise explain(world, error) from error
