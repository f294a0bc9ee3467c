"""The chart with real Helm against the real control plane, the operator in-cluster, two replicas.

One release for the whole module (Helm installs are not cheap): `helm install` with
two replicas and leader election, run by the sandbox kubelet as in-cluster pods (the
operator image becomes `jibri-operator run` with the pod's service-account token and
CA at /var/run/secrets/kubernetes.io/serviceaccount, in a private mount namespace);
then a RecordingSession applied with kubectl records on a simulated Jibri; then the
leader is SIGKILLed while sessions keep arriving; then `helm upgrade` rolls the pods
over; then `helm uninstall` leaves the CRDs. The tests run in that order and share
the release. Every wait is on a condition, with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from apiserver_fixture import wait_for
from control_plane_fixture import ROOT, kubectl, new_namespace
from operator_fixture import eventually
from sim import jibri_factory

from jibri_sandbox.apiserver import kubeconfig as kubeconfig_file
from jibri_sandbox.controlplane import ControlPlane
from jibri_sandbox.jibri.simulator import SimulatedJibri
from jibri_sandbox.prosody import Prosody
from jibri_sandbox.up import Sandbox

pytestmark = pytest.mark.e2e
CHART = ROOT / "charts" / "jibri-operator"
RELEASE = "jo"
FULLNAME = "jo-jibri-operator"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
TAKEOVER_LIMIT = 10.0

# The fields of the Prometheus Operator's ServiceMonitor CRD (monitoring.coreos.com/v1) that
# the chart uses, with their types and duration pattern as the upstream CRD declares them; no
# field is left open, so the server's strict field validation checks the chart's spelling.
DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {
            "kind": "ServiceMonitor",
            "listKind": "ServiceMonitorList",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
            "categories": ["prometheus-operator"],
            "shortNames": ["smon"],
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "required": ["spec"],
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "required": ["selector"],
                                "properties": {
                                    "jobLabel": {"type": "string"},
                                    "selector": {
                                        "type": "object",
                                        "x-kubernetes-map-type": "atomic",
                                        "properties": {
                                            "matchLabels": {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            },
                                            "matchExpressions": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "required": ["key", "operator"],
                                                    "properties": {
                                                        "key": {"type": "string"},
                                                        "operator": {"type": "string"},
                                                        "values": {
                                                            "type": "array",
                                                            "items": {"type": "string"},
                                                        },
                                                    },
                                                },
                                            },
                                        },
                                    },
                                    "namespaceSelector": {
                                        "type": "object",
                                        "properties": {
                                            "any": {"type": "boolean"},
                                            "matchNames": {"type": "array", "items": {"type": "string"}},
                                        },
                                    },
                                    "endpoints": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "port": {"type": "string"},
                                                "path": {"type": "string"},
                                                "scheme": {"type": "string", "enum": ["http", "https"]},
                                                "interval": {"type": "string", "pattern": DURATION},
                                                "scrapeTimeout": {"type": "string", "pattern": DURATION},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def helm(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["helm", "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=120
    )
    if check and done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done


def values_file(directory: Path, values: dict[str, Any]) -> Path:
    path = directory / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@dataclass
class Release:
    """The installed chart, its namespace, and what the tests put in it."""

    sandbox: Sandbox
    cp: ControlPlane
    namespace: str
    directory: Path
    core: Any
    coordination: Any
    custom: Any
    installed: bool = True
    brewery: str = ""
    timeline: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.cp.kubeconfig

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        return kubectl(self.kubeconfig, "-n", self.namespace, *args, stdin=stdin, check=check)

    def pods(self) -> list[Any]:
        listed = self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR)
        return [p for p in listed.items if p.metadata.deletion_timestamp is None]

    def ready(self, pod: Any) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())

    def holder(self) -> str:
        try:
            lease = self.coordination.read_namespaced_lease(FULLNAME, self.namespace)
        except kubernetes.client.exceptions.ApiException as error:
            if error.status == 404:
                return ""
            raise
        return str(lease.spec.holder_identity or "")

    def leader_pod(self) -> str:
        """The pod named in the Lease (identities are POD_NAME_<random>)."""
        return self.holder().rpartition("_")[0]

    def one_leader(self) -> tuple[str, list[str]] | None:
        """(leader pod, standby pods) once exactly the Lease's holder is Ready and every pod runs."""
        pods, leader = self.pods(), self.leader_pod()
        ready = [p.metadata.name for p in pods if self.ready(p)]
        running = all(p.status.phase == "Running" for p in pods)
        if ready != [leader] or not running or len(pods) < 2:
            return None
        return leader, [p.metadata.name for p in pods if p.metadata.name != leader]

    def phase(self, name: str) -> str | None:
        try:
            session = self.custom.get_namespaced_custom_object(
                "jibri.dev", "v1alpha1", self.namespace, "recordingsessions", name
            )
        except kubernetes.client.exceptions.ApiException as error:
            if error.status == 404:
                return None
            raise
        return (session.get("status") or {}).get("phase")

    def operator_logs(self) -> str:
        logs = []
        for directory in sorted((self.sandbox.directory / "kubelet" / "logs").glob(f"{self.namespace}_*")):
            for log in sorted(directory.glob("operator/*.log")):
                lines = log.read_text(errors="replace").splitlines()[-25:]
                logs.append(f"--- {directory.name} {log.name}\n" + "\n".join(lines))
        return "\n".join(logs)


