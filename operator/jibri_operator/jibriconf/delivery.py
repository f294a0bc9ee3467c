"""How a pool's pod receives its jibri.conf: pure builders for the Jibri container.

Three routes (``JibriPool.spec.configDelivery.mode``):

``officialImage`` (the default for ``jitsi/jibri``)
    The image's start-up step (jitsi/docker-jitsi-meet ``jibri/rootfs/etc/s6-overlay/
    scripts/config``; ``etc/cont-init.d/10-config`` in older tags) always regenerates
    Jibri's jibri.conf with ``tpl /defaults/jibri.conf``, so a file mounted where Jibri
    reads it is overwritten. The rendered file is mounted over the template itself,
    ``/defaults/jibri.conf``, with ``subPath``. ``tpl`` is jitsi/tpl (``main.go``): Go's
    ``text/template`` over the file with ``.Env``; a file without ``{{`` holds no
    action, and text/template copies text outside actions byte for byte, so the
    rendered file comes out unchanged (checked by running text/template on it,
    tests/unit/test_official_image.py). The step also exits unless
    ``JIBRI_RECORDER_PASSWORD`` and ``JIBRI_XMPP_PASSWORD`` are set, ``/dev/shm`` holds
    2 GB and ``DISPLAY`` is set, and the newest one unless ``/storage`` is writable.
``mount``
    The file at ``path`` (a ``subPath`` mount), for an image whose Jibri reads it there.
``env``
    No file: the official image's own variables (``XMPP_SERVER``, ``XMPP_DOMAIN``...),
    which its template turns into one environment. Only for a single environment
    without a SIP brewery, as the template has no place for more.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

from jibri_operator.jibriconf.render import (
    POD_NAME_VAR,
    JibriEnvironment,
    SecretKeyRef,
    password_env,
    password_variables,
)

CONF_KEY: Final = "jibri.conf"
CONF_VOLUME: Final = "jibri-conf"
OFFICIAL_TEMPLATE: Final = "/defaults/jibri.conf"
DEFAULT_MOUNT_PATH: Final = "/etc/jitsi/jibri/jibri.conf"
SHM_PATH: Final = "/dev/shm"  # noqa: S108 - a mount path, not a file we write
SHM_MIN_BYTES: Final = 2 * 1024**3
STORAGE_PATH: Final = "/storage"
DISPLAY: Final = ":0"  # the X server the official image starts (its xorg service)

# Shutting a Jibri down without cutting its recording, from its own HTTP APIs:
# jitsi/jibri src/main/kotlin/org/jitsi/jibri/api/http/internal/InternalHttpApi.kt
# (POST /jibri/api/internal/v1.0/gracefulShutdown: "shut down when it is idle", on
# jibri.api.http.internal-api-port, 3333 in reference.conf), and the health endpoint its
# resources/debian-package/opt/jitsi/jibri/wait_graceful_shutdown.sh polls for
# status.busyStatus (jibri.api.http.external-api-port, 2222). curl is in the official image
# (docker-jitsi-meet jibri/rootfs/opt/jitsi/shutdown.sh calls it).
GRACEFUL_SHUTDOWN: Final = (
    "curl -fsS -m 10 -X POST http://127.0.0.1:3333/jibri/api/internal/v1.0/gracefulShutdown || true; "
    "while curl -fsS -m 10 http://127.0.0.1:2222/jibri/api/v1.0/health 2>/dev/null"
    ' | grep -q \'"busyStatus": *"BUSY"\'; do sleep 5; done'
)
UNLIMITED_GRACE: Final = 21600  # seconds; wait_graceful_shutdown.sh delays a shutdown 6 h at most
GRACE_MARGIN: Final = 120  # seconds past usage-timeout for Jibri to finalize and upload


class Delivery(StrEnum):
    OFFICIAL_IMAGE = "officialImage"
    MOUNT = "mount"
    ENV = "env"


class DeliveryProblem(ValueError):
    """The pool's pod cannot be built as asked; the message names the field (never a secret)."""


def is_official_image(image: str) -> bool:
    """``jitsi/jibri`` on Docker Hub, with any tag or digest."""
    name = image.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    for registry in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        name = name.removeprefix(registry)
    return name == "jitsi/jibri"


def jibri_container_index(containers: Sequence[Mapping[str, Any]]) -> int:
    """The container named ``jibri``, else the first whose image says jibri, else the first."""
    return next(
        (i for i, c in enumerate(containers) if c.get("name") == "jibri"),
        next((i for i, c in enumerate(containers) if "jibri" in str(c.get("image", ""))), 0),
    )


