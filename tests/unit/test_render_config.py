"""`jibri-operator render-config`: what a pod would get, secrets redacted unless asked for."""

from __future__ import annotations

import asyncio
import os
from typing import Any
from unittest import mock

import pytest
import yaml

from jibri_operator.api.secret import Secret
from jibri_operator.cli import build_parser
from jibri_operator.controllers.pools import PoolProblem
from jibri_operator.controllers.preview import render_pool
from jibri_operator.kube.client import SecretMissing
from jibri_sandbox.jibri import parse_jibri_conf

SECRETS = {
    "jibri-login": {"username": "jibri@auth.meet.example.com", "password": "control-pw-9f2"},
    "recorder-login": {"username": "recorder", "password": "recorder-pw-4c1"},
}
ENVIRONMENT = {
    "spec": {
        "server": {"host": "xmpp.meet.example.com", "port": 5222},
        "domain": "meet.example.com",
        "brewery": "jibribrewery@internal.auth.meet.example.com",
        "controlLogin": {"secretRef": {"name": "operator-login"}},
        "jibri": {
            "controlLoginSecretRef": {"name": "jibri-login"},
            "callLoginSecretRef": {"name": "recorder-login"},
            "usageTimeout": "4h",
        },
    }
}
POOL = {
    "metadata": {"name": "recorders", "uid": "u-1", "namespace": "rec"},
    "spec": {
        "environments": ["meet"],
        "template": {"spec": {"containers": [{"name": "jibri", "image": "jitsi/jibri:stable"}]}},
    },
}


class FakeKube:
    def __init__(self, objects: dict[tuple[str, str], Any]) -> None:
        self.objects = objects

    async def get_custom(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((plural, name))

    async def read_secret_keys(self, namespace: str, name: str, keys: list[str]) -> dict[str, Secret]:
        data = SECRETS.get(name)
        if data is None:
            raise SecretMissing(f"Secret {namespace}/{name} not found")
        return {key: Secret(data[key]) for key in keys}

    async def read_secret(self, namespace: str, name: str, key: str) -> Secret:
        return (await self.read_secret_keys(namespace, name, [key]))[key]


def preview(pool: dict[str, Any] = POOL, *, show_secrets: bool = False) -> str:
    kube = FakeKube({("jibripools", "recorders"): pool, ("xmppenvironments", "meet"): ENVIRONMENT})
    return asyncio.run(render_pool(kube, "rec", "recorders", show_secrets=show_secrets))  # type: ignore[arg-type]


def test_redacted_by_default() -> None:
    text = preview()
    assert "control-pw-9f2" not in text and "recorder-pw-4c1" not in text
    assert "JIBRI_XMPP_PASSWORD=***    # Secret jibri-login, key password" in text
    assert "mounted at /defaults/jibri.conf" in text
    assert "DISPLAY=:0" in text and "POD_NAME=<the pod's metadata.name>" in text


def test_show_secrets_shows_them() -> None:
    text = preview(show_secrets=True)
    assert "JIBRI_XMPP_PASSWORD=control-pw-9f2" in text
    assert "JIBRI_RECORDER_PASSWORD=recorder-pw-4c1" in text


def test_the_printed_conf_and_pod_are_what_jibri_and_kubectl_read() -> None:
    text = preview(show_secrets=True)
    conf = text.split("mounted at /defaults/jibri.conf)\n", 1)[1].split("\n# ---- environment", 1)[0]
    env = {
        line.split("=", 1)[0]: line.split("=", 1)[1].split("    #")[0]
        for line in text.split('container "jibri"', 1)[1].split("\n# ---- the pod", 1)[0].splitlines()[1:]
        if "=" in line
    }
    with mock.patch.dict(os.environ, {**env, "POD_NAME": "recorders-x1"}):
        (read,) = parse_jibri_conf(conf).environments
    assert read.control_login.password.reveal() == "control-pw-9f2"
    assert read.call_login is not None and read.call_login.jid == "recorder@recorder.meet.example.com"
    assert read.usage_timeout == 4 * 3600
    pod = yaml.safe_load(text.split("# ---- the pod (created with generateName)\n", 1)[1])
    assert pod["kind"] == "Pod" and pod["metadata"]["generateName"] == "recorders-"
    assert "control-pw-9f2" not in yaml.safe_dump(pod)


def test_the_env_route_shows_the_variables() -> None:
    pool = {**POOL, "spec": {**POOL["spec"], "configDelivery": {"mode": "env"}}}
    text = preview(pool)  # type: ignore[arg-type]
    assert "none mounted" in text and "XMPP_SERVER=xmpp.meet.example.com" in text
    assert "JIBRI_USAGE_TIMEOUT=4 minutes" not in text and "JIBRI_USAGE_TIMEOUT=240 minutes" in text


def test_problems_are_named_without_secrets() -> None:
    kube = FakeKube({("jibripools", "recorders"): POOL})
    with pytest.raises(PoolProblem, match="XmppEnvironment meet not found"):
        asyncio.run(render_pool(kube, "rec", "recorders"))  # type: ignore[arg-type]
    with pytest.raises(PoolProblem, match="JibriPool rec/other not found"):
        asyncio.run(render_pool(kube, "rec", "other"))  # type: ignore[arg-type]


def test_the_command_line() -> None:
    args = build_parser().parse_args(["render-config", "recorders", "-n", "rec", "--show-secrets"])
    assert (args.command, args.pool, args.namespace, args.show_secrets) == (
        "render-config",
        "recorders",
        "rec",
        True,
    )
    assert build_parser().parse_args(["render-config", "p"]).show_secrets is False
