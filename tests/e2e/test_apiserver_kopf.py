"""A small kopf operator runs against the sandbox API server and does its job.

It is run as `kopf run` in a subprocess with KUBECONFIG pointing at the sandbox,
as an operator runs against a real cluster (in-process `KopfRunner` would need
KUBECONFIG set before `kubernetes` is first imported): handlers for create/update/delete, kopf's finalizer, status
patches, Events via kopf.info, and peering through the kopf.dev CRDs.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from apiserver_fixture import KOPF_PEERING_CRDS, WIDGET_CRD, apiserver, as_objects, kopf_run, wait_for  # noqa: F401
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from jibri_sandbox.apiserver.testing import RunningApiServer

pytestmark = pytest.mark.e2e

OPERATOR = """
import kopf
import kubernetes


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.persistence.finalizer = "test.example.com/kopf-finalizer"
    settings.watching.server_timeout = 30
    settings.posting.level = 0


@kopf.on.create("test.example.com", "v1", "widgets")
def created(body, spec, patch, **_):
    kopf.info(body, reason="Welcomed", message=f"widget joins {spec['room']}")
    patch.status["phase"] = "Ready"
    patch.status["replicas"] = spec["replicas"]


@kopf.on.update("test.example.com", "v1", "widgets", field="spec.replicas")
def rescaled(new, patch, **_):
    patch.status["replicas"] = new


@kopf.on.delete("test.example.com", "v1", "widgets")
def deleted(name, namespace, **_):
    kubernetes.config.load_kube_config()
    kubernetes.client.CoreV1Api().create_namespaced_config_map(
        namespace, {"metadata": {"name": f"farewell-{name}"}, "data": {"by": "kopf"}})
"""


@pytest.fixture
def kube(apiserver: RunningApiServer) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    ext = client.ApiextensionsV1Api(api_client)
    for crd in as_objects(WIDGET_CRD + "\n---\n" + KOPF_PEERING_CRDS):
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as exc:
            assert exc.status == 409
    for name in ("widgets.test.example.com", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"):
        wait_for(
            lambda n=name: ext.read_custom_resource_definition(n).status.conditions,
            what=f"{name} established",
        )
    co = client.CustomObjectsApi(api_client)
    try:
        co.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", {
            "apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "widget-peering"}})  # fmt: skip
    except ApiException as exc:
        assert exc.status == 409
    yield api_client


def test_a_kopf_operator_handles_widgets(
    apiserver: RunningApiServer,
    kube: client.ApiClient,
    tmp_path: Path,
) -> None:
    core, co = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    ns = f"k-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": ns}})
    operator = tmp_path / "operator.py"
    operator.write_text(textwrap.dedent(OPERATOR))
    args = ("test.example.com", "v1", ns, "widgets")

    def widget() -> dict[str, Any]:
        return co.get_namespaced_custom_object(*args, "w")  # type: ignore[no-any-return]

    with kopf_run(apiserver, operator, "--all-namespaces", "--standalone"):
        co.create_namespaced_custom_object(*args, {"apiVersion": "test.example.com/v1", "kind": "Widget",
                                                   "metadata": {"name": "w"}, "spec": {"room": "hall", "replicas": 2}})  # fmt: skip
        wait_for(
            lambda: widget().get("status", {}).get("phase") == "Ready",
            timeout=30,
            what="kopf to set the status",
        )
        assert "test.example.com/kopf-finalizer" in widget()["metadata"]["finalizers"]
        events = wait_for(
            lambda: core.list_namespaced_event(ns, field_selector="involvedObject.name=w,reason=Welcomed").items,
            timeout=20, what="kopf's event",
        )  # fmt: skip
        assert events[0].message == "widget joins hall" and events[0].involved_object.kind == "Widget"
        co.patch_namespaced_custom_object(*args, "w", {"spec": {"replicas": 5}})
        wait_for(lambda: widget()["status"].get("replicas") == 5, timeout=20, what="the update handler")
        co.delete_namespaced_custom_object(*args, "w")
        wait_for(lambda: _gone(co, args), timeout=20, what="kopf to release its finalizer")
        assert core.read_namespaced_config_map("farewell-w", ns).data == {"by": "kopf"}


def test_kopf_peering_writes_its_presence(
    apiserver: RunningApiServer,
    kube: client.ApiClient,
    tmp_path: Path,
) -> None:
    co = client.CustomObjectsApi(kube)
    operator = tmp_path / "operator.py"
    operator.write_text(textwrap.dedent(OPERATOR))
    with kopf_run(apiserver, operator, "--all-namespaces", "--peering=widget-peering"):
        peering = wait_for(
            lambda: co.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "widget-peering").get("status"),
            timeout=30, what="kopf's peering presence",
        )  # fmt: skip
        presence = next(iter(peering.values()))
        assert {"priority", "lifetime", "lastseen"} <= set(presence)


def _gone(co: client.CustomObjectsApi, args: tuple[str, ...]) -> bool:
    try:
        co.get_namespaced_custom_object(*args, "w")
    except ApiException as exc:
        return exc.status == 404
    return False
