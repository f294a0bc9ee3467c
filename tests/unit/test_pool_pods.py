"""build_pod: the template, plus what every pool pod needs."""

from __future__ import annotations

import pytest

from jibri_operator.controllers.pools import PoolProblem, build_pod

POOL = {
    "metadata": {"name": "recorders", "uid": "u-1", "namespace": "team"},
    "spec": {
        "template": {
            "metadata": {"labels": {"team": "video"}, "name": "ignored"},
            "spec": {
                "containers": [
                    {"name": "sidecar", "image": "busybox"},
                    {
                        "name": "recorder",
                        "image": "jitsi/jibri:stable",
                        "env": [{"name": "POD_NAME", "value": "x"}],
                    },
                ],
                "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
            },
        }
    },
}


def test_the_jibri_container_gets_its_config_and_name() -> None:
    pod = build_pod(POOL)
    sidecar, jibri = pod["spec"]["containers"]
    assert "volumeMounts" not in sidecar
    assert {"name": "jibri-conf", "mountPath": "/etc/jitsi/jibri", "readOnly": True} in jibri["volumeMounts"]
    assert jibri["env"] == [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    assert {"name": "jibri-conf", "secret": {"secretName": "recorders-jibri-conf"}} in pod["spec"]["volumes"]
    assert {"name": "shm", "emptyDir": {"medium": "Memory"}} in pod["spec"]["volumes"]


def test_identity_ownership_and_labels() -> None:
    metadata = build_pod(POOL)["metadata"]
    assert metadata["generateName"] == "recorders-" and "name" not in metadata
    assert metadata["labels"]["team"] == "video" and metadata["labels"]["jibri.dev/pool"] == "recorders"
    (owner,) = metadata["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("JibriPool", "u-1", True)


def test_the_template_is_not_changed() -> None:
    build_pod(POOL)
    assert "generateName" not in POOL["spec"]["template"]["metadata"]  # type: ignore[index]


def test_a_template_without_containers_is_a_clear_problem() -> None:
    with pytest.raises(PoolProblem, match="containers is empty"):
        build_pod({"metadata": {"name": "p", "uid": "u"}, "spec": {"template": {"spec": {}}}})
