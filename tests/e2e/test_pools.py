"""JibriPool end to end: the operator, a kubelet running real simulated-Jibri processes,
and Prosody. The pool scales up the moment idle headroom runs out and removes only idle
pods, never one that records.

Emulated, each test has an API server of its own: its kubelet is the one scheduler there.
On the real control plane (`both_planes`) the tests share it and its kubelet, and the
operator has exactly the rights manifests/ grants.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from operator_fixture import (
    Cluster,
    Environment,
    OperatorProcess,
    Plane,
    both_planes,
    eventually,
    install_crds,
    make_environment,
    start_operator,
)

from jibri_sandbox.apiserver.testing import RunningApiServer, start_process
from jibri_sandbox.focus import Focus
from jibri_sandbox.kubelet import FAULT, Kubelet
from jibri_sandbox.prosody import Prosody

pytestmark = pytest.mark.e2e


RECORDER_PASSWORD = "recorder-pw-5e0c1d"  # the simulated Jibri never logs in with it; only seen


class World:
    def __init__(
        self,
        cluster: Cluster,
        env: Environment,
        operator: OperatorProcess,
        kubeconfig: Path,
        password: str,
        server: RunningApiServer | None = None,
    ) -> None:
        self.cluster, self.env, self.operator = cluster, env, operator
        self.kubeconfig, self.jibri_password = kubeconfig, password
        self._server = server  # emulated only: its audit log

    @property
    def emulated(self) -> bool:
        return self._server is not None

    @property
    def server(self) -> RunningApiServer:
        assert self._server is not None, "the API server's audit log is the emulated plane's"
        return self._server

    def pool(self) -> dict[str, Any]:
        return self.cluster.get("jibripools", self.env.namespace, "recorders") or {}

    def status(self) -> dict[str, Any]:
        return dict(self.pool().get("status") or {})

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", self.env.namespace, *args],
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout

    def pods(self) -> dict[str, dict[str, Any]]:
        items = self.cluster.core.list_namespaced_pod(
            self.env.namespace, label_selector="jibri.dev/pool=recorders"
        )
        return {pod.metadata.name: pod for pod in items.items if pod.metadata.deletion_timestamp is None}


@pytest.fixture
async def world(
    plane: str,
    request: pytest.FixtureRequest,
    prosody: Prosody,
    xmpp_account: Callable[..., tuple[str, str]],
    tmp_path: Path,
) -> AsyncIterator[World]:
    """An operator of its own (namespaces ``pool-*``), a kubelet and an environment ready for pools.

    Emulated: an API server and kubelet of the test's own. Real: the shared control plane and
    its kubelet, the operator logged in as manifests/'s ServiceAccount; the test's namespace
    is deleted at the end, so its pods stop."""
    async with contextlib.AsyncExitStack() as stack:
        server: RunningApiServer | None = None
        if plane == "real":
            kube: Plane = request.getfixturevalue("real_plane")
            cluster: Cluster = request.getfixturevalue("real_cluster")
        else:
            server = await asyncio.to_thread(start_process, tmp_path / "api", audit_log=True)
            stack.callback(server.stop)
            await asyncio.to_thread(install_crds, server.kubeconfig)
            kube, cluster = (
                Plane("emulated", server.kubeconfig, server.kubeconfig),
                Cluster(server.kubeconfig),
            )
            await stack.enter_async_context(
                Kubelet(
                    server.kubeconfig, node_name="pool-node", startup_delay=0.3, state_dir=tmp_path / "node"
                )
            )
        operator = start_operator(kube, "pool-*", "jibri-operator-pools", tmp_path)
        stack.callback(operator.stop)
        env = await make_environment(cluster, prosody, xmpp_account, "pool")
        if plane == "real":  # before the operator stops (LIFO), so it still sees its sessions go
            stack.callback(cluster.core.delete_namespace, env.namespace)
        jid, password = xmpp_account("jibri")
        await asyncio.to_thread(
            cluster.create_secret, env.namespace, "jibri-login", {"username": jid, "password": password}
        )
        recorder = {"username": "recorder", "password": RECORDER_PASSWORD}
        await asyncio.to_thread(cluster.create_secret, env.namespace, "recorder-login", recorder)
        jibri_settings = {
            "controlLoginSecretRef": {"name": "jibri-login"},
            "callLoginSecretRef": {"name": "recorder-login"},
            "trustAllCerts": True,
            "usageTimeout": "4h",
        }
        await asyncio.to_thread(
            cluster.patch, "xmppenvironments", env.namespace, "meet", {"spec": {"jibri": jibri_settings}}
        )
        try:
            yield World(cluster, env, operator, kube.kubeconfig, password, server)
        except BaseException:
            print("operator log:\n" + operator.tail(80))
            raise


def pool_body(**spec: Any) -> dict[str, Any]:
    template = {
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "jibri", "image": "jitsi/jibri:stable"}],
        }
    }
    return {
        "kind": "JibriPool",
        "metadata": {"name": "recorders"},
        "spec": {"environments": ["meet"], "idleTarget": 1, "template": template, **spec},
    }


@both_planes
async def test_pool_scales_up_on_demand_and_down_only_idle_pods(world: World) -> None:
    env = world.env
    pool = pool_body(replicas={"min": 1, "max": 3}, scaleDownDelay="1s")
    await asyncio.to_thread(world.cluster.create, "jibripools", env.namespace, pool)
    try:
        await eventually(
            lambda: world.status().get("idle") == 1 and world.status().get("replicas") == 1,
            30,
            "one warm Jibri",
        )

        recording: dict[str, str] = {}
        for index in range(3):
            name = f"s{index}"
            env.session(name)
            session = await env.wait_phase(name, "Recording", timeout=30)
            recording[name] = session["status"]["jibri"]["nickname"]
            wanted = min(index + 2, 3)
            await eventually(lambda w=wanted: world.status().get("replicas") == w, 30, f"{wanted} pods")
        assert len(set(recording.values())) == 3, "each session on its own pod"
        assert set(recording.values()) <= set(world.pods())
        await eventually(
            lambda: any(
                c["type"] == "ScalingLimited" and c["status"] == "True"
                for c in world.status().get("conditions", [])
            ),
            10,
            "the pool to say it is at its maximum",
        )

        for name in ("s0", "s1"):
            env.cluster.patch("recordingsessions", env.namespace, name, {"spec": {"stop": True}})
            await env.wait_phase(name, "Completed")
        # Two idle, one wanted: after scaleDownDelay one idle pod goes; s2's pod stays.
        await eventually(
            lambda: world.status().get("replicas") == 2 and world.status().get("idle") == 1, 30, "scale-down"
        )
        assert recording["s2"] in world.pods(), "a recording pod is never removed"
        assert env.phase("s2") == "Recording"
        await eventually(  # the idle pod is labelled draining first, removed a moment later
            lambda: (
                {"ScaledUp", "ScaledDown"} <= {event.reason for event in world.cluster.events(env.namespace)}
            ),
            10,
            "ScaledUp and ScaledDown events",
        )
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(
            f"{error!r}\nstatus: {world.status()}\noperator log:\n{world.operator.tail(60)}"
        ) from error


async def test_single_use_pods_are_replaced_after_their_recording(world: World) -> None:
    env = world.env
    pool = pool_body(replicas={"min": 1, "max": 2}, singleUse=True)
    await asyncio.to_thread(world.cluster.create, "jibripools", env.namespace, pool)
    try:
        await eventually(lambda: world.status().get("idle") == 1, 30, "one warm Jibri")
        env.session("once")
        session = await env.wait_phase("once", "Recording", timeout=30)
        used = session["status"]["jibri"]["nickname"]
        env.cluster.patch("recordingsessions", env.namespace, "once", {"spec": {"stop": True}})
        await env.wait_phase("once", "Completed")
        # A single-use Jibri stays busy for ever: the pool must learn from the session's end.
        await eventually(lambda: used not in world.pods(), 30, "the spent pod to be removed")
        await eventually(lambda: world.status().get("idle") == 1, 30, "a fresh warm Jibri")
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(
            f"{error!r}\nstatus: {world.status()}\noperator log:\n{world.operator.tail(60)}"
        ) from error


async def test_a_failed_pod_is_replaced(world: World) -> None:
    env = world.env
    pool = pool_body(replicas={"min": 1, "max": 2})
    pool["spec"]["template"]["spec"]["restartPolicy"] = "Never"  # a crash leaves the pod Failed
    await asyncio.to_thread(world.cluster.create, "jibripools", env.namespace, pool)
    try:
        await eventually(lambda: world.status().get("idle") == 1, 30, "one warm Jibri")
        (first,) = world.pods()
        patch = {"metadata": {"annotations": {FAULT: "crash:1"}}}
        await asyncio.to_thread(world.cluster.core.patch_namespaced_pod, first, env.namespace, patch)
        await eventually(lambda: first not in world.pods(), 30, "the failed pod to be removed")
        await eventually(lambda: world.status().get("idle") == 1, 30, "a replacement to join")
        assert first not in world.pods()
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(
            f"{error!r}\nstatus: {world.status()}\noperator log:\n{world.operator.tail(60)}"
        ) from error


async def test_one_pool_serves_two_environments_as_one_fleet(
    world: World, prosody: Prosody, xmpp_account: Callable[..., tuple[str, str]]
) -> None:
    """Each pod joins both deployments' breweries; a pod busy for one is busy for the other,
    sessions of the two never share a pod, and the pool's headroom counts both."""
    env = world.env
    deployment = prosody.domains[1]
    other = await make_environment(
        world.cluster,
        prosody,
        xmpp_account,
        "pool",
        namespace=env.namespace,
        name="other",
        domain=deployment.domain,
    )
    jid, password = xmpp_account("jibri", deployment.domain)
    await asyncio.to_thread(
        world.cluster.create_secret,
        env.namespace,
        "other-jibri-login",
        {"username": jid, "password": password},
    )
    jibri = {
        "controlLoginSecretRef": {"name": "other-jibri-login"},
        "callLoginSecretRef": {"name": "recorder-login"},
        "trustAllCerts": True,
    }
    await asyncio.to_thread(
        world.cluster.patch, "xmppenvironments", env.namespace, "other", {"spec": {"jibri": jibri}}
    )
    pool = pool_body(environments=["meet", "other"], replicas={"min": 1, "max": 2})
    await asyncio.to_thread(world.cluster.create, "jibripools", env.namespace, pool)
    try:
        await eventually(lambda: world.status().get("idle") == 1, 30, "one warm Jibri in both breweries")
        await eventually(lambda: other.jibri_counts().get("idle") == 1, 15, "the other deployment to see it")
        env.session("in-meet")
        first = (await env.wait_phase("in-meet", "Recording", timeout=30))["status"]["jibri"]["nickname"]
        await eventually(
            lambda: other.jibri_counts().get("busy") == 1, 15, "busy for one is busy for the other"
        )
        await eventually(lambda: world.status().get("replicas") == 2, 30, "headroom counted across both")
        other.session("in-other")
        second = (await other.wait_phase("in-other", "Recording", timeout=30))["status"]["jibri"]["nickname"]
        assert first != second and {first, second} <= set(world.pods())
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(
            f"{error!r}\nstatus: {world.status()}\noperator log:\n{world.operator.tail(60)}"
        ) from error


