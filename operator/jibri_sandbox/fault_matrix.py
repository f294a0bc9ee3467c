"""A bad afternoon, on purpose: every fault we can inflict, while sessions keep coming.

:func:`run_matrix` builds a world (the sandbox API server with its fault switches and audit
log, a kubelet running a JibriPool's pods as simulated Jibris, four hand-run Jibris of every
dialect variant, a real Prosody, the operator as a process), starts a steady load of
RecordingSessions of a few seconds each, and inflicts each fault in turn, ``rounds`` times,
with time for the load to settle in between. Then it reads what happened from the Jibris'
own records (the hand-run ones' :attr:`SimulatedJibri.history`, the pool pods' history files)
and from the API, and counts, per fault:

- sessions started (created while the fault's window was open);
- sessions recorded twice: two Jibris recording one session at the same time (must be 0);
- sessions lost: never recorded, or not Completed in the end (must be 0);
- recordings cut short by the operator: a recording the operator stopped before the
  session's maxDuration ran out, counted from its first accepted start (must be 0);
- the time to recover: from the fault's end to a probe session, created then, Recording.

benchmarks/faults.py prints the table; tests/e2e/test_faults.py runs one round (slow).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes

from jibri_operator.api.types import Dialect
from jibri_sandbox.apiserver.testing import RunningApiServer, start_process
from jibri_sandbox.jibri import JibriConfig, SandboxSettings, SimulatedJibri, sandbox_environment
from jibri_sandbox.kubelet import FAULT, Kubelet
from jibri_sandbox.prosody import Prosody

ROOT = Path(__file__).resolve().parents[2]
NS = "faults"
GROUP, VERSION = "jibri.dev", "v1alpha1"
HISTORY_DIR = "JIBRI_SANDBOX_HISTORY_DIR"
TERMINAL = ("Completed", "Failed")


@dataclass
class Span:
    """One recording, from a Jibri's own record."""

    jibri: str
    room: str
    started: float
    ended: float | None
    ended_by: str | None  # stop, done, error; None: the Jibri died recording


@dataclass
class Session:
    name: str
    room: str
    max_duration: float
    created: float
    phase: str | None = None
    jibri: str | None = None


@dataclass
class Window:
    fault: str
    opened: float
    closed: float = 0.0
    recovered: float | None = None  # seconds from the fault's end to a probe Recording
    killed_jibris: set[str] = field(default_factory=set)  # recordings the fault itself cut


@dataclass
class Row:
    fault: str
    times: int
    started: int
    recorded_twice: int
    lost: int
    cut_by_operator: int
    cut_by_fault: int
    recover_p50: float | None
    recover_max: float | None

    @property
    def holds(self) -> bool:
        return self.recorded_twice == 0 and self.lost == 0 and self.cut_by_operator == 0


@dataclass(frozen=True)
class MatrixConfig:
    rounds: int = 2
    interval: float = 1.5  # seconds between new sessions
    min_duration: float = 3.0
    max_duration: float = 6.0
    settle: float = 8.0  # quiet time after a recovery before the next fault
    faults: tuple[str, ...] = ()  # empty: all of FAULTS
    seed: int = 5


