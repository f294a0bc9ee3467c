"""The Helm chart, checked by Helm itself (`helm lint --strict`, `helm template`, the values
schema): its defaults, the effect of every toggle, and RBAC equal to the kustomize base's."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import yaml
from deploy import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    ROOT,
    Object,
    by_kind,
    entrypoint,
    helm_template,
    kustomize,
    one,
    render,
    run,
    tool,
)

from jibri_operator import __version__
from jibri_operator.cli import build_parser

# Each toggle of values.yaml, flipped away from its default.
TOGGLES: dict[str, dict[str, Any]] = {
    "serviceAccount.existing": {"serviceAccount": {"create": False, "name": "recorder"}},
    "serviceAccount.named": {
        "serviceAccount": {"name": "recorder", "annotations": {"iam.example/role": "r"}}
    },
    "rbac.off": {"rbac": {"create": False}},
    "rbac.namespaced": {"rbac": {"scope": "namespaced"}, "watchNamespaces": ["team-a", "team-b"]},
    "rbac.namespaced.own": {"rbac": {"scope": "namespaced"}},
    "watchNamespaces": {"watchNamespaces": ["team-a", "rec-*"]},
    "replicas.paused": {"replicaCount": 0},
    "replicas.ha": {"replicaCount": 2},
    "leaderElection.off": {"leaderElection": {"enabled": False}},
    "pdb": {"podDisruptionBudget": {"enabled": True}},
    "pdb.minAvailable": {"podDisruptionBudget": {"enabled": True, "minAvailable": "50%"}},
    "serviceMonitor": {"serviceMonitor": {"enabled": True, "interval": "15s", "labels": {"release": "prom"}}},
    "resources": {"resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}},
    "scheduling": {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["ops"]}]}
                    ]
                }
            }
        },
    },
    "priorityClassName": {"priorityClassName": "system-cluster-critical"},
    "extraEnv": {"extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]},
    "extraArgs": {"extraArgs": ["--nickname=recorder-eu"]},
    "logFormat": {"logFormat": "json", "logLevel": "debug"},
    "image": {"image": {"repository": "registry.example/jo", "tag": "dev", "pullPolicy": "Always"}},
    "imagePullSecrets": {"imagePullSecrets": [{"name": "regcred"}]},
    "metrics.port": {"metrics": {"port": 9090}},
    "grafanaDashboard": {"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}},
    "podMetadata": {"podAnnotations": {"a": "b"}, "podLabels": {"team": "media"}},
    "fullnameOverride": {"fullnameOverride": "recorder"},
}

# Resources a Role cannot grant: they go to a ClusterRole whatever the scope.
CLUSTER_SCOPED = {"namespaces", "customresourcedefinitions", "clusterkopfpeerings"}

Grant = tuple[str, str, str]  # apiGroup, resource, verb


def grants(rules: list[dict[str, Any]]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def deployment(objects: list[Object]) -> Object:
    return one(objects, "Deployment")


def pod_spec(objects: list[Object]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment(objects)["spec"]["template"]["spec"]
    return spec


def container(objects: list[Object]) -> dict[str, Any]:
    (found,) = pod_spec(objects)["containers"]
    return dict(found)


@pytest.fixture(scope="module")
def defaults() -> list[Object]:
    return render()


@pytest.fixture(scope="module")
def base() -> list[Object]:
    return kustomize(ROOT / "manifests")


# -- Helm's own checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("toggle", ["defaults", *TOGGLES])
def test_helm_lint_strict_passes(toggle: str, tmp_path: Any) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(TOGGLES.get(toggle, {})))
    linted = run([tool("helm"), "lint", "--strict", str(CHART), "--namespace", NAMESPACE, "-f", str(values)])
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "[WARNING]" not in linted.stdout and "[ERROR]" not in linted.stdout, linted.stdout


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"replicas": 2}, "replicas"),  # a typo of replicaCount
        ({"rbac": {"scope": "cluster-wide"}}, "rbac.scope"),
        ({"serviceAccount": {"annotation": {}}}, "serviceAccount"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"replicaCount": -1}, "replicaCount"),
        ({"leaderElection": {"enabled": "yes"}}, "leaderElection.enabled"),
        ({"leaderElection": {"leaseName": "x"}}, "leaderElection"),
        ({"leaderElection": {"handoverDelaySeconds": -1}}, "leaderElection.handoverDelaySeconds"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces.0"),
        ({"serviceMonitor": {"interval": "often"}}, "serviceMonitor.interval"),
        ({"podDisruptionBudget": {"maxUnavailable": "half"}}, "podDisruptionBudget.maxUnavailable"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy"),
        ({"metrics": {"port": 70000}}, "metrics.port"),
        ({"extraEnv": [{"value": "no name"}]}, "extraEnv.0"),
    ],
)
def test_the_values_schema_refuses_a_bad_value_naming_the_field(values: dict[str, Any], field: str) -> None:
    refused = helm_template(values)
    assert refused.returncode != 0, f"{values} was accepted"
    assert "values don't meet the specifications of the schema" in refused.stderr
    assert re.search(rf"(^|\s|-\s){re.escape(field)}\b", refused.stderr), refused.stderr


def test_the_chart_crds_are_the_top_level_crds_byte_for_byte() -> None:
    top = {path.name: path.read_bytes() for path in (ROOT / "crds").glob("*.jibri.dev.yaml")}
    chart = {path.name: path.read_bytes() for path in (CHART / "crds").iterdir()}
    assert len(top) == 3
    assert chart.keys() == top.keys(), "charts/jibri-operator/crds holds exactly the CRDs of crds/"
    for name, content in top.items():
        assert chart[name] == content, (
            f"charts/jibri-operator/crds/{name} differs from crds/{name}: "
            "make generate (copies crds/*.jibri.dev.yaml into the chart)"
        )


def test_chart_and_operator_versions_agree() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == __version__


# -- the defaults --------------------------------------------------------------------------------


def test_defaults_render_the_operator_and_nothing_optional(defaults: list[Object]) -> None:
    kinds = sorted(obj["kind"] for obj in defaults)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Service",
            "Deployment",
        ]
    )


def test_every_object_carries_the_standard_labels(defaults: list[Object]) -> None:
    everything = render(_all_on())
    for obj in defaults + everything:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "jibri-operator", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/version"] == __version__
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "jibri-operator"
        assert labels["helm.sh/chart"] == f"jibri-operator-{__version__}"
        if not obj["kind"].startswith("Cluster") and obj["kind"] != "ConfigMap":
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_the_operator_runs_hardened_with_probes(defaults: list[Object]) -> None:
    pod, main = pod_spec(defaults), container(defaults)
    assert main["image"] == f"ghcr.io/jibri-operator/jibri-operator:{__version__}"
    assert main["args"] == [
        "--all-namespaces",
        "--metrics-port=8080",
        "--leader-elect",
        f"--leader-elect-name={FULLNAME}",
        "--log-format=text",
    ]
    parsed = build_parser().parse_args(entrypoint()[1:] + main["args"])
    assert parsed.leader_elect and parsed.leader_elect_name == FULLNAME
    assert parsed.leader_elect_namespace is None, "the pod's own namespace, where the Lease's Role is"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
    (port,) = main["ports"]
    assert port["containerPort"] == 8080 and port["name"] == "http-metrics"
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    assert main["env"][0]["name"] == "POD_NAME"
    assert deployment(defaults)["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "100%"},
    }
    assert deployment(defaults)["spec"]["replicas"] == 1
    assert "priorityClassName" not in pod and "nodeSelector" not in pod and "tolerations" not in pod


def test_the_service_selects_the_operator_pod(defaults: list[Object]) -> None:
    service = one(defaults, "Service")
    labels = deployment(defaults)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment(defaults)["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["ports"][0]["targetPort"] == "http-metrics"


def test_the_service_account_is_bound_everywhere(defaults: list[Object]) -> None:
    account = one(defaults, "ServiceAccount")["metadata"]["name"]
    assert account == FULLNAME == pod_spec(defaults)["serviceAccountName"]
    for binding in by_kind(defaults, "ClusterRoleBinding") + by_kind(defaults, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]


# -- RBAC: the chart and the kustomize base cannot drift --------------------------------------------


def test_cluster_scope_grants_exactly_what_the_kustomize_base_grants(
    defaults: list[Object], base: list[Object]
) -> None:
    for kind in ("ClusterRole", "Role"):
        assert grants(one(defaults, kind)["rules"]) == grants(one(base, kind)["rules"]), kind
    lease = one(defaults, "Role")
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert ("coordination.k8s.io", "leases", "update") in grants(lease["rules"])


def test_namespaced_scope_grants_the_same_split_into_a_role_per_watched_namespace(
    base: list[Object],
) -> None:
    objects = render(TOGGLES["rbac.namespaced"])
    cluster = grants(one(objects, "ClusterRole")["rules"])
    assert {resource for _, resource, _ in cluster} == CLUSTER_SCOPED
    roles = {role["metadata"]["namespace"]: grants(role["rules"]) for role in by_kind(objects, "Role")}
    leases = roles.pop(NAMESPACE)
    assert roles.keys() == {"team-a", "team-b"}
    assert roles["team-a"] == roles["team-b"]
    assert not {resource for _, resource, _ in roles["team-a"]} & CLUSTER_SCOPED
    base_all = set().union(*(grants(obj["rules"]) for obj in base if obj["kind"] in ("ClusterRole", "Role")))
    assert cluster | roles["team-a"] | leases == base_all
    bindings = {b["metadata"]["namespace"]: b for b in by_kind(objects, "RoleBinding")}
    assert bindings.keys() == {"team-a", "team-b", NAMESPACE}
    for namespace in ("team-a", "team-b"):
        assert bindings[namespace]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": FULLNAME,
        }


def test_the_operator_permissions_cover_its_own_calls(defaults: list[Object]) -> None:
    """The calls kube/client.py and kopf make, each allowed (a smoke test of the shared rules)."""
    allowed = grants(one(defaults, "ClusterRole")["rules"])
    for call in [
        ("", "secrets", "get"),
        ("", "secrets", "create"),
        ("", "secrets", "patch"),
        ("", "pods", "list"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("jibri.dev", "recordingsessions/status", "patch"),
        ("jibri.dev", "jibripools", "watch"),
        ("", "events", "create"),
    ]:
        assert call in allowed, call
    assert ("", "secrets", "list") not in allowed, "Secrets are read one by one, never listed"


# -- each toggle's effect ------------------------------------------------------------------------


def test_service_account_existing_is_used_not_created() -> None:
    objects = render(TOGGLES["serviceAccount.existing"])
    assert not by_kind(objects, "ServiceAccount")
    assert pod_spec(objects)["serviceAccountName"] == "recorder"
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "recorder"


def test_service_account_name_and_annotations() -> None:
    objects = render(TOGGLES["serviceAccount.named"])
    account = one(objects, "ServiceAccount")
    assert account["metadata"]["name"] == "recorder"
    assert account["metadata"]["annotations"] == {"iam.example/role": "r"}
    assert pod_spec(objects)["serviceAccountName"] == "recorder"


def test_rbac_off_renders_no_roles() -> None:
    objects = render(TOGGLES["rbac.off"])
    assert not [obj for obj in objects if obj["kind"].endswith(("Role", "RoleBinding"))]
    assert by_kind(objects, "ServiceAccount")


def test_namespaced_scope_watches_its_namespaces_by_name() -> None:
    objects = render(TOGGLES["rbac.namespaced"])
    args = container(objects)["args"]
    assert args[:4] == ["-n", "team-a", "-n", "team-b"] and "--all-namespaces" not in args
    assert build_parser().parse_args(entrypoint()[1:] + args).namespace == ["team-a", "team-b"]


def test_namespaced_scope_without_namespaces_watches_the_release_namespace() -> None:
    objects = render(TOGGLES["rbac.namespaced.own"])
    assert container(objects)["args"][:2] == ["-n", NAMESPACE]
    role_namespaces = sorted(role["metadata"]["namespace"] for role in by_kind(objects, "Role"))
    assert role_namespaces == [NAMESPACE, NAMESPACE]  # the operator's Role and the Lease's


def test_namespaced_scope_refuses_a_glob() -> None:
    refused = helm_template({"rbac": {"scope": "namespaced"}, "watchNamespaces": ["team-*"]})
    assert refused.returncode != 0
    assert 'watchNamespaces: "team-*" is a glob' in refused.stderr


def test_watch_namespaces_with_cluster_scope_accepts_globs() -> None:
    objects = render(TOGGLES["watchNamespaces"])
    assert container(objects)["args"][:4] == ["-n", "team-a", "-n", "rec-*"]
    assert [role["metadata"]["namespace"] for role in by_kind(objects, "Role")] == [NAMESPACE]


def test_replicas_zero_pauses_and_more_than_one_elect_a_leader() -> None:
    assert deployment(render(TOGGLES["replicas.paused"]))["spec"]["replicas"] == 0
    objects = render(TOGGLES["replicas.ha"])
    assert deployment(objects)["spec"]["replicas"] == 2
    assert "--leader-elect" in container(objects)["args"]
    assert deployment(objects)["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not by_kind(objects, "PodDisruptionBudget"), "only the leader is Ready: a budget would pin it"
    # a deleted leader keeps acting 10 s (preStop), so a rollout's new pods are standbys when it lets go
    assert container(objects)["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "10"]}}}
    assert "lifecycle" not in container(render({"leaderElection": {"handoverDelaySeconds": 0}}))
    refused = helm_template({"leaderElection": {"handoverDelaySeconds": 60}})
    assert "handoverDelaySeconds must be below terminationGracePeriodSeconds" in refused.stderr


def test_without_leader_election_one_replica_at_most_and_recreate() -> None:
    objects = render(TOGGLES["leaderElection.off"])
    assert not [arg for arg in container(objects)["args"] if arg.startswith("--leader-elect")]
    assert "lifecycle" not in container(objects)
    assert deployment(objects)["spec"]["strategy"] == {"type": "Recreate"}
    refused = helm_template({"replicaCount": 2, "leaderElection": {"enabled": False}})
    assert refused.returncode != 0
    assert "replicaCount: more than 1 needs leaderElection.enabled" in refused.stderr


def test_pod_disruption_budget() -> None:
    assert not by_kind(render(), "PodDisruptionBudget")
    objects = render(TOGGLES["pdb"])
    budget = one(objects, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1 and "minAvailable" not in budget["spec"]
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow", "standbys are never Ready"
    assert budget["spec"]["selector"]["matchLabels"] == deployment(objects)["spec"]["selector"]["matchLabels"]
    budget = one(render(TOGGLES["pdb.minAvailable"]), "PodDisruptionBudget")
    assert (
        budget["spec"] == {**budget["spec"], "minAvailable": "50%"} and "maxUnavailable" not in budget["spec"]
    )


def test_service_monitor_scrapes_the_metrics_service() -> None:
    assert not by_kind(render(), "ServiceMonitor")
    objects = render(TOGGLES["serviceMonitor"])
    monitor = one(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prom"
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"


def test_resources() -> None:
    assert container(render(TOGGLES["resources"]))["resources"] == TOGGLES["resources"]["resources"]


def test_scheduling_node_selector_tolerations_affinity() -> None:
    pod = pod_spec(render(TOGGLES["scheduling"]))
    for key in ("nodeSelector", "tolerations", "affinity"):
        assert pod[key] == TOGGLES["scheduling"][key]


def test_priority_class_name() -> None:
    assert pod_spec(render(TOGGLES["priorityClassName"]))["priorityClassName"] == "system-cluster-critical"


def test_extra_env_comes_after_pod_name() -> None:
    env = container(render(TOGGLES["extraEnv"]))["env"]
    assert [item["name"] for item in env] == ["POD_NAME", "HTTPS_PROXY"]


def test_extra_args_are_passed_and_parse() -> None:
    args = container(render(TOGGLES["extraArgs"]))["args"]
    assert args[-1] == "--nickname=recorder-eu"
    assert build_parser().parse_args(entrypoint()[1:] + args).nickname == "recorder-eu"


def test_log_format_and_level() -> None:
    args = container(render(TOGGLES["logFormat"]))["args"]
    parsed = build_parser().parse_args(entrypoint()[1:] + args)
    assert parsed.log_format == "json" and parsed.verbose is True


def test_image() -> None:
    main = container(render(TOGGLES["image"]))
    assert main["image"] == "registry.example/jo:dev" and main["imagePullPolicy"] == "Always"
    assert pod_spec(render(TOGGLES["imagePullSecrets"]))["imagePullSecrets"] == [{"name": "regcred"}]


def test_metrics_port_moves_probes_service_and_flag_together() -> None:
    objects = render(TOGGLES["metrics.port"])
    main = container(objects)
    assert main["ports"][0]["containerPort"] == 9090
    assert "--metrics-port=9090" in main["args"]
    assert one(objects, "Service")["spec"]["ports"][0]["port"] == 9090


def test_grafana_dashboard_config_map() -> None:
    assert not by_kind(render(), "ConfigMap")
    config_map = one(render(TOGGLES["grafanaDashboard"]), "ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "jibri-operator.json").read_text())
    assert json.loads(config_map["data"]["jibri-operator.json"]) == shipped


def test_pod_annotations_and_labels() -> None:
    template = deployment(render(TOGGLES["podMetadata"]))["spec"]["template"]["metadata"]
    assert template["annotations"] == {"a": "b"}
    assert template["labels"]["team"] == "media"


def test_fullname_override_names_everything() -> None:
    objects = render(TOGGLES["fullnameOverride"])
    assert deployment(objects)["metadata"]["name"] == "recorder"
    assert one(objects, "Service")["metadata"]["name"] == "recorder-metrics"


# -- every rendered object is well formed ---------------------------------------------------------


def _all_on() -> dict[str, Any]:
    """Every optional object at once (one render covers them all)."""
    return {
        "podDisruptionBudget": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    }


def _check_model(value: Any, type_name: str, path: str) -> None:
    """``value`` fits the kubernetes client's model ``type_name``: no unknown field, right types."""
    inner = re.fullmatch(r"(?:list|List)\[(.+)\]", type_name)
    if inner:
        assert isinstance(value, list), f"{path}: a list expected"
        for index, item in enumerate(value):
            _check_model(item, inner.group(1), f"{path}[{index}]")
        return
    mapping = re.fullmatch(r"(?:dict\(str, |Dict\[str, )(.+)[)\]]", type_name)
    if mapping:
        assert isinstance(value, dict), f"{path}: a map expected"
        for key, item in value.items():
            _check_model(item, mapping.group(1), f"{path}.{key}")
        return
    scalars: dict[str, type | tuple[type, ...]] = {
        "str": str,
        "int": int,
        "bool": bool,
        "float": (int, float),
    }
    if type_name in scalars:
        assert isinstance(value, scalars[type_name]), f"{path}: {type_name} expected, got {value!r}"
        return
    if type_name in ("object", "datetime"):
        return
    model = getattr(kubernetes.client, type_name)
    assert isinstance(value, dict), f"{path}: an object expected"
    fields = {
        json_name: model.openapi_types[attribute] for attribute, json_name in model.attribute_map.items()
    }
    for key, item in value.items():
        assert key in fields, f"{path}: unknown field {key!r}"
        _check_model(item, fields[key], f"{path}.{key}")


