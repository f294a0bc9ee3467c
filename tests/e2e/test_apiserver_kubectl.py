"""The real kubectl against the sandbox API server: what a person would type."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from pathlib import Path

import pytest
from apiserver_fixture import GIZMO_CRD, WIDGET_CRD, Kubectl, apiserver, wait_for  # noqa: F401

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def kubectl(apiserver, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    k = Kubectl(apiserver, tmp_path_factory.mktemp("kubectl-cache"))
    k("apply", "-f", "-", stdin=WIDGET_CRD + "\n---\n" + GIZMO_CRD)
    k(
        "wait",
        "--for=condition=Established",
        "crd/widgets.test.example.com",
        "crd/gizmos.test.example.com",
        "--timeout=20s",
    )
    return k


@pytest.fixture
def ns(kubectl: Kubectl) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    return name


def widget(name: str, room: str = "lobby", replicas: int = 2, extra: str = "") -> str:
    return f"""
apiVersion: test.example.com/v1
kind: Widget
metadata:
  name: {name}
spec:
  room: {room}
  replicas: {replicas}
{extra}"""


def test_discovery_shows_the_crd_with_short_names_and_categories(kubectl: Kubectl) -> None:
    out = kubectl("api-resources", "--api-group=test.example.com")
    assert "widgets" in out and "wd" in out and "Widget" in out and "gizmos" in out
    assert "test.example.com/v1" in kubectl("api-versions")


def test_apply_get_yaml_describe_and_apply_again(kubectl: Kubectl, ns: str) -> None:
    assert "widget.test.example.com/w1 created" in kubectl("apply", "-n", ns, "-f", "-", stdin=widget("w1"))
    table = kubectl("get", "-n", ns, "widgets")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "MODE", "REPLICAS", "PHASE", "AGE"]
    assert row.split()[:3] == ["w1", "file", "2"]  # mode defaulted from the schema
    obj = json.loads(kubectl("get", "-n", ns, "wd", "w1", "-o", "json"))
    assert obj["spec"] == {"room": "lobby", "replicas": 2, "mode": "file"}
    assert obj["metadata"]["generation"] == 1 and obj["metadata"]["uid"]
    assert "room: lobby" in kubectl("get", "-n", ns, "widget", "w1", "-o", "yaml")
    assert "widget.test.example.com/w1 unchanged" in kubectl("apply", "-n", ns, "-f", "-", stdin=widget("w1"))
    event = {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "w1.1", "namespace": ns},
        "involvedObject": {"apiVersion": "test.example.com/v1", "kind": "Widget", "name": "w1", "namespace": ns,
                           "uid": obj["metadata"]["uid"]},
        "reason": "Tested", "message": "described by kubectl", "type": "Normal", "count": 1,
        "firstTimestamp": obj["metadata"]["creationTimestamp"], "lastTimestamp": obj["metadata"]["creationTimestamp"],
        "source": {"component": "tests"},
    }  # fmt: skip
    kubectl("create", "-n", ns, "-f", "-", stdin=json.dumps(event))
    described = kubectl("describe", "-n", ns, "widget", "w1")
    assert "Room:" in described and "lobby" in described
    assert "Tested" in described and "described by kubectl" in described


def test_patch_label_annotate_scale(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=widget("w2"))
    kubectl(
        "patch", "-n", ns, "widget", "w2", "--type=merge", "-p", '{"spec":{"mode":"stream","streamKey":"k"}}'
    )
    kubectl(
        "patch",
        "-n",
        ns,
        "widget",
        "w2",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/replicas","value":3}]',
    )
    kubectl("label", "-n", ns, "widget", "w2", "tier=gold")
    kubectl("annotate", "-n", ns, "widget", "w2", "note=hello")
    assert "scaled" in kubectl("scale", "-n", ns, "widget", "w2", "--replicas=5")
    obj = json.loads(kubectl("get", "-n", ns, "widget", "w2", "-o", "json"))
    assert obj["spec"] == {"room": "lobby", "replicas": 5, "mode": "stream", "streamKey": "k"}
    assert obj["metadata"]["labels"] == {"tier": "gold"}
    assert obj["metadata"]["annotations"]["note"] == "hello"
    assert obj["metadata"]["generation"] == 4  # three spec changes; labels and annotations do not count
    assert (
        kubectl("get", "-n", ns, "widgets", "-l", "tier=gold", "-o", "name").strip()
        == "widget.test.example.com/w2"
    )
    assert kubectl("get", "-n", ns, "widgets", "-l", "tier!=gold", "-o", "name").strip() == ""


def test_invalid_objects_are_refused_with_the_fields_named(kubectl: Kubectl, ns: str) -> None:
    bad = widget("bad", room="Not A Room", replicas=20, extra="  mode: foo\n")
    proc = kubectl.run("apply", "-n", ns, "-f", "-", stdin=bad, check=False)
    assert proc.returncode != 0
    assert 'The Widget "bad" is invalid' in proc.stderr
    assert 'spec.mode: Unsupported value: "foo": supported values: "file", "stream"' in proc.stderr
    assert (
        "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10"
        in proc.stderr
    )
    assert 'spec.room: Invalid value: "Not A Room"' in proc.stderr
    proc = kubectl.run(
        "apply", "-n", ns, "-f", "-", stdin=widget("bad2", extra="  mode: stream\n"), check=False
    )
    assert "streamKey is required in stream mode" in proc.stderr
    kubectl("apply", "-n", ns, "-f", "-", stdin=widget("w3"))
    proc = kubectl.run(
        "patch", "-n", ns, "widget", "w3", "--type=merge", "-p", '{"spec":{"room":"elsewhere"}}', check=False
    )
    assert "room is immutable" in proc.stderr
    proc = kubectl.run("apply", "-n", ns, "-f", "-", stdin=widget("w4", extra="  colour: red\n"), check=False)
    assert proc.returncode != 0 and 'unknown field "spec.colour"' in proc.stderr


def test_delete_waits_for_finalizers(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=widget("held"))
    kubectl(
        "patch",
        "-n",
        ns,
        "widget",
        "held",
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["test.example.com/hold"]}}',
    )
    kubectl("delete", "-n", ns, "widget", "held", "--wait=false")
    obj = json.loads(kubectl("get", "-n", ns, "widget", "held", "-o", "json"))
    assert obj["metadata"]["deletionTimestamp"]
    proc = kubectl.run(
        "patch", "-n", ns, "widget", "held", "--type=merge", "-p",
        '{"metadata":{"finalizers":["test.example.com/hold","x.example.com/more"]}}', check=False,
    )  # fmt: skip
    assert "no new finalizers can be added if the object is being deleted" in proc.stderr
    kubectl(
        "patch",
        "-n",
        ns,
        "widget",
        "held",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/metadata/finalizers"}]',
    )
    kubectl("wait", "-n", ns, "--for=delete", "widget/held", "--timeout=10s")
    assert kubectl.run("get", "-n", ns, "widget", "held", check=False).returncode != 0


def test_get_watch_sees_changes(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=widget("watched"))
    proc = kubectl.popen("get", "-n", ns, "widgets", "-w", "--request-timeout=20s")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []

    def saw(text: str) -> bool:
        while not lines.empty():
            seen.append(lines.get())
        return any(text in line for line in seen)

    try:
        wait_for(lambda: saw("watched"), what="the initial row")
        kubectl("scale", "-n", ns, "widget", "watched", "--replicas=7")
        wait_for(
            lambda: any(line.split()[:3] == ["watched", "file", "7"] for line in seen) or saw("\x00"),
            what="the scaled row",
        )
        kubectl("apply", "-n", ns, "-f", "-", stdin=widget("second"))
        wait_for(lambda: saw("second"), what="a new object")
    finally:
        proc.kill()
        proc.wait()


def test_explain_shows_schema_descriptions(kubectl: Kubectl) -> None:
    out = kubectl("explain", "widgets.spec")
    assert "What the widget should be." in out and "room" in out and "The room the widget joins." in out
    assert "The room the widget joins." in kubectl("explain", "widget.spec.room")


def test_get_by_category_lists_every_kind_in_it(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=widget("cat"))
    kubectl(
        "apply",
        "-f",
        "-",
        stdin="apiVersion: test.example.com/v1\nkind: Gizmo\nmetadata: {name: g-" + ns + "}\nspec: {a: 1}\n",
    )
    out = kubectl("get", "gadgets", "-n", ns, "-o", "name")
    assert "widget.test.example.com/cat" in out and f"gizmo.test.example.com/g-{ns}" in out


def test_builtins_apply_label_and_namespace_deletion(kubectl: Kubectl, ns: str, tmp_path: Path) -> None:
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1}\ndata: {a: '1', b: '2'}\n"
    assert "configmap/c1 created" in kubectl("apply", "-n", ns, "-f", "-", stdin=cm)
    assert "configmap/c1 configured" in kubectl(
        "apply", "-n", ns, "-f", "-", stdin=cm.replace("b: '2'", "c: '3'")
    )
    assert json.loads(kubectl("get", "-n", ns, "cm", "c1", "-o", "json"))["data"] == {"a": "1", "c": "3"}
    kubectl("label", "-n", ns, "cm", "c1", "x=y")
    assert "DATA" in kubectl("get", "-n", ns, "configmaps")
    assert "Active" in kubectl("get", "namespace", ns)
    kubectl("delete", "namespace", ns, "--wait=false")
    kubectl("wait", "--for=delete", f"namespace/{ns}", "--timeout=20s")
    assert kubectl.run("get", "-n", ns, "cm", "c1", check=False).returncode != 0


def test_server_side_apply_diff_and_imperative_creates(kubectl: Kubectl, ns: str) -> None:
    assert "serverside-applied" in kubectl("apply", "--server-side", "-n", ns, "-f", "-", stdin=widget("ssa"))
    assert "serverside-applied" in kubectl(
        "apply", "--server-side", "-n", ns, "-f", "-", stdin=widget("ssa", replicas=3)
    )
    assert json.loads(kubectl("get", "-n", ns, "widget", "ssa", "-o", "json"))["spec"]["replicas"] == 3
    diff = kubectl.run("diff", "-n", ns, "-f", "-", stdin=widget("ssa", replicas=4), check=False)
    assert diff.returncode == 1 and "+  replicas: 4" in diff.stdout
    assert (
        json.loads(kubectl("get", "-n", ns, "widget", "ssa", "-o", "json"))["spec"]["replicas"] == 3
    )  # a dry run
    # typed kubectl commands send protobuf bodies
    kubectl("create", "secret", "generic", "s1", "-n", ns, "--from-literal=password=hunter2")
    secret = json.loads(kubectl("get", "secret", "s1", "-n", ns, "-o", "json"))
    assert (secret["data"], secret["type"]) == ({"password": "aHVudGVyMg=="}, "Opaque")
    kubectl("create", "serviceaccount", "robot", "-n", ns)
    kubectl("create", "service", "clusterip", "web", "--tcp=80:8080", "-n", ns)
    svc = json.loads(kubectl("get", "service", "web", "-n", ns, "-o", "json"))
    assert svc["spec"]["ports"][0]["targetPort"] == 8080 and svc["spec"]["clusterIP"].startswith("10.96.")
    kubectl(
        "run",
        "web",
        "-n",
        ns,
        "--image=nginx:1.27",
        "--port=80",
        "--env=A=1",
        "--labels=app=web",
        "--",
        "sleep",
        "9",
    )
    pod = json.loads(kubectl("get", "pod", "web", "-n", ns, "-o", "json"))
    container = pod["spec"]["containers"][0]
    assert (container["image"], container["args"], container["env"]) == (
        "nginx:1.27",
        ["sleep", "9"],
        [{"name": "A", "value": "1"}],
    )
    assert pod["metadata"]["labels"] == {"app": "web"} and pod["status"]["phase"] == "Pending"
    out = kubectl.run("patch", "-n", ns, "widget", "ssa", "-p", '{"spec":{"replicas":1}}', check=False)
    assert out.returncode != 0 and "application/strategic-merge-patch+json is not supported" in out.stderr


def test_subresources_and_auth_reviews(kubectl: Kubectl, ns: str) -> None:
    kubectl("apply", "-n", ns, "-f", "-", stdin=widget("sub"))
    kubectl(
        "patch",
        "-n",
        ns,
        "widget",
        "sub",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Ready","replicas":2}}',
    )
    assert kubectl("get", "-n", ns, "widget", "sub").splitlines()[1].split()[:4] == [
        "sub",
        "file",
        "2",
        "Ready",
    ]
    scale = kubectl("get", "-n", ns, "widget", "sub", "--subresource=scale").splitlines()
    assert scale[0].split() == ["NAME", "DESIRED", "REPLICAS", "AVAILABLE", "REPLICAS", "AGE"]
    assert scale[1].split()[:3] == ["sub", "2", "2"]
    assert kubectl("auth", "can-i", "create", "widgets.test.example.com", "-n", ns).strip() == "yes"
    assert "sandbox-admin" in kubectl("auth", "whoami")
