"""The differential script: the same kubectl and client calls against two API servers.

`run_script(server)` plays SCRIPT against one server (its admin kubeconfig) in a fresh namespace
of a fixed name, and returns one normalised record per step: the HTTP status (or kubectl's exit
code), the body or output, and the warnings. `compare(a, b)` lists the steps whose records
differ. test_differential.py runs it against jibri_sandbox.apiserver and kube-apiserver.

Normalised away: uids, timestamps, resourceVersions (and the numbers in messages quoting them),
managedFields, generated name suffixes, `kubectl get` ages, Audit-Id and other headers, and the
order of a 422's causes (kube-apiserver's is Go's random map order). Each
step's `view` may narrow a body to what the step is about (a pod's containers, not every field
kube-apiserver defaults in a pod), and says so in its name.
"""

from __future__ import annotations

import base64
import copy
import difflib
import json
import re
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Record = dict[str, Any]
NAMESPACE = "diff"  # plus a suffix shared by both runs (see run_script)
GROUP, VERSION = "test.example.com", "v1"


# --- talking to a server ----------------------------------------------------------------------------


class Server:
    """One API server by its admin kubeconfig: raw HTTP with its token and CA, and kubectl."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.kubeconfig = kubeconfig
        config = yaml.safe_load(kubeconfig.read_text())
        self.url = config["clusters"][0]["cluster"]["server"]
        self.token = config["users"][0]["user"]["token"]
        ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
        self.context = ssl.create_default_context(cadata=ca.decode())
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)

    def http(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        raw: bytes | None = None,
    ) -> Record:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as response:  # noqa: S310
                return _record(response.status, response.read(), response.headers.get_all("Warning") or [])
        except urllib.error.HTTPError as error:
            return _record(error.code, error.read(), error.headers.get_all("Warning") or [])

    def watch(self, path: str, events: int, timeout: float, until_bookmark: bool = False) -> Record:
        """A watch request: the first `events` events (or up to the first BOOKMARK), or what came
        before the server ended it."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        request = urllib.request.Request(self.url + path, headers=headers)  # noqa: S310
        got: list[Any] = []
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=timeout + 10) as response:  # noqa: S310
                status = response.status
                while len(got) < events:
                    line = response.readline()
                    if not line:
                        break
                    got.append(json.loads(line))
                    if until_bookmark and got[-1]["type"] == "BOOKMARK":
                        break
        except urllib.error.HTTPError as error:
            return _record(error.code, error.read(), [])
        return {"status": status, "events": got}

    def kubectl(self, *args: str, stdin: str | None = None) -> Record:
        done = subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.workdir / "cache"), *args],
            input=stdin, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return {"exit": done.returncode, "stdout": done.stdout, "stderr": done.stderr}

    def get(self, path: str) -> Any:
        return self.http("GET", path).get("body")


def _record(status: int, raw: bytes, warnings: list[str]) -> Record:
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode(errors="replace")
    record: Record = {"status": status, "body": body}
    if warnings:
        record["warnings"] = warnings
    return record


# --- normalising --------------------------------------------------------------------------------------

UID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
TOO_OLD = re.compile(r"too old resource version: \d+ \(\d+\)")
AGE = re.compile(r"(?<=\s)\d+(\.\d+)?(s|m|h|d)(\d+(s|m|h))?(?=\s|$)", re.MULTILINE)
GENERATED = re.compile(r"\b(gen-)[a-z0-9]{5}\b")
RV_IN_TEXT = re.compile(r'("?resourceVersion"?[=:] ?"?)\d+')
TIME_KEYS = {"creationTimestamp", "deletionTimestamp", "lastTransitionTime", "time", "eventTime"}


def _sorted_causes(status: dict[str, Any]) -> dict[str, Any]:
    """A 422's causes (and the message listing them) in one order: kube-apiserver's OpenAPI
    validator walks a schema's properties in Go's random map order."""
    causes = (status.get("details") or {}).get("causes") or []
    message = status.get("message") or ""
    if len(causes) < 2 or " is invalid: [" not in message:
        return status
    ordered = sorted(causes, key=lambda c: (c.get("field", ""), c.get("message", "")))
    head = message.split(" is invalid: [", 1)[0]
    listed = ", ".join(f"{c.get('field', '')}: {c.get('message', '')}" for c in ordered)
    return {
        **status,
        "message": f"{head} is invalid: [{listed}]",
        "details": {**status["details"], "causes": ordered},
    }