class World:
    """Everything a fault can hit, in one directory."""

    def __init__(self, directory: Path, config: MatrixConfig) -> None:
        self.dir = directory
        self.config = config
        self.rng = random.Random(config.seed)
        self.prosody = Prosody(directory / "prosody")
        self.server: RunningApiServer | None = None
        self.kubelet: Kubelet | None = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.jibris: list[SimulatedJibri] = []
        self.retired: list[SimulatedJibri] = []  # hand-run Jibris a fault killed: their records count
        self.sessions: dict[str, Session] = {}
        self.windows: list[Window] = []
        self.history = directory / "history"
        self.brewery = ""
        self._load: asyncio.Task[None] | None = None
        self._count = 0

    # -- the world ------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self.history.mkdir, parents=True, exist_ok=True)
        self.prosody.start()
        self.brewery = f"brewery@{self.prosody.muc_domain}"
        self.server = await asyncio.to_thread(start_process, self.dir / "api", audit_log=True)
        kubectl = ["kubectl", "--kubeconfig", str(self.server.kubeconfig)]
        for args in (
            ["apply", "-k", str(ROOT / "crds")],
            ["wait", "--for=condition=Established", "crd", "--all"],
        ):
            await asyncio.to_thread(subprocess.run, [*kubectl, *args], check=True, capture_output=True)
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(self.server.kubeconfig), client_configuration=configuration
        )
        api = kubernetes.client.ApiClient(configuration)
        self.core = kubernetes.client.CoreV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.policy = kubernetes.client.PolicyV1Api(api)
        self.kubelet = Kubelet(
            self.server.kubeconfig,
            node_name="faults-node",
            startup_delay=0.5,
            state_dir=self.dir / "node",
            restart_backoff=1.0,
            extra_env={HISTORY_DIR: str(self.history)},
        )
        await self.kubelet.start()
        self.start_operator()
        await asyncio.to_thread(self._environment)
        for variant in (
            {"dialect": Dialect.CURRENT},
            {"dialect": Dialect.CURRENT},
            {"dialect": Dialect.LEGACY},
            {"dialect": Dialect.LEGACY, "legacy_reports": True},
        ):
            await self.hand_run_jibri(variant)
        await self.until(lambda: self.environment_idle() >= 6, 60, "the pool and the hand-run Jibris")

    def _account(self, prefix: str) -> tuple[str, str]:
        password = secrets.token_urlsafe(12)
        return self.prosody.register(f"{prefix}-{uuid.uuid4().hex[:6]}", password), password

    def _environment(self) -> None:
        self.core.create_namespace({"metadata": {"name": NS}})
        control, jibri, recorder = self._account("operator"), self._account("jibri"), ("recorder", "unused")
        for name, (user, password) in (
            ("login", control),
            ("jibri-login", jibri),
            ("recorder-login", recorder),
        ):
            self.core.create_namespaced_secret(
                NS, {"metadata": {"name": name}, "stringData": {"username": user, "password": password}}
            )
        self.core.create_namespaced_secret(
            NS, {"metadata": {"name": "ca"}, "stringData": {"ca.crt": self.prosody.ca_file.read_text()}}
        )
        environment = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "XmppEnvironment", "metadata": {"name": "meet"},
            "spec": {
                "server": {"host": self.prosody.host, "port": self.prosody.port}, "domain": self.prosody.domain,
                "brewery": self.brewery, "controlLogin": {"secretRef": {"name": "login"}},
                "tls": {"caSecretRef": {"name": "ca"}},
                "jibri": {"controlLoginSecretRef": {"name": "jibri-login"},
                          "callLoginSecretRef": {"name": "recorder-login"}, "trustAllCerts": True},
            },
        }  # fmt: skip
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "xmppenvironments", environment)
        pool = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "JibriPool", "metadata": {"name": "recorders"},
            "spec": {
                "environments": ["meet"], "replicas": {"min": 2, "max": 6}, "idleTarget": 1, "scaleDownDelay": "5s",
                "learn": False,
                "template": {"spec": {"terminationGracePeriodSeconds": 3,
                                      "containers": [{"name": "jibri", "image": "jitsi/jibri:stable"}]}},
            },
        }  # fmt: skip
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "jibripools", pool)

    async def hand_run_jibri(self, sandbox: dict[str, Any], nickname: str | None = None) -> SimulatedJibri:
        jid, password = self._account("jibri")
        environment = sandbox_environment(
            server=(self.prosody.host, self.prosody.port), brewery=self.brewery,
            nickname=nickname or f"hand-{uuid.uuid4().hex[:6]}", jid=jid, password=password, name="meet",
        )  # fmt: skip
        settings = SandboxSettings(ca_file=str(self.prosody.ca_file), start_delay=0.1, **sandbox)
        jibri = SimulatedJibri(JibriConfig((environment,), sandbox=settings))
        await jibri.start()
        self.jibris.append(jibri)
        return jibri

    def start_operator(self) -> None:
        assert self.server is not None
        argv = [
            sys.executable,
            "-m",
            "jibri_operator.cli",
            "run",
            "--kubeconfig",
            str(self.server.kubeconfig),
        ]
        argv += ["-n", NS, "--nickname", "jibri-operator-faults", "--metrics-port", "0"]
        with (self.dir / "operator.log").open("ab") as log:
            self.operator = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )

    def kill_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGKILL)
            self.operator.wait()

    async def stop(self) -> None:
        if self._load is not None:
            self._load.cancel()
        if self.operator is not None and self.operator.poll() is None:
            self.operator.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.operator.wait, 20)
            self.kill_operator()
        await asyncio.gather(*(jibri.stop() for jibri in self.jibris), return_exceptions=True)
        if self.kubelet is not None:
            await self.kubelet.stop()
        if self.server is not None:
            self.server.stop()
        self.prosody.close()

    # -- observation ------------------------------------------------------------------------

    def environment_idle(self) -> int:
        environment = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, "xmppenvironments", "meet")
        return int(((environment.get("status") or {}).get("jibris") or {}).get("idle", 0))

    def refresh(self) -> None:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "recordingsessions")["items"]
        for item in items:
            session = self.sessions.get(item["metadata"]["name"])
            if session is not None:
                status = item.get("status") or {}
                session.phase = status.get("phase")
                session.jibri = (status.get("jibri") or {}).get("nickname")

    async def until(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(kubernetes.client.exceptions.ApiException, OSError):
                result = await asyncio.to_thread(check)
                if result:
                    return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
            await asyncio.sleep(0.1)

    # -- load -------------------------------------------------------------------------------

    def create_session(self, max_duration: float, prefix: str = "s") -> Session:
        self._count += 1
        name = f"{prefix}-{self._count:04d}"
        room = f"{name}@{self.prosody.muc_domain}"
        body = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "RecordingSession", "metadata": {"name": name},
            "spec": {"environment": "meet", "room": room, "maxDuration": f"{max_duration:.1f}s"},
        }  # fmt: skip
        for _ in range(100):  # an API server answering 500 or 429 (a fault) is tried again
            try:
                self.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "recordingsessions", body)
                break
            except (kubernetes.client.exceptions.ApiException, OSError):
                time.sleep(0.2)
        session = Session(name, room, max_duration, time.time())
        self.sessions[name] = session
        return session

    def start_load(self) -> None:
        async def load() -> None:
            while True:
                duration = self.rng.uniform(self.config.min_duration, self.config.max_duration)
                await asyncio.to_thread(self.create_session, duration)
                await asyncio.sleep(self.config.interval)

        self._load = asyncio.create_task(load())

    async def recording(self, timeout: float = 30) -> Session:
        """A session that records now (on any Jibri)."""

        def find() -> Session | None:
            self.refresh()
            return next(
                (s for s in reversed(self.sessions.values()) if s.phase == "Recording" and s.jibri), None
            )

        return await self.until(find, timeout, "a session recording")

    async def probe(self, timeout: float = 90) -> float:
        """Seconds until a session created now records."""
        begun = time.monotonic()
        session = await asyncio.to_thread(self.create_session, 30.0, "probe")

        def recording() -> bool:
            self.refresh()
            return session.phase == "Recording"

        await self.until(recording, timeout, f"probe {session.name} to record")
        return time.monotonic() - begun

    # -- the Jibris' own records -------------------------------------------------------------------

    def spans(self) -> list[Span]:
        spans = [
            Span(jibri.config.environments[0].control_muc.nickname, r.room, r.started, r.ended, r.ended_by)
            for jibri in [*self.jibris, *self.retired]
            for r in jibri.history
        ]
        for path in self.history.glob("*.jsonl"):
            opened: dict[tuple[str, float], dict[str, Any]] = {}
            for line in path.read_text().splitlines():
                record = json.loads(line)
                key = (record["session_id"], record["started"])
                if record["event"] == "start":
                    opened[key] = record
                else:
                    opened[key] = record
            for record in opened.values():
                spans.append(
                    Span(
                        path.stem,
                        record["room"],
                        record["started"],
                        record.get("ended"),
                        record.get("ended_by"),
                    )
                )
        return spans


