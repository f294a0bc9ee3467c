"""A small async REST client for the kubelet, from a kubeconfig (server, CA, bearer token).

The kubelet needs long-lived watches it can cancel at once on shutdown, which
the official client's blocking streams make awkward; plain HTTPS over aiohttp
with the kubeconfig's own CA and token is what a real kubelet's client-go does.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

Obj = dict[str, Any]
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer; `status` is the HTTP code, `reason` the Status reason."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class Gone(ApiError):
    """410: the resourceVersion a watch asked for is too old; re-list."""


def _ssl_context(cluster: Obj, base: Path) -> ssl.SSLContext | bool:
    if cluster.get("insecure-skip-tls-verify"):
        return False
    ctx = ssl.create_default_context()
    if cluster.get("certificate-authority-data"):
        ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        ctx.load_verify_locations(cafile=str(base / cluster["certificate-authority"]))
    return ctx


class KubeApi:
    """Just the verbs a kubelet uses: get, list, watch, create, patch, delete."""

    def __init__(self, kubeconfig: Path):
        config = yaml.safe_load(Path(kubeconfig).read_text())
        current = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        self.server = cluster["server"].rstrip("/")
        self._ssl = _ssl_context(cluster, Path(kubeconfig).parent)
        self._headers = {"Accept": "application/json", "User-Agent": "jibri-sandbox-kubelet/1.32"}
        if user.get("token"):
            self._headers["Authorization"] = f"Bearer {user['token']}"
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers, connector=aiohttp.TCPConnector(ssl=self._ssl, limit=32)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def path(
        resource: str, namespace: str | None = None, name: str | None = None, sub: str = "", group: str = ""
    ) -> str:
        base = f"/apis/{group}" if group else "/api/v1"
        parts = [base]
        if namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(resource)
        if name:
            parts.append(name)
        if sub:
            parts.append(sub)
        return "/".join(parts)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self.session.request(method, url, data=data, headers=headers) as response:
            payload = await response.read()
            obj = json.loads(payload) if payload else {}
            if response.status >= 400:
                raise _error(response.status, obj)
            result: Obj = obj
            return result

    async def get(self, path: str) -> Obj:
        return await self.request("GET", path)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body)

    async def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> Obj:
        return await self.request("PATCH", path, body, content_type=content_type)

    async def delete(self, path: str, options: Obj | None = None) -> Obj:
        return await self.request(
            "DELETE", path, {"kind": "DeleteOptions", "apiVersion": "v1", **(options or {})}
        )

    async def watch(self, path: str, resource_version: str, timeout: int = 300) -> AsyncIterator[Obj]:
        """Events after `resource_version` until the server ends the stream; raises Gone on 410."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        url = f"{self.server}{path}{'&' if '?' in path else '?'}{urlencode(query)}"
        client_timeout = aiohttp.ClientTimeout(total=None, sock_read=timeout + 30)
        async with self.session.get(url, timeout=client_timeout) as response:
            if response.status >= 400:
                raise _error(response.status, json.loads(await response.read() or b"{}"))
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise _error(int(status.get("code") or 500), status)
                yield event


def _error(status: int, obj: Obj) -> ApiError:
    cls = Gone if status == 410 else ApiError
    return cls(status, str(obj.get("reason") or ""), str(obj.get("message") or obj))