def normalise(value: Any, key: str = "") -> Any:
    if isinstance(value, dict) and value.get("kind") == "Status":
        value = _sorted_causes(value)
    if isinstance(value, dict):
        out = {}
        for name, sub in value.items():
            if name == "managedFields":
                continue
            if name == "resourceVersion" and isinstance(sub, str):
                out[name] = "<rv>" if sub else ""
            elif name == "uid" and isinstance(sub, str):
                out[name] = "<uid>"
            elif name in TIME_KEYS and isinstance(sub, str):
                out[name] = "<time>"
            elif name == "kubectl.kubernetes.io/last-applied-configuration" and isinstance(sub, str):
                out[name] = normalise(json.loads(sub))
            else:
                out[name] = normalise(sub, name)
        return out
    if isinstance(value, list):
        return [normalise(item, key) for item in value]
    if isinstance(value, str):
        text = UID.sub("<uid>", value)
        text = TIME.sub("<time>", text)
        text = TOO_OLD.sub("too old resource version: <rv> (<rv>)", text)
        text = GENERATED.sub(r"\1<rand>", text)
        return RV_IN_TEXT.sub(r"\1<rv>", text)
    return value


def normalise_table(text: str) -> str:
    return AGE.sub("<age>", normalise(text))


# --- the script -------------------------------------------------------------------------------------


@dataclass
class Step:
    name: str
    run: Callable[[Context], Record]


@dataclass
class Context:
    server: Server
    namespace: str
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def ns(self) -> str:
        return self.namespace

    def cm_path(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.ns}/configmaps" + (f"/{name}" if name else "")

    def widget_path(self, name: str = "", sub: str = "") -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{self.ns}/widgets"
        return path + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def kubectl(self, *args: str, stdin: str | None = None, table: bool = False) -> Record:
        record = self.server.kubectl("-n", self.ns, *args, stdin=stdin)
        if table:
            record["stdout"] = normalise_table(record["stdout"])
        return record

    def wait(self, check: Callable[[], Any], timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


SCRIPT: list[Step] = []


def step(name: str) -> Callable[[Callable[[Context], Record]], Callable[[Context], Record]]:
    def register(function: Callable[[Context], Record]) -> Callable[[Context], Record]:
        SCRIPT.append(Step(name, function))
        return function

    return register


def cm(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def widget(name: str, room: str = "hall", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, "labels": {"kind": "widget"}},
        "spec": {"room": room, **spec},
    }


def view(record: Record, function: Callable[[Any], Any]) -> Record:
    """The record with its body narrowed to what a step is about."""
    body = record.get("body")
    if record.get("status", 500) < 300 and isinstance(body, dict):
        record = {**record, "body": function(body)}
    return record


def names(record: Record) -> Record:
    """A list's names, without kube-root-ca.crt (kube-controller-manager's, see setup/namespace-contents)."""
    return view(
        record,
        lambda body: [
            i["metadata"]["name"]
            for i in body.get("items", [])
            if i["metadata"]["name"] != "kube-root-ca.crt"
        ],
    )


# -- namespace and CRD --


@step("setup/namespace")
def _namespace(c: Context) -> Record:
    return c.server.kubectl("create", "namespace", c.ns)


@step("setup/crd")
def _crd(c: Context) -> Record:
    from apiserver_fixture import WIDGET_CRD

    created = c.server.kubectl("apply", "-f", "-", stdin=WIDGET_CRD)
    waited = c.server.kubectl(
        "wait", "--for=condition=Established", "crd/widgets.test.example.com", "--timeout=60s"
    )
    # A new custom resource can answer 429 for a moment on kube-apiserver: wait until it lists.
    c.wait(lambda: c.server.http("GET", c.widget_path())["status"] == 200)
    return {"apply": created, "wait": waited}


@step("setup/namespace-contents")
def _contents(c: Context) -> Record:
    return c.kubectl("get", "configmaps,serviceaccounts,secrets", "-o", "name")


# -- CRUD with the client's verbs --


@step("crud/create")
def _create(c: Context) -> Record:
    return c.server.http("POST", c.cm_path(), cm("one", {"app": "a", "tier": "x"}, k="v"))


@step("crud/create-again")
def _create_again(c: Context) -> Record:
    return c.server.http("POST", c.cm_path(), cm("one", k="v"))


@step("crud/get")
def _get(c: Context) -> Record:
    return c.server.http("GET", c.cm_path("one"))


@step("crud/get-missing")
def _get_missing(c: Context) -> Record:
    return c.server.http("GET", c.cm_path("missing"))


@step("crud/update")
def _update(c: Context) -> Record:
    current = c.server.get(c.cm_path("one"))
    c.memo["stale"] = copy.deepcopy(current)
    current["data"]["k"] = "v2"
    return c.server.http("PUT", c.cm_path("one"), current)


@step("crud/update-stale")
def _update_stale(c: Context) -> Record:
    stale = c.memo["stale"]
    stale["data"]["k"] = "lost"
    return c.server.http("PUT", c.cm_path("one"), stale)


@step("crud/update-without-resource-version")
def _update_unconditional(c: Context) -> Record:
    return c.server.http("PUT", c.cm_path("one"), cm("one", {"app": "a", "tier": "x"}, k="v3"))


@step("crud/create-generate-name")
def _generate(c: Context) -> Record:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}, "data": {}}
    return c.server.http("POST", c.cm_path(), body)