async def test_pool_counts_its_pods_busy_for_another_controller(
    world: World, prosody: Prosody, xmpp_account: Callable[..., tuple[str, str]]
) -> None:
    """Jicofo (here the Jicofo-like focus) takes the pool's warm pod: the pool scales up for the
    operator's own sessions all the same, and never touches the pod recording for Jicofo."""
    env = world.env
    pool = pool_body(replicas={"min": 1, "max": 2}, scaleDownDelay="1s")
    await asyncio.to_thread(world.cluster.create, "jibripools", env.namespace, pool)
    jid, password = xmpp_account("focus")
    focus = Focus(jid, password, env.brewery, nickname="jicofo", ca_file=prosody.ca_file, wait_for_jibri=30)
    try:
        await eventually(lambda: world.status().get("idle") == 1, 30, "one warm Jibri")
        await focus.join(prosody.host, prosody.port)
        jicofo = asyncio.create_task(focus.record(f"jicofo@{env.muc_domain}", duration=60))
        await eventually(lambda: world.status().get("busy") == 1, 15, "the pod busy for Jicofo")
        await eventually(
            lambda: world.status().get("replicas") == 2 and world.status().get("idle") == 1,
            30,
            "a new warm pod",
        )
        (taken,) = [f.jibri for f in focus.recordings]
        assert taken in world.pods(), "the pod recording for Jicofo is kept"
        jicofo.cancel()
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(
            f"{error!r}\nstatus: {world.status()}\noperator log:\n{world.operator.tail(60)}"
        ) from error
    finally:
        await focus.close()


