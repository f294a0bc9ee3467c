"""``jibri-operator render-config``: what a pool's pod would get, to read or diff before trusting it.

The same functions the pool uses (environments from the API, the renderer, the pod
builder), so the preview cannot drift from what the operator creates. Secret values
are shown as ``***`` unless asked for; the pod spec itself never holds one (passwords
reach the container by ``secretKeyRef``).
"""

from __future__ import annotations

from typing import Any

import yaml

from jibri_operator.api.constants import PLURAL_POOL
from jibri_operator.controllers.pools import PoolProblem, build_pod, conf_secret_name, pool_environments
from jibri_operator.jibriconf.delivery import (
    CONF_KEY,
    CONF_VOLUME,
    Delivery,
    DeliveryProblem,
    check_rendered,
    delivery_mode,
    jibri_container_index,
)
from jibri_operator.jibriconf.render import render_jibri_conf
from jibri_operator.kube.client import Kube

REDACTED = "***"


async def render_pool(kube: Kube, namespace: str, name: str, *, show_secrets: bool = False) -> str:
    pool = await kube.get_custom(PLURAL_POOL, namespace, name)
    if pool is None:
        raise PoolProblem(f"JibriPool {namespace}/{name} not found")
    spec = pool["spec"]
    environments = await pool_environments(kube, namespace, spec)
    text = render_jibri_conf(environments, single_use=bool(spec.get("singleUse")))
    mode = delivery_mode(spec)
    try:
        check_rendered(mode, text)
    except DeliveryProblem as problem:
        raise PoolProblem(str(problem)) from None
    pod = build_pod(pool, environments)
    pod["metadata"]["namespace"] = namespace
    containers = pod["spec"]["containers"]
    jibri = containers[jibri_container_index(containers)]
    where = next((m["mountPath"] for m in jibri["volumeMounts"] if m["name"] == CONF_VOLUME), None)

    out = [
        f"# JibriPool {namespace}/{name}: what each of its pods gets (configDelivery: {mode.value}).",
        "# Jibri resolves ${...} from the container's environment; POD_NAME is each pod's own name.",
        "",
    ]
    if mode is Delivery.ENV:
        out += [
            "# ---- jibri.conf: none mounted; the jitsi/jibri image renders it from the variables below.",
            "# For comparison, the file the other routes would deliver:",
            *(f"#   {line}" for line in text.splitlines()),
        ]
    else:
        out += [
            f"# ---- jibri.conf (Secret {conf_secret_name(name)}, key {CONF_KEY}, mounted at {where})",
            text.rstrip("\n"),
        ]
    shown = "shown: --show-secrets" if show_secrets else "redacted; --show-secrets shows them"
    out += ["", f'# ---- environment of container "{jibri["name"]}" (secret values {shown})']
    for variable in jibri.get("env") or []:
        out.append(await _variable(kube, namespace, variable, show_secrets))
    out += ["", "# ---- the pod (created with generateName)", yaml.safe_dump(pod, sort_keys=False).rstrip()]
    return "\n".join(out) + "\n"


async def _variable(kube: Kube, namespace: str, variable: dict[str, Any], show_secrets: bool) -> str:
    name = variable["name"]
    source = variable.get("valueFrom")
    if source is None:
        return f"{name}={variable.get('value', '')}"
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        value = (
            (await kube.read_secret(namespace, ref["name"], ref["key"])).reveal()
            if show_secrets
            else REDACTED
        )
        return f"{name}={value}    # Secret {ref['name']}, key {ref['key']}"
    if "fieldRef" in source:
        return f"{name}=<the pod's {source['fieldRef']['fieldPath']}>"
    return f"{name}=<from {next(iter(source))}>"
