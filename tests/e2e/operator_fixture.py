"""The operator under test, and a namespace with an XmppEnvironment per test.

The operator runs as its own process (`jibri-operator run`) against a control
plane, exactly as it would against a real cluster: it gets a kubeconfig and
nothing else. Tests talk to the API with the official client, as admin.

Two control planes (`plane`): `emulated` (jibri_sandbox.apiserver, the default)
and `real` (etcd, kube-apiserver, kube-controller-manager; control_plane_fixture.py).
On the real one the operator logs in as the ServiceAccount manifests/rbac.yaml
binds, with exactly the rules it ships, so a test passing there proves the shipped
RBAC is enough. A test runs on both with `@both_planes` (or `pytestmark`); the
fixtures of each plane (`emulated_cluster`, `real_operator`, ...) live for the
session side by side, and `cluster`/`operator` hand a test its plane's.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from jibri_sandbox.apiserver.testing import RunningApiServer
from jibri_sandbox.controlplane import ControlPlane
from jibri_sandbox.prosody import Prosody

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "jibri.dev", "v1alpha1"
T = TypeVar("T")
PLANES = ("emulated", "real")
# The ServiceAccount manifests/rbac.yaml binds the operator's ClusterRole to.
OPERATOR_NAMESPACE, OPERATOR_ACCOUNT = "jibri-operator", "jibri-operator"

# Runs a test once on each control plane: test_x[emulated], test_x[real].
both_planes = pytest.mark.parametrize("plane", PLANES, indirect=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OperatorProcess:
    """`jibri-operator run` in a subprocess; kill and restart it at will."""

    def __init__(self, kubeconfig: Path, namespaces: str, nickname: str, log: Path) -> None:
        self.metrics_port = free_port()
        self.nickname = nickname
        self.argv = [
            sys.executable,
            "-m",
            "jibri_operator.cli",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            namespaces,
            "--nickname",
            nickname,
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-host",
            "127.0.0.1",
            *(["-v"] if os.environ.get("OPERATOR_DEBUG") else []),
        ]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )

    def kill(self) -> None:
        """SIGKILL: no goodbye, like a crashed or evicted pod."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def http_get(self, path: str) -> tuple[int, str]:
        """GET a probe or /metrics; (0, error) while nothing listens yet."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return 0, str(error)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Cluster:
    """The few API calls the tests make, through the official client."""

    def __init__(self, kubeconfig: Path) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        self.api = kubernetes.client.ApiClient(configuration)
        self.core = kubernetes.client.CoreV1Api(self.api)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)
        self.policy = kubernetes.client.PolicyV1Api(self.api)

    def create_namespace(self, name: str) -> None:
        self.core.create_namespace({"metadata": {"name": name}})

    def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        self.core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "data": encoded})

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", **body}
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, body
        )
        return result

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return result

    def patch(self, plural: str, namespace: str, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)

    def events(self, namespace: str) -> list[Any]:
        return list(self.core.list_namespaced_event(namespace).items)


async def eventually(check: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll ``check`` (run in a thread: it may call the API) until truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def install_crds(kubeconfig: Path) -> None:
    """`kubectl apply -k crds/`, then wait until every CRD is Established."""
    kubectl = ["kubectl", "--kubeconfig", str(kubeconfig)]
    subprocess.run([*kubectl, "apply", "-k", str(ROOT / "crds")], check=True, capture_output=True)
    subprocess.run(
        [*kubectl, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"],
        check=True,
        capture_output=True,
    )


def install_operator_rbac(control_plane: ControlPlane) -> Path:
    """manifests/namespace.yaml and rbac.yaml as shipped; a kubeconfig of the ServiceAccount they bind."""
    manifests = ROOT / "manifests"
    subprocess.run(
        ["kubectl", "--kubeconfig", str(control_plane.kubeconfig), "apply",
         "-f", str(manifests / "namespace.yaml"), "-f", str(manifests / "rbac.yaml")],
        check=True, capture_output=True,
    )  # fmt: skip
    wait_until(
        lambda: control_plane.api_status(f"serviceaccounts/{OPERATOR_ACCOUNT}", OPERATOR_NAMESPACE) == 200,
        30,
        "the operator's ServiceAccount",
    )
    return control_plane.service_account_kubeconfig(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)


def wait_until(check: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
    return result


@dataclass(frozen=True)
class Plane:
    """A control plane as the operator's tests use it."""

    kind: str  # "emulated" or "real"
    kubeconfig: Path  # the admin's: what tests act as
    operator_kubeconfig: Path  # the operator's: on the real plane, manifests/'s ServiceAccount

    @property
    def real(self) -> bool:
        return self.kind == "real"


@pytest.fixture
def plane(request: pytest.FixtureRequest) -> str:
    """Which control plane a test runs on: "emulated" unless parametrized (see `both_planes`)."""
    kind: str = getattr(request, "param", "emulated")
    assert kind in PLANES, kind
    return kind


@pytest.fixture(scope="session")
def emulated_plane(apiserver: RunningApiServer) -> Plane:
    """The emulation has one token with every right: the operator uses the admin's kubeconfig."""
    install_crds(apiserver.kubeconfig)
    return Plane("emulated", apiserver.kubeconfig, apiserver.kubeconfig)


@pytest.fixture(scope="session")
def real_plane(real_control_plane: ControlPlane, real_crds: str) -> Plane:
    """The real control plane, with manifests/'s RBAC applied and the operator logged in as its account."""
    return Plane("real", real_control_plane.kubeconfig, install_operator_rbac(real_control_plane))