async def test_a_sip_pool_joins_the_sip_brewery_and_takes_sip_sessions(world: World) -> None:
    """A pool offering sip renders sip-control-muc; its pods join the SIP brewery too, and a
    sip session lands there. Busy there means busy for recordings as well: one pod, one Jibri."""
    env = world.env
    sip_brewery = f"sip-{uuid.uuid4().hex[:8]}@{env.muc_domain}"
    await asyncio.to_thread(
        world.cluster.patch, "xmppenvironments", env.namespace, "meet", {"spec": {"sipBrewery": sip_brewery}}
    )
    pool = pool_body(replicas={"min": 1, "max": 1}, recordingModes=["file", "sip"])
    await asyncio.to_thread(world.cluster.create, "jibripools", env.namespace, pool)
    try:
        await eventually(lambda: world.status().get("idle") == 1, 30, "one warm Jibri in both breweries")
        env.session("dial-in", mode="sip", sipAddress="sip:board@pbx.example.com")
        session = await env.wait_phase("dial-in", "Recording", timeout=30)
        assert session["status"]["jibri"]["occupant"].startswith(f"{sip_brewery}/")
        assert session["status"]["jibri"]["nickname"] in world.pods()
        env.session("notes", mode="file")
        await eventually(
            lambda: ((env.get_session("notes") or {}).get("status") or {}).get("phase") == "Pending",
            15,
            "the file session to wait: the only pod is busy with the SIP call",
        )
        env.cluster.patch("recordingsessions", env.namespace, "dial-in", {"spec": {"stop": True}})
        await env.wait_phase("dial-in", "Completed")
        session = await env.wait_phase("notes", "Recording", timeout=30)
        assert not session["status"]["jibri"]["occupant"].startswith(f"{sip_brewery}/")
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(
            f"{error!r}\nstatus: {world.status()}\noperator log:\n{world.operator.tail(60)}"
        ) from error