# -- the faults ----------------------------------------------------------------------------------


async def kill_between_write_ahead_and_start(world: World, window: Window) -> None:
    """The operator dies after writing which Jibri it chose, before the start command goes out."""
    assert world.server is not None
    fault = await asyncio.to_thread(
        world.server.delay, 3.0, verbs=["patch"], resources=["recordingsessions/status"], seconds=10
    )
    session = await asyncio.to_thread(world.create_session, 5.0, "wa")

    def starting() -> bool:
        world.refresh()
        return session.phase == "Starting"

    await world.until(starting, 20, "the write-ahead")
    world.kill_operator()
    await _clear(world.server, fault)
    world.start_operator()


async def kill_mid_recording(world: World, window: Window) -> None:
    await world.recording()
    world.kill_operator()
    world.start_operator()


async def kill_mid_stop(world: World, window: Window) -> None:
    """The operator dies while a Jibri (slow to finish) is stopping."""
    for jibri in world.jibris:
        jibri.faults.stop_reply_delay = 3.0

    def stopping() -> bool:
        world.refresh()
        return any(s.phase == "Stopping" for s in world.sessions.values())

    try:
        await world.until(stopping, 30, "a session stopping")
        world.kill_operator()
        world.start_operator()
    finally:
        for jibri in world.jibris:
            jibri.faults.stop_reply_delay = 0.0


async def restart_prosody(world: World, window: Window) -> None:
    await asyncio.to_thread(world.prosody.restart)


