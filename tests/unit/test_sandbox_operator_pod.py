"""The sandbox kubelet's way of running the operator's own pod: image, probes, mounts."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from aiohttp import web

from jibri_sandbox.kubelet import mountns
from jibri_sandbox.kubelet.pods import is_jibri, is_operator, pre_stop_sleep
from jibri_sandbox.kubelet.probes import Probe


@pytest.mark.parametrize(
    ("image", "operator", "jibri"),
    [
        ("ghcr.io/jibri-operator/jibri-operator:0.1.0", True, False),
        ("registry.example/jo/jibri-operator@sha256:abc", True, False),
        ("jibri-operator", True, False),
        ("jitsi/jibri:stable-9823", False, True),
        ("busybox:1.36", False, False),
    ],
)
def test_the_operator_image_is_told_from_jibri_images(image: str, operator: bool, jibri: bool) -> None:
    assert is_operator(image) is operator
    if not operator:
        assert is_jibri(image) is jibri


def test_a_probe_follows_named_and_moved_ports_with_the_kubelet_defaults() -> None:
    container = {"ports": [{"name": "http-metrics", "containerPort": 8080}]}
    probe = Probe.from_spec(
        {"httpGet": {"path": "/readyz", "port": "http-metrics"}}, container, {8080: 41234}
    )
    assert (probe.kind, probe.port, probe.path) == ("httpGet", 41234, "/readyz")
    assert (probe.period, probe.timeout, probe.failure_threshold, probe.success_threshold) == (10, 1, 3, 1)
    plain = Probe.from_spec({"tcpSocket": {"port": 9000}, "periodSeconds": 2}, {}, {})
    assert (plain.kind, plain.port, plain.period) == ("tcpSocket", 9000, 2)


async def test_an_http_probe_succeeds_on_2xx_and_says_why_it_failed_otherwise() -> None:
    async def readyz(request: web.Request) -> web.Response:
        return web.Response(status=int(request.query.get("status", "200")), text="standby")

    app = web.Application()
    app.add_routes([web.get("/readyz", readyz)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        assert await Probe("httpGet", port, "/readyz").run() == (True, "")
        ok, why = await Probe("httpGet", port, "/readyz?status=503").run()
        assert not ok and why == "HTTP probe failed with statuscode: 503"
    finally:
        await runner.cleanup()
    ok, why = await Probe("httpGet", port, "/readyz").run()
    assert not ok and why.endswith("connect: connection refused"), why


def test_mountns_parses_binds_and_refuses_nonsense() -> None:
    binds, command = mountns.parse(["--bind", "/a:/b:ro", "--bind", "/c:/d", "--", "python", "-V"])
    assert binds == [(Path("/a"), Path("/b"), True), (Path("/c"), Path("/d"), False)]
    assert command == ["python", "-V"]
    with pytest.raises(SystemExit):
        mountns.parse(["--bind", "/a:/b"])
    with pytest.raises(SystemExit):
        mountns.parse(
            [
                "--",
            ]
        )


@pytest.mark.skipif(
    os.geteuid() != 0, reason="a mount namespace needs root (the sandbox kubelet runs as root)"
)
async def test_mountns_shows_a_volume_at_its_path_to_the_process_only(tmp_path: Path) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "token").write_text("a token")
    target = tmp_path / "var" / "run" / "secrets"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jibri_sandbox.kubelet.mountns", "--bind", f"{volume}:{target}:ro", "--",
        "/bin/sh", "-c", f"cat {target}/token; echo; touch {target}/x 2>/dev/null || echo read-only",
        stdout=asyncio.subprocess.PIPE, env={**os.environ},
    )  # fmt: skip
    out, _ = await process.communicate()
    assert out.decode().split() == ["a", "token", "read-only"]
    assert target.is_dir() and not any(target.iterdir()), "the host sees an empty mount point"


def test_a_pre_stop_sleep_is_honoured_other_hooks_are_not_run() -> None:
    assert pre_stop_sleep({"lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}}}) == 10
    assert (
        pre_stop_sleep({"lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 2.5"]}}}})
        == 2.5
    )
    assert pre_stop_sleep({"lifecycle": {"preStop": {"sleep": {"seconds": 3}}}}) == 3
    assert pre_stop_sleep({"lifecycle": {"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}}}) == 0
    assert pre_stop_sleep({}) == 0