@step("crud/list-with-label")
def _list(c: Context) -> Record:
    return c.server.http("GET", c.cm_path() + "?labelSelector=app%3Da")


@step("crud/kubectl-get-yaml")
def _get_yaml(c: Context) -> Record:
    record = c.kubectl("get", "configmap", "one", "-o", "yaml")
    record["stdout"] = (
        normalise(yaml.safe_load(record["stdout"])) if record["exit"] == 0 else record["stdout"]
    )
    return record


@step("crud/kubectl-get-table")
def _get_table(c: Context) -> Record:
    return c.kubectl("get", "configmaps", "-l", "app", table=True)


@step("crud/delete")
def _delete(c: Context) -> Record:
    c.server.http("POST", c.cm_path(), cm("doomed"))
    return c.server.http("DELETE", c.cm_path("doomed"))


@step("crud/delete-missing")
def _delete_missing(c: Context) -> Record:
    return c.server.http("DELETE", c.cm_path("doomed"))


@step("crud/delete-precondition-failed")
def _delete_precondition(c: Context) -> Record:
    body = {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}
    return c.server.http("DELETE", c.cm_path("one"), body)


# -- custom resources --


@step("cr/create-defaults")
def _cr_create(c: Context) -> Record:
    return c.server.http("POST", c.widget_path(), widget("w1", replicas=2))


@step("cr/create-invalid")
def _cr_invalid(c: Context) -> Record:
    return c.server.http("POST", c.widget_path(), widget("bad", room="Not A Room!", mode="tape", replicas=99))


@step("cr/create-cel-refused")
def _cr_cel(c: Context) -> Record:
    return c.server.http("POST", c.widget_path(), widget("bad", mode="stream"))


@step("cr/unknown-field-strict")
def _cr_strict(c: Context) -> Record:
    body = widget("strict")
    body["spec"]["colour"] = "red"
    return c.server.http("POST", c.widget_path() + "?fieldValidation=Strict", body)


@step("cr/unknown-field-warn")
def _cr_warn(c: Context) -> Record:
    body = widget("warned")
    body["spec"]["colour"] = "red"
    return c.server.http("POST", c.widget_path() + "?fieldValidation=Warn", body)


@step("cr/unknown-field-ignore")
def _cr_ignore(c: Context) -> Record:
    body = widget("ignored")
    body["spec"]["colour"] = "red"
    return c.server.http("POST", c.widget_path() + "?fieldValidation=Ignore", body)


@step("cr/transition-rule")
def _cr_transition(c: Context) -> Record:
    return c.server.http(
        "PATCH", c.widget_path("w1"), {"spec": {"room": "elsewhere"}}, "application/merge-patch+json"
    )


@step("cr/kubectl-get-table")
def _cr_table(c: Context) -> Record:
    return c.kubectl("get", "widgets", "-o", "wide", table=True)


# -- apply --


@step("apply/client-side-create")
def _apply_create(c: Context) -> Record:
    return c.kubectl("apply", "-f", "-", stdin=json.dumps(cm("applied", {"app": "b"}, a="1")))


@step("apply/client-side-unchanged")
def _apply_unchanged(c: Context) -> Record:
    return c.kubectl("apply", "-f", "-", stdin=json.dumps(cm("applied", {"app": "b"}, a="1")))


@step("apply/client-side-change")
def _apply_change(c: Context) -> Record:
    first = c.kubectl("apply", "-f", "-", stdin=json.dumps(cm("applied", {"app": "b"}, b="2")))
    return {"apply": first, "object": c.server.http("GET", c.cm_path("applied"))}