@pytest.fixture
def kube_plane(plane: str, request: pytest.FixtureRequest) -> Plane:
    result: Plane = request.getfixturevalue(f"{plane}_plane")
    return result


@pytest.fixture(scope="session")
def emulated_cluster(emulated_plane: Plane) -> Cluster:
    return Cluster(emulated_plane.kubeconfig)


@pytest.fixture(scope="session")
def real_cluster(real_plane: Plane) -> Cluster:
    return Cluster(real_plane.kubeconfig)


@pytest.fixture
def cluster(plane: str, request: pytest.FixtureRequest) -> Cluster:
    """The admin's client on the test's control plane (its CRDs installed)."""
    result: Cluster = request.getfixturevalue(f"{plane}_cluster")
    return result


def start_operator(plane: Plane, namespaces: str, nickname: str, directory: Path) -> OperatorProcess:
    process = OperatorProcess(plane.operator_kubeconfig, namespaces, nickname, directory / "operator.log")
    process.start()
    return process


@pytest.fixture(scope="session")
def emulated_operator(
    emulated_plane: Plane, emulated_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for every test namespace named ``op-*``."""
    process = start_operator(emulated_plane, "op-*", "jibri-operator-test", tmp_path_factory.mktemp("op"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def real_operator(
    real_plane: Plane, real_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The same on the real control plane, as manifests/'s ServiceAccount."""
    process = start_operator(real_plane, "op-*", "jibri-operator-real", tmp_path_factory.mktemp("op-real"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def operator(plane: str, request: pytest.FixtureRequest) -> OperatorProcess:
    result: OperatorProcess = request.getfixturevalue(f"{plane}_operator")
    return result


@dataclass
class Environment:
    """An XmppEnvironment (``meet`` unless named otherwise) on its own brewery, in its namespace."""

    namespace: str
    brewery: str
    prosody: Prosody
    cluster: Cluster
    name: str = "meet"
    muc_domain: str = "conference.localhost"

    def session(self, name: str, **spec: Any) -> dict[str, Any]:
        body = {
            "kind": "RecordingSession",
            "metadata": {"name": name},
            "spec": {"environment": self.name, "room": f"{name}@{self.muc_domain}", **spec},
        }
        return self.cluster.create("recordingsessions", self.namespace, body)

    def get_session(self, name: str) -> dict[str, Any] | None:
        return self.cluster.get("recordingsessions", self.namespace, name)

    def phase(self, name: str) -> str | None:
        session = self.get_session(name)
        return (session or {}).get("status", {}).get("phase")

    async def wait_phase(self, name: str, *phases: str, timeout: float = 15.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            session = self.get_session(name)
            return session if session and session.get("status", {}).get("phase") in phases else None

        return await eventually(
            check, timeout, f"{name} to reach {'/'.join(phases)} (now {self.phase(name)})"
        )

    async def wait_gone(self, name: str, timeout: float = 15.0) -> None:
        await eventually(lambda: self.get_session(name) is None, timeout, f"{name} to be deleted")

    def environment(self) -> dict[str, Any] | None:
        return self.cluster.get("xmppenvironments", self.namespace, self.name)

    def jibri_counts(self) -> dict[str, int]:
        return dict(((self.environment() or {}).get("status") or {}).get("jibris") or {})


async def make_environment(
    cluster: Cluster,
    prosody: Prosody,
    xmpp_account: Callable[..., tuple[str, str]],
    prefix: str,
    *,
    namespace: str | None = None,
    name: str = "meet",
    brewery: str | None = None,
    domain: str | None = None,
) -> Environment:
    """An XmppEnvironment (and its Secrets) in a new namespace, or in ``namespace``.

    ``domain`` picks one of Prosody's deployments (``prosody.domains``); its brewery is on
    that deployment's MUC unless ``brewery`` names one.
    """
    deployment = next(d for d in prosody.domains if d.domain == (domain or prosody.domain))
    brewery = brewery or f"brewery-{uuid.uuid4().hex[:8]}@{deployment.muc_domain}"
    jid, password = xmpp_account("operator", deployment.domain)
    if namespace is None:
        namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
        await asyncio.to_thread(cluster.create_namespace, namespace)
        await asyncio.to_thread(
            cluster.create_secret, namespace, "xmpp-ca", {"ca.crt": prosody.ca_file.read_text()}
        )
    await asyncio.to_thread(
        cluster.create_secret, namespace, f"{name}-login", {"username": jid, "password": password}
    )
    body = {
        "kind": "XmppEnvironment",
        "metadata": {"name": name},
        "spec": {
            "server": {"host": prosody.host, "port": prosody.port},
            "domain": deployment.domain,
            "brewery": brewery,
            "controlLogin": {"secretRef": {"name": f"{name}-login"}},
            "tls": {"caSecretRef": {"name": "xmpp-ca"}},
            "recordingMethods": ["file", "stream", "sip"],
        },
    }
    await asyncio.to_thread(cluster.create, "xmppenvironments", namespace, body)
    return Environment(namespace, brewery, prosody, cluster, name, deployment.muc_domain)


@pytest.fixture
async def env(
    operator: OperatorProcess,
    cluster: Cluster,
    prosody: Prosody,
    xmpp_account: Callable[..., tuple[str, str]],
) -> AsyncIterator[Environment]:
    environment = await make_environment(cluster, prosody, xmpp_account, "op")
    try:
        await eventually(
            lambda: (environment.environment() or {}).get("status", {}).get("connected"),
            20,
            "the operator to join the brewery",
        )
    except AssertionError:
        raise AssertionError("operator log:\n" + operator.tail()) from None
    yield environment
