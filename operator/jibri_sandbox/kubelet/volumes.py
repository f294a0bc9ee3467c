"""What a container sees: its volumes materialized on disk, its environment resolved.

A real kubelet mounts ConfigMap and Secret volumes into the container's
filesystem and resolves `env`/`envFrom` before it starts the process. The
sandbox has no mount namespaces, so each volume becomes a directory under the
pod's directory and `Mounts` maps container paths to host paths; a simulated
Jibri then reads its `jibri.conf` from where a real pod would have it.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

Obj = dict[str, Any]
Fetch = Callable[[str, str, str], Awaitable[Obj | None]]  # (plural, namespace, name) -> object or None
# (serviceAccountToken projection) -> a token bound to the pod, or None where the server has no TokenRequest
TokenFetch = Callable[[Obj], Awaitable[str | None]]
JIBRI_CONF_PATH = "/etc/jitsi/jibri/jibri.conf"


class ConfigError(Exception):
    """The container cannot be created yet (a missing ConfigMap/Secret/key): the pod waits.

    `reason` is the waiting reason the kubelet reports (CreateContainerConfigError,
    or ContainerCreating while a volume cannot be mounted)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Mounts:
    """Container path -> host path, longest prefix wins (as nested mounts do)."""

    table: dict[str, Path] = field(default_factory=dict)

    def resolve(self, container_path: str) -> Path | None:
        path = PurePosixPath(container_path)
        for mount in sorted(self.table, key=len, reverse=True):
            mount_path = PurePosixPath(mount)
            if path == mount_path:
                return self.table[mount]
            if mount_path in path.parents:
                return self.table[mount] / path.relative_to(mount_path)
        return None


def _decode(source: Obj, secret: bool) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if secret:
        for key, value in (source.get("data") or {}).items():
            files[key] = base64.b64decode(value)
        for key, value in (source.get("stringData") or {}).items():
            files[key] = str(value).encode()
    else:
        for key, value in (source.get("data") or {}).items():
            files[key] = str(value).encode()
        for key, value in (source.get("binaryData") or {}).items():
            files[key] = base64.b64decode(value)
    return files


async def _key_files(
    fetch: Fetch, namespace: str, source: Obj, plural: str, volume: str
) -> dict[str, tuple[bytes, int | None]]:
    """The files of a configMap/secret volume source (or projection), honouring items and optional."""
    name = source.get("name") if plural == "configmaps" else source.get("secretName", source.get("name"))
    kind = "configmap" if plural == "configmaps" else "secret"
    obj = await fetch(plural, namespace, str(name))
    if obj is None:
        if source.get("optional"):
            return {}
        raise ConfigError(
            "ContainerCreating", f'MountVolume.SetUp failed for volume "{volume}" : {kind} "{name}" not found'
        )
    data = _decode(obj, plural == "secrets")
    items = source.get("items")
    if not items:
        return {key: (value, None) for key, value in data.items()}
    files: dict[str, tuple[bytes, int | None]] = {}
    for item in items:
        if item["key"] not in data:
            if source.get("optional"):
                continue
            raise ConfigError(
                "ContainerCreating",
                f'MountVolume.SetUp failed for volume "{volume}" : configmap references non-existent config key: {item["key"]}',
            )
        files[item.get("path") or item["key"]] = (data[item["key"]], item.get("mode"))
    return files


