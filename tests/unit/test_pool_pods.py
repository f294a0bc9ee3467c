"""build_pod: the template, plus what every pool pod needs, for each configDelivery route."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from jibri_operator.controllers.pools import (
    DELETION_COST,
    POOL_LABEL,
    SAFE_TO_EVICT,
    STATE_LABEL,
    PoolProblem,
    build_pod,
    disruption_budget,
    shield_annotations,
    state_label,
)
from jibri_operator.fleet.policy import PodState
from jibri_operator.jibriconf.delivery import (
    UNLIMITED_GRACE,
    Delivery,
    delivery_mode,
    is_official_image,
    quantity_bytes,
    recording_grace,
)
from jibri_operator.jibriconf.render import JibriEnvironment, Login, Muc, SecretKeyRef

ENV = JibriEnvironment(
    name="team/meet",
    server_hosts=("xmpp.meet.example.com:5222",),
    xmpp_domain="meet.example.com",
    control_muc=Muc("internal.auth.meet.example.com", "jibribrewery"),
    control_login=Login("auth.meet.example.com", "jibri", SecretKeyRef("jibri-login", "password")),
    call_login=Login("recorder.meet.example.com", "recorder", SecretKeyRef("recorder-login", "password")),
    usage_timeout_minutes=240,
)

POOL: dict[str, Any] = {
    "metadata": {"name": "recorders", "uid": "u-1", "namespace": "team"},
    "spec": {
        "environments": ["meet"],
        "template": {
            "metadata": {"labels": {"team": "video"}, "name": "ignored"},
            "spec": {
                "containers": [
                    {"name": "sidecar", "image": "busybox"},
                    {
                        "name": "recorder",
                        "image": "jitsi/jibri:stable",
                        "env": [{"name": "POD_NAME", "value": "x"}, {"name": "TZ", "value": "UTC"}],
                    },
                ],
            },
        },
    },
}


def pool(**spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(POOL)
    body["spec"].update(spec)
    return body


def jibri_of(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "recorder")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_official_image_gets_its_conf_over_the_template_and_what_its_start_up_checks() -> None:
    pod = build_pod(POOL, [ENV])
    sidecar, jibri = pod["spec"]["containers"]
    assert "volumeMounts" not in sidecar and "env" not in sidecar
    assert {
        "name": "jibri-conf",
        "mountPath": "/defaults/jibri.conf",
        "subPath": "jibri.conf",
        "readOnly": True,
    } in jibri["volumeMounts"]
    env = env_of(jibri)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}, "the pool owns POD_NAME"
    assert env["JIBRI_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["JIBRI_XMPP_PASSWORD"] == {"secretKeyRef": {"name": "jibri-login", "key": "password"}}
    assert env["JIBRI_RECORDER_PASSWORD"] == {"secretKeyRef": {"name": "recorder-login", "key": "password"}}
    assert env["DISPLAY"] == ":0" and env["TZ"] == "UTC"
    assert [e["name"] for e in jibri["env"]].count("POD_NAME") == 1
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["jibri-conf"] == {"name": "jibri-conf", "secret": {"secretName": "recorders-jibri-conf"}}
    assert volumes["jibri-shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert {"name": "jibri-shm", "mountPath": "/dev/shm"} in jibri["volumeMounts"]
    assert {"name": "jibri-storage", "mountPath": "/storage"} in jibri["volumeMounts"]


def test_a_template_display_and_shm_are_kept() -> None:
    body = pool()
    spec = body["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}}]
    spec["containers"][1]["env"].append({"name": "DISPLAY", "value": ":1"})
    spec["containers"][1]["volumeMounts"] = [{"name": "shm", "mountPath": "/dev/shm"}]
    jibri = jibri_of(build_pod(body, [ENV]))
    assert env_of(jibri)["DISPLAY"] == ":1"
    assert [m["mountPath"] for m in jibri["volumeMounts"]].count("/dev/shm") == 1


def test_a_small_shm_in_the_template_is_a_clear_problem() -> None:
    body = pool()
    spec = body["spec"]["template"]["spec"]
    spec["volumes"] = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]
    spec["containers"][1]["volumeMounts"] = [{"name": "shm", "mountPath": "/dev/shm"}]
    with pytest.raises(PoolProblem, match=r"sizeLimit 1Gi.*at least 2Gi"):
        build_pod(body, [ENV])


def test_mount_puts_the_file_at_its_path_for_any_image() -> None:
    body = pool(configDelivery={"mode": "mount", "path": "/config/jibri.conf"})
    jibri = jibri_of(build_pod(body, [ENV]))
    mount = next(m for m in jibri["volumeMounts"] if m["name"] == "jibri-conf")
    assert (mount["mountPath"], mount["subPath"]) == ("/config/jibri.conf", "jibri.conf")
    env = env_of(jibri)
    assert "JIBRI_XMPP_PASSWORD" in env and "DISPLAY" not in env and "JIBRI_INSTANCE_ID" not in env
    other = pool()
    other["spec"]["template"]["spec"]["containers"][1]["image"] = "registry.example.com/my-jibri:1"
    assert delivery_mode(other["spec"]) is Delivery.MOUNT
    default = next(m for m in jibri_of(build_pod(other, [ENV]))["volumeMounts"] if m["name"] == "jibri-conf")
    assert default["mountPath"] == "/etc/jitsi/jibri/jibri.conf"


def test_env_route_sets_the_official_images_variables_and_mounts_no_file() -> None:
    body = pool(configDelivery={"mode": "env"}, singleUse=True)
    pod = build_pod(body, [ENV])
    jibri = jibri_of(pod)
    assert all(m["name"] != "jibri-conf" for m in jibri["volumeMounts"])
    env = env_of(jibri)
    assert {k: env[k] for k in env if isinstance(env[k], str)} == {
        "TZ": "UTC",
        "XMPP_SERVER": "xmpp.meet.example.com",
        "XMPP_PORT": "5222",
        "XMPP_DOMAIN": "meet.example.com",
        "XMPP_AUTH_DOMAIN": "auth.meet.example.com",
        "XMPP_INTERNAL_MUC_DOMAIN": "internal.auth.meet.example.com",
        "XMPP_RECORDER_DOMAIN": "recorder.meet.example.com",
        "XMPP_ENV_NAME": "team/meet",
        "XMPP_TRUST_ALL_CERTS": "false",
        "JIBRI_BREWERY_MUC": "jibribrewery",
        "JIBRI_XMPP_USER": "jibri",
        "JIBRI_RECORDER_USER": "recorder",
        "JIBRI_STRIP_DOMAIN_JID": "conference",
        "JIBRI_USAGE_TIMEOUT": "240 minutes",
        "JIBRI_SINGLE_USE_MODE": "true",
        "DISPLAY": ":0",
    }
    assert env["JIBRI_XMPP_PASSWORD"] == {"secretKeyRef": {"name": "jibri-login", "key": "password"}}


@pytest.mark.parametrize(
    ("environments", "message"),
    [
        ([ENV, ENV], "exactly one environment"),
        ([JibriEnvironment(**{**ENV.__dict__, "sip_control_muc": Muc("m", "sip")})], "sipBrewery"),
        ([JibriEnvironment(**{**ENV.__dict__, "strip_from_room_domain": ""})], "stripFromRoomDomain"),
        ([JibriEnvironment(**{**ENV.__dict__, "xmpp_domain": 'a"b'})], "quotes"),
    ],
)
def test_what_the_env_route_cannot_express_is_a_clear_problem(
    environments: list[JibriEnvironment], message: str
) -> None:
    with pytest.raises(PoolProblem, match=message):
        build_pod(pool(configDelivery={"mode": "env"}), environments)


def test_identity_ownership_and_labels() -> None:
    metadata = build_pod(POOL, [ENV])["metadata"]
    assert metadata["generateName"] == "recorders-" and "name" not in metadata
    assert metadata["labels"]["team"] == "video" and metadata["labels"]["jibri.dev/pool"] == "recorders"
    (owner,) = metadata["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("JibriPool", "u-1", True)


def test_the_template_is_not_changed() -> None:
    before = copy.deepcopy(POOL)
    build_pod(POOL, [ENV])
    assert before == POOL


def test_a_template_without_containers_is_a_clear_problem() -> None:
    with pytest.raises(PoolProblem, match="containers is empty"):
        build_pod({"metadata": {"name": "p", "uid": "u"}, "spec": {"template": {"spec": {}}}}, [ENV])


@pytest.mark.parametrize(
    ("image", "official"),
    [
        ("jitsi/jibri", True),
        ("jitsi/jibri:stable-9753", True),
        ("docker.io/jitsi/jibri:stable", True),
        ("index.docker.io/jitsi/jibri@sha256:0123", True),
        ("jitsi/jibri-sandbox:1", False),
        ("registry.example.com/jitsi/jibri:stable", False),
        ("example/jibri:stable", False),
    ],
)
def test_the_official_image_is_recognised(image: str, official: bool) -> None:
    assert is_official_image(image) is official


def test_quantities() -> None:
    assert quantity_bytes("2Gi") == 2 * 1024**3
    assert quantity_bytes("2G") == 2e9
    assert quantity_bytes("2048Mi") == 2 * 1024**3
    assert quantity_bytes("lots") is None


# -- shielding recordings from Kubernetes itself -------------------------------------------------


def test_every_pod_gets_a_pre_stop_that_lets_its_recording_end_and_a_grace_to_match() -> None:
    pod = build_pod(POOL, [ENV])
    command = jibri_of(pod)["lifecycle"]["preStop"]["exec"]["command"]
    script = command[-1]
    # Jibri's internal API (InternalHttpApi.kt): shut down once idle; its health says when it is.
    assert "http://127.0.0.1:3333/jibri/api/internal/v1.0/gracefulShutdown" in script
    assert "http://127.0.0.1:2222/jibri/api/v1.0/health" in script and "BUSY" in script
    assert pod["spec"]["terminationGracePeriodSeconds"] == 240 * 60 + 120  # usage-timeout + margin


def test_the_template_keeps_its_own_pre_stop_and_grace() -> None:
    template = copy.deepcopy(POOL["spec"]["template"])
    template["spec"]["terminationGracePeriodSeconds"] = 30
    template["spec"]["containers"][1]["lifecycle"] = {"preStop": {"exec": {"command": ["true"]}}}
    pod = build_pod(pool(template=template), [ENV])
    assert pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert jibri_of(pod)["lifecycle"]["preStop"]["exec"]["command"] == ["true"]


def test_no_usage_timeout_means_the_longest_grace() -> None:
    unlimited = JibriEnvironment(**{**ENV.__dict__, "usage_timeout_minutes": 0})
    assert recording_grace([ENV, unlimited]) == UNLIMITED_GRACE
    assert recording_grace([ENV]) == 240 * 60 + 120


@pytest.mark.parametrize(
    ("state", "draining", "label"),
    [
        (PodState.STARTING, False, "starting"),
        (PodState.IDLE, False, "idle"),
        (PodState.BUSY, False, "busy"),
        (PodState.SPENT, False, "draining"),
        (PodState.UNHEALTHY, False, "unhealthy"),
        (PodState.BROKEN, False, "unhealthy"),
        (PodState.TERMINATING, False, "draining"),
        (PodState.IDLE, True, "draining"),
    ],
)
def test_state_labels(state: PodState, draining: bool, label: str) -> None:
    assert state_label(state, draining) == label


def test_busy_pods_are_not_safe_to_evict_and_idle_ones_are_cheapest_to_delete() -> None:
    assert shield_annotations("busy") == {SAFE_TO_EVICT: "false", DELETION_COST: "1000"}
    assert shield_annotations("idle") == {SAFE_TO_EVICT: None, DELETION_COST: "-100"}
    assert shield_annotations("starting") == {SAFE_TO_EVICT: None, DELETION_COST: None}


def test_the_pool_disruption_budget_selects_its_recording_pods_only() -> None:
    budget = disruption_budget(POOL)
    assert budget["spec"] == {
        "minAvailable": 12,  # max 10, a surge of one, and one more: never a disruption allowed
        "selector": {"matchLabels": {POOL_LABEL: "recorders", STATE_LABEL: "busy"}},
    }
    assert budget["metadata"]["ownerReferences"][0]["uid"] == "u-1"
