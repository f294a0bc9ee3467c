"""The sandbox API server's fault switches, seen by real clients and recovered from.

500 and 429 answers, 409 on status writes, dropped watches and a restart, each set and cleared
through `RunningApiServer` (the authenticated /sandbox/faults endpoint), against a private
server process so no other test meets them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from apiserver_fixture import (
    KOPF_PEERING_CRDS,
    WIDGET_CRD,
    Kubectl,
    as_objects,
    kopf_run,
    start_process,
    wait_for,
)
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from jibri_sandbox.apiserver.testing import RunningApiServer, start_thread

pytestmark = pytest.mark.e2e
WIDGETS = ("test.example.com", "v1")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningApiServer]:
    running = start_process(tmp_path / "apiserver", audit_log=True)
    yield running
    running.stop()


@pytest.fixture
def api(server: RunningApiServer) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(server.kubeconfig))


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def install_widgets(api: client.ApiClient, extra: str = "") -> None:
    ext = client.ApiextensionsV1Api(api)
    for crd in as_objects(WIDGET_CRD + extra):
        ext.create_custom_resource_definition(crd)
        wait_for(lambda n=crd["metadata"]["name"]: ext.read_custom_resource_definition(n).status.conditions,
                 what=f"{crd['metadata']['name']} established")  # fmt: skip


def widget(name: str, replicas: int = 1) -> dict[str, Any]:
    return {"apiVersion": "test.example.com/v1", "kind": "Widget", "metadata": {"name": name},
            "spec": {"room": "hall", "replicas": replicas}}  # fmt: skip


def failure(call: Any, *args: Any, **kwargs: Any) -> ApiException | None:
    try:
        call(*args, **kwargs)
    except ApiException as exc:
        return exc
    return None


def test_500_and_429_until_cleared_or_spent(server: RunningApiServer, core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    fault = server.fail(500, verbs=["list"], resources=["configmaps"], times=2)
    assert [f["id"] for f in server.faults()] == [fault]
    for _ in range(2):
        exc = failure(core.list_namespaced_config_map, "default")
        assert exc is not None and exc.status == 500
        body = json.loads(exc.body)
        assert (body["kind"], body["reason"], body["code"]) == ("Status", "InternalError", 500)
        assert body["message"].startswith("Internal error occurred: ")
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["a"]  # spent
    assert server.faults() == []

    fault = server.fail(429, resources=["configmaps", "pods/status"], retry_after=0)
    exc = failure(core.read_namespaced_config_map, "a", "default")  # the client retries 429s, then gives up
    assert exc is not None and exc.status == 429
    assert exc.headers["Retry-After"] == "0" and exc.headers["Content-Type"].startswith("text/plain")
    assert exc.body.strip() == "Too many requests, please try again later."
    assert core.list_namespaced_secret("default").items == []  # other resources are served
    assert failure(core.read_namespace, "default") is None
    assert server.faults()[0]["injected"] >= 2
    assert server.clear_faults(fault) == 1
    assert core.read_namespaced_config_map("a", "default").data is None

    server.fail(500, verbs=["create"], seconds=0.5)
    exc = failure(core.create_namespaced_config_map, "default", {"metadata": {"name": "b"}})
    assert exc is not None and exc.status == 500
    assert core.list_namespaced_config_map("default").items  # reads still pass
    wait_for(lambda: server.faults() == [], what="the fault to expire")
    core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})

    server.fail(500, resources=["secrets"], fraction=0.5)
    failed = sum(failure(core.list_namespaced_secret, "default") is not None for _ in range(200))
    assert 50 < failed < 150, failed
    server.clear_faults()
    assert server.faults() == []


def test_discovery_fails_too_and_kubectl_says_so(server: RunningApiServer, tmp_path: Path) -> None:
    kubectl = Kubectl(server, tmp_path / "cache")
    server.fail(500)
    refused = kubectl.run("get", "configmaps", check=False)
    assert refused.returncode != 0 and "Error from server (InternalError)" in refused.stderr
    server.clear_faults()
    assert kubectl.run("get", "configmaps").stderr.strip() == "No resources found in default namespace."


def test_bad_fault_specs_are_refused(server: RunningApiServer) -> None:
    for spec in ({"fault": "error", "code": 503}, {"fault": "sometimes"}, {"fault": "error", "verbs": ["fly"]},
                 {"fault": "error", "fraction": 2}, {"fault": "statusConflict", "colour": "red"}):  # fmt: skip
        with pytest.raises(RuntimeError, match="400"):
            server.set_fault(spec)
    with pytest.raises(RuntimeError, match="404"):
        server.clear_faults("no-such-fault")


def test_an_in_process_server_sets_faults_but_cannot_restart() -> None:
    with start_thread() as inproc:
        handle = RunningApiServer(inproc.kubeconfig, inproc.url, inproc.token, process=None, log=Path())  # type: ignore[arg-type]
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(inproc.kubeconfig)))
        handle.fail(500, verbs=["list"], times=1)
        assert failure(core.list_namespace) is not None and failure(core.list_namespace) is None
        with pytest.raises(RuntimeError, match="restart needs the server to run as its own process"):
            handle.set_fault({"fault": "restart"})


def test_status_writes_conflict_then_succeed(server: RunningApiServer, api: client.ApiClient) -> None:
    install_widgets(api)
    co = client.CustomObjectsApi(api)
    args = (*WIDGETS, "default", "widgets")
    co.create_namespaced_custom_object(*args, widget("w"))
    server.conflict_status_writes(resources=["widgets"], times=3)
    for attempt in range(2):
        exc = failure(
            co.patch_namespaced_custom_object_status, *args, "w", {"status": {"phase": f"try-{attempt}"}}
        )
        assert exc is not None and exc.status == 409
        body = json.loads(exc.body)
        assert body["reason"] == "Conflict"
        assert body["message"] == ('Operation cannot be fulfilled on widgets.test.example.com "w": the object has been '
                                   "modified; please apply your changes to the latest version and try again")  # fmt: skip
    co.patch_namespaced_custom_object(*args, "w", {"spec": {"replicas": 2}})  # spec writes pass
    current = co.get_namespaced_custom_object(*args, "w")
    exc = failure(
        co.replace_namespaced_custom_object_status, *args, "w", {**current, "status": {"phase": "put"}}
    )
    assert exc is not None and exc.status == 409  # PUT too
    assert "status" not in co.get_namespaced_custom_object(*args, "w")
    assert co.patch_namespaced_custom_object_status(*args, "w", {"status": {"phase": "Ready"}})["status"] == {
        "phase": "Ready"}  # fmt: skip
    server.conflict_status_writes(resources=["pods"], seconds=30)  # only pods: widgets are spared
    assert co.patch_namespaced_custom_object_status(*args, "w", {"status": {"phase": "Again"}})
    server.clear_faults()


def test_dropped_watches_end_cleanly_or_reset(server: RunningApiServer, core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version

    def follow(seen: list[str], errors: list[BaseException], until: int = 3) -> None:
        # the client's Watch resumes from the last resourceVersion when a stream ends
        try:
            for event in watch.Watch().stream(
                core.list_namespaced_config_map, "default", resource_version=rv
            ):
                seen.append(event["object"].metadata.name)
                if len(seen) == until:
                    return
        except BaseException as exc:
            errors.append(exc)

    seen: list[str] = []
    errors: list[BaseException] = []
    thread = threading.Thread(target=follow, args=(seen, errors), daemon=True)
    thread.start()
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    wait_for(lambda: seen == ["before"], what="the first event")
    assert server.drop_watches() == 1
    core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "later"}})
    thread.join(10)
    assert (seen, errors) == (["before", "after", "later"], [])

    seen, errors = [], []
    thread = threading.Thread(target=follow, args=(seen, errors, 4), daemon=True)
    thread.start()
    wait_for(lambda: len(seen) == 3, what="the second watch to replay the events")
    assert server.drop_watches(abort=True) >= 1
    thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], urllib3.exceptions.ProtocolError), errors


def test_restart_keeps_objects_counter_and_port(
    server: RunningApiServer, api: client.ApiClient, tmp_path: Path
) -> None:
    install_widgets(api)
    core, co, pdbs = client.CoreV1Api(api), client.CustomObjectsApi(api), client.PolicyV1Api(api)
    ns = core.create_namespace({"metadata": {"name": "kept"}})
    w = co.create_namespaced_custom_object(*WIDGETS, "kept", "widgets", widget("w", replicas=2))
    core.create_namespaced_pod("kept", {"metadata": {"name": "p", "labels": {"app": "a"}},
                                        "spec": {"containers": [{"name": "c", "image": "i"}]}})  # fmt: skip
    core.patch_namespaced_pod_status(
        "p", "kept", {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    )
    pdbs.create_namespaced_pod_disruption_budget("kept", {"metadata": {"name": "b"},
                                                          "spec": {"minAvailable": 0, "selector": {"matchLabels": {"app": "a"}}}})  # fmt: skip
    wait_for(
        lambda: pdbs.read_namespaced_pod_disruption_budget("b", "kept").status.disruptions_allowed == 1,
        what="budget",
    )
    old_rv = core.list_namespaced_config_map("kept").metadata.resource_version
    core.create_namespaced_config_map("kept", {"metadata": {"name": "last"}})
    before = core.list_namespaced_config_map("kept").metadata.resource_version
    pid, kubeconfig = server.process.pid, server.kubeconfig.read_text()
    ended: list[str] = []

    def watch_until_end() -> None:
        try:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map, "kept", resource_version=before, _request_timeout=60
            ):
                pass
            ended.append("ended")
        except Exception as exc:
            ended.append(type(exc).__name__)

    thread = threading.Thread(target=watch_until_end, daemon=True)
    thread.start()
    wait_for(lambda: server.open_watches() == 1, what="the watch to open")
    server.restart(downtime=0.5)
    thread.join(30)
    assert ended, "the open watch should have been dropped by the restart"
    assert (server.process.pid, server.kubeconfig.read_text()) == (pid, kubeconfig)  # same port, token, CA
    assert core.read_namespace("kept").metadata.uid == ns.metadata.uid  # the same client goes on
    again = co.get_namespaced_custom_object(*WIDGETS, "kept", "widgets", "w")
    assert again["metadata"] == w["metadata"] and again["spec"] == w["spec"]
    assert core.list_namespaced_config_map("kept").metadata.resource_version == before
    created = core.create_namespaced_config_map("kept", {"metadata": {"name": "new"}})
    assert int(created.metadata.resource_version) > int(before)  # the counter keeps increasing
    exc = None
    try:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "kept", resource_version=old_rv, timeout_seconds=5
        ):
            pass
    except ApiException as err:
        exc = err
    assert exc is not None and exc.status == 410  # older than what a restarted server keeps
    events = []
    for event in watch.Watch().stream(
        core.list_namespaced_config_map, "kept", resource_version=before, timeout_seconds=5
    ):
        events.append(event["object"].metadata.name)
        break
    assert events == ["new"]
    core.patch_namespaced_pod_status(
        "p", "kept", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    )
    wait_for(lambda: pdbs.read_namespaced_pod_disruption_budget("b", "kept").status.disruptions_allowed == 0,
             what="the disruption controller at work after the restart")  # fmt: skip
    assert Kubectl(server, tmp_path / "cache")("get", "-n", "kept", "widgets", "-o", "name").split() == [
        "widget.test.example.com/w"]  # fmt: skip


def test_restore_loads_what_the_last_server_saved(tmp_path: Path) -> None:
    directory = tmp_path / "apiserver"
    first = start_process(directory)
    core = client.CoreV1Api(config.new_client_from_config(config_file=str(first.kubeconfig)))
    made = core.create_namespaced_config_map("default", {"metadata": {"name": "kept"}, "data": {"k": "v"}})
    first.stop()  # SIGTERM: the objects are saved
    again = start_process(directory, "--restore")
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(again.kubeconfig)))
        kept = core.read_namespaced_config_map("kept", "default")
        assert (kept.metadata.uid, kept.metadata.resource_version, kept.data) == (
            made.metadata.uid, made.metadata.resource_version, {"k": "v"})  # fmt: skip
        assert [n.metadata.name for n in core.list_namespace().items] == [
            "default", "kube-node-lease", "kube-public", "kube-system"]  # fmt: skip
    finally:
        again.stop()
    fresh = start_process(directory)  # without --restore: a new world
    try:
        core = client.CoreV1Api(config.new_client_from_config(config_file=str(fresh.kubeconfig)))
        assert core.list_namespaced_config_map("default").items == []
    finally:
        fresh.stop()


def test_an_informer_like_client_stays_in_sync(server: RunningApiServer, core: client.CoreV1Api) -> None:
    """List, then watch from the list's version; relist on 410, retry on a lost connection."""
    cache: dict[str, str] = {}
    stop = threading.Event()
    relists = [0]

    def reflect() -> None:
        while not stop.is_set():
            try:
                listed = core.list_namespaced_config_map("default", _request_timeout=5)
                relists[0] += 1
                cache.clear()
                cache.update({c.metadata.name: (c.data or {}).get("v", "") for c in listed.items})
                rv = listed.metadata.resource_version
                while not stop.is_set():
                    for event in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                                      timeout_seconds=2, _request_timeout=10):  # fmt: skip
                        obj = event["object"]
                        rv = obj.metadata.resource_version
                        if event["type"] == "DELETED":
                            cache.pop(obj.metadata.name, None)
                        else:
                            cache[obj.metadata.name] = (obj.data or {}).get("v", "")
            except ApiException as exc:
                if exc.status != 410:
                    stop.wait(0.2)
            except Exception:
                stop.wait(0.2)  # the server is away: try again

    thread = threading.Thread(target=reflect, daemon=True)
    thread.start()
    try:
        core.create_namespaced_config_map("default", {"metadata": {"name": "one"}, "data": {"v": "1"}})
        wait_for(lambda: cache.get("one") == "1", what="the first object")
        server.drop_watches()
        core.patch_namespaced_config_map("one", "default", {"data": {"v": "2"}})
        wait_for(lambda: cache.get("one") == "2", what="a change after the watch was dropped")
        server.restart()
        core.create_namespaced_config_map("default", {"metadata": {"name": "two"}, "data": {"v": "1"}})
        core.delete_namespaced_config_map("one", "default")
        wait_for(lambda: cache == {"two": "1"}, timeout=20, what=f"the cache after the restart ({cache})")
    finally:
        stop.set()
        thread.join(15)