@pytest.mark.parametrize(
    ("delivery", "image"),
    [({"mode": "env"}, "jitsi/jibri:stable"), ({"mode": "mount"}, "sandbox/jibri:stable")],
)
async def test_every_delivery_route_starts_a_jibri_that_records(
    world: World, delivery: dict[str, str], image: str
) -> None:
    """The env route (the official image's own template from its variables) and mount (the file
    where a Jibri reads it) bring a pod's Jibri into the brewery as the pod's name, and it records."""
    env = world.env
    pool = pool_body(replicas={"min": 1, "max": 1}, configDelivery=delivery)
    pool["spec"]["template"]["spec"]["containers"][0]["image"] = image
    await asyncio.to_thread(world.cluster.create, "jibripools", env.namespace, pool)
    try:
        await eventually(lambda: world.status().get("idle") == 1, 30, "one warm Jibri")
        env.session("via-route")
        session = await env.wait_phase("via-route", "Recording", timeout=30)
        assert session["status"]["jibri"]["nickname"] in world.pods()
    except (AssertionError, TimeoutError) as error:
        raise AssertionError(
            f"{error!r}\nstatus: {world.status()}\noperator log:\n{world.operator.tail(60)}"
        ) from error


@both_planes
async def test_passwords_stay_in_their_secrets(world: World) -> None:
    """No password in the pod spec, the pool's status, an Event or the operator's log; render-config
    redacts them unless --show-secrets."""
    env = world.env
    await asyncio.to_thread(world.cluster.create, "jibripools", env.namespace, pool_body())
    await eventually(lambda: world.status().get("idle") == 1, 30, "one warm Jibri")
    secrets = (world.jibri_password, RECORDER_PASSWORD)
    (pod,) = world.pods().values()
    seen = [
        str(world.cluster.core.api_client.sanitize_for_serialization(pod)),
        str(world.pool()),
        str([(event.reason, event.message) for event in world.cluster.events(env.namespace)]),
        world.operator.tail(10_000),
    ]
    for text in seen:
        assert not any(secret in text for secret in secrets)
    command = [
        sys.executable, "-m", "jibri_operator.cli", "render-config", "recorders",
        "-n", env.namespace, "--kubeconfig", str(world.kubeconfig),
    ]  # fmt: skip
    redacted = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60)
    assert redacted.returncode == 0, redacted.stderr
    assert "JIBRI_XMPP_PASSWORD=***" in redacted.stdout
    assert not any(secret in redacted.stdout for secret in secrets)
    shown = await asyncio.to_thread(
        subprocess.run, [*command, "--show-secrets"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert all(secret in shown.stdout for secret in secrets)
