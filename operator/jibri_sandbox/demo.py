"""`jibri-sandbox demo --dir DIR`: the whole system, end to end, on the embedded sandbox.

It starts the sandbox (API server, kubelet, a real Prosody), installs the CRDs,
starts the operator, connects an XmppEnvironment, creates the JibriPool of
examples/pool.yaml (its pods are simulated Jibri processes reading the
jibri.conf the operator renders) and one hand-run Jibri speaking the legacy
dialect, then applies the three RecordingSessions in examples/. A session that
finds no idle Jibri waits in Pending while the pool scales up. Every phase
change is printed as the watch delivers it; each session ends Completed (one by
its maxDuration, two by `spec.stop`), and the pool then removes its surplus
idle pods. Then it keeps serving so you can
look around with kubectl, until Ctrl-C (or it exits at once with --no-hold).

Everything the operator sees, it sees through its kubeconfig and the XMPP
wire, exactly as on a real cluster. On the real control plane (`--control-plane
real`) it logs in as the ServiceAccount manifests/rbac.yaml binds, with exactly
the rules it ships, as it would once installed with `kubectl apply -k manifests/`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from jibri_operator.api.types import Dialect
from jibri_sandbox.jibri import SandboxSettings, render_sandbox_jibri_conf, sandbox_environment
from jibri_sandbox.up import CONTROL_PLANES, Sandbox

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
OPERATOR_NAMESPACE = OPERATOR_ACCOUNT = "jibri-operator"  # manifests/rbac.yaml's ServiceAccount
SESSIONS = ("weekly-standup", "town-hall", "sprint-retro")


class DemoFailed(RuntimeError):
    pass


def say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


class Demo:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.kubeconfig = str(sandbox.kubeconfig)
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=self.kubeconfig, client_configuration=configuration)
        api = kubernetes.client.ApiClient(configuration)
        self.core = kubernetes.client.CoreV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.operator: subprocess.Popen[bytes] | None = None
        self.started = time.monotonic()

    # -- helpers ---------------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None, show: bool = True) -> str:
        if show:
            print(f"$ kubectl {' '.join(args)}", flush=True)
        result = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise DemoFailed(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        if show and result.stdout.strip():
            print(result.stdout.rstrip(), flush=True)
        return result.stdout

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out after {timeout:g}s waiting for {what}")
            time.sleep(0.1)

    def session(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "jibri.dev", "v1alpha1", NAMESPACE, "recordingsessions", name
        )
        return result

    def phase(self, name: str) -> str | None:
        return self.session(name).get("status", {}).get("phase")

    # -- the story ---------------------------------------------------------------------------

    def run(self) -> None:
        say("Installing the CRDs")
        self.kubectl("apply", "-k", str(ROOT / "crds"))
        self.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=30s")

        if self.sandbox.control_plane is not None:
            say("The operator's ServiceAccount and RBAC, as manifests/ ships them")
            manifests = ROOT / "manifests"
            self.kubectl("apply", "-f", str(manifests / "namespace.yaml"), "-f", str(manifests / "rbac.yaml"))
            self.wait(
                lambda: (
                    self.sandbox.control_plane is not None
                    and self.sandbox.control_plane.api_status(
                        f"serviceaccounts/{OPERATOR_ACCOUNT}", OPERATOR_NAMESPACE
                    )
                    == 200
                ),
                "the ServiceAccount",
                30,
            )
            kubeconfig = self.sandbox.control_plane.service_account_kubeconfig(
                OPERATOR_NAMESPACE, OPERATOR_ACCOUNT
            )
            say(f"The operator, logged in as system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}")
        else:
            kubeconfig = self.sandbox.kubeconfig
            say("The operator, connecting with the sandbox's kubeconfig like it would to any cluster")
        self.start_operator(kubeconfig)

        say("An XmppEnvironment for the sandbox's Prosody (examples/environment.yaml with real addresses)")
        self.kubectl("apply", "-f", "-", stdin=self.environment_manifest())
        self.wait(self.connected, "the operator to join the brewery")
        self.kubectl("get", "xmppenvironments")

        say("A JibriPool (examples/pool.yaml): one Jibri kept warm, more the moment it is taken")
        self.kubectl("apply", "-f", str(ROOT / "examples" / "pool.yaml"))
        self.wait(lambda: self.pool().get("idle") == 1, "the pool's warm Jibri to join the brewery")
        print(
            "    and one Jibri run by hand, outside any pool, speaking the 2016 (legacy) dialect", flush=True
        )
        self.legacy_jibri()
        self.wait(lambda: self.environment().get("jibris", {}).get("idle") == 2, "both Jibris to be idle")
        self.kubectl("get", "jibripools,pods")

        say("Three RecordingSessions from examples/, watched live")
        watcher = threading.Thread(target=self.watch_sessions, daemon=True)
        watcher.start()
        time.sleep(0.3)  # let the watch start before the objects arrive, so every phase shows
        examples = ROOT / "examples"
        files = ("session-file.yaml", "session-stream.yaml", "session-retro.yaml")
        self.kubectl("apply", *(arg for name in files for arg in ("-f", str(examples / name))))
        self.wait(
            lambda: all(self.phase(name) == "Recording" for name in SESSIONS), "all three to record", 60
        )
        self.wait(lambda: self.pool().get("idle") == 1, "the pool to have a warm Jibri again")
        self.kubectl("get", "jibri")
        self.kubectl("get", "pods", "-o", "wide")

        time.sleep(3)  # let them record a little: this is a demo, after all
        say("sprint-retro ends by itself (maxDuration); the other two are stopped with spec.stop")
        for name in ("town-hall", "weekly-standup"):
            self.kubectl("patch", "recordingsession", name, "--type=merge", "-p", '{"spec":{"stop":true}}')
        self.wait(
            lambda: all(self.phase(name) == "Completed" for name in SESSIONS), "all three to complete", 60
        )
        self.kubectl("get", "recordingsessions")

        say("The pool removes its surplus idle Jibris after scaleDownDelay, never one that records")
        self.wait(lambda: self.pool().get("replicas") == 1, "the pool to scale down", 60)
        self.kubectl("get", "jibri", "-o", "wide")
        self.kubectl("describe", "recordingsession", "town-hall")

    def pool(self) -> dict[str, Any]:
        return self.pool_named("recorders")

    def pool_named(self, name: str) -> dict[str, Any]:
        """A JibriPool's status ({} while it does not exist)."""
        with contextlib.suppress(kubernetes.client.exceptions.ApiException):
            pool = self.custom.get_namespaced_custom_object(
                "jibri.dev", "v1alpha1", NAMESPACE, "jibripools", name
            )
            return dict(pool.get("status") or {})
        return {}

    def environment(self) -> dict[str, Any]:
        environment = self.custom.get_namespaced_custom_object(
            "jibri.dev", "v1alpha1", NAMESPACE, "xmppenvironments", "meet"
        )
        return dict(environment.get("status") or {})

    def legacy_jibri(self) -> None:
        xmpp = self.sandbox.xmpp
        environment = sandbox_environment(
            server=(xmpp["host"], xmpp["port"]),
            brewery=xmpp["brewery"],
            nickname="jibri-legacy-0",
            jid=xmpp["jibri"]["jid"],
            password=xmpp["jibri"]["password"],
            name="meet",
        )
        settings = SandboxSettings(dialect=Dialect.LEGACY, ca_file=xmpp["ca_file"], start_delay=0.5)
        conf = render_sandbox_jibri_conf([environment], settings)
        self.core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": "jibri-legacy-conf"},
                "data": {"jibri.conf": base64.b64encode(conf.encode()).decode()},
            },
        )
        pod = {
            "metadata": {"name": "jibri-legacy-0", "labels": {"app.kubernetes.io/name": "jibri"}},
            "spec": {
                "terminationGracePeriodSeconds": 10,
                "volumes": [{"name": "config", "secret": {"secretName": "jibri-legacy-conf"}}],
                "containers": [
                    {
                        "name": "jibri",
                        "image": "sandbox/jibri:legacy",  # a hand-run Jibri reading /etc/jitsi/jibri
                        "volumeMounts": [
                            {"name": "config", "mountPath": "/etc/jitsi/jibri", "readOnly": True}
                        ],
                    }
                ],
            },
        }
        self.core.create_namespaced_pod(NAMESPACE, pod)

    def start_operator(self, kubeconfig: Path) -> None:
        log = self.sandbox.directory / "operator.log"
        argv = [sys.executable, "-m", "jibri_operator.cli", "run", "--kubeconfig", str(kubeconfig)]
        argv += ["-n", NAMESPACE, "--metrics-port", "0", "--nickname", "jibri-operator-demo"]
        print(f"$ jibri-operator run --kubeconfig {kubeconfig} -n {NAMESPACE}   (log: {log})", flush=True)
        with log.open("ab") as out:
            self.operator = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )

    def environment_manifest(self) -> str:
        xmpp = self.sandbox.xmpp
        documents = list(yaml.safe_load_all((ROOT / "examples" / "environment.yaml").read_text()))
        login, jibri_login, recorder_login, environment = documents
        login["stringData"] = {"username": xmpp["control"]["jid"], "password": xmpp["control"]["password"]}
        jibri_login["stringData"] = {"username": xmpp["jibri"]["jid"], "password": xmpp["jibri"]["password"]}
        ca = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "xmpp-ca"},
            "stringData": {"ca.crt": Path(xmpp["ca_file"]).read_text()},
        }
        spec = environment["spec"]
        spec["server"] = {"host": xmpp["host"], "port": xmpp["port"]}
        spec["domain"] = xmpp["domain"]
        spec["brewery"] = xmpp["brewery"]
        spec["controlLogin"].pop("domain", None)
        # The sandbox's Jibris verify nothing: their CA is the sandbox's own, not in any trust store.
        spec["jibri"]["trustAllCerts"] = True
        return yaml.safe_dump_all([login, jibri_login, recorder_login, ca, environment])

    def connected(self) -> bool:
        if self.operator is not None and self.operator.poll() is not None:
            raise DemoFailed(f"the operator exited; see {self.sandbox.directory / 'operator.log'}")
        with contextlib.suppress(kubernetes.client.exceptions.ApiException):
            environment = self.custom.get_namespaced_custom_object(
                "jibri.dev", "v1alpha1", NAMESPACE, "xmppenvironments", "meet"
            )
            return bool(environment.get("status", {}).get("connected"))
        return False

    def watch_sessions(self) -> None:
        """Print every phase change the moment the API server reports it."""
        seen: dict[str, str] = {}
        stream = kubernetes.watch.Watch()
        for event in self.events(stream):
            obj = event["object"]
            name = obj["metadata"]["name"]
            status = obj.get("status", {})
            phase = status.get("phase") or "(new)"
            if seen.get(name) == phase:
                continue
            seen[name] = phase
            jibri = status.get("jibri", {}).get("nickname", "")
            elapsed = time.monotonic() - self.started
            print(f"   [{elapsed:6.2f}s] {name:<15} {phase:<10} {jibri}", flush=True)

    def events(self, stream: kubernetes.watch.Watch) -> Iterator[dict[str, Any]]:
        with contextlib.suppress(Exception):  # the watch ends with the sandbox
            yield from stream.stream(
                self.custom.list_namespaced_custom_object,
                "jibri.dev",
                "v1alpha1",
                NAMESPACE,
                "recordingsessions",
                timeout_seconds=600,
            )

    def stop_operator(self) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(signal.SIGTERM)
            try:
                self.operator.wait(30)
            except subprocess.TimeoutExpired:
                self.operator.kill()


