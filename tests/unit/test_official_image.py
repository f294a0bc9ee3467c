"""Compatibility: a JibriPool's pod on the official ``jitsi/jibri`` image, checked against what that
image and Jibri itself require, each requirement a fact with its source.

Sources read for these facts (public repositories):

- IMAGE_CONFIG: jitsi/docker-jitsi-meet ``jibri/rootfs/etc/s6-overlay/scripts/config``, the image's
  start-up step (``jibri/rootfs/etc/cont-init.d/10-config`` in older tags: the same checks, the
  same ``tpl /defaults/jibri.conf``, written to ``/etc/jitsi/jibri/jibri.conf``).
- TPL: jitsi/docker-jitsi-meet ``base/Dockerfile`` installs jitsi/tpl as ``/usr/bin/tpl``; jitsi/tpl
  ``main.go`` parses the file with Go's ``text/template`` (``missingkey=error``, ``.Env``, sprig
  functions) and writes the result.
- JIBRI_READER: jitsi/jibri ``src/main/kotlin/org/jitsi/jibri/config/JibriConfig.kt``
  (``toXmppEnvironment``; the same code in ``.../api/xmpp/XmppEnvironment.kt``) and
  ``src/main/resources/reference.conf``; Typesafe Config's duration rules. The sandbox's reader
  follows them (``jibri_sandbox.jibri.config.JibriRules``), so the rendered file is parsed with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from jibri_operator.controllers.pools import build_pod
from jibri_operator.jibriconf.delivery import quantity_bytes
from jibri_operator.jibriconf.render import JibriEnvironment, Login, Muc, SecretKeyRef, render_jibri_conf
from jibri_sandbox.jibri import JibriConfig, parse_jibri_conf

IMAGE_CONFIG = "jitsi/docker-jitsi-meet jibri/rootfs/etc/s6-overlay/scripts/config"
TPL = "jitsi/tpl main.go (installed by jitsi/docker-jitsi-meet base/Dockerfile)"
JIBRI_READER = (
    "jitsi/jibri src/main/kotlin/org/jitsi/jibri/config/JibriConfig.kt, src/main/resources/reference.conf"
)

POD_NAME = "recorders-7kq2x"


def make_environment(index: int, minutes: int) -> JibriEnvironment:
    domain = f"meet{index}.example.com"
    return JibriEnvironment(
        name=f"rec/meet{index}",
        server_hosts=(f"xmpp.{domain}:5222",),
        xmpp_domain=domain,
        control_muc=Muc(f"internal.auth.{domain}", "jibribrewery"),
        control_login=Login(f"auth.{domain}", "jibri", SecretKeyRef(f"jibri-login-{index}", "password")),
        call_login=Login(
            f"recorder.{domain}", "recorder", SecretKeyRef(f"recorder-login-{index}", "password")
        ),
        sip_control_muc=Muc(f"internal.auth.{domain}", "jibrisipbrewery") if index == 2 else None,
        usage_timeout_minutes=minutes,
    )


ONE = [make_environment(0, 240)]
THREE = [make_environment(0, 240), make_environment(1, 0), make_environment(2, 90)]
SECRETS = {
    f"{kind}-login-{i}": {"password": f"{kind}-secret-{i}"}
    for kind in ("jibri", "recorder")
    for i in range(3)
}

POOL = {
    "metadata": {"name": "recorders", "uid": "u-1", "namespace": "rec"},
    "spec": {
        "environments": ["meet0"],
        "template": {"spec": {"containers": [{"name": "jibri", "image": "jitsi/jibri:stable-9753"}]}},
    },
}


@dataclass(frozen=True)
class Pod:
    """A built pod, and what its Jibri container sees once the kubelet resolved its env."""

    spec: dict[str, Any]
    conf: str
    environments: list[JibriEnvironment]

    @property
    def jibri(self) -> dict[str, Any]:
        return next(c for c in self.spec["spec"]["containers"] if c["name"] == "jibri")

    def env_entry(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.jibri.get("env") or [] if e["name"] == name), None)

    def resolved_env(self) -> dict[str, str]:
        env = {}
        for entry in self.jibri["env"]:
            source = entry.get("valueFrom")
            if source is None:
                env[entry["name"]] = entry["value"]
            elif "fieldRef" in source:
                assert source["fieldRef"]["fieldPath"] == "metadata.name"
                env[entry["name"]] = POD_NAME
            else:
                ref = source["secretKeyRef"]
                env[entry["name"]] = SECRETS[ref["name"]][ref["key"]]
        return env

    def mount(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        mount = next(m for m in self.jibri["volumeMounts"] if m["mountPath"] == path)
        volume = next(v for v in self.spec["spec"]["volumes"] if v["name"] == mount["name"])
        return mount, volume

    def read_as_jibri(self) -> JibriConfig:
        with mock.patch.dict(os.environ, self.resolved_env(), clear=True):
            return parse_jibri_conf(self.conf)


def official_pod(environments: list[JibriEnvironment]) -> Pod:
    return Pod(build_pod(POOL, environments), render_jibri_conf(environments), environments)


def passwords_set_from_secrets(pod: Pod) -> None:
    for name in ("JIBRI_RECORDER_PASSWORD", "JIBRI_XMPP_PASSWORD"):
        entry = pod.env_entry(name)
        assert entry is not None, f"{name} is not set"
        assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], (
            f"{name} must come by secretKeyRef"
        )
        assert pod.resolved_env()[name], f"{name} is empty"
    assert not any(secret["password"] in yaml.safe_dump(pod.spec) for secret in SECRETS.values())


def shm_at_least_2gb(pod: Pod) -> None:
    _, volume = pod.mount("/dev/shm")
    assert volume["emptyDir"]["medium"] == "Memory"
    assert (quantity_bytes(volume["emptyDir"]["sizeLimit"]) or 0) >= 2 * 1024**3


def display_set(pod: Pod) -> None:
    assert pod.resolved_env().get("DISPLAY")


def conf_where_the_template_step_reads_it(pod: Pod) -> None:
    mount, volume = pod.mount("/defaults/jibri.conf")
    assert mount["subPath"] == "jibri.conf", "a file over the template, not a directory over /defaults"
    assert volume["secret"]["secretName"] == "recorders-jibri-conf"


def conf_passes_through_the_template_step(pod: Pod) -> None:
    assert "{{" not in pod.conf, "no template action: text/template copies the text unchanged"


def storage_writable(pod: Pod) -> None:
    _, volume = pod.mount("/storage")
    assert "emptyDir" in volume


def every_environment_read_by_jibri(pod: Pod) -> None:
    config = pod.read_as_jibri()  # fails, naming the key, on anything Jibri would refuse
    assert len(config.environments) == len(pod.environments)
    assert config.id == POD_NAME, "jibri.id is the pod"
    for index, (read, wanted) in enumerate(zip(config.environments, pod.environments, strict=True)):
        assert read.call_login is not None, "call-login is required"
        assert read.call_login.jid == f"recorder@recorder.meet{index}.example.com"
        assert read.call_login.password.reveal() == f"recorder-secret-{index}"
        assert read.control_login.password.reveal() == f"jibri-secret-{index}"
        assert read.control_muc.nickname == POD_NAME, "the nickname is the pod's name"
        minutes = wanted.usage_timeout_minutes
        assert read.usage_timeout == (minutes * 60 if minutes else None), "usage-timeout in minutes"
        sip = read.sip_control_muc
        assert (sip is not None) == (wanted.sip_control_muc is not None)
        assert sip is None or sip.nickname == POD_NAME


@dataclass(frozen=True)
class Fact:
    requirement: str
    source: str
    check: Callable[[Pod], None]


FACTS = [
    Fact(
        "exits unless JIBRI_RECORDER_PASSWORD and JIBRI_XMPP_PASSWORD are set (they must not be in the pod spec)",
        IMAGE_CONFIG,
        passwords_set_from_secrets,
    ),
    Fact("exits unless /dev/shm is at least 2GB (shm-check)", IMAGE_CONFIG, shm_at_least_2gb),
    Fact("DISPLAY is necessary for start", IMAGE_CONFIG, display_set),
    Fact(
        "always recreates Jibri's jibri.conf with `tpl /defaults/jibri.conf` (a file mounted elsewhere is overwritten)",
        IMAGE_CONFIG,
        conf_where_the_template_step_reads_it,
    ),
    Fact(
        "tpl runs text/template: a file without '{{' has no action and comes out as it went in",
        TPL,
        conf_passes_through_the_template_step,
    ),
    Fact("fails fast unless /storage is writable (check-writable)", IMAGE_CONFIG, storage_writable),
    Fact(
        "every environment key but sip-control-muc is required (call-login too); usage-timeout is "
        "getDuration().toMinutes(), a bare number being milliseconds; ${VAR} falls back to the environment",
        JIBRI_READER,
        every_environment_read_by_jibri,
    ),
]


@pytest.mark.parametrize("environments", [ONE, THREE], ids=["one environment", "three environments"])
@pytest.mark.parametrize("fact", FACTS, ids=[fact.requirement.split(" (")[0][:60] for fact in FACTS])
def test_the_official_image_pod_meets(fact: Fact, environments: list[JibriEnvironment]) -> None:
    pod = official_pod(environments)
    try:
        fact.check(pod)
    except AssertionError as error:
        raise AssertionError(f"{fact.requirement} [{fact.source}]: {error}") from error


GO_TEXT_TEMPLATE = """package main

