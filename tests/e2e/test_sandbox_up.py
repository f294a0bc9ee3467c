"""`jibri-sandbox up` and `Sandbox`: the world comes up, real clients use it, and it all goes away.

Checked only through what a user sees: the files it writes, kubectl, an XMPP
login with the accounts it made, and the processes left after it stops (none).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from apiserver_fixture import wait_for
from xmpp_helpers import TestClient

from jibri_sandbox.up import Sandbox

pytestmark = pytest.mark.e2e


def kubectl(kubeconfig: Path, *args: str) -> str:
    done = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(kubeconfig.parent / ".kube-cache"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def processes_under(directory: Path) -> list[str]:
    """Live processes whose command line or working directory is inside `directory`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            state = next(
                line for line in (entry / "status").read_text().splitlines() if line.startswith("State:")
            )
        except (OSError, StopIteration):
            continue
        if "Z" in state.split()[1]:
            continue  # a zombie is already dead; its parent just has not reaped it yet
        if str(directory) in cmdline or cwd.startswith(str(directory)):
            found.append(f"{entry.name}: {cmdline}")
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


async def test_up_serves_kubectl_and_xmpp_then_stops_cleanly(tmp_path: Path) -> None:
    directory = tmp_path / "world"
    up = subprocess.Popen(
        [sys.executable, "-m", "jibri_sandbox.cli", "up", "--dir", str(directory), "--startup-delay", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: (directory / "xmpp.json").exists() or up.poll() is not None, 60, "xmpp.json")
        assert up.poll() is None, up.stdout.read().decode() if up.stdout else ""
        kubeconfig = directory / "kubeconfig"
        assert kubeconfig.exists()
        xmpp = json.loads((directory / "xmpp.json").read_text())
        assert oct((directory / "xmpp.json").stat().st_mode & 0o777) == "0o600"
        assert {"host", "port", "domain", "muc_domain", "brewery", "ca_file", "control", "jibri"} <= set(xmpp)
        assert xmpp["brewery"].endswith("@" + xmpp["muc_domain"])

        ready = kubectl(
            kubeconfig,
            "get",
            "node",
            "sandbox-node",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        )
        assert ready == "True"
        kubectl(kubeconfig, "run", "hello", "--image=busybox", "--", "sleep", "infinity")
        wait_for(
            lambda: kubectl(kubeconfig, "get", "pod", "hello", "-o", "jsonpath={.status.phase}") == "Running",
            20,
            "pod Running",
        )
        assert "hello" in kubectl(kubeconfig, "get", "pods")

        for account in ("control", "jibri"):  # the accounts it made log in over verified TLS
            client = TestClient(xmpp[account]["jid"], xmpp[account]["password"], xmpp["ca_file"])
            await client.login(xmpp["host"], xmpp["port"])
            await client.join(xmpp["brewery"], account)
            await client.close()

        up.send_signal(signal.SIGINT)
        assert up.wait(30) == 0
        output = up.stdout.read().decode() if up.stdout else ""
        assert "sandbox: stopped" in output
        wait_for(lambda: not processes_under(directory), 5, "no processes left under the sandbox directory")
        assert not port_open(xmpp["host"], xmpp["port"]), "Prosody stopped"
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_sandbox_context_manager(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "cm", prosody=False, startup_delay=0.1) as sandbox:
        assert sandbox.kubeconfig.exists() and sandbox.failed() is None
        assert "sandbox-node" in kubectl(sandbox.kubeconfig, "get", "nodes", "-o", "name")
        kubectl(sandbox.kubeconfig, "run", "cm", "--image=busybox", "--", "sleep", "infinity")
        wait_for(
            lambda: (
                kubectl(sandbox.kubeconfig, "get", "pod", "cm", "-o", "jsonpath={.status.phase}") == "Running"
            ),
            20,
            "pod Running",
        )
        kubelet_pid = sandbox.kubelet.pid if sandbox.kubelet else 0
    assert sandbox.kubelet is None and sandbox.apiserver is None
    with pytest.raises(ProcessLookupError):
        os.kill(kubelet_pid, 0)
    wait_for(lambda: not processes_under(tmp_path / "cm"), 5, "no processes left")


@pytest.mark.parametrize("ending", [signal.SIGINT, signal.SIGKILL], ids=["interrupted", "killed"])
def test_up_with_the_real_control_plane_leaves_nothing_behind(tmp_path: Path, ending: signal.Signals) -> None:
    """Interrupted, it stops its parts in order; killed outright, its parts follow it (PR_SET_PDEATHSIG)."""
    directory = tmp_path / "real"
    up = subprocess.Popen(
        [sys.executable, "-m", "jibri_sandbox.cli", "up", "--dir", str(directory), "--no-prosody",
         "--control-plane", "real", "--node-name", "up-real-node"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: (directory / "xmpp.json").exists() or up.poll() is not None, 120, "the real sandbox")
        assert up.poll() is None, up.stdout.read().decode() if up.stdout else ""
        kubeconfig = directory / "kubeconfig"
        assert (directory / "operator.kubeconfig").exists()
        assert "node/up-real-node" in kubectl(kubeconfig, "get", "nodes", "-o", "name")
        parts = processes_under(directory)
        assert any("kube-apiserver" in p for p in parts) and any("etcd" in p for p in parts), parts
        up.send_signal(ending)
        up.wait(60)
        wait_for(lambda: not processes_under(directory), 30, "no processes left under the sandbox directory")
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
