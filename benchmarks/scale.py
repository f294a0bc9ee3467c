"""Scale: many Jibris in many environments, presence churn, and a burst of sessions at once.

For each size N (``--sizes``, default 100, 300 and 1000), a fresh world: one Prosody with ten
virtual hosts (ten Jitsi deployments: their own domain, MUC component, accounts and brewery),
the sandbox API server (a process that counts the requests it serves, see _counted_api), N
simulated Jibris, N/10 per environment, as a load generator (_loadgen: many Jibris per
process, each with its own XMPP connection, in ``--fleets`` processes), and the operator
(`jibri-operator run`, a process, one brewery connection per environment). Then:

1. **at rest**: the operator's RSS once it sees every Jibri idle (and how long that took);
2. **churn**: ``--churn-per-jibri`` presence changes per Jibri, an hour of a busy fleet
   (recordings for another controller, health flaps, leaving and rejoining the brewery),
   played at ``--churn-rate`` changes per second, in two halves. The operator's RSS after
   each half says whether it stays flat; its CPU seconds over the churn, divided by the
   presence changes it saw, is its CPU per presence. Meanwhile one environment is kept out
   of the churn: its Jibris are unhealthy, ``--wakeups`` sessions wait there, and Jibris are
   freed one at a time: the time from the freeing presence being sent to a waiting session's
   start reaching that Jibri is the presence-to-decision latency under churn;
3. **burst**: N sessions created at once (N/10 per environment) against N idle Jibris:
   creation to accepted (the Jibri's own clock) and to ``Recording`` (a watch), p50 and p99;
   sessions per second; the API writes per session (the server's count of the writes on
   sessions by the operator and by kopf, and of the Events, once kopf has posted them all;
   the environments' status writes during the burst are counted apart); the operator's peak RSS; CPU
   seconds per process (where the time goes); and, from the Jibris' own records, that every
   session was recorded exactly once.

The last lines are a table per size and the slopes between sizes (per Jibri, per session).
``--sizes 100`` is a quick run (about a minute); the default takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import gc
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from _common import CpuMeter, SessionWatcher, child_pid, percentile, phase_is, was_deleted
from _counted_api import BENCH_AGENT, CountedApiServer, writes
from _loadgen import JibriSpec, LoadFleet
from jibri_operator.api.constants import GROUP, VERSION
from jibri_sandbox.prosody import Prosody

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "scale"
WORKERS = 50  # create calls in flight at once


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--sizes", default="100,300,1000", help="Jibris (and burst sessions) per run, comma-separated"
    )
    parser.add_argument(
        "--envs", type=int, default=10, help="environments (Prosody virtual hosts), default 10"
    )
    parser.add_argument("--fleets", type=int, default=2, help="load-generator processes for the Jibris")
    parser.add_argument(
        "--churn-per-jibri", type=float, default=3, help="presence changes per Jibri (a busy hour's worth)"
    )
    parser.add_argument(
        "--churn-rate", type=float, default=30, help="presence changes per second during churn"
    )
    parser.add_argument(
        "--wakeups", type=int, default=20, help="Jibris freed for waiting sessions during churn"
    )
    parser.add_argument("--no-churn", action="store_true", help="skip the churn")
    parser.add_argument("--no-burst", action="store_true", help="skip the burst")
    parser.add_argument(
        "--operator-src", type=Path, help="run the operator from this source root (A/B comparisons)"
    )
    parser.add_argument(
        "--py-spy", action="store_true", help="record the operator with py-spy (if installed) into --keep"
    )
    parser.add_argument(
        "--keep", type=Path, default=Path(tempfile.gettempdir()), help="where the operator's log is kept"
    )
    return parser.parse_args(argv)  # fmt: skip


# -- the cluster side --------------------------------------------------------------------------


class Api:
    def __init__(self, kubeconfig: Path) -> None:
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = WORKERS + 4
        self.client = kubernetes.client.ApiClient(configuration)
        self.client.user_agent = BENCH_AGENT  # the server counts our requests apart
        self.core = kubernetes.client.CoreV1Api(self.client)
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.ext = kubernetes.client.ApiextensionsV1Api(self.client)

    def create(self, plural: str, body: dict[str, Any]) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", **body}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, body)

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name)

    def environments(self) -> dict[str, dict[str, int]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "xmppenvironments")
        return {
            item["metadata"]["name"]: dict((item.get("status") or {}).get("jibris") or {})
            for item in listed["items"]
        }


def progress(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def wait(check: Any, timeout: float, what: str, every: float = 0.1) -> float:
    """Poll ``check`` until it holds; return the seconds it took."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - began


