"""Run the API server outside the caller's event loop: as a process (like a real one) or a thread.

    server = start_process(tmp_path)          # waits until it serves
    ... KUBECONFIG=server.kubeconfig ...
    server.stop()                             # SIGTERM, then wait

    with start_thread() as server:            # in-process, its own loop in a daemon thread
        ... server.kubeconfig, server.url, server.store (for white-box checks) ...

For async code, ``async with ApiServer() as server:`` runs it on the current loop.
The kubeconfig appears (atomically) only once the server listens, so its
existence is the readiness signal.

A process's fault switches (faults.py) are at hand on `RunningApiServer`:

    fault = server.fail(429, verbs=["list", "watch"], seconds=5)   # or 500; resources=, fraction=, times=
    server.conflict_status_writes(resources=["widgets"], times=3)
    server.drop_watches()                                          # abort=True resets the connections
    server.clear_faults(fault)                                     # or every fault: clear_faults()
    server.restart(downtime=1.0)                                   # same port, same objects
    server.audit()                                                 # with start_process(..., audit_log=True)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import audit
from .server import FAULTS_PATH, ApiServer


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

    # --- fault switches --------------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        config = yaml.safe_load(self.kubeconfig.read_text())
        context = ssl.create_default_context()
        ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
        context.load_verify_locations(cadata=ca)
        return context

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - https to the server this object started
            self.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, context=self._context(), timeout=timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}") from None

    def faults(self) -> list[dict[str, Any]]:
        """The active fault switches, as the server describes them."""
        result: list[dict[str, Any]] = self._call("GET", FAULTS_PATH)["faults"]
        return result

    def open_watches(self) -> int:
        """How many watches the server is serving now."""
        return int(self._call("GET", FAULTS_PATH)["openWatches"])

    def boot_id(self) -> str:
        """Changes with every (re)start of the server."""
        return str(self._call("GET", FAULTS_PATH)["boot"])

    def set_fault(self, spec: dict[str, Any]) -> str:
        """Any fault switch in its JSON form (see faults.py); returns its id."""
        return str(self._call("POST", FAULTS_PATH, spec)["id"])

    def fail(
        self,
        code: int = 500,
        *,
        verbs: list[str] | None = None,
        resources: list[str] | None = None,
        fraction: float = 1.0,
        seconds: float | None = None,
        times: int | None = None,
        retry_after: int = 1,
        message: str = "",
    ) -> str:
        """Answer 500 (InternalError) or 429 (Retry-After) to the matching requests; returns the fault's id."""
        spec: dict[str, Any] = {
            "fault": "error",
            "code": code,
            "fraction": fraction,
            "retryAfterSeconds": retry_after,
        }
        spec.update({k: v for k, v in (("verbs", verbs), ("resources", resources), ("seconds", seconds),
                                       ("times", times), ("message", message)) if v})  # fmt: skip
        return self.set_fault(spec)

    def delay(
        self,
        seconds_each: float,
        *,
        verbs: list[str] | None = None,
        resources: list[str] | None = None,
        seconds: float | None = None,
        times: int | None = None,
    ) -> str:
        """Serve the matching requests, but hold each answer back ``seconds_each``; the fault's id."""
        spec: dict[str, Any] = {"fault": "delay", "delaySeconds": seconds_each}
        spec.update({k: v for k, v in (("verbs", verbs), ("resources", resources), ("seconds", seconds),
                                       ("times", times)) if v})  # fmt: skip
        return self.set_fault(spec)

    def conflict_status_writes(
        self,
        *,
        resources: list[str] | None = None,
        fraction: float = 1.0,
        seconds: float | None = None,
        times: int | None = None,
    ) -> str:
        """Answer 409 Conflict to status subresource writes; returns the fault's id."""
        spec: dict[str, Any] = {"fault": "statusConflict", "fraction": fraction}
        spec.update(
            {k: v for k, v in (("resources", resources), ("seconds", seconds), ("times", times)) if v}
        )
        return self.set_fault(spec)

    def drop_watches(self, abort: bool = False) -> int:
        """End every open watch now; returns how many there were."""
        return int(self._call("POST", FAULTS_PATH, {"fault": "dropWatches", "abort": abort})["dropped"])

    def clear_faults(self, fault_id: str | None = None) -> int:
        """Clear one fault switch, or all of them; returns how many were cleared."""
        return int(self._call("DELETE", FAULTS_PATH + (f"/{fault_id}" if fault_id else ""))["cleared"])

    def restart(self, downtime: float = 0.0, timeout: float = 30.0) -> None:
        """Stop the server (it saves its objects) and start it again on the same port with them;
        return once the new one answers. The process id stays (the server re-executes itself)."""
        before = self.boot_id()
        self._call("POST", FAULTS_PATH, {"fault": "restart", "downtime": downtime})
        deadline = time.monotonic() + downtime + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"apiserver exited with {self.process.returncode}:\n{self.log.read_text()}"
                )
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                if self.boot_id() != before:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"apiserver did not come back within {timeout}s:\n{self.log.read_text()}")
            time.sleep(0.05)

    def audit(self) -> list[dict[str, Any]]:
        """The audit log's records (start_process(..., audit_log=True))."""
        if self.audit_log is None:
            raise RuntimeError("this server runs without an audit log")
        return audit.read(self.audit_log)


def start_process(
    directory: Path, *extra_args: str, timeout: float = 30.0, audit_log: bool | Path = False
) -> RunningApiServer:
    """Start `jibri-sandbox apiserver` in `directory`; return once it accepts requests.

    A fresh world each time: any objects an earlier server saved there are not loaded (only a
    restart loads them). `audit_log=True` writes `directory/audit.jsonl` (emptied first)."""
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
