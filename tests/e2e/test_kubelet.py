"""The sandbox kubelet against the sandbox API server: pods run, report, restart, stop, fail on cue.

Pods are created and read with the official kubernetes client (in a thread, so
the in-process kubelet keeps running on the event loop); every wait is on a
condition with a timeout.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from operator_fixture import eventually

from jibri_sandbox.apiserver.testing import RunningApiServer
from jibri_sandbox.kubelet import EXIT_AFTER, EXIT_CODE, FAULT, Kubelet, volumes

pytestmark = pytest.mark.e2e
T = TypeVar("T")
NODE = "kubelet-test-node"
until = eventually  # poll the API (in a thread) until a condition holds


@pytest.fixture(scope="module")
def core(apiserver: RunningApiServer) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(apiserver.kubeconfig)))


@pytest.fixture(scope="module")
async def kubelet(
    apiserver: RunningApiServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Kubelet]:
    async with Kubelet(
        apiserver.kubeconfig,
        node_name=NODE,
        startup_delay=0.3,
        restart_backoff=0.3,
        state_dir=tmp_path_factory.mktemp("kubelet"),
    ) as running:
        yield running


@pytest.fixture
async def ns(core: client.CoreV1Api) -> AsyncIterator[str]:
    name = f"kl-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(core.create_namespace, {"metadata": {"name": name}})
    yield name
    await asyncio.to_thread(core.delete_namespace, name)


def pod_body(name: str, command: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    annotations = spec.pop("annotations", {})
    container = {"name": "main", "image": "busybox:1.36", "command": command or ["sleep", "infinity"]}
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"containers": [container], **spec},
    }


def read(core: client.CoreV1Api, ns: str, name: str) -> Any:
    try:
        return core.read_namespaced_pod(name, ns)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def condition(pod: Any, kind: str) -> Any:
    return next((c for c in pod.status.conditions or () if c.type == kind), None)


def is_ready(pod: Any) -> bool:
    return bool(pod and condition(pod, "Ready") and condition(pod, "Ready").status == "True")


async def create(core: client.CoreV1Api, ns: str, body: dict[str, Any]) -> None:
    await asyncio.to_thread(core.create_namespaced_pod, ns, body)


async def test_node_is_registered_and_ready(kubelet: Kubelet, core: client.CoreV1Api) -> None:
    node = await asyncio.to_thread(core.read_node, NODE)
    ready = next(c for c in node.status.conditions if c.type == "Ready")
    assert ready.status == "True" and ready.reason == "KubeletReady"
    assert node.status.node_info.kubelet_version.startswith("v1.32")
    assert {"type": "InternalIP", "address": "127.0.0.1"} in [a.to_dict() for a in node.status.addresses]


async def test_pod_starts_and_reports_ready(kubelet: Kubelet, core: client.CoreV1Api, ns: str) -> None:
    await create(core, ns, pod_body("sleeper"))
    pending = await until(lambda: read(core, ns, "sleeper").spec.node_name, what="binding")
    assert pending == NODE
    pod = await until(lambda: (p := read(core, ns, "sleeper")) and is_ready(p) and p, what="Ready")
    status = pod.status
    assert status.phase == "Running"
    assert status.host_ip == "127.0.0.1" and status.pod_ip.startswith("10.244.")
    assert status.start_time is not None
    kinds = {c.type: c for c in status.conditions}
    for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert kinds[kind].status == "True" and kinds[kind].last_transition_time is not None
    (cs,) = status.container_statuses
    assert (cs.name, cs.image, cs.ready, cs.started, cs.restart_count) == (
        "main",
        "busybox:1.36",
        True,
        True,
        0,
    )
    assert cs.state.running.started_at is not None and cs.container_id


async def test_startup_delay_shows_container_creating(
    kubelet: Kubelet, core: client.CoreV1Api, ns: str
) -> None:
    await create(core, ns, pod_body("slow"))
    creating = await until(
        lambda: (p := read(core, ns, "slow")) and p.status.container_statuses and p, what="first status"
    )
    assert creating.status.phase == "Pending"
    assert creating.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    assert condition(creating, "Ready").reason == "ContainersNotReady"
    await until(lambda: is_ready(read(core, ns, "slow")), what="Ready")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_delete_sends_sigterm_then_sigkill(kubelet: Kubelet, core: client.CoreV1Api, ns: str) -> None:
    stubborn = pod_body(
        "stubborn", ["sh", "-c", "trap '' TERM; sleep infinity"], terminationGracePeriodSeconds=2
    )
    await create(core, ns, stubborn)
    await create(core, ns, pod_body("polite", terminationGracePeriodSeconds=30))
    for name in ("stubborn", "polite"):
        await until(lambda n=name: is_ready(read(core, ns, n)), what=f"{name} Ready")
    processes = {name: kubelet.worker(ns, name).containers[0].process for name in ("stubborn", "polite")}  # type: ignore[union-attr]
    for process in processes.values():  # its SIGTERM handler is in place (no race with interpreter start-up)
        await until(lambda p=process: "sleeper: started" in p.log_path.read_text(), what="sleeper start")  # type: ignore[union-attr]

    started = time.monotonic()
    for name in ("stubborn", "polite"):
        await asyncio.to_thread(core.delete_namespaced_pod, name, ns)
    terminating = await asyncio.to_thread(read, core, ns, "stubborn")
    assert terminating.metadata.deletion_timestamp is not None  # bound pods wait for their kubelet

    await until(lambda: read(core, ns, "polite") is None, what="polite pod gone")
    polite_gone = time.monotonic() - started
    await until(lambda: read(core, ns, "stubborn") is None, what="stubborn pod gone")
    stubborn_gone = time.monotonic() - started

    assert polite_gone < 1.5, "a process that honours SIGTERM goes at once"
    assert 2.0 <= stubborn_gone < 5.0, "SIGKILL comes after the grace period"
    for process in processes.values():
        assert process is not None and not _alive(process.pid)
    assert processes["stubborn"].exit_code == 137  # type: ignore[union-attr]
    assert processes["polite"].exit_code == 0  # type: ignore[union-attr]
    assert "ignoring SIGTERM" in processes["stubborn"].log_path.read_text()  # type: ignore[union-attr]


async def test_crashed_container_restarts(kubelet: Kubelet, core: client.CoreV1Api, ns: str) -> None:
    await create(core, ns, pod_body("crashy"))
    await until(lambda: is_ready(read(core, ns, "crashy")), what="Ready")
    await kubelet.crash(ns, "crashy")  # the Python switch
    pod = await until(
        lambda: (
            (p := read(core, ns, "crashy"))
            and p.status.container_statuses[0].restart_count == 1
            and is_ready(p)
            and p
        ),
        what="first restart",
    )
    last = pod.status.container_statuses[0].last_state.terminated
    assert (last.exit_code, last.reason) == (137, "Error")

    # the annotation switch, as another process would flip it
    await asyncio.to_thread(
        core.patch_namespaced_pod, "crashy", ns, {"metadata": {"annotations": {FAULT: "crash"}}}
    )
    backoff = await until(
        lambda: (p := read(core, ns, "crashy")) and p.status.container_statuses[0].state.waiting and p,
        what="CrashLoopBackOff",
    )
    assert backoff.status.container_statuses[0].state.waiting.reason == "CrashLoopBackOff"
    assert backoff.status.phase == "Running"
    await until(
        lambda: (
            (p := read(core, ns, "crashy"))
            and p.status.container_statuses[0].restart_count == 2
            and is_ready(p)
        ),
        what="second restart",
    )


async def test_restart_policy_never_and_on_failure(kubelet: Kubelet, core: client.CoreV1Api, ns: str) -> None:
    await create(core, ns, pod_body("fails", ["sh", "-c", "exit 3"], restartPolicy="Never"))
    await create(core, ns, pod_body("job", ["sh", "-c", "sleep 0.2; exit 0"], restartPolicy="OnFailure"))
    await create(
        core,
        ns,
        pod_body("retry", restartPolicy="OnFailure", annotations={EXIT_AFTER: "0.1", EXIT_CODE: "2"}),
    )
    failed = await until(
        lambda: (p := read(core, ns, "fails")) and p.status.phase == "Failed" and p, what="Failed"
    )
    term = failed.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason, failed.status.container_statuses[0].restart_count) == (3, "Error", 0)
    assert condition(failed, "Ready").reason == "PodCompleted"
    done = await until(
        lambda: (p := read(core, ns, "job")) and p.status.phase == "Succeeded" and p, what="Succeeded"
    )
    assert done.status.container_statuses[0].state.terminated.reason == "Completed"
    await until(
        lambda: (p := read(core, ns, "retry")) and p.status.container_statuses[0].restart_count >= 1,
        what="OnFailure restart",
    )
    # a finished pod is removed at once: there is nothing left to stop
    await asyncio.to_thread(core.delete_namespaced_pod, "fails", ns)
    assert await asyncio.to_thread(read, core, ns, "fails") is None


async def test_image_pull_error_keeps_pod_pending(kubelet: Kubelet, core: client.CoreV1Api, ns: str) -> None:
    await create(core, ns, pod_body("nopull", annotations={FAULT: "image-pull-error"}))
    pod = await until(
        lambda: (
            (p := read(core, ns, "nopull"))
            and p.status.container_statuses
            and p.status.container_statuses[0].state.waiting
            and p.status.container_statuses[0].state.waiting.reason in ("ErrImagePull", "ImagePullBackOff")
            and p
        ),
        what="ErrImagePull",
    )
    assert pod.status.phase == "Pending" and not is_ready(pod)
    # the registry comes back: the pod starts
    await asyncio.to_thread(
        core.patch_namespaced_pod, "nopull", ns, {"metadata": {"annotations": {FAULT: None}}}
    )
    await until(lambda: is_ready(read(core, ns, "nopull")), what="Ready after the pull succeeds")

    kubelet.set_image_pull_error(ns, "pyswitch")  # the Python switch, set before the pod exists
    await create(core, ns, pod_body("pyswitch"))
    await until(
        lambda: (
            (p := read(core, ns, "pyswitch"))
            and p.status.container_statuses
            and (p.status.container_statuses[0].state.waiting.reason or "").endswith(
                ("ErrImagePull", "ImagePullBackOff")
            )
        ),
        what="ErrImagePull via the Python switch",
    )
    kubelet.set_image_pull_error(ns, "pyswitch", False)
    await until(lambda: is_ready(read(core, ns, "pyswitch")), what="Ready")


async def test_node_full_keeps_pod_unschedulable(kubelet: Kubelet, core: client.CoreV1Api, ns: str) -> None:
    kubelet.node_full = True
    try:
        await create(core, ns, pod_body("waiting"))
        pod = await until(
            lambda: (p := read(core, ns, "waiting")) and condition(p, "PodScheduled") and p,
            what="PodScheduled",
        )
        scheduled = condition(pod, "PodScheduled")
        assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
        assert "Insufficient" in scheduled.message
        assert pod.status.phase == "Pending" and pod.spec.node_name is None
    finally:
        kubelet.node_full = False
    await until(lambda: is_ready(read(core, ns, "waiting")), what="Ready once the node has room")


@pytest.mark.parametrize(
    ("full", "empty", "wording"),
    [
        (
            {"metadata": {"annotations": {FAULT: "full"}}},
            {"metadata": {"annotations": {FAULT: None}}},
            "Insufficient",
        ),
        (
            {"spec": {"unschedulable": True}},
            {"spec": {"unschedulable": None}},
            "unschedulable",
        ),  # kubectl cordon
    ],
    ids=["annotation", "cordon"],
)
async def test_node_full_from_another_process(
    kubelet: Kubelet, core: client.CoreV1Api, ns: str, full: Any, empty: Any, wording: str
) -> None:
    await asyncio.to_thread(core.patch_node, NODE, full)
    try:
        await create(core, ns, pod_body("later"))
        pod = await until(
            lambda: (p := read(core, ns, "later")) and condition(p, "PodScheduled") and p,
            what="Unschedulable",
        )
        assert condition(pod, "PodScheduled").reason == "Unschedulable"
        assert wording in condition(pod, "PodScheduled").message
    finally:
        await asyncio.to_thread(core.patch_node, NODE, empty)
    await until(lambda: is_ready(read(core, ns, "later")), what="Ready once the node takes pods again")


async def test_jibri_conf_from_volumes_and_env(tmp_path: Path) -> None:
    """How a Jibri container's jibri.conf and env are found, without a cluster (items, subPath, refs)."""
    objects = {
        ("configmaps", "conf"): {"data": {"jibri.conf": "jibri {}\n", "other": "x"}},
        ("secrets", "login"): {"data": {"password": "c2VjcmV0"}},  # "secret"
    }

    async def fetch(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return objects.get((plural, name))

    pod = {
        "metadata": {"name": "jibri-0", "namespace": "rec", "uid": "u1"},
        "spec": {
            "volumes": [
                {
                    "name": "cfg",
                    "configMap": {"name": "conf", "items": [{"key": "jibri.conf", "path": "j.conf"}]},
                },
                {"name": "whole", "configMap": {"name": "conf"}},
            ]
        },
        "status": {"podIP": "10.244.0.9"},
    }
    container = {
        "name": "jibri",
        "image": "jitsi/jibri:stable",
        "env": [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "login", "key": "password"}}},
            {"name": "NICK", "value": "$(POD_NAME)-nick"},
        ],
        "volumeMounts": [
            {"name": "cfg", "mountPath": "/etc/jitsi/jibri/jibri.conf", "subPath": "j.conf"},
            {"name": "whole", "mountPath": "/config"},
        ],
    }
    env = await volumes.environment(pod, container, fetch)
    assert env == {"POD_NAME": "jibri-0", "POD_IP": "10.244.0.9", "PASS": "secret", "NICK": "jibri-0-nick"}
    mounts = await volumes.materialize(pod, tmp_path, fetch, container)
    found = volumes.jibri_config(tmp_path, container, mounts, [], env)
    assert found.read_text() == "jibri {}\n"
    assert not (tmp_path / "volumes" / "cfg" / "other").exists()  # items select keys
    via_flag = volumes.jibri_config(tmp_path, container, mounts, ["--config", "/config/jibri.conf"], env)
    assert via_flag == tmp_path / "volumes" / "whole" / "jibri.conf"
    inline = volumes.jibri_config(
        tmp_path, {"name": "j"}, volumes.Mounts(), [], {"JIBRI_CONF": "jibri { a = 1 }"}
    )
    assert inline.read_text() == "jibri { a = 1 }"
    objects.pop(("secrets", "login"))
    with pytest.raises(volumes.ConfigError) as missing:
        await volumes.environment(pod, container, fetch)
    assert missing.value.reason == "CreateContainerConfigError"