def _write_files(directory: Path, files: dict[str, tuple[bytes, int | None]], default_mode: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for relative, (content, mode) in files.items():
        target = directory / relative
        if ".." in PurePosixPath(relative).parts:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod((mode if mode is not None else default_mode) & 0o777 | 0o600)


async def materialize(
    pod: Obj, pod_dir: Path, fetch: Fetch, container: Obj, token: TokenFetch | None = None
) -> Mounts:
    """Write the container's mounted volumes under `pod_dir/volumes` and map its mount paths.

    A projected service-account token is asked of the API (TokenRequest, bound to the pod) like
    a real kubelet does, when `token` is given and the server offers it; otherwise it is left out.
    """
    namespace = pod["metadata"]["namespace"]
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or ()}
    mounts = Mounts()
    for mount in container.get("volumeMounts") or ():
        volume = volumes.get(mount["name"])
        if volume is None:
            raise ConfigError("CreateContainerConfigError", f'volume "{mount["name"]}" not found in pod spec')
        host = pod_dir / "volumes" / mount["name"]
        default_mode = 0o644
        if "configMap" in volume:
            source = volume["configMap"]
            default_mode = source.get("defaultMode", default_mode)
            _write_files(
                host, await _key_files(fetch, namespace, source, "configmaps", mount["name"]), default_mode
            )
        elif "secret" in volume:
            source = volume["secret"]
            default_mode = source.get("defaultMode", default_mode)
            _write_files(
                host, await _key_files(fetch, namespace, source, "secrets", mount["name"]), default_mode
            )
        elif "projected" in volume:
            files: dict[str, tuple[bytes, int | None]] = {}
            for projection in volume["projected"].get("sources") or ():
                if "configMap" in projection:
                    files.update(
                        await _key_files(
                            fetch, namespace, projection["configMap"], "configmaps", mount["name"]
                        )
                    )
                elif "secret" in projection:
                    files.update(
                        await _key_files(fetch, namespace, projection["secret"], "secrets", mount["name"])
                    )
                elif "downwardAPI" in projection:
                    files.update(_downward_files(pod, projection["downwardAPI"]))
                elif "serviceAccountToken" in projection and token is not None:
                    source = projection["serviceAccountToken"]
                    issued = await token(source)
                    if issued is not None:
                        files[source["path"]] = (issued.encode(), 0o600)
            _write_files(host, files, volume["projected"].get("defaultMode", default_mode))
        elif "downwardAPI" in volume:
            _write_files(
                host,
                _downward_files(pod, volume["downwardAPI"]),
                volume["downwardAPI"].get("defaultMode", default_mode),
            )
        else:  # emptyDir, and anything else: an empty writable directory
            host.mkdir(parents=True, exist_ok=True)
        sub_path = mount.get("subPath") or ""
        mounts.table[mount["mountPath"]] = host / sub_path if sub_path else host
    return mounts


def _downward_files(pod: Obj, source: Obj) -> dict[str, tuple[bytes, int | None]]:
    files: dict[str, tuple[bytes, int | None]] = {}
    for item in source.get("items") or ():
        if "fieldRef" in item:
            files[item["path"]] = (
                str(field_value(pod, item["fieldRef"]["fieldPath"]) or "").encode(),
                item.get("mode"),
            )
    return files


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: Obj, path: str) -> str | None:
    """A downward-API field (`fieldRef.fieldPath`) of the pod, as the kubelet supports them."""
    m = _SUBSCRIPT.match(path)
    if m:
        return (pod["metadata"].get(m.group(1)) or {}).get(m.group(2))
    if path in ("metadata.labels", "metadata.annotations"):
        values = pod["metadata"].get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    simple: dict[str, Any] = {
        "metadata.name": pod["metadata"].get("name"),
        "metadata.namespace": pod["metadata"].get("namespace"),
        "metadata.uid": pod["metadata"].get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
        "status.podIPs": ",".join(ip["ip"] for ip in status.get("podIPs") or ()),
        "status.hostIPs": ",".join(ip["ip"] for ip in status.get("hostIPs") or ()),
    }
    value = simple.get(path)
    return None if value is None else str(value)


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: known names replaced, `$$` escapes, unknown left as is."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR_REF.sub(one, text)


async def _key_ref(fetch: Fetch, namespace: str, ref: Obj, plural: str, var: str) -> str | None:
    obj = await fetch(plural, namespace, ref["name"])
    data = _decode(obj, plural == "secrets") if obj is not None else {}
    if ref["key"] in data:
        return data[ref["key"]].decode(errors="replace")
    if ref.get("optional"):
        return None
    kind = "configmap" if plural == "configmaps" else "secret"
    if obj is None:
        raise ConfigError("CreateContainerConfigError", f'{kind} "{ref["name"]}" not found')
    raise ConfigError(
        "CreateContainerConfigError",
        f"couldn't find key {ref['key']} in {kind.capitalize()} {namespace}/{ref['name']}",
    )