async def cut_a_jibri_connection(world: World, window: Window) -> None:
    """A hand-run Jibri's connections drop mid-recording (a crash, seen from XMPP)."""
    victim = await _recording_hand_run(world)
    window.killed_jibris.add(victim.config.environments[0].control_muc.nickname)
    victim.drop_connections()
    world.jibris.remove(victim)
    world.retired.append(victim)
    await world.hand_run_jibri(
        {"dialect": victim.dialect, "legacy_reports": victim.config.sandbox.legacy_reports}
    )


async def kill_a_jibri_pod(world: World, window: Window) -> None:
    """A pool pod's Jibri process is killed mid-recording (OOM); the kubelet restarts it."""
    name = await _recording_pod(world)
    window.killed_jibris.add(name)
    patch = {"metadata": {"annotations": {FAULT: f"crash:{uuid.uuid4().hex[:6]}"}}}
    await asyncio.to_thread(world.core.patch_namespaced_pod, name, NS, patch)


async def delete_a_recording_pod(world: World, window: Window) -> None:
    """Someone deletes a recording pool pod (kubectl delete pod)."""
    name = await _recording_pod(world)
    window.killed_jibris.add(name)
    await asyncio.to_thread(world.core.delete_namespaced_pod, name, NS)


async def evict_a_recording_pod(world: World, window: Window) -> None:
    """A drain evicts a recording pool pod: the pool's PodDisruptionBudget refuses it."""
    name = await _recording_pod(world)
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": NS}}
    with contextlib.suppress(kubernetes.client.exceptions.ApiException):
        await asyncio.to_thread(world.core.create_namespaced_pod_eviction, name, NS, body)


def _api_fault(kind: str) -> Callable[[World, Window], Awaitable[None]]:
    async def inflict(world: World, window: Window) -> None:
        assert world.server is not None
        server = world.server
        if kind == "500":
            fault = await asyncio.to_thread(server.fail, 500, seconds=5)
        elif kind == "429":
            fault = await asyncio.to_thread(server.fail, 429, seconds=5, retry_after=1)
        elif kind == "409":
            fault = await asyncio.to_thread(server.conflict_status_writes, seconds=5)
        elif kind == "watches":
            await asyncio.to_thread(server.drop_watches)
            return
        else:
            await asyncio.to_thread(server.restart, 1.0)
            return
        await asyncio.sleep(5)
        await _clear(server, fault)

    inflict.__doc__ = f"The API server: {kind}."
    return inflict


async def max_duration_crossed_while_down(world: World, window: Window) -> None:
    """A session's maxDuration passes while the operator is down: it is stopped on its return."""
    session = await asyncio.to_thread(world.create_session, 2.0, "md")

    def recording() -> bool:
        world.refresh()
        return session.phase == "Recording"

    await world.until(recording, 30, "the short session to record")
    world.kill_operator()
    await asyncio.sleep(4)  # the clock is the fault: maxDuration passes meanwhile
    world.start_operator()


async def _clear(server: RunningApiServer, fault: str) -> None:
    with contextlib.suppress(RuntimeError):  # it may have expired already
        await asyncio.to_thread(server.clear_faults, fault)


async def _recording_hand_run(world: World) -> SimulatedJibri:
    async def found() -> SimulatedJibri:
        while True:
            for jibri in world.jibris:
                if jibri.recording:
                    return jibri
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(found(), 30)


async def _recording_pod(world: World) -> str:
    def busy() -> str | None:
        pods = world.core.list_namespaced_pod(NS, label_selector="jibri.dev/state=busy").items
        return next((p.metadata.name for p in pods if p.metadata.deletion_timestamp is None), None)

    name: str = await world.until(busy, 30, "a recording pool pod")
    return name


FAULTS: dict[str, Callable[[World, Window], Awaitable[None]]] = {
    "operator SIGKILL between write-ahead and start": kill_between_write_ahead_and_start,
    "operator SIGKILL mid-recording": kill_mid_recording,
    "operator SIGKILL mid-stop": kill_mid_stop,
    "Prosody restarted": restart_prosody,
    "a Jibri's connection cut mid-recording": cut_a_jibri_connection,
    "a Jibri killed mid-recording": kill_a_jibri_pod,
    "a recording pod deleted": delete_a_recording_pod,
    "a recording pod evicted": evict_a_recording_pod,
    "API server answering 500": _api_fault("500"),
    "API server answering 429": _api_fault("429"),
    "API server dropping every watch": _api_fault("watches"),
    "API server answering 409 on status writes": _api_fault("409"),
    "API server restarted": _api_fault("restart"),
    "maxDuration crossed while the operator is down": max_duration_crossed_while_down,
}