JIBRI_READY = importlib.util.find_spec("jibri_sandbox.jibri.cli") is not None


@pytest.mark.skipif(
    not JIBRI_READY, reason="the simulated Jibri (jibri_sandbox.jibri.cli) does not exist yet"
)
async def test_jibri_pod_joins_the_brewery(
    kubelet: Kubelet, core: client.CoreV1Api, ns: str, prosody: Any, xmpp_account: Any, brewery: str
) -> None:
    """A Jibri pod, its jibri.conf from a ConfigMap volume and its nickname from POD_NAME, joins for real."""
    from xmpp_helpers import TestClient

    from jibri_sandbox.jibri import SandboxSettings, render_sandbox_jibri_conf, sandbox_environment

    jid, password = xmpp_account("jibri")
    env = sandbox_environment(
        server=(prosody.host, prosody.port), brewery=brewery, nickname="NICK", jid=jid, password=password
    )
    conf = render_sandbox_jibri_conf([env], SandboxSettings(ca_file=str(prosody.ca_file)))
    conf = conf.replace('nickname = "NICK"', "nickname = ${POD_NAME}")  # HOCON env substitution
    await asyncio.to_thread(
        core.create_namespaced_config_map,
        ns,
        {"metadata": {"name": "jibri-conf"}, "data": {"jibri.conf": conf}},
    )
    pod = {
        "metadata": {"name": "jibri-0"},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "volumes": [{"name": "config", "configMap": {"name": "jibri-conf"}}],
            "containers": [
                {
                    "name": "jibri",
                    "image": "sandbox/jibri:stable-9753",  # not the official image: no start-up step
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/jitsi/jibri", "readOnly": True}],
                }
            ],
        },
    }
    observer_jid, observer_password = xmpp_account("observer")
    observer = TestClient(observer_jid, observer_password, prosody.ca_file)
    await observer.login(prosody.host, prosody.port)
    try:
        await observer.join(brewery, "observer")
        occupant = f"{brewery}/jibri-0"
        await create(core, ns, pod)
        await until(lambda: is_ready(read(core, ns, "jibri-0")), what="jibri pod Ready")
        presence = await observer.wait_for(lambda: observer.last_presence(occupant), timeout=15)
        assert presence.occupant == occupant

        def left() -> bool:
            return any(
                p.get("from") == occupant and p.get("type") == "unavailable" for p in observer.presences
            )

        await kubelet.crash(ns, "jibri-0")  # SIGKILL: the XMPP connection drops, the MUC sees it leave
        await observer.wait_for(left, timeout=10)
        await until(
            lambda: (p := read(core, ns, "jibri-0")) and p.status.container_statuses[0].restart_count == 1,
            what="jibri restarted",
        )
        seen = len(observer.presences)
        await observer.wait_for(
            lambda: any(
                p.get("from") == occupant and p.get("type") != "unavailable"
                for p in observer.presences[seen:]
            ),
            timeout=15,
        )  # back in the brewery after the restart
        process = kubelet.worker(ns, "jibri-0").containers[0].process  # type: ignore[union-attr]
        await asyncio.to_thread(core.delete_namespaced_pod, "jibri-0", ns)
        await until(lambda: read(core, ns, "jibri-0") is None, what="jibri pod gone")
        assert process is not None and process.exit_code == 0, (
            "SIGTERM: the Jibri left the brewery and exited"
        )
    finally:
        await observer.close()