def _resource_value(container: Obj, ref: Obj) -> str:
    resource = ref.get("resource", "")
    section, _, name = resource.partition(".")
    value = str(((container.get("resources") or {}).get(section) or {}).get(name) or "")
    defaults = {"cpu": "2", "memory": str(4 << 30), "ephemeral-storage": str(20 << 30)}
    return value or defaults.get(name, "0")


async def environment(pod: Obj, container: Obj, fetch: Fetch) -> dict[str, str]:
    """The container's env: `envFrom` first, then `env` in order, each with `$(VAR)` expansion."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or ():
        prefix = source.get("prefix") or ""
        for key, plural in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            ref = source.get(key)
            if ref is None:
                continue
            obj = await fetch(plural, namespace, ref["name"])
            if obj is None:
                if ref.get("optional"):
                    continue
                kind = "configmap" if plural == "configmaps" else "secret"
                raise ConfigError("CreateContainerConfigError", f'{kind} "{ref["name"]}" not found')
            for k, v in _decode(obj, plural == "secrets").items():
                env[prefix + k] = v.decode(errors="replace")
    for var in container.get("env") or ():
        name = var["name"]
        source = var.get("valueFrom")
        if source is None:
            env[name] = expand(str(var.get("value") or ""), env)
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"]) or ""
        elif "resourceFieldRef" in source:
            env[name] = _resource_value(container, source["resourceFieldRef"])
        elif "secretKeyRef" in source:
            value = await _key_ref(fetch, namespace, source["secretKeyRef"], "secrets", name)
            if value is not None:
                env[name] = value
        elif "configMapKeyRef" in source:
            value = await _key_ref(fetch, namespace, source["configMapKeyRef"], "configmaps", name)
            if value is not None:
                env[name] = value
    return env


def command_line(container: Obj, env: dict[str, str]) -> list[str]:
    """The container's argv as Kubernetes builds it (command + args, `$(VAR)` expanded)."""
    return [
        expand(str(part), env) for part in [*(container.get("command") or ()), *(container.get("args") or ())]
    ]


_CONFIG_FLAGS = re.compile(r"(?:--config|-Dconfig\.file)[= ](\S+)")


def jibri_config_path(argv: list[str], env: dict[str, str]) -> str:
    """Where the Jibri in this container will read jibri.conf (a container path).

    Real Jibri images read /etc/jitsi/jibri/jibri.conf, or what `-Dconfig.file=`
    (in JAVA_SYS_PROPS or the command line) names; the simulated one takes `--config`."""
    for text in (" ".join(shlex.quote(a) if " " in a else a for a in argv), env.get("JAVA_SYS_PROPS", "")):
        m = _CONFIG_FLAGS.search(text)
        if m:
            return m.group(1).strip("'\"")
    return env.get("JIBRI_CONFIG") or JIBRI_CONF_PATH


def jibri_config(pod_dir: Path, container: Obj, mounts: Mounts, argv: list[str], env: dict[str, str]) -> Path:
    """The host file holding this Jibri container's jibri.conf; ConfigError if there is none."""
    wanted = jibri_config_path(argv, env)
    host = mounts.resolve(wanted)
    if host is not None and host.is_file():
        return Path(host)
    if env.get("JIBRI_CONF"):
        inline: Path = pod_dir / "env" / str(container["name"]) / "jibri.conf"
        inline.parent.mkdir(parents=True, exist_ok=True)
        inline.write_text(env["JIBRI_CONF"])
        return inline
    raise ConfigError(
        "RunContainerError",
        f"jibri.conf not found at {wanted}: mount a ConfigMap or Secret there, or set JIBRI_CONF",
    )


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:200] or "_"


def host_env_passthrough() -> dict[str, str]:
    """The few variables of the kubelet's own environment a process needs to run at all."""
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TZ")
    return {k: os.environ[k] for k in keep if k in os.environ}