MODELS = {
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
}


@pytest.mark.parametrize("toggle", ["all-on", *TOGGLES])
def test_every_rendered_object_fits_the_kubernetes_api_types(toggle: str) -> None:
    """Offline: each object against the API's types (the kubernetes client's models). The real
    API server's dry run (`kubectl apply --dry-run=server`) is for the real-control-plane tests."""
    objects = render(_all_on() if toggle == "all-on" else TOGGLES[toggle])
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        if key == ("monitoring.coreos.com/v1", "ServiceMonitor"):
            assert set(obj["spec"]) <= {"selector", "namespaceSelector", "endpoints"}
            continue
        assert key in MODELS, f"no model for {key}"
        _check_model(obj, MODELS[key], obj["kind"])


def test_a_misspelt_field_is_caught_by_the_model_check() -> None:
    broken = render()
    pod_spec(broken)["containers"][0]["securityContxt"] = {}
    with pytest.raises(AssertionError, match="unknown field 'securityContxt'"):
        _check_model(deployment(broken), "V1Deployment", "Deployment")


# -- NOTES.txt (helm template does not render it; helm install needs a cluster) ------------------


def notes(values: dict[str, Any], tmp_path: Path) -> str:
    """NOTES.txt rendered by Helm: a copy of the chart with the notes moved into a ConfigMap."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "notes.txt")
    (chart / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\n"
        'data:\n  notes: {{ tpl (.Files.Get "notes.txt") . | quote }}\n'
    )
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    probe = ["--show-only", "templates/notes-probe.yaml"]
    result = run(
        [tool("helm"), "template", RELEASE, str(chart), "-n", NAMESPACE, "-f", str(values_file), *probe]
    )
    assert result.returncode == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["data"]["notes"])


def test_notes_tell_how_to_check_upgrade_crds_and_what_uninstall_leaves(tmp_path: Path) -> None:
    text = notes({}, tmp_path / "defaults")
    assert "It watches every namespace" in text
    assert f"rollout status deployment/{FULLNAME}" in text
    assert "kubectl apply --server-side" in text and "crds/" in text
    assert "`helm uninstall` leaves the CRDs" in text
    assert f"get lease {FULLNAME}" in text and "standbys show READY 0/1" in text
    assert "get lease" not in notes(TOGGLES["leaderElection.off"], tmp_path / "single")
    text = notes({**TOGGLES["rbac.namespaced"], "replicaCount": 0, **_all_on()}, tmp_path / "toggled")
    assert "the namespace(s): team-a, team-b" in text and "RBAC scope: namespaced" in text
    assert "the operator is paused" in text
    assert "ServiceMonitor" in text and "dashboard" in text