# -- the run ----------------------------------------------------------------------------------------


async def run_matrix(directory: Path, config: MatrixConfig = MatrixConfig()) -> list[Row]:
    world = World(directory, config)
    try:
        await world.start()
        world.start_load()
        await asyncio.sleep(config.settle)
        names = config.faults or tuple(FAULTS)
        for _ in range(config.rounds):
            for name in names:
                window = Window(name, time.time())
                world.windows.append(window)
                await FAULTS[name](world, window)
                window.closed = time.time()
                window.recovered = await world.probe()
                await asyncio.sleep(config.settle)
        if world._load is not None:
            world._load.cancel()
        await world.until(lambda: _all_ended(world), 120, "every session to end")
        return tally(world)
    finally:
        await world.stop()


def _all_ended(world: World) -> bool:
    world.refresh()
    for session in world.sessions.values():
        if session.name.startswith("probe") and session.phase == "Recording":
            world.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NS, "recordingsessions", session.name, {"spec": {"stop": True}}
            )
    return all(s.phase in TERMINAL for s in world.sessions.values())


def tally(world: World) -> list[Row]:
    spans_by_room: dict[str, list[Span]] = {}
    for span in world.spans():
        if span.ended is None:
            # A Jibri a fault killed never wrote its recording's end: it ended with the fault.
            killer = next(
                (w for w in world.windows if span.jibri in w.killed_jibris and w.closed >= span.started), None
            )
            if killer is not None:
                span.ended = killer.closed
        spans_by_room.setdefault(span.room, []).append(span)
    # Everything the counts come from, for whoever wants to check them.
    (world.dir / "spans.json").write_text(
        json.dumps(
            {
                "sessions": [vars(s) for s in world.sessions.values()],
                "windows": [{**vars(w), "killed_jibris": sorted(w.killed_jibris)} for w in world.windows],
                "spans": {room: [vars(s) for s in spans] for room, spans in spans_by_room.items()},
            },
            indent=1,
        )
    )
    rows: dict[str, Row] = {}
    recoveries: dict[str, list[float]] = {}
    for window in world.windows:
        # A session belongs to the fault whose window (from 10 s before it until its end and
        # recovery) saw it created or recording.
        start, end = window.opened - 10, window.closed + (window.recovered or 0) + world.config.settle / 2
        row = rows.setdefault(window.fault, Row(window.fault, 0, 0, 0, 0, 0, 0, None, None))
        row.times += 1
        if window.recovered is not None:
            recoveries.setdefault(window.fault, []).append(window.recovered)
        for session in world.sessions.values():
            spans = sorted(spans_by_room.get(session.room, []), key=lambda s: s.started)
            alive_until = max((s.ended or time.time() for s in spans), default=session.created)
            if not (
                start <= session.created <= end
                or (spans and spans[0].started <= end and alive_until >= start)
            ):
                continue
            row.started += session.created >= start and session.created <= end
            if any(b.started < (a.ended or float("inf")) for a, b in itertools.pairwise(spans)):
                row.recorded_twice += 1
            if not spans or session.phase != "Completed":
                row.lost += 1
            # maxDuration counts from the session's first accepted start: a retry elsewhere
            # records only what is left of it, and is not cut short when it stops there.
            limit = spans[0].started + session.max_duration - 0.5 if spans else 0.0
            for span in spans:
                short = span.ended is not None and span.ended < limit
                if span.jibri in window.killed_jibris and (span.ended is None or span.ended_by != "stop"):
                    row.cut_by_fault += 1
                elif short and span.ended_by == "stop" and not session.name.startswith("probe"):
                    row.cut_by_operator += 1
    for name, row in rows.items():
        values = sorted(recoveries.get(name, []))
        if values:
            row.recover_p50 = values[len(values) // 2]
            row.recover_max = values[-1]
    return list(rows.values())


def table(rows: list[Row]) -> str:
    lines = [
        "| fault | times | sessions | recorded twice | lost | cut by the operator | cut by the fault | recovery p50 s | recovery max s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        p50 = f"{row.recover_p50:.1f}" if row.recover_p50 is not None else "-"
        top = f"{row.recover_max:.1f}" if row.recover_max is not None else "-"
        lines.append(
            f"| {row.fault} | {row.times} | {row.started} | {row.recorded_twice} | {row.lost} | "
            f"{row.cut_by_operator} | {row.cut_by_fault} | {p50} | {top} |"
        )
    return "\n".join(lines)