@pytest.fixture(scope="module")
def release(
    real_sandbox: Sandbox,
    real_control_plane: ControlPlane,
    real_crds: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    """`helm install` with two replicas, watching its own namespace; uninstalled at the end."""
    namespace = new_namespace(real_control_plane, "helm")
    directory = tmp_path_factory.mktemp("helm")
    values = values_file(directory, {"replicaCount": 2, "watchNamespaces": [namespace]})
    helm(real_control_plane.kubeconfig, "install", RELEASE, str(CHART), "-n", namespace, "-f", str(values))
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(str(real_control_plane.kubeconfig), client_configuration=configuration)
    api = kubernetes.client.ApiClient(configuration)
    installed = Release(
        real_sandbox,
        real_control_plane,
        namespace,
        directory,
        kubernetes.client.CoreV1Api(api),
        kubernetes.client.CoordinationV1Api(api),
        kubernetes.client.CustomObjectsApi(api),
    )
    try:
        yield installed
    finally:
        if installed.installed:
            helm(real_control_plane.kubeconfig, "uninstall", RELEASE, "-n", namespace, check=False)
        api.close()


@pytest.fixture(scope="module")
async def jibris(release: Release, prosody: Prosody) -> AsyncIterator[list[SimulatedJibri]]:
    """An XmppEnvironment applied with kubectl, and eight simulated Jibris in its brewery."""
    release.brewery = f"brewery-{uuid.uuid4().hex[:8]}@{prosody.muc_domain}"

    def account(prefix: str = "user", domain: str | None = None) -> tuple[str, str]:
        password = secrets.token_urlsafe(12)
        return prosody.register(f"{prefix}-{uuid.uuid4().hex[:8]}", password, domain), password

    jid, password = account("operator")
    await asyncio.to_thread(
        release.kubectl, "create", "secret", "generic", "xmpp-ca", f"--from-file=ca.crt={prosody.ca_file}"
    )
    await asyncio.to_thread(
        release.kubectl,
        "create",
        "secret",
        "generic",
        "meet-login",
        f"--from-literal=username={jid}",
        f"--from-literal=password={password}",
    )
    environment = {
        "apiVersion": "jibri.dev/v1alpha1",
        "kind": "XmppEnvironment",
        "metadata": {"name": "meet"},
        "spec": {
            "server": {"host": prosody.host, "port": prosody.port},
            "domain": prosody.domain,
            "brewery": release.brewery,
            "controlLogin": {"secretRef": {"name": "meet-login"}},
            "tls": {"caSecretRef": {"name": "xmpp-ca"}},
        },
    }
    await asyncio.to_thread(release.kubectl, "apply", "-f", "-", stdin=json.dumps(environment))
    async with jibri_factory(prosody, release.brewery, account) as make:
        fleet = await make(8, recording_duration=4.0)
        yield fleet


def session_manifest(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "jibri.dev/v1alpha1",
            "kind": "RecordingSession",
            "metadata": {"name": name},
            "spec": {"environment": "meet", "room": f"{name}@conference.localhost", "mode": "file"},
        }
    )


def recorded(fleet: list[SimulatedJibri]) -> dict[str, int]:
    """Recordings per session id, from the Jibris' own records."""
    counts: dict[str, int] = {}
    for jibri in fleet:
        for entry in jibri.history:
            counts[entry.session_id] = counts.get(entry.session_id, 0) + 1
    return counts


