"""A load generator of simulated Jibris for the scale benchmark (a helper module, not a benchmark).

Many :class:`SimulatedJibri` per process, each with its own XMPP connection (its own TLS
session, login and MUC occupant), in a few processes so that they use every core and share
neither a GIL nor an event loop with the operator or the code that measures it.

Every Jibri of an environment logs in with the environment's one Jibri account, each
connection with its own resource: that is how Jitsi's own deployments run their Jibris
(docker-jitsi-meet gives every Jibri ``JIBRI_XMPP_USER``), and the brewery tells them
apart by their occupant nickname (``jibri-<env>-<n>``), as Jicofo and the operator do.

Churn (:func:`_churn`) moves random Jibris through the presence changes a fleet makes in a
day: busy with a recording another controller started, idle again, unhealthy, healthy,
leaving the brewery and joining it again. Each step is exactly one presence change that the
operator's brewery client sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from jibri_sandbox.jibri.config import JibriConfig, SandboxSettings, sandbox_environment
from jibri_sandbox.jibri.simulator import SimulatedJibri


@dataclass(frozen=True)
class JibriSpec:
    """One simulated Jibri; picklable, for the fleet's process."""

    env: int  # the environment's index
    nickname: str
    host: str
    port: int
    ca_file: str
    brewery: str
    jid: str
    password: str


def _config(spec: JibriSpec, start_delay: float) -> JibriConfig:
    environment = sandbox_environment(
        server=(spec.host, spec.port),
        brewery=spec.brewery,
        nickname=spec.nickname,
        jid=spec.jid,
        password=spec.password,
        name=f"env{spec.env}",
    )
    return JibriConfig((environment,), sandbox=SandboxSettings(ca_file=spec.ca_file, start_delay=start_delay))


async def _start_all(jibris: list[SimulatedJibri], concurrency: int) -> None:
    """A bounded number of logins at a time: TLS and SCRAM are CPU work on both ends."""
    gate = asyncio.Semaphore(concurrency)

    async def one(jibri: SimulatedJibri) -> None:
        async with gate:
            await jibri.start(timeout=60)

    await asyncio.gather(*(one(j) for j in jibris))


def _present(jibri: SimulatedJibri) -> bool:
    return jibri.joined


async def _churn(
    jibris: list[SimulatedJibri], away: set[int], changes: int, rate: float, seed: int
) -> dict[str, Any]:
    """``changes`` presence changes at ``rate`` per second on random Jibris of ``jibris``.

    ``away`` holds the ids of the Jibris that left (their rejoin may still be on its way)."""
    rng = random.Random(seed)
    kinds: Counter[str] = Counter()
    began = time.monotonic()
    worst_lag = 0.0
    for step in range(changes):
        due = began + step / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            worst_lag = max(worst_lag, -delay)
        jibri = rng.choice(jibris)
        while id(jibri) not in away and not _present(jibri):  # its rejoin is still on its way
            jibri = rng.choice(jibris)
        if id(jibri) in away:
            away.discard(id(jibri))
            jibri.rejoin_breweries()
            kinds["rejoin"] += 1
        elif jibri.busy:
            jibri.set_busy_elsewhere(False)
            kinds["idle"] += 1
        elif not jibri.healthy:
            jibri.set_healthy(True)
            kinds["healthy"] += 1
        else:
            roll = rng.random()
            if roll < 0.5:
                jibri.set_busy_elsewhere(True)
                kinds["busy"] += 1
            elif roll < 0.75:
                jibri.set_healthy(False)
                kinds["unhealthy"] += 1
            else:
                jibri.leave_breweries()
                away.add(id(jibri))
                kinds["leave"] += 1
    return {"kinds": dict(kinds), "seconds": time.monotonic() - began, "worst_lag": worst_lag}


async def _restore(jibris: list[SimulatedJibri], away: set[int], timeout: float) -> int:
    """Every Jibri present, idle and healthy again; returns how many presence changes it took."""
    async with asyncio.timeout(timeout):  # rejoins on their way land first: a change meanwhile is not sent
        await asyncio.gather(*(j.wait_until(_present, None) for j in jibris if id(j) not in away))
    changed = 0
    for jibri in jibris:
        if id(jibri) in away:
            away.discard(id(jibri))
            jibri.set_busy_elsewhere(False)
            jibri.set_healthy(True)  # not sent while away: the rejoin carries it
            jibri.rejoin_breweries()
            changed += 1
            continue
        if jibri.busy:
            jibri.set_busy_elsewhere(False)
            changed += 1
        if not jibri.healthy:
            jibri.set_healthy(True)
            changed += 1
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(j.wait_until(_present, None) for j in jibris))
    return changed


