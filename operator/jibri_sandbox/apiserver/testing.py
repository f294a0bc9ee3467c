"""Run the API server outside the caller's event loop: as a process (like a real one) or a thread.

    server = start_process(tmp_path)          # waits until it serves
    ... KUBECONFIG=server.kubeconfig ...
    server.stop()                             # SIGTERM, then wait

    with start_thread() as server:            # in-process, its own loop in a daemon thread
        ... server.kubeconfig, server.url, server.store (for white-box checks) ...

For async code, ``async with ApiServer() as server:`` runs it on the current loop.
The kubeconfig appears (atomically) only once the server listens, so its
existence is the readiness signal.

With `start_process(..., audit_log=True)`, `server.audit()` reads the audit log of pod removals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import audit
from .server import ApiServer


@dataclass
class RunningApiServer:
    kubeconfig: Path
    url: str
    token: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log: Path
    audit_log: Path | None = None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def audit(self) -> list[dict[str, Any]]:
        """The audit log's records (start_process(..., audit_log=True))."""
        if self.audit_log is None:
            raise RuntimeError("this server runs without an audit log")
        return audit.read(self.audit_log)


def start_process(
    directory: Path, *extra_args: str, timeout: float = 30.0, audit_log: bool | Path = False
) -> RunningApiServer:
    """Start `jibri-sandbox apiserver` in `directory`; return once it accepts requests.

    A fresh world each time: objects an earlier server saved there are loaded only with
    `--restore` among `extra_args`. `audit_log=True` writes `directory/audit.jsonl` (emptied first)."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = directory / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    log = directory / "apiserver.log"
    audit_path = (directory / "audit.jsonl" if audit_log is True else Path(audit_log)) if audit_log else None
    args = list(extra_args)
    if audit_path is not None:
        audit_path.unlink(missing_ok=True)
        args += ["--audit-log", str(audit_path)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jibri_sandbox.cli",
                "apiserver",
                "--kubeconfig",
                str(kubeconfig),
                *args,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + timeout
    while not kubeconfig.exists():
        if process.poll() is not None:
            raise RuntimeError(f"apiserver exited with {process.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"apiserver did not start within {timeout}s:\n{log.read_text()}")
        time.sleep(0.05)
    config = yaml.safe_load(kubeconfig.read_text())
    return RunningApiServer(
        kubeconfig=kubeconfig,
        url=config["clusters"][0]["cluster"]["server"],
        token=config["users"][0]["user"]["token"],
        process=process,
        log=log,
        audit_log=audit_path,
    )


@contextlib.contextmanager
def start_thread(**options: Any) -> Iterator[ApiServer]:
    """An in-process server on its own event loop in a daemon thread; `options` go to ApiServer."""
    server = ApiServer(**options)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:  # reported to the caller below
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=run, name="sandbox-apiserver", daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
