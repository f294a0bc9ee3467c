"""The built-in kinds: what is served, how each prints as a Table, and its server-side defaults.

Only what clients rely on is modelled: the types and their discovery data, the
field labels each accepts in field selectors, default printer columns like
kubectl shows them, the few fields the server fills (a Namespace's phase, a
Service's clusterIP, a Pod's phase), and the events.k8s.io/v1 view of core Events.
Built-in objects are not schema-validated beyond their metadata.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

from . import errors, policy
from .kinds import ResourceType

Obj = dict[str, Any]
Cells = Callable[[Obj], list[Any]]
_META_FIELDS = ("metadata.name", "metadata.namespace")


def _t(group: str, version: str, plural: str, kind: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    kw.setdefault("field_labels", _META_FIELDS)
    singular = kw.pop("singular", kind.lower())
    return ResourceType(group, version, plural, singular, kind, namespaced, **kw)


_EVENT_FIELDS = (
    *_META_FIELDS,
    "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
    "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
    "reason", "reportingComponent", "source", "type",
)  # fmt: skip
_POD_FIELDS = (
    *_META_FIELDS,
    "spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
    "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName",
)  # fmt: skip

# core Event field <-> events.k8s.io/v1 Event field
_EVENT_RENAMES = {
    "involvedObject": "regarding",
    "message": "note",
    "reportingComponent": "reportingController",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
}
_EVENT_RENAMES_BACK = {v: k for k, v in _EVENT_RENAMES.items()}


def _rename(obj: Obj, names: dict[str, str], api_version: str) -> Obj:
    out = {names.get(k, k): v for k, v in obj.items()}
    out["apiVersion"] = api_version
    return out


def event_to_v1beta(obj: Obj) -> Obj:
    return _rename(obj, _EVENT_RENAMES, "events.k8s.io/v1")


def event_to_core(obj: Obj) -> Obj:
    return _rename(obj, _EVENT_RENAMES_BACK, "v1")


def event_field(obj: Obj, field: str) -> Any:
    if field == "source":
        return (obj.get("source") or {}).get("component")
    head, _, rest = field.partition(".")
    value: Any = obj.get(head) if head != "metadata" else obj["metadata"]
    for part in rest.split(".") if rest else ():
        value = value.get(part) if isinstance(value, dict) else None
    return value


def builtin_types() -> list[ResourceType]:
    status = {"status": True}
    return [
        _t("", "v1", "namespaces", "Namespace", False, short_names=("ns",), name_rule="label",
           field_labels=("metadata.name", "status.phase"), **status),
        _t("", "v1", "pods", "Pod", short_names=("po",), categories=("all",), field_labels=_POD_FIELDS, **status),
        _t("", "v1", "secrets", "Secret", field_labels=(*_META_FIELDS, "type"), return_deleted=False),
        _t("", "v1", "configmaps", "ConfigMap", short_names=("cm",), return_deleted=False),
        _t("", "v1", "events", "Event", short_names=("ev",), field_labels=_EVENT_FIELDS, name_rule="path",
           return_deleted=False),
        _t("", "v1", "services", "Service", short_names=("svc",), categories=("all",), name_rule="dns1035",
           return_deleted=False, **status),
        _t("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",), return_deleted=False),
        _t("", "v1", "nodes", "Node", False, short_names=("no",), **status),
        _t("", "v1", "endpoints", "Endpoints", short_names=("ep",), singular="endpoints", return_deleted=False),
        _t("events.k8s.io", "v1", "events", "Event", short_names=("ev",), field_labels=_EVENT_FIELDS,
           name_rule="path", store_as=("", "events"), to_storage=event_to_core, from_storage=event_to_v1beta,
           return_deleted=False),
        _t("coordination.k8s.io", "v1", "leases", "Lease", return_deleted=False),
        _t("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short_names=("pdb",),
           generation=True, return_deleted=False, **status),
        *(_t(group, "v1", plural, kind, False, verbs=("create",))
          for group, plural, kind in REVIEWS),
        _t("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
           short_names=("crd", "crds"), categories=("api-extensions",), generation=True,
           singular="customresourcedefinition", **status),
    ]  # fmt: skip


# Reviews are answered, never stored: one token, every right (the sandbox has no RBAC).
REVIEWS = (
    ("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview"),
    ("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview"),
    ("authorization.k8s.io", "selfsubjectrulesreviews", "SelfSubjectRulesReview"),
    ("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview"),
)
USER = {"username": "sandbox-admin", "groups": ["system:masters", "system:authenticated"]}


def review(kind: str, body: Obj) -> Obj:
    """The answer to an access, rules or identity review."""
    out = {**body, "metadata": {**(body.get("metadata") or {}), "creationTimestamp": None}}
    if kind == "SelfSubjectReview":
        out["status"] = {"userInfo": USER}
    elif kind == "SelfSubjectRulesReview":
        everything = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
        out["status"] = {"resourceRules": [everything], "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                         "incomplete": False}  # fmt: skip
    else:
        out["status"] = {"allowed": True, "reason": "the sandbox API server allows everything"}
    return out


def scale_table(scale: Obj) -> Obj:
    """The Table a real server answers for a /scale subresource."""
    from .tables import NAME_DESCRIPTION, human_age

    columns = [("Name", "string", "name"), ("Desired Replicas", "integer", ""), ("Available Replicas", "integer", ""),
               ("Age", "string", "")]  # fmt: skip
    m = scale["metadata"]
    cells = [
        m["name"],
        scale["spec"].get("replicas", 0),
        scale["status"].get("replicas", 0),
        human_age(m.get("creationTimestamp")),
    ]
    return {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": m.get("resourceVersion", "")},
        "columnDefinitions": [{"name": n, "type": t, "format": f, "description": NAME_DESCRIPTION if f else n, "priority": 0}
                              for n, t, f in columns],
        "rows": [{"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": m}}],
    }  # fmt: skip


# --- server-side defaults ------------------------------------------------------------------------

_cluster_ips = itertools.count(10)


def reserve_cluster_ips(services: list[Obj]) -> None:
    """After a restart: new Services get addresses after those already given (10.96.x.y)."""
    global _cluster_ips
    following = [10]  # the n of prepare()'s 10.96.{n // 250}.{n % 250 + 1}, plus one
    for svc in services:
        parts = str((svc.get("spec") or {}).get("clusterIP") or "").split(".")
        if len(parts) == 4 and parts[:2] == ["10", "96"] and all(p.isdigit() for p in parts[2:]):
            following.append(int(parts[2]) * 250 + int(parts[3]))
    _cluster_ips = itertools.count(max(following))


POD_DEFAULTS = {
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "serviceAccountName": "default",
}


def prepare(kind: str, obj: Obj, old: Obj | None) -> None:
    """Fill the fields a real server's strategies fill (obj is fresh and mutable)."""
    if kind == "Secret" and obj.get("stringData"):
        # stringData is write-only: merged into data, base64-encoded, and never stored
        data = dict(obj.get("data") or {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        obj["data"] = data
    if kind == "Pod":  # defaulted on every write, so an update that omits defaults changes nothing
        obj["spec"] = {**POD_DEFAULTS, **(obj.get("spec") or {})}
    if old is not None:
        return
    if kind == "Namespace":
        obj["spec"] = {"finalizers": ["kubernetes"], **(obj.get("spec") or {})}
        obj["status"] = {"phase": "Active"}
    elif kind == "Pod":
        obj["status"] = {"phase": "Pending", **(obj.get("status") or {})}
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if spec.get("clusterIP") != "None":
            n = next(_cluster_ips)
            spec.setdefault("clusterIP", f"10.96.{n // 250}.{n % 250 + 1}")
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        for port in spec.get("ports") or ():
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
    elif kind == "PodDisruptionBudget":
        obj["status"] = policy.empty_status()  # the strategy's PrepareForCreate: status is the controller's


# --- validation ----------------------------------------------------------------------------------

POD_MUTABLE = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _pod_spec_sans_mutable(spec: Obj) -> Obj:
    out = {k: v for k, v in spec.items() if k not in ("activeDeadlineSeconds", "tolerations")}
    for field in ("containers", "initContainers"):
        if isinstance(out.get(field), list):
            out[field] = [
                {k: v for k, v in c.items() if k != "image"} for c in out[field] if isinstance(c, dict)
            ]
    return out


def check(kind: str, obj: Obj, old: Obj | None, subresource: str = "") -> list[errors.FieldError]:
    """The validation of a built-in kind's strategy that clients meet in practice."""
    found: list[errors.FieldError] = []
    if kind == "Pod" and not subresource:
        spec = obj.get("spec") or {}
        containers = spec.get("containers")
        if not containers:
            found.append(errors.required("spec.containers"))
        for i, container in enumerate(containers or ()):
            for req in ("name", "image"):
                if not (container or {}).get(req):
                    found.append(errors.required(f"spec.containers[{i}].{req}"))
        if old is not None and _pod_spec_sans_mutable(spec) != _pod_spec_sans_mutable(old.get("spec") or {}):
            found.append(errors.forbidden_field("spec", POD_MUTABLE))
    if kind == "PodDisruptionBudget":
        found += policy.check(obj, subresource)
    if kind in ("ConfigMap", "Secret") and old is not None and old.get("immutable"):
        for field in ("data", "binaryData"):
            if obj.get(field) != old.get(field):
                found.append(errors.forbidden_field(field, "field is immutable when `immutable` is set"))
        if not obj.get("immutable"):
            found.append(errors.forbidden_field("immutable", "field is immutable when `immutable` is set"))
    return found


def bind(pod: Obj, binding: Obj) -> Obj:
    """pods/binding: what a scheduler does; only an unbound pod can be bound."""
    target = (binding.get("target") or {}).get("name")
    if not target:
        raise errors.invalid_object("Binding", "", pod["metadata"]["name"], [errors.required("target.name")])
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        raise errors.conflict(
            "pods/binding",
            "",
            pod["metadata"]["name"],
            f'pod {pod["metadata"]["name"]} is already assigned to node "{node}"',
        )
    return {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": target}}


# --- tables ----------------------------------------------------------------------------------------

Col = tuple[str, str, str, int]  # name, type, format, priority
_NAME: Col = ("Name", "string", "name", 0)
_AGE: Col = ("Age", "string", "", 0)


def _age(obj: Obj) -> str:
    from .tables import human_age  # a cycle-free late import: tables imports this module

    return human_age(obj["metadata"].get("creationTimestamp"))


def _pod_cells(pod: Obj) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    phase = status.get("reason") or status.get("phase") or "Pending"
    for c in statuses:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            phase = waiting["reason"]
    if pod["metadata"].get("deletionTimestamp"):
        phase = "Terminating"
    return [
        pod["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}", phase, restarts, _age(pod),
        status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
    ]  # fmt: skip


def _ports(svc: Obj) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _event_object(ev: Obj) -> str:
    ref = ev.get("involvedObject") or ev.get("regarding") or {}
    return f"{(ref.get('kind') or '').lower()}/{ref.get('name', '')}"


def _crd_created(crd: Obj) -> str:
    return crd["metadata"].get("creationTimestamp") or ""


TABLES: dict[str, tuple[list[Col], Cells]] = {
    "Pod": (
        [
            _NAME,
            ("Ready", "string", "", 0),
            ("Status", "string", "", 0),
            ("Restarts", "string", "", 0),
            _AGE,
            ("IP", "string", "", 1),
            ("Node", "string", "", 1),
        ],
        _pod_cells,
    ),
    "Namespace": (
        [_NAME, ("Status", "string", "", 0), _AGE],
        lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), _age(o)],
    ),
    "ConfigMap": (
        [_NAME, ("Data", "integer", "", 0), _AGE],
        lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o)],
    ),
    "Secret": (
        [_NAME, ("Type", "string", "", 0), ("Data", "integer", "", 0), _AGE],
        lambda o: [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}), _age(o)],
    ),
    "Service": (
        [
            _NAME,
            ("Type", "string", "", 0),
            ("Cluster-IP", "string", "", 0),
            ("External-IP", "string", "", 0),
            ("Port(s)", "string", "", 0),
            _AGE,
        ],
        lambda o: [
            o["metadata"]["name"],
            (o.get("spec") or {}).get("type", "ClusterIP"),
            (o.get("spec") or {}).get("clusterIP", "<none>"),
            "<none>",
            _ports(o),
            _age(o),
        ],
    ),
    "Event": (
        [
            ("Last Seen", "string", "", 0),
            ("Type", "string", "", 0),
            ("Reason", "string", "", 0),
            ("Object", "string", "", 0),
            ("Message", "string", "", 0),
        ],
        lambda o: [
            _age(
                {
                    "metadata": {
                        "creationTimestamp": o.get("lastTimestamp")
                        or o.get("eventTime")
                        or o["metadata"].get("creationTimestamp")
                    }
                }
            ),
            o.get("type", ""),
            o.get("reason", ""),
            _event_object(o),
            o.get("message") or o.get("note", ""),
        ],
    ),
    "Lease": (
        [_NAME, ("Holder", "string", "", 0), _AGE],
        lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""), _age(o)],
    ),
    "ServiceAccount": (
        [_NAME, ("Secrets", "integer", "", 0), _AGE],
        lambda o: [o["metadata"]["name"], len(o.get("secrets") or []), _age(o)],
    ),
    "PodDisruptionBudget": (
        [
            _NAME,
            ("Min Available", "string", "", 0),
            ("Max Unavailable", "string", "", 0),
            ("Allowed Disruptions", "integer", "", 0),
            _AGE,
        ],
        policy.table_cells,
    ),
    "CustomResourceDefinition": (
        [_NAME, ("Created At", "date", "", 0)],
        lambda o: [o["metadata"]["name"], _crd_created(o)],
    ),
}
