"""The real control plane, built from the pins: it serves kubectl, enforces RBAC, accepts our CRDs,
runs pods through the sandbox kubelet, and its controller manager collects garbage.

Everything goes through the pinned kubectl or plain HTTP, as a user would; every
wait is on a condition with a timeout. One control plane serves the whole session
(control_plane_fixture.py), so each test works in its own namespace.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiserver_fixture import wait_for
from control_plane_fixture import REAL_NODE, ROOT, kubectl, new_namespace

from jibri_sandbox.apiserver import kubeconfig as kubeconfig_file
from jibri_sandbox.controlplane import ADMIN_USER, OPERATOR_USER, ControlPlane
from jibri_sandbox.controlplane.binaries import find, pinned_bin
from jibri_sandbox.up import Sandbox

pytestmark = pytest.mark.e2e
GO_MOD = (ROOT / "tools" / "k8s" / "go.mod").read_text()


def staging_modules(kubernetes_go_mod: str) -> list[str]:
    """tools/k8s/pin.py's own reading of k8s.io/kubernetes's go.mod (it writes the replaces checked here)."""
    spec = importlib.util.spec_from_file_location("k8s_pin", ROOT / "tools" / "k8s" / "pin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found: list[str] = module.staging_modules(kubernetes_go_mod)
    return found


def pinned(module: str) -> str:
    match = re.search(rf"^\s*{re.escape(module)} (v\S+)", GO_MOD, re.MULTILINE)
    assert match, f"{module} is not pinned in tools/k8s/go.mod"
    return match.group(1)


def whoami(kubeconfig: Path) -> dict[str, Any]:
    info: dict[str, Any] = json.loads(kubectl(kubeconfig, "auth", "whoami", "-o", "json"))["status"][
        "userInfo"
    ]
    return info


def get_json(kubeconfig: Path, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(kubectl(kubeconfig, "get", *args, "-o", "json"))
    return result


def gone(kubeconfig: Path, *args: str) -> bool:
    out = kubectl(kubeconfig, "get", *args, "--ignore-not-found", "-o", "name")
    return out.strip() == ""


def test_the_binaries_are_the_pinned_ones() -> None:
    assert shutil.which("kubectl") == str(find("kubectl")), "tests use the pinned kubectl"
    assert shutil.which("helm") == str(find("helm"))
    version = subprocess.run(
        [find("kube-apiserver"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"Kubernetes {pinned('k8s.io/kubernetes')}"
    etcd = subprocess.run([find("etcd"), "--version"], capture_output=True, text=True, check=True)
    assert f"etcd Version: {pinned('go.etcd.io/etcd/server/v3').lstrip('v')}" in etcd.stdout
    helm = subprocess.run(["helm", "version", "--short"], capture_output=True, text=True, check=True)
    assert helm.stdout.startswith("v3.17.2")


def test_our_crds_are_accepted_with_schemas_printer_columns_and_explain(
    real_control_plane: ControlPlane, real_crds: str
) -> None:
    assert "Warning" not in real_crds, real_crds
    kc = real_control_plane.kubeconfig
    ns = new_namespace(real_control_plane, "crd")
    for example in ("environment.yaml", "pool.yaml", "session-file.yaml"):
        kubectl(kc, "-n", ns, "apply", "-f", str(ROOT / "examples" / example))
    # (name, default columns, the priority-1 columns only -o wide shows)
    headers = [
        ("recordingsessions", "NAME ENVIRONMENT ROOM MODE PHASE JIBRI AGE", "ATTEMPTS REASON"),
        ("jibripools", "NAME MIN MAX REPLICAS IDLE BUSY AGE", "UNHEALTHY"),
        ("xmppenvironments", "NAME SERVER BREWERY CONNECTED IDLE BUSY AGE", "UNHEALTHY"),
    ]
    for plural, header, wide in headers:
        table = kubectl(kc, "-n", ns, "get", plural)
        assert " ".join(table.splitlines()[0].split()) == header, table
        wide_table = kubectl(kc, "-n", ns, "get", plural, "-o", "wide")
        assert set(wide.split()) <= set(wide_table.splitlines()[0].split()), wide_table
    session = get_json(kc, "-n", ns, "recordingsession", "weekly-standup")
    assert session["spec"]["maxAttempts"] == 5 and session["spec"]["pendingTimeout"] == "90s", "defaults"
    listed = kubectl(kc, "-n", ns, "get", "jibri", "-o", "name").split()
    assert {
        "recordingsession.jibri.dev/weekly-standup",
        "jibripool.jibri.dev/recorders",
        "xmppenvironment.jibri.dev/meet",
    } <= set(listed)
    explained = kubectl(kc, "explain", "recordingsession.spec.maxAttempts")
    assert "maxAttempts" in explained and "retryable failures" in explained, explained


def test_every_staging_module_is_replaced_by_its_release() -> None:
    """The pinned go.mod maps each module k8s.io/kubernetes keeps in ./staging to its v0.X.Y release."""
    version = pinned("k8s.io/kubernetes")
    release = "v0." + version.removeprefix("v1.")
    bin_dir = pinned_bin()
    assert bin_dir is not None, "no pinned binaries: run `make control-plane`"
    upstream = (
        bin_dir.parent / "gomod" / "cache" / "download" / "k8s.io" / "kubernetes" / "@v" / f"{version}.mod"
    )
    staging = staging_modules(upstream.read_text())
    assert len(staging) > 25, staging
    for module in staging:
        assert f"\t{module} => {module} {release}\n" in GO_MOD, f"{module} is not replaced by {release}"


def test_admin_uses_the_cluster_with_kubectl(real_control_plane: ControlPlane) -> None:
    kc = real_control_plane.kubeconfig
    versions = json.loads(kubectl(kc, "version", "-o", "json"))
    assert versions["serverVersion"]["gitVersion"] == pinned("k8s.io/kubernetes")
    assert versions["clientVersion"]["gitVersion"].startswith("v1.32.")
    me = whoami(kc)
    assert me["username"] == ADMIN_USER and "system:masters" in me["groups"]
    namespaces = kubectl(kc, "get", "namespaces", "-o", "name").split()
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-node-lease"} <= set(namespaces)
    assert yaml.safe_load(kc.read_text())["users"][0]["user"]["token"] == real_control_plane.token
    assert oct(kc.stat().st_mode & 0o777) == "0o600"


def test_the_operator_identity_is_bound_to_nothing(real_control_plane: ControlPlane) -> None:
    kc = real_control_plane.operator_kubeconfig
    me = whoami(kc)
    assert me["username"] == OPERATOR_USER
    assert me["groups"] == ["system:authenticated"]
    refused = kubectl(kc, "get", "pods", "-A", check=False)
    assert f'User "{OPERATOR_USER}" cannot list resource "pods"' in refused, refused
    for verb, resource in [
        ("list", "recordingsessions.jibri.dev"),
        ("patch", "recordingsessions.jibri.dev/status"),
        ("get", "secrets"),
        ("create", "pods"),
        ("create", "events"),
        ("watch", "namespaces"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ]:
        answer = kubectl(kc, "auth", "can-i", verb, resource, "-A", check=False).strip()
        assert answer.startswith("no"), f"{OPERATOR_USER} may {verb} {resource}: {answer}"


def test_token_request_issues_service_account_tokens(
    real_control_plane: ControlPlane, tmp_path: Path
) -> None:
    ns = new_namespace(real_control_plane, "sa")
    kc = real_control_plane.kubeconfig
    kubectl(kc, "-n", ns, "create", "serviceaccount", "bot")
    token = kubectl(kc, "-n", ns, "create", "token", "bot", "--duration=10m").strip()
    bot = tmp_path / "bot.kubeconfig"
    ca = yaml.safe_load(kc.read_text())["clusters"][0]["cluster"]["certificate-authority-data"]
    kubeconfig_file.write(bot, real_control_plane.url, base64.b64decode(ca), token)
    me = whoami(bot)
    assert me["username"] == f"system:serviceaccount:{ns}:bot"
    assert me["extra"]["authentication.kubernetes.io/credential-id"], "a bound token, with its JTI"
    # the launcher's own way to log in as a service account (as manifests/ binds one)
    as_bot = real_control_plane.service_account_kubeconfig(ns, "bot", tmp_path / "helper.kubeconfig")
    assert whoami(as_bot)["username"] == f"system:serviceaccount:{ns}:bot"
    assert kubectl(as_bot, "auth", "can-i", "list", "pods", check=False).strip() == "no"


def test_a_pod_runs_through_the_sandbox_kubelet(
    real_sandbox: Sandbox, real_control_plane: ControlPlane, tmp_path: Path
) -> None:
    kc = real_control_plane.kubeconfig
    ready = kubectl(
        kc, "get", "node", REAL_NODE, "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    )
    assert ready == "True"
    lease = get_json(kc, "-n", "kube-node-lease", "lease", REAL_NODE)
    assert lease["spec"]["holderIdentity"] == REAL_NODE
    ns = new_namespace(real_control_plane, "pod")
    kubectl(kc, "-n", ns, "run", "hello", "--image=busybox:1.36", "--", "sleep", "infinity")
    wait_for(
        lambda: kubectl(kc, "-n", ns, "get", "pod", "hello", "-o", "jsonpath={.status.phase}") == "Running",
        30,
        "pod hello Running",
    )
    pod = get_json(kc, "-n", ns, "pod", "hello")
    assert pod["spec"]["nodeName"] == REAL_NODE
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    # The ServiceAccount admission plugin gave it the API access volume; the kubelet filled it with
    # a token from TokenRequest, bound to this pod, that the API server accepts.
    volume = next(v["name"] for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-"))
    files = real_sandbox.directory / "kubelet" / "pods" / pod["metadata"]["uid"] / "volumes" / volume
    assert (files / "ca.crt").read_text() == (real_control_plane.state / "pki" / "ca.crt").read_text()
    assert (files / "namespace").read_text() == ns
    as_pod = tmp_path / "pod.kubeconfig"
    kubeconfig_file.write(
        as_pod, real_control_plane.url, (files / "ca.crt").read_bytes(), (files / "token").read_text()
    )
    me = whoami(as_pod)
    assert me["username"] == f"system:serviceaccount:{ns}:default"
    assert me["extra"]["authentication.kubernetes.io/pod-name"] == ["hello"]
    kubectl(kc, "-n", ns, "delete", "pod", "hello", "--wait=false")
    wait_for(lambda: gone(kc, "-n", ns, "pod", "hello"), 30, "pod hello to be deleted")


def test_eviction_respects_a_pod_disruption_budget(
    real_sandbox: Sandbox, real_control_plane: ControlPlane
) -> None:
    kc = real_control_plane.kubeconfig
    ns = new_namespace(real_control_plane, "pdb")
    kubectl(
        kc, "-n", ns, "run", "only", "--image=busybox:1.36", "--labels=app=only", "--", "sleep", "infinity"
    )
    kubectl(kc, "-n", ns, "create", "pdb", "keep-one", "--selector=app=only", "--min-available=1")
    wait_for(
        lambda: get_json(kc, "-n", ns, "pdb", "keep-one").get("status", {}).get("currentHealthy") == 1,
        30,
        "the disruption controller to count the healthy pod",
    )
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "only", "namespace": ns}}
    refused = kubectl(
        kc, "create", "--raw", f"/api/v1/namespaces/{ns}/pods/only/eviction", "-f", "-",
        stdin=json.dumps(eviction), check=False,
    )  # fmt: skip
    assert "disruption budget" in refused, refused


def test_the_garbage_collector_removes_dependents(real_control_plane: ControlPlane) -> None:
    kc = real_control_plane.kubeconfig
    ns = new_namespace(real_control_plane, "gc")
    for owner in ("background", "foreground"):
        kubectl(kc, "-n", ns, "create", "configmap", owner)
        uid = get_json(kc, "-n", ns, "configmap", owner)["metadata"]["uid"]
        dependent = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"{owner}-dependent",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": owner,
                        "uid": uid,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
        }
        kubectl(kc, "-n", ns, "create", "-f", "-", stdin=json.dumps(dependent))
        kubectl(kc, "-n", ns, "delete", "configmap", owner, f"--cascade={owner}", "--wait=false")
        wait_for(lambda owner=owner: gone(kc, "-n", ns, "secret", f"{owner}-dependent"), 60, f"{owner} GC")
        wait_for(lambda owner=owner: gone(kc, "-n", ns, "configmap", owner), 60, f"{owner} owner gone")


def test_deleting_a_namespace_removes_what_it_held(real_control_plane: ControlPlane) -> None:
    kc = real_control_plane.kubeconfig
    ns = new_namespace(real_control_plane, "nsdel")
    kubectl(kc, "-n", ns, "create", "configmap", "leftover")
    kubectl(kc, "delete", "namespace", ns, "--wait=false")
    wait_for(lambda: gone(kc, "namespace", ns), 60, f"namespace {ns} to be finalized and removed")


def test_the_garbage_collector_follows_custom_resource_owners(
    real_control_plane: ControlPlane, real_crds: str
) -> None:
    """A JibriPool owns its rendered jibri.conf Secret and its pods: deleting the pool removes them."""
    kc = real_control_plane.kubeconfig
    ns = new_namespace(real_control_plane, "crgc")
    kubectl(kc, "-n", ns, "apply", "-f", str(ROOT / "examples" / "pool.yaml"))
    uid = get_json(kc, "-n", ns, "jibripool", "recorders")["metadata"]["uid"]
    owned = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "recorders-config",
            "ownerReferences": [
                {"apiVersion": "jibri.dev/v1alpha1", "kind": "JibriPool", "name": "recorders", "uid": uid}
            ],
        },
    }
    kubectl(kc, "-n", ns, "create", "-f", "-", stdin=json.dumps(owned))
    kubectl(kc, "-n", ns, "delete", "jibripool", "recorders")
    # The collector learns new resources from discovery every 30 s, and retries an owner it cannot
    # map yet with a growing back-off: this waits up to ~30 s after the CRDs were installed (which
    # is why this test comes last, and the CRDs are installed by this module's second test).
    wait_for(
        lambda: gone(kc, "-n", ns, "secret", "recorders-config"), 75, "the pool's Secret to be collected"
    )