@step("apply/server-side-create")
def _ssa_create(c: Context) -> Record:
    first = c.kubectl("apply", "--server-side", "-f", "-", stdin=json.dumps(widget("w2", replicas=1)))
    return {"apply": first, "object": c.server.http("GET", c.widget_path("w2"))}


@step("apply/server-side-conflict")
def _ssa_conflict(c: Context) -> Record:
    return c.kubectl(
        "apply",
        "--server-side",
        "--field-manager=other",
        "-f",
        "-",
        stdin=json.dumps(widget("w2", replicas=3)),
    )


@step("apply/server-side-force")
def _ssa_force(c: Context) -> Record:
    forced = c.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=other", "-f", "-",
        stdin=json.dumps(widget("w2", replicas=3)),
    )  # fmt: skip
    return {"apply": forced, "spec": view(c.server.http("GET", c.widget_path("w2")), lambda b: b["spec"])}


@step("apply/apply-patch")
def _apply_patch(c: Context) -> Record:
    body = yaml.safe_dump(cm("ssa", {"app": "c"}, x="1"))
    return c.server.http(
        "PATCH",
        c.cm_path("ssa") + "?fieldManager=tester",
        raw=body.encode(),
        content_type="application/apply-patch+yaml",
    )


@step("apply/apply-patch-without-field-manager")
def _apply_patch_no_manager(c: Context) -> Record:
    body = yaml.safe_dump(cm("ssa", x="2"))
    return c.server.http(
        "PATCH", c.cm_path("ssa"), raw=body.encode(), content_type="application/apply-patch+yaml"
    )


# -- every patch type --


@step("patch/json")
def _json_patch(c: Context) -> Record:
    ops = [
        {"op": "add", "path": "/data/added", "value": "yes"},
        {"op": "replace", "path": "/data/k", "value": "j"},
    ]
    return c.server.http("PATCH", c.cm_path("one"), ops, "application/json-patch+json")


@step("patch/json-test-fails")
def _json_patch_test(c: Context) -> Record:
    ops = [{"op": "test", "path": "/data/k", "value": "nope"}, {"op": "remove", "path": "/data/k"}]
    return c.server.http("PATCH", c.cm_path("one"), ops, "application/json-patch+json")


@step("patch/json-bad-path")
def _json_patch_bad(c: Context) -> Record:
    ops = [{"op": "remove", "path": "/data/absent"}]
    return c.server.http("PATCH", c.cm_path("one"), ops, "application/json-patch+json")


@step("patch/merge")
def _merge_patch(c: Context) -> Record:
    body = {"metadata": {"labels": {"tier": None, "merged": "yes"}}, "data": {"added": None}}
    return c.server.http("PATCH", c.cm_path("one"), body, "application/merge-patch+json")


@step("patch/strategic-pod-containers")
def _strategic(c: Context) -> Record:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "twins", "labels": {"app": "twins"}},
        "spec": {
            "schedulerName": "nobody",  # no kubelet schedules it, on either server
            "containers": [{"name": "a", "image": "busybox:1.36"}, {"name": "b", "image": "busybox:1.36"}],
        },
    }
    c.server.http("POST", f"/api/v1/namespaces/{c.ns}/pods", pod)
    patch = {
        "metadata": {"labels": {"app": None, "merged": "yes"}},
        "spec": {"containers": [{"name": "b", "image": "busybox:1.37"}]},
    }
    record = c.server.http(
        "PATCH", f"/api/v1/namespaces/{c.ns}/pods/twins", patch, "application/strategic-merge-patch+json"
    )
    return view(
        record,
        lambda b: {
            "labels": b["metadata"].get("labels"),
            "containers": [(x["name"], x["image"]) for x in b["spec"]["containers"]],
        },
    )


@step("patch/strategic-on-custom-resource")
def _strategic_cr(c: Context) -> Record:
    return c.server.http(
        "PATCH", c.widget_path("w1"), {"spec": {"replicas": 3}}, "application/strategic-merge-patch+json"
    )


@step("patch/unsupported-media-type")
def _patch_media(c: Context) -> Record:
    return c.server.http("PATCH", c.cm_path("one"), {"data": {}}, "text/plain")


