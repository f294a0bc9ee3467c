"""Container probes (httpGet, tcpSocket), with the kubelet's defaults and thresholds.

The sandbox has no pod network, so a probe goes to 127.0.0.1 and to the port the
process really listens on: a container's declared port may have been moved to a
free loopback port (``ports``: containerPort -> host port), and a named port is
looked up in the container's ``ports`` first, as the kubelet does.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Probe:
    kind: str  # httpGet | tcpSocket | none
    port: int
    path: str = "/"
    timeout: float = 1.0
    period: float = 10.0
    initial_delay: float = 0.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_spec(cls, spec: Obj, container: Obj, ports: dict[int, int]) -> Probe:
        kind = next((k for k in ("httpGet", "tcpSocket") if k in spec), "none")
        action = spec.get(kind) or {}
        port = action.get("port", 0)
        if isinstance(port, str) and not port.isdigit():
            named = {p.get("name"): p.get("containerPort") for p in container.get("ports") or ()}
            port = named.get(port, 0)
        number = int(port or 0)
        return cls(
            kind=kind,
            port=ports.get(number, number),
            path=str(action.get("path") or "/"),
            timeout=float(spec.get("timeoutSeconds", 1)),
            period=float(spec.get("periodSeconds", 10)),
            initial_delay=float(spec.get("initialDelaySeconds", 0)),
            success_threshold=int(spec.get("successThreshold", 1)),
            failure_threshold=int(spec.get("failureThreshold", 3)),
        )

    async def run(self) -> tuple[bool, str]:
        """(success, what failed), as the kubelet words it."""
        if self.kind == "none":
            return True, ""
        try:
            return await asyncio.wait_for(self._run(), self.timeout)
        except TimeoutError:
            return (
                False,
                f"{self._target()}context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
            )
        except OSError as error:
            reason = os.strerror(error.errno).lower() if error.errno else str(error)
            return False, f"{self._target()}dial tcp 127.0.0.1:{self.port}: connect: {reason}"

    def _target(self) -> str:
        return f'Get "http://127.0.0.1:{self.port}{self.path}": ' if self.kind == "httpGet" else ""

    async def _run(self) -> tuple[bool, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            if self.kind == "tcpSocket":
                return True, ""
            request = f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUser-Agent: kube-probe/1.34\r\nConnection: close\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            status_line = (await reader.readline()).decode(errors="replace").split()
            code = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 0
            if 200 <= code < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {code}"
        finally:
            writer.close()