import (
	"os"
	"text/template"
)

// Executes a file as a Go text/template with .Env, the way the image's tpl does.
func main() {
	text, err := os.ReadFile(os.Args[1])
	if err != nil {
		panic(err)
	}
	t := template.Must(template.New("jibri.conf").Option("missingkey=error").Parse(string(text)))
	if err := t.Execute(os.Stdout, map[string]any{"Env": map[string]string{}}); err != nil {
		panic(err)
	}
}
"""


@pytest.mark.skipif(shutil.which("go") is None, reason="needs Go to run text/template")
@pytest.mark.timeout(300)  # a cold Go build cache compiles text/template first
@pytest.mark.parametrize("environments", [ONE, THREE], ids=["one environment", "three environments"])
def test_text_template_passes_the_rendered_file_through_unchanged(
    environments: list[JibriEnvironment], tmp_path: Path
) -> None:
    """The claim the officialImage route rests on, checked by running Go's text/template (TPL)."""
    (tmp_path / "main.go").write_text(GO_TEXT_TEMPLATE)
    conf = tmp_path / "jibri.conf"
    conf.write_text(render_jibri_conf(environments, single_use=True))
    result = subprocess.run(
        ["go", "run", "main.go", str(conf)],
        cwd=tmp_path,
        capture_output=True,
        timeout=280,
        env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "auto"},
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stdout == conf.read_bytes()
