"""The kustomize base builds, and what it deploys fits the operator it runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from jibri_operator.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is needed to build the kustomize base")
    built = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "manifests")], capture_output=True, text=True, check=True
    )
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(built.stdout)}


def test_every_part_is_there(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert {kind for kind, _ in objects} == {
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    }
    crds = {name for kind, name in objects if kind == "CustomResourceDefinition"}
    assert crds == {f"{path.name.removesuffix('.yaml')}" for path in (ROOT / "crds").glob("*.jibri.dev.yaml")}


def test_the_deployment_runs_a_valid_command_as_its_service_account(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    pod = objects[("Deployment", "jibri-operator")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    build_parser().parse_args(container["args"])  # the image's entry point is `jibri-operator`
    assert container["image"] == "jibri-operator:0.1.0"
    binding = objects[("ClusterRoleBinding", "jibri-operator")]
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]
    assert (
        binding["subjects"][0]["namespace"]
        == objects[("Deployment", "jibri-operator")]["metadata"]["namespace"]
    )
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    probes = {container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]}
    assert probes == {"/healthz", "/readyz"}


def test_the_role_allows_what_the_operator_does(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    rules = objects[("ClusterRole", "jibri-operator")]["rules"]

    def allowed(group: str, resource: str, verb: str) -> bool:
        return any(
            group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
            for rule in rules
        )

    for plural in ("xmppenvironments", "recordingsessions", "jibripools"):
        for verb in ("list", "watch", "patch"):
            assert allowed("jibri.dev", plural, verb)
        assert allowed("jibri.dev", f"{plural}/status", "patch")
    assert allowed("", "secrets", "get")
    assert not allowed("", "secrets", "list"), "stream keys are read one by one, never listed"
    assert allowed("", "secrets", "create") and allowed("", "secrets", "patch")  # pools' jibri.conf
    for verb in ("list", "watch", "create", "delete"):
        assert allowed("", "pods", verb)
    assert allowed("", "events", "create")
    assert allowed("", "namespaces", "watch")
