"""The sandbox API server as a pytest fixture, plus helpers for tests that talk to it.

Usage, in any test module under tests/e2e (this directory is on sys.path when
pytest runs with its default import mode, as `make test` does):

    from apiserver_fixture import apiserver  # noqa: F401  (the session-scoped fixture)

    def test_something(apiserver):
        subprocess.run(["kubectl", "--kubeconfig", str(apiserver.kubeconfig), "get", "ns"], check=True)
        # or: kubernetes.config.load_kube_config(config_file=str(apiserver.kubeconfig))
        # or: KUBECONFIG=apiserver.kubeconfig for kopf and other subprocesses

`apiserver` is one server process for the whole session (`.kubeconfig`, `.url`,
`.token`), so tests must use their own namespaces or names. `start_process()` gives
a private one with other flags (e.g. `"--history", "20"` for a short watch history,
`"--bookmark-interval", "0.3"`, `audit_log=True` for `.audit()`); stop it with `.stop()`.
Fault switches (`.fail()`, `.conflict_status_writes()`, `.drop_watches()`, `.restart()`)
belong on a private server: the shared one serves every other test.

Clients: prefer `kubernetes.config.new_client_from_config(config_file=...)` (no
global state). kopf reads KUBECONFIG through the `kubernetes` package, which
reads the variable when first imported: run `kopf run` as a subprocess with
KUBECONFIG in its environment (see `kopf_run` in test_apiserver_kopf.py), or set
it before anything imports `kubernetes` if you use `kopf.testing.KopfRunner`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from jibri_sandbox.apiserver.testing import RunningApiServer, start_process

__all__ = [
    "GIZMO_CRD",
    "KOPF_PEERING_CRDS",
    "WIDGET_CRD",
    "Kubectl",
    "apiserver",
    "start_process",
    "wait_for",
]
T = TypeVar("T")


_SHARED: dict[int, RunningApiServer] = {}


@pytest.fixture(scope="session")
def apiserver(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> RunningApiServer:
    """One server process for the whole session, however many modules import this fixture.

    (pytest makes a separate session fixture per importing module; the cache keeps it to one
    process, stopped when the session ends.)
    """
    server = _SHARED.get(id(request.session))
    if server is None or server.process.poll() is not None:
        server = _SHARED[id(request.session)] = start_process(tmp_path_factory.mktemp("apiserver"))
        request.config.add_cleanup(server.stop)
    return server


def wait_for(check: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Kubectl:
    """The real kubectl binary against a server, with a private discovery cache."""

    def __init__(self, server: RunningApiServer, cache_dir: Path, namespace: str = "default"):
        self.base = [
            "kubectl",
            "--kubeconfig",
            str(server.kubeconfig),
            "--cache-dir",
            str(cache_dir),
            "-n",
            namespace,
        ]

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.base, *args], input=stdin, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        return self.run(*args, stdin=stdin).stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.base, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )


def crd_names(doc: str) -> list[str]:
    import yaml

    return [d["metadata"]["name"] for d in yaml.safe_load_all(doc) if d]


def as_objects(doc: str) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(doc) if d]


WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.example.com
spec:
  group: test.example.com
  scope: Namespaced
  names:
    kind: Widget
    plural: widgets
    singular: widget
    shortNames: [wd]
    categories: [gadgets]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - {name: Mode, type: string, jsonPath: .spec.mode}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Phase, type: string, jsonPath: .status.phase}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
    schema:
      openAPIV3Schema:
        type: object
        description: A Widget is a test gadget.
        properties:
          spec:
            type: object
            description: What the widget should be.
            required: [room]
            x-kubernetes-validations:
            - rule: "self.mode != 'stream' || has(self.streamKey)"
              message: streamKey is required in stream mode
            - rule: "self.room == oldSelf.room"
              message: room is immutable
            properties:
              room: {type: string, description: The room the widget joins., pattern: '^[a-z0-9-]+$', maxLength: 40}
              mode: {type: string, description: How the widget records., enum: [file, stream], default: file}
              replicas: {type: integer, minimum: 0, maximum: 10, default: 1}
              streamKey: {type: string}
              tags: {type: array, items: {type: string}}
              extra: {type: object, x-kubernetes-preserve-unknown-fields: true}
          status:
            type: object
            properties:
              phase: {type: string}
              replicas: {type: integer}
              selector: {type: string}
"""

GIZMO_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.test.example.com
spec:
  group: test.example.com
  scope: Cluster
  names: {kind: Gizmo, plural: gizmos, singular: gizmo, categories: [gadgets]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""

# kopf's own peering CRDs (as in kopf's docs, peering.yaml).
KOPF_PEERING_CRDS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: clusterkopfpeerings.kopf.dev
spec:
  scope: Cluster
  group: kopf.dev
  names: {kind: ClusterKopfPeering, plural: clusterkopfpeerings, singular: clusterkopfpeering}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: kopfpeerings.kopf.dev
spec:
  scope: Namespaced
  group: kopf.dev
  names: {kind: KopfPeering, plural: kopfpeerings, singular: kopfpeering}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"""


@contextlib.contextmanager
def kopf_run(
    server: RunningApiServer, operator: Path, *args: str, tracebacks_allowed: bool = False
) -> Iterator[subprocess.Popen[str]]:
    """`kopf run` as its own process; stopped with SIGINT, which must end it cleanly (and, unless
    ``tracebacks_allowed``, without a traceback in its log: under injected faults kopf logs some)."""
    log = operator.with_suffix(".log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--verbose", *args, str(operator)],
        env={**os.environ, "KUBECONFIG": str(server.kubeconfig)}, stdout=log, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield proc
    except BaseException:
        log.seek(0)
        print(log.read())  # shown by pytest on failure
        raise
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    log.seek(0)
    output = log.read()
    assert code == 0, output
    assert tracebacks_allowed or "Traceback" not in output, output
