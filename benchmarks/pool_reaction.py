"""How fast a JibriPool reacts, on the sandbox with a 2 s pod start (`jibri-sandbox up`'s default).

- scale-up reaction: the pool's last idle Jibri is taken (its busy presence, as an observer in
  the brewery sees it) -> the pool's new pod is created (its ADDED watch event); p50 and p99
  over ROUNDS rounds;
- time to Recording for a session that arrives when no pod is idle (a pool at 0 idle): the
  session's create call returns -> its status says Recording; p50 and p99.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from _common import percentile
from jibri_operator.api.secret import Secret
from jibri_operator.xmpp.brewery import BreweryClient, BreweryConfig, BreweryListener
from jibri_operator.xmpp.stanzas import JibriPresence
from jibri_sandbox.demo import NAMESPACE, ROOT, Demo
from jibri_sandbox.up import Sandbox

ROUNDS = 10
POD_START = 2.0


class BusyTimes(BreweryListener):
    """When each Jibri was first seen busy (wall clock), from the brewery itself."""

    def __init__(self) -> None:
        self.busy: dict[str, float] = {}
        self.joined = threading.Event()

    def jibri_changed(self, presence: JibriPresence) -> None:
        if presence.busy.value == "busy" and not presence.unavailable:
            self.busy.setdefault(presence.nickname, time.time())
        else:
            self.busy.pop(presence.nickname, None)


class PodsAdded:
    """When each pod of the namespace was ADDED (wall clock), from a watch."""

    def __init__(self, core: Any) -> None:
        self.added: dict[str, float] = {}
        self.stop = threading.Event()
        threading.Thread(target=self._run, args=(core,), daemon=True).start()

    def _run(self, core: Any) -> None:
        watch = kubernetes.watch.Watch()
        while not self.stop.is_set():
            for event in watch.stream(core.list_namespaced_pod, NAMESPACE, timeout_seconds=2):
                if event["type"] == "ADDED":
                    self.added.setdefault(event["object"].metadata.name, time.time())


def pool(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "pool.yaml").read_text())
    body["metadata"]["name"] = name
    # Reaction alone: no learned arrival profile, which would see the rounds' sessions as a
    # surge and warm the pool ahead of them (that is policy_sim.py's and the e2e tests' part).
    body["spec"].update({"learn": False, **spec})
    return body


def report(name: str, seconds: list[float]) -> None:
    print(f"{name}_samples: {len(seconds)}")
    print(f"{name}_p50_ms: {statistics.median(seconds) * 1000:.0f}")
    print(f"{name}_p99_ms: {percentile(seconds, 99) * 1000:.0f}")


def observe(config: BreweryConfig, listener: BusyTimes, stop: threading.Event) -> None:
    """The brewery observer on an event loop of its own, so the blocking calls here do not stall it."""

    async def run() -> None:
        client = BreweryClient(config, listener)
        await client.start()
        await client.wait_joined(15)
        listener.joined.set()
        await asyncio.to_thread(stop.wait)
        await client.stop()

    asyncio.run(run())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Sandbox(Path(tmp), startup_delay=POD_START) as sandbox:
        demo = Demo(sandbox)
        demo.kubectl("apply", "-k", str(ROOT / "crds"), show=False)
        demo.kubectl("wait", "--for=condition=Established", "crd", "--all", show=False)
        demo.start_operator(sandbox.kubeconfig)
        demo.kubectl("apply", "-f", "-", stdin=demo.environment_manifest(), show=False)
        demo.wait(demo.connected, "the operator to join the brewery")
        xmpp = sandbox.xmpp
        listener = BusyTimes()
        config = BreweryConfig(
            "bench", xmpp["focus"]["jid"], Secret(xmpp["focus"]["password"]), xmpp["brewery"],
            "bench-observer", xmpp["host"], int(xmpp["port"]), xmpp["ca_file"],
        )  # fmt: skip
        stop = threading.Event()
        observer = threading.Thread(target=observe, args=(config, listener, stop), daemon=True)
        observer.start()
        listener.joined.wait(20)
        added = PodsAdded(demo.core)
        custom = demo.custom
        try:
            # 1. Scale-up reaction: one warm Jibri; each session takes it.
            custom.create_namespaced_custom_object(
                "jibri.dev", "v1alpha1", NAMESPACE, "jibripools",
                pool("warm", replicas={"min": 1, "max": ROUNDS + 2}, idleTarget=1, scaleDownDelay="10m"),
            )  # fmt: skip
            reactions = []
            for index in range(ROUNDS):
                demo.wait(lambda: demo.pool_named("warm").get("idle") == 1, "one warm Jibri", 60)
                before = set(added.added)
                name = f"take-{index}"
                custom.create_namespaced_custom_object(
                    "jibri.dev", "v1alpha1", NAMESPACE, "recordingsessions",
                    {"metadata": {"name": name}, "spec": {"environment": "meet", "room": f"{name}@{xmpp['muc_domain']}"}},
                )  # fmt: skip
                demo.wait(lambda n=name: demo.phase(n) == "Recording", f"{name} to record", 30)
                taken = demo.session(name)["status"]["jibri"]["nickname"]
                demo.wait(lambda b=before: set(added.added) - b, "a new pod", 30)
                new = min(set(added.added) - before, key=added.added.__getitem__)  # the first after it
                reactions.append(added.added[new] - listener.busy[taken])
            report("scale_up_reaction", reactions)
            demo.kubectl("delete", "recordingsessions", "--all", "--wait=true", show=False)
            demo.kubectl("delete", "jibripool", "warm", "--wait=true", show=False)
            demo.wait(
                lambda: not demo.core.list_namespaced_pod(NAMESPACE, label_selector="jibri.dev/pool").items,
                "pods gone",
                90,
            )

            # 2. Time to Recording when no pod is idle: a pool with none warm.
            custom.create_namespaced_custom_object(
                "jibri.dev", "v1alpha1", NAMESPACE, "jibripools",
                pool("cold", replicas={"min": 0, "max": ROUNDS + 2}, idleTarget=0, scaleDownDelay="1s"),
            )  # fmt: skip
            cold = []
            for index in range(ROUNDS):
                demo.wait(lambda: demo.pool_named("cold").get("replicas") == 0, "no pod at all", 90)
                name = f"cold-{index}"
                custom.create_namespaced_custom_object(
                    "jibri.dev", "v1alpha1", NAMESPACE, "recordingsessions",
                    {"metadata": {"name": name}, "spec": {"environment": "meet", "room": f"{name}@{xmpp['muc_domain']}"}},
                )  # fmt: skip
                created = time.time()
                demo.wait(lambda n=name: demo.phase(n) == "Recording", f"{name} to record", 60)
                cold.append(time.time() - created)
                demo.kubectl("delete", "recordingsession", name, "--wait=true", show=False)
            report("time_to_recording_no_idle_pod", cold)
            print(f"pod_start_delay_s: {POD_START}")
        finally:
            added.stop.set()
            stop.set()
            observer.join(10)
            demo.stop_operator()


if __name__ == "__main__":
    main()