OPERATOR = """
import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.persistence.finalizer = "test.example.com/kopf-finalizer"
    settings.watching.server_timeout = 30
    settings.networking.error_backoffs = [0.5, 1, 1, 2, 2, 3, 5, 5, 5, 5]


@kopf.on.create("test.example.com", "v1", "widgets")
def created(spec, patch, **_):
    patch.status["phase"] = "Ready"
    patch.status["replicas"] = spec["replicas"]


@kopf.on.update("test.example.com", "v1", "widgets", field="spec.replicas")
def rescaled(new, patch, **_):
    patch.status["replicas"] = new
"""


def test_kopf_keeps_working_through_every_fault(
    server: RunningApiServer, api: client.ApiClient, tmp_path: Path
) -> None:
    install_widgets(api, "\n---\n" + KOPF_PEERING_CRDS)
    co = client.CustomObjectsApi(api)
    args = (*WIDGETS, "default", "widgets")
    operator = tmp_path / "operator.py"
    operator.write_text(textwrap.dedent(OPERATOR))

    def status(name: str) -> dict[str, Any]:
        return dict(co.get_namespaced_custom_object(*args, name).get("status") or {})

    def handled(name: str, replicas: int = 1) -> None:
        wait_for(lambda: status(name) == {"phase": "Ready", "replicas": replicas}, timeout=60,
                 what=f"kopf to handle {name} ({status(name)})")  # fmt: skip

    with kopf_run(server, operator, "--standalone", "--all-namespaces", tracebacks_allowed=True):
        co.create_namespaced_custom_object(*args, widget("w0"))
        handled("w0")
        wait_for(lambda: server.open_watches() > 0, what="kopf's watches open")
        assert server.drop_watches() > 0
        co.create_namespaced_custom_object(*args, widget("w1"))
        handled("w1")
        server.conflict_status_writes(resources=["widgets"], times=1)
        co.create_namespaced_custom_object(*args, widget("w2"))
        wait_for(lambda: server.faults() == [], what="kopf to meet the 409 on its status patch")
        # (kopf does not retry that patch: w2's handler has run and its status is lost; not ours to fix)
        server.fail(500, verbs=["patch"], resources=["widgets", "widgets/status"], times=2)
        server.fail(429, verbs=["list", "watch"], times=3, retry_after=1)
        server.drop_watches()
        co.create_namespaced_custom_object(*args, widget("w3"))
        handled("w3")
        assert server.faults() == []  # every injected answer was met, and retried
        server.restart(downtime=1.0)
        co.create_namespaced_custom_object(*args, widget("w4"))
        handled("w4")
        co.patch_namespaced_custom_object(*args, "w0", {"spec": {"replicas": 3}})
        handled("w0", replicas=3)


