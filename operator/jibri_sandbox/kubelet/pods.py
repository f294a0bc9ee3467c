"""One pod on the node: start its containers, restart them per restartPolicy, stop them on deletion,
and report what happened through pods/status the way the real kubelet does.

Each container runs in its own loop (pull -> create -> run -> exit -> back-off -> restart);
the pod's status is recomputed from all of them after every change and written
only when it differs from what was last written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from . import official_image, probes, volumes
from .api import JSON_PATCH, ApiError, KubeApi
from .runtime import ContainerProcess, now, python_module

if TYPE_CHECKING:
    from .kubelet import Kubelet

log = logging.getLogger(__name__)
Obj = dict[str, Any]

ANNOTATION_PREFIX = "sandbox.jibri.dev/"
FAULT = ANNOTATION_PREFIX + "fault"  # crash[:<nonce>[:<container>]] | image-pull-error; on a Node: full
IGNORE_SIGTERM = ANNOTATION_PREFIX + "ignore-sigterm"  # "true" or container names, comma-separated
EXIT_AFTER = ANNOTATION_PREFIX + "exit-after"  # seconds: a sleeping container ends on its own
EXIT_CODE = ANNOTATION_PREFIX + "exit-code"  # with exit-after; default 0
TERMINAL = ("Succeeded", "Failed")


OPERATOR_REPOSITORY = "jibri-operator"  # ghcr.io/jibri-operator/jibri-operator:<tag>
OPERATOR_ENTRYPOINT = ["jibri-operator", "run"]  # the Dockerfile's ENTRYPOINT


def _repository(image: str) -> str:
    """The image's repository name without registry, path, tag or digest."""
    last = image.rsplit("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def is_operator(image: str) -> bool:
    """The operator's own image: its pod runs `jibri-operator run`, in-cluster."""
    return _repository(image) == OPERATOR_REPOSITORY


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def pre_stop_sleep(container: Obj) -> float:
    """Seconds a container's preStop hook waits: the `sleep` action, or an exec of `sleep N`.
    Other hooks are not run (the sandbox cannot run an image's commands)."""
    hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in hook:
        return float(hook["sleep"].get("seconds") or 0)
    text = " ".join(str(part) for part in (hook.get("exec") or {}).get("command") or ())
    m = re.fullmatch(r"(?:(?:/bin/)?sh -c )?(?:/bin/)?sleep (\d+(?:\.\d+)?)", text.strip())
    return float(m.group(1)) if m else 0.0


def is_jibri(image: str) -> bool:
    """Containers of a Jibri image become simulated Jibris (repository name, not registry host)."""
    repository = image.rsplit("@", 1)[0]
    return "jibri" in repository.rsplit("/", 1)[-1].split(":")[0] or "jibri" in repository


def _image_id(image: str) -> str:
    digest = hashlib.sha256(image.encode()).hexdigest()
    name = image.rsplit("@", 1)[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{name}@sha256:{digest}"


def _qos(containers: list[Obj]) -> str:
    requests = [(c.get("resources") or {}).get("requests") or {} for c in containers]
    limits = [(c.get("resources") or {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        lim.get(r) is not None and (req.get(r) is None or req.get(r) == lim.get(r))
        for req, lim in zip(requests, limits, strict=True)
        for r in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _shell_hints(argv: list[str]) -> tuple[float | None, int, bool]:
    """What a busybox-style command line would do: (exit after, exit code, traps TERM)."""
    text = " ".join(argv)
    ignore_term = bool(re.search(r"trap\s+(''|\"\"|\S+)\s+.*(TERM|SIGTERM|15)", text))
    m = re.search(r"\bexit\s+(\d+)\s*$", text)
    if m and "sleep" not in text:
        return 0.0, int(m.group(1)), ignore_term
    if argv[:1] in (["true"], ["/bin/true"]):
        return 0.0, 0, ignore_term
    if argv[:1] in (["false"], ["/bin/false"]):
        return 0.0, 1, ignore_term
    m = re.fullmatch(r"(?:.*\s)?sleep\s+(\d+(?:\.\d+)?)(?:\s*;?\s*exit\s+(\d+))?\s*", text)
    if m:
        return float(m.group(1)), int(m.group(2) or 0), ignore_term
    return None, 0, ignore_term


@dataclass
class Container:
    """What the kubelet knows of one container: the spec, its current process, its status."""

    spec: Obj
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    process: ContainerProcess | None = None
    container_id: str = ""
    ever_started: bool = False
    # containerPort -> the loopback port the process really listens on (the sandbox has no
    # pod network: pods share the host's, so two pods' 8080 would collide)
    ports: dict[int, int] = field(default_factory=dict)
    probe_ready: bool = True  # the readiness probe's verdict (True when the container has none)
    probing: bool = False  # its probes run (only for containers that serve them: the operator)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def ready(self) -> bool:
        return "running" in self.state and self.probe_ready

    def status(self) -> Obj:
        running = "running" in self.state
        out: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": _image_id(self.spec.get("image", "")) if self.ever_started else "",
            "ready": self.ready,
            "started": running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


class PodWorker:
    """Runs one pod bound to this node, from first sight to its final delete."""

    def __init__(self, kubelet: Kubelet, pod: Obj, pod_ip: str):
        self.kubelet = kubelet
        self.api: KubeApi = kubelet.api
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.pod_ip = pod_ip
        self.dir = kubelet.state_dir / "pods" / self.uid
        self.log_dir = kubelet.state_dir / "logs" / f"{self.namespace}_{self.name}_{self.uid}"
        self.containers = [Container(c) for c in (pod.get("spec") or {}).get("containers") or ()]
        self._seed_from_status(pod)
        self.start_time = (pod.get("status") or {}).get("startTime") or now()
        self.generation = 0  # bumped by poke(): deletion, a fault switch, new annotations
        self._poked = asyncio.Event()
        self.terminating = False
        self.removed = False  # gone from the API: report nothing more
        self.done = asyncio.Event()
        self.image_pull_error = False  # the Python fault switch
        self.phase = (pod.get("status") or {}).get("phase") or "Pending"
        self._conditions: dict[str, Obj] = {
            c["type"]: c for c in (pod.get("status") or {}).get("conditions") or () if c.get("type")
        }
        self._last_report: Obj | None = None
        self._report_lock = asyncio.Lock()
        self._fault_seen = (meta.get("annotations") or {}).get(FAULT, "")
        self._task: asyncio.Task[None] | None = None
        self._loops: list[asyncio.Task[None]] = []

    def _seed_from_status(self, pod: Obj) -> None:
        """A kubelet that restarts keeps counting restarts where the API says they were."""
        known = {c.get("name"): c for c in (pod.get("status") or {}).get("containerStatuses") or ()}
        for container in self.containers:
            old = known.get(container.name)
            if old:
                container.restart_count = int(old.get("restartCount") or 0)
                if "running" in (old.get("state") or {}):
                    container.restart_count += 1
                    container.last_state = {
                        "terminated": {"exitCode": 137, "reason": "Error", "finishedAt": now()}
                    }

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    def update(self, pod: Obj) -> None:
        """A newer version of the pod from the watch."""
        if pod["metadata"].get("uid") != self.uid:
            return
        before = self.pod["metadata"]
        self.pod = pod
        meta = pod["metadata"]
        fault = (meta.get("annotations") or {}).get(FAULT, "")
        if fault != self._fault_seen:
            self._fault_seen = fault
            parts = fault.split(":", 2)  # crash | crash:<nonce> | crash:<nonce>:<container>
            if parts[0] == "crash":
                self.crash(parts[2] if len(parts) == 3 else None)
        if meta.get("deletionTimestamp"):
            self.terminating = True
        # our own status writes come back as MODIFIED too; only what we act on wakes the loops
        if any(
            meta.get(k) != before.get(k)
            for k in ("annotations", "deletionTimestamp", "deletionGracePeriodSeconds")
        ):
            self.poke()

    def gone(self) -> None:
        """The pod was removed from the API (force delete): kill it, report nothing."""
        self.removed = True
        self.terminating = True
        self.poke()

    def poke(self) -> None:
        """Something the pod's loops act on changed: wake every waiter (no lost wake-ups)."""
        self.generation += 1
        self._poked.set()
        self._poked = asyncio.Event()

    async def _poked_since(self, generation: int, timeout: float | None) -> bool:
        if self.generation != generation:
            return True
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancellation on 3.11
                await self._poked.wait()
        except TimeoutError:
            return False
        return True

    def crash(self, container: str | None = None) -> None:
        """Fault: SIGKILL the container's processes (all containers if None), as an OOM kill would."""
        for c in self.containers:
            if c.process is not None and c.process.running and container in (None, c.name):
                log.info("fault: crashing %s/%s container %s", self.namespace, self.name, c.name)
                c.process.kill()

    def stopping(self) -> bool:
        """Whether the pod is being deleted (a method, so checks after an await are re-read)."""
        return self.terminating

    def pulls_fail(self) -> bool:
        fault = (self.pod["metadata"].get("annotations") or {}).get(FAULT, "")
        return self.image_pull_error or fault == "image-pull-error"

    async def wait_done(self) -> None:
        await self.done.wait()

    async def shutdown(self, grace: float) -> None:
        """The kubelet is stopping: stop the processes quickly, report nothing."""
        self.removed = True
        self.terminating = True
        await asyncio.gather(
            *(c.process.stop(grace) for c in self.containers if c.process is not None and c.process.running),
            return_exceptions=True,
        )
        for task in [*self._loops, *([self._task] if self._task else [])]:
            task.cancel()
        await asyncio.gather(*self._loops, *([self._task] if self._task else []), return_exceptions=True)
        self.done.set()

    async def _run(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if self.phase in TERMINAL:
                await self._wait_terminating()
            else:
                await self.report()
                self._loops = [asyncio.create_task(self._container_loop(c)) for c in self.containers]
                await self._wait_terminating()
            await self._terminate()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pod worker %s/%s failed", self.namespace, self.name)
        finally:
            for task in self._loops:
                task.cancel()
            shutil.rmtree(self.dir, ignore_errors=True)
            self.done.set()
            self.kubelet.forget(self)

    async def _wait_terminating(self) -> None:
        while not self.stopping():
            await self._poked_since(self.generation, None)

    async def _interruptible_sleep(self, seconds: float, since: int | None = None) -> None:
        """Sleep, but wake early when the pod is deleted (or on any poke after generation `since`)."""
        deadline = asyncio.get_running_loop().time() + seconds
        while not self.stopping():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or (since is not None and self.generation != since):
                return
            await self._poked_since(self.generation, remaining)

    # --- one container ------------------------------------------------------------------------------

    def _restart(self, exit_code: int) -> bool:
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        return policy == "Always" or (policy == "OnFailure" and exit_code != 0)

    def _backoff(self, container: Container) -> float:
        """CrashLoopBackOff: 0 for the first restart, then base, 2*base, ... up to the cap."""
        if container.restart_count == 0:
            return 0.0
        base, cap = self.kubelet.restart_backoff, self.kubelet.max_restart_backoff
        return float(min(cap, base * 2 ** (container.restart_count - 1)))

    async def _container_loop(self, c: Container) -> None:
        image = c.spec.get("image", "")
        pull_failures = 0
        while not self.stopping():
            generation = self.generation  # a fault switch flipped after this retries at once
            if self.pulls_fail():
                pull_failures += 1
                if pull_failures == 1:
                    self.kubelet.event(
                        self.pod,
                        "Warning",
                        "Failed",
                        f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found',
                        c.name,
                    )
                c.state = {
                    "waiting": {
                        "reason": "ErrImagePull",
                        "message": f'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to resolve reference "{image}": not found',
                    }
                }
                await self.report()
                await self._interruptible_sleep(min(self.kubelet.restart_backoff, 1.0), since=generation)
                if self.stopping() or not self.pulls_fail():
                    continue
                c.state = {
                    "waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
                }
                await self.report()
                delay = min(
                    self.kubelet.max_restart_backoff,
                    self.kubelet.restart_backoff * 2 ** min(pull_failures - 1, 8),
                )
                await self._interruptible_sleep(delay, since=generation)
                continue
            if not c.ever_started and self.kubelet.startup_delay > 0:
                c.state = {"waiting": {"reason": "ContainerCreating"}}
                await self.report()
                await self._interruptible_sleep(self.kubelet.startup_delay)
                if self.stopping():
                    return
                if self.pulls_fail():
                    continue
            try:
                argv, env = await self._prepare(c)
            except volumes.ConfigError as error:
                c.state = {"waiting": {"reason": error.reason, "message": error.message}}
                self.kubelet.event(
                    self.pod,
                    "Warning",
                    "FailedMount" if error.reason == "ContainerCreating" else "Failed",
                    error.message,
                    c.name,
                )
                await self.report()
                await self._interruptible_sleep(max(self.kubelet.restart_backoff, 0.5), since=generation)
                continue
            if self.stopping():
                return
            if c.ever_started:
                c.restart_count += 1
            log_path = self.log_dir / c.name / f"{c.restart_count}.log"
            c.process = await ContainerProcess.start(
                argv, env, self.dir, log_path, ignore_sigterm="--ignore-term" in argv
            )
            c.container_id = (
                f"sandbox://{hashlib.sha256(f'{self.uid}/{c.name}/{c.restart_count}'.encode()).hexdigest()}"
            )
            c.ever_started = True
            c.state = {"running": {"startedAt": c.process.started_at}}
            c.probe_ready = not (c.probing and c.spec.get("readinessProbe"))
            self.kubelet.event(self.pod, "Normal", "Started", f"Started container {c.name}", c.name)
            await self.report()
            prober = asyncio.create_task(self._probe(c, c.process)) if c.probing else None
            code = await c.process.wait()
            if prober is not None:
                prober.cancel()
                await asyncio.gather(prober, return_exceptions=True)
            c.probe_ready = not (c.probing and c.spec.get("readinessProbe"))
            if self.stopping():
                return  # _terminate reports the final state
            terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": c.process.started_at,
                "finishedAt": c.process.finished_at or now(),
                "containerID": c.container_id,
            }
            if not self._restart(code):
                c.state = {"terminated": terminated}
                await self.report()
                return
            delay = self._backoff(c)
            c.last_state = {"terminated": terminated}
            if delay > 0:
                c.state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {delay:g}s restarting failed container={c.name} pod={self.name}_{self.namespace}({self.uid})",
                    }
                }
                self.kubelet.event(
                    self.pod, "Warning", "BackOff", "Back-off restarting failed container", c.name
                )
            else:
                c.state = {"terminated": terminated}
            await self.report()
            await self._interruptible_sleep(delay)

    async def _fetch(self, plural: str, namespace: str, name: str) -> Obj | None:
        try:
            return await self.api.get(self.api.path(plural, namespace, name))
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def _token(self, source: Obj) -> str | None:
        """TokenRequest for the pod's service account, bound to the pod (so it dies with it)."""
        account = (self.pod.get("spec") or {}).get("serviceAccountName") or "default"
        spec: Obj = {
            "expirationSeconds": source.get("expirationSeconds", 3600),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid},
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        path = self.api.path("serviceaccounts", self.namespace, account, "token")
        try:
            issued = await self.api.create(
                path, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
            )
        except ApiError as error:
            if error.status in (404, 405):
                return None  # a server without TokenRequest (the emulation): no token file
            raise volumes.ConfigError("ContainerCreating", f"failed to fetch token: {error.reason}") from None
        token: str = issued["status"]["token"]
        return token

    async def _prepare(self, c: Container) -> tuple[list[str], dict[str, str]]:
        """argv and environment for the container's process, volumes written to disk."""
        pod = {**self.pod, "status": {**(self.pod.get("status") or {}), **self._ips()}}
        env = await volumes.environment(pod, c.spec, self._fetch)
        mounts = await volumes.materialize(pod, self.dir, self._fetch, c.spec, self._token)
        argv = volumes.command_line(c.spec, env)
        base = {
            **volumes.host_env_passthrough(),
            "HOSTNAME": self.name,
            "HOME": str(self.dir),
            "PYTHONUNBUFFERED": "1",
            "KUBERNETES_SERVICE_HOST": self.kubelet.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.kubelet.api_port),
            "JIBRI_SANDBOX_MOUNTS": json.dumps({k: str(v) for k, v in mounts.table.items()}),
            **self.kubelet.extra_env,
        }
        image = c.spec.get("image", "")
        if is_operator(image):
            return self._operator_command(c, argv, mounts), {**base, **env}
        if is_jibri(image) and official_image.is_official(image):
            try:  # that image's start-up step decides what its Jibri reads, or exits
                config = official_image.config_step(self.pod, c.spec, mounts, env, self.dir)
            except official_image.StartUpFailed as failed:
                exit_now = ["--exit-after", "0", "--exit-code", "1", "--message", str(failed)]
                return python_module("jibri_sandbox.kubelet.sleeper", *exit_now), {**base, **env}
            return [*self.kubelet.jibri_command, "--config", str(config)], {**base, **env}
        if is_jibri(image):
            config = volumes.jibri_config(self.dir, c.spec, mounts, argv, env)
            return [*self.kubelet.jibri_command, "--config", str(config)], {**base, **env}
        annotations = self.pod["metadata"].get("annotations") or {}
        exit_after, exit_code, ignore_term = _shell_hints(argv)
        if annotations.get(EXIT_AFTER):
            exit_after, exit_code = float(annotations[EXIT_AFTER]), int(annotations.get(EXIT_CODE) or 0)
        ignore = annotations.get(IGNORE_SIGTERM, "")
        ignore_term = ignore_term or ignore == "true" or c.name in ignore.split(",")
        args = ["--ignore-term"] if ignore_term else []
        if exit_after is not None:
            args += ["--exit-after", str(exit_after), "--exit-code", str(exit_code)]
        return python_module("jibri_sandbox.kubelet.sleeper", *args), {**base, **env}

    def _operator_command(self, c: Container, argv: list[str], mounts: volumes.Mounts) -> list[str]:
        """The operator's image: `jibri-operator run` with the container's args, in-cluster.

        Its volumes are bind-mounted at their paths in a private mount namespace (mountns), so the
        kubernetes client finds the projected service-account token and CA where a pod has them;
        KUBERNETES_SERVICE_HOST/PORT (set for every container) name the API server. Its probe port
        moves to a free loopback port, which the kubelet's probes follow."""
        command = argv if c.spec.get("command") else [*OPERATOR_ENTRYPOINT, *argv]
        if command[0].rsplit("/", 1)[-1] != "jibri-operator":
            raise volumes.ConfigError(
                "RunContainerError", f'exec: "{command[0]}": executable file not found in $PATH'
            )
        metrics_port = 8080
        for index, part in enumerate(command):
            if part.startswith("--metrics-port="):
                metrics_port = int(part.partition("=")[2])
            elif part == "--metrics-port" and index + 1 < len(command):
                metrics_port = int(command[index + 1])
        declared = {int(p["containerPort"]) for p in c.spec.get("ports") or () if p.get("containerPort")}
        c.ports = {port: _free_port() for port in declared | {metrics_port}}
        c.probing = True
        local = ["--metrics-host=127.0.0.1", f"--metrics-port={c.ports[metrics_port]}"]
        binds = [
            arg
            for mount in c.spec.get("volumeMounts") or ()
            if (host := mounts.resolve(mount["mountPath"])) is not None
            for arg in ("--bind", f"{host}:{mount['mountPath']}{':ro' if mount.get('readOnly') else ''}")
        ]
        # The "image" is this installation: where a volume is mounted over it (an emptyDir on
        # /tmp, with the checkout under /tmp), bind it back on top, or the interpreter cannot
        # find its packages. mountns mounts deeper paths after shallower ones.
        targets = [PurePosixPath(mount["mountPath"]) for mount in c.spec.get("volumeMounts") or ()]
        for own in sorted({Path(sys.prefix), Path(__file__).resolve().parents[2]}):
            if any(own.is_relative_to(target) for target in targets):
                binds += ["--bind", f"{own}:{own}:ro"]
        operator = python_module("jibri_operator.cli", *command[1:], *local)
        return python_module("jibri_sandbox.kubelet.mountns", *binds, "--", *operator)

    async def _probe(self, c: Container, process: ContainerProcess) -> None:
        """Readiness and liveness probes of one running process, as the kubelet runs them."""
        readiness, liveness = c.spec.get("readinessProbe"), c.spec.get("livenessProbe")
        tasks = []
        if readiness:
            tasks.append(self._probe_loop(c, process, readiness, "Readiness"))
        if liveness:
            tasks.append(self._probe_loop(c, process, liveness, "Liveness"))
        await asyncio.gather(*tasks)

    async def _probe_loop(self, c: Container, process: ContainerProcess, spec: Obj, kind: str) -> None:
        check = probes.Probe.from_spec(spec, c.spec, c.ports)
        await asyncio.sleep(check.initial_delay)
        successes = failures = 0
        told = ""
        while process.running and not self.stopping():
            ok, detail = await check.run()
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if not ok and detail != told:  # the real kubelet repeats each failure (aggregated): new ones only
                self.kubelet.event(self.pod, "Warning", "Unhealthy", f"{kind} probe failed: {detail}", c.name)
            told = "" if ok else detail
            if kind == "Readiness":
                if ok and successes >= check.success_threshold and not c.probe_ready:
                    c.probe_ready = True
                    await self.report()
                elif not ok and failures >= check.failure_threshold and c.probe_ready:
                    c.probe_ready = False
                    await self.report()
            elif not ok and failures >= check.failure_threshold:
                message = f"Container {c.name} failed liveness probe, will be restarted"
                self.kubelet.event(self.pod, "Normal", "Killing", message, c.name)
                await process.stop(self._grace())
                return
            await asyncio.sleep(check.period)

    # --- deletion ----------------------------------------------------------------------------------

    def _grace(self) -> float:
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (self.pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return max(float(grace), self.kubelet.min_grace)

    async def _terminate(self) -> None:
        """SIGTERM every container, SIGKILL what is left after the grace period, then let the pod go."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        running = [c for c in self.containers if c.process is not None and c.process.running]
        if running:
            grace = self._grace()
            log.info("stopping pod %s/%s: SIGTERM, SIGKILL after %gs", self.namespace, self.name, grace)
            for c in running:
                self.kubelet.event(self.pod, "Normal", "Killing", f"Stopping container {c.name}", c.name)
            await asyncio.gather(*(self._stop_container(c, grace) for c in running))
        if self.removed:
            return
        await self.report()
        try:
            await self.api.delete(
                self.api.path("pods", self.namespace, self.name),
                {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )
        except ApiError as error:
            if error.status not in (404, 409):
                log.warning("final delete of %s/%s failed: %s", self.namespace, self.name, error)

    async def _stop_container(self, c: Container, grace: float) -> None:
        assert c.process is not None
        process = c.process
        started = asyncio.get_running_loop().time()
        waiter = asyncio.ensure_future(process.wait())
        pause = pre_stop_sleep(c.spec)
        if pause:  # the preStop hook runs first, within the grace period, then SIGTERM
            await asyncio.wait({waiter}, timeout=min(pause, grace))
        process.terminate()
        while not waiter.done():
            # a second delete may shorten the grace period; honour the shorter one
            deadline = started + min(grace, self._grace())
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                log.info(
                    "%s/%s container %s ignored SIGTERM for %gs: SIGKILL",
                    self.namespace,
                    self.name,
                    c.name,
                    grace,
                )
                process.kill()
                break
            poked = asyncio.ensure_future(self._poked_since(self.generation, None))
            await asyncio.wait({waiter, poked}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            poked.cancel()
        code = await waiter
        c.state = {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error",
            "startedAt": process.started_at, "finishedAt": process.finished_at or now(),
            "containerID": c.container_id,
        }}  # fmt: skip

    # --- status ------------------------------------------------------------------------------------

    def _ips(self) -> Obj:
        host = self.kubelet.host_ip
        return {
            "hostIP": host,
            "hostIPs": [{"ip": host}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
        }

    def _phase(self) -> str:
        if self.phase in TERMINAL:
            return self.phase
        running = waiting = stopped = succeeded = 0
        for c in self.containers:
            if "running" in c.state:
                running += 1
            elif "terminated" in c.state:
                stopped += 1
                succeeded += c.state["terminated"].get("exitCode") == 0
            elif "terminated" in c.last_state:
                stopped += 1
            else:
                waiting += 1
        if self.terminating and running == 0:  # a deleted pod ends in a terminal phase (since 1.27)
            return "Succeeded" if stopped == succeeded and stopped else "Failed"
        if waiting:
            return "Pending"
        if running:
            return "Running"
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"

    def _condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        old = self._conditions.get(kind)
        condition: Obj = {"type": kind, "status": status, "lastProbeTime": None}
        if old is not None and old.get("status") == status:
            condition["lastTransitionTime"] = old.get("lastTransitionTime")
        else:
            condition["lastTransitionTime"] = now()
        if reason and not ok:
            condition["reason"] = reason
        if message and not ok:
            condition["message"] = message
        self._conditions[kind] = condition
        return condition

    def status(self) -> Obj:
        self.phase = self._phase()
        terminal = self.phase in TERMINAL
        unready = [c.name for c in self.containers if not c.ready]
        reason = "PodCompleted" if terminal else "ContainersNotReady"
        message = "" if terminal else f"containers with unready status: [{' '.join(unready)}]"
        conditions = [
            self._condition("PodReadyToStartContainers", not terminal),
            self._condition("Initialized", True),
            self._condition("Ready", not unready and not terminal, reason, message),
            self._condition("ContainersReady", not unready and not terminal, reason, message),
            self._condition("PodScheduled", True),
        ]
        for c in conditions:
            c.pop("lastProbeTime", None)
        return {
            "phase": self.phase,
            "conditions": conditions,
            **self._ips(),
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in self.containers],
            "qosClass": _qos([c.spec for c in self.containers]),
        }

    async def report(self) -> None:
        """Write the pod's status if it changed (JSON patch guarded by the pod's uid)."""
        async with self._report_lock:
            if self.removed:
                return
            status = self.status()
            if status == self._last_report:
                return
            body = [
                {"op": "test", "path": "/metadata/uid", "value": self.uid},
                {"op": "replace", "path": "/status", "value": status},
            ]
            try:
                await self.api.patch(
                    self.api.path("pods", self.namespace, self.name, "status"), body, JSON_PATCH
                )
                self._last_report = status
            except ApiError as error:
                if error.status == 404:
                    return
                log.warning("status update of %s/%s failed: %s", self.namespace, self.name, error)
            except OSError as error:
                log.warning("status update of %s/%s failed: %s", self.namespace, self.name, error)
