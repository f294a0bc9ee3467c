"""Shared setup for the XMPP and assignment benchmarks (a helper module, not a benchmark).

- Prosody and its accounts, Jibri configs (one account each, as tests/e2e/sim.py builds them),
- a fleet of simulated Jibris in its own process (:class:`Fleet`), so that they do not share a
  GIL and an event loop with the code that measures them, as real Jibris would not,
- CPU seconds per process (/proc), to tell which process a 2-core machine waits for,
- percentiles and printing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import secrets
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import kubernetes

from jibri_operator.api.constants import GROUP, VERSION
from jibri_sandbox.jibri.config import JibriConfig, SandboxSettings, sandbox_environment
from jibri_sandbox.jibri.simulator import SimulatedJibri
from jibri_sandbox.prosody import Prosody


def account(prosody: Prosody, prefix: str) -> tuple[str, str]:
    password = secrets.token_urlsafe(12)
    return prosody.register(f"{prefix}-{uuid.uuid4().hex[:8]}", password), password


@dataclass(frozen=True)
class XmppSite:
    """What a Jibri needs to reach Prosody; picklable, for the fleet's process."""

    host: str
    port: int
    ca_file: str
    brewery: str

    @classmethod
    def of(cls, prosody: Prosody, brewery: str) -> XmppSite:
        return cls(prosody.host, prosody.port, str(prosody.ca_file), brewery)


def jibri_config(site: XmppSite, jid: str, password: str, nick: str, **sandbox: Any) -> JibriConfig:
    environment = sandbox_environment(
        server=(site.host, site.port),
        brewery=site.brewery,
        nickname=nick,
        jid=jid,
        password=password,
        name="meet",
    )
    return JibriConfig((environment,), sandbox=SandboxSettings(ca_file=site.ca_file, **sandbox))


def make_jibris(
    site: XmppSite, accounts: list[tuple[str, str]], start_delay: float = 0.05
) -> list[SimulatedJibri]:
    return [
        SimulatedJibri(jibri_config(site, jid, pw, f"jibri-{i:03d}", start_delay=start_delay))
        for i, (jid, pw) in enumerate(accounts)
    ]


