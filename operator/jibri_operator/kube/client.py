"""A small async face over the official kubernetes client.

The official client is synchronous; its calls run in the default executor so
the event loop (and with it XMPP and kopf) never waits on the network. Only
the few calls the controllers need are here, each named for what it does.

A call that RBAC refuses (HTTP 403) raises :class:`Forbidden`, which names the
verb and the resource the operator's role lacks, so a controller can say so on
the object concerned instead of failing blind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException

from jibri_operator.api.constants import GROUP, VERSION
from jibri_operator.api.secret import Secret

_T = TypeVar("_T")


__all__ = ["ApiException", "Kube", "SecretMissing", "load_config"]


def api_verb(method: str) -> str:
    """The Kubernetes verb of a client method: read_namespaced_secret -> get, and so on."""
    first = method.split("_", 1)[0]
    return {"read": "get", "replace": "update"}.get(first, first)


class SecretMissing(LookupError):
    """A referenced Secret or key does not exist. The message names them, never a value."""


class Forbidden(PermissionError):
    """The API server refused a call of the operator's (HTTP 403) to ``verb`` ``resource``
    (``plural`` or ``plural/subresource``, in API group ``group``): RBAC (its role lacks the
    verb), or an admission plugin (``reason`` is then the server's own message, which names
    resources and rules, never an object's data). The message names them and where."""

    def __init__(
        self,
        verb: str,
        resource: str,
        group: str = "",
        namespace: str | None = None,
        name: str = "",
        reason: str = "",
    ) -> None:
        self.verb, self.resource, self.group = verb, resource, group
        self.namespace, self.name, self.reason = namespace, name, reason
        super().__init__(self.describe())

    @property
    def by_rbac(self) -> bool:
        """RBAC's own refusal ('... cannot patch resource "x" ...'), or no word from the server."""
        return not self.reason or f'cannot {self.verb} resource "' in self.reason

    @property
    def key(self) -> tuple[str, str, str]:
        """What was refused, whatever the object: one report per key is enough."""
        return (self.verb, self.group, self.resource)

    @property
    def qualified_resource(self) -> str:
        """``recordingsessions.jibri.dev/status``, ``secrets``: as RBAC rules and kubectl name it."""
        plural, _, sub = self.resource.partition("/")
        qualified = f"{plural}.{self.group}" if self.group else plural
        return f"{qualified}/{sub}" if sub else qualified

    def describe(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        target = f" ({self.name})" if self.name else ""
        if not self.by_rbac:
            return (
                f"the API server forbids {self.verb} {self.qualified_resource}{where}{target}: {self.reason}"
            )
        return (
            f"RBAC forbids {self.verb} {self.qualified_resource}{where}{target}: the operator's role must"
            f' grant verb "{self.verb}" on resource "{self.resource}" in API group "{self.group}"'
            " (manifests/rbac.yaml, or the Helm chart's RBAC)"
        )


def forbidden_or(
    error: ApiException,
    verb: str,
    resource: str,
    group: str = "",
    namespace: str | None = None,
    name: str = "",
) -> ApiException | Forbidden:
    """``error`` as :class:`Forbidden` if it is a 403, else ``error`` itself, to be raised."""
    if error.status != 403:
        return error
    try:
        said = str(json.loads(error.body or "{}").get("message") or "")
    except (ValueError, AttributeError):
        said = ""
    return Forbidden(verb, resource, group, namespace, name, reason=said)


def load_config(kubeconfig: str | None = None, connections: int = 32) -> kubernetes.client.ApiClient:
    """An API client from ``kubeconfig``, ``$KUBECONFIG``, ``~/.kube/config`` or the in-cluster account.

    ``connections`` should match the threads that call it: a smaller pool makes every
    extra concurrent call open (and then discard) a TLS connection of its own.
    """
    configuration = kubernetes.client.Configuration()
    configuration.connection_pool_maxsize = connections
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or os.path.exists(os.path.expanduser("~/.kube/config")):
        kubernetes.config.load_kube_config(config_file=path, client_configuration=configuration)
    else:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


def context_namespace(kubeconfig: str | None = None) -> str:
    """The current kubeconfig context's namespace, as kubectl takes it; "default" without one."""
    try:
        _, current = kubernetes.config.list_kube_config_contexts(kubeconfig or os.environ.get("KUBECONFIG"))
    except Exception:  # no kubeconfig (in-cluster) or an unreadable one: the API call will say more
        return "default"
    return str((current.get("context") or {}).get("namespace") or "default")


class Kube:
    """The operator's calls to the Kubernetes API."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, on_error: Callable[[str, int], None] | None = None
    ) -> None:
        self.api_client = api_client
        self.on_error = on_error  # (verb, HTTP status) of every failed call: the operator counts them
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.policy = kubernetes.client.PolicyV1Api(api_client)

    def close(self) -> None:
        self.api_client.close()

    async def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(None, partial(function, *args, **kwargs))
        except ApiException as error:
            if self.on_error is not None:
                self.on_error(api_verb(function.__name__), int(error.status or 0))
            raise

    async def _as(
        self,
        verb: str,
        resource: str,
        group: str,
        namespace: str | None,
        name: str,
        function: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """``_call``, with a 403 raised as :class:`Forbidden` naming ``verb`` on ``resource``."""
        try:
            return await self._call(function, *args, **kwargs)
        except ApiException as error:
            raise forbidden_or(error, verb, resource, group, namespace, name) from None

    async def read_secret(self, namespace: str, name: str, key: str) -> Secret:
        """One key of a Secret, wrapped so it cannot be printed."""
        values = await self.read_secret_keys(namespace, name, [key])
        return values[key]

    async def read_secret_keys(self, namespace: str, name: str, keys: list[str]) -> dict[str, Secret]:
        try:
            secret = await self._as(
                "get", "secrets", "", namespace, name, self.core.read_namespaced_secret, name, namespace
            )
        except ApiException as error:
            if error.status == 404:
                raise SecretMissing(f"Secret {namespace}/{name} not found") from None
            raise SecretMissing(
                f"Secret {namespace}/{name} could not be read (HTTP {error.status})"
            ) from None
        data: dict[str, str] = secret.data or {}
        result = {}
        for key in keys:
            if key not in data:
                raise SecretMissing(f"Secret {namespace}/{name} has no key {key!r}")
            result[key] = Secret(base64.b64decode(data[key]).decode())
        return result

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await self._as(
                "get", plural, GROUP, namespace, name,
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name,
            )  # fmt: skip
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return result

    async def namespace_labels(self, name: str) -> dict[str, str] | None:
        """A namespace's labels; None when it does not exist."""
        try:
            namespace = await self._as("get", "namespaces", "", None, name, self.core.read_namespace, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(namespace.metadata.labels or {})

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """Merge ``status`` into the object's status subresource. False when the object is gone."""
        try:
            await self._as(
                "patch",
                f"{plural}/status",
                GROUP,
                namespace,
                name,
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                {"status": status},
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    # -- pods and the pool's Secret -------------------------------------------------------------

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = await self._as(
            "list",
            "pods",
            "",
            namespace,
            "",
            self.core.list_namespaced_pod,
            namespace,
            label_selector=selector,
        )
        pods: list[dict[str, Any]] = self.api_client.sanitize_for_serialization(result)["items"]
        return pods

    async def create_pod(self, namespace: str, body: dict[str, Any]) -> str:
        created = await self._as(
            "create", "pods", "", namespace, "", self.core.create_namespaced_pod, namespace, body
        )
        return str(created.metadata.name)

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete exactly this pod (a uid precondition), letting it terminate gracefully."""
        body = {"preconditions": {"uid": uid}}
        try:
            await self._as(
                "delete",
                "pods",
                "",
                namespace,
                name,
                self.core.delete_namespaced_pod,
                name,
                namespace,
                body=body,
            )
        except ApiException as error:
            if error.status not in (404, 409):
                raise

    async def ensure_secret(
        self, namespace: str, name: str, data: dict[str, str], owner: dict[str, Any], labels: dict[str, str]
    ) -> bool:
        """Create or update a Secret owned by ``owner``; True when it changed."""
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        body = {
            "metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
            "type": "Opaque",
            "data": encoded,
        }
        try:
            current = await self._as(
                "get", "secrets", "", namespace, name, self.core.read_namespaced_secret, name, namespace
            )
        except ApiException as error:
            if error.status != 404:
                raise
            await self._as(
                "create", "secrets", "", namespace, name, self.core.create_namespaced_secret, namespace, body
            )
            return True
        if (current.data or {}) == encoded:
            return False
        await self._as(
            "patch", "secrets", "", namespace, name,
            self.core.patch_namespaced_secret, name, namespace, {"data": encoded},
        )  # fmt: skip
        return True

    # -- a pool's ConfigMap (its learned arrival profile), its PDB and its pods' labels ---------------

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        """A ConfigMap's data; None when it does not exist."""
        try:
            config_map = await self._call(self.core.read_namespaced_config_map, name, namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return dict(config_map.data or {})

    async def ensure_config_map(
        self, namespace: str, name: str, data: dict[str, str], owner: dict[str, Any], labels: dict[str, str]
    ) -> None:
        """Create a ConfigMap owned by ``owner``, or replace its data."""
        try:
            await self._call(self.core.patch_namespaced_config_map, name, namespace, {"data": data})
        except ApiException as error:
            if error.status != 404:
                raise
            body = {"metadata": {"name": name, "labels": labels, "ownerReferences": [owner]}, "data": data}
            await self._call(self.core.create_namespaced_config_map, namespace, body)

    async def ensure_pod_disruption_budget(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a PodDisruptionBudget, or bring its spec to ``body``'s; True when it changed."""
        name = body["metadata"]["name"]
        try:
            current = await self._call(self.policy.read_namespaced_pod_disruption_budget, name, namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            await self._call(self.policy.create_namespaced_pod_disruption_budget, namespace, body)
            return True
        spec = self.api_client.sanitize_for_serialization(current.spec) or {}
        if all(spec.get(key) == value for key, value in body["spec"].items()):
            return False
        await self._call(
            self.policy.patch_namespaced_pod_disruption_budget, name, namespace, {"spec": body["spec"]}
        )
        return True

    async def patch_pod_metadata(
        self, namespace: str, name: str, labels: dict[str, str | None], annotations: dict[str, str | None]
    ) -> bool:
        """Merge labels and annotations into a pod (None removes one). False when the pod is gone."""
        body = {"metadata": {"labels": labels, "annotations": annotations}}
        try:
            await self._call(self.core.patch_namespaced_pod, name, namespace, body)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True
