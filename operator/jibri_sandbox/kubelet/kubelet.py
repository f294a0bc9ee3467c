"""The sandbox node: a kubelet (and, as there is no other, the scheduler) for one Node.

    async with Kubelet(kubeconfig, startup_delay=2.0) as kubelet:
        kubelet.node_full = True                    # new pods stay Pending/Unschedulable
        await kubelet.crash("ns", "pod")            # SIGKILL the pod's processes
        kubelet.set_image_pull_error("ns", "pod")   # its (re)starts fail with ErrImagePull

It registers its Node, keeps the node's Lease fresh, list+watches all pods
(re-listing on 410 Gone), binds unscheduled pods to its node, runs the pods
bound to it (pods.PodWorker) and reports their status through pods/status.
Tests and other processes drive the same faults with annotations
(`sandbox.jibri.dev/fault`, see pods.py; `full` on the Node), or `kubectl cordon`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import platform
import secrets
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .api import JSON_PATCH, ApiError, Gone, KubeApi
from .pods import FAULT, TERMINAL, PodWorker
from .runtime import now

log = logging.getLogger(__name__)
Obj = dict[str, Any]
KUBELET_VERSION = "v1.32.0-sandbox"
POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")


class Kubelet:
    """Runs the pods of one sandbox node; see the module docstring."""

    def __init__(
        self,
        kubeconfig: str | Path,
        node_name: str = "sandbox-node",
        startup_delay: float = 0.0,
        state_dir: str | Path | None = None,
        restart_backoff: float = 10.0,
        max_restart_backoff: float = 300.0,
        min_grace: float = 2.0,
        max_pods: int = 110,
        shutdown_grace: float = 5.0,
        jibri_command: list[str] | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.api = KubeApi(Path(kubeconfig))
        parsed = urlparse(self.api.server)
        self.api_host, self.api_port = parsed.hostname or "127.0.0.1", parsed.port or 443
        self.node_name = node_name
        self.startup_delay = startup_delay
        self.restart_backoff = restart_backoff
        self.max_restart_backoff = max_restart_backoff
        self.min_grace = min_grace
        self.max_pods = max_pods
        self.shutdown_grace = shutdown_grace
        self.jibri_command = jibri_command or [sys.executable, "-m", "jibri_sandbox.cli", "jibri"]
        self.extra_env = dict(extra_env or {})
        self.host_ip = "127.0.0.1"
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="jibri-kubelet-")
            state_dir = self._tmp.name
        self.state_dir = Path(state_dir)
        self.workers: dict[str, PodWorker] = {}  # by pod uid
        self.pods: dict[str, Obj] = {}  # every pod the informer knows, by uid
        self.node: Obj = {}
        self._node_full = False
        self._pull_errors: set[tuple[str, str]] = set()
        self._ips_free = (str(ip) for ip in POD_NETWORK.hosts() if ip.packed[-1] not in (0, 1, 255))
        self._ips_returned: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()
        self._synced = asyncio.Event()
        self._reschedule = asyncio.Event()
        self._unschedulable_reported: dict[str, str] = {}

    # --- fault switches ---------------------------------------------------------------------------------

    @property
    def node_full(self) -> bool:
        """The kubelet-wide 'no room' switch, or `sandbox.jibri.dev/fault: full` on the Node."""
        annotations = (self.node.get("metadata") or {}).get("annotations") or {}
        return self._node_full or annotations.get(FAULT) == "full"

    @node_full.setter
    def node_full(self, full: bool) -> None:
        self._node_full = full
        self._reschedule.set()

    def set_node_full(self, full: bool = True) -> None:
        self.node_full = full

    def worker(self, namespace: str, name: str) -> PodWorker | None:
        for worker in self.workers.values():
            if worker.namespace == namespace and worker.name == name:
                return worker
        return None

    async def crash(self, namespace: str, name: str, container: str | None = None) -> None:
        """SIGKILL a running pod's processes (one container, or all); restartPolicy decides what next."""
        worker = self.worker(namespace, name)
        if worker is None:
            raise LookupError(f"no pod {namespace}/{name} runs on {self.node_name}")
        worker.crash(container)

    def set_image_pull_error(self, namespace: str, name: str, failing: bool = True) -> None:
        """While set, the pod's containers cannot pull their image (ErrImagePull / ImagePullBackOff)."""
        key = (namespace, name)
        if failing:
            self._pull_errors.add(key)
        else:
            self._pull_errors.discard(key)
        worker = self.worker(namespace, name)
        if worker is not None:
            worker.image_pull_error = failing
            worker.poke()

    # --- lifecycle --------------------------------------------------------------------------------------

    async def __aenter__(self) -> Kubelet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 30.0) -> None:
        """Register the node and sync the pod informer; returns once pods are being handled."""
        (self.state_dir / "pods").mkdir(parents=True, exist_ok=True)
        await self._register()
        self._tasks = [
            asyncio.create_task(
                self._inform("/api/v1/pods", self._on_pod, self._on_pods_relisted), name="pod informer"
            ),
            asyncio.create_task(
                self._inform(
                    f"/api/v1/nodes?fieldSelector=metadata.name%3D{self.node_name}", self._on_node, None
                ),
                name="node informer",
            ),
            asyncio.create_task(self._heartbeat(), name="node heartbeat"),
            asyncio.create_task(self._scheduler(), name="scheduler"),
        ]
        await asyncio.wait_for(self._synced.wait(), timeout)
        log.info("kubelet for node %s is running (state in %s)", self.node_name, self.state_dir)

    async def stop(self) -> None:
        """Stop every pod's processes (SIGTERM, SIGKILL after shutdown_grace) and all watches."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        workers = list(self.workers.values())
        try:
            await asyncio.wait_for(
                asyncio.gather(*(w.shutdown(self.shutdown_grace) for w in workers), return_exceptions=True),
                self.shutdown_grace + 5,
            )
        except TimeoutError:
            log.warning("pods did not stop in time: killing what is left")
        for worker in workers:  # whatever happened above, no process outlives the kubelet
            for container in worker.containers:
                if container.process is not None and container.process.running:
                    container.process.kill()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.api.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # --- the node ------------------------------------------------------------------------------------------

    def _node_status(self) -> Obj:
        stamp = now()
        ready = {
            "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
            "lastHeartbeatTime": stamp, "lastTransitionTime": self._ready_since,
        }  # fmt: skip
        pressure = [
            {"type": kind, "status": "False", "reason": f"KubeletHas{reason}", "message": f"kubelet has {text}",
             "lastHeartbeatTime": stamp, "lastTransitionTime": self._ready_since}
            for kind, reason, text in (
                ("MemoryPressure", "SufficientMemory", "sufficient memory available"),
                ("DiskPressure", "NoDiskPressure", "no disk pressure"),
                ("PIDPressure", "SufficientPID", "sufficient PID available"),
            )
        ]  # fmt: skip
        capacity = {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "20Gi", "pods": str(self.max_pods)}
        return {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [*pressure, ready],
            "addresses": [{"type": "InternalIP", "address": self.host_ip}, {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": secrets.token_hex(16) if not self.node else self.node.get("status", {}).get("nodeInfo", {}).get("machineID", ""),
                "systemUUID": "", "bootID": "", "kernelVersion": platform.release(), "osImage": "jibri-sandbox",
                "containerRuntimeVersion": "sandbox://1.0", "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux", "architecture": "amd64",
            },
        }  # fmt: skip

    async def _register(self) -> None:
        self._ready_since = now()
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
                },
            },
            "spec": {"podCIDR": str(POD_NETWORK), "podCIDRs": [str(POD_NETWORK)]},
        }  # fmt: skip
        try:
            self.node = await self.api.create("/api/v1/nodes", body)
        except ApiError as error:
            if error.status != 409:
                raise
            self.node = await self.api.get(f"/api/v1/nodes/{self.node_name}")
        self.node = await self.api.patch(
            f"/api/v1/nodes/{self.node_name}/status", {"status": self._node_status()}
        )

    async def _heartbeat(self) -> None:
        """Renew the node Lease every 10 s and post node status every minute, like the kubelet."""
        lease_path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        beats = 0
        while True:
            try:
                spec = {
                    "holderIdentity": self.node_name,
                    "leaseDurationSeconds": 40,
                    "renewTime": now_micro(),
                }
                try:
                    await self.api.patch(lease_path, {"spec": spec})
                except ApiError as error:
                    if error.status != 404:
                        raise
                    await self.api.create(
                        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                        {
                            "metadata": {
                                "name": self.node_name,
                                "ownerReferences": [
                                    {
                                        "apiVersion": "v1",
                                        "kind": "Node",
                                        "name": self.node_name,
                                        "uid": self.node["metadata"]["uid"],
                                    }
                                ],
                            },
                            "spec": spec,
                        },
                    )
                if beats % 6 == 5:
                    self.node = await self.api.patch(
                        f"/api/v1/nodes/{self.node_name}/status", {"status": self._node_status()}
                    )
            except (ApiError, OSError) as error:
                log.warning("node heartbeat failed: %s", error)
            beats += 1
            await asyncio.sleep(10)

    # --- informers ---------------------------------------------------------------------------------------

    async def _inform(
        self,
        path: str,
        handle: Callable[[str, Obj], Awaitable[None] | None],
        relisted: Callable[[list[Obj]], None] | None,
    ) -> None:
        """List, then watch from the list's resourceVersion; re-list on 410 Gone or errors."""
        base, _, query = path.partition("?")
        while True:
            try:
                listing = await self.api.get(path)
                rv = listing["metadata"]["resourceVersion"]
                if relisted is not None:
                    relisted(listing["items"])
                for item in listing["items"]:
                    await _maybe(handle("ADDED", item))
                if base == "/api/v1/pods":
                    self._synced.set()
                while True:
                    watch_path = base + (f"?{query}" if query else "")
                    async for event in self.api.watch(watch_path, rv):
                        obj = event["object"]
                        rv = obj["metadata"].get("resourceVersion") or rv
                        if event["type"] != "BOOKMARK":
                            await _maybe(handle(event["type"], obj))
            except asyncio.CancelledError:
                raise
            except Gone:
                log.info("watch of %s expired (410 Gone): re-listing", base)
            except Exception as error:
                log.warning("watch of %s failed (%s): re-listing in 1s", base, error)
                await asyncio.sleep(1)

    def _on_pods_relisted(self, items: list[Obj]) -> None:
        """A re-list: pods missing from it were deleted while we were not watching."""
        seen = {p["metadata"]["uid"] for p in items}
        for uid in [u for u in self.pods if u not in seen]:
            self._pod_deleted(self.pods[uid])

    def _on_node(self, kind: str, node: Obj) -> None:
        if kind != "DELETED" and node["metadata"]["name"] == self.node_name:
            self.node = node
            self._reschedule.set()

    def _on_pod(self, kind: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        if kind == "DELETED":
            self._pod_deleted(pod)
            return
        self.pods[uid] = pod
        spec = pod.get("spec") or {}
        if not spec.get("nodeName"):
            self._reschedule.set()
            return
        if spec["nodeName"] != self.node_name:
            return
        worker = self.workers.get(uid)
        if worker is None:
            phase = (pod.get("status") or {}).get("phase")
            if phase in TERMINAL and not pod["metadata"].get("deletionTimestamp"):
                return  # a finished pod: nothing to run, the API keeps it until someone deletes it
            worker = PodWorker(self, pod, self._allocate_ip(pod))
            worker.image_pull_error = (worker.namespace, worker.name) in self._pull_errors
            self.workers[uid] = worker
            worker.start()
        worker.update(pod)

    def _pod_deleted(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        self.pods.pop(uid, None)
        self._unschedulable_reported.pop(uid, None)
        worker = self.workers.get(uid)
        if worker is not None:
            worker.gone()
        self._reschedule.set()

    def forget(self, worker: PodWorker) -> None:
        """A worker is done: its pod is gone from the API, its IP free again."""
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]
            self._ips_returned.append(worker.pod_ip)
            self._reschedule.set()

    def _allocate_ip(self, pod: Obj) -> str:
        existing = (pod.get("status") or {}).get("podIP")
        if existing and ipaddress.ip_address(existing) in POD_NETWORK:
            return str(existing)
        return self._ips_returned.pop(0) if self._ips_returned else next(self._ips_free)

    # --- the scheduler -------------------------------------------------------------------------------------

    async def _scheduler(self) -> None:
        """Bind pending pods to this node when it has room; retry on any change and every 5 s."""
        while True:
            self._reschedule.clear()
            for pod in [p for p in self.pods.values() if not (p.get("spec") or {}).get("nodeName")]:
                try:
                    await self._schedule(pod)
                except (ApiError, OSError) as error:
                    log.debug("scheduling %s failed: %s", pod["metadata"]["name"], error)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can turn a cancellation that
            # meets its timeout into TimeoutError, and this loop would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await self._reschedule.wait()

    def _unfit(self, pod: Obj) -> str | None:
        spec = pod.get("spec") or {}
        node_spec, labels = self.node.get("spec") or {}, (self.node.get("metadata") or {}).get("labels") or {}
        preemption = " preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        if node_spec.get("unschedulable"):
            return "0/1 nodes are available: 1 node(s) were unschedulable." + preemption
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return (
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector." + preemption
            )
        if self.node_full:
            return "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory." + preemption.replace(
                "Preemption is not helpful for scheduling", "No preemption victims found for incoming pod"
            )
        if len(self.workers) >= self.max_pods:
            return "0/1 nodes are available: 1 Too many pods." + preemption
        return None

    async def _schedule(self, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if (
            meta.get("deletionTimestamp")
            or spec.get("schedulerName", "default-scheduler") != "default-scheduler"
        ):
            return
        path = self.api.path("pods", meta["namespace"], meta["name"])
        reason = self._unfit(pod)
        if reason is not None:
            if self._unschedulable_reported.get(meta["uid"]) == reason:
                return
            self._unschedulable_reported[meta["uid"]] = reason
            condition = {"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                         "lastTransitionTime": now(), "reason": "Unschedulable", "message": reason}  # fmt: skip
            others = [
                c
                for c in (pod.get("status") or {}).get("conditions") or ()
                if c.get("type") != "PodScheduled"
            ]
            await self.api.patch(
                path + "/status",
                [{"op": "test", "path": "/metadata/uid", "value": meta["uid"]},
                 {"op": "replace", "path": "/status", "value": {**(pod.get("status") or {}), "phase": "Pending", "conditions": [*others, condition]}}],
                JSON_PATCH,
            )  # fmt: skip
            self.event(pod, "Warning", "FailedScheduling", reason, component="default-scheduler")
            return
        binding = {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }  # fmt: skip
        try:
            await self.api.create(path + "/binding", binding)
        except ApiError as error:
            if error.status not in (404, 405):
                raise
            # an API server without pods/binding: bind with a patch guarded by the resourceVersion
            await self.api.patch(
                path,
                [{"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
                 {"op": "add", "path": "/spec/nodeName", "value": self.node_name}],
                JSON_PATCH,
            )  # fmt: skip
        self._unschedulable_reported.pop(meta["uid"], None)
        self.event(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {self.node_name}",
            component="default-scheduler",
        )

    # --- events --------------------------------------------------------------------------------------------

    def event(
        self,
        pod: Obj,
        kind: str,
        reason: str,
        message: str,
        container: str | None = None,
        component: str = "kubelet",
    ) -> None:
        """Record a core/v1 Event about the pod, in the background (events are best effort)."""
        meta = pod["metadata"]
        stamp = now()
        involved = {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta.get("uid"),
                    "apiVersion": "v1", "resourceVersion": meta.get("resourceVersion")}  # fmt: skip
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        body = {
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
            "involvedObject": involved, "reason": reason, "message": message, "type": kind,
            "source": {"component": component, **({"host": self.node_name} if component == "kubelet" else {})},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "reportingComponent": component, "reportingInstance": self.node_name if component == "kubelet" else "",
        }  # fmt: skip

        async def send() -> None:
            with contextlib.suppress(ApiError, OSError):
                await self.api.create(self.api.path("events", meta["namespace"]), body)

        task = asyncio.create_task(send())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def now_micro() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def _maybe(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result
