"""What the official ``jitsi/jibri`` image does before its Jibri starts, done for the sandbox's pods.

A container of that image does not run Jibri on whatever jibri.conf it is given: its
start-up step (jitsi/docker-jitsi-meet ``jibri/rootfs/etc/s6-overlay/scripts/config``)

- exits unless ``/dev/shm`` is at least 2 GB (``shm-check``);
- exits unless ``JIBRI_RECORDER_PASSWORD`` and ``JIBRI_XMPP_PASSWORD`` are set;
- stops the container unless ``DISPLAY`` is set;
- defaults ``JIBRI_INSTANCE_ID`` to ``jibri-<nanoseconds>``;
- then *always* writes ``/run/jibri/config/jibri.conf`` with ``tpl /defaults/jibri.conf``,
  and that file is what Jibri reads.

The sandbox kubelet does the same before it starts a simulated Jibri for such a
container, so a pool pod that would not start for real does not start here either.
``tpl`` is jitsi/tpl (``main.go``): Go's ``text/template`` with ``.Env``. A file mounted
over ``/defaults/jibri.conf`` with no ``{{`` has no action and comes out unchanged;
the sandbox cannot evaluate Go templates, so it refuses a mounted file that has
actions. With nothing mounted there, the image's own template is used: :func:`image_template`
renders the keys Jibri's control side reads, from the same variables with the same
defaults as the image's ``jibri/rootfs/defaults/jibri.conf``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .volumes import Mounts

Obj = dict[str, Any]
TEMPLATE = "/defaults/jibri.conf"
SHM_MIN = 2 * 10**9  # "/dev/shm must be at least 2GB in size"
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_FACTORS = {
    None: 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


class StartUpFailed(Exception):
    """The image's start-up step exits; the message is the one it prints."""


def is_official(image: str) -> bool:
    """``jitsi/jibri`` from Docker Hub, any tag or digest."""
    name = image.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    for registry in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        name = name.removeprefix(registry)
    return name == "jitsi/jibri"


def _bytes(quantity: Any) -> float | None:
    match = _QUANTITY.match(str(quantity).strip())
    return float(match.group(1)) * _FACTORS[match.group(2)] if match else None


def shm_size(pod: Obj, container: Obj) -> float:
    """How large the container's /dev/shm would be: 64 MiB unless a memory emptyDir is mounted,
    which is its sizeLimit, else the pod's memory limit, else the node's memory (plenty)."""
    mount = next((m for m in container.get("volumeMounts") or () if m.get("mountPath") == "/dev/shm"), None)  # noqa: S108
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or ()}
    volume = volumes.get(mount["name"]) if mount else None
    if volume is None or (volume.get("emptyDir") or {}).get("medium") != "Memory":
        return 64 * 2**20  # the container runtime's default
    limit = volume["emptyDir"].get("sizeLimit")
    if limit is not None:
        return _bytes(limit) or 0
    limits = [
        ((c.get("resources") or {}).get("limits") or {}).get("memory") for c in pod["spec"]["containers"]
    ]
    if all(limits):
        return sum(_bytes(limit) or 0 for limit in limits)
    return float(2**40)


def config_step(pod: Obj, container: Obj, mounts: Mounts, env: dict[str, str], pod_dir: Path) -> Path:
    """Run the image's checks and write Jibri's jibri.conf; StartUpFailed as the image would exit.

    ``env`` is updated with what the step exports (``JIBRI_INSTANCE_ID``)."""
    if shm_size(pod, container) < SHM_MIN:
        raise StartUpFailed("/dev/shm must be at least 2GB in size")  # noqa: S108 - its message
    if not env.get("JIBRI_RECORDER_PASSWORD") or not env.get("JIBRI_XMPP_PASSWORD"):
        raise StartUpFailed("FATAL ERROR: Jibri recorder password and auth password must be set")
    if not env.get("DISPLAY"):
        raise StartUpFailed("ERROR: Please set DISPLAY variable.")
    env.setdefault("JIBRI_INSTANCE_ID", f"jibri-{time.time_ns() % 10**9}")
    mounted = mounts.resolve(TEMPLATE)
    if mounted is not None and mounted.is_file():
        text = mounted.read_text()
        if "{{" in text:
            raise StartUpFailed(
                f"sandbox: {TEMPLATE} holds Go template actions ({{{{), which the sandbox's tpl cannot run"
            )
    else:
        text = image_template(env)
    target = pod_dir / "run" / "jibri" / "config" / str(container["name"]) / "jibri.conf"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)  # unchanged: text/template copies text outside actions as it is
    target.chmod(0o600)
    return target


def image_template(env: Mapping[str, str]) -> str:
    """The image's own /defaults/jibri.conf, for the keys Jibri's control side reads.

    From jitsi/docker-jitsi-meet ``jibri/rootfs/defaults/jibri.conf``: one environment
    per ``XMPP_SERVER`` entry (comma-separated ``host[:port]``), values pasted into
    quotes as they are (no escaping), ``usage-timeout`` quoted as given (so ``240`` is
    240 ms to Jibri), ``XMPP_TRUST_ALL_CERTS`` true unless set.
    """

    def get(name: str, default: str) -> str:
        return env.get(name) or default

    muc_domain = get("XMPP_MUC_DOMAIN", "muc.meet.jitsi")
    strip = get("JIBRI_STRIP_DOMAIN_JID", muc_domain.split(".")[0])
    trust = get("XMPP_TRUST_ALL_CERTS", "true").lower() in ("1", "true", "yes", "on", "t", "y")
    entries = []
    for index, server in enumerate(get("XMPP_SERVER", "xmpp.meet.jitsi").split(",")):
        host, _, port = server.partition(":")
        entries.append(f"""
            {{
                name = "{env.get("XMPP_ENV_NAME", "")}-{index}"
                xmpp-server-hosts = [ "{host}" ]
                xmpp-domain = "{get("XMPP_DOMAIN", "meet.jitsi")}"
                control-muc {{
                    domain = "{get("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi")}"
                    room-name = "{get("JIBRI_BREWERY_MUC", "jibribrewery")}"
                    nickname = "{env.get("JIBRI_INSTANCE_ID", "")}"
                }}
                control-login {{
                    domain = "{get("XMPP_AUTH_DOMAIN", "auth.meet.jitsi")}"
                    port = "{port or get("XMPP_PORT", "5222")}"
                    username = "{get("JIBRI_XMPP_USER", "jibri")}"
                    password = "{env.get("JIBRI_XMPP_PASSWORD", "")}"
                }}
                call-login {{
                    domain = "{get("XMPP_RECORDER_DOMAIN", "recorder.meet.jitsi")}"
                    username = "{get("JIBRI_RECORDER_USER", "recorder")}"
                    password = "{env.get("JIBRI_RECORDER_PASSWORD", "")}"
                }}
                strip-from-room-domain = "{strip}."
                usage-timeout = "{get("JIBRI_USAGE_TIMEOUT", "0")}"
                trust-all-xmpp-certs = {"true" if trust else "false"}
            }}""")
    return f"""jibri {{
    id = "{env.get("JIBRI_INSTANCE_ID", "")}"
    single-use-mode = {get("JIBRI_SINGLE_USE_MODE", "false")}
    api {{
      xmpp {{
        environments = [{"".join(entries)}
        ]
      }}
    }}
}}
"""
