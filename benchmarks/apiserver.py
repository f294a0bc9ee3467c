"""Sandbox API server throughput, watch latency and memory, against its real HTTPS endpoint.

Runs the server as its own process (as tests and the demo do) and drives it with
an aiohttp client over keep-alive TLS connections. Prints one `name: value unit`
line per figure:

- creates per second (custom objects, schema-validated and defaulted),
- merge patches per second,
- watch fan-out latency (p50/p99) from sending a patch to each of 10 watchers
  receiving the event, with 1000 objects in the watched collection,
- the server's RSS with 5000 objects stored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from jibri_sandbox.apiserver.testing import start_process

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.bench.example.com"},
    "spec": {
        "group": "bench.example.com",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "required": ["room"], "properties": {
                    "room": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                    "mode": {"type": "string", "enum": ["file", "stream"], "default": "file"},
                    "replicas": {"type": "integer", "minimum": 0, "maximum": 100, "default": 1}}},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}},
        }],
    },
}  # fmt: skip
BASE = "/apis/bench.example.com/v1/namespaces/default/widgets"
CONCURRENCY = 16


def widget(i: int) -> dict[str, Any]:
    return {"apiVersion": "bench.example.com/v1", "kind": "Widget", "metadata": {"name": f"w{i}", "labels": {"n": str(i)}},
            "spec": {"room": f"room-{i}"}}  # fmt: skip


async def run_many(
    session: aiohttp.ClientSession, url: str, requests: list[tuple[str, str, Any, str]]
) -> float:
    """Send requests with bounded concurrency; return requests per second."""
    queue: asyncio.Queue[tuple[str, str, Any, str]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)

    async def worker() -> None:
        while not queue.empty():
            method, path, body, ctype = queue.get_nowait()
            async with session.request(
                method, url + path, data=json.dumps(body), headers={"Content-Type": ctype}
            ) as resp:
                await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return len(requests) / (time.perf_counter() - start)


async def watch_latency(
    session: aiohttp.ClientSession, url: str, watchers: int = 10, patches: int = 200
) -> list[float]:
    rv = (await (await session.get(url + BASE + "?limit=1")).json())["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    samples: list[float] = []
    ready = asyncio.Event()
    done = [0]

    async def watch() -> None:
        async with session.get(
            url + BASE, params={"watch": "true", "resourceVersion": rv, "labelSelector": "n=5"}
        ) as resp:
            done[0] += 1
            if done[0] == watchers:
                ready.set()
            async for line in resp.content:
                event = json.loads(line)
                seq = (event["object"]["metadata"].get("annotations") or {}).get("seq")
                if seq in sent:
                    samples.append(time.perf_counter() - sent[seq])
                    if seq == str(patches - 1):
                        return

    tasks = [asyncio.create_task(watch()) for _ in range(watchers)]
    await asyncio.wait_for(ready.wait(), 10)
    await asyncio.sleep(0.2)  # let every watch reach the server's loop before the first write
    for i in range(patches):
        sent[str(i)] = time.perf_counter()
        body = json.dumps({"metadata": {"annotations": {"seq": str(i)}}})
        async with session.patch(
            url + BASE + "/w5", data=body, headers={"Content-Type": "application/merge-patch+json"}
        ) as r:
            await r.read()
        await asyncio.sleep(0.005)
    await asyncio.wait_for(asyncio.gather(*tasks), 30)
    return samples


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = start_process(Path(tmp))
        try:
            config = yaml.safe_load(server.kubeconfig.read_text())
            ctx = ssl.create_default_context(
                cadata=base64.b64decode(
                    config["clusters"][0]["cluster"]["certificate-authority-data"]
                ).decode()
            )
            headers = {"Authorization": f"Bearer {server.token}"}
            async with aiohttp.ClientSession(
                headers=headers, connector=aiohttp.TCPConnector(ssl=ctx, limit=CONCURRENCY * 2)
            ) as s:
                async with s.post(
                    server.url + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=CRD
                ) as r:
                    assert r.status == 201, await r.text()
                print(f"rss_empty: {rss_kib(server.process.pid) / 1024:.1f} MiB")
                creates = await run_many(
                    s, server.url, [("POST", BASE, widget(i), "application/json") for i in range(1000)]
                )
                print(f"creates_per_second: {creates:.0f}")
                patches = await run_many(s, server.url, [
                    ("PATCH", f"{BASE}/w{i % 1000}", {"spec": {"replicas": i % 50}}, "application/merge-patch+json")
                    for i in range(2000)])  # fmt: skip
                print(f"patches_per_second: {patches:.0f}")
                samples = sorted(await watch_latency(s, server.url))
                print(
                    f"watch_fanout_watchers: 10\nwatch_fanout_objects: 1000\nwatch_fanout_events: {len(samples)}"
                )
                print(f"watch_latency_p50_ms: {statistics.median(samples) * 1000:.2f}")
                print(f"watch_latency_p99_ms: {samples[int(len(samples) * 0.99) - 1] * 1000:.2f}")
                await run_many(
                    s, server.url, [("POST", BASE, widget(i), "application/json") for i in range(1000, 5000)]
                )
                async with s.get(server.url + BASE + "?limit=1") as r:
                    stored = len((listed := await r.json())["items"]) + listed["metadata"].get(
                        "remainingItemCount", 0
                    )
                assert stored == 5000, stored
                print(f"rss_5000_objects: {rss_kib(server.process.pid) / 1024:.1f} MiB")
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
