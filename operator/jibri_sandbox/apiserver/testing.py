"""Run the API server as a separate process, the way tests and the demo want it.

    server = start_process(tmp_path)          # waits until it serves
    ... KUBECONFIG=server.kubeconfig ...
    server.stop()                             # SIGTERM, then wait

The kubeconfig appears (atomically) only once the server listens, so its
existence is the readiness signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class RunningApiServer:
    kubeconfig: Path
    url: str
    token: str
    process: subprocess.Popen[bytes] = field(repr=False)
    log: Path

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_process(directory: Path, *extra_args: str, timeout: float = 30.0) -> RunningApiServer:
    """Start `jibri-sandbox apiserver` in `directory`; return once it accepts requests."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = directory / "kubeconfig"
    kubeconfig.unlink(missing_ok=True)
    log = directory / "apiserver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jibri_sandbox.cli",
                "apiserver",
                "--kubeconfig",
                str(kubeconfig),
                *extra_args,
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
    )
