"""The sandbox API server in a child process, counting the requests it serves (a helper module).

The count is by who asked (``kopf`` by its User-Agent, ``client`` for the kubernetes Python
client the operator's own calls use, ``bench`` for the benchmark, which sets its User-Agent),
verb, and resource (``recordingsessions/status``, ``events``...): the API writes a session
costs are then read off the server, not guessed from watch events. ``CONNECT`` counts the
connections each asker opened (each a TLS handshake on both ends). The server itself is the
ordinary :class:`jibri_sandbox.apiserver.server.ApiServer`; only its request handler is wrapped.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import tempfile
import weakref
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

BENCH_AGENT = "scale-bench"
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def resource_of(path: str) -> str:
    """``/apis/G/V/namespaces/N/PLURAL/NAME/SUB`` -> ``PLURAL/SUB``; discovery and the like as is."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return "/" + "/".join(parts[:1])
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return "discovery"
    return rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")


def _who(agent: str) -> str:
    if agent.startswith(BENCH_AGENT):
        return "bench"
    return "kopf" if agent.startswith("kopf") else "client"


def _main(conn: Connection, directory: str) -> None:
    from jibri_sandbox.apiserver.server import ApiServer, Handler

    counts: Counter[tuple[str, str, str]] = Counter()
    seen: weakref.WeakSet[Any] = weakref.WeakSet()
    original = Handler.handle

    async def counted(self: Handler, request: Any) -> Any:
        verb = request.method
        if verb == "GET" and request.query.get("watch") in ("1", "true"):
            verb = "WATCH"
        who = _who(request.headers.get("User-Agent", ""))
        counts[(who, verb, resource_of(request.path))] += 1
        transport = request.transport
        if transport is not None and transport not in seen:  # a new connection: a TLS handshake
            seen.add(transport)
            counts[(who, "CONNECT", "")] += 1
        return await original(self, request)

    Handler.handle = counted  # type: ignore[method-assign]

    async def serve() -> None:
        server = ApiServer(kubeconfig=Path(directory) / "kubeconfig", workdir=directory, history_size=100_000)
        async with server:
            conn.send(str(server.kubeconfig))
            while True:
                command = await asyncio.to_thread(conn.recv)
                if command == "counts":
                    conn.send(dict(counts))
                elif command == "stop":
                    break
        conn.send(None)

    asyncio.run(serve())


class CountedApiServer:
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="scale-api-")
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_main, args=(child, self._tmp.name), daemon=True)
        self._process.start()
        if not self._conn.poll(60):
            raise TimeoutError("the API server did not start")
        self.kubeconfig = Path(self._conn.recv())

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def counts(self) -> Counter[tuple[str, str, str]]:
        self._conn.send("counts")
        return Counter(self._conn.recv())

    def stop(self) -> None:
        with contextlib.suppress(OSError, EOFError):
            self._conn.send("stop")
            self._conn.poll(10)
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._tmp.cleanup()


def writes(counts: Counter[tuple[str, str, str]], who: tuple[str, ...] = ("kopf", "client")) -> Counter[str]:
    """Writes by ``verb resource``, from the given askers only."""
    result: Counter[str] = Counter()
    for (asker, verb, resource), n in counts.items():
        if asker in who and verb in WRITES:
            result[f"{verb} {resource}"] += n
    return result
