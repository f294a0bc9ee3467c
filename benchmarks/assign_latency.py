"""Assignment latency through the whole system: RecordingSession created -> a Jibri records.

    python benchmarks/assign_latency.py [--control-plane emulated|real]

The sandbox API server (a process; or with `--control-plane real`, etcd and kube-apiserver
built from the pins, the operator logged in as manifests/rbac.yaml's ServiceAccount), Prosody,
100 simulated Jibris (a process, see _common.Fleet) and the operator (`jibri-operator run`, a
process). First 20 sessions one
at a time (solo: latency without queueing), then three waves of 100 created at once from
a thread pool (burst); between waves the sessions are deleted and the Jibris seen idle.

Per session: the wall time just before its create call, the Jibri's wall time when it
accepted the start (ReceivedStart.received_at), and the arrival time of every watch event
on it. Prints one `name: value` line per figure, for solo_ and burst_:

- create_to_accepted (the target: p99 < 100 ms) and create_to_recording, p50/p99/max;
- the pieces, as seen from outside the operator: the create call; create -> the ADDED
  event reaches a watcher; create -> kopf's finalizer write and the operator's first status
  write seen (with a Jibri free, that is already the write-ahead: sessionId and phase
  Starting); that -> the Jibri accepts; accepted -> Recording;
- wakeup: sessions wait in Pending while every Jibri is unhealthy; then one Jibri at a time
  turns healthy, and the time from its presence being sent to a waiting session's start
  reaching it says how fast presence (not polling) starts waiting sessions;
- per wave: sessions per second (100 / first create -> last Recording);
- CPU seconds each process used (operator, API server, Prosody, Jibris, this one), per
  session and as a share of a core: with 2 cores, this says who the bottleneck is;
- how often the operator's API client opened an extra connection (its pool is full).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from _common import (
    CpuMeter,
    Fleet,
    SessionWatcher,
    XmppSite,
    account,
    child_pid,
    phase_is,
    report,
    was_deleted,
)
from jibri_operator.api.constants import FINALIZER, GROUP, VERSION
from jibri_sandbox.apiserver.testing import start_process
from jibri_sandbox.controlplane import ControlPlane
from jibri_sandbox.controlplane.binaries import pinned_bin
from jibri_sandbox.prosody import Prosody

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
KEPT_LOG = Path(tempfile.gettempdir()) / "assign_latency-operator.log"  # kept after the run
JIBRIS = 100
WAVES = 3
SOLO = 20  # sessions created one at a time, before the waves
WORKERS = 50  # create calls in flight at once


class Api:
    def __init__(self, kubeconfig: Path) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = WORKERS + 4
        self.client = kubernetes.client.ApiClient(configuration)
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.ext = kubernetes.client.ApiextensionsV1Api(self.client)

    def create(self, plural: str, body: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", **body}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, plural, name
        )
        return result


def wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def set_up_cluster(api: Api, prosody: Prosody, brewery: str) -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if (document or {}).get("kind") == "CustomResourceDefinition":
                api.ext.create_custom_resource_definition(document)

    def established() -> bool:
        crds = api.ext.list_custom_resource_definition().items
        return all(
            any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))
            for crd in crds
        )

    def served() -> bool:  # kube-apiserver answers 429 for a new resource while its storage starts
        with contextlib.suppress(kubernetes.client.exceptions.ApiException):
            for plural in ("xmppenvironments", "recordingsessions"):
                api.custom.list_cluster_custom_object(GROUP, VERSION, plural)
            return True
        return False

    wait(established, 30, "the CRDs")
    wait(served, 30, "the custom resources to be served")
    api.core.create_namespace({"metadata": {"name": NAMESPACE}})
    jid, password = account(prosody, "operator")
    secrets = {
        "login": {"username": jid, "password": password},
        "xmpp-ca": {"ca.crt": prosody.ca_file.read_text()},
    }
    for name, data in secrets.items():
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        api.core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": name}, "data": encoded})
    api.create("xmppenvironments", {"kind": "XmppEnvironment", "metadata": {"name": "meet"}, "spec": {
        "server": {"host": prosody.host, "port": prosody.port}, "domain": prosody.domain, "brewery": brewery,
        "controlLogin": {"secretRef": {"name": "login"}}, "tls": {"caSecretRef": {"name": "xmpp-ca"}},
    }})  # fmt: skip


def has_finalizer(_t: str, o: dict[str, Any]) -> bool:
    return FINALIZER in (o["metadata"].get("finalizers") or [])


def has_session_id(_t: str, o: dict[str, Any]) -> bool:
    return bool((o.get("status") or {}).get("sessionId"))


def create_session(api: Api, prosody: Prosody, name: str) -> tuple[str, float, float]:
    body = {"kind": "RecordingSession", "metadata": {"name": name},
            "spec": {"environment": "meet", "room": f"{name}@{prosody.muc_domain}"}}  # fmt: skip
    before = time.time()
    api.create("recordingsessions", body)
    return name, before, time.time()


def run_wave(
    api: Api, pool: ThreadPoolExecutor, watcher: SessionWatcher, prosody: Prosody, wave: int
) -> list[tuple[str, float, float]]:
    """Create 100 sessions at once; wait for all to record. Returns (name, before, after) per create."""
    names = [f"w{wave}-{i:03d}" for i in range(JIBRIS)]
    began = time.time()
    created = list(pool.map(lambda name: create_session(api, prosody, name), names))
    watcher.wait_for(names, phase_is("Recording"), 60, f"wave {wave} to reach Recording")
    last = max(watcher.first(n, phase_is("Recording")) or 0.0 for n in names)
    print(f"wave{wave}_create_calls_total_ms: {(max(c[2] for c in created) - began) * 1000:.1f}")
    print(f"wave{wave}_all_recording_ms: {(last - began) * 1000:.1f}")
    print(f"wave{wave}_sessions_per_second: {len(names) / (last - began):.1f}")
    return created


def run_solo(api: Api, watcher: SessionWatcher, prosody: Prosody) -> list[tuple[str, float, float]]:
    """One session at a time, each waited for until it records: latency without queueing."""
    created = []
    for index in range(SOLO):
        created.append(create_session(api, prosody, f"solo-{index:03d}"))
        watcher.wait_for([created[-1][0]], phase_is("Recording"), 30, "a solo session to record")
    return created


WAKEUPS = 20


def env_jibris(api: Api) -> dict[str, int]:
    return dict((api.get("xmppenvironments", "meet").get("status") or {}).get("jibris") or {})


def run_wakeup(api: Api, watcher: SessionWatcher, fleet: Fleet, prosody: Prosody) -> list[str]:
    """Waiting sessions, then Jibris freed one by one; report Jibri freed -> its start accepted."""
    for index in range(JIBRIS):
        fleet.call("flip", index)  # unhealthy: not selectable
    wait(lambda: env_jibris(api).get("unhealthy") == JIBRIS, 30, "every Jibri to look unhealthy")
    names = [create_session(api, prosody, f"wake-{i:03d}")[0] for i in range(WAKEUPS)]
    watcher.wait_for(names, phase_is("Pending"), 30, "the sessions to wait")
    latencies = []
    for index in range(WAKEUPS):
        freed = fleet.call("flip", index)  # healthy again: its presence is the wakeup
        deadline = time.monotonic() + 10
        while True:
            accepted = [s["at"] for s in fleet.starts() if s["room"].startswith("wake-")]
            if len(accepted) > index:
                latencies.append(sorted(accepted)[index] - freed)
                break
            if time.monotonic() > deadline:
                raise TimeoutError("a freed Jibri was not given a waiting session")
            time.sleep(0.002)
    for index in range(WAKEUPS, JIBRIS):
        fleet.call("flip", index)
    report("wakeup_jibri_freed_to_accepted", latencies)
    return names


def analyse(
    prefix: str, watcher: SessionWatcher, created: list[tuple[str, float, float]], accepted: dict[str, float]
) -> None:
    pieces: dict[str, list[float]] = {}
    writes = []
    for name, before, after in created:
        seen = {
            "added": watcher.first(name, lambda t, _o: t == "ADDED"),
            "finalizer": watcher.first(name, has_finalizer),
            "session_id": watcher.first(name, has_session_id),
            "starting": watcher.first(name, phase_is("Starting")),
            "recording": watcher.first(name, phase_is("Recording")),
        }
        at = {"before": before, "after": after, "accepted": accepted[name]}
        for key, value in seen.items():
            assert value is not None, f"{name}: no {key} event"
            at[key] = value
        for piece, (start, end) in {
            "create_to_accepted": ("before", "accepted"),
            "create_to_recording": ("before", "recording"),
            "create_call": ("before", "after"),
            "create_to_added_seen": ("before", "added"),
            "create_to_finalizer_seen": ("before", "finalizer"),
            "create_to_session_id_seen": ("before", "session_id"),
            "session_id_to_starting_seen": ("session_id", "starting"),
            "session_id_seen_to_accepted": ("session_id", "accepted"),
            "starting_seen_to_accepted": ("starting", "accepted"),
            "accepted_to_recording_seen": ("accepted", "recording"),
        }.items():
            pieces.setdefault(piece, []).append(at[end] - at[start])
        writes.append(sum(1 for t, _, _ in watcher.events[name] if t <= at["recording"]) - 1)
    for piece, values in pieces.items():
        report(f"{prefix}_{piece}", values)
    print(f"{prefix}_writes_per_session_until_recording: {min(writes)}..{max(writes)}")


def delete_all(
    api: Api, pool: ThreadPoolExecutor, watcher: SessionWatcher, fleet: Fleet, names: list[str]
) -> None:
    """Delete the sessions; wait until they are gone and every Jibri is idle again."""
    list(pool.map(lambda n: api.custom.delete_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "recordingsessions", n), names))  # fmt: skip
    watcher.wait_for(names, was_deleted, 60, "the sessions to go")
    still_busy = fleet.call("wait_idle", 30)
    for room in still_busy:  # a deleted session whose Jibri still records: show what the watch saw
        name = room.partition("@")[0]
        trail = [
            (
                t,
                (o.get("status") or {}).get("phase"),
                o["metadata"].get("finalizers"),
                o["metadata"].get("deletionTimestamp"),
            )
            for _, t, o in watcher.events.get(name, [])
        ]
        print(f"still recording after deletion: {name}: {trail}", file=sys.stderr)
    if still_busy:
        raise RuntimeError(f"{len(still_busy)} Jibris still record deleted sessions")


class ControlPlaneUnderTest:
    """The API server the operator meets: the emulation, or etcd + kube-apiserver (+ the controller
    manager, as in a cluster) with the operator logged in as manifests/'s ServiceAccount."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        if kind == "emulated":
            self.emulated = start_process(directory / "api")
            self.kubeconfig = self.operator_kubeconfig = self.emulated.kubeconfig
            self.pids: dict[str, int | None] = {"apiserver": self.emulated.process.pid}
            return
        self.real = ControlPlane(directory / "cp").start()
        self.kubeconfig = self.real.kubeconfig
        manifests = ROOT / "manifests"
        subprocess.run(
            ["kubectl", "--kubeconfig", str(self.kubeconfig), "apply",
             "-f", str(manifests / "namespace.yaml"), "-f", str(manifests / "rbac.yaml")],
            check=True, capture_output=True,
        )  # fmt: skip
        wait(
            lambda: self.real.api_status("serviceaccounts/jibri-operator", "jibri-operator") == 200,
            30,
            "the SA",
        )
        self.operator_kubeconfig = self.real.service_account_kubeconfig("jibri-operator", "jibri-operator")
        self.pids = {name.replace("-", "_"): process.pid for name, process in self.real.processes.items()}

    def stop(self) -> None:
        if self.kind == "emulated":
            self.emulated.stop()
        else:
            self.real.stop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Assignment latency through the whole system")
    parser.add_argument(
        "--control-plane",
        choices=("emulated", "real"),
        default="emulated",
        help="the sandbox API server (default), or etcd and kube-apiserver built from the pins",
    )
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    if (pinned := pinned_bin()) is not None:  # the pinned kubectl, as under make
        os.environ["PATH"] = f"{pinned}{os.pathsep}{os.environ.get('PATH', '')}"
    print(f"control_plane: {args.control_plane}")
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        server = ControlPlaneUnderTest(args.control_plane, Path(tmp))
        prosody = Prosody()
        prosody.start()
        fleet = operator = watcher = None
        try:
            api = Api(server.kubeconfig)
            brewery = f"brewery-{uuid.uuid4().hex[:8]}@{prosody.muc_domain}"
            set_up_cluster(api, prosody, brewery)
            accounts = [account(prosody, "jibri") for _ in range(JIBRIS)]
            fleet = Fleet(XmppSite.of(prosody, brewery), accounts)
            print(f"setup_jibris_join_s: {fleet.start():.2f}")
            log = Path(tmp) / "operator.log"
            with log.open("wb") as out:
                operator = subprocess.Popen(
                    [sys.executable, "-m", "jibri_operator.cli", "run", "--kubeconfig", str(server.operator_kubeconfig),
                     "-n", NAMESPACE, "--nickname", "jibri-operator-bench", "--metrics-port", "0"],
                    stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )  # fmt: skip
            ready = time.perf_counter()

            def all_idle() -> bool:
                status = api.get("xmppenvironments", "meet").get("status") or {}
                return (status.get("jibris") or {}).get("idle") == JIBRIS

            wait(all_idle, 60, "the operator to see 100 idle Jibris")
            print(f"setup_operator_ready_s: {time.perf_counter() - ready:.2f}")
            watcher = SessionWatcher(api.custom, NAMESPACE)
            pids = {
                "operator": operator.pid, **server.pids, "prosody": child_pid("prosody"),
                "jibris": fleet.pid, "bench": os.getpid(),
            }  # fmt: skip
            solo_cpu, burst_cpu = CpuMeter(pids), CpuMeter(pids)
            with ThreadPoolExecutor(WORKERS) as pool:
                list(pool.map(lambda _: api.core.read_namespace(NAMESPACE), range(WORKERS)))  # warm the pool
                solo_cpu.start()
                solo = run_solo(api, watcher, prosody)
                solo_cpu.stop()
                delete_all(api, pool, watcher, fleet, [c[0] for c in solo])
                wait(all_idle, 30, "the operator to see the Jibris idle")
                delete_all(api, pool, watcher, fleet, run_wakeup(api, watcher, fleet, prosody))
                wait(all_idle, 30, "the operator to see the Jibris idle")
                waves: list[tuple[str, float, float]] = []
                for wave in range(WAVES):
                    burst_cpu.start()
                    waves += run_wave(api, pool, watcher, prosody, wave)
                    burst_cpu.stop()
                    if wave < WAVES - 1:
                        delete_all(api, pool, watcher, fleet, [c[0] for c in waves[-JIBRIS:]])
                        wait(all_idle, 30, "the operator to see the Jibris idle")
            solo_cpu.print("solo", SOLO)
            burst_cpu.print("burst", len(waves))
            accepted = {s["room"].partition("@")[0]: s["at"] for s in fleet.starts()}
            analyse("solo", watcher, solo, accepted)
            analyse("burst", watcher, waves, accepted)
        finally:
            if watcher is not None:
                watcher.stop()
            if operator is not None:
                operator.terminate()
                try:
                    operator.wait(20)
                except subprocess.TimeoutExpired:
                    operator.kill()
                shutil.copy(Path(tmp) / "operator.log", KEPT_LOG)
            if fleet is not None:
                fleet.stop()
            prosody.close()
            server.stop()
    # The operator's API client pools cpu_count() * 5 connections (the client's default) for its
    # 32 executor threads; each concurrent call beyond that opens a new TLS connection and logs this.
    print(f"operator_pool_full_warnings: {KEPT_LOG.read_text().count('Connection pool is full')}")
    print(f"operator_log: {KEPT_LOG}")
    print(f"total_runtime_s: {time.perf_counter() - began:.1f}")


if __name__ == "__main__":
    main()