def secret(api: Api, name: str, data: dict[str, str]) -> None:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    api.core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": name}, "data": encoded})


def set_up_cluster(api: Api, prosody: Prosody) -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if (document or {}).get("kind") == "CustomResourceDefinition":
                api.ext.create_custom_resource_definition(document)

    def established() -> bool:
        return all(
            any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])
            for crd in api.ext.list_custom_resource_definition().items
        )

    wait(established, 10, "the CRDs")
    api.core.create_namespace({"metadata": {"name": NAMESPACE}})
    secret(api, "xmpp-ca", {"ca.crt": prosody.ca_file.read_text()})
    for index, domain in enumerate(prosody.domains):
        password = secrets.token_urlsafe(12)
        jid = prosody.register("jibri-operator", password, domain.domain)
        secret(api, f"login-{index}", {"username": jid, "password": password})
        api.create("xmppenvironments", {"kind": "XmppEnvironment", "metadata": {"name": f"env{index}"}, "spec": {
            "server": {"host": prosody.host, "port": prosody.port}, "domain": domain.domain,
            "brewery": f"jibribrewery@{domain.muc_domain}",
            "controlLogin": {"secretRef": {"name": f"login-{index}"}}, "tls": {"caSecretRef": {"name": "xmpp-ca"}},
        }})  # fmt: skip


def jibri_specs(prosody: Prosody, per_env: int) -> list[JibriSpec]:
    """``per_env`` Jibris in each environment, all of one environment on its one Jibri account."""
    specs = []
    for index, domain in enumerate(prosody.domains):
        password = secrets.token_urlsafe(12)
        jid = prosody.register("jibri", password, domain.domain)
        specs += [
            JibriSpec(index, f"jibri-{index}-{n:03d}", prosody.host, prosody.port, str(prosody.ca_file),
                      f"jibribrewery@{domain.muc_domain}", jid, password)
            for n in range(per_env)
        ]  # fmt: skip
    return specs


# -- the operator's process ----------------------------------------------------------------------


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """The operator's RSS every 0.2 s, for peaks and shapes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with contextlib.suppress(OSError):
                self.samples.append((time.monotonic(), rss_mb(self.pid)))

    def peak(self, since: float) -> float:
        return max((mb for at, mb in self.samples if at >= since), default=rss_mb(self.pid))

    def stop(self) -> None:
        self._stop.set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_operator(kubeconfig: Path, log: Path, source: Path | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "jibri_operator.cli", "run", "--kubeconfig", str(kubeconfig), "-n", NAMESPACE, "--nickname", "jibri-operator-scale",
                "--metrics-host", "127.0.0.1", "--metrics-port", str(free_port())]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source.resolve()), env.get("PYTHONPATH", "")])
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)


def stop_spy(spy: subprocess.Popen[bytes]) -> None:
    """py-spy writes what it recorded when interrupted (or when its process ends)."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()


def stop_operator(operator: subprocess.Popen[bytes]) -> None:
    operator.terminate()
    try:
        operator.wait(60)
    except subprocess.TimeoutExpired:
        operator.kill()
        operator.wait()


# -- the runs ------------------------------------------------------------------------------------