@step("patch/kubectl-types")
def _kubectl_patch(c: Context) -> Record:
    return {
        "merge": c.kubectl("patch", "configmap", "one", "--type=merge", "-p", '{"data":{"m":"1"}}'),
        "json": c.kubectl(
            "patch", "configmap", "one", "--type=json", "-p", '[{"op":"remove","path":"/data/m"}]'
        ),
        "strategic": c.kubectl("patch", "configmap", "one", "-p", '{"data":{"s":"1"}}'),
        "noop": c.kubectl("patch", "configmap", "one", "-p", '{"data":{"s":"1"}}'),
    }


# -- status and scale subresources --


@step("status/write-through-status")
def _status(c: Context) -> Record:
    body = {"status": {"phase": "Ready", "replicas": 2}, "spec": {"replicas": 7}}
    return c.server.http("PATCH", c.widget_path("w1", "status"), body, "application/merge-patch+json")


@step("status/ignored-on-main-resource")
def _status_ignored(c: Context) -> Record:
    body = {"status": {"phase": "Hacked"}, "metadata": {"labels": {"touched": "yes"}}}
    return c.server.http("PATCH", c.widget_path("w1"), body, "application/merge-patch+json")


@step("status/get")
def _status_get(c: Context) -> Record:
    return c.server.http("GET", c.widget_path("w1", "status"))


@step("scale/get")
def _scale_get(c: Context) -> Record:
    return c.server.http("GET", c.widget_path("w1", "scale"))


@step("scale/patch")
def _scale_patch(c: Context) -> Record:
    scaled = c.server.http(
        "PATCH", c.widget_path("w1", "scale"), {"spec": {"replicas": 4}}, "application/merge-patch+json"
    )
    return {"scale": scaled, "spec": view(c.server.http("GET", c.widget_path("w1")), lambda b: b["spec"])}


@step("scale/kubectl-scale")
def _scale_kubectl(c: Context) -> Record:
    return c.kubectl("scale", "widget", "w1", "--replicas=5")


@step("scale/out-of-bounds")
def _scale_bad(c: Context) -> Record:
    return c.server.http(
        "PATCH", c.widget_path("w1", "scale"), {"spec": {"replicas": 11}}, "application/merge-patch+json"
    )


# -- selectors --


@step("select/labels")
def _labels(c: Context) -> Record:
    c.server.http("POST", c.cm_path(), cm("two", {"app": "b", "tier": "y"}))
    c.server.http("POST", c.cm_path(), cm("three", {"tier": "x"}))
    selectors = ["app=a", "app!=a", "app in (a,b)", "app notin (a)", "!app", "tier,app", "tier=x,app=a"]
    quoted = {s: urllib.request.quote(s) for s in selectors}
    return {s: names(c.server.http("GET", c.cm_path() + f"?labelSelector={q}")) for s, q in quoted.items()}


@step("select/bad-label-selector")
def _bad_labels(c: Context) -> Record:
    return c.server.http("GET", c.cm_path() + "?labelSelector=app%3D%3D%3D")


@step("select/fields")
def _fields(c: Context) -> Record:
    return {
        "name": names(c.server.http("GET", c.cm_path() + "?fieldSelector=metadata.name%3Dtwo")),
        "not-name": names(
            c.server.http("GET", c.cm_path() + "?fieldSelector=metadata.name!%3Dtwo&labelSelector=tier")
        ),
        "cr-name": names(c.server.http("GET", c.widget_path() + "?fieldSelector=metadata.name%3Dw1")),
        "pod-phase": names(
            c.server.http("GET", f"/api/v1/namespaces/{c.ns}/pods?fieldSelector=status.phase%3DPending")
        ),
        "pod-node": names(
            c.server.http("GET", f"/api/v1/namespaces/{c.ns}/pods?fieldSelector=spec.nodeName%3D")
        ),
    }


@step("select/unsupported-field")
def _bad_fields(c: Context) -> Record:
    return {
        "cr": c.server.http("GET", c.widget_path() + "?fieldSelector=spec.mode%3Dfile"),
        "core": c.server.http("GET", c.cm_path() + "?fieldSelector=data.k%3Dv"),
    }


# -- watch --


@step("watch/from-resource-version")
def _watch(c: Context) -> Record:
    since = c.server.get(c.cm_path() + "?labelSelector=watch")["metadata"]["resourceVersion"]
    c.server.http("POST", c.cm_path(), cm("watched", {"watch": "me"}))
    c.server.http("PATCH", c.cm_path("watched"), {"data": {"n": "1"}}, "application/merge-patch+json")
    c.server.http(
        "PATCH",
        c.cm_path("watched"),
        {"metadata": {"labels": {"watch": None}}},
        "application/merge-patch+json",
    )
    c.server.http("DELETE", c.cm_path("watched"))
    return c.server.watch(
        c.cm_path() + f"?watch=true&labelSelector=watch&resourceVersion={since}&timeoutSeconds=5", 3, 5
    )


