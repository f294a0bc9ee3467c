"""The kubernetes Python client against the sandbox API server: the API conventions, verb by verb."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver_fixture import WIDGET_CRD, apiserver, as_objects, start_process, wait_for  # noqa: F401
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from jibri_sandbox.apiserver.testing import RunningApiServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def api(apiserver: RunningApiServer) -> client.ApiClient:
    api_client = config.new_client_from_config(config_file=str(apiserver.kubeconfig))
    ext = client.ApiextensionsV1Api(api_client)
    for crd in as_objects(WIDGET_CRD):
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as exc:
            assert exc.status == 409
    wait_for(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in (ext.read_custom_resource_definition("widgets.test.example.com").status.conditions or [])
        ),
        what="widgets established",
    )
    return api_client


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> Iterator[str]:
    name = f"c-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name


def cm(name: str, **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta}, "data": {"k": "v"}}


def test_requests_without_the_token_get_401(apiserver: RunningApiServer) -> None:
    kc = yaml.safe_load(apiserver.kubeconfig.read_text())
    ca = ssl.create_default_context()
    ca.load_verify_locations(
        cadata=base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    )

    def get(path: str, headers: dict[str, str]) -> Any:
        request = urllib.request.Request(apiserver.url + path, headers=headers)  # noqa: S310 - https only
        with urllib.request.urlopen(request, context=ca) as resp:  # noqa: S310
            return json.loads(resp.read())

    with pytest.raises(urllib.error.HTTPError) as err:
        get("/api/v1/namespaces", {})
    assert err.value.code == 401
    assert json.loads(err.value.read())["reason"] == "Unauthorized"
    with pytest.raises(urllib.error.HTTPError) as err:
        get("/api/v1/namespaces", {"Authorization": "Bearer wrong"})
    assert err.value.code == 401
    token = {"Authorization": f"Bearer {apiserver.token}"}
    post = urllib.request.Request(  # noqa: S310 - https only
        apiserver.url + "/api/v1/namespaces/default", data=b"{}", method="POST", headers=token
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(post, context=ca)  # noqa: S310
    assert (err.value.code, json.loads(err.value.read())["reason"]) == (405, "MethodNotAllowed")
    with pytest.raises(urllib.error.HTTPError) as err:
        get("/apis/no.such.group/v1/things", token)
    assert err.value.code == 404
    assert get("/version", {"Authorization": f"Bearer {apiserver.token}"})["major"] == "1"


def test_crud_errors_are_status_objects(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, cm("a"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, cm("a"))
    body = json.loads(err.value.body)
    assert (err.value.status, body["reason"], body["details"]["name"]) == (409, "AlreadyExists", "a")
    assert body["message"] == 'configmaps "a" already exists'
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("nope", ns)
    assert err.value.status == 404 and json.loads(err.value.body)["details"]["kind"] == "configmaps"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("no-such-namespace", cm("a"))
    assert json.loads(err.value.body)["message"] == 'namespaces "no-such-namespace" not found'
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "Bad_Name"}})
    body = json.loads(err.value.body)
    assert err.value.status == 422 and body["details"]["causes"][0]["field"] == "metadata.name"
    generated = core.create_namespaced_config_map(ns, {"metadata": {"generateName": "gen-"}})
    assert generated.metadata.name.startswith("gen-") and len(generated.metadata.name) == 9
    dry = core.create_namespaced_config_map(ns, cm("dry"), dry_run="All")
    assert dry.metadata.uid
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", ns)


def test_update_with_a_stale_resource_version_is_a_conflict(core: client.CoreV1Api, ns: str) -> None:
    first = core.create_namespaced_config_map(ns, cm("c"))
    first.data = {"k": "v2"}
    second = core.replace_namespaced_config_map("c", ns, first)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    first.data = {"k": "stale"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("c", ns, first)
    body = json.loads(err.value.body)
    assert (err.value.status, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"]
    second.metadata.uid = "another-uid"
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("c", ns, second)
    assert err.value.status == 422 and "metadata.uid: Invalid value" in json.loads(err.value.body)["message"]


def test_list_then_watch_from_the_list_resource_version(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, cm("a", labels={"app": "x"}))
    listed = core.list_namespaced_config_map(ns)
    assert [i.metadata.name for i in listed.items] == ["a"]
    core.create_namespaced_config_map(ns, cm("b", labels={"app": "x"}))
    core.patch_namespaced_config_map("a", ns, {"data": {"k": "changed"}})
    core.create_namespaced_config_map(ns, cm("other", labels={"app": "y"}))
    core.delete_namespaced_config_map("b", ns)
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_config_map, ns, label_selector="app=x", resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    ):  # fmt: skip
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    initial = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=5):
        initial.append((event["type"], event["object"].metadata.name))
        if len(initial) == 2:
            break
    assert initial == [("ADDED", "a"), ("ADDED", "other")]


def test_label_and_field_selectors_and_pagination(core: client.CoreV1Api, ns: str) -> None:
    for i, (env, tier) in enumerate(
        [("prod", "web"), ("prod", "db"), ("dev", "web"), ("test", None), ("dev", "db")]
    ):
        labels = {"env": env, **({"tier": tier} if tier else {})}
        core.create_namespaced_config_map(ns, cm(f"m{i}", labels=labels))

    def names(**kw: Any) -> list[str]:
        return [i.metadata.name for i in core.list_namespaced_config_map(ns, **kw).items]

    assert names(label_selector="env=prod") == ["m0", "m1"]
    assert names(label_selector="env==dev,tier=db") == ["m4"]
    assert names(label_selector="env in (dev,test)") == ["m2", "m3", "m4"]
    assert names(label_selector="env notin (prod),tier") == ["m2", "m4"]
    assert names(label_selector="!tier") == ["m3"]
    assert names(label_selector="env!=prod") == ["m2", "m3", "m4"]
    assert names(field_selector="metadata.name=m3") == ["m3"]
    assert names(field_selector="metadata.name!=m3,metadata.namespace=" + ns) == ["m0", "m1", "m2", "m4"]
    with pytest.raises(ApiException) as err:
        names(field_selector="data.k=v")
    assert err.value.status == 400
    page = core.list_namespaced_config_map(ns, limit=2)
    collected = [i.metadata.name for i in page.items]
    assert page.metadata.remaining_item_count == 3
    while page.metadata._continue:
        page = core.list_namespaced_config_map(ns, limit=2, _continue=page.metadata._continue)
        collected += [i.metadata.name for i in page.items]
    assert collected == ["m0", "m1", "m2", "m3", "m4"]


def test_pod_field_selectors_and_graceful_deletion(core: client.CoreV1Api, ns: str) -> None:
    pod = {
        "metadata": {"name": "bound"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]},
    }
    core.create_namespaced_pod(ns, pod)
    core.create_namespaced_pod(
        ns, {"metadata": {"name": "unbound"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    )
    core.patch_namespaced_pod_status("bound", ns, {"status": {"phase": "Running"}})
    on_node = core.list_namespaced_pod(ns, field_selector="spec.nodeName=node-1")
    assert [p.metadata.name for p in on_node.items] == ["bound"]
    assert [
        p.metadata.name for p in core.list_namespaced_pod(ns, field_selector="status.phase=Pending").items
    ] == ["unbound"]
    core.delete_namespaced_pod("unbound", ns)
    with pytest.raises(ApiException):
        core.read_namespaced_pod("unbound", ns)
    core.delete_namespaced_pod("bound", ns)
    marked = core.read_namespaced_pod("bound", ns)
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("bound", ns, grace_period_seconds=0)  # what the kubelet does
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("bound", ns)
    assert err.value.status == 404


def _gone(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except ApiException as exc:
        return exc.status == 404
    return False


def _owned(name: str, owner: Any, block: bool = False, finalizers: list[str] | None = None) -> dict[str, Any]:
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid,
           "blockOwnerDeletion": block}  # fmt: skip
    return cm(name, ownerReferences=[ref], finalizers=finalizers or [])


def test_garbage_collection_background_foreground_orphan(core: client.CoreV1Api, ns: str) -> None:
    owner = core.create_namespaced_config_map(ns, cm("owner"))
    core.create_namespaced_config_map(ns, _owned("dep", owner))
    core.delete_namespaced_config_map("owner", ns)
    wait_for(lambda: _gone(core.read_namespaced_config_map, "dep", ns), what="background GC of the dependent")

    owner = core.create_namespaced_config_map(ns, cm("fg"))
    core.create_namespaced_config_map(
        ns, _owned("fg-dep", owner, block=True, finalizers=["test.example.com/hold"])
    )
    core.delete_namespaced_config_map("fg", ns, propagation_policy="Foreground")
    waiting = core.read_namespaced_config_map("fg", ns)
    assert (
        waiting.metadata.deletion_timestamp is not None
        and "foregroundDeletion" in waiting.metadata.finalizers
    )
    wait_for(
        lambda: core.read_namespaced_config_map("fg-dep", ns).metadata.deletion_timestamp,
        what="dependent marked",
    )
    assert core.read_namespaced_config_map("fg", ns).metadata.finalizers == ["foregroundDeletion"]
    core.patch_namespaced_config_map("fg-dep", ns, {"metadata": {"finalizers": None}})
    wait_for(
        lambda: _gone(core.read_namespaced_config_map, "fg", ns), what="the owner to go after its dependent"
    )

    owner = core.create_namespaced_config_map(ns, cm("orph"))
    core.create_namespaced_config_map(ns, _owned("orph-dep", owner))
    core.delete_namespaced_config_map("orph", ns, propagation_policy="Orphan")
    wait_for(lambda: _gone(core.read_namespaced_config_map, "orph", ns), what="the orphaning owner to go")
    assert not core.read_namespaced_config_map("orph-dep", ns).metadata.owner_references


def test_custom_objects_status_subresource_and_generation(api: client.ApiClient, ns: str) -> None:
    co = client.CustomObjectsApi(api)
    args = ("test.example.com", "v1", ns, "widgets")
    created = co.create_namespaced_custom_object(*args, {"apiVersion": "test.example.com/v1", "kind": "Widget",
                                                         "metadata": {"name": "w"}, "spec": {"room": "r"},
                                                         "status": {"phase": "ignored"}})  # fmt: skip
    assert "status" not in created and created["spec"] == {"room": "r", "mode": "file", "replicas": 1}
    after_status = co.patch_namespaced_custom_object_status(
        *args, "w", {"status": {"phase": "Ready"}, "spec": {"replicas": 9}}
    )
    assert after_status["status"] == {"phase": "Ready"} and after_status["spec"]["replicas"] == 1
    assert after_status["metadata"]["generation"] == 1
    after_spec = co.patch_namespaced_custom_object(
        *args, "w", {"spec": {"replicas": 3}, "status": {"phase": "Lost"}}
    )
    assert after_spec["status"] == {"phase": "Ready"} and after_spec["metadata"]["generation"] == 2
    scale = co.get_namespaced_custom_object_scale(*args, "w")
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 3)
    co.patch_namespaced_custom_object_scale(*args, "w", {"spec": {"replicas": 4}})
    assert co.get_namespaced_custom_object(*args, "w")["spec"]["replicas"] == 4
    with pytest.raises(ApiException) as err:
        co.patch_namespaced_custom_object_scale(*args, "w", {"spec": {"replicas": 11}})
    assert err.value.status == 422 and "spec.replicas" in err.value.body


def test_events_in_both_api_groups(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_event(ns, {
        "metadata": {"name": "e1"}, "involvedObject": {"kind": "Widget", "name": "w", "namespace": ns, "uid": "u-1"},
        "reason": "Seen", "message": "hello", "type": "Normal", "reportingComponent": "tests",
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingInstance": "tests-1", "action": "Testing",
    })  # fmt: skip
    found = core.list_namespaced_event(ns, field_selector="involvedObject.name=w,involvedObject.uid=u-1")
    assert [e.message for e in found.items] == ["hello"]
    assert not core.list_namespaced_event(ns, field_selector="involvedObject.name=other").items
    v1 = client.EventsV1Api(api).read_namespaced_event("e1", ns)
    assert (v1.note, v1.regarding.name, v1.reporting_controller) == ("hello", "w", "tests")


def test_expired_versions_get_410_and_bookmarks_arrive(tmp_path: Path) -> None:
    server = start_process(tmp_path, "--history", "20", "--bookmark-interval", "0.3")
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
        old = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(30):
            core.create_namespaced_config_map("default", cm(f"x{i}"))
        with pytest.raises(ApiException) as err:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=old, timeout_seconds=5
            ):
                pass
        assert err.value.status == 410
        with pytest.raises(ApiException) as err:
            core.list_namespaced_config_map("default", resource_version=old, resource_version_match="Exact")
        assert err.value.status == 410 and json.loads(err.value.body)["reason"] == "Expired"
        current = core.list_namespaced_config_map("default").metadata.resource_version
        kinds = []
        for event in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=current,
                                          allow_watch_bookmarks=True, timeout_seconds=5):  # fmt: skip
            kinds.append(event["type"])
            break
        assert kinds == ["BOOKMARK"]
        initial: list[tuple[str, Any]] = []
        for event in watch.Watch().stream(core.list_namespaced_config_map, "default", allow_watch_bookmarks=True,
                                          send_initial_events=True, resource_version_match="NotOlderThan",
                                          timeout_seconds=5):  # fmt: skip
            initial.append((event["type"], event["raw_object"]["metadata"]))
            if event["type"] == "BOOKMARK":
                break
        assert [t for t, _ in initial] == ["ADDED"] * 30 + ["BOOKMARK"]
        assert initial[-1][1]["annotations"] == {"k8s.io/initial-events-end": "true"}
    finally:
        server.stop()


def test_deletecollection_watch_timeout_and_leases(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    for i in range(3):
        core.create_namespaced_config_map(ns, cm(f"d{i}", labels={"batch": "1" if i < 2 else "2"}))
    core.delete_collection_namespaced_config_map(ns, label_selector="batch=1")
    assert [c.metadata.name for c in core.list_namespaced_config_map(ns).items] == ["d2"]
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    events = list(
        watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=1)
    )
    assert events == []  # the server ended the stream after timeoutSeconds
    leases = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(ns, {"metadata": {"name": "leader"}, "spec": {
        "holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"}})  # fmt: skip
    lease.spec.holder_identity = "b"
    assert leases.replace_namespaced_lease("leader", ns, lease).spec.holder_identity == "b"
    with pytest.raises(ApiException) as err:
        leases.replace_namespaced_lease("leader", ns, lease)
    assert err.value.status == 409


def test_deleting_a_crd_deletes_its_objects(api: client.ApiClient, ns: str) -> None:
    ext, co = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
    crd = as_objects(WIDGET_CRD)[0]
    crd["metadata"]["name"] = "doomeds.test.example.com"
    crd["spec"]["names"] = {"kind": "Doomed", "plural": "doomeds", "singular": "doomed"}
    ext.create_custom_resource_definition(crd)
    wait_for(
        lambda: ext.read_custom_resource_definition("doomeds.test.example.com").status.conditions,
        what="established",
    )
    args = ("test.example.com", "v1", ns, "doomeds")
    co.create_namespaced_custom_object(*args, {"apiVersion": "test.example.com/v1", "kind": "Doomed", "metadata": {"name": "d"},
                                               "spec": {"room": "r"}})  # fmt: skip
    ext.delete_custom_resource_definition("doomeds.test.example.com")
    wait_for(
        lambda: _gone(ext.read_custom_resource_definition, "doomeds.test.example.com"), what="the CRD to go"
    )
    with pytest.raises(ApiException) as err:
        co.list_namespaced_custom_object(*args)
    assert err.value.status == 404


async def test_in_process_server_on_the_current_loop(tmp_path: Path) -> None:
    from jibri_sandbox.apiserver import ApiServer

    async with ApiServer(kubeconfig=tmp_path / "kc") as server:
        assert server.kubeconfig.exists() and server.url.startswith("https://127.0.0.1:")
        dynamic = await asyncio.to_thread(_dynamic_roundtrip, server.kubeconfig)
        assert dynamic == "v"
        assert server.store.get(("", "configmaps"), "default", "dyn") is not None


def test_in_process_server_in_a_thread() -> None:
    from jibri_sandbox.apiserver.testing import start_thread

    with start_thread() as server:
        assert _dynamic_roundtrip(server.kubeconfig) == "v"


def _dynamic_roundtrip(kubeconfig: Path) -> str:
    """The dynamic client discovers through the legacy discovery documents."""
    from kubernetes.dynamic import DynamicClient

    dyn = DynamicClient(config.new_client_from_config(config_file=str(kubeconfig)))
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    cms.create(
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn"}, "data": {"k": "v"}},
        namespace="default",
    )
    return str(cms.get(name="dyn", namespace="default").data.k)


def test_legacy_watch_path_for_one_object(
    apiserver: RunningApiServer,
    core: client.CoreV1Api,
    ns: str,
) -> None:
    core.create_namespaced_config_map(ns, cm("one"))
    core.create_namespaced_config_map(ns, cm("two"))
    kc = yaml.safe_load(apiserver.kubeconfig.read_text())
    ca = ssl.create_default_context()
    ca.load_verify_locations(
        cadata=base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    )
    request = urllib.request.Request(  # noqa: S310 - https only
        f"{apiserver.url}/api/v1/watch/namespaces/{ns}/configmaps/two?timeoutSeconds=1",
        headers={"Authorization": f"Bearer {apiserver.token}"},
    )
    with urllib.request.urlopen(request, context=ca) as resp:  # noqa: S310
        assert resp.headers["Content-Type"] == "application/json"
        events = [json.loads(line) for line in resp]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "two")]


def test_builtin_strategies_pods_secrets_configmaps(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod(ns, {"metadata": {"name": "empty"}, "spec": {"containers": []}})
    assert (
        err.value.status == 422
        and json.loads(err.value.body)["details"]["causes"][0]["field"] == "spec.containers"
    )
    core.create_namespaced_pod(
        ns, {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}]}}
    )
    core.patch_namespaced_pod(
        "p", ns, {"spec": {"containers": [{"name": "c", "image": "b"}]}}
    )  # image is mutable
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("p", ns, {"spec": {"containers": [{"name": "c", "command": ["sh"]}]}})
    assert (
        err.value.status == 422
        and "pod updates may not change fields" in json.loads(err.value.body)["message"]
    )
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "n1"},
    }
    resp = core.create_namespaced_pod_binding("p", ns, binding, _preload_content=False)
    assert resp.status == 201
    assert core.read_namespaced_pod("p", ns).spec.node_name == "n1"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_binding("p", ns, binding, _preload_content=False)
    assert err.value.status == 409
    secret = core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"user": "jibri"}})
    assert secret.data == {"user": base64.b64encode(b"jibri").decode()} and secret.type == "Opaque"
    assert secret.string_data is None
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": True}
    )
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("frozen", ns, {"data": {"a": "2"}})
    assert (
        err.value.status == 422
        and "field is immutable when `immutable` is set" in json.loads(err.value.body)["message"]
    )
