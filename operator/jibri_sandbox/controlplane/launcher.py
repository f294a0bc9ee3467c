"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

    with ControlPlane(Path("/tmp/cp")) as cp:
        cp.kubeconfig            # DIR/kubeconfig: admin (group system:masters)
        cp.operator_kubeconfig   # DIR/operator.kubeconfig: user jibri-operator, bound to nothing

The binaries are the pinned ones `make control-plane` builds (see binaries.py).
The API server authorizes with RBAC (and Node), so an identity can do only what
a binding grants it; it signs service-account tokens (TokenRequest works); the
controller manager runs the controllers a test of this operator meets on a real
cluster (garbage collector, namespace lifecycle, disruption budgets, service
accounts and their tokens, the root CA in every namespace, Deployments and
ReplicaSets for the operator's own pods) and nothing that
needs a cloud, a scheduler or kube-proxy: the sandbox kubelet schedules and
runs pods itself.

Every request a service account of namespace `jibri-operator` makes (the
operator, as manifests/ installs it) is written to DIR/kube-apiserver-audit.log
(audit.k8s.io/v1 Events, one JSON line each, at Metadata level: who, verb,
resource, response code, never a body), so a test can count what the operator
asked and what it was refused; `audit_events()` reads it.

Every run starts from an empty DIR/controlplane (new CA, new etcd), as the
emulated server starts from an empty store. DIR/kubeconfig is written last,
once pods can be created (the `default` service account and the root CA
config map exist), so its existence means "ready", as with the emulation.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from jibri_sandbox.apiserver import kubeconfig as kubeconfig_file
from jibri_sandbox.children import stop_group, term_with_parent

from . import pki as pki_module
from .binaries import Binaries

log = logging.getLogger(__name__)

SERVICE_CIDR = "10.0.0.0/24"
ISSUER = "https://kubernetes.default.svc.cluster.local"
ADMIN_USER = "jibri-sandbox-admin"
AUDITED_GROUP = "system:serviceaccounts:jibri-operator"  # every ServiceAccount of the operator's namespace
OPERATOR_USER = "jibri-operator"
KCM_USER = "system:kube-controller-manager"  # bootstrap RBAC grants this user its role
# Controllers a real cluster runs that this operator meets; nothing that needs a cloud or a scheduler.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "disruption-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "pod-garbage-collector-controller",
    "clusterrole-aggregation-controller",
    "deployment-controller",  # the chart's operator Deployment, run by the sandbox kubelet
    "replicaset-controller",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _status(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> int:
    """HTTP status of a GET, or 0 while nothing answers (URLs are ours: http(s) on loopback)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5, context=context) as response:  # noqa: S310
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in `directory`; a context manager, or start()/stop()."""

    def __init__(self, directory: str | Path, *, binaries: Binaries | None = None, timeout: float = 90.0):
        self.directory = Path(directory).resolve()
        self.binaries = binaries
        self.timeout = timeout
        self.kubeconfig = self.directory / "kubeconfig"
        self.operator_kubeconfig = self.directory / "operator.kubeconfig"
        self.log = self.directory / "kube-apiserver.log"
        self.audit_log = self.directory / "kube-apiserver-audit.log"
        self.state = self.directory / "controlplane"
        self.url = ""
        self.etcd_url = ""
        self.admin = pki_module.new_identity(ADMIN_USER, "system:masters")
        self.operator = pki_module.new_identity(OPERATOR_USER)
        self.controller_manager = pki_module.new_identity(KCM_USER)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.startup_seconds = 0.0
        self._ca_context: ssl.SSLContext | None = None

    @property
    def token(self) -> str:
        """The admin's bearer token (the emulation's RunningApiServer has the same attribute)."""
        return self.admin.token

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.processes["kube-apiserver"]

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- start ------------------------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Start all three, each once the one before serves; stop what started and raise on failure."""
        began = time.monotonic()
        binaries = self.binaries or Binaries.find()
        self.kubeconfig.unlink(missing_ok=True)
        self.operator_kubeconfig.unlink(missing_ok=True)
        self.audit_log.unlink(missing_ok=True)
        if self.state.exists():
            shutil.rmtree(self.state)
        self.state.mkdir(parents=True)
        try:
            pki = pki_module.generate(
                self.state / "pki", SERVICE_CIDR, [self.admin, self.operator, self.controller_manager]
            )
            self._ca_context = ssl.create_default_context(cafile=str(pki.ca_cert))
            self._start_etcd(binaries)
            self._start_apiserver(binaries, pki)
            self._start_controller_manager(binaries, pki)
            ca_pem = pki.ca_cert.read_bytes()
            kubeconfig_file.write(self.operator_kubeconfig, self.url, ca_pem, self.operator.token)
            kubeconfig_file.write(self.kubeconfig, self.url, ca_pem, self.admin.token)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        log.info("control plane serves at %s (started in %.1fs)", self.url, self.startup_seconds)
        return self

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.directory / f"{name}.log").open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.state,
                start_new_session=True,
                preexec_fn=term_with_parent,
            )
        self.processes[name] = process
        return process

    def _wait(self, name: str, ready: Callable[[], bool], what: str) -> None:
        """Poll `ready` until true; fail at once if the process died, or after the timeout."""
        process = self.processes[name]
        deadline = time.monotonic() + self.timeout
        while not ready():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self._tail(name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {what} not within {self.timeout}s:\n{self._tail(name)}")
            time.sleep(0.1)

    def _tail(self, name: str, lines: int = 25) -> str:
        path = self.directory / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:]) + f"\n(full log: {path})"

    def _start_etcd(self, binaries: Binaries) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(binaries.etcd),
                "--name=sandbox",
                f"--data-dir={self.state / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=sandbox=http://127.0.0.1:{peer}",
                # A throwaway store on a shared test machine: an fsync per write only costs latency.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: _status(f"{self.etcd_url}/health") == 200, "/health")

    def _audit_policy(self) -> Path:
        policy = self.state / "audit-policy.json"
        policy.write_text(
            json.dumps(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    "omitStages": ["RequestReceived"],
                    "rules": [{"level": "Metadata", "userGroups": [AUDITED_GROUP]}, {"level": "None"}],
                }
            )
        )
        return policy

    def _start_apiserver(self, binaries: Binaries, pki: pki_module.Pki) -> None:
        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        self._spawn(
            "kube-apiserver",
            [
                str(binaries.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={pki.token_file}",
                "--authorization-mode=Node,RBAC",
                # On top of the default set. OwnerReferencesPermissionEnforcement is what OpenShift and
                # hardened clusters run: blockOwnerDeletion on an owner needs `update` on its finalizers.
                "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement",
                f"--service-account-issuer={ISSUER}",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # No pod reaches the API through the `kubernetes` Service here, and Endpoints
                # may not hold a loopback address: don't reconcile them.
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.audit_log}",
                "--profiling=false",
                f"--cert-dir={self.state / 'apiserver'}",
            ],
        )
        self._wait(
            "kube-apiserver",
            lambda: _status(f"{self.url}/readyz", self._ca_context, self.admin.token) == 200,
            "/readyz",
        )

    def _start_controller_manager(self, binaries: Binaries, pki: pki_module.Pki) -> None:
        config = self.state / "kube-controller-manager.kubeconfig"
        kubeconfig_file.write(config, self.url, pki.ca_cert.read_bytes(), self.controller_manager.token)
        port = free_port()
        self._spawn(
            "kube-controller-manager",
            [
                str(binaries.kube_controller_manager),
                f"--kubeconfig={config}",
                f"--authentication-kubeconfig={config}",
                f"--authorization-kubeconfig={config}",
                # No aggregation layer here, so no request-header CA to look up (it would log an error a second).
                "--authentication-skip-lookup=true",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.state / 'kube-controller-manager'}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                # Each controller acts as its own service account, with its bootstrap role, as in a cluster.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                "--cluster-name=jibri-sandbox",
                "--profiling=false",
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its own self-signed serving cert; a loopback health probe
        self._wait(
            "kube-controller-manager",
            lambda: _status(f"https://127.0.0.1:{port}/healthz", insecure) == 200,
            "/healthz",
        )
        # Pods can be created once their namespace has its service account and root CA config map.
        for path in ("serviceaccounts/default", "configmaps/kube-root-ca.crt"):
            self._wait("kube-controller-manager", functools.partial(self._exists, path), f"default/{path}")

    def _exists(self, path: str) -> bool:
        return self.api_status(path) == 200

    def api_status(self, path: str, namespace: str = "default") -> int:
        """The admin's GET of a namespaced core object, e.g. `serviceaccounts/default`: 200, 404..."""
        return _status(f"{self.url}/api/v1/namespaces/{namespace}/{path}", self._ca_context, self.admin.token)

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path | None = None, expiration: int = 86_400
    ) -> Path:
        """A kubeconfig that logs in as a service account, with a token from TokenRequest.

        For running something as exactly what a manifest binds (e.g. the ServiceAccount
        manifests/rbac.yaml grants the operator's ClusterRole to); the account must exist.
        """
        body = json.dumps(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration},
            }
        )
        request = urllib.request.Request(  # noqa: S310  (our own API server on loopback)
            f"{self.url}/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            data=body.encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.admin.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10, context=self._ca_context) as response:  # noqa: S310
                token: str = json.loads(response.read())["status"]["token"]
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"TokenRequest for {namespace}/{name}: HTTP {error.code} {error.reason}"
            ) from None
        path = path or self.directory / f"{namespace}.{name}.kubeconfig"
        kubeconfig_file.write(path, self.url, (self.state / "pki" / "ca.crt").read_bytes(), token, namespace)
        return path

    def audit_events(self, user: str | None = None) -> list[dict[str, Any]]:
        """The audit log's events (see the module docstring), of one user if given."""
        if not self.audit_log.exists():
            return []
        events = []
        for line in self.audit_log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written
            if user is None or event.get("user", {}).get("username") == user:
                events.append(event)
        return events

    # --- state and stop ---------------------------------------------------------------------------------

    def failed(self) -> str | None:
        """Which part has died on its own, if any."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                return name
        return None

    def stop(self) -> None:
        """Controller manager, then API server, then etcd: each gone before the one it depends on."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            process = self.processes.get(name)
            if process is not None:
                with contextlib.suppress(OSError):
                    stop_group(process, timeout=15)
