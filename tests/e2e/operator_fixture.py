"""The operator under test, and a namespace with an XmppEnvironment per test.

The operator runs as its own process (`jibri-operator run`) against the
sandbox API server, exactly as it would against a real cluster: it gets a
kubeconfig and nothing else. Tests talk to the API with the official client.
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
from jibri_sandbox.prosody import Prosody

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "jibri.dev", "v1alpha1"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class OperatorProcess:
    """`jibri-operator run` in a subprocess; kill and restart it at will."""

    def __init__(self, kubeconfig: Path, namespaces: str, nickname: str, log: Path) -> None:
        self.metrics_port = free_port()
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


@pytest.fixture(scope="session")
def cluster(apiserver: RunningApiServer) -> Cluster:
    subprocess.run(
        ["kubectl", "--kubeconfig", str(apiserver.kubeconfig), "apply", "-k", str(ROOT / "crds")],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(apiserver.kubeconfig),
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
        ],
        check=True,
        capture_output=True,
    )
    return Cluster(apiserver.kubeconfig)


@pytest.fixture(scope="session")
def operator(
    apiserver: RunningApiServer, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for every test namespace named ``op-*``."""
    process = OperatorProcess(
        apiserver.kubeconfig, "op-*", "jibri-operator-test", tmp_path_factory.mktemp("op") / "operator.log"
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


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