async def _free(jibri: SimulatedJibri, timeout: float) -> float | None:
    """Turn an unhealthy Jibri healthy; the seconds until a start reaches it (None: none came)."""
    before = len(jibri.starts)
    sent = time.time()  # the clock ReceivedStart.received_at is read from
    jibri.set_healthy(True)
    with contextlib.suppress(TimeoutError):
        await jibri.wait_until(lambda j: len(j.starts) > before, timeout)
        return jibri.starts[before].received_at - sent
    return None


def _main(conn: Connection, specs: list[JibriSpec], start_delay: float, concurrency: int) -> None:
    asyncio.run(_serve(conn, specs, start_delay, concurrency))


async def _serve(conn: Connection, specs: list[JibriSpec], start_delay: float, concurrency: int) -> None:
    jibris = [SimulatedJibri(_config(spec, start_delay)) for spec in specs]
    by_name = {spec.nickname: jibri for spec, jibri in zip(specs, jibris, strict=True)}
    by_env: dict[int, list[SimulatedJibri]] = {}
    for spec, jibri in zip(specs, jibris, strict=True):
        by_env.setdefault(spec.env, []).append(jibri)
    began = time.perf_counter()
    try:
        await _start_all(jibris, concurrency)
    except Exception as error:
        conn.send(error)
        return
    conn.send(time.perf_counter() - began)
    churn: asyncio.Task[dict[str, Any]] | None = None
    away: set[int] = set()
    try:
        while True:
            command, *args = await asyncio.to_thread(conn.recv)
            if command == "churn":  # (changes, rate, envs excluded, seed): runs in the background
                changes, rate, excluded, seed = args
                eligible = [j for s, j in zip(specs, jibris, strict=True) if s.env not in excluded]
                churn = asyncio.create_task(_churn(eligible, away, changes, rate, seed))
                conn.send(len(eligible))
            elif command == "churn_wait":
                assert churn is not None
                conn.send(await churn)
            elif command == "restore":
                conn.send(await _restore(jibris, away, args[0]))
            elif command == "health":  # (env, healthy): every Jibri of that environment
                env, healthy = args
                for jibri in by_env.get(env, []):
                    jibri.set_healthy(healthy)
                conn.send(len(by_env.get(env, [])))
            elif command == "free":  # (nickname, timeout)
                conn.send(await _free(by_name[args[0]], args[1]))
            elif command == "records":  # every recording each Jibri made: its own history
                conn.send(
                    [
                        {"nickname": s.nickname, "room": r.room, "session_id": r.session_id, "at": r.started}
                        for s, j in zip(specs, jibris, strict=True)
                        for r in j.history
                    ]
                )
            elif command == "stop":
                break
    finally:
        if churn is not None:
            churn.cancel()
        await asyncio.gather(*(j.stop() for j in jibris), return_exceptions=True)
        conn.send(None)


class LoadFleet:
    """``specs`` as simulated Jibris in one child process; commands answered over a pipe."""

    def __init__(self, specs: list[JibriSpec], start_delay: float = 0.05, concurrency: int = 20) -> None:
        context = multiprocessing.get_context("spawn")
        self.specs = specs
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=_main, args=(child, specs, start_delay, concurrency), daemon=True
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def launch(self) -> None:
        self._process.start()

    def joined(self, timeout: float) -> float:
        """Wait for every Jibri to join; the seconds they took."""
        answer = self.answer(timeout)
        if isinstance(answer, BaseException):
            raise RuntimeError(f"the fleet could not start: {answer!r}")
        return float(answer)

    def send(self, command: str, *args: Any) -> None:
        self._conn.send((command, *args))

    def answer(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"the Jibri fleet did not answer within {timeout}s")
        return self._conn.recv()

    def call(self, command: str, *args: Any, timeout: float = 60) -> Any:
        self.send(command, *args)
        return self.answer(timeout)

    def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(TimeoutError, EOFError, BrokenPipeError, OSError):
                self.call("stop", timeout=30)
            self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