async def start_all(jibris: list[SimulatedJibri], concurrency: int = 25) -> None:
    """Start every Jibri, a bounded number of logins at a time (TLS and SCRAM are CPU work)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(jibri: SimulatedJibri) -> None:
        async with gate:
            await jibri.start()

    await asyncio.gather(*(one(j) for j in jibris))


async def stop_all(jibris: list[SimulatedJibri]) -> None:
    await asyncio.gather(*(j.stop() for j in jibris), return_exceptions=True)


# -- the fleet in its own process ----------------------------------------------------------------


def _fleet_main(
    conn: Connection, site: XmppSite, accounts: list[tuple[str, str]], start_delay: float
) -> None:
    asyncio.run(_fleet(conn, site, accounts, start_delay))


async def _fleet(
    conn: Connection, site: XmppSite, accounts: list[tuple[str, str]], start_delay: float
) -> None:
    jibris = make_jibris(site, accounts, start_delay)
    began = time.perf_counter()
    await start_all(jibris)
    conn.send(time.perf_counter() - began)
    try:
        while True:
            command, *args = await asyncio.to_thread(conn.recv)
            if command == "starts":
                starts = [s for j in jibris for s in j.starts]
                conn.send([{"room": s.room, "session_id": s.session_id, "at": s.received_at} for s in starts])
            elif command == "flip":  # flip one Jibri's health; answer the wall time just before
                jibri = jibris[args[0]]
                sent = time.time()
                jibri.set_healthy(not jibri.healthy)
                conn.send(sent)
            elif command == "wait_idle":  # answers the rooms still recorded after the timeout
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(args[0]):
                        await asyncio.gather(*(j.wait_until(lambda j: not j.busy, None) for j in jibris))
                conn.send([j.starts[-1].room for j in jibris if j.busy])
            elif command == "stop":
                break
    finally:
        await stop_all(jibris)
        conn.send(None)


class Fleet:
    """Simulated Jibris (nicknames ``jibri-000``...) in a child process, so they share neither
    a GIL nor an event loop with the code that measures them, as real Jibris would not.

    ``starts()`` returns every accepted start as a dict (room, session_id, and ``at``: the
    Jibri's wall clock, time.time, when it accepted).
    """

    def __init__(self, site: XmppSite, accounts: list[tuple[str, str]], start_delay: float = 0.05) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_fleet_main, args=(child, site, accounts, start_delay), daemon=True
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self, timeout: float = 60) -> float:
        """Start the Jibris; return the seconds they took to join."""
        self._process.start()
        return float(self._answer(timeout))

    def call(self, command: str, *args: Any, timeout: float = 60) -> Any:
        self._conn.send((command, *args))
        return self._answer(timeout)

    def starts(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("starts")
        return result

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(TimeoutError, EOFError, BrokenPipeError):
                self.call("stop", timeout=15)
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def _answer(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"the Jibri fleet did not answer within {timeout}s")
        return self._conn.recv()


# -- CPU accounting ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pid(word: str) -> int | None:
    """The first direct child of this process whose command line contains ``word``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
            if parent == os.getpid() and word in (stat.parent / "cmdline").read_bytes().decode(
                errors="replace"
            ):
                return int(stat.parent.name)
    return None


class CpuMeter:
    """CPU seconds used by named processes, summed over the intervals between start and stop."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.used = dict.fromkeys(self.pids, 0.0)
        self.wall = 0.0
        self._began: tuple[float, dict[str, float]] | None = None

    def start(self) -> None:
        self._began = (time.perf_counter(), {name: cpu_seconds(pid) for name, pid in self.pids.items()})

    def stop(self) -> None:
        assert self._began is not None
        began, before = self._began
        self.wall += time.perf_counter() - began
        for name, pid in self.pids.items():
            self.used[name] += cpu_seconds(pid) - before[name]

    def print(self, prefix: str, per: int) -> None:
        """Wall seconds, then per process: CPU seconds, share of one core, and CPU per item."""
        print(f"{prefix}_wall_s: {self.wall:.2f}")
        for name, used in self.used.items():
            print(f"{prefix}_cpu_{name}_s: {used:.2f}")
            print(f"{prefix}_cpu_{name}_core_percent: {used / self.wall * 100:.0f}")
            print(f"{prefix}_cpu_{name}_ms_per_item: {used / per * 1000:.1f}")
        total = sum(self.used.values())
        print(f"{prefix}_cpu_all_ms_per_item: {total / per * 1000:.1f}")
        print(f"{prefix}_cpu_all_cores_busy: {total / self.wall:.2f}")


# -- numbers -------------------------------------------------------------------------------------


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def report(name: str, seconds: list[float]) -> None:
    """``name_p50_ms``, ``name_p99_ms``, ``name_max_ms`` lines, and the sample count."""
    if not seconds:
        print(f"{name}_samples: 0")
        return
    print(f"{name}_samples: {len(seconds)}")
    print(f"{name}_p50_ms: {statistics.median(seconds) * 1000:.2f}")
    print(f"{name}_p99_ms: {percentile(seconds, 99) * 1000:.2f}")
    print(f"{name}_max_ms: {max(seconds) * 1000:.2f}")


class SessionWatcher:
    """Timestamps every watch event on a namespace's RecordingSessions as it arrives (wall clock),
    keeping each object; when the server ends the watch (or the connection breaks), it watches
    again from the last version seen, as an informer does, and says so on stderr."""

    def __init__(self, custom: kubernetes.client.CustomObjectsApi, namespace: str) -> None:
        self.custom, self.namespace = custom, namespace
        self.events: dict[str, list[tuple[float, str, dict[str, Any]]]] = {}  # name -> (at, type, object)
        self.changed = threading.Condition()
        self.watch = kubernetes.watch.Watch()
        self.stopped = False
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "recordingsessions")
        self.thread = threading.Thread(
            target=self._run, args=(listed["metadata"]["resourceVersion"],), daemon=True
        )
        self.thread.start()

    def _run(self, version: str) -> None:
        while not self.stopped:
            stream = self.watch.stream(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, "recordingsessions",
                resource_version=version, timeout_seconds=300, allow_watch_bookmarks=True,
            )  # fmt: skip
            try:
                for event in stream:
                    now = time.time()
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] == "BOOKMARK":
                        continue
                    with self.changed:
                        self.events.setdefault(obj["metadata"]["name"], []).append((now, event["type"], obj))
                        self.changed.notify_all()
            except Exception as error:  # the server going away at the end, or a broken connection
                if not self.stopped:
                    print(f"watch ended ({type(error).__name__}: {error}); watching again", file=sys.stderr)
                    time.sleep(0.2)
            self.watch = kubernetes.watch.Watch()

    def wait_for(self, names: list[str], test: Any, timeout: float, what: str) -> None:
        """Until every named session has had an event ``test(type, object)`` holds for."""

        def done(name: str) -> bool:
            return any(test(t, o) for _, t, o in self.events.get(name, []))

        with self.changed:
            if not self.changed.wait_for(lambda: all(done(n) for n in names), timeout):
                count = sum(1 for n in names if done(n))
                raise TimeoutError(f"timed out waiting for {what} ({count} of {len(names)})")

    def first(self, name: str, test: Any) -> float | None:
        return next((at for at, t, o in self.events.get(name, []) if test(t, o)), None)

    def stop(self) -> None:
        self.stopped = True
        self.watch.stop()


def phase_is(phase: str) -> Any:
    """A SessionWatcher test: the session's status.phase is ``phase``."""
    return lambda _t, o: (o.get("status") or {}).get("phase") == phase


def was_deleted(type_: str, _object: dict[str, Any]) -> bool:
    return type_ == "DELETED"
