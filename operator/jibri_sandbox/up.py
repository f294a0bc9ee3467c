"""`jibri-sandbox up --dir DIR`: the sandbox world (API server, kubelet, Prosody) until interrupted.

    with Sandbox(Path(".demo"), startup_delay=2.0) as sandbox:
        sandbox.kubeconfig        # DIR/kubeconfig, for kubectl, kopf and the operator
        sandbox.xmpp              # what DIR/xmpp.json holds: server, domains, brewery, CA, accounts

The control plane is the emulated API server (`control_plane="emulated"`, the
default: one process, up in a second) or a real one (`"real"`: etcd,
kube-apiserver with RBAC and kube-controller-manager, see
jibri_sandbox.controlplane; it also writes DIR/operator.kubeconfig, a login
bound to nothing). Either writes the same DIR/kubeconfig (admin), and nothing
after it can tell them apart.
The API server and the kubelet run as child processes (so the kubelet's pods
are real processes of a real node, and a crash of one part is visible); Prosody
is `jibri_sandbox.prosody.Prosody`. DIR/xmpp.json is written last: once it
exists, everything serves. It holds passwords, so it is written with mode 0600.
Stopping goes in reverse: the kubelet stops its pods first (their Jibris leave
the brewery while Prosody is still there), then Prosody, then the API server.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from jibri_sandbox.apiserver.testing import RunningApiServer, start_process
from jibri_sandbox.children import term_with_parent
from jibri_sandbox.controlplane import ControlPlane
from jibri_sandbox.prosody import Prosody

log = logging.getLogger(__name__)
BREWERY_ROOM = "jibribrewery"
CONTROL_USER = "jibri-operator"
JIBRI_USER = "jibri"
FOCUS_USER = "focus"  # `jibri-sandbox focus`, the Jicofo-like controller
CONTROL_PLANES = ("emulated", "real")


class Sandbox:
    """API server + kubelet + Prosody in one directory; a context manager, or start()/stop()."""

    def __init__(
        self,
        directory: str | Path,
        *,
        node_name: str = "sandbox-node",
        startup_delay: float = 0.0,
        restart_backoff: float = 10.0,
        prosody: bool = True,
        timeout: float = 30.0,
        control_plane: str = "emulated",
    ):
        if control_plane not in CONTROL_PLANES:
            raise ValueError(f"control_plane must be one of {CONTROL_PLANES}, not {control_plane!r}")
        self.control_plane_kind = control_plane
        self.directory = Path(directory).resolve()
        self.node_name = node_name
        self.startup_delay = startup_delay
        self.restart_backoff = restart_backoff
        self.with_prosody = prosody
        self.timeout = timeout
        self.kubeconfig = self.directory / "kubeconfig"
        self.xmpp_json = self.directory / "xmpp.json"
        self.xmpp: dict[str, Any] = {}
        self.apiserver: RunningApiServer | None = None
        self.control_plane: ControlPlane | None = None
        self.operator_kubeconfig: Path | None = None  # the real control plane's login bound to nothing
        self.prosody: Prosody | None = None
        self.kubelet: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> Sandbox:
        """Start all three; return once each serves (or stop what started and raise)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.xmpp_json.unlink(missing_ok=True)
        try:
            if self.control_plane_kind == "real":
                # a cold kube-apiserver on a busy 2-core machine can take far longer than the emulation
                self.control_plane = ControlPlane(self.directory, timeout=max(self.timeout, 90.0)).start()
                self.operator_kubeconfig = self.control_plane.operator_kubeconfig
            else:
                self.apiserver = start_process(self.directory, timeout=self.timeout)
            if self.with_prosody:
                self.prosody = Prosody(self.directory / "prosody")
                self.prosody.start()
            self._start_kubelet()
            self.xmpp = self._accounts() if self.prosody is not None else {}
            staging = self.xmpp_json.with_name(".xmpp.json.tmp")
            staging.touch(mode=0o600)
            staging.write_text(json.dumps(self.xmpp, indent=2) + "\n")
            staging.replace(self.xmpp_json)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_kubelet(self) -> None:
        ready = self.directory / "kubelet.ready"
        ready.unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "jibri_sandbox.cli", "kubelet",
            "--kubeconfig", str(self.kubeconfig), "--node-name", self.node_name,
            "--startup-delay", str(self.startup_delay), "--restart-backoff", str(self.restart_backoff),
            "--state-dir", str(self.directory / "kubelet"), "--ready-file", str(ready),
        ]  # fmt: skip
        with (self.directory / "kubelet.log").open("ab") as out:
            self.kubelet = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # Ctrl-C is ours to turn into an orderly stop
                preexec_fn=term_with_parent,
            )
        deadline = time.monotonic() + self.timeout
        while not ready.exists():
            if self.kubelet.poll() is not None:
                raise RuntimeError(
                    f"kubelet exited with {self.kubelet.returncode}; see {self.directory / 'kubelet.log'}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"kubelet not ready within {self.timeout}s; see {self.directory / 'kubelet.log'}"
                )
            time.sleep(0.05)

    def _accounts(self) -> dict[str, Any]:
        """Create the operator's and the Jibris' logins; describe everything a client needs."""
        assert self.prosody is not None
        accounts = {}
        for role, username in (("control", CONTROL_USER), ("jibri", JIBRI_USER), ("focus", FOCUS_USER)):
            password = secrets.token_urlsafe(16)
            jid = self.prosody.register(username, password)
            accounts[role] = {"jid": jid, "username": username, "password": password}
        return {**self.prosody.describe(), "brewery": f"{BREWERY_ROOM}@{self.prosody.muc_domain}", **accounts}

    def failed(self) -> str | None:
        """Which part has died on its own, if any."""
        if self.apiserver is not None and self.apiserver.process.poll() is not None:
            return "apiserver"
        if self.control_plane is not None and (part := self.control_plane.failed()):
            return part
        if self.kubelet is not None and self.kubelet.poll() is not None:
            return "kubelet"
        if self.prosody is not None and not self.prosody.running:
            return "prosody"
        return None

    def stop(self) -> None:
        """Kubelet first (its pods stop while Prosody and the API server still serve), then the rest."""
        kubelet, self.kubelet = self.kubelet, None
        if kubelet is not None and kubelet.poll() is None:
            kubelet.send_signal(signal.SIGTERM)
            try:
                kubelet.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(kubelet.pid, signal.SIGKILL)
                kubelet.wait()
        prosody, self.prosody = self.prosody, None
        if prosody is not None:
            prosody.close()
        apiserver, self.apiserver = self.apiserver, None
        if apiserver is not None:
            apiserver.stop()
        control_plane, self.control_plane = self.control_plane, None
        if control_plane is not None:
            control_plane.stop()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jibri-sandbox up", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="where kubeconfig, xmpp.json and logs go")
    parser.add_argument("--node-name", default="sandbox-node")
    parser.add_argument("--startup-delay", type=float, default=2.0, help="pod start latency in seconds")
    parser.add_argument("--restart-backoff", type=float, default=10.0, help="first CrashLoopBackOff delay")
    parser.add_argument("--no-prosody", action="store_true", help="API server and kubelet only")
    parser.add_argument(
        "--control-plane",
        choices=CONTROL_PLANES,
        default="emulated",
        help="the API server emulation (default), or etcd + kube-apiserver + kube-controller-manager",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    sandbox = Sandbox(
        args.dir,
        node_name=args.node_name,
        startup_delay=args.startup_delay,
        restart_backoff=args.restart_backoff,
        prosody=not args.no_prosody,
        control_plane=args.control_plane,
    )
    with sandbox:
        print(f"sandbox up: KUBECONFIG={sandbox.kubeconfig}", flush=True)
        if sandbox.operator_kubeconfig is not None:
            print(f"  operator login (bound to nothing yet): {sandbox.operator_kubeconfig}", flush=True)
        if sandbox.xmpp:
            x = sandbox.xmpp
            print(f"  xmpp {x['host']}:{x['port']} domain {x['domain']} brewery {x['brewery']}", flush=True)
            print(f"  accounts and CA in {sandbox.xmpp_json}", flush=True)
        while not stop.wait(0.5):
            broken = sandbox.failed()
            if broken:
                print(f"sandbox: {broken} exited unexpectedly; stopping", file=sys.stderr, flush=True)
                return 1
        print("sandbox: stopping", flush=True)
    print("sandbox: stopped", flush=True)
    return 0
