"""PodDisruptionBudgets, the Eviction subresource and the audit log of pod removals of the sandbox
API server, through the kubernetes client and kubectl, checked against what kube-apiserver and
kube-controller-manager do (pkg/registry/core/pod/storage/eviction.go, pkg/controller/disruption)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from apiserver_fixture import WIDGET_CRD, Kubectl, as_objects, start_process, wait_for
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from jibri_sandbox.apiserver.testing import RunningApiServer

pytestmark = pytest.mark.e2e
WIDGETS = ("test.example.com", "v1")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    """A private server with an audit log: drains cordon nodes and evictions delete pods."""
    running = start_process(tmp_path_factory.mktemp("policy"), audit_log=True)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(server: RunningApiServer) -> client.ApiClient:
    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    ext = client.ApiextensionsV1Api(api_client)
    for crd in as_objects(WIDGET_CRD):
        ext.create_custom_resource_definition(crd)
    wait_for(
        lambda: ext.read_custom_resource_definition("widgets.test.example.com").status.conditions,
        what="widgets established",
    )
    return api_client


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def pdbs(api: client.ApiClient) -> client.PolicyV1Api:
    return client.PolicyV1Api(api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> str:
    name = f"p-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def kubectl(server: RunningApiServer, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(server, tmp_path_factory.mktemp("kubectl-cache"))


def pod(name: str, labels: dict[str, str] | None = None, owner: dict[str, Any] | None = None,
        node: str | None = None) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": name, "labels": labels or {"app": "rec"}}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": owner["apiVersion"], "kind": owner["kind"], "controller": True,
                                    "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]  # fmt: skip
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "jibri"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec}


def set_phase(core: client.CoreV1Api, ns: str, name: str, phase: str = "Running", ready: bool = True) -> None:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}] if phase == "Running" else []
    core.patch_namespaced_pod_status(name, ns, {"status": {"phase": phase, "conditions": conditions}})


def budget(name: str, selector: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    """A budget over the `app: rec` pods unless `selector` says otherwise."""
    return {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": "rec"}}, **spec}
            if selector is None else {"selector": selector, **spec}}  # fmt: skip


def status(pdbs: client.PolicyV1Api, ns: str, name: str) -> dict[str, Any]:
    raw = pdbs.api_client.sanitize_for_serialization(pdbs.read_namespaced_pod_disruption_budget(name, ns))
    return dict(raw.get("status") or {})


def counts(pdbs: client.PolicyV1Api, ns: str, name: str) -> tuple[int, int, int, int]:
    """(expectedPods, desiredHealthy, currentHealthy, disruptionsAllowed)."""
    s = status(pdbs, ns, name)
    return s["expectedPods"], s["desiredHealthy"], s["currentHealthy"], s["disruptionsAllowed"]


def settle(
    pdbs: client.PolicyV1Api, ns: str, name: str, expected: tuple[int, int, int, int]
) -> dict[str, Any]:
    wait_for(
        lambda: counts(pdbs, ns, name) == expected,
        what=f"{name} to reach {expected} (now {counts(pdbs, ns, name)})",
    )
    return status(pdbs, ns, name)


def allowed_condition(s: dict[str, Any]) -> tuple[str, str]:
    (condition,) = [c for c in s["conditions"] if c["type"] == "DisruptionAllowed"]
    return condition["status"], condition["reason"]


def widget(api: client.ApiClient, ns: str, name: str, replicas: int) -> dict[str, Any]:
    body = {"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"room": "hall", "replicas": replicas}}  # fmt: skip
    return client.CustomObjectsApi(api).create_namespaced_custom_object(*WIDGETS, ns, "widgets", body)  # type: ignore[no-any-return]


def evict(core: client.CoreV1Api, ns: str, name: str, **delete_options: Any) -> int:
    body: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
    }
    if delete_options:
        body["deleteOptions"] = delete_options
    try:
        core.create_namespaced_pod_eviction(name, ns, body)
    except ApiException as exc:
        return int(exc.status)
    return 201


def gone(core: client.CoreV1Api, ns: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, ns)
    except ApiException as exc:
        return exc.status == 404
    return False


# --- PodDisruptionBudget status ------------------------------------------------------------------


def test_min_available_counts_ready_pods_as_they_become_ready(
    core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str
) -> None:
    created = pdbs.create_namespaced_pod_disruption_budget(ns, budget("b", minAvailable=2))
    assert created.metadata.generation == 1
    s = settle(pdbs, ns, "b", (0, 2, 0, 0))
    assert s["observedGeneration"] == 1 and allowed_condition(s) == ("False", "InsufficientPods")
    for i in range(3):
        core.create_namespaced_pod(ns, pod(f"p{i}"))
    core.create_namespaced_pod(ns, pod("other", labels={"app": "else"}))
    settle(pdbs, ns, "b", (3, 2, 0, 0))  # an integer minAvailable expects every selected pod
    set_phase(core, ns, "p0")
    set_phase(core, ns, "p1")
    settle(pdbs, ns, "b", (3, 2, 2, 0))
    set_phase(core, ns, "p2", ready=False)  # running but not ready: not healthy
    settle(pdbs, ns, "b", (3, 2, 2, 0))
    set_phase(core, ns, "p2")
    s = settle(pdbs, ns, "b", (3, 2, 3, 1))
    assert allowed_condition(s) == ("True", "SufficientPods")
    core.delete_namespaced_pod("p1", ns)
    s = settle(pdbs, ns, "b", (2, 2, 2, 0))
    assert allowed_condition(s) == ("False", "InsufficientPods")
    pdbs.patch_namespaced_pod_disruption_budget("b", ns, {"spec": {"minAvailable": 1}})
    s = settle(pdbs, ns, "b", (2, 1, 2, 1))
    assert s["observedGeneration"] == 2


def test_percentages_and_max_unavailable_read_the_controllers_scale(
    api: client.ApiClient, core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str
) -> None:
    owner = widget(api, ns, "w", replicas=4)
    for i in range(3):  # one pod short of the scale: expectedPods follows the controller, not the pods
        core.create_namespaced_pod(ns, pod(f"p{i}", owner=owner))
        set_phase(core, ns, f"p{i}")
    core.create_namespaced_pod(ns, pod("bare"))  # unmanaged: not counted by a percentage
    set_phase(core, ns, "bare")
    cases = [
        ({"minAvailable": "50%"}, (4, 2, 4, 2)),  # ceil(2.0)
        ({"minAvailable": "30%"}, (4, 2, 4, 2)),  # ceil(1.2): minAvailable rounds up
        ({"maxUnavailable": 1}, (4, 3, 4, 1)),
        ({"maxUnavailable": "30%"}, (4, 2, 4, 2)),  # 4 - ceil(1.2): maxUnavailable rounds up too
        ({"maxUnavailable": "100%"}, (4, 0, 4, 4)),
        ({"maxUnavailable": 0}, (4, 4, 4, 0)),
        ({"minAvailable": "100%"}, (4, 4, 4, 0)),
    ]
    for i, (spec, expected) in enumerate(cases):
        pdbs.create_namespaced_pod_disruption_budget(ns, budget(f"b{i}", **spec))
        settle(pdbs, ns, f"b{i}", expected)
    client.CustomObjectsApi(api).patch_namespaced_custom_object_scale(
        *WIDGETS, ns, "widgets", "w", {"spec": {"replicas": 10}}
    )
    set_phase(core, ns, "p0", ready=False)  # a pod event: the controller looks at the budgets again
    settle(pdbs, ns, "b3", (10, 7, 3, 0))  # 10 - ceil(3.0)


def test_unmanaged_pods_and_controllers_without_scale(
    core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str
) -> None:
    for i in range(2):
        core.create_namespaced_pod(ns, pod(f"p{i}"))
        set_phase(core, ns, f"p{i}")
    pdbs.create_namespaced_pod_disruption_budget(ns, budget("max", maxUnavailable=1))
    settle(pdbs, ns, "max", (0, 0, 2, 0))  # no pod expected: nothing may be disrupted
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    owner_dict = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "owner", "uid": owner.metadata.uid},
    }
    core.create_namespaced_pod(ns, pod("owned", labels={"app": "cm"}, owner=owner_dict))
    pdbs.create_namespaced_pod_disruption_budget(
        ns, budget("cm", {"matchLabels": {"app": "cm"}}, minAvailable="50%")
    )

    def failed() -> dict[str, Any] | None:
        s = status(pdbs, ns, "cm")
        return s if s.get("conditions") and allowed_condition(s) == ("False", "SyncFailed") else None

    s = wait_for(failed, what="the fail-safe status")
    assert s["disruptionsAllowed"] == 0
    assert [c["message"] for c in s["conditions"]] == ["configmaps does not implement the scale subresource"]


def test_budgets_are_validated(pdbs: client.PolicyV1Api, ns: str, kubectl: Kubectl) -> None:
    for spec, field, message in [
        ({"minAvailable": 1, "maxUnavailable": 1}, "spec", "minAvailable and maxUnavailable cannot be both set"),
        ({"minAvailable": "120%"}, "spec.minAvailable", "must not be greater than 100%"),
        ({"maxUnavailable": -1}, "spec.maxUnavailable", "must be greater than or equal to 0"),
        ({"maxUnavailable": "half"}, "spec.maxUnavailable", "a valid percent string must be a numeric string"),
        ({"minAvailable": 1, "unhealthyPodEvictionPolicy": "Never"}, "spec.unhealthyPodEvictionPolicy",
         'supported values: "AlwaysAllow", "IfHealthyBudget"'),
        ({"minAvailable": 1, "selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
         "spec.selector.matchExpressions[0].values", "must be specified when `operator` is 'In' or 'NotIn'"),
    ]:  # fmt: skip
        with pytest.raises(ApiException) as err:
            pdbs.create_namespaced_pod_disruption_budget(ns, budget("bad", **spec))
        body = json.loads(err.value.body)
        assert (err.value.status, body["reason"]) == (422, "Invalid"), body
        assert body["details"]["causes"][0]["field"] == field and message in body["message"], body
    # kubectl's typed create sends protobuf; `get` prints the server's table
    kubectl("create", "-n", ns, "poddisruptionbudget", "typed", "--selector=app=rec", "--max-unavailable=25%")
    assert json.loads(kubectl("get", "-n", ns, "pdb", "typed", "-o", "json"))["spec"] == {
        "maxUnavailable": "25%", "selector": {"matchLabels": {"app": "rec"}}}  # fmt: skip
    header, row = kubectl("get", "-n", ns, "pdb").splitlines()
    assert header.split() == [
        "NAME",
        "MIN",
        "AVAILABLE",
        "MAX",
        "UNAVAILABLE",
        "ALLOWED",
        "DISRUPTIONS",
        "AGE",
    ]
    assert row.split()[:4] == ["typed", "N/A", "25%", "0"]
    out = kubectl("api-resources", "--api-group=policy").splitlines()
    assert out[1].split() == ["poddisruptionbudgets", "pdb", "policy/v1", "true", "PodDisruptionBudget"]


# --- Eviction ------------------------------------------------------------------------------------


def ready_pods(core: client.CoreV1Api, ns: str, count: int, node: str | None = None) -> None:
    for i in range(count):
        core.create_namespaced_pod(ns, pod(f"p{i}", node=node))
        set_phase(core, ns, f"p{i}")


def test_eviction_allowed_then_refused_with_429(
    core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str
) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction("nope", ns, {"metadata": {"name": "nope"}})
    assert (err.value.status, json.loads(err.value.body)["message"]) == (404, 'pods "nope" not found')
    ready_pods(core, ns, 3, node="node-1")
    pdbs.create_namespaced_pod_disruption_budget(ns, budget("b", minAvailable=2))
    settle(pdbs, ns, "b", (3, 2, 3, 1))
    assert evict(core, ns, "p0") == 201
    evicted = core.read_namespaced_pod("p0", ns)  # bound: deleted gracefully, marked first
    assert (
        evicted.metadata.deletion_timestamp is not None
        and evicted.metadata.deletion_grace_period_seconds == 30
    )
    target = [c for c in evicted.status.conditions if c.type == "DisruptionTarget"]
    assert [(c.status, c.reason, c.message) for c in target] == [
        ("True", "EvictionByEvictionAPI", "Eviction API: evicting")
    ]
    s = settle(pdbs, ns, "b", (3, 2, 2, 0))
    assert "disruptedPods" not in s  # the controller saw the pod being deleted
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction(
            "p1", ns, {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p1"}}
        )
    body = json.loads(err.value.body)
    assert (err.value.status, body["reason"]) == (429, "TooManyRequests")
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [
        {"reason": "DisruptionBudget", "message": "The disruption budget b needs 2 healthy pods and has 2 currently"}]  # fmt: skip
    assert "retryAfterSeconds" not in body["details"] and "Retry-After" not in (err.value.headers or {})
    assert core.read_namespaced_pod("p1", ns).metadata.deletion_timestamp is None


def test_eviction_of_a_pod_in_two_budgets_is_a_500(
    core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str
) -> None:
    ready_pods(core, ns, 2)
    pdbs.create_namespaced_pod_disruption_budget(ns, budget("one", maxUnavailable="100%"))
    pdbs.create_namespaced_pod_disruption_budget(
        ns, budget("two", {}, minAvailable=0)
    )  # {} selects every pod
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction("p0", ns, {"metadata": {"name": "p0"}})
    body = json.loads(err.value.body)
    assert err.value.status == 500 and "reason" not in body
    assert (
        body["message"]
        == "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    )
    assert not gone(core, ns, "p0")
    pdbs.delete_namespaced_pod_disruption_budget("two", ns)
    pdbs.create_namespaced_pod_disruption_budget(
        ns, {"metadata": {"name": "none"}, "spec": {"minAvailable": 5}}
    )
    assert evict(core, ns, "p0") == 429  # a null selector selects no pod; "one" expects no pod: 0 allowed


def test_pods_not_running_or_not_ready_are_evictable(
    core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str
) -> None:
    ready_pods(core, ns, 2)
    for name, phase in (
        ("pending", "Pending"),
        ("done", "Succeeded"),
        ("failed", "Failed"),
        ("unready", "Running"),
    ):
        core.create_namespaced_pod(ns, pod(name))
        if phase != "Pending":
            set_phase(core, ns, name, phase, ready=False)
    pdbs.create_namespaced_pod_disruption_budget(ns, budget("b", minAvailable=2))
    settle(pdbs, ns, "b", (6, 2, 2, 0))
    for name in ("pending", "done", "failed", "unready"):  # unready: currentHealthy 2 >= desiredHealthy 2 > 0
        assert evict(core, ns, name) == 201, name
        wait_for(lambda n=name: gone(core, ns, n), what=f"{name} deleted")
    assert evict(core, ns, "p0") == 429
    core.create_namespaced_pod(ns, pod("sick"))
    set_phase(core, ns, "sick", ready=False)
    set_phase(core, ns, "p1", ready=False)  # now unhealthy overall: an unready pod is guarded too
    settle(pdbs, ns, "b", (3, 2, 1, 0))
    assert evict(core, ns, "sick") == 429
    pdbs.patch_namespaced_pod_disruption_budget(
        "b", ns, {"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}}
    )
    wait_for(lambda: status(pdbs, ns, "b")["observedGeneration"] == 2, what="the new generation observed")
    assert evict(core, ns, "sick") == 201
    assert evict(core, ns, "p0") == 429  # a ready pod still needs the budget


def test_eviction_honours_delete_options_and_dry_run(
    core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str
) -> None:
    ready_pods(core, ns, 4, node="node-1")
    pdbs.create_namespaced_pod_disruption_budget(ns, budget("b", minAvailable=1))
    settle(pdbs, ns, "b", (4, 1, 4, 3))
    assert evict(core, ns, "p0", dryRun=["All"]) == 201
    assert core.read_namespaced_pod("p0", ns).metadata.deletion_timestamp is None
    assert counts(pdbs, ns, "b") == (4, 1, 4, 3)
    assert evict(core, ns, "p0", preconditions={"uid": "not-its-uid"}) == 409
    assert evict(core, ns, "p0", gracePeriodSeconds=5) == 201
    assert core.read_namespaced_pod("p0", ns).metadata.deletion_grace_period_seconds == 5
    assert evict(core, ns, "p1", gracePeriodSeconds=0) == 201
    assert gone(core, ns, "p1")
    beta = {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "p2"}}
    core.create_namespaced_pod_eviction("p2", ns, beta)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction("p3", ns, {"metadata": {"name": "p2"}})
    assert (err.value.status, json.loads(err.value.body)["message"]) == (
        400,
        "name in URL does not match name in Eviction object",
    )


def test_concurrent_evictions_share_one_disruption(
    core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str
) -> None:
    for round_ in range(5):
        names = [f"r{round_}-a", f"r{round_}-b", f"r{round_}-c"]
        labels = {"round": str(round_)}
        for name in names:
            core.create_namespaced_pod(ns, pod(name, labels=labels))
            set_phase(core, ns, name)
        pdbs.create_namespaced_pod_disruption_budget(
            ns, budget(f"b{round_}", {"matchLabels": labels}, minAvailable=2)
        )
        settle(pdbs, ns, f"b{round_}", (3, 2, 3, 1))
        barrier, codes = threading.Barrier(2), {}

        def run(name: str, barrier: threading.Barrier, codes: dict[str, int]) -> None:
            barrier.wait()
            codes[name] = evict(core, ns, name)

        threads = [threading.Thread(target=run, args=(name, barrier, codes)) for name in names[:2]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(codes.values()) == [201, 429], codes
        settle(pdbs, ns, f"b{round_}", (2, 2, 2, 0))


def test_kubectl_drain_evicts_what_the_budget_allows(
    core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str, kubectl: Kubectl
) -> None:
    node = f"node-{ns}"
    core.create_node({"metadata": {"name": node}})
    ready_pods(core, ns, 3, node=node)
    pdbs.create_namespaced_pod_disruption_budget(ns, budget("b", minAvailable=1))
    settle(pdbs, ns, "b", (3, 1, 3, 2))
    refused = kubectl.run("drain", node, "--force", "--grace-period=0", "--timeout=2s", check=False)
    assert refused.returncode != 0
    assert "Cannot evict pod as it would violate the pod's disruption budget." in refused.stderr
    assert core.read_node(node).spec.unschedulable is True
    remaining = [p.metadata.name for p in core.list_namespaced_pod(ns).items]
    assert len(remaining) == 1, remaining  # two evicted, one kept by the budget
    pdbs.patch_namespaced_pod_disruption_budget("b", ns, {"spec": {"minAvailable": 0}})
    wait_for(lambda: counts(pdbs, ns, "b")[3] == 1, what="the budget to allow the last one")
    done = kubectl.run("drain", node, "--force", "--grace-period=0", "--timeout=20s")
    assert f"node/{node} drained" in done.stdout
    assert not core.list_namespaced_pod(ns).items


def test_eviction_is_in_discovery(server: RunningApiServer, kubectl: Kubectl) -> None:
    resources = json.loads(kubectl("get", "--raw", "/api/v1"))["resources"]
    (entry,) = [r for r in resources if r["name"] == "pods/eviction"]
    assert (entry["group"], entry["version"], entry["kind"], entry["verbs"]) == (
        "policy",
        "v1",
        "Eviction",
        ["create"],
    )


# --- the audit log of pod removals --------------------------------------------------------------


def test_every_pod_removal_is_in_the_audit_log(
    server: RunningApiServer, core: client.CoreV1Api, pdbs: client.PolicyV1Api, ns: str
) -> None:
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    owner_dict = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "owner", "uid": owner.metadata.uid},
    }
    for i, state in enumerate(("busy", "idle", "idle", "idle")):
        body = pod(
            f"p{i}", labels={"app": "rec", "jibri.dev/state": state}, owner=owner_dict if i == 3 else None
        )
        body["metadata"]["annotations"] = {"note": f"pod {i}"}
        core.create_namespaced_pod(ns, body)
        set_phase(core, ns, f"p{i}")
    pdbs.create_namespaced_pod_disruption_budget(ns, budget("busy", {"matchLabels": {"jibri.dev/state": "busy"}},
                                                            maxUnavailable=0))  # fmt: skip
    settle(pdbs, ns, "busy", (0, 0, 1, 0))
    uids = {p.metadata.name: p.metadata.uid for p in core.list_namespaced_pod(ns).items}

    assert evict(core, ns, "p0") == 429  # the busy pod is refused
    assert evict(core, ns, "p1", dryRun=["All"]) == 201
    assert evict(core, ns, "p1") == 201
    server.fail(500, verbs=["create"], resources=["pods/eviction"], times=1)
    assert evict(core, ns, "p2") == 500  # an injected fault is an answer too
    core.delete_namespaced_pod("p2", ns, grace_period_seconds=0)
    with pytest.raises(ApiException):
        core.delete_namespaced_pod("p2", ns)
    core.delete_namespaced_config_map("owner", ns)  # p3 goes with its owner
    wait_for(lambda: gone(core, ns, "p3"), what="p3 collected")
    core.delete_collection_namespaced_pod(ns, label_selector="jibri.dev/state=busy")

    lines = [line for line in server.audit() if line["namespace"] == ns]
    assert [(x["verb"], x["name"], x["code"], x["dryRun"]) for x in lines] == [
        ("evict", "p0", 429, False),
        ("evict", "p1", 201, True),
        ("evict", "p1", 201, False),
        ("evict", "p2", 500, False),
        ("delete", "p2", 200, False),
        ("delete", "p2", 404, False),
        ("delete", "p3", 200, False),
        ("deletecollection", "p0", 200, False),
    ]
    refused, allowed = lines[0], lines[2]
    assert refused["reason"] == "TooManyRequests" and "disruption budget" in refused["message"]
    assert refused["labels"] == {"app": "rec", "jibri.dev/state": "busy"} and refused["annotations"] == {
        "note": "pod 0"
    }
    assert (refused["uid"], allowed["uid"], lines[5]["uid"]) == (uids["p0"], uids["p1"], None)
    assert (refused["phase"], refused["terminating"], refused["user"]) == ("Running", False, "sandbox-admin")
    assert lines[4]["gracePeriodSeconds"] == 0 and lines[4]["userAgent"].startswith("OpenAPI-Generator")
    assert lines[6]["user"] == "system:serviceaccount:kube-system:generic-garbage-collector"
    busy = [
        x
        for x in lines
        if x["labels"].get("jibri.dev/state") == "busy" and x["code"] < 300 and not x["dryRun"]
    ]
    assert [x["verb"] for x in busy] == ["deletecollection"]  # the one removal of a busy pod that happened