def test_the_sandbox_kubelet_runs_pods_across_a_restart(
    server: RunningApiServer, core: client.CoreV1Api, tmp_path: Path
) -> None:
    """The kubelet as the sandbox runs it (its own process, as `jibri-sandbox up` starts it)."""

    def pod(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name},
                "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "infinity"]}]}}  # fmt: skip

    def ready(name: str) -> bool:
        status = core.read_namespaced_pod(name, "default").status
        return any(c.type == "Ready" and c.status == "True" for c in status.conditions or ())

    def gone(name: str) -> bool:
        return failure(core.read_namespaced_pod, name, "default") is not None

    ready_file = tmp_path / "kubelet.ready"
    log = (tmp_path / "kubelet.log").open("w+")
    kubelet = subprocess.Popen(
        [sys.executable, "-m", "jibri_sandbox.cli", "kubelet", "--kubeconfig", str(server.kubeconfig),
         "--node-name", "faulty", "--startup-delay", "0.2", "--restart-backoff", "0.3",
         "--state-dir", str(tmp_path / "kubelet"), "--ready-file", str(ready_file)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        wait_for(ready_file.exists, 30, "the kubelet to be ready")
        core.create_namespaced_pod("default", pod("before"))
        wait_for(lambda: ready("before"), 20, "the first pod ready")
        server.restart(downtime=0.5)
        core.create_namespaced_pod("default", pod("after"))
        wait_for(lambda: ready("after"), 20, "a pod created after the restart ready")
        core.delete_namespaced_pod("before", "default")
        wait_for(lambda: gone("before"), 20, "the kubelet to finish the first pod")
    except BaseException:
        log.seek(0)
        print(log.read())  # shown by pytest on failure
        raise
    finally:
        kubelet.send_signal(signal.SIGTERM)
        try:
            kubelet.wait(20)
        except subprocess.TimeoutExpired:
            kubelet.kill()
            kubelet.wait()
    lines = [(x["name"], x["code"], x["terminating"]) for x in server.audit()]
    assert lines == [("before", 200, False), ("before", 200, True)]  # the delete, then the kubelet's
