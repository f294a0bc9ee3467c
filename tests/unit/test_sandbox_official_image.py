"""The sandbox kubelet's stand-in for the jitsi/jibri image's start-up step
(jibri_sandbox.kubelet.official_image): it refuses what the image refuses, and passes on
what the image would hand Jibri."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from jibri_operator.controllers.pools import build_pod
from jibri_operator.jibriconf.render import JibriEnvironment, Login, Muc, SecretKeyRef, render_jibri_conf
from jibri_sandbox.jibri import parse_jibri_conf
from jibri_sandbox.kubelet import official_image
from jibri_sandbox.kubelet.volumes import Mounts

ENV = JibriEnvironment(
    name="rec/meet",
    server_hosts=("xmpp.meet.example.com:5333",),
    xmpp_domain="meet.example.com",
    control_muc=Muc("internal.auth.meet.example.com", "jibribrewery"),
    control_login=Login("auth.meet.example.com", "jibri", SecretKeyRef("jibri-login", "password")),
    call_login=Login("recorder.meet.example.com", "recorder", SecretKeyRef("recorder-login", "password")),
    usage_timeout_minutes=240,
    trust_all_certs=True,
)
SECRETS = {"jibri-login": "control-pw", "recorder-login": "recorder-pw"}


def pool(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "recorders", "uid": "u-1", "namespace": "rec"},
        "spec": {
            "environments": ["meet"],
            "template": {"spec": {"containers": [{"name": "jibri", "image": "jitsi/jibri:stable"}]}},
            **spec,
        },
    }


def resolved(container: dict[str, Any]) -> dict[str, str]:
    env = {}
    for entry in container["env"]:
        source = entry.get("valueFrom")
        if source is None:
            env[entry["name"]] = entry["value"]
        elif "fieldRef" in source:
            env[entry["name"]] = "recorders-abc"
        else:
            env[entry["name"]] = SECRETS[source["secretKeyRef"]["name"]]
    return env


def run_step(pod: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None) -> Path:
    container = pod["spec"]["containers"][0]
    mounts = Mounts()
    if any(m["mountPath"] == "/defaults/jibri.conf" for m in container["volumeMounts"]):
        rendered = tmp_path / "volumes" / "jibri-conf" / "jibri.conf"
        rendered.parent.mkdir(parents=True)
        rendered.write_text(render_jibri_conf([ENV]))
        mounts.table["/defaults/jibri.conf"] = rendered
    return official_image.config_step(pod, container, mounts, env or resolved(container), tmp_path)


def test_a_pool_pod_passes_and_its_file_comes_through_unchanged(tmp_path: Path) -> None:
    pod = build_pod(pool(), [ENV])
    written = run_step(pod, tmp_path)
    assert written.read_text() == render_jibri_conf([ENV])
    assert str(written).endswith("run/jibri/config/jibri/jibri.conf")


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("JIBRI_XMPP_PASSWORD", "recorder password and auth password must be set"),
        ("JIBRI_RECORDER_PASSWORD", "recorder password and auth password must be set"),
        ("DISPLAY", "Please set DISPLAY"),
    ],
)
def test_the_images_checks(tmp_path: Path, drop: str, message: str) -> None:
    pod = build_pod(pool(), [ENV])
    env = resolved(pod["spec"]["containers"][0])
    del env[drop]
    with pytest.raises(official_image.StartUpFailed, match=message):
        run_step(pod, tmp_path, env)


def test_shm(tmp_path: Path) -> None:
    pod = build_pod(pool(), [ENV])
    small = copy.deepcopy(pod)
    small["spec"]["volumes"] = [v for v in small["spec"]["volumes"] if v["name"] != "jibri-shm"]
    small["spec"]["volumes"].append(
        {"name": "jibri-shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}
    )
    with pytest.raises(official_image.StartUpFailed, match="at least 2GB"):
        run_step(small, tmp_path)
    container = pod["spec"]["containers"][0]
    none = copy.deepcopy(pod)
    none["spec"]["containers"][0]["volumeMounts"] = [
        m for m in container["volumeMounts"] if m["mountPath"] != "/dev/shm"
    ]
    assert official_image.shm_size(none, none["spec"]["containers"][0]) == 64 * 2**20


def test_a_template_with_actions_is_not_evaluated(tmp_path: Path) -> None:
    pod = build_pod(pool(), [ENV])
    container = pod["spec"]["containers"][0]
    template = tmp_path / "t.conf"
    template.write_text('jibri { id = "{{ .Env.JIBRI_INSTANCE_ID }}" }')
    mounts = Mounts({"/defaults/jibri.conf": template})
    with pytest.raises(official_image.StartUpFailed, match="template actions"):
        official_image.config_step(pod, container, mounts, resolved(container), tmp_path)


def test_the_env_route_goes_through_the_images_own_template(tmp_path: Path) -> None:
    pod = build_pod(pool(configDelivery={"mode": "env"}), [ENV])
    env = resolved(pod["spec"]["containers"][0])
    written = run_step(pod, tmp_path, env)
    with mock.patch.dict(os.environ, env, clear=True):
        config = parse_jibri_conf(written.read_text())
    (read,) = config.environments
    assert config.id == "recorders-abc" and read.control_muc.occupant.endswith(
        "jibribrewery@internal.auth.meet.example.com/recorders-abc"
    )
    assert read.control_login.jid == "jibri@auth.meet.example.com" and read.servers() == [
        ("xmpp.meet.example.com", 5333)
    ]
    assert read.control_login.password.reveal() == "control-pw"
    assert read.call_login is not None and read.call_login.jid == "recorder@recorder.meet.example.com"
    assert read.usage_timeout == 240 * 60 and read.trust_all_xmpp_certs
    assert read.strip_from_room_domain == "conference."


def test_the_images_template_reads_a_bare_usage_timeout_as_milliseconds() -> None:
    """Why the env route writes JIBRI_USAGE_TIMEOUT with a unit: the image quotes it as given."""
    text = official_image.image_template(
        {"JIBRI_USAGE_TIMEOUT": "240", "JIBRI_XMPP_PASSWORD": "a", "JIBRI_RECORDER_PASSWORD": "b"}
    )
    (read,) = parse_jibri_conf(text).environments
    assert read.usage_timeout is None, "240 ms: 0 minutes, no limit"