@step("watch/initial-events-and-bookmark")
def _watch_initial(c: Context) -> Record:
    query = "?watch=true&labelSelector=app&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=5"
    return c.server.watch(c.cm_path() + query, 20, 5, until_bookmark=True)


@step("watch/resource-version-0-with-bookmarks")
def _watch_zero(c: Context) -> Record:
    query = "?watch=true&labelSelector=app&resourceVersion=0&allowWatchBookmarks=true&timeoutSeconds=5"
    return c.server.watch(c.cm_path() + query, 20, 5, until_bookmark=True)


@step("watch/send-initial-events-needs-not-older-than")
def _watch_initial_bad(c: Context) -> Record:
    return c.server.http("GET", c.cm_path() + "?watch=true&sendInitialEvents=true&timeoutSeconds=1")


@step("watch/too-old-resource-version")
def _watch_gone(c: Context) -> Record:
    return c.server.watch(c.widget_path() + "?watch=true&resourceVersion=1&timeoutSeconds=5", 1, 5)


@step("watch/selector-change-is-delete")
def _watch_selector(c: Context) -> Record:
    since = c.server.get(c.cm_path() + "?labelSelector=sel")["metadata"]["resourceVersion"]
    c.server.http("POST", c.cm_path(), cm("mover", {"sel": "in"}))
    c.server.http(
        "PATCH", c.cm_path("mover"), {"metadata": {"labels": {"sel": "out"}}}, "application/merge-patch+json"
    )
    c.server.http(
        "PATCH", c.cm_path("mover"), {"metadata": {"labels": {"sel": "in"}}}, "application/merge-patch+json"
    )
    record = c.server.watch(
        c.cm_path() + f"?watch=true&labelSelector=sel%3Din&resourceVersion={since}&timeoutSeconds=5", 3, 5
    )
    record["events"] = [(e["type"], e["object"]["metadata"]["labels"]) for e in record.get("events", [])]
    return record


# -- finalizers and garbage collection --


@step("finalizers/delete-waits")
def _finalizer(c: Context) -> Record:
    body = cm("held")
    body["metadata"]["finalizers"] = ["test.example.com/hold"]
    c.server.http("POST", c.cm_path(), body)
    deleted = c.server.http("DELETE", c.cm_path("held"))
    return {"delete": deleted, "get": c.server.http("GET", c.cm_path("held"))}


@step("finalizers/no-new-finalizer-while-deleting")
def _finalizer_add(c: Context) -> Record:
    patch = {"metadata": {"finalizers": ["test.example.com/hold", "test.example.com/more"]}}
    return c.server.http("PATCH", c.cm_path("held"), patch, "application/merge-patch+json")


@step("finalizers/removing-the-last-deletes")
def _finalizer_done(c: Context) -> Record:
    patched = c.server.http(
        "PATCH", c.cm_path("held"), {"metadata": {"finalizers": None}}, "application/merge-patch+json"
    )
    return {"patch": patched, "get": c.server.http("GET", c.cm_path("held"))}


def _owned(c: Context, owner: str) -> None:
    uid = c.server.get(c.cm_path(owner))["metadata"]["uid"]
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": True}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": f"{owner}-dep", "ownerReferences": [ref]},
    }
    c.server.http("POST", f"/api/v1/namespaces/{c.ns}/secrets", secret)


def _exists(c: Context, path: str) -> bool:
    return bool(c.server.http("GET", path)["status"] == 200)


@step("gc/background")
def _gc_background(c: Context) -> Record:
    c.server.http("POST", c.cm_path(), cm("owner-bg"))
    _owned(c, "owner-bg")
    deleted = c.server.http("DELETE", c.cm_path("owner-bg"), {"propagationPolicy": "Background"})
    secret = f"/api/v1/namespaces/{c.ns}/secrets/owner-bg-dep"
    return {"delete": deleted, "dependent-collected": c.wait(lambda: not _exists(c, secret))}