def hint(sandbox: Sandbox) -> None:
    say("Look around")
    print(f"  export KUBECONFIG={sandbox.kubeconfig}", flush=True)
    print("  kubectl get jibri                      # every jibri.dev object", flush=True)
    print("  kubectl describe recordingsession town-hall", flush=True)
    print("  kubectl explain recordingsession.spec", flush=True)
    print("  kubectl get pods; kubectl get events", flush=True)
    print(f"  logs: {sandbox.directory}/*.log", flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jibri-sandbox demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, default=Path(".demo"), help="where kubeconfig, xmpp.json and logs go"
    )
    hold = parser.add_mutually_exclusive_group()
    hold.add_argument(
        "--hold", dest="hold", action="store_true", default=None, help="keep serving until Ctrl-C"
    )
    hold.add_argument("--no-hold", dest="hold", action="store_false", help="exit when the story is told")
    parser.add_argument(
        "--control-plane",
        choices=CONTROL_PLANES,
        default="emulated",
        help="the API server emulation (default), or etcd + kube-apiserver + kube-controller-manager",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    hold = sys.stdin.isatty() if args.hold is None else args.hold
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    if args.dir.exists():
        for stale in ("kubeconfig", "xmpp.json"):
            (args.dir / stale).unlink(missing_ok=True)
    say(f"Starting the sandbox in {args.dir}: API server ({args.control_plane}), kubelet, Prosody")
    with Sandbox(args.dir, startup_delay=1.0, control_plane=args.control_plane) as sandbox:
        print(json.dumps({k: sandbox.xmpp[k] for k in ("host", "port", "domain", "brewery")}), flush=True)
        demo = Demo(sandbox)
        try:  # whatever goes wrong, the operator process must not outlive the demo
            try:
                demo.run()
            except DemoFailed as error:
                print(f"\ndemo failed: {error}", file=sys.stderr, flush=True)
                return 1
            hint(sandbox)
            if hold:
                print("\nServing until Ctrl-C.", flush=True)
                while not stop.wait(0.5):
                    if sandbox.failed():
                        print(f"sandbox: {sandbox.failed()} exited unexpectedly", file=sys.stderr)
                        break
            say("Stopping")
        finally:
            demo.stop_operator()
    say("Done")
    return 0
