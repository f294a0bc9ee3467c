"""The real control plane (etcd, kube-apiserver, kube-controller-manager) as session fixtures.

    from control_plane_fixture import real_control_plane, real_sandbox  # noqa: F401

`real_sandbox` is `Sandbox(control_plane="real", prosody=False)`: the control
plane plus the sandbox kubelet (node `real-node`), started once per test session
because a real API server takes seconds, not milliseconds, to come up.
`real_control_plane` is its `ControlPlane` (`.kubeconfig` for the admin,
`.operator_kubeconfig` for user `jibri-operator`, bound to nothing; `.url`, `.token`,
`.log`, the same attributes the emulation's `RunningApiServer` has). Tests share it,
so they use their own namespaces (`new_namespace`) and names. `real_crds` installs
our CRDs once.

The binaries are the pinned ones `make control-plane` builds; a missing one fails
the tests that need it with the command to build it, it never skips them.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from apiserver_fixture import wait_for

from jibri_sandbox.controlplane import ControlPlane
from jibri_sandbox.up import Sandbox

__all__ = ["new_namespace", "real_control_plane", "real_crds", "real_sandbox"]

ROOT = Path(__file__).resolve().parents[2]
REAL_NODE = "real-node"
_SHARED: dict[int, Sandbox] = {}


@pytest.fixture(scope="session")
def real_sandbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    """One real control plane and kubelet for the whole session, however many modules import this."""
    sandbox = _SHARED.get(id(request.session))
    if sandbox is None or sandbox.failed():
        directory = tmp_path_factory.mktemp("real")
        began = time.monotonic()
        sandbox = Sandbox(directory, control_plane="real", prosody=False, node_name=REAL_NODE).start()
        print(f"\nreal control plane and kubelet up in {time.monotonic() - began:.1f}s in {directory}")
        _SHARED[id(request.session)] = sandbox
        request.config.add_cleanup(sandbox.stop)
    return sandbox


@pytest.fixture(scope="session")
def real_control_plane(real_sandbox: Sandbox) -> ControlPlane:
    assert real_sandbox.control_plane is not None
    return real_sandbox.control_plane


@pytest.fixture(scope="session")
def real_crds(real_control_plane: ControlPlane) -> str:
    """Our CRDs (`kubectl apply -k crds/`), applied once and Established; what kubectl warned, if anything."""
    done = subprocess.run(
        ["kubectl", "--kubeconfig", str(real_control_plane.kubeconfig), "apply", "-k", str(ROOT / "crds")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"the real API server refused our CRDs:\n{done.stderr}"
    kubectl(
        real_control_plane.kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"
    )
    return done.stderr


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True) -> str:
    """The pinned kubectl (first on PATH, see tests/conftest.py) with a private discovery cache."""
    done = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(kubeconfig.parent / ".kube-cache"),
            *args,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"kubectl {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done.stdout if check else done.stdout + done.stderr


def new_namespace(control_plane: ControlPlane, prefix: str = "real") -> str:
    """A fresh namespace, returned once pods can be created in it (its `default` service account exists)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kubectl(control_plane.kubeconfig, "create", "namespace", name)
    wait_for(
        lambda: control_plane.api_status("serviceaccounts/default", name) == 200,
        30,
        f"the service account controller to create {name}/default",
    )
    return name
