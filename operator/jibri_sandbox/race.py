"""Three controllers race for one brewery: this operator in two clusters, and a Jicofo-like focus.

The protocol's promise is that a shared brewery is safe: whoever loses the race
for an idle Jibri hears "busy" and picks another, and nothing is ever recorded
twice. :func:`run_race` puts that to the test: two sandbox API servers, each
with its own operator process, and :class:`jibri_sandbox.focus.Focus` share
one brewery on a real Prosody, with ``jibris`` simulated Jibris of all three
dialect variants, and start ``sessions`` recordings of random short length at
random moments. What happened is read back from the Jibris' own records and
from both clusters' APIs. tests/e2e/test_contention.py asserts on it;
benchmarks/contention.py times it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

from jibri_operator.api.types import Dialect
from jibri_sandbox.apiserver.testing import RunningApiServer, start_process
from jibri_sandbox.focus import Focus, FocusRecording
from jibri_sandbox.jibri import JibriConfig, SandboxSettings, SimulatedJibri, sandbox_environment
from jibri_sandbox.prosody import Prosody

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "race"
TERMINAL = ("Completed", "Failed")


@dataclass(frozen=True)
class RaceConfig:
    jibris: int = 30
    sessions: int = 100  # RecordingSessions of both clusters, and the focus's recordings
    focus_share: float = 0.3
    min_duration: float = 1.0
    max_duration: float = 4.0
    arrival_window: float = 10.0  # all sessions start within this many seconds
    clusters: int = 2  # 1 and focus_share 0 is the uncontended baseline
    seed: int = 7
    timeout: float = 120.0


@dataclass
class SessionOutcome:
    cluster: str
    name: str
    room: str
    created: float  # wall clock, as the test saw the create call return
    recording: float | None = None  # first watch event in Recording
    phase: str | None = None
    attempts: int = 0
    busy_retries: int = 0


@dataclass
class RaceResult:
    sessions: list[SessionOutcome]
    focus: list[FocusRecording]
    starts_by_room: Counter[str]
    concurrent_doubles: int  # a room recorded by two Jibris at the same moment
    jibri_overlaps: int  # a Jibri recording two rooms at the same moment
    busy_answers: int  # starts a Jibri refused as busy (every controller's)

    @property
    def lost(self) -> list[str]:
        """Sessions never recorded, or not ended Completed."""
        return [
            s.name
            for s in self.sessions
            if s.phase != "Completed" or self.starts_by_room[s.room] == 0 or s.recording is None
        ]

    @property
    def recorded_twice(self) -> list[str]:
        rooms = [s.room for s in self.sessions] + [f.room for f in self.focus]
        return [room for room in rooms if self.starts_by_room[room] > 1]


@dataclass
class _Cluster:
    name: str
    server: RunningApiServer
    custom: Any
    core: Any
    operator: subprocess.Popen[bytes] | None = None
    seen: dict[str, SessionOutcome] = field(default_factory=dict)


def _kubectl(server: RunningApiServer, *args: str) -> None:
    subprocess.run(
        ["kubectl", "--kubeconfig", str(server.kubeconfig), *args], check=True, capture_output=True
    )


def _set_up_cluster(name: str, directory: Path, prosody: Prosody, brewery: str) -> _Cluster:
    server = start_process(directory / name)
    _kubectl(server, "apply", "-k", str(ROOT / "crds"))
    _kubectl(server, "wait", "--for=condition=Established", "crd", "--all")
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=configuration)
    api = kubernetes.client.ApiClient(configuration)
    cluster = _Cluster(
        name, server, kubernetes.client.CustomObjectsApi(api), kubernetes.client.CoreV1Api(api)
    )
    cluster.core.create_namespace({"metadata": {"name": NAMESPACE}})
    password = secrets.token_urlsafe(12)
    jid = prosody.register(f"operator-{name}-{uuid.uuid4().hex[:6]}", password)
    for secret, data in (
        ("login", {"username": jid, "password": password}),
        ("ca", {"ca.crt": prosody.ca_file.read_text()}),
    ):
        cluster.core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": secret}, "stringData": data})
    environment = {
        "apiVersion": "jibri.dev/v1alpha1",
        "kind": "XmppEnvironment",
        "metadata": {"name": "meet"},
        "spec": {
            "server": {"host": prosody.host, "port": prosody.port},
            "domain": prosody.domain,
            "brewery": brewery,
            "controlLogin": {"secretRef": {"name": "login"}},
            "tls": {"caSecretRef": {"name": "ca"}},
        },
    }
    cluster.custom.create_namespaced_custom_object(
        "jibri.dev", "v1alpha1", NAMESPACE, "xmppenvironments", environment
    )
    return cluster


def _start_operator(cluster: _Cluster, directory: Path) -> None:
    argv = [sys.executable, "-m", "jibri_operator.cli", "run", "--kubeconfig", str(cluster.server.kubeconfig)]
    argv += ["-n", NAMESPACE, "--nickname", f"jibri-operator-{cluster.name}", "--metrics-port", "0"]
    with (directory / f"operator-{cluster.name}.log").open("ab") as log:
        cluster.operator = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )


def _watch_sessions(cluster: _Cluster, stop: threading.Event) -> None:
    """Record when each session is first seen Recording, and its last phase, as events arrive."""
    watch = kubernetes.watch.Watch()
    while not stop.is_set():
        try:
            for event in watch.stream(
                cluster.custom.list_namespaced_custom_object,
                "jibri.dev",
                "v1alpha1",
                NAMESPACE,
                "recordingsessions",
                timeout_seconds=2,
            ):
                now = time.time()
                obj = event["object"]
                outcome = cluster.seen.get(obj["metadata"]["name"])
                status = obj.get("status") or {}
                if outcome is None:
                    continue
                outcome.phase = status.get("phase", outcome.phase)
                outcome.attempts = int(status.get("attempts", outcome.attempts))
                if outcome.phase == "Recording" and outcome.recording is None:
                    outcome.recording = now
                if stop.is_set():
                    break
        except Exception:  # a dropped watch is simply opened again
            time.sleep(0.1)


def _environment_sees(cluster: _Cluster, jibris: int) -> bool:
    environment = cluster.custom.get_namespaced_custom_object(
        "jibri.dev", "v1alpha1", NAMESPACE, "xmppenvironments", "meet"
    )
    status = environment.get("status") or {}
    return bool(status.get("connected")) and (status.get("jibris") or {}).get("idle") == jibris


async def _eventually(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.1)


def _variant(index: int) -> dict[str, Any]:
    """Every third Jibri of each dialect variant: a mixed fleet, each spoken to in its own dialect."""
    return [
        {"dialect": Dialect.CURRENT},
        {"dialect": Dialect.LEGACY},
        {"dialect": Dialect.LEGACY, "legacy_reports": True},
    ][index % 3]


async def run_race(prosody: Prosody, directory: Path, config: RaceConfig = RaceConfig()) -> RaceResult:
    """Run the race; every process and connection it started is gone when it returns."""
    rng = random.Random(config.seed)
    brewery = f"race-{uuid.uuid4().hex[:6]}@{prosody.muc_domain}"
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    clusters: list[_Cluster] = []
    jibris: list[SimulatedJibri] = []
    focus: Focus | None = None
    stop_watching = threading.Event()
    watchers: list[threading.Thread] = []
    try:
        for index in range(config.clusters):
            clusters.append(
                await asyncio.to_thread(_set_up_cluster, "abcdefgh"[index], directory, prosody, brewery)
            )
        for cluster in clusters:
            _start_operator(cluster, directory)
        for index in range(config.jibris):
            password = secrets.token_urlsafe(12)
            jid = prosody.register(f"jibri-{uuid.uuid4().hex[:8]}", password)
            environment = sandbox_environment(
                server=(prosody.host, prosody.port), brewery=brewery, nickname=f"jibri-{index:03d}", jid=jid,
                password=password, name="meet",
            )  # fmt: skip
            settings = SandboxSettings(ca_file=str(prosody.ca_file), **_variant(index))
            jibris.append(SimulatedJibri(JibriConfig((environment,), sandbox=settings)))
        gate = asyncio.Semaphore(10)

        async def start(jibri: SimulatedJibri) -> None:
            async with gate:
                await jibri.start()

        await asyncio.gather(*(start(jibri) for jibri in jibris))
        password = secrets.token_urlsafe(12)
        focus = Focus(
            prosody.register(f"focus-{uuid.uuid4().hex[:6]}", password), password, brewery,
            nickname="focus", ca_file=prosody.ca_file, wait_for_jibri=config.timeout, max_attempts=1000,
        )  # fmt: skip
        await focus.join(prosody.host, prosody.port)
        for cluster in clusters:
            await _eventually(
                lambda c=cluster: _environment_sees(c, config.jibris), 60, f"cluster {cluster.name}"
            )
            thread = threading.Thread(target=_watch_sessions, args=(cluster, stop_watching), daemon=True)
            thread.start()
            watchers.append(thread)

        arrivals = sorted(rng.uniform(0, config.arrival_window) for _ in range(config.sessions))
        began = time.monotonic()
        focus_tasks: list[asyncio.Task[FocusRecording]] = []
        turn = 0
        for index, at in enumerate(arrivals):
            await asyncio.sleep(max(0.0, began + at - time.monotonic()))
            duration = rng.uniform(config.min_duration, config.max_duration)
            room = f"race-{index:03d}@{prosody.muc_domain}"
            if rng.random() < config.focus_share or not clusters:
                focus_tasks.append(asyncio.create_task(focus.record(room, duration)))
                continue
            cluster = clusters[turn % len(clusters)]
            turn += 1
            name = f"s{index:03d}"
            body = {
                "apiVersion": "jibri.dev/v1alpha1",
                "kind": "RecordingSession",
                "metadata": {"name": name},
                "spec": {"environment": "meet", "room": room, "maxDuration": f"{duration:.1f}s"},
            }
            outcome = SessionOutcome(cluster.name, name, room, 0.0)
            cluster.seen[name] = outcome
            await asyncio.to_thread(
                cluster.custom.create_namespaced_custom_object,
                "jibri.dev", "v1alpha1", NAMESPACE, "recordingsessions", body,
            )  # fmt: skip
            outcome.created = time.time()

        def all_ended() -> bool:
            return all(o.phase in TERMINAL for c in clusters for o in c.seen.values())

        with contextlib.suppress(TimeoutError):
            await _eventually(all_ended, config.timeout, "every session to end")
        focus_results = list(await asyncio.gather(*focus_tasks))
        for cluster in clusters:
            events = await asyncio.to_thread(cluster.core.list_namespaced_event, NAMESPACE)
            for event in events.items:
                outcome = cluster.seen.get(event.involved_object.name)
                if outcome is not None and event.reason == "BusyRetried":
                    outcome.busy_retries += event.count or 1
        return _tally(clusters, focus_results, jibris)
    finally:
        stop_watching.set()
        if focus is not None:
            await focus.close()
        await asyncio.gather(*(jibri.stop() for jibri in jibris), return_exceptions=True)
        for cluster in clusters:
            if cluster.operator is not None and cluster.operator.poll() is None:
                cluster.operator.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(cluster.operator.wait, 20)
                if cluster.operator.poll() is None:
                    cluster.operator.kill()
            cluster.server.stop()
        for thread in watchers:
            thread.join(5)


def _tally(clusters: list[_Cluster], focus: list[FocusRecording], jibris: list[SimulatedJibri]) -> RaceResult:
    starts: Counter[str] = Counter()
    spans_by_room: dict[str, list[tuple[float, float]]] = {}
    jibri_overlaps = 0
    for jibri in jibris:
        spans = sorted(
            (r.started, r.ended if r.ended is not None else float("inf"), r.room) for r in jibri.history
        )
        for (_, end, _), (start, _, _) in itertools.pairwise(spans):
            jibri_overlaps += start < end
        for start, end, room in spans:
            starts[room] += 1
            spans_by_room.setdefault(room, []).append((start, end))
    doubles = 0
    for spans in spans_by_room.values():
        spans.sort()
        doubles += sum(1 for (_, end), (start, _) in itertools.pairwise(spans) if start < end)
    return RaceResult(
        sessions=[outcome for cluster in clusters for outcome in cluster.seen.values()],
        focus=focus,
        starts_by_room=starts,
        concurrent_doubles=doubles,
        jibri_overlaps=jibri_overlaps,
        busy_answers=sum(jibri.refusals for jibri in jibris),
    )