def delivery_mode(pool_spec: Mapping[str, Any]) -> Delivery:
    """``spec.configDelivery.mode``, else officialImage for ``jitsi/jibri``, else mount."""
    asked = (pool_spec.get("configDelivery") or {}).get("mode")
    if asked:
        return Delivery(asked)
    containers = ((pool_spec.get("template") or {}).get("spec") or {}).get("containers") or []
    if not containers:
        return Delivery.MOUNT
    image = str(containers[jibri_container_index(containers)].get("image", ""))
    return Delivery.OFFICIAL_IMAGE if is_official_image(image) else Delivery.MOUNT


def check_rendered(mode: Delivery, text: str) -> None:
    """The official image's template step would run a ``{{`` in the file as an action."""
    if mode is Delivery.OFFICIAL_IMAGE and "{{" in text:
        raise DeliveryProblem(
            "the rendered jibri.conf contains '{{' (from a domain, username or room name), which "
            "the jitsi/jibri image's template step (Go text/template) would run as an action"
        )


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_FACTORS: Final = {
    None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip


def quantity_bytes(text: str) -> float | None:
    """A Kubernetes quantity in bytes (the forms a size limit takes); None if unreadable."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        return None
    return float(match.group(1)) * _FACTORS[match.group(2)]


def _secret_env(name: str, ref: SecretKeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _image_env(environment: JibriEnvironment, single_use: bool) -> list[dict[str, Any]]:
    """The official image's variables for one environment (its /defaults/jibri.conf reads them)."""
    env = environment
    if env.sip_control_muc is not None:
        raise DeliveryProblem(
            "configDelivery.mode env cannot express the environment's spec.sipBrewery "
            "(the image's template has no sip-control-muc): use officialImage"
        )
    if len(env.server_hosts) != 1:
        raise DeliveryProblem("configDelivery.mode env serves exactly one XMPP server")
    if not env.strip_from_room_domain.endswith("."):
        raise DeliveryProblem(
            "configDelivery.mode env: the image's template adds a '.' to JIBRI_STRIP_DOMAIN_JID, "
            "so spec.jibri.stripFromRoomDomain must end with '.'"
        )
    values = [
        env.xmpp_domain, env.control_login.domain, env.control_login.username, env.call_login.domain,
        env.call_login.username, env.control_muc.domain, env.control_muc.room, env.name,
        env.strip_from_room_domain,
    ]  # fmt: skip
    if any('"' in value or "\\" in value for value in values):
        raise DeliveryProblem(
            "configDelivery.mode env: the image's template pastes values into quotes, "
            'so names, domains and usernames may not contain " or \\'
        )
    host, _, port = env.server_hosts[0].rpartition(":")
    control_password, call_password = password_variables(0)
    plain = {
        "XMPP_SERVER": host,
        "XMPP_PORT": port,
        "XMPP_DOMAIN": env.xmpp_domain,
        "XMPP_AUTH_DOMAIN": env.control_login.domain,
        "XMPP_INTERNAL_MUC_DOMAIN": env.control_muc.domain,
        "XMPP_RECORDER_DOMAIN": env.call_login.domain,
        "XMPP_ENV_NAME": env.name,
        "XMPP_TRUST_ALL_CERTS": "true" if env.trust_all_certs else "false",  # unset means true there
        "JIBRI_BREWERY_MUC": env.control_muc.room,
        "JIBRI_XMPP_USER": env.control_login.username,
        "JIBRI_RECORDER_USER": env.call_login.username,
        "JIBRI_STRIP_DOMAIN_JID": env.strip_from_room_domain.removesuffix("."),
        "JIBRI_USAGE_TIMEOUT": f"{env.usage_timeout_minutes} minutes",  # a bare number is milliseconds
        "JIBRI_SINGLE_USE_MODE": "true" if single_use else "false",
    }
    return [
        *({"name": name, "value": value} for name, value in plain.items()),
        _secret_env(control_password, env.control_login.password),
        _secret_env(call_password, env.call_login.password),
    ]


def _mounted_at(container: Mapping[str, Any], path: str) -> bool:
    return any(m.get("mountPath") == path for m in container.get("volumeMounts") or [])


def _check_shm(spec: Mapping[str, Any], container: Mapping[str, Any]) -> None:
    """A /dev/shm the template brings must be large enough for Chrome and the image's check."""
    mount = next(m for m in container.get("volumeMounts") or [] if m.get("mountPath") == SHM_PATH)
    volume: Mapping[str, Any] = next(
        (v for v in spec.get("volumes") or [] if v.get("name") == mount.get("name")), {}
    )
    limit = (volume.get("emptyDir") or {}).get("sizeLimit")
    if limit is not None and (quantity_bytes(limit) or 0) < SHM_MIN_BYTES:
        raise DeliveryProblem(
            f"spec.template: the /dev/shm volume {mount.get('name')!r} has sizeLimit {limit}; "
            "Jibri's Chrome (and the jitsi/jibri image's start-up check) needs at least 2Gi"
        )


def jibri_pod_spec(
    template_spec: Mapping[str, Any],
    environments: Sequence[JibriEnvironment],
    mode: Delivery,
    conf_secret: str,
    *,
    mount_path: str | None = None,
    single_use: bool = False,
) -> dict[str, Any]:
    """The pod spec: the template's, with the Jibri container given what ``mode`` needs."""
    spec = dict(template_spec)
    containers = [dict(container) for container in spec.get("containers") or []]
    if not containers:
        raise DeliveryProblem("spec.template.spec.containers is empty")
    if mode is Delivery.ENV and len(environments) != 1:
        raise DeliveryProblem("configDelivery.mode env serves exactly one environment")
    index = jibri_container_index(containers)
    jibri = containers[index]
    official = mode in (Delivery.OFFICIAL_IMAGE, Delivery.ENV)

    added: list[dict[str, Any]] = [_field_env(POD_NAME_VAR, "metadata.name")]
    if mode is Delivery.ENV:
        added += _image_env(environments[0], single_use)
    else:
        added += [_secret_env(name, ref) for name, ref in password_env(environments)]
    if official:
        added.append(_field_env("JIBRI_INSTANCE_ID", "metadata.name"))  # its random default otherwise
    owned = {env["name"] for env in added}
    kept = [env for env in jibri.get("env") or [] if env.get("name") not in owned]
    if official and not any(env.get("name") == "DISPLAY" for env in kept):
        added.append({"name": "DISPLAY", "value": DISPLAY})
    jibri["env"] = [*kept, *added]

    mounts = list(jibri.get("volumeMounts") or [])
    volumes = list(spec.get("volumes") or [])
    if mode is not Delivery.ENV:
        path = OFFICIAL_TEMPLATE if mode is Delivery.OFFICIAL_IMAGE else mount_path or DEFAULT_MOUNT_PATH
        mounts.append({"name": CONF_VOLUME, "mountPath": path, "subPath": CONF_KEY, "readOnly": True})
        volumes.append({"name": CONF_VOLUME, "secret": {"secretName": conf_secret}})
    if _mounted_at(jibri, SHM_PATH):
        _check_shm(spec, jibri)
    else:
        mounts.append({"name": "jibri-shm", "mountPath": SHM_PATH})
        volumes.append({"name": "jibri-shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}})
    if official and not _mounted_at(jibri, STORAGE_PATH):
        # The newest image exits unless /storage (recordings, logs) is writable: an emptyDir
        # is; mount a volume there in the template to keep recordings past the pod.
        mounts.append({"name": "jibri-storage", "mountPath": STORAGE_PATH})
        volumes.append({"name": "jibri-storage", "emptyDir": {}})
    jibri["volumeMounts"] = mounts
    # Even a forced delete lets the recording end first: the preStop hook asks Jibri to stop
    # once idle and waits while it is busy, for as long as a recording may last.
    lifecycle = dict(jibri.get("lifecycle") or {})
    lifecycle.setdefault("preStop", {"exec": {"command": ["/bin/sh", "-c", GRACEFUL_SHUTDOWN]}})
    jibri["lifecycle"] = lifecycle
    spec.setdefault("terminationGracePeriodSeconds", recording_grace(environments))
    spec["containers"] = containers
    spec["volumes"] = volumes
    return spec


def recording_grace(environments: Sequence[JibriEnvironment]) -> int:
    """Seconds a pod may take to stop: its longest recording (every environment's usage-timeout,
    which Jibri enforces) and a margin; 6 h where some environment sets no limit."""
    limits = [env.usage_timeout_minutes for env in environments]
    if not limits or 0 in limits:
        return UNLIMITED_GRACE
    return max(limits) * 60 + GRACE_MARGIN
