"""The kustomize base builds, and what it deploys fits the operator it runs."""

from __future__ import annotations

from typing import Any

import pytest
from deploy import ROOT, entrypoint, kustomize

from jibri_operator.cli import build_parser


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in kustomize(ROOT / "manifests")}


def test_every_part_is_there(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert {kind for kind, _ in objects} == {
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
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
    assert entrypoint()[0] == "jibri-operator"
    parsed = build_parser().parse_args(entrypoint()[1:] + container["args"])
    assert parsed.leader_elect and parsed.leader_elect_name == "jibri-operator"
    strategy = objects[("Deployment", "jibri-operator")]["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "100%"}}
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]
    assert container["image"] == "ghcr.io/jibri-operator/jibri-operator:0.1.0"
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
    # blockOwnerDeletion on a pool's pods and Secret (OwnerReferencesPermissionEnforcement)
    assert allowed("jibri.dev", "jibripools/finalizers", "update")
    assert allowed("", "namespaces", "watch")


def test_the_leader_election_lease_is_granted_in_the_operator_namespace_only(
    objects: dict[tuple[str, str], dict[str, Any]],
) -> None:
    cluster_rules = objects[("ClusterRole", "jibri-operator")]["rules"]
    assert not any("coordination.k8s.io" in rule["apiGroups"] for rule in cluster_rules)
    role = objects[("Role", "jibri-operator-leader-election")]
    assert role["metadata"]["namespace"] == "jibri-operator"
    (rule,) = role["rules"]
    assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"]
    assert set(rule["verbs"]) == {"get", "list", "watch", "create", "update", "patch"}
    binding = objects[("RoleBinding", "jibri-operator-leader-election")]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == "jibri-operator"