class World:
    def __init__(self, size: int, args: argparse.Namespace) -> None:
        self.size, self.args = size, args
        self.envs = args.envs
        if size % self.envs:
            raise SystemExit(f"--sizes: {size} is not a multiple of --envs {self.envs}")
        self.per_env = size // self.envs
        self.out: dict[str, Any] = {"jibris": size}
        self.stack = contextlib.ExitStack()

    def __enter__(self) -> World:
        began = time.perf_counter()
        domains = [f"meet{i}.scale.test" for i in range(self.envs)]
        self.prosody = Prosody(domain=domains[0], extra_domains=domains[1:], log_level="warn")
        self.prosody.start()
        self.stack.callback(self.prosody.close)
        self.server = CountedApiServer()
        self.stack.callback(self.server.stop)
        self.api = Api(self.server.kubeconfig)
        set_up_cluster(self.api, self.prosody)
        specs = jibri_specs(self.prosody, self.per_env)
        fleets = self.args.fleets
        self.fleets = [LoadFleet(specs[p::fleets]) for p in range(fleets)]
        self.fleet_of = {spec.nickname: fleet for fleet in self.fleets for spec in fleet.specs}
        for fleet in self.fleets:
            fleet.launch()
            self.stack.callback(fleet.stop)
        progress(f"{self.size} Jibris joining their breweries")
        joined = max(fleet.joined(600) for fleet in self.fleets)
        progress(f"joined in {joined:.1f}s; starting the operator")
        self.out["setup_jibris_join_s"] = joined
        self.log = self.args.keep / f"scale-{self.size}-operator.log"
        self.operator = start_operator(self.server.kubeconfig, self.log, self.args.operator_src)
        spy_bin = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if self.args.py_spy and spy_bin:  # each ends with its process and writes then
            for name, pid in (("operator", self.operator.pid), ("apiserver", self.server.pid)):
                flame = self.args.keep / f"scale-{self.size}-{name}.py-spy.txt"  # collapsed stacks
                spy = subprocess.Popen(
                    [spy_bin, "record", "--pid", str(pid), "--format", "raw", "--gil", "-o", str(flame), "--rate", "100"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                self.stack.callback(stop_spy, spy)
        self.stack.callback(stop_operator, self.operator)
        self.rss = RssSampler(self.operator.pid)
        self.stack.callback(self.rss.stop)
        self.out["setup_operator_sees_all_idle_s"] = wait(
            lambda: self.all_idle(), 300, f"the operator to see {self.size} idle Jibris", every=0.2
        )
        self.pids = {
            "operator": self.operator.pid, "apiserver": self.server.pid, "prosody": child_pid("prosody"),
            **{f"jibris{p}": fleet.pid for p, fleet in enumerate(self.fleets)}, "bench": os.getpid(),
        }  # fmt: skip
        self.watcher = SessionWatcher(self.api.custom, NAMESPACE)
        self.stack.callback(self.watcher.stop)
        self.out["setup_s"] = time.perf_counter() - began
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def all_idle(self, busy: dict[str, int] | None = None) -> bool:
        seen = self.api.environments()
        return len(seen) == self.envs and all(
            counts.get("idle") == self.per_env - (busy or {}).get(name, 0)
            and counts.get("busy", 0) == (busy or {}).get(name, 0)
            for name, counts in seen.items()
        )

    def fleets_call(self, command: str, *args: Any, timeout: float = 120) -> list[Any]:
        for fleet in self.fleets:
            fleet.send(command, *args)
        return [fleet.answer(timeout) for fleet in self.fleets]

    def cpu(self) -> CpuMeter:
        return CpuMeter(self.pids)

    # -- at rest, and churn ---------------------------------------------------------------------

    def rest(self) -> None:
        time.sleep(3)  # what the joining left behind settles (status writes, garbage)
        self.out["rss_rest_mb"] = rss_mb(self.operator.pid)

    def churn(self) -> None:
        args = self.args
        per_fleet = int(self.size * args.churn_per_jibri / 2 / len(self.fleets))  # each of two halves
        rate = args.churn_rate / len(self.fleets)
        # env0 sits out: its Jibris turn unhealthy and sessions wait there for the wakeup probe.
        self.fleets_call("health", 0, False)
        wait(lambda: self.api.environments()["env0"].get("unhealthy") == self.per_env, 60, "env0 unhealthy")
        wakeups = min(args.wakeups, self.per_env)
        names = [f"wake-{i:03d}" for i in range(wakeups)]
        for name in names:
            self.create_session(name, 0)
        self.watcher.wait_for(names, phase_is("Pending"), 60, "the waiting sessions")
        cpu = self.cpu()
        writes_before = writes(self.server.counts())
        cpu.start()
        latencies: list[float] = []
        sent = 0
        for half in (1, 2):
            progress(f"churn, half {half}: {per_fleet * len(self.fleets)} presence changes")
            for p, fleet in enumerate(self.fleets):
                fleet.send("churn", per_fleet, rate, {0}, 1000 * half + p)
            [fleet.answer(30) for fleet in self.fleets]  # started
            if half == 1:
                for index in range(len(names)):  # free env0's Jibris one at a time during the churn
                    nickname = f"jibri-0-{index:03d}"
                    latency = self.fleet_of[nickname].call("free", nickname, 15, timeout=30)
                    if latency is None:  # counted as 15 s, and said
                        progress(f"{nickname} was freed, and no waiting session was started on it in 15 s")
                        self.out["wakeup_missed"] = self.out.get("wakeup_missed", 0) + 1
                    latencies.append(15.0 if latency is None else latency)
                    time.sleep(0.1)
            done = self.fleets_call("churn_wait", timeout=3600)
            sent += sum(sum(d["kinds"].values()) for d in done)
            self.out[f"churn_half{half}_s"] = max(d["seconds"] for d in done)
            self.out[f"churn_half{half}_worst_lag_s"] = max(d["worst_lag"] for d in done)
            self.out[f"rss_churn_half{half}_mb"] = rss_mb(self.operator.pid)
        sent += sum(self.fleets_call("restore", 120)) + len(latencies)
        busy = {"env0": wakeups}
        self.out["churn_catch_up_s"] = wait(
            lambda: self.all_idle(busy), 120, "the churn's end to show", every=0.05
        )
        cpu.stop()
        self.out["churn_presence_changes"] = sent
        self.out["churn_changes_per_s"] = sent / cpu.wall
        self.out["churn_cpu"] = {name: used for name, used in cpu.used.items()}
        self.out["churn_operator_cpu_ms_per_presence"] = cpu.used["operator"] / sent * 1000
        self.out["churn_operator_core_percent"] = cpu.used["operator"] / cpu.wall * 100
        self.out["churn_writes"] = writes(self.server.counts()) - writes_before
        self.out["churn_writes_per_presence"] = sum(self.out["churn_writes"].values()) / sent
        self.out["wakeup_ms"] = [x * 1000 for x in latencies]
        time.sleep(3)
        self.out["rss_after_churn_mb"] = rss_mb(self.operator.pid)
        # The waiting sessions are deleted (their recordings stopped) before the burst.
        for name in names:
            self.api.delete("recordingsessions", name)
        self.watcher.wait_for(names, was_deleted, 60, "the waiting sessions to go")
        wait(lambda: self.all_idle(), 60, "every Jibri idle again")

    # -- the burst ----------------------------------------------------------------------------

    def create_session(self, name: str, env: int) -> float:
        muc = self.prosody.domains[env].muc_domain
        body = {"kind": "RecordingSession", "metadata": {"name": name},
                "spec": {"environment": f"env{env}", "room": f"{name}@{muc}"}}  # fmt: skip
        before = time.time()
        self.api.create("recordingsessions", body)
        return before

    def burst(self) -> None:
        names = [(f"b{env}-{i:04d}", env) for i in range(self.per_env) for env in range(self.envs)]
        progress(f"burst: {len(names)} sessions")
        cpu = self.cpu()
        counts_before = self.server.counts()
        gc.collect()
        cpu.start()
        since = time.monotonic()
        began = time.time()
        with ThreadPoolExecutor(WORKERS) as pool:
            created = dict(
                zip((n for n, _ in names), pool.map(lambda ne: self.create_session(*ne), names), strict=True)
            )
        self.out["burst_create_calls_s"] = time.time() - began
        self.watcher.wait_for(list(created), phase_is("Recording"), 600, "every session to record")
        cpu.stop()
        self.out["burst_rss_peak_mb"] = self.rss.peak(since)
        self.out["burst_rss_hwm_mb"] = rss_mb(self.operator.pid, "VmHWM")

        # kopf posts Events in the background: let them land before the writes are counted.
        def counted() -> Counter[tuple[str, str, str]]:
            now = self.server.counts()
            now.subtract(counts_before)
            return now

        counts, deadline = counted(), time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(1)
            again = counted()
            if again == counts:
                break
            counts = again
        burst_writes = writes(counts)
        self.out["burst_writes"] = dict(burst_writes)
        # A session's own writes: kopf's finalizer, the operator's status writes, the Events.
        own = ("PATCH recordingsessions", "PATCH recordingsessions/status", "POST events")
        self.out["burst_writes_per_session"] = sum(burst_writes[w] for w in own) / len(names)
        self.out["burst_environment_status_writes"] = burst_writes["PATCH xmppenvironments/status"]
        self.out["burst_reads_per_session"] = sum(
            n for (who, verb, _), n in counts.items() if who != "bench" and verb == "GET"
        ) / len(names)
        self.out["burst_cpu"] = dict(cpu.used)
        self.out["burst_wall_s"] = cpu.wall
        records = [r for rs in self.fleets_call("records") for r in rs]
        by_room = Counter(r["room"].partition("@")[0] for r in records)
        self.out["burst_recorded_once"] = sum(1 for n in created if by_room[n] == 1)
        self.out["burst_recorded_twice_or_more"] = sum(1 for n in created if by_room[n] > 1)
        self.out["burst_never_recorded"] = sum(1 for n in created if by_room[n] == 0)
        accepted = {r["room"].partition("@")[0]: r["at"] for r in records}
        to_accepted = [accepted[n] - at for n, at in created.items() if n in accepted]
        recording = {n: self.watcher.first(n, phase_is("Recording")) for n in created}
        to_recording = [(recording[n] or 0) - at for n, at in created.items()]
        self.out["burst_to_accepted_s"] = to_accepted
        self.out["burst_to_recording_s"] = to_recording
        # The pieces, as a watcher sees them: the operator's write-ahead (Starting), the Jibri
        # accepting, and the Recording write.
        starting = {n: self.watcher.first(n, phase_is("Starting")) for n in created}
        self.out["burst_to_starting_seen_s"] = [(starting[n] or 0) - at for n, at in created.items()]
        self.out["burst_starting_seen_to_accepted_s"] = [
            accepted[n] - (starting[n] or 0) for n in created if n in accepted
        ]
        self.out["burst_accepted_to_recording_seen_s"] = [
            (recording[n] or 0) - accepted[n] for n in created if n in accepted
        ]
        self.out["burst_requests"] = {
            f"{who} {verb} {resource}": n for (who, verb, resource), n in counts.items() if n
        }
        last = max(r or 0.0 for r in recording.values())
        self.out["burst_sessions_per_s"] = len(names) / (last - began)


def summarise(out: dict[str, Any]) -> None:
    """``name: value`` lines for one size."""
    prefix = f"n{out['jibris']}_"
    for key, value in out.items():
        if isinstance(value, list):
            scale = 1 if key == "wakeup_ms" else 1000
            unit = key.removesuffix("_s").removesuffix("_ms") + "_ms"
            if value:
                print(f"{prefix}{unit}_p50: {statistics.median(value) * scale:.1f}")
                print(f"{prefix}{unit}_p99: {percentile(value, 99) * scale:.1f}")
                print(f"{prefix}{unit}_max: {max(value) * scale:.1f}")
        elif isinstance(value, dict):
            for inner, number in sorted(value.items()):
                print(f"{prefix}{key}_{inner.replace(' ', '_').replace('/', '_')}: {number:.2f}")
        elif isinstance(value, float):
            print(f"{prefix}{key}: {value:.2f}")
        else:
            print(f"{prefix}{key}: {value}")
    sys.stdout.flush()


def p(values: list[float], q: float, scale: float = 1000) -> str:
    return f"{percentile(values, q) * scale:.0f}" if values else "-"


def table(results: list[dict[str, Any]]) -> None:
    print()
    print("| Jibris | RSS at rest MB | after churn MB | burst peak MB | operator CPU per presence ms"
          " | presence -> start p50/p99 ms | to accepted p50/p99 ms | to Recording p50/p99 ms"
          " | sessions/s | API writes per session | recorded once |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        wake = r.get("wakeup_ms", [])
        print(
            f"| {r['jibris']} | {r.get('rss_rest_mb', 0):.0f} | {r.get('rss_after_churn_mb', 0):.0f}"
            f" | {r.get('burst_rss_peak_mb', 0):.0f} | {r.get('churn_operator_cpu_ms_per_presence', 0):.2f}"
            f" | {p(wake, 50, 1)}/{p(wake, 99, 1)}"
            f" | {p(r.get('burst_to_accepted_s', []), 50)}/{p(r.get('burst_to_accepted_s', []), 99)}"
            f" | {p(r.get('burst_to_recording_s', []), 50)}/{p(r.get('burst_to_recording_s', []), 99)}"
            f" | {r.get('burst_sessions_per_s', 0):.0f} | {r.get('burst_writes_per_session', 0):.2f}"
            f" | {r.get('burst_recorded_once', 0)}/{r['jibris']} |"
        )
    print()
    print(
        "| Jibris | burst wall s | "
        + " | ".join(f"{name} CPU s" for name in results[-1].get("burst_cpu", {}))
        + " |"
    )
    print("| ---: | ---: |" + " ---: |" * len(results[-1].get("burst_cpu", {})))
    for r in results:
        cpu = r.get("burst_cpu", {})
        print(
            f"| {r['jibris']} | {r.get('burst_wall_s', 0):.1f} | "
            + " | ".join(f"{v:.1f}" for v in cpu.values())
            + " |"
        )
    if len(results) > 1:
        first, last = results[0], results[-1]
        jibris = last["jibris"] - first["jibris"]
        print()
        print(
            f"slope_rss_rest_kb_per_jibri: {(last.get('rss_rest_mb', 0) - first.get('rss_rest_mb', 0)) * 1024 / jibris:.1f}"
        )
        if "burst_rss_peak_mb" in last:
            grow = [
                (
                    r["burst_rss_peak_mb"] - r["rss_after_churn_mb"]
                    if "rss_after_churn_mb" in r
                    else r["burst_rss_peak_mb"] - r["rss_rest_mb"]
                )
                for r in (first, last)
            ]
            print(f"slope_rss_burst_kb_per_session: {(grow[1] - grow[0]) * 1024 / jibris:.1f}")
            cpu = [r["burst_cpu"]["operator"] for r in (first, last)]
            print(f"slope_operator_cpu_ms_per_session: {(cpu[1] - cpu[0]) * 1000 / jibris:.2f}")
            allcpu = [sum(r["burst_cpu"].values()) for r in (first, last)]
            print(f"slope_all_cpu_ms_per_session: {(allcpu[1] - allcpu[0]) * 1000 / jibris:.2f}")
            wr = [r["burst_writes_per_session"] for r in (first, last)]
            print(f"burst_writes_per_session_{first['jibris']}_vs_{last['jibris']}: {wr[0]:.2f} {wr[1]:.2f}")
        if "churn_operator_cpu_ms_per_presence" in last:
            print("churn_operator_cpu_ms_per_presence_by_size: "
                  + " ".join(f"{r['jibris']}={r['churn_operator_cpu_ms_per_presence']:.3f}" for r in results))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    began = time.perf_counter()
    print(f"machine_load_1min: {os.getloadavg()[0]:.2f}, cores: {os.cpu_count()}")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        with World(size, args) as world:
            world.rest()
            phases = ([] if args.no_churn else [world.churn]) + ([] if args.no_burst else [world.burst])
            for phase in phases:
                try:
                    phase()
                except Exception as error:  # the figures so far are still worth printing
                    progress(f"{phase.__name__} failed: {error!r}")
                    world.out[f"{phase.__name__}_failed"] = repr(error)
                    break
            results.append(world.out)
            progress(f"{size}: done; stopping")
        summarise(world.out)
        if world.log.exists():
            print(f"n{size}_operator_log: {world.log}")
    table(results)
    print(f"machine_load_1min_at_end: {os.getloadavg()[0]:.2f}")
    print(f"total_runtime_s: {time.perf_counter() - began:.1f}")


if __name__ == "__main__":
    main()