@step("gc/foreground")
def _gc_foreground(c: Context) -> Record:
    c.server.http("POST", c.cm_path(), cm("owner-fg"))
    _owned(c, "owner-fg")
    deleted = c.server.http("DELETE", c.cm_path("owner-fg"), {"propagationPolicy": "Foreground"})
    secret = f"/api/v1/namespaces/{c.ns}/secrets/owner-fg-dep"
    return {
        "delete": view(deleted, lambda b: b["metadata"].get("finalizers")),
        "dependent-collected": c.wait(lambda: not _exists(c, secret)),
        "owner-gone": c.wait(lambda: not _exists(c, c.cm_path("owner-fg"))),
    }


@step("gc/orphan")
def _gc_orphan(c: Context) -> Record:
    c.server.http("POST", c.cm_path(), cm("owner-or"))
    _owned(c, "owner-or")
    deleted = c.server.http("DELETE", c.cm_path("owner-or"), {"propagationPolicy": "Orphan"})
    secret = f"/api/v1/namespaces/{c.ns}/secrets/owner-or-dep"
    orphaned = c.wait(lambda: not c.server.get(secret)["metadata"].get("ownerReferences"))
    return {
        "delete": view(deleted, lambda b: b["metadata"].get("finalizers")),
        "owner-gone": c.wait(lambda: not _exists(c, c.cm_path("owner-or"))),
        "dependent-kept-without-owner": orphaned and _exists(c, secret),
    }


# -- dry run --


@step("dryrun/create")
def _dry_create(c: Context) -> Record:
    created = c.server.http("POST", c.cm_path() + "?dryRun=All", cm("dry", x="1"))
    return {"create": created, "get": c.server.http("GET", c.cm_path("dry"))}


@step("dryrun/update-and-delete")
def _dry_update(c: Context) -> Record:
    patched = c.server.http(
        "PATCH", c.cm_path("one") + "?dryRun=All", {"data": {"dry": "1"}}, "application/merge-patch+json"
    )
    deleted = c.server.http("DELETE", c.cm_path("one") + "?dryRun=All")
    after = view(c.server.http("GET", c.cm_path("one")), lambda b: b.get("data"))
    return {
        "patch": view(patched, lambda b: b.get("data")),
        "delete": view(deleted, lambda b: b.get("kind")),
        "after": after,
    }


@step("dryrun/kubectl")
def _dry_kubectl(c: Context) -> Record:
    return {
        "server": c.kubectl(
            "create", "configmap", "dry2", "--from-literal=a=b", "--dry-run=server", "-o", "name"
        ),
        "get": c.kubectl("get", "configmap", "dry2", "--ignore-not-found", "-o", "name"),
    }


@step("dryrun/bad-value")
def _dry_bad(c: Context) -> Record:
    return c.server.http("POST", c.cm_path() + "?dryRun=Maybe", cm("dry3"))


# -- a List, as kubectl get -o yaml writes it --

LIST = {
    "apiVersion": "v1",
    "kind": "List",
    "items": [
        cm("listed-a", {"list": "yes"}, a="1"),
        cm("listed-b", {"list": "yes"}, b="2"),
        widget("listed-w"),
    ],
}


@step("list/apply")
def _list_apply(c: Context) -> Record:
    return c.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(LIST))


@step("list/export-and-reapply")
def _list_export(c: Context) -> Record:
    exported = c.kubectl("get", "configmaps", "-l", "list=yes", "-o", "yaml")
    again = c.kubectl("apply", "-f", "-", stdin=exported["stdout"])
    exported["stdout"] = normalise(yaml.safe_load(exported["stdout"]))
    return {"export": exported, "reapply": again}


@step("list/unknown-field-in-custom-resource")
def _list_unknown(c: Context) -> Record:
    bad = copy.deepcopy(LIST)
    bad["items"] = [widget("listed-x", colour="red")]
    return c.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(bad))


@step("list/openapi-v2-custom-resource")
def _openapi_v2(c: Context) -> Record:
    """What kubectl validates a List's custom resource with: the Widget's v2 definition (protobuf)."""
    from jibri_sandbox.apiserver import openapiv2

    headers = {"Authorization": f"Bearer {c.server.token}", "Accept": openapiv2.PROTOBUF}
    request = urllib.request.Request(c.server.url + "/openapi/v2", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, context=c.server.context, timeout=60) as response:  # noqa: S310
        content_type, data = response.headers.get("Content-Type"), response.read()
    document = openapiv2.decode(data, openapiv2.DOCUMENT)
    return {"content-type": content_type, "widget": document["definitions"].get("com.example.test.v1.Widget")}


