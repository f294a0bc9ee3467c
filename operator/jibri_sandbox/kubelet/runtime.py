"""The container runtime: one OS process per container, in its own process group.

SIGTERM goes to the container's main process only (as the runtime signals PID 1),
SIGKILL to the whole group (as killing a container kills everything in it). Every
child also gets PR_SET_PDEATHSIG, so even a kubelet that is SIGKILLed leaves no
orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _die_with_parent_ignoring_term() -> None:
    """Like `trap '' TERM` in a shell: an ignored signal stays ignored across exec, so the
    process is deaf to SIGTERM from its first instruction, not only once its code runs."""
    _die_with_parent()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ContainerProcess:
    """A started container; `wait()` gives its exit code the way a runtime reports it
    (128 + signal number for a signalled process)."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path):
        self.process = process
        self.pid = process.pid
        self.log_path = log_path
        self.started_at = now()
        self.finished_at: str | None = None
        self.exit_code: int | None = None
        self.killed = False

    @classmethod
    async def start(
        cls, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path, ignore_sigterm: bool = False
    ) -> ContainerProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=str(cwd),
                start_new_session=True,
                preexec_fn=_die_with_parent_ignoring_term if ignore_sigterm else _die_with_parent,
            )
        log.debug("started pid %s: %s", process.pid, argv)
        return cls(process, log_path)

    async def wait(self) -> int:
        code = await self.process.wait()
        if self.exit_code is None:
            self.exit_code = 128 - code if code < 0 else code
            self.finished_at = now()
            self._reap_group()
        return self.exit_code

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def terminate(self) -> None:
        """SIGTERM to the main process, as a runtime's graceful stop does."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL to every process of the container."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            if self.running:
                os.kill(self.pid, signal.SIGKILL)

    def _reap_group(self) -> None:
        """A container's leftovers die with its main process."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def stop(self, grace: float) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code."""
        self.terminate()
        try:
            return await asyncio.wait_for(asyncio.shield(self.wait()), grace)
        except TimeoutError:
            log.info("pid %s did not stop within %.0fs of SIGTERM: SIGKILL", self.pid, grace)
            self.kill()
            return await self.wait()


def python_module(module: str, *args: str) -> list[str]:
    """argv running a module of this installation with the same interpreter."""
    return [sys.executable, "-m", module, *args]