def starts(fleet: list[SimulatedJibri]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for jibri in fleet:
        for start in jibri.starts:
            counts[start.session_id or ""] = counts.get(start.session_id or "", 0) + 1
    return counts


async def wait_connected(release: Release, timeout: float = 60) -> None:
    def connected() -> bool:
        environment = release.custom.get_namespaced_custom_object(
            "jibri.dev", "v1alpha1", release.namespace, "xmppenvironments", "meet"
        )
        return bool((environment.get("status") or {}).get("connected"))

    try:
        await eventually(connected, timeout, "the in-cluster operator to join the brewery")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{release.operator_logs()}") from None


# -- the chart, every object, on the real server ------------------------------------------------------------


def test_every_rendered_object_is_accepted_by_a_server_side_dry_run(
    real_control_plane: ControlPlane, tmp_path: Path
) -> None:
    """All toggles on (ServiceMonitor, PDB, dashboard), in both RBAC scopes, and without election."""
    kc = real_control_plane.kubeconfig
    kubectl(kc, "apply", "-f", "-", stdin=json.dumps(SERVICE_MONITOR_CRD))
    kubectl(kc, "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com")
    namespace = new_namespace(real_control_plane, "dry")
    everything = {
        "replicaCount": 2,
        "podDisruptionBudget": {"enabled": True},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "grafanaDashboard": {"enabled": True},
    }
    variants = {
        "cluster": everything,
        "namespaced": {**everything, "rbac": {"scope": "namespaced"}, "watchNamespaces": [namespace]},
        "single": {"leaderElection": {"enabled": False}},
    }
    try:
        for name, values in variants.items():
            rendered = subprocess.run(
                [
                    "helm",
                    "template",
                    RELEASE,
                    str(CHART),
                    "-n",
                    namespace,
                    "-f",
                    str(values_file(tmp_path, values)),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc}
            accepted = subprocess.run(
                ["kubectl", "--kubeconfig", str(kc), "apply", "--dry-run=server", "-f", "-"],
                input=rendered,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert accepted.returncode == 0, f"{name}: the server refused:\n{accepted.stderr}"
            assert "Warning" not in accepted.stderr, f"{name}: {accepted.stderr}"
            assert len(accepted.stdout.splitlines()) == len([d for d in yaml.safe_load_all(rendered) if d])
            if name == "cluster":
                assert {"ServiceMonitor", "PodDisruptionBudget", "ConfigMap", "Deployment"} <= kinds
    finally:
        kubectl(kc, "delete", "crd", "servicemonitors.monitoring.coreos.com", "--wait=false", check=False)


# -- install: the operator in-cluster, one leader --------------------------------------------------------


def test_helm_install_runs_two_replicas_in_cluster_and_one_leads(release: Release) -> None:
    found = wait_for(release.one_leader, 120, "one Ready leader holding the Lease and a standby")
    leader, (standby,) = found
    table = release.kubectl("get", "pods", "-l", SELECTOR, "--no-headers")
    ready_column = {line.split()[0]: line.split()[1] for line in table.splitlines()}
    assert ready_column == {leader: "1/1", standby: "0/1"}, table
    print(f"\n{table}\n{release.kubectl('get', 'lease', FULLNAME)}")
    # The standby's readiness probe says why it is not Ready: /readyz answers 503 (body "standby").
    wait_for(
        lambda: (
            "HTTP probe failed with statuscode: 503"
            in release.kubectl(
                "get", "events", "--field-selector", f"involvedObject.name={standby},reason=Unhealthy"
            )
        ),
        30,
        "the standby's readiness probe to be refused",
    )
    # The operator's only credentials are the projected token the kubelet mounted for the pod:
    # the chart's ServiceAccount, bound to this very pod.
    pod = release.core.read_namespaced_pod(leader, release.namespace)
    volume = next(v.name for v in pod.spec.volumes if v.name.startswith("kube-api-access-"))
    files = release.sandbox.directory / "kubelet" / "pods" / pod.metadata.uid / "volumes" / volume
    as_pod = release.directory / "pod.kubeconfig"
    kubeconfig_file.write(
        as_pod, release.cp.url, (files / "ca.crt").read_bytes(), (files / "token").read_text()
    )
    me = json.loads(kubectl(as_pod, "auth", "whoami", "-o", "json"))["status"]["userInfo"]
    assert me["username"] == f"system:serviceaccount:{release.namespace}:{FULLNAME}"
    assert me["extra"]["authentication.kubernetes.io/pod-name"] == [leader]
    assert {"name": "tmp", "mountPath": "/tmp"} in [
        {"name": m.name, "mountPath": m.mount_path} for m in pod.spec.containers[0].volume_mounts
    ]
    # Helm keeps the CRDs out of the release: nothing it tracks, nothing it deletes.
    manifest = helm(release.kubeconfig, "get", "manifest", RELEASE, "-n", release.namespace).stdout
    assert "CustomResourceDefinition" not in manifest and "kind: Deployment" in manifest


def test_a_pod_disruption_budget_cannot_protect_a_leader_only_ready_pair(release: Release) -> None:
    """Why the chart's PDB is off by default: the unready standby already uses up maxUnavailable 1."""
    leader, _ = wait_for(release.one_leader, 60, "one leader")
    release.kubectl("create", "pdb", "probe-budget", f"--selector={SELECTOR}", "--max-unavailable=1")
    try:
        wait_for(
            lambda: (
                json.loads(release.kubectl("get", "pdb", "probe-budget", "-o", "json"))
                .get("status", {})
                .get("expectedPods")
                == 2
            ),
            30,
            "the disruption controller to count the pods",
        )
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": leader}}
        refused = release.kubectl(
            "create", "--raw", f"/api/v1/namespaces/{release.namespace}/pods/{leader}/eviction", "-f", "-",
            stdin=json.dumps(eviction), check=False,
        )  # fmt: skip
        assert "disruption budget" in refused, refused
    finally:
        release.kubectl("delete", "pdb", "probe-budget")


# -- a session applied with kubectl ---------------------------------------------------------------------


async def test_a_recording_session_applied_with_kubectl_reaches_recording(
    release: Release, jibris: list[SimulatedJibri]
) -> None:
    await wait_connected(release)
    await asyncio.to_thread(release.kubectl, "apply", "-f", "-", stdin=session_manifest("first"))
    await eventually(lambda: release.phase("first") == "Recording", 30, "first to be Recording")
    uid = await asyncio.to_thread(
        release.kubectl, "get", "recordingsession", "first", "-o", "jsonpath={.metadata.uid}"
    )
    assert recorded(jibris) == {uid: 1}
    await eventually(lambda: release.phase("first") == "Completed", 30, "first to end (4 s recordings)")


# -- two replicas, one actor: kill the leader while sessions arrive ----------------------------------------


async def test_killing_the_leader_hands_over_within_10s_and_no_session_is_lost_or_doubled(
    release: Release, jibris: list[SimulatedJibri]
) -> None:
    leader, (standby,) = await eventually(release.one_leader, 60, "one leader")
    await wait_connected(release)
    names = [f"handover-{i:02d}" for i in range(16)]
    arrivals: dict[str, float] = {}

    async def arrive() -> None:  # one session every 0.5 s, before, during and after the handover
        for name in names:
            await asyncio.to_thread(release.kubectl, "apply", "-f", "-", stdin=session_manifest(name))
            arrivals[name] = time.monotonic()
            await asyncio.sleep(0.5)

    producer = asyncio.create_task(arrive())
    await eventually(lambda: release.phase(names[2]) == "Recording", 30, "the first sessions to record")
    old_holder = await asyncio.to_thread(release.holder)
    nonce = uuid.uuid4().hex[:8]
    killed = time.monotonic()
    await asyncio.to_thread(
        release.kubectl, "annotate", "pod", leader, f"sandbox.jibri.dev/fault=crash:{nonce}"
    )
    new_holder = await eventually(
        lambda: (h := release.holder()) not in ("", old_holder) and h, 30, "another replica to take the Lease"
    )
    took_lease = time.monotonic() - killed
    await eventually(
        lambda: release.one_leader() is not None and release.leader_pod() == standby, 30, "standby Ready"
    )
    took_ready = time.monotonic() - killed
    await producer
    after = [name for name in names if arrivals[name] > killed]
    print(
        f"\nleader {leader} SIGKILLed; {standby} holds the Lease after {took_lease:.1f}s and is Ready after "
        f"{took_ready:.1f}s ({len(after)} of {len(names)} sessions arrived after the kill)"
    )
    assert new_holder.startswith(standby + "_"), new_holder
    assert took_lease < TAKEOVER_LIMIT, f"took {took_lease:.1f}s"
    try:
        await eventually(
            lambda: all(release.phase(name) == "Completed" for name in names), 90, "every session to complete"
        )
    except AssertionError as error:
        phases = {name: release.phase(name) for name in names}
        raise AssertionError(f"{error}: {phases}\n{release.operator_logs()}") from None
    uids = {
        name: (
            await asyncio.to_thread(
                release.kubectl, "get", "recordingsession", name, "-o", "jsonpath={.metadata.uid}"
            )
        )
        for name in names
    }
    counts, started = recorded(jibris), starts(jibris)
    assert {name: counts.get(uid, 0) for name, uid in uids.items()} == dict.fromkeys(names, 1), (
        "each exactly once"
    )
    assert {name: started.get(uid, 0) for name, uid in uids.items()} == dict.fromkeys(names, 1), (
        "one start each"
    )
    # The killed replica came back, as a standby.
    await eventually(
        lambda: release.one_leader() == (standby, [leader]), 60, "the killed replica back as the standby"
    )
    pod = release.core.read_namespaced_pod(leader, release.namespace)
    assert pod.status.container_statuses[0].restart_count >= 1


# -- upgrade and uninstall ------------------------------------------------------------------------------


async def test_helm_upgrade_rolls_both_replicas_over_and_hands_over_cleanly(
    release: Release, jibris: list[SimulatedJibri]
) -> None:
    leader, _ = await eventually(release.one_leader, 60, "one leader")
    before = {p.metadata.name for p in await asyncio.to_thread(release.pods)}
    values = values_file(
        release.directory, {"replicaCount": 2, "watchNamespaces": [release.namespace], "logFormat": "json"}
    )
    holders: list[tuple[float, str]] = []

    async def watch_lease() -> None:  # who holds the Lease, every 100 ms, through the rollout
        while True:
            try:
                holder = await asyncio.to_thread(release.holder)
            except Exception as error:  # a slow or refused read on a busy machine: the next one will do
                print(f"reading the Lease failed: {error!r}")
            else:
                if not holders or holders[-1][1] != holder:
                    holders.append((time.monotonic(), holder))
            await asyncio.sleep(0.1)

    watcher = asyncio.create_task(watch_lease())
    began = time.monotonic()
    await asyncio.to_thread(
        helm, release.kubeconfig, "upgrade", RELEASE, str(CHART), "-n", release.namespace, "-f", str(values)
    )

    def rolled() -> tuple[str, list[str]] | None:
        found = release.one_leader()
        pods = {p.metadata.name for p in release.pods()}
        return found if found is not None and not pods & before else None

    new_leader, _ = await eventually(rolled, 120, "two new pods, one of them leading")
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    history = " -> ".join(holder or "(released)" for _, holder in holders)
    assert holders and holders[0][1].startswith(leader + "_"), history
    # "" once released (or the new holder at once, if it took over between two reads)
    released = next((at for at, holder in holders if holder != holders[0][1]), None)
    taken = next((at for at, holder in holders if holder.startswith(new_leader + "_")), None)
    assert released is not None and taken is not None, f"the Lease never changed hands: {history}"
    print(
        f"\nhelm upgrade: {leader} released the Lease {released - began:.1f}s after the upgrade began, "
        f"{new_leader} took it {taken - released:.1f}s later and was Ready after {time.monotonic() - began:.1f}s "
        f"(holders: {history})"
    )
    # The new pods are standbys by then (handoverDelaySeconds), unless the machine is slower to start
    # them than that; either way the takeover is within the limit a killed leader has.
    assert taken - released < TAKEOVER_LIMIT, history
    revision = json.loads(
        helm(release.kubeconfig, "status", RELEASE, "-n", release.namespace, "-o", "json").stdout
    )
    assert revision["version"] == 2 and revision["info"]["status"] == "deployed"
    await wait_connected(release)
    await asyncio.to_thread(release.kubectl, "apply", "-f", "-", stdin=session_manifest("after-upgrade"))
    await eventually(lambda: release.phase("after-upgrade") == "Recording", 30, "a session after the upgrade")
    await eventually(lambda: release.phase("after-upgrade") == "Completed", 30, "it to end before uninstall")


def test_helm_uninstall_leaves_the_crds_and_the_custom_resources(release: Release) -> None:
    helm(release.kubeconfig, "uninstall", RELEASE, "-n", release.namespace)
    release.installed = False
    wait_for(lambda: not release.pods(), 60, "the operator pods to be gone")
    crds = kubectl(release.kubeconfig, "get", "crd", "-o", "name").split()
    for plural in ("xmppenvironments", "recordingsessions", "jibripools"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{plural}.jibri.dev" in crds
    assert (
        release.kubectl("get", "xmppenvironment", "meet", "-o", "name").strip()
        == "xmppenvironment.jibri.dev/meet"
    )
    assert "handover-00" in release.kubectl("get", "recordingsessions", "-o", "name")
    assert not release.kubectl("get", "deployment,serviceaccount,role", "-l", SELECTOR, "-o", "name").strip()