# -- bad input --


@step("errors/malformed-json")
def _malformed(c: Context) -> Record:
    return {
        "truncated": c.server.http("POST", c.cm_path(), raw=b'{"apiVersion": "v1", "kind": '),
        "array": c.server.http("POST", c.cm_path(), raw=b"[1]"),
        "empty": c.server.http("POST", c.cm_path(), raw=b""),
    }


@step("errors/kind-mismatch")
def _kind_mismatch(c: Context) -> Record:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrong"}}
    return c.server.http("POST", c.cm_path(), body)


@step("errors/kind-mismatch-custom-resource")
def _kind_mismatch_cr(c: Context) -> Record:
    body = {**widget("wrong", mode="file"), "kind": "Gizmo"}
    return c.server.http("POST", c.widget_path(), body)


@step("errors/api-version-mismatch")
def _version_mismatch(c: Context) -> Record:
    return c.server.http("POST", c.cm_path(), {**cm("wrong"), "apiVersion": "v2"})


@step("errors/name-mismatch")
def _name_mismatch(c: Context) -> Record:
    return c.server.http("PUT", c.cm_path("one"), cm("other"))


@step("errors/namespace-mismatch")
def _namespace_mismatch(c: Context) -> Record:
    body = cm("elsewhere")
    body["metadata"]["namespace"] = "default"
    return c.server.http("POST", c.cm_path(), body)


@step("errors/invalid-name")
def _invalid_name(c: Context) -> Record:
    return c.server.http("POST", c.cm_path(), cm("Not_Valid"))


@step("errors/missing-name")
def _missing_name(c: Context) -> Record:
    return c.server.http("POST", c.cm_path(), {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})


@step("errors/unknown-resource")
def _unknown_resource(c: Context) -> Record:
    return c.server.http("GET", f"/api/v1/namespaces/{c.ns}/gadgets")


@step("errors/unknown-group")
def _unknown_group(c: Context) -> Record:
    return c.server.http("GET", "/apis/nothing.example.com/v1/things")


@step("errors/namespace-not-found")
def _no_namespace(c: Context) -> Record:
    return c.server.http("POST", "/api/v1/namespaces/no-such-namespace/configmaps", cm("x"))


@step("errors/kubectl-unknown-kind")
def _kubectl_unknown(c: Context) -> Record:
    return c.kubectl("get", "nosuchkinds")


@step("errors/kubectl-invalid-object")
def _kubectl_invalid(c: Context) -> Record:
    return c.kubectl("apply", "-f", "-", stdin=json.dumps(widget("bad", room="Not A Room!")))


# -- the end: deleting the namespace empties it --


@step("teardown/namespace-delete")
def _teardown(c: Context) -> Record:
    deleted = c.server.kubectl("delete", "namespace", c.ns, "--wait=false")
    gone = c.wait(lambda: c.server.http("GET", f"/api/v1/namespaces/{c.ns}")["status"] == 404, 90)
    return {"delete": deleted, "gone": gone}


@step("teardown/crd-delete")
def _teardown_crd(c: Context) -> Record:
    deleted = c.server.kubectl("delete", "crd", "widgets.test.example.com", "--wait=false")
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.test.example.com"
    return {"delete": deleted, "gone": c.wait(lambda: c.server.http("GET", path)["status"] == 404, 60)}


# --- running and comparing ----------------------------------------------------------------------------


def run_script(server: Server, namespace: str) -> dict[str, Any]:
    context = Context(server, namespace)
    results: dict[str, Any] = {}
    for each in SCRIPT:
        try:
            results[each.name] = normalise(each.run(context))
        except Exception as error:  # a step that breaks is a difference, not the end of the script
            results[each.name] = {"exception": f"{type(error).__name__}: {error}"}
    return results


def compare(a: dict[str, Any], b: dict[str, Any], names: tuple[str, str]) -> dict[str, str]:
    """Step name -> a unified diff of the two records, for each step whose records differ."""
    differing = {}
    for name in a:
        left, right = a[name], b.get(name)
        if left == right:
            continue
        text_a = json.dumps(left, indent=1, sort_keys=True, default=str).splitlines()
        text_b = json.dumps(right, indent=1, sort_keys=True, default=str).splitlines()
        diff = difflib.unified_diff(text_a, text_b, names[0], names[1], lineterm="", n=2)
        differing[name] = "\n".join(diff)
    return differing


def fresh_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="differential-"))
